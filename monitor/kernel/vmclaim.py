"""One watcher acts on the WSL2 VM: a claim all its distros share, in /mnt/wsl (microsoft/WSL#4654, #6196).

The claim is a :class:`~monitor.kernel.filelock.FileLock` (flock: let go when its holder dies, even by
kill -9) on a file holding the holder's JSON record. Observers read /proc/locks rather than try the lock (a
watcher starting then would see the VM taken). Each distro has its own PID namespace, where /proc/locks
hides an flock it cannot name the holder of: so the holder also takes an OFD read lock, listed in all."""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from monitor.errors import UserError
from monitor.kernel.filelock import PROC_LOCKS, FileLock, LockHeld, lock_pids
from monitor.kernel.portable import open_flags, pread, pwrite
from monitor.kernel.procfs import LocalFiles

ENV_DIR = "VMMEMCTL_VM_CLAIM_DIR"
WSL_SHARED = "/mnt/wsl"
CLAIM_NAME = "vm.claim"
FIX = f"set {ENV_DIR} to a folder you can write"


class ClaimDir(NamedTuple):
    path: Path
    vm_wide: bool  # every distro of the VM sees this folder
    why: str


def claim_dir(environ: Mapping[str, str], files_root: str | Path = "/proc", *, run_lock="/run/lock") -> ClaimDir:
    """Where the claim lives, whether every distro of the VM shares it, and why, in words."""
    if environ.get(ENV_DIR):
        return ClaimDir(Path(environ[ENV_DIR]), True, f"{ENV_DIR} names it")
    if _mounted(WSL_SHARED, files_root):
        return ClaimDir(Path(WSL_SHARED) / "vmmemctl", True, f"{WSL_SHARED} is mounted: all the VM's distros share it")
    local = f"{WSL_SHARED} is not mounted (not WSL2?)"
    if os.path.isdir(run_lock) and os.access(run_lock, os.W_OK):
        return ClaimDir(Path(run_lock) / "vmmemctl-vm", False, f"{local}: a claim of this distro only")
    from monitor.kernel.dirs import user_runtime_dir  # only this last fallback needs it

    return ClaimDir(user_runtime_dir(environ), False,
                    f"{local} and {run_lock} is not writable: a claim of this user's watchers only")


def distro_name(environ: Mapping[str, str]) -> str:
    return environ.get("WSL_DISTRO_NAME") or socket.gethostname()


def _mounted(path: str, files_root: str | Path) -> bool:
    files = LocalFiles(files_root)
    text = files.read(["proc/self/mountinfo"])["proc/self/mountinfo"]
    files.close()
    if text is None:
        return os.path.ismount(path)
    # The 5th field is the mount point, with " " as \040 (and \t \n \\): /mnt/wsl has none of them.
    return any(len(fields := line.split()) > 4 and fields[4] == path for line in text.splitlines())


@dataclass(frozen=True)
class Owner:
    pid: int | None  # as the holder saw itself: in its own PID namespace
    distro: str
    holder: str
    since: float | None

    def words(self) -> str:
        text = f"pid {self.pid or '?'} in distro {self.distro or '?'}" + (f" ({self.holder})" if self.holder else "")
        if self.since is not None:
            local = time.localtime(self.since)
            text += time.strftime(" since %H:%M" if local[:3] == time.localtime()[:3] else " since %F %H:%M", local)
        return text


class VmClaim:
    """``try_take()`` -> None when this process now acts on the VM, else the :class:`Owner` who does. Folder
    0o755, file 0o644 whatever the umask: anyone may open it, and read-only can lock (not write a record)."""

    def __init__(self, directory: str | Path, distro: str, holder: str = "vmmemctl watch", *, proc_locks=PROC_LOCKS):
        self.directory = Path(directory)
        self.path = self.directory / CLAIM_NAME
        self.distro, self.holder, self.proc_locks = distro, holder, proc_locks
        self._lock: FileLock | None = None

    def try_take(self) -> Owner | None:
        if self._lock is not None:
            return None
        self._prepare()
        for _ in range(2):  # the owner may let go between our try and our look: try once more
            lock = FileLock(self.path)
            try:
                lock.__enter__()
            except LockHeld:
                if (found := self.owner()) is not None:
                    return found
                continue
            except UserError as err:  # FileLock's advice (--db) does not fit here; its OSError does
                raise UserError(f"cannot open the VM claim {self.path}: {_why(err.__context__)} ({FIX})") from None
            self._lock = lock
            self._announce(lock)
            return None
        return self._record() or Owner(None, "", "", None)

    def release(self) -> None:
        if self._lock is not None:
            self._lock.__exit__(None, None, None)  # empties the record; the close drops both locks
            self._lock = None

    def owner(self) -> Owner | None:
        """Who holds the claim, asked without taking any lock (never disturbs a watcher starting now)."""
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise UserError(f"cannot read the VM claim {self.path}: {_why(exc)} ({FIX})") from None
        pids, record = lock_pids(st.st_dev, st.st_ino, self.proc_locks), self._record()
        if pids is None:  # no /proc/locks (not Linux): the record, if its pid still runs
            return record if record is not None and _alive(record.pid) else None
        if not pids:
            return None
        seen = max(pids)  # > 0: an flock holder in our PID namespace, so in our distro
        if seen > 0 and (record is None or record.pid != seen):
            return Owner(seen, self.distro, "", None)  # it opened read-only: the record is not its own
        return record or Owner(None, "", "", None)

    def _prepare(self) -> None:
        try:
            try:
                self.directory.mkdir(mode=0o755, parents=True)
                os.chmod(self.directory, 0o755)  # only a folder we made: the umask may have narrowed it
            except FileExistsError:
                pass
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | open_flags("O_NOFOLLOW"), 0o644)
            if hasattr(os, "fchmod"):  # not on Windows before 3.13
                os.fchmod(fd, 0o644)
            os.close(fd)
        except FileExistsError:
            pass  # made before, perhaps by another user: FileLock then opens it read-only
        except OSError as exc:
            raise UserError(f"cannot make the VM claim {exc.filename or self.path}: {_why(exc)} ({FIX})") from None

    def _announce(self, lock: FileLock) -> None:
        assert lock.fd is not None
        if lock.writable:  # over FileLock's "<pid>", then cut to length: no second moment with it empty
            record = json.dumps({"pid": os.getpid(), "distro": self.distro, "holder": self.holder,
                                 "since": time.time()}, separators=(",", ":")).encode()
            pwrite(lock.fd, record, 0)
            os.ftruncate(lock.fd, len(record))
        try:  # an OFD read lock beside the flock: /proc/locks lists it in every PID namespace (distro)
            import fcntl
            # struct flock: l_type, l_whence, l_start, l_len (0: to the end), l_pid (0 for OFD locks)
            fcntl.fcntl(lock.fd, fcntl.F_OFD_SETLK, struct.pack("hhqqi4x", fcntl.F_RDLCK, os.SEEK_SET, 0, 0, 0))
        except (ImportError, AttributeError, OSError):
            pass  # no OFD locks (not Linux, or before 3.15): watchers of our own namespace still see the flock

    def _record(self) -> Owner | None:
        try:  # never through a link, nor waiting on a FIFO put in its place
            fd = os.open(self.path, os.O_RDONLY | open_flags("O_NOFOLLOW", "O_NONBLOCK"))
            try:
                data, _ = json.JSONDecoder().raw_decode(pread(fd, 4096, 0).decode(errors="replace").strip())
            finally:
                os.close(fd)
            pid, since = data.get("pid"), data.get("since")
            return Owner(pid if isinstance(pid, int) else None, str(data.get("distro") or ""),
                         str(data.get("holder") or ""), float(since) if isinstance(since, (int, float)) else None)
        except (OSError, ValueError, AttributeError):  # missing, empty, half written, not ours
            return None


def _alive(pid: int | None) -> bool:
    if pid is None or pid <= 0 or sys.platform == "win32":  # there os.kill(pid, 0) would end it
        return pid is not None and pid > 0
    try:
        return os.kill(pid, 0) is None
    except OSError as exc:
        return isinstance(exc, PermissionError)  # alive, but another user's


def _why(exc: BaseException | None) -> str:
    return (getattr(exc, "strerror", None) or str(exc)).replace("\n", " ")
