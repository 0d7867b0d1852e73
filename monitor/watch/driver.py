"""The one driver of a recording: the recorder's job table run by APScheduler 3.

`vmmemctl watch` and a standalone dashboard both record through a
:class:`~monitor.watch.recorder.Recorder`; both hand its :meth:`jobs` to a
:class:`Driver`, which adds them to an APScheduler scheduler (a thread of its
own in the watcher, Textual's event loop in the dashboard), records the
schedules it missed, runs the reclaims on a worker of their own, and adds the
jobs again on a reload. Coalescing, grace and missed runs are APScheduler's;
a wall clock stepping back is handled by the scheduler itself
(:class:`monitor.watch.scheduling.StepSafe`); what a jump means for the policy
is measured once, by the recorder's tick.

    driver = Driver(recorder)                       # the watcher
    driver = Driver(recorder, event_loop=loop, guard=lock, after=on_job)   # a dashboard
    driver.start(); ...; driver.reschedule(); ...; driver.shutdown()
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import TYPE_CHECKING, Any, Callable, ContextManager

if TYPE_CHECKING:
    from monitor.config.schema import Schedule
    from monitor.watch.recorder import Job, Recorder

RECLAIM_GRACE = 30  # a reclaim handed to its worker runs if it starts within this many seconds


class Driver:
    def __init__(self, recorder: Recorder, event_loop: Any = None, guard: ContextManager[Any] | None = None,
                 after: Callable[[str], None] | None = None):
        """``guard`` is held while a job runs (the dashboard's lock around its store connection; else a
        lock of our own, which a reload takes too); ``after(job_id)`` is called when a job has run (the
        dashboard refreshes its screen)."""
        from monitor.watch.scheduling import build_scheduler

        self.recorder = recorder
        # The watcher runs its jobs (milliseconds each) on the scheduler's own thread; a dashboard's
        # scheduler lives on the screen's event loop, so its jobs go to a worker thread.
        self.scheduler = build_scheduler(workers=1, reclaim_workers=1, event_loop=event_loop,
                                         inline=event_loop is None)
        self.guard = guard if guard is not None else threading.Lock()
        self.after = after
        self.closed = threading.Event()
        self._ids: set[str] = set()
        recorder.run_async = self.run_async
        recorder.jobs_changed = self.jobs_changed

    def run_async(self, fn: Callable[[], None]) -> None:
        """A reclaim (seconds to minutes) on its own worker, beside the ticks."""
        from monitor.watch.scheduling import once

        self.scheduler.add_job(fn, once(), executor="reclaim", misfire_grace_time=RECLAIM_GRACE)

    def start(self) -> None:
        from monitor.watch.scheduling import EVENT_JOB_MISSED

        self._add_jobs()
        self.scheduler.add_listener(self._on_missed, EVENT_JOB_MISSED)
        self.scheduler.start()

    def reschedule(self) -> None:
        """The recorder's jobs again (after a reload changed intervals or schedules)."""
        for job_id in self._ids:
            if self.scheduler.get_job(job_id):
                self.scheduler.remove_job(job_id)
        self._add_jobs()

    def jobs_changed(self) -> None:
        """The recorder's table changed (it now owns the VM: its schedules join): added again soon,
        outside the job that said so."""
        self.call_soon(self.reschedule)

    def call_soon(self, fn: Callable[[], None]) -> None:
        """``fn`` on a thread of its own, now: never as a job. The watcher runs its jobs inside the
        scheduler's pass over the due jobs, and jobs removed and added there would be overwritten (or,
        removed, fail the pass) by the pass's own bookkeeping. ``fn`` takes :attr:`guard` for what it
        does to the recorder, and never holds it while it changes the jobs (a tick waiting for the guard
        holds the scheduler's lock)."""
        if not self.closed.is_set():
            threading.Thread(target=fn, name="vmmemctl-driver", daemon=True).start()

    def run_now(self, job_id: str) -> None:
        """Run a job at the next wakeup instead of at its time (the dashboard samples a reclaim's effect)."""
        if not self.closed.is_set() and self.scheduler.get_job(job_id):
            self.scheduler.modify_job(job_id, next_run_time=dt.datetime.now().astimezone())

    def next_schedule(self) -> tuple[Schedule, dt.datetime] | None:
        """The next scheduled reclaim and when, as the scheduler has it."""
        runs = [(self.recorder.config.schedule[int(job.id.removeprefix("schedule"))], job.next_run_time)
                for job in self.scheduler.get_jobs()
                if job.id.startswith("schedule") and job.next_run_time is not None]
        return min(runs, key=lambda r: r[1]) if runs else None

    def shutdown(self, wait: bool = True) -> None:
        """Stop the scheduler; a job already queued does nothing once this returns."""
        self.closed.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=wait)

    # ------------------------------------------------------------ pieces

    def _add_jobs(self) -> None:
        from monitor.watch.scheduling import JOB_DEFAULTS

        jobs = self.recorder.jobs()
        for job in jobs:
            self.scheduler.add_job(self._runner(job), job.trigger, id=job.id,
                                   misfire_grace_time=max(1, int(job.grace)), **JOB_DEFAULTS)
        self._ids = {job.id for job in jobs}

    def _runner(self, job: Job) -> Callable[[], None]:
        def run() -> None:
            with self.guard:
                if self.closed.is_set():  # queued before shutdown: the recorder may be closed already
                    return
                job.run()
            if self.after is not None:
                self.after(job.id)
        run.__name__ = run.__qualname__ = f"vmmemctl {job.id}"  # what APScheduler's log lines name
        return run

    def _on_missed(self, event: Any) -> None:
        """APScheduler skipped a scheduled reclaim missed by more than its grace: say so in the history."""
        if not event.job_id.startswith("schedule") or self.closed.is_set():
            return
        sched = self.recorder.config.schedule[int(event.job_id.removeprefix("schedule"))]
        store = self.recorder.wiring.open_store()  # the scheduler's own thread: a connection of its own
        try:
            self.recorder.schedule_missed(sched, event.scheduled_run_time, store)
        finally:
            store.close()
