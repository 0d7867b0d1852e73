"""The dashboard's data shaping (tui/data.py, tui/source.py, tui/demo.py): no Textual, plain calls."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from monitor.config.schema import Config, PolicyConfig, Rule
from monitor.history.store import TIERS, Event, Store
from monitor.policy.rules import PolicyState
from monitor.reclaim.workingset import Hint
from monitor.units import Size, format_bytes
from tui import data
from tui.demo import write_history
from tui.source import DataSource, Setup

GiB, MiB = 1024**3, 1024**2
NOW = 1_800_022_800.0  # a Friday, 14:20 UTC


def rows(values, key="page_cache", step=2.0, t0=NOW - 600):
    return [{"t": t0 + i * step, key: v} for i, v in enumerate(values)]


# ------------------------------------------------------------------ trends and cards


@pytest.mark.parametrize("values, arrow, mood", [
    ([1 * GiB] * 10 + [2 * GiB], "↑", "bad"),  # cache up: the way we don't want
    ([2 * GiB] * 10 + [1 * GiB], "↓", "good"),
    ([GiB, GiB + 2 * MiB], "→", "neutral"),  # under 16 MiB is steady
    ([GiB], "", "neutral"),  # nothing to compare with
    ([None, None, GiB], "", "neutral"),  # unknowns are not zeros
])
def test_trend_arrow(values, arrow, mood):
    t = data.trend(rows(values), "page_cache")
    assert (t.arrow, t.mood) == (arrow, mood)


def test_trend_compares_with_the_value_a_window_before_not_the_first_ever():
    history = rows([5 * GiB] + [GiB] * 400, step=2.0)  # 5 GiB 800 s ago, 1 GiB since
    assert data.trend(history, "page_cache").arrow == "→"


def test_trend_of_a_percentage_uses_points_and_returnable_up_is_good():
    assert data.trend(rows([1.0, 1.5], key="cpu"), "cpu", percent=True).arrow == "→"
    assert data.trend(rows([1.0, 9.0], key="cpu"), "cpu", percent=True).arrow == "↑"
    up = data.trend(rows([GiB, 3 * GiB], key="returnable_free"), "returnable_free", good="up")
    assert (up.arrow, up.mood) == ("↑", "good")


def test_cards_show_every_number_the_issue_lists_with_units_and_na():
    last = {"t": NOW, "host_bytes": 12 * GiB, "host_source": "interop", "host_estimated": 0, "anon": 3 * GiB,
            "page_cache": 8 * GiB, "reclaimable": 7 * GiB, "returnable_free": 3 * GiB, "fragmented_free": 200 * MiB,
            "psi_memory_some_avg10": None, "psi_io_some_avg10": None, "cpu_busy_percent": 4.25, "total": 16 * GiB,
            "available": 12 * GiB}
    before = {**last, "t": NOW - 120, "page_cache": 7 * GiB, "host_bytes": 11 * GiB}
    cards = {c.key: c for c in data.build_cards([before, last])}
    assert list(cards) == ["host", "anon", "page_cache", "reclaimable", "returnable", "psi", "cpu", "guest"]
    assert cards["host"].value == "12.0 GiB" and cards["host"].detail == "measured (interop)"
    assert cards["host"].trend.arrow == "↑" and cards["host"].delta == "+1.0G"
    assert cards["page_cache"].detail == "50% of RAM"
    assert cards["returnable"].value == "3.0G / 200M"
    assert cards["psi"].value == "n/a" and "no /proc/pressure" in cards["psi"].detail
    assert cards["cpu"].value == "4.2%"


def test_cards_for_an_empty_history_say_unknown():
    cards = data.build_cards([])
    assert all(c.value in ("?", "? / ?", "n/a") for c in cards)
    assert cards[0].detail == "unknown"


# ------------------------------------------------------------------ the chart


def test_bucket_averages_to_the_width_and_split_runs_breaks_at_gaps():
    points = [{"t": NOW - 3600 + i * 2, "page_cache": GiB + i} for i in range(1800)]
    out = data.bucket(points, "page_cache", NOW - 3600, NOW, 100)
    assert len(out) == 100
    assert out[0][1] == pytest.approx(GiB + 8.5)
    gap = [(0.0, 1.0), (2.0, 1.0), (4.0, 1.0), (100.0, 1.0), (102.0, 1.0)]
    assert [len(r) for r in data.split_runs(gap, 6.0)] == [3, 2]


def test_chart_breaks_the_line_where_the_watcher_was_off():
    on = [{"t": NOW - 3600 + i * 2, "page_cache": GiB, "host_bytes": 2 * GiB} for i in range(600)]
    later = [{"t": NOW - 1200 + i * 2, "page_cache": GiB, "host_bytes": 2 * GiB} for i in range(600)]
    chart = data.chart_data(on + later, "samples", NOW - 3600, NOW, columns=100)
    assert len(chart.host) == 2 and len(chart.cache) == 2
    assert not chart.empty and chart.rows == 1200


def test_chart_marks_where_the_host_metric_changed():
    """Issue 27: PowerShell's private set, then tasklist's whole working set: one line, two meanings; the
    chart marks the switch and the legend names it. Rows with no figure or an older history's (no metric)
    mark nothing; a roll-up bucket that mixed them is where the mark goes."""
    from tui.widgets import legend

    def row(i: int, metric: str | None, host: int | None = 2 * GiB) -> dict:
        return {"t": NOW - 3600 + i * 60, "page_cache": GiB, "host_bytes": host, "host_metric": metric}
    rows = [row(0, None), row(1, "private_working_set"), row(2, "private_working_set"), row(3, "working_set", None),
            row(4, "working_set"), row(5, "working_set")]
    chart = data.chart_data(rows, "samples", NOW - 3600, NOW, columns=100)
    assert chart.metric_changes == ((NOW - 3600 + 4 * 60, "private_working_set", "working_set"),)
    assert "│ host: private set → whole working set" in legend(chart).plain
    assert legend(chart, width=30).plain == "━ host ━ cache │ host metric"  # narrow: still marked
    same = data.chart_data(rows[:3], "samples", NOW - 3600, NOW, columns=100)
    assert same.metric_changes == () and "host:" not in legend(same).plain and same.key != chart.key
    minutes = [row(1, "private_working_set"), row(2, "mixed"), row(3, "working_set")]
    assert data.metric_changes(minutes, NOW - 3600, NOW) == ((NOW - 3600 + 120, "private_working_set", "working_set"),)
    assert data.metric_changes(minutes[:2], NOW - 3600, NOW) == ((NOW - 3600 + 120, "private_working_set", "mixed"),)


def test_chart_draws_the_nearest_threshold_unless_it_would_flatten_the_trend():
    rules = (Rule(name="reclaim-idle-cache", metric="reclaimable", above=Size(percent=25.0, text="25%")),
             Rule(name="cache-notify", metric="page_cache", above=Size(percent=30.0, text="30%")),
             Rule(name="cache-prompt", metric="page_cache", above=Size(percent=50.0, text="50%")))
    config = Config(rule=rules)  # 25% reclaimable, 30% and 50% page cache of 16 GiB: 4.0, 4.8, 8.0 GiB
    row = {"t": NOW, "total": 16 * GiB, "host_total": 32 * GiB}
    limits = data.thresholds(config, row)
    assert [(th.label, th.bytes) for th in limits] == [
        ("reclaim-idle-cache", 4 * GiB), ("cache-notify", int(4.8 * GiB)), ("cache-prompt", 8 * GiB)]
    near = [{"t": NOW - 60, "page_cache": 3 * GiB, "host_bytes": 5 * GiB}]
    chart = data.chart_data(near, "samples", NOW - 300, NOW, columns=80, limits=limits)
    assert [th.bytes for th in chart.thresholds] == [4 * GiB, int(4.8 * GiB)]
    assert [th.label for th in chart.above] == ["cache-prompt"]
    far = [{"t": NOW - 60, "page_cache": 100 * MiB, "host_bytes": 500 * MiB}]
    chart = data.chart_data(far, "samples", NOW - 300, NOW, columns=80, limits=limits)
    assert chart.thresholds == [] and len(chart.above) == 3 and chart.y_max < GiB


def test_host_thresholds_resolve_against_host_ram_and_host_gap_is_not_drawn():
    config = Config(rule=(Rule(name="h", metric="host", above=Size(percent=50.0, text="50%")),
                          Rule(name="g", metric="host_gap", above=Size(bytes=GiB, text="1GiB"))))
    limits = data.thresholds(config, {"total": 16 * GiB, "host_total": 32 * GiB})
    assert [(th.label, th.metric, th.bytes) for th in limits] == [("h", "host", 16 * GiB)]


def test_reclaim_marks_use_the_start_time_and_skip_skipped_ones():
    events = [Event(1, NOW - 100, "reclaim", "r", data={"started": NOW - 130.0}),
              Event(2, NOW - 50, "reclaim", "skipped", status="skipped"),
              Event(3, NOW - 10, "reclaim", "no data"), Event(4, NOW, "prompt", "p")]
    assert data.reclaim_times(events) == [NOW - 130.0, NOW - 10]


@pytest.mark.parametrize("low, high, ticks, labels", [
    (0, 12.9 * GiB, 5, ["0 GiB", "5 GiB", "10 GiB"]),
    (0, 10.3 * GiB, 3, ["0 GiB", "5 GiB", "10 GiB"]),
    (0, 1.2 * GiB, 4, ["0 MiB", "500 MiB", "1000 MiB"]),
    (0, 80 * MiB, 5, ["0 MiB", "20 MiB", "40 MiB", "60 MiB", "80 MiB"]),
])
def test_byte_ticks_are_round_and_carry_the_unit(low, high, ticks, labels):
    values, words = data.byte_ticks(low, high, ticks)
    assert words == labels and len(values) <= ticks


@pytest.mark.parametrize("span, ticks, first_labels", [
    (300, 6, ["14:15", "14:16", "14:17"]),
    (3600, 7, ["13:20", "13:30", "13:40"]),
    (86400, 5, ["18:00", "00:00", "06:00"]),
    (7 * 86400, 8, ["Sat 09", "Sun 10", "Mon 11"]),
])
def test_time_ticks_land_on_round_clock_times(span, ticks, first_labels):
    values, labels = data.time_ticks(NOW - span, NOW, ticks, time.gmtime)
    assert labels[:3] == first_labels and len(values) <= ticks


def test_time_ticks_round_in_local_time():
    def plus_five_thirty(ts):  # a zone at +05:30 (India): 6-hour ticks land on its own midnight
        return time.struct_time((*time.gmtime(ts + 19800)[:9],), {"tm_gmtoff": 19800, "tm_zone": "IST"})
    _, labels = data.time_ticks(NOW - 86400, NOW, 5, plus_five_thirty)
    assert labels[0] in ("00:00", "06:00", "12:00", "18:00")


# ------------------------------------------------------------------ events and words


def test_event_lines_are_newest_first_on_one_line_with_prompt_status():
    events = [Event(1, NOW - 2 * 86400, "reclaim", "old"), Event(2, NOW - 30, "prompt", "cache\nhigh", status="pending")]
    lines = data.event_lines(events, NOW, time.gmtime)
    assert [line.id for line in lines] == [2, 1]
    assert lines[0].text == "[pending] cache high" and lines[0].when == "14:19:30"
    assert lines[1].when == "Wed 14:20" and lines[1].kind == "reclaim"


def test_header_words_for_auto_reclaim_pause_and_snooze():
    on = Config(policy=PolicyConfig(auto_reclaim=True))
    paused = PolicyState(paused_until=NOW + 3600)
    assert data.auto_words(Config(), PolicyState(), NOW) == "auto-reclaim off"
    assert data.auto_words(on, PolicyState(), NOW) == "auto-reclaim on"
    assert data.auto_words(on, paused, NOW, time.gmtime) == "auto-reclaim paused until 15:20"
    assert data.snooze_words(PolicyState(snoozed_until=NOW + 2 * 86400), NOW, time.gmtime) == "snoozed until Sun 14:20"
    assert data.snooze_words(PolicyState(snoozed_until=NOW - 1), NOW) == ""
    assert data.staleness(NOW - 2 * 86400 - 3700, NOW, 2.0) == "last sample 2d ago"
    assert data.staleness(NOW - 125, NOW, 2.0) == "last sample 2m ago"  # not 2m5s: the header changes once a minute
    assert data.staleness(NOW - 3, NOW, 2.0) == "" and data.staleness(None, NOW, 2.0) == "no samples yet"


def test_expected_gain_per_method():
    row = {"reclaimable": 3 * GiB, "page_cache": 4 * GiB, "total": 16 * GiB, "fragmented_free": 300 * MiB,
           "slab_reclaimable": 200 * MiB}
    config = Config()
    assert data.expected_gain("pagecache", ["pagecache", "compact"], row, config)[0] == 3 * GiB
    assert data.expected_gain("full", ["full"], row, config)[0] == 3 * GiB + 200 * MiB
    assert data.expected_gain("compact", ["compact"], row, config)[0] == 300 * MiB
    row = {**row, "t": NOW, "reclaimable": 4 * GiB}
    gain, words = data.expected_gain("gradual", ["gradual", "compact"], row, config)
    floor = int(16 * GiB * 0.05)  # no Active(file) in the row: the bound is the floor
    assert gain == 4 * GiB - floor and "then compacts" in words
    assert f"would stop near {format_bytes(floor)}: the floor" in words
    # the plan the reclaimer builds: Active(file) 2 GiB + 25%, or the remembered working set above it
    gain, words = data.expected_gain("gradual", ["gradual"], {**row, "active_file": 2 * GiB}, config)
    assert gain == int(1.5 * GiB) and "would stop near 2.5 GiB: the active file cache 2.0 GiB + 25%" in words
    hint = Hint(target=3 * GiB, estimate=int(2.4 * GiB), words="", margin=0.25, about="working set ~ 2.4 GiB")
    gain, words = data.expected_gain("gradual", ["gradual"], {**row, "active_file": 2 * GiB}, config, hint)
    assert gain == GiB and "3.0 GiB: the start level above the remembered working set (working set ~ 2.4 GiB)" in words
    assert data.expected_gain("pagecache", ["pagecache"], None, config)[0] is None
    assert data.expected_gain("gradual", ["gradual"], None, config) == (None, "frees cold page cache in steps")


def test_the_page_cache_card_shows_the_kernels_split_in_forms_that_fit():
    row = {"t": NOW, "page_cache": 8 * GiB, "total": 16 * GiB, "active_file": 1200 * MiB,
           "inactive_file": int(6.5 * GiB)}
    card = next(c for c in data.build_cards([row]) if c.key == "page_cache")
    assert card.detail == "1.2G active (read again), 6.5G inactive (read once)"
    assert card.narrower == ("1.2G active, 6.5G inactive", "1.2G active (read again)", "1.2G active")
    older = {k: v for k, v in row.items() if k not in ("active_file", "inactive_file")}  # a history from before
    card = next(c for c in data.build_cards([older]) if c.key == "page_cache")
    assert card.detail == "50% of RAM" and card.narrower == ()


@pytest.mark.parametrize("span, columns, finest, tier", [
    (300, 80, "samples", "samples"), (3600, 110, "samples", "samples"), (86400, 110, "samples_1m", "samples_1m"),
    (7 * 86400, 110, "samples_1m", "samples_10m"), (7 * 86400, 1000, "samples_1m", "samples_1m"),
    (7 * 86400, 110, "samples_10m", "samples_10m")])
def test_choose_tier_reads_the_coarsest_tier_that_still_fills_every_pixel(span, columns, finest, tier):
    assert data.choose_tier(span, columns, finest, TIERS) == tier


def test_offers_follow_the_reclaimers_own_plan(tmp_path):
    source = DataSource(Setup(Config(), tmp_path / "h.db", False, 2.0))
    offer = source.offer("auto", {"reclaimable": GiB})
    has_reclaim = Path("/sys/fs/cgroup/memory.reclaim").exists()
    assert offer.chain == (["gradual", "compact"] if has_reclaim else ["pagecache", "compact"])
    assert bool(offer.notes) != has_reclaim
    assert data.next_range("7d") == "5m" and data.next_range("1h") == "24h"


# ------------------------------------------------------------------ the prepared history and the source


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory) -> Path:
    return write_history(tmp_path_factory.mktemp("demo") / "h.db", NOW, days=8, step=60.0)


def test_demo_history_fills_every_tier_as_the_watcher_would(demo_db):
    with Store(demo_db) as store:
        counts = {t: store.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                  for t in ("samples", "samples_1m", "samples_10m")}
        assert abs(counts["samples"] - (3600 + 240)) <= 2  # 6 h kept raw: 2 h of 2 s samples, 4 h of 1 min
        assert counts["samples_1m"] >= 7 * 1440 - 2 and counts["samples_10m"] >= 8 * 144 - 2
        assert store.integrity() == "ok"
        assert [p.rule for p in store.pending_prompts()] == ["cache-prompt"]
        assert len(store.events(kinds=["reclaim"])) >= 14


def test_source_reads_a_week_from_the_rolled_up_tier(demo_db):
    source = DataSource(Setup(Config(), demo_db, False, 2.0, clock=lambda: NOW, environ={},
                              watcher_pid=lambda db: None, localtime=time.gmtime))
    source.start()
    snap = source.snapshot("7d", 100)  # how fast: bench/tui_bench.py; here, that it reads the small tier
    assert snap.chart.tier == "samples_10m" and snap.chart.rows >= 7 * 144 - 2  # a pixel is 50 min: 10 min rows
    assert source.snapshot("24h", 100).chart.tier == "samples_1m"  # a pixel is 7 min: 1 min rows
    assert len(snap.chart.reclaims) >= 13 and sum(len(r) for r in snap.chart.host) <= 200
    assert snap.header.mode == "attached: no watcher (history only)"
    assert snap.header.host == "measured (interop)" and snap.pending and snap.policy.startswith("would ask")
    for name in data.RANGE_NAMES:
        assert not source.snapshot(name, 100).chart.empty
    source.close()


def test_source_reads_the_raw_tier_incrementally(tmp_path):
    db = write_history(tmp_path / "h.db", NOW, days=0.1, step=2.0)
    clock = [NOW]
    source = DataSource(Setup(Config(), db, False, 2.0, clock=lambda: clock[0], environ={}))
    source.start()
    first = source.snapshot("5m", 80).chart
    with Store(db) as writer:
        import random

        from tui.demo import sample_at
        writer.add_sample(sample_at(NOW + 2, 12 * GiB, random.Random(1)))
    clock[0] = NOW + 2
    second = source.snapshot("5m", 80).chart
    assert second.rows == first.rows  # one row in, one row aged out of the 5 minutes
    assert max(v for run in second.cache for _, v in run) > max(v for run in first.cache for _, v in run)
    source.close()


def test_source_for_a_missing_history_says_so_and_creates_nothing(tmp_path):
    source = DataSource(Setup(Config(), tmp_path / "none.db", False, 2.0, environ={}))
    source.start()
    snap = source.snapshot("1h", 80)
    assert "no history at" in (source.error or "") and snap.chart.empty and snap.cards[0].value == "?"
    assert not (tmp_path / "none.db").exists()


def test_source_for_a_file_that_is_no_history_says_why(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a database\n" * 100)
    for standalone in (False, True):
        source = DataSource(Setup(Config(), bad, standalone, 2.0, environ={}))
        source.start()
        snap = source.snapshot("1h", 80)
        assert snap.policy.startswith("cannot read the history:") and str(bad) in snap.policy
        source.close()


def test_the_tui_package_keeps_textual_out_of_data_and_source():
    import subprocess

    code = ("import sys; import tui.data, tui.source, tui.demo; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).parent.parent)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("hour", [3.0, 14.33, 20.1])  # at night, before the afternoon reclaim, just after the evening one
def test_the_demos_waiting_prompt_is_true_of_its_own_series(tmp_path, hour):
    """`python -m tui.demo` wrote "page cache 0.7 GiB above 8.0 GiB (50%) for 5m" at night (issue 18)."""
    import re

    now = 1_800_000_000.0 - 1_800_000_000.0 % 86400 + hour * 3600
    with Store(write_history(tmp_path / "d.db", now, days=1, step=60.0)) as store:
        (prompt,) = store.pending_prompts()
        said = re.match(r"page cache ([\d.]+) GiB above ([\d.]+) GiB \(50%\) for (\d+)m", prompt.message)
        cache, above, minutes = float(said[1]), float(said[2]), int(said[3])
        rows = store.series(prompt.t - minutes * 60, prompt.t, tier="samples")[1]
    assert rows and all(r["page_cache"] > above * 1024**3 for r in rows)  # above it for the whole window
    assert cache == round(rows[-1]["page_cache"] / 1024**3, 1)
    assert above == 8.0 and minutes == 5  # the default cache-prompt rule of a 16 GiB guest


def test_the_dashboard_shows_each_reclaims_cost_and_the_learned_working_set(tmp_path):
    """Issue 11: the cost after the fact in the events, the working set in the policy line."""
    from monitor.config.schema import ReclaimConfig
    from monitor.reclaim import workingset

    db = write_history(tmp_path / "h.db", NOW, days=0.01, step=2.0)
    with Store(db) as store:
        rid = store.add_event("reclaim", "reclaim gradual (manual): freed 1.0 GiB of page cache",
                              data={"freed_bytes": 1024**3, "stop_reason": "refaults"})
        store.update_event_data(rid, {"reread_bytes_after": 6 * 1024**2, "cost_window_s": 300.0,
                                      "reread_source": "refaults"})
        workingset.save(store, workingset.learn(None, 310 * 1024**2, ReclaimConfig(), NOW - 720))
    source = DataSource(Setup(Config(), db, False, 2.0, clock=lambda: NOW, environ={}))
    source.start()
    snap = source.snapshot("5m", 80)
    source.close()
    (line,) = [e for e in snap.events if e.id == rid]
    # the words `vmmemctl history --events` prints (monitor.reclaim.cost.cost_words): one wording for both
    assert line.text.endswith("; stopped: refaults; re-read 6.0 MiB in 5m after (0.6% of freed) [refaults]")
    assert "working set ~ 270 MiB, learned 12m ago (learned as 310 MiB, decaying)" in snap.policy  # it decays


def test_an_events_details_read_in_words_the_cost_measured_later_too():
    """A reclaim's record and the cost added minutes later (monitor.reclaim.cost): sizes, clock times and
    durations, what came back first; no raw byte counts or epoch seconds."""
    from monitor.reclaim.cost import Cost

    started = NOW - 600
    cost = Cost(7, started + 10, started + 310, 3 * 1024**2, 5 * 1024**2, "refaults", 1247154176, None).to_data()
    record = {"method": "pagecache", "methods_run": ["pagecache", "compact"], "started": started, "duration_s": 10.6,
              "freed_bytes": 1247154176, "host_trace": [[0, 2.5e9], [8.2, 1.1e9]], "notes": ["a", "b"], **cost}
    lines = data.detail_lines(record, NOW, time.gmtime)
    assert lines[0] == "freed: 1.2 GiB" and lines[1] == f"started: {time.strftime('%H:%M:%S', time.gmtime(started))}"
    assert "reread after: 3.0 MiB" in lines and "cost window: 5m" in lines
    assert f"cost window end: {time.strftime('%H:%M:%S', time.gmtime(started + 310))}" in lines
    assert lines[-3:] == ["notes:", "  - a", "  - b"]
    assert not [line for line in lines if __import__("re").search(r"\b\d{7,}\b", line)], lines
