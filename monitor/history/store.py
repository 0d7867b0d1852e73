"""The single history: samples, events and remembered state, in one SQLite file.

The watcher (or a standalone TUI) writes; the TUI, ``history`` and ``status``
read, all at once: WAL mode lets readers read while one writer writes, and a
process killed with ``kill -9`` loses at most the transaction in flight.

Three tiers keep a week of 2 s samples small and a 7-day query fast:

    samples      every sample, kept [history] raw_for (6 h)
    samples_1m   one row a minute: averages, plus min/max of host and page cache, kept minute_for (7 d)
    samples_10m  one row per 10 minutes, kept ten_minute_for (90 d)

Roll-ups are written continuously (each finished minute as soon as it ends),
so every tier covers up to "now" and a range query reads exactly one tier.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import urllib.parse
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Any, Sequence

from monitor.errors import UserError
from monitor.sample import GuestSample, HostSample, Pressure, Sample

SCHEMA_VERSION = 1
# Columns every tier has, in order. Bytes are integers, percentages reals. host_bytes first, the guest's
# figures (GuestSample's fields), then host_available (the host's own available memory: issue 27).
VALUE_COLUMNS = (
    "host_bytes", "total", "free", "available", "anon", "used", "page_cache", "shmem", "slab_reclaimable", "dirty",
    "reclaimable", "returnable_free", "fragmented_free", "psi_memory_some_avg10", "psi_io_some_avg10",
    "cpu_busy_percent", "workingset_refault_file", "pgpgin", "drop_pagecache", "active_file", "inactive_file",
    "mglru", "host_available",
)
GUEST_COLUMNS = VALUE_COLUMNS[1:-1]
REAL_COLUMNS = {"psi_memory_some_avg10", "psi_io_some_avg10", "cpu_busy_percent"}
COUNTERS = {"workingset_refault_file", "pgpgin", "drop_pagecache"}  # roll-ups keep the last value, not the mean
FLAGS = {"mglru"}  # 0/1: a roll-up says 1 if any sample in it did (MGLRU on at some point of the bucket)
TIERS = (("samples", 0), ("samples_1m", 60), ("samples_10m", 600))
# What host_bytes is (monitor.sample.HostMetric), in every tier; a roll-up bucket whose rows were measured
# by more than one metric says MIXED: its averages mix two meanings (issue 27).
MIXED = "mixed"
TEXT_COLUMNS = ("host_metric",)
TIER_WORDS = {"samples": "every sample", "samples_1m": "1-minute averages", "samples_10m": "10-minute averages"}
EVENT_KINDS = ("crossing", "notify", "prompt", "answer", "reclaim", "schedule", "error", "state", "watch", "dashboard")


def _column_sql(name: str) -> str:
    return f"{name} {'REAL' if name in REAL_COLUMNS else 'INTEGER'}"


def _schema() -> str:
    values = ", ".join(_column_sql(c) for c in VALUE_COLUMNS)
    rollup_extra = "n INTEGER, host_min INTEGER, host_max INTEGER, page_cache_min INTEGER, page_cache_max INTEGER"
    return f"""
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
    CREATE TABLE IF NOT EXISTS samples (t REAL PRIMARY KEY, host_source TEXT, host_estimated INTEGER,
                                        host_total INTEGER, {values}, host_metric TEXT);
    CREATE TABLE IF NOT EXISTS samples_1m (t REAL PRIMARY KEY, {values}, {rollup_extra}, host_metric TEXT);
    CREATE TABLE IF NOT EXISTS samples_10m (t REAL PRIMARY KEY, {values}, {rollup_extra}, host_metric TEXT);
    CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, t REAL NOT NULL, kind TEXT NOT NULL,
                                       rule TEXT, message TEXT NOT NULL, data TEXT, status TEXT);
    CREATE INDEX IF NOT EXISTS events_t ON events (t);
    CREATE INDEX IF NOT EXISTS events_pending ON events (kind, status);
    CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """


@dataclass(frozen=True)
class Event:
    id: int
    t: float
    kind: str
    message: str
    rule: str | None = None
    data: dict | None = None
    status: str | None = None


class Store:
    """One connection to the history database. Not shared across threads."""

    def __init__(self, path: str | Path, *, readonly: bool = False, timeout: float = 10.0):
        """One connection. The watcher hands it between its main thread and one worker thread,
        never using it from two at once, hence ``check_same_thread=False`` below."""
        self.path = Path(path)
        self._fspath = str(self.path)
        self.readonly, self.timeout = readonly, timeout
        self._saved: Path | None = None  # where our content went when the file was replaced under us
        try:
            self.db = self._connect(readonly, timeout)
            self._identity = None if readonly else _file_identity(self.path)
        except (OSError, sqlite3.Error) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise UserError(f"history database {self.path}: {reason} (expected a vmmemctl SQLite file; "
                            "--db PATH chooses another)") from None

    def _connect(self, readonly: bool, timeout: float) -> sqlite3.Connection:
        if readonly:
            db = self._connect_readonly(timeout)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a crashed process loses nothing committed; the
            # file is never corrupt. Only a power cut may lose the last commits.
            db.execute("PRAGMA synchronous=NORMAL")
            # A writer reads little (the last minutes for roll-ups, an index for pruning): 512 KiB of page
            # cache instead of SQLite's 2 MiB keeps a week-old watcher's RSS where it starts (issue 24).
            db.execute("PRAGMA cache_size=-512")
            db.executescript(_schema())
            _add_missing_columns(db)
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        db.execute("SELECT COUNT(*) FROM samples").fetchone()  # a file that is not our database fails here
        return db

    def _connect_readonly(self, timeout: float) -> sqlite3.Connection:
        """A reader's connection: never writes, so it works on a history it may read but not write.
        A WAL reader needs the -shm file, which the writer keeps while it runs; with no writer
        (no -wal file: the last one checkpointed and removed both) and a folder it cannot write,
        the file is opened as immutable: nothing can change it under this one read."""
        uri = f"file:{urllib.parse.quote(str(self.path))}?mode=ro"
        db = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False)
        try:
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError:
            db.close()
            if Path(f"{self.path}-wal").exists():
                raise
        return sqlite3.connect(uri + "&immutable=1", uri=True, timeout=timeout, isolation_level=None,
                               check_same_thread=False)

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------- the file under us

    def file_changed(self) -> str | None:
        """"deleted" or "replaced" when the file at our path is no longer the one we write, else None.
        (SQLite would go on writing an unlinked file: every sample after `rm` would be lost.)"""
        if self.readonly:
            return None
        try:
            now = _file_identity(self._fspath)  # every tick: the str, not the Path's __fspath__
        except FileNotFoundError:
            return "deleted"
        return None if now == self._identity else "replaced"

    def follow_file(self, change: str) -> str:
        """Go on recording at our path after its file was deleted or replaced; says what was done.

        Deleted: a new file at the path with everything we had (SQLite's online backup of our open
        connection). Replaced: our content saved beside it (``NAME.replaced-TIME``) and the new file
        opened; a UserError (one line) when the new file is not a history.
        """
        if change == "deleted":
            fresh = self.path.with_name(self.path.name + ".restoring")
            self._backup_to(fresh)
            self._close_orphan()
            os.replace(fresh, self.path)
            self.db = self._connect(False, self.timeout)
            self._identity = _file_identity(self.path)
            return f"{self.path} was deleted while recording: made it again with the whole history"
        if self._saved is None:
            self._saved = self.path.with_name(f"{self.path.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
            self._backup_to(self._saved)
            self._close_orphan()
        try:
            self.db = self._connect(False, self.timeout)
        except (OSError, sqlite3.Error) as exc:
            raise UserError(f"{self.path} was replaced while recording by something that is not a vmmemctl "
                            f"history ({exc}); what we had is in {self._saved}") from None
        self._identity = _file_identity(self.path)
        saved, self._saved = self._saved, None
        return f"{self.path} was replaced while recording: recording into the new file; what it held is in {saved}"

    def _backup_to(self, target: Path) -> None:
        dest = sqlite3.connect(target)
        try:
            self.db.backup(dest)
        finally:
            dest.close()

    def _close_orphan(self) -> None:
        """Close the connection to a file no longer at our path, and remove its -wal/-shm: they are
        found by name, and SQLite would read the old file's pages into whatever is at the path now."""
        self.db.close()
        for suffix in ("-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------- samples

    def add_samples(self, samples: Sequence[Sample]) -> None:
        """Several samples in one transaction: all are written, or (disk full) none. One sample (every
        tick but a backlog's) is one statement, which SQLite commits as its own transaction: a third
        of the statements a tick ran (BEGIN, INSERT, COMMIT), a tenth of the watcher's CPU."""
        if len(samples) == 1:
            self.add_sample(samples[0])
            return
        with self.transaction():
            self.db.executemany(_INSERT_SAMPLE, map(sample_values, samples))

    def add_sample(self, sample: Sample) -> None:
        self.db.execute(_INSERT_SAMPLE, sample_values(sample))

    def recent_samples(self, seconds: float, now: float | None = None) -> list[Sample]:
        """Raw samples of the last ``seconds``, oldest first (what the policy reads)."""
        now = time.time() if now is None else now
        cur = self.db.execute("SELECT * FROM samples WHERE t >= ? ORDER BY t", (now - seconds,))
        names = [d[0] for d in cur.description]
        return [row_sample(dict(zip(names, r))) for r in cur.fetchall()]

    def rows_after(self, t: float, limit: int = 100) -> list[dict[str, Any]]:
        """The samples table's rows after ``t`` (the oldest ``limit``), as sample_row gives them: what a
        subscription sends, without a Sample in between."""
        cur = self.db.execute("SELECT * FROM samples WHERE t > ? ORDER BY t LIMIT ?", (t, limit))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def latest_sample(self) -> Sample | None:
        cur = self.db.execute("SELECT * FROM samples ORDER BY t DESC LIMIT 1")
        row = cur.fetchone()
        return row_sample(dict(zip([d[0] for d in cur.description], row))) if row else None

    def series(self, since: float, until: float | None = None, tier: str | None = None) -> tuple[str, list[dict]]:
        """Rows between ``since`` and ``until`` from the finest tier that keeps that far back."""
        until = time.time() if until is None else until
        tier = tier or self.tier_for(until - since)
        cur = self.db.execute(f"SELECT * FROM {tier} WHERE t >= ? AND t <= ? ORDER BY t", (since, until))
        names = [d[0] for d in cur.description]
        return tier, [dict(zip(names, r)) for r in cur.fetchall()]

    def tier_for(self, span: float) -> str:
        raw_for = float(self.get_state("raw_for", 6 * 3600))
        minute_for = float(self.get_state("minute_for", 7 * 86400))
        if span <= min(raw_for, 2 * 3600):
            return "samples"
        return "samples_1m" if span <= minute_for else "samples_10m"

    # ------------------------------------------------------------- roll-ups and retention

    def roll_up(self, now: float | None = None, since: float | None = None) -> int:
        """Write every finished minute and 10-minute bucket not written yet; returns rows written.
        ``since``: also write again the buckets from there on (after the clock stepped back, new
        samples land in buckets already written: each is recomputed from all its rows, not doubled)."""
        now = time.time() if now is None else now
        written = 0
        for (source, _), (target, width) in zip(TIERS, TIERS[1:]):
            written += self._roll(source, target, width, now, since)
        return written

    def _roll(self, source: str, target: str, width: int, now: float, since: float | None = None) -> int:
        last = self.db.execute(f"SELECT MAX(t) FROM {target}").fetchone()[0]
        first = self.db.execute(f"SELECT MIN(t) FROM {source}").fetchone()[0]
        if first is None:
            return 0
        start = (last + width) if last is not None else (first // width) * width
        if since is not None:
            start = min(start, max(since // width * width, first // width * width))
        end = (now // width) * width  # buckets that have finished
        if start >= end:
            return 0
        weight = "1" if source == "samples" else "n"
        host_min = "host_bytes" if source == "samples" else "host_min"
        host_max = "host_bytes" if source == "samples" else "host_max"
        pc_min = "page_cache" if source == "samples" else "page_cache_min"
        pc_max = "page_cache" if source == "samples" else "page_cache_max"
        aggregates = []
        for c in VALUE_COLUMNS:
            if c in COUNTERS or c in FLAGS:
                aggregates.append(f"MAX({c})")
            elif c in REAL_COLUMNS:
                aggregates.append(f"SUM({c} * {weight}) / SUM(CASE WHEN {c} IS NULL THEN 0 ELSE {weight} END)")
            else:
                aggregates.append(
                    f"CAST(SUM({c} * {weight}) / SUM(CASE WHEN {c} IS NULL THEN 0 ELSE {weight} END) AS INTEGER)")
        metric = f"CASE WHEN COUNT(DISTINCT host_metric) > 1 THEN '{MIXED}' ELSE MAX(host_metric) END"
        sql = (f"INSERT OR REPLACE INTO {target} (t, {', '.join(VALUE_COLUMNS)}, n, host_min, host_max, "
               f"page_cache_min, page_cache_max, host_metric) "
               f"SELECT CAST(t / {width} AS INTEGER) * {width} AS bucket, {', '.join(aggregates)}, "
               f"SUM({weight}), MIN({host_min}), MAX({host_max}), MIN({pc_min}), MAX({pc_max}), {metric} "
               f"FROM {source} WHERE t >= ? AND t < ? GROUP BY bucket")
        return self.db.execute(sql, (start, end)).rowcount

    def prune(self, raw_for: float, minute_for: float, ten_minute_for: float, events_for: float,
              now: float | None = None) -> None:
        now = time.time() if now is None else now
        self.set_state("raw_for", raw_for)
        self.set_state("minute_for", minute_for)
        with self.transaction():
            for table, keep in (("samples", raw_for), ("samples_1m", minute_for), ("samples_10m", ten_minute_for),
                                ("events", events_for)):
                self.db.execute(f"DELETE FROM {table} WHERE t < ?", (now - keep,))

    # ------------------------------------------------------------- events

    def add_event(self, kind: str, message: str, *, rule: str | None = None, data: dict | None = None,
                  status: str | None = None, t: float | None = None) -> int:
        assert kind in EVENT_KINDS, kind
        cur = self.db.execute(
            "INSERT INTO events (t, kind, rule, message, data, status) VALUES (?, ?, ?, ?, ?, ?)",
            (time.time() if t is None else t, kind, rule, message, json.dumps(data) if data else None, status))
        return int(cur.lastrowid)

    def events(self, since: float = 0, kinds: Sequence[str] | None = None, limit: int = 1000,
               without: Sequence[str] = ()) -> list[Event]:
        """Events since ``since``, oldest first (the newest ``limit``); only ``kinds``, none of ``without``."""
        sql = "SELECT id, t, kind, message, rule, data, status FROM events WHERE t >= ?"
        args: list[Any] = [since]
        if kinds:
            sql += f" AND kind IN ({', '.join('?' for _ in kinds)})"
            args += list(kinds)
        if without:
            sql += f" AND kind NOT IN ({', '.join('?' for _ in without)})"
            args += list(without)
        sql += " ORDER BY t DESC, id DESC LIMIT ?"
        rows = self.db.execute(sql, (*args, limit)).fetchall()
        return [Event(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]) if r[5] else None, r[6]) for r in rows][::-1]

    def events_after(self, event_id: int, limit: int = 100) -> list[Event]:
        """The events added after ``event_id``, oldest first (the first ``limit``)."""
        rows = self.db.execute("SELECT id, t, kind, message, rule, data, status FROM events WHERE id > ? "
                               "ORDER BY id LIMIT ?", (event_id, limit)).fetchall()
        return [Event(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]) if r[5] else None, r[6]) for r in rows]

    def update_event_data(self, event_id: int, patch: dict) -> bool:
        """Merge ``patch`` into an event's data (a reclaim's cost, measured after it); False if it is gone."""
        with self.transaction():
            row = self.db.execute("SELECT data FROM events WHERE id = ?", (event_id,)).fetchone()
            if row is None:
                return False
            data = {**(json.loads(row[0]) if row[0] else {}), **patch}
            self.db.execute("UPDATE events SET data = ? WHERE id = ?", (json.dumps(data), event_id))
            self._event_changed()
        return True

    def events_version(self) -> tuple[int | None, int, int]:
        """(highest event id, number of events, changes made in place): changes whenever an event is
        added, pruned, or changed where it is (a reclaim's cost measured minutes later, a prompt
        answered or expired): a dashboard's "has anything changed" (issue 24: costs never arrived)."""
        top, count = self.db.execute("SELECT MAX(id), COUNT(*) FROM events").fetchone()
        changed = self.db.execute("SELECT value FROM state WHERE key = 'events_changed'").fetchone()
        return top, count, int(changed[0]) if changed and str(changed[0]).isdigit() else 0

    def _event_changed(self) -> None:
        """Count a change in place (inside the caller's transaction)."""
        self.db.execute("INSERT INTO state VALUES ('events_changed', '1') ON CONFLICT(key) DO UPDATE SET "
                        "value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)")

    def pending_prompts(self) -> list[Event]:
        rows = self.db.execute("SELECT id, t, kind, message, rule, data, status FROM events "
                               "WHERE kind = 'prompt' AND status = 'pending' ORDER BY t").fetchall()
        return [Event(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]) if r[5] else None, r[6]) for r in rows]

    def answer_prompt(self, prompt_id: int, answer: str, detail: str = "") -> bool:
        """Mark a pending prompt answered (reclaimed | snoozed | dismissed | expired) and record the answer."""
        with self.transaction():
            cur = self.db.execute("UPDATE events SET status = ? WHERE id = ? AND kind = 'prompt' AND status = 'pending'",
                                  (answer, prompt_id))
            if cur.rowcount == 0:
                return False
            self._event_changed()
            self.add_event("answer", f"prompt {prompt_id}: {answer}" + (f" ({detail})" if detail else ""),
                           data={"prompt": prompt_id, "answer": answer})
        return True

    # ------------------------------------------------------------- state

    def get_state(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_state(self, key: str, value: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (key, json.dumps(value)))

    def transaction(self) -> _Transaction:
        return _Transaction(self.db)

    def changed_elsewhere(self) -> bool:
        """Whether another connection (a client's request, a reclaim's own connection, another process)
        committed to the file since the last call on this connection; True on the first call and after
        a reconnect. One cheap query (SQLite's ``PRAGMA data_version``): the watcher's tick asks it
        instead of reading back state it wrote itself."""
        seen = (id(self.db), self.db.execute("PRAGMA data_version").fetchone()[0])
        changed, self._data_version = seen != getattr(self, "_data_version", None), seen
        return changed

    def integrity(self) -> str:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0]


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if not exc_type:
            try:
                self.db.execute("COMMIT")
            except sqlite3.Error:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
        elif self.db.in_transaction:  # SQLite may have rolled back itself (disk full): do not mask the cause
            self.db.execute("ROLLBACK")


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """A history written by an older version gains the columns added since (active_file, inactive_file and
    mglru: issue 25; host_metric, host_available: issue 27); its older rows read them as NULL (unknown). Readers never change a
    file: they read what is."""
    for table, _ in TIERS:
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        for column in (*VALUE_COLUMNS, *TEXT_COLUMNS):
            if column not in have:
                sql = f"{column} TEXT" if column in TEXT_COLUMNS else _column_sql(column)
                try:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {sql}")
                except sqlite3.OperationalError as exc:  # another writer opening it at the same moment added it
                    if "duplicate column" not in str(exc):
                        raise


def _file_identity(path: str | Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


SAMPLE_COLUMNS = ("t", "host_source", "host_estimated", "host_total", *VALUE_COLUMNS, "host_metric")
_INSERT_SAMPLE = (f"INSERT OR REPLACE INTO samples ({', '.join(SAMPLE_COLUMNS)}) "
                  f"VALUES ({', '.join('?' for _ in SAMPLE_COLUMNS)})")
_guest_values = attrgetter(*GUEST_COLUMNS)  # every one a field or property of GuestSample


def sample_values(sample: Sample) -> tuple:
    """A sample's row for the samples table, in SAMPLE_COLUMNS order (what the tick writes)."""
    h = sample.host
    return (sample.time, h.source, int(h.estimated), h.host_total, h.bytes, *_guest_values(sample.guest),
            h.host_available, h.metric if h.bytes is not None else None)


def sample_row(sample: Sample) -> dict[str, Any]:
    return dict(zip(SAMPLE_COLUMNS, sample_values(sample)))


def row_sample(row: dict[str, Any]) -> Sample:
    """A stored row back into a Sample (with the fields the store keeps)."""
    fields = {c: row.get(c) for c in GUEST_COLUMNS if c not in ("psi_memory_some_avg10", "psi_io_some_avg10")}
    if fields["mglru"] is not None:  # stored as 0/1
        fields["mglru"] = bool(fields["mglru"])
    psi = {k: Pressure(some_avg10=row.get(f"psi_{k}_some_avg10")) if row.get(f"psi_{k}_some_avg10") is not None
           else None for k in ("memory", "io")}
    guest = GuestSample(time=row["t"], psi_memory=psi["memory"], psi_io=psi["io"], **fields)
    host = HostSample(row["t"], row.get("host_bytes"), row.get("host_source") or "estimate",
                      bool(row.get("host_estimated", 1)), host_total=row.get("host_total"),
                      metric=row.get("host_metric"),  # None in a row from before issue 27: not guessed
                      host_available=row.get("host_available"))
    return Sample(guest, host)


def open_existing(path: Path) -> Store | None:
    """The store, read-only, if its file exists (readers create nothing, write nothing, and work for a
    user who may read the watcher's history but not write it), else None."""
    return Store(path, readonly=True) if path.exists() else None

