"""Issue 25 (a): under MGLRU the active file list says nothing of reuse. The probe reads MGLRU's switch from
``sys/kernel/mm/lru_gen/enabled`` (absent: off), `status`, `reclaim --dry-run` and the dashboard say it, and
gradual's bound is the remembered set or the floor, never Active(file), with steps of at most 1/16 of the cache.

Every verdict comes from a recorded tree (linux-vm-mglru: the lab guest's 0x0007) or the fake sysfs tree,
never from this machine's own lru_gen."""

from __future__ import annotations

import dataclasses
import re
import sqlite3
from pathlib import Path

import pytest
from fakekernel import FakeKernel
from helpers import TREES
from test_reclaim_prior import reclaimer, with_active
from test_show_prior import dry_run, meminfo_bytes, status

from monitor.config.schema import Config, ReclaimConfig
from monitor.history.store import Store
from monitor.units import format_bytes
from tui import data

MiB, GiB = 1024**2, 1024**3
NOW = 1_800_022_800.0


def switch(root: Path, text: str) -> None:
    """MGLRU's switch in a tree, as the kernel prints it (``0x0007`` on, ``0x0000`` off)."""
    path = root / "sys/kernel/mm/lru_gen/enabled"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def kernel(tmp_path):
    k = FakeKernel(tmp_path / "tree", cached=8 * GiB, hot=600 * MiB)
    yield k
    k.close()


def test_status_says_the_split_is_mglrus_generations(tmp_path):
    root = TREES / "linux-vm-mglru" / "proc"
    active = meminfo_bytes(root, "Active(file)")
    text, got = status("--proc-root", str(root), "--db", str(tmp_path / "h.db"))
    assert got["guest"]["mglru"] is True and got["active_file_reuse_signal"] is False
    assert got["guest"]["active_file_bytes"] == active  # the number is shown, as what it is
    assert re.search(rf"^    young gens +{re.escape(format_bytes(active))} +Active\(file\): MGLRU is on: its two "
                     r"youngest generations, not a sign of reuse$", text, re.M), text
    assert "older gens" in text and "used again" not in text and "read more than once" not in text


def test_status_without_the_switch_is_the_classic_lru(tmp_path):
    text, got = status("--proc-root", str(TREES / "linux-vm" / "proc"), "--db", str(tmp_path / "h.db"))
    assert got["guest"]["mglru"] is False and got["active_file_reuse_signal"] is True
    assert "used again" in text and "MGLRU" not in text


def test_dry_run_under_mglru_plans_the_floor_and_says_why(kernel, tmp_path):
    with_active(kernel, 2 * GiB)  # classic: the bound would be 2.5 GiB from the active list
    switch(kernel.root, "0x0007\n")
    floor = ReclaimConfig().gradual_floor.resolve(meminfo_bytes(kernel.proc, "MemTotal"))
    text, got = dry_run(kernel, tmp_path / "h.db")
    assert got["lower_bound_source"] == "floor" and got["lower_bound_bytes"] == floor
    assert got["mglru"] is True and got["active_file_reuse_signal"] is False
    assert got["before"]["mglru"] is True and kernel.requests == []
    assert f"would stop near {format_bytes(floor)}: the floor (the safety minimum, [reclaim] gradual_floor); " \
           "MGLRU is on: the active file cache 2.0 GiB is its youngest generations, not pages used more than " \
           "once, so it is no bound: steps of at most 1/16 of the page cache" in text, text
    # the same tree switched off (echo n > enabled): the active list is the bound again
    switch(kernel.root, "0x0000\n")
    _, got = dry_run(kernel, tmp_path / "h.db")
    assert got["lower_bound_source"] == "active" and got["mglru"] is False and got["active_file_reuse_signal"] is True


def test_gradual_under_mglru_takes_steps_of_a_sixteenth_of_the_cache_down_to_the_floor(kernel, tmp_path):
    with_active(kernel, 2 * GiB)
    switch(kernel.root, "0x0007\n")
    result = reclaimer(kernel, tmp_path, []).run("gradual")
    got = result.to_json()
    assert got["stop_reason"] == "floor" and got["lower_bound_source"] == "floor" and got["mglru"] is True
    steps = result.gradual_steps
    assert len(steps) > 10
    for o in steps:  # each request at most 1/16 of the cache it was made at (and a whole step: MemTotal/32)
        assert o.asked <= max(8 * MiB, o.cache_before // 16), o
    assert steps[-2].asked < steps[0].asked / 2  # smaller as the cache goes down, far above the floor too
    assert any(o.cache_before < 2.5 * GiB for o in steps)  # below where the active list would have stopped it
    assert any("lower bound" in n and "MGLRU is on" in n for n in result.notes)


def test_the_history_keeps_the_switch_and_an_older_history_gains_the_column(tmp_path):
    from builders import sample

    db = tmp_path / "h.db"
    on = sample(100.0, 3 * GiB)
    on = dataclasses.replace(on, guest=dataclasses.replace(on.guest, mglru=True))
    off = sample(110.0, 3 * GiB)
    off = dataclasses.replace(off, guest=dataclasses.replace(off.guest, mglru=False))
    with Store(db) as store:
        store.add_sample(on)
        assert store.latest_sample().guest.mglru is True
        store.add_sample(off)
        assert store.latest_sample().guest.mglru is False
        store.roll_up(1000.0)
        _, minutes = store.series(0, 1000.0, tier="samples_1m")
        assert [(r["t"], r["mglru"]) for r in minutes] == [(60.0, 1)]  # on at some point of the minute
    old = tmp_path / "old.db"
    with sqlite3.connect(db) as src, sqlite3.connect(old) as dst:
        for (sql,) in src.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL"):
            dst.execute(sql.replace(", mglru INTEGER", ""))
        dst.execute("INSERT INTO samples (t, page_cache, total) VALUES (?, ?, ?)", (100.0, 2 * GiB, 16 * GiB))
    with Store(old, readonly=True) as reader:
        assert reader.latest_sample().guest.mglru is None  # unknown, not off
    with Store(old) as writer:
        writer.add_sample(on)
        assert writer.latest_sample().guest.mglru is True


def test_the_page_cache_card_and_the_reclaim_offer_say_mglru():
    row = {"t": NOW, "page_cache": 8 * GiB, "total": 16 * GiB, "reclaimable": 8 * GiB,
           "active_file": 1200 * MiB, "inactive_file": int(6.5 * GiB), "mglru": 1}
    card = next(c for c in data.build_cards([row]) if c.key == "page_cache")
    assert card.detail == "1.2G active, 6.5G inactive (MGLRU: generations, not reuse)"
    assert "read again" not in " ".join(card.narrower)
    gain, words = data.expected_gain("gradual", ["gradual"], {**row, "active_file": 6 * GiB}, Config())
    floor = int(16 * GiB * 0.05)
    assert gain == 8 * GiB - floor  # not "nothing to do" above a 7.5 GiB prior
    assert f"would stop near {format_bytes(floor)}: the floor" in words and "MGLRU is on" in words
    classic = {**row, "mglru": 0}
    card = next(c for c in data.build_cards([classic]) if c.key == "page_cache")
    assert card.detail == "1.2G active (read again), 6.5G inactive (read once)"

