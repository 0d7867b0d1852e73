"""The recorder's jobs, called directly; its one driver (APScheduler, in the watcher and in a
standalone dashboard); and `vmmemctl watch` as a real process (signals, kill -9)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import builders
from helpers import FAKEBIN, run_cli, start_watch, tree, wait_for_samples
from fakekernel import FakeKernel
from monitor.config.schema import Config, HistoryConfig, IdleConfig, PolicyConfig, ReclaimConfig, Rule, Schedule
from monitor.notify import NotifySendBackend, Notifier
from monitor.probes.probeset import build
from monitor.probes.guest import MIN_CPU_INTERVAL
from monitor.kernel.procfs import LocalFiles, SystemFiles
from monitor.watch.driver import Driver
from monitor.watch.recorder import Recorder
from monitor.history.store import Store
from monitor.units import Size
from monitor.watch.wiring import Wiring

GiB, MiB = 1024**3, 1024**2


@pytest.fixture
def notify_log(tmp_path, monkeypatch):
    log = tmp_path / "notify-send.log"
    monkeypatch.setenv("PATH", f"{FAKEBIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_NOTIFY_SEND_LOG", str(log))
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
    return log


def make_watcher(tmp_path: Path, config: Config, files: SystemFiles | None = None, clock=time.time,
                 samples_on_clock: bool = False) -> Recorder:
    """The recorder as `vmmemctl watch` builds it, on this machine's /proc or a given tree.
    ``samples_on_clock``: the samples are stamped by ``clock`` too (else by the probe's real one)."""
    files = files or LocalFiles("/proc")

    def probes(c, env):
        made = build(c, environ={}, files=files)
        if samples_on_clock:
            made.guest.clock = clock
        return made
    wiring = Wiring(config, tmp_path / "h.db", environ={}, reclaim_lock=tmp_path / "reclaim.lock",
                    probes_factory=probes)
    recorder = wiring.recorder(Notifier([NotifySendBackend(5)]), clock=clock)
    if clock is time.time:
        time.sleep(MIN_CPU_INTERVAL)  # as `watch` ticks an interval after priming: the first CPU busy % is known
    return recorder


def cfg(*rules: Rule, **kw) -> Config:
    # refault_window 0: gradual listens the shortest pause (0.25 s) after each step; the window itself is
    # the controller's tests' and the lab's
    return Config(rule=rules, reclaim=ReclaimConfig(settle=0.0, refault_window=0.0), **kw)


def tiny_rule(**kw) -> Rule:
    """A rule that fires at once on this machine: any page cache at all, held for 0 s."""
    return builders.rule(**{"above": Size(bytes=1, text="1"), "for_": 0.0, "cooldown": 3600.0, **kw})


def test_tick_samples_stores_and_decides(tmp_path, notify_log):
    watcher = make_watcher(tmp_path, cfg(tiny_rule(above=Size(bytes=2**50, text="1PiB"))))
    sample = watcher.tick()
    assert sample is not None and sample.guest.page_cache is not None
    assert len(watcher.store.recent_samples(60)) == 1
    assert watcher.last_decision.action == "none" and "below" in watcher.last_decision.reason


def test_notify_rule_notifies_once_per_rate_limit(tmp_path, notify_log):
    watcher = make_watcher(tmp_path, cfg(tiny_rule(cooldown=0.0, rearm_below=Size(bytes=2**50, text="1PiB"))))
    for _ in range(3):
        watcher.tick()
    sent = [json.loads(line) for line in notify_log.read_text().splitlines()]
    assert len(sent) == 1 and "page cache" in sent[0][-1]
    (event,) = watcher.store.events(kinds=["notify"])
    assert "delivered by notify-send" in event.message and event.data["backend"] == "notify-send"


@pytest.mark.parametrize("writer", ["another connection", "the recorder's own connection"])
def test_a_snooze_written_between_ticks_holds_the_next_decision(tmp_path, notify_log, writer):
    """The recorder keeps the policy state between ticks and reads it again only when someone wrote it:
    another connection (a client's request) is noticed by SQLite's data_version; a write on its own
    connection (a standalone dashboard's) is announced with state_written()."""
    from monitor.policy.state import set_snooze

    clock = [at("2030-01-02 12:00:00")]
    watcher = make_watcher(tmp_path, cfg(tiny_rule(for_=4.0)), clock=lambda: clock[0], samples_on_clock=True)
    watcher.tick()
    assert watcher.last_decision.action == "none" and "needs 4s" in watcher.last_decision.reason
    if writer == "another connection":
        with Store(tmp_path / "h.db") as other:
            set_snooze(other, 3600, clock[0])
    else:
        set_snooze(watcher.store, 3600, clock[0])
        watcher.state_written()
    clock[0] += 2
    watcher.tick()  # nothing fires yet, and the words say the snooze (the state was read again)
    assert "needs 4s" in watcher.last_decision.reason and "snoozed until" in watcher.last_decision.reason
    clock[0] += 4
    watcher.tick()
    assert watcher.last_decision.action == "none" and "snoozed until" in watcher.last_decision.reason
    assert not notify_log.exists() and watcher.store.events(kinds=["notify"]) == []


def test_notification_nobody_can_deliver_is_still_recorded(tmp_path, monkeypatch):
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    watcher = make_watcher(tmp_path, cfg(tiny_rule()))
    watcher.tick()
    (event,) = watcher.store.events(kinds=["notify"])
    assert "no backend could deliver" in event.message and "no session bus" in event.message


def test_prompt_is_recorded_once_and_expires_when_the_condition_passes(tmp_path, notify_log):
    kernel = FakeKernel(tmp_path / "tree", cached=8 * GiB, hot=0)
    try:
        rule = tiny_rule(name="ask", action="prompt", above=Size(bytes=4 * GiB, text="4GiB"), cooldown=0.0,
                         rearm_below=Size(bytes=3 * GiB, text="3GiB"))
        watcher = make_watcher(tmp_path, cfg(rule), files=LocalFiles(kernel.proc))
        watcher.tick()
        watcher.tick()
        (prompt,) = watcher.store.pending_prompts()
        assert prompt.rule == "ask" and prompt.data["method"] == "auto" and "Reclaim (auto)?" in prompt.message
        assert "open `vmmemctl tui` or run `vmmemctl reclaim`" in notify_log.read_text()
        kernel.cached = 1 * GiB  # the user reclaimed by hand
        watcher.tick()
        assert watcher.store.pending_prompts() == []
        assert watcher.store.events(kinds=["answer"])[0].data["answer"] == "expired"
        crossings = [e.message for e in watcher.store.events(kinds=["crossing"])]
        assert any("fell below 3.0 GiB (where it re-arms)" in c for c in crossings), crossings
    finally:
        kernel.close()


def test_a_value_hovering_at_a_threshold_is_one_crossing_each_way_in_words_that_differ(tmp_path):
    """Issue 28: 512 MiB rose above, 510 fell below, ... four events in 12 s; and "1.5 GiB rose above 1.5 GiB"."""
    kernel = FakeKernel(tmp_path / "tree", cached=300 * MiB, hot=0)
    try:
        rule = tiny_rule(name="cache", metric="page_cache", above=Size(bytes=512 * MiB, text="512MiB"))
        watcher = make_watcher(tmp_path, cfg(rule), files=LocalFiles(kernel.proc))
        for cached in (300 * MiB, 520 * MiB, 510 * MiB, 515 * MiB, 505 * MiB, 300 * MiB, 400 * MiB, 512 * MiB + 1024):
            kernel.cached = cached
            watcher.tick()
        crossings = [e.message for e in watcher.store.events(kinds=["crossing"])]
    finally:
        kernel.close()
    # up once, down once below where it re-arms (75 %: 384 MiB), up again by a hair, which the words show
    assert crossings == ["page cache 520 MiB rose above 512 MiB (cache)",
                         "page cache 300 MiB fell below 384 MiB (where it re-arms) (cache)",
                         "page cache 512.43 MiB rose above 512.00 MiB (cache)"]  # (+ the fake's buffers)


def test_format_bytes_apart_shows_the_difference():
    from monitor.units import format_bytes_apart

    assert format_bytes_apart(int(1.52 * 1024**3), int(1.5 * 1024**3)) == ("1.52 GiB", "1.50 GiB")
    assert format_bytes_apart(512 * MiB + 1, 512 * MiB) == ("536,870,913 B", "536,870,912 B")
    assert format_bytes_apart(520 * MiB, 512 * MiB) == ("520 MiB", "512 MiB")
    assert format_bytes_apart(GiB, GiB) == ("1.0 GiB", "1.0 GiB")


def test_reclaim_rule_reclaims_on_the_fake_kernel(tmp_path, notify_log):
    kernel = FakeKernel(tmp_path / "tree", cached=6 * GiB, hot=0)
    try:
        rule = tiny_rule(name="auto", action="reclaim", method="gradual", above=Size(bytes=4 * GiB, text="4GiB"))
        config = cfg(rule, policy=PolicyConfig(auto_reclaim=True),
                     idle=IdleConfig(window=0.0, cpu_busy_max=100, psi_io_max=100, psi_memory_max=100))
        watcher = make_watcher(tmp_path, config, files=LocalFiles(kernel.proc))
        watcher.tick()
        assert watcher.last_decision.action == "reclaim", watcher.last_decision.reason
        (event,) = watcher.store.events(kinds=["reclaim"])
        assert event.rule == "rule:auto" and event.status == "ok"
        assert event.data["methods_run"] == ["gradual", "compact"] and event.data["freed_bytes"] > 4 * GiB
        assert kernel.requests  # memory.reclaim really written
    finally:
        kernel.close()


def test_a_rule_whose_reclaim_could_not_run_is_armed_again_and_tries_after_its_cooldown(tmp_path, notify_log):
    """Another reclaim holds the machine (or the guest's channel timed out): the rule fired, its reclaim did
    not run. Left disarmed it would wait for the cache to fall below where it re-arms, which only a reclaim
    brings about: it is armed again and acts once its cooldown has passed."""
    from monitor.policy.state import load_state
    from monitor.reclaim.reclaimer import ReclaimLock

    kernel = FakeKernel(tmp_path / "tree", cached=6 * GiB, hot=0)
    try:
        rule = tiny_rule(name="auto", action="reclaim", method="gradual", above=Size(bytes=4 * GiB, text="4GiB"),
                         cooldown=1.0)
        config = cfg(rule, policy=PolicyConfig(auto_reclaim=True),
                     idle=IdleConfig(window=0.0, cpu_busy_max=100, psi_io_max=100, psi_memory_max=100))
        watcher = make_watcher(tmp_path, config, files=LocalFiles(kernel.proc))
        with ReclaimLock(tmp_path / "reclaim.lock", "another reclaim"):
            watcher.tick()
        assert watcher.last_decision.action == "reclaim", watcher.last_decision.reason
        (skipped,) = watcher.store.events(kinds=["reclaim"])
        assert skipped.status == "skipped" and "another reclaim is running" in skipped.message
        state = load_state(watcher.store).rule("auto")
        assert state.armed and state.last_fired is not None  # armed again; the cooldown still counts
        assert not kernel.requests
        time.sleep(1.5)  # past the cooldown (a slower machine only waits longer)
        watcher.tick()
        assert watcher.last_decision.action == "reclaim", watcher.last_decision.reason
        done = [e for e in watcher.store.events(kinds=["reclaim"]) if e.status == "ok"]
        assert len(done) == 1 and done[0].rule == "rule:auto" and kernel.requests
        assert not load_state(watcher.store).rule("auto").armed  # it ran: disarmed until the cache falls
    finally:
        kernel.close()


def test_busy_machine_waits(tmp_path, notify_log):
    rule = tiny_rule(action="reclaim")
    config = cfg(rule, policy=PolicyConfig(auto_reclaim=True),
                 idle=IdleConfig(window=0.0, cpu_busy_max=0.0, drop_window=0.0, drop_cpu_busy_max=0.0))
    watcher = make_watcher(tmp_path, config)
    busy_until = time.time() + 0.3
    while time.time() < busy_until:
        pass  # some CPU so busy > 0
    watcher.tick()
    reason = watcher.last_decision.reason
    assert watcher.last_decision.action == "none" and reason.endswith(": waiting")
    assert "busy" in reason or "waits for a lull" in reason  # gradual's gate, or pagecache's where it falls back
    assert watcher.store.events(kinds=["reclaim"]) == []


def test_schedule_conditions(tmp_path, notify_log):
    kernel = FakeKernel(tmp_path / "tree", cached=2 * GiB, hot=0, with_reclaim=False)
    try:
        watcher = make_watcher(tmp_path, cfg(), files=LocalFiles(kernel.proc))
        watcher.tick()
        watcher.run_schedule(Schedule(cron="0 3 * * *", name="night", method="pagecache",
                                      if_page_cache_above=Size(bytes=10 * GiB, text="10GiB")))
        watcher.run_schedule(Schedule(cron="0 3 * * *", name="idle-only", method="full", only_if_idle=True))
        watcher.run_schedule(Schedule(cron="0 3 * * *", name="go", method="pagecache",
                                      if_page_cache_above=Size(bytes=GiB, text="1GiB")))
        messages = [e.message for e in watcher.store.events(kinds=["schedule"])]
        assert messages[0] == "schedule:night: skipped: page cache 2.0 GiB is not above 10.0 GiB"
        assert messages[1].startswith("schedule:idle-only: skipped: idle not yet known")
        assert messages[2] == "schedule:go: reclaiming (pagecache)"
        (reclaim,) = watcher.store.events(kinds=["reclaim"])
        assert reclaim.rule == "schedule:go"
        assert (kernel.proc / "sys/vm/drop_caches").read_text() == "1"
    finally:
        kernel.close()


def test_schedule_respects_pause(tmp_path, notify_log):
    from monitor.policy.state import set_pause
    watcher = make_watcher(tmp_path, cfg())
    watcher.tick()
    set_pause(watcher.store, 3600)
    watcher.run_schedule(Schedule(cron="0 3 * * *", name="n", method="compact"))
    assert watcher.store.events(kinds=["schedule"])[0].message == "schedule:n: skipped: auto-reclaim is paused"


class BrokenFiles:
    """The OS seam failing in a way no real file does (a bug, say): the tick must survive it."""

    description = "broken"

    def __init__(self):
        self.calls = 0
        self.fail_on = None

    def read(self, paths):
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError("something odd in the kernel files")
        return LocalFiles("/proc").read(paths)

    def write(self, path, value):
        raise OSError("read-only")

    def exists(self, path):
        return False


def test_one_odd_sample_does_not_stop_the_watcher(tmp_path, notify_log):
    files = BrokenFiles()
    watcher = make_watcher(tmp_path, cfg(), files=files)
    files.fail_on = files.calls + 2  # the second tick's read
    results = [watcher.tick() for _ in range(4)]
    assert results[1] is None and all(r is not None for r in (results[0], results[2], results[3]))
    (error,) = watcher.store.events(kinds=["error"])
    assert "RuntimeError: something odd" in error.message
    assert len(watcher.store.recent_samples(60)) == 3


def test_maintain_rolls_up_and_prunes(tmp_path, notify_log):
    history = HistoryConfig(raw_for=300.0, minute_for=3600.0, ten_minute_for=7200.0, events_for=1800.0)
    watcher = make_watcher(tmp_path, cfg(history=history))
    for _ in range(3):
        watcher.tick()
    first = watcher.store.recent_samples(60)[0].time
    watcher.store.add_event("state", "old enough to go", t=first)
    later = first + 120
    watcher.clock = lambda: later
    watcher.maintain()
    minutes = watcher.store.series(later - 600, later, tier="samples_1m")[1]
    assert sum(m["n"] for m in minutes) == 3 and len(watcher.store.recent_samples(600, later)) == 3  # rolled up, raw kept
    much_later = first + 1900  # past raw_for and events_for, within minute_for
    watcher.clock = lambda: much_later
    watcher.maintain()
    assert watcher.store.recent_samples(3600, much_later) == []  # raw pruned after raw_for
    assert sum(r["n"] for r in watcher.store.series(first - 60, much_later, tier="samples_1m")[1]) == 3  # kept
    assert [e.message for e in watcher.store.events() if e.message == "old enough to go"] == []


# ------------------------------------------------------------------ APScheduler wiring


def test_missed_scheduled_reclaims_are_skipped_not_burst(tmp_path):
    """After sleep, the runs of a reclaim missed beyond its grace are recorded as one skipped run, and none runs:
    the job table handed to APScheduler by the driver `vmmemctl watch` and the dashboard use."""
    from datetime import datetime, timedelta

    db = tmp_path / "h.db"
    now = datetime.now().astimezone()
    # Hourly, at the minute half an hour from now: three runs fall in the three hours slept, and no
    # on-time run can fall inside the test's wait (an every-minute cron did when the wait crossed a
    # minute boundary, and ran legitimately)
    minute = (now.minute + 30) % 60
    latest = now.replace(minute=minute, second=0, microsecond=0)
    latest -= timedelta(hours=1) if latest > now else timedelta(0)  # the last run missed
    config = cfg(schedule=(Schedule(cron=f"{minute} * * * *", name="hourly", method="compact", grace=1.0),))
    # A fake kernel's tree: a compact run by mistake would write there, not compact this machine
    kernel = FakeKernel(tmp_path / "tree", cached=2 * GiB, hot=0, with_reclaim=False)
    try:
        watcher = make_watcher(tmp_path, config, files=LocalFiles(kernel.proc))
        driver = Driver(watcher)
        driver.start()
        driver.scheduler.pause()
        try:
            job = driver.scheduler.get_job("schedule0")
            assert job.coalesce and job.max_instances == 1 and job.misfire_grace_time == 1
            job.modify(next_run_time=now - timedelta(hours=3))  # "the laptop slept"
            driver.scheduler.resume()
            deadline = time.time() + 30
            while time.time() < deadline:
                with Store(db) as store:
                    if store.events(kinds=["schedule"]):
                        break
                time.sleep(0.05)
        finally:
            driver.shutdown(wait=True)  # every missed run the scheduler saw is recorded by now
        with Store(db) as store:
            schedule = [e.message for e in store.events(kinds=["schedule"])]
            reclaims = store.events(kinds=["reclaim"])
        compacted = (kernel.proc / "sys/vm/compact_memory").read_text()
    finally:
        kernel.close()
    missed = f"schedule:hourly: missed the {latest:%H:%M} run by more than 1s (asleep?): skipped, not run late"
    assert schedule == [missed]  # once, for the latest of the three: not a burst
    assert reclaims == [] and compacted == ""  # and not run late


def test_the_driver_uses_cron5_weekdays_and_the_recorders_jobs(tmp_path):
    config = cfg(schedule=(Schedule(cron="0 3 * * 0", name="sunday", method="full"),))
    driver = Driver(make_watcher(tmp_path, config))
    driver.start()
    driver.scheduler.pause()
    try:
        assert driver.scheduler.get_job("schedule0").next_run_time.strftime("%a %H:%M") == "Sun 03:00"
        assert {j.id for j in driver.scheduler.get_jobs()} == {"tick", "maintain", "schedule0"}  # no host job for estimates
        assert driver.scheduler.get_job("maintain").trigger.interval.total_seconds() == 60
    finally:
        driver.shutdown(wait=False)


def test_the_driver_runs_a_due_schedule_once_and_says_when_the_next_is(tmp_path):
    """The schedule made due now (as 03:00 arriving): it runs once, really reclaims, and the next run is
    the next 03:00."""
    from monitor.watch.scheduling import next_runs

    kernel = FakeKernel(tmp_path / "tree", cached=2 * GiB, hot=0, with_reclaim=False)
    try:
        config = cfg(schedule=(Schedule(cron="0 3 * * *", name="night", method="compact", grace=60.0),))
        recorder = make_watcher(tmp_path, config, files=LocalFiles(kernel.proc))
        compact = kernel.proc / "sys/vm/compact_memory"
        driver = Driver(recorder)
        driver.start()
        try:
            sched, when = driver.next_schedule()
            assert sched.name == "night" and when == next_runs("0 3 * * *", 1)[0]
            driver.run_now("schedule0")
            deadline = time.time() + 30
            while time.time() < deadline and compact.read_text() == "":
                time.sleep(0.05)
            assert driver.next_schedule()[1] == next_runs("0 3 * * *", 1)[0]  # the next 03:00, not now again
        finally:
            driver.shutdown(wait=True)
        with Store(tmp_path / "h.db") as store:
            schedule = [e.message for e in store.events(kinds=["schedule"])]
            (reclaim,) = store.events(kinds=["reclaim"])
    finally:
        kernel.close()
    assert schedule == ["schedule:night: reclaiming (compact)"]
    assert reclaim.rule == "schedule:night" and reclaim.data["methods_run"] == ["compact"]
    assert compact.read_text() == "1"  # the reclaim really ran


def test_an_interval_job_the_wall_clock_stepped_back_runs_now(tmp_path):
    """APScheduler 3 keeps wall-clock run times: after a step back of an hour the tick would wait an hour.
    What a step back does to a job is what moving its next run an hour ahead does; the scheduler sees the
    wall clock fall back against the monotonic one (its clock is stepped here) and at its next wakeup the
    interval jobs run, while a cron schedule keeps its next run (a run done is not done again). Without
    a step, a job due an hour ahead is left alone (that is not a wakeup's business)."""
    import datetime as dt

    config = cfg(schedule=(Schedule(cron="0 3 * * *", name="night", method="compact"),))
    recorder = make_watcher(tmp_path, config)
    ran = threading.Event()
    driver = Driver(recorder, after=lambda job_id: job_id == "tick" and ran.set())
    driver.start()
    try:
        cron_next = driver.scheduler.get_job("schedule0").next_run_time
        an_hour = dt.datetime.now().astimezone() + dt.timedelta(hours=1)
        driver.scheduler.modify_job("maintain", next_run_time=an_hour)
        ran.clear()
        driver.scheduler.modify_job("tick", next_run_time=an_hour)
        driver.scheduler.wakeup()
        assert not ran.wait(3)  # no step seen: the tick waits (a test of the gate; 3 s is slack, not timing)
        driver.scheduler._wall = lambda: time.time() - 3600  # the wall clock steps back an hour
        driver.scheduler.wakeup()
        assert ran.wait(60)  # at the next wakeup, not an hour from now
        assert driver.scheduler.get_job("tick").next_run_time < an_hour
        assert driver.scheduler.get_job("maintain").next_run_time < an_hour
        assert driver.scheduler.get_job("schedule0").next_run_time == cron_next
    finally:
        driver.shutdown(wait=True)


# ------------------------------------------------------------------ `vmmemctl watch` as a process


def test_sigterm_exits_cleanly(tmp_path):
    db = tmp_path / "h.db"
    proc = start_watch(db)
    try:
        wait_for_samples(db, 3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0  # promptly (how fast is the bench's business, not a test's)
    finally:
        proc.kill()
    with Store(db) as store:
        messages = [e.message for e in store.events(kinds=["watch"])]
    assert messages[-1] == "watcher stopped" and messages[0].startswith("watcher started")


def test_sigint_too(tmp_path):
    db = tmp_path / "h.db"
    proc = start_watch(db)
    try:
        wait_for_samples(db, 2)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=3) == 0
    finally:
        proc.kill()


def test_kill_9_loses_at_most_the_sample_in_flight(tmp_path):
    db = tmp_path / "h.db"
    proc = start_watch(db)
    wait_for_samples(db, 10)
    proc.kill()  # SIGKILL
    proc.wait()
    with Store(db) as store:
        assert store.integrity() == "ok"
        before = store.db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
    assert before >= 10
    again = start_watch(db)  # the next start carries on (the dead process's locks are gone)
    try:
        wait_for_samples(db, before + 5)
    finally:
        again.send_signal(signal.SIGTERM)
        again.wait(timeout=5)
    with Store(db) as store:
        assert store.integrity() == "ok"


def test_single_instance_per_database(tmp_path):
    db = tmp_path / "h.db"
    first = start_watch(db)
    try:
        wait_for_samples(db, 1)
        second = run_cli("watch", "--db", str(db), "--interval", "1s", "--log-file", str(tmp_path / "2.log"))
        assert second.returncode == 1
        assert f"vmmemctl watch is already recording to {db} (pid {first.pid})" in second.stderr
        other = start_watch(tmp_path / "other.db")  # another database: fine
        wait_for_samples(tmp_path / "other.db", 1)
        other.send_signal(signal.SIGTERM)
        assert other.wait(timeout=5) == 0
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=5)


def test_history_reads_while_watch_writes(tmp_path):
    db = tmp_path / "h.db"
    proc = start_watch(db)
    try:
        wait_for_samples(db, 3)
        for _ in range(5):
            result = run_cli("history", "--db", str(db), "--format", "json")
            assert result.returncode == 0 and json.loads(result.stdout)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=5)


# ------------------------------------------------------------------ the jobs on the recorder's clock; the dashboard's driver


def at(text: str) -> float:
    """A local wall-clock time as a timestamp: '2030-01-02 03:00:00'."""
    import datetime as dt

    return dt.datetime.fromisoformat(text).astimezone().timestamp()


def test_maintenance_rolls_up_a_minute_after_the_start_on_the_recorders_clock(tmp_path):
    """Run as the driver runs them (the tick every 2 s, maintenance every 60 s from the start), on the
    recorder's clock: the 12:00 minute is in the roll-up at 12:01:30 (not at 12:01:00, when it ended),
    the 12:01 minute at 12:02:30."""
    start = at("2030-01-02 12:00:30")
    clock = [start]
    recorder = make_watcher(tmp_path, cfg(), clock=lambda: clock[0], samples_on_clock=True)
    periods = {job.id: job.trigger.interval.total_seconds() for job in recorder.jobs()}
    assert periods == {"tick": 2.0, "maintain": 60.0}
    appeared = {}  # each minute's roll-up row: (the step that first showed it, its sample count)
    for step in range(0, 130, 2):
        clock[0] = start + step
        recorder.tick()
        if step and step % 60 == 0:
            recorder.maintain()
        for row in recorder.store.series(start - 60, clock[0], tier="samples_1m")[1]:
            appeared.setdefault(row["t"], (step, row["n"]))
    assert appeared == {at("2030-01-02 12:00:00"): (60, 15), at("2030-01-02 12:01:00"): (120, 30)}


def test_a_standalone_dashboard_runs_a_due_schedule(tmp_path):
    """The bug this design fixed: a dashboard holding the history ran no [[schedule]] reclaims. Its driver
    is the watcher's, on an asyncio loop as Textual's."""
    import asyncio

    from tui.source import DataSource, Setup

    kernel = FakeKernel(tmp_path / "tree", cached=2 * GiB, hot=GiB)
    config = cfg(schedule=(Schedule(cron="0 3 * * *", name="night", method="pagecache"),))
    files = LocalFiles(kernel.proc)
    setup = Setup(config, tmp_path / "h.db", True, 2.0, environ={}, reclaim_lock=tmp_path / "reclaim.lock",
                  watcher_pid=lambda db: None, probes_factory=lambda c, env: build(c, environ={}, files=files))
    source = DataSource(setup, run_async=lambda fn: fn())
    ran: list[str] = []

    async def dashboard() -> str:
        source.start()
        source.tick()
        source.start_driver(asyncio.get_running_loop(), ran.append)
        policy = source.snapshot("5m", 80).policy
        source.driver.run_now("schedule0")  # 03:00 arrives
        for _ in range(600):  # its reclaim event is written once the drop and its settle are done
            with Store(tmp_path / "h.db", readonly=True) as store:
                if store.events(kinds=["reclaim"]):
                    break
            await asyncio.sleep(0.05)
        source.close()
        return policy

    try:
        policy = asyncio.run(dashboard())
        with Store(tmp_path / "h.db") as store:
            schedule = [e.message for e in store.events(kinds=["schedule"])]
            (reclaim,) = store.events(kinds=["reclaim"])
        dropped = (kernel.proc / "sys/vm/drop_caches").read_text()
    finally:
        kernel.close()
    assert "next scheduled reclaim: night at 03:00" in policy
    assert schedule == ["schedule:night: reclaiming (pagecache)"]
    assert reclaim.rule == "schedule:night" and reclaim.data["methods_run"][0] == "pagecache"
    assert dropped.strip() == "1"
    assert "schedule0" in ran  # run by the driver, under the dashboard's lock


def test_gradual_available_is_kept_only_once_definitely_known(tmp_path):
    """A guest that does not answer the first `test -w` must not make `auto` mean pagecache until restart."""
    from monitor.probes.probeset import Probes
    from monitor.probes.execfiles import ExecFiles

    answers = [None, True]

    class Channel(ExecFiles):
        def __init__(self):
            self.asked = 0

        def writable(self, path):
            self.asked += 1
            return answers[self.asked - 1]

    probes = build(cfg(), environ={}, files=LocalFiles(tree("linux-vm")))
    channel = Channel()
    p = Probes(channel, probes.environment, probes.guest, probes.host, host_mode=True)
    assert p.gradual_available() is False  # unknown: "no" for now
    assert p.gradual_available() is True  # asked again, and now known
    assert p.gradual_available() is True and channel.asked == 2  # kept


@pytest.mark.slow  # compacts this machine's memory after the drop
def test_a_path_schedule_gives_back_that_trees_cache_only(tmp_path):
    """[[schedule]] path = [...]: the reclaim-by-path of `vmmemctl reclaim --path`, run by the recorder."""
    tree_dir = tmp_path / "build"
    tree_dir.mkdir()
    (tree_dir / "a.o").write_bytes(os.urandom(1 << 20))
    config = cfg(schedule=(Schedule(cron="0 3 * * *", name="build", path=[str(tree_dir)]),))
    recorder = make_watcher(tmp_path, config)
    recorder.tick()
    recorder.run_schedule(config.schedule[0])
    (started,) = recorder.store.events(kinds=["schedule"])
    (reclaim,) = recorder.store.events(kinds=["reclaim"])
    assert started.message == f"schedule:build: reclaiming (the cache of {tree_dir})"
    assert reclaim.rule == "schedule:build" and reclaim.data["methods_run"][0] == "path"
    assert str(tree_dir) in reclaim.message


def test_a_path_schedule_with_a_method_is_refused_in_one_line(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[[schedule]]\ncron = "0 3 * * *"\nmethod = "full"\npath = ["/tmp/x"]\n')
    done = run_cli("config", "check", str(path))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "schedule[0].method" in done.stderr and "expected no method with path" in done.stderr


def test_a_hung_notification_never_holds_sampling(tmp_path):
    """Issue 24: three backends x 10 s once held sampling for 30 s. The watcher's deliveries run on a
    worker of their own (monitor.notify.worker): ticks go on while a backend hangs, and the
    notification is recorded once it is delivered."""
    from monitor.notify.worker import DeliveryQueue

    release, entered = threading.Event(), threading.Event()

    class Hung:
        name = "hung"

        def send(self, notification):
            entered.set()
            release.wait(120)
            return True, "late, but delivered"

    watcher = make_watcher(tmp_path, cfg(tiny_rule(cooldown=0.0, rearm_below=Size(bytes=2**50, text="1PiB"))))
    watcher.notifier = Notifier([Hung()])
    deliveries = DeliveryQueue()
    watcher.deliver = deliveries.submit
    try:
        watcher.tick()  # the rule fires: its notification waits on the hung backend...
        assert entered.wait(60)
        for _ in range(3):  # ...while sampling goes on
            assert watcher.tick() is not None
        assert len(watcher.store.recent_samples(3600)) == 4
        assert watcher.store.events(kinds=["notify"]) == []  # not delivered yet
        release.set()
        assert deliveries.drain(60)
        (event,) = watcher.store.events(kinds=["notify"])
        assert "late, but delivered" in event.message or "hung" in event.message
    finally:
        release.set()
        deliveries.close(10)
        watcher.close()


def test_a_full_delivery_queue_drops_and_says_so(caplog):
    from monitor.notify.worker import DeliveryQueue

    release = threading.Event()
    deliveries = DeliveryQueue(size=2)
    try:
        deliveries.submit(lambda: release.wait(120))  # the worker takes this one and hangs on it
        accepted = [deliveries.submit(lambda: None) for _ in range(5)]
        assert accepted.count(False) >= 2  # at most the queue's 2 (and the one in hand) wait; the rest are dropped
        assert "this one is dropped" in caplog.text
    finally:
        release.set()
        deliveries.close(10)


def test_a_recording_only_watcher_refuses_a_prompts_reclaim_and_leaves_it_pending(tmp_path):
    """Another watcher owns the VM: answering Reclaim here is refused before the prompt is marked, so
    the person can still answer it where it can be carried out."""
    from monitor.watch.requests import Refused, Requests

    watcher = make_watcher(tmp_path, cfg(tiny_rule(above=Size(bytes=2**50, text="1PiB"))))
    watcher.acts, watcher.vm_owner = False, "pid 1 in distro Ubuntu"
    prompt = watcher.store.add_event("prompt", "page cache high. Reclaim?", rule="r", status="pending",
                                     data={"method": "pagecache"})
    try:
        with pytest.raises(Refused, match="only records: pid 1 in distro Ubuntu owns the VM"):
            Requests(watcher, lambda: None).answer(prompt, "reclaim", "root, pid 1")
        assert [p.id for p in watcher.store.pending_prompts()] == [prompt]
        assert watcher.store.events(kinds=["answer", "reclaim"]) == []
    finally:
        watcher.close()


def test_a_recording_only_watcher_owns_the_vm_once_the_owner_lets_go(tmp_path):
    """The owner is another process holding the real claim (a flock); the recording-only recorder asks
    again at its once-a-minute maintenance, and when the owner is gone it acts, says so, and its
    driver adds its schedules."""
    from monitor.kernel.vmclaim import VmClaim

    claims = tmp_path / "claims"
    hold = ("import sys; from monitor.kernel.vmclaim import VmClaim; c = VmClaim(sys.argv[1], 'arch'); "
            "print(c.try_take(), flush=True); sys.stdin.read()")
    owner = subprocess.Popen([sys.executable, "-c", hold, str(claims)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, cwd=str(Path(__file__).resolve().parents[1]))
    try:
        assert owner.stdout.readline().strip() == "None"  # it owns the VM
        claim = VmClaim(claims, "ubuntu")
        taken = claim.try_take()
        assert taken is not None and taken.pid == owner.pid
        config = cfg(schedule=(Schedule(cron="0 3 * * *", name="night", method="compact"),))
        recorder = make_watcher(tmp_path, config)
        recorder.acts, recorder.vm_owner = False, taken.words()
        recorder.retake = lambda: None if (now := claim.try_take()) is None else now.words()
        driver = Driver(recorder)
        driver.start()
        try:
            assert "schedule0" not in {j.id for j in driver.scheduler.get_jobs()}
            recorder.maintain()
            assert not recorder.acts and f"pid {owner.pid}" in recorder.vm_owner
            owner.stdin.close()
            owner.wait(timeout=30)
            recorder.maintain()
            assert recorder.acts and recorder.vm_owner is None
            deadline = time.time() + 30
            while time.time() < deadline and driver.scheduler.get_job("schedule0") is None:
                time.sleep(0.05)
            assert driver.scheduler.get_job("schedule0") is not None
        finally:
            driver.shutdown(wait=True)
            claim.release()
        (event,) = [e for e in recorder.store.events(kinds=["watch"]) if "no longer owns" in e.message]
        assert event.message.startswith(f"pid {owner.pid} in distro arch") and "this watcher does now" in event.message
    finally:
        owner.kill()
        owner.wait()


def test_a_dashboards_interval_is_the_recorders_so_its_window_holds(tmp_path):
    """`tui --interval 10s`: the recorder samples every 10 s and does not take 10 s between samples for
    a gap (it compared with [sampling] interval, 2 s, and started the policy's window again every tick)."""
    from tui.app import make_app

    clock = [at("2030-01-02 12:00:00")]
    files = LocalFiles("/proc")

    def probes(c, env):
        made = build(c, environ={}, files=files)
        made.guest.clock = lambda: clock[0]
        return made
    app = make_app(cfg(), tmp_path / "h.db", standalone=True, interval=10.0, clock=lambda: clock[0], timers=False,
                   environ={}, reclaim_lock=tmp_path / "reclaim.lock", watcher_pid=lambda db: None,
                   probes_factory=probes)
    source = app.source
    source.start()
    try:
        recorder = source.recorder
        recorder.monotonic = lambda: clock[0]  # (the same clock: no jump, only the 10 s between ticks)
        assert {j.id: j.trigger.interval.total_seconds() for j in recorder.jobs()}["tick"] == 10.0
        for _ in range(3):
            source.tick()
            clock[0] += 10
        assert len(recorder.window(clock[0])) == 3  # one run of samples, not three beginnings
        assert "recording every 10s" in source.mode_words()
    finally:
        source.close()


def test_a_subscription_wakes_on_the_recorders_tick_not_on_a_poll(tmp_path):
    """The subscription waits for the recorder's next tick (its poll is an hour here, so only the tick can
    wake it): one tick, one sample on the stream; nobody subscribed, the tick counts nothing."""
    from monitor.watch.requests import Requests

    watcher = make_watcher(tmp_path, cfg())
    try:
        watcher.tick()
        assert watcher.ticks == 0 and watcher.listeners == 0  # counted only while someone listens
        stream = Requests(watcher, lambda: None, poll=3600.0).subscribe()
        assert "hello" in next(stream)
        assert next(stream) is None  # nothing new since it subscribed: a heartbeat, then the wait
        got: list = []
        reader = threading.Thread(target=lambda: got.append(next(stream)), daemon=True)
        reader.start()
        deadline = time.monotonic() + 60
        while watcher.listeners == 1 and not got and time.monotonic() < deadline:
            watcher.tick()  # a tick before the reader waits is counted too: it is not missed
            reader.join(1.0)
        assert got and "sample" in got[0], got
        assert got[0]["sample"]["t"] == watcher.store.latest_sample().time
        stream.close()
        assert watcher.listeners == 0
    finally:
        watcher.close()
