"""Gradual's prior from the kernel's active list (issue 25), on the fake sysfs tree: the reclaimer reads
Active(file), plans its lower bound from it, says where the bound comes from, and listens longer near it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fakekernel import FakeKernel
from helpers import TREES

from monitor.config.schema import Config, ReclaimConfig
from monitor.kernel.procfs import LocalFiles
from monitor.probes.guest import GuestProbe
from monitor.probes.probeset import build
from monitor.reclaim.reclaimer import GRADUAL_PAUSE, Reclaimer, Seams
from monitor.reclaim.workingset import Hint
from monitor.sample import guest_json

MiB, GiB = 1024**2, 1024**3


def with_active(kernel: FakeKernel, active: int) -> None:
    kernel.meminfo_text = re.sub(r"^Active\(file\):\s+\d+ kB", f"Active(file): {active // 1024} kB",
                                 kernel.meminfo_text, flags=re.MULTILINE)
    kernel.cached = kernel.cached  # publishes meminfo


@pytest.fixture
def kernel(tmp_path):
    k = FakeKernel(tmp_path / "tree", cached=8 * GiB, hot=600 * MiB)
    yield k
    k.close()


def reclaimer(kernel: FakeKernel, tmp_path: Path, waits: list[float], **cfg) -> Reclaimer:
    config = Config(reclaim=ReclaimConfig(settle=0.0, **cfg))
    probes = build(config, environ={}, files=LocalFiles(kernel.root / "proc"))

    def sleep(seconds: float) -> None:  # no real wait: the fake kernel applied the step when this returns
        waits.append(seconds)
        kernel.wait_applied()
    return Reclaimer(probes.files, probes, config.reclaim, tmp_path / "lock", seams=Seams(sleep=sleep))


def test_the_probe_reads_the_file_lru_split():
    probe = GuestProbe(LocalFiles(TREES / "linux-vm" / "proc"))
    first, again = probe.sample(), probe.sample()  # the full parse, then the learnt layout
    for g in (first, again):
        assert g.active_file == 138904 * 1024 and g.inactive_file == 1860708 * 1024
    assert guest_json(again)["active_file_bytes"] == 138904 * 1024
    assert guest_json(again)["inactive_file_bytes"] == 1860708 * 1024


def test_gradual_stops_above_the_active_list_and_says_why(kernel, tmp_path):
    with_active(kernel, 2 * GiB)  # the floor of this 23.5 GiB tree is 1.2 GiB: the prior is the bound
    waits: list[float] = []
    result = reclaimer(kernel, tmp_path, waits).run("gradual")
    data = result.to_json()
    assert data["stop_reason"] == "active" and data["error"] is None
    assert data["lower_bound_bytes"] == int(2.5 * GiB) and data["lower_bound_source"] == "active"
    assert abs(result.after.page_cache - int(2.5 * GiB)) < MiB  # stopped at it, not at the floor
    assert any("lower bound 2.5 GiB: the active file cache 2.0 GiB + 25%" in n for n in result.notes)
    assert any("gradual stopped (active): page cache 2.5 GiB at the active file cache 2.0 GiB + 25%" in n
               for n in result.notes)
    # windows: 5 s while far above the bound, growing towards 30 s on the way in, never shorter
    assert waits[0] == 5.0 and max(waits) > 25.0 and max(waits) <= 30.0 and waits == sorted(waits)


def test_a_prior_above_the_cache_has_nothing_to_do(kernel, tmp_path):
    with_active(kernel, 7 * GiB)
    result = reclaimer(kernel, tmp_path, []).run("gradual")
    assert result.stop_reason == "active" and kernel.requests == []
    assert any("nothing to do: page cache" in n for n in result.notes)


def test_dry_run_json_has_the_bound_and_its_source(kernel, tmp_path):
    with_active(kernel, 2 * GiB)
    data = reclaimer(kernel, tmp_path, []).run("gradual", dry_run=True).to_json()
    assert data["lower_bound_bytes"] == int(2.5 * GiB) and data["lower_bound_source"] == "active"
    assert any("until page cache <= 2.5 GiB" in s and "growing to 30s near it" in s for s in data["steps"])
    assert kernel.requests == []


def test_without_listening_the_windows_stay_short(kernel, tmp_path):
    # refault_window = 0 (as the other suites configure it): near the bound too, only the shortest pause
    waits: list[float] = []
    result = reclaimer(kernel, tmp_path, waits, refault_window=0.0).run("gradual")
    assert result.stop_reason == "floor" and result.lower_bound_source == "floor"
    assert set(waits) == {GRADUAL_PAUSE}


def test_the_prior_takes_the_margin_the_cost_feedback_grew(kernel, tmp_path):
    # the remembered set's margin was doubled after a costly reclaim: the active-list prior uses it too
    with_active(kernel, 2 * GiB)
    hint = Hint(target=int(1.5 * GiB), estimate=GiB, words="working set ~ 1.0 GiB", margin=0.5)
    data = reclaimer(kernel, tmp_path, []).run("gradual", dry_run=True, working_set=hint).to_json()
    assert data["lower_bound_bytes"] == 3 * GiB and data["lower_bound_source"] == "active"
    hint = Hint(target=int(3.5 * GiB), estimate=int(2.8 * GiB), words="working set ~ 2.8 GiB", margin=0.25)
    data = reclaimer(kernel, tmp_path, []).run("gradual", dry_run=True, working_set=hint).to_json()
    assert data["lower_bound_bytes"] == int(3.5 * GiB) and data["lower_bound_source"] == "remembered"
