"""Windows as seen from inside WSL2: where its drive and tools are, and how to read what they write.

One finder for every Windows tool (``powershell.exe``, ``tasklist.exe``,
``whoami.exe``): PATH first (WSL appends Windows' PATH to a login shell's),
then the Windows folders of the system drive, but only on a WSL2 kernel.
It is keyed on the kernel, not on ``WSL_INTEROP``/``WSL_DISTRO_NAME``:
under systemd, and in a unit installed with ``sudo``, neither variable is
set and PATH has no Windows folders, yet interop works (WSL's init finds
``/run/WSL/1_interop`` by itself).

The system drive is not always ``/mnt/c``: ``[automount] root`` in
/etc/wsl.conf moves it. ``/proc/mounts`` says where it is; a drvfs mount
of ``C:\\`` looks like this (octal escapes as the kernel writes them,
``\\134`` is a backslash; newer builds say ``drvfs`` as the source and
keep the drive in ``path=``):

    C:\\134 /mnt/c 9p rw,noatime,dirsync,aname=drvfs;path=C:\\134;uid=1000;gid=1000;symlinkroot=/mnt/,...
    drvfs /windir/c 9p rw,noatime,aname=drvfs;path=C:\\;uid=1000,...

Stdlib only: the CLI's ``service install`` and the plyer child import it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath
from typing import Mapping, Sequence

from monitor.errors import UserError
from monitor.kernel.procfs import SystemFiles

# Where Windows keeps the tools we run, relative to the system drive's root.
TOOL_DIRS = ("Windows/System32/WindowsPowerShell/v1.0", "Windows/System32")
DRVFS_TYPES = ("9p", "drvfs", "virtiofs")
DEFAULT_DRIVE = Path("/mnt/c")  # WSL's default automount root + "c": only the last resort
DISTRO_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")  # what vmmemctl accepts as a WSL distro name, everywhere

_DRIVE = re.compile(r"^([A-Za-z]):\\?$")
_PATH_OPTION = re.compile(r"(?:^|[;,])path=([A-Za-z]):\\")
_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    r"""/proc/mounts escapes space, tab, newline and backslash as \040 \011 \012 \134."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_drvfs_mounts(text: str) -> dict[str, str]:
    """Drive letter (lower case) -> mount point, for each Windows drive mounted into WSL."""
    drives: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3 or fields[2] not in DRVFS_TYPES:
            continue
        options = _unescape(fields[3]) if len(fields) > 3 else ""
        match = _DRIVE.match(_unescape(fields[0])) or _PATH_OPTION.search(options)
        if match:
            drives.setdefault(match.group(1).lower(), _unescape(fields[1]))
    return drives


def is_wsl2_kernel(files: SystemFiles) -> bool:
    """The kernel (not the environment) says WSL2: what a systemd service still sees."""
    from monitor.kernel.environment import detect_environment

    return detect_environment(files, {}).kind == "wsl2"


def _has_windows(root: Path) -> bool:
    try:
        return (root / "Windows" / "System32").is_dir()
    except OSError:
        return False


def _wslpath(windows_path: str, environ: Mapping[str, str]) -> str | None:
    """``wslpath -u`` (WSL's own converter, a link to /init); None when it is missing or fails."""
    exe = shutil.which("wslpath", path=environ.get("PATH") or os.defpath)
    if not exe:
        return None
    try:
        done = subprocess.run([exe, "-u", windows_path], capture_output=True, text=True, timeout=5,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = done.stdout.strip()
    return out if done.returncode == 0 and out.startswith("/") else None


def find_system_drive(files: SystemFiles, environ: Mapping[str, str] | None = None) -> tuple[Path | None, str]:
    """(where ``C:\\`` is mounted, how we know); None when no Windows drive is in sight.

    In order: a drvfs mount holding ``Windows/System32`` (C: first), a
    POSIX-style ``USERPROFILE`` (what ``WSLENV=USERPROFILE/p`` passes),
    ``wslpath -u C:\\``, and only then ``/mnt/c``. ``files``: the one /proc seam (``--proc-root``).
    """
    environ = os.environ if environ is None else environ
    drives = parse_drvfs_mounts(files.read(["proc/mounts"])["proc/mounts"] or "")
    for letter in sorted(drives, key=lambda d: (d != "c", d)):
        if _has_windows(Path(drives[letter])):
            return Path(drives[letter]), f"/proc/mounts: {letter.upper()}:\\ on {drives[letter]}"
    profile = environ.get("USERPROFILE", "")
    if profile.startswith("/") and len(Path(profile).parts) >= 3 and _has_windows(Path(*Path(profile).parts[:-2])):
        return Path(*Path(profile).parts[:-2]), f"USERPROFILE={profile}"
    converted = _wslpath("C:\\", environ)
    if converted and _has_windows(Path(converted)):
        return Path(converted), f"wslpath -u C:\\ -> {converted}"
    if _has_windows(DEFAULT_DRIVE):
        return DEFAULT_DRIVE, f"{DEFAULT_DRIVE} (WSL's default automount root)"
    return None, "no Windows drive mounted (no drvfs mount of C:\\ in /proc/mounts, no /mnt/c/Windows)"


def windows_to_posix(path: str, files: SystemFiles | None, environ: Mapping[str, str] | None = None) -> Path | None:
    """``C:\\Users\\me`` -> where it is mounted here (``/mnt/c/Users/me``, or under a moved root)."""
    if path.startswith("/"):
        return Path(path)  # already POSIX (WSLENV's /p flag)
    match = re.match(r"^([A-Za-z]):[\\/]?(.*)$", path)
    if not match:
        return None
    drives = parse_drvfs_mounts(files.read(["proc/mounts"])["proc/mounts"] or "") if files is not None else {}
    rest = match.group(2).replace("\\", "/")
    letter = match.group(1).lower()
    if letter in drives:
        return Path(drives[letter]) / rest
    converted = _wslpath(path, os.environ if environ is None else environ)
    return Path(converted) if converted else Path("/mnt") / letter / rest


def find_windows_tool(name: str, environ: Mapping[str, str] | None = None,
                      files: SystemFiles | None = None) -> str | None:
    """``name`` (``powershell.exe``) on PATH, else in the system drive's Windows folders on a WSL2 kernel.

    Not WSL2 (plain Linux, a dual boot with a Windows disk mounted): only
    PATH, so a Windows installation that is not our host is never run. Without ``files`` (the
    /proc seam, ``--proc-root``) only PATH too: this module never reads a /proc it was not given.
    """
    environ = os.environ if environ is None else environ
    found = shutil.which(name, path=environ.get("PATH") or os.defpath)
    if found:
        return found
    if files is None or not is_wsl2_kernel(files):
        return None
    drive, _ = find_system_drive(files, environ)
    if drive is None:
        return None
    for folder in TOOL_DIRS:
        candidate = drive / folder / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


# ------------------------------------------------------------------ text Windows tools write


def decode_windows_text(data: bytes) -> str:
    """Text a Windows tool wrote: UTF-16 with a BOM (PowerShell 5.1's ``>``), UTF-8 with or without one.

    UTF-16LE without a BOM (``wsl.exe``'s own messages unless WSL_UTF8=1)
    is recognised by its NULs in every other byte. Undecodable bytes become
    U+FFFD rather than an error: a message is for reading, not parsing.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", "replace")
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", "replace")
    if len(data) >= 4 and data[1::2].count(0) >= len(data) // 4 and data[0::2].count(0) == 0:
        return data.decode("utf-16-le", "replace")
    return data.decode("utf-8", "replace")


_CLIXML_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


def decode_clixml(text: str) -> str:
    """PowerShell's error stream as one line.

    A PowerShell whose stderr is redirected writes errors as CLIXML, not text:

        #< CLIXML
        <Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">
        <S S="Error">foo : The term 'foo' is not recognized as the name of a cmdlet, ..._x000D__x000A_</S>
        <S S="Error">At line:1 char:1_x000D__x000A_</S>...</Objs>

    We keep the message (the lines before ``At line:``/``+ ``), joined with
    spaces. Text that is not CLIXML comes back as its first non-empty line.
    """
    head, marker, rest = text.partition("#< CLIXML")
    if not marker:
        return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    try:
        root = ET.fromstring(rest.strip())
    except ET.ParseError:
        return next((ln.strip() for ln in rest.splitlines() if ln.strip()), "unreadable CLIXML")
    parts = [el.text or "" for el in root.iter() if el.tag.endswith("}S") and el.get("S") == "Error"]
    joined = _CLIXML_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), "".join(parts))
    message = []
    for line in joined.splitlines():
        if line.strip().startswith(("At line:", "+ ", "At char:")):
            break
        if line.strip():
            message.append(line.strip())
    return " ".join(message) or next((ln.strip() for ln in head.splitlines() if ln.strip()), "")


def validate_prefix(prefix: Sequence[str]) -> None:
    """For ``wsl.exe -d NAME``: the distro name must be a plain name (it ends up on a command line)."""
    if not prefix:
        return
    program = PurePosixPath(prefix[0].replace("\\", "/")).name.lower()
    if program not in ("wsl.exe", "wsl"):
        return
    for flag, value in zip(prefix, list(prefix[1:]) + [""]):
        if flag in ("-d", "--distribution") and not DISTRO_NAME.fullmatch(value):
            raise UserError(f"got distro name {value!r}; expected a plain name (letters, digits, . _ -, "
                            "at most 64)")
