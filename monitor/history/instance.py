"""One recorder per history: the instance lock beside the database.

An flock on ``history.db.watch.lock``, held for the recorder's life and
released by the kernel when its process dies; the lock file names the holder
("vmmemctl watch", or a standalone dashboard) and its pid for whoever comes next.
"""

from __future__ import annotations

from pathlib import Path

from monitor.errors import UserError
from monitor.kernel.filelock import FileLock, LockHeld, holder_pid


class AlreadyRecording(UserError):
    exit_code = 1


def instance_lock_path(db: Path) -> Path:
    return db.with_name(db.name + ".watch.lock")


def take_instance_lock(db: Path, holder: str = "vmmemctl watch") -> FileLock:
    """One recorder per history: an flock beside the database, released when the process dies.
    ``holder`` names the recorder (the watcher, or a standalone dashboard) for whoever comes next."""
    lock = FileLock(instance_lock_path(db), holder)
    try:
        return lock.__enter__()
    except LockHeld as held:
        raise AlreadyRecording(f"{held.holder or 'vmmemctl watch'} is already recording to {db} "
                               f"(pid {held.pid if held.pid is not None else '?'})") from None


def recording_pid(db: Path) -> int | None:
    """The PID of the process recording to ``db`` (watcher or standalone dashboard), or None (0: unknown)."""
    return holder_pid(instance_lock_path(db))
