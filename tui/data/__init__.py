"""What the dashboard shows, shaped from store rows: no Textual here, so tests call it directly.

Everything takes plain rows (the dicts :meth:`monitor.history.store.Store.series`
returns, or :func:`monitor.history.store.sample_row` of a live sample), events and
the config, and returns small records the widgets print as they are. One
module per view model:

    cards    the numbers with a trend arrow (latest vs ``TREND_WINDOW`` ago)
    chart    host footprint and page cache on one time axis, with thresholds,
             reclaim marks and the axes' ticks
    words    the events list and the header's words
    offers   what each reclaim method would run here and about how much it frees
    common   ranges, the row and clock types

This face lists what the app, the widgets and the screens use as ``data.X``.
"""

from tui.data.cards import Card, Trend, build_cards, host_words, short_bytes, trend
from tui.data.chart import (
                            METRIC_SHORT,
                            ChartData,
                            Threshold,
                            bucket,
                            byte_ticks,
                            chart_data,
                            choose_tier,
                            metric_changes,
                            nice_step,
                            picture_key,
                            reclaim_times,
                            sample_step,
                            split_runs,
                            thresholds,
                            time_ticks,
)
from tui.data.common import (
                            RANGE_NAMES,
                            RANGES,
                            TREND_WINDOW,
                            LocalTime,
                            Row,
                            next_range,
)
from tui.data.offers import Offer, expected_gain, make_offer
from tui.data.words import (
                            EventLine,
                            Header,
                            auto_words,
                            clock_text,
                            detail_lines,
                            event_lines,
                            next_schedule,
                            snooze_words,
                            staleness,
                            until_words,
)

__all__ = [
    "Card", "Trend", "build_cards", "host_words", "short_bytes", "trend",
    "METRIC_SHORT", "ChartData", "Threshold", "bucket", "byte_ticks", "chart_data", "choose_tier", "metric_changes",
    "nice_step", "picture_key",
    "reclaim_times", "sample_step", "split_runs", "thresholds", "time_ticks",
    "RANGE_NAMES", "RANGES", "TREND_WINDOW", "LocalTime", "Row", "next_range",
    "Offer", "expected_gain", "make_offer",
    "EventLine", "Header", "auto_words", "clock_text", "detail_lines", "event_lines", "next_schedule",
    "snooze_words", "staleness", "until_words",
]
