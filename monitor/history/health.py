"""Whether the history is being written: a small record beside the database that `status` and the TUI read.

The recorder cannot say "the disk is full" in the database it cannot write, so
it says it here: ``history.db.recorder.json``, made when recording starts (when
there is room) at a fixed size and from then on overwritten in place
(``pwrite`` of the same 512 bytes, never truncated), which needs no new block
on a full disk (tried on a full 2 MiB tmpfs: tests/test_faults.py).

    {"pid": 4242, "unwritten_since": 1733320920.0, "reason": "disk full", "backlog": 118, "dropped": 0,
     "control": "/run/vmmemctl/control.sock", "since": 1733320000.0}

It also says where the recorder takes requests (``control``) and since when it
records (``since``): how a client finds the watcher of a history (monitor.history.places).

Readers trust it only while its pid still holds the history's lock.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from monitor.history.instance import recording_pid
from monitor.kernel.portable import open_flags, pwrite

RECORD_SIZE = 512


def health_path(db: Path) -> Path:
    return db.with_name(db.name + ".recorder.json")


@dataclass(frozen=True)
class Health:
    pid: int | None = None
    unwritten_since: float | None = None  # the first sample not written, None while all is written
    reason: str | None = None  # "disk full", "read-only", ...
    backlog: int = 0  # samples held in memory, to be written when the history takes them again
    dropped: int = 0  # the oldest, let go once the backlog was full
    control: str | None = None  # the recorder's control endpoint (a watcher's), if it has one
    since: float | None = None  # when it started recording

    def words(self, localtime=time.localtime) -> str:
        """"history not written since 14:02: disk full (118 samples held)", or ""."""
        if self.unwritten_since is None:
            return ""
        held = f"{self.backlog} samples held" + (f", {self.dropped} oldest dropped" if self.dropped else "")
        return f"history not written since {time.strftime('%H:%M', localtime(self.unwritten_since))}: " \
               f"{self.reason or 'error'} ({held})"


class HealthRecord:
    """The writer's side: open once at start (may raise OSError), then :meth:`write` in place."""

    def __init__(self, db: Path, first: Health | None = None):
        self.path = health_path(db)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | open_flags("O_NOFOLLOW"), 0o644)
        self.last: Health | None = None
        self.write(first or Health(os.getpid()))

    def write(self, health: Health) -> None:
        if health == self.last:
            return
        data = json.dumps(asdict(health)).encode()[:RECORD_SIZE]
        try:
            pwrite(self.fd, data.ljust(RECORD_SIZE), 0)  # same size, same block: works on a full disk
            self.last = health
        except OSError:
            pass  # the log says what failed; this record is a courtesy

    def close(self) -> None:
        self.write(Health())  # nobody records now
        os.close(self.fd)


def read_health(db: Path) -> Health | None:
    """The record, if there is one and it parses (a reader checks the pid still records)."""
    try:
        raw = json.loads(health_path(db).read_bytes().decode(errors="replace").strip() or "null")
        return Health(**{k: raw.get(k) for k in Health.__dataclass_fields__ if k in raw}) if raw else None
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def history_words(db: Path) -> str:
    """What a reader shows: "" while the running recorder writes its history."""
    health = read_health(db)
    if health is None or not health.unwritten_since:
        return ""
    pid = recording_pid(db)
    return health.words() if pid is not None and pid in (0, health.pid) else ""


def failure_reason(exc: BaseException) -> str:
    """A store failure in a user's words."""
    code = getattr(exc, "sqlite_errorcode", None)
    words = {sqlite3.SQLITE_FULL: "disk full", sqlite3.SQLITE_READONLY: "read-only",
             sqlite3.SQLITE_IOERR: "disk I/O error", sqlite3.SQLITE_CANTOPEN: "cannot open the file",
             sqlite3.SQLITE_NOTADB: "not a database"}
    if code is not None:
        base = code & 0xFF  # extended codes (SQLITE_IOERR_WRITE, SQLITE_READONLY_DBMOVED...) by their base
        if base in words:
            return words[base]
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc)
    return "disk full" if "full" in text else text
