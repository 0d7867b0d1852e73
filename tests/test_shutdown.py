"""SIGTERM in the middle of work: a gradual reclaim stops between steps and its partial result is recorded;
a hung notification holds shutdown up no longer than its timeout."""

from __future__ import annotations

import os
import signal
import time

import pytest

from fakekernel import FakeKernel
from helpers import FAKEBIN, start_watch
from monitor.history.store import Store

GiB = 1024**3


@pytest.fixture
def kernel(tmp_path):
    k = FakeKernel(tmp_path / "tree", cached=20 * GiB, hot=0)
    yield k
    k.close()


def test_sigterm_during_a_gradual_reclaim_stops_between_steps_and_records_the_partial_result(
        tmp_path, isolated_home, kernel):
    conf = tmp_path / "config.toml"
    conf.write_text('[policy]\nauto_reclaim = true\n\n[reclaim]\nsettle = "0s"\n\n'
                    '[idle]\nwindow = "1s"\ndrop_window = "1s"\npsi_io_max = 100\npsi_memory_max = 100\n\n'
                    '[[rule]]\nname = "now"\nabove = "1"\nfor = "0s"\naction = "reclaim"\nmethod = "gradual"\n')
    db = tmp_path / "h.db"
    env = {**isolated_home, "VMMEMCTL_RECLAIM_LOCK": str(tmp_path / "reclaim.lock")}  # not the machine's
    watch = start_watch(db, "--config", str(conf), "--proc-root", str(kernel.proc), env=env)
    try:
        deadline = time.time() + 30
        while len(kernel.requests) < 2 and time.time() < deadline and watch.poll() is None:
            time.sleep(0.02)
        assert len(kernel.requests) >= 2, (watch.poll(), db.with_suffix(".log").read_text())
    finally:
        watch.send_signal(signal.SIGTERM)
        code = watch.wait(20)  # the 0.25 s pause between steps wakes at once; no step waits past it
    assert code == 0, watch.stderr.read()
    steps_asked = len(kernel.requests)
    assert kernel.cached > 5 * GiB  # stopped well before the floor (5% of MemTotal)
    with Store(db, readonly=True) as store:
        (event,) = store.events(kinds=["reclaim"])
        stopped = store.events(kinds=["watch"])[-1]
    assert event.status == "ok" and event.data["method"] == "gradual"
    notes = " ".join(event.data.get("notes", []))
    assert "stopped early" in notes and "stopped before compact" in notes
    assert event.data["freed_bytes"] == 20 * GiB - kernel.cached  # the partial result, as measured
    assert len([s for s in event.data["steps"] if s.startswith("step ")]) == steps_asked
    assert (kernel.proc / "sys/vm/compact_memory").read_text() == ""  # nothing after the stop
    assert stopped.message == "watcher stopped" and stopped.t >= event.t


def test_sigterm_during_a_hung_notification_ends_within_the_notify_timeout(tmp_path, isolated_home):
    log = tmp_path / "notify-send.log"
    conf = tmp_path / "config.toml"
    conf.write_text('[notify]\nbackends = ["notify-send"]\ntimeout = "2s"\n\n'
                    '[[rule]]\nname = "now"\nabove = "1"\nfor = "0s"\naction = "notify"\n')
    env = {**isolated_home, "PATH": f"{FAKEBIN}{os.pathsep}{os.environ['PATH']}", "FAKE_NOTIFY_SEND_LOG": str(log),
           "FAKE_NOTIFY_SEND_MODE": "hang", "DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent"}
    db = tmp_path / "h.db"
    watch = start_watch(db, "--config", str(conf), env=env)
    try:
        deadline = time.time() + 30
        while not (log.exists() and log.read_text()) and time.time() < deadline:
            time.sleep(0.02)
        assert log.exists(), db.with_suffix(".log").read_text()
    finally:
        watch.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        code = watch.wait(30)
    waited = time.monotonic() - sent
    assert code == 0, watch.stderr.read()
    assert waited < 2 + 10  # the notify timeout (2 s) bounds it; an hour-long hang does not hold it up
    with Store(db, readonly=True) as store:
        (note,) = store.events(kinds=["notify"])
        assert store.events(kinds=["watch"])[-1].message == "watcher stopped"
    assert "notify-send" in note.message
