"""`vmmemctl watch`: the recorder driven by APScheduler 3, as a process.

This module holds the process concerns (logging, signals, handing the
recorder's job table to the scheduler); what runs and when is in
:mod:`monitor.watch.recorder`.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from monitor.errors import UserError
from monitor.notify.worker import DeliveryQueue

if TYPE_CHECKING:
    from monitor.config.schema import Config
    from monitor.watch.recorder import Recorder

log = logging.getLogger("monitor")


def default_log_file() -> Path:
    import platformdirs

    return Path(platformdirs.user_log_dir("vmmemctl")) / "watch.log"


JUMP_TOLERANCE = 5.0  # as the recorder's


def schedule_jobs(scheduler: Any, recorder: Recorder, intervals_only: bool = False) -> None:
    """Hand the recorder's job table to APScheduler. Coalesce everything; never replay a burst after sleep."""
    from monitor.watch.scheduling import JOB_DEFAULTS

    for job in recorder.jobs():
        if intervals_only and job.id.startswith("schedule"):
            continue
        scheduler.add_job(job.run, job.trigger, id=job.id, misfire_grace_time=max(1, int(job.grace)), **JOB_DEFAULTS)


def record_missed_runs(scheduler: Any, recorder: Recorder) -> None:
    """APScheduler skips a scheduled reclaim missed by more than its grace: say so in the history."""
    from monitor.watch.scheduling import EVENT_JOB_MISSED

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


@dataclass
class Reloader:
    """What SIGHUP re-reads: ``load()`` gives the config and the metrics listen address as at start
    (the file again, then the command line's overrides again); raises a one-line UserError."""

    load: Callable[[], tuple[Config, str]]
    environment: Any = None  # for a Metrics made when a reload turns metrics on
    listen: str = ""
    server: Any = None


def reload(scheduler: Any, recorder: Recorder, reloader: Reloader) -> None:
    """SIGHUP, on the jobs' thread: a valid config takes effect at the next tick; an invalid one is
    refused (one line in the log, one event) and the old config stays."""
    from monitor.notify import build_notifier

    try:
        config, listen = reloader.load()
    except UserError as exc:
        log.error("reload refused: %s; the old config stays", exc)
        recorder.store.add_event("watch", f"reload refused: {exc}; the old config stays")
        return
    old_ids = {job.id for job in recorder.jobs()}
    recorder.wiring.config = config  # what the next reclaim is built with
    changed = recorder.reconfigure(config, build_notifier(config.notify))
    for job_id in old_ids:
        if scheduler.get_job(job_id):
            scheduler.remove_job(job_id)
    schedule_jobs(scheduler, recorder)
    if listen != reloader.listen:
        changed.append(_relisten(recorder, reloader, listen))
    words = f"config reloaded from {config.path or 'defaults'}: " + (", ".join(changed) or "nothing changed") + \
        f" (every {config.sampling.interval:g}s, {len(config.rule)} rules, {len(config.schedule)} schedules)"
    log.info("%s", words)
    recorder.store.add_event("watch", words, data={"changed": changed})


def _relisten(recorder: Recorder, reloader: Reloader, listen: str) -> str:
    from monitor.config.schema import split_listen
    from monitor.watch.metrics import Metrics

    if reloader.server is not None:
        reloader.server.close()
        reloader.server = None
    reloader.listen = listen
    if not listen:
        return "metrics off"
    try:
        host, port = split_listen(listen)
        if recorder.metrics is None:
            recorder.metrics = Metrics(reloader.environment)
        reloader.server = recorder.metrics.serve(host, port)
        return f"metrics on {listen}"
    except (ValueError, UserError) as exc:
        log.error("metrics: %s", exc)
        recorder.store.add_event("error", f"metrics on reload: {exc}")
        return f"metrics not served ({exc})"


def run(recorder: Recorder, stop: threading.Event, metrics_server: Any = None,
        reloader: Reloader | None = None) -> int:
    """Run until SIGTERM/SIGINT (which set ``stop``; a reclaim in flight ends its settle early);
    SIGHUP re-reads the config (:func:`reload`)."""
    from monitor.watch.scheduling import build_scheduler

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    early: list[int] = []  # a SIGHUP before the scheduler runs is kept for it (by default it would end us)
    signal.signal(signal.SIGHUP, lambda *_: early.append(1))
    # One worker runs every job that touches the recorder's store connection, in turn (each takes
    # milliseconds); reclaims, which take seconds, run on their own worker with their own connection.
    scheduler = build_scheduler(workers=1, reclaim_workers=1)
    recorder.run_async = lambda fn: scheduler.add_job(fn, executor="reclaim", misfire_grace_time=30)
    deliveries = DeliveryQueue()
    recorder.deliver = deliveries.submit
    schedule_jobs(scheduler, recorder)
    record_missed_runs(scheduler, recorder)
    config, db = recorder.config, recorder.wiring.db
    recorder.store.add_event("watch", f"watcher started (pid {os.getpid()}, every {config.sampling.interval:g}s)")
    log.info("watching: sample every %gs, history %s", config.sampling.interval, db)
    recorder.tick()  # the first sample now, not one interval from now
    scheduler.start()
    if reloader is not None:
        reloader.server = reloader.server or metrics_server
        # The handler only queues the reload on the jobs' worker, so it runs between ticks, never in one.
        def queue_reload(*_: object) -> None:
            scheduler.add_job(reload, args=(scheduler, recorder, reloader), id="reload", replace_existing=True,
                              misfire_grace_time=60)
        signal.signal(signal.SIGHUP, queue_reload)
        if early:
            queue_reload()
    try:
        last = (time.time(), time.monotonic())
        while not stop.wait(1.0):
            now = (time.time(), time.monotonic())
            jump = (now[0] - last[0]) - (now[1] - last[1])
            if abs(jump) > JUMP_TOLERANCE:
                # APScheduler 3 keeps wall-clock next-run times: after a step back the interval jobs
                # would wait out the step (an hour back: no sample for an hour). Schedule them afresh;
                # cron schedules keep theirs, so a run already done is not done again.
                log.warning("the wall clock jumped %+.0fs: sampling rescheduled from now", jump)
                schedule_jobs(scheduler, recorder, intervals_only=True)
            last = now
    finally:
        scheduler.shutdown(wait=True)  # quick: ticks take milliseconds, a reclaim sees `stop` and ends
        notify = recorder.config.notify
        deliveries.close(notify.timeout * max(1, len(notify.backends)))  # each backend is tried in turn
        server = reloader.server if reloader is not None else metrics_server
        if server is not None:
            server.close()
        recorder.store.add_event("watch", "watcher stopped")
        log.info("stopped")
    return 0
