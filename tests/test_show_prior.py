"""Issue 25, item 3: `status`, `reclaim --dry-run` and their JSON show the file cache's active/inactive split
and where a gradual reclaim would stop (the planned lower bound, and where it comes from), in words.

The numbers come from each recorded tree's own meminfo; gradual runs on the fake sysfs tree (this machine
has no cgroup v2 memory.reclaim)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from fakekernel import FakeKernel
from helpers import TREES, run_cli, tree
from test_reclaim_prior import with_active

from monitor.config.schema import ReclaimConfig
from monitor.history.store import Store
from monitor.reclaim import workingset
from monitor.units import format_bytes

MiB, GiB = 1024**2, 1024**3
NO_WINDOWS = {"PATH": "/usr/bin:/bin"}  # no Windows tools: a recorded WSL2 tree is not joined to a real host


def meminfo_bytes(root: Path, key: str) -> int:
    """``Key:   1234 kB`` from a tree's meminfo, in bytes."""
    match = re.search(rf"^{re.escape(key)}:\s+(\d+) kB", (root / "meminfo").read_text(), re.M)
    assert match, key
    return int(match.group(1)) * 1024


@pytest.fixture
def kernel(tmp_path):
    k = FakeKernel(tmp_path / "tree", cached=8 * GiB, hot=600 * MiB)
    yield k
    k.close()


def status(*args: str) -> tuple[str, dict]:
    text = run_cli("status", "--cpu-window", "0", *args, env=NO_WINDOWS)
    assert text.returncode == 0, text.stderr
    data = run_cli("status", "--json", "--cpu-window", "0", *args, env=NO_WINDOWS)
    assert data.returncode == 0, data.stderr
    return text.stdout, json.loads(data.stdout)


def dry_run(kernel: FakeKernel, db: Path, *args: str) -> tuple[str, dict]:
    common = ("reclaim", "--method", "gradual", "--dry-run", "--proc-root", str(kernel.proc), "--db", str(db))
    text = run_cli(*common, *args)
    assert text.returncode == 0, text.stderr
    data = run_cli(*common, "--json", *args)
    assert data.returncode == 0, data.stderr
    return text.stdout, json.loads(data.stdout)


def remember(db: Path, size: int, minutes_ago: float) -> None:
    with Store(db) as store:
        workingset.save(store, workingset.WorkingSet(size, time.time() - 60 * minutes_ago, 0.25))


@pytest.mark.parametrize("name", ["wsl2-ubuntu", "wsl2-2020", "linux-vm", "wsl1"])
def test_status_shows_the_file_cache_split_of_the_recorded_tree(name, tmp_path):
    root = tree(name)
    active, inactive = meminfo_bytes(root, "Active(file)"), meminfo_bytes(root, "Inactive(file)")
    text, data = status("--proc-root", str(root), "--db", str(tmp_path / "h.db"))
    assert data["guest"]["active_file_bytes"] == active and data["guest"]["inactive_file_bytes"] == inactive
    assert re.search(rf"^    used again +{re.escape(format_bytes(active))} +Active\(file\): read more than once "
                     r"recently \(active\)$", text, re.M), text
    assert re.search(rf"^    read once +{re.escape(format_bytes(inactive))} +Inactive\(file\): memory.reclaim "
                     r"takes it first \(inactive\)$", text, re.M), text
    # no memory.reclaim in these trees: `reclaim` would drop the cache at once, so there is no bound to name
    assert data["lower_bound_bytes"] is None and data["lower_bound_source"] is None
    assert "would stop near" not in text


def test_status_without_the_split_leaves_the_rows_out(tmp_path):
    root = TREES / "hostile-missing" / "proc"
    text, data = status("--proc-root", str(root), "--db", str(tmp_path / "h.db"))
    # this hostile tree keeps Active(file) and Inactive(file) but lost Cached: the split still shows
    assert data["guest"]["active_file_bytes"] == meminfo_bytes(root, "Active(file)")
    assert "used again" in text


def test_status_names_the_bound_from_the_active_list(kernel, tmp_path):
    with_active(kernel, 2 * GiB)  # the prior 2.5 GiB is above the floor (5 % of 23.5 GiB = 1.2 GiB)
    text, data = status("--proc-root", str(kernel.proc), "--db", str(tmp_path / "h.db"))
    assert data["lower_bound_bytes"] == int(2.5 * GiB) and data["lower_bound_source"] == "active"
    assert "gradual: would stop near 2.5 GiB: the active file cache 2.0 GiB + 25% (pages used more than once " \
           "recently); sooner if refaults say the working set is higher" in text, text
    assert data["guest"]["active_file_bytes"] == 2 * GiB


def test_status_names_the_remembered_working_set_and_its_age(kernel, tmp_path):
    db = tmp_path / "h.db"
    remember(db, 3 * GiB, minutes_ago=12)  # decayed to ~2.6 GiB: start level ~3.3 GiB, above prior and floor
    text, data = status("--proc-root", str(kernel.proc), "--db", str(db))
    assert data["lower_bound_source"] == "remembered"
    assert data["lower_bound_bytes"] == data["working_set"]["start_level_bytes"]
    # a loaded machine may take a second or more to get here: "12m" or "12m3s"
    assert re.search(r"gradual: would stop near 3\.\d GiB: the start level above the remembered working set "
                     r"\(working set ~ 2\.6 GiB, learned 12m(\d+s)? ago \(learned as 3\.0 GiB, decaying\); "
                     r"margin 25%\)", text), text


def test_status_names_the_floor_and_not_for_another_method(kernel, tmp_path):
    # linux-vm's Active(file) is 136 MiB: its prior (170 MiB) is below the floor
    floor = ReclaimConfig().gradual_floor.resolve(meminfo_bytes(kernel.proc, "MemTotal"))
    text, data = status("--proc-root", str(kernel.proc), "--db", str(tmp_path / "h.db"))
    assert data["lower_bound_bytes"] == floor and data["lower_bound_source"] == "floor"
    assert f"gradual: would stop near {format_bytes(floor)}: the floor (the safety minimum, [reclaim] " \
           "gradual_floor)" in text, text
    conf = tmp_path / "c.toml"
    conf.write_text('[reclaim]\nmethod = "pagecache"\n')
    text, data = status("--proc-root", str(kernel.proc), "--db", str(tmp_path / "h.db"), "--config", str(conf))
    assert data["lower_bound_bytes"] is None and "would stop near" not in text


@pytest.mark.parametrize("source", ["active", "remembered", "floor"])
def test_dry_run_plans_the_bound_and_says_where_it_comes_from(source, kernel, tmp_path):
    db = tmp_path / "h.db"
    total = meminfo_bytes(kernel.proc, "MemTotal")
    expected = {"floor": ReclaimConfig().gradual_floor.resolve(total), "active": int(2.5 * GiB)}
    if source == "active":
        with_active(kernel, 2 * GiB)
    if source == "remembered":
        remember(db, 3 * GiB, minutes_ago=0)
    text, data = dry_run(kernel, db)
    assert data["dry_run"] is True and kernel.requests == []
    assert data["lower_bound_source"] == source
    if source == "remembered":
        with Store(db, readonly=True) as store:  # the dry run read the history, wrote nothing to it
            assert store.events(since=0) == []
        # 3 GiB + 25 %, decayed by the seconds since it was remembered (~0.5 MiB a second: a loaded machine
        # may take a minute to get here, so the bound is a range, not a reading of the clock)
        assert int(3.75 * GiB) - 64 * MiB < data["lower_bound_bytes"] <= int(3.75 * GiB)
        assert "the start level above the remembered working set (working set ~ 3." in text
    else:
        assert data["lower_bound_bytes"] == expected[source]
    lines = [line for line in text.splitlines() if "gradual: would stop near" in line]
    assert len(lines) == 1, text
    assert f"would stop near {format_bytes(data['lower_bound_bytes'])}: " in lines[0]


def test_a_dry_run_with_a_history_that_is_not_one_still_plans(kernel, tmp_path):
    db = tmp_path / "h.db"
    db.write_text("not a database")
    _, data = dry_run(kernel, db)
    assert data["lower_bound_source"] == "floor" and db.read_text() == "not a database"


def test_a_history_from_before_gains_the_split_columns_and_keeps_its_rows(tmp_path):
    """The dashboard reads the split from the history: an older file (no such columns) is read as it is, and
    its first writer adds them; its older rows say "unknown" (the card falls back to the share of RAM)."""
    import dataclasses
    import sqlite3

    from builders import sample

    fresh, old = tmp_path / "fresh.db", tmp_path / "old.db"
    Store(fresh).close()
    with sqlite3.connect(fresh) as db:
        schema = [sql for (sql,) in db.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL")]
    assert all(", active_file INTEGER, inactive_file INTEGER" in s for s in schema if "samples" in s and "TABLE" in s)
    with sqlite3.connect(old) as db:  # the same file as an older version wrote it: one sample, no split
        for sql in schema:
            db.execute(sql.replace(", active_file INTEGER, inactive_file INTEGER", ""))
        db.execute("INSERT INTO samples (t, page_cache, total) VALUES (?, ?, ?)", (100.0, 2 * GiB, 16 * GiB))
    with Store(old, readonly=True) as reader:  # a reader changes nothing
        assert reader.latest_sample().guest.active_file is None
    with sqlite3.connect(old) as db:
        assert "active_file" not in {row[1] for row in db.execute("PRAGMA table_info(samples)")}
    later = sample(200.0, 3 * GiB)
    later = dataclasses.replace(later, guest=dataclasses.replace(later.guest, active_file=GiB, inactive_file=2 * GiB))
    with Store(old) as writer:
        writer.add_sample(later)
        writer.roll_up(1000.0)
        assert writer.latest_sample().guest.active_file == GiB
        _, rows = writer.series(0, 1000.0, tier="samples")
        assert [(r["t"], r["active_file"], r["inactive_file"]) for r in rows] == [(100.0, None, None),
                                                                                  (200.0, GiB, 2 * GiB)]
        _, minutes = writer.series(0, 1000.0, tier="samples_1m")
        assert [(r["t"], r["active_file"]) for r in minutes] == [(60.0, None), (180.0, GiB)]
