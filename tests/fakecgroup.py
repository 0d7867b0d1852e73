"""Fake cgroup v2 groups in a FakeKernel tree, whose memory.reclaim behaves like the kernel's.

This machine's cgroup hierarchy is v1 and belongs to its own agent (never written here), so a
group's reclaim is tested on a tree: ``proc/self/mountinfo`` says cgroup2 is on /sys/fs/cgroup,
and each group is a directory with ``cgroup.controllers``, ``memory.stat``, ``cgroup.freeze``,
``cgroup.events`` and a ``memory.reclaim`` FIFO served by a thread, as
:class:`fakekernel.FakeKernel` serves the root's. A request evicts from the group's ``file``;
what it evicts below ``hot`` is read straight back (a set in use): ``file`` stays and the
group's ``workingset_refault_file`` counts those pages, as the kernel counts a refault.
"""

from __future__ import annotations

import os
import select
import threading
from pathlib import Path

PAGE = 4096
MOUNTINFO_V2 = ("25 30 0:23 / /sys rw,nosuid - sysfs sysfs rw\n"
                "36 25 0:31 / /sys/fs/cgroup rw,nosuid,nodev,noexec shared:9 - cgroup2 cgroup2 rw,nsdelegate\n")
MOUNTINFO_V1 = ("25 30 0:23 / /sys rw,nosuid - sysfs sysfs rw\n"
                "37 36 0:33 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory\n")


def write_mountinfo(proc: Path, text: str = MOUNTINFO_V2) -> None:
    (proc / "self").mkdir(parents=True, exist_ok=True)
    (proc / "self/mountinfo").write_text(text)


class FakeGroup:
    def __init__(self, cgroup_root: Path, rel: str, file: int, hot: int = 0, memory: bool = True,
                 reclaim: bool = True):
        self.dir = cgroup_root / rel
        self.dir.mkdir(parents=True, exist_ok=True)
        self.file, self.hot, self.refaults = file, hot, 0
        self.requests: list[str] = []
        self._lock = threading.Lock()
        (self.dir / "cgroup.controllers").write_text("memory pids\n" if memory else "pids\n")
        (self.dir / "cgroup.freeze").write_text("0\n")
        (self.dir / "cgroup.events").write_text("populated 1\nfrozen 0\n")
        (self.dir / "cgroup.procs").write_text("")
        self._stop = threading.Event()
        self._fifo = None
        if memory:
            self._publish()
        if memory and reclaim:
            path = self.dir / "memory.reclaim"
            os.mkfifo(path)
            self._fifo = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            self._fifo_w = os.open(path, os.O_WRONLY)
            self._thread = threading.Thread(target=self._serve, daemon=True)
            self._thread.start()

    def _publish(self) -> None:
        text = (f"anon 1048576\nfile {self.file}\nactive_file {self.hot}\ninactive_file {self.file - self.hot}\n"
                f"shmem 0\nworkingset_refault_file {self.refaults}\n")
        tmp = self.dir / ".memory.stat.tmp"
        tmp.write_text(text)
        os.replace(tmp, self.dir / "memory.stat")

    def _serve(self) -> None:
        while not self._stop.is_set():
            if not select.select([self._fifo], [], [], 0.05)[0]:
                continue
            with self._lock:
                text = os.read(self._fifo, 4096).decode()
                self.requests.append(text)
                wanted = int(text.split()[0])
                evicted = min(wanted, self.file)
                below_hot = max(0, evicted - max(0, self.file - self.hot))
                self.file -= evicted - below_hot  # what was hot is read straight back
                self.refaults += below_hot // PAGE
                self._publish()

    def freeze(self, how: str = "freeze") -> None:
        if how == "freeze":
            (self.dir / "cgroup.freeze").write_text("1\n")
        else:
            (self.dir / "cgroup.events").write_text("populated 1\nfrozen 1\n")

    def close(self) -> None:
        self._stop.set()
        if self._fifo is not None:
            self._thread.join(timeout=5)
            os.close(self._fifo)
            os.close(self._fifo_w)
