"""The dashboard's widgets. Each shows one record from :mod:`tui.data` and redraws only when it changed."""

from __future__ import annotations

import time
from typing import Callable, Sequence

from rich.text import Text
from textual.containers import Grid
from textual.widgets import DataTable, Static
from textual_plot import HiResMode, PlotWidget
from textual_plot.axis_formatter import AxisFormatter

from tui import data

HOST_STYLE = "#5fafff"
CACHE_STYLE = "#ffaf00"
AVAILABLE_STYLE = "#87d787"  # the host's own available memory (issue 27)
THRESHOLD_STYLE = {"page_cache": "#ff875f", "reclaimable": "#d75f87", "host": "#5fd7d7", "host_available": "#afd75f"}
INACTIVE_STYLE = "#808080"  # a reclaim rule while auto-reclaim is off: drawn, but grey
RECLAIM_STYLE = "#af87ff"
METRIC_STYLE = "#d7d7af"  # where the host figure changed metric (a source switch: issue 27)
MOOD_STYLE = {"good": "green", "bad": "yellow", "neutral": ""}
KIND_STYLE = {"reclaim": "green", "error": "red", "prompt": "yellow", "answer": "cyan", "crossing": "magenta",
              "notify": "blue", "schedule": "green", "state": "", "watch": "dim", "dashboard": "dim"}


def show_if_changed(widget: Static, content: Text, layout: bool = False) -> None:
    """Repaint only what changed; a fixed-size widget needs no layout pass (measured: most of the idle CPU)."""
    if getattr(widget, "_shown", None) != content:
        widget._shown = content  # type: ignore[attr-defined]
        widget.update(content, layout=layout)


class HeaderLine(Static):
    """Environment · host source · mode · auto-reclaim · snooze: the first line a person reads."""

    def show(self, header: data.Header, pending: int) -> None:
        parts = [Text("vmmemctl", style="bold"), Text(header.environment),
                 Text(f"host {header.host}", style="" if header.host.startswith("measured") else "italic"),
                 Text(header.mode), Text(header.auto)]
        if header.snooze:
            parts.append(Text(header.snooze, style="yellow"))
        if header.latest:
            parts.append(Text(header.latest, style="yellow"))
        if pending:
            parts.append(Text(f"{pending} prompt{'s' if pending > 1 else ''} waiting: a", style="bold yellow"))
        self._shown_args = (header, pending)
        text = join_lines(parts, self.size.width - 2)
        # A layout pass only when the line count changes (it took 49 ms a pass, one per tick, as the
        # header's text changes with every sample: bench/results/overhead.md's TUI profile).
        lines = text.plain.count("\n") + 1
        relayout = lines != getattr(self, "_lines", None)
        self._lines = lines  # type: ignore[attr-defined]
        show_if_changed(self, text, layout=relayout)

    def on_resize(self) -> None:
        if getattr(self, "_shown_args", None):
            self.show(*self._shown_args)


def join_lines(parts: Sequence[Text], width: int) -> Text:
    """Parts joined by " · ", broken between parts (never inside one) when a line would overflow:
    at 120 columns the viewing header wrapped as "· 1" / "prompt waiting: a" (issue 18)."""
    text, line = Text(), 0
    for i, part in enumerate(parts):
        if i and width > 0 and line + 3 + part.cell_len > width:
            text.append(" ·\n", style="dim")
            line = 0
        elif i:
            text.append(" · ", style="dim")
            line += 3
        text.append_text(part)
        line += part.cell_len
    return text


class CardView(Static):
    """One number: label, value with its arrow and change, and a detail line when there is room."""

    def show(self, card: data.Card) -> None:
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(card.label + "\n", style="dim")
        text.append(card.value, style="bold")
        if card.trend.arrow:
            text.append(f" {card.trend.arrow}", style=MOOD_STYLE[card.trend.mood] or "bold")
        room = self.content_size.width  # 0 before the first layout: then everything goes in
        used = len(card.value) + (len(card.trend.arrow) + 1 if card.trend.arrow else 0)
        if card.delta and (not room or used + 1 + len(card.delta) <= room):  # the change fits whole, or
            text.append(f" {card.delta}", style="dim")  # is left out ("8.6G / 211M ↓ -1.…": issue 28)
        forms = (card.detail, *card.narrower)  # the first that fits, else the shortest (cut)
        detail = next((d for d in forms if not room or len(d) <= room), forms[-1])
        text.append("\n" + detail, style="dim italic")
        show_if_changed(self, text)


class Cards(Grid):
    KEYS = ("host", "anon", "page_cache", "reclaimable", "returnable", "psi", "cpu", "guest")

    def compose(self):
        for key in self.KEYS:
            yield CardView("…", id=f"card-{key}", classes="card")

    def show(self, cards: Sequence[data.Card]) -> None:
        for card in cards:
            self.query_one(f"#card-{card.key}", CardView).show(card)


class BytesAxis(AxisFormatter):
    """Y ticks at round GiB/MiB values, labelled with the unit."""

    def get_ticks_and_labels(self, min_: float, max_: float, max_ticks: int = 8) -> tuple[list[float], list[str]]:
        return data.byte_ticks(min_, max_, self.max_ticks)

    max_ticks = 5

    def get_ticks(self, min_: float, max_: float, max_ticks: int = 8) -> list[float]:
        return self.get_ticks_and_labels(min_, max_)[0]

    def get_labels_for_ticks(self, ticks: Sequence[float]) -> list[str]:
        return data.byte_ticks(min(ticks), max(ticks), len(ticks))[1] if ticks else []


class TimeAxis(AxisFormatter):
    """X ticks at round local clock times; as many as the width has room for."""

    def __init__(self, localtime: Callable[[float], time.struct_time]):
        self.localtime = localtime
        self.max_ticks = 6

    columns = 0  # the plot's width in cells (set on resize)

    def get_ticks_and_labels(self, min_: float, max_: float, max_ticks: int = 8) -> tuple[list[float], list[str]]:
        ticks, labels = data.time_ticks(min_, max_, self.max_ticks, self.localtime)
        if not self.columns or max_ <= min_:
            return ticks, labels
        # A label is centred on its tick: one 1-3 cells short of the right edge was cut ("20:4", issue 18).
        # On the edge itself, or a cell or more short of it, it fits (measured at 120x40, 5 min); between,
        # it is left out.
        cell = (max_ - min_) / self.columns
        keep = [i for i, t in enumerate(ticks) if not (cell * 1e-6 < max_ - t < cell * 1.05)]
        return [ticks[i] for i in keep], [labels[i] for i in keep]

    def get_ticks(self, min_: float, max_: float, max_ticks: int = 8) -> list[float]:
        return self.get_ticks_and_labels(min_, max_)[0]

    def get_labels_for_ticks(self, ticks: Sequence[float]) -> list[str]:
        return self.get_ticks_and_labels(min(ticks), max(ticks))[1] if ticks else []


class TrendChart(PlotWidget, can_focus=False):
    """Host footprint and page cache on one time axis; thresholds dashed, reclaims as vertical lines.

    Not focusable: PlotWidget's own keys (r = reset zoom, arrows = pan) would shadow the app's.
    """

    def __init__(self, localtime: Callable[[float], time.struct_time], **kw):
        super().__init__(allow_pan_and_zoom=False, **kw)
        self.time_axis = TimeAxis(localtime)
        self.bytes_axis = BytesAxis()
        self.shown: data.ChartData | None = None

    def on_mount(self) -> None:
        self.margin_top, self.margin_bottom, self.margin_left = 0, 1, 9
        self.set_x_formatter(self.time_axis)
        self.set_y_formatter(self.bytes_axis)

    @property
    def columns(self) -> int:
        """Character columns inside the axes (the app's width while the chart is still hidden)."""
        width = self.size.width or (self.app.size.width if self.is_attached else 80)
        return max(10, width - self.margin_left - 2)

    def on_resize(self) -> None:
        self.time_axis.max_ticks = max(2, self.columns // 11)
        self.time_axis.columns = self.columns
        self.bytes_axis.max_ticks = max(3, min(6, (self.size.height - 1) // 2))

    def show(self, chart: data.ChartData) -> None:
        if self.shown is not None and chart.key == self.shown.key:
            return  # no new rows, and the range slid by less than a pixel column
        self.shown = chart
        self.clear()
        self.set_xlimits(chart.since, chart.until)
        self.set_ylimits(0, chart.y_max)
        cell = (chart.until - chart.since) / self.columns
        for th in chart.thresholds:  # first, so the data lines draw over them
            xs = [chart.since + (i + 0.5) * cell for i in range(0, self.columns, 2)]
            self.scatter(xs, [th.bytes] * len(xs), marker="╌", marker_style=threshold_style(th))
        for runs, style in ((chart.available, AVAILABLE_STYLE), (chart.cache, CACHE_STYLE), (chart.host, HOST_STYLE)):
            for run in runs:
                xs, ys = [p[0] for p in run], [p[1] for p in run]
                if len(run) == 1:
                    self.scatter(xs, ys, marker="•", marker_style=style)
                else:
                    self.plot(xs, ys, line_style=style, hires_mode=HiResMode.BRAILLE)
        for t in chart.reclaims:
            self.add_v_line(t, line_style=RECLAIM_STYLE)
        for t, _, _ in chart.metric_changes:  # the host line means another thing from here
            self.add_v_line(t, line_style=METRIC_STYLE)


# How a reclaim rule that cannot act (auto-reclaim off) is named, longest first, as room allows.
INACTIVE_WORDS = (" would reclaim (auto-reclaim is off)", " (auto-reclaim off)", " (off)")


def threshold_style(th: data.Threshold) -> str:
    return INACTIVE_STYLE if th.inactive else THRESHOLD_STYLE[th.metric]


def legend(chart: data.ChartData, width: int = 200) -> Text:
    """One line under the chart: what each line is, the thresholds (by rule name when there is room);
    a reclaim rule that cannot act says so, in as many words as fit."""
    for named, off in ((True, 0), (True, 1), (True, 2), (False, 2)):
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append("━ host", style=HOST_STYLE)
        text.append("  ━ page cache" if named else " ━ cache", style=CACHE_STYLE)
        if chart.available:
            text.append("  ━ host available" if named else " ━ avail", style=AVAILABLE_STYLE)
        text.append(" ")
        for th in chart.thresholds:
            label = f"{th.label} {data.short_bytes(th.bytes)}" if named else data.short_bytes(th.bytes)
            label += INACTIVE_WORDS[off] if th.inactive else ""
            text.append(f"╌ {label} " if named else f"╌{label} ", style=threshold_style(th))
        for th in chart.above:
            label = data.short_bytes(th.bytes) + (INACTIVE_WORDS[off] if th.inactive else "")
            text.append(f"↑ {th.label} {label} " if named else f"↑{label} ", style="dim")
        if chart.reclaims:
            text.append("│ reclaim ", style=RECLAIM_STYLE)
        if chart.metric_changes:  # the newest change, in words: the host line is not one figure throughout
            _, was, now = chart.metric_changes[-1]
            short = data.METRIC_SHORT
            text.append(f"│ host: {short.get(was, was)} → {short.get(now, now)}" if named else "│ host metric",
                        style=METRIC_STYLE)
        text.rstrip()
        if text.cell_len <= width:
            break
    return text


def range_keys(range_name: str) -> Text:
    text = Text(no_wrap=True)
    for i, name in enumerate(data.RANGE_NAMES, 1):
        style = "reverse bold" if name == range_name else "dim"
        text.append(f" {i} {name} ", style=style)
    return text


class EventList(DataTable):
    """Newest first. Rebuilt only when an event was added (or the width changed)."""

    def __init__(self, **kw):
        super().__init__(cursor_type="row", show_header=False, zebra_stripes=False, **kw)
        self.lines: list[data.EventLine] = []
        self._width = 0

    def show(self, lines: list[data.EventLine], force: bool = False) -> None:
        width = self.size.width
        if lines == self.lines and width == self._width and not force:
            return
        self.lines, self._width = lines, width
        row = self.cursor_row
        self.clear(columns=True)
        message = max(20, width - (9 + 2) - (8 + 2) - 2 - 1)  # cells are padded 1 each side; 1 for the scrollbar
        self.add_column("time", width=9, key="time")
        self.add_column("kind", width=8, key="kind")
        self.add_column("what", width=message, key="what")
        for line in lines:
            self.add_row(Text(line.when, style="dim"), Text(line.kind, style=KIND_STYLE.get(line.kind, "")),
                         Text(line.text, no_wrap=True, overflow="ellipsis"), key=str(line.id))
        if lines:
            self.move_cursor(row=min(row, len(lines) - 1), animate=False)

    def on_resize(self) -> None:
        if self.size.width != self._width:
            self.show(self.lines, force=True)

    def selected(self) -> data.EventLine | None:
        if not self.lines or self.cursor_row >= len(self.lines):
            return None
        return self.lines[self.cursor_row]
