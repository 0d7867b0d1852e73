"""The gradual controller as a table: (step traces, plan) -> next step or stop; and its memory and cost."""

from __future__ import annotations

import pytest

from monitor.config.schema import ReclaimConfig
from monitor.history.store import Store
from monitor.reclaim import cost, workingset
from monitor.reclaim.controller import PROBE_MIN, Observation, Plan, next_step
from monitor.sample import GuestSample

MiB, GiB = 1024**2, 1024**3
STEP = 256 * MiB  # MemTotal/32 of a 4 GiB guest, clamped: the lab's step
FLOOR = 205 * MiB  # 5% of the lab's 4 GiB MemTotal


def obs(before_mib: float, after_mib: float, refault_mib: float | None = 0.0, *, asked_mib: float | None = None,
        pgpgin_mib: float | None = None, psi_us: int | None = None, window: float = 5.0,
        eagain: bool = False) -> Observation:
    """One recorded step: page cache before/after (MiB) and what its window saw."""
    asked = int((asked_mib if asked_mib is not None else before_mib - after_mib) * MiB)
    return Observation(asked=asked, cache_before=int(before_mib * MiB), cache_after=int(after_mib * MiB),
                       refault_bytes=None if refault_mib is None else int(refault_mib * MiB),
                       pgpgin_bytes=None if pgpgin_mib is None else int(pgpgin_mib * MiB),
                       psi_stall_us=psi_us, window_s=window, eagain=eagain)


def plan(start_mib: float = 1400, target_mib: float | None = None, **kw) -> Plan:
    return Plan(cache_start=int(start_mib * MiB), step=STEP, floor=FLOOR,
                target=None if target_mib is None else int(target_mib * MiB), **kw)


# The 4 GiB lab run of issue 11, as the controller would see it: 1.1 GiB read once, a 300 MiB
# working set re-read every 5 s. Cold pages go first, so the windows are quiet until the step
# that cuts into the working set.
UNKNOWN_WS = [obs(1400, 1144), obs(1144, 888), obs(888, 632, 0.3), obs(632, 419, asked_mib=213)]

CASES = [
    # id, steps so far, plan, expected size (MiB) or stop reason, working set learned (MiB) or None
    ("first step is a whole one", [], plan(), 256, None),
    ("far from the floor: whole steps", UNKNOWN_WS[:2], plan(), 256, None),
    ("near the floor: a quarter of what is left", UNKNOWN_WS, plan(), (419 - 205) / 4, None),
    ("a working set it did not know about", UNKNOWN_WS + [obs(419, 330, 60, asked_mib=107)], plan(),
     "refaults", 419),
    ("refaults under the share: a trickle halves the next step", UNKNOWN_WS + [obs(419, 385, 4, asked_mib=256)],
     plan(), (385 - 205) / 4, None),
    ("... never more than half the step that trickled", UNKNOWN_WS + [obs(419, 380, 2, asked_mib=40)],
     plan(), 20, None),
    ("noise is not a trickle", UNKNOWN_WS + [obs(419, 380, 0.5, asked_mib=40)], plan(), (380 - 205) / 4, None),
    ("no refaults at all: down to the floor", UNKNOWN_WS + [obs(419, 312), obs(312, 258), obs(258, 231),
                                                            obs(231, 215), obs(215, 205.2)], plan(), "floor", None),
    ("the remembered working set: straight down to the start level", [obs(1400, 1144), obs(1144, 888)],
     plan(target_mib=375), 256, None),
    ("at the start level", [obs(1400, 1144), obs(1144, 888), obs(888, 632), obs(632, 375, asked_mib=257)],
     plan(target_mib=375), "target", None),
    ("a working set that grew between runs: refaults above the old start level",
     [obs(1400, 1144), obs(1144, 888), obs(888, 700, 90, asked_mib=256)], plan(target_mib=375), "refaults", 888),
    ("PSI present: stalls in the window stop it", UNKNOWN_WS[:2] + [obs(888, 632, 0, psi_us=200_000)], plan(),
     "pressure", 888),
    ("PSI present and calm: carries on", UNKNOWN_WS[:2] + [obs(888, 632, 0, psi_us=1_000)], plan(),
     (632 - 205) / 4, None),
    ("PSI absent: refaults alone decide", UNKNOWN_WS[:2] + [obs(888, 632, 0, psi_us=None)], plan(),
     (632 - 205) / 4, None),
    ("a step that fails with EAGAIN", UNKNOWN_WS[:2] + [obs(888, 800, 0, asked_mib=256, eagain=True)], plan(),
     "no progress", None),
    ("EAGAIN with refaults: the refaults tell where the working set is",
     UNKNOWN_WS[:2] + [obs(888, 800, 80, asked_mib=256, eagain=True)], plan(), "refaults", 888),
    ("a step that freed nothing", UNKNOWN_WS[:2] + [obs(888, 888, 0, asked_mib=256)], plan(), "no progress", None),
    ("no refault counter: pgpgin stands in", UNKNOWN_WS[:2] + [obs(888, 700, None, asked_mib=256, pgpgin_mib=60)],
     plan(), "refaults", 888),
    ("already at the floor", [], plan(start_mib=200), "floor", None),
    ("a stricter share stops on less", UNKNOWN_WS + [obs(419, 320, 4, asked_mib=107)], plan(refault_share=0.02),
     "refaults", 419),
]


@pytest.mark.parametrize("steps, p, expected, learned", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_next_step(steps, p, expected, learned):
    step = next_step(steps, p)
    if isinstance(expected, str):
        assert step.size is None and step.reason == expected, step
        assert step.words
    else:
        assert step.reason == "" and abs(step.size - expected * MiB) < MiB, step
        assert PROBE_MIN <= step.size <= p.step
    assert step.working_set == (None if learned is None else int(learned * MiB))


def simulate(plan_: Plan, hot: int, cold: int) -> tuple[list[Observation], str, int | None]:
    """Run the controller against a model kernel: cold pages go first, evicted hot pages refault."""
    steps: list[Observation] = []
    while (step := next_step(steps, plan_)).size is not None:
        take_cold = min(step.size, cold)
        take_hot = min(step.size - take_cold, hot)
        before = cold + hot
        cold, hot = cold - take_cold, hot - take_hot
        steps.append(Observation(step.size, before, cold + hot, refault_bytes=take_hot, window_s=5.0))
    return steps, step.reason, step.working_set


@pytest.mark.parametrize("ws_mib, cold_mib", [(300, 1100), (128, 1024), (600, 3000)])
def test_a_whole_run_stops_at_the_working_set_and_costs_little_of_it(ws_mib, cold_mib):
    p = Plan(cache_start=(ws_mib + cold_mib) * MiB, step=STEP, floor=FLOOR // 2)
    steps, reason, learned = simulate(p, ws_mib * MiB, cold_mib * MiB)
    evicted_hot = sum(o.refault_bytes for o in steps)
    assert reason == "refaults" and learned >= ws_mib * MiB
    # the discovery costs the step that crosses: a quarter of the distance left (a whole step where the
    # working set is far above the floor: 72 MiB of 600 here). With half the distance it was 61 MiB of 300.
    assert evicted_hot <= 0.15 * ws_mib * MiB + PROBE_MIN
    again, reason2, _ = simulate(Plan(p.cache_start, STEP, p.floor, target=int(learned * 1.25)), ws_mib * MiB,
                                 cold_mib * MiB)
    assert reason2 == "target" and sum(o.refault_bytes for o in again) == 0  # the next run costs nothing


# ------------------------------------------------------------------ the remembered working set

CFG = ReclaimConfig()
NOW = 1_800_000_000.0


def test_working_set_decays_and_describes_itself():
    ws = workingset.WorkingSet(310 * MiB, NOW - 12 * 60, 0.25)
    assert ws.estimate(NOW, 3600) == int(310 * MiB * 0.5 ** 0.2)
    assert ws.estimate(NOW - 12 * 60, 3600) == 310 * MiB and ws.estimate(NOW + 3600 - 12 * 60, 3600) == 155 * MiB
    fresh = workingset.WorkingSet(310 * MiB, NOW - 12 * 60, 0.25)
    assert fresh.describe(NOW - 12 * 60 + 1, 1e12).startswith("working set ~ 310 MiB, learned 1s ago")
    assert "learned 12m ago" in ws.describe(NOW, 3600)
    assert workingset.WorkingSet.from_json(ws.to_json()) == ws
    for odd in (None, [], {"bytes": "x"}, {"bytes": -1, "learned": 0, "margin": 0}, {"bytes": True, "learned": 1,
                                                                                     "margin": 0}):
        assert workingset.WorkingSet.from_json(odd) is None


def test_start_level_is_above_the_estimate_with_the_margin(tmp_path):
    with Store(tmp_path / "h.db") as store:
        assert workingset.start_hint(store, CFG, NOW) is None
        workingset.save(store, workingset.WorkingSet(400 * MiB, NOW, 0.25))
        hint = workingset.start_hint(store, CFG, NOW)
    assert hint.target == 500 * MiB and hint.estimate == 400 * MiB and "working set ~ 400 MiB" in hint.words


def test_a_costly_reclaim_grows_the_margin_and_a_cheap_one_relaxes_it():
    ws = workingset.WorkingSet(300 * MiB, NOW, 0.25)
    costly = workingset.after_cost(ws, reread=40 * MiB, freed=300 * MiB, level_after=375 * MiB, config=CFG, now=NOW)
    assert costly.margin == 0.5 and "re-read 40.0 MiB afterwards" in costly.why
    assert workingset.after_cost(costly, 1 * MiB, 300 * MiB, 450 * MiB, CFG, NOW).margin == 0.25
    capped = ws
    for _ in range(10):
        capped = workingset.after_cost(capped, 100 * MiB, 300 * MiB, 375 * MiB, CFG, NOW)
    assert capped.margin == workingset.MAX_MARGIN
    # no estimate yet (a drop): what came back on top of what was left is the working set's lower bound
    learned = workingset.after_cost(None, 300 * MiB, 2 * GiB, 200 * MiB, CFG, NOW)
    assert learned.bytes == 500 * MiB and learned.margin == 0.5
    assert workingset.after_cost(None, 100 * MiB, 2 * GiB, 200 * MiB, CFG, NOW) is None  # under 10%: cheap


# ------------------------------------------------------------------ the cost after the fact


def guest(t: float, refaults_pages: int, pgpgin_kib: int) -> GuestSample:
    return GuestSample(time=t, workingset_refault_file=refaults_pages, pgpgin=pgpgin_kib)


def reclaim_data(ended: float, methods: list[str], refaults: int = 1000, pgpgin: int = 50_000) -> dict:
    return {"methods_run": methods, "ended": ended, "dry_run": False, "error": None, "freed_bytes": 1000 * MiB,
            "page_cache_after_bytes": 375 * MiB, "after": {"workingset_refault_file": refaults, "pgpgin": pgpgin}}


def test_cost_meter_counts_the_window_after_a_gradual_reclaim():
    meter = cost.CostMeter(window=300)
    assert meter.watch(7, reclaim_data(NOW, ["gradual", "compact"]))
    assert meter.observe(guest(NOW + 100, 1000 + 256, 50_000 + 2048)) == []  # window not over
    (done,) = meter.observe(guest(NOW + 302, 1000 + 512, 50_000 + 4096))
    assert done.event_id == 7 and done.source == "refaults" and done.reread_bytes == 2 * MiB
    assert done.to_data()["pgpgin_bytes_after"] == 4 * MiB and done.to_data()["cost_window_s"] == 302
    assert meter.observe(guest(NOW + 400, 2000, 60_000)) == []  # returned once


def test_cost_window_ends_at_the_first_read_of_the_counters_past_it():
    # a recorder's tick carries vmstat's counters between reads (monitor/probes/guest.py CADENCE)
    meter = cost.CostMeter(window=300)
    meter.watch(7, reclaim_data(NOW, ["gradual"]))
    carried = GuestSample(time=NOW + 302, workingset_refault_file=1000 + 256, pgpgin=50_000,
                          carried=(("vmstat", NOW + 290),))
    assert meter.observe(carried) == []  # the counters are 12 s older than the sample: before the window's end
    (done,) = meter.observe(GuestSample(time=NOW + 320, workingset_refault_file=1000 + 512, pgpgin=50_000,
                                        carried=(("vmstat", NOW + 320),)))
    assert done.reread_bytes == 2 * MiB and done.to_data()["cost_window_s"] == 320  # the window it measured
    late = cost.CostMeter(window=300)
    late.watch(8, reclaim_data(NOW, ["gradual"]))
    (done,) = late.observe(GuestSample(time=NOW + 330, workingset_refault_file=1000 + 256, pgpgin=50_000,
                                       carried=(("vmstat", NOW + 310),)))
    assert done.window_end == NOW + 310 and done.to_data()["cost_window_s"] == 310  # read 20 s before the sample


def test_cost_after_a_drop_is_pgpgin_and_a_reset_counter_says_nothing():
    meter = cost.CostMeter(window=60)
    meter.watch(1, reclaim_data(NOW, ["pagecache", "compact"]))  # a drop leaves no shadow entries
    meter.watch(2, reclaim_data(NOW, ["gradual"], refaults=10**9))  # counters went back: the guest rebooted
    (done,) = meter.observe(guest(NOW + 60, 1000, 50_000 + 3 * 1024))
    assert done.event_id == 1 and done.source == "pgpgin" and done.reread_bytes == 3 * MiB
    assert not meter.watch(3, {**reclaim_data(NOW, ["gradual"]), "dry_run": True})


def test_cost_tick_finds_reclaim_events_records_them_and_steers_the_margin(tmp_path):
    with Store(tmp_path / "h.db") as store:
        workingset.save(store, workingset.WorkingSet(300 * MiB, NOW, 0.25))
        eid = store.add_event("reclaim", "reclaim gradual", data=reclaim_data(NOW, ["gradual"]), t=NOW)
        meter = cost.CostMeter(window=300)
        assert meter.tick(store, guest(NOW + 10, 1000, 50_000), CFG) == [] and meter.watching == [eid]
        (done,) = meter.tick(store, guest(NOW + 300, 1000 + 200 * 256, 50_000), CFG)  # 200 MiB of refaults
        (event,) = store.events(kinds=["reclaim"])
        assert event.data["reread_bytes_after"] == 200 * MiB and event.data["freed_bytes"] == 1000 * MiB
        assert workingset.load(store).margin == 0.5  # 20% of what it freed: the next one is gentler
        # a restarted watcher does not measure it again
        assert cost.CostMeter(window=300).tick(store, guest(NOW + 320, 10**6, 10**6), CFG) == []
        assert store.update_event_data(10**6, {"x": 1}) is False
