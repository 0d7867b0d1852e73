"""A reclaim, run and recorded: what the CLI, the watcher and the dashboard share."""

from __future__ import annotations

import time
from dataclasses import dataclass

from monitor.history.store import Store
from monitor.reclaim import workingset
from monitor.reclaim.reclaimer import Reclaimer, ReclaimResult
from monitor.units import format_bytes


@dataclass(frozen=True)
class ReclaimRequest:
    """One reclaim someone asked for: the whole VM by ``method``, or only the cache of ``paths``."""

    method: str = "auto"
    paths: tuple[str, ...] = ()  # non-empty: those trees' cache only (monitor.reclaim.paths); method unused
    trigger: str = "manual"  # who asked: "manual", "rule:NAME", "schedule:NAME", "prompt"
    dry_run: bool = False  # measure and report, write nothing (and record nothing)
    settle: float | None = None  # seconds to watch the host give memory back; None: [reclaim] settle


def reclaim_and_record(reclaimer: Reclaimer, store: Store | None, request: ReclaimRequest) -> ReclaimResult:
    """Run a VM-wide reclaim, then record its measured result as an event (not for dry runs)."""
    hint = workingset.start_hint(store, reclaimer.config, time.time()) if store is not None else None
    result = reclaimer.run(request.method, dry_run=request.dry_run, trigger=request.trigger, settle=request.settle,
                           working_set=hint)
    if store is not None and not request.dry_run:
        workingset.remember(store, result, reclaimer.config, time.time())
        store.add_event("reclaim", describe_reclaim(result), rule=request.trigger, data=result.to_json(),
                        status="error" if result.error else "ok")
    return result


def describe_reclaim(r: ReclaimResult) -> str:
    methods = "+".join(r.methods_run) or r.method
    if r.error:
        return f"reclaim {methods} failed: {r.error}"
    host = ""
    if r.host_returned_bytes is not None:
        kind = " (estimated)" if r.host_before and r.host_before.estimated else ""
        host = f"; host {format_bytes(-r.host_returned_bytes, signed=True)}{kind}"
    return (f"reclaim {methods} ({r.trigger}): freed {format_bytes(r.freed_bytes)} of page cache, "
            f"returnable {format_bytes(r.returnable_gain_bytes, signed=True)}{host}")
