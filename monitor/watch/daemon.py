"""`vmmemctl watch`: the recorder driven by APScheduler 3, as a process.

This module holds the process concerns (signals, reload, stopping in order);
what runs and when is in :mod:`monitor.watch.recorder`, and how it is run in
:mod:`monitor.watch.driver`.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from monitor.errors import UserError
from monitor.notify.worker import DeliveryQueue

if TYPE_CHECKING:
    from monitor.config.schema import Config
    from monitor.watch.driver import Driver
    from monitor.watch.recorder import Recorder

log = logging.getLogger("monitor")


def default_log_file() -> Path:
    from monitor.kernel.dirs import user_dir

    return user_dir("log") / "watch.log"


@dataclass
class Reloader:
    """What SIGHUP re-reads: ``load()`` gives the config and the metrics listen address as at start
    (the file again, then the command line's overrides again); raises a one-line UserError."""

    load: Callable[[], tuple[Config, str]]
    environment: Any = None  # for a Metrics made when a reload turns metrics on
    listen: str = ""
    server: Any = None


def reload(driver: Driver, reloader: Reloader) -> None:
    """SIGHUP, on a thread of its own (Driver.call_soon): a valid config takes effect at the next tick;
    an invalid one is refused (one line in the log, one event) and the old config stays. The recorder
    is changed under the jobs' guard, between ticks, never in one; its jobs are replaced after."""
    from monitor.notify import build_notifier

    recorder = driver.recorder
    try:
        config, listen = reloader.load()
    except UserError as exc:
        words = "; ".join(str(exc).splitlines())  # every error in the file, on the one line
        log.error("reload refused: %s; the old config stays", words)
        with driver.guard:
            recorder.store.add_event("watch", f"reload refused: {words}; the old config stays")
        return
    with driver.guard:
        recorder.wiring.config = config  # what the next reclaim is built with
        changed = recorder.reconfigure(config, build_notifier(config.notify))
    driver.reschedule()
    if listen != reloader.listen:
        changed.append(_relisten(recorder, reloader, listen))
    words = f"config reloaded from {config.path or 'defaults'}: " + (", ".join(changed) or "nothing changed") + \
        f" (every {config.sampling.interval:g}s, {len(config.rule)} rules, {len(config.schedule)} schedules)"
    log.info("%s", words)
    with driver.guard:
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
    from monitor.watch.driver import Driver

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    early: list[int] = []  # a SIGHUP before the scheduler runs is kept for it (by default it would end us)
    hup = getattr(signal, "SIGHUP", None)  # Windows has none: a reload comes through the control endpoint
    if hup is not None:
        signal.signal(hup, lambda *_: early.append(1))
    # The scheduler's thread runs every job that touches the recorder's store connection, in turn (each
    # takes milliseconds); reclaims, which take seconds, run on a worker with their own connection.
    driver = Driver(recorder)
    deliveries = DeliveryQueue()
    recorder.deliver = deliveries.submit
    config, db = recorder.config, recorder.wiring.db
    recorder.store.add_event("watch", f"watcher started (pid {os.getpid()}, every {config.sampling.interval:g}s)")
    log.info("watching: sample every %gs, history %s", config.sampling.interval, db)
    recorder.tick()  # the first sample now, not one interval from now
    driver.start()
    if reloader is not None:
        reloader.server = reloader.server or metrics_server
        # The handler only starts the reload on a thread of its own; it changes the recorder between ticks.
        def queue_reload(*_: object) -> None:
            driver.call_soon(lambda: reload(driver, reloader))
        if hup is not None:
            signal.signal(hup, queue_reload)
        if early:
            queue_reload()
    try:
        stop.wait()  # the signal handlers run in this thread and set it; nothing else to do here
    finally:
        driver.shutdown(wait=True)  # quick: ticks take milliseconds, a reclaim sees `stop` and ends
        notify = recorder.config.notify
        deliveries.close(notify.timeout * max(1, len(notify.backends)))  # each backend is tried in turn
        server = reloader.server if reloader is not None else metrics_server
        if server is not None:
            server.close()
        recorder.store.add_event("watch", "watcher stopped")
        log.info("stopped")
    return 0
