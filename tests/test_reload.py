"""Reload: SIGHUP (what systemd's ExecReload sends) and `vmmemctl reload`, against a real `vmmemctl watch`."""

from __future__ import annotations

import signal
import socket
import sqlite3
import time
import urllib.request
from pathlib import Path

from helpers import run_cli, start_watch, wait_for_samples
from monitor.service import systemd_unit
from monitor.history.store import Event, Store


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_events(db: Path, words: str, count: int = 1, timeout: float = 20) -> list[Event]:
    """The watcher's events holding ``words``, once there are ``count`` of them."""
    deadline = time.time() + timeout
    found: list[Event] = []
    while time.time() < deadline:
        try:
            with Store(db, readonly=True) as store:
                found = [e for e in store.events(kinds=["watch"]) if words in e.message]
            if len(found) >= count:
                return found
        except sqlite3.OperationalError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{len(found)} events with {words!r} after {timeout}s, expected {count}")


def samples(db: Path) -> int:
    with Store(db, readonly=True) as store:
        return store.db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]


def test_reload_takes_a_valid_config_refuses_an_invalid_one_and_keeps_watching(tmp_path, isolated_home):
    db, conf, port = tmp_path / "h.db", tmp_path / "config.toml", free_port()
    conf.write_text('[[rule]]\nname = "before"\nabove = "99%"\n')
    watch = start_watch(db, "--config", str(conf), env=isolated_home)
    try:
        wait_for_samples(db, 2)
        conf.write_text(f'[[rule]]\nname = "after"\nabove = "98%"\n\n[[schedule]]\ncron = "0 3 * * *"\n\n'
                        f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
        done = run_cli("reload", "--db", str(db), "--config", str(conf), env=isolated_home)
        assert done.returncode == 0 and f"pid {watch.pid}" in done.stdout, done
        (reloaded,) = wait_for_events(db, "config reloaded")
        # Exactly what changed, in the order the daemon reports it: [sampling] is not among them (the file
        # has none, and the command line's --interval is applied again on reload), nor [notify], [policy]...
        assert reloaded.data == {"changed": ["rule", "schedule", "metrics", f"metrics on 127.0.0.1:{port}"]}
        assert reloaded.message == (f"config reloaded from {conf}: rule, schedule, metrics, metrics on "
                                    f"127.0.0.1:{port} (every 0.2s, 1 rules, 1 schedules)")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            assert b"vmmemctl_info" in r.read()  # the new listen address is served

        watch.send_signal(signal.SIGHUP)  # the same file again: a reload that changes nothing says so
        _, again = wait_for_events(db, "config reloaded", count=2)
        assert again.data == {"changed": []}
        assert again.message == f"config reloaded from {conf}: nothing changed (every 0.2s, 1 rules, 1 schedules)"

        conf.write_text('[sampling]\ninterval = "soon"\n')  # invalid: refused, the old config stays
        watch.send_signal(signal.SIGHUP)  # what `systemctl reload` does (ExecReload)
        (refused,) = wait_for_events(db, "reload refused")
        assert "interval" in refused.message and refused.message.endswith("; the old config stays")
        log = db.with_suffix(".log").read_text()
        (line,) = [x for x in log.splitlines() if "reload refused" in x]
        assert "Traceback" not in log
        before = samples(db)
        wait_for_samples(db, before + 3)  # still sampling
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            assert r.status == 200  # the old (reloaded-valid) config still serves
    finally:
        watch.send_signal(signal.SIGTERM)
        assert watch.wait(20) == 0, watch.stderr.read()


def test_reload_without_a_watcher_is_one_line_and_exit_2(tmp_path, isolated_home):
    done = run_cli("reload", "--db", str(tmp_path / "none.db"), env=isolated_home)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "no watcher is recording" in done.stderr


def test_the_systemd_unit_reloads_by_sighup():
    unit = systemd_unit("/usr/bin/vmmemctl", ["watch"], "user", {})
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit.splitlines()
