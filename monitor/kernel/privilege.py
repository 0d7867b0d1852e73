"""The one narrow privileged path: writing a few kernel knobs.

Only three files are ever written, with values of a fixed shape:

    proc/sys/vm/drop_caches       1 | 2 | 3
    proc/sys/vm/compact_memory    1
    sys/fs/cgroup/memory.reclaim  <bytes>[ swappiness=0]

As root, :class:`monitor.kernel.procfs.LocalFiles` writes them directly. A user who
is not root goes through ``sudo -n vmmemctl _privileged-write PATH VALUE``,
allowed by one sudoers line (README, "Reclaim without root"); that command
checks PATH and VALUE against the table above and writes under the real /proc
and /sys only, ignoring every config file, environment variable and
``--proc-root``, so the sudo rule grants exactly these writes and nothing more.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from pathlib import Path

from monitor.errors import PrivilegeError, UserError
from monitor.kernel.portable import is_root
from monitor.kernel.procfs import LocalFiles

DROP_CACHES = "proc/sys/vm/drop_caches"
COMPACT_MEMORY = "proc/sys/vm/compact_memory"
MEMORY_RECLAIM = "sys/fs/cgroup/memory.reclaim"
ALLOWED = {
    DROP_CACHES: re.compile(r"[123]"),
    COMPACT_MEMORY: re.compile(r"1"),
    MEMORY_RECLAIM: re.compile(r"\d{1,18}( swappiness=0)?"),
}


def vmmemctl_executable() -> str:
    """The absolute path of the ``vmmemctl`` script beside this Python (what sudoers names)."""
    beside = Path(sys.executable).with_name("vmmemctl")
    if beside.exists():
        return str(beside)
    import shutil  # (shutil imports bz2 and lzma: only where a program is looked for)

    return shutil.which("vmmemctl") or str(beside)


def sudoers_line(user: str | None = None) -> str:
    user = user or os.environ.get("SUDO_USER") or os.environ.get("USER") or "youruser"
    return f"{user} ALL=(root) NOPASSWD: {vmmemctl_executable()} _privileged-write *"


def check_allowed(path: str, value: str) -> None:
    pattern = ALLOWED.get(path)
    if pattern is None:
        raise UserError(f"_privileged-write: {path!r} is not one of {', '.join(ALLOWED)}")
    if not pattern.fullmatch(value):
        raise UserError(f"_privileged-write: {value!r} is not a valid value for {path}")


def privileged_write(path: str, value: str) -> None:
    """The body of ``vmmemctl _privileged-write``: fixed roots, checked values."""
    check_allowed(path, value)
    if not is_root():
        raise PrivilegeError(f"_privileged-write must run as root (through sudo); {missing_right_hint()}")
    LocalFiles("/proc", "/sys").write(path, value)


def missing_right_hint() -> str:
    return (f"run `sudo vmmemctl reclaim`, or allow it without a password with the sudoers line "
            f"`{sudoers_line()}` (README: Reclaim without root)")


class SudoWriter:
    """Writes through ``sudo -n vmmemctl _privileged-write``; reads stay local and unprivileged."""

    def __init__(self, files: LocalFiles, timeout: float = 30.0):
        self.files = files
        self.exe = vmmemctl_executable()
        self.timeout = timeout
        self.description = f"sudo {self.exe} _privileged-write"

    def allowed(self) -> bool:
        """Would sudo run it without a password? (``sudo -n -l CMD`` asks without running it.)"""
        import shutil

        if not shutil.which("sudo"):
            return False
        try:
            done = subprocess.run(["sudo", "-n", "-l", self.exe, "_privileged-write", DROP_CACHES, "1"],
                                  capture_output=True, timeout=self.timeout, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0

    def write(self, path: str, value: str) -> None:
        check_allowed(path, value)
        try:
            done = subprocess.run(["sudo", "-n", self.exe, "_privileged-write", path, value],
                                  capture_output=True, text=True, timeout=self.timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise OSError(f"sudo {path}: no answer within {self.timeout:g}s") from None
        if done.returncode != 0:
            raise sudo_failure(done.returncode, done.stderr)

    def read(self, paths):
        return self.files.read(paths)

    def exists(self, path: str) -> bool:
        return self.files.exists(path)


def sudo_failure(returncode: int, stderr: str) -> OSError:
    """What a failed ``sudo -n vmmemctl _privileged-write`` says, as the OSError it is: the kernel's errno
    when the write itself failed (``[Errno 16] ...``), EPERM when sudo refused, else the message as it is
    (a bad value, a missing program): only a refusal reads as "needs root" (issue 28)."""
    message = (stderr.strip().splitlines() or [f"failed (exit {returncode})"])[-1]
    if found := re.search(r"\[Errno (\d+)\] ?(.*)", message):
        return OSError(int(found.group(1)), found.group(2) or message)
    if message.startswith("sudo:"):
        return OSError(errno.EPERM, message)
    return OSError(message)
