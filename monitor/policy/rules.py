"""When to notify, prompt or reclaim: a pure function of samples, config, state and time.

:func:`decide` reads recent samples (oldest first), the rules, the remembered
:class:`PolicyState` (per-rule hysteresis and cooldown, snooze, pause) and
the clock, and returns a :class:`Decision` with a sentence a person can
read, plus the state as it would be once the decision is carried out. It does
no I/O, so a table of cases tests it (tests/test_policy.py).

A rule fires when its metric has been above ``above`` (or, for a rule that
says ``below``, below it) for ``for`` (every sample in that span, and the
history reaches back that far), it is armed (after firing it re-arms only once
the metric fell below ``rearm_below``, or rose above ``rearm_above``), its
cooldown has passed, and its gate holds (``if_reclaimable_above``: the guest
has that much cache to give back now). Automatic reclaim also needs the idle gate of
the method that will actually run (``auto`` is gradual where memory.reclaim
exists, else pagecache):

- gradual and compact keep the hot pages: mean CPU busy over ``idle.window``
  at most ``cpu_busy_max`` (30 %). Not near-total idle: WSL's own reclaim
  waits for <= 0.5 % and never fires under an editor (WSL#10011).
- pagecache and full drop the hot pages too, so they wait for a lull: every
  sample of ``drop_window`` (20 s) at most ``drop_cpu_busy_max`` (3 %). In
  bench/results/reclaim_policies.md the gentle gate let pagecache drop an
  editor's working set (re-read 102 % of it); the lull gate waits it out.
- both: PSI io/memory avg10 at most their limits where PSI exists.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Literal, NamedTuple, Sequence

from monitor.config.schema import Config, IdleConfig, Rule
from monitor.sample import CGROUP_METRIC, Sample, cgroup_why, metric_kind, metric_total, metric_value
from monitor.units import format_bytes, format_duration

ActionName = Literal["none", "notify", "prompt", "reclaim"]
PRIORITY = {"none": 0, "notify": 1, "prompt": 2, "reclaim": 3}
WSL_IDLE_BUSY = 0.5  # percent: WSL's autoMemoryReclaim idle threshold (src/linux/init/main.cpp)
WSL_IDLE_WINDOW = 120.0  # seconds of idle before WSL's reworked reclaim acts (PR #41096)
METRIC_NAMES = {"page_cache": "page cache", "reclaimable": "reclaimable cache", "host": "host footprint",
                "host_gap": "host gap", "host_available": "host available memory"}
METHOD_WORDS = {"auto": "automatically", "gradual": "gradually", "pagecache": "by dropping the page cache",
                "full": "by dropping all caches", "compact": "by compacting"}


@dataclass(frozen=True)
class Decision:
    action: ActionName
    reason: str
    method: str | None = None
    rule: str | None = None
    metric_bytes: int | None = None  # the metric's value, for messages and prompts
    # A rule fired but its action is held back: what it would do ("would reclaim (auto-reclaim is off)",
    # "would reclaim when idle"); a screen leads with it, so the verb is never cut off
    held: str | None = None
    cgroup: str | None = None  # an aimed rule's glob: its reclaim goes to the groups it matches


@dataclass(frozen=True)
class RuleState:
    armed: bool = True
    last_fired: float | None = None


@dataclass(frozen=True)
class PolicyState:
    rules: dict[str, RuleState] = field(default_factory=dict)
    snoozed_until: float | None = None  # no notifications, prompts or rule reclaims until then
    paused_until: float | None = None  # no automatic reclaims (rules or schedules) until then

    def rule(self, name: str) -> RuleState:
        return self.rules.get(name, RuleState())

    def with_rule(self, name: str, state: RuleState) -> PolicyState:
        return dataclasses.replace(self, rules={**self.rules, name: state})

    def to_json(self) -> dict:
        return {"rules": {k: dataclasses.asdict(v) for k, v in self.rules.items()},
                "snoozed_until": self.snoozed_until, "paused_until": self.paused_until}

    @classmethod
    def from_json(cls, data: dict | None) -> PolicyState:
        """Tolerant: a state written by another version loses what it cannot read, nothing more."""
        if not isinstance(data, dict):
            return cls()
        rules = {}
        for name, rs in (data.get("rules") or {}).items():
            if isinstance(rs, dict):
                rules[name] = RuleState(armed=bool(rs.get("armed", True)), last_fired=_number(rs.get("last_fired")))
        return cls(rules, _number(data.get("snoozed_until")), _number(data.get("paused_until")))


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class RuleStatus:
    """How one rule stands now, for `status`, the TUI and the decision's reason."""

    rule: Rule
    value: int | None
    threshold: int | None
    rearm: int | None  # hysteresis: the rule re-arms once the value is below this
    above_for: float  # seconds the metric has been past the threshold (above it, or below it for a below
    # rule; 0 if not past; at least `for` when it is that long: the exact figure is in the words)
    fires: bool
    words: Callable[[], str] = field(compare=False, repr=False)  # the watcher decides every tick and
    # needs the words of one rule at most: they are put together only when asked (``why``)

    @property
    def why(self) -> str:
        return self.words()


@dataclass(frozen=True)
class Idle:
    ok: bool
    words: str  # "CPU 2% (idle)" / "CPU 45% (busy; limit 30%)"
    wsl_would_act: bool  # near-total idle long enough for WSL's own reclaim


@dataclass(frozen=True)
class Facts:
    """What the policy weighs besides samples, config and state: this machine's facts, each asked of
    its owner and handed in, so that :func:`decide` stays pure."""

    wsl_mode: str | None = None  # WSL's own autoMemoryReclaim (monitor.kernel.wslconfig): the policy defers to it
    gradual_available: bool = True  # memory.reclaim writable here (Probes.gradual_available): what `auto` runs


@dataclass(frozen=True)
class _Inputs:
    samples: Sequence[Sample]
    config: Config
    state: PolicyState
    now: float
    facts: Facts


def decide(samples: Sequence[Sample], config: Config, state: PolicyState, now: float,
           facts: Facts = Facts(), runs: Runs | None = None) -> tuple[Decision, PolicyState]:
    """The decision for ``now`` and the state once it is carried out. ``runs``: a caller that decides on
    every new sample of one stream (the recorder) keeps where each rule's run began there."""
    if not samples:
        return Decision("none", "no samples yet"), state
    if runs is not None:  # most ticks: every rule on its quiet side, nothing to re-arm
        quiet = runs.quiet(samples, config.rule, state)
        if quiet is not None:
            return Decision("none", quiet + _snoozed_words(state, now)), state
    statuses = [rule_status(r, samples, state, now, runs) for r in config.rule]
    if runs is not None:
        runs.keep_only(config.rule)
    state = _rearm(state, statuses)
    firing = sorted((s for s in statuses if s.fires), key=lambda s: PRIORITY[s.rule.action], reverse=True)
    if not firing:
        return Decision("none", _quiet_reason(statuses, state, now)), state
    if state.snoozed_until and now < state.snoozed_until:
        top = firing[0]
        return Decision("none", f"{top.why}; snoozed until {_clock(state.snoozed_until)}", rule=top.rule.label,
                        metric_bytes=top.value), state
    for status in firing:
        decision = _act(status, _Inputs(samples, config, state, now, facts))
        if decision.action != "none" or status is firing[-1]:
            break
    if decision.action == "none":
        return decision, state
    fired = [s for s in firing if PRIORITY[s.rule.action] <= PRIORITY[decision.action]]
    for s in fired:  # a prompt also covers a notify that fired with it
        state = state.with_rule(s.rule.label, RuleState(armed=False, last_fired=now))
    return decision, state


def _act(status: RuleStatus, given: _Inputs) -> Decision:
    rule, config, state, now, wsl_mode = status.rule, given.config, given.state, given.now, given.facts.wsl_mode
    common = dict(rule=rule.label, metric_bytes=status.value)
    if rule.action != "reclaim":
        return Decision(rule.action, status.why, method=rule.method if rule.action == "prompt" else None, **common)
    if rule.cgroup:
        return _act_on_groups(status, given)
    effective = effective_method(rule.method, given.facts.gradual_available)
    words = METHOD_WORDS.get(effective, effective)
    if rule.method == "auto" and effective == "pagecache":
        words += " (auto: no memory.reclaim here)"
    if not config.policy.auto_reclaim:
        held = "would reclaim (auto-reclaim is off)"
        return Decision("none", f"{status.why}; {held}: {words}", held=held, **common)
    if state.paused_until and now < state.paused_until:
        held = f"would reclaim (auto-reclaim paused until {_clock(state.paused_until)})"
        return Decision("none", f"{status.why}; {held}", held=held, **common)
    idle = judge_idle(given.samples, config.idle, effective, now)
    if not idle.ok:
        return Decision("none", f"{status.why}; {idle.words}: waiting", held="would reclaim when idle", **common)
    if config.policy.defer_to_wsl and wsl_mode in ("dropcache", "gradual") and idle.wsl_would_act:
        return Decision("none", f"{status.why}; {idle.words}; WSL's own autoMemoryReclaim={wsl_mode} "
                        "acts on this idle VM: deferring to it", held="leaving it to WSL's own reclaim", **common)
    return Decision("reclaim", f"{status.why}; {idle.words}; reclaiming {words}", method=rule.method, **common)


def _act_on_groups(status: RuleStatus, given: _Inputs) -> Decision:
    """An aimed rule's reclaim: gradual in each matched group, stopped by that group's own refaults, so no
    VM-wide idle gate (the point is a VM that never goes quiet) and no deferring to WSL (whose reclaim is
    the whole VM's). The master switch and a pause still hold it."""
    rule, state, now = status.rule, given.state, given.now
    common = dict(rule=rule.label, metric_bytes=status.value, cgroup=rule.cgroup)
    words = f"gradually in cgroup {rule.cgroup} (each group stops on its own refaults)"
    if not given.config.policy.auto_reclaim:
        held = "would reclaim (auto-reclaim is off)"
        return Decision("none", f"{status.why}; {held}: {words}", held=held, **common)
    if state.paused_until and now < state.paused_until:
        held = f"would reclaim (auto-reclaim paused until {_clock(state.paused_until)})"
        return Decision("none", f"{status.why}; {held}", held=held, **common)
    return Decision("reclaim", f"{status.why}; reclaiming {words}", method="gradual", **common)


def metric_key(rule: Rule) -> str:
    """The key of the rule's metric in a sample (:func:`monitor.sample.metric_value`): its metric, or
    "cgroup:GLOB" for a rule that aims at groups."""
    return f"{CGROUP_METRIC}{rule.cgroup}" if rule.cgroup else rule.metric


def metric_name(rule: Rule) -> str:
    return f"page cache of cgroup {rule.cgroup}" if rule.cgroup else METRIC_NAMES[rule.metric]


def effective_method(method: str, gradual_available: bool) -> str:
    """What ``auto`` (and ``gradual``) will run here: their fallback is pagecache (monitor.reclaim.reclaimer.plan_methods)."""
    if method in ("auto", "gradual"):
        return "gradual" if gradual_available else "pagecache"
    return method


DROPS_HOT_PAGES = ("pagecache", "full")


def rule_status(rule: Rule, samples: Sequence[Sample], state: PolicyState, now: float,
                runs: Runs | None = None) -> RuleStatus:
    latest = samples[-1]
    total = metric_total(latest, rule.metric)
    threshold = rule.threshold.resolve(total)
    rearm = _rearm_threshold(rule, total)
    key = metric_key(rule)
    value = metric_value(latest, key)
    name = metric_name(rule)

    def status(above_for: float, fires: bool, words: Callable[[], str]) -> RuleStatus:
        return RuleStatus(rule, value, threshold, rearm, above_for, fires, words)

    if threshold is None or value is None:
        missing = f"{name} unknown" if value is None else "host RAM unknown"
        if rule.cgroup and value is None:
            missing = f"aims at cgroup {rule.cgroup}: {cgroup_why(latest, rule.cgroup)}; it does not fire"
        return status(0.0, False, lambda: f"{rule.label}: {missing}")

    def limit() -> str:
        return _limit_words(rule, threshold)
    # The run is walked back only as far as the rule's `for` (every tick, every rule: the whole window was
    # most of a tick's policy cost); how long it really is only the words need, and they are asked rarely.
    since = (_above_since(samples, key, threshold, back_to=now - rule.for_, falls=rule.falls)
             if runs is None else runs.above_since(samples, key, threshold, falls=rule.falls))
    side, other = ("below", "above") if rule.falls else ("above", "below")
    if since is None:
        return status(0.0, False, lambda: _not_past_words(rule, value, threshold))
    above_for = now - since  # exact, or at least `for` (then the run reaches back further)

    def why() -> str:  # with ``runs`` the start is exact already; without, the walk above stopped at `for`
        exact = (now - (_above_since(samples, key, threshold, falls=rule.falls) or since)
                 if above_for >= rule.for_ and runs is None else above_for)
        return f"{name} {format_bytes(value)} {side} {limit()} for {format_duration(exact)}"
    rs = state.rule(rule.label)
    if above_for < rule.for_:
        return status(above_for, False, lambda: f"{why()} (needs {format_duration(rule.for_)})")
    if not rs.armed:
        return status(above_for, False, lambda: f"{why()}; already acted, re-arms {other} {format_bytes(rearm)}")
    if rs.last_fired is not None and now - rs.last_fired < rule.cooldown:
        left = rule.cooldown - (now - rs.last_fired)
        return status(above_for, False, lambda: f"{why()}; cooling down {format_duration(left)}")
    gate = _gate(rule, latest)
    if gate is not None:
        return status(above_for, False, lambda: f"{why()}; {gate}")
    return status(above_for, True, why)


def _limit_words(rule: Rule, threshold: int) -> str:
    return f"{format_bytes(threshold)}" + (f" ({rule.threshold})" if rule.threshold.percent is not None else "")


def _not_past_words(rule: Rule, value: int, threshold: int) -> str:
    """A rule on its quiet side: "page cache 1.2 GiB below 7.2 GiB (30%)"."""
    return f"{metric_name(rule)} {format_bytes(value)} {'above' if rule.falls else 'below'} {_limit_words(rule, threshold)}"


def _snoozed_words(state: PolicyState, now: float) -> str:
    return f"; snoozed until {_clock(state.snoozed_until)}" if state.snoozed_until and now < state.snoozed_until else ""


def _gate(rule: Rule, latest: Sample) -> str | None:
    """Why the rule's gate holds it back now (``if_reclaimable_above``), or None when it lets it act."""
    if rule.if_reclaimable_above is None:
        return None
    limit = rule.if_reclaimable_above.resolve(latest.guest.total)
    have = latest.guest.reclaimable
    if limit is None or have is None:
        return "but the guest's reclaimable cache is unknown: nothing known to give back"
    if have <= limit:
        return (f"but the guest holds only {format_bytes(have)} of reclaimable cache (acts above "
                f"{format_bytes(limit)}): little to give back")
    return None


def _above_since(samples: Sequence[Sample], metric: str, threshold: int, back_to: float | None = None,
                 falls: bool = False) -> float | None:
    """Time of the oldest sample in the unbroken run of samples above ``threshold`` (below it, with
    ``falls``) that ends now; with ``back_to``, the walk stops once the run reaches that far back (its
    start is then at or before it).

    A run holds one host metric (:func:`monitor.sample.metric_kind`): a host figure that changed source
    (PowerShell's private working set, then tasklist's whole working set, up to a gigabyte apart) starts
    the run again at the first sample of the new metric, so a rule never fires on two meanings mixed."""
    since = None
    kind: object = _NO_KIND
    for sample in reversed(samples):
        value = metric_value(sample, metric)
        if value is None:
            continue  # an unknown reading neither breaks nor extends the run
        if kind is _NO_KIND:
            kind = metric_kind(sample, metric)
        if not _past(value, threshold, falls) or metric_kind(sample, metric) != kind:
            break
        since = sample.time
        if back_to is not None and since <= back_to:
            break
    return since


_NO_KIND = object()  # no known reading seen yet (a metric can itself be None: an old history's rows)


def _past(value: int, threshold: int, falls: bool) -> bool:
    return value < threshold if falls else value > threshold


class Level(NamedTuple):
    """A rule's metric in one sample, its threshold there and where it re-arms (None when unknown)."""

    rule: Rule
    value: int | None
    threshold: int | None
    rearm: int | None
    falls: bool
    key: str  # the metric's key in a sample (metric_key)

    @property
    def past(self) -> bool:
        """On the firing side of the threshold (above it; below it for a below rule); both known."""
        return _past(self.value, self.threshold, self.falls)  # type: ignore[arg-type]


class Runs:
    """Where each rule's run above its threshold began, kept as the samples arrive.

    A rule above its threshold walked its run back as far as its ``for`` on every tick: with the
    shipped rules and the cache high (waiting for idle, say) that was 225 samples a tick, a third of
    the watcher's CPU. The recorder decides on each new sample of one stream, so the run's start is
    known from the last tick and the new sample: the same answer as :func:`_above_since` without
    ``back_to`` (the exact start), found by looking at one sample. Anything else (samples dropped or
    replaced, a clock that went back, a first call) walks the list once, as before. A new sample of
    another host metric than the run's starts the run again there, as the walk does."""

    def __init__(self) -> None:
        # -> (newest seen, run start, the metric of the newest known reading)
        self._runs: dict[tuple[str, int, bool], tuple[Sample, float | None, object]] = {}
        # what a rule's level needs and does not change between samples: id(rule) -> (rule, metric key,
        # falls, {total: (threshold, rearm)}); and the levels of the newest sample
        self._consts: dict[int, tuple[Rule, str, bool, dict[int | None, tuple[int | None, int | None]]]] = {}
        self._levels: tuple[Sample, Sequence[Rule], list[Level]] | None = None

    def levels(self, sample: Sample, rules: Sequence[Rule]) -> list[Level]:
        """Each rule's :class:`Level` in ``sample``, worked out once per sample: the recorder's threshold
        crossings and the decision read the same ones."""
        kept = self._levels
        if kept is not None and kept[0] is sample and kept[1] is rules:
            return kept[2]
        consts = self._consts
        if len(consts) > 4 * len(rules) + 4:  # rules of an older config
            consts.clear()
        levels = []
        for rule in rules:
            c = consts.get(id(rule))
            if c is None or c[0] is not rule:
                c = consts[id(rule)] = (rule, metric_key(rule), rule.falls, {})
            total = metric_total(sample, rule.metric)
            limits = c[3].get(total)
            if limits is None:
                if len(c[3]) > 8:
                    c[3].clear()
                limits = c[3][total] = (rule.threshold.resolve(total), _rearm_threshold(rule, total))
            levels.append(Level(rule, metric_value(sample, c[1]), limits[0], limits[1], c[2], c[1]))
        self._levels = (sample, rules, levels)
        return levels

    def quiet(self, samples: Sequence[Sample], rules: Sequence[Rule], state: PolicyState) -> str | None:
        """What :func:`decide` says (before a snooze's words) when, in the newest sample, every rule with a
        figure is on its quiet side of its threshold and none is about to re-arm: the words of the rule
        nearest its threshold (a rule without a figure never fires and is not named while another has one).
        The runs end there, as the full pass would keep them. None when any of that does not hold, or no
        rule has a figure: the full pass decides. Most ticks are these; they need no status per rule and no
        words but one."""
        if not rules:
            return None
        newest = samples[-1]
        closest, best = None, -1.0
        levels = self.levels(newest, rules)
        for level in levels:
            rule, value, threshold, rearm, falls, _ = level
            if value is None or threshold is None:
                continue  # unknown here (no host figure on plain Linux): it never fires
            if level.past:
                return None
            rs = state.rules.get(rule.label)
            if rs is not None and not rs.armed and rearm is not None and (value > rearm if falls else value < rearm):
                return None  # it re-arms now: a change of state
            near = (threshold / max(value, 1) if falls else value / threshold) if threshold else -1.0
            if near > best:
                closest, best = level, near
        if closest is None:
            return None  # nothing known: the full pass says what is missing
        for level in levels:
            if level.value is not None and level.threshold is not None:
                self._runs[(level.key, level.threshold, level.falls)] = (newest, None, metric_kind(newest, level.key))
        self.keep_only(rules)
        return _not_past_words(closest.rule, closest.value, closest.threshold)  # type: ignore[union-attr,arg-type]

    def above_since(self, samples: Sequence[Sample], metric: str, threshold: int,
                    falls: bool = False) -> float | None:
        key, newest = (metric, threshold, falls), samples[-1]
        kept = self._runs.get(key)
        if kept is not None and kept[0] is newest:
            since, kind = kept[1], kept[2]
        elif kept is not None and len(samples) > 1 and samples[-2] is kept[0] and samples[0].time <= newest.time:
            since, kind = kept[1], kept[2]
            value = metric_value(newest, metric)
            if value is not None:
                if metric_kind(newest, metric) != kind:
                    since, kind = None, metric_kind(newest, metric)  # another metric: a new run
                since = (since if since is not None else newest.time) if _past(value, threshold, falls) else None
        else:
            since = _above_since(samples, metric, threshold, falls=falls)
            kind = next((metric_kind(s, metric) for s in reversed(samples) if metric_value(s, metric) is not None),
                        _NO_KIND)
        self._runs[key] = (newest, since, kind)
        if since is not None and since < samples[0].time:  # the run began before the window: the walk
            return next((s.time for s in samples if metric_value(s, metric) is not None), None)  # its oldest
        return since

    def keep_only(self, rules: Sequence[Rule]) -> None:
        """Forget the runs no rule asks for now (a reload changed a threshold or a metric)."""
        if len(self._runs) > len(rules):
            self._runs.clear()


def _rearm_threshold(rule: Rule, total: int | None) -> int | None:
    given = rule.rearm_above if rule.falls else rule.rearm_below
    if given is not None:
        return given.resolve(total)
    limit = rule.threshold.resolve(total)
    return None if limit is None else int(limit * (1.25 if rule.falls else 0.75))


def _rearm(state: PolicyState, statuses: list[RuleStatus]) -> PolicyState:
    for s in statuses:
        rs = state.rule(s.rule.label)
        back = s.value is not None and s.rearm is not None and (
            s.value > s.rearm if s.rule.falls else s.value < s.rearm)
        if not rs.armed and back:
            state = state.with_rule(s.rule.label, dataclasses.replace(rs, armed=True))
    return state


def judge_idle(samples: Sequence[Sample], idle: IdleConfig, method: str, now: float) -> Idle:
    """Is the guest idle enough for ``method`` (the one that will run, not "auto")?"""
    lull = method in DROPS_HOT_PAGES
    span = idle.drop_window if lull else idle.window
    window = [s for s in samples if s.time >= now - span] or list(samples[-1:])
    covered = samples[0].time <= now - span + 1e-6 if samples else False
    busy = [s.guest.cpu_busy_percent for s in window if s.guest.cpu_busy_percent is not None]
    if not covered or not busy:
        return Idle(False, f"idle not yet known (needs {format_duration(span)} of samples)", False)
    wsl_window = [s.guest.cpu_busy_percent for s in samples if s.time >= now - WSL_IDLE_WINDOW
                  and s.guest.cpu_busy_percent is not None]
    wsl_would_act = samples[0].time <= now - WSL_IDLE_WINDOW and bool(wsl_window) and \
        max(wsl_window) <= WSL_IDLE_BUSY
    if lull and max(busy) > idle.drop_cpu_busy_max:
        return Idle(False, f"CPU up to {max(busy):.0f}% in the last {format_duration(span)} "
                    f"({method} drops hot pages too: waits for a lull at <= {idle.drop_cpu_busy_max:g}%)",
                    wsl_would_act)
    mean = sum(busy) / len(busy)
    if not lull and mean > idle.cpu_busy_max:
        return Idle(False, f"CPU {mean:.0f}% (busy; limit {idle.cpu_busy_max:g}% for {method})", wsl_would_act)
    for kind, cap in (("io", idle.psi_io_max), ("memory", idle.psi_memory_max)):
        values = [p.some_avg10 for s in window if (p := getattr(s.guest, f"psi_{kind}")) and p.some_avg10 is not None]
        if values and max(values) > cap:
            return Idle(False, f"PSI {kind} {max(values):.1f}% (busy; limit {cap:g}%)", wsl_would_act)
    if lull:
        return Idle(True, f"CPU at most {max(busy):.1f}% for {format_duration(span)} (a lull)", wsl_would_act)
    return Idle(True, f"CPU {mean:.0f}% (idle)", wsl_would_act)


def _quiet_reason(statuses: list[RuleStatus], state: PolicyState, now: float) -> str:
    if not statuses:
        return "no rules configured"
    known = [s for s in statuses if s.value is not None and s.threshold]
    if not known:
        return statuses[0].why
    closest = max(known, key=lambda s: (s.above_for > 0, _nearness(s)))
    return closest.why + _snoozed_words(state, now)


def _nearness(s: RuleStatus) -> float:
    """How close a rule is to its threshold: 1 at it, above 1 past it (either way round)."""
    if s.rule.falls:
        return s.threshold / max(s.value, 1)  # type: ignore[operator]
    return s.value / s.threshold  # type: ignore[operator]


def _clock(ts: float) -> str:
    import time

    return time.strftime("%H:%M", time.localtime(ts))
