"""`vmmemctl cache` and `reclaim --path` on real files of this machine's kernel, hostile trees included.

The expectation is always derived from what the test itself put in the cache (files written,
written back and dropped with fadvise, then some read back in full), never from this
machine's figures. Both ways of asking the kernel are run: cachestat (where the kernel has it)
and mmap + mincore (forced with --reader mincore).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from helpers import as_nobody, cold_file, kernel_cached, needs_nobody, on_shmem, run_cli, warm
from monitor.pagecache.scan import Scan
from monitor.pagecache.residency import cachestat_number, choose_reader, probe_cachestat
from monitor.pagecache.treewalk import Walker

MiB = 1024**2
HAS_CACHESTAT = probe_cachestat(cachestat_number()) is not None
READERS = [pytest.param("cachestat", marks=pytest.mark.skipif(not HAS_CACHESTAT, reason="no cachestat(2) here "
                                                              "(Linux 6.5+)")), "mincore"]


def waiting_turn(run, *args, **kw):
    """Run a reclaim, waiting while another one (another test, on this shared machine) holds the
    machine-wide reclaim lock: two reclaims never overlap, by design."""
    deadline = time.monotonic() + 120
    while True:
        done = run(*args, **kw)
        if done.returncode != 1 or "another reclaim is running" not in done.stderr or time.monotonic() > deadline:
            return done
        time.sleep(0.5)


def disk_reads() -> int:
    """Bytes this process has made the kernel fetch from storage (/proc/self/io read_bytes)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("read_bytes:"):
            return int(line.split()[1])
    raise AssertionError("no read_bytes in /proc/self/io")


@pytest.fixture
def tree(disk):
    """hot/: 2 files read back (8 MiB cached); cold/: 2 files not cached."""
    root = disk / "t"
    for i in range(2):
        warm(cold_file(root / "hot" / f"h{i}", 4 * MiB))
        cold_file(root / "cold" / f"c{i}", 4 * MiB)
    return root


# ------------------------------------------------------------------ what is cached


@pytest.mark.parametrize("reader", READERS)
def test_cache_finds_what_was_read_by_directory(tree, reader):
    done = run_cli("cache", str(tree), "--depth", "1", "--json", "--reader", reader)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["reader"] == reader
    by_dir = {d["path"]: d for d in data["dirs"]}
    expected = sum(kernel_cached(p) for p in (tree / "hot").iterdir())
    assert expected > 7 * MiB  # the test put 8 MiB in (less only if something evicted it meanwhile)
    assert abs(by_dir[str(tree / "hot")]["cached_bytes"] - expected) <= 0.03 * expected
    assert str(tree / "cold") not in by_dir  # nothing of it cached: not listed
    assert data["total"]["files"] == 4 and data["page_cache_bytes"] > 0
    assert (data["total"]["dirty_bytes"] is None) == (reader == "mincore")  # mincore cannot tell


@pytest.mark.parametrize("reader", READERS)
def test_the_scan_reads_nothing_into_the_cache(tree, reader):
    assert run_cli("cache", str(tree), "--reader", reader).returncode == 0
    assert sum(kernel_cached(p) for p in (tree / "cold").iterdir()) == 0


def test_auto_falls_back_to_mincore_where_cachestat_is_unknown():
    assert probe_cachestat(cachestat_number("sparc64")) is None
    assert choose_reader("mincore").name == "mincore"
    assert choose_reader("auto").name == ("cachestat" if HAS_CACHESTAT else "mincore")


def test_text_report_says_share_and_what_was_not_found(tree):
    done = run_cli("cache", str(tree), "--depth", "1")
    assert done.returncode == 0, done.stderr
    assert f"{tree}/hot" in done.stdout and "page cache" in done.stdout and "not found:" in done.stdout


def test_ctrl_c_keeps_what_was_found(disk):
    for i in range(300):
        cold_file(disk / "many" / f"f{i:03}", 4096)
    stop = threading.Event()
    scan = Scan([str(disk / "many")], progress=lambda stats, cached: stop.set(), stop=stop)
    result = scan.run()
    assert result.stats.interrupted and 0 < result.stats.files < 300


def test_bad_paths_are_one_line(tmp_path):
    for args in (["cache", str(tmp_path / "nope")], ["reclaim", "--path", str(tmp_path / "nope")],
                 ["reclaim", "--path", str(tmp_path), "--method", "full"], ["cache", "--depth", "0"]):
        done = run_cli(*args)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, args


# ------------------------------------------------------------------ hostile trees


@pytest.fixture
def hostile(disk):
    root = disk / "hostile"
    warm(cold_file(root / "ok", 1 * MiB))
    (root / "loop").symlink_to("..")
    (root / "self").symlink_to("self")
    os.mkfifo(root / "fifo")
    warm(cold_file(root / os.fsdecode(b"caf\xe9.bin"), 1 * MiB))
    outside = warm(cold_file(disk / "outside.bin", 2 * MiB)) or disk / "outside.bin"
    (root / "to-outside").symlink_to(outside)
    if os.geteuid() == 0:
        os.mknod(root / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    return root


@pytest.mark.parametrize("reader", READERS)
def test_hostile_tree_is_counted_and_skipped_never_followed(hostile, reader):
    done = run_cli("cache", str(hostile), "--json", "--reader", reader, timeout=30)  # a FIFO that blocked: timeout
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["total"]["files"] == 2  # ok and the non-UTF-8 name; never outside.bin through the symlink
    assert data["skipped"]["symlink"] == 3
    assert data["skipped"]["special"] == (2 if os.geteuid() == 0 else 1)  # the FIFO (and the device node)
    assert str(hostile) + "/caf\\xe9.bin" in [f["path"] for f in data["top_files"]]
    text = run_cli("cache", str(hostile), "--reader", reader, timeout=30)
    assert "caf\\xe9.bin" in text.stdout and "Traceback" not in text.stderr


def test_pseudo_filesystems_are_not_walked():
    """/proc holds no page cache, and opening its files can act: a scan of / never enters it."""
    from monitor.pagecache.scan import scan_trees
    from monitor.kernel.procfs import LocalFiles

    result = scan_trees(LocalFiles(), ["/proc"], depth=1)
    assert result.stats.files == 0 and result.stats.skipped["pseudo-fs"] == 1


def test_a_file_deleted_during_the_scan_is_counted(disk):
    many = disk / "many"
    for i in range(300):
        cold_file(many / f"f{i:03}", 4096)

    def delete_the_rest(stats, cached) -> None:
        for i in range(200, 300):
            (many / f"f{i:03}").unlink(missing_ok=True)
    result = Scan([str(many)], progress=delete_the_rest).run()
    assert result.stats.skipped["vanished"] > 0
    assert result.stats.files + result.stats.skipped["vanished"] == 300


def test_directory_loop_through_a_bind_mount_is_not_walked_twice(disk):
    if os.geteuid() != 0:
        pytest.skip("a bind mount needs root")
    (disk / "a" / "b").mkdir(parents=True)
    cold_file(disk / "a" / "f", 4096)
    if subprocess.run(["mount", "--bind", str(disk / "a"), str(disk / "a" / "b")], capture_output=True).returncode:
        pytest.skip("mount --bind refused here")
    try:
        walker = Walker()
        seen = []
        walker.walk(str(disk / "a"), lambda fd, st, where: seen.append(where.path))
        assert seen == [str(disk / "a" / "f")] and walker.stats.skipped["loop"] == 1
    finally:
        subprocess.run(["umount", str(disk / "a" / "b")], check=True)


def test_one_file_system_stays_on_the_tree_s_filesystem(disk):
    if os.geteuid() != 0:
        pytest.skip("a mount needs root")
    (disk / "m").mkdir()
    cold_file(disk / "f", 4096)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "none", str(disk / "m")],
                      capture_output=True).returncode:
        pytest.skip("mount -t tmpfs refused here")
    try:
        (disk / "m" / "g").write_bytes(b"x")
        seen: list[str] = []
        walker = Walker(one_file_system=True)
        walker.walk(str(disk), lambda fd, st, where: seen.append(where.name))
        assert seen == ["f"] and walker.stats.skipped["other-fs"] == 1
        seen.clear()
        Walker().walk(str(disk), lambda fd, st, where: seen.append(where.name))
        assert sorted(seen) == ["f", "g"]
    finally:
        subprocess.run(["umount", str(disk / "m")], check=True)


# ------------------------------------------------------------------ giving one tree's cache back


@pytest.mark.parametrize("reader", READERS)
def test_reclaim_path_frees_that_tree_and_leaves_the_other_hot(disk, reader, isolated_home):
    build, work = disk / "build", disk / "work"
    for i in range(3):
        warm(cold_file(build / "out" / f"o{i}", 8 * MiB))
        warm(cold_file(work / f"w{i}", 4 * MiB))
    hot_before = sum(kernel_cached(p) for p in work.iterdir())
    done = waiting_turn(run_cli, "reclaim", "--path", str(build), "--json", "--settle", "0",
                        "--db", str(disk / "h.db"),
                   "--reader", reader)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["method"] == "path" and data["paths"][0]["dropped_files"] == 3
    assert sum(kernel_cached(p) for p in (build / "out").iterdir()) == 0
    assert sum(kernel_cached(p) for p in work.iterdir()) >= 0.97 * hot_before
    before = disk_reads()
    for p in work.iterdir():
        warm(p)
    assert disk_reads() - before <= 0.03 * hot_before  # the other tree reads back from the cache, not the disk
    events = run_cli("history", "--events", "--format", "json", "--db", str(disk / "h.db"))
    assert '"reclaim"' in events.stdout and str(build) in events.stdout


def test_reclaim_path_never_touches_files_outside_the_tree(hostile):
    outside = hostile.parent / "outside.bin"
    warm(outside)
    cached = kernel_cached(outside)
    done = waiting_turn(run_cli, "reclaim", "--path", str(hostile), "--json", "--settle", "0", "--db",
                   str(hostile.parent / "h.db"), timeout=30)
    assert done.returncode == 0, done.stderr
    assert kernel_cached(hostile / "ok") == 0
    assert kernel_cached(outside) >= 0.97 * cached  # reached only through a symlink: kept


def test_dry_run_gives_nothing_back(tree):
    hot = sum(kernel_cached(p) for p in (tree / "hot").iterdir())
    done = waiting_turn(run_cli, "reclaim", "--path", str(tree), "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["dry_run"] and data["paths"][0]["dropped_files"] == 2
    assert sum(kernel_cached(p) for p in (tree / "hot").iterdir()) >= 0.97 * hot


# ------------------------------------------------------------------ as an unprivileged user


@needs_nobody
def test_nobody_sees_and_gives_back_the_cache_of_its_own_files(shared_dir):
    if on_shmem(shared_dir):
        pytest.skip("needs a disk filesystem")
    mine, roots = shared_dir / "mine", shared_dir / "roots"
    for i in range(2):
        warm(cold_file(mine / f"m{i}", 4 * MiB))
    warm(cold_file(roots / "r", 4 * MiB))
    roots.chmod(0o755)
    (roots / "r").chmod(0o644)
    (shared_dir / "locked").mkdir(mode=0o700)
    for p in [mine, *mine.iterdir()]:
        os.chown(p, 65534, 65534)
    scan = as_nobody("cache", str(shared_dir), "--json")
    assert scan.returncode == 0, scan.stderr
    data = json.loads(scan.stdout)
    assert data["total"]["cached_bytes"] >= 0.97 * sum(kernel_cached(p) for p in mine.iterdir())
    assert data["skipped"]["not-inspectable"] == 1  # root's file: the kernel will not tell nobody
    assert data["skipped"]["unreadable-dir"] == 1  # the 0700 directory
    done = waiting_turn(as_nobody, "reclaim", "--path", str(mine), "--json", "--settle", "0",
                        "--db", str(shared_dir / "h.db"))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert sum(kernel_cached(p) for p in mine.iterdir()) == 0
    assert kernel_cached(roots / "r") > 3 * MiB  # outside the path: kept
    assert any("compaction skipped" in n for n in result["notes"])
