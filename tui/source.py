"""Where the dashboard's numbers come from: the history, and in standalone mode a watcher of its own.

No Textual here. The app calls these methods from thread workers (a store
read or a reclaim must never block the screen), so every use of the shared
store connection holds :attr:`DataSource.lock`; a reclaim opens its own
probes and store, so it runs beside the refreshes.

Modes, said in the header:

    standalone  no watcher holds this history: we take its instance lock (so a
                later `vmmemctl watch` or a second TUI attaches to us) and
                record through the same :class:`~monitor.watch.recorder.Recorder` the
                watcher uses (its jobs, schedules included, run by the same
                :class:`~monitor.watch.driver.Driver`, on the app's event loop), with a notifier
                that shows on the dashboard (ScreenBackend); its prompts appear as modals
    live        --standalone while a watcher holds the history: we sample by
                ourselves for the cards but write no samples (the watcher does)
    attached    a watcher records; we read, and write only what a person
                does (snooze, pause, answers, reclaims), never samples
    viewing     --view: someone's recorded history, read only: the store is opened
                read-only, nothing is sampled, and nothing acts on this machine
                (reclaim, snooze, pause and answers say why they are unavailable)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from monitor.config.schema import Config, config_from_toml
from monitor.errors import UserError
from monitor.history.health import history_words
from monitor.history.store import TIERS, Event, Store, sample_row
from monitor.kernel.environment import detect_environment
from monitor.kernel.procfs import LocalFiles
from monitor.notify import Notification, Notifier
from monitor.policy.rules import Decision, Facts, PolicyState
from monitor.policy.state import decision_now, load_state, set_pause, set_snooze
from monitor.probes.probeset import Probes
from monitor.reclaim import workingset
from monitor.reclaim.reclaimer import plan_methods
from monitor.control.client import call
from monitor.history.places import watcher_of
from monitor.reclaim.record import ReclaimRequest, describe_reclaim
from monitor.sample import Environment, Sample
from monitor.units import format_duration
from monitor.history.instance import AlreadyRecording, recording_pid, take_instance_lock
from monitor.watch.driver import Driver
from monitor.watch.recorder import Recorder
from monitor.watch.wiring import Wiring, build_probes
from tui import data

log = logging.getLogger("monitor.tui")
LONG_RELOAD = 60.0  # a rolled-up tier gains a row a minute: re-read it no more often
HELLO_EVERY = 30.0  # attached: the watcher's config and facts asked this often (and after a reload)
RECLAIM_WAIT = 3600.0  # a reclaim the watcher runs for us: a gradual one of a large cache takes minutes


@dataclass(frozen=True)
class Outcome:
    """A reclaim as the dashboard tells it, whoever ran it (the watcher, or this process)."""

    words: str
    error: str | None = None


def unwritable_folder(db: Path) -> str:
    """Why a history cannot be recorded at ``db`` ("" when it can): ``/x/vmmemctl: permission denied``."""
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"{exc.filename or db.parent}: {(exc.strerror or str(exc)).lower()}"
    if not os.access(db.parent, os.W_OK):
        return f"{db.parent}: permission denied"
    return ""


@dataclass
class Setup:
    """How the dashboard was started; tests change the clock, the timers and the probes."""

    config: Config
    db_path: Path
    standalone: bool
    interval: float
    view: bool = False  # --view: read only (the store opened read-only; no reclaim, snooze, pause or answers)
    clock: Callable[[], float] = time.time
    timers: bool = True  # False in tests: refresh only when asked
    environ: Mapping[str, str] | None = None  # None: os.environ
    reclaim_lock: Path | None = None  # None: the machine-wide reclaim lock
    watcher_pid: Callable[[Path], int | None] = recording_pid
    probes_factory: Callable[[Config, Mapping[str, str] | None], Probes] = build_probes
    localtime: Callable[[float], time.struct_time] = time.localtime


@dataclass(frozen=True)
class Snapshot:
    """Everything one frame shows, shaped in a worker thread."""

    now: float
    range_name: str
    header: data.Header
    cards: list[data.Card]
    policy: str
    chart: data.ChartData
    events: list[data.EventLine]
    events_key: tuple[int | None, int, int]
    pending: list[Event]
    latest: dict | None
    state: PolicyState


@dataclass
class _Series:
    tier: str
    rows: list[dict]
    loaded: float


@dataclass
class _Cache:
    events_key: tuple[int | None, int, int] | None = None
    events: list[Event] = field(default_factory=list)
    reclaims: list[float] = field(default_factory=list)
    series: dict[str, _Series] = field(default_factory=dict)
    decision_key: Any = None
    decision: Decision | None = None
    working_set: Any = None  # the remembered working set, as the last refresh read it (an offer's plan uses it)


def policy_words(decision: Decision) -> str:
    """The policy line, the verb first: "would reclaim (auto-reclaim is off): page cache 21 GiB above ...",
    not "nothing to do: page cache ...; would reclaim (auto-reclaim is off): ..." whose verb a narrow
    screen cut off (issue 28)."""
    if decision.held:  # said once, first (the reason may say it too, for the log and `status`)
        rest = decision.reason.replace(f"; {decision.held}", "", 1).strip("; ")
        return f"{decision.held}: {rest}"
    verb = {"none": "nothing to do", "notify": "would notify", "prompt": "would ask",
            "reclaim": "would reclaim"}[decision.action]
    return f"{verb}: {decision.reason}"


class ScreenBackend:
    """The standalone dashboard's notifier: the watcher's notifications appear on its own screen."""

    name = "dashboard"

    def __init__(self, show: Callable[[Notification], None]):
        self.show = show

    def send(self, notification: Notification) -> tuple[bool, str]:
        self.show(notification)
        return True, "shown on the dashboard"


class DataSource:
    def __init__(self, setup: Setup, run_async: Callable[[Callable[[], None]], None] | None = None,
                 show: Callable[[Notification], None] | None = None):
        self.setup = setup
        self.show = show  # where the standalone watcher's notifications go (else: the log only)
        self.config = setup.config
        self.lock = threading.Lock()
        self.stop = threading.Event()  # set at exit: a reclaim's settle ends early
        self.run_async = run_async or (lambda fn: threading.Thread(target=fn, daemon=True).start())
        self.store: Store | None = None
        self.environment: Environment | None = None
        self.wsl_mode: str | None = None
        self.mode = "standalone" if setup.standalone else ("viewing" if setup.view else "attached")
        self._seen_watcher = False
        self.wiring = Wiring(setup.config, setup.db_path, setup.environ, setup.probes_factory,
                             setup.reclaim_lock, self.stop)
        self.recorder: Recorder | None = None
        self.driver: Driver | None = None  # standalone: runs the recorder's jobs (start_driver)
        self.probes: Probes | None = None  # standalone and live: ours; else built when a reclaim is planned
        self.live: Sample | None = None  # live mode: the sample we took but did not store
        self.error: str | None = None  # why the history cannot be read, for the screen
        self.not_recording = False  # standalone, but the history's folder cannot be written (self.error says)
        self._instance_lock: Any = None
        self._writer: Store | None = None  # attached to a history nobody records any more: for what we do
        self._hello_at = float("-inf")  # when the watcher was last asked for its config and facts
        self._watcher_facts: Facts | None = None  # the watcher's (attached), for the policy run here
        self._watcher_toml: str | None = None  # the watcher's config as it last told it
        self._other_pid: int | None = None
        self._cache = _Cache()

    # ------------------------------------------------------------ starting and stopping

    def start(self) -> None:
        """Open the history; in standalone mode take the watcher's place. Slow parts: a worker runs this."""
        with self.lock:
            files = LocalFiles(self.config.general.proc_root)
            environ = os.environ if self.setup.environ is None else self.setup.environ
            self.environment = detect_environment(files, environ)
            self.wsl_mode = self.wiring.wsl_mode(self.environment.kind)
            try:
                if self.setup.standalone:
                    self._start_sampling()
                elif self.setup.db_path.exists():
                    self.store = Store(self.setup.db_path, readonly=True)  # the watcher writes it
            except UserError as exc:  # not a history file, unreadable: say so on the screen, keep the rest up
                self.error = str(exc)
                return
            if self.store is None and not self.not_recording:
                self.error = f"no history at {self.setup.db_path} (start `vmmemctl watch`, or run `vmmemctl tui` " \
                             "without a watcher to record one)"

    def _start_sampling(self) -> None:
        db = self.setup.db_path
        problem = unwritable_folder(db)
        if problem:  # say so in the header, not "recording every 2s" over an empty chart (issue 18), and
            # still show live numbers: a dashboard that cannot record is not blind (issue 24)
            self.not_recording, self.mode = True, "live"
            self.error = f"not recording: {problem} (--db PATH records elsewhere)"
            self.probes = self.wiring.probes()
            self.probes.prime()
            if db.exists():
                self.store = Store(db, readonly=True)  # what was recorded before stays on the chart
            return
        self.probes = self.wiring.probes()
        try:
            self._instance_lock = take_instance_lock(db, "a standalone `vmmemctl tui`")
        except AlreadyRecording:
            self.mode, self._other_pid = "live", self.setup.watcher_pid(db)
        if self.mode == "live":
            self.probes.prime()
            self.store = Store(db, readonly=True)  # the watcher writes it; what we do is asked of it
            return
        notifier = Notifier([ScreenBackend(self.show)] if self.show else [])
        self.recorder = self.wiring.recorder(notifier, clock=self.setup.clock, run_async=self.run_async,
                                             probes=self.probes)
        self.store = self.recorder.store  # used under self.lock only, by the jobs and the reads alike
        self.store.add_event("dashboard", "dashboard started recording (standalone, every "
                                      f"{self.setup.interval:g}s)")

    def start_driver(self, event_loop: Any, after: Callable[[str], None]) -> None:
        """Standalone and recording: the recorder's jobs on APScheduler, its timer on ``event_loop`` (the
        app's), each job under :attr:`lock`; ``after(job_id)`` when one has run (the screen refreshes)."""
        if self.recorder is None or self.driver is not None or self.stop.is_set():
            return
        self.driver = Driver(self.recorder, event_loop=event_loop, guard=self.lock, after=after)
        self.driver.start()

    def close(self) -> None:
        self.stop.set()
        if self.driver is not None:
            self.driver.shutdown(wait=False)  # a job already queued does nothing now (waits for the lock)
        with self.lock:
            if self.store is not None and self.recorder is not None:
                self.store.add_event("dashboard", "dashboard stopped recording")
            if self.recorder is not None:
                # The recorder's close writes a disk-full backlog when there is room again (it was lost at
                # exit: issue 24) and closes its store and probes, which are ours too.
                self.recorder.close()
                self.recorder, self.store, self.probes = None, None, None
            if self.store is not None:
                self.store.close()
                self.store = None
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            if self.probes is not None:
                self.probes.close()
                self.probes = None
            if self._instance_lock is not None:
                self._instance_lock.__exit__(None, None, None)
                self._instance_lock = None

    # ------------------------------------------------------------ sampling (standalone)

    def tick(self) -> None:
        """A sample now: standalone, the recorder's tick (through the driver when it runs: it samples
        on its own, and this only brings the next sample forward); live, one for the cards."""
        if self.driver is not None:
            self.driver.run_now("tick")
            return
        with self.lock:
            if self.recorder is not None:
                self.recorder.tick()  # the first sample, before the driver starts (or no driver: tests)
            elif self.mode == "live" and self.probes is not None:
                self.live = self.probes.sample()  # for the cards only: the watcher records

    # ------------------------------------------------------------ reading

    def snapshot(self, range_name: str, columns: int) -> Snapshot:
        now = self.setup.clock()
        with self.lock:
            return self._snapshot(range_name, columns, now)

    def _snapshot(self, range_name: str, columns: int, now: float) -> Snapshot:
        self._follow_watcher(now)
        store = self.store
        latest = store.latest_sample() if store else None
        trend_rows = store.series(latest.time - data.TREND_WINDOW - 1, latest.time, tier="samples")[1] \
            if latest and store else []
        if self.live is not None:
            trend_rows = [*trend_rows, sample_row(self.live)]
        last_row = trend_rows[-1] if trend_rows else None
        state = load_state(store)
        self._cache.working_set = workingset.load(store)  # None without a store
        events_key = self._refresh_events(now)
        chart = self._chart(range_name, columns, now, last_row)
        return Snapshot(
            now=now, range_name=range_name, header=self._header(last_row, state, now),
            cards=data.build_cards(trend_rows), policy=self._policy(latest, state),
            chart=chart, events=data.event_lines(self._cache.events, now, self.setup.localtime),
            events_key=events_key, pending=store.pending_prompts() if store else [], latest=last_row, state=state)

    def _refresh_events(self, now: float) -> tuple[int | None, int, int]:
        """Events are re-read only when one was added (an answer or a snooze adds one too)."""
        if self.store is None:
            return (None, 0, 0)
        key = self.store.events_version()
        if key != self._cache.events_key:
            seen = max((e.id for e in self._cache.events), default=None)
            # The dashboard's own comings and goings stay out of the list (`history --events` has them)
            self._cache.events = [e for e in self.store.events(since=0, limit=200, without=["dashboard"])
                                  if not (e.kind == "watch" and e.message.startswith("dashboard "))]  # older histories
            if seen is not None and any(e.id > seen and e.kind == "watch" and e.message.startswith("config reloaded")
                                        for e in self._cache.events):
                self._hello_at = float("-inf")  # the watcher took a new config: ask for it now
            week = self.store.events(since=now - data.RANGES["7d"], kinds=["reclaim"], limit=5000)
            self._cache.reclaims = data.reclaim_times(week)
            self._cache.events_key = key
        return key

    def _chart(self, range_name: str, columns: int, now: float, last_row: dict | None) -> data.ChartData:
        span = data.RANGES[range_name]
        tier, rows = self._series(range_name, span, columns, now)
        return data.chart_data(rows, tier, now - span, now, columns=columns,
                               limits=data.thresholds(self.config, last_row), reclaims=self._cache.reclaims)

    def _series(self, range_name: str, span: float, columns: int, now: float) -> tuple[str, list[dict]]:
        """Rows for the range: the raw tier read incrementally, a rolled-up tier at most once a minute
        plus the raw rows after its last bucket, so the right edge stays live."""
        store = self.store
        if store is None:
            return "samples", []
        since = now - span
        tier = data.choose_tier(span, columns, store.tier_for(span), TIERS)
        cached = self._cache.series.get(range_name)
        if cached is None or cached.tier != tier or (tier != "samples" and now - cached.loaded >= LONG_RELOAD) \
                or now < cached.loaded:
            cached = _Series(tier, store.series(since, now, tier=tier)[1], now)
            self._cache.series[range_name] = cached
        elif tier == "samples":
            after = cached.rows[-1]["t"] if cached.rows else since
            cached.rows = [r for r in cached.rows if r["t"] >= since] + \
                [r for r in store.series(after, now, tier=tier)[1] if r["t"] > after]
            cached.loaded = now
        if tier == "samples":
            return tier, cached.rows
        width = dict(TIERS).get(tier, 60)
        edge = cached.rows[-1]["t"] + width if cached.rows else since
        tail = store.series(edge, now, tier="samples")[1]
        return tier, [r for r in cached.rows if r["t"] >= since] + tail

    def _follow_watcher(self, now: float) -> None:
        """Attached: the watcher's own config and facts (not this viewer's), asked when attaching, after the
        history says it reloaded, and every HELLO_EVERY s; the policy line is then the same policy run here
        on the same history: the watcher's decision, without waking it every interval (its CPU: issue 24,
        item 7). While it does not answer, the last ones stay."""
        if self.mode != "attached" or now - self._hello_at < HELLO_EVERY:
            return
        self._hello_at = now
        watcher = watcher_of(self.setup.db_path)
        if watcher is None or watcher.control is None:
            self._watcher_facts = None
            return
        try:
            hello = call(watcher.control, "hello", timeout=2.0)
            if hello["config"] != self._watcher_toml:  # parsed again only when the watcher's config changed
                origin = f"the watcher's config ({hello.get('config_path') or 'defaults'})"
                config, self._watcher_toml = config_from_toml(hello["config"], origin), hello["config"]
                if config != self.config:
                    self.config = config
            facts = hello.get("facts") or {}
            self._watcher_facts = Facts(facts.get("wsl_mode"), bool(facts.get("gradual_available")))
            self._cache.decision_key = None
        except (UserError, KeyError, TypeError) as exc:
            log.info("the watcher did not say hello: %s", exc)

    def _policy(self, latest: Sample | None, state: PolicyState) -> str:
        """What the policy says now, in words: the watcher's own decision (we are the watcher; or the
        watcher's config and facts run here on its history), else the policy run here on the history."""
        if self.recorder is not None and self.recorder.last_decision is not None:
            decision = self.recorder.last_decision
        elif self.not_recording and self.error:
            return self.error
        elif self.store is None:
            return f"cannot read the history: {self.error}" if self.error else "no history"
        elif latest is None:
            return "no samples yet"
        else:
            key = (latest.time, state)
            if key != self._cache.decision_key:
                facts = self._watcher_facts or Facts(self.wsl_mode, self._gradual())
                self._cache.decision, _ = decision_now(self.config, self.store, latest, facts)
                self._cache.decision_key = key
            decision = self._cache.decision
        assert decision is not None
        return policy_words(decision) + self._working_set_words() + self._next_schedule_words()

    def _working_set_words(self) -> str:
        """" · working set ~ 310 MiB, learned 12 min ago", once a gradual reclaim learned it."""
        ws = self._cache.working_set
        return f" · {workingset.status_words(ws, self.config.reclaim, self.setup.clock())}" if ws else ""

    def _next_schedule_words(self) -> str:
        """" · next scheduled reclaim: nightly at 03:00" (ours when we record, else from the config)."""
        if self.driver is not None:
            upcoming = self.driver.next_schedule()
        else:
            upcoming = data.next_schedule(self.config, self.setup.clock())
        if upcoming is None:
            return ""
        sched, when = upcoming
        at = data.until_words(when.timestamp(), self.setup.clock(), self.setup.localtime)
        return f" · next scheduled reclaim: {sched.name or sched.cron} at {at}"

    def _header(self, row: dict | None, state: PolicyState, now: float) -> data.Header:
        env = self.environment.label() if self.environment else "?"
        latest_t = row["t"] if row else None
        return data.Header(env, data.host_words(row), self.mode_words(),
                           data.auto_words(self.config, state, now, self.setup.localtime),
                           data.snooze_words(state, now, self.setup.localtime),
                           " · ".join(filter(None, [data.staleness(latest_t, now, self.setup.interval),
                                                    history_words(self.setup.db_path)])))  # disk full, ...

    def mode_words(self) -> str:
        every = f"{self.setup.interval:g}s"
        if self.not_recording and self.error:
            return self.error
        if self.error:
            return "no history open"
        if self.mode == "standalone":
            return f"standalone: recording every {every}"
        if self.mode == "live":
            return f"standalone: sampling every {every}, not recording (watcher pid {self._other_pid} records)"
        if self.mode == "viewing":
            return f"viewing {self.setup.db_path.name} (read only)"
        pid = self.setup.watcher_pid(self.setup.db_path)
        if pid is not None:
            self._seen_watcher = True
            return f"attached to watcher (pid {pid})" if pid else "attached to watcher"
        if self._seen_watcher:
            return "watcher stopped (history only)"
        return "attached: no watcher (history only)"

    @property
    def read_only(self) -> str:
        """Why nothing can be written or done here ("" when it can): --view reads someone's history."""
        if self.mode != "viewing":
            return ""
        return f"viewing {self.setup.db_path.name} read only (--view): open it without --view to act on this machine"

    # ------------------------------------------------------------ what a person does

    # Attached, the watcher owns the history: every action is a request it carries out (as root, for a
    # root service) and may refuse (a prompt no longer pending). Standalone, the history is ours.

    def snooze(self, seconds: float) -> PolicyState:
        asked = self._ask("snooze", seconds=seconds)
        if asked is not None:
            return PolicyState({}, asked["snoozed_until"], asked["paused_until"])
        with self.lock:
            state = set_snooze(self._writable(), seconds, self.setup.clock())
            if self.recorder is not None:
                self.recorder.state_written()
            return state

    def pause(self, seconds: float) -> PolicyState:
        asked = self._ask("pause", seconds=seconds)
        if asked is not None:
            return PolicyState({}, asked["snoozed_until"], asked["paused_until"])
        with self.lock:
            state = set_pause(self._writable(), seconds, self.setup.clock())
            if self.recorder is not None:
                self.recorder.state_written()
            return state

    def answer(self, prompt_id: int) -> bool:
        """Dismiss a prompt; a reclaim answer is :meth:`reclaim` with its id, a snooze :meth:`snooze_prompt`."""
        if self._ask("answer", prompt=prompt_id, answer="dismiss") is not None:
            return True
        with self.lock:
            return self._writable().answer_prompt(prompt_id, "dismissed")

    def snooze_prompt(self, prompt_id: int, seconds: float) -> PolicyState:
        """Answer a prompt "snooze": the prompt marked snoozed and the snooze set, in one request (attached)
        or one go (standalone); refused when the prompt is not pending any more."""
        asked = self._ask("answer", prompt=prompt_id, answer="snooze", seconds=seconds)
        if asked is not None:
            return PolicyState({}, asked["snoozed_until"], None)
        with self.lock:
            if not self._writable().answer_prompt(prompt_id, "snoozed", f"for {format_duration(seconds)}"):
                raise UserError(f"prompt {prompt_id} is not pending any more: nothing snoozed")
        return self.snooze(seconds)

    def _ask(self, op: str, timeout: float = 10.0, **fields: Any) -> dict | None:
        """The watcher's answer to ``op``, or None when this dashboard acts by itself (standalone).
        A refusal, or a watcher that takes no requests, is a one-line UserError."""
        if self.read_only:
            raise UserError(self.read_only)
        if self.mode not in ("attached", "live"):  # standalone or viewing: no watcher owns what we do
            return None
        watcher = watcher_of(self.setup.db_path)
        if watcher is None:  # it stopped: nobody owns the history now, so the one who acts writes it
            return None
        if watcher.control is None:
            raise UserError(f"{watcher.words()} takes no requests (an older watcher): restart it")
        return call(watcher.control, op, timeout=timeout, **fields)

    def event(self, event_id: int) -> Event | None:
        """One of the events last read (for its details)."""
        return next((e for e in self._cache.events if e.id == event_id), None)

    def _writable(self) -> Store:
        """The history, to write what a person did when no watcher owns it (standalone, or the watcher
        stopped): our reading connection is read-only then, so a writing one is opened once."""
        if self.read_only:
            raise RuntimeError(self.read_only)
        if self.store is None:
            raise RuntimeError(self.error or "no history open")
        if not self.store.readonly:
            return self.store
        if self._writer is None:
            self._writer = Store(self.setup.db_path)
        return self._writer

    def _gradual(self) -> bool:
        return self._planning_probes().gradual_available()

    def _planning_probes(self) -> Probes:
        """Ours when we sample; else built once, when a reclaim is first planned (the probes own the facts)."""
        if self.probes is None:
            self.probes = self.wiring.probes()
        return self.probes

    def plan(self, method: str) -> tuple[list[str], list[str]]:
        """The methods a reclaim would run (gradual falls back to pagecache without memory.reclaim)."""
        return plan_methods(method, self._gradual(), self.config.reclaim.compact)

    def offer(self, method: str, row: dict | None) -> data.Offer:
        hint = workingset.hint(self._cache.working_set, self.config.reclaim, self.setup.clock())
        return data.make_offer(method, self.plan, row, self.config, hint)

    def reclaim(self, method: str, trigger: str, progress: Callable[[str], None],
                prompt: int | None = None) -> Outcome:
        """One reclaim, measured and recorded (seconds; in a worker): the watcher's when attached, else
        ours with fresh probes. With ``prompt``, the answer to that prompt: refused, and nothing run,
        when it is not pending any more (answered, or expired because its condition passed)."""
        asked = self._ask("answer", RECLAIM_WAIT, prompt=prompt, answer="reclaim") if prompt is not None else \
            self._ask("reclaim", RECLAIM_WAIT, method=method)
        if asked is not None:
            return Outcome(asked["words"], asked["reclaim"].get("error"))
        if prompt is not None:
            with self.lock:
                if not self._writable().answer_prompt(prompt, "reclaimed", method):
                    raise UserError(f"prompt {prompt} is not pending any more: nothing reclaimed")
        result = self.wiring.reclaim(ReclaimRequest(method, trigger=trigger), progress=progress)
        return Outcome(describe_reclaim(result), result.error)

    def give_back(self, paths: list[str], progress: Callable[[str], None], stop: threading.Event) -> Outcome:
        """`reclaim --path` from the cache view: the watcher's when attached, else ours."""
        asked = self._ask("reclaim", RECLAIM_WAIT, paths=list(paths))
        if asked is not None:
            return Outcome(asked["words"], asked["reclaim"].get("error"))
        result = self.wiring.reclaim(ReclaimRequest(paths=tuple(paths)), progress=progress, stop=stop)
        return Outcome(describe_reclaim(result), result.error)
