"""APScheduler 3 for the recorder, without the asyncio and ssl it drags in.

Every APScheduler 3.11 path (schedulers, triggers, jobs, job stores) imports
``apscheduler.util``, whose module body runs, on Python < 3.14::

    if sys.version_info < (3, 14):
        from asyncio import iscoroutinefunction
    else:
        from inspect import iscoroutinefunction

for one function that only the asyncio/tornado executors call. Importing
``asyncio`` loads its 30-odd submodules, ``ssl`` and libssl/libcrypto: 6.8 MiB
of a watcher's 31 MiB peak RSS (bench/results/overhead.md). There is no
lighter path inside APScheduler 3, so :func:`_import_apscheduler_util`
imports that one module with a stand-in ``asyncio`` whose only name is
``inspect.iscoroutinefunction``, the function APScheduler itself uses on
3.14 (and the one CPython deprecated the asyncio alias for, python/cpython#122858;
generator-based ``@asyncio.coroutine``, the only thing the two ever told
apart, is gone since 3.11). The stand-in is in ``sys.modules`` only while
that single module body runs: its other imports are loaded first, the
stand-in is removed right after, and a later ``import asyncio`` (the TUI's
Textual) gets the real package. If asyncio is already loaded, or a future
APScheduler wants more from it, the normal import runs instead.

The API the recorder's driver (:mod:`monitor.watch.driver`) uses::

    scheduler = build_scheduler(reclaim_workers=1)   # a BackgroundScheduler, not started
    scheduler = build_scheduler(event_loop=loop)     # an AsyncIOScheduler on that loop (the dashboard's)
    scheduler.add_job(fn, interval(2.0), id="tick", **JOB_DEFAULTS)
    scheduler.add_job(fn, cron("0 3 * * 0"), id="schedule0", **JOB_DEFAULTS)
    scheduler.add_listener(on_missed, EVENT_JOB_MISSED)

Call it from the main thread before other threads start (the stand-in is
visible to every thread during its one module body).
"""

from __future__ import annotations

import datetime as dt
import inspect
import logging
import sys
import types
from typing import Any

from monitor.config.cron import DAYS, CronSpec, parse_cron

log = logging.getLogger(__name__)

# Every job: run once if several runs were missed, never two at once, replace on re-add.
JOB_DEFAULTS = dict(coalesce=True, max_instances=1, replace_existing=True)


def _import_apscheduler_util() -> None:
    if "apscheduler.util" in sys.modules or "asyncio" in sys.modules or sys.version_info >= (3, 14):
        import apscheduler.util  # noqa: F401  (nothing to avoid, or nothing left to avoid)
        return
    # util's other imports, and the package's own (importlib.metadata for its version), first:
    # while the stand-in is in sys.modules, only util's module body runs.
    import calendar  # noqa: F401
    import functools  # noqa: F401
    import re  # noqa: F401
    import zoneinfo  # noqa: F401

    import apscheduler  # noqa: F401

    stand_in = types.ModuleType("asyncio", "vmmemctl's stand-in while apscheduler.util loads (monitor.watch.scheduling)")
    stand_in.iscoroutinefunction = inspect.iscoroutinefunction  # type: ignore[attr-defined]
    sys.modules["asyncio"] = stand_in
    try:
        import apscheduler.util  # noqa: F401
    except ImportError as exc:  # it wanted more than iscoroutinefunction: load the real asyncio
        log.debug("apscheduler.util needs more of asyncio (%s): importing it", exc)
        sys.modules.pop("apscheduler.util", None)
        if sys.modules.get("asyncio") is stand_in:
            del sys.modules["asyncio"]
        import apscheduler.util  # noqa: F401,F811
    finally:
        if sys.modules.get("asyncio") is stand_in:
            del sys.modules["asyncio"]


_import_apscheduler_util()

from apscheduler.events import EVENT_JOB_MISSED  # noqa: E402
from apscheduler.executors.pool import ThreadPoolExecutor  # noqa: E402
from apscheduler.schedulers.background import BackgroundScheduler  # noqa: E402
from apscheduler.triggers.base import BaseTrigger  # noqa: E402
from apscheduler.triggers.combining import OrTrigger  # noqa: E402
from apscheduler.triggers.cron import CronTrigger  # noqa: E402
from apscheduler.triggers.interval import IntervalTrigger  # noqa: E402

__all__ = ["EVENT_JOB_MISSED", "JOB_DEFAULTS", "BackgroundScheduler", "BaseTrigger", "IntervalTrigger", "ThreadPoolExecutor",
           "build_scheduler", "cron", "interval", "next_runs", "to_trigger"]


class StepSafe:
    """An interval job is never due later than one interval from now.

    APScheduler 3 keeps next-run times on the wall clock and waits for them on the monotonic one, so
    after the wall clock steps back (an NTP step, a restored snapshot) every interval job would wait out
    the step: an hour back, no sample for an hour. At each wakeup (at least once per sampling interval,
    since the tick is an interval job) an interval job due further away than its interval is made due
    now. This is not a second clock-jump detector: the recorder's tick is the one place that measures
    a jump (wall against monotonic) and handles what it means for the policy and the roll-ups; here
    only the invariant is kept. A forward jump needs nothing: APScheduler runs the late job once
    (coalesce) or skips it past its grace. Cron schedules keep their next run, so a run already done
    is not done again."""

    def _process_jobs(self):  # type: ignore[no-untyped-def]  (BaseScheduler's, APScheduler 3.x)
        now = dt.datetime.now(self.timezone)  # type: ignore[attr-defined]
        for job in self.get_jobs():  # type: ignore[attr-defined]
            period = getattr(job.trigger, "interval", None)
            due = job.next_run_time
            if period is not None and due is not None and due - now > period + dt.timedelta(seconds=1):
                log.warning("the wall clock stepped back %s: %s runs now, then every %s", due - now - period,
                            job.id, period)
                job.modify(next_run_time=now)
        return super()._process_jobs()  # type: ignore[misc]


class StepSafeBackground(StepSafe, BackgroundScheduler):
    """The watcher's scheduler: a thread of its own."""


def build_scheduler(workers: int = 1, reclaim_workers: int = 1, event_loop: Any = None, inline: bool = False,
                    **options: Any) -> Any:
    """A scheduler (not started) with two executors: ``default`` runs the jobs that share the recorder's
    store connection, one at a time (a pool of ``workers`` threads, or with ``inline`` the scheduler's own
    thread); ``reclaim`` runs the reclaims (seconds long) beside them on a pool of their own.
    With ``event_loop`` an AsyncIOScheduler that keeps its timer on that loop (a dashboard's: Textual's),
    else a BackgroundScheduler with a thread of its own; both :class:`StepSafe`. ``options`` go to the
    scheduler (e.g. ``timezone``)."""
    default: Any = ThreadPoolExecutor(workers)
    if inline:  # jobs of milliseconds: no hand-over to a second thread (a wake-up and a future per run)
        from apscheduler.executors.debug import DebugExecutor

        default = DebugExecutor()
    executors = {"default": default, "reclaim": ThreadPoolExecutor(reclaim_workers)}
    if event_loop is None:
        return StepSafeBackground(executors=executors, job_defaults={"coalesce": True}, **options)
    from apscheduler.schedulers.asyncio import AsyncIOScheduler  # asyncio is loaded already: Textual's loop

    class StepSafeAsyncIO(StepSafe, AsyncIOScheduler):
        """A dashboard's scheduler: its timer on the app's event loop, the jobs on the thread pools."""

    return StepSafeAsyncIO(executors=executors, job_defaults={"coalesce": True}, event_loop=event_loop, **options)


def interval(seconds: float) -> IntervalTrigger:
    """Every ``seconds`` from now (APScheduler's IntervalTrigger)."""
    return IntervalTrigger(seconds=seconds)


def cron(expr: str, timezone: dt.tzinfo | None = None) -> BaseTrigger:
    """A 5-field cron(5) expression or @daily/@weekly/...; raises monitor.config.cron.CronError on a bad one."""
    return to_trigger(parse_cron(expr), timezone=timezone)


def to_trigger(spec: CronSpec, timezone: dt.tzinfo | None = None):
    """An APScheduler 3 trigger that fires exactly when cron(5) would."""

    def csv(values: frozenset[int]) -> str:
        return ",".join(str(v) for v in sorted(values))

    common = dict(minute=csv(spec.minutes), hour=csv(spec.hours), month=csv(spec.months), timezone=timezone)
    weekday_names = ",".join(DAYS[d] for d in sorted(spec.weekdays))
    if spec.days_restricted and spec.weekdays_restricted:
        # cron(5): "if both fields are restricted, the command runs when either matches"
        return OrTrigger([CronTrigger(day=csv(spec.days), **common),
                          CronTrigger(day_of_week=weekday_names, **common)])
    return CronTrigger(day=csv(spec.days), day_of_week=weekday_names, **common)


def next_runs(text: str, count: int = 3, now: dt.datetime | None = None) -> list[dt.datetime]:
    """The next ``count`` fire times in local time (for ``config check``)."""
    now = now or dt.datetime.now().astimezone()
    trigger = to_trigger(parse_cron(text), timezone=now.tzinfo)
    runs: list[dt.datetime] = []
    previous = None
    cursor = now
    while len(runs) < count:
        fire = trigger.get_next_fire_time(previous, cursor)
        if fire is None:
            break
        runs.append(fire)
        previous, cursor = fire, fire + dt.timedelta(seconds=1)
    return runs
