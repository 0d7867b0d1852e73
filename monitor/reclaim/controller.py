"""The gradual reclaim's controller: how big the next step is, or why to stop.

Modelled on Meta's senpai / TMO (facebookincubator/senpai): reclaim a
little, listen, back off when the signal rises; never aim at a fixed floor.
After each ``memory.reclaim`` step the reclaimer watches a short window
(``[reclaim] refault_window``, 5 s) and hands this module what it saw:

- ``workingset_refault_file`` (pages): memory.reclaim evicts through the
  LRU, so an evicted page leaves a shadow entry and its re-read counts as a
  refault. In the lab's 4 GiB run a floor-bound gradual counted 105 MiB of
  them, the whole re-read (issue 11). ``pgpgin`` (KiB read from disk) stands
  in where the refault counter is missing.
- PSI memory ``some`` total (microseconds stalled) in the window, where
  /proc/pressure exists (WSL's kernel has none unless psi=1). Only the
  window after the write counts: the writer's own reclaim is a memstall too.

:func:`next_step` is pure: (the steps so far, a :class:`Plan`) ->
:class:`Step`, the next request in bytes or a stop with its reason:

    refaults     the window's refaults passed ``refault_share`` of the step:
                 the working set is being evicted. Its estimate is the page
                 cache level before that step (where the refaults began).
    pressure     PSI memory stalls in the window passed ``psi_share`` of it.
    target       the page cache reached the start level from the remembered
                 working set (monitor.reclaim.workingset): no need to probe again.
    floor        the safety minimum ([reclaim] gradual_floor) was reached.
    no progress  a step freed almost nothing, or the kernel said EAGAIN
                 ("unable to evict sufficient pages"): the rest is hot or pinned.
    steps        MAX_STEPS requests were made (a runaway guard).

("stopped", a shutdown, is the reclaimer's to say: it is not an observation.)

Step sizes adapt: whole steps (MemTotal/32 clamped to the configured
min..max, WSL's size) while far above the lower bound, then a quarter of
the distance left, never less than ``PROBE_MIN``; a window with some
refaults, but fewer than the stop share, halves the next step. A first
reclaim learns the working set by one step into it, so that step is what
the discovery costs: with half the distance (the first design) the lab's
4 GiB guest re-read 17 % of its 300 MiB set; a quarter makes the crossing
step about half as big, for a few more (small) steps near the bottom.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from monitor.units import format_bytes

MAX_STEPS = 64
PROBE_MIN = 8 << 20  # smallest step near the lower bound: small enough that crossing the working set costs little
NEAR_SHARE = 4  # near the lower bound, a step is this fraction (1/N) of the distance left
NO_PROGRESS = 1 << 20  # a step that frees less than 1 MiB means the rest is hot or unreclaimable
NOISE = 1 << 20  # refaults below 1 MiB in a window are the system's own churn, not the working set


@dataclass(frozen=True)
class Observation:
    """One step and its window, as the reclaimer measured it."""

    asked: int  # bytes written to memory.reclaim
    cache_before: int  # page cache before the write
    cache_after: int  # page cache at the end of the window
    refault_bytes: int | None = None  # workingset_refault_file in the window, in bytes
    pgpgin_bytes: int | None = None  # pgpgin in the window, in bytes
    psi_stall_us: int | None = None  # PSI memory "some" total over the window, where PSI exists
    window_s: float = 0.0
    eagain: bool = False  # the kernel could not free all it was asked

    @property
    def freed(self) -> int:
        return self.cache_before - self.cache_after

    @property
    def reread_bytes(self) -> int | None:
        """What the window read back: refaults where counted, else disk reads."""
        return self.refault_bytes if self.refault_bytes is not None else self.pgpgin_bytes

    def to_json(self) -> dict:
        return {"asked_bytes": self.asked, "page_cache_before_bytes": self.cache_before,
                "page_cache_after_bytes": self.cache_after, "refault_bytes": self.refault_bytes,
                "pgpgin_bytes": self.pgpgin_bytes, "psi_memory_stall_us": self.psi_stall_us,
                "window_s": round(self.window_s, 2), "eagain": self.eagain}


@dataclass(frozen=True)
class Plan:
    """What the controller knows before the first step."""

    cache_start: int  # page cache before the first step
    step: int  # a whole step: MemTotal/32 clamped to [gradual_step_min, gradual_step_max]
    floor: int  # the safety minimum
    target: int | None = None  # start level from the remembered working set (above it, with a margin)
    refault_share: float = 0.1  # stop when a window's refaults pass this share of the step
    psi_share: float = 0.01  # stop when PSI memory stalls fill this share of a window


@dataclass(frozen=True)
class Step:
    size: int | None  # bytes to ask next; None = stop
    reason: str = ""  # stop reason (see the module docstring); "" while stepping
    words: str = ""  # the same for a person
    working_set: int | None = None  # estimate learned in this run (a "refaults" stop), else None


def lower_bound(plan: Plan) -> int:
    return max(plan.floor, plan.target or 0)


def next_step(steps: Sequence[Observation], plan: Plan) -> Step:
    """The next request, or a stop and why. Pure: a table of recorded traces tests it."""
    stop = _listen(steps[-1], plan) if steps else None
    if stop is not None:
        return stop
    cache = steps[-1].cache_after if steps else plan.cache_start
    # Within a MiB of a bound counts as there: a smaller request frees nothing measurable.
    if plan.target is not None and plan.target >= plan.floor and cache < plan.target + NO_PROGRESS:
        return Step(None, "target", f"page cache {format_bytes(cache)} at the start level "
                    f"{format_bytes(plan.target)} above the remembered working set")
    if cache < plan.floor + NO_PROGRESS:
        return Step(None, "floor", f"page cache {format_bytes(cache)} at the floor {format_bytes(plan.floor)}")
    stop = _progress(steps[-1]) if steps else None
    if stop is not None:
        return stop
    if len(steps) >= MAX_STEPS:
        return Step(None, "steps", f"{MAX_STEPS} steps made; stopping")
    return Step(_size(steps, plan, cache - lower_bound(plan)))


def _listen(last: Observation, plan: Plan) -> Step | None:
    """A stop the last window's signals call for (refaults, PSI), or None."""
    reread = last.reread_bytes
    if reread is not None and reread > max(NOISE, plan.refault_share * last.asked):
        what = "refaults" if last.refault_bytes is not None else "disk reads (pgpgin)"
        return Step(None, "refaults", f"{what} of {format_bytes(reread)} in {last.window_s:.0f}s after a "
                    f"{format_bytes(last.asked)} step: the working set begins at ~{format_bytes(last.cache_before)}",
                    working_set=last.cache_before)
    if last.psi_stall_us is not None and last.window_s > 0 and \
            last.psi_stall_us > plan.psi_share * last.window_s * 1e6:
        share = 100 * last.psi_stall_us / (last.window_s * 1e6)
        return Step(None, "pressure", f"PSI memory stalls {share:.1f}% of the {last.window_s:.0f}s after a step "
                    f"(limit {100 * plan.psi_share:g}%): the working set begins at ~{format_bytes(last.cache_before)}",
                    working_set=last.cache_before)
    return None


def _progress(last: Observation) -> Step | None:
    if last.eagain:
        return Step(None, "no progress", f"asked {format_bytes(last.asked)}: the kernel freed what it could (EAGAIN)")
    if last.freed < min(NO_PROGRESS, last.asked // 2):
        return Step(None, "no progress", "a step freed almost nothing; the rest is hot or pinned")
    return None


def _size(steps: Sequence[Observation], plan: Plan, room: int) -> int:
    """Whole steps while far from the lower bound, then a quarter of what is left (>= PROBE_MIN, <= room)."""
    size = plan.step if room > 2 * plan.step else max(PROBE_MIN, room // NEAR_SHARE)
    if steps and (steps[-1].reread_bytes or 0) > NOISE:
        size = max(PROBE_MIN, min(size, steps[-1].asked // 2))  # a trickle of refaults: near the working set
    return max(1, min(size, room, plan.step))
