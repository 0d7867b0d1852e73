"""A fake sysfs/procfs tree whose memory.reclaim behaves like the kernel's.

This machine has no cgroup v2 memory controller, so ``gradual`` is tested on
a tree where ``sys/fs/cgroup/memory.reclaim`` is a regular file and
``proc/meminfo`` is a FIFO served by a thread. Each time the probe opens
meminfo, the thread first applies any request written to memory.reclaim
(shrinking Cached, never below a hot set) and then serves the new meminfo, so
a reclaim is "done" when the write returns, as with the real file. /proc/stat
advances with every read: 1% CPU busy.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from pathlib import Path

from helpers import TREES

KiB = 1024


class FakeKernel:
    def __init__(self, root: Path, cached: int, hot: int, with_reclaim: bool = True):
        shutil.copytree(TREES / "linux-vm", root)
        self.root = root
        self.proc = root / "proc"
        self.meminfo_text = (self.proc / "meminfo").read_text()
        self.cached, self.hot = cached, hot
        self.requests: list[str] = []
        self.reclaim = root / "sys/fs/cgroup/memory.reclaim"
        for knob in ("drop_caches", "compact_memory"):
            (self.proc / "sys/vm").mkdir(parents=True, exist_ok=True)
            (self.proc / "sys/vm" / knob).write_text("")
        if with_reclaim:
            self.reclaim.parent.mkdir(parents=True, exist_ok=True)
            self.reclaim.write_text("")
        meminfo = self.proc / "meminfo"
        meminfo.unlink()
        os.mkfifo(meminfo)
        self.ticks = 10**6  # beyond the recorded counters; /proc/stat advances 1% busy per meminfo read, so CPU busy is known (and idle)
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _apply_requests(self) -> None:
        if not self.reclaim.exists():
            return
        text = self.reclaim.read_text()
        if not text:
            return
        self.reclaim.write_text("")
        self.requests.append(text)
        wanted = int(text.split()[0])
        self.cached -= max(0, min(wanted, self.cached - self.hot))

    def _meminfo(self) -> str:
        return re.sub(r"^Cached:\s+\d+ kB", f"Cached: {self.cached // KiB} kB", self.meminfo_text, flags=re.M)

    def _serve(self) -> None:
        path = self.proc / "meminfo"
        while True:
            fd = os.open(path, os.O_WRONLY)  # blocks until a reader opens meminfo
            if self._stop:
                os.close(fd)
                return
            # This open may have been met by the last reader, still about to read its EOF: the next
            # reader, after writing its memory.reclaim request, would then get meminfo from before
            # that request (a "no progress" step). Wait a moment so the state is the next reader's.
            time.sleep(0.01)
            self._apply_requests()
            self.ticks += 1
            # rename, so a reader never sees a half-written (truncated) stat
            tmp = self.proc / "stat.tmp"
            tmp.write_text(f"cpu  {self.ticks} 0 0 {99 * self.ticks} 0 0 0 0 0 0\n")
            os.replace(tmp, self.proc / "stat")
            try:
                os.write(fd, self._meminfo().encode())
            except BrokenPipeError:
                pass  # the reader went away early; it will open again
            os.close(fd)

    def close(self) -> None:
        self._stop = True
        fd = os.open(self.proc / "meminfo", os.O_RDONLY | os.O_NONBLOCK)
        self._thread.join(timeout=5)
        os.close(fd)
