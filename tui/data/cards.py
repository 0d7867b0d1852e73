"""The cards: the numbers with a trend arrow (latest vs ``TREND_WINDOW`` ago)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from monitor.units import format_bytes
from tui.data.common import FLAT_BYTES, FLAT_POINTS, TREND_WINDOW, Row


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
    narrower: tuple[str, ...] = ()  # shorter forms of ``detail``, tried in order where it would be cut


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


def file_lru_words(row: Row) -> tuple[str, tuple[str, ...]]:
    """The page cache's split by the kernel's LRU (issue 25), and shorter forms for a narrow card:
    "1.2G active (read again), 7.6G inactive (read once)" ... "1.2G active"; under MGLRU (the row's
    ``mglru``) the split is its generations and the words say so; the share of RAM where the history has no
    split (rows written before it was recorded)."""
    active, inactive = row.get("active_file"), row.get("inactive_file")
    if active is None or inactive is None:
        return _share(row.get("page_cache"), row.get("total")), ()
    a, i = short_bytes(active), short_bytes(inactive)
    if row.get("mglru"):  # MGLRU's generations: "active" is the youngest two, not "read again"
        return (f"{a} active, {i} inactive (MGLRU: generations, not reuse)",
                (f"{a} active, {i} inactive (MGLRU)", f"{a} active (MGLRU)", f"{a} active"))
    return (f"{a} active (read again), {i} inactive (read once)",
            (f"{a} active, {i} inactive", f"{a} active (read again)", f"{a} active"))


def host_words(row: Row | None) -> str:
    """``measured (interop)`` or ``estimated``: the host number's honesty, in two words."""
    if not row or row.get("host_bytes") is None:
        return "unknown"
    source = row.get("host_source")
    if source is None:  # a rolled-up row keeps no source
        return "from history"
    return "estimated" if row.get("host_estimated", 1) else f"measured ({source})"


def host_detail(row: Row) -> tuple[str, tuple[str, ...]]:
    """The host card's second line: how the figure was had and, where known, the host's own available
    memory (Windows' Available Bytes: issue 27), with shorter forms for a narrow card."""
    how = host_words(row)
    available, total = row.get("host_available"), row.get("host_total")
    if available is None:
        return how, ()
    a = short_bytes(available)
    share = f" ({100 * available / total:.0f}%)" if total else ""
    return (f"{how}; host has {a}{share} available",
            (f"{how}; {a} available", f"host has {a}{share} available", f"{a} available"))


def build_cards(rows: Sequence[Row]) -> list[Card]:
    """The cards for the latest row, with trends from ``rows`` (the last few minutes, oldest first)."""
    last = rows[-1] if rows else {}
    total = last.get("total")

    def size_card(key: str, label: str, column: str, good: str | None, detail: str = "",
                  narrower: tuple[str, ...] = ()) -> Card:
        t = trend(rows, column, good=good)
        return Card(key, label, format_bytes(last.get(column)), t, _delta_bytes(t), detail, narrower)

    ret = trend(rows, "returnable_free", good="up")
    psi_m = trend(rows, "psi_memory_some_avg10", percent=True)
    psi_i = trend(rows, "psi_io_some_avg10", percent=True)
    cpu = trend(rows, "cpu_busy_percent", percent=True)
    psi_value = ("n/a" if last.get("psi_memory_some_avg10") is None and last.get("psi_io_some_avg10") is None
                 else f"{_pct(last.get('psi_memory_some_avg10'))}{psi_m.arrow} / "
                      f"{_pct(last.get('psi_io_some_avg10'))}{psi_i.arrow}")
    return [
        size_card("host", "host footprint", "host_bytes", "down", *host_detail(last)),
        size_card("anon", "programs (anon)", "anon", None, _share(last.get("anon"), total)),
        size_card("page_cache", "page cache", "page_cache", "down", *file_lru_words(last)),
        size_card("reclaimable", "reclaimable", "reclaimable", "down", "a drop frees this now"),
        Card("returnable", "returnable / frag.",
             f"{short_bytes(last.get('returnable_free'))} / {short_bytes(last.get('fragmented_free'))}",
             ret, _delta_bytes(ret), "host can take / cannot"),  # fits a 120-column card (was cut)
        Card("psi", "PSI memory / io", psi_value, Trend(""), "",
             "pressure, some avg10" if psi_value != "n/a" else "no /proc/pressure here"),
        Card("cpu", "CPU busy", _pct(last.get("cpu_busy_percent")), cpu, _delta_points(cpu), "guest, all CPUs"),
        Card("guest", "guest RAM", format_bytes(total), Trend(""), "",
             f"{format_bytes(last.get('available'))} available" if last.get("available") is not None else ""),
    ]
