"""Host probes: the VM's memory footprint as the host sees it.

Each probe returns a :class:`HostSample` that says where its number came
from. They never raise: an unreachable host gives ``bytes=None`` and an
``error`` that says why.

- ``psutil``: on Windows, the WSL VM process (``vmmemWSL``; plain ``vmmem``
  only when there is no ``vmmemWSL``, because on Windows 11 a plain
  ``vmmem`` can be Windows Sandbox or another Hyper-V VM, microsoft/WSL#6881).
  Task Manager shows the *private working set* (winsiderss/systeminformer#580):
  psutil's ``uss`` is that; ``wset`` (the whole working set) when uss is denied. Each sample's
  ``metric`` says which it is (issue 27).
- ``interop`` (inside WSL2): see :mod:`monitor.probes.interop`.
- ``process``: a named VM process on a Linux/macOS host (qemu, firecracker): its RSS.
- ``estimate``: from the guest alone, what the VM has touched and not given
  back: MemTotal - MemFree + fragmented free. Free memory in blocks of at
  least the page-reporting order is what free page reporting returns.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import TYPE_CHECKING, Callable, Iterable, Protocol, TypeVar

from monitor.sample import GuestSample, HostMetric, HostSample

if TYPE_CHECKING:
    import psutil

log = logging.getLogger(__name__)
WSL_VM_NAMES = ("vmmemwsl", "vmmem")  # preference order, compared case-insensitively
T = TypeVar("T")


def _psutil():
    """psutil, imported when a psutil or process probe first needs it: a Linux watcher's default
    (estimate) host probe never does, and the import is 0.9 MiB of its RSS (bench/results/overhead.md)."""
    import psutil

    return psutil


def _lost() -> tuple[type[Exception], ...]:
    """psutil's errors for a process that went away or is not ours to read."""
    ps = _psutil()
    return ps.NoSuchProcess, ps.AccessDenied, ps.ZombieProcess


class HostProbe(Protocol):
    name: str
    # True when the figure is computed from the guest sample (an estimate, or no VM at all):
    # nothing to spawn or query, so it is sampled with every guest tick, not on its own clock.
    cheap: bool
    unreachable: bool  # its last failure says the host cannot be reached at all (Windows interop down)

    def sample(self, guest: GuestSample | None) -> HostSample: ...

    def close(self) -> None: ...


def _proc_name(proc) -> str:
    try:
        return proc.name()
    except (*_lost(), OSError):  # OSError: a name Windows would not give (Wine cannot give any): not the VM
        return ""


def choose_vm(candidates: Iterable[tuple[str, T]], size: Callable[[T], int]) -> tuple[T | None, str]:
    """Pick the WSL VM among (process name, item) pairs; returns (item, why).

    vmmemWSL wins; plain vmmem counts only when no vmmemWSL exists. Several
    of the chosen name (not expected) resolve to the largest, never a sum.
    """
    by_name: dict[str, list[T]] = {n: [] for n in WSL_VM_NAMES}
    for name, item in candidates:
        key = name.lower().removesuffix(".exe")
        if key in by_name:
            by_name[key].append(item)
    if by_name["vmmemwsl"]:
        chosen, why = by_name["vmmemwsl"], "vmmemWSL"
        if by_name["vmmem"]:
            why += f" (ignored {len(by_name['vmmem'])} plain vmmem: another VM, e.g. Sandbox)"
    elif by_name["vmmem"]:
        chosen, why = by_name["vmmem"], "vmmem (no vmmemWSL: an older Windows build)"
    else:
        return None, "no vmmemWSL or vmmem process: is the WSL VM running?"
    if len(chosen) > 1:
        why += f"; {len(chosen)} candidates, took the largest"
    return max(chosen, key=size), why


def select_vm_process(procs: Iterable) -> tuple[object | None, str]:
    """:func:`choose_vm` over psutil processes."""
    return choose_vm(((_proc_name(p), p) for p in procs), _rss)


def _rss(proc) -> int:
    try:
        return proc.memory_info().rss
    except _lost():
        return -1


def _system_private_set(pid: int) -> tuple[int | None, str]:
    """Windows-native: the private working set Task Manager shows, without a process handle
    (monitor.kernel.ntprocess), and why not when it cannot be had; (None, "") elsewhere."""
    if os.name != "nt":
        return None, ""
    from monitor.kernel.ntprocess import query_processes

    try:
        found = next((p for p in query_processes() if p.pid == pid), None)
    except OSError as exc:
        return None, f"system process information: {str(exc)[:80]}"
    if found is None:
        return None, "not in the system process information"
    if found.private_working_set is None:
        return None, "the system process information left it unfilled"
    return found.private_working_set, ""


def private_working_set(proc) -> tuple[int, str, HostMetric]:
    """(bytes, what it is, its metric): on Windows first the system process information's private
    working set (no handle needed: what Task Manager shows), then uss where allowed, else the working set,
    saying why.

    On Windows ``memory_full_info()`` walks the process's address space:
    vmmem refuses the handle even to an administrator (AccessDenied), and the
    walk itself can fail with ``RuntimeError`` ("NtQueryVirtualMemory ...")
    or an ``OSError`` (giampaolo/psutil#1346, #2069). The working set from
    ``memory_info()`` needs less and is what Task Manager's "Memory" shows
    on older builds.
    """
    system, system_why = _system_private_set(proc.pid)
    if system is not None:
        return system, "private working set (system process information, as Task Manager)", "private_working_set"
    try:
        return proc.memory_full_info().uss, "private working set", "private_working_set"
    except _psutil().NoSuchProcess:
        raise
    except (_psutil().AccessDenied, AttributeError, NotImplementedError) as exc:
        why = "denied" if isinstance(exc, _psutil().AccessDenied) else "not available"
    except (RuntimeError, OSError) as exc:
        why = f"unreadable: {type(exc).__name__}: {str(exc)[:80]}"
    info = proc.memory_info()
    if hasattr(info, "wset"):  # Windows: the whole working set, shared pages included
        return info.wset, f"working set (private set {why}{'; ' + system_why if system_why else ''})", "working_set"
    return info.rss, f"RSS (private set {why})", "rss"  # not Windows: psutil has no working set


class PsutilProbe:
    """Windows side: the WSL VM process through psutil."""

    name = "psutil"
    cheap = False
    unreachable = False

    def __init__(self, clock: Callable[[], float] = time.time, process_iter=None):
        self.clock = clock
        self.process_iter = process_iter or _psutil().process_iter

    def sample(self, guest: GuestSample | None) -> HostSample:
        now = self.clock()
        memory = _psutil().virtual_memory()  # Windows: GlobalMemoryStatusEx, its ullAvailPhys is "available"
        host = dict(host_total=memory.total, host_available=memory.available)
        proc, why = select_vm_process(self.process_iter())
        if proc is None:
            return HostSample(now, None, "psutil", False, error=why, **host)
        try:
            value, what, metric = private_working_set(proc)
        except (_psutil().Error, OSError) as exc:  # gone, or even the working set refused
            return HostSample(now, None, "psutil", False, error=f"{why}: {exc}", **host)
        return HostSample(now, value, "psutil", False, detail=f"{why} pid {proc.pid}, {what}", metric=metric, **host)

    def close(self) -> None:
        pass


class ProcessProbe:
    """A Linux/macOS host: a named VM process (or a PID) and its RSS."""

    name = "process"
    cheap = False
    unreachable = False

    def __init__(self, target: str, clock: Callable[[], float] = time.time):
        self.target = target
        self.clock = clock

    def find(self) -> list[psutil.Process]:
        if self.target.isdigit():
            try:
                return [_psutil().Process(int(self.target))]
            except _psutil().NoSuchProcess:
                return []
        wanted = self.target
        found = []
        for proc in _psutil().process_iter(["name", "cmdline"]):
            cmd = proc.info.get("cmdline") or []
            exe_name = cmd[0].rsplit("/", 1)[-1] if cmd else ""
            if wanted in (proc.info.get("name"), exe_name):
                found.append(proc)
        return found

    def sample(self, guest: GuestSample | None) -> HostSample:
        now = self.clock()
        total = _psutil().virtual_memory().total
        procs = self.find()
        if not procs:
            return HostSample(now, None, "process", False, error=f"no process {self.target!r}: is the VM running?",
                              host_total=total)
        sizes = [(r, p) for p in procs if (r := _rss(p)) >= 0]
        if not sizes:
            return HostSample(now, None, "process", False, error=f"{self.target}: memory not readable (access denied)",
                              host_total=total)
        rss, proc = max(sizes, key=lambda t: t[0])
        more = f" (largest of {len(procs)})" if len(procs) > 1 else ""
        name = _proc_name(proc) if self.target.isdigit() else self.target
        return HostSample(now, rss, "process", False, detail=f"{name} pid {proc.pid} RSS{more}",
                          host_total=total, metric="rss")

    def close(self) -> None:
        pass


def estimate_host_bytes(guest: GuestSample) -> int | None:
    """What the VM holds on the host, guessed from inside: all but free memory the host can take."""
    if guest.total is None or guest.free is None:
        return None
    held = guest.total - guest.free
    if guest.fragmented_free is not None:
        held += guest.fragmented_free  # free, but in blocks too small for free page reporting
    return max(0, min(guest.total, held))


class EstimateProbe:
    name = "estimate"
    cheap = True
    unreachable = False

    def __init__(self, note: str = "no host reachable; estimated from the guest"):
        self.note = note

    def sample(self, guest: GuestSample | None) -> HostSample:
        if guest is None or (value := estimate_host_bytes(guest)) is None:
            when = guest.time if guest else time.time()
            return HostSample(when, None, "estimate", True, error="guest numbers unknown; cannot estimate")
        return HostSample(guest.time, value, "estimate", True,
                          detail=f"MemTotal - MemFree + fragmented free ({self.note})", metric="estimate")

    def close(self) -> None:
        pass


class NoVmProbe:
    """WSL1: Linux syscalls run on the Windows kernel; there is no VM footprint to measure."""

    name = "none"
    cheap = True
    unreachable = False

    def __init__(self, why: str):
        self.why = why

    def sample(self, guest: GuestSample | None) -> HostSample:
        return HostSample(guest.time if guest else time.time(), None, "none", False, error=self.why)

    def close(self) -> None:
        pass


RECHECK_DOWN = 600.0  # a latched-down interop is tried again this often, quietly


def interop_down_message(estimated: bool) -> str:
    what = "an estimate" if estimated else "unknown"
    return (f"Windows interop stopped working; host figure is {what} until the VM restarts "
            "(microsoft/WSL#41283; `vmmemctl doctor` shows what failed)")


class ChainProbe:
    """First probe that gives a number wins; the sample keeps why the earlier ones failed.

    A probe that raises is a failure like any other (issue 17: an exec error
    once escaped and the estimate was never tried). When every probe that
    failed says Windows is unreachable (``unreachable``: exec failed, WSL's
    interop server gone), interop is taken to be dead for the VM's lifetime
    (microsoft/WSL#41283): that is logged once, and those probes are skipped
    (tried again every ``RECHECK_DOWN`` s) instead of failing every sample.
    """

    unreachable = False

    def __init__(self, probes: list, clock: Callable[[], float] = time.time):
        self.probes = probes
        self.name = "+".join(p.name for p in probes)
        self.cheap = all(p.cheap for p in probes)
        self.clock = clock
        self.down_since: float | None = None
        self._checked_at = 0.0

    def sample(self, guest: GuestSample | None) -> HostSample:
        now = self.clock()
        recheck = self.down_since is None or now - self._checked_at >= RECHECK_DOWN
        failures: list[tuple[object, HostSample]] = []
        result = None
        for probe in self.probes:
            if not recheck and probe.unreachable:
                continue
            result = self._one(probe, guest)
            if result.bytes is not None:
                break
            failures.append((probe, result))
        if result is None:  # every probe is a Windows tool and interop is down: nothing to ask until the recheck
            # (an assert here once failed every sample after the first: issue 28, item 11)
            return HostSample(now, None, "none", False, error=interop_down_message(False))
        if recheck:  # a Windows tool that answered (not the estimate) says interop is alive
            measured = result.bytes is not None and not result.estimated
            self._judge_down([] if measured else [p for p, _ in failures], now)
        if self.down_since is not None:
            errors = [interop_down_message(result.estimated)]
        else:
            errors = [f"{p.name}: {r.error}" for p, r in failures]
        starting = any(r.starting for _, r in failures)
        if errors:
            result = dataclasses.replace(result, error="; ".join(errors), starting=starting or result.starting)
        return result

    @staticmethod
    def _one(probe, guest: GuestSample | None) -> HostSample:
        try:
            return probe.sample(guest)
        except Exception as exc:  # a bug or an odd OS error in one probe must leave the others a chance
            log.exception("host probe %s raised", probe.name)
            return HostSample(time.time(), None, "estimate", False, error=f"{type(exc).__name__}: {exc}")

    def _judge_down(self, failed: list, now: float) -> None:
        down = bool(failed) and all(p.unreachable for p in failed)
        self._checked_at = now
        if down and self.down_since is None:
            self.down_since = now
            log.warning("%s", interop_down_message(any(isinstance(p, EstimateProbe) for p in self.probes)))
        elif not down and self.down_since is not None:
            self.down_since = None
            log.warning("Windows interop answers again")

    def close(self) -> None:
        for probe in self.probes:
            probe.close()
