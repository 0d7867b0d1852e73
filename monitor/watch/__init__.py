"""The watcher: the recorder's job table and the processes that drive it.

    recorder      the one object that samples, records, decides and acts (its job table)
    clockwork     a standalone dashboard's driver of that table (the watcher's is APScheduler)
    scheduling    APScheduler 3 without asyncio, cron(5) lines as its triggers
    daemon        ``vmmemctl watch`` as a process: logging, signals, reload
    metrics       the optional Prometheus exporter
    wiring        the one composition root: probes, store, reclaims and recorder, built in one place

May import: every box below it (up to monitor.notify); never monitor.cli or tui.
"""
