"""The watcher's extras as a user reaches them: --metrics over HTTP, notify --test, service install --print."""

from __future__ import annotations

import os
import signal
import socket
import time
import urllib.request

from helpers import FAKEBIN, TREES, run_cli
from helpers import start_watch, wait_for_samples


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            values[s.name + (f"{{{labels}}}" if labels else "")] = s.value
    return values


def test_watch_serves_prometheus_metrics(tmp_path):
    port = free_port()
    db = tmp_path / "h.db"
    proc = start_watch(db, "--metrics", f"127.0.0.1:{port}")
    try:
        wait_for_samples(db, 2)
        deadline = time.time() + 10
        while True:
            try:
                values = scrape(port)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        assert values["vmmemctl_guest_page_cache_bytes"] > 0
        assert values["vmmemctl_host_bytes{source=estimate}"] > 0 and values["vmmemctl_host_estimated"] == 1
        assert 0 <= values["vmmemctl_cpu_busy_ratio"] <= 1
        assert values["vmmemctl_last_sample_timestamp_seconds"] > time.time() - 30
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0


def test_watch_metrics_bad_address_is_one_line(tmp_path):
    result = run_cli("watch", "--db", str(tmp_path / "h.db"), "--metrics", "nowhere",
                     "--log-file", str(tmp_path / "w.log"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "expected HOST:PORT" in result.stderr


def test_watch_samples_n_stops_after_n_samples(tmp_path):
    from monitor.history.store import Store

    db = tmp_path / "h.db"
    done = run_cli("watch", "--db", str(db), "--proc-root", str(TREES / "wsl2-2020" / "proc"), "--interval", "0.2s",
                   "--samples", "3", "--log-file", str(tmp_path / "w.log"))
    assert done.returncode == 0, done.stderr
    with Store(db) as store:
        assert len(store.recent_samples(86400 * 365 * 100)) == 3
        assert "watcher stopped" in [e.message for e in store.events(kinds=["watch"])]
    bad = run_cli("watch", "--db", str(db), "--samples", "0")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "expected a whole number >= 1" in bad.stderr


def test_notify_test_says_who_delivered(tmp_path):
    env = {"PATH": f"{FAKEBIN}{os.pathsep}/usr/bin:/bin", "DBUS_SESSION_BUS_ADDRESS": "unix:path=/x",
           "FAKE_NOTIFY_SEND_LOG": str(tmp_path / "log")}
    config = tmp_path / "c.toml"
    config.write_text('[notify]\nbackends = ["notify-send"]\n')
    ok = run_cli("notify", "--test", "--config", str(config), env=env)
    assert ok.returncode == 0 and "delivered by notify-send" in ok.stdout
    assert (tmp_path / "log").exists()
    nobody = run_cli("notify", "--test", "--config", str(config),
                     env={"PATH": "/usr/bin:/bin", "DBUS_SESSION_BUS_ADDRESS": "", "XDG_RUNTIME_DIR": str(tmp_path)})
    assert nobody.returncode == 1 and "no backend could deliver" in nobody.stdout and "no session bus" in nobody.stdout


def test_service_install_print_is_a_unit():
    result = run_cli("service", "install", "--system", "--print")
    assert result.returncode == 0
    assert "[Service]" in result.stdout and "ExecStart=" in result.stdout and " watch" in result.stdout
    assert "NoNewPrivileges=yes" in result.stdout and "ProtectSystem=strict" in result.stdout


def test_the_common_options_work_before_the_command_too(tmp_path):
    """`vmmemctl --db X status` (was: invalid choice 'X'); after the command wins when both are given."""
    import json

    before = run_cli("--db", str(tmp_path / "before.db"), "--proc-root", str(TREES / "wsl2-ubuntu" / "proc"),
                     "status", "--json")
    assert before.returncode == 0, before.stderr
    report = json.loads(before.stdout)
    assert report["history"] == str(tmp_path / "before.db") and report["environment"]["kind"] == "wsl2"
    both = run_cli("--db", str(tmp_path / "before.db"), "status", "--json", "--db", str(tmp_path / "after.db"))
    assert json.loads(both.stdout)["history"] == str(tmp_path / "after.db")
    typo = run_cli("--db", str(tmp_path / "no" / "such" / "h.db"), "history")
    assert typo.returncode == 2 and typo.stderr.count("\n") == 1 and "does not exist" in typo.stderr
