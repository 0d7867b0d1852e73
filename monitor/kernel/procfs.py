"""The one seam to the kernel's files, and pure parsers for their formats.

Every read of /proc and /sys in vmmemctl goes through a :class:`SystemFiles`
object, by a path that starts with ``proc/`` or ``sys/``. :class:`LocalFiles`
maps those onto a proc root (default ``/proc``) and a sys root beside it, so
a recorded tree (``tests/trees/NAME/{proc,sys}``) stands in for the live
machine; host mode (``[guest] exec``) reads the same paths inside a VM
through a command. Like psutil's ``PROCFS_PATH``, one root, nothing else
opens /proc.

Parsers never raise on odd input: they return what they could read and a
list of warnings, because a monitor must not die from one strange line.
"""

from __future__ import annotations

import os
import re
import stat
import threading
from dataclasses import dataclass, fields as dataclass_fields
from pathlib import Path
from typing import Protocol, Sequence

from monitor.kernel.portable import open_flags, pread, sync as _sync
from monitor.sample import Pressure  # the record; this module parses the kernel's text into it

# x86_64 and arm64 WSL kernels both use 4 KiB pages: buddyinfo and vmstat's workingset_* count in
# pages (pgpgin/pgpgout count KiB).
PAGE_SIZE = 4096

MAX_FILE_BYTES = 1 << 20  # no kernel file we read is near this; a hostile one is cut here
READ_CHUNK = 65536  # os.read/pread in 64 KiB chunks: a buffered read(1 MiB) allocated 1 MiB per file

# Kernel files printed as one record (single_open: meminfo, stat, pressure, uptime, loadavg; a module
# parameter is one sysfs show): a read that returns less than it asked for holds the whole file. A
# multi-record seq_file (vmstat, buddyinfo, cgroup.procs) hands out about a page per read, so there a
# short read proves nothing and the next read, which comes back empty, is what says "the end".
ONE_RECORD = frozenset({"proc/meminfo", "proc/stat", "proc/pressure/memory", "proc/pressure/io",
                        "proc/pressure/cpu", "proc/uptime", "proc/loadavg"})


def _one_record(path: str) -> bool:
    return path in ONE_RECORD or (path.startswith("sys/module/") and "/parameters/" in path)


class SystemFiles(Protocol):
    """Reads and writes kernel files by ``proc/...`` / ``sys/...`` paths."""

    description: str

    def read(self, paths: Sequence[str]) -> dict[str, str | None]:
        """Text of each path, or None where it is missing or unreadable."""

    def write(self, path: str, value: str) -> None:
        """Write ``value`` to one file; raises OSError as the kernel answered."""

    def exists(self, path: str) -> bool: ...

    def sync(self) -> None:
        """Flush dirty pages to disk where these files live (before a drop: dirty pages cannot go)."""


class LocalFiles:
    """This machine's files (or a recorded tree): ``proc/x`` -> ``<proc_root>/x``.

    Each regular file is opened once and re-read with ``os.pread`` from offset 0 on the same
    descriptor, as psutil and the benches do: procfs regenerates the text on every read from
    0, and the open and close were half of a sample's cost (bench/results/overhead.md). A file
    whose read fails (ENOENT, ESTALE, ENODEV...) is closed and opened again once, so a file
    that vanishes reads as missing and one that comes back is found on the next sample. In a
    tree, a file may also be replaced by a rename: there the descriptor is dropped when its
    inode has no name left (st_nlink 0). Anything else (a pipe, a character device) cannot be
    pread: it is opened and read for every sample, as before.

    One ``pread`` is the whole file where a short read proves it: a file of this machine's procfs
    or sysfs printed as one record (:data:`ONE_RECORD`), and a file on disk (a tree). Other files
    are read until a read comes back empty (1 µs and a system call more each).
    """

    def __init__(self, proc_root: str | Path = "/proc", sys_root: str | Path | None = None):
        self.proc_root = Path(proc_root)
        if sys_root is None:
            sys_root = "/sys" if self.proc_root == Path("/proc") else self.proc_root.parent / "sys"
        self.sys_root = Path(sys_root)
        self.description = str(self.proc_root)
        self._paths: dict[str, str] = {}
        self._single_record: set[str] = set()  # resolved paths of ONE_RECORD files (see _one_record)
        self._fds: dict[str, int] = {}  # resolved path -> descriptor kept open
        self._kernel: set[str] = set()  # ... of which live on procfs/sysfs (never renamed over)
        self._whole: set[str] = set()  # ... whose short read is the whole file (see the class's doc)
        self._quick: set[str] = set()  # ... both: kernel files read with one pread and no check
        self._lock = threading.Lock()  # one reader at a time: a reopen must not close a descriptor in use

    def resolve(self, path: str) -> Path:
        top, _, rest = path.partition("/")
        if top == "proc":
            return self.proc_root / rest
        if top == "sys":
            return self.sys_root / rest
        raise ValueError(f"not a proc/ or sys/ path: {path!r}")

    def read(self, paths: Sequence[str]) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        resolved, fds, quick = self._paths, self._fds, self._quick
        with self._lock:
            for p in paths:
                path = resolved.get(p) or self._resolved(p)
                if path in quick:  # a kernel file whose short read is all of it: one system call
                    try:
                        data = pread(fds[path], READ_CHUNK, 0)
                    except OSError:
                        data = b""  # _read_kept tries again, and opens the file anew if that fails too
                    if 0 < len(data) < READ_CHUNK:
                        out[p] = data.decode("utf-8", errors="replace")
                        continue
                out[p] = self._read_kept(path)
        return out

    def _resolved(self, path: str) -> str:
        found = self._paths[path] = str(self.resolve(path))
        if _one_record(path):
            self._single_record.add(found)
        return found

    def _read_kept(self, path: str) -> str | None:
        fd = self._fds.get(path)
        if fd is not None:
            data = _read_all(fd, whole_if_short=path in self._whole)
            if data is not None and (path in self._kernel or _still_named(fd)):
                return data.decode("utf-8", errors="replace")
            self._forget(path)
        return self._open_and_read(path)

    def _open_and_read(self, path: str) -> str | None:
        try:
            fd = os.open(path, os.O_RDONLY | open_flags("O_CLOEXEC"))
        except OSError:
            return None
        try:
            st = os.fstat(fd)
        except OSError:
            os.close(fd)
            return None
        if not stat.S_ISREG(st.st_mode):  # a FIFO (tests/fakekernel.py), a directory: read once, close
            try:
                data = _read_all(fd, seekable=False)
            finally:
                os.close(fd)
            return None if data is None else data.decode("utf-8", errors="replace")
        data = _read_all(fd)
        if data is None:
            os.close(fd)
            return None
        self._fds[path] = fd
        if st.st_dev in _kernel_devices():
            self._kernel.add(path)
            if path in self._single_record:
                self._whole.add(path)
                self._quick.add(path)
        elif 0 < st.st_size == len(data):
            self._whole.add(path)  # a file on disk (a tree): a short read is its end; cgroupfs, a
            # procfs mounted elsewhere and the like say size 0 or 4096 and are read to an empty read
        return data.decode("utf-8", errors="replace")

    def _forget(self, path: str) -> None:
        self._kernel.discard(path)
        self._whole.discard(path)
        self._quick.discard(path)
        fd = self._fds.pop(path, None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass  # already gone with its file system: nothing left to release

    def close(self) -> None:
        """Close the descriptors kept open (also done when the object goes away)."""
        with self._lock:
            for path in list(self._fds):
                self._forget(path)

    def __del__(self) -> None:
        for fd in getattr(self, "_fds", {}).values():
            try:
                os.close(fd)
            except OSError:
                pass

    def write(self, path: str, value: str) -> None:
        # O_WRONLY without O_CREAT/O_TRUNC: procfs and sysfs knobs exist or it is an error.
        fd = os.open(self.resolve(path), os.O_WRONLY | open_flags())
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)

    def exists(self, path: str) -> bool:
        return self.resolve(path).exists()

    def sync(self) -> None:
        _sync()  # this machine's sync(2) (none on Windows), whatever the root: a recorded tree has nothing to flush


def _read_all(fd: int, seekable: bool = True, whole_if_short: bool = False) -> bytes | None:
    """The whole file (from offset 0 with ``os.pread`` on a kept descriptor; else a stream, such as
    a pipe, read to its end), or None if a read fails. Read until an empty read: a
    procfs seq_file (vmstat, buddyinfo) hands out at most a page per read, so a short read is
    not the end there; ``whole_if_short``: it is (see :class:`LocalFiles`)."""
    try:
        if whole_if_short:
            first = pread(fd, READ_CHUNK, 0)
            if len(first) < READ_CHUNK:
                return first
            chunks, size = [first], len(first)
        else:
            chunks, size = [], 0
        while size < MAX_FILE_BYTES:
            chunk = pread(fd, READ_CHUNK, size) if seekable else os.read(fd, READ_CHUNK)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError:
        return None
    return (chunks[0] if len(chunks) == 1 else b"".join(chunks))[:MAX_FILE_BYTES]


def _still_named(fd: int) -> bool:
    """False once the file was unlinked or renamed over (a tree's writer replacing it)."""
    try:
        return os.fstat(fd).st_nlink > 0
    except OSError:
        return False


_KERNEL_DEVICES: set[int] | None = None


def _kernel_devices() -> set[int]:
    """st_dev of this machine's /proc and /sys: their files are never renamed over, so their
    descriptors need no st_nlink check (0.7 µs a file)."""
    global _KERNEL_DEVICES
    if _KERNEL_DEVICES is None:
        devices = set()
        for root in ("/proc", "/sys"):
            try:
                devices.add(os.stat(root).st_dev)
            except OSError:
                pass
        _KERNEL_DEVICES = devices
    return _KERNEL_DEVICES


def check_proc_root(proc_root: str | Path) -> str | None:
    """Why ``proc_root`` cannot be used, or None if it looks like a proc tree."""
    root = Path(proc_root)
    if not root.exists():
        return f"{root}: no such directory (expected a proc tree holding meminfo)"
    if not root.is_dir():
        return f"{root}: not a directory (expected a proc tree holding meminfo)"
    if not (root / "meminfo").exists() or (root / "meminfo").is_dir():
        return f"{root}: has no meminfo (expected a proc tree such as /proc)"
    return None


# ---------------------------------------------------------------- parsers


MAX_PLAUSIBLE_BYTES = 1 << 62  # 4 EiB: bigger is a corrupt file (VmallocTotal is 12.8 PiB with 5-level paging)
MAX_COUNTER = (1 << 63) - 1  # SQLite's INTEGER; kernel counters this size mean a broken file


def parse_meminfo(text: str) -> tuple[dict[str, int], list[str]]:
    """``/proc/meminfo`` -> bytes for "kB" fields; unit-less fields (HugePages_*) stay counts.

        MemTotal:       24684096 kB
        HugePages_Total:       0

    Unit-less fields are keyed with a ``#`` suffix (``HugePages_Total#``) so
    that a truncated "MemFree:  2374" can never be read as a byte count.
    """
    values: dict[str, int] = {}
    bad = 0
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        key, parts = key.strip(), rest.split()
        if sep and key and parts and parts[0].isascii() and parts[0].isdigit() and parts[1:] in ([], ["kB"]):
            value = int(parts[0]) * (1024 if parts[1:] else 1)
            if value <= MAX_PLAUSIBLE_BYTES:
                values[key if parts[1:] else key + "#"] = value
                continue
        bad += line.strip() != ""
    return values, ([f"meminfo: {bad} malformed line(s) skipped"] if bad else [])


@dataclass(frozen=True)
class MeminfoLayout:
    """Where the "kB" fields a sampler reads sit in one kernel's meminfo.

    The kernel prints meminfo's lines in an order fixed at build time, so after one clean full
    parse a single regex reads just those fields and skips the other ~45 lines (4 µs against 43 µs
    for :func:`parse_meminfo` here, bench/results/overhead.md). Any difference (a line added, a
    value that is not "digits kB", or one of more than 15 digits, which could pass
    MAX_PLAUSIBLE_BYTES) makes it miss, and the caller parses in full again.
    """

    keys: tuple[str, ...]  # in file order
    pattern: re.Pattern[str]


def meminfo_layout(text: str, keys: Sequence[str]) -> MeminfoLayout | None:
    """The layout of ``keys`` present in ``text`` as well-formed kB lines, or None if none is. A line
    in between is matched by its own name (``Active:[^\\n]*\\n``): literal text the regex engine
    compares at once, where a counted skip (``(?:[^\\n]*\\n){n}``) stepped through it line by line,
    half the match's time (bench/results/overhead.md)."""
    rows, parts, end = [], [], 0
    for line in text.split("\n")[:-1]:
        key, sep, rest = line.partition(":")
        if sep and key in keys and _KB_VALUE.fullmatch(rest):
            rows.append(key)  # 15 digits of KiB: under MAX_PLAUSIBLE_BYTES
            parts.append(re.escape(key) + r":[ ]*(\d{1,15}) kB\n")
            end = len(parts)  # the pattern stops after the last line read
        else:
            parts.append((re.escape(key + sep) if sep else "") + r"[^\n]*\n")
    if not rows:
        return None
    return MeminfoLayout(tuple(rows), re.compile("".join(parts[:end])))


_KB_VALUE = re.compile(r"[ ]*\d{1,19} kB")


_PSI = re.compile(r"some avg10=(\d+\.\d+) avg60=(\d+\.\d+) avg300=(\d+\.\d+) total=(\d+)\n"
                  r"full avg10=(\d+\.\d+) avg60=(\d+\.\d+) avg300=(\d+\.\d+) total=(\d+)\n")


_PRESSURE_FIELDS = tuple(f.name for f in dataclass_fields(Pressure))


def parse_pressure(text: str) -> tuple[Pressure, list[str]]:
    """PSI, as in ``some avg10=0.31 avg60=0.49 avg300=0.15 total=676878``."""
    exact = _PSI.fullmatch(text)  # the kernel's two lines: 2 µs, where the general loop takes 6
    if exact is not None:
        g = exact.groups()
        # built as _guest_sample builds a GuestSample: the frozen __init__ costs a setattr a field
        pressure = object.__new__(Pressure)
        pressure.__dict__.update(zip(_PRESSURE_FIELDS, (float(g[0]), float(g[1]), float(g[2]), int(g[3]),
                                                        float(g[4]), float(g[5]), float(g[6]), int(g[7]))))
        return pressure, []
    fields: dict[str, float | int] = {}
    bad = 0
    for line in text.splitlines():
        kind, *pairs = line.split()
        if kind not in ("some", "full"):
            bad += line.strip() != ""
            continue
        for pair in pairs:
            name, _, raw = pair.partition("=")
            try:
                value: float | int = int(raw) if name == "total" else float(raw)
            except ValueError:
                bad += 1
                continue
            if name in ("avg10", "avg60", "avg300", "total"):
                fields[f"{kind}_{name}"] = value
    return Pressure(**fields), ([f"pressure: {bad} malformed item(s) skipped"] if bad else [])


def parse_vmstat(text: str, keys: Sequence[str] | None = None) -> tuple[dict[str, int], list[str]]:
    """``/proc/vmstat``: ``name value`` per line. With ``keys``, only those are looked for
    (the sampler needs 3 of ~180 lines: a regex finds them 5x faster than splitting all)."""
    if keys is not None:
        found = {k: v for k in keys if (v := _counter_text(text, k)) is not None}
        good = {k: int(v) for k, v in found.items() if v.isascii() and v.isdigit() and int(v) <= MAX_COUNTER}
        bad = len(found) - len(good)
        return good, ([f"vmstat: {bad} malformed line(s) skipped"] if bad else [])
    values: dict[str, int] = {}
    bad = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isascii() and parts[1].isdigit() and int(parts[1]) <= MAX_COUNTER:
            values[parts[0]] = int(parts[1])
        elif line.strip():
            bad += 1
    return values, ([f"vmstat: {bad} malformed line(s) skipped"] if bad else [])


def _counter_text(text: str, key: str) -> str | None:
    """The rest of the line ``key value`` in ``text``: str.find for the kernel's "key " (0.3 µs; a
    regex alternation over vmstat's ~190 lines took 19 µs), a regex for other blanks."""
    start = text.find("\n" + key + " ") + 1
    if start == 0 and not text.startswith(key + " "):
        odd = re.search(rf"^{re.escape(key)}[ \t]+(.*)$", text, re.M)
        return odd.group(1) if odd else None
    start += len(key) + 1
    end = text.find("\n", start)
    return text[start:end if end >= 0 else len(text)].lstrip(" \t")


@dataclass(frozen=True)
class Zone:
    node: int
    name: str
    free_blocks: tuple[int, ...]  # free_blocks[order] = number of free blocks of 2**order pages


def parse_buddyinfo(text: str) -> tuple[list[Zone], list[str]]:
    """``Node 0, zone   Normal    226     37     32 ...`` (one count per order)."""
    zones: list[Zone] = []
    bad = 0
    for line in text.splitlines():
        head, sep, counts = line.partition("zone")
        node_text = head.replace("Node", "").strip().rstrip(",")
        parts = counts.split()
        if not sep or not (node_text.isascii() and node_text.isdigit()) or len(parts) < 2 or \
                not all(p.isascii() and p.isdigit() and int(p) < MAX_PLAUSIBLE_BYTES >> 30 for p in parts[1:]):
            bad += line.strip() != ""
            continue
        zones.append(Zone(int(node_text), parts[0], tuple(int(p) for p in parts[1:])))
    # Every zone lists the same number of orders (MAX_ORDER + 1); a shorter
    # line is a truncated one, and its missing counts would be read as zero.
    orders = max((len(z.free_blocks) for z in zones), default=0)
    complete = [z for z in zones if len(z.free_blocks) == orders]
    bad += len(zones) - len(complete)
    return complete, ([f"buddyinfo: {bad} malformed line(s) skipped"] if bad else [])


@dataclass(frozen=True)
class CpuTimes:
    busy: int  # jiffies spent running (user, nice, system, irq, softirq)
    total: int  # busy + idle + iowait + steal


def parse_cpu_times(text: str) -> CpuTimes | None:
    """The aggregate line of ``/proc/stat``: ``cpu  user nice system idle iowait irq softirq steal guest gn``.

    guest time is already inside user/nice, so it is not added again. steal
    is time the hypervisor gave to others: it counts toward the total, not
    toward our busy time.
    """
    found = cpu_busy_total(text)
    return None if found is None else CpuTimes(*found)


def cpu_busy_total(text: str) -> tuple[int, int] | None:
    """:func:`parse_cpu_times` as a plain ``(busy, total)`` (what a sample keeps: no object to build)."""
    # The aggregate is the first line: look no further (on many CPUs the file is KBs of per-CPU and IRQ lines).
    end = text.find("\n") if text.startswith("cpu ") else -1
    for line in ((text[:end],) if end >= 0 else text.splitlines()):
        parts = line.split()
        if parts and parts[0] == "cpu":
            try:
                nums = [*map(int, parts[1:9])]
            except ValueError:
                return None
            if len(nums) < 8:
                if len(nums) < 4:
                    return None
                nums += [0] * (8 - len(nums))
            user, nice, system, idle, iowait, irq, softirq, steal = nums
            busy = user + nice + system + irq + softirq
            return busy, busy + idle + iowait + steal
    return None
