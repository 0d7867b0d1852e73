"""The few POSIX calls vmmemctl uses that Windows lacks, each looked up when it is called.

Windows CPython has no ``os.sync``, ``os.pread``/``os.pwrite``, ``os.O_CLOEXEC``, ``os.O_NOFOLLOW``,
``os.geteuid``, ``os.major``/``os.minor``, ``os.statvfs``, ``signal.SIGHUP``, ``fcntl``, ``pwd`` or
``grp``. Every module must import there (the Windows-side "host mode" runs the same watcher, the
same status and the same dashboard), so nothing here is evaluated at import: a default argument
such as ``sync=os.sync`` fails at import on Windows (issue 27). The Windows branch of each call is
beside the POSIX one; tests/test_windows_smoke.py runs them under a real Windows CPython.
"""

from __future__ import annotations

import os


def open_flags(*names: str) -> int:
    """The OR of the named ``os.O_*`` flags this platform has (``"O_CLOEXEC"``, ``"O_NOFOLLOW"``...).

    On Windows ``O_BINARY`` is added: without it the C runtime reads a file in text mode (CRLF
    becomes LF, a ^Z ends it) and ``st_size`` no longer matches what was read."""
    flags = getattr(os, "O_BINARY", 0)
    for name in names:
        flags |= getattr(os, name, 0)
    return flags


def _seek_read(fd: int, size: int, offset: int) -> bytes:
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, size)


def _seek_write(fd: int, data: bytes, offset: int) -> int:
    os.lseek(fd, offset, os.SEEK_SET)
    return os.write(fd, data)


# ``os.pread``/``os.pwrite`` themselves where they exist (a sample reads with them: no wrapper in the
# way); on Windows a seek and a read or write (every caller holds its descriptor alone).
pread = getattr(os, "pread", _seek_read)
pwrite = getattr(os, "pwrite", _seek_write)


def sync() -> None:
    """``sync(2)``: flush this machine's dirty pages. Windows has no such call (and a drop there acts
    on the guest, through its own ``sync``): nothing to do."""
    flush = getattr(os, "sync", None)
    if flush is not None:
        flush()


def euid() -> int | None:
    """The effective uid; None on Windows (no uids: the user's own places, never root's)."""
    get = getattr(os, "geteuid", None)
    return get() if get is not None else None


def is_root() -> bool:
    """Running as root (never on Windows: there the question does not arise)."""
    return euid() == 0


def device_key(dev: int) -> str:
    """A device number as /proc/locks prints it ("major:minor" in hex); "" where there are none."""
    if not hasattr(os, "major"):
        return ""
    return f"{os.major(dev):02x}:{os.minor(dev):02x}"
