"""The history: samples, events and state in SQLite (WAL), and who records it.

    store         the database: tiers of samples, events (reclaims, prompts...), key/value state
    instance      one recorder per history: the lock beside the database and who holds it
    health        whether the history is being written (a small record readers trust)

May import: the vocabulary, monitor.kernel, monitor.config.
"""
