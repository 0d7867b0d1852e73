"""The recorder: the one object that records a history and acts on it.

It owns sampling, the policy window, the policy state, the [[schedule]]s and
the store's maintenance. :meth:`Recorder.jobs` is the one table of what runs
when:

    job        when                             what
    host       every [sampling] host_interval   the host footprint (only when it costs a Windows tool)
    tick       every [sampling] interval        guest sample -> store -> crossings -> decide -> act
    maintain   every minute                     roll-ups and retention
    scheduleN  its cron(5) line                 a scheduled reclaim, if its conditions hold

One driver runs that table and nothing else: :class:`monitor.watch.driver.Driver`
hands it to APScheduler, on a thread of its own in `vmmemctl watch` and on
Textual's event loop in a recording dashboard. So schedules run wherever
recording runs. Every job is a method a test can call directly; none raises:
an odd sample is logged and recorded as an error event, and the next tick
carries on.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

from monitor.config.schema import Config, Schedule
from monitor.errors import UserError
from monitor.history.health import Health, HealthRecord, failure_reason
from monitor.history.store import Store
from monitor.notify import Notification, Notifier, RateLimiter
from monitor.policy.rules import (
    Facts,
    Decision,
    PolicyState,
    Runs,
    decide,
    effective_method,
    judge_idle,
    metric_name,
)
from monitor.policy.state import history_window, load_state, save_state
from monitor.probes.host import interop_down_message
from monitor.reclaim.cost import Cost, CostMeter, read_group_stat, reset_unattributable
from monitor.reclaim.reclaimer import ReclaimBusy, ReclaimResult
from monitor.reclaim.record import ReclaimRequest, describe_reclaim
from monitor.kernel.cgroup_aim import Aim, aimed_globs, read_aims, with_aims
from monitor.sample import GuestSample, HostSample, Sample
from monitor.units import format_bytes, format_bytes_apart, format_duration

if TYPE_CHECKING:
    from monitor.probes.probeset import Probes
    from monitor.watch.metrics import Metrics

log = logging.getLogger(__name__)
RATE_STATE_KEY = "notify_rate"
ERROR_EVENT_PERIOD = 300.0  # the same error is recorded at most every 5 minutes
MAINTAIN_EVERY = 60.0
SAMPLE_GRACE = 5.0  # a sampling run late by more than this is dropped (the next one is due soon anyway)
# Samples held in memory while the history cannot be written (disk full): 1 h at 1 s, 2 h at the
# default 2 s; ~1 KiB each as Python objects, so at most ~4 MiB. Past that the oldest go first.
BACKLOG_MAX = 3600
# Wall and monotonic time between two ticks may differ by this much before it is a clock jump
# (NTP slews at most 0.5 ms/s; a step or a host that slept moves the wall clock by seconds to days).
JUMP_TOLERANCE = 5.0


class Workshop(Protocol):
    """What the recorder asks of its composition root (:class:`monitor.watch.wiring.Wiring`): a reclaim
    runs on its own thread with fresh probes and its own store connection, built there, not here."""

    config: Config
    db: Path

    def probes(self) -> Probes: ...

    def open_store(self) -> Store: ...

    def reclaim(self, request: ReclaimRequest, *, store: Store | None = None) -> ReclaimResult: ...

    def wsl_mode(self, kind: str, profile: str | None = None) -> str | None: ...


@dataclass(frozen=True)
class Job:
    id: str
    run: Callable[[], None]
    trigger: Any  # an APScheduler 3 trigger: IntervalTrigger, or cron's CronTrigger/OrTrigger
    grace: float  # seconds late it may still run; later than that it is skipped (a schedule: recorded)


@dataclass
class Recorder:
    config: Config
    probes: Probes
    store: Store  # used by the jobs' thread only; a reclaim opens its own
    notifier: Notifier
    wiring: Workshop  # builds what a reclaim needs (fresh probes, its own store connection)
    metrics: Metrics | None = None
    wsl_mode: str | None = None
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic  # what durations are measured with across clock jumps
    run_async: Callable[[Callable[[], None]], None] = field(default=lambda fn: fn())
    # How a notification goes out: here, at once (tests, the dashboard's screen); the watcher hands it
    # to a worker (monitor.notify.worker), so a hung backend never holds sampling.
    deliver: Callable[[Callable[[], None]], None] = field(default=lambda fn: fn())
    control: Path | None = None  # where this recorder's control endpoint listens (a watcher's), for clients
    acts: bool = True  # False: another watcher owns the VM (monitor.kernel.vmclaim): record, never act
    vm_owner: str | None = None  # who owns the VM when we do not, in words
    # Not owning the VM: tries to own it (None when it now does, else the owner in words); asked once a
    # minute, so a recording-only watcher takes over when the owner stops (monitor.kernel.vmclaim)
    retake: Callable[[], str | None] | None = None
    jobs_changed: Callable[[], None] = field(default=lambda: None)  # the driver adds the jobs again
    started: float = field(default_factory=time.time)
    last_host: HostSample | None = None
    last_decision: Decision | None = None
    # Crossings are a property of this process's sample stream, so they stay in memory: kept in
    # the store, a restart would report a "crossing" for whatever changed while nothing watched.
    _above: dict[str, bool] = field(default_factory=dict)
    _errors: RateLimiter = field(default_factory=lambda: RateLimiter(ERROR_EVENT_PERIOD))
    _reclaiming: threading.Lock = field(default_factory=threading.Lock)
    # The policy's window of recent samples, in memory: reading it back from SQLite every tick
    # was 70% of a tick's cost (bench/results/overhead.md). Filled from the store once.
    _recent: deque[Sample] | None = None
    _costs: CostMeter | None = None  # what each reclaim cost afterwards (monitor.reclaim.cost)
    _profile: str | None = None  # the PowerShell session's %USERPROFILE% the WSL mode was last read with
    # While the history cannot be written: the samples not yet written, and since when / why.
    backlog_max: int = BACKLOG_MAX
    _backlog: deque[Sample] = field(default_factory=deque)
    _dropped: int = 0
    _unwritten_since: float | None = None
    _unwritten_reason: str | None = None
    _health: HealthRecord | None = None
    _last_clocks: tuple[float, float] | None = None  # (wall, monotonic) at the last tick
    _reroll: tuple[float, float] | None = None  # after a step back: roll-ups redo [since, until) buckets
    _warnings: frozenset[str] | None = None  # the last sample's: a file that goes missing mid-run is news
    _interop_down: float | None = None  # since when Windows interop is dead, as last recorded
    _last_guest: GuestSample | None = None  # the latest, for the host job's estimate fallback
    # The policy's state as last read or written by this recorder: read again only when another
    # connection wrote the history (Store.changed_elsewhere), not every tick.
    _state: PolicyState | None = None
    _elsewhere: bool = True  # whether another connection wrote since the last tick (this tick's answer)
    _runs: Runs = field(default_factory=Runs)  # each rule's run above its threshold, kept tick to tick
    # Aimed rules and schedules (cgroup = "GLOB"): each glob's latest reading, and the reasons for no
    # figure already said in the history (once each: a VM without cgroup v2 says so once, not every tick)
    aims: dict[str, Aim] = field(default_factory=dict)
    _aims_said: set[tuple[str, str]] = field(default_factory=set)
    _globs: tuple[Config, list[str]] | None = None  # the config's aimed globs, worked out once per config
    # A subscription (monitor.watch.requests) waits here for the next tick rather than polling the
    # history: ticks counts the ticks done while anyone listens.
    recorded: threading.Condition = field(default_factory=threading.Condition)
    listeners: int = 0
    ticks: int = 0

    # ------------------------------------------------------------ what runs when

    def jobs(self) -> list[Job]:
        """The one table of jobs and their timing (see the module docstring)."""
        from monitor.watch.scheduling import (  # APScheduler without asyncio (bench/results/overhead.md)
            IntervalTrigger,
            cron,
            interval,
        )

        def every(seconds: float) -> IntervalTrigger:  # first run one period from now, on our clock
            return interval(seconds, start_date=dt.datetime.fromtimestamp(self.clock() + seconds))

        s = self.config.sampling
        table = []
        if not self.probes.host.cheap:
            table.append(Job("host", self.sample_host, every(s.host_interval), SAMPLE_GRACE))
        table.append(Job("tick", self.tick, every(s.interval), SAMPLE_GRACE))
        table.append(Job("maintain", self.maintain, every(MAINTAIN_EVERY), MAINTAIN_EVERY))
        for i, sched in enumerate(self.config.schedule if self.acts else ()):
            table.append(Job(f"schedule{i}", lambda sched=sched: self.run_schedule(sched),
                             cron(sched.cron), max(1.0, sched.grace)))
        return table

    # ------------------------------------------------------------ jobs

    def tick(self) -> Sample | None:
        """Sample the guest, store it, decide, act. Never raises."""
        try:
            sample = self._sample()
            self._follow_interop(sample.host)
            self._check_clock()
            self._record_new_warnings(sample)
            self._write(sample)
            self._elsewhere = self._others_wrote()
            if self.metrics:
                self.metrics.observe_sample(sample)
            self._record_crossings(sample)
            self.last_decision = self._decide_and_act(sample)
            self._measure_costs(sample)
            return sample
        except Exception as exc:  # the daemon must outlive any one odd sample
            self._record_error("tick", exc)
            return None
        finally:
            if self.listeners:
                with self.recorded:
                    self.ticks += 1
                    self.recorded.notify_all()

    def wait_for_tick(self, seen: int, timeout: float) -> int:
        """Wait until a tick after the one counted ``seen`` (or ``timeout``); the count now. Only while
        :attr:`listeners` counts the caller are ticks counted."""
        with self.recorded:
            self.recorded.wait_for(lambda: self.ticks != seen, timeout)
            return self.ticks

    def sample_host(self) -> None:
        """The host footprint on its own (slower) clock; the guest ticks reuse the latest."""
        try:
            # The latest guest sample goes along: should every Windows tool fail, the estimate
            # needs it (with None it was "unknown", never the estimate the chain promises).
            self.last_host = self.probes.sample_host(self._last_guest)
            self._follow_interop(self.last_host)
            self._follow_profile()
        except Exception as exc:
            self._record_error("host sample", exc)

    def maintain(self) -> None:
        self._try_to_own_the_vm()
        try:
            h, now = self.config.history, self.clock()
            since = self._reroll[0] if self._reroll else None
            self.store.roll_up(now, since=since)
            if self._reroll and now > self._reroll[1] + 600:  # past the last bucket written before the step
                self._reroll = None
            self.store.prune(h.raw_for, h.minute_for, h.ten_minute_for, h.events_for, self.clock())
        except Exception as exc:
            self._record_error("maintenance", exc)

    def _try_to_own_the_vm(self) -> None:
        if self.acts or self.retake is None:
            return
        try:
            owner = self.retake()
        except Exception as exc:
            self._record_error("VM claim", exc)
            return
        if owner is not None:
            self.vm_owner = owner
            return
        was, self.acts, self.vm_owner = self.vm_owner, True, None
        words = f"{was} no longer owns this VM: this watcher does now (its rules, schedules and reclaims act)"
        log.warning("%s", words)
        self.store.add_event("watch", words)
        self.jobs_changed()  # the schedules join the job table

    def run_schedule(self, schedule: Schedule) -> None:
        """A scheduled reclaim, if its conditions hold now."""
        name = schedule_name(schedule)
        try:
            skip = self._schedule_skip_reason(schedule)
            if skip:
                self.store.add_event("schedule", f"{name}: skipped: {skip}", rule=name)
                return
            if schedule.cgroup:
                aim = self._read_aims([schedule.cgroup])[schedule.cgroup]
                groups = [p for p, _ in aim.groups]
                self.store.add_event("schedule", f"{name}: reclaiming gradually in cgroup {schedule.cgroup} "
                                     f"({aim.words()})", rule=name)
                self.run_async(lambda: self._reclaim_groups(groups, name))
                return
            what = "the cache of " + ", ".join(schedule.path) if schedule.path else schedule.method
            self.store.add_event("schedule", f"{name}: reclaiming ({what})", rule=name)
            self.run_async(lambda: self._reclaim(schedule.method, name, schedule.path))
        except Exception as exc:
            self._record_error(name, exc)

    def schedule_missed(self, schedule: Schedule, when: dt.datetime, store: Store | None = None) -> None:
        """A scheduled reclaim missed by more than its grace (asleep?): skipped, and said so."""
        name = schedule_name(schedule)
        (store or self.store).add_event(
            "schedule", f"{name}: missed the {when:%H:%M} run by more than {schedule.grace:g}s (asleep?): "
            "skipped, not run late", rule=name)

    # ------------------------------------------------------------ writing the history, whatever the disk does

    def _write(self, sample: Sample) -> None:
        """Store ``sample`` and any backlog; when the history cannot take them (disk full, read-only,
        deleted, replaced), keep them in memory (bounded) and say so in the health record."""
        if self._health is None and not self.store.readonly:
            try:
                self._health = HealthRecord(self.store.path, self.health())
            except OSError as exc:
                log.warning("cannot write %s: %s", self.store.path, exc)
        while len(self._backlog) >= self.backlog_max:  # bounded: the oldest go first, counted
            self._backlog.popleft()
            self._dropped += 1
        self._backlog.append(sample)
        try:
            self._follow_file()
            self.store.add_samples(self._backlog)
        except (sqlite3.Error, OSError, UserError) as exc:
            self._history_failing(exc, sample.time)
            return
        if self._unwritten_since is not None:
            self._history_resumed()
        self._backlog.clear()

    def _others_wrote(self) -> bool:
        """Whether another connection wrote the history since the last tick (when unsure: yes)."""
        try:
            return self.store.changed_elsewhere()
        except sqlite3.Error:
            return True

    def _follow_file(self) -> None:
        change = self.store.file_changed()
        if change:
            words = self.store.follow_file(change)  # UserError when the path holds something else now
            log.warning("%s", words)
            self.store.add_event("error", words)

    def _history_failing(self, exc: BaseException, t: float) -> None:
        reason = failure_reason(exc) if not isinstance(exc, UserError) else str(exc)
        if self._unwritten_since is None:
            self._unwritten_since, self._unwritten_reason = t, reason
            log.error("history %s not written: %s; keeping up to %d samples in memory until it can be",
                      self.store.path, exc, BACKLOG_MAX)
            if self.metrics:  # once per outage: the samples themselves were taken, only not written
                self.metrics.observe_history_outage()
        self._unwritten_reason = reason
        self._say_health()

    def _history_resumed(self) -> None:
        since, reason, n, dropped = self._unwritten_since, self._unwritten_reason, len(self._backlog), self._dropped
        self._unwritten_since, self._unwritten_reason, self._dropped = None, None, 0
        at = dt.datetime.fromtimestamp(since or 0).strftime("%H:%M:%S")
        words = f"history written again: the {n} samples held since {at} ({reason}) are in it" + (
            f"; {dropped} oldest were dropped (backlog full)" if dropped else "")
        log.warning("%s", words)
        try:
            self.store.add_event("error", words, data={"written": n, "dropped": dropped})
        except (sqlite3.Error, OSError) as exc:
            log.error("could not record that: %s", exc)
        self._say_health()

    def health(self) -> Health:
        """Whether the history is being written, and where this recorder takes requests (`status`,
        the TUI and every client read it from the health record)."""
        control = str(self.control) if self.control else None
        if self._unwritten_since is None:
            return Health(os.getpid(), control=control, since=self.started)
        return Health(os.getpid(), self._unwritten_since, self._unwritten_reason, len(self._backlog), self._dropped,
                      control, self.started)

    def _say_health(self) -> None:
        if self._health is not None:
            self._health.write(self.health())

    # ------------------------------------------------------------ clock jumps

    def _check_clock(self) -> None:
        """A wall clock that jumped (host slept, NTP stepped) or a long gap in sampling breaks the
        policy's run of samples, so no `for` is met by a jump; cooldowns move with the jump, so they
        count time that passed (monotonic); after a step back, roll-ups redo the buckets it revisits."""
        wall, mono = self.clock(), self.monotonic()
        last, self._last_clocks = self._last_clocks, (wall, mono)
        if last is None:
            return
        jump = (wall - last[0]) - (mono - last[1])
        gap = mono - last[1]
        if abs(jump) <= JUMP_TOLERANCE:
            if gap > max(3 * self.config.sampling.interval, self.config.sampling.interval + JUMP_TOLERANCE):
                self._recent = deque()  # nobody watched in between: a run of samples starts again
                log.info("no sample for %s: the policy's window starts again", format_duration(gap))
            return
        self._recent = deque()
        with self.store.transaction():
            state = load_state(self.store)
            shifted = shift_cooldowns(state, jump)
            if shifted != state:
                save_state(self.store, shifted)
        self._state = shifted
        if jump < 0:
            since = min(wall, self._reroll[0]) if self._reroll else wall
            self._reroll = (since, max(last[0], self._reroll[1] if self._reroll else last[0]))
        words = (f"the clock jumped {'forward' if jump > 0 else 'back'} {format_duration(abs(jump))} "
                 f"({'asleep?' if jump > 0 else 'NTP step?'}): rules wait their `for` again, cooldowns moved with it")
        log.warning("%s", words)
        self.store.add_event("watch", words, data={"jump_s": round(jump, 3)})

    # ------------------------------------------------------------ reload

    def reconfigure(self, config: Config, notifier: Notifier) -> list[str]:
        """Take a reloaded config from the next tick on; returns what changed, in words. Called on the
        jobs' thread (no tick runs meanwhile); the caller re-schedules :meth:`jobs`."""
        old, changed = self.config, []
        for name in ("sampling", "rule", "schedule", "notify", "policy", "idle", "reclaim", "history", "metrics",
                     "control", "host", "guest", "general"):
            if getattr(old, name) != getattr(config, name):
                changed.append(name)
        self.config = config  # (the daemon gives the wiring the same config: it owns both)
        self.notifier = notifier
        labels = {r.label for r in config.rule}
        self._above = {k: v for k, v in self._above.items() if k in labels}
        if not self._backlog:
            self._recent = None  # the window's span may have changed: read it again from the store
        if {"host", "guest", "general"} & set(changed):  # the probes read these: build them again
            self.probes.close()
            self.probes = self.wiring.probes()
            self.probes.prime()
            self.last_host = None
        return changed

    def state_written(self) -> None:
        """Someone wrote the policy state on this recorder's own connection (a standalone dashboard's
        snooze): the next tick reads it again (writes on other connections are noticed by themselves)."""
        self._state = None

    # ------------------------------------------------------------ derived facts, asked of their owners

    def gradual_available(self) -> bool:
        return self.probes.gradual_available()

    # ------------------------------------------------------------ pieces

    def _sample(self) -> Sample:
        return self._with_aims(self._sample_vm())

    def _with_aims(self, sample: Sample) -> Sample:
        """The sample with the page cache of the groups the rules and schedules aim at (none: as it is)."""
        if self._globs is None or self._globs[0] is not self.config:  # once per config (a reload makes a new one)
            self._globs = (self.config, aimed_globs(self.config))
        globs = self._globs[1]
        if not globs:
            self.aims = {}
            return sample
        self.aims = self._read_aims(globs)
        return with_aims(sample, self.aims.values())

    def _read_aims(self, globs: list[str]) -> dict[str, Aim]:
        """Each glob's reading now; a reason for no figure is said once in the history (per glob and reason)."""
        aims = read_aims(self.probes.files, globs)
        for glob, aim in aims.items():
            if aim.cache is None and (glob, aim.why or "") not in self._aims_said:
                self._aims_said.add((glob, aim.why or ""))
                users = [f"rule {r.label}" for r in self.config.rule if r.cgroup == glob] + \
                    [f"schedule {schedule_name(x)}" for x in self.config.schedule if x.cgroup == glob]
                words = f"{', '.join(users)}: cgroup {glob}: {aim.why}; it does not act until there is a figure"
                log.warning("%s", words)
                self.store.add_event("watch", words)
        return aims

    def _sample_vm(self) -> Sample:
        guest = self.probes.sample_guest(idle_skip=True)
        if guest.total is not None:
            self._last_guest = guest
        if self.probes.host.cheap:
            return Sample(guest, self.probes.sample_host(guest))  # computed from the guest
        if self.last_host is None:
            self.last_host = self.probes.sample_host(guest)
            self._follow_profile()
        host = self.last_host
        if guest.time - host.time > 3 * self.config.sampling.host_interval:
            host = HostSample(guest.time, None, host.source, host.estimated,
                              error=f"stale: last host reading {guest.time - host.time:.0f}s old")
        return Sample(guest, host)

    def window(self, now: float, sample: Sample | None = None) -> list[Sample]:
        """The policy's recent samples (read from the store once, then kept), with ``sample`` added."""
        span = history_window(self.config)
        if self._recent is None:
            self._recent = deque(s for s in self.store.recent_samples(span, now) if sample is None or
                                 s.time < sample.time)
        if sample is not None:
            self._recent.append(sample)
        while self._recent and self._recent[0].time < now - span:
            self._recent.popleft()
        return list(self._recent)

    def _decide_and_act(self, sample: Sample) -> Decision:
        now = self.clock()
        history = self.window(sample.time, sample)
        facts = Facts(self.wsl_mode, self.gradual_available())
        first = self._state is None
        if first or self._elsewhere:
            self._state = load_state(self.store)  # a client's snooze or pause, a reclaim's connection
        state = self._state
        decision, new_state = decide(history, self.config, state, now, facts, self._runs)
        if new_state != state:
            with self.store.transaction():  # a snooze that arrived since our read is not lost:
                current = load_state(self.store)  # decide again on what is there now
                if current != state:
                    state = current
                    decision, new_state = decide(history, self.config, state, now, facts, self._runs)
                if new_state != state:
                    save_state(self.store, new_state)
            self._state = new_state
        self._log_decision(decision)
        if not self.acts:  # another watcher owns the VM: its rules act, ours only record
            return decision
        if decision.action == "notify":
            self._notify(decision, f"rule:{decision.rule}")
        elif decision.action == "prompt":
            self._prompt(decision)
        elif decision.action == "reclaim" and decision.cgroup:
            aim = self.aims.get(decision.cgroup)
            groups = [p for p, _ in aim.groups] if aim else []
            self.run_async(lambda: self._reclaim_groups(groups, f"rule:{decision.rule}"))
        elif decision.action == "reclaim":
            self.run_async(lambda: self._reclaim(decision.method or "auto", f"rule:{decision.rule}"))
        if first or new_state != state:  # a prompt expires when its rule re-arms: a change of state
            self._expire_prompts(new_state)
        return decision

    def _log_decision(self, decision: Decision) -> None:
        """Every decision at debug level; at info whenever its gist changes ("why did it not reclaim?")."""
        gist = (decision.action, decision.rule, decision.reason.endswith(": waiting"))
        last = self.last_decision
        changed = last is None or gist != (last.action, last.rule, last.reason.endswith(": waiting"))
        log.log(logging.INFO if changed else logging.DEBUG, "decision: %s: %s", decision.action, decision.reason)

    def _notify(self, decision: Decision, key: str, body: str | None = None) -> None:
        limiter = RateLimiter.from_state(self.config.notify.rate_limit, self.store.get_state(RATE_STATE_KEY))
        if not limiter.allow(key, self.clock()):
            log.info("notification for %s held back by the rate limit", key)
            return
        limiter.prune(self.clock())
        self.store.set_state(RATE_STATE_KEY, limiter.to_state())
        note = Notification("vmmemctl: WSL memory", body or decision.reason, key=key)
        self.deliver(lambda: self._send(note, decision.rule))

    def _send(self, note: Notification, rule: str | None) -> None:
        """One notification through the backends, and its record (on the delivery's own thread in the
        watcher: a store connection of its own)."""
        delivery = self.notifier.send(note)
        store = self.wiring.open_store()
        try:
            store.add_event("notify", f"{note.body} [{delivery.summary()}]", rule=rule,
                            data={"backend": delivery.backend, "failures": list(delivery.failures)})
        finally:
            store.close()
        if self.metrics:
            self.metrics.observe_notification(delivery.backend)

    def _prompt(self, decision: Decision) -> None:
        if any(p.rule == decision.rule for p in self.store.pending_prompts()):
            return  # one open question per rule is enough
        size = format_bytes(decision.metric_bytes)
        message = f"{decision.reason}. Reclaim ({decision.method or 'auto'})?"
        self.store.add_event("prompt", message, rule=decision.rule, status="pending",
                             data={"method": decision.method or "auto", "metric_bytes": decision.metric_bytes})
        if self.metrics:
            self.metrics.observe_prompt()
        self._notify(decision, f"prompt:{decision.rule}",
                     body=f"page cache {size}; open `vmmemctl tui` or run `vmmemctl reclaim`")

    def _expire_prompts(self, state: PolicyState) -> None:
        """A prompt whose condition has passed (its rule re-armed) is no longer a question."""
        for prompt in self.store.pending_prompts():
            if prompt.rule and state.rule(prompt.rule).armed:
                self.store.answer_prompt(prompt.id, "expired", "the condition passed")

    def _reclaim(self, method: str, trigger: str, paths: list[str] | None = None) -> None:
        """A reclaim by rule or schedule, on the caller's (worker) thread; never raises."""
        request = ReclaimRequest(method, tuple(os.path.expanduser(p) for p in paths or ()), trigger)
        failed: str | None = None
        try:
            failed = self.reclaim_now(request).error
        except ReclaimBusy as exc:
            log.info("%s: skipped: %s", trigger, exc)
            failed = str(exc)
        except Exception as exc:  # recorded by reclaim_now
            failed = str(exc) or type(exc).__name__
        if failed:
            self._rearm_after_failure(trigger, failed)

    def _rearm_after_failure(self, trigger: str, why: str) -> None:
        """A rule fired but its reclaim did not run (another reclaim held the machine, the guest's
        channel timed out): armed again, so it tries once more after its cooldown. Left disarmed, it
        would wait for the metric to fall below where it re-arms, which only a reclaim brings about.
        (A schedule's trigger: nothing to re-arm.)"""
        if not trigger.startswith("rule:"):
            return
        rule = trigger.removeprefix("rule:")
        store = None
        try:
            store = self.wiring.open_store()  # this (worker) thread's own connection; one transaction
            with store.transaction():
                state = load_state(store)
                kept = state.rule(rule)
                if kept.armed:
                    return
                save_state(store, state.with_rule(rule, dataclasses.replace(kept, armed=True)))
            log.info("rule:%s: its reclaim did not run (%s): armed again, tries after its cooldown", rule, why)
        except Exception as exc:
            self._record_error(f"rule:{rule}", exc, store)
        finally:
            if store is not None:
                store.close()

    def _reclaim_groups(self, groups: list[str], trigger: str) -> None:
        """An aimed rule's or schedule's reclaim: each matched group in turn (the largest cache first), gradual in
        that group only (monitor.reclaim.cgroup_target: a frozen or vanished group is refused and recorded,
        the next one still goes); on the caller's (worker) thread; never raises."""
        failed: str | None = "no group left to reclaim"
        for path in groups:
            try:
                if self.reclaim_now(ReclaimRequest("gradual", trigger=trigger, cgroup=path)).error is None:
                    failed = None  # one group's reclaim ran: the rule acted
            except ReclaimBusy as exc:
                log.info("%s: skipped: %s", trigger, exc)
                failed = failed and str(exc)
                break
            except Exception:
                continue  # recorded by reclaim_now
        if failed:
            self._rearm_after_failure(trigger, failed)

    def reclaim_now(self, request: ReclaimRequest) -> ReclaimResult:
        """One reclaim at a time from this recorder (a rule's, a schedule's, a client's), with a store
        connection of its own; ReclaimBusy when one runs (here, or in any process: the machine lock)."""
        if not self._reclaiming.acquire(blocking=False):
            raise ReclaimBusy("a reclaim is already running in this watcher")
        store = None
        try:
            store = self.wiring.open_store()  # this thread's own connection
            result = self.wiring.reclaim(request, store=store)
            if self.metrics:
                self.metrics.observe_reclaim(result)
            log.info("%s", describe_reclaim(result))
            return result
        except ReclaimBusy as exc:
            if store is not None:
                store.add_event("reclaim", f"{request.trigger}: skipped: {exc}", rule=request.trigger,
                                status="skipped")
            raise
        except Exception as exc:
            self._record_error(request.trigger, exc, store)
            raise
        finally:
            if store is not None:
                store.close()
            self._reclaiming.release()

    def _schedule_skip_reason(self, schedule: Schedule) -> str | None:
        now = self.clock()
        state = load_state(self.store)
        if state.paused_until and now < state.paused_until:
            return "auto-reclaim is paused"
        recent = self.window(now)
        if schedule.cgroup:
            aim = self._read_aims([schedule.cgroup])[schedule.cgroup]
            if aim.cache is None:
                return f"cgroup {schedule.cgroup}: {aim.why}"
            latest = recent[-1] if recent else None
            limit = schedule.if_page_cache_above.resolve(latest.guest.total if latest else None) \
                if schedule.if_page_cache_above is not None else None
            if schedule.if_page_cache_above is not None and limit is None:
                return "MemTotal unknown"
            if limit is not None and aim.cache <= limit:
                return f"page cache of cgroup {schedule.cgroup} {format_bytes(aim.cache)} is not above {format_bytes(limit)}"
        elif schedule.if_page_cache_above is not None:
            latest = recent[-1] if recent else None
            limit = schedule.if_page_cache_above.resolve(latest.guest.total if latest else None)
            cache = latest.guest.page_cache if latest else None
            if limit is None or cache is None:
                return "page cache unknown"
            if cache <= limit:
                return f"page cache {format_bytes(cache)} is not above {format_bytes(limit)}"
        if schedule.only_if_idle:  # a path drop leaves the working set elsewhere alone: the light gate
            method = "path" if schedule.path else effective_method(schedule.method, self.gradual_available())
            idle = judge_idle(recent, self.config.idle, method, now)
            if not idle.ok:
                return idle.words
        return None

    def _record_crossings(self, sample: Sample) -> None:
        """Threshold crossings, both ways, as events (the TUI lists them), with the rule's own hysteresis:
        it rises above its threshold, and falls only below where it re-arms (`rearm_below`, else 75 % of
        the threshold), so a value hovering at the threshold is one event, not four in 12 s. Words only
        for a crossing, with sizes that differ when the numbers do."""
        for level in self._runs.levels(sample, self.config.rule):
            rule, value, threshold, rearm, falls, _ = level
            if value is None or threshold is None:
                continue
            before = self._above.get(rule.label)  # "above": past the threshold (below it, for a below rule)
            back = rearm is None or (value > rearm if falls else value < rearm)
            if level.past:
                above = True
            elif back or before is None:
                above = False
            else:
                above = before  # between the two: no change
            self._above[rule.label] = above
            if before is not None and above != before:
                limit = threshold if above else (rearm if rearm is not None else threshold)
                shown, at = format_bytes_apart(value, limit)
                word = ("fell below" if above else "rose above") if falls else ("rose above" if above else "fell below")
                also = "" if above or limit == threshold else " (where it re-arms)"
                self.store.add_event("crossing", f"{metric_name(rule)} {shown} {word} {at}{also} "
                                     f"({rule.label})", rule=rule.label)

    def _follow_profile(self) -> None:
        """WSL's reclaim mode again from the .wslconfig in the PowerShell session's %USERPROFILE%, once the
        session has said it (its first answer): before, the folder was guessed (issue 27)."""
        profile = self.probes.windows_profile()
        if profile is None or profile == self._profile:
            return
        self._profile = profile
        try:
            self.wsl_mode = self.wiring.wsl_mode(self.probes.environment.kind, profile)
        except OSError as exc:  # an unreadable profile folder: the guess stands
            log.warning("could not read .wslconfig under %s: %s", profile, exc)

    def _follow_interop(self, host: HostSample) -> None:
        """Windows interop dying for the VM's lifetime (microsoft/WSL#41283) and coming back: one
        event each, not an error every sample (the host probe stops trying it meanwhile)."""
        down = self.probes.interop_down_since()
        if (down is None) == (self._interop_down is None):
            return
        was, self._interop_down = self._interop_down, down
        if down is not None:
            words = interop_down_message(host.estimated)
        else:
            words = (f"Windows interop answers again after {format_duration(self.clock() - was)}; "
                     f"host figure measured again ({host.source})")
        try:  # (the host probe has logged it)
            self.store.add_event("watch", words, data={"interop": "down" if down is not None else "up"})
        except (sqlite3.Error, OSError) as exc:
            log.error("could not record that: %s", exc)

    def _record_new_warnings(self, sample: Sample) -> None:
        """A /proc file that vanished or came back cut short since the last sample: an error event
        (warnings there from the start, like no PSI on WSL2, are the machine, not news)."""
        now = frozenset(sample.guest.warnings)
        new = now - self._warnings if self._warnings is not None else frozenset()
        self._warnings = now
        for words in sorted(new):
            log.warning("sample: %s", words)
            if self._errors.allow(f"sample:{words}", self.clock()):
                try:
                    self.store.add_event("error", f"sample: {words}")
                except (sqlite3.Error, OSError) as exc:
                    log.error("could not record that: %s", exc)

    def _measure_costs(self, sample: Sample) -> None:
        """Each reclaim's cost after the fact: what was read back within [reclaim] cost_window."""
        if self._costs is None:
            self._costs = CostMeter(self.config.reclaim.cost_window, read_group=self._read_group)
            words = reset_unattributable(self.store, self.config.reclaim, sample.time)  # once per history
            if words:
                log.warning("%s", words)
            self._costs.on_cost = self._cost_recorded
        for cost in self._costs.tick(self.store, sample.guest, self.config.reclaim, look=self._elsewhere,
                                     later=self._off_the_tick, open_store=self.wiring.open_store):
            self._cost_recorded(cost)

    def _read_group(self, shown: str) -> dict[str, int] | None:
        """A group's memory.stat for its cost, through fresh probes (the guest's channel in host mode), as a
        reclaim reads it; on the reclaim worker, never on the tick (CostMeter.tick's ``later``)."""
        probes = self.wiring.probes()
        try:
            return read_group_stat(shown, probes.files)
        finally:
            probes.close()

    def _cost_recorded(self, cost: Cost) -> None:
        if self.metrics:
            self.metrics.observe_cost(cost)

    def _off_the_tick(self, fn: Callable[[], None]) -> None:
        """Slow work the tick hands on (walking a --path reclaim's trees for its cost): the reclaim
        worker runs it, one at a time with reclaims; its failure is recorded, never raised."""
        def guarded() -> None:
            try:
                fn()
            except Exception as exc:
                store = None
                try:  # this thread's own connection: the tick's is the tick's
                    store = self.wiring.open_store()
                    self._record_error("cost", exc, store)
                except Exception as again:
                    log.error("cost failed: %s (and could not be recorded: %s)", exc, again)
                finally:
                    if store is not None:
                        store.close()
        self.run_async(guarded)

    def _record_error(self, where: str, exc: BaseException, store: Store | None = None) -> None:
        if self.metrics:
            self.metrics.observe_error()
        key = f"{where}:{type(exc).__name__}"
        if not self._errors.allow(key, self.clock()):  # the same failure again: one line, no traceback
            log.error("%s failed again: %s", where, exc)
            return
        log.error("%s failed: %s", where, exc, exc_info=exc)
        try:
            (store or self.store).add_event("error", f"{where}: {type(exc).__name__}: {exc}")
        except Exception as again:  # the history itself is failing (disk full?): the log still has it
            log.error("could not record the error: %s", again)

    def close(self) -> None:
        if self._backlog:  # a last try: the disk may have room again
            try:
                self.store.add_samples(self._backlog)
                self._backlog.clear()
            except (sqlite3.Error, OSError) as exc:
                log.error("stopping with %d samples not written (%s): they are lost", len(self._backlog), exc)
        if self._health is not None:
            self._health.close()
        self.probes.close()
        self.store.close()


def shift_cooldowns(state: PolicyState, by: float) -> PolicyState:
    """Rules' last-fired times moved by a clock jump, so a cooldown counts the time that passed.
    (Snooze and pause are deadlines on the wall clock, "until 15:00": they stay.)"""
    rules = {name: dataclasses.replace(rs, last_fired=rs.last_fired + by) if rs.last_fired is not None else rs
             for name, rs in state.rules.items()}
    return PolicyState(rules, state.snoozed_until, state.paused_until)


def schedule_name(schedule: Schedule) -> str:
    return f"schedule:{schedule.name or schedule.cron}"
