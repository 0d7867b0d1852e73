"""`vmmemctl tui`: the dashboard. See README "The dashboard".

The app only shows and asks. Reading the history, sampling (standalone) and
reclaiming happen in thread workers (:mod:`tui.source`) that report back by
message, so the screen stays live while a week of history loads or a reclaim
settles. Tests build the app with :func:`make_app` (fixed clock, no timers)
and call :meth:`VmmemApp.refresh_data` themselves.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from rich.text import Text
from textual import events, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.geometry import Size
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual.worker import get_current_worker

from monitor import logs
from monitor.config.schema import METHODS, Config, to_toml
from monitor.errors import UserError
from monitor.history.store import TIER_WORDS
from monitor.notify import Notification
from tui import data, screens
from tui.messages import (
    ActionDone,
    Notice,
    ReclaimDone,
    ReclaimProgress,
    RefreshFailed,
    Sampled,
    SnapshotReady,
)
from tui.source import DataSource, Setup, Snapshot
from tui.widgets import (
    Cards,
    EventList,
    HeaderLine,
    TrendChart,
    legend,
    range_keys,
    show_if_changed,
)

log = logging.getLogger("monitor.tui")
PAUSE_SECONDS = 3600.0
TALL = 34  # rows from which cards get borders and a detail line


class VmmemApp(App):
    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses elsewhere (the bench) find it too
    TITLE = "vmmemctl"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [
        Binding("r", "reclaim", "Reclaim"),
        Binding("s", "snooze", "Snooze"),
        Binding("p", "pause", "Pause"),
        Binding("a", "answer", "Prompt"),
        Binding("t", "cycle_range", "Range", show=False),  # the chart's own line shows the range keys (1-4)
        Binding("1", "range('5m')", "5 min", show=False),
        Binding("2", "range('1h')", "1 h", show=False),
        Binding("3", "range('24h')", "24 h", show=False),
        Binding("4", "range('7d')", "7 days", show=False),
        Binding("c", "config", "Config"),
        Binding("w", "cache", "Cache"),
        Binding("g", "cgroups", "Groups", show=False),  # the footer is full at 80 columns (issue 28); help lists it
        Binding("b", "gap", "Gap", show=False),  # where the gap is (issue 27); help lists it
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, setup: Setup):
        super().__init__()
        self.setup = setup
        self.config = setup.config
        self.source = DataSource(setup, run_async=self._run_async, show=self._show_notification)
        self.range_name = setup.config.tui.range
        self.snapshot: Snapshot | None = None
        self.reclaiming: str | None = None  # the method of the reclaim in flight
        self.refreshing = False
        self.deferred: set[int] = set()  # prompts answered "later" this session
        self._bindings_for_pending = False
        self._stale = False  # a snapshot arrived under a modal and is not painted yet

    # ------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield HeaderLine("vmmemctl · starting…", id="header")
        yield Cards(id="cards")
        yield Static("policy: …", id="policy")
        with Vertical(id="chart-box"):
            yield TrendChart(self.setup.localtime, id="chart")
            yield Static("reading the history…", id="chart-empty")
            with Horizontal(id="chart-foot"):
                yield Static(id="chart-legend")
                yield Static(range_keys(self.range_name), id="ranges")
        yield EventList(id="events")
        yield Static(id="activity")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._loop = asyncio.get_running_loop()  # the standalone recorder's scheduler keeps its timer here
        self.query_one("#chart-box").border_title = "host footprint & page cache"
        self.query_one("#events").border_title = "events, newest first (enter: details)"
        self._apply_size()
        self.refresh_data()
        if self.setup.timers:
            self.set_interval(self.setup.interval, self._on_timer)

    def on_resize(self, event: events.Resize) -> None:
        self._apply_size(event.size)

    def _apply_size(self, size: Size | None = None) -> None:
        """Classes on the app, so the layout follows the terminal whichever screen is on top."""
        size = size or self.size
        self.set_class(size.height >= TALL, "-tall")

    def on_unmount(self) -> None:
        self.source.close()

    # ------------------------------------------------------------ refreshing

    def _on_timer(self) -> None:
        if self.refreshing:  # a slow refresh (a Windows tool, a busy disk) is not queued up behind
            return
        if self.source.driver is not None:
            # Recording: the driver samples and each sample refreshes the screen (on_sampled); this
            # timer only keeps the staleness words true should the samples stop.
            if self.snapshot is None or time.time() - self.snapshot.now > 1.5 * self.setup.interval:
                self.refresh_data()
            return
        self.refresh_data(tick=True)

    def on_sampled(self, message: Sampled) -> None:
        if not self.refreshing:
            self.refresh_data()

    def _job_ran(self, job_id: str) -> None:
        """The driver ran a job (on its worker thread): a new sample is worth a refresh."""
        if job_id in ("tick", "host"):
            self.post_message(Sampled())

    def refresh_data(self, tick: bool = False) -> None:
        """Read the history again (and sample first, with ``tick``, in standalone mode)."""
        self.refreshing = True
        chart = self.query_one(TrendChart)
        self._refresh(self.range_name, chart.columns, tick)

    @work(thread=True, exclusive=True, group="refresh", exit_on_error=False)
    def _refresh(self, range_name: str, columns: int, tick: bool) -> None:
        try:
            if self.source.environment is None:
                self.source.start()
                self.source.tick()  # the first numbers now, not one interval from now
                if self.setup.timers:  # recording standalone: the recorder's jobs on this app's loop
                    self.source.start_driver(self._loop, self._job_ran)
            elif tick:
                self.source.tick()
            snapshot = self.source.snapshot(range_name, columns)
        except (UserError, OSError, RuntimeError, ValueError) as exc:
            log.exception("refresh failed")
            self.post_message(RefreshFailed(str(exc)))
            return
        except Exception as exc:  # sqlite3 errors and the like: show them, keep the dashboard up
            log.exception("refresh failed")
            self.post_message(RefreshFailed(f"{type(exc).__name__}: {exc}"))
            return
        if not get_current_worker().is_cancelled:
            self.post_message(SnapshotReady(snapshot))

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        self.refreshing = False
        snap = message.snapshot
        if snap.range_name != self.range_name:
            return  # the range changed meanwhile; its own refresh is on the way
        self.snapshot = snap
        if len(self.screen_stack) > 1:  # under a modal the dashboard is dimmed: paint it once the modal closes
            self._stale = True          # (repainting a screen under a modal re-blends it: 2-3x the idle CPU)
        else:
            self._paint(snap)
        if bool(snap.pending) != self._bindings_for_pending:  # `a` comes and goes with a waiting prompt
            self._bindings_for_pending = bool(snap.pending)
            self.refresh_bindings()
        self._maybe_prompt(snap)

    def _paint(self, snap: Snapshot) -> None:
        self._stale = False
        self.query_one(HeaderLine).show(snap.header, len(snap.pending))
        self.query_one(Cards).show(snap.cards)
        # layout: the line takes one row or two as its words need (the verb first, never cut: issue 28)
        show_if_changed(self.query_one("#policy", Static), Text(f"policy: {snap.policy}"), layout=True)
        self._show_chart(snap)
        self.query_one(EventList).show(snap.events)

    def _push(self, screen: Screen, callback: Callable[[Any], None] | None = None) -> None:
        """Push a modal; when it closes, paint what arrived meanwhile, then carry out its answer."""
        def closed(result: Any) -> None:
            if self._stale and self.snapshot is not None and len(self.screen_stack) == 1:
                self._paint(self.snapshot)
            if callback is not None:
                callback(result)
        self.push_screen(screen, closed)

    def on_refresh_failed(self, message: RefreshFailed) -> None:
        self.refreshing = False
        show_if_changed(self.query_one("#policy", Static),
                        Text(f"cannot read the history: {message.error}", style="red"), layout=True)

    def _show_chart(self, snap: Snapshot) -> None:
        chart = snap.chart
        box = self.query_one("#chart-box")
        title = f"host footprint & page cache · last {snap.range_name} · {TIER_WORDS.get(chart.tier, chart.tier)}"
        if box.border_title != title:
            box.border_title = title
        empty = chart.empty
        plot, placeholder = self.query_one(TrendChart), self.query_one("#chart-empty", Static)
        if plot.display == empty:
            plot.display, placeholder.display = not empty, empty
        if empty:
            why = self.source.error or snap.header.latest or "no samples in range"
            show_if_changed(placeholder, Text(f"no samples in the last {snap.range_name} ({why})"))
        else:
            plot.show(chart)
        legend_box = self.query_one("#chart-legend", Static)
        show_if_changed(legend_box, legend(chart, legend_box.size.width - 1))
        show_if_changed(self.query_one("#ranges", Static), range_keys(snap.range_name))

    def _maybe_prompt(self, snap: Snapshot) -> None:
        if len(self.screen_stack) > 1 or self.reclaiming:
            return
        waiting = [p for p in snap.pending if p.id not in self.deferred]
        if waiting:
            self._open_prompt(waiting[0])

    # ------------------------------------------------------------ keys

    # The dashboard's own keys; a full screen of its own (the cache view) has its keys instead, so its
    # footer lists those, whole (at 80 columns it ended "c C▏^p palettep": issue 28).
    DASHBOARD_ACTIONS = frozenset({"reclaim", "snooze", "pause", "answer", "cycle_range", "range", "config", "cache",
                                   "cgroups"})

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.DASHBOARD_ACTIONS and not self._on_dashboard():
            return False
        if action == "answer":
            return bool(self.snapshot and self.snapshot.pending)
        return True

    def _on_dashboard(self) -> bool:
        """The dashboard or a modal over it (a modal keeps the keys it does not take itself)."""
        from tui.cache_view import CacheScreen
        from tui.cgroups_view import CgroupsScreen

        return not any(isinstance(screen, (CacheScreen, CgroupsScreen)) for screen in self.screen_stack)

    def action_cycle_range(self) -> None:
        self.action_range(data.next_range(self.range_name))

    def action_range(self, name: str) -> None:
        self.range_name = name
        show_if_changed(self.query_one("#ranges", Static), range_keys(name))
        self.refresh_data()

    def _unavailable(self, what: str) -> bool:
        """In viewing mode nothing is written and nothing acts on this machine: say so instead."""
        if self.source.read_only:
            self.notify(f"{what} is unavailable: {self.source.read_only}", severity="warning")
        return bool(self.source.read_only)

    def action_reclaim(self) -> None:
        if self._unavailable("reclaim"):
            return
        if self.reclaiming:
            self.notify(f"a reclaim ({self.reclaiming}) is running; its progress is at the bottom",
                        severity="warning")
            return
        row = self.snapshot.latest if self.snapshot else None
        offers = {m: self.source.offer(m, row) for m in METHODS}
        self._push(screens.ReclaimScreen(offers, self.config.reclaim.method), self._reclaim_chosen)

    def _reclaim_chosen(self, method: str | None) -> None:
        if method:
            self.start_reclaim(method, "manual")

    def action_snooze(self) -> None:
        if self._unavailable("snooze"):
            return
        state = self.snapshot.state if self.snapshot else None
        until = data.snooze_words(state, self.setup.clock(), self.setup.localtime) if state else ""
        self._push(screens.SnoozeScreen(until), self._snooze_chosen)

    def _snooze_chosen(self, seconds: float | None) -> None:
        if seconds is not None:
            self._record(lambda: self._snooze_words(self.source.snooze(seconds)))

    def _snooze_words(self, state: Any) -> str:
        return data.snooze_words(state, self.setup.clock(), self.setup.localtime) or "snooze cleared"

    def action_pause(self) -> None:
        if self._unavailable("pause"):
            return
        state = self.snapshot.state if self.snapshot else None
        paused = bool(state and state.paused_until and self.setup.clock() < state.paused_until)
        seconds = 0.0 if paused else PAUSE_SECONDS

        def pause() -> str:
            state = self.source.pause(seconds)
            if not state.paused_until:
                return "auto-reclaim resumed"
            until = data.until_words(state.paused_until, self.setup.clock(), self.setup.localtime)
            return f"auto-reclaim paused until {until} (p resumes)"
        self._record(pause)

    def action_answer(self) -> None:
        pending = self.snapshot.pending if self.snapshot else []
        if not pending:
            self.notify("no prompt is waiting")
            return
        self._open_prompt(pending[0])

    def _open_prompt(self, prompt: Any) -> None:
        when = data.clock_text(prompt.t, self.setup.clock(), self.setup.localtime)
        if self.source.read_only:  # someone else's prompt: shown, not answered, no offer of this machine's reclaim
            self._push(screens.PromptScreen(prompt, None, when, read_only=self.source.read_only),
                       lambda answer: self.deferred.add(prompt.id))
            return
        method = (prompt.data or {}).get("method") or self.config.reclaim.method
        offer = self.source.offer(method, self.snapshot.latest if self.snapshot else None)
        self._push(screens.PromptScreen(prompt, offer, when), lambda answer: self._prompt_answered(prompt, answer))

    def _prompt_answered(self, prompt: Any, answer: screens.PromptAnswer | None) -> None:
        if answer is None:
            self.deferred.add(prompt.id)
            return
        if answer.answer == "reclaim":  # one request: the answer and its reclaim, or a refusal and nothing
            self.start_reclaim(answer.method or "auto", "prompt", prompt.id)
        elif answer.answer == "snooze":
            seconds = answer.seconds or screens.DEFAULT_SNOOZE

            self._record(lambda: self._snooze_words(self.source.snooze_prompt(prompt.id, seconds)))
        else:
            self._record(lambda: self.source.answer(prompt.id) and f"prompt {prompt.id} dismissed")

    def action_config(self) -> None:
        self._push(screens.config_screen(to_toml(self.config), self.config.path))

    def action_cache(self) -> None:
        from tui.cache_view import (  # what is in the page cache (tui/cache_view.py)
            CacheScreen,
        )

        # --view never acts: the view shows what is cached, and Enter says why nothing is given back
        give_back = None if self.source.read_only else self.source.give_back
        self._push(CacheScreen(self.config, give_back, refusal=self.source.read_only),
                   lambda gave_back: gave_back and self.refresh_data())

    def action_cgroups(self) -> None:
        from tui.cgroups_view import CgroupsScreen  # who holds the cache (tui/cgroups_view.py)

        self._push(CgroupsScreen(self.config))

    def action_gap(self) -> None:
        self._push(screens.gap_screen(self.snapshot.latest if self.snapshot else None))

    def action_help(self) -> None:
        self._push(screens.help_screen())

    def on_data_table_row_selected(self, message: EventList.RowSelected) -> None:
        line = self.query_one(EventList).selected()
        if line is not None:
            self._push(screens.event_screen(self.source.event(line.id), line, self.setup.clock(), self.setup.localtime))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Reclaim now", "Choose a method, see the expected gain, confirm", self.action_reclaim)
        yield SystemCommand("Snooze", "No notifications, prompts or rule reclaims for a while", self.action_snooze)
        yield SystemCommand("Pause / resume auto-reclaim", "Pause automatic reclaims for 1 h, or resume",
                            self.action_pause)
        if self.snapshot and self.snapshot.pending:
            yield SystemCommand("Answer the waiting prompt", "Reclaim, snooze or dismiss", self.action_answer)
        for name in data.RANGE_NAMES:
            yield SystemCommand(f"Range: last {name}", f"Chart the last {name}",
                                lambda name=name: self.action_range(name))
        yield SystemCommand("Show the effective config", "As TOML, as `vmmemctl config show` prints it",
                            self.action_config)
        yield SystemCommand("What is in the page cache", "Top directories; give one tree's cache back",
                            self.action_cache)
        yield SystemCommand("Who holds the cache", "Cgroup v2 groups (services, containers, sessions, runs), "
                            "the largest page cache first", self.action_cgroups)
        yield SystemCommand("Where the gap is", "The host footprint against the guest: programs, cache, "
                            "shmem, kernel, free not yet returned, the rest", self.action_gap)
        yield SystemCommand("Keys and help", "What each key does and how to read the numbers", self.action_help)

    # ------------------------------------------------------------ workers that write

    def _record(self, do: Callable[[], str | bool]) -> None:
        """Carry out a snooze/pause/answer in a worker (a busy database must not freeze the screen)."""
        self._write(do)

    @work(thread=True, group="write", exit_on_error=False)
    def _write(self, do: Callable[[], str | bool]) -> None:
        try:
            words = do()
        except Exception as exc:  # a locked or read-only database: tell the person, keep going
            log.exception("recording failed")
            self.post_message(ActionDone(f"could not record it: {exc}", "error"))
            return
        self.post_message(ActionDone(words if isinstance(words, str) else "the prompt was already answered",
                                     "information" if isinstance(words, str) else "warning"))

    def on_action_done(self, message: ActionDone) -> None:
        self.notify(message.words, severity=message.severity)  # type: ignore[arg-type]
        self.refresh_data()

    def start_reclaim(self, method: str, trigger: str, prompt: int | None = None) -> None:
        self.reclaiming = method
        self._activity(f"reclaiming ({method})… measuring before")
        self._reclaim(method, trigger, prompt)

    @work(thread=True, exclusive=True, group="reclaim", exit_on_error=False)
    def _reclaim(self, method: str, trigger: str, prompt: int | None = None) -> None:
        try:
            result = self.source.reclaim(method, trigger, lambda text: self.post_message(ReclaimProgress(text)),
                                         prompt)
        except UserError as exc:  # no privilege, another reclaim running
            self.post_message(ReclaimDone(None, str(exc)))
            return
        except Exception as exc:
            log.exception("reclaim failed")
            self.post_message(ReclaimDone(None, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(ReclaimDone(result))

    def on_reclaim_progress(self, message: ReclaimProgress) -> None:
        self._activity(f"reclaiming ({self.reclaiming}): {message.text}")

    def on_reclaim_done(self, message: ReclaimDone) -> None:
        self.reclaiming = None
        self._activity("")
        if message.error or message.result is None:
            self.notify(f"reclaim failed: {message.error}", severity="error", timeout=10)
        else:
            outcome = message.result
            severity = "error" if outcome.error else "information"
            self.notify(outcome.words, title="reclaim", severity=severity, timeout=10)
        self.refresh_data(tick=self.source.probes is not None)  # standalone: sample the effect now

    def _activity(self, text: str) -> None:
        bar = self.query_one("#activity", Static)
        show_if_changed(bar, Text(text))
        if bar.display != bool(text):
            bar.display = bool(text)

    def screen_text(self) -> str:
        """The screen as plain text, as a terminal shows it (for tests and the tmux-less eye)."""
        import io

        from rich.console import Console

        console = Console(width=self.size.width, height=self.size.height, file=io.StringIO(), record=True,
                          force_terminal=True, color_system="truecolor", legacy_windows=False, safe_box=False)
        console.print(self.screen._compositor.render_update(full=True, screen_stack=self._background_screens))
        return console.export_text()

    def _show_notification(self, notification: Notification) -> None:
        """The standalone watcher notified (from a worker thread): a toast on this screen."""
        self.post_message(Notice(f"{notification.title}: {notification.body}"))

    def on_notice(self, message: Notice) -> None:
        self.notify(message.words, severity="warning")

    def _run_async(self, fn: Callable[[], None]) -> None:
        """The standalone watcher's rule reclaims: a worker of their own, beside the refreshes."""
        self.call_from_thread(self.run_worker, fn, thread=True, group="rule-reclaim", exit_on_error=False)


def make_app(config: Config, db_path: str | Path, *, standalone: bool, interval: float | None = None,
             clock: Callable[[], float] = time.time, timers: bool = True, **options: Any) -> VmmemApp:
    """The dashboard for ``db_path``. ``options`` are :class:`tui.source.Setup` fields
    (environ, reclaim_lock, watcher_pid, probes_factory, localtime) for tests."""
    if options.get("reclaim_lock") is not None:
        options["reclaim_lock"] = Path(options["reclaim_lock"])
    if interval:  # `tui --interval`: the recorder samples, and judges gaps, at the interval shown (issue 28)
        config = dataclasses.replace(config, sampling=dataclasses.replace(config.sampling, interval=interval))
    setup = Setup(config, Path(db_path), standalone and not options.get("view"), config.sampling.interval,
                  clock=clock, timers=timers, **options)
    return VmmemApp(setup)


def run(config: Config, args: argparse.Namespace) -> int:
    """`vmmemctl tui`: attach to the running watcher (found without flags: the system's, then the
    user's; or the one recording ``--db``), else record standalone."""
    from monitor.history.places import choose_history

    db, found = choose_history(config.general.db, getattr(args, "db", None))
    watcher = found.pid if found else None
    # --view: only read (someone's recorded history); otherwise record when nobody else does.
    standalone = not getattr(args, "view", False) and (bool(getattr(args, "standalone", False)) or watcher is None)
    app = make_app(config, db, standalone=standalone, interval=getattr(args, "interval", None),
                   view=bool(getattr(args, "view", False)))
    from monitor.kernel.dirs import user_dir

    with logs.to_file_while(user_dir("log") / "tui.log", config.general.log_level):
        app.run()
    return app.return_code or 0
