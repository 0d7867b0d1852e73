"""The policy: what to do now and why, as a pure function, and its state in the history.

    rules         ``decide(samples, config, state, now)`` -> Decision; thresholds, for, cooldown, idle
    state         the rules' state read and saved once, snooze and pause, the window a decision needs

May import: the vocabulary, monitor.config, monitor.history.
"""
