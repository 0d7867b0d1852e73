"""Where the gap is (issue 27, item 5): the host footprint against the guest, part by part, from a sample's
own numbers: recorded kernel trees for the guest, the fake powershell.exe (a real subprocess) or the
estimate for the host; `status` and `status --json` in a fresh process; the dashboard driven by Pilot."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import time

import pytest

from helpers import FAKEBIN, run_cli, tree
from monitor.kernel.procfs import LocalFiles
from monitor.policy.gap import explain_gap, gap_json
from monitor.probes.guest import GuestProbe
from monitor.probes.host import EstimateProbe
from monitor.sample import HostSample, Sample, unreturned_bytes

MiB = 2**20
NO_WINDOWS = {"PATH": os.pathsep.join([os.path.dirname(sys.executable), "/usr/bin", "/bin"])}
FAKE_WINDOWS = {"PATH": f"{FAKEBIN}{os.pathsep}{os.environ['PATH']}", "FAKE_WINDOWS_MODE": "normal"}


def meminfo(name: str) -> dict[str, int]:
    """The recorded tree's /proc/meminfo in bytes, read here on its own (not through the probe)."""
    out = {}
    for line in (tree(name) / "meminfo").read_text().splitlines():
        key, value = line.split(":")
        out[key] = int(value.split()[0]) * 1024
    return out


def guest(name: str):
    return GuestProbe(LocalFiles(tree(name))).sample()


def measured(g, host_bytes: int, metric: str = "private_working_set") -> Sample:
    return Sample(g, HostSample(g.time, host_bytes, "interop", False, metric=metric))


@pytest.mark.parametrize("name", ["linux-vm", "wsl2-ubuntu"])
def test_the_guest_parts_are_meminfo_and_all_parts_add_up_to_the_host_figure(name):
    g, m = guest(name), meminfo(name)
    in_use = m["MemTotal"] - m["MemFree"]
    host = in_use + (g.fragmented_free or 0) + 300 * MiB  # the VM's own overhead on top
    gap, why = explain_gap(measured(g, host))
    assert gap is not None and why == ""
    parts = {p.key: p for p in gap.parts}
    assert parts["programs"].bytes == m["AnonPages"]
    assert parts["page_cache"].bytes == m["Buffers"] + m["Cached"] - m["Shmem"]
    assert parts["shmem"].bytes == m["Shmem"]
    assert parts["kernel"].bytes == in_use - m["AnonPages"] - (m["Buffers"] + m["Cached"] - m["Shmem"]) - m["Shmem"]
    assert parts["unreturned_free"].bytes == g.fragmented_free
    assert parts["rest"].bytes == 300 * MiB == unreturned_bytes(measured(g, host))
    assert sum(p.bytes for p in gap.parts) == host
    assert [p.key for p in gap.parts if p.estimate] == ["unreturned_free", "rest"]
    assert "reclaimable now" in parts["page_cache"].words and "compaction" in parts["unreturned_free"].words
    assert gap.note == ""


def test_an_estimated_host_leaves_no_rest_and_says_so():
    g = guest("linux-vm")
    sample = Sample(g, EstimateProbe().sample(g))
    gap, _ = explain_gap(sample)
    assert gap is not None and gap.part("rest").bytes == 0 and sum(p.bytes for p in gap.parts) == sample.host.bytes
    assert "estimate from the guest" in gap.note and "by construction" in gap.part("rest").words


def test_a_host_below_the_guest_in_use_is_a_negative_rest_with_a_note():
    g = guest("wsl2-ubuntu")  # the WSL#4166 shape: 22 GB of cache
    gap, _ = explain_gap(measured(g, 7812345856))
    assert gap is not None and gap.part("rest").bytes < 0
    assert "less than the guest uses" in gap.note and "paged out or compressed" in gap.part("rest").words


def test_the_whole_working_set_is_named():
    g = guest("linux-vm")
    gap, _ = explain_gap(measured(g, g.total - g.free + 400 * MiB, "working_set"))
    assert "whole working set" in gap.note


@pytest.mark.parametrize("sample, why", [
    (lambda g: Sample(g, HostSample(g.time, None, "interop", False, error="powershell.exe not found")),
     "the host footprint is unknown"),
    (lambda g: measured(dataclasses.replace(g, anon=None, shmem=None), 8 * 2**30), "the guest's AnonPages, Shmem unknown"),
])
def test_no_breakdown_says_why(sample, why):
    gap, words = explain_gap(sample(guest("linux-vm")))
    assert gap is None and words == why
    assert gap_json(gap, words) == {"host_bytes": None, "parts": [], "why": why}


def test_a_missing_buddyinfo_counts_no_small_free_and_says_so():
    g = dataclasses.replace(guest("linux-vm"), fragmented_free=None)
    gap, _ = explain_gap(measured(g, g.total - g.free + 100 * MiB))
    assert gap.part("unreturned_free").bytes == 0 and "counted 0" in gap.part("unreturned_free").words
    assert gap.part("rest").bytes == 100 * MiB


# ------------------------------------------------------------------ status


def test_status_json_has_the_gap_from_powershells_figure():
    result = run_cli("status", "--json", "--proc-root", str(tree("wsl2-ubuntu")), "--cpu-window", "0",
                     env=FAKE_WINDOWS)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    gap = data["gap"]
    assert data["host"]["source"] == "interop" and gap["host_bytes"] == data["host"]["bytes"] == 7812345856
    assert [p["key"] for p in gap["parts"]] == ["programs", "page_cache", "shmem", "kernel", "unreturned_free", "rest"]
    assert sum(p["bytes"] for p in gap["parts"]) == gap["host_bytes"]
    parts = {p["key"]: p for p in gap["parts"]}
    assert parts["programs"]["bytes"] == data["guest"]["anon_bytes"]
    assert parts["page_cache"]["bytes"] == data["guest"]["page_cache_bytes"]
    assert parts["rest"]["bytes"] == data["unreturned_bytes"] and parts["rest"]["estimate"] is True
    assert gap["host_metric"] == "private_working_set"


def test_status_text_explains_the_gap():
    result = run_cli("status", "--proc-root", str(tree("linux-vm")), "--cpu-window", "0", env=NO_WINDOWS)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "where the gap is: the host footprint" in text
    for label in ("programs (anon)", "page cache", "shmem/tmpfs", "kernel", "free, not yet returned", "the rest"):
        assert re.search(rf"^  {re.escape(label)} +\S+ \S+ +\d+%", text, re.M), label
    assert "note: the host figure is an estimate" in text


def test_status_json_gap_is_null_free_when_it_cannot_be_made():
    result = run_cli("status", "--json", "--proc-root", str(tree("hostile-missing")), "--cpu-window", "0",
                     env=NO_WINDOWS)
    assert result.returncode == 0, result.stderr
    gap = json.loads(result.stdout)["gap"]
    assert gap["host_bytes"] is None and gap["parts"] == [] and gap["why"]


# ------------------------------------------------------------------ the dashboard


def test_b_shows_the_gap_in_the_dashboard(tmp_path):
    import asyncio

    from monitor.config.schema import Config, GeneralConfig
    from monitor.history.store import Store
    from tui import screens
    from tui.app import make_app
    from tui.demo import write_history

    now = time.time() // 60 * 60
    db = write_history(tmp_path / "h.db", now, days=0.1, step=60.0, pending_prompt=False)
    with Store(db, readonly=True) as store:
        latest = store.latest_sample()
    expected, _ = explain_gap(latest)
    app = make_app(Config(general=GeneralConfig(proc_root=str(tree("linux-vm")))), db, standalone=False,
                   clock=lambda: now, timers=False, environ={}, localtime=time.gmtime, watcher_pid=lambda db: None,
                   reclaim_lock=tmp_path / "reclaim.lock")

    async def drive() -> str:
        async with app.run_test(size=(140, 40)) as pilot:
            await pilot.pause()
            await app.workers.wait_for_complete()
            await pilot.pause()
            await pilot.press("b")
            await pilot.pause()
            assert isinstance(app.screen, screens.TextScreen)
            text = " ".join(app.screen_text().split())
            await pilot.press("escape")
            await pilot.pause()
            assert not isinstance(app.screen, screens.TextScreen)
            return text
    text = asyncio.run(drive())
    assert "where the gap is" in text and "The host footprint" in text
    for p in expected.parts:
        assert p.label in text, p.label
    from monitor.units import format_bytes
    assert format_bytes(expected.part("programs").bytes) in text and format_bytes(expected.host_bytes) in text
