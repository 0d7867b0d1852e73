"""SIGTERM in the middle of work: a gradual reclaim stops between steps and its partial result is recorded."""

from __future__ import annotations

import signal
import time

import pytest

from fakekernel import FakeKernel
from helpers import start_watch
from monitor.store import Store

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
