"""The policy's state in the history: read once, saved once, snooze and pause.

The policy itself (:mod:`monitor.policy.rules`) is pure; this module is where
its state meets the store: the rules' armed/last-fired record, the snooze and
pause deadlines, and the window of recent samples a decision needs.
"""

from __future__ import annotations

import time
from typing import Sequence

from monitor.config.schema import Config
from monitor.history.store import Store
from monitor.policy.rules import Decision, Facts, PolicyState, decide
from monitor.sample import Sample
from monitor.units import format_duration

POLICY_STATE_KEY = "policy"


DEFAULT_SNOOZE = 3600.0  # a prompt's "snooze" without a duration (the dashboard's default choice too)


def load_state(store: Store | None) -> PolicyState:
    return PolicyState.from_json(store.get_state(POLICY_STATE_KEY)) if store else PolicyState()


def save_state(store: Store, state: PolicyState) -> None:
    store.set_state(POLICY_STATE_KEY, state.to_json())


def history_window(config: Config) -> float:
    """How much recent history the policy needs: the longest `for` or idle window, plus slack."""
    longest = max([r.for_ for r in config.rule] + [config.idle.window, 120.0])
    return longest + 4 * config.sampling.interval


def decision_now(config: Config, store: Store | None, sample: Sample, facts: Facts = Facts(),
                 history: Sequence[Sample] | None = None) -> tuple[Decision, PolicyState]:
    """What the policy says at ``sample``'s time, from recent history (given, or read from the store)
    plus this sample."""
    if history is None:
        history = store.recent_samples(history_window(config), sample.time) if store else []
    samples = [s for s in history if s.time < sample.time] + [sample]
    return decide(samples, config, load_state(store), sample.time, facts)


def set_snooze(store: Store, seconds: float, now: float | None = None, by: str = "") -> PolicyState:
    """Snooze notifications and prompts for ``seconds`` (0 clears); ``by``: who asked, for the record.
    One transaction: a watcher's tick between the read and the write (a rule's `armed`, `last_fired`)
    is not wiped out."""
    return _change(store, now, lambda state, now: PolicyState(state.rules, now + seconds if seconds > 0 else None,
                                                              state.paused_until),
                   (f"snoozed for {format_duration(seconds)}" if seconds > 0 else "snooze cleared") + _by(by))


def set_pause(store: Store, seconds: float, now: float | None = None, by: str = "") -> PolicyState:
    """Pause automatic reclaims for ``seconds`` (0 resumes); one transaction, as :func:`set_snooze`."""
    return _change(store, now, lambda state, now: PolicyState(state.rules, state.snoozed_until,
                                                              now + seconds if seconds > 0 else None),
                   (f"auto-reclaim paused for {format_duration(seconds)}" if seconds > 0
                    else "auto-reclaim resumed") + _by(by))


def _change(store: Store, now: float | None, change, words: str) -> PolicyState:
    now = time.time() if now is None else now
    with store.transaction():
        state = change(load_state(store), now)
        save_state(store, state)
        store.add_event("state", words)
    return state


def _by(who: str) -> str:
    return f" (asked by {who})" if who else ""
