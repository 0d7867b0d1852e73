"""The watcher: the recorder's job table and the processes that drive it.

    recorder      the one object that samples, records, decides and acts (its job table)
    driver        the one driver of that table: APScheduler, in the watcher and in a standalone dashboard
    scheduling    APScheduler 3 without asyncio (the dashboard's asyncio one aside), cron(5) lines as triggers
    daemon        ``vmmemctl watch`` as a process: signals, reload, stopping in order
    metrics       the optional Prometheus exporter
    wiring        the one composition root: probes, store, reclaims and recorder, built in one place
    requests      what the watcher does when a client asks (monitor.control's handler)

May import: every box below it (up to monitor.notify); never monitor.cli or tui.
"""
