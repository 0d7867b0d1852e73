"""The remembered working set: what gradual learned, kept in the store's state.

A gradual reclaim that stops on refaults learns where the working set
begins (monitor.reclaim.controller). The next reclaim starts from there: it steps
down fast to the *start level*, the estimate plus a margin, and stops
("target") instead of probing into the working set again.

Work changes, so the estimate decays: it halves every
``[reclaim] working_set_half_life`` (1 h) since it was learned, and the
next reclaim probes lower; if the working set is still there, its refaults
stop that run and the estimate is learned anew. A working set that grew
shows its refaults above the old start level, and the new, higher level is
learned the same way.

The cost after the fact (monitor.reclaim.cost) feeds back, where it can be attributed (refaults
after gradual, a tree's own cache after --path; never disk reads after a drop): a reclaim whose
re-reads in its cost window passed ``cost_share`` of what it freed doubles the margin
(up to MAX_MARGIN), so the next one is gentler; a cheap one relaxes it back
toward ``working_set_margin``. The reclaim's notes say so.

Stored under the state key ``working_set``::

    {"bytes": 325058560, "learned": 1764880000.0, "margin": 0.25, "why": "..."}
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from monitor.config.schema import ReclaimConfig
from monitor.units import format_bytes, format_duration

STATE_KEY = "working_set"
MAX_MARGIN = 2.0  # at most 3x the estimate: past that the estimate itself is wrong, and decay fixes it


@dataclass(frozen=True)
class WorkingSet:
    bytes: int  # page cache level where refaults began, when learned
    learned: float  # when (epoch seconds)
    margin: float  # start level = decayed estimate * (1 + margin)
    why: str = ""  # why the margin is what it is, for the reclaim's notes

    def estimate(self, now: float, half_life: float) -> int:
        """The estimate decayed since it was learned."""
        age = max(0.0, now - self.learned)
        return int(self.bytes * 0.5 ** (age / half_life)) if half_life > 0 else self.bytes

    def start_level(self, now: float, half_life: float) -> int:
        return int(self.estimate(now, half_life) * (1 + self.margin))

    def describe(self, now: float, half_life: float) -> str:
        """ "working set ~ 310 MiB, learned 12 min ago" """
        est = self.estimate(now, half_life)
        age = format_duration(max(0.0, now - self.learned))
        faded = f" (learned as {format_bytes(self.bytes)}, decaying)" if est < 0.95 * self.bytes else ""
        return f"working set ~ {format_bytes(est)}, learned {age} ago{faded}; margin {100 * self.margin:.0f}%"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> WorkingSet | None:
        """Tolerant: anything odd (another version, a hand edit) is "not known"."""
        if not isinstance(data, dict):
            return None
        size, learned, margin = data.get("bytes"), data.get("learned"), data.get("margin")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (size, learned, margin)):
            return None
        if size <= 0 or margin < 0:
            return None
        return cls(int(size), float(learned), float(margin), str(data.get("why") or ""))


def load(store: Any) -> WorkingSet | None:
    return WorkingSet.from_json(store.get_state(STATE_KEY)) if store is not None else None


def save(store: Any, ws: WorkingSet) -> None:
    store.set_state(STATE_KEY, ws.to_json())


@dataclass(frozen=True)
class Hint:
    """What a reclaim is told: where to stop, and in words why."""

    target: int
    estimate: int
    words: str
    margin: float | None = None  # the margin now (the cost feedback grows it): the active-list prior uses it too
    about: str = ""  # the estimate in words: "working set ~ 310 MiB, learned 12m ago; margin 25%"


def hint(ws: WorkingSet | None, config: ReclaimConfig, now: float) -> Hint | None:
    if ws is None:
        return None
    half_life = config.working_set_half_life
    est = ws.estimate(now, half_life)
    words = f"start level {format_bytes(ws.start_level(now, half_life))}: {ws.describe(now, half_life)}"
    if ws.why:
        words += f" ({ws.why})"
    return Hint(ws.start_level(now, half_life), est, words, ws.margin, ws.describe(now, half_life))


def learn(ws: WorkingSet | None, learned_bytes: int, config: ReclaimConfig, now: float) -> WorkingSet:
    """A new estimate from a refault stop; the margin carries over (the cost feedback is separate)."""
    margin = ws.margin if ws is not None else config.working_set_margin / 100
    return WorkingSet(int(learned_bytes), now, margin, ws.why if ws is not None else "")


def after_cost(ws: WorkingSet | None, reread: int, freed: int | None, level_after: int | None,
               config: ReclaimConfig, now: float) -> WorkingSet | None:
    """The cost of the last reclaim feeds the margin (and, with no estimate yet, the estimate)."""
    base = config.working_set_margin / 100
    share = config.cost_share / 100
    if not freed or freed <= 0:
        return ws
    if reread > share * freed:
        why = (f"margin grown: the last reclaim re-read {format_bytes(reread)} afterwards, more than "
               f"{config.cost_share:g}% of the {format_bytes(freed)} it freed")
        if ws is None:
            if level_after is None:
                return None
            # No estimate yet (a drop, or gradual stopped at the floor): what came back sits on top of
            # what was left, so the working set is at least their sum.
            return WorkingSet(level_after + reread, now, max(base, base * 2), why)
        return dataclasses.replace(ws, margin=min(MAX_MARGIN, max(base, ws.margin) * 2), why=why)
    if ws is not None and ws.margin > base:
        relaxed = max(base, ws.margin / 2)
        return dataclasses.replace(ws, margin=relaxed, why="" if relaxed == base else ws.why)
    return ws


def start_hint(store: Any, config: ReclaimConfig, now: float) -> Hint | None:
    """The hint for a reclaim about to run (None without a store or an estimate)."""
    return hint(load(store), config, now)


def remember(store: Any, result: Any, config: ReclaimConfig, now: float) -> WorkingSet | None:
    """After a reclaim: keep what it learned (a :class:`monitor.reclaim.reclaimer.ReclaimResult`)."""
    if result.dry_run or result.error or result.working_set_learned is None:
        return load(store)
    ws = learn(load(store), result.working_set_learned, config, now)
    save(store, ws)
    return ws


def status_words(ws: WorkingSet | None, config: ReclaimConfig, now: float) -> str:
    if ws is None:
        return "working set not learned yet (a gradual reclaim learns it where refaults begin)"
    return ws.describe(now, config.working_set_half_life)


def status_json(ws: WorkingSet | None, config: ReclaimConfig, now: float) -> dict[str, Any] | None:
    if ws is None:
        return None
    half_life = config.working_set_half_life
    return {"bytes": ws.estimate(now, half_life), "learned_bytes": ws.bytes, "learned": ws.learned,
            "age_s": round(max(0.0, now - ws.learned), 1), "margin": ws.margin,
            "start_level_bytes": ws.start_level(now, half_life), "why": ws.why,
            "words": ws.describe(now, half_life)}
