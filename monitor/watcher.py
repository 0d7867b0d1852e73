"""The watcher: sample, store, decide, act; APScheduler only says when.

Every job is a method a test can call directly (:meth:`Watcher.tick`,
:meth:`Watcher.sample_host`, :meth:`Watcher.run_schedule`,
:meth:`Watcher.maintain`); :func:`schedule_jobs` wires them to time:

    guest tick      every [sampling] interval    sample the guest, store, decide, act
    host sample     every [sampling] host_interval  (a Windows tool costs ~0.5 s a spawn)
    maintenance     every minute                 roll-ups and retention
    [[schedule]]    cron(5) triggers             scheduled reclaims, with their conditions

Jobs coalesce and have grace times: after sleep or a suspended VM, missed
runs collapse into at most one (sampling) or are skipped and recorded
(scheduled reclaims past their grace), never replayed in a burst.

A tick never raises: an odd sample is logged and recorded as an error
event, and the next tick carries on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from monitor import actions
from monitor.config import Config, Schedule
from monitor.cost import CostMeter
from monitor.notify import Notification, Notifier, RateLimiter
from monitor.policy import METRIC_NAMES, Decision, PolicyState, effective_method, judge_idle, rule_status
from monitor.reclaim import ReclaimBusy, Reclaimer
from monitor.sample import HostSample, Sample
from monitor.store import Store
from monitor.units import format_bytes

log = logging.getLogger(__name__)
RATE_STATE_KEY = "notify_rate"
ERROR_EVENT_PERIOD = 300.0  # the same error is recorded at most every 5 minutes


@dataclass
class Watcher:
    config: Config
    probes: Any  # monitor.probes.Probes
    store: Store
    notifier: Notifier
    make_reclaimer: Callable[[], Reclaimer]
    open_store: Callable[[], Store]  # a connection for another thread (reclaims run beside sampling)
    metrics: Any = None  # monitor.metrics.Metrics, or None
    wsl_mode: str | None = None
    clock: Callable[[], float] = time.time
    run_async: Callable[[Callable[[], None]], None] = field(default=lambda fn: fn())
    last_host: HostSample | None = None
    _above: dict[str, bool] = field(default_factory=dict)
    _errors: RateLimiter = field(default_factory=lambda: RateLimiter(ERROR_EVENT_PERIOD))
    _reclaiming: threading.Lock = field(default_factory=threading.Lock)
    # The policy's window of recent samples, kept in memory: reading it back from SQLite every
    # tick was 70% of a tick's cost (bench/results/overhead.md). Filled from the store at start.
    _recent: deque[Sample] | None = None
    _gradual: bool | None = None  # memory.reclaim in the guest: looked up once, on the first decision
    last_decision: Decision | None = None
    _costs: CostMeter | None = None  # what each reclaim cost afterwards (monitor.cost)

    # ------------------------------------------------------------ jobs

    def tick(self) -> Sample | None:
        """Sample the guest, store it, decide, act. Never raises."""
        try:
            sample = self._sample()
            self.store.add_sample(sample)
            if self.metrics:
                self.metrics.observe_sample(sample)
            self._record_crossings(sample)
            self.last_decision = self._decide_and_act(sample)
            self._measure_costs(sample)  # issue 11: the lead moves this into the recorder's tick
            return sample
        except Exception as exc:  # the daemon must outlive any one odd sample
            self._record_error("tick", exc)
            return None

    def sample_host(self) -> None:
        """The host footprint on its own (slower) clock; the guest ticks reuse the latest."""
        try:
            self.last_host = self.probes.sample_host(None)
        except Exception as exc:
            self._record_error("host sample", exc)

    def maintain(self) -> None:
        try:
            h = self.config.history
            self.store.roll_up(self.clock())
            self.store.prune(h.raw_for, h.minute_for, h.ten_minute_for, h.events_for, self.clock())
        except Exception as exc:
            self._record_error("maintenance", exc)

    def run_schedule(self, schedule: Schedule) -> None:
        """A scheduled reclaim, if its conditions hold now."""
        name = f"schedule:{schedule.name or schedule.cron}"
        try:
            skip = self._schedule_skip_reason(schedule)
            if skip:
                self.store.add_event("schedule", f"{name}: skipped: {skip}", rule=name)
                return
            self.store.add_event("schedule", f"{name}: reclaiming ({schedule.method})", rule=name)
            self.run_async(lambda: self._reclaim(schedule.method, name))
        except Exception as exc:
            self._record_error(name, exc)

    # ------------------------------------------------------------ pieces

    def _sample(self) -> Sample:
        guest = self.probes.sample_guest()
        host_probe = self.probes.host
        if getattr(host_probe, "name", "") in ("estimate", "none") or self.last_host is None:
            host = self.probes.sample_host(guest)  # cheap: computed from the guest
            if getattr(host_probe, "name", "") not in ("estimate", "none"):
                self.last_host = host
        else:
            host = self.last_host
            if guest.time - host.time > 3 * self.config.sampling.host_interval:
                host = HostSample(guest.time, None, host.source, host.estimated,
                                  error=f"stale: last host reading {guest.time - host.time:.0f}s old")
        return Sample(guest, host)

    def _history(self, sample: Sample) -> list[Sample]:
        window = actions.history_window(self.config)
        if self._recent is None:
            self._recent = deque(self.store.recent_samples(window, sample.time))
        else:
            self._recent.append(sample)
        while self._recent and self._recent[0].time < sample.time - window:
            self._recent.popleft()
        return list(self._recent)

    def _decide_and_act(self, sample: Sample) -> Decision:
        now = self.clock()
        history = self._history(sample)
        with self.store.transaction():  # a snooze from the TUI between our read and write is not lost
            decision, state = actions.decision_now(self.config, self.store, sample, now, self.wsl_mode, history,
                                                   self.gradual_available())
            if state != actions.load_state(self.store):
                actions.save_state(self.store, state)
        self._log_decision(decision)
        if decision.action == "notify":
            self._notify(decision, f"rule:{decision.rule}")
        elif decision.action == "prompt":
            self._prompt(decision)
        elif decision.action == "reclaim":
            self.run_async(lambda: self._reclaim(decision.method or "auto", f"rule:{decision.rule}"))
        self._expire_prompts(sample)
        return decision

    def _log_decision(self, decision: Decision) -> None:
        """Every decision at debug level; at info whenever its gist changes ("why did it not reclaim?")."""
        gist = (decision.action, decision.rule, decision.reason.endswith(": waiting"))
        last = self.last_decision
        changed = last is None or gist != (last.action, last.rule, last.reason.endswith(": waiting"))
        log.log(logging.INFO if changed else logging.DEBUG, "decision: %s: %s", decision.action, decision.reason)

    def gradual_available(self) -> bool:
        if self._gradual is None:
            self._gradual = self.probes.gradual_available()
        return self._gradual

    def _notify(self, decision: Decision, key: str, body: str | None = None) -> None:
        limiter = RateLimiter.from_json(self.config.notify.rate_limit, self.store.get_state(RATE_STATE_KEY))
        if not limiter.allow(key, self.clock()):
            log.info("notification for %s held back by the rate limit", key)
            return
        limiter.prune(self.clock())
        self.store.set_state(RATE_STATE_KEY, limiter.to_json())
        note = Notification("vmmemctl: WSL memory", body or decision.reason, key=key)
        delivery = self.notifier.send(note)
        self.store.add_event("notify", f"{note.body} [{delivery.summary()}]", rule=decision.rule,
                             data={"backend": delivery.backend, "failures": list(delivery.failures)})
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

    def _expire_prompts(self, sample: Sample) -> None:
        """A prompt whose condition has passed (its rule re-armed) is no longer a question."""
        pending = self.store.pending_prompts()
        if not pending:
            return
        state = actions.load_state(self.store)
        for prompt in pending:
            if prompt.rule and state.rule(prompt.rule).armed:
                self.store.answer_prompt(prompt.id, "expired", "the condition passed")

    def _reclaim(self, method: str, trigger: str) -> None:
        if not self._reclaiming.acquire(blocking=False):
            log.info("%s: a reclaim is already running here; skipped", trigger)
            return
        store = self.open_store()
        reclaimer = None
        try:
            reclaimer = self.make_reclaimer()
            result = actions.reclaim_and_record(reclaimer, store, method, trigger=trigger)
            if self.metrics:
                self.metrics.observe_reclaim(result)
            log.info("%s", actions.describe_reclaim(result))
        except ReclaimBusy as exc:
            store.add_event("reclaim", f"{trigger}: skipped: {exc}", rule=trigger, status="skipped")
        except Exception as exc:
            self._record_error(trigger, exc, store)
        finally:
            if reclaimer is not None:
                reclaimer.sampler.close()  # its own probes, so the ticks' CPU readings stay undisturbed
            store.close()
            self._reclaiming.release()

    def _schedule_skip_reason(self, schedule: Schedule) -> str | None:
        now = self.clock()
        state = actions.load_state(self.store)
        if state.paused_until and now < state.paused_until:
            return "auto-reclaim is paused"
        recent = self.store.recent_samples(actions.history_window(self.config), now)
        if schedule.if_page_cache_above is not None:
            latest = recent[-1] if recent else None
            limit = schedule.if_page_cache_above.resolve(latest.guest.total if latest else None)
            cache = latest.guest.page_cache if latest else None
            if limit is None or cache is None:
                return "page cache unknown"
            if cache <= limit:
                return f"page cache {format_bytes(cache)} is not above {format_bytes(limit)}"
        if schedule.only_if_idle:
            idle = judge_idle(recent, self.config.idle, effective_method(schedule.method, self.gradual_available()),
                              now)
            if not idle.ok:
                return idle.words
        return None

    def _record_crossings(self, sample: Sample) -> None:
        """Threshold crossings, both ways, as events (the TUI lists them)."""
        for rule in self.config.rule:
            status = rule_status(rule, [sample], PolicyState(), sample.time)
            if status.value is None or status.threshold is None:
                continue
            above = status.value > status.threshold
            before = self._above.get(rule.label)
            self._above[rule.label] = above
            if before is not None and above != before:
                word = "rose above" if above else "fell below"
                self.store.add_event("crossing", f"{METRIC_NAMES[rule.metric]} {format_bytes(status.value)} {word} "
                                     f"{format_bytes(status.threshold)} ({rule.label})", rule=rule.label)

    def _measure_costs(self, sample: Sample) -> None:
        if self._costs is None:
            self._costs = CostMeter(self.config.reclaim.cost_window)
        for cost in self._costs.tick(self.store, sample.guest, self.config.reclaim):
            if self.metrics:
                self.metrics.observe_cost(cost)

    def _record_error(self, where: str, exc: BaseException, store: Store | None = None) -> None:
        log.error("%s failed: %s", where, exc, exc_info=exc)
        if self.metrics:
            self.metrics.observe_error()
        key = f"{where}:{type(exc).__name__}"
        if self._errors.allow(key, self.clock()):
            try:
                (store or self.store).add_event("error", f"{where}: {type(exc).__name__}: {exc}")
            except Exception as again:  # the history itself is failing (disk full?): the log still has it
                log.error("could not record the error: %s", again)
