"""Giving memory back, and measuring what came back.

Methods (what is written, in order):

    pagecache  sync; 1 > /proc/sys/vm/drop_caches
    full       sync; 3 > /proc/sys/vm/drop_caches      (page cache, dentries, inodes)
    compact    1 > /proc/sys/vm/compact_memory         (free pages into blocks the host can take)
    gradual    "<bytes> swappiness=0" > /sys/fs/cgroup/memory.reclaim, in steps that
               monitor.reclaim.controller sizes, each followed by a window listening for refaults; it
               stops where the working set begins (or at the remembered one, or the floor);
               cold pages go first, the hot set stays (drop_caches cannot do that)
    auto       gradual where memory.reclaim is writable, else pagecache; then compact

One group (``reclaim --cgroup``, ``run``): gradual against that group's memory.reclaim
(monitor.reclaim.cgroup_target), its steps sized and stopped by the same controller, listening to
the group's own memory.stat (``file``, ``active_file``, ``workingset_refault_file``) and
memory.pressure; no floor (a group's cache may all go: the VM's floor is the VM's), no remembered
working set (that is the VM's), then compact. For `run` (the job has ended) no active-list bound
either, and the windows stay at ``refault_window`` down to the end (they grow near a bound only to
hear a working set that a dead job no longer has). A group frozen meanwhile stops it before the next write.

Free page reporting only hands the host free blocks of at least the
reporting order, hence compaction after a drop (``[reclaim] compact``).

A reclaim records a :class:`ReclaimResult`: the guest before and after, the
host footprint before and over a settle period (reporting works in ~2 s
batches), gradual's steps with the refaults seen after each and why it
stopped. What it cost afterwards is measured later (monitor.reclaim.cost) from the
counters in ``after``.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

from monitor.config.schema import Config, ReclaimConfig
from monitor.errors import PrivilegeError, UserError
from monitor.kernel.filelock import FileLock, LockHeld
from monitor.kernel.portable import sync
from monitor.kernel.privilege import COMPACT_MEMORY, DROP_CACHES, MEMORY_RECLAIM
from monitor.reclaim.controller import Observation, Plan, bound, bound_words, next_step, reuse_signal
from monitor.reclaim.workingset import Hint
from monitor.kernel.procfs import PAGE_SIZE
from monitor.sample import GuestSample, HostSample, Sample, counter_bytes, guest_json
from monitor.units import format_bytes

if TYPE_CHECKING:
    from monitor.kernel.procfs import SystemFiles
    from monitor.reclaim.cgroup_target import Group
    from monitor.probes.probeset import Probes

GRADUAL_PAUSE = 0.25  # shortest wait after a step: lets kswapd and writeback keep up
ENDED_WINDOW = 1.0  # listening after each step of `run`'s ended job (never longer than refault_window)


class Writer(Protocol):
    """Privileged writes to kernel knobs (LocalFiles as root, SudoWriter, or a guest channel)."""

    description: str

    def write(self, path: str, value: str) -> None: ...

    def exists(self, path: str) -> bool: ...


class Sampler(Protocol):
    """What a reclaim measures with (:class:`monitor.probes.probeset.Probes`)."""

    def sample(self) -> Sample: ...

    def sample_guest(self) -> GuestSample: ...

    def sample_host(self, guest: GuestSample | None) -> HostSample: ...

    def gradual_available(self) -> bool: ...

    def gradual_known(self) -> bool | None: ...

    def close(self) -> None: ...


class ReclaimBusy(UserError):
    """A lock is held; ``pid`` and ``holder`` say by whom, where the lock file told."""

    exit_code = 1

    def __init__(self, message: str, pid: int | None = None, holder: str = ""):
        super().__init__(message)
        self.pid, self.holder = pid, holder


STOPPED = "asked to stop: Ctrl-C, or the watcher stopping"  # why a reclaim ended early, in its notes

@dataclass
class ReclaimResult:
    method: str  # what was asked for
    trigger: str = "manual"  # manual | rule:NAME | schedule:NAME | prompt
    dry_run: bool = False
    methods_run: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)  # what was written, in words
    notes: list[str] = field(default_factory=list)  # fallbacks and other things a person should know
    started: float = 0.0
    ended: float = 0.0
    before: GuestSample | None = None
    after: GuestSample | None = None
    host_before: HostSample | None = None
    host_after: HostSample | None = None
    host_trace: list[tuple[float, int | None]] = field(default_factory=list)  # (seconds after the writes, bytes)
    error: str | None = None
    # gradual only: what the controller saw and why it stopped (monitor.reclaim.controller)
    gradual_steps: list[Observation] = field(default_factory=list)
    stop_reason: str | None = None  # refaults | pressure | target | active | floor | no progress | stopped | steps | fallback | frozen
    working_set_hint: Hint | None = None  # the remembered working set this run started from
    working_set_learned: int | None = None  # the estimate this run learned (a refaults/pressure stop)
    working_set_bytes: int | None = None  # the estimate used: learned, else the remembered one
    lower_bound: int | None = None  # gradual's planned lower bound before the first step
    lower_bound_source: str | None = None  # active | remembered | floor (monitor.reclaim.controller.bound)
    mglru: bool | None = None  # gradual's plan: MGLRU on, so Active(file) is no reuse signal (no "active" bound)
    # one group only (reclaim --cgroup, run): its path and its own page cache (memory.stat file) before and after
    cgroup: str | None = None
    cgroup_cache_before: int | None = None
    cgroup_cache_after: int | None = None
    # ... and its own refault counter (memory.stat workingset_refault_file, pages; None where the kernel has
    # none) at the writes' end: the base of its cost (monitor.reclaim.cost counts the group's refaults, not the VM's)
    cgroup_refaults_after: int | None = None
    cgroup_refaults_after_t: float | None = None  # when it was read
    # `run`: the group is removed as this reclaim ends, so its cost window ends here too: the counter read
    # again at the end of the settle period (the last moment the group is there to read)
    cgroup_removed_at_end: bool = False
    cgroup_refaults_end: int | None = None

    @property
    def freed_bytes(self) -> int | None:
        return _delta(self.before, self.after, "page_cache")

    @property
    def returnable_gain_bytes(self) -> int | None:
        d = _delta(self.before, self.after, "returnable_free")
        return None if d is None else -d

    @property
    def host_returned_bytes(self) -> int | None:
        if self.host_before is None or self.host_after is None or None in (self.host_before.bytes,
                                                                           self.host_after.bytes):
            return None
        return self.host_before.bytes - self.host_after.bytes

    @property
    def host_return_seconds(self) -> float | None:
        """Seconds after the writes until the host had 90% of what it got back in the end."""
        returned = self.host_returned_bytes
        if not returned or returned <= 0 or self.host_before is None or self.host_before.estimated:
            return None  # an estimate is computed from the guest: it "returns" instantly, which says nothing
        goal = self.host_before.bytes - 0.9 * returned
        return next((t for t, b in self.host_trace if b is not None and b <= goal), None)

    def to_json(self) -> dict[str, Any]:
        b, a, hb, ha = self.before, self.after, self.host_before, self.host_after
        return {
            "method": self.method, "methods_run": self.methods_run, "trigger": self.trigger,
            "dry_run": self.dry_run, "error": self.error, "steps": self.steps, "notes": self.notes,
            "started": self.started, "ended": self.ended, "duration_s": round(self.ended - self.started, 3),
            "freed_bytes": self.freed_bytes,
            "page_cache_before_bytes": b.page_cache if b else None,
            "page_cache_after_bytes": a.page_cache if a else None,
            "returnable_free_before_bytes": b.returnable_free if b else None,
            "returnable_free_after_bytes": a.returnable_free if a else None,
            "returnable_gain_bytes": self.returnable_gain_bytes,
            "host_before_bytes": hb.bytes if hb else None, "host_after_bytes": ha.bytes if ha else None,
            "host_source": hb.source if hb else None, "host_estimated": hb.estimated if hb else None,
            "host_returned_bytes": self.host_returned_bytes,
            "host_return_s": None if self.host_return_seconds is None else round(self.host_return_seconds, 2),
            "host_trace": [[round(t, 2), v] for t, v in self.host_trace],
            "before": guest_json(b) if b else None, "after": guest_json(a) if a else None,
            "stop_reason": self.stop_reason, "working_set_bytes": self.working_set_bytes,
            "working_set_learned_bytes": self.working_set_learned,
            "working_set_start_bytes": self.working_set_hint.target if self.working_set_hint else None,
            "lower_bound_bytes": self.lower_bound, "lower_bound_source": self.lower_bound_source,
            "mglru": self.mglru, "active_file_reuse_signal": reuse_signal(self.mglru),
            "gradual_steps": [o.to_json() for o in self.gradual_steps],
            "cgroup": self.cgroup, "cgroup_page_cache_before_bytes": self.cgroup_cache_before,
            "cgroup_page_cache_after_bytes": self.cgroup_cache_after,
            "cgroup_freed_bytes": None if None in (self.cgroup_cache_before, self.cgroup_cache_after)
            else self.cgroup_cache_before - self.cgroup_cache_after,
            **({"cgroup_refaults_after": self.cgroup_refaults_after,
                "cgroup_refaults_after_t": self.cgroup_refaults_after_t} if self.cgroup else {}),
            **({"cgroup_removed_at_end": True, "cgroup_refaults_end": self.cgroup_refaults_end}
               if self.cgroup_removed_at_end else {}),
        }


def _stall_us(a: GuestSample | None, b: GuestSample) -> int | None:
    x = a.psi_memory.some_total if a is not None and a.psi_memory else None
    y = b.psi_memory.some_total if b.psi_memory else None
    return None if x is None or y is None or y < x else y - x


def _step_words(n: int, o: Observation) -> str:
    text = f"step {n}: asked {format_bytes(o.asked)}, page cache {format_bytes(o.cache_before)} -> " \
           f"{format_bytes(o.cache_after)}"
    if o.eagain:
        text += " (EAGAIN: the kernel freed what it could)"
    if o.reread_bytes is not None:
        what = "refaults" if o.refault_bytes is not None else "read from disk"
        text += f"; {what} {format_bytes(o.reread_bytes)} in {o.window_s:.1f}s"
    return text


@dataclass(frozen=True)
class _GroupReading:
    """One group's counters at one moment, with the VM's sample of the same moment (its disk reads)."""

    cache: int
    refaults: int | None  # workingset_refault_file, pages
    pressure: int | None
    guest: GuestSample


def _group_reading(group: Group, guest: GuestSample) -> _GroupReading:
    stat = group.memory_stat() or {}
    return _GroupReading(stat.get("file", 0), stat.get("workingset_refault_file"), group.pressure_some_us(), guest)


def _group_cache_and_refaults(group: Group) -> tuple[int | None, int | None]:
    """The group's page cache and its workingset_refault_file (pages), from one read of its memory.stat."""
    stat = group.memory_stat() or {}
    return stat.get("file"), stat.get("workingset_refault_file")


def _delta(before: GuestSample | None, after: GuestSample | None, name: str) -> int | None:
    if before is None or after is None:
        return None
    x, y = getattr(before, name), getattr(after, name)
    return None if x is None or y is None else x - y


Progress = Callable[[str], None]


def plan_methods(method: str, gradual_available: bool, compact: bool, ran: bool = False) -> tuple[list[str], list[str]]:
    """The methods ``method`` runs here, in order, and notes about fallbacks (no I/O). The notes speak
    of the future for a preview (a dry run, the dashboard's confirm) and of the past with ``ran``."""
    notes = []
    if method in ("auto", "gradual") and not gradual_available:
        notes.append(f"{method}: {'used' if ran else 'will use'} pagecache (no memory.reclaim here: "
                     "no cgroup v2 memory controller)")
        method = "pagecache"
    elif method == "auto":
        method = "gradual"
    chain = [method]
    if method != "compact" and compact:
        chain.append("compact")
    return chain, notes


def gradual_plan(total: int, config: ReclaimConfig) -> tuple[int, int]:
    """(step, floor) in bytes: MemTotal/32 clamped to [step_min, step_max], as WSL's reworked gradual mode."""
    step = min(max(total // 32, config.gradual_step_min.bytes), config.gradual_step_max.bytes)
    return step, config.gradual_floor.resolve(total) or 0


def gradual_start(guest: GuestSample, config: ReclaimConfig, hint: Hint | None) -> Plan:
    """The plan a gradual reclaim starts from, given the guest now and the remembered working set: the
    reclaimer's, and the one `status` and the dashboard show, so the bound they name is the one it uses."""
    step, floor = gradual_plan(guest.total or 0, config)
    margin = hint.margin if hint is not None and hint.margin is not None else config.working_set_margin / 100
    short = config.refault_window
    # a window of 0 means "do not listen" (tests; the shortest pause): it stays so near the bound too
    near = max(short, config.refault_window_near) if short > 0 else short
    return Plan(cache_start=guest.page_cache or 0, step=step, floor=floor,
                target=hint.target if hint else None, refault_share=config.refault_share / 100,
                active=guest.active_file, active_margin=margin, window=short, window_near=near,
                mglru=guest.mglru)


def stop_words(plan: Plan, hint: Hint | None) -> str:
    """Where a gradual reclaim would stop and why, for a person: "would stop near 580 MiB: the active file
    cache 464 MiB + 25% (pages used more than once recently)" (status, a dry run, the dashboard)."""
    return f"would stop near {bound_words(plan, hint.about if hint else '')}; sooner if refaults say the " \
           "working set is higher"


def _os_sync() -> None:
    sync()  # looked up when called: Windows has no os.sync, and importing this module must work there


@dataclass(frozen=True)
class Seams:
    """How a reclaim flushes, waits and tells time: host mode and tests replace them."""

    sync: Callable[[], None] | None = None  # None: this machine's sync(2)
    sleep: Callable[[float], object] | None = None  # None: wait on `stop`, which wakes at shutdown
    clock: Callable[[], float] = time.time


class Reclaimer:
    """Runs one method at a time (a lock across processes) and measures it."""

    def __init__(self, writer: Writer, sampler: Sampler, config: ReclaimConfig, lock_path: Path,
                 progress: Progress | None = None, stop: threading.Event | None = None, seams: Seams = Seams()):
        self.writer = writer
        self.stop = stop or threading.Event()  # set by a watcher shutting down: settle ends early
        self.sampler = sampler
        self.config = config
        self.lock_path = lock_path
        self.sync = seams.sync or _os_sync
        self.sleep = seams.sleep or self.stop.wait  # waiting on `stop` sleeps, but wakes at shutdown
        self.clock = seams.clock
        self.progress = progress or (lambda text: None)
        self.group: Group | None = None  # the run's target group (run(group=...)), else the whole VM
        self.active_prior = True

    # ---------------------------------------------------------------- planning

    def gradual_available(self) -> bool:
        return self.sampler.gradual_available()  # the probes own this fact

    def plan(self, method: str, ran: bool = False) -> tuple[list[str], list[str]]:
        return plan_methods(method, self.gradual_available(), self.config.compact, ran)

    # ---------------------------------------------------------------- running

    def run(self, method: str, *, dry_run: bool = False, trigger: str = "manual",
            settle: float | None = None, working_set: Hint | None = None,
            group: Group | None = None, active_prior: bool = True) -> ReclaimResult:
        """``group``: gradual in that group only (``method`` is then "gradual"); ``active_prior``: its
        active file cache bounds the steps (False for a job that ended: nobody in it uses them now)."""
        result = ReclaimResult(method=method, trigger=trigger, dry_run=dry_run, started=self.clock(),
                               working_set_hint=working_set)
        self.group, self.active_prior = group, active_prior
        with self._lock():
            result.before = self.sampler.sample_guest()
            result.host_before = self.sampler.sample_host(result.before)
            if group is not None:
                result.cgroup = group.shown
                result.cgroup_cache_before = _group_cache_and_refaults(group)[0]
                chain = ["gradual"] + (["compact"] if self.config.compact else [])
            elif method in ("auto", "gradual") and not dry_run and self.sampler.gradual_known() is None:
                # Unknown is not "absent": falling back to drop_caches would drop the hot pages too
                result.error = ("the guest did not answer whether cgroup v2 memory.reclaim is there; nothing "
                                f"was dropped rather than fall back to drop_caches (`{method}` asks again next time)")
                chain = []
            else:
                chain, result.notes = self.plan(method, ran=not dry_run)
            result.methods_run = chain
            try:
                for i, name in enumerate(chain):
                    if i and self.stop.is_set():  # shutting down: what ran is the result
                        result.notes.append(f"stopped before {'+'.join(chain[i:])} ({STOPPED})")
                        result.methods_run = chain[:i]
                        break
                    getattr(self, f"_run_{name}")(result)
            except OSError as exc:
                result.error = f"{self.writer.description}: {exc.strerror or exc}"
                if exc.errno in (errno.EACCES, errno.EPERM):
                    raise PrivilegeError(f"writing kernel knobs was refused ({exc.strerror}); "
                                         "reclaim needs root") from None
            result.after = self.sampler.sample_guest()
            if group is not None:
                result.cgroup_cache_after, result.cgroup_refaults_after = _group_cache_and_refaults(group)
                result.cgroup_refaults_after_t = self.clock()
            if not dry_run:
                self._settle(result, self.config.settle if settle is None else settle)
            else:
                result.host_after = result.host_before
            if group is not None and not active_prior and not dry_run:
                # `run`'s ended job: its group is removed right after this reclaim (monitor.reclaim.cost)
                result.cgroup_removed_at_end = True
                result.cgroup_refaults_end = _group_cache_and_refaults(group)[1]
        result.ended = self.clock()
        return result

    def run_with(self, result: ReclaimResult, act: Callable[[ReclaimResult], None],
                 settle: float | None = None) -> ReclaimResult:
        """Measure a reclaim that ``act`` carries out (``reclaim --path``) as :meth:`run` measures a
        method: under the lock, the guest before and after, the host over the settle period."""
        result.started = self.clock()
        with self._lock():
            result.before = self.sampler.sample_guest()
            result.host_before = self.sampler.sample_host(result.before)
            act(result)
            result.after = self.sampler.sample_guest()
            if not result.dry_run:
                self._settle(result, self.config.settle if settle is None else settle)
            else:
                result.host_after = result.host_before
        result.ended = self.clock()
        return result

    def compact(self, result: ReclaimResult) -> None:
        """Compaction as the methods end with it (for :meth:`run_with`'s callers)."""
        self._run_compact(result)

    def _write(self, result: ReclaimResult, path: str, value: str) -> None:
        shown = "/" + path
        if result.dry_run:
            result.steps.append(f"would write {value!r} to {shown}")
            self.progress(result.steps[-1])
            return
        self.writer.write(path, value)
        result.steps.append(f"wrote {value!r} to {shown}")
        self.progress(result.steps[-1])

    def _sync(self, result: ReclaimResult) -> None:
        if result.dry_run:
            result.steps.append("would sync")
            return
        self.sync()
        result.steps.append("synced dirty pages")

    def _run_pagecache(self, result: ReclaimResult) -> None:
        self._sync(result)
        self._write(result, DROP_CACHES, "1")

    def _run_full(self, result: ReclaimResult) -> None:
        self._sync(result)
        self._write(result, DROP_CACHES, "3")

    def _run_compact(self, result: ReclaimResult) -> None:
        self._write(result, COMPACT_MEMORY, "1")

    def _run_gradual(self, result: ReclaimResult) -> None:
        """Steps chosen by monitor.reclaim.controller, each followed by a window that listens for refaults."""
        plan = self._gradual_plan(result)
        result.lower_bound, result.lower_bound_source = bound(plan)
        result.mglru = plan.mglru
        self._sync(result)
        if result.working_set_hint is not None:
            result.notes.append(f"gradual: {result.working_set_hint.words}")
        if not result.dry_run:
            result.notes.append(f"gradual: lower bound {bound_words(plan)}")
        else:  # a preview says it in the words `status` uses
            result.notes.append(f"gradual: {stop_words(plan, result.working_set_hint)}")
            todo = max(0, plan.cache_start - result.lower_bound)
            near = f" (growing to {plan.window_near:g}s near it)" if plan.window_near > plan.window else ""
            knob = self.group.reclaim_knob if self.group is not None else MEMORY_RECLAIM
            result.steps.append(f"would write up to '{plan.step} swappiness=0' to /{knob} at least "
                                f"{-(-todo // plan.step)} time(s), listening {plan.window:g}s after each{near} for "
                                f"refaults, until page cache <= {format_bytes(result.lower_bound)}")
            return
        self._gradual_loop(result, plan)

    def _gradual_plan(self, result: ReclaimResult) -> Plan:
        if self.group is None:
            return gradual_start(result.before, self.config, result.working_set_hint)
        step, _ = gradual_plan(result.before.total or 0, self.config)
        hint = result.working_set_hint
        margin = hint.margin if hint is not None and hint.margin is not None else self.config.working_set_margin / 100
        short = self.config.refault_window
        # a window of 0 means "do not listen" (tests; the shortest pause): it stays so near the bound too
        near = max(short, self.config.refault_window_near) if short > 0 else short
        stat = self.group.memory_stat() or {}
        if not self.active_prior:
            # `run`'s job has ended: the bound (0) is no working-set estimate to creep up on slowly, so
            # whole steps all the way (not a quarter of what is left near it: ~70 s for 600 MiB in the lab).
            # Nobody can re-read a finished job's private cache; only others sharing its files can, and
            # they re-read what they use within a second or so: a short window hears them.
            short = near = min(short, ENDED_WINDOW)
        return Plan(cache_start=stat.get("file", 0), step=step, floor=0, target=None,
                    refault_share=self.config.refault_share / 100,
                    active=stat.get("active_file") if self.active_prior else None, active_margin=margin,
                    window=short, window_near=near, whole_steps=not self.active_prior,
                    mglru=result.before.mglru)  # a group's active_file is MGLRU's generations too

    def _gradual_loop(self, result: ReclaimResult, plan: Plan) -> None:
        suffix = " swappiness=0"
        last = result.before
        group = self.group
        knob = MEMORY_RECLAIM if group is None else group.reclaim_knob
        mark = None if group is None else _group_reading(group, last)
        while True:
            decision = next_step(result.gradual_steps, plan)
            if decision.size is None:
                words = decision.words
                left = result.gradual_steps[-1].cache_after if result.gradual_steps else plan.cache_start
                if group is not None and decision.reason in ("floor", "active") and left < (1 << 20):
                    words = f"the group's page cache is given back ({format_bytes(left)} left)"  # its floor is 0
                self._gradual_stop(result, decision.reason, words, decision.working_set)
                return
            if self.stop.is_set():
                self._gradual_stop(result, "stopped", f"stopped early ({STOPPED})")
                return
            frozen = group.frozen() if group is not None else None
            if frozen:
                self._gradual_stop(result, "frozen", f"the group was frozen meanwhile ({frozen}): not written again")
                return
            eagain = False
            try:
                self.writer.write(knob, f"{decision.size}{suffix}")
            except OSError as exc:
                if exc.errno == errno.EINVAL and suffix and (last.swap_total or 0) == 0:
                    # Kernels before 6.9 refuse the swappiness argument. With no swap,
                    # anonymous memory cannot be reclaimed anyway, so the plain form is the same.
                    result.notes.append("kernel refused swappiness=0; no swap, so retried without it")
                    suffix = ""
                    continue
                if exc.errno == errno.EINVAL and suffix and group is not None:
                    # drop_caches is the whole VM's: never the fallback of one group's reclaim
                    self._gradual_stop(result, "fallback", "the kernel refused swappiness=0 and swap is on "
                                       "(gradual would swap out programs): nothing more written to the group")
                    return
                if exc.errno == errno.EINVAL and suffix:
                    result.notes.append("kernel refused swappiness=0 and swap is on (gradual would swap out "
                                        "programs): fell back to pagecache")
                    result.stop_reason = "fallback"
                    self._run_pagecache(result)
                    return
                if exc.errno != errno.EAGAIN:
                    raise
                # EAGAIN: "it attempted, but was unable to evict sufficient pages" (WSL treats it as success)
                eagain = True
            if group is None:
                obs, last = self._listen(decision.size, last, eagain, decision.window)
            else:
                obs, mark = self._listen_group(group, decision.size, mark, eagain, decision.window)
                last = mark.guest
            result.gradual_steps.append(obs)
            result.steps.append(_step_words(len(result.gradual_steps), obs))
            self.progress(result.steps[-1])

    def _listen(self, asked: int, last: GuestSample, eagain: bool, window: float) -> tuple[Observation, GuestSample]:
        """The window after one write: what came back, and the sample it ended with. The counters run on
        from the last window's end (``last``), so refaults that arrive late count in the next window."""
        start = self.clock()
        # PSI counts the writer's own reclaim as a stall: only the window after the write is the signal.
        mark = self.sampler.sample_guest() if last.psi_memory is not None else None
        self.sleep(max(GRADUAL_PAUSE, window))
        end = self.sampler.sample_guest()
        obs = Observation(asked=asked, cache_before=last.page_cache or 0, cache_after=end.page_cache or 0,
                          refault_bytes=counter_bytes(last.workingset_refault_file, end.workingset_refault_file, PAGE_SIZE),
                          pgpgin_bytes=counter_bytes(last.pgpgin, end.pgpgin, 1024),
                          psi_stall_us=_stall_us(mark, end), window_s=self.clock() - start, eagain=eagain)
        return obs, end

    def _listen_group(self, group: Group, asked: int, last: _GroupReading, eagain: bool,
                      window: float) -> tuple[Observation, _GroupReading]:
        """:meth:`_listen` for one group: its page cache and refaults from its memory.stat, its PSI from its
        memory.pressure; disk reads (the stand-in where a kernel has no refault counter) are the VM's."""
        start = self.clock()
        mark = group.pressure_some_us()
        self.sleep(max(GRADUAL_PAUSE, window))
        end = _group_reading(group, self.sampler.sample_guest())
        stall = None if mark is None or end.pressure is None or end.pressure < mark else end.pressure - mark
        refaults = None if last.refaults is None or end.refaults is None else max(0, end.refaults - last.refaults) * PAGE_SIZE
        obs = Observation(asked=asked, cache_before=last.cache, cache_after=end.cache, refault_bytes=refaults,
                          pgpgin_bytes=counter_bytes(last.guest.pgpgin, end.guest.pgpgin, 1024),
                          psi_stall_us=stall, window_s=self.clock() - start, eagain=eagain)
        return obs, end

    def _gradual_stop(self, result: ReclaimResult, reason: str, words: str, learned: int | None = None) -> None:
        result.stop_reason = reason
        result.working_set_learned = learned
        hint = result.working_set_hint
        result.working_set_bytes = learned if learned is not None else hint.estimate if hint else None
        result.notes.append(f"gradual stopped ({reason}): {words}")

    def _settle(self, result: ReclaimResult, settle: float) -> None:
        """Watch the host footprint for ``settle`` seconds after the writes."""
        start = self.clock()
        while True:
            elapsed = self.clock() - start
            guest = self.sampler.sample_guest() if result.host_before and result.host_before.estimated else None
            host = self.sampler.sample_host(guest or result.after)
            result.host_trace.append((elapsed, host.bytes))
            result.host_after = host
            if self.stop.is_set():
                result.notes.append(f"settle cut short after {elapsed:.0f}s ({STOPPED})")
                break
            if elapsed >= settle:
                break
            self.progress(f"settling: host {format_bytes(host.bytes)} ({settle - elapsed:.0f}s left)")
            self.sleep(min(1.0, settle - elapsed))

    # ---------------------------------------------------------------- locking

    def _lock(self):
        return ReclaimLock(self.lock_path)


class ReclaimLock:
    """One reclaim at a time, in any two processes (a :class:`~monitor.kernel.filelock.FileLock`).

    The default file is /run/lock/vmmemctl-reclaim.lock (sticky and
    world-writable on Debian/Ubuntu), so a root reclaim and a user's sudo
    reclaim share it.
    """

    def __init__(self, path: Path, holder: str = ""):
        self.lock = FileLock(path, holder)

    def __enter__(self) -> ReclaimLock:
        try:
            self.lock.__enter__()
        except LockHeld as held:
            raise ReclaimBusy(f"another reclaim is running (pid {held.pid or '?'}); try again when it ends",
                              pid=held.pid, holder=held.holder) from None
        return self

    def __exit__(self, *exc: object) -> None:
        self.lock.__exit__(*exc)


def default_lock_path() -> Path:
    if Path("/run/lock").is_dir() and os.access("/run/lock", os.W_OK):
        return Path("/run/lock/vmmemctl-reclaim.lock")
    from monitor.kernel.dirs import user_runtime_dir

    return user_runtime_dir() / "reclaim.lock"


def make_reclaimer(config: Config, probes: Probes, progress: Progress | None = None, *,
                   dry_run: bool = False, lock_path: Path | None = None,
                   stop: threading.Event | None = None) -> Reclaimer:
    """A Reclaimer with the narrowest writer that works here; PrivilegeError if none does."""
    writer = choose_writer(probes.files, dry_run)
    return Reclaimer(writer, probes, config.reclaim, lock_path or default_lock_path(), progress, stop,
                     Seams(sync=probes.files.sync))


def choose_writer(files: SystemFiles, dry_run: bool) -> Writer:
    """Root (or a tree we own): write directly. Otherwise the sudo path, if a sudoers rule allows it."""
    from monitor.kernel.privilege import SudoWriter, missing_right_hint
    from monitor.kernel.procfs import LocalFiles

    if not isinstance(files, LocalFiles) or dry_run:
        return files  # a guest channel writes as the guest's root; a dry run writes nothing
    if all(os.access(files.resolve(p), os.W_OK) for p in (DROP_CACHES, COMPACT_MEMORY)):
        return files
    blocked = _unwritable_for_anyone(files)
    if blocked:  # root would not help: say what stops it, not "needs root"
        raise PrivilegeError(f"reclaim cannot write {blocked}")
    sudo = SudoWriter(files)
    if sudo.allowed():
        return sudo
    raise PrivilegeError(f"reclaim needs root to write /proc/sys/vm/drop_caches: {missing_right_hint()}")


def _unwritable_for_anyone(files: SystemFiles) -> str | None:
    """"/proc/sys/vm/drop_caches: /proc/sys is mounted read-only (a container?)" when no user could write
    the knobs here (missing, or on a read-only mount), else None (root, or the sudo rule, would do)."""
    for knob in (DROP_CACHES, COMPACT_MEMORY):
        path = files.resolve(knob)
        try:
            read_only = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
        except AttributeError:  # Windows: no statvfs (and no /proc of its own: the guest is reached by exec)
            return None
        except FileNotFoundError:
            return f"/{knob}: it does not exist here (a kernel without it, or /proc not mounted)"
        except OSError:
            continue
        if read_only:
            return f"/{knob}: it is on a read-only mount (/proc/sys read-only: a container?)"
    return None
