"""The events list and the header: one line per event, newest first; environment, host
source, mode, auto-reclaim, snooze, staleness and the next schedule in words."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any, Sequence

from monitor.config.schema import Config, Schedule
from monitor.policy.rules import PolicyState
from monitor.reclaim.cost import cost_words
from monitor.units import format_duration
from tui.data.common import LocalTime

def clock_text(ts: float, now: float, localtime: LocalTime = time.localtime) -> str:
    """``14:03:05`` today, ``Tue 14:03`` within a week, ``2026-11-19`` before."""
    if now - ts < 7 * 86400 and localtime(ts).tm_yday == localtime(now).tm_yday and now - ts < 86400:
        return time.strftime("%H:%M:%S", localtime(ts))
    if now - ts < 7 * 86400:
        return time.strftime("%a %H:%M", localtime(ts))
    return time.strftime("%Y-%m-%d", localtime(ts))


@dataclass(frozen=True)
class EventLine:
    id: int
    when: str
    kind: str
    text: str
    status: str | None


def event_lines(events: Sequence[Any], now: float, localtime: LocalTime = time.localtime) -> list[EventLine]:
    """Newest first; a prompt shows whether it is still open."""
    out = []
    for e in reversed(events):
        text = " ".join(e.message.split())  # one line, whatever the message held
        if e.kind == "prompt" and e.status:
            text = f"[{e.status}] {text}"
        if e.kind == "reclaim":
            text += cost_words(e.data or {})  # the kind and the words as `history --events` prints them
        out.append(EventLine(e.id, clock_text(e.t, now, localtime), e.kind, text, e.status))
    return out


@dataclass(frozen=True)
class Header:
    environment: str
    host: str
    mode: str
    auto: str  # auto-reclaim on / off / paused until
    snooze: str  # "" or "snoozed until 15:00"
    latest: str  # "" or "last sample 2d ago" when the history is old


def auto_words(config: Config, state: PolicyState, now: float, localtime: LocalTime = time.localtime) -> str:
    if not config.policy.auto_reclaim:
        return "auto-reclaim off"
    if state.paused_until and now < state.paused_until:
        return f"auto-reclaim paused until {until_words(state.paused_until, now, localtime)}"
    return "auto-reclaim on"


def snooze_words(state: PolicyState, now: float, localtime: LocalTime = time.localtime) -> str:
    if state.snoozed_until and now < state.snoozed_until:
        return f"snoozed until {until_words(state.snoozed_until, now, localtime)}"
    return ""


def until_words(ts: float, now: float, localtime: LocalTime = time.localtime) -> str:
    """``15:00`` within a day, ``Fri 15:00`` beyond."""
    fmt = "%H:%M" if ts - now < 86400 else "%a %H:%M"
    return time.strftime(fmt, localtime(ts))


def next_schedule(config: Config, now: float) -> tuple[Schedule, dt.datetime] | None:
    """The next [[schedule]] run by the config's cron lines (a watcher elsewhere runs them)."""
    from monitor.watch.scheduling import next_runs

    runs = [(sched, run) for sched in config.schedule
            for run in next_runs(sched.cron, 1, dt.datetime.fromtimestamp(now).astimezone())]
    return min(runs, key=lambda r: r[1]) if runs else None


def staleness(latest_t: float | None, now: float, interval: float) -> str:
    """Words for an old history ("last sample 2d ago"), or "" when it is live."""
    if latest_t is None:
        return "no samples yet"
    age = now - latest_t
    if age <= max(30.0, 5 * interval):
        return ""
    unit = next(u for u in (86400, 3600, 60, 1) if age >= u or u == 1)  # one unit: it changes once a minute at most
    return f"last sample {format_duration(age // unit * unit)} ago"
