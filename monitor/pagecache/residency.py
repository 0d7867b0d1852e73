"""How much of one open file is in the page cache, and giving it back: the syscalls, through ctypes.

Two ways to ask the kernel, both without reading a byte of the file:

    cachestat(2)  Linux 6.5+; one call per file, and it also says how much is dirty, under
                  writeback, evicted, and recently evicted (a refault would follow):
                      struct cachestat_range { __u64 off, len; };          len 0: to the end
                      struct cachestat { __u64 nr_cache, nr_dirty, nr_writeback,
                                               nr_evicted, nr_recently_evicted; };   (pages)
    mincore(2)    everywhere: mmap the file (PROT_READ, never touched, so nothing faults in),
                  one byte per page, bit 0 = resident; unmapped at once

Both report residency only for files the caller owns or may write (or as
root): mincore since Linux 5.2 (commit 134fca9063ad, "make mincore() more
conservative") silently reports only pages mapped by the caller, cachestat
since 6.14 (the same check) fails with EPERM. Measured here as 'nobody' on
6.18: EPERM on /usr/bin/bash, 308 pages as root. So :func:`can_inspect`
decides it up front for mincore, and a scan counts such files instead of
reporting zeros.

Giving a file's cache back (:func:`drop_file_cache`): ``sync_file_range``
writes its dirty pages (no device flush, unlike fdatasync, so 100,000 clean
files cost no barriers), then ``posix_fadvise(POSIX_FADV_DONTNEED)`` drops
the clean, unmapped pages. Pages mapped by a running program stay.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import platform
from dataclasses import dataclass
from typing import Protocol

from monitor.errors import UserError

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MINCORE_WINDOW = 1 << 30  # map at most 1 GiB at a time: a 1 TiB file needs no 256 MiB vector

# cachestat's number: 451 in the unified table (asm-generic, x86, arm, powerpc, s390, riscv,
# mips n64 adds 5000...); alpha has its own. Unknown machines use mincore.
CACHESTAT_NR = {"x86_64": 451, "i386": 451, "i686": 451, "aarch64": 451, "arm64": 451, "armv7l": 451,
                "armv8l": 451, "riscv64": 451, "ppc64le": 451, "ppc64": 451, "s390x": 451,
                "loongarch64": 451, "alpha": 561}

SYNC_FILE_RANGE_WAIT_BEFORE, SYNC_FILE_RANGE_WRITE, SYNC_FILE_RANGE_WAIT_AFTER = 1, 2, 4


@dataclass(frozen=True)
class Residency:
    """One file's pages in the page cache, in bytes. ``None``: this way of asking cannot tell."""

    cached: int
    dirty: int | None = None
    writeback: int | None = None
    evicted: int | None = None
    recently_evicted: int | None = None


class Reader(Protocol):
    name: str

    def read(self, fd: int, size: int) -> Residency:
        """Residency of the open regular file ``fd`` of ``size`` bytes; OSError as the kernel answered."""


class _Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _Stat(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in ("cache", "dirty", "writeback", "evicted", "recently_evicted")]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


class CachestatReader:
    name = "cachestat"

    def __init__(self, number: int):
        self._syscall = _libc().syscall
        self._syscall.restype = ctypes.c_long
        self._number = number
        self._range = _Range(0, 0)
        self._stat = _Stat()

    def read(self, fd: int, size: int) -> Residency:
        if self._syscall(self._number, fd, ctypes.byref(self._range), ctypes.byref(self._stat), 0) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        s = self._stat
        return Residency(s.cache * PAGE, s.dirty * PAGE, s.writeback * PAGE, s.evicted * PAGE,
                         s.recently_evicted * PAGE)


class MincoreReader:
    name = "mincore"

    def __init__(self) -> None:
        libc = _libc()
        self._mmap, self._munmap, self._mincore = libc.mmap, libc.munmap, libc.mincore
        self._mmap.restype = ctypes.c_void_p
        self._mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                               ctypes.c_long]
        self._munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        self._mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
        self._vec = ctypes.create_string_buffer(MINCORE_WINDOW // PAGE)
        self._lsb = bytes(i & 1 for i in range(256))  # only bit 0 means resident; the rest are reserved

    def read(self, fd: int, size: int) -> Residency:
        cached = 0
        for offset in range(0, size, MINCORE_WINDOW):
            cached += self._window(fd, offset, min(MINCORE_WINDOW, size - offset))
        return Residency(cached * PAGE)

    def _window(self, fd: int, offset: int, length: int) -> int:
        addr = self._mmap(None, length, mmap.PROT_READ, mmap.MAP_SHARED, fd, offset)
        if addr in (None, ctypes.c_void_p(-1).value):
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        try:
            if self._mincore(addr, length, self._vec) != 0:
                code = ctypes.get_errno()
                raise OSError(code, os.strerror(code))
            pages = -(-length // PAGE)
            return self._vec.raw[:pages].translate(self._lsb).count(1)
        finally:
            self._munmap(addr, length)


def cachestat_number(machine: str | None = None) -> int | None:
    return CACHESTAT_NR.get(machine or platform.machine())


def probe_cachestat(number: int | None) -> CachestatReader | None:
    """A cachestat reader if this kernel has the call: any answer but ENOSYS (before 6.5, or a
    seccomp filter) says it does; EPERM on a file we may not inspect says so too."""
    if number is None:
        return None
    reader = CachestatReader(number)
    fd = os.open(__file__, os.O_RDONLY)
    try:
        reader.read(fd, 0)
    except OSError as exc:
        if exc.errno == errno.ENOSYS:
            return None
    finally:
        os.close(fd)
    return reader


def choose_reader(prefer: str = "auto") -> Reader:
    """cachestat where the kernel has it (``auto``), else mincore; ``prefer`` forces one (tests, bench)."""
    if os.name == "nt":  # Windows CPython (host mode): no libc, and the cache worth asking about is the guest's
        raise UserError("the page cache by file is Linux's (cachestat, mincore): run this inside the WSL distro")
    if prefer in ("auto", "cachestat"):
        reader = probe_cachestat(cachestat_number())
        if reader is not None:
            return reader
        if prefer == "cachestat":
            raise OSError(errno.ENOSYS, "cachestat(2) is not available (Linux 6.5+)")
    return MincoreReader()


def can_inspect(st: os.stat_result, writable: bool, euid: int) -> bool:
    """Will the kernel report this file's residency to us? Root, the owner, or write access."""
    return euid == 0 or st.st_uid == euid or writable


# ------------------------------------------------------------------ giving back


class _WriteBack:
    """sync_file_range(fd, 0, 0, WAIT_BEFORE|WRITE|WAIT_AFTER), looked up once; fdatasync where libc lacks it."""

    def __init__(self) -> None:
        try:
            self.fn = _libc().sync_file_range
            self.fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
        except AttributeError:
            self.fn = None

    def __call__(self, fd: int) -> None:
        flags = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER
        if self.fn is None or self.fn(fd, 0, 0, flags) != 0:
            os.fdatasync(fd)


_write_back: _WriteBack | None = None


def write_back(fd: int) -> None:
    """Write the file's dirty pages and wait for them."""
    global _write_back
    if _write_back is None:
        _write_back = _WriteBack()
    _write_back(fd)


def drop_file_cache(fd: int, dirty: int | None) -> None:
    """Give one file's clean cache back, after writing its dirty pages (unknown ``dirty``: write anyway)."""
    if dirty is None or dirty > 0:
        write_back(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
