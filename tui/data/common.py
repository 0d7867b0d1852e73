"""Shared by the view models: ranges, the row type, the clock type."""

from __future__ import annotations

import time
from typing import Any, Callable

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
