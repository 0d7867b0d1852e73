"""Clock jumps both ways (a host that slept, an NTP step) with an injected wall and monotonic clock:
no rule fires because of a jump, cooldowns count time that passed, no roll-up row is lost or doubled,
a schedule is neither run twice nor stalls the rest."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

from helpers import TREES

from monitor.config.schema import (
    Config,
    HistoryConfig,
    ReclaimConfig,
    Rule,
    SamplingConfig,
)
from monitor.kernel.procfs import LocalFiles
from monitor.notify import Notifier
from monitor.policy.rules import PolicyState, RuleState
from monitor.policy.state import load_state, save_state
from monitor.probes.probeset import build
from monitor.units import Size
from monitor.watch.recorder import Recorder
from monitor.watch.wiring import Wiring


class Clocks:
    """A wall clock and a monotonic clock; ``advance`` moves both, ``jump`` only the wall clock."""

    def __init__(self, wall: float):
        self.wall, self.mono = wall, 1000.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds

    def jump(self, seconds: float) -> None:
        self.wall += seconds


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text).astimezone().timestamp()


def recorder(tmp_path, config: Config, clocks: Clocks, proc: Path = TREES / "wsl2-ubuntu" / "proc") -> Recorder:
    files = LocalFiles(str(proc))

    def probes(c, env):
        p = build(c, environ={}, files=files)
        p.guest.clock = lambda: clocks.wall  # the samples' times come from the same wall clock
        return p
    wiring = Wiring(config, tmp_path / "h.db", environ={}, reclaim_lock=tmp_path / "reclaim.lock",
                    probes_factory=probes)
    rec = wiring.recorder(Notifier([]), clock=lambda: clocks.wall)
    rec.monotonic = lambda: clocks.mono
    return rec


def notify_rule(**kw) -> Rule:
    return Rule(**{"name": "cache", "above": Size(bytes=1, text="1"), "for_": 120.0, "cooldown": 1800.0,
                   "action": "notify", **kw})


def test_a_forward_jump_does_not_meet_a_rules_for(tmp_path):
    clocks = Clocks(at("2030-01-02 12:00:00"))
    rec = recorder(tmp_path, Config(rule=(notify_rule(),), reclaim=ReclaimConfig(settle=0.0)), clocks)
    for _ in range(10):  # 20 s above the threshold: not yet 120 s
        rec.tick()
        clocks.advance(2)
    clocks.jump(3600)  # the host slept an hour
    rec.tick()
    assert rec.last_decision.action == "none", rec.last_decision.reason
    (jumped,) = [e for e in rec.store.events(kinds=["watch"]) if "clock jumped" in e.message]
    assert "forward 1h" in jumped.message
    fired_after = None
    for step in range(1, 70):
        clocks.advance(2)
        rec.tick()
        if rec.last_decision.action == "notify":
            fired_after = step * 2
            break
    assert fired_after == 120  # the full `for`, counted from the jump on


def test_cooldowns_move_with_a_jump_both_ways(tmp_path):
    clocks = Clocks(at("2030-01-02 12:00:00"))
    rec = recorder(tmp_path, Config(rule=(), reclaim=ReclaimConfig(settle=0.0)), clocks)
    fired = clocks.wall - 600
    save_state(rec.store, PolicyState({"cache": RuleState(False, fired)}, snoozed_until=clocks.wall + 60))
    rec.tick()
    clocks.advance(2)
    clocks.jump(-7200)  # NTP stepped back two hours: the cooldown must not grow by two hours
    rec.tick()
    state = load_state(rec.store)
    assert state.rule("cache").last_fired == fired - 7200
    assert state.snoozed_until == at("2030-01-02 12:01:00")  # a wall-clock deadline stays
    clocks.advance(2)
    clocks.jump(86400)  # asleep a day: the cooldown is not used up by the sleep
    rec.tick()
    assert load_state(rec.store).rule("cache").last_fired == fired - 7200 + 86400


def rows(db, sql):
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_roll_ups_after_a_step_back_lose_and_double_nothing(tmp_path):
    clocks = Clocks(at("2030-01-02 12:00:00"))
    config = Config(rule=(), reclaim=ReclaimConfig(settle=0.0), sampling=SamplingConfig(interval=2.0),
                    history=HistoryConfig(raw_for=86400.0))
    rec = recorder(tmp_path, config, clocks)
    run = jobs_as_the_driver_runs_them(rec, clocks)
    run(600)
    clocks.jump(-301)  # five minutes back: the next samples land in minutes already rolled up (at other
    # instants: the store keeps one sample per instant, and real clocks tick in microseconds)
    run(900)
    rec.maintain()
    db = tmp_path / "h.db"
    raw = rows(db, "SELECT CAST(t / 60 AS INTEGER) * 60 AS b, COUNT(*) FROM samples GROUP BY b ORDER BY b")
    finished = clocks.wall // 60 * 60
    rolled = rows(db, f"SELECT t, n FROM samples_1m WHERE t < {finished} ORDER BY t")
    assert [(float(b), n) for b, n in raw if b < finished] == rolled  # every minute once, with all its samples
    assert any(n > 30 for _, n in rolled)  # the revisited minutes hold samples from both passes
    ten = rows(db, "SELECT SUM(n) FROM samples_10m")[0][0]
    in_finished_tens = rows(db, f"SELECT COUNT(*) FROM samples WHERE t < {clocks.wall // 600 * 600}")[0][0]
    assert ten == in_finished_tens


def test_maintenance_goes_on_after_a_step_back(tmp_path):
    """Every minute from the step's on is rolled up. (That the driver runs the interval jobs on after a step
    back, and a cron schedule keeps its next run, is test_recorder's test_an_interval_job_the_wall_clock_...)"""
    clocks = Clocks(at("2030-01-02 02:59:59"))
    config = Config(rule=(), reclaim=ReclaimConfig(settle=0.0), history=HistoryConfig(events_for=20 * 365 * 86400.0))
    rec = recorder(tmp_path, config, clocks)
    run = jobs_as_the_driver_runs_them(rec, clocks)

    def rolled_minutes() -> list[float]:
        return [t for (t,) in rec.store.db.execute("SELECT t FROM samples_1m ORDER BY t")]

    run(10)
    assert rolled_minutes() == []  # maintenance is due a minute after the start
    clocks.jump(-1800)  # back to 02:30:09
    run(80)  # maintenance ran within a minute of the step (by the monotonic clock, as the scheduler waits)
    assert rolled_minutes() == [at("2030-01-02 02:30:00")]
    run(1920)
    assert "the clock jumped back 30m" in " ".join(e.message for e in rec.store.events(kinds=["watch"]))
    minutes = rolled_minutes()
    last = clocks.wall // 60 * 60 - 60
    assert minutes[0] == at("2030-01-02 02:30:00") and minutes[-1] >= last - 60
    assert minutes == [minutes[0] + 60 * i for i in range(len(minutes))]


def jobs_as_the_driver_runs_them(rec: Recorder, clocks: Clocks):
    """``run(seconds)``: the recorder's interval jobs (the tick every 2 s, maintenance every 60 s, the host
    figure every 10 s) on its clocks, as its driver runs them: APScheduler's interval triggers keep wall-clock
    run times (the next one a period after the last, late runs coalesced), and
    monitor.watch.scheduling.StepSafe runs a job due further than a period away now (the clock stepped back)."""
    jobs = {job.id: job for job in rec.jobs()}
    period = {job_id: job.trigger.interval.total_seconds() for job_id, job in jobs.items()}
    assert period["tick"] == 2 and period["maintain"] == 60
    due = {job_id: clocks.wall + period[job_id] for job_id in jobs}

    def run(seconds: int) -> None:
        for _ in range(seconds // 2):
            clocks.advance(2)
            for job_id, job in jobs.items():
                if due[job_id] - clocks.wall > period[job_id] + 1:  # StepSafe
                    due[job_id] = clocks.wall
                if clocks.wall >= due[job_id]:
                    job.run()
                    while due[job_id] <= clocks.wall:
                        due[job_id] += period[job_id]
    return run
