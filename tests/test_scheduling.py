"""monitor.watch.scheduling: APScheduler 3 without asyncio, ssl, multiprocessing or importlib.metadata, in a
fresh interpreter (like test_headless)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import pytest

from helpers import REPO

RUN_A_JOB = """
import json, sys, threading
from monitor.watch.scheduling import build_scheduler, interval, cron, EVENT_JOB_MISSED, JOB_DEFAULTS
ran = threading.Event()
scheduler = build_scheduler()
scheduler.add_job(ran.set, interval(0.05), id="tick", **JOB_DEFAULTS)
scheduler.add_job(print, cron("0 3 * * 0"), id="weekly", **JOB_DEFAULTS)
scheduler.add_job(ran.set, executor="reclaim")
scheduler.add_listener(lambda event: None, EVENT_JOB_MISSED)
scheduler.start()
ok = ran.wait(10)
scheduler.shutdown(wait=True)
loaded = sorted(m for m in ("asyncio", "ssl", "_ssl", "multiprocessing", "concurrent.futures.process",
                           "importlib.metadata", "email") if m in sys.modules)
{after}
print(json.dumps({{"ran": ok, "loaded": loaded, **extra}}))
"""

REAL_ASYNCIO_AFTER = """
import asyncio, apscheduler.util
async def coro(): pass
extra = {"real": hasattr(asyncio, "run") and hasattr(asyncio, "get_running_loop"),
         "sees_coroutines": apscheduler.util.iscoroutinefunction_partial(coro),
         "sees_plain": apscheduler.util.iscoroutinefunction_partial(print)}
"""


def run_child(code: str, prelude: str = "") -> dict:
    done = subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, cwd=REPO,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_job_runs_without_asyncio_or_ssl():
    result = run_child(RUN_A_JOB.format(after="extra = {}"))
    assert result == {"ran": True, "loaded": []}


def test_asyncio_imported_later_is_the_real_one():
    result = run_child(RUN_A_JOB.format(after=REAL_ASYNCIO_AFTER))
    assert result["real"] and result["sees_coroutines"] and not result["sees_plain"]


LATER_IMPORTS_ARE_REAL = """
import apscheduler, importlib.metadata, multiprocessing, concurrent.futures.process
extra = {"version": apscheduler.__version__, "real_version": importlib.metadata.version("APScheduler"),
         "mp": hasattr(multiprocessing, "get_context"), "pool": concurrent.futures.ProcessPoolExecutor.__name__}
"""


def test_apscheduler_knows_its_version_and_later_imports_are_the_real_ones():
    result = run_child(RUN_A_JOB.format(after=LATER_IMPORTS_ARE_REAL))
    assert result["ran"] and result["version"] == ".".join(result["real_version"].split(".")[:3])
    assert result["mp"] and result["pool"] == "ProcessPoolExecutor"


def test_asyncio_already_loaded_is_left_alone():
    # The dashboard imports Textual (and asyncio) first: the plain import runs, with the real asyncio.
    result = run_child(RUN_A_JOB.format(after=REAL_ASYNCIO_AFTER), prelude="import asyncio\n")
    assert result["ran"] and "asyncio" in result["loaded"] and result["sees_coroutines"]


def test_the_watch_command_path_loads_no_asyncio():
    code = ("import sys, monitor.cli.main, monitor.watch.daemon, monitor.watch.recorder, monitor.watch.wiring, monitor.watch.scheduling\n"
            "print(sorted(m for m in ('asyncio', 'ssl', 'psutil') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("expr, after, expected", [
    ("0 3 * * 0", dt.datetime(2026, 12, 2, 12, 0), dt.datetime(2026, 12, 6, 3, 0)),  # a Wednesday -> Sunday 03:00
    ("*/15 9-17 * * 1-5", dt.datetime(2026, 12, 4, 17, 50), dt.datetime(2026, 12, 7, 9, 0)),  # Friday -> Monday
])
def test_cron_trigger_fires_when_cron_would(expr, after, expected):
    from monitor.watch.scheduling import cron, interval

    tz = dt.timezone.utc
    trigger = cron(expr, timezone=tz)
    assert trigger.get_next_fire_time(None, after.replace(tzinfo=tz)) == expected.replace(tzinfo=tz)
    start = after.replace(tzinfo=tz)
    assert interval(2.0).get_next_fire_time(start, start) == start + dt.timedelta(seconds=2)


def test_the_local_zone_is_tzlocals_without_its_cost(monkeypatch):
    """Where /etc/localtime links into a zoneinfo folder the zone is read from the link (tzlocal tries each
    tail of the path first, loading tzdata's resources, tempfile and shutil on each miss: 1 MiB); the
    same zone either way, and TZ still wins."""
    import tzlocal

    from monitor.watch.scheduling import local_zone

    monkeypatch.delenv("TZ", raising=False)
    assert str(local_zone()) == str(tzlocal.get_localzone())
    monkeypatch.setenv("TZ", "Europe/Berlin")
    tzlocal.reload_localzone()
    try:
        assert str(local_zone()) == "Europe/Berlin"
    finally:
        monkeypatch.delenv("TZ")
        tzlocal.reload_localzone()


def test_a_scheduler_and_its_jobs_in_the_local_zone_load_no_tempfile():
    try:
        linked = "zoneinfo/" in os.readlink("/etc/localtime") and not os.environ.get("TZ")
    except OSError:
        linked = False
    if not linked:
        pytest.skip("/etc/localtime is no link into a zoneinfo folder here: tzlocal decides, as it may")
    result = run_child("""
import json, sys
from monitor.watch.scheduling import build_scheduler, interval, cron, JOB_DEFAULTS
scheduler = build_scheduler(inline=True)
scheduler.add_job(print, interval(60), id="tick", **JOB_DEFAULTS)
scheduler.add_job(print, cron("0 3 * * 0"), id="weekly", **JOB_DEFAULTS)
scheduler.start(paused=True)
scheduler.shutdown(wait=False)
print(json.dumps({"loaded": sorted(m for m in ("tempfile", "shutil", "importlib.resources") if m in sys.modules)}))
""")
    assert result == {"loaded": []}


def test_the_memory_stores_timestamps_are_apschedulers_own():
    """scheduling swaps the memory job store's datetime_to_utc_timestamp for timestamp(): the same number
    for every aware datetime the store keeps (zones with and without DST, both sides of a change)."""
    import random
    from zoneinfo import ZoneInfo

    import apscheduler.jobstores.memory as memory
    from apscheduler.util import datetime_to_utc_timestamp

    from monitor.watch.scheduling import _utc_timestamp

    assert memory.datetime_to_utc_timestamp is _utc_timestamp
    rng = random.Random(7)
    zones = [dt.timezone.utc, ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York"), ZoneInfo("Australia/Lord_Howe")]
    for _ in range(20000):
        when = dt.datetime.fromtimestamp(rng.uniform(0, 4e9), rng.choice(zones)).replace(microsecond=rng.randrange(10**6))
        assert _utc_timestamp(when) == datetime_to_utc_timestamp(when), when
    assert _utc_timestamp(None) is None


def test_the_inline_executor_runs_late_jobs_as_missed_and_survives_a_failing_one():
    """The watcher's executor (the scheduler's own thread): a run later than its grace is not run and is
    reported as EVENT_JOB_MISSED (the watcher records a missed schedule from it); a job that raises is
    reported as EVENT_JOB_ERROR and the next job still runs."""
    import threading

    from monitor.watch.scheduling import EVENT_JOB_MISSED, build_scheduler, interval
    from apscheduler.events import EVENT_JOB_ERROR

    scheduler = build_scheduler(inline=True)
    events: list = []
    ran = threading.Event()
    late_ran: list = []
    scheduler.add_listener(events.append, EVENT_JOB_MISSED | EVENT_JOB_ERROR)

    def fail() -> None:
        raise RuntimeError("a job that fails")

    now = dt.datetime.now(dt.timezone.utc)
    scheduler.add_job(lambda: late_ran.append(1), "date", run_date=now - dt.timedelta(minutes=5), id="late",
                      misfire_grace_time=1)
    scheduler.add_job(fail, "date", run_date=now, id="fails")
    scheduler.add_job(ran.set, interval(0.2), id="tick")
    scheduler.start()
    try:
        assert ran.wait(30)
        deadline = dt.datetime.now() + dt.timedelta(seconds=30)
        while len(events) < 2 and dt.datetime.now() < deadline:
            ran.clear()
            ran.wait(1)
    finally:
        scheduler.shutdown(wait=True)
    assert late_ran == []
    kinds = {(e.code, e.job_id) for e in events}
    assert (EVENT_JOB_MISSED, "late") in kinds and (EVENT_JOB_ERROR, "fails") in kinds, kinds
    assert isinstance(next(e for e in events if e.job_id == "fails").exception, RuntimeError)


def _table(scheduler, calls: list) -> None:
    """Jobs due now, late within and past their grace, coalesced and not, one whose trigger ends, one not due."""
    from monitor.watch.scheduling import interval

    now = dt.datetime.now(dt.timezone.utc)
    for name, start, grace, coalesce in (("due", now - dt.timedelta(seconds=30), 3600, True),
                                         ("behind", now - dt.timedelta(seconds=31), 3600, False),
                                         ("missed", now - dt.timedelta(seconds=605), 1, True),
                                         ("later", now + dt.timedelta(seconds=600), 3600, True)):
        scheduler.add_job(calls.append, interval(10.0, start_date=start), args=[name], id=name,
                          misfire_grace_time=grace, coalesce=coalesce, next_run_time=start)
    scheduler.add_job(calls.append, "date", run_date=now - dt.timedelta(seconds=5), args=["once"], id="once",
                      misfire_grace_time=3600)


def test_the_lean_pass_runs_what_apschedulers_own_pass_runs():
    """StepSafe's pass against BaseScheduler._process_jobs on the same job table: the same runs (coalesced or
    each), the same missed and submitted events, the same next run times, the ended job removed, the
    same wait until the next wakeup."""
    from apscheduler.events import EVENT_ALL
    from apscheduler.schedulers.base import STATE_RUNNING, BaseScheduler

    from monitor.watch.scheduling import build_scheduler

    results = []
    for lean in (False, True):
        scheduler, calls, events = build_scheduler(inline=True), [], []
        scheduler.add_listener(events.append, EVENT_ALL)
        scheduler.start(paused=True)
        try:
            _table(scheduler, calls)
            events.clear()
            scheduler.state = STATE_RUNNING  # (its thread sleeps until woken: this thread runs the pass)
            wait = scheduler._run_due_jobs() if lean else BaseScheduler._process_jobs(scheduler)
            jobs = {j.id: j.next_run_time.timestamp() for j in scheduler.get_jobs()}
            results.append((sorted(calls), sorted((e.code, e.job_id) for e in events), jobs, wait))
        finally:
            scheduler.shutdown(wait=False)
    (calls_a, events_a, jobs_a, wait_a), (calls_b, events_b, jobs_b, wait_b) = results
    assert calls_b == calls_a == ["behind", "behind", "behind", "behind", "due", "once"]
    assert events_b == events_a and any(code == 2 ** 14 for code, _ in events_a)  # EVENT_JOB_MISSED
    assert jobs_b.keys() == jobs_a.keys() == {"due", "behind", "missed", "later"}
    for job in jobs_a:
        assert abs(jobs_b[job] - jobs_a[job]) < 1.0, job
    assert abs(wait_b - wait_a) < 5.0


def test_the_scheduler_wakes_on_its_lock_as_on_an_event():
    """_Wake: set from another thread ends a wait at once and stays set until cleared; a wait times out
    unset; set twice is set."""
    import threading

    from monitor.watch.scheduling import _Wake

    wake = _Wake()
    assert not wake.is_set() and not wake.wait(0.01)
    wake.set()
    wake.set()
    assert wake.is_set() and wake.wait(0) and wake.wait(0)
    wake.clear()
    assert not wake.is_set()
    threading.Timer(0.05, wake.set).start()
    assert wake.wait(60)
    wake.clear()
    wake.clear()
    assert not wake.wait(0)
