"""Costs that are true (issue 26): what "re-read after" counts after each kind of reclaim, that only
attributable re-reads teach the controller, the one reset of a history taught by drops, and the words."""

from __future__ import annotations

import dataclasses
import json
import time

from helpers import cold_file, run_cli, warm
from monitor.config.schema import Config, ReclaimConfig
from monitor.history.store import Store
from monitor.kernel.procfs import LocalFiles
from monitor.probes.guest import GuestProbe
from monitor.reclaim import cost, workingset
from monitor.sample import GuestSample
from test_cache import waiting_turn
from test_recorder import make_watcher
from tui import data as tui_data

MiB = 1024**2
GiB = 1024**3
CFG = ReclaimConfig()
NOW = 1_764_880_000.0


def reclaim_path(disk, tree) -> dict:
    """`vmmemctl reclaim --path TREE` as a user runs it, recorded in disk/h.db; its event's data."""
    done = waiting_turn(run_cli, "reclaim", "--path", str(tree), "--json", "--settle", "0", "--db", str(disk / "h.db"))
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["methods_run"][0] == "path" and data["paths"][0]["dropped_files"] == 3
    return data


def measure_now(db, ws: workingset.WorkingSet | None):
    """The cost window ends now (window 0, a real sample of this machine); the event and the working set."""
    guest = GuestProbe(LocalFiles("/proc")).sample()
    with Store(db) as store:
        if ws is not None:
            workingset.save(store, ws)
        (done,) = cost.CostMeter(window=0).tick(store, guest, CFG)
        (event,) = store.events(kinds=["reclaim"])
        return done, event, workingset.load(store)


def test_heavy_unrelated_reads_after_a_path_reclaim_are_not_its_re_read(disk):
    build = disk / "build"
    for i in range(3):
        warm(cold_file(build / f"o{i}", 8 * MiB))
    reclaim_path(disk, build)
    elsewhere = cold_file(disk / "other" / "big.bin", 96 * MiB)  # a clone, another build: not ours to count
    warm(elsewhere)
    before = workingset.WorkingSet(300 * MiB, time.time(), CFG.working_set_margin / 100)
    done, event, after = measure_now(disk / "h.db", before)
    assert done.source == "residency" and done.attributable
    assert event.data["reread_source"] == "residency"
    assert event.data["reread_bytes_after"] <= 1 * MiB  # none of the tree came back; 96 MiB were read elsewhere
    assert after == before  # the margin untouched (the old meter counted the 96 MiB of pgpgin: it doubled)


def test_what_of_the_tree_came_back_is_its_re_read(disk):
    build = disk / "build"
    for i in range(3):
        warm(cold_file(build / f"o{i}", 8 * MiB))
    reclaim_path(disk, build)
    for path in build.iterdir():
        warm(path)  # the build runs again: the tree comes back
    done, event, _ = measure_now(disk / "h.db", None)
    assert 0.9 * 24 * MiB <= event.data["reread_bytes_after"] <= 24 * MiB + 1 * MiB
    assert event.data["residency_bytes_after"] == event.data["reread_bytes_after"] and event.data["attributable"]


def drop_data(ended: float, methods: list[str], freed: int = 300 * MiB) -> dict:
    return {"methods_run": methods, "ended": ended, "dry_run": False, "error": None, "freed_bytes": freed,
            "page_cache_after_bytes": 200 * MiB, "after": {"workingset_refault_file": 1000, "pgpgin": 50_000}}


def test_disk_reads_after_a_drop_are_recorded_as_not_attributable_and_teach_nothing(tmp_path):
    with Store(tmp_path / "h.db") as store:
        eid = store.add_event("reclaim", "reclaim pagecache", data=drop_data(NOW, ["pagecache", "compact"]), t=NOW)
        meter = cost.CostMeter(window=300)
        guest = GuestSample(time=NOW + 300, workingset_refault_file=1000, pgpgin=50_000 + 2560 * 1024)  # 2.5 GiB
        (done,) = meter.tick(store, guest, CFG)
        (event,) = store.events(kinds=["reclaim"])
        assert done.event_id == eid and not done.attributable and done.reread_bytes is None
        assert event.data["reread_bytes_after"] is None and event.data["disk_reads_bytes_after"] == 2560 * MiB
        assert workingset.load(store) is None  # the case: no working set "learned" from a drop
        assert cost.cost_words(event.data).endswith("; disk reads 2.5 GiB in 5m after (not attributable) [pgpgin]")


def test_a_residency_cost_tunes_the_margin_but_founds_no_estimate(tmp_path):
    big = cost.Cost(1, NOW, NOW + 300, None, 2 * GiB, "residency", 300 * MiB, 200 * MiB, residency_bytes=100 * MiB)
    with Store(tmp_path / "h.db") as store:
        eid = store.add_event("reclaim", "reclaim path", data=drop_data(NOW, ["path"]), t=NOW)
        big = dataclasses.replace(big, event_id=eid)
        cost.record(store, big, CFG, NOW + 300)
        assert workingset.load(store) is None  # a tree's re-reads say nothing of where the working set begins
        workingset.save(store, workingset.WorkingSet(300 * MiB, NOW, 0.25))
        cost.record(store, big, CFG, NOW + 300)
        assert workingset.load(store).margin == 0.5  # 100 MiB of the tree came back: a third of what was freed


def test_cost_words_for_each_source():
    base = {"freed_bytes": 300 * MiB, "cost_window_s": 300.0}
    refaults = {**base, "reread_bytes_after": 3 * MiB, "reread_source": "refaults"}
    assert cost.cost_words(refaults) == "; re-read 3.0 MiB in 5m after (1.0% of freed) [refaults]"
    trees = {**base, "reread_bytes_after": 0, "reread_source": "residency"}
    assert cost.cost_words(trees) == "; re-read 0 B in 5m after (0.0% of freed) [cache of the trees]"
    # an event recorded before issue 26 said pgpgin was its re-read: it reads as what it was
    old = {**base, "reread_bytes_after": 2560 * MiB, "reread_source": "pgpgin", "pgpgin_bytes_after": 2560 * MiB}
    assert cost.cost_words(old) == "; disk reads 2.5 GiB in 5m after (not attributable) [pgpgin]"


def test_event_details_say_disk_reads_are_not_attributable():
    data = cost.Cost(7, NOW, NOW + 300, 0, 2560 * MiB, "pgpgin", 300 * MiB, 200 * MiB).to_data()
    lines = tui_data.detail_lines(data, NOW + 400, time.gmtime)
    assert "disk reads after (not attributable): 2.5 GiB" in lines
    assert "reread after: not attributable (a drop leaves no refaults)" in lines


# ------------------------------------------------------------------ the one reset at upgrade


def old_history(db, *, learned_by_gradual: bool) -> workingset.WorkingSet:
    """A history as the meter before issue 26 left it: a drop's pgpgin counted as its re-read grew the
    margin to 200 % (the issue's `margin grown: the last reclaim re-read 951 MiB afterwards`)."""
    now = time.time()
    ws = workingset.WorkingSet(2700 * MiB, now - 700, 2.0, "margin grown: the last reclaim re-read 951 MiB afterwards")
    with Store(db) as store:
        if learned_by_gradual:
            store.add_event("reclaim", "reclaim gradual", t=now - 3600,
                            data={**drop_data(now - 3600, ["gradual"]), "working_set_learned_bytes": 900 * MiB})
        store.add_event("reclaim", "reclaim path", t=now - 1000, data={
            **drop_data(now - 1000, ["path", "compact"]), "reread_bytes_after": 2560 * MiB,
            "reread_source": "pgpgin", "pgpgin_bytes_after": 2560 * MiB, "cost_window_s": 301.0})
        workingset.save(store, ws)
    return ws


def state_events(db) -> list:
    with Store(db) as store:
        return store.events(kinds=["state"])


def test_a_margin_taught_by_drops_is_reset_once_by_the_watcher(tmp_path):
    old = old_history(tmp_path / "h.db", learned_by_gradual=True)
    config = Config(reclaim=ReclaimConfig(settle=0.0))
    watcher = make_watcher(tmp_path, config)
    assert watcher.tick() is not None and watcher.tick() is not None
    watcher.close()
    (event,) = state_events(tmp_path / "h.db")
    assert "margin reset from 200% to 25%" in event.message and "no longer teach" in event.message
    with Store(tmp_path / "h.db") as store:
        ws = workingset.load(store)
    assert (ws.bytes, ws.margin, ws.why) == (old.bytes, 0.25, "")
    again = make_watcher(tmp_path, config)  # a restart: the reset is not done twice
    assert again.tick() is not None
    again.close()
    assert len(state_events(tmp_path / "h.db")) == 1


def test_an_estimate_founded_by_a_drop_is_forgotten(tmp_path):
    old_history(tmp_path / "h.db", learned_by_gradual=False)
    with Store(tmp_path / "h.db") as store:
        words = cost.reset_unattributable(store, CFG, time.time())
        assert words.startswith("working set estimate 2.6 GiB forgotten") and workingset.load(store) is None
        assert cost.reset_unattributable(store, CFG, time.time()) is None
    assert len(state_events(tmp_path / "h.db")) == 1


def test_a_fresh_history_has_nothing_to_reset(tmp_path):
    with Store(tmp_path / "h.db") as store:
        assert cost.reset_unattributable(store, CFG, NOW) is None
        assert store.get_state(cost.RULE_KEY) == cost.RULE and store.events(kinds=["state"]) == []


def test_the_watcher_walks_a_trees_cost_on_its_worker_not_on_the_tick(disk):
    """A --path reclaim's cost walks its trees again (seconds on a big tree): the tick hands that to the
    reclaim worker and goes on sampling; the cost is on the event once the worker ran it."""
    build = disk / "build"
    for i in range(3):
        warm(cold_file(build / f"o{i}", 8 * MiB))
    reclaim_path(disk, build)
    for path in build.iterdir():
        warm(path)
    recorder = make_watcher(disk, Config(reclaim=ReclaimConfig(cost_window=0.0)))
    handed: list = []
    recorder.run_async = handed.append  # the worker, held still
    try:
        assert recorder.tick() is not None
        (event,) = recorder.store.events(kinds=["reclaim"])
        assert "reread_bytes_after" not in (event.data or {}) and len(handed) == 1  # not walked on the tick
        handed.pop()()  # the worker runs it
        (event,) = recorder.store.events(kinds=["reclaim"])
        assert event.data["reread_source"] == "residency"
        assert 0.9 * 24 * MiB <= event.data["reread_bytes_after"] <= 25 * MiB
        recorder.tick()
        assert handed == []  # measured once
    finally:
        recorder.close()
