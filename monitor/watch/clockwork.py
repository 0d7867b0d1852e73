"""The standalone dashboard's driver of a recorder's job table (the watcher's is APScheduler)."""

from __future__ import annotations

import datetime as dt

from monitor.config.schema import Schedule
from monitor.watch.recorder import Job, Recorder


class Clockwork:
    """Runs a recorder's jobs when they are due, on the caller's thread, with APScheduler's own
    triggers and its coalescing: a job late by more than its grace is skipped (a schedule is
    recorded as missed), and however many runs were missed, at most one runs now.

    A recording dashboard calls :meth:`run_due` from its refresh worker; ``every_call`` names
    jobs that run on every call instead (the dashboard samples on each refresh).
    """

    def __init__(self, recorder: Recorder, every_call: frozenset[str] = frozenset({"tick"})):
        self.recorder = recorder
        self.jobs = recorder.jobs()
        self.every_call = every_call
        now = self._now()
        self.next: dict[str, dt.datetime | None] = {
            j.id: None if j.id in every_call else j.trigger.get_next_fire_time(None, now) for j in self.jobs}
        if "host" in self.next:
            self.next["host"] = now  # the first host figure with the first sample, as the watcher

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.recorder.clock()).astimezone()

    def run_due(self) -> None:
        now = self._now()
        for job in list(self.jobs):
            if job.id in self.every_call:
                job.run()
                continue
            due = self.next.get(job.id)
            period = getattr(job.trigger, "interval", None)  # interval jobs; cron schedules have none
            if due is not None and period is not None and due - now > period:
                # The clock stepped back: an interval job would wait out the step. Start it afresh
                # (a cron schedule keeps its next run, so a run already done is not done again).
                job = self._fresh(job.id)
                due = self.next[job.id] = job.trigger.get_next_fire_time(None, now)
            if due is None or due > now:
                continue
            if (now - due).total_seconds() > job.grace:
                self._missed(job, due)
            else:
                job.run()
            self.next[job.id] = self._after(job, due, now)

    def _fresh(self, job_id: str) -> Job:
        job = next(j for j in self.recorder.jobs() if j.id == job_id)
        self.jobs = [job if j.id == job_id else j for j in self.jobs]
        return job

    @staticmethod
    def _after(job: Job, due: dt.datetime, now: dt.datetime) -> dt.datetime | None:
        """The next fire time after ``now`` (missed runs coalesce into none)."""
        nxt = job.trigger.get_next_fire_time(due, now)
        while nxt is not None and nxt <= now:
            nxt = job.trigger.get_next_fire_time(nxt, now)
        return nxt

    def _missed(self, job: Job, due: dt.datetime) -> None:
        if job.id.startswith("schedule"):
            self.recorder.schedule_missed(self.recorder.config.schedule[int(job.id.removeprefix("schedule"))], due)

    def next_schedule(self) -> tuple[Schedule, dt.datetime] | None:
        """The next scheduled reclaim and when (the dashboard shows it)."""
        runs = [(self.recorder.config.schedule[int(j.removeprefix("schedule"))], t)
                for j, t in self.next.items() if j.startswith("schedule") and t is not None]
        return min(runs, key=lambda r: r[1]) if runs else None
