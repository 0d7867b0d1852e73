"""The config: one typed record per TOML table, loaded strictly, explained in config.example.toml.

    schema        the records ([sampling], [[rule]], [reclaim], ...), their defaults and checks
    tomlrecord    the machinery: TOML -> records (unknown keys refused, "did you mean"), and back
    cron          the 5-field cron(5) syntax of [[schedule]] (no APScheduler here)

May import: the vocabulary and monitor.kernel.
"""
