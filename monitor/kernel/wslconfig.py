"""WSL's own reclaim setting, read from the Windows user's ``.wslconfig``.

    [experimental]
    autoMemoryReclaim = gradual      # gradual | dropcache | disabled

WSL reads ``%USERPROFILE%\\.wslconfig``; section, key and value are
case-insensitive; an unknown value is ignored with a warning and the default
kept, which is ``dropcache`` since May 2024 (MicrosoftDocs/WSL#2086; see
docs/wsl-facts.md). From inside WSL the file is under ``<C: mount>/Users/<you>``
(``/mnt/c`` unless ``[automount] root`` moved it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from monitor.kernel.procfs import SystemFiles

MODES = ("gradual", "dropcache", "disabled")
DEFAULT_MODE = "dropcache"


@dataclass(frozen=True)
class WslReclaim:
    mode: str | None  # gradual | dropcache | disabled; None when unknown
    source: str  # where it came from, in words

    def describe(self) -> str:
        return f"{self.mode or 'unknown'} ({self.source})"


def _is_file(path: Path) -> bool:
    """is_file() that answers False for what we may not look into (another user's profile, issue 17.4):
    Python 3.11 raises PermissionError there instead of returning False."""
    try:
        return path.is_file()
    except OSError:
        return False


def find_wslconfig(explicit: str, environ: Mapping[str, str], users_dir: Path | None = None,
                   windows: bool = False, files: SystemFiles | None = None,
                   session_profile: str | None = None) -> Path | None:
    """The .wslconfig to read: the configured path, the Windows profile, or the one match under Users.

    ``session_profile`` is ``$env:USERPROFILE`` as the running PowerShell session said it (the interop
    probe asks it once): WSL reads the .wslconfig there, so where that folder is mounted here, its
    answer is the answer (no file there: none, never another user's). Else ``USERPROFILE`` from the
    environment, which may be a Windows path (``C:\\Users\\me``) or, through ``WSLENV=USERPROFILE/p``,
    already a POSIX one; a Windows path is mapped through /proc/mounts (a moved ``[automount] root`` is
    followed), then as wslpath does (/mnt/<drive>). Last, the guess under Users.
    """
    if explicit:
        return Path(explicit)
    if windows:
        return Path(environ.get("USERPROFILE") or Path.home()) / ".wslconfig"
    from monitor.kernel.windows import find_system_drive, windows_to_posix

    session = windows_to_posix(session_profile, files, environ) if session_profile else None
    if session is not None and _is_dir(session):
        return session / ".wslconfig" if _is_file(session / ".wslconfig") else None

    profile = environ.get("USERPROFILE", "")  # present when WSLENV passes it through
    # ``files`` is the /proc seam (``--proc-root``); without it no mount table is read: a POSIX
    # USERPROFILE and WSL's default automount root are all there is to go on.
    converted = windows_to_posix(profile, files, environ) if profile and (files or profile.startswith("/")) else None
    if converted and _is_file(converted / ".wslconfig"):
        return converted / ".wslconfig"
    if users_dir is None:
        drive = find_system_drive(files, environ)[0] if files is not None else None
        users_dir = (drive or Path("/mnt/c")) / "Users"
    user = environ.get("USER", "")
    if user and _is_file(users_dir / user / ".wslconfig"):
        return users_dir / user / ".wslconfig"
    try:
        entries = list(users_dir.iterdir())
    except OSError:
        return None
    matches = [p / ".wslconfig" for p in entries if _is_file(p / ".wslconfig")]
    return matches[0] if len(matches) == 1 else None


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def read_wsl_reclaim(path: Path | None) -> WslReclaim:
    if path is None:
        return WslReclaim(None, f".wslconfig not found; WSL's default since 2024 is {DEFAULT_MODE}")
    from monitor.kernel.windows import decode_windows_text

    try:
        # Windows PowerShell 5.1's `>` writes UTF-16LE with a BOM, Notepad may write a UTF-8 BOM;
        # WSL reads both, so do we.
        text = decode_windows_text(path.read_bytes())
    except OSError as exc:
        return WslReclaim(None, f"{path}: {exc.strerror or exc}")
    import configparser  # only where a .wslconfig is read

    parser = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"),
                                       inline_comment_prefixes=("#", ";"))
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        return WslReclaim(None, f"{path}: unreadable ({exc.__class__.__name__})")
    sections = {name.lower(): name for name in parser.sections()}
    raw = None
    if "experimental" in sections:
        raw = parser[sections["experimental"]].get("automemoryreclaim")  # configparser lowercases keys
    if raw is None:
        return WslReclaim(DEFAULT_MODE, f"{path} does not set it; WSL's default")
    value = raw.strip().strip('"').lower()
    if value not in MODES:
        return WslReclaim(DEFAULT_MODE, f"{path}: {raw!r} is not a mode WSL knows; it keeps its default")
    return WslReclaim(value, str(path))


def detect_wsl_reclaim(explicit: str, env_kind: str, files: SystemFiles,
                       environ: Mapping[str, str] | None = None, session_profile: str | None = None) -> WslReclaim | None:
    """WSL's reclaim mode where WSL is in play (WSL2 or Windows), else None. ``session_profile``: the
    PowerShell session's %USERPROFILE% (monitor.probes.probeset.Probes.windows_profile)."""
    if env_kind not in ("wsl2", "windows"):
        return None
    environ = os.environ if environ is None else environ
    return read_wsl_reclaim(find_wslconfig(explicit, environ, windows=env_kind == "windows", files=files,
                                           session_profile=session_profile))
