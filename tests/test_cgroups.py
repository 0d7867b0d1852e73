"""Who holds the cache: cgroup v2 groups read from recorded and hand-made trees (tests/trees/cgroup-*).

Every expectation is derived from the tree's own files, never from this machine's cgroups."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from helpers import TREES
from monitor.kernel import cgroups
from monitor.kernel.procfs import LocalFiles

DOCKER_PG = "3f2a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8"


def files_of(root: Path) -> LocalFiles:
    return LocalFiles(root / "proc")


def stat_of(root: Path, rel: str) -> dict[str, int]:
    return cgroups.parse_memory_stat((root / "sys/fs/cgroup" / rel / "memory.stat").read_text())


@pytest.fixture
def systemd_tree(tmp_path) -> Path:
    """cgroup-systemd, with the run group renamed as `vmmemctl run` names it (a "\\" in a committed
    file name cannot be checked out on Windows)."""
    root = tmp_path / "tree"
    shutil.copytree(TREES / "cgroup-systemd", root)
    runs = root / "sys/fs/cgroup/vmmemctl.slice"
    (runs / "run-4242-make.scope").rename(runs / cgroups.run_group_name(4242, ["make", "-j8"]))
    return root


def test_the_mount_is_found_in_mountinfo_and_has_the_memory_controller(systemd_tree):
    hierarchy = cgroups.find_hierarchy(files_of(systemd_tree))
    assert (hierarchy.mount_point, hierarchy.path, hierarchy.memory) == ("/sys/fs/cgroup", "sys/fs/cgroup", True)
    assert hierarchy.usable


def test_groups_carry_the_numbers_of_their_files_largest_cache_first(systemd_tree):
    listing = cgroups.list_groups(files_of(systemd_tree))
    by_path = {g.path: g for g in listing.groups}
    on_disk = sorted(str(p.parent.relative_to(systemd_tree / "sys/fs/cgroup"))
                     for p in (systemd_tree / "sys/fs/cgroup").rglob("memory.stat"))
    assert sorted(p.lstrip("/") for p in by_path) == on_disk
    pg = by_path[f"/system.slice/docker-{DOCKER_PG}.scope"]
    stat = stat_of(systemd_tree, f"system.slice/docker-{DOCKER_PG}.scope")
    assert (pg.file, pg.active_file, pg.inactive_file, pg.shmem, pg.anon) == (
        stat["file"], stat["active_file"], stat["inactive_file"], stat["shmem"], stat["anon"])
    current = (systemd_tree / f"sys/fs/cgroup/system.slice/docker-{DOCKER_PG}.scope/memory.current").read_text()
    assert pg.current == int(current)
    caches = [g.file for g in listing.groups]
    assert caches == sorted(caches, reverse=True)
    assert all(g.problem is None for g in listing.groups)


def test_totals_add_the_top_level_groups_only(systemd_tree):
    listing = cgroups.list_groups(files_of(systemd_tree))
    top = [g for g in listing.groups if g.path.count("/") == 1]
    assert {g.path for g in top} == {"/" + p.name for p in (systemd_tree / "sys/fs/cgroup").iterdir() if p.is_dir()}
    assert listing.totals()["file_bytes"] == sum(g.file for g in top)
    assert listing.totals()["file_bytes"] < sum(g.file for g in listing.groups)  # children counted once
    system = next(g for g in listing.groups if g.path == "/system.slice")
    kids = [g for g in listing.groups if g.path.startswith("/system.slice/")]
    assert system.children == len(kids) and system.file >= sum(g.file for g in kids)


@pytest.mark.parametrize("path, words", [
    (f"/system.slice/docker-{DOCKER_PG}.scope", "docker: 3f2a1b2c3d4e…"),
    ("/system.slice/docker-postgres.scope", "docker: postgres"),
    ("/system.slice/nginx.service", "service: nginx"),
    ("/system.slice", "slice: system"),
    ("/user.slice/user-1000.slice", "user session 1000"),
    ("/user.slice/user-1000.slice/session-3.scope", "user session 1000: session 3"),
    ("/user.slice/user-1000.slice/user@1000.service", "user session 1000: user manager"),
    ("/init.scope", "systemd (init)"),
    ("/machine.slice/libpod-aa11bb22cc33dd44ee55ff6600112233445566778899aabbccddeeff00112233.scope",
     "podman: aa11bb22cc33…"),
    ("/machine.slice/machine-debian\\x2dtest.scope", "machine: debian-test"),
    (f"/docker/{DOCKER_PG}", "docker: 3f2a1b2c3d4e…"),
    ("/vmmemctl.slice", "vmmemctl runs"),
    ("/vmmemctl.slice/run-4242-make\\x20\\x2dj8.scope", "vmmemctl run: make -j8"),
    ("/user.slice/user-1000.slice/user@1000.service/vmmemctl.slice/run-7-cargo\\x20build.scope",
     "vmmemctl run: cargo build"),
    ("/run-7-make.scope", "scope: run-7-make"),  # not under vmmemctl.slice: not one of ours
    # WSL 2.9.8 on: a group per distribution under /wsl-user (microsoft/WSL#41492), systemd's below it
    ("/wsl-user", "WSL: all distributions"),
    ("/wsl-user/distro-4975", "WSL distribution (init pid 4975)"),
    ("/wsl-user/distro-280/systemd", "WSL distribution (init pid 280): systemd"),
    ("/wsl-user/distro-280/non-systemd", "WSL distribution (init pid 280): outside systemd"),
    ("/wsl-user/distro-280/systemd/system.slice/nginx.service", "service: nginx"),
    ("/wsl-user/distro-280/systemd/user.slice/user-1000.slice", "user session 1000"),
    ("/odd", "/odd"),
])
def test_group_words(path, words):
    assert cgroups.group_words(path) == words


def test_the_run_group_name_carries_the_command_both_ways():
    argv = ["make", "-j8", "CC=/usr/bin/gcc", "ünï"]
    name = cgroups.run_group_name(4242, argv)
    assert "/" not in name and " " not in name and name.startswith("run-4242-") and name.endswith(".scope")
    assert cgroups.run_command(f"/vmmemctl.slice/{name}") == " ".join(argv)
    long = cgroups.run_group_name(1, ["x" * 300])
    assert len(long) <= cgroups.RUN_COMMAND_MAX + len("run-1-.scope")


def test_the_run_group_is_named_by_its_command_in_the_listing(systemd_tree):
    listing = cgroups.list_groups(files_of(systemd_tree))
    assert "vmmemctl run: make -j8" in [g.name for g in listing.groups]


def test_a_frozen_group_is_seen(systemd_tree):
    listing = cgroups.list_groups(files_of(systemd_tree))
    frozen = {g.path for g in listing.groups if g.frozen}
    expected = {"/" + str(p.parent.relative_to(systemd_tree / "sys/fs/cgroup"))
                for p in (systemd_tree / "sys/fs/cgroup").rglob("cgroup.freeze") if p.read_text().strip() == "1"}
    assert frozen == expected and len(expected) == 1
    directory, path = cgroups.find_group(files_of(systemd_tree), next(iter(expected)).lstrip("/"))
    assert cgroups.is_frozen(directory) is True
    assert cgroups.is_frozen(systemd_tree / "sys/fs/cgroup/system.slice/nginx.service") is False


def test_find_group_by_path_or_words(systemd_tree):
    files = files_of(systemd_tree)
    assert cgroups.find_group(files, "service: nginx")[1] == "/system.slice/nginx.service"
    assert cgroups.find_group(files, "/system.slice/nginx.service")[1] == "/system.slice/nginx.service"
    assert cgroups.find_group(files, "no such group") is None


def test_memory_on_cgroup_v1_says_per_group_numbers_need_v2():
    listing = cgroups.list_groups(LocalFiles(TREES / "cgroup-v1/proc"))
    assert not listing.hierarchy.usable and listing.groups == []
    assert "need cgroup v2" in listing.hierarchy.why and "no memory controller" in listing.hierarchy.why


def test_only_cgroup_v1_mounted(tmp_path):
    root = tmp_path / "tree"
    shutil.copytree(TREES / "cgroup-v1", root)
    info = root / "proc/self/mountinfo"
    info.write_text("".join(line for line in info.read_text().splitlines(keepends=True) if "cgroup2" not in line))
    hierarchy = cgroups.find_hierarchy(LocalFiles(root / "proc"))
    assert not hierarchy.usable and "only cgroup v1" in hierarchy.why


def test_a_tree_without_mountinfo_says_so():
    hierarchy = cgroups.find_hierarchy(LocalFiles(TREES / "linux-vm/proc"))
    assert not hierarchy.usable and "mountinfo" in hierarchy.why


def test_odd_groups_say_what_is_wrong_in_words():
    listing = cgroups.list_groups(LocalFiles(TREES / "cgroup-odd/proc"))
    by_path = {g.path: g for g in listing.groups}
    nomem = by_path["/system.slice/cron.service/nomemory"]
    assert nomem.file is None and "memory controller is not enabled" in nomem.problem
    garbage = by_path["/system.slice/garbage.service"]
    assert garbage.file is None and garbage.current is None
    assert "memory.stat: not in the expected form" in garbage.problem and "'max' is not a number" in garbage.problem
    assert by_path["/system.slice/cron.service"].problem is None


def test_a_group_that_disappears_mid_read_is_counted_gone_not_fatal(tmp_path):
    """The group's memory.stat is a FIFO: the moment the reader opens it, the writer removes the group
    (as a container stops), then answers. The reader finds memory.current gone with its directory."""
    root = tmp_path / "tree"
    shutil.copytree(TREES / "cgroup-systemd", root)
    group = root / "sys/fs/cgroup/system.slice/nginx.service"
    text = (group / "memory.stat").read_text()
    (group / "memory.stat").unlink()
    os.mkfifo(group / "memory.stat")

    def stop_the_group():
        with open(group / "memory.stat", "w") as fifo:  # returns once the reader has opened it
            shutil.rmtree(group)
            fifo.write(text)

    writer = threading.Thread(target=stop_the_group, daemon=True)
    writer.start()
    listing = cgroups.list_groups(files_of(root))
    writer.join(60)
    assert not writer.is_alive()
    assert listing.gone == 1
    assert "/system.slice/nginx.service" not in {g.path for g in listing.groups}
    assert "/system.slice/docker.service" in {g.path for g in listing.groups}


def test_an_unreadable_file_is_a_word_not_a_traceback(tmp_path):
    """A file the kernel will not let us read (EISDIR stands in here; as 'nobody' EACCES is in
    test_cli_cgroups): the group is listed with what went wrong."""
    root = tmp_path / "tree"
    shutil.copytree(TREES / "cgroup-odd", root)
    stat = root / "sys/fs/cgroup/system.slice/locked.service/memory.stat"
    stat.unlink()
    stat.mkdir()
    listing = cgroups.list_groups(files_of(root))
    locked = next(g for g in listing.groups if g.path == "/system.slice/locked.service")
    assert locked.file is None and locked.current is not None
    assert locked.problem == "memory.stat: is a directory"


def test_the_mount_outside_sys_is_named_not_read(tmp_path):
    root = tmp_path / "tree"
    shutil.copytree(TREES / "cgroup-systemd", root)
    info = root / "proc/self/mountinfo"
    info.write_text(info.read_text().replace(" /sys/fs/cgroup ", " /cgroup\\040v2 "))
    hierarchy = cgroups.find_hierarchy(files_of(root))
    assert hierarchy.mount_point == "/cgroup v2" and not hierarchy.usable and "outside /sys" in hierarchy.why


def test_the_json_says_how_totals_count(systemd_tree):
    data = cgroups.list_groups(files_of(systemd_tree)).to_json()
    assert data["memory_controller"] is True and data["groups"][0]["file_bytes"] >= data["groups"][-1]["file_bytes"]
    assert "include its children" in data["note"]
    assert {"path", "name", "current_bytes", "anon_bytes", "file_bytes", "active_file_bytes",
            "inactive_file_bytes", "shmem_bytes", "frozen", "depth", "problem"} <= set(data["groups"][0])
