"""vmmemctl's folders for one user: config, data, state and logs.

On Linux by the XDG base-directory rules, in the standard library: ``$XDG_<KIND>_HOME`` when it is an
absolute path, else ``~/.config``, ``~/.local/share``, ``~/.local/state``, then ``vmmemctl`` (logs in
the state folder's ``log``). That is what platformdirs computes there (tests/test_service.py keeps
the two equal), but importing platformdirs' Linux module costs the watcher 1.2 MiB of its 24 MiB
budget (it imports tempfile, and with it shutil, random, bz2 and lzma). Elsewhere (host mode on
Windows or macOS) platformdirs decides; so does the runtime folder whenever ``$XDG_RUNTIME_DIR`` is
not what the spec asks of it (platformdirs' fallbacks and ownership checks).
"""

from __future__ import annotations

import os
import posixpath
import stat
import sys
from pathlib import Path
from typing import Literal, Mapping

APP = "vmmemctl"
_FALLBACK = {"config": ".config", "data": ".local/share", "state": ".local/state"}


def xdg_dir(kind: Literal["config", "data", "state"], environ: Mapping[str, str] | None = None) -> str:
    """The XDG base folder (not yet vmmemctl's): ``$XDG_<KIND>_HOME`` when absolute, else under HOME."""
    environ = os.environ if environ is None else environ
    value = environ.get(f"XDG_{kind.upper()}_HOME", "").strip()
    if posixpath.isabs(value):
        return value
    home = environ.get("HOME", "")
    if not posixpath.isabs(home):
        home = str(Path.home())
    return f"{home}/{_FALLBACK[kind]}"


def user_dir(kind: Literal["config", "data", "state", "log"], environ: Mapping[str, str] | None = None) -> Path:
    """vmmemctl's own folder of ``kind`` for this user (nothing is created)."""
    if not sys.platform.startswith("linux"):
        import platformdirs

        return Path(getattr(platformdirs, f"user_{kind}_dir")(APP))
    if kind == "log":
        return Path(xdg_dir("state", environ)) / APP / "log"
    return Path(xdg_dir(kind, environ)) / APP


def user_runtime_dir(environ: Mapping[str, str] | None = None) -> Path:
    """vmmemctl's runtime folder for this user: ``$XDG_RUNTIME_DIR/vmmemctl`` when that is what the XDG
    spec asks of it (an absolute path to a folder of ours, mode 0700, not a symlink), else whatever
    platformdirs falls back to (it checks more, and warns; the warning is not ours to show)."""
    environ = os.environ if environ is None else environ
    path = environ.get("XDG_RUNTIME_DIR", "")
    if sys.platform.startswith("linux") and posixpath.isabs(path):
        try:
            st = os.lstat(path)
        except OSError:
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) == 0o700:
            return Path(path) / APP
    import warnings

    import platformdirs

    with warnings.catch_warnings():  # no XDG_RUNTIME_DIR (runuser, cron): platformdirs' fallback is fine
        warnings.simplefilter("ignore")
        return Path(platformdirs.user_runtime_dir(APP))
