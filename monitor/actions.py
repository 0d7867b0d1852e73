"""Carrying decisions out, shared by the CLI, the watcher and the TUI.

Each function here does one thing a person can name ("reclaim now and record
it", "snooze for an hour") on top of the pure pieces: probes, policy,
reclaim, store.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

from monitor import workingset
from monitor.config import Config
from monitor.policy import Decision, PolicyState, decide
from monitor.reclaim import ReclaimResult, Reclaimer
from monitor.sample import Sample
from monitor.store import Store, default_db_path
from monitor.units import format_bytes, format_duration

POLICY_STATE_KEY = "policy"


def db_path(config: Config, override: str | None = None) -> Path:
    return Path(override or config.general.db or default_db_path())


def load_state(store: Store | None) -> PolicyState:
    return PolicyState.from_json(store.get_state(POLICY_STATE_KEY)) if store else PolicyState()


def save_state(store: Store, state: PolicyState) -> None:
    store.set_state(POLICY_STATE_KEY, state.to_json())


def history_window(config: Config) -> float:
    """How much recent history the policy needs: the longest `for` or idle window, plus slack."""
    longest = max([r.for_ for r in config.rule] + [config.idle.window, 120.0])
    return longest + 4 * config.sampling.interval


def decision_now(config: Config, store: Store | None, sample: Sample, now: float | None = None,
                 wsl_mode: str | None = None, history: Sequence[Sample] | None = None,
                 gradual_available: bool = True) -> tuple[Decision, PolicyState]:
    """What the policy says now, from recent history (given, or read from the store) plus this sample."""
    now = sample.time if now is None else now
    if history is None:
        history = store.recent_samples(history_window(config), now) if store else []
    samples = [s for s in history if s.time < sample.time] + [sample]
    return decide(samples, config, load_state(store), now, wsl_mode, gradual_available)


def reclaim_and_record(reclaimer: Reclaimer, store: Store | None, method: str, *, trigger: str = "manual",
                       dry_run: bool = False, settle: float | None = None) -> ReclaimResult:
    """Run a reclaim, then record its measured result as an event (not for dry runs)."""
    hint = workingset.start_hint(store, reclaimer.config, time.time()) if store is not None else None
    result = reclaimer.run(method, dry_run=dry_run, trigger=trigger, settle=settle, working_set=hint)
    if store is not None and not dry_run:
        workingset.remember(store, result, reclaimer.config, time.time())
        store.add_event("reclaim", describe_reclaim(result), rule=trigger, data=result.to_json(),
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


def set_snooze(store: Store, seconds: float, now: float | None = None) -> PolicyState:
    now = time.time() if now is None else now
    state = load_state(store)
    state = PolicyState(state.rules, now + seconds if seconds > 0 else None, state.paused_until)
    save_state(store, state)
    store.add_event("state", f"snoozed for {format_duration(seconds)}" if seconds > 0 else "snooze cleared")
    return state


def set_pause(store: Store, seconds: float, now: float | None = None) -> PolicyState:
    now = time.time() if now is None else now
    state = load_state(store)
    state = PolicyState(state.rules, state.snoozed_until, now + seconds if seconds > 0 else None)
    save_state(store, state)
    store.add_event("state", f"auto-reclaim paused for {format_duration(seconds)}" if seconds > 0
                    else "auto-reclaim resumed")
    return state
