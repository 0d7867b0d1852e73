"""`vmmemctl cgroups` and the `status` section, run as a user would, on the cgroup trees."""

from __future__ import annotations

import json
import shutil

from helpers import TREES, needs_nobody, as_nobody, run_cli, tree
from monitor.kernel import cgroups
from monitor.kernel.procfs import LocalFiles


def test_cgroups_lists_groups_largest_first_in_words():
    done = run_cli("cgroups", "--proc-root", str(tree("cgroup-systemd")))
    assert done.returncode == 0, done.stderr
    listing = cgroups.list_groups(LocalFiles(tree("cgroup-systemd")))
    lines = done.stdout.splitlines()
    assert lines[0] == f"cgroup v2 at /sys/fs/cgroup: {len(listing.groups)} groups, the largest page cache first"
    assert "include its children's" in lines[1]
    rows = [line for line in lines if line.startswith("  ") and "/" in line]
    assert len(rows) == len(listing.groups)
    assert [g.name for g in listing.groups][0] in rows[0]  # the largest first, as the listing orders them
    for words in ("docker: 3f2a1b2c3d4e…", "service: nginx", "user session 1000", "vmmemctl run: make",
                  "docker: postgres", "(frozen)"):
        assert words in done.stdout


def test_cgroups_top_says_how_many_are_left_out():
    done = run_cli("cgroups", "--top", "2", "--proc-root", str(tree("cgroup-systemd")))
    total = len(cgroups.list_groups(LocalFiles(tree("cgroup-systemd"))).groups)
    assert f"... and {total - 2} smaller groups" in done.stdout


def test_cgroups_json_has_every_group_and_the_top_level_totals():
    done = run_cli("cgroups", "--json", "--proc-root", str(tree("cgroup-systemd")))
    data = json.loads(done.stdout)
    listing = cgroups.list_groups(LocalFiles(tree("cgroup-systemd")))
    assert [g["path"] for g in data["groups"]] == [g.path for g in listing.groups]
    assert data["top_level_totals"]["file_bytes"] == sum(g.file for g in listing.groups if g.depth == 1)


def test_cgroup_v1_is_one_line_and_exit_0():
    done = run_cli("cgroups", "--proc-root", str(tree("cgroup-v1")))
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.strip().count("\n") == 0 and "per-group numbers need cgroup v2" in done.stdout
    data = json.loads(run_cli("cgroups", "--json", "--proc-root", str(tree("cgroup-v1"))).stdout)
    assert data["groups"] == [] and data["memory_controller"] is False


def test_odd_groups_are_listed_with_words_not_a_traceback():
    done = run_cli("cgroups", "--proc-root", str(tree("cgroup-odd")))
    assert done.returncode == 0 and "Traceback" not in done.stderr
    assert "/system.slice/garbage.service: memory.stat: not in the expected form" in done.stdout
    assert "memory controller is not enabled" in done.stdout


@needs_nobody
def test_an_unreadable_file_says_permission_denied(shared_dir):
    root = shared_dir / "tree"
    shutil.copytree(TREES / "cgroup-odd", root)
    (root / "sys/fs/cgroup/system.slice/locked.service/memory.stat").chmod(0)
    done = as_nobody("cgroups", "--proc-root", str(root / "proc"))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "/system.slice/locked.service: memory.stat: permission denied" in done.stdout


def test_status_names_the_groups_that_hold_the_most_cache():
    done = run_cli("status", "--cpu-window", "0", "--proc-root", str(tree("cgroup-systemd")))
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("who holds the cache:"))
    listing = cgroups.list_groups(LocalFiles(tree("cgroup-systemd")))
    leaves = [g for g in listing.groups if g.children == 0][:3]
    assert [g.name in line for g in leaves] == [True] * 3
    assert "slice: system" not in line  # a slice adds its children up: they are named instead
    data = json.loads(run_cli("status", "--json", "--cpu-window", "0", "--proc-root",
                              str(tree("cgroup-systemd"))).stdout)
    assert [g["path"] for g in data["cgroups"]] == [g.path for g in listing.groups if g.children == 0][:5]
    assert data["cgroups_why"] == "cgroup v2 at /sys/fs/cgroup"


def test_status_on_cgroup_v1_says_why_in_one_line():
    done = run_cli("status", "--cpu-window", "0", "--proc-root", str(tree("cgroup-v1")))
    assert "who holds the cache: cgroup v2 at /sys/fs/cgroup/unified has no memory controller" in done.stdout
    data = json.loads(run_cli("status", "--json", "--cpu-window", "0", "--proc-root", str(tree("cgroup-v1"))).stdout)
    assert data["cgroups"] is None and "need cgroup v2" in data["cgroups_why"]
