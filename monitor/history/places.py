"""Where a watcher keeps its history and its control endpoint, and how a client finds a watcher.

    who runs it          history                                 control endpoint
    root: the system     /var/lib/vmmemctl/history.db             /run/vmmemctl/control.sock
    a user               $XDG_DATA_HOME/vmmemctl/history.db       $XDG_RUNTIME_DIR/vmmemctl/control.sock

A root watcher is the system watcher whether the systemd unit, the wsl.conf
boot line or the Windows task started it (the task's ``wsl.exe -u root`` once
put it in root's XDG folders, where no user's CLI looked: issue 24). A client
looks for a running system watcher first, then its user's own: libvirt's
``qemu:///system`` beside ``qemu:///session``. ``VMMEMCTL_SYSTEM_DIR`` and
``VMMEMCTL_RUN_DIR`` move the system places (tests, packagers).
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from monitor.config.schema import Config
from monitor.errors import UserError
from monitor.history.health import read_health
from monitor.history.instance import instance_lock_path
from monitor.kernel.filelock import who_holds
from monitor.kernel.users import user_name

SYSTEM_DIR = "/var/lib/vmmemctl"
SYSTEM_RUN_DIR = "/run/vmmemctl"
DB_NAME = "history.db"
CONTROL_NAME = "control.sock"


@dataclass(frozen=True)
class Places:
    scope: str  # "system" or "user"
    db: Path
    run_dir: Path  # the control endpoints live here

    @property
    def control(self) -> Path:
        return self.run_dir / CONTROL_NAME


def system_places(environ: Mapping[str, str] | None = None) -> Places:
    environ = os.environ if environ is None else environ
    return Places("system", Path(environ.get("VMMEMCTL_SYSTEM_DIR") or SYSTEM_DIR) / DB_NAME,
                  Path(environ.get("VMMEMCTL_RUN_DIR") or SYSTEM_RUN_DIR))


def user_places() -> Places:
    from monitor.kernel.dirs import user_dir, user_runtime_dir

    return Places("user", user_dir("data") / DB_NAME, user_runtime_dir())


def own_places(environ: Mapping[str, str] | None = None) -> Places:
    """Where this process's watcher records: the system places for root, else the user's."""
    return system_places(environ) if _euid() == 0 else user_places()


def control_path(db: Path, environ: Mapping[str, str] | None = None) -> Path:
    """The control endpoint of a watcher recording ``db``: the usual name for its own places'
    history, else one named after the history (a `watch --db` beside the service's)."""
    places = own_places(environ)
    if _same(db, places.db):
        return places.control
    # A name, not a secret: crc32 (zlib), since hashlib would load OpenSSL's libcrypto into the watcher
    # (~4 MiB of RSS). Two histories that collided would meet the endpoint's lock, not each other's socket.
    digest = f"{zlib.crc32(str(db.expanduser().absolute()).encode()):08x}"
    return places.run_dir / f"control-{digest}.sock"


@dataclass(frozen=True)
class Watcher:
    """A running watcher, as a client sees it (``status --json``: ``"watcher"``)."""

    pid: int
    user: str
    db: Path
    control: Path | None
    since: float | None
    holder: str  # "vmmemctl watch", or a standalone dashboard

    def to_json(self) -> dict:
        return {"pid": self.pid, "user": self.user, "db": str(self.db),
                "control": str(self.control) if self.control else None, "since": self.since, "holder": self.holder}

    def words(self) -> str:
        return f"{self.holder} (pid {self.pid}, {self.user}) recording {self.db}"


def watcher_of(db: Path) -> Watcher | None:
    """The process recording ``db`` now, or None; asked without taking its lock."""
    held = who_holds(instance_lock_path(db))
    if held is None:
        return None
    health = read_health(db)
    trusted = health is not None and health.pid == held.pid
    control = Path(health.control) if trusted and health.control else None
    return Watcher(held.pid or 0, _user_of(held.pid), db, control, health.since if trusted else None,
                   held.holder or "vmmemctl watch")


def find_watcher(environ: Mapping[str, str] | None = None) -> Watcher | None:
    """A running system watcher, else this user's own; None when neither runs."""
    euid = _euid()  # None on Windows: no system watcher there (the Windows task runs it in the distro)
    candidates = ([] if euid is None else [system_places(environ)]) + ([] if euid == 0 else [user_places()])
    for places in candidates:
        found = watcher_of(places.db)
        if found is not None:
            return found
    return None


def _user_of(pid: int | None) -> str:
    try:
        uid = os.stat(f"/proc/{pid}").st_uid if pid else None
    except OSError:
        uid = None
    return "?" if uid is None else user_name(uid) or f"uid {uid}"


def _euid() -> int | None:
    return os.geteuid() if hasattr(os, "geteuid") else None  # Windows: no root, the user's places


def _same(a: Path, b: Path) -> bool:
    return a.expanduser().absolute() == b.expanduser().absolute()


def choose_history(config_db: str, override: str | None, environ: Mapping[str, str] | None = None
                   ) -> tuple[Path, Watcher | None]:
    """The history a client reads and the watcher recording it (or None): ``--db``, else [general] db,
    else a running system watcher's, else the user's own watcher's; with none running, this
    process's own history, or the system's when only that one exists."""
    if override or config_db:
        db = db_path_for(config_db, override)
        return db, watcher_of(db)
    found = find_watcher(environ)
    if found:
        return found.db, found
    own, system = own_places(environ), system_places(environ)
    if not own.db.exists() and _euid() is not None and system.db.exists():  # nobody records now: the service's history is still there
        return system.db, None
    return own.db, None


def default_db_path() -> Path:
    """This process's own history: the system's for root, the user's otherwise."""
    return own_places().db


def db_path(config: Config, override: str | None = None) -> Path:
    """The history this process records: ``--db``, else [general] db, else its own places' (the
    system's for root, the user's otherwise). Clients use monitor.history.places.choose_history."""
    return db_path_for(config.general.db, override)


def db_path_for(config_db: str, override: str | None = None) -> Path:
    """As :func:`db_path`, from the config's ``db`` string.

    A ``--db`` whose folder does not exist is a typo until shown otherwise: one line, and no folder
    made (it once started a second watcher, with the user's rules, beside the real one: issue 24).
    The default folder, and [general] db's, are made when the history is first written."""
    if override:
        folder = Path(override).expanduser().parent
        if not folder.is_dir():
            why = "is not a folder" if folder.exists() else "does not exist (create it first, or fix the path)"
            raise UserError(f"--db {override}: {folder} {why}")
    return Path(override or config_db or default_db_path()).expanduser()
