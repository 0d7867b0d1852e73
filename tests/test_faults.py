"""Faults injected for real: a full 2 MiB tmpfs, the database deleted or replaced
under a running recorder, a /proc file gone or cut short mid-run, and named paths that cannot be.

Each shows one line or one event, a visible state, and nothing recorded lost."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, TREES, as_nobody, needs_nobody, run_cli, wait_for_samples
from monitor.config.schema import Config, ReclaimConfig
from monitor.history.health import history_words, read_health
from monitor.notify import Notifier
from monitor.probes.probeset import build
from monitor.kernel.procfs import LocalFiles
from monitor.history.instance import take_instance_lock
from monitor.watch.recorder import Recorder
from monitor.history.store import Store
from monitor.sample import Environment
from monitor.watch.metrics import Metrics
from monitor.watch.wiring import Wiring

CONFIG = Config(reclaim=ReclaimConfig(settle=0.0))


def recorder_at(db: Path, proc: Path | None = None) -> Recorder:
    """The recorder as `vmmemctl watch` builds it, on a copy of the recorded WSL2 tree."""
    files = LocalFiles(str(proc or (TREES / "wsl2-ubuntu" / "proc")))
    wiring = Wiring(CONFIG, db, environ={}, reclaim_lock=db.with_name("reclaim.lock"),
                    probes_factory=lambda c, env: build(c, environ={}, files=files))
    return wiring.recorder(Notifier([]))


def count(db: Path, table: str = "samples") -> int:
    with Store(db, readonly=True) as store:
        return store.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def dashboard_header(db: Path) -> str:
    """The header line of an attached dashboard on ``db``, as the TUI shapes it."""
    from tui.source import DataSource, Setup

    setup = Setup(CONFIG, db, False, 2.0, timers=False, environ={})
    source = DataSource(setup)
    source.start()
    try:
        header = source.snapshot("5m", 80).header
        return " ".join([header.mode, header.latest])
    finally:
        source.close()


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MiB tmpfs of the test's own (root only)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(disk: Path) -> Path:
    """Fill the filesystem until ENOSPC; returns the filler (delete it to make room)."""
    filler = disk / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_disk_full_keeps_samples_in_memory_says_so_and_writes_them_when_room_returns(tiny_disk):
    db = tiny_disk / "h.db"
    lock = take_instance_lock(db)
    rec = recorder_at(db)
    rec.metrics = metrics = Metrics(Environment("linux"))
    try:
        for _ in range(3):
            assert rec.tick() is not None
        filler = fill(tiny_disk)
        for _ in range(40):  # enough that SQLite needs new pages on the full disk
            rec.tick()
        # one outage, counted once; no sample failed (they were taken, only not written)
        assert metrics.registry.get_sample_value("vmmemctl_history_outages_total") == 1
        assert metrics.registry.get_sample_value("vmmemctl_sample_errors_total") == 0
        health = read_health(db)
        assert health is not None and health.reason == "disk full" and health.backlog > 0, health
        words = history_words(db)
        assert words.startswith("history not written since ") and ": disk full (" in words
        status = run_cli("status", "--db", str(db), "--proc-root", str(TREES / "wsl2-ubuntu" / "proc"), "--json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["history_not_written"] == words
        assert words in dashboard_header(db)  # an attached `vmmemctl tui` says it in its header
        filler.unlink()
        rec.tick()
        assert count(db) == 3 + 40 + 1  # nothing lost
        assert history_words(db) == "" and read_health(db).unwritten_since is None
        (event,) = [e for e in rec.store.events(kinds=["error"]) if "written again" in e.message]
        assert "(disk full)" in event.message and event.data["dropped"] == 0
    finally:
        rec.close()
        metrics.close()
        lock.__exit__(None, None, None)


def test_the_backlog_is_bounded_and_says_what_it_dropped(tiny_disk):
    db = tiny_disk / "h.db"
    rec = recorder_at(db)
    rec.backlog_max = 5
    try:
        rec.tick()
        filler = fill(tiny_disk)
        ticks = 0
        while read_health(db).backlog == 0 and ticks < 200:  # until SQLite needs a page it cannot have
            rec.tick()
            ticks += 1
        for _ in range(10):
            rec.tick()
        health = read_health(db)
        assert health.backlog == 5 and health.dropped == 10 - 4 and "6 oldest dropped" in health.words()
        filler.unlink()
        rec.tick()
        (event,) = [e for e in rec.store.events(kinds=["error"]) if "written again" in e.message]
        assert event.data == {"written": 5, "dropped": 6 + 1}  # the tick that found room held 6: one more went
    finally:
        rec.close()


@needs_nobody
def test_database_made_read_only_while_recording_loses_nothing_and_a_restart_says_one_line(shared_dir):
    # as 'nobody' (root ignores file modes): the watcher's open descriptors still write, so it keeps
    # recording; the next start cannot open the history for writing and says so in one line
    db = shared_dir / "h.db"
    watch = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                              "monitor", "watch", "--db", str(db), "--interval", "0.2s", "--log-file",
                              str(shared_dir / "w.log")], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={"HOME": str(shared_dir), "PATH": "/usr/bin:/bin", "VMMEMCTL_CONFIG": ""})
    try:
        wait_for_samples(db, 3)
        for path in shared_dir.glob("h.db*"):
            path.chmod(0o444)
        shared_dir.chmod(0o555)
        before = count(db)
        assert wait_for_samples(db, before + 5) >= before + 5  # still recording
        assert watch.poll() is None
    finally:
        watch.terminate()
        _, err = watch.communicate(timeout=20)
        shared_dir.chmod(0o777)
    assert watch.returncode == 0 and "Traceback" not in err, err
    kept = count(db)
    for path in shared_dir.glob("h.db*"):
        path.chmod(0o444)
    shared_dir.chmod(0o555)
    try:
        again = as_nobody("watch", "--db", str(db), "--interval", "0.2s")
    finally:
        shared_dir.chmod(0o777)
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "Traceback" not in again.stderr, again.stderr
    assert str(shared_dir) in again.stderr
    assert count(db) == kept  # nothing lost


def test_database_deleted_while_recording_is_made_again_with_the_whole_history(tmp_path):
    db = tmp_path / "h.db"
    rec = recorder_at(db)
    try:
        for _ in range(3):
            rec.tick()
        db.unlink()
        rec.tick()
        assert db.exists() and count(db) == 4
        assert any("was deleted while recording" in e.message for e in rec.store.events(kinds=["error"]))
        rec.tick()
        assert count(db) == 5  # and recording goes on into the new file
    finally:
        rec.close()


def test_database_replaced_by_garbage_then_by_a_history(tmp_path):
    db = tmp_path / "h.db"
    rec = recorder_at(db)
    try:
        rec.tick()
        junk = tmp_path / "junk"
        junk.write_bytes(b"not a database at all\n" * 100)
        os.replace(junk, db)
        rec.tick()
        rec.tick()
        health = read_health(db)
        assert "not a vmmemctl history" in (health.reason or "") and health.backlog == 2, health
        (saved,) = tmp_path.glob("h.db.replaced-*")
        assert count(saved) == 1  # what the file held before it was replaced
        other = tmp_path / "other.db"
        Store(other).close()
        os.replace(other, db)
        rec.tick()
        assert count(db) == 3  # the two held samples and this one
        assert read_health(db).unwritten_since is None
    finally:
        rec.close()


def test_a_proc_file_vanishing_or_cut_short_is_an_error_event_not_a_dead_recorder(tmp_path):
    proc = tmp_path / "proc"
    shutil.copytree(TREES / "wsl2-ubuntu" / "proc", proc)
    meminfo = (proc / "meminfo").read_text()
    rec = recorder_at(tmp_path / "h.db", proc)
    try:
        assert rec.tick() is not None and rec.store.events(kinds=["error"]) == []
        (proc / "meminfo").unlink()
        gone = rec.tick()
        assert gone is not None and gone.guest.total is None  # unknown, not 0
        (error,) = rec.store.events(kinds=["error"])
        assert error.message.startswith("sample: meminfo") and "missing" in error.message
        (proc / "meminfo").write_text(meminfo)
        assert rec.tick().guest.total is not None
        (proc / "meminfo").write_text(meminfo[:70])  # cut mid-line, before Cached
        cut = rec.tick()
        assert cut is not None and cut.guest.cached is None and cut.guest.warnings
        errors = [e.message for e in rec.store.events(kinds=["error"])]
        assert errors[1:] == [f"sample: {w}" for w in cut.guest.warnings]
        assert count(tmp_path / "h.db") == 4  # every tick recorded, none dropped
    finally:
        rec.close()


@pytest.mark.parametrize("where", ["file-as-folder", "missing-deep"])
def test_a_database_path_that_cannot_be_is_one_line_and_exit_2(tmp_path, where):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    db = blocker / "x.db" if where == "file-as-folder" else blocker / "deep" / "x.db"
    done = run_cli("watch", "--db", str(db), "--interval", "1s", "--log-file", str(tmp_path / "w.log"),
                   "--proc-root", str(TREES / "wsl2-ubuntu" / "proc"), timeout=30)
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert str(blocker) in done.stderr


@pytest.mark.parametrize("command", [["watch", "--interval", "1s"], ["status"], ["snooze", "1h"], ["history"]])
def test_a_db_in_a_folder_that_does_not_exist_is_a_typo_and_makes_no_folder(tmp_path, command):
    typo = tmp_path / "nonexistent" / "dir" / "h.db"
    done = run_cli(*command, "--db", str(typo), "--proc-root", str(TREES / "wsl2-ubuntu" / "proc"), timeout=30)
    assert done.returncode == 2, done
    assert done.stderr.strip().splitlines() == [f"vmmemctl: --db {typo}: {typo.parent} does not exist "
                                                "(create it first, or fix the path)"]
    assert not (tmp_path / "nonexistent").exists()  # nothing made: no second watcher, no stray history
