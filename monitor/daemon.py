"""`vmmemctl watch`: the recorder driven by APScheduler 3, as a process.

This module holds the process concerns (logging, signals, handing the
recorder's job table to the scheduler); what runs and when is in
:mod:`monitor.recorder`.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitor.errors import UserError

if TYPE_CHECKING:
    from monitor.recorder import Recorder

log = logging.getLogger("monitor")


def setup_logging(level: str, log_file: Path | None) -> None:
    root = logging.getLogger("monitor")
    root.setLevel(level.upper())
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    if log_file is not None:
        try:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            handler: logging.Handler = logging.handlers.RotatingFileHandler(log_file, maxBytes=1 << 20, backupCount=3)
        except OSError as exc:
            raise UserError(f"cannot write the log {log_file}: {exc.strerror or exc} (pass --log-file PATH)") from None
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


def schedule_jobs(scheduler: Any, recorder: Recorder) -> None:
    """Hand the recorder's job table to APScheduler. Coalesce everything; never replay a burst after sleep."""
    from monitor.scheduling import JOB_DEFAULTS

    for job in recorder.jobs():
        scheduler.add_job(job.run, job.trigger, id=job.id, misfire_grace_time=max(1, int(job.grace)), **JOB_DEFAULTS)


def record_missed_runs(scheduler: Any, recorder: Recorder) -> None:
    """APScheduler skips a scheduled reclaim missed by more than its grace: say so in the history."""
    from monitor.scheduling import EVENT_JOB_MISSED

    def on_missed(event: Any) -> None:
        if not event.job_id.startswith("schedule"):
            return
        sched = recorder.config.schedule[int(event.job_id.removeprefix("schedule"))]
        store = recorder.wiring.open_store()  # the scheduler's own thread: a connection of its own
        try:
            recorder.schedule_missed(sched, event.scheduled_run_time, store)
        finally:
            store.close()
    scheduler.add_listener(on_missed, EVENT_JOB_MISSED)


def run(recorder: Recorder, stop: threading.Event, metrics_server: Any = None) -> int:
    """Run until SIGTERM/SIGINT (which set ``stop``; a reclaim in flight ends its settle early)."""
    from monitor.scheduling import build_scheduler

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    # One worker runs every job that touches the recorder's store connection, in turn (each takes
    # milliseconds); reclaims, which take seconds, run on their own worker with their own connection.
    scheduler = build_scheduler(workers=1, reclaim_workers=1)
    recorder.run_async = lambda fn: scheduler.add_job(fn, executor="reclaim", misfire_grace_time=30)
    schedule_jobs(scheduler, recorder)
    record_missed_runs(scheduler, recorder)
    config, db = recorder.config, recorder.wiring.db
    recorder.store.add_event("watch", f"watcher started (pid {os.getpid()}, every {config.sampling.interval:g}s)")
    log.info("watching: sample every %gs, history %s", config.sampling.interval, db)
    recorder.tick()  # the first sample now, not one interval from now
    scheduler.start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        scheduler.shutdown(wait=True)  # quick: ticks take milliseconds, a reclaim sees `stop` and ends
        if metrics_server is not None:
            metrics_server.close()
        recorder.store.add_event("watch", "watcher stopped")
        log.info("stopped")
    return 0
