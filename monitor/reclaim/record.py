"""A reclaim, run and recorded: what the CLI, the watcher and the dashboard share."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from monitor.history.store import Store
from monitor.reclaim import workingset
from monitor.reclaim.cgroup_target import Group
from monitor.reclaim.reclaimer import Reclaimer, ReclaimResult
from monitor.text import table
from monitor.units import format_bytes


@dataclass(frozen=True)
class ReclaimRequest:
    """One reclaim someone asked for: the whole VM by ``method``, or only the cache of ``paths``."""

    method: str = "auto"
    paths: tuple[str, ...] = ()  # non-empty: those trees' cache only (monitor.reclaim.paths); method unused
    trigger: str = "manual"  # who asked: "manual", "rule:NAME", "schedule:NAME", "prompt"
    dry_run: bool = False  # measure and report, write nothing (and record nothing)
    settle: float | None = None  # seconds to watch the host give memory back; None: [reclaim] settle
    cgroup: str = ""  # a group's path or name: gradual in that group only (monitor.reclaim.cgroup_target)
    active_prior: bool = True  # the group's active file cache bounds the steps (False: `run`'s job has ended)


def reclaim_and_record(reclaimer: Reclaimer, store: Store | None, request: ReclaimRequest,
                       group: Group | None = None) -> ReclaimResult:
    """Run a VM-wide reclaim (or one in ``group``, found from ``request.cgroup``), then record its measured
    result as an event (not for dry runs). A group's reclaim neither starts from nor teaches the VM's
    remembered working set."""
    hint = workingset.start_hint(store, reclaimer.config, time.time()) if store is not None and group is None \
        else None
    result = reclaimer.run("gradual" if group is not None else request.method, dry_run=request.dry_run,
                           trigger=request.trigger, settle=request.settle, working_set=hint, group=group,
                           active_prior=request.active_prior)
    if store is not None and not request.dry_run:
        if group is None:
            workingset.remember(store, result, reclaimer.config, time.time())
        store.add_event("reclaim", describe_reclaim(result), rule=request.trigger, data=result.to_json(),
                        status="error" if result.error else "ok")
    return result


def describe_reclaim(r: ReclaimResult) -> str:
    methods = "+".join(r.methods_run) or r.method
    if getattr(r, "cgroup", None):
        methods += f" in {r.cgroup}"
    if r.error:
        return f"reclaim {methods} failed: {r.error}"
    if r.dry_run:
        return f"reclaim {methods} ({r.trigger}): dry run, nothing written"
    host = ""
    if getattr(r, "cgroup", None) and r.cgroup_cache_before is not None and r.cgroup_cache_after is not None:
        host = f"; the group's own {format_bytes(r.cgroup_cache_before - r.cgroup_cache_after)}"
    if r.host_returned_bytes is not None:
        kind = " (estimated)" if r.host_before and r.host_before.estimated else ""
        host = f"; host {format_bytes(-r.host_returned_bytes, signed=True)}{kind}"
    return (f"reclaim {methods} ({r.trigger}): freed {format_bytes(r.freed_bytes)} of page cache, "
            f"returnable {format_bytes(r.returnable_gain_bytes, signed=True)}{host}")


def reclaim_text(r: Any) -> str:
    """A ReclaimResult as a small before / after / change table."""
    methods = " + ".join(r.methods_run) or r.method
    head = f"reclaim: {methods}{' (dry run: nothing written)' if r.dry_run else ''}  took {r.ended - r.started:.1f}s"
    b, a = r.before, r.after

    def row(label: str, x: int | None, y: int | None) -> tuple[str, str, str, str]:
        change = None if x is None or y is None else y - x
        return (label, format_bytes(x), format_bytes(y), format_bytes(change, signed=True) if change is not None else "?")

    rows = [row("group page cache", r.cgroup_cache_before, r.cgroup_cache_after)] if getattr(r, "cgroup", None) else []
    if rows:
        head += f"\n  in cgroup {r.cgroup}"
    rows += [row("page cache", b.page_cache, a.page_cache),
            row("slab reclaimable", b.slab_reclaimable, a.slab_reclaimable),
            row("free", b.free, a.free),
            row("returnable free", b.returnable_free, a.returnable_free),
            row("fragmented free", b.fragmented_free, a.fragmented_free)]
    hb, ha = r.host_before, r.host_after
    if hb is not None and ha is not None:
        label = "host (estimated)" if hb.estimated else f"host ({hb.source})"
        rows.append(row(label, hb.bytes, ha.bytes))
    if r.dry_run:
        rows = [(label, before) for label, before, _, _ in rows]
        out = [head, "", table(rows, header=("", "now"), indent="  "),
               f"  reclaimable now: {format_bytes(b.reclaimable)} (what dropping the page cache would free)"]
    else:
        out = [head, "", table(rows, header=("", "before", "after", "change"), indent="  ")]
    if r.host_return_seconds is not None:
        out.append(f"  host had 90% of it back {r.host_return_seconds:.1f}s after the writes")
    out += (["", "steps:"] + [f"  {s}" for s in r.steps]) if r.steps else ["", "steps: none (nothing was written)"]
    if r.stop_reason:
        ws = f"; working set ~ {format_bytes(r.working_set_bytes)}" if r.working_set_bytes is not None else ""
        out.append(f"gradual stopped: {r.stop_reason}{ws}")
    if r.notes:
        out += ["notes:"] + [f"  {n}" for n in r.notes]
    if r.error:
        out += ["", f"error: {r.error}"]
    return "\n".join(out)
