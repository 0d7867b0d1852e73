"""`reclaim --cgroup` on a fake cgroup v2 tree (tests/fakecgroup.py): one group's cache goes, the
other's and the VM's memory.reclaim are not touched, refaults stop it, and every refusal is one line.

The real thing (a kernel's groups) is tests/lab/test_cgroup_lab.py's; this machine's cgroups are
never written."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from fakecgroup import MOUNTINFO_V1, FakeGroup, write_mountinfo
from fakekernel import FakeKernel
from helpers import run_cli

from monitor.config.schema import Config, ReclaimConfig
from monitor.history.store import Store
from monitor.kernel.procfs import LocalFiles
from monitor.probes.probeset import build
from monitor.kernel.cgroups import run_command, run_group_name
from monitor.reclaim.cgroup_target import CgroupError, find_group, v2_root
from monitor.reclaim.reclaimer import Reclaimer

MiB, GiB = 1024**2, 1024**3


@pytest.fixture
def machine(tmp_path):
    """A FakeKernel tree with cgroup v2 mounted, and a way to add groups to it."""
    kernel = FakeKernel(tmp_path / "tree", cached=3 * GiB, hot=0)
    write_mountinfo(kernel.proc)
    groups: list[FakeGroup] = []

    def group(rel: str, **kw) -> FakeGroup:
        g = FakeGroup(kernel.root / "sys/fs/cgroup", rel, **kw)
        groups.append(g)
        return g
    kernel.group = group
    yield kernel
    for g in groups:
        g.close()
    kernel.close()


def cli(kernel: FakeKernel, tmp_path: Path, *args: str):
    conf = tmp_path / "c.toml"
    conf.write_text('[reclaim]\nrefault_window = "0s"\n')  # the shortest pause (0.25 s) after each step
    return run_cli("reclaim", *args, "--settle", "0", "--proc-root", str(kernel.proc), "--db", str(tmp_path / "h.db"),
                   "--config", str(conf))


def test_one_group_is_reclaimed_the_other_and_the_vm_are_not(machine, tmp_path):
    build_ = machine.group("vmmemctl.slice/run-7-make", file=900 * MiB)
    editor = machine.group("user.slice/editor.scope", file=300 * MiB, hot=200 * MiB)
    done = cli(machine, tmp_path, "--cgroup", "vmmemctl.slice/run-7-make", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["cgroup"] == "/sys/fs/cgroup/vmmemctl.slice/run-7-make"
    assert data["cgroup_page_cache_before_bytes"] == 900 * MiB and data["cgroup_page_cache_after_bytes"] < MiB
    assert data["cgroup_freed_bytes"] > 899 * MiB and data["methods_run"] == ["gradual", "compact"]
    assert build_.requests and all(r.endswith(" swappiness=0") for r in build_.requests)
    assert editor.requests == [] and editor.file == 300 * MiB  # the other group: never written
    assert machine.requests == []  # nor the VM's own memory.reclaim
    with Store(tmp_path / "h.db") as store:
        (event,) = store.events(kinds=["reclaim"])
    assert "in /sys/fs/cgroup/vmmemctl.slice/run-7-make" in event.message
    assert event.data["cgroup_freed_bytes"] == data["cgroup_freed_bytes"]
    text = cli(machine, tmp_path, "--cgroup", "/sys/fs/cgroup/user.slice/editor.scope")
    assert text.returncode == 0 and "group page cache" in text.stdout and "in cgroup /sys/fs/cgroup/user.slice" \
        in text.stdout, text.stderr


def test_a_group_reclaim_stops_on_its_own_refaults_and_teaches_the_vm_nothing(machine, tmp_path):
    g = machine.group("system.slice/docker-abc.scope", file=1 * GiB, hot=256 * MiB)
    config = Config(reclaim=ReclaimConfig(settle=0.0, refault_window=0.0))
    probes = build(config, environ={}, files=LocalFiles(machine.proc))
    group = find_group(probes.files, "docker-abc.scope")  # a name: found in the tree
    assert group.rel == "system.slice/docker-abc.scope"
    result = Reclaimer(probes.files, probes, config.reclaim, tmp_path / "lock").run(
        "gradual", group=group, active_prior=False)
    assert result.stop_reason == "refaults", result.notes
    assert g.refaults > 0 and g.file >= 256 * MiB  # the set in use stayed (read back when evicted)
    assert result.cgroup_cache_after < 700 * MiB  # the cold part went
    assert all(s.refault_bytes is not None for s in result.gradual_steps)
    assert result.working_set_hint is None


def test_the_active_prior_bounds_a_live_groups_steps(machine, tmp_path):
    machine.group("user.slice/editor.scope", file=800 * MiB, hot=400 * MiB)
    done = cli(machine, tmp_path, "--cgroup", "editor.scope", "--json")
    data = json.loads(done.stdout)
    assert data["stop_reason"] == "active" and data["lower_bound_source"] == "active", data["notes"]
    assert data["cgroup_page_cache_after_bytes"] >= 500 * MiB  # 400 MiB active + 25 %


@pytest.mark.parametrize("how, words", [("freeze", "cgroup.freeze is 1"), ("events", "cgroup.events says frozen 1")])
def test_a_frozen_group_is_refused_and_never_written(machine, tmp_path, how, words):
    g = machine.group("system.slice/docker-paused.scope", file=500 * MiB)
    g.freeze(how)
    done = cli(machine, tmp_path, "--cgroup", "system.slice/docker-paused.scope")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and words in done.stderr and "frozen" in done.stderr, done.stderr
    assert g.requests == [] and machine.requests == []
    assert (machine.proc / "sys/vm/compact_memory").read_text() == ""


def test_refusals_are_one_line_exit_2(machine, tmp_path):
    machine.group("nomem.slice", file=0, memory=False)
    machine.group("a/x.scope", file=MiB)
    machine.group("b/x.scope", file=MiB)
    for spec, words in [("nosuch.slice", "no such group under /sys/fs/cgroup"),
                        ("nomem.slice", "has no memory controller"),
                        ("x.scope", "2 groups have that name (a/x.scope, b/x.scope): give the path"),
                        ("../etc", "has no '..'")]:
        done = cli(machine, tmp_path, "--cgroup", spec)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and words in done.stderr, (spec, done.stderr)
        assert "Traceback" not in done.stderr
    done = cli(machine, tmp_path, "--cgroup", "a/x.scope", "--method", "gradual")
    assert done.returncode == 2 and "takes no --path or --method" in done.stderr


def test_only_cgroup_v1_or_none_is_one_line(machine, tmp_path):
    write_mountinfo(machine.proc, MOUNTINFO_V1)
    done = cli(machine, tmp_path, "--cgroup", "user.slice")
    assert done.returncode == 2 and "only cgroup v1 is mounted here" in done.stderr and "needs cgroup v2" in done.stderr
    write_mountinfo(machine.proc, "25 30 0:23 / /sys rw,nosuid - sysfs sysfs rw\n")
    with pytest.raises(CgroupError, match="no cgroup v2 is mounted here"):
        v2_root(LocalFiles(machine.proc))
    assert machine.requests == []


def test_run_group_names_are_the_cgroups_views():
    assert run_group_name(42, ["make", "-j8"]) == "run-42-make\\x20\\x2dj8.scope"
    assert run_group_name(7, ["/usr/bin/cargo", "build"]) == "run-7--usr-bin-cargo\\x20build.scope"
    long = run_group_name(1, ["x" * 150, "é" * 20])
    assert len(long) <= len("run-1-.scope") + 160 and long.endswith(".scope") and "\\x" in long
    assert not long.removesuffix(".scope").endswith("\\")  # cut at a whole escape
    assert run_command("vmmemctl.slice/run-42-make\\x20\\x2dj8.scope") == "make -j8"
    assert run_command("/vmmemctl.slice/" + run_group_name(3, ["sh", "-c", "echo 'a b'"])) == "sh -c echo 'a b'"
    assert run_command("user.slice/run-42-make.scope") is None
    assert run_command("vmmemctl.slice/make.scope") is None


def test_a_dry_run_on_a_group_writes_nothing_and_says_where_it_would(machine, tmp_path):
    g = machine.group("vmmemctl.slice/run-9-make.scope", file=700 * MiB)
    done = cli(machine, tmp_path, "--cgroup", "run-9-make.scope", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "to /sys/fs/cgroup/vmmemctl.slice/run-9-make.scope/memory.reclaim" in done.stdout
    assert g.requests == [] and machine.requests == [] and g.file == 700 * MiB
    assert (machine.proc / "sys/vm/compact_memory").read_text() == ""


def test_a_group_given_back_whole_says_so(machine, tmp_path):
    machine.group("vmmemctl.slice/run-8-cp.scope", file=200 * MiB)
    done = cli(machine, tmp_path, "--cgroup", "run-8-cp.scope")
    assert done.returncode == 0, done.stderr
    assert "the group's page cache is given back (0 B left)" in done.stdout


MOUNTINFO_HYBRID = ("25 30 0:23 / /sys rw,nosuid - sysfs sysfs rw\n"
                    "35 25 0:30 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs ro,mode=755\n"
                    "36 35 0:31 / /sys/fs/cgroup/unified rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
                    "37 35 0:33 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory\n")


@pytest.mark.parametrize("spec", ["docker-abc.scope", "system.slice/docker-abc.scope", "nosuch.slice"])
def test_a_hybrid_host_says_no_memory_controller_before_no_such_group(machine, tmp_path, spec):
    """cgroup v2 on /sys/fs/cgroup/unified without the memory controller (systemd's hybrid layout): whatever
    the group, the answer is that v2 has no memory controller there, never "no such group"."""
    write_mountinfo(machine.proc, MOUNTINFO_HYBRID)
    unified = machine.root / "sys/fs/cgroup/unified"
    (unified / "system.slice/docker-abc.scope").mkdir(parents=True)
    (unified / "cgroup.controllers").write_text("\n")  # the v2 root offers no controller: all are on v1
    (unified / "system.slice/docker-abc.scope/cgroup.controllers").write_text("\n")
    done = cli(machine, tmp_path, "--cgroup", spec)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "cgroup v2 at /sys/fs/cgroup/unified has no memory controller" in done.stderr, done.stderr
    assert "no such group" not in done.stderr and machine.requests == []


def test_an_ended_jobs_group_goes_in_whole_steps_with_a_short_listen(machine, tmp_path):
    """`run`'s job has ended (no active prior): its bound 0 is no working-set estimate, so the steps stay whole
    (256 MiB here: 600 MiB in 3 steps, not a quarter of what is left near 0: ~15 steps) and each
    window is ENDED_WINDOW (1 s), not refault_window (5 s) nor refault_window_near (30 s)."""
    from monitor.reclaim.reclaimer import ENDED_WINDOW, Seams

    g = machine.group("vmmemctl.slice/run-9-make.scope", file=600 * MiB)
    from monitor.units import parse_size

    # the shipped windows (5 s, 30 s near the bound); whole steps of 256 MiB (MemTotal/32, clamped)
    config = Config(reclaim=ReclaimConfig(settle=0.0, gradual_step_max=parse_size("256MiB")))
    probes = build(config, environ={}, files=LocalFiles(machine.proc))
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # no real waiting: only until the fake kernel has served each write
        waits.append(seconds)
        for _ in range(400):
            if len(g.requests) >= len(waits):
                with g._lock:  # the fake appends the request, then publishes memory.stat, under this lock
                    return
            time.sleep(0.025)

    group = find_group(probes.files, "vmmemctl.slice/run-9-make.scope")
    result = Reclaimer(probes.files, probes, config.reclaim, tmp_path / "lock", seams=Seams(sleep=sleep)).run(
        "gradual", group=group, active_prior=False)
    asked = [s.asked for s in result.gradual_steps]
    assert asked == [256 * MiB, 256 * MiB, 88 * MiB], (asked, result.notes)
    assert g.file == 0 and "given back" in result.notes[-1]
    assert waits[:3] == [ENDED_WINDOW] * 3 and ENDED_WINDOW < config.reclaim.refault_window
    # a live group (the active prior) still probes near its bound, listening longer there
    live = machine.group("user.slice/editor.scope", file=600 * MiB, hot=100 * MiB)
    waits.clear()
    g = live
    result = Reclaimer(probes.files, probes, config.reclaim, tmp_path / "lock", seams=Seams(sleep=sleep)).run(
        "gradual", group=find_group(probes.files, "user.slice/editor.scope"), active_prior=True)
    assert len(result.gradual_steps) > 3 and max(waits) > ENDED_WINDOW, (waits, result.notes)
