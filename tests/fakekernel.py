"""A fake sysfs/procfs tree whose memory.reclaim behaves like the kernel's.

This machine has no cgroup v2 memory controller, so ``gradual`` is tested on
a tree where ``sys/fs/cgroup/memory.reclaim`` is a FIFO served by a thread:
each request written to it is applied at once (shrinking Cached, never below
a hot set) and ``proc/meminfo`` is rewritten. meminfo and ``proc/stat`` are
regular files, always replaced by a rename, so any number of readers at once
(the dashboard's sampler beside a reclaim's own) each read a whole file, as
from the kernel. A ticker rewrites /proc/stat every 10 ms (it advances at 1 %
CPU busy); meminfo is rewritten whenever Cached changes (a reclaim request, a
test's change to :attr:`FakeKernel.cached`). The ticker is a process of its
own: its CPU time is not the test process's, whose idleness Textual's Pilot
measures (``pilot.pause()`` returns once the process is idle, else after 1 s;
a ticker thread kept it from ever looking idle, and each pause took 1 s).

The reclaimer waits at least ``GRADUAL_PAUSE`` (0.25 s) after each write
before it measures, so the serving thread, which wakes on the write itself,
has long applied the request when the step is read back. A test that gives the
reclaimer no real sleep passes :meth:`FakeKernel.wait_applied` instead, which
returns once every request written so far is applied.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

from helpers import TREES

KiB = 1024
TICK = 0.01  # seconds between rewrites of stat

# The ticker process: advances proc/stat from the given count every TICK; gone with its parent.
TICKER = r"""
import os, sys, time
stat, ticks, tick, parent = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
tmp = os.path.join(os.path.dirname(stat), ".stat.tick")
while os.getppid() == parent:
    ticks += 1
    with open(tmp, "w") as f:
        f.write(f"cpu  {ticks} 0 0 {99 * ticks} 0 0 0 0 0 0\n")
    os.replace(tmp, stat)
    time.sleep(tick)
"""


class FakeKernel:
    def __init__(self, root: Path, cached: int, hot: int, with_reclaim: bool = True):
        shutil.copytree(TREES / "linux-vm", root)
        self.root = root
        self.proc = root / "proc"
        self.meminfo_text = (self.proc / "meminfo").read_text()
        self._cached, self.hot = cached, hot
        self.requests: list[str] = []
        self._lock = threading.Lock()  # one writer of the files at a time
        self.reclaim = root / "sys/fs/cgroup/memory.reclaim"
        for knob in ("drop_caches", "compact_memory"):
            (self.proc / "sys/vm").mkdir(parents=True, exist_ok=True)
            (self.proc / "sys/vm" / knob).write_text("")
        self.ticks = 10**6  # beyond the recorded counters, so CPU busy is known (and idle)
        self._stop = threading.Event()
        self._publish()
        self._replace("stat", f"cpu  {self.ticks} 0 0 {99 * self.ticks} 0 0 0 0 0 0\n")
        self._ticker = subprocess.Popen([sys.executable, "-c", TICKER, str(self.proc / "stat"), str(self.ticks),
                                         str(TICK), str(os.getpid())])
        weakref.finalize(self, self._ticker.kill)  # a kernel a test never closed: its ticker goes with it
        first = (self.proc / "stat").read_text()
        deadline = time.monotonic() + 30
        while (self.proc / "stat").read_text() == first and time.monotonic() < deadline:
            time.sleep(0.01)  # from the first tick on, /proc/stat advances as the kernel's does
        self._threads = []
        self._fifo: int | None = None
        if with_reclaim:
            self.reclaim.parent.mkdir(parents=True, exist_ok=True)
            os.mkfifo(self.reclaim)
            # Held open for reading (so a writer's open never blocks) and for writing (so the
            # read end never sees end-of-file between writers): readable means a request waits.
            self._fifo = os.open(self.reclaim, os.O_RDONLY | os.O_NONBLOCK)
            self._fifo_w = os.open(self.reclaim, os.O_WRONLY)
            self._threads.append(threading.Thread(target=self._serve_reclaim, daemon=True))
        for t in self._threads:
            t.start()

    @property
    def cached(self) -> int:
        return self._cached

    @cached.setter
    def cached(self, value: int) -> None:
        """A test's change (the user reclaimed by hand) is in meminfo when this returns."""
        with self._lock:
            self._cached = value
            self._publish_locked()

    def _meminfo(self) -> str:
        return re.sub(r"^Cached:\s+\d+ kB", f"Cached: {self._cached // KiB} kB", self.meminfo_text, flags=re.M)

    def _replace(self, name: str, text: str) -> None:
        tmp = self.proc / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, self.proc / name)  # a reader sees the old file or the new, never half of one

    def _publish(self) -> None:
        with self._lock:
            self._publish_locked()

    def _publish_locked(self) -> None:
        self._replace("meminfo", self._meminfo())

    def _waiting(self) -> bool:
        return bool(select.select([self._fifo], [], [], 0)[0])

    def _serve_reclaim(self) -> None:
        while not self._stop.is_set():
            if not select.select([self._fifo], [], [], 0.05)[0]:
                continue
            with self._lock:  # read and apply under the lock: wait_applied sees a request waiting or done
                text = os.read(self._fifo, 4096).decode()
                self.requests.append(text)
                wanted = int(text.split()[0])
                self._cached -= max(0, min(wanted, self._cached - self.hot))
                self._publish_locked()

    def wait_applied(self, _seconds: float = 0.0, timeout: float = 5.0) -> None:
        """A reclaimer's ``sleep`` for tests: returns when no written request is left unapplied."""
        end = time.monotonic() + timeout
        while self._fifo is not None and time.monotonic() < end:
            with self._lock:
                if not self._waiting():
                    return
            time.sleep(0.001)

    def close(self) -> None:
        self._stop.set()
        self._ticker.kill()
        self._ticker.wait()
        for t in self._threads:
            t.join(timeout=5)
        if self._fifo is not None:
            os.close(self._fifo)
            os.close(self._fifo_w)
