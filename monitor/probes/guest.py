"""The guest probe: the Linux side's memory, read from its kernel files.

One :meth:`GuestProbe.sample` reads every file it needs in one batch (one
command in host mode, where each round trip into the VM costs ~0.1 s) and
returns a :class:`GuestSample`. A missing or malformed file gives a partial
sample with a warning; the probe never raises on what it reads.

A recorder's tick (``sample(tick=True)``) reads meminfo and /proc/stat every
time and the other files on the slower cadence of :data:`CADENCE`, carrying
their last values in between and saying so (``GuestSample.carried``). Every
other sample (a reclaim's before and after, ``status``, ``doctor``) reads
every file.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from operator import itemgetter, mul
from typing import Callable

from monitor.kernel.procfs import (
    PAGE_SIZE,
    MeminfoLayout,
    SystemFiles,
    Zone,
    cpu_busy_total,
    meminfo_layout,
    parse_buddyinfo,
    parse_meminfo,
    parse_pressure,
    parse_vmstat,
)
from monitor.sample import GuestSample

log = logging.getLogger(__name__)

DEFAULT_REPORTING_ORDER = 9  # pageblock_order on x86_64: 2 MiB, the kernel's default
REPORTING_ORDER_PATH = "sys/module/page_reporting/parameters/page_reporting_order"
# MGLRU's switch: "0x0007" (on: every feature), "0x0000" (off, the classic active/inactive LRU); absent on
# kernels built without it (WSL's: config-wsl 6.18 has no CONFIG_LRU_GEN). Readable by any user.
LRU_GEN_PATH = "sys/kernel/mm/lru_gen/enabled"
MEMINFO, STAT, VMSTAT, BUDDYINFO = "proc/meminfo", "proc/stat", "proc/vmstat", "proc/buddyinfo"
PRESSURE = ("proc/pressure/memory", "proc/pressure/io")
FILES = (MEMINFO, *PRESSURE, VMSTAT, BUDDYINFO, STAT, REPORTING_ORDER_PATH, LRU_GEN_PATH)
VMSTAT_FIELDS = ("workingset_refault_file", "pgpgin", "drop_pagecache")
_VMSTAT_NEEDLES = tuple((name, f"\n{name} ") for name in VMSTAT_FIELDS)

# What a recorder's tick reads less often than every sample: seconds between reads, by the name a
# sample's ``carried`` gives it. meminfo (every rule's metric) and /proc/stat (CPU busy per interval,
# the idle test's input, and its only one on WSL, which has no PSI) are read on every tick. In
# between, the last clean values are carried with the time they were read; a file that was missing
# or odd at its last read is read again on every tick, so its warning stays on every sample and its
# return is seen at once. What each costs: bench/results/overhead.md ("What a sample is made of").
CADENCE = {
    # some avg10 is the kernel's own 10 s average (updated every 2 s); the idle test takes the
    # largest over its window (20 s before a drop, 60 s before gradual): 2 or 6 readings rather
    # than 10 or 30 (a short burst that has decayed by the next read is seen smaller). On WSL (no
    # PSI) this is how often the probe looks whether the files appeared.
    "pressure": 10.0,
    # Cumulative counters, for a reclaim's cost only (refaults, pgpgin over [reclaim] cost_window,
    # 5 minutes): the window ends at the first read past its end (CostMeter), up to 30 s late, and
    # the cost records the window it measured. The dearest file: its read alone costs more than a
    # bare open/read/close of meminfo.
    "vmstat": 30.0,
    # The free-block split (returnable/fragmented free; the host estimate adds fragmented free).
    # Also read on the tick after MemFree moved by BUDDY_FREE_MOVE: the split follows big changes
    # (a reclaim, a program's exit) at once and drifts for at most 30 s otherwise.
    "buddyinfo": 30.0,
    # A module parameter, set at boot (WSL) and rarely written after.
    "page_reporting_order": 60.0,
    # MGLRU on or off: set at boot, written by hand at most (gradual's prior depends on it, issue 25);
    # a reclaim's own samples read it every time.
    "lru_gen": 60.0,
}
BUDDY_FREE_MOVE = 32 << 20  # bytes of MemFree since buddyinfo was read that make the next tick read it
QUICK_FILES = (MEMINFO, STAT)  # what a tick reads while nothing of CADENCE is due


# Below this, busy % is unknown rather than noise: /proc/stat counts in jiffies (USER_HZ = 100), so
# a dashboard that primed and sampled 3 ms apart read 1 busy jiffy of 2 and recorded 50 % (issue 18).
MIN_CPU_INTERVAL = 0.1  # seconds; `status` waits 0.25 s (--cpu-window), the recorder a sampling interval
NEVER = (float("inf"), float("-inf"))  # an empty clock range


class _Kept:
    """A file's (or the PSI pair's) values as last read cleanly, for the ticks that do not read it."""

    __slots__ = ("at", "values", "free")

    def __init__(self, at: float, values: dict, free: int | None = None):
        self.at, self.values, self.free = at, values, free  # free: MemFree when buddyinfo was read


class GuestProbe:
    """Samples the guest; remembers the last CPU times so busy % covers the interval."""

    def __init__(self, files: SystemFiles, clock: Callable[[], float] = time.time):
        self.files = files
        self.clock = clock
        self._last_cpu: tuple[int, int] | None = None  # (busy, total) jiffies
        self._last_cpu_at = 0.0  # when _last_cpu was read (self.clock)
        self._layout: _Layout | None = None  # learnt from the first clean meminfo
        self._kept: dict[str, _Kept] = {}  # the files of CADENCE as last read cleanly
        self._free: int | None = None  # MemFree of the last sample
        # The quick tick: while every file of CADENCE is kept and none is due (the clock within
        # _span), a tick reads QUICK_FILES and adds _carry, saying _carried.
        self._carry: dict = {}
        self._carried: tuple[tuple[str, float], ...] = ()
        self._span = NEVER
        self._free_span = NEVER  # MemFree within which buddyinfo's split is kept (BUDDY_FREE_MOVE)
        self._lock = threading.Lock()  # a reclaim's samples (another thread) and the ticks share the state

    def prime(self) -> None:
        """Take a CPU reading so the next sample's busy % covers a known interval."""
        with self._lock:
            self._last_cpu_at = self.clock()
            text = self.files.read([STAT])[STAT]
            self._last_cpu = cpu_busy_total(text) if text else None

    def sample(self, tick: bool = False) -> GuestSample:
        """Every file read now; ``tick``: one of a recorder's regular samples, which reads the files of
        :data:`CADENCE` only when due and carries their last values otherwise (``GuestSample.carried``)."""
        with self._lock:
            now = self.clock()  # before the reads, as prime() takes it: the CPU interval is clock to clock
            if not tick:
                return self._read(now, FILES)
            lo, hi = self._span
            free_lo, free_hi = self._free_span
            if lo <= now < hi and self._free is not None and free_lo <= self._free <= free_hi:
                return self._quick(now)
            return self._read(now, self._due(now))

    def _quick(self, now: float) -> GuestSample:
        texts = self.files.read(QUICK_FILES)
        warnings: list[str] = []
        values = self._meminfo(texts[MEMINFO], warnings)
        values.update(self._carry)
        return self._finish(values, texts[STAT], warnings, now, self._carried)

    def _read(self, now: float, paths: tuple[str, ...] | list[str]) -> GuestSample:
        """A sample that reads ``paths`` (all of FILES, or a tick's due ones with meminfo and stat)."""
        texts = self.files.read(paths)
        warnings: list[str] = []
        carried: list[tuple[str, float]] = []
        kept = self._kept
        values = self._meminfo(texts[MEMINFO], warnings)
        free = values.get("free")
        for name, path, read in _SLOW_READERS:
            if path in texts:
                got, more = read(texts, values)
                if more:
                    warnings += more
                    kept.pop(name, None)  # not kept: the next tick reads it again and warns again
                else:
                    kept[name] = _Kept(now, got, free)
            else:
                k = kept[name]
                got = k.values
                carried.append((name, k.at))
            values.update(got)
        self._plan_quick()
        return self._finish(values, texts[STAT], warnings, now, tuple(carried))

    def _finish(self, values: dict, stat: str | None, warnings: list[str], now: float,
                carried: tuple[tuple[str, float], ...]) -> GuestSample:
        values["cpu_busy_percent"] = self._cpu_busy(stat, warnings, now)
        _derive(values)
        self._free = values.get("free")
        for w in warnings:
            log.debug("guest sample: %s", w)
        values["time"], values["warnings"] = now, tuple(warnings)
        if carried:
            values["carried"] = carried
        return _guest_sample(values)

    def _due(self, now: float) -> list[str]:
        """What a tick reads: meminfo, stat, and each file of :data:`CADENCE` never read, read with a
        warning or due by time (or the clock went back); buddyinfo also when free memory moved or
        the order is read (the split depends on it)."""
        def due(name: str) -> bool:
            k = self._kept.get(name)
            return k is None or not 0 <= now - k.at < CADENCE[name]
        paths = [MEMINFO, STAT]
        if due("pressure"):
            paths += PRESSURE
        if due("vmstat"):
            paths.append(VMSTAT)
        order = due("page_reporting_order")
        if order:
            paths.append(REPORTING_ORDER_PATH)
        if due("lru_gen"):
            paths.append(LRU_GEN_PATH)
        free_lo, free_hi = self._free_span
        if order or due("buddyinfo") or self._free is None or not free_lo <= self._free <= free_hi:
            paths.append(BUDDYINFO)
        return paths

    def _plan_quick(self) -> None:
        """The quick tick's values and the clock range it may run in: from the latest read of a file of
        CADENCE (a clock that goes back reads them all) to the first one due."""
        kept = self._kept
        buddy = kept.get("buddyinfo")
        free = None if buddy is None else buddy.free
        self._free_span = NEVER if free is None else (free - BUDDY_FREE_MOVE, free + BUDDY_FREE_MOVE)
        if len(kept) < len(CADENCE):
            self._span = NEVER  # one was read with a warning: every tick reads it again
            return
        carry: dict = {}
        carried = []
        lo, hi = NEVER[1], NEVER[0]
        for name, every in CADENCE.items():
            k = kept[name]
            carry.update(k.values)
            carried.append((name, k.at))
            lo, hi = max(lo, k.at), min(hi, k.at + every)
        self._carry, self._carried, self._span = carry, tuple(carried), (lo, hi)

    def _meminfo(self, text: str | None, warnings: list[str]) -> dict:
        """The fields used, through the learnt layout when the text fits it, else parsed in full."""
        layout = self._layout
        if text is not None and layout is not None:
            values = layout.read(text)
            if values is not None:
                return values
        more: list[str] = []
        values = _from_meminfo(text, more)
        warnings += more
        # learn (again) from a clean file; a file with warnings keeps the full parse, which reports them
        learnt = meminfo_layout(text, MEMINFO_FIELDS.values()) if text is not None and not more else None
        self._layout = _Layout(learnt) if learnt is not None and "MemTotal" in learnt.keys else None
        return values

    def _cpu_busy(self, text: str | None, warnings: list[str], now: float) -> float | None:
        cpu = cpu_busy_total(text) if text else None
        if cpu is None:
            warnings.append("stat: no readable 'cpu' line; CPU busy unknown")
            return None
        (last, self._last_cpu), (last_at, self._last_cpu_at) = (self._last_cpu, cpu), (self._last_cpu_at, now)
        if last is None or cpu[1] <= last[1] or now - last_at < MIN_CPU_INTERVAL:
            return None  # a reading milliseconds after the last is a jiffy or two: 0, 50 or 100 %, noise
        return round(100.0 * max(0, cpu[0] - last[0]) / (cpu[1] - last[1]), 2)


MEMINFO_FIELDS = {
    "total": "MemTotal", "free": "MemFree", "available": "MemAvailable", "buffers": "Buffers",
    "cached": "Cached", "anon": "AnonPages", "shmem": "Shmem", "mapped": "Mapped",
    "slab_reclaimable": "SReclaimable", "dirty": "Dirty", "writeback": "Writeback",
    "swap_total": "SwapTotal", "swap_free": "SwapFree",
    # the file LRU's split: read twice recently (promoted) or not; gradual's prior (issue 25)
    "active_file": "Active(file)", "inactive_file": "Inactive(file)",
}
# Without these the sample is not worth much; the rest may be missing quietly.
ESSENTIAL = ("MemTotal", "MemFree", "Cached")


OURS = {theirs: ours for ours, theirs in MEMINFO_FIELDS.items()}


class _Layout:
    """A learnt :class:`MeminfoLayout` read straight into the sample's fields: one regex match, the
    numbers, one check (a ninth of :func:`parse_meminfo`'s time, bench/results/overhead.md)."""

    __slots__ = ("match", "names", "parts")

    def __init__(self, layout: MeminfoLayout):
        keys = layout.keys
        self.match = layout.pattern.match
        self.names = tuple(OURS[k] for k in keys)
        total = keys.index("MemTotal")
        # MemTotal, then every value that may not exceed it (swap may exceed RAM); MemTotal is one of them
        self.parts = itemgetter(total, *(i for i, k in enumerate(keys) if not k.startswith("Swap")))

    def read(self, text: str) -> dict | None:
        """The fields present, in bytes; None where the text is not laid out so or a value is one the
        full parse would refuse with a warning (a part above MemTotal)."""
        found = self.match(text)
        if found is None:
            return None
        kib = [*map(int, found.groups())]  # 15 digits at most: under MAX_PLAUSIBLE_BYTES
        parts = self.parts(kib)
        if max(parts) > parts[0]:
            return None
        return dict(zip(self.names, [v << 10 for v in kib]))


def _guest_sample(values: dict) -> GuestSample:
    """``GuestSample(**values)`` at a fifth of the cost (0.9 µs against 4.3 µs here): the frozen
    dataclass's __init__ makes one object.__setattr__ call per field, 28 of them. The object is
    built as pickle and copy rebuild one (a new instance, then its __dict__); unset fields read
    the class's defaults, as after __init__ (tests/test_guest_probe.py compares both ways)."""
    sample = object.__new__(GuestSample)
    sample.__dict__.update(values)
    return sample


def _from_meminfo(text: str | None, warnings: list[str]) -> dict:
    if text is None:
        warnings.append("meminfo: missing; memory numbers unknown")
        return {}
    info, more = parse_meminfo(text)
    warnings += more
    for theirs in MEMINFO_FIELDS.values():
        if theirs + "#" in info:
            warnings.append(f"meminfo: {theirs} has no kB unit (a truncated line?); ignored")
    missing = [k for k in ESSENTIAL if k not in info]
    if missing:
        warnings.append(f"meminfo: no {', '.join(missing)}")
    total = info.get("MemTotal")
    if total is not None:
        # A part larger than the whole is a corrupt line (swap may exceed RAM).
        for key in [k for k, v in info.items() if v > total and not k.startswith(("Swap", "Vmalloc", "Commit",
                                                                                   "DirectMap", "HugePages"))]:
            warnings.append(f"meminfo: {key} ({info.pop(key)} bytes) exceeds MemTotal; ignored")
    return {ours: info.get(theirs) for ours, theirs in MEMINFO_FIELDS.items()}


def _from_vmstat(text: str | None, warnings: list[str]) -> dict:
    if text is None:
        warnings.append("vmstat: missing; refault counters unknown")
        return {}
    values = {}
    for name, needle in _VMSTAT_NEEDLES:  # the kernel's "\nname value\n": three finds, no loop over 190 lines
        start = text.find(needle) + len(needle)
        end = text.find("\n", start)
        value = text[start:end]
        if start < len(needle) or end < 0 or not (value.isdigit() and value.isascii()) or len(value) > 18:
            break  # anything else (first line, other blanks, a bad number): the general parser says what
        values[name] = int(value)  # 18 digits stay under MAX_COUNTER
    else:
        return values
    stats, more = parse_vmstat(text, VMSTAT_FIELDS)
    warnings += more
    return {name: stats.get(name) for name in VMSTAT_FIELDS}


def _reporting_order(text: str | None, warnings: list[str]) -> int:
    if text is None:
        return DEFAULT_REPORTING_ORDER  # module parameter absent: assume the kernel default
    try:
        order = int(text.strip())
    except ValueError:
        warnings.append(f"page_reporting_order: not a number ({text.strip()[:20]!r}); assuming 9")
        return DEFAULT_REPORTING_ORDER
    if not 0 <= order <= 20:
        warnings.append(f"page_reporting_order: {order} out of range; assuming 9")
        return DEFAULT_REPORTING_ORDER
    return order


def _mglru(text: str | None, warnings: list[str]) -> bool | None:
    """MGLRU on? From /sys/kernel/mm/lru_gen/enabled, which reads as a bitmask of its features:

        0x0007

    absent (a kernel without MGLRU) is off; anything but a number is unknown, with a warning."""
    if text is None:
        return False
    word = text.strip()
    try:
        return int(word, 16) != 0
    except ValueError:
        warnings.append(f"lru_gen/enabled: not a number ({word[:20]!r}); MGLRU unknown")
        return None


def _from_buddyinfo(text: str | None, order: int, warnings: list[str]) -> dict:
    if text is None:
        warnings.append("buddyinfo: missing; returnable free unknown")
        return {}
    quick = _buddyinfo_sums(text, order)
    if quick is not None:
        return {"returnable_free": quick[0], "fragmented_free": quick[1]}
    zones, more = parse_buddyinfo(text)
    warnings += more
    if not zones:
        warnings.append("buddyinfo: no zones; returnable free unknown")
        return {}
    big, small = split_free_blocks(zones, order)
    return {"returnable_free": big, "fragmented_free": small}


def _buddyinfo_sums(text: str, order: int) -> tuple[int, int] | None:
    """:func:`split_free_blocks` straight from a well-formed buddyinfo (one regex checks every line,
    then one sum per line and side: a third of parse + split), or None for anything
    parse_buddyinfo would warn about.

        Node 0, zone   Normal    406    395    505    718    538    332    183    115     73     35     59
    """
    orders = len(text[:text.find("\n")].split()) - 4  # Node, 0,, zone, its name, then one count per order
    if orders < 2:
        return None
    well_formed = _BUDDYINFO_LINES.get(orders)
    if well_formed is None:  # 9 digits stay under parse_buddyinfo's bound (2**32)
        well_formed = _BUDDYINFO_LINES[orders] = re.compile(r"(?:Node \d{1,9}, zone +\S+(?: +\d{1,9}){%d} *\n)+"
                                                            % orders).fullmatch
    if well_formed(text) is None:
        return None
    tokens, stride = text.split(), orders + 4
    weights = [PAGE_SIZE << o for o in range(orders)]
    split = min(order, orders)
    small_w, big_w = weights[:split], weights[split:]
    small = big = 0
    for i in range(4, len(tokens), stride):
        small += sum(map(mul, map(int, tokens[i:i + split]), small_w))
        big += sum(map(mul, map(int, tokens[i + split:i + orders]), big_w))
    return big, small


_BUDDYINFO_LINES: dict[int, Callable] = {}  # orders -> fullmatch of a buddyinfo whose every line has that many


def _read_pressure(texts: dict, values: dict) -> tuple[dict, list[str]]:
    got: dict = {}
    more: list[str] = []
    for path, field in zip(PRESSURE, ("psi_memory", "psi_io")):
        text = texts[path]
        if text is not None:  # PSI is off on WSL's kernel unless psi=1: not worth a warning
            got[field], odd = parse_pressure(text)
            more += odd
    return got, more


def _read_vmstat(texts: dict, values: dict) -> tuple[dict, list[str]]:
    more: list[str] = []
    return _from_vmstat(texts[VMSTAT], more), more


def _read_order(texts: dict, values: dict) -> tuple[dict, list[str]]:
    more: list[str] = []
    return {"page_reporting_order": _reporting_order(texts[REPORTING_ORDER_PATH], more)}, more


def _read_lru_gen(texts: dict, values: dict) -> tuple[dict, list[str]]:
    more: list[str] = []
    return {"mglru": _mglru(texts[LRU_GEN_PATH], more)}, more


def _read_buddyinfo(texts: dict, values: dict) -> tuple[dict, list[str]]:
    more: list[str] = []
    return _from_buddyinfo(texts[BUDDYINFO], values["page_reporting_order"], more), more


# The files of CADENCE in the order a sample reads them (buddyinfo's split needs the order), each by
# its first path (present in a read's texts when it was read) and its reader: (values, warnings).
_SLOW_READERS = (("pressure", PRESSURE[0], _read_pressure), ("vmstat", VMSTAT, _read_vmstat),
                 ("page_reporting_order", REPORTING_ORDER_PATH, _read_order),
                 ("buddyinfo", BUDDYINFO, _read_buddyinfo), ("lru_gen", LRU_GEN_PATH, _read_lru_gen))


def split_free_blocks(zones: list[Zone], order: int) -> tuple[int, int]:
    """Free bytes in blocks of at least ``order``, and in smaller blocks."""
    big = small = 0
    for zone in zones:
        for o, count in enumerate(zone.free_blocks):
            size = count * (PAGE_SIZE << o)
            if o >= order:
                big += size
            else:
                small += size
    return big, small


def _derive(v: dict) -> None:
    """page_cache, reclaimable, used (the formulas documented on GuestSample), into ``v``."""
    cached = v.get("cached")
    if cached is None:
        return
    page_cache = v["page_cache"] = max(0, cached + (v.get("buffers") or 0) - (v.get("shmem") or 0))
    v["reclaimable"] = max(0, page_cache - (v.get("mapped") or 0))
    total, free = v.get("total"), v.get("free")
    if total is not None and free is not None:
        v["used"] = max(0, total - free - page_cache - (v.get("slab_reclaimable") or 0))
