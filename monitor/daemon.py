"""`vmmemctl watch`: one watcher per history database, driven by APScheduler 3.

This module holds the process concerns (single instance, logging, signals,
the scheduler's wiring); the decisions are in :mod:`monitor.watcher`.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from monitor.config import Config
from monitor.errors import UserError
from monitor.reclaim import ReclaimBusy, ReclaimLock

log = logging.getLogger("monitor")
SAMPLE_GRACE = 5  # a sampling run late by more than this is dropped (the next one is due soon anyway)


class AlreadyRunning(UserError):
    exit_code = 1


def instance_lock(db: Path, holder: str = "vmmemctl watch") -> ReclaimLock:
    """One recorder per database: an flock beside it, released when the process dies (even by kill -9).
    ``holder`` names the recorder (the watcher, or a standalone dashboard) for whoever comes next."""
    lock = ReclaimLock(db.with_name(db.name + ".watch.lock"), holder)
    try:
        return lock.__enter__()
    except ReclaimBusy as exc:
        raise AlreadyRunning(f"{exc.holder or 'vmmemctl watch'} is already recording to {db} "
                             f"(pid {exc.pid if exc.pid is not None else '?'})") from None


def watcher_running(db: Path) -> int | None:
    """The PID of the process recording to ``db`` (watcher or standalone dashboard), or None (0: unknown PID)."""
    path = db.with_name(db.name + ".watch.lock")
    if not path.exists():
        return None
    try:
        with ReclaimLock(path):
            return None
    except ReclaimBusy as exc:
        return exc.pid or 0


def setup_logging(level: str, log_file: Path | None) -> None:
    root = logging.getLogger("monitor")
    root.setLevel(level.upper())
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.handlers.RotatingFileHandler(log_file, maxBytes=1 << 20, backupCount=3)
        handler.setFormatter(fmt)
        root.addHandler(handler)
    if sys.stderr.isatty() or log_file is None:
        stream = logging.StreamHandler()
        stream.setFormatter(fmt)
        root.addHandler(stream)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def default_log_file() -> Path:
    import platformdirs

    return Path(platformdirs.user_log_dir("vmmemctl")) / "watch.log"


def schedule_jobs(scheduler: Any, watcher: Any, config: Config) -> None:
    """Wire time to the watcher's jobs. Coalesce everything; never replay a burst after sleep."""
    from monitor.scheduling import IntervalTrigger

    from monitor.cron import parse_cron, to_trigger

    common = dict(coalesce=True, max_instances=1, replace_existing=True)
    scheduler.add_job(watcher.tick, IntervalTrigger(seconds=config.sampling.interval), id="tick",
                      misfire_grace_time=SAMPLE_GRACE, **common)
    if getattr(watcher.probes.host, "name", "") not in ("estimate", "none"):
        scheduler.add_job(watcher.sample_host, IntervalTrigger(seconds=config.sampling.host_interval), id="host",
                          misfire_grace_time=SAMPLE_GRACE, **common)
    scheduler.add_job(watcher.maintain, IntervalTrigger(seconds=60), id="maintain", misfire_grace_time=60, **common)
    for i, sched in enumerate(config.schedule):
        scheduler.add_job(watcher.run_schedule, to_trigger(parse_cron(sched.cron)), args=[sched], id=f"schedule{i}",
                          misfire_grace_time=max(1, int(sched.grace)), **common)


def record_missed_runs(scheduler: Any, store_factory: Any, config: Config) -> None:
    """APScheduler skips a scheduled reclaim missed by more than its grace: say so in the history."""
    from monitor.scheduling import EVENT_JOB_MISSED

    def on_missed(event: Any) -> None:
        if not event.job_id.startswith("schedule"):
            return
        sched = config.schedule[int(event.job_id.removeprefix("schedule"))]
        store = store_factory()
        try:
            store.add_event("schedule", f"schedule:{sched.name or sched.cron}: missed the {event.scheduled_run_time:%H:%M} "
                            f"run by more than {sched.grace:g}s (asleep?): skipped, not run late",
                            rule=f"schedule:{sched.name or sched.cron}")
        finally:
            store.close()
    scheduler.add_listener(on_missed, EVENT_JOB_MISSED)


def run(config: Config, watcher: Any, db: Path, store_factory: Any, stop: threading.Event,
        metrics_server: Any = None) -> int:
    """Run until SIGTERM/SIGINT (which set ``stop``; a reclaim in flight ends its settle early)."""
    from monitor.scheduling import BackgroundScheduler, ThreadPoolExecutor

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    # One worker runs every job that touches the watcher's store connection, in turn (each takes
    # milliseconds); reclaims, which take seconds, run on their own worker with their own connection.
    scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(1), "reclaim": ThreadPoolExecutor(1)},
                                    job_defaults={"coalesce": True})
    watcher.run_async = lambda fn: scheduler.add_job(fn, executor="reclaim", misfire_grace_time=30)
    schedule_jobs(scheduler, watcher, config)
    record_missed_runs(scheduler, store_factory, config)
    watcher.store.add_event("watch", f"watcher started (pid {os.getpid()}, every {config.sampling.interval:g}s)")
    log.info("watching: sample every %gs, history %s", config.sampling.interval, db)
    watcher.tick()  # the first sample now, not one interval from now
    scheduler.start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        scheduler.shutdown(wait=True)  # quick: ticks take milliseconds, a reclaim sees `stop` and ends
        if metrics_server is not None:
            metrics_server.close()
        watcher.store.add_event("watch", "watcher stopped")
        log.info("stopped")
    return 0
