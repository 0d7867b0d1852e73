"""The records every other part passes around: immutable samples.

A :class:`GuestSample` is what the Linux side looked like at one moment; a
:class:`HostSample` is the VM's footprint as the host sees it and where that
number came from. Unknown numbers are None, never 0: a missing file is not
an empty cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

EnvironmentKind = Literal["wsl2", "wsl1", "windows", "linux"]


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


@dataclass(frozen=True)
class Environment:
    kind: EnvironmentKind
    distro: str | None = None
    kernel_release: str | None = None
    why: str = ""  # how we know, for `status` and bug reports

    def label(self) -> str:
        names = {"wsl2": "WSL2", "wsl1": "WSL1", "windows": "Windows", "linux": "Linux"}
        return names[self.kind] + (f" ({self.distro})" if self.distro else "")


@dataclass(frozen=True)
class GuestSample:
    """Memory inside the guest (the distro), in bytes.

    Derived numbers, each checked against the real kernel in tests:

    - ``page_cache`` = Buffers + Cached - Shmem: file pages held as cache.
      Shmem/tmpfs sits inside Cached but no drop_caches can free it.
    - ``reclaimable`` = page_cache - Mapped: what ``sync; echo 1 >
      drop_caches`` frees now. Dirty pages count (the sync writes them
      first); pages mapped by running programs do not (invalidation skips
      them). Mapped also counts mapped shmem, already outside page_cache, so
      this errs low by at most that.
    - ``used`` = MemTotal - MemFree - page_cache - SReclaimable: memory held
      by programs and the kernel that no cache drop gives back.
    - ``returnable_free``: free memory in buddy blocks of at least
      ``page_reporting_order`` (2**9 pages = 2 MiB by default): the only free
      memory free page reporting hands to the host. ``fragmented_free`` is
      free memory in smaller blocks, which the host cannot take until
      compaction merges it.
    """

    time: float
    total: int | None = None
    free: int | None = None
    available: int | None = None
    buffers: int | None = None
    cached: int | None = None
    anon: int | None = None
    shmem: int | None = None
    mapped: int | None = None
    slab_reclaimable: int | None = None
    dirty: int | None = None
    writeback: int | None = None
    swap_total: int | None = None
    swap_free: int | None = None
    active_file: int | None = None  # Active(file): file pages the kernel saw used more than once recently
    inactive_file: int | None = None  # Inactive(file): the rest, which memory.reclaim takes first
    # MGLRU on (/sys/kernel/mm/lru_gen/enabled non-zero; the file absent: off). Then Active(file) is the
    # two youngest generations, not "used more than once": a file re-read with read(2) stays in an old
    # generation (the lab: Active(file) 0 MiB beside a 300 MiB set read five times). None: not known.
    mglru: bool | None = None
    page_cache: int | None = None
    reclaimable: int | None = None
    used: int | None = None
    returnable_free: int | None = None
    fragmented_free: int | None = None
    page_reporting_order: int = 9
    psi_memory: Pressure | None = None
    psi_io: Pressure | None = None
    cpu_busy_percent: float | None = None
    workingset_refault_file: int | None = None
    pgpgin: int | None = None
    drop_pagecache: int | None = None
    warnings: tuple[str, ...] = field(default=(), compare=False)
    # Values this sample did not read but carries from an earlier read, as (what, when it was read):
    # a recorder's tick reads vmstat, buddyinfo and page_reporting_order on a slower cadence
    # (monitor/probes/guest.py CADENCE). Empty: every value was read at ``time``.
    carried: tuple[tuple[str, float], ...] = field(default=(), compare=False)

    def read_at(self, what: str) -> float:
        """When the values from ``what`` ("vmstat", "buddyinfo", "pressure", "page_reporting_order";
        anything else: meminfo, stat) were read: ``time``, or earlier for values carried."""
        for name, at in self.carried:
            if name == what:
                return at
        return self.time

    @property
    def unlisted_free(self) -> int | None:
        """Free by MemFree but in no buddy free list: memory the kernel counts yet has not taken into its
        allocator (/proc/zoneinfo: managed below present; a VM whose memory is accepted or plugged in
        lazily). Neither returnable nor fragmented, and never touched, so the host holds none of it.
        None when unknown or when buddyinfo was read at another time than MemFree."""
        if None in (self.free, self.returnable_free, self.fragmented_free) or self.read_at("buddyinfo") != self.time:
            return None
        return max(0, self.free - self.returnable_free - self.fragmented_free)  # type: ignore[operator]

    @property
    def psi_memory_some_avg10(self) -> float | None:
        return self.psi_memory.some_avg10 if self.psi_memory else None

    @property
    def psi_io_some_avg10(self) -> float | None:
        return self.psi_io.some_avg10 if self.psi_io else None


HostSource = Literal["psutil", "interop", "process", "estimate", "none"]
# What the host figure is, set where it is measured (issue 27): the same VM gives figures a gigabyte apart
# by metric (Task Manager shows the private working set: winsiderss/systeminformer#580), so a rule never
# compares two of them and the dashboard marks where one gave way to another.
HostMetric = Literal["private_working_set", "working_set", "rss", "estimate"]
HOST_METRIC_WORDS = {
    "private_working_set": "private working set (what Task Manager shows)",
    "working_set": "whole working set (includes shared pages: can be higher than Task Manager)",
    "rss": "resident set size of the VM process",
    "estimate": "estimated from the guest (MemTotal - MemFree + fragmented free)",
}


@dataclass(frozen=True)
class HostSample:
    """The VM's memory as the host sees it."""

    time: float
    bytes: int | None
    source: HostSource
    estimated: bool
    detail: str = ""  # e.g. "vmmemWSL pid 4242, private working set"
    error: str | None = None  # why the value is unknown (or why we fell back)
    host_total: int | None = None  # the host's RAM, for "%"-thresholds about the host
    starting: bool = False  # the measuring tool is still starting (a cold PowerShell): no figure yet
    metric: HostMetric | None = None  # what ``bytes`` is; None when no figure (or an old history's row)
    host_available: int | None = None  # the host's own available memory (Windows: \Memory\Available Bytes)


@dataclass(frozen=True)
class Sample:
    guest: GuestSample
    host: HostSample
    # the page cache of the groups each aimed rule or schedule names (``cgroup = "GLOB"``): (glob, bytes, or
    # why there is no figure), read with the sample by the watcher; not stored (a sample from the history
    # has none: an unknown reading, which neither breaks nor extends a rule's run)
    cgroups: tuple[tuple[str, int | str], ...] = field(default=(), compare=False)

    @property
    def time(self) -> float:
        return self.guest.time

    @property
    def host_gap(self) -> int | None:
        """Host footprint minus what the guest's programs and kernel hold: what could come back."""
        if self.host.bytes is None or self.guest.used is None:
            return None
        return max(0, self.host.bytes - self.guest.used)


def unreturned_bytes(sample: Sample) -> int | None:
    """What the host holds beyond what the guest uses (MemTotal - MemFree + fragmented free).

    Memory the guest freed in blocks big enough to report but the host still
    holds: small (the VM's own overhead) when free page reporting works,
    large when it is off or the balloon device is missing. Only for a
    measured host number: an estimate is computed from the guest itself.
    """
    g, h = sample.guest, sample.host
    if h.bytes is None or h.estimated or g.total is None or g.free is None:
        return None
    return h.bytes - (g.total - g.free + (g.fragmented_free or 0))


UNRETURNED_NOTE_MIN = 512 * 1024 * 1024  # the VM's own overhead (QEMU: ~250 MiB) stays below this


def diagnose(sample: Sample) -> list[str]:
    """Plain-words notes about a sample that a person should know."""
    from monitor.units import format_bytes

    notes = []
    extra = unreturned_bytes(sample)
    if extra is not None and extra > max(UNRETURNED_NOTE_MIN, (sample.guest.total or 0) // 10):
        notes.append(f"the host holds {format_bytes(extra)} more than the guest uses: memory the guest freed "
                     "is not going back (free page reporting off, or no balloon device?)")
    return notes


# Rule metrics about the host: a percentage of them is of the host's RAM (HostSample.host_total).
HOST_METRICS = ("host", "host_gap", "host_available")


def metric_value(sample: Sample, metric: str) -> int | None:
    """A rule metric (``page_cache``, ``reclaimable``, ``host``, ``host_gap``, ``host_available``) read off a
    sample; None when the sample has no such figure (a rule never fires on it)."""
    if metric == "host":
        return sample.host.bytes
    if metric == "host_gap":
        return sample.host_gap
    if metric == "host_available":
        return sample.host.host_available
    if metric.startswith(CGROUP_METRIC):
        value = dict(sample.cgroups).get(metric[len(CGROUP_METRIC):])
        return value if isinstance(value, int) else None
    return getattr(sample.guest, metric)


CGROUP_METRIC = "cgroup:"  # a rule's metric key when it aims: "cgroup:system.slice/docker-*.scope"


def cgroup_why(sample: Sample, glob: str) -> str | None:
    """Why ``sample`` has no figure for ``glob`` ("no cgroup v2 ...", "no group matches ..."), or None."""
    value = dict(sample.cgroups).get(glob)
    if isinstance(value, int):
        return None
    return value or "not read with this sample"


def metric_total(sample: Sample, metric: str) -> int | None:
    """What a percentage threshold of ``metric`` is a share of: the host's RAM for a host metric, else the
    guest's MemTotal."""
    return sample.host.host_total if metric in HOST_METRICS else sample.guest.total


def metric_kind(sample: Sample, metric: str) -> str | None:
    """Which host metric a rule's host figure is in ``sample`` (None for a guest metric, and for the host's
    available memory, which keeps its meaning whatever measures the VM): a rule's run past its threshold
    holds samples of one kind only (monitor.policy.rules)."""
    return sample.host.metric if metric in ("host", "host_gap") else None


def guest_json(g: GuestSample) -> dict[str, Any]:
    """A guest sample as JSON: bytes as integers, unknown as null (status --json, reclaim results)."""
    return {
        "total_bytes": g.total, "free_bytes": g.free, "available_bytes": g.available,
        "anon_bytes": g.anon, "used_bytes": g.used, "page_cache_bytes": g.page_cache,
        "shmem_bytes": g.shmem, "slab_reclaimable_bytes": g.slab_reclaimable, "dirty_bytes": g.dirty,
        "mapped_bytes": g.mapped, "reclaimable_bytes": g.reclaimable,
        "active_file_bytes": g.active_file, "inactive_file_bytes": g.inactive_file, "mglru": g.mglru,
        "returnable_free_bytes": g.returnable_free, "fragmented_free_bytes": g.fragmented_free,
        "unlisted_free_bytes": g.unlisted_free,
        "page_reporting_order": g.page_reporting_order,
        "psi_memory_some_avg10": g.psi_memory_some_avg10, "psi_io_some_avg10": g.psi_io_some_avg10,
        "psi_memory_full_avg10": g.psi_memory.full_avg10 if g.psi_memory else None,
        "psi_io_full_avg10": g.psi_io.full_avg10 if g.psi_io else None,
        "cpu_busy_percent": g.cpu_busy_percent,
        "workingset_refault_file": g.workingset_refault_file, "pgpgin": g.pgpgin,
        "drop_pagecache": g.drop_pagecache,
        "warnings": list(g.warnings),
    }


def counter_bytes(before: int | None, after: int | None, unit: int) -> int | None:
    """A cumulative counter's growth in bytes (``unit`` bytes per count); None if unknown or reset (a reboot)."""
    return None if before is None or after is None or after < before else (after - before) * unit
