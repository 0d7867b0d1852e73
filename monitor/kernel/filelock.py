"""An exclusive lock on a file, across processes; released when the holder dies (even by kill -9).

Two uses, each with its own file: one reclaim at a time on a machine
(:mod:`monitor.reclaim.reclaimer`), and one recorder per history (:mod:`monitor.watch.recorder`).
The file holds ``"<pid> <holder>"`` so whoever comes next can say who has it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from monitor.errors import UserError
from monitor.kernel.portable import device_key, open_flags, pread, pwrite


class LockHeld(Exception):
    """Someone holds the lock; ``pid`` and ``holder`` say who, where the file told."""

    def __init__(self, path: Path, pid: int | None, holder: str):
        super().__init__(f"{path} is held by pid {pid if pid is not None else '?'}")
        self.path, self.pid, self.holder = path, pid, holder


class FileLock:
    """``with FileLock(path, "vmmemctl watch"):`` -- raises :class:`LockHeld` when taken, and a
    one-line :class:`UserError` when the file cannot be made (a missing or unwritable folder).

    A user who cannot write a lock file someone else created opens it read-only, which is
    enough to lock it (the machine-wide reclaim lock in /run/lock is shared that way).
    """

    def __init__(self, path: Path, holder: str = ""):
        self.path = path
        self.holder = holder
        self.fd: int | None = None
        self.writable = False

    def __enter__(self) -> FileLock:
        fd, self.writable = self._open()
        if not _try_lock(fd):
            pid, _, holder = pread(fd, 200, 0).decode(errors="replace").strip().partition(" ")
            os.close(fd)
            raise LockHeld(self.path, int(pid) if pid.isdigit() else None, holder)
        if self.writable:
            os.ftruncate(fd, 0)
            pwrite(fd, f"{os.getpid()} {self.holder}".strip().encode(), 0)
        self.fd = fd
        return self

    def _open(self) -> tuple[int, bool]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                return os.open(self.path, os.O_RDWR | os.O_CREAT | open_flags("O_NOFOLLOW"), 0o644), True
            except PermissionError as denied:
                try:  # another user's lock file: locked read-only all the same
                    return os.open(self.path, os.O_RDONLY | open_flags("O_NOFOLLOW")), False
                except FileNotFoundError:  # none yet, and we may not make one: the cause is the permission
                    raise denied from None
        except OSError as exc:
            raise UserError(f"cannot open the lock file {self.path}: {exc.strerror or exc} "
                            "(pass --db PATH in a folder you can write)") from None

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            if self.writable:
                os.ftruncate(self.fd, 0)
            os.close(self.fd)  # closing releases the lock
            self.fd = None


def who_holds(path: Path) -> LockHeld | None:
    """Who holds ``path`` (its pid and holder words, where the file says), or None when nobody does.

    Asked without taking the lock: a reader that took it, even for a moment, made a watcher
    starting at that moment exit with "already recording (pid <the reader>)" (issue 24). The
    kernel lists every flock in /proc/locks; only where that cannot be read (not Linux) is the
    lock tried instead."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    holders = lock_pids(st.st_dev, st.st_ino)
    if holders is None:
        return _try_who_holds(path)
    if not holders:
        return None
    pid, holder = _record(path)
    return LockHeld(path, pid if pid is not None else max(holders[0], 0) or None, holder)


# /proc/locks, one line per lock (a waiter's line has "->" after the number, and holds nothing):
#   1: FLOCK  ADVISORY  WRITE 4242 00:2a:1234567 0 EOF
#   2: OFDLCK ADVISORY  READ  -1 00:2a:1234567 0 EOF
# The device is "major:minor" in hex ("%02x:%02x:%lu"). This machine's own locks: never read through
# --proc-root. The kernel leaves out an flock whose holder another PID namespace hides (another WSL
# distro); an OFD lock it lists everywhere, with pid -1 (monitor.kernel.vmclaim takes one for that).
PROC_LOCKS = "/proc/locks"


def lock_pids(dev: int, ino: int, proc_locks: str = PROC_LOCKS) -> list[int] | None:
    """The pids locking the file (dev, ino) (-1: an OFD lock; 0: not nameable here); None: unreadable."""
    try:
        with open(proc_locks, encoding="ascii", errors="replace") as fh:
            rows = [line.split() for line in fh.read().splitlines()]
    except OSError:
        return None
    key = f"{device_key(dev)}:{ino}"
    return [int(r[4]) if r[4].lstrip("-").isdigit() else 0 for r in rows
            if len(r) >= 6 and r[1] in ("FLOCK", "OFDLCK") and r[5] == key]


def _record(path: Path) -> tuple[int | None, str]:
    """What the holder wrote in the file: "<pid> <holder>" (or nothing readable)."""
    try:
        text = path.read_bytes()[:200].decode(errors="replace").strip()
    except OSError:
        return None, ""
    pid, _, holder = text.partition(" ")
    return (int(pid) if pid.isdigit() else None), holder


def _try_who_holds(path: Path) -> LockHeld | None:
    try:
        with FileLock(path):
            return None
    except LockHeld as held:
        return held
    except UserError:
        return None


def holder_pid(path: Path) -> int | None:
    """The PID holding ``path`` (0: held, PID unknown), or None when nobody does."""
    held = who_holds(path)
    return None if held is None else held.pid or 0


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":  # the Windows-side mode: no fcntl there
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
