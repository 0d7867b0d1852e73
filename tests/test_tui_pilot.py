"""The dashboard driven by Pilot: every key, every modal, both modes, resizing, and a quiet stdout.

Apps run with timers off (a fast set_interval makes Pilot wait on every key)
and refresh when a test says so. Reclaims run for real on the fake kernel
tree (tests/fakekernel.py), with settle 0 and a lock file of the test's own.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import logging
import re
import time
from pathlib import Path

import pytest

from helpers import TREES
from fakekernel import FakeKernel
from monitor.history import instance as instance_mod
from monitor.config.schema import METHODS, Config, GeneralConfig, PolicyConfig, ReclaimConfig, Rule
from monitor.reclaim.reclaimer import ReclaimLock
from monitor.history.instance import recording_pid, take_instance_lock
from monitor.history.store import Store, sample_row
from monitor.units import Size
from textual.command import CommandPalette
from textual.widgets import OptionList
from textual.worker import WorkerCancelled
from tui import app as tui_app
from tui import screens
from tui.app import VmmemApp, make_app
from tui.data import build_cards, short_bytes
from tui.demo import write_history
from textual.containers import VerticalScroll

from tui.widgets import EventList, TrendChart

GiB, MiB = 1024**3, 1024**2
NOW = time.time() // 60 * 60  # real time: a reclaim made now lands inside the chart's range


def pilot(test):
    """Run an async Pilot test without an async pytest plugin (the project has none)."""
    @functools.wraps(test)
    def run(*args, **kwargs):
        asyncio.run(test(*args, **kwargs))
    return run


def tree_config(proc_root: Path | str = TREES / "linux-vm" / "proc", **policy) -> Config:
    return Config(general=GeneralConfig(proc_root=str(proc_root)), reclaim=ReclaimConfig(settle=0.0, refault_window=0.0),
                  policy=PolicyConfig(**policy))


@pytest.fixture
def history(tmp_path) -> Path:
    return write_history(tmp_path / "h.db", NOW, days=2, step=60.0)


@pytest.fixture
def kernel(tmp_path):
    k = FakeKernel(tmp_path / "tree", cached=2 * GiB, hot=1536 * MiB)
    yield k
    k.close()


def dashboard(config: Config, db: Path, tmp_path: Path, **kw) -> VmmemApp:
    options = dict(standalone=False, clock=lambda: NOW, timers=False, environ={}, localtime=time.gmtime,
                   watcher_pid=lambda db: None, reclaim_lock=tmp_path / "reclaim.lock")
    return make_app(config, db, **{**options, **kw})


def toasts(app) -> list[str]:
    """The toasts on screen now, as their text (title and message), as a user reads them."""
    from textual.widgets._toast import Toast  # the widget the user sees; Textual exports no public query for it

    return [str(t.render()) for t in app.screen.query(Toast)]


async def settle(pilot, rounds: int = 3) -> None:
    """Let workers finish and their messages land (a reclaim's end starts a refresh)."""
    for _ in range(rounds):
        await pilot.pause()
        try:
            await pilot.app.workers.wait_for_complete()
        except WorkerCancelled:  # an exclusive refresh replaced by a newer one: wait for that one next round
            pass
    await pilot.pause()


async def main_screen(pilot) -> None:
    """Past the prompt that the prepared history leaves waiting."""
    await settle(pilot)
    if isinstance(pilot.app.screen, screens.PromptScreen):
        await pilot.press("escape")
        await pilot.pause()


def screen(app: VmmemApp) -> str:
    """The screen's words, with wrapped lines joined (the header wraps on narrow terminals)."""
    return " ".join(app.screen_text().split())


def events_of(db: Path, kind: str) -> list:
    with Store(db) as store:
        return store.events(kinds=[kind])


# ------------------------------------------------------------------ first look


@pilot
async def test_opens_with_real_numbers_modes_and_the_waiting_prompt(history, tmp_path):
    app = dashboard(tree_config(), history, tmp_path)
    async with app.run_test(notifications=True, size=(120, 40)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, screens.PromptScreen)
        assert "cache-prompt" in screen(app) and "Snooze" in screen(app)
        await pilot.press("escape")
        await pilot.pause()
        text = screen(app)
        for words in ("Linux", "host measured (interop)", "attached: no watcher (history only)",
                      "auto-reclaim off", "1 prompt waiting: a", "host footprint", "programs (anon)",
                      "page cache", "reclaimable", "returnable / frag.", "PSI memory / io", "CPU busy",
                      "last 1h", "GiB", "r Reclaim", "q Quit"):
            assert words in text, words
        assert not app.query_one(TrendChart).shown.empty
        assert app.query_one(EventList).lines[0].kind == "prompt"


# ------------------------------------------------------------------ the prompt modal


@pilot
async def test_prompt_reclaim_answer_is_recorded_and_runs_a_prompt_reclaim(kernel, history, tmp_path):
    app = dashboard(tree_config(kernel.proc), history, tmp_path)
    async with app.run_test(notifications=True, size=(100, 30)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, screens.PromptScreen)
        await pilot.press("enter")  # Reclaim (auto) is the first choice
        await settle(pilot, 5)
        assert not isinstance(app.screen, screens.PromptScreen)
        assert app.query_one(EventList).lines[0].kind == "reclaim"
        assert "1 prompt waiting" not in screen(app)
    (answer,) = [e for e in events_of(history, "answer") if e.t > NOW - 60]
    assert answer.data["answer"] == "reclaimed"
    reclaim = events_of(history, "reclaim")[-1]
    assert reclaim.rule == "prompt" and reclaim.data["trigger"] == "prompt"
    assert reclaim.data["methods_run"][0] == "gradual" and kernel.requests  # memory.reclaim was written
    assert reclaim.data["freed_bytes"] > 0


@pytest.mark.parametrize("keys, answer", [(("down", "down", "enter"), "snoozed"), (("end", "enter"), "dismissed")])
@pilot
async def test_prompt_snooze_and_dismiss_are_recorded(history, tmp_path, keys, answer):
    app = dashboard(tree_config(), history, tmp_path)
    async with app.run_test(notifications=True, size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press(*keys)
        await settle(pilot)
        assert not isinstance(app.screen, screens.PromptScreen)
        text = screen(app)
        assert "prompt waiting" not in text
        assert ("snoozed until" in text) == (answer == "snoozed")
    with Store(history) as store:
        assert not store.pending_prompts()
        assert store.events(kinds=["answer"])[-1].data["answer"] == answer
        snoozed = store.get_state("policy") or {}
    if answer == "snoozed":
        assert snoozed["snoozed_until"] == pytest.approx(NOW + 3600)


@pilot
async def test_prompt_later_then_a_asks_again(history, tmp_path):
    app = dashboard(tree_config(), history, tmp_path)
    async with app.run_test(notifications=True, size=(100, 30)) as pilot:
        await main_screen(pilot)
        app.refresh_data()
        await settle(pilot)
        assert not isinstance(app.screen, screens.PromptScreen)  # "later" holds for this session
        await pilot.press("a")
        await pilot.pause()
        assert isinstance(app.screen, screens.PromptScreen)


def standalone_with_rule(kernel, tmp_path, action: str):
    """A standalone dashboard whose one rule (page cache above 1 GiB, at once) does ``action``."""
    rule = Rule(name=action, metric="page_cache", above=Size(bytes=GiB, text="1GiB"), for_=0.0, action=action)
    config = dataclasses.replace(tree_config(kernel.proc), rule=(rule,))
    return dashboard(config, tmp_path / "new.db", tmp_path, standalone=True, clock=time.time)


@pilot
async def test_a_prompt_the_standalone_watcher_records_pops_up(kernel, tmp_path):
    app = standalone_with_rule(kernel, tmp_path, "prompt")
    async with app.run_test(notifications=True, size=(100, 30)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, screens.PromptScreen)
        assert "page cache" in screen(app)
        await pilot.press("end", "enter")
        await settle(pilot)
    assert events_of(tmp_path / "new.db", "answer")[-1].data["answer"] == "dismissed"


@pilot
async def test_a_notification_of_the_standalone_watcher_shows_on_screen_and_is_recorded_as_delivered(kernel, tmp_path):
    app = standalone_with_rule(kernel, tmp_path, "notify")
    async with app.run_test(notifications=True, size=(100, 30)) as pilot:
        await settle(pilot)
        shown = toasts(app)
        assert any("page cache" in m and "1.0 GiB" in m for m in shown), shown
    notified = events_of(tmp_path / "new.db", "notify")
    assert notified and notified[-1].data["backend"] == "dashboard", notified


# ------------------------------------------------------------------ r: reclaim now


@pilot
async def test_r_confirm_shows_methods_and_expected_gain_and_escape_cancels(history, tmp_path):
    app = dashboard(tree_config(), history, tmp_path)
    async with app.run_test(notifications=True, size=(100, 30)) as pilot:
        await main_screen(pilot)
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, screens.ReclaimScreen)
        text = screen(app)
        for words in ("Reclaim now", "auto", "gradual", "pagecache", "full", "compact", "frees about", "GiB"):
            assert words in text, words
        await pilot.press("down")
        await pilot.pause()
        text = screen(app)  # the offer follows the highlighted method, and speaks of what it will do
        assert "gradual: will use pagecache (no memory.reclaim here" in text and "used pagecache" not in text
        rows = {m[1]: m[0] for m in (re.search(r"│ (\w+) .*~", line) for line in app.screen_text().splitlines())
                if m and m[1] in METHODS}
        assert set(rows) == set(METHODS)
        assert "pagecache + compact (fallback)" in rows["gradual"] and "(fallback)" not in rows["pagecache"]
        assert len({row.index("~") for row in rows.values()}) == 1  # the expected gains line up
        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, screens.ReclaimScreen) and app.reclaiming is None
    assert not [e for e in events_of(history, "reclaim") if e.t > NOW]


@pilot
async def test_r_reclaims_in_a_worker_and_the_effect_shows_in_chart_and_events(tmp_path):
    kernel = FakeKernel(tmp_path / "big", cached=8 * GiB, hot=GiB)  # ~14 gradual steps of 0.25 s windows
    try:
        await reclaim_from_standalone_dashboard(kernel, tmp_path)
    finally:
        kernel.close()


async def reclaim_from_standalone_dashboard(kernel: FakeKernel, tmp_path: Path) -> None:
    db = tmp_path / "standalone.db"
    app = dashboard(tree_config(kernel.proc), db, tmp_path, standalone=True, clock=time.time)
    async with app.run_test(notifications=True, size=(100, 30)) as pilot:
        await settle(pilot)
        for _ in range(3):
            app.refresh_data(tick=True)
            await settle(pilot)
        before = app.snapshot.chart.cache[-1][-1][1]
        await pilot.press("r")
        await pilot.pause()
        await pilot.press("enter")  # the configured method (auto: gradual on this tree)
        await pilot.pause(0.3)
        assert app.reclaiming == "auto" and app.query_one("#activity").display, \
            toasts(app)  # a reclaim that ended at once says why there
        shown = app.snapshot
        app.refresh_data(tick=True)  # the screen stays live while the reclaim runs
        for _ in range(40):
            await pilot.pause(0.05)
            if app.snapshot is not shown:
                break
        assert app.snapshot is not shown and app.reclaiming == "auto"
        assert "reclaiming (auto)" in screen(app)
        await settle(pilot, 6)
        assert app.reclaiming is None and not app.query_one("#activity").display
        snap = app.snapshot
        kinds = [line.kind for line in app.query_one(EventList).lines]
        assert "reclaim" in kinds, kinds  # newest first: only "fell below" crossings may follow it (one per rule)
        assert set(kinds[:kinds.index("reclaim")]) <= {"crossing"}, kinds
        assert "freed" in app.query_one(EventList).lines[kinds.index("reclaim")].text
        assert snap.chart.reclaims and snap.chart.since <= snap.chart.reclaims[-1] <= snap.chart.until
        assert snap.latest["page_cache"] < before - GiB  # the cards show the drop...
        assert snap.chart.cache[-1][-1][1] < before  # ...and so does the chart's last point
        assert any("reclaim" in t for t in toasts(app))
        # Its details in words (issue 28: raw JSON, "started": 1796614017.875673), the raw record on `j`
        events = app.query_one(EventList)
        events.focus()
        events.move_cursor(row=kinds.index("reclaim"))
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, screens.EventScreen)
        assert app.screen.query_one(VerticalScroll).border_subtitle == "j: raw JSON · Esc closes"
        words = app.screen.words.plain
        assert re.search(r"^freed: [0-9.]+ GiB$", words, re.M) and re.search(r"^started: \d\d:\d\d:\d\d$", words, re.M)
        assert "freed_bytes" not in words and not re.search(r"\b1[0-9]{9}\b", words), words  # no raw bytes or epochs
        assert "freed: " in screen(app)  # first, where the screen shows it
        await pilot.press("j")
        await settle(pilot)
        assert app.screen.showing_raw and '"freed_bytes": ' in app.screen.raw.plain
        assert app.screen.query_one(VerticalScroll).border_subtitle == "j: in words · Esc closes"
        assert '"method": ' in screen(app)  # the JSON is what the screen shows now
        await pilot.press("escape")
    (reclaim,) = events_of(db, "reclaim")
    assert reclaim.rule == "manual" and reclaim.status == "ok" and len(kernel.requests) > 3


@pilot
async def test_a_busy_reclaim_lock_is_reported_not_crashed_on(kernel, history, tmp_path):
    app = dashboard(tree_config(kernel.proc), history, tmp_path)
    with ReclaimLock(tmp_path / "reclaim.lock"):
        async with app.run_test(notifications=True, size=(100, 30)) as pilot:
            await main_screen(pilot)
            await pilot.press("r", "enter")
            await settle(pilot)
            assert app.reclaiming is None
            assert any("another reclaim is running" in t for t in toasts(app))


# ------------------------------------------------------------------ s, p: snooze and pause


@pilot
async def test_s_snoozes_for_the_chosen_time_and_can_clear_it(history, tmp_path):
    app = dashboard(tree_config(), history, tmp_path)
    async with app.run_test(notifications=True, size=(100, 30)) as pilot:
        await main_screen(pilot)
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, screens.SnoozeScreen)
        await pilot.press("enter")  # 1 h is highlighted
        await settle(pilot)
        assert "snoozed until" in screen(app)
        await pilot.press("s")
        await pilot.pause()
        assert "clear" in screen(app)
        await pilot.press("end", "enter")
        await settle(pilot)
        assert "snoozed until" not in app.query_one("#header").render().plain
    with Store(history) as store:
        assert [e.message for e in store.events(kinds=["state"])][-2:] == ["snoozed for 1h", "snooze cleared"]


@pilot
async def test_p_pauses_and_resumes_auto_reclaim(history, tmp_path):
    app = dashboard(tree_config(auto_reclaim=True), history, tmp_path)
    async with app.run_test(notifications=True, size=(100, 30)) as pilot:
        await main_screen(pilot)
        assert "auto-reclaim on" in screen(app)
        await pilot.press("p")
        await settle(pilot)
        assert "auto-reclaim paused until" in screen(app)
        await pilot.press("p")
        await settle(pilot)
        assert "auto-reclaim on" in screen(app)
    with Store(history) as store:
        assert [e.message for e in store.events(kinds=["state"])][-2:] == [
            "auto-reclaim paused for 1h", "auto-reclaim resumed"]


# ------------------------------------------------------------------ t, 1-4, c, ?, enter, q, palette


@pilot
async def test_t_and_number_keys_choose_the_range_and_long_ranges_read_rolled_up_tiers(history, tmp_path):
    app = dashboard(tree_config(), history, tmp_path)
    async with app.run_test(notifications=True, size=(100, 30)) as pilot:
        await main_screen(pilot)
        seen = {}
        for key in ("t", "t", "t", "t", "4", "3", "2", "1"):
            await pilot.press(key)
            await settle(pilot)
            seen[app.range_name] = app.snapshot.chart.tier
            assert app.snapshot.range_name == app.range_name
            assert f"last {app.range_name}" in screen(app)
        assert seen == {"5m": "samples", "1h": "samples", "24h": "samples_1m", "7d": "samples_10m"}
        assert app.range_name == "5m"


@pilot
async def test_c_shows_the_effective_config(history, tmp_path):
    app = dashboard(tree_config(), history, tmp_path)
    async with app.run_test(notifications=True, size=(100, 30)) as pilot:
        await main_screen(pilot)
        await pilot.press("c")
        await pilot.pause()
        text = screen(app)
        assert "effective config" in text and "[general]" in text and "proc_root" in text
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, screens.TextScreen)


@pilot
async def test_help_lists_the_keys(history, tmp_path):
    app = dashboard(tree_config(), history, tmp_path)
    async with app.run_test(notifications=True, size=(100, 30)) as pilot:
        await main_screen(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        text = screen(app)
        assert "reclaim now" in text and "snooze" in text and "command palette" in text
        await pilot.press("q")  # closes the page, does not quit
        await pilot.pause()
        assert app.is_running and not isinstance(app.screen, screens.TextScreen)


@pilot
async def test_enter_on_an_event_shows_its_details(history, tmp_path):
    app = dashboard(tree_config(), history, tmp_path)
    async with app.run_test(notifications=True, size=(100, 30)) as pilot:
        await main_screen(pilot)
        events = app.query_one(EventList)
        events.focus()
        index = next(i for i, line in enumerate(events.lines) if line.kind == "reclaim")
        events.move_cursor(row=index)
        await pilot.press("enter")
        await pilot.pause()
        text = screen(app)
        assert f"event {events.lines[index].id}" in text and "freed: " in text and "freed_bytes" not in text


@pilot
async def test_a_cards_change_is_left_out_rather_than_cut_at_80_columns(history, tmp_path):
    """Issue 28: the returnable card read "8.6G / 211M ↓ -1.…" at 80x24."""
    from tui.data import Card
    from tui.data.cards import Trend

    app = dashboard(tree_config(), history, tmp_path)
    async with app.run_test(notifications=True, size=(80, 24)) as pilot:
        await main_screen(pilot)
        card = app.query_one("#card-returnable")
        wide = Card("returnable", "returnable / frag.", "8.6G / 211M", Trend("↓", -1.2 * GiB, "good"), "-1.2 GiB",
                    "host can take / cannot")
        card.show(wide)
        await settle(pilot)
        value_line = card.render().plain.splitlines()[1]
        assert value_line == "8.6G / 211M ↓" and card.content_size.width < len("8.6G / 211M ↓ -1.2 GiB")
        await pilot.resize_terminal(160, 40)
        await settle(pilot)
        card.show(dataclasses.replace(wide, value="8.6G / 212M"))  # (a change to repaint)
        assert card.render().plain.splitlines()[1] == "8.6G / 212M ↓ -1.2 GiB"  # room: the change is shown


@pilot
async def test_q_quits(history, tmp_path):
    app = dashboard(tree_config(), history, tmp_path)
    async with app.run_test(notifications=True, size=(100, 30)) as pilot:
        await main_screen(pilot)
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0 and not app.is_running


@pilot
async def test_the_command_palette_offers_the_dashboards_commands(history, tmp_path):
    app = dashboard(tree_config(), history, tmp_path)
    async with app.run_test(notifications=True, size=(100, 30)) as pilot:
        await main_screen(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"reclaim now")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, screens.ReclaimScreen)


# ------------------------------------------------------------------ size, modes, quiet


@pilot
async def test_resizing_down_to_80x24_keeps_everything_readable(history, tmp_path):
    app = dashboard(tree_config(), history, tmp_path)
    async with app.run_test(notifications=True, size=(160, 50)) as pilot:
        await main_screen(pilot)
        for size in ((120, 40), (100, 30), (80, 24)):
            await pilot.resize_terminal(*size)
            app.refresh_data()
            await settle(pilot)
            text = screen(app)
            for words in ("vmmemctl", "host footprint", "page cache", "reclaimable", "CPU busy", "policy:",
                          "last 1h", "events", "r Reclaim", "w Cache", "? Help", "q Quit", "^p palette"):
                assert words in text, (size, words)
            assert app.query_one(TrendChart).size.height >= 6, size
            assert app.query_one(EventList).size.height >= 4, size
            for card in app.query(".card"):  # every value line whole: its change left out rather than cut
                value_line = card.render().plain.splitlines()[1]
                assert len(value_line) <= card.content_size.width, (size, card.id, value_line)


@pilot
async def test_attached_mode_reads_and_never_writes_samples(history, tmp_path):
    app = dashboard(tree_config(), history, tmp_path, watcher_pid=lambda db: 4242)
    with Store(history) as store:
        count = store.db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
    async with app.run_test(notifications=True, size=(100, 30)) as pilot:
        await main_screen(pilot)
        for _ in range(3):
            app.refresh_data(tick=True)
            await settle(pilot)
        assert "attached to watcher (pid 4242)" in screen(app)
    with Store(history) as store:
        assert store.db.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == count


@pilot
async def test_standalone_records_samples_and_holds_the_watchers_lock(kernel, tmp_path):
    db = tmp_path / "s.db"
    app = dashboard(tree_config(kernel.proc), db, tmp_path, standalone=True, clock=time.time,
                    watcher_pid=recording_pid)
    async with app.run_test(notifications=True, size=(100, 30)) as pilot:
        await settle(pilot)
        for _ in range(2):
            app.refresh_data(tick=True)
            await settle(pilot)
        assert "standalone: recording every 2s" in screen(app)
        assert recording_pid(db) is not None  # a `vmmemctl watch` or second TUI attaches to us
        # its own coming is in the history, not in the event list it shows (issue 28: they buried the real ones)
        assert [e.message for e in events_of(db, "dashboard")] == ["dashboard started recording (standalone, every 2s)"]
        assert not [line for line in app.snapshot.events if "dashboard" in str(line)], app.snapshot.events
        with Store(db) as store:
            assert store.db.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 3
    assert recording_pid(db) is None
    assert [e.message for e in events_of(db, "dashboard")][-1] == "dashboard stopped recording"


@pilot
async def test_standalone_beside_a_running_watcher_samples_live_but_records_nothing(kernel, tmp_path):
    db = tmp_path / "w.db"
    Store(db).close()
    lock = take_instance_lock(db)  # a watcher holds this history
    try:
        app = dashboard(tree_config(kernel.proc), db, tmp_path, standalone=True, clock=time.time,
                        watcher_pid=recording_pid)
        async with app.run_test(notifications=True, size=(100, 30)) as pilot:
            await settle(pilot)
            app.refresh_data(tick=True)
            await settle(pilot)
            text = screen(app)
            assert "not recording" in text and "GiB" in app.query_one("#card-page_cache").render().plain
    finally:
        lock.__exit__(None, None, None)
    with Store(db) as store:
        assert store.db.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 0


@pilot
async def test_nothing_reaches_stdout_or_stderr(kernel, history, tmp_path, capfd):
    app = dashboard(tree_config(kernel.proc), history, tmp_path)
    async with app.run_test(notifications=True, size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("enter")  # reclaim from the prompt: probes, writes, the store
        await settle(pilot, 5)
        for key in ("s", "escape", "p", "t", "c", "escape", "question_mark", "escape"):
            await pilot.press(key)
            await settle(pilot, 1)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_run_attaches_when_a_watcher_runs_and_records_otherwise(tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr(VmmemApp, "run", lambda self: started.append(self.setup))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # tui.log goes there
    args = argparse.Namespace(db=str(tmp_path / "h.db"), standalone=False, interval=5.0, proc_root=None, config=None)
    assert tui_app.run(Config(), args) == 0
    lock = take_instance_lock(tmp_path / "h.db")  # a recorder holds the history (here: this process)
    try:
        tui_app.run(Config(), args)
        tui_app.run(Config(), argparse.Namespace(**{**vars(args), "standalone": True}))
    finally:
        lock.__exit__(None, None, None)
    assert [(s.standalone, s.interval, s.db_path) for s in started] == [
        (True, 5.0, tmp_path / "h.db"), (False, 5.0, tmp_path / "h.db"), (True, 5.0, tmp_path / "h.db")]
    monitor_log = logging.getLogger("monitor")
    assert monitor_log.propagate and not any(isinstance(h, logging.FileHandler) for h in monitor_log.handlers)


# ------------------------------------------------------------------ words (issue 18)


@pilot
async def test_a_reclaim_rule_reads_as_inactive_while_auto_reclaim_is_off(history, tmp_path):
    config = tree_config()
    config = dataclasses.replace(config, rule=tuple(r for r in config.rule if r.action == "reclaim"))
    app = dashboard(config, history, tmp_path)
    async with app.run_test(notifications=True, size=(160, 40)) as pilot:
        await main_screen(pilot)
        text = screen(app)
        # the verb first (it was "nothing to do: ...; would reclaim (auto-reclaim is off): by dropp…": issue 28)
        assert "policy: would reclaim (auto-reclaim is off): reclaimable" in text, text
        assert "╌ reclaim-idle-cache 512M would reclaim (auto-reclaim is off)" in text  # the chart legend
        await pilot.resize_terminal(80, 24)
        await settle(pilot)
        app.refresh_data()
        await settle(pilot)
        assert "(off)" in app.query_one("#chart-legend").render().plain
        policy = app.query_one("#policy")
        assert "policy: would reclaim (auto-reclaim is off): " in screen(app)  # the verb whole at 80x24
        assert policy.size.height == 2 and policy.render().plain.endswith("here)"), policy.render().plain
    on = dataclasses.replace(config, policy=dataclasses.replace(config.policy, auto_reclaim=True))
    app = dashboard(on, history, tmp_path)
    async with app.run_test(notifications=True, size=(160, 40)) as pilot:
        await main_screen(pilot)
        text = screen(app)
        assert "╌ reclaim-idle-cache 512M" in text
        assert "auto-reclaim is off" not in text and "(off)" not in text


@pilot
async def test_view_mode_records_nothing_and_acts_on_nothing(history, tmp_path):
    """`tui --db OTHER.db --view`: the prompt is shown read only; r, s, p say why they are unavailable."""
    before = history.read_bytes()
    with Store(history) as store:
        events = store.events_version()
    app = dashboard(tree_config(), history, tmp_path, view=True, standalone=True)  # --view wins over standalone
    async with app.run_test(notifications=True, size=(120, 40)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, screens.PromptScreen)
        text = screen(app)
        assert "Not answerable here: viewing" in text and "Close (nothing is recorded)" in text
        answers = app.screen.query_one("#answers", OptionList)
        assert [answers.get_option_at_index(i).id for i in range(answers.option_count)] == ["close"]
        await pilot.press("enter")  # Close: nothing recorded
        await settle(pilot)
        assert not isinstance(app.screen, screens.PromptScreen)
        assert f"viewing {history.name} (read only)" in screen(app) and "1 prompt waiting: a" in screen(app)
        for key, what in (("r", "reclaim"), ("s", "snooze"), ("p", "pause")):
            await pilot.press(key)
            await settle(pilot)
            assert not isinstance(app.screen, (screens.ReclaimScreen, screens.SnoozeScreen)), key
            assert any(f"{what} is unavailable: viewing {history.name} read only (--view)" in t
                       for t in toasts(app)), (key, toasts(app))
        await pilot.press("a")  # the prompt again: still read only
        await pilot.pause()
        assert isinstance(app.screen, screens.PromptScreen) and "Not answerable here" in screen(app)
    with Store(history) as store:
        assert store.events_version() == events and len(store.pending_prompts()) == 1
    assert not instance_mod.recording_pid(history)
    assert history.read_bytes() == before


@pilot
async def test_standalone_that_cannot_create_its_history_says_not_recording(tmp_path):
    """As a user whose history folder cannot be made (here: a file stands where the folder would be;
    as an unprivileged user, a folder they cannot write says "permission denied")."""
    (tmp_path / "data").write_text("a file, not a folder")
    db = tmp_path / "data" / "vmmemctl" / "history.db"
    app = dashboard(tree_config(), db, tmp_path, standalone=True)
    async with app.run_test(notifications=True, size=(120, 40)) as pilot:
        await settle(pilot)
        text = screen(app)  # the header, the policy line and the chart's placeholder say it
        words = f"not recording: {db.parent}: not a directory (--db PATH records elsewhere)"
        assert app.source.mode_words() == words and text.count("not recording: ") >= 2
        assert "recording every" not in text
        # ...and still shows live numbers (issue 24: every card was "?" and PSI "n/a"), as `status` does
        app.source.tick()
        app.refresh_data()
        await settle(pilot)
        live = app.source.live
        assert live is not None and live.guest.page_cache is not None
        expected = build_cards([sample_row(live)])  # the cards of the sample it took, as the code builds them
        assert [c.value for c in app.snapshot.cards] == [c.value for c in expected]
        assert all(c.value not in ("?", "") for c in app.snapshot.cards if c.key in ("cache", "psi", "guest"))
    assert not db.exists()


# ------------------------------------------------------------------ the file cache's split and gradual's bound (issue 25)


@pilot
async def test_the_page_cache_card_shows_the_split_and_the_reclaim_offer_where_gradual_stops(tmp_path):
    from test_reclaim_prior import with_active

    kernel = FakeKernel(tmp_path / "tree", cached=8 * GiB, hot=GiB)
    try:
        with_active(kernel, 2 * GiB)  # the prior 2.5 GiB is above this tree's floor (1.2 GiB)
        inactive = re.search(r"^Inactive\(file\):\s+(\d+) kB", (kernel.proc / "meminfo").read_text(), re.M)
        db = tmp_path / "standalone.db"
        app = dashboard(tree_config(kernel.proc), db, tmp_path, standalone=True, clock=time.time)
        async with app.run_test(notifications=True, size=(160, 40)) as pilot:
            await settle(pilot)
            app.refresh_data(tick=True)
            await settle(pilot)
            assert app.snapshot.latest["active_file"] == 2 * GiB  # recorded in the history, read back
            split = f"2.0G active, {short_bytes(int(inactive[1]) * 1024)} inactive"
            assert split in screen(app), screen(app)
            await pilot.press("r")
            await pilot.pause()
            assert isinstance(app.screen, screens.ReclaimScreen)  # auto is highlighted: gradual on this tree
            offer = str(app.screen.query_one("#offer").render())  # the dialog wraps it between its borders
            assert "would stop near 2.5 GiB: the active file cache 2.0 GiB + 25% (pages used more than once " \
                   "recently); sooner if refaults say the working set is higher" in offer, offer
            assert "stop near 2.5 GiB" in screen(app)
            await pilot.press("escape")
            await settle(pilot)
        assert kernel.requests == []  # shown, not run
    finally:
        kernel.close()
