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
from monitor.units import format_bytes, format_duration
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


def next_schedule(config: Config, now: float, timezone: dt.tzinfo | None = None) -> tuple[Schedule, dt.datetime] | None:
    """The next [[schedule]] run by the config's cron lines (a watcher elsewhere runs them), in the local
    zone with its DST rules (``timezone``: tests)."""
    from monitor.watch.scheduling import local_zone, next_runs

    zone = timezone or local_zone()
    runs = [(sched, run) for sched in config.schedule
            for run in next_runs(sched.cron, 1, dt.datetime.fromtimestamp(now, zone), zone)]
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


# ------------------------------------------------------------------ an event's data, for a person

_TIME_KEYS = ("t", "time", "started", "ended", "since", "until", "learned_at")
_EPOCH_FLOOR = 1e9  # a number this large under a time key is a timestamp (2001 on), not a count


def detail_lines(data: dict, now: float, localtime: LocalTime = time.localtime, indent: str = "") -> list[str]:
    """An event's data in words (issue 28: it was raw JSON, `"started": 1796614017.875673`): sizes as
    sizes, times as local clock times, durations as durations, traces and steps summed up; the raw
    record stays one key away (the event screen's `j`)."""
    out = []
    for key, value in sorted(data.items(), key=lambda kv: _detail_order(*kv)):
        name = _LABELS.get(key) or key.replace("_bytes", "").removesuffix("_s").replace("_", " ")  # "reread after"
        if isinstance(value, list) and len(value) > 1 and all(isinstance(v, str) for v in value):
            out.append(f"{indent}{name}:")
            out.extend(f"{indent}  - {v}" for v in value)
        elif isinstance(value, dict):
            out.append(f"{indent}{name}:")
            out.extend(detail_lines(value, now, localtime, indent + "  "))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            out.append(f"{indent}{name}: {len(value)}")
            for i, item in enumerate(value, 1):
                words = ", ".join(line.strip() for line in detail_lines(item, now, localtime))
                out.append(f"{indent}  {i}. {words}")
        elif isinstance(value, list) and value and all(isinstance(v, list) and len(v) == 2 for v in value):
            first, last = value[0], value[-1]  # a trace: (seconds after, bytes)
            out.append(f"{indent}{name}: {len(value)} readings over {format_duration(last[0])}, "
                       f"{format_bytes(first[1])} -> {format_bytes(last[1])}")
        elif key == "reread_bytes_after" and value is None and data.get("reread_why"):
            out.append(f"{indent}{name}: not attributable ({data['reread_why']})")  # a group gone, no counter
        else:
            out.append(f"{indent}{name}: {_value_words(key, value, now, localtime)}")
    return out


# A cost's words (monitor/reclaim/cost.py): after a drop its disk reads are nobody's re-read (issue 26)
_LABELS = {"disk_reads_bytes_after": "disk reads after (not attributable)",
           "residency_bytes_after": "the trees' cache back after"}

_FIRST = ("freed_bytes", "page_cache_before_bytes", "page_cache_after_bytes", "host_before_bytes", "host_after_bytes",
          "started", "duration_s", "stop_reason", "working_set_bytes", "reread_bytes_after")


def _detail_order(key: str, value: Any) -> tuple[int, int]:
    """What a person asks first (how much came back, when, how long) first; lists and records last."""
    if key in _FIRST:
        return 0, _FIRST.index(key)
    return (2 if isinstance(value, (dict, list)) else 1), 0


def _value_words(key: str, value: Any, now: float, localtime: LocalTime) -> str:
    if value is None:
        return "not attributable (a drop leaves no refaults)" if key == "reread_bytes_after" else "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, list):
            return ", ".join(str(v) for v in value) or "none"
        return str(value)
    if key.endswith("_bytes") or "_bytes_" in key:  # (a cost's: reread_bytes_after)
        return format_bytes(value)
    if (key in _TIME_KEYS or key.endswith(("_at", "_until", "_start", "_end"))) and value > _EPOCH_FLOOR:
        return clock_text(value, now, localtime)
    if key.endswith("_s") or key in ("duration", "elapsed", "window", "jump"):
        return format_duration(value)
    if key.endswith(("_percent", "avg10", "_share")):
        return f"{value:.1f}%"
    return f"{value:g}" if isinstance(value, float) else str(value)
