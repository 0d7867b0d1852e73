"""One condition notifies (or records an error event) at most once per period."""

from __future__ import annotations

import json
import logging
import math
from typing import Any, Mapping

log = logging.getLogger("monitor.notify")


class RateLimiter:
    """The same condition (``Notification.key``) notifies at most once per ``period`` seconds.

    Times are wall-clock (they outlive the process in the store's state
    table). A clock that went backwards allows the notification rather than
    silencing it until the clock catches up.
    """

    def __init__(self, period: float, last: Mapping[str, float] | None = None):
        self.period = period
        self.last: dict[str, float] = dict(last or {})

    def allow(self, key: str, now: float) -> bool:
        """True (and remembered) when ``key`` has not been allowed within the last period."""
        previous = self.last.get(key)
        if previous is not None and 0 <= now - previous < self.period:
            return False
        self.last[key] = now
        return True

    def prune(self, now: float) -> None:
        """Forget keys whose period is over, so the saved state stays small."""
        self.last = {k: t for k, t in self.last.items() if 0 <= now - t < self.period}

    def to_state(self) -> dict[str, Any]:
        """What the store keeps (its state table encodes it as JSON once)."""
        return {"last": dict(sorted(self.last.items()))}

    @classmethod
    def from_state(cls, period: float, state: Any) -> RateLimiter:
        """Read saved state; odd or missing state means "nothing notified yet", never a crash.
        A JSON string is read too: histories before 0.1 stored this state encoded twice."""
        data = state
        if isinstance(state, str):
            try:
                data = json.loads(state) if state else {}
            except ValueError:
                log.warning("rate limiter state is not JSON; starting afresh: %r", state[:80])
                data = None
        last = data.get("last") if isinstance(data, dict) else None
        if not isinstance(last, dict):
            last = {}
        good = {k: float(v) for k, v in last.items()
                if isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        return cls(period, good)
