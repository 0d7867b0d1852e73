"""The history database: tiers, roll-ups, retention, events, prompts, state, bad files."""

from __future__ import annotations

import sqlite3
import struct

import pytest

from helpers import run_cli
from monitor.errors import UserError
from monitor.sample import GuestSample, HostSample, Sample
from monitor.history.store import SCHEMA_VERSION, Store

GiB = 1024**3
T0 = 1_800_000_000.0 - (1_800_000_000.0 % 600)  # on a 10-minute boundary


def sample(t: float, cache: int, host: int | None = 5 * GiB, cpu: float = 10.0) -> Sample:
    return Sample(GuestSample(time=t, total=16 * GiB, free=GiB, page_cache=cache, cpu_busy_percent=cpu,
                              pgpgin=int(t)), HostSample(t, host, "interop", False))


def test_samples_round_trip(tmp_path):
    with Store(tmp_path / "h.db") as store:
        store.add_sample(sample(T0, 3 * GiB))
        back = store.recent_samples(60, now=T0 + 1)
    assert len(back) == 1
    assert back[0].guest.page_cache == 3 * GiB and back[0].host.bytes == 5 * GiB
    assert back[0].host.source == "interop" and not back[0].host.estimated


def test_roll_ups_average_and_keep_extremes(tmp_path):
    with Store(tmp_path / "h.db") as store:
        for i in range(60 * 30):  # 30 minutes of 1 s samples, page cache ramps 0..1799 MiB
            store.add_sample(sample(T0 + i, i * 2**20, host=None if i % 7 == 0 else 4 * GiB + i * 2**20))
        written = store.roll_up(now=T0 + 1800)
        assert written == 30 + 3
        tier, minutes = store.series(T0, T0 + 1800, tier="samples_1m")
        assert len(minutes) == 30
        first = minutes[0]
        assert first["page_cache"] == int(sum(range(60)) / 60 * 2**20)  # the mean of minute 0
        assert first["page_cache_min"] == 0 and first["page_cache_max"] == 59 * 2**20
        assert first["host_min"] == 4 * GiB + 1 * 2**20  # the unknown (None) reading at i=0 is not a zero
        assert first["pgpgin"] == int(T0 + 59)  # counters keep their last value
        _, tens = store.series(T0, T0 + 1800, tier="samples_10m")
        assert len(tens) == 3 and tens[0]["n"] == 600
        assert tens[0]["page_cache_max"] == 599 * 2**20
        assert store.roll_up(now=T0 + 1800) == 0  # nothing new: idempotent


def test_roll_up_only_writes_finished_buckets(tmp_path):
    with Store(tmp_path / "h.db") as store:
        for i in range(90):
            store.add_sample(sample(T0 + i, GiB))
        store.roll_up(now=T0 + 90)
        _, minutes = store.series(T0, T0 + 90, tier="samples_1m")
        assert [m["t"] for m in minutes] == [T0]  # minute 1 is not over yet
        store.roll_up(now=T0 + 121)
        _, minutes = store.series(T0, T0 + 121, tier="samples_1m")
        assert len(minutes) == 2 and minutes[1]["n"] == 30


def test_prune_keeps_each_tier_its_own_time(tmp_path):
    with Store(tmp_path / "h.db") as store:
        for i in range(0, 4 * 3600, 10):
            store.add_sample(sample(T0 + i, GiB))
        store.add_event("notify", "old", t=T0)
        store.roll_up(now=T0 + 4 * 3600)
        store.prune(raw_for=3600, minute_for=2 * 3600, ten_minute_for=3 * 3600, events_for=60, now=T0 + 4 * 3600)
        assert store.db.execute("SELECT MIN(t) FROM samples").fetchone()[0] >= T0 + 3 * 3600
        assert store.db.execute("SELECT MIN(t) FROM samples_1m").fetchone()[0] >= T0 + 2 * 3600
        assert store.db.execute("SELECT MIN(t) FROM samples_10m").fetchone()[0] >= T0 + 3600
        assert store.events() == []


def test_range_picks_the_tier(tmp_path):
    with Store(tmp_path / "h.db") as store:
        assert store.tier_for(300) == "samples"
        assert store.tier_for(3600) == "samples"
        assert store.tier_for(86400) == "samples_1m"
        assert store.tier_for(7 * 86400) == "samples_1m"
        assert store.tier_for(30 * 86400) == "samples_10m"


def test_prompts_are_answered_once(tmp_path):
    with Store(tmp_path / "h.db") as store:
        pid = store.add_event("prompt", "page cache 9.8 GiB. Reclaim?", rule="cache-prompt", status="pending",
                              data={"method": "auto"})
        assert [p.id for p in store.pending_prompts()] == [pid]
        assert store.answer_prompt(pid, "snoozed", "1h")
        assert not store.answer_prompt(pid, "dismissed")  # already answered
        assert store.pending_prompts() == []
        kinds = [(e.kind, e.status) for e in store.events()]
        assert kinds == [("prompt", "snoozed"), ("answer", None)]
        assert store.events(kinds=["answer"])[0].data == {"prompt": pid, "answer": "snoozed"}


def test_state_survives_reopening(tmp_path):
    with Store(tmp_path / "h.db") as store:
        store.set_state("policy", {"snoozed_until": 5.0})
    with Store(tmp_path / "h.db") as store:
        assert store.get_state("policy") == {"snoozed_until": 5.0}
        assert store.get_state("missing", 7) == 7


def test_a_reader_reads_while_a_writer_writes(tmp_path):
    writer = Store(tmp_path / "h.db")
    reader = Store(tmp_path / "h.db", readonly=True)
    try:
        writer.db.execute("BEGIN IMMEDIATE")
        writer.add_sample(sample(T0, GiB))
        assert reader.recent_samples(60, now=T0) == []  # not committed yet, and the reader is not blocked
        writer.db.execute("COMMIT")
        assert len(reader.recent_samples(60, now=T0)) == 1
    finally:
        writer.close()
        reader.close()


@pytest.mark.parametrize("content", [b"this is not a database", b"SQLite format 3\x00" + b"\xff" * 200])
def test_not_a_database_is_one_line(tmp_path, content):
    path = tmp_path / "bad.db"
    path.write_bytes(content)
    with pytest.raises(UserError, match="history database .*bad.db"):
        Store(path)
    result = run_cli("reclaim", "--method", "compact", "--settle", "0", "--db", str(path))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert path.read_bytes() == content  # nothing overwritten


def test_history_cli_formats(tmp_path):
    import json
    import time
    db = tmp_path / "h.db"
    now = time.time()
    with Store(db) as store:
        for i in range(5):
            store.add_sample(sample(now - 50 + i * 10, (i + 1) * GiB))
        store.add_event("reclaim", "reclaim pagecache (manual): freed 1.0 GiB", data={"freed_bytes": GiB})
    table = run_cli("history", "--db", str(db), "--since", "5m")
    assert table.returncode == 0 and "5 rows, every sample" in table.stdout and "5.0 GiB" in table.stdout
    rows = json.loads(run_cli("history", "--db", str(db), "--format", "json").stdout)
    assert [r["page_cache"] for r in rows] == [(i + 1) * GiB for i in range(5)]
    csv_text = run_cli("history", "--db", str(db), "--format", "csv").stdout
    assert csv_text.splitlines()[0].startswith("time,t,host_source") and len(csv_text.splitlines()) == 6
    events = json.loads(run_cli("history", "--db", str(db), "--events", "--format", "json").stdout)
    assert events[0]["kind"] == "reclaim" and events[0]["data"] == {"freed_bytes": GiB}
    missing = run_cli("history", "--db", str(tmp_path / "nope.db"))
    assert missing.returncode == 2 and "no history at" in missing.stderr


def test_a_store_is_wal_with_its_schema_version_and_integrity_finds_damage(tmp_path):
    """What the module promises: WAL (readers beside the writer, kill -9 loses at most the transaction in
    flight: the kill -9 test asks integrity() afterwards), the schema version recorded once; and
    integrity() really looks: a damaged page is reported, not "ok"."""
    db = tmp_path / "h.db"
    with Store(db) as store:
        assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: safe in WAL, see _connect
        for i in range(200):  # their time index fits one page
            store.add_event("state", f"event {i}", t=T0 + i)
        assert store.integrity() == "ok"
    Store(db).close()  # opened again: the version row is not written twice
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # kept in the file, for every reader
        assert con.execute("SELECT key, value FROM meta").fetchall() == [("schema_version", str(SCHEMA_VERSION))]
        page_size = con.execute("PRAGMA page_size").fetchone()[0]
        (root,) = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'events_t'").fetchone()
    finally:
        con.close()
    with open(db, "r+b") as f:  # the index on the events' times emptied: its page made a leaf of no cells
        f.seek((root - 1) * page_size)  # (type 0x0a, no freeblock, 0 cells, content from the page's end)
        f.write(struct.pack(">BHHHB", 0x0A, 0, 0, page_size % 65536, 0))
    with Store(db) as store:  # the file still opens and the samples still read ...
        assert store.latest_sample() is None
        verdict = store.integrity()
    assert "missing from index events_t" in verdict  # ... and integrity() says what is wrong, and where


# ------------------------------------------------------------- which host metric (issue 27)


def _measured(t: float, metric: str | None, host: int | None = 5 * GiB) -> Sample:
    s = sample(t, GiB, host=host)
    return Sample(s.guest, HostSample(t, host, "interop", False, metric=metric))


def test_the_host_metric_is_kept_per_sample(tmp_path):
    with Store(tmp_path / "h.db") as store:
        store.add_samples([_measured(T0, "private_working_set"), _measured(T0 + 1, "working_set"),
                           _measured(T0 + 2, "working_set", host=None)])
        back = store.recent_samples(60, now=T0 + 3)
        assert [s.host.metric for s in back] == ["private_working_set", "working_set", None]  # no figure: no metric
        assert store.rows_after(T0 - 1)[0]["host_metric"] == "private_working_set"


def test_a_roll_up_says_when_its_bucket_mixed_two_metrics(tmp_path):
    with Store(tmp_path / "h.db") as store:
        # minute 0: private set only; minute 1: private set, then tasklist's whole working set
        rows = [_measured(T0 + i, "private_working_set") for i in range(0, 90)]
        rows += [_measured(T0 + i, "working_set", host=6 * GiB) for i in range(90, 120)]
        rows += [_measured(T0 + i, "working_set", host=6 * GiB) for i in range(600, 660)]
        store.add_samples(rows)
        store.roll_up(now=T0 + 1800)
        _, minutes = store.series(T0, T0 + 1800, tier="samples_1m")
        assert [(r["t"] - T0, r["host_metric"]) for r in minutes] == [
            (0, "private_working_set"), (60, "mixed"), (600, "working_set")]
        _, tens = store.series(T0, T0 + 1800, tier="samples_10m")
        assert [(r["t"] - T0, r["host_metric"]) for r in tens] == [(0, "mixed"), (600, "working_set")]


def test_a_history_from_before_gains_host_metric_from_its_first_writer(tmp_path):
    """An older file (no host_metric) is read as it is; its first writer adds the column in every tier;
    its older rows say unknown (None), never a guessed metric."""
    fresh, old = tmp_path / "fresh.db", tmp_path / "old.db"
    Store(fresh).close()
    with sqlite3.connect(fresh) as db:
        schema = [sql for (sql,) in db.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL")]
    assert all(", host_metric TEXT" in s for s in schema if "samples" in s and "TABLE" in s)
    with sqlite3.connect(old) as db:
        for sql in schema:
            db.execute(sql.replace(", host_metric TEXT", ""))
        db.execute("INSERT INTO samples (t, host_source, host_estimated, host_bytes, total) VALUES (?, ?, ?, ?, ?)",
                   (T0, "interop", 0, 5 * GiB, 16 * GiB))
    with Store(old, readonly=True) as reader:  # a reader changes nothing
        assert reader.latest_sample().host.metric is None
    with sqlite3.connect(old) as db:
        assert "host_metric" not in {row[1] for row in db.execute("PRAGMA table_info(samples)")}
    with Store(old) as writer:
        writer.add_sample(_measured(T0 + 1, "private_working_set"))
        writer.roll_up(T0 + 1800)
        assert [s.host.metric for s in writer.recent_samples(60, now=T0 + 2)] == [None, "private_working_set"]
    with sqlite3.connect(old) as db:
        for table in ("samples", "samples_1m", "samples_10m"):
            assert "host_metric" in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}, table
