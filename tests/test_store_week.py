"""A simulated week through the store on an injected clock: a sample every 2 s, maintenance as the
recorder runs it. The database stays within a bound computed from the retention config, and roll-ups
and retention leave exactly the rows the config says."""

from __future__ import annotations

import math

from builders import sample
from monitor.config.schema import HistoryConfig
from monitor.history.store import VALUE_COLUMNS, Store

GiB = 1024**3
START = 1_900_000_200.0  # on a 10-minute boundary (a multiple of 600), in 2030
STEP = 2.0
DAYS = 7
HISTORY = HistoryConfig(raw_for=6 * 3600.0, minute_for=2 * 86400.0, ten_minute_for=5 * 86400.0,
                        events_for=3 * 86400.0)


def maintain(store: Store, now: float) -> None:
    h = HISTORY
    store.roll_up(now)
    store.prune(h.raw_for, h.minute_for, h.ten_minute_for, h.events_for, now)


def test_a_simulated_week_keeps_exactly_what_the_config_says_in_a_bounded_file(tmp_path):
    db = tmp_path / "week.db"
    store = Store(db)
    n = int(DAYS * 86400 / STEP)
    times = [START + i * STEP for i in range(n)]
    batch = 300  # ten simulated minutes a transaction, maintenance after each (the recorder: every minute)
    peak = 0
    for i in range(0, n, batch):
        chunk = [sample(t, cache=(1 + (int(t) // 3600) % 8) * GiB, host=4 * GiB) for t in times[i:i + batch]]
        store.add_samples(chunk)
        if int(chunk[0].time) % 3600 == 0:
            store.add_event("crossing", "an hourly event", t=chunk[0].time)
        maintain(store, chunk[-1].time + STEP)
        peak = max(peak, db.stat().st_size)
    end = times[-1] + STEP
    maintain(store, end)

    def count(table: str) -> int:
        return store.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    # raw: every sample of the last raw_for
    assert count("samples") == sum(1 for t in times if t >= end - HISTORY.raw_for)
    # 1-minute rows: every finished minute (of 30 samples each) within minute_for, once
    minutes = {math.floor(t / 60) * 60 for t in times if t // 60 * 60 < end // 60 * 60}
    kept_minutes = {m for m in minutes if m >= end - HISTORY.minute_for}
    assert count("samples_1m") == len(kept_minutes)
    assert store.db.execute("SELECT MIN(n), MAX(n) FROM samples_1m").fetchone() == (30, 30)
    tens = {math.floor(t / 600) * 600 for t in times if t // 600 * 600 < end // 600 * 600}
    assert count("samples_10m") == len({b for b in tens if b >= end - HISTORY.ten_minute_for})
    assert store.db.execute("SELECT MIN(n), MAX(n) FROM samples_10m").fetchone() == (300, 300)
    hours = {t for t in times if int(t) % 3600 == 0 and int(t) % (batch * STEP) == 0 and t >= end - HISTORY.events_for}
    assert count("events") == len(hours)
    # a roll-up of a roll-up keeps the averages: the 10-minute mean of the page cache is the samples' mean
    b = max(tens) - 600
    in_ten = [(1 + (int(t) // 3600) % 8) * GiB for t in times if b <= t < b + 600]
    (mean,) = store.db.execute("SELECT page_cache FROM samples_10m WHERE t = ?", (b,)).fetchone()
    assert mean == sum(in_ten) // len(in_ten)

    # The file: rows at retention's peak, each at most ~9 bytes a column plus SQLite's cell and index
    # overhead (generous: 2x), plus the WAL's autocheckpoint (1000 pages) and the schema.
    peak_rows = HISTORY.raw_for / STEP + HISTORY.minute_for / 60 + HISTORY.ten_minute_for / 600
    row_bytes = 2 * (9 * (len(VALUE_COLUMNS) + 8) + 16)
    page = store.db.execute("PRAGMA page_size").fetchone()[0]
    bound = peak_rows * row_bytes + 1000 * page + 64 * page
    wal = db.with_name(db.name + "-wal")
    store.close()
    print(f"week: peak {peak} bytes, end {db.stat().st_size}, bound {bound:.0f}")
    assert peak <= bound and db.stat().st_size + (wal.stat().st_size if wal.exists() else 0) <= bound + 1000 * page
