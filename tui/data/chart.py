"""The chart: host footprint and page cache on one time axis, bucketed to the chart's width,
broken where the history has a gap, with the thresholds, the reclaims and the host metric's changes
marked; and its axes."""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from monitor.config.schema import Config
from monitor.history.store import MIXED
from tui.data.common import GiB, LocalTime, MiB, Row


@dataclass(frozen=True)
class Threshold:
    label: str  # the rule's name
    metric: str  # page_cache | reclaimable | host | host_available
    bytes: int
    inactive: bool = False  # a reclaim rule while [policy] auto_reclaim is off: it would reclaim, but will not


@dataclass(frozen=True)
class ChartData:
    since: float
    until: float
    tier: str
    host: list[list[tuple[float, float]]]  # runs of (t, bytes); a gap in the history ends a run
    cache: list[list[tuple[float, float]]]
    thresholds: list[Threshold]  # the ones inside the y range
    above: list[Threshold]  # configured, but above the y range (named in the legend)
    reclaims: list[float]  # start times of reclaims within the range
    y_max: float
    rows: int  # rows read from the store
    key: tuple = ()  # equal keys draw the same picture (the range moved by less than one bucket)
    # (t, from, to) where the host figure changed metric (a source switch, issue 27): marked on the chart
    metric_changes: tuple[tuple[float, str, str], ...] = ()
    # the host's own available memory (Windows' Available Bytes, issue 27): runs of (t, bytes), as host
    available: list[list[tuple[float, float]]] = dataclasses.field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not any(self.host) and not any(self.cache)


def thresholds(config: Config, row: Row | None) -> list[Threshold]:
    """The rules whose metric the chart draws, resolved to bytes against the latest row."""
    if not row:
        return []
    out = []
    for rule in config.rule:
        if rule.metric not in ("page_cache", "reclaimable", "host", "host_available") or rule.cgroup:
            # (a group's cache is not the VM's line)
            continue  # host_gap is a difference, not a line on this chart
        if rule.metric == "host_available" and row.get("host_available") is None:
            continue  # no available line to cross (plain Linux, the estimate)
        total = row.get("host_total") if rule.metric in ("host", "host_available") else row.get("total")
        limit = rule.threshold.resolve(total)
        if limit is not None:
            inactive = rule.action == "reclaim" and not config.policy.auto_reclaim
            out.append(Threshold(rule.label, rule.metric, limit, inactive))
    return sorted(out, key=lambda th: th.bytes)


def bucket(rows: Sequence[Row], key: str, since: float, until: float, buckets: int) -> list[tuple[float, float]]:
    """Mean of ``key`` per time bucket (``buckets`` across the range); empty buckets are left out."""
    width = (until - since) / max(1, buckets)
    sums: dict[int, list[float]] = {}
    for r in rows:
        v = r.get(key)
        if v is None or not since <= r["t"] <= until:
            continue
        i = min(buckets - 1, int((r["t"] - since) / width))
        acc = sums.setdefault(i, [0.0, 0.0, 0])
        acc[0] += r["t"]
        acc[1] += v
        acc[2] += 1
    return [(acc[0] / acc[2], acc[1] / acc[2]) for _, acc in sorted(sums.items())]


def split_runs(points: Sequence[tuple[float, float]], max_gap: float) -> list[list[tuple[float, float]]]:
    """Break a line where consecutive points are further apart than ``max_gap`` (the watcher was off)."""
    runs: list[list[tuple[float, float]]] = []
    for p in points:
        if runs and p[0] - runs[-1][-1][0] <= max_gap:
            runs[-1].append(p)
        else:
            runs.append([p])
    return runs


# The host metric in the chart's few words (monitor.sample.HOST_METRIC_WORDS has them in full).
METRIC_SHORT = {"private_working_set": "private set", "working_set": "whole working set", "rss": "RSS",
                "estimate": "estimate", MIXED: "mixed"}


def metric_changes(rows: Sequence[Row], since: float, until: float) -> tuple[tuple[float, str, str], ...]:
    """Where the host figure's metric changed, as (t, from, to), oldest first. Rows with no figure or no
    metric (an older history's) change nothing; a roll-up bucket that mixed two metrics (``mixed``)
    is where the change is marked, from the metric before it to the one after it."""
    out = []
    last: str | None = None
    mixed_at: float | None = None
    for r in rows:
        metric = r.get("host_metric")
        if r.get("host_bytes") is None or metric is None:
            continue
        if metric == MIXED:
            mixed_at = r["t"] if mixed_at is None else mixed_at
            continue
        if last is not None and metric != last:
            out.append((r["t"] if mixed_at is None else mixed_at, last, metric))
        last, mixed_at = metric, None
    if mixed_at is not None:  # the newest bucket mixed them: the change is there, its end not yet known
        out.append((mixed_at, last or MIXED, MIXED))
    return tuple(c for c in out if since <= c[0] <= until)


def sample_step(rows: Sequence[Row]) -> float:
    """The usual time between rows (the median), so a gap can be told from the sampling rhythm."""
    ts = [r["t"] for r in rows]
    steps = [b - a for a, b in zip(ts, ts[1:]) if b > a]
    return statistics.median(steps) if steps else 0.0


def chart_data(rows: Sequence[Row], tier: str, since: float, until: float, *, columns: int,
               limits: Sequence[Threshold] = (), reclaims: Iterable[float] = ()) -> ChartData:
    """The chart for [since, until]: two pixels per column (braille), lines broken at gaps."""
    n = max(8, 2 * columns)
    max_gap = max(3 * sample_step(rows), 2.5 * (until - since) / n)
    host = split_runs(bucket(rows, "host_bytes", since, until, n), max_gap)
    cache = split_runs(bucket(rows, "page_cache", since, until, n), max_gap)
    available = split_runs(bucket(rows, "host_available", since, until, n), max_gap)
    top = max([v for run in host + cache + available for _, v in run] or [0.0])
    y_max = max(top * 1.15, 64 * MiB)
    nearest = limits[0].bytes if limits else None
    if nearest is not None and nearest <= 2 * y_max:  # draw the nearest line, unless it would flatten the trend
        y_max = max(y_max, nearest * 1.08)
    inside = [th for th in limits if th.bytes <= y_max]
    above = [th for th in limits if th.bytes > y_max]
    marks = sorted(t for t in reclaims if since <= t <= until)
    changes = metric_changes(rows, since, until)
    key = picture_key(tier, since, until, n, y_max, [host, cache, available], (inside, above, marks, changes))
    return ChartData(since, until, tier, host, cache, inside, above, marks, y_max, len(rows), key, changes,
                     available)


def picture_key(tier: str, since: float, until: float, n: int, y_max: float,
                lines: Sequence[Sequence[Sequence[tuple[float, float]]]], extra: Any) -> tuple:
    """Equal keys draw (nearly) the same picture, so the chart is redrawn only when it moved: the range
    slid by a bucket (a braille dot), the scale changed, a line gained a run, or its newest point moved
    by a dot (1/64 of the height). At 1 h a dot is 16 s: viewing redraws every 16 s, not every 2 s."""
    width, step = (until - since) / n, y_max / 64
    ends = tuple((len(runs), round((runs[-1][-1][0] - since) / width), round(runs[-1][-1][1] / step)) if runs else ()
                 for runs in lines)
    return (tier, n, round(until / width), round(y_max / (64 * MiB)), ends, tuple(map(tuple, extra)))


def choose_tier(span: float, columns: int, finest: str, tiers: Sequence[tuple[str, int]]) -> str:
    """The coarsest tier that still gives a row per braille pixel (2 per column), never finer than
    ``finest`` (the store's pick: the finest tier that keeps that far back). 7 days over 100
    columns: one pixel is 50 minutes, so 10-minute rows draw the same picture as 1-minute rows
    from a tenth of the rows."""
    names = [name for name, _ in tiers]
    per_pixel = span / max(1, 2 * columns)
    pick = finest
    for name, width in tiers[names.index(finest):]:
        if width <= per_pixel:
            pick = name
    return pick


def reclaim_times(events: Iterable[Any]) -> list[float]:
    """When each recorded reclaim started (its data says; the event is written after the settle)."""
    out = []
    for e in events:
        if e.kind == "reclaim" and e.status != "skipped":
            started = (e.data or {}).get("started")
            out.append(float(started) if isinstance(started, (int, float)) and started else e.t)
    return out


# ------------------------------------------------------------------ axes


NICE = (1.0, 2.0, 2.5, 5.0, 10.0)
TIME_STEPS = (10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800)


def nice_step(span: float, max_ticks: int) -> float:
    """The smallest 1/2/2.5/5 x 10^k step that puts at most ``max_ticks`` ticks on ``span``."""
    if span <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(span / max(1, max_ticks)))
    candidates = [m * power * scale for scale in (1, 10, 100) for m in NICE]
    return next((c for c in candidates if math.floor(span / c + 1e-9) + 1 <= max_ticks), candidates[-1])


def byte_ticks(low: float, high: float, max_ticks: int = 6) -> tuple[list[float], list[str]]:
    """Ticks in bytes at round GiB (or MiB) values, labelled with their unit."""
    unit, name = (GiB, "GiB") if high >= 2 * GiB else (MiB, "MiB")
    step = nice_step((high - low) / unit, max_ticks)
    first = math.ceil(low / unit / step) * step
    values = [first + i * step for i in range(int((high / unit - first) / step + 1e-9) + 1)]
    return [v * unit for v in values], [f"{v:g} {name}" for v in values]


def time_ticks(low: float, high: float, max_ticks: int = 6,
               localtime: LocalTime = time.localtime) -> tuple[list[float], list[str]]:
    """Ticks at round local clock times (every 1 min, 15 min, 6 h, 1 day...), labelled HH:MM or 'Thu 26'."""
    span = high - low
    step = next((s for s in TIME_STEPS if span / s <= max(1, max_ticks - 1)), TIME_STEPS[-1])
    offset = localtime(low).tm_gmtoff  # round in local time, so 6 h ticks land on 00/06/12/18
    first = math.ceil((low + offset) / step) * step - offset
    ticks = [first + i * step for i in range(int((high - first) / step) + 1)]
    fmt = "%a %d" if step >= 86400 else ("%H:%M:%S" if step < 60 else "%H:%M")
    return ticks, [time.strftime(fmt, localtime(t)) for t in ticks]
