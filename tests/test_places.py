"""Where the watcher records, and how a client finds it without flags (issue 24 items 1-2)."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from helpers import as_nobody, needs_nobody, run_cli, start_watch, tree, wait_for_samples
from monitor.errors import UserError
from monitor.history.instance import take_instance_lock
from monitor.history.places import choose_history, find_watcher, own_places, system_places, user_places
from monitor.kernel.filelock import who_holds


def test_root_records_in_the_system_places_and_a_user_in_their_own(isolated_home):
    own = own_places()
    expected = system_places() if os.geteuid() == 0 else user_places()  # the same detection the code uses
    assert own == expected
    assert str(system_places().db).startswith(isolated_home["VMMEMCTL_SYSTEM_DIR"])  # tests never touch /var/lib
    assert str(user_places().db).startswith(isolated_home["XDG_DATA_HOME"])


def test_asking_who_records_never_takes_the_lock(tmp_path):
    """A reader that took the history's lock for a moment made a starting watcher exit with
    "already recording (pid <the reader>)": asking must leave the lock to whoever takes it."""
    db = tmp_path / "h.db"
    take_instance_lock(db).__exit__(None, None, None)  # the lock file exists, nobody holds it
    stop = threading.Event()
    lookers = []

    def look() -> None:
        while not stop.is_set():
            lookers.append(who_holds(db.with_name("h.db.watch.lock")))

    thread = threading.Thread(target=look)
    thread.start()
    try:
        for _ in range(300):  # each take would fail at once if a look held the lock at that moment
            take_instance_lock(db).__exit__(None, None, None)
    finally:
        stop.set()
        thread.join()
    assert lookers  # the looker ran meanwhile


def test_a_client_finds_the_running_watcher_without_flags(tmp_path, monkeypatch):
    system = tmp_path / "system"
    system.mkdir()
    monkeypatch.setenv("VMMEMCTL_SYSTEM_DIR", str(system))
    db = system / "history.db"
    assert find_watcher() is None
    proc = start_watch(db, "--proc-root", str(tree("wsl2-ubuntu")))
    try:
        wait_for_samples(db, 2)
        found = find_watcher()
        assert found is not None and found.pid == proc.pid and found.db == db
        assert choose_history("", None) == (db, found)
        status = run_cli("status", "--json", "--cpu-window", "0", "--proc-root", str(tree("wsl2-ubuntu")))
        assert status.returncode == 0, status.stderr
        data = json.loads(status.stdout)
        assert data["history"] == str(db) and data["watcher"]["pid"] == proc.pid
        assert data["watcher"]["db"] == str(db) and data["watcher"]["holder"] == "vmmemctl watch"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert find_watcher() is None
    assert choose_history("", None) == (own_places().db, None)


@needs_nobody
def test_a_user_reads_the_root_watchers_history_it_cannot_write(shared_dir, monkeypatch):
    """`status` and `history` as an unprivileged user, no flags, on the root watcher's history in
    a folder the user can read but not write: while it records, and after it stopped."""
    system = shared_dir / "system"
    system.mkdir(mode=0o755)
    monkeypatch.setenv("VMMEMCTL_SYSTEM_DIR", str(system))
    env = {"VMMEMCTL_SYSTEM_DIR": str(system), "VMMEMCTL_RUN_DIR": str(shared_dir / "run")}
    db = system / "history.db"
    proc = start_watch(db, "--proc-root", str(tree("wsl2-ubuntu")))
    try:
        wait_for_samples(db, 3)
        status = as_nobody("status", "--json", "--cpu-window", "0", "--proc-root", str(tree("wsl2-ubuntu")), env=env)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["watcher"]["pid"] == proc.pid
        history = as_nobody("history", "--since", "1h", env=env)
        assert history.returncode == 0 and "rows" in history.stdout, history.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # Usually the last writer checkpointed and only the file is left (the reader opens it immutable);
    # either way a user who cannot write the folder reads what was recorded.
    after = as_nobody("history", "--since", "1h", "--format", "csv", env=env)
    assert after.returncode == 0, after.stderr
    assert len(after.stdout.splitlines()) >= 4  # a header and the rows recorded
    assert not any(p.owner() == "nobody" for p in system.iterdir())  # the reader wrote nothing


def test_a_history_that_is_not_a_database_is_one_line(tmp_path):
    bad = tmp_path / "h.db"
    bad.write_text("not sqlite")
    done = run_cli("history", "--db", str(bad))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done
    with pytest.raises(UserError):
        choose_history("", str(tmp_path / "missing" / "h.db"))


@needs_nobody
def test_a_history_nobody_writes_any_more_is_read_by_a_user_who_cannot_write_its_folder(shared_dir):
    """SQLite's reader of a WAL history needs its -shm file; with no writer left (both files gone) and a
    folder the user cannot write, it is opened immutable."""
    from builders import sample
    from monitor.history.store import Store

    folder = shared_dir / "root-only"
    folder.mkdir()
    folder.chmod(0o755)
    db = folder / "history.db"
    with Store(db) as store:
        store.add_samples([sample(time.time() - 60 + i, 2**30) for i in range(3)])
    assert not (folder / "history.db-wal").exists() and not (folder / "history.db-shm").exists()
    done = as_nobody("history", "--db", str(db), "--since", "1h", "--format", "csv")
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 4  # the header and the three samples
    assert sorted(p.name for p in folder.iterdir()) == ["history.db"]  # the reader made nothing


@needs_nobody
def test_a_watch_in_a_folder_the_user_cannot_write_says_permission_denied(shared_dir):
    """Issue 28: as nobody, `watch --db <root's folder>/h.db` said "No such file or directory"."""
    folder = shared_dir / "roots"
    folder.mkdir(mode=0o755)  # root's, readable by all, writable by root only
    done = as_nobody("watch", "--db", str(folder / "h.db"), "--log-file", str(shared_dir / "w.log"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr == (f"vmmemctl: cannot open the lock file {folder / 'h.db.watch.lock'}: Permission denied "
                           "(pass --db PATH in a folder you can write)\n")
