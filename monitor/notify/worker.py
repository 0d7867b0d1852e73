"""Deliveries off the sampling thread: a notification waits on its backends (each up to [notify]
timeout, tried in turn), and sampling must not wait with it (issue 24: three backends x 10 s
held sampling for 30 s). One worker thread, a bounded queue: past it a notification is dropped
and logged, never queued without end behind a backend that hangs."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Callable

log = logging.getLogger("monitor.notify")
QUEUE_SIZE = 16  # notifications are rate-limited per condition: more than this waiting means a backend hangs


class DeliveryQueue:
    def __init__(self, size: int = QUEUE_SIZE):
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue(size)
        self._thread = threading.Thread(target=self._run, name="notifications", daemon=True)
        self._thread.start()

    def submit(self, deliver: Callable[[], None]) -> bool:
        """Queue one delivery; False (and a log line) when the queue is full."""
        try:
            self._queue.put_nowait(deliver)
            return True
        except queue.Full:
            log.warning("%d notifications are waiting on a backend: this one is dropped", self._queue.maxsize)
            return False

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every queued delivery ran (True), or ``timeout`` passed (False)."""
        done = threading.Event()
        if not self.submit(done.set):
            return False
        return done.wait(timeout)

    def close(self, timeout: float) -> None:
        """Let what is queued go out, waiting at most ``timeout`` seconds (the watcher is stopping)."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            deliver = self._queue.get()
            if deliver is None:
                return
            try:
                deliver()
            except Exception as exc:  # one failed delivery never ends the worker
                log.error("notification failed: %s", exc, exc_info=exc)
