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
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

MAX_FILE_BYTES = 1 << 20  # no kernel file we read is near this; a hostile one is cut here


class SystemFiles(Protocol):
    """Reads and writes kernel files by ``proc/...`` / ``sys/...`` paths."""

    description: str

    def read(self, paths: Sequence[str]) -> dict[str, str | None]:
        """Text of each path, or None where it is missing or unreadable."""

    def write(self, path: str, value: str) -> None:
        """Write ``value`` to one file; raises OSError as the kernel answered."""

    def exists(self, path: str) -> bool: ...


class LocalFiles:
    """This machine's files (or a recorded tree): ``proc/x`` -> ``<proc_root>/x``."""

    def __init__(self, proc_root: str | Path = "/proc", sys_root: str | Path | None = None):
        self.proc_root = Path(proc_root)
        if sys_root is None:
            sys_root = "/sys" if self.proc_root == Path("/proc") else self.proc_root.parent / "sys"
        self.sys_root = Path(sys_root)
        self.description = str(self.proc_root)

    def resolve(self, path: str) -> Path:
        top, _, rest = path.partition("/")
        if top == "proc":
            return self.proc_root / rest
        if top == "sys":
            return self.sys_root / rest
        raise ValueError(f"not a proc/ or sys/ path: {path!r}")

    def read(self, paths: Sequence[str]) -> dict[str, str | None]:
        return {p: self._read_one(self._resolved(p)) for p in paths}

    def _resolved(self, path: str) -> str:
        cache = self.__dict__.setdefault("_paths", {})
        if path not in cache:
            cache[path] = str(self.resolve(path))
        return cache[path]

    @staticmethod
    def _read_one(path: str) -> str | None:
        # os.read in 64 KiB chunks: a buffered read(1 MiB) allocated a 1 MiB buffer per file,
        # which was most of a sample's cost (bench/results/overhead.md).
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            chunks, size = [], 0
            while size < MAX_FILE_BYTES:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            return b"".join(chunks)[:MAX_FILE_BYTES].decode("utf-8", errors="replace")
        except OSError:
            return None
        finally:
            os.close(fd)

    def write(self, path: str, value: str) -> None:
        # O_WRONLY without O_CREAT/O_TRUNC: procfs and sysfs knobs exist or it is an error.
        fd = os.open(self.resolve(path), os.O_WRONLY)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)

    def exists(self, path: str) -> bool:
        return self.resolve(path).exists()


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
        if sep and key and parts and parts[0].isdigit() and parts[1:] in ([], ["kB"]):
            value = int(parts[0]) * (1024 if parts[1:] else 1)
            if value <= MAX_PLAUSIBLE_BYTES:
                values[key if parts[1:] else key + "#"] = value
                continue
        bad += line.strip() != ""
    return values, ([f"meminfo: {bad} malformed line(s) skipped"] if bad else [])


@dataclass(frozen=True)
class Pressure:
    """One ``/proc/pressure/*`` file. avg* are percent of wall time; total is microseconds."""

    some_avg10: float | None = None
    some_avg60: float | None = None
    some_avg300: float | None = None
    some_total: int | None = None
    full_avg10: float | None = None
    full_avg60: float | None = None
    full_avg300: float | None = None
    full_total: int | None = None


def parse_pressure(text: str) -> tuple[Pressure, list[str]]:
    """PSI, as in ``some avg10=0.31 avg60=0.49 avg300=0.15 total=676878``."""
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
        found = {m.group(1): m.group(2) for m in
                 re.finditer(rf"^({'|'.join(map(re.escape, keys))})[ \t]+(.*)$", text, re.M)}
        good = {k: int(v) for k, v in found.items() if v.isdigit() and int(v) <= MAX_COUNTER}
        bad = len(found) - len(good)
        return good, ([f"vmstat: {bad} malformed line(s) skipped"] if bad else [])
    values: dict[str, int] = {}
    bad = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and int(parts[1]) <= MAX_COUNTER:
            values[parts[0]] = int(parts[1])
        elif line.strip():
            bad += 1
    return values, ([f"vmstat: {bad} malformed line(s) skipped"] if bad else [])


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
        if not sep or not node_text.isdigit() or len(parts) < 2 or \
                not all(p.isdigit() and int(p) < MAX_PLAUSIBLE_BYTES >> 30 for p in parts[1:]):
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
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            try:
                nums = [int(p) for p in parts[1:9]]
            except ValueError:
                return None
            if len(nums) < 4:
                return None
            nums += [0] * (8 - len(nums))
            user, nice, system, idle, iowait, irq, softirq, steal = nums
            busy = user + nice + system + irq + softirq
            return CpuTimes(busy=busy, total=busy + idle + iowait + steal)
    return None
