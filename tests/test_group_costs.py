"""The cost of one group's reclaim (issue 26, item 5): "re-read after" counts that group's own
``workingset_refault_file`` (its memory.stat), never the VM's /proc/vmstat counter, which counts every
group's refaults. On a fake cgroup v2 tree (tests/fakecgroup.py): real `vmmemctl reclaim --cgroup` and
`vmmemctl run` processes record the events; the meter measures them as the watcher does. The real
kernel's groups: tests/lab/test_cgroup_lab.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from fakecgroup import PAGE, FakeGroup
from helpers import REPO
from monitor.config.schema import Config, ReclaimConfig
from monitor.history.store import Store
from monitor.kernel.procfs import LocalFiles
from monitor.reclaim import cost, workingset
from monitor.sample import GuestSample
from test_cgroup_reclaim import cli, machine  # noqa: F401  (the fixture: a FakeKernel tree with cgroup v2)
from test_recorder import make_watcher
from test_run import CHILD, conf, kernel, needs_root  # noqa: F401  (kernel: the fixture)
from tui import data as tui_data

MiB, GiB = 1024**2, 1024**3
CFG = ReclaimConfig()
GROUP = "system.slice/docker-abc.scope"


def reclaim_group(machine, tmp_path, rel: str = GROUP) -> dict:  # noqa: F811
    """`vmmemctl reclaim --cgroup REL` as a user runs it, recorded in tmp_path/h.db; its event's data."""
    done = cli(machine, tmp_path, "--cgroup", rel, "--json")
    assert done.returncode == 0, done.stderr
    with Store(tmp_path / "h.db") as store:
        (event,) = store.events(kinds=["reclaim"])
    assert event.data["cgroup"] == f"/sys/fs/cgroup/{rel}" and json.loads(done.stdout)["cgroup"] == event.data["cgroup"]
    return event.data


def window_ends(machine, tmp_path, data: dict, vm_refaults: int = 0, ws: workingset.WorkingSet | None = None):  # noqa: F811
    """The window ends (a sample past it) with the VM-wide counter ``vm_refaults`` pages up; the group is read
    from the tree. The finished cost, the event's data and the remembered working set after."""
    after = data["after"]
    guest = GuestSample(time=data["ended"] + 300, workingset_refault_file=after["workingset_refault_file"] + vm_refaults,
                        pgpgin=after["pgpgin"] + vm_refaults * 4)
    meter = cost.CostMeter(window=300, read_group=lambda shown: cost.read_group_stat(shown, LocalFiles(machine.proc)))
    with Store(tmp_path / "h.db") as store:
        if ws is not None:
            workingset.save(store, ws)
        (done,) = meter.tick(store, guest, CFG)
        (event,) = store.events(kinds=["reclaim"])
        return done, event.data, workingset.load(store)


def test_the_vms_refaults_climbing_are_not_the_groups_re_read(machine, tmp_path):  # noqa: F811
    machine.group(GROUP, file=600 * MiB)
    data = reclaim_group(machine, tmp_path)
    assert data["cgroup_refaults_after"] == 0
    before = workingset.WorkingSet(300 * MiB, time.time(), CFG.working_set_margin / 100)
    done, event, ws = window_ends(machine, tmp_path, data, vm_refaults=(2 * GiB) // PAGE, ws=before)
    assert done.source == "cgroup_refaults" and done.attributable and done.cgroup == data["cgroup"]
    assert event["reread_bytes_after"] == 0 and event["cgroup_refault_bytes_after"] == 0  # 2 GiB were others'
    assert event["refault_bytes_after"] == 2 * GiB  # the VM-wide key keeps its meaning: recorded, not counted
    assert event["reread_source"] == "cgroup_refaults" and event["reread_cgroup"] == data["cgroup"]
    assert "disk_reads_bytes_after" not in event and "reread_why" not in event
    assert ws == before  # the VM's margin: untouched (before, the VM's 2 GiB doubled it)
    assert cost.cost_words(event).endswith("; re-read 0 B in 5m after (0.0% of freed) [refaults of the group]")


def test_the_groups_own_refaults_after_the_reclaim_are_its_re_read(machine, tmp_path):  # noqa: F811
    g = machine.group(GROUP, file=1 * GiB, hot=256 * MiB)
    g.refaults = 5000  # refaults before (and during) the reclaim are not its cost
    g._publish()
    data = reclaim_group(machine, tmp_path)
    assert data["cgroup_refaults_after"] == g.refaults >= 5000  # the base: the count at the writes' end
    g.refaults += (48 * MiB) // PAGE  # the container reads 48 MiB of what went back in
    g._publish()
    done, event, ws = window_ends(machine, tmp_path, data, vm_refaults=(900 * MiB) // PAGE)
    assert event["reread_bytes_after"] == 48 * MiB and done.attributable
    assert ws is None  # a group's cost founds no VM estimate (the VM's refaults did, before)
    share = 100 * 48 * MiB / data["cgroup_freed_bytes"]  # of what the group gave back, not of the VM's change
    assert f"re-read 48.0 MiB in 5m after ({share:.1f}% of freed) [refaults of the group]" in cost.cost_words(event)


def test_a_group_gone_at_the_windows_end_is_said_and_not_replaced_by_the_vms_count(machine, tmp_path):  # noqa: F811
    g = machine.group(GROUP, file=600 * MiB)
    data = reclaim_group(machine, tmp_path)
    shutil.rmtree(g.dir)  # the container stopped: its group went with it
    done, event, _ = window_ends(machine, tmp_path, data, vm_refaults=(700 * MiB) // PAGE)
    assert event["reread_bytes_after"] is None and event["attributable"] is False and not done.attributable
    assert "was gone at the window's end" in event["reread_why"] and event["reread_source"] == "cgroup_refaults"
    assert event["refault_bytes_after"] == 700 * MiB and "disk_reads_bytes_after" not in event
    words = cost.cost_words(event)
    assert "; re-read after: not attributable (the group /sys/fs/cgroup/system.slice/docker-abc.scope was gone" \
        in words and words.endswith("[refaults of the group]")
    lines = tui_data.detail_lines(event, data["ended"] + 400, time.gmtime)
    assert any(line.startswith("reread after: not attributable (the group") for line in lines), lines


def test_a_group_made_again_under_the_same_path_is_not_counted(machine, tmp_path):  # noqa: F811
    g = machine.group(GROUP, file=1 * GiB, hot=256 * MiB)
    g.refaults = 5000
    g._publish()
    data = reclaim_group(machine, tmp_path)
    g.refaults = 3  # the container restarted: a new group, its counter from 0
    g._publish()
    _, event, _ = window_ends(machine, tmp_path, data)
    assert event["reread_bytes_after"] is None and "made again under the same path" in event["reread_why"]


class OldKernelGroup(FakeGroup):
    """A group whose memory.stat has no workingset_refault_file (a kernel before 5.9)."""

    def _publish(self) -> None:
        super()._publish()
        stat = self.dir / "memory.stat"
        stat.write_text("".join(line for line in stat.read_text().splitlines(keepends=True)
                                if not line.startswith("workingset_refault")))


def test_no_counter_in_memory_stat_is_not_attributable(machine, tmp_path):  # noqa: F811
    g = OldKernelGroup(machine.root / "sys/fs/cgroup", GROUP, file=600 * MiB)
    try:
        data = reclaim_group(machine, tmp_path)
        assert data["cgroup_refaults_after"] is None
        _, event, _ = window_ends(machine, tmp_path, data, vm_refaults=(500 * MiB) // PAGE)
    finally:
        g.close()
    assert event["reread_bytes_after"] is None and event["attributable"] is False
    assert "has no workingset_refault_file" in event["reread_why"] and event["refault_bytes_after"] == 500 * MiB


def test_the_watcher_reads_the_group_on_its_worker_not_on_the_tick(machine, tmp_path):  # noqa: F811
    g = machine.group(GROUP, file=600 * MiB)
    reclaim_group(machine, tmp_path)
    g.refaults += 256
    g._publish()
    recorder = make_watcher(tmp_path, Config(reclaim=ReclaimConfig(cost_window=0.0)), files=LocalFiles(machine.proc))
    handed: list = []
    recorder.run_async = handed.append  # the worker, held still
    try:
        assert recorder.tick() is not None
        (event,) = recorder.store.events(kinds=["reclaim"])
        assert "reread_bytes_after" not in event.data and len(handed) == 1  # the group not read on the tick
        handed.pop()()  # the worker reads it, through the watcher's (fresh) probes
        (event,) = recorder.store.events(kinds=["reclaim"])
        assert event.data["reread_source"] == "cgroup_refaults" and event.data["reread_bytes_after"] == 256 * PAGE
        recorder.tick()
        assert handed == []  # measured once
    finally:
        recorder.close()


def test_an_event_recorded_before_group_costs_is_not_given_the_vms_count():
    data = {"methods_run": ["gradual", "compact"], "ended": 1000.0, "dry_run": False, "error": None,
            "cgroup": "/sys/fs/cgroup/x.slice", "cgroup_freed_bytes": 100 * MiB, "freed_bytes": 120 * MiB,
            "after": {"workingset_refault_file": 10, "pgpgin": 10}}
    meter = cost.CostMeter(window=300, read_group=lambda shown: {"workingset_refault_file": 99})
    assert meter.watch(1, data)
    (done,) = meter.observe(GuestSample(time=1300.0, workingset_refault_file=10_000, pgpgin=10))
    assert done.reread_bytes is None and "older vmmemctl" in done.why


# ------------------------------------------------------------------ run: the window ends with the group


@needs_root
def test_runs_window_ends_as_its_group_is_removed(kernel, tmp_path):  # noqa: F811
    """`run` removes its group as the reclaim ends: the cost is what the group counted from the writes' end
    through the settle period (read by the reclaim itself), recorded at once, never read later."""
    db = tmp_path / "h.db"
    done = subprocess.run([sys.executable, "-m", "monitor", "run", "--proc-root", str(kernel.proc), "--db", str(db),
                           "--config", conf(tmp_path), "--", "sh", "-c", CHILD], input="x\n", capture_output=True,
                          text=True, timeout=120, cwd=REPO,
                          env={**os.environ, "VMMEMCTL_CONFIG": "", "ROOT": str(kernel.root)})
    assert done.returncode == 5, done.stderr
    with Store(db) as store:
        (event,) = store.events(kinds=["reclaim"])
    data = event.data
    assert data["cgroup_removed_at_end"] is True and data["cgroup_refaults_after"] == 0
    assert data["cgroup_refaults_end"] == 0 and data["cgroup_refaults_after_t"] <= data["ended"]
    assert not (kernel.root / "sys/fs/cgroup/vmmemctl.slice").exists()  # gone: nothing to read at 5 min

    def never(shown: str):
        raise AssertionError(f"{shown} read after its removal")
    meter = cost.CostMeter(window=300, read_group=never)
    guest = GuestSample(time=data["ended"] + 1, workingset_refault_file=10**9, pgpgin=10**9)  # the VM's: ignored
    with Store(db) as store:
        (measured,) = meter.tick(store, guest, CFG)
        (event,) = store.events(kinds=["reclaim"])
    assert measured.attributable and event.data["reread_bytes_after"] == 0
    assert event.data["cost_window_ended_by"] == "group removed" and event.data["refault_bytes_after"] is None
    assert event.data["cost_window_end"] == data["ended"] and event.data["cost_window_start"] == \
        data["cgroup_refaults_after_t"]
    assert ", until it was removed [refaults of the group]" in cost.cost_words(event.data)


@pytest.mark.parametrize("end, reread, why", [(1010, 10 * PAGE, None), (None, None, "has no workingset_refault_file")])
def test_runs_count_until_removal_from_the_events_data(end, reread, why):
    data = {"methods_run": ["gradual", "compact"], "ended": 1005.0, "dry_run": False, "error": None,
            "cgroup": "/sys/fs/cgroup/vmmemctl.slice/run-1-make.scope", "cgroup_freed_bytes": 100 * MiB,
            "cgroup_refaults_after": 1000, "cgroup_refaults_after_t": 1000.0, "cgroup_removed_at_end": True,
            "cgroup_refaults_end": end, "after": {"workingset_refault_file": 1, "pgpgin": 1}}
    meter = cost.CostMeter(window=300, read_group=lambda shown: None)
    assert meter.watch(1, data)
    (done,) = meter.observe(GuestSample(time=1006.0, workingset_refault_file=5, pgpgin=5))
    assert done.reread_bytes == reread and (done.why is None if why is None else why in done.why)
    assert (done.window_start, done.window_end, done.ended_by) == (1000.0, 1005.0, "group removed")


def test_a_margin_grown_by_a_group_cost_counted_from_the_vms_refaults_is_reset_once(tmp_path):
    """Before, a group reclaim's cost was the VM's refaults and grew the VM's margin: a history checked
    already for drops is checked once more for that, with a state event saying why."""
    now = time.time()
    with Store(tmp_path / "h.db") as store:
        store.set_state(cost.RULE_KEY, cost.RULE)  # checked for drops by an earlier version
        store.add_event("reclaim", "reclaim gradual", t=now - 7200, data={"methods_run": ["gradual"],
                        "working_set_learned_bytes": 900 * MiB})
        store.add_event("reclaim", "reclaim gradual+compact in /sys/fs/cgroup/x.scope", t=now - 1000, data={
            "methods_run": ["gradual", "compact"], "cgroup": "/sys/fs/cgroup/x.scope", "reread_source": "refaults",
            "reread_bytes_after": 951 * MiB, "cost_window_s": 301.0})
        workingset.save(store, workingset.WorkingSet(2700 * MiB, now - 900, 2.0, "margin grown"))
        words = cost.reset_unattributable(store, CFG, now)
        assert words.startswith("working-set margin reset from 200% to 25%: the VM's refaults after 1 group reclaim")
        assert workingset.load(store).margin == 0.25 and workingset.load(store).bytes == 2700 * MiB
        assert cost.reset_unattributable(store, CFG, now) is None  # once
        assert len(store.events(kinds=["state"])) == 1
