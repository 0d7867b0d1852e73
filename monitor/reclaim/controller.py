"""The gradual reclaim's controller: how big the next step is, or why to stop.

Modelled on Meta's senpai / TMO (facebookincubator/senpai): reclaim a
little, listen, back off when the signal rises; never aim at a fixed floor.
After each ``memory.reclaim`` step the reclaimer watches a window (``[reclaim]
refault_window``, 5 s, growing to ``refault_window_near``, 30 s, near the
lower bound) and hands this module what it saw:

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

    refaults     the refaults since some step passed ``refault_share`` of that
                 step (heard in its own window, or over several: a set re-read
                 over 30 s refaults after a 5 s window closed).
                 The working set is being evicted; its estimate is the page
                 cache level before the step where the refaults began.
    pressure     PSI memory stalls in the window passed ``psi_share`` of it.
    target       the page cache reached the start level from the remembered
                 working set (monitor.reclaim.workingset): no need to probe again.
    active       the page cache reached the prior: the active file cache at the
                 start (``Active(file)``: pages used more than once recently)
                 plus the margin. Already there before a step: nothing to do.
    floor        the safety minimum ([reclaim] gradual_floor) was reached.
    no progress  a step freed almost nothing, or the kernel said EAGAIN
                 ("unable to evict sufficient pages"): the rest is hot or pinned.
    steps        MAX_STEPS requests were made (a runaway guard).

("stopped", a shutdown, is the reclaimer's to say: it is not an observation.)

The lower bound is the highest of: the floor, the remembered working set's
start level, and the prior from the kernel's active list (``Active(file)``
plus the margin; issue 25). The kernel promotes a page read twice to the
active list and ``memory.reclaim`` takes the inactive list first, so a set
in use sits on the active list while a one-time read (a build, a clone)
sits on the inactive one: the prior puts the small steps where the set is.
A wrong prior (a set that fell out of the active list) only moves where the
steps shrink: the refault stop still holds.

Under MGLRU (``Plan.mglru``: /sys/kernel/mm/lru_gen/enabled non-zero) there is
no prior: ``Active(file)`` is then the two youngest generations, and a file
re-read with read(2) stays in an old one (the lab: 0 MiB "active" beside a
300 MiB set read five times; bench/lab_mglru.py). The bound is the remembered
working set or the floor, and with no remembered one the set may begin
anywhere between the cache and the floor: whole steps could cross it. So
every step is also at most ``1/MGLRU_SHARE`` of the page cache left: the set
sits inside the cache, so crossing it evicts at most that share of the cache.
MGLRU itself gives a re-read set up last (it evicts the oldest generation in
the order the pages came: the lab's reclaim to 301 MiB left a 300 MiB set
whole), so only the crossing step costs, and the refault stop ends it there.
In the lab (bench/lab_mglru_gradual.py: 448 MiB re-read every 5 s, 1 GiB once)
the set re-read 8.4 % with the quarter steps to the floor (a 71.5 MiB step
crossed it) and 3.7 % with the cap (28.8 MiB), for 19 steps instead of 6.

Step sizes adapt: whole steps (MemTotal/32 clamped to the configured
min..max, WSL's size) while far above the lower bound, then a quarter of
the distance left, never less than ``PROBE_MIN``; a window with some
refaults, but fewer than the stop share, halves the next step. Windows
grow as the steps shrink: ``window`` while more than a whole step above
the bound, then linearly up to ``window_near`` at the bound, so a set read
every 30 s is heard before the next small step, while the cold cache far
above it goes at 5 s a step. A first
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
NOISE = 1 << 20  # refaults below 1 MiB in a window are the system's own churn, not the working set ...
NOISE_SECONDS = 10.0  # ... and below 1 MiB per this many seconds over longer listening (30 s near the bound: 3 MiB)
BEGAN = NOISE // 2  # a window with at least this many refaults is where they began (the estimate's step)
MGLRU_SHARE = 16  # under MGLRU with no remembered set, a step is at most 1/N of the page cache left (see above)


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
    refault_share: float = 0.1  # stop when refaults since a step pass this share of what was asked since
    psi_share: float = 0.01  # stop when PSI memory stalls fill this share of a window
    active: int | None = None  # the scope's active file cache before the first step (Active(file)), if known
    active_margin: float = 0.25  # the prior is active * (1 + this)
    window: float = 5.0  # seconds to listen after a step far above the lower bound
    window_near: float = 5.0  # ... growing to this at the bound (never below ``window``)
    whole_steps: bool = False  # whole steps down to the bound (no probing near it): a bound that is no
    #                            working-set estimate (`run`'s ended job: 0, as nobody in it reads any more)
    mglru: bool | None = None  # MGLRU on: ``active`` is its youngest generations, no reuse signal (no prior)


@dataclass(frozen=True)
class Step:
    size: int | None  # bytes to ask next; None = stop
    reason: str = ""  # stop reason (see the module docstring); "" while stepping
    words: str = ""  # the same for a person
    working_set: int | None = None  # estimate learned in this run (a "refaults" stop), else None
    window: float = 0.0  # seconds to listen after this step


def prior(plan: Plan) -> int | None:
    """The bound from the active list: Active(file) plus the margin, or None where unknown or where the
    active list says nothing of reuse (MGLRU)."""
    return None if plan.active is None or plan.mglru else int(plan.active * (1 + plan.active_margin))


def reuse_signal(mglru: bool | None) -> bool | None:
    """Does Active(file) say "used more than once"? Yes with the classic LRU, no under MGLRU (its youngest
    generations), None when the LRU is not known (JSON: ``active_file_reuse_signal``)."""
    return None if mglru is None else not mglru


def blind_words(active: int | None) -> str:
    """Why the active list is no bound under MGLRU, for a person."""
    what = f"{format_bytes(active)} " if active is not None else ""
    return (f"MGLRU is on: the active file cache {what}is its youngest generations, not pages used more than "
            "once, so it is no bound")


def bound(plan: Plan) -> tuple[int, str]:
    """The lower bound and where it comes from: "remembered" (the learned working set's start level),
    "active" (the prior) or "floor". On a tie the remembered one, then the prior, names it."""
    candidates = [(plan.floor, 2, "floor")]
    if prior(plan) is not None:
        candidates.append((prior(plan) or 0, 1, "active"))
    if plan.target is not None:
        candidates.append((plan.target, 0, "remembered"))
    level, _, source = max(candidates, key=lambda c: (c[0], -c[1]))
    return level, source


def lower_bound(plan: Plan) -> int:
    return bound(plan)[0]


def bound_words(plan: Plan, remembered: str = "") -> str:
    """Where the lower bound comes from, for a person: "580 MiB: the active file cache 464 MiB + 25%".
    ``remembered`` says what the remembered working set is ("working set ~ 310 MiB, learned 12m ago")."""
    level, source = bound(plan)
    if source == "active":
        return (f"{format_bytes(level)}: the active file cache {format_bytes(plan.active or 0)} "
                f"+ {100 * plan.active_margin:.0f}% (pages used more than once recently)")
    if source == "remembered":
        about = f" ({remembered})" if remembered else ""
        words = f"{format_bytes(level)}: the start level above the remembered working set{about}"
    else:
        words = f"{format_bytes(level)}: the floor (the safety minimum, [reclaim] gradual_floor)"
    if plan.mglru:
        words += f"; {blind_words(plan.active)}"
        if plan.target is None and not plan.whole_steps:
            words += f": steps of at most 1/{MGLRU_SHARE} of the page cache"
    return words


def window(plan: Plan, room: int) -> float:
    """How long to listen after a step that leaves ``room`` above the lower bound: ``plan.window`` while
    a whole step or more is left, then growing linearly to ``plan.window_near`` at the bound."""
    near = max(plan.window, plan.window_near)
    closeness = 1.0 - min(1.0, max(0, room) / plan.step) if plan.step > 0 else 1.0
    return plan.window + (near - plan.window) * closeness


def next_step(steps: Sequence[Observation], plan: Plan) -> Step:
    """The next request, or a stop and why. Pure: a table of recorded traces tests it."""
    stop = _listen(steps, plan) if steps else None
    if stop is not None:
        return stop
    cache = steps[-1].cache_after if steps else plan.cache_start
    level, source = bound(plan)
    # Within a MiB of a bound counts as there: a smaller request frees nothing measurable.
    if cache < level + NO_PROGRESS:
        return _at_bound(cache, plan, source, bool(steps))
    stop = _progress(steps[-1]) if steps else None
    if stop is not None:
        return stop
    if len(steps) >= MAX_STEPS:
        return Step(None, "steps", f"{MAX_STEPS} steps made; stopping")
    size = _size(steps, plan, cache - level, cache)
    return Step(size, window=window(plan, cache - size - level))


def _at_bound(cache: int, plan: Plan, source: str, stepped: bool) -> Step:
    if source == "remembered":
        return Step(None, "target", f"page cache {format_bytes(cache)} at the start level "
                    f"{format_bytes(plan.target or 0)} above the remembered working set")
    if source == "floor":
        return Step(None, "floor", f"page cache {format_bytes(cache)} at the floor {format_bytes(plan.floor)}")
    active, level = format_bytes(plan.active or 0), format_bytes(prior(plan) or 0)
    margin = f"{100 * plan.active_margin:.0f}%"
    if not stepped:
        return Step(None, "active", f"nothing to do: page cache {format_bytes(cache)} is within the active file "
                    f"cache {active} + {margin} ({level}): the kernel saw all of it used more than once recently")
    return Step(None, "active", f"page cache {format_bytes(cache)} at the active file cache {active} + {margin} "
                f"({level}): the rest was used more than once recently")


def _listen(steps: Sequence[Observation], plan: Plan) -> Step | None:
    """A stop the windows' signals call for (refaults since any step, the last window's PSI), or None."""
    last = steps[-1]
    hit = _refaults_since(steps, plan)
    if hit is not None:
        j, reread, asked = hit
        began = steps[j]
        what = "refaults" if last.refault_bytes is not None else "disk reads (pgpgin)"
        since = len(steps) - j
        if since == 1:
            heard = f"in {last.window_s:.0f}s after a {format_bytes(asked)} step"
        else:
            secs = sum(o.window_s for o in steps[j:])
            heard = f"in the {secs:.0f}s since step {j + 1} (of {format_bytes(asked)}; {since} windows)"
        return Step(None, "refaults", f"{what} of {format_bytes(reread)} {heard}: the working set begins at "
                    f"~{format_bytes(began.cache_before)}", working_set=began.cache_before)
    if last.psi_stall_us is not None and last.window_s > 0 and \
            last.psi_stall_us > plan.psi_share * last.window_s * 1e6:
        share = 100 * last.psi_stall_us / (last.window_s * 1e6)
        return Step(None, "pressure", f"PSI memory stalls {share:.1f}% of the {last.window_s:.0f}s after a step "
                    f"(limit {100 * plan.psi_share:g}%): the working set begins at ~{format_bytes(last.cache_before)}",
                    working_set=last.cache_before)
    return None


def _refaults_since(steps: Sequence[Observation], plan: Plan) -> tuple[int, int, int] | None:
    """(the step where the refaults began, the refaults since it, its size) when the refaults since some step
    passed ``refault_share`` of that step (and the noise of the seconds listened since), else None.

    A set re-read over 30 s refaults after a 5 s window closed, in later steps' windows, each under the
    noise: counted since the step before, they still add up. Where they began: the earliest such step
    whose own window heard some (``BEGAN``); with none that loud, the earliest such step (the higher
    estimate, the safer). A step whose window was quiet is not blamed for what later windows heard."""
    reread = 0
    secs = 0.0
    hits: list[tuple[int, int, int]] = []
    for j in range(len(steps) - 1, -1, -1):
        reread += steps[j].reread_bytes or 0
        secs += steps[j].window_s
        if reread > max(NOISE * max(1.0, secs / NOISE_SECONDS), plan.refault_share * steps[j].asked):
            hits.append((j, reread, steps[j].asked))
    if not hits:
        return None
    loud = [h for h in hits if (steps[h[0]].reread_bytes or 0) >= BEGAN]
    return (loud or hits)[-1]


def _progress(last: Observation) -> Step | None:
    if last.eagain:
        return Step(None, "no progress", f"asked {format_bytes(last.asked)}: the kernel freed what it could (EAGAIN)")
    if last.freed < min(NO_PROGRESS, last.asked // 2):
        return Step(None, "no progress", "a step freed almost nothing; the rest is hot or pinned")
    return None


def _size(steps: Sequence[Observation], plan: Plan, room: int, cache: int) -> int:
    """Whole steps while far from the lower bound, then a quarter of what is left (>= PROBE_MIN, <= room).
    Under MGLRU with no remembered working set, also at most 1/MGLRU_SHARE of the cache (>= PROBE_MIN)."""
    size = plan.step if room > 2 * plan.step or plan.whole_steps else max(PROBE_MIN, room // NEAR_SHARE)
    if plan.mglru and plan.target is None and not plan.whole_steps:
        size = min(size, max(PROBE_MIN, cache // MGLRU_SHARE))
    if steps and (steps[-1].reread_bytes or 0) > NOISE:
        size = max(PROBE_MIN, min(size, steps[-1].asked // 2))  # a trickle of refaults: near the working set
    return max(1, min(size, room, plan.step))
