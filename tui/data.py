"""What the dashboard shows, shaped from store rows: no Textual here, so tests call it directly.

Everything takes plain rows (the dicts :meth:`monitor.store.Store.series`
returns, or :func:`monitor.store.sample_row` of a live sample), events and
the config, and returns small records the widgets print as they are:

    cards     the numbers with a trend arrow (latest vs ``TREND_WINDOW`` ago)
    chart     host footprint and page cache on one time axis, bucketed to
              the chart's width, broken where the history has a gap, with
              the configured thresholds and the reclaims marked
    events    one line per event, newest first
    header    environment, host source, mode, auto-reclaim state
"""

from __future__ import annotations

import datetime as dt

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from monitor.config import Config, Schedule
from monitor.policy import PolicyState
from monitor.units import format_bytes, format_duration

GiB, MiB = 1024**3, 1024**2
RANGES = {"5m": 300.0, "1h": 3600.0, "24h": 86400.0, "7d": 7 * 86400.0}
RANGE_NAMES = tuple(RANGES)
TREND_WINDOW = 300.0  # arrows compare the latest sample with the one this long before it
FLAT_BYTES = 16 * MiB  # a change smaller than this (or 1% of the value) is "steady"
FLAT_POINTS = 1.0  # percentage points, for PSI and CPU
Row = dict[str, Any]
LocalTime = Callable[[float], time.struct_time]


def next_range(current: str) -> str:
    return RANGE_NAMES[(RANGE_NAMES.index(current) + 1) % len(RANGE_NAMES)]


# ------------------------------------------------------------------ trends and cards


@dataclass(frozen=True)
class Trend:
    arrow: str  # "↑", "↓", "→", or "" when there is nothing to compare with
    delta: float | None = None
    mood: str = "neutral"  # good | bad | neutral: which way this number should go


def trend(rows: Sequence[Row], key: str, *, percent: bool = False, good: str | None = "down",
          window: float = TREND_WINDOW) -> Trend:
    """The latest value of ``key`` against the earliest one within ``window`` before it."""
    points = [(r["t"], r.get(key)) for r in rows if r.get(key) is not None]
    if len(points) < 2:
        return Trend("")
    t_last, last = points[-1]
    base = next(v for t, v in points if t >= t_last - window)
    delta = last - base
    flat = FLAT_POINTS if percent else max(FLAT_BYTES, abs(last) * 0.01)
    if abs(delta) < flat:
        return Trend("→", delta)
    up = delta > 0
    mood = "neutral" if good is None else ("good" if (up == (good == "up")) else "bad")
    return Trend("↑" if up else "↓", delta, mood)


@dataclass(frozen=True)
class Card:
    key: str
    label: str
    value: str
    trend: Trend = field(default_factory=lambda: Trend(""))
    delta: str = ""  # the change over the trend window, in words ("+120 MiB")
    detail: str = ""  # a second line when there is room


def _delta_bytes(t: Trend) -> str:
    if t.delta is None or t.arrow in ("", "→"):
        return ""
    return short_bytes(t.delta, signed=True)


def _delta_points(t: Trend) -> str:
    if t.delta is None or t.arrow in ("", "→"):
        return ""
    return f"{t.delta:+.1f}pt"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}%"


def short_bytes(n: int | float | None, signed: bool = False) -> str:
    """``11.4G``, ``+200M``: where a card or a legend has room for a few characters only."""
    return format_bytes(n, signed=signed).replace(" GiB", "G").replace(" MiB", "M").replace(" KiB", "K")


def _share(part: int | None, total: int | None) -> str:
    if part is None or not total:
        return ""
    return f"{100 * part / total:.0f}% of RAM"


def host_words(row: Row | None) -> str:
    """``measured (interop)`` or ``estimated``: the host number's honesty, in two words."""
    if not row or row.get("host_bytes") is None:
        return "unknown"
    source = row.get("host_source")
    if source is None:  # a rolled-up row keeps no source
        return "from history"
    return "estimated" if row.get("host_estimated", 1) else f"measured ({source})"


def build_cards(rows: Sequence[Row]) -> list[Card]:
    """The cards for the latest row, with trends from ``rows`` (the last few minutes, oldest first)."""
    last = rows[-1] if rows else {}
    total = last.get("total")

    def size_card(key: str, label: str, column: str, good: str | None, detail: str = "") -> Card:
        t = trend(rows, column, good=good)
        return Card(key, label, format_bytes(last.get(column)), t, _delta_bytes(t), detail)

    ret, frag = trend(rows, "returnable_free", good="up"), trend(rows, "fragmented_free", good="down")
    psi_m = trend(rows, "psi_memory_some_avg10", percent=True)
    psi_i = trend(rows, "psi_io_some_avg10", percent=True)
    cpu = trend(rows, "cpu_busy_percent", percent=True)
    psi_value = ("n/a" if last.get("psi_memory_some_avg10") is None and last.get("psi_io_some_avg10") is None
                 else f"{_pct(last.get('psi_memory_some_avg10'))}{psi_m.arrow} / "
                      f"{_pct(last.get('psi_io_some_avg10'))}{psi_i.arrow}")
    return [
        size_card("host", "host footprint", "host_bytes", "down", host_words(last)),
        size_card("anon", "programs (anon)", "anon", None, _share(last.get("anon"), total)),
        size_card("page_cache", "page cache", "page_cache", "down", _share(last.get("page_cache"), total)),
        size_card("reclaimable", "reclaimable", "reclaimable", "down", "a drop frees this now"),
        Card("returnable", "returnable / frag.",
             f"{short_bytes(last.get('returnable_free'))} / {short_bytes(last.get('fragmented_free'))}",
             ret, _delta_bytes(ret), "free the host can / cannot take"),
        Card("psi", "PSI memory / io", psi_value, Trend(""), "",
             "pressure, some avg10" if psi_value != "n/a" else "no /proc/pressure here"),
        Card("cpu", "CPU busy", _pct(last.get("cpu_busy_percent")), cpu, _delta_points(cpu), "guest, all CPUs"),
        Card("guest", "guest RAM", format_bytes(total), Trend(""), "",
             f"{format_bytes(last.get('available'))} available" if last.get("available") is not None else ""),
    ]


# ------------------------------------------------------------------ the chart


@dataclass(frozen=True)
class Threshold:
    label: str  # the rule's name
    metric: str  # page_cache | reclaimable | host
    bytes: int


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

    @property
    def empty(self) -> bool:
        return not any(self.host) and not any(self.cache)


def thresholds(config: Config, row: Row | None) -> list[Threshold]:
    """The rules whose metric the chart draws, resolved to bytes against the latest row."""
    if not row:
        return []
    out = []
    for rule in config.rule:
        if rule.metric not in ("page_cache", "reclaimable", "host"):
            continue  # host_gap is a difference, not a line on this chart
        total = row.get("host_total") if rule.metric == "host" else row.get("total")
        limit = rule.above.resolve(total)
        if limit is not None:
            out.append(Threshold(rule.label, rule.metric, limit))
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
    top = max([v for run in host + cache for _, v in run] or [0.0])
    y_max = max(top * 1.15, 64 * MiB)
    nearest = limits[0].bytes if limits else None
    if nearest is not None and nearest <= 2 * y_max:  # draw the nearest line, unless it would flatten the trend
        y_max = max(y_max, nearest * 1.08)
    inside = [th for th in limits if th.bytes <= y_max]
    above = [th for th in limits if th.bytes > y_max]
    marks = sorted(t for t in reclaims if since <= t <= until)
    key = picture_key(tier, since, until, n, y_max, [host, cache], (inside, above, marks))
    return ChartData(since, until, tier, host, cache, inside, above, marks, y_max, len(rows), key)


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


# ------------------------------------------------------------------ events and words


KIND_WORDS = {"crossing": "crossing", "notify": "notified", "prompt": "prompt", "answer": "answer",
              "reclaim": "reclaim", "schedule": "schedule", "error": "error", "state": "state", "watch": "watcher"}


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
        out.append(EventLine(e.id, clock_text(e.t, now, localtime), KIND_WORDS.get(e.kind, e.kind), text, e.status))
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
    from monitor.cron import next_runs

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


# ------------------------------------------------------------------ reclaim offers




@dataclass(frozen=True)
class Offer:
    method: str
    chain: list[str]  # what runs, in order ("gradual", "compact")
    gain: int | None  # bytes of page cache expected to be freed (compact: free memory made returnable)
    words: str  # "frees about 3.1 GiB of page cache, then compacts"
    notes: list[str] = field(default_factory=list)


def expected_gain(method: str, chain: Sequence[str], row: Row | None, config: Config) -> tuple[int | None, str]:
    """What a reclaim with ``chain`` should give, from the latest row: the promise the confirm shows."""
    row = row or {}
    reclaimable, cache, total = row.get("reclaimable"), row.get("page_cache"), row.get("total")
    first = chain[0] if chain else method
    then = ", then compacts" if "compact" in chain[1:] else ""
    if first == "compact":
        frag = row.get("fragmented_free")
        return frag, f"makes up to {format_bytes(frag)} of fragmented free memory returnable"
    if first == "gradual":
        floor = config.reclaim.gradual_floor.resolve(total) or 0
        gain = None if cache is None else max(0, min(cache - floor, reclaimable if reclaimable is not None else cache))
        return gain, (f"frees about {format_bytes(gain)} of cold page cache in steps, keeping "
                      f"{format_bytes(floor)} (the hot set){then}")
    if first == "full":
        slab = row.get("slab_reclaimable") or 0
        gain = None if reclaimable is None else reclaimable + slab
        return gain, f"frees about {format_bytes(gain)} (page cache + dentries/inodes){then}"
    return reclaimable, f"frees about {format_bytes(reclaimable)} of page cache at once{then}"


def make_offer(method: str, plan: Callable[[str], tuple[list[str], list[str]]], row: Row | None,
               config: Config) -> Offer:
    chain, notes = plan(method)
    gain, words = expected_gain(method, chain, row, config)
    return Offer(method, chain, gain, words, notes)


def describe_gain(offer: Offer) -> str:
    steps = " + ".join(offer.chain)
    return f"{offer.method} ({steps}): {offer.words}"
