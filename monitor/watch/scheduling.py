"""APScheduler 3 for the recorder, without the asyncio, multiprocessing and
package metadata it drags in.

Importing APScheduler 3.11's scheduler, triggers and executors loads, on
Python < 3.14, three things vmmemctl never uses: in a fresh interpreter this
module costs 11.4 MiB of RSS with them and 2.4 MiB without, for a watcher
that should stay under 24 MiB (README, Benchmarks):

- ``asyncio`` (its 30-odd submodules, ``ssl`` and libssl/libcrypto: 6.8 MiB),
  for one name in ``apscheduler.util``: ``from asyncio import
  iscoroutinefunction``, which only the asyncio/tornado executors call. The
  stand-in's only name is ``inspect.iscoroutinefunction``, the function
  APScheduler itself uses on 3.14 (and the one CPython deprecated the asyncio
  alias for, python/cpython#122858; generator-based ``@asyncio.coroutine``,
  the only thing the two ever told apart, is gone since 3.11).
- ``multiprocessing`` and ``concurrent.futures.process`` (with pickle and
  friends), imported by ``apscheduler.executors.pool`` for its
  ``ProcessPoolExecutor``; vmmemctl runs jobs on threads only. The stand-ins
  carry nothing but the ``BrokenProcessPool`` name that module imports.
- ``importlib.metadata`` (with email, zipfile, csv), for the package's
  ``__version__`` and the entry-point tables of trigger, executor and job store
  names ("date", "interval", "threadpool"). The stand-in reads the version from
  APScheduler's dist-info folder name and its own plugins from that folder's
  ``entry_points.txt`` (other packages' APScheduler plugins are not looked
  for: vmmemctl uses none).

:func:`_import_apscheduler` imports the modules below with those stand-ins in
``sys.modules``, their other imports loaded first, and takes the stand-ins out
right after: a later ``import asyncio`` (the TUI's Textual) or ``import
multiprocessing`` gets the real package. Any module already loaded is used as
it is; if the lean import fails in any way (a future APScheduler wants more),
the normal import runs instead. Call it from the main thread before other
threads start (`vmmemctl watch` imports this module first thing): the
stand-ins are visible to every thread while APScheduler's module bodies run.

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
import threading
import time
import traceback
import types
from typing import Any

from monitor.config.cron import DAYS, CronSpec, parse_cron

log = logging.getLogger(__name__)

# Every job: run once if several runs were missed, never two at once, replace on re-add.
JOB_DEFAULTS = dict(coalesce=True, max_instances=1, replace_existing=True)


_PACKAGES = ("apscheduler.util", "apscheduler.events", "apscheduler.executors.pool", "apscheduler.executors.debug",
             "apscheduler.schedulers.background", "apscheduler.triggers.base", "apscheduler.triggers.combining",
             "apscheduler.triggers.cron", "apscheduler.triggers.interval")


def _stand_ins() -> dict[str, types.ModuleType]:
    aio = types.ModuleType("asyncio", "vmmemctl's stand-in while APScheduler loads (monitor.watch.scheduling)")
    aio.iscoroutinefunction = inspect.iscoroutinefunction  # type: ignore[attr-defined]

    mp = types.ModuleType("multiprocessing", aio.__doc__)
    process = types.ModuleType("concurrent.futures.process", aio.__doc__)

    class BrokenProcessPool(RuntimeError):
        """(never raised: vmmemctl runs no process pool)"""
    process.BrokenProcessPool = BrokenProcessPool  # type: ignore[attr-defined]

    meta = types.ModuleType("importlib.metadata", aio.__doc__)

    class PackageNotFoundError(ModuleNotFoundError):
        pass

    def dist_info() -> Any:
        """APScheduler's own dist-info folder (beside the package), or None."""
        import importlib.util
        from pathlib import Path

        spec = importlib.util.find_spec("apscheduler")
        where = Path(spec.origin).parent.parent if spec and spec.origin else None
        for info in sorted(where.glob("*.dist-info")) if where else ():
            if info.name.lower().startswith("apscheduler-"):
                return info
        return None

    def version(name: str) -> str:
        info = dist_info()
        if name.lower() != "apscheduler" or info is None:
            raise PackageNotFoundError(name)
        return info.name.removesuffix(".dist-info").partition("-")[2]

    class EntryPoint:
        def __init__(self, name: str, value: str):
            self.name, self.value = name, value

        def load(self) -> Any:
            import importlib

            module, _, attr = self.value.partition(":")
            return getattr(importlib.import_module(module.strip()), attr.strip())

    def entry_points(group: str = "") -> list[EntryPoint]:
        """APScheduler's own plugins by name ("date", "interval", "threadpool", ...), read from its
        entry_points.txt; other packages' plugins are not looked for."""
        info, found, section = dist_info(), [], ""
        try:
            text = (info / "entry_points.txt").read_text() if info is not None else ""
        except OSError:
            text = ""
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
            elif "=" in line and section == group:
                name, _, value = line.partition("=")
                found.append(EntryPoint(name.strip(), value.strip()))
        return found
    meta.PackageNotFoundError = PackageNotFoundError  # type: ignore[attr-defined]
    meta.version = version  # type: ignore[attr-defined]
    meta.entry_points = entry_points  # type: ignore[attr-defined]
    return {"asyncio": aio, "multiprocessing": mp, "concurrent.futures.process": process, "importlib.metadata": meta}


def _import_apscheduler() -> None:
    import importlib

    if "apscheduler" in sys.modules or sys.version_info >= (3, 14):
        for name in _PACKAGES:  # nothing to avoid, or nothing left to avoid
            importlib.import_module(name)
        return
    # What APScheduler's modules import besides the stand-ins, first: while the stand-ins are in
    # sys.modules, only APScheduler's own module bodies run.
    for name in ("calendar", "functools", "re", "zoneinfo", "uuid", "warnings", "traceback", "collections.abc",
                 "contextlib", "threading", "logging", "concurrent.futures", "concurrent.futures.thread", "queue",
                 "tzlocal", "importlib.util"):
        importlib.import_module(name)
    stand_ins = {name: module for name, module in _stand_ins().items() if name not in sys.modules}
    sys.modules.update(stand_ins)
    try:
        for name in _PACKAGES:
            importlib.import_module(name)
    except Exception as exc:  # it wanted more than the stand-ins give: load it the normal way
        log.debug("APScheduler needs more than the stand-ins (%s): importing it as it is", exc)
        for name in [m for m in sys.modules if m == "apscheduler" or m.startswith("apscheduler.")]:
            del sys.modules[name]
        _restore(stand_ins)
        for name in _PACKAGES:
            importlib.import_module(name)
    finally:
        _restore(stand_ins)


def _restore(stand_ins: dict[str, types.ModuleType]) -> None:
    for name, module in stand_ins.items():
        if sys.modules.get(name) is module:
            del sys.modules[name]


_import_apscheduler()


def _utc_timestamp(when: dt.datetime | None) -> float | None:
    """APScheduler's ``datetime_to_utc_timestamp`` for the aware datetimes it keeps, by ``timestamp()``:
    its own goes through ``calendar.timegm(utctimetuple())`` in Python, twice a job run in the memory
    job store (a sixth of the scheduler's pass on an idle watcher, bench/results/control.md)."""
    return None if when is None else when.timestamp()


def _use_fast_timestamps() -> None:
    import apscheduler.jobstores.memory as memory

    memory.datetime_to_utc_timestamp = _utc_timestamp  # the name the memory store calls (it imported it)


_use_fast_timestamps()

from apscheduler.events import (  # noqa: E402
    EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, EVENT_JOB_SUBMITTED, JobExecutionEvent,
    JobSubmissionEvent)
from apscheduler.executors.base import BaseExecutor, MaxInstancesReachedError  # noqa: E402
from apscheduler.schedulers.base import STATE_PAUSED  # noqa: E402
from apscheduler.executors.pool import ThreadPoolExecutor  # noqa: E402
from apscheduler.schedulers.background import BackgroundScheduler  # noqa: E402
from apscheduler.triggers.base import BaseTrigger  # noqa: E402
from apscheduler.triggers.combining import OrTrigger  # noqa: E402
from apscheduler.triggers.cron import CronTrigger  # noqa: E402
from apscheduler.triggers.date import DateTrigger  # noqa: E402
from apscheduler.triggers.interval import IntervalTrigger  # noqa: E402

__all__ = ["EVENT_JOB_MISSED", "JOB_DEFAULTS", "BackgroundScheduler", "BaseTrigger", "IntervalTrigger", "ThreadPoolExecutor",
           "build_scheduler", "cron", "interval", "local_zone", "next_runs", "to_trigger"]


class StepSafe:
    """An interval job is never due later than one interval from now.

    APScheduler 3 keeps next-run times on the wall clock and waits for them on the monotonic one, so
    after the wall clock steps back (an NTP step, a restored snapshot) every interval job would wait out
    the step: an hour back, no sample for an hour. At the first wakeup after the wall clock fell back
    against the monotonic one by more than a second (a wakeup comes at least once per sampling interval,
    since the tick is an interval job), an interval job due further away than its interval is made due
    now. This is not a second clock-jump detector: the recorder's tick is the one place that measures
    a jump (wall against monotonic) and handles what it means for the policy and the roll-ups; here
    only the invariant is kept. A forward jump needs nothing: APScheduler runs the late job once
    (coalesce) or skips it past its grace. Cron schedules keep their next run, so a run already done
    is not done again."""

    # How far the wall clock is ahead of the monotonic one at the last pass: the job table is walked only
    # when that dropped (a step back), not at every wakeup (a tenth of an idle watcher's wakeup).
    _offset: float | None = None
    _wall, _monotonic = staticmethod(time.time), staticmethod(time.monotonic)

    def _process_jobs(self):  # type: ignore[no-untyped-def]  (BaseScheduler's, APScheduler 3.x)
        offset, last = self._wall() - self._monotonic(), self._offset
        self._offset = offset
        if last is None or offset < last - 1:
            self._keep_intervals_near()
        return self._run_due_jobs()

    def _run_due_jobs(self):  # type: ignore[no-untyped-def]
        """BaseScheduler._process_jobs (APScheduler 3.x) with what an idle watcher's every wakeup paid for
        and nobody used taken out: each due job's next run time worked out once, not twice (the walk to
        ``now`` already has it); the new time set as it is, not through ``Job._modify``'s checks of every
        field (the trigger gives an aware datetime, which is all ``_modify`` makes of it); an event only
        when a listener asks for its kind; the debug lines only at debug level. The same jobs run at the
        same times, coalesced, with the same grace, instance limit, missed and error events (the
        executor's), and a job whose trigger is done is removed. (The pass was ~40 % of an idle
        watcher's wakeup beyond the tick itself: bench/results/control.md.)"""
        if self.state == STATE_PAUSED:  # type: ignore[attr-defined]
            return None
        debug = self._logger.isEnabledFor(logging.DEBUG)  # type: ignore[attr-defined]
        now = dt.datetime.now(self.timezone)  # type: ignore[attr-defined]
        wakeup = None
        events: list[Any] = []
        with self._listeners_lock:  # type: ignore[attr-defined]
            wanted = 0
            for _, mask in self._listeners:  # type: ignore[attr-defined]
                wanted |= mask
        with self._jobstores_lock:  # type: ignore[attr-defined]
            for alias, store in self._jobstores.items():  # type: ignore[attr-defined]
                try:
                    due = store.get_due_jobs(now)
                except Exception as exc:
                    self._logger.warning("Error getting due jobs from job store %r: %s", alias, exc)  # type: ignore[attr-defined]
                    retry = now + dt.timedelta(seconds=self.jobstore_retry_interval)  # type: ignore[attr-defined]
                    wakeup = retry if wakeup is None or wakeup > retry else wakeup
                    continue
                for job in due:
                    try:
                        executor = self._lookup_executor(job.executor)  # type: ignore[attr-defined]
                    except BaseException:
                        self._logger.error('Executor lookup ("%s") failed for job "%s" -- removing it from the '  # type: ignore[attr-defined]
                                           "job store", job.executor, job)
                        self.remove_job(job.id, alias)  # type: ignore[attr-defined]
                        continue
                    run_times, following = [], job.next_run_time
                    while following is not None and following <= now:
                        run_times.append(following)
                        following = job.trigger.get_next_fire_time(following, now)
                    if job.coalesce:
                        run_times = run_times[-1:]
                    if not run_times:
                        continue
                    try:
                        executor.submit_job(job, run_times)
                    except MaxInstancesReachedError:
                        self._logger.warning('Execution of job "%s" skipped: maximum number of running '  # type: ignore[attr-defined]
                                             "instances reached (%d)", job, job.max_instances)
                        if wanted & EVENT_JOB_MAX_INSTANCES:
                            events.append(JobSubmissionEvent(EVENT_JOB_MAX_INSTANCES, job.id, alias, run_times))
                    except BaseException:
                        self._logger.exception('Error submitting job "%s" to executor "%s"', job, job.executor)  # type: ignore[attr-defined]
                    else:
                        if wanted & EVENT_JOB_SUBMITTED:
                            events.append(JobSubmissionEvent(EVENT_JOB_SUBMITTED, job.id, alias, run_times))
                    if following is not None:
                        job.next_run_time = following
                        store.update_job(job)
                    else:
                        self.remove_job(job.id, alias)  # type: ignore[attr-defined]
                first = store.get_next_run_time()
                if first is not None and (wakeup is None or first < wakeup):
                    wakeup = first.astimezone(self.timezone)  # type: ignore[attr-defined]
        for event in events:
            self._dispatch_event(event)  # type: ignore[attr-defined]
        if self.state == STATE_PAUSED or wakeup is None:  # type: ignore[attr-defined]
            return None
        wait = min(max(wakeup.timestamp() - time.time(), 0), threading.TIMEOUT_MAX)
        if debug:
            self._logger.debug("Next wakeup is due at %s (in %f seconds)", wakeup, wait)  # type: ignore[attr-defined]
        return wait

    def _keep_intervals_near(self) -> None:
        now = dt.datetime.now(self.timezone)  # type: ignore[attr-defined]
        for job in self.get_jobs():  # type: ignore[attr-defined]
            period = getattr(job.trigger, "interval", None)
            due = job.next_run_time
            if period is not None and due is not None and due - now > period + dt.timedelta(seconds=1):
                log.warning("the wall clock stepped back %s: %s runs now, then every %s", due - now - period,
                            job.id, period)
                job.modify(next_run_time=now)


class InlineExecutor(BaseExecutor):
    """Runs a job on the scheduler's own thread, as APScheduler's DebugExecutor does, with the same
    missed and error events (a missed schedule is recorded from EVENT_JOB_MISSED), without what its
    ``run_job`` adds to every run: a logger looked up under the logging lock, two log calls and an
    "executed" event nobody here listens for."""

    def _do_submit_job(self, job: Any, run_times: list[dt.datetime]) -> None:
        events = []
        for run_time in run_times:
            late = (None if job.misfire_grace_time is None
                    else dt.datetime.now(dt.timezone.utc) - run_time)
            if late is not None and late > dt.timedelta(seconds=job.misfire_grace_time):
                events.append(JobExecutionEvent(EVENT_JOB_MISSED, job.id, job._jobstore_alias, run_time))
                self._logger.warning('Run time of job "%s" was missed by %s', job, late)
                continue
            try:
                job.func(*job.args, **job.kwargs)
            except BaseException as exc:
                events.append(JobExecutionEvent(EVENT_JOB_ERROR, job.id, job._jobstore_alias, run_time, exception=exc,
                                                traceback="".join(traceback.format_tb(exc.__traceback__))))
                self._logger.exception('Job "%s" raised an exception', job)
        self._run_job_success(job.id, events)


class _Wake:
    """``threading.Event`` as the scheduler's thread uses it (wait with a timeout, clear, set from other
    threads), on one lock instead of a Condition: a wait is one ``acquire`` with a timeout, not a new lock,
    a list of waiters and four more calls on every wakeup. Held = not set."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        try:
            self._lock.release()
        except RuntimeError:  # set already
            pass

    def clear(self) -> None:
        self._lock.acquire(False)

    def is_set(self) -> bool:
        return not self._lock.locked()

    def wait(self, timeout: float | None = None) -> bool:
        if self._lock.acquire(True, -1 if timeout is None else timeout):
            self._lock.release()  # it stays set until cleared
            return True
        return False


class StepSafeBackground(StepSafe, BackgroundScheduler):
    """The watcher's scheduler: a thread of its own, woken through :class:`_Wake`."""

    def start(self, *args: Any, **kwargs: Any) -> None:
        if self._event is None or self._event.is_set():
            self._event = _Wake()
        super().start(*args, **kwargs)


def build_scheduler(workers: int = 1, reclaim_workers: int = 1, event_loop: Any = None, inline: bool = False,
                    **options: Any) -> Any:
    options.setdefault("timezone", local_zone())  # (else APScheduler asks tzlocal: see local_zone)
    """A scheduler (not started) with two executors: ``default`` runs the jobs that share the recorder's
    store connection, one at a time (a pool of ``workers`` threads, or with ``inline`` the scheduler's own
    thread); ``reclaim`` runs the reclaims (seconds long) beside them on a pool of their own.
    With ``event_loop`` an AsyncIOScheduler that keeps its timer on that loop (a dashboard's: Textual's),
    else a BackgroundScheduler with a thread of its own; both :class:`StepSafe`. ``options`` go to the
    scheduler (e.g. ``timezone``)."""
    default: Any = ThreadPoolExecutor(workers)
    if inline:  # jobs of milliseconds: no hand-over to a second thread (a wake-up and a future per run)
        default = InlineExecutor()
    executors = {"default": default, "reclaim": ThreadPoolExecutor(reclaim_workers)}
    if event_loop is None:
        return StepSafeBackground(executors=executors, job_defaults={"coalesce": True}, **options)
    from apscheduler.schedulers.asyncio import AsyncIOScheduler  # asyncio is loaded already: Textual's loop

    class StepSafeAsyncIO(StepSafe, AsyncIOScheduler):
        """A dashboard's scheduler: its timer on the app's event loop, the jobs on the thread pools."""

    return StepSafeAsyncIO(executors=executors, job_defaults={"coalesce": True}, event_loop=event_loop, **options)


def interval(seconds: float, start_date: dt.datetime | None = None) -> IntervalTrigger:
    """Every ``seconds`` from now, or from ``start_date`` (APScheduler's IntervalTrigger, in the local zone)."""
    return IntervalTrigger(seconds=seconds, start_date=start_date, timezone=local_zone())


def once() -> DateTrigger:
    """Now, once (what ``add_job`` without a trigger means): an object, not the name "date", which APScheduler
    looks up in its package metadata, and a copy of the package without its dist-info (the lab guest's) has
    none: a reclaim worker's job failed there with 'No trigger by the name "date" was found'."""
    return DateTrigger(timezone=local_zone())


def cron(expr: str, timezone: dt.tzinfo | None = None) -> BaseTrigger:
    """A 5-field cron(5) expression or @daily/@weekly/...; raises monitor.config.cron.CronError on a bad one."""
    return to_trigger(parse_cron(expr), timezone=timezone or local_zone())


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


def local_zone() -> dt.tzinfo:
    """This machine's time zone with its daylight-saving rules (as APScheduler's own default, tzlocal),
    not today's fixed offset: a run after the change is at 04:00 local, not 04:00 of the old offset.
    Where /etc/localtime links into a zoneinfo folder (systemd distributions, WSL) the zone is that
    link's name, read directly: tzlocal tries each tail of the link's path as a key first, and each
    miss loads the tzdata package's resources, tempfile and shutil (1 MiB of the watcher's RSS)."""
    import os

    if not os.environ.get("TZ"):
        try:
            target = os.readlink("/etc/localtime")
        except OSError:
            target = ""
        if "zoneinfo/" in target:
            import zoneinfo

            try:
                return zoneinfo.ZoneInfo(target.rsplit("zoneinfo/", 1)[1])
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                pass
    import tzlocal

    return tzlocal.get_localzone()


def next_runs(text: str, count: int = 3, now: dt.datetime | None = None,
              timezone: dt.tzinfo | None = None) -> list[dt.datetime]:
    """The next ``count`` fire times, in ``timezone`` (default: the local zone, DST included, as the
    watcher's scheduler runs them; issue 28: `config check` printed a fixed offset across the change)."""
    timezone = timezone or local_zone()
    now = now.astimezone(timezone) if now is not None else dt.datetime.now(timezone)
    trigger = to_trigger(parse_cron(text), timezone=timezone)
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
