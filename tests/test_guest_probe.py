"""The guest probe on recorded and hostile trees, and the parsers under it."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import threading

import pytest

from helpers import TREES, run_cli, tree
from monitor.kernel.environment import detect_environment
from monitor.probes.guest import FILES, GuestProbe, _from_meminfo, split_free_blocks
from monitor.sample import GuestSample
from monitor.kernel.procfs import LocalFiles, parse_buddyinfo, parse_cpu_times, parse_meminfo, parse_pressure

KiB = 1024


def sample_of(name: str):
    return GuestProbe(LocalFiles(tree(name))).sample()


def test_recorded_linux_vm_numbers():
    s = sample_of("linux-vm")
    info, _ = parse_meminfo((TREES / "linux-vm/proc/meminfo").read_text())
    assert s.total == info["MemTotal"] and s.free == info["MemFree"]
    assert s.page_cache == info["Buffers"] + info["Cached"] - info["Shmem"]
    assert s.reclaimable == s.page_cache - info["Mapped"]
    assert s.used == info["MemTotal"] - info["MemFree"] - s.page_cache - info["SReclaimable"]
    assert s.page_reporting_order == 9
    assert s.psi_io is not None and s.psi_io.some_total > 0
    assert s.pgpgin is not None and s.drop_pagecache is not None and s.workingset_refault_file is not None
    assert s.warnings == ()
    assert s.cpu_busy_percent is None  # one reading: no interval yet


def test_returnable_free_by_reporting_order():
    zones, _ = parse_buddyinfo("Node 0, zone   Normal      4      0      1      0      0      0      0      0      0      2      1\n")
    big, small = split_free_blocks(zones, 9)
    assert big == (2 * 512 + 1 * 1024) * 4 * KiB
    assert small == (4 + 4) * 4 * KiB
    big5, small5 = split_free_blocks(zones, 5)
    assert big5 == big and small5 == small
    big0, small0 = split_free_blocks(zones, 0)
    assert small0 == 0 and big0 == big + small


def test_wsl2_tree_uses_its_reporting_order():
    s = sample_of("wsl2-ubuntu")
    assert s.page_reporting_order == 5
    assert s.psi_memory is None and s.psi_io is None  # WSL's kernel: PSI off without psi=1
    assert s.page_cache > 20 * 1024**3 and s.returnable_free < 300 * 1024**2
    assert s.warnings == ()


@pytest.mark.parametrize("name, unknown, warning", [
    ("hostile-truncated", [], "meminfo: 1 malformed line(s) skipped"),
    ("hostile-truncated", [], "buddyinfo: 1 malformed line(s) skipped"),
    ("hostile-missing", ["page_cache", "reclaimable", "available", "returnable_free", "pgpgin", "psi_io"],
     "vmstat: missing"),
    ("hostile-missing", [], "buddyinfo: missing"),
    ("hostile-huge", ["free", "page_cache", "returnable_free", "pgpgin"], "meminfo: 2 malformed line(s) skipped"),
    ("hostile-huge", [], "vmstat: 1 malformed line(s) skipped"),
    ("hostile-garbage", ["total", "dirty", "shmem", "returnable_free", "cpu_busy_percent"], "meminfo: no MemTotal"),
    ("hostile-garbage", [], "page_reporting_order: not a number ('seven'); assuming 9"),
    ("hostile-garbage", [], "pressure: 3 malformed item(s) skipped"),
    ("hostile-empty-buddyinfo", ["returnable_free", "fragmented_free"], "buddyinfo: no zones"),
])
def test_hostile_trees_give_partial_samples(name, unknown, warning):
    s = sample_of(name)
    for field in unknown:
        assert getattr(s, field) is None, field
    assert any(warning in w for w in s.warnings), s.warnings


def test_extra_unknown_fields_are_ignored_quietly():
    assert sample_of("hostile-extra").warnings == ()
    assert sample_of("hostile-extra").page_cache == sample_of("linux-vm").page_cache


@pytest.mark.parametrize("name", sorted(p.name for p in TREES.iterdir() if p.is_dir()))
def test_status_never_crashes_on_any_tree(name):
    result = run_cli("status", "--json", "--proc-root", str(tree(name)), "--cpu-window", "0",
                     env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) >= {"time", "environment", "host", "guest"}
    text = run_cli("status", "--proc-root", str(tree(name)), "--cpu-window", "0", env={"PATH": "/usr/bin:/bin"})
    assert text.returncode == 0 and "Traceback" not in text.stderr


def test_part_larger_than_the_whole_is_refused():
    info = "MemTotal: 1000 kB\nMemFree: 500 kB\nCached: 5000 kB\nSwapTotal: 8000 kB\n"
    from monitor.probes.guest import _from_meminfo
    warnings: list[str] = []
    values = _from_meminfo(info, warnings)
    assert values["cached"] is None and values["swap_total"] == 8000 * KiB
    assert warnings == ["meminfo: Cached (5120000 bytes) exceeds MemTotal; ignored"]


@pytest.mark.parametrize("text, busy, total", [
    ("cpu  100 5 50 1000 20 3 2 7 0 0\ncpu0 1 2 3 4\n", 160, 1187),
    ("cpu  100 5 50 1000\n", 155, 1155),  # old kernels: four fields
    ("cpu  a b c d\n", None, None),
    ("intr 5\n", None, None),
])
def test_cpu_times(text, busy, total):
    cpu = parse_cpu_times(text)
    assert (cpu.busy, cpu.total) == (busy, total) if busy is not None else cpu is None


def test_cpu_busy_over_an_interval(tmp_path):
    root = tmp_path / "proc"
    root.mkdir()
    (root / "meminfo").write_text("MemTotal: 1000 kB\n")
    stat = root / "stat"
    stat.write_text("cpu  100 0 0 900 0 0 0 0 0 0\n")
    clock = [1000.0]
    probe = GuestProbe(LocalFiles(root), clock=lambda: clock[0])
    assert probe.sample().cpu_busy_percent is None
    clock[0] += 2
    stat.write_text("cpu  130 0 20 950 0 0 0 0 0 0\n")  # 50 busy of 100 jiffies
    assert probe.sample().cpu_busy_percent == 50.0
    clock[0] += 2
    stat.write_text("cpu  130 0 20 950 0 0 0 0 0 0\n")  # no jiffy passed: unknown, not a division by zero
    assert probe.sample().cpu_busy_percent is None


def test_a_sample_right_after_priming_leaves_cpu_busy_unknown(tmp_path):
    """The dashboard primed and sampled 3 ms apart: 1 busy jiffy of 2 read as 50 % (issue 18)."""
    root = tmp_path / "proc"
    root.mkdir()
    (root / "meminfo").write_text("MemTotal: 1000 kB\n")
    stat = root / "stat"
    stat.write_text("cpu  100 0 0 900 0 0 0 0 0 0\n")
    clock = [1000.0]
    probe = GuestProbe(LocalFiles(root), clock=lambda: clock[0])
    probe.prime()
    clock[0] += 0.003
    stat.write_text("cpu  101 0 0 901 0 0 0 0 0 0\n")
    assert probe.sample().cpu_busy_percent is None  # unknown, not 50 %
    clock[0] += 2
    stat.write_text("cpu  111 0 0 991 0 0 0 0 0 0\n")  # one interval later: 10 busy of 100 jiffies
    assert probe.sample().cpu_busy_percent == 10.0


def test_pressure_parser():
    p, warnings = parse_pressure("some avg10=0.31 avg60=0.49 avg300=0.15 total=676878\n"
                                 "full avg10=0.30 avg60=0.45 avg300=0.13 total=617601\n")
    assert (p.some_avg10, p.some_avg60, p.some_total, p.full_avg10) == (0.31, 0.49, 676878, 0.30)
    assert warnings == []


@pytest.mark.parametrize("name, kind", [("linux-vm", "linux"), ("wsl2-ubuntu", "wsl2"), ("wsl2-2020", "wsl2"),
                                        ("wsl1", "wsl1")])
def test_environment_from_recorded_trees(name, kind):
    assert detect_environment(LocalFiles(tree(name)), {}).kind == kind


@pytest.mark.parametrize("release, version, environ, kind", [
    ("4.4.0-22000-Microsoft", "", {}, "wsl1"),
    ("4.4.0-17763-Microsoft", "Linux version 4.4.0-17763-Microsoft (Microsoft@Microsoft.com)", {}, "wsl1"),
    ("4.19.84-microsoft-standard", "", {}, "wsl2"),
    ("5.10.16.3-microsoft-standard-WSL2", "", {}, "wsl2"),
    ("6.6.87.2-microsoft-standard-WSL2", "", {}, "wsl2"),
    ("6.6.87.2-microsoft-standard-WSL2+", "", {}, "wsl2"),
    ("6.8.0-mycustom", "", {"WSL_INTEROP": "/run/WSL/8_interop", "WSL_DISTRO_NAME": "Arch"}, "wsl2"),
    ("6.8.0-mycustom", "", {"WSL_DISTRO_NAME": "Arch"}, "wsl2"),
    ("6.1.0-27-amd64", "", {}, "linux"),
    ("6.18.44-fc-v595", "", {}, "linux"),
])
def test_environment_detection(tmp_path, release, version, environ, kind):
    (tmp_path / "proc/sys/kernel").mkdir(parents=True)
    (tmp_path / "proc/sys/kernel/osrelease").write_text(release + "\n")
    (tmp_path / "proc/version").write_text(version)
    env = detect_environment(LocalFiles(tmp_path / "proc"), environ)
    assert env.kind == kind
    assert env.distro == environ.get("WSL_DISTRO_NAME")


def test_windows_platform():
    assert detect_environment(LocalFiles(tree("linux-vm")), {}, platform="win32").kind == "windows"


# ------------------------------------------------------------- files kept open and re-read


def test_values_stay_right_across_re_reads(tmp_path):
    root = tmp_path / "proc"
    shutil.copytree(TREES / "linux-vm/proc", root)
    files = LocalFiles(root)
    probe = GuestProbe(files)
    meminfo = (root / "meminfo").read_text()
    first = probe.sample()
    for cached_kb in (1999176, 5, 1999176 * 3):  # longer and shorter texts than before, same descriptor
        text = re.sub(r"^Cached:\s+\d+ kB", f"Cached:        {cached_kb} kB", meminfo, flags=re.M)
        (root / "meminfo").write_text(text)  # rewritten in place, as procfs regenerates it
        s = probe.sample()
        info, _ = parse_meminfo(text)
        assert s.cached == cached_kb * KiB and s.free == first.free and s.warnings == ()
        assert s.page_cache == info["Buffers"] + info["Cached"] - info["Shmem"]
    (root / "meminfo").write_text(meminfo.replace("MemFree:", "MemFree: lots", 1))  # the layout no longer fits
    odd = probe.sample()
    assert odd.free is None and any("malformed" in w for w in odd.warnings)
    (root / "meminfo").write_text(meminfo)
    assert probe.sample().free == first.free


def test_a_file_that_vanishes_and_comes_back(tmp_path):
    root = tmp_path / "proc"
    shutil.copytree(TREES / "linux-vm/proc", root)
    files = LocalFiles(root)
    vmstat = (root / "vmstat").read_text()
    assert files.read(["proc/vmstat"])["proc/vmstat"] == vmstat
    (root / "vmstat").unlink()
    assert files.read(["proc/vmstat"])["proc/vmstat"] is None
    assert any("vmstat: missing" in w for w in GuestProbe(files).sample().warnings)
    (root / "vmstat").write_text("pgpgin 42\n")
    assert files.read(["proc/vmstat"])["proc/vmstat"] == "pgpgin 42\n"
    assert GuestProbe(files).sample().pgpgin == 42


def test_a_file_renamed_over_is_read_anew(tmp_path):
    # a writer that replaces the file (write a temp, rename it over): the kept descriptor would read the old inode
    root = tmp_path / "proc"
    shutil.copytree(TREES / "linux-vm/proc", root)
    files = LocalFiles(root)
    ticks = iter(range(0, 100, 10))  # samples 10 s apart, as a recorder takes them
    probe = GuestProbe(files, clock=lambda: float(next(ticks)))
    probe.sample()
    (tmp_path / "stat.new").write_text("cpu  100 0 0 900 0 0 0 0 0 0\n")
    os.replace(tmp_path / "stat.new", root / "stat")
    probe.sample()
    (tmp_path / "stat.new").write_text("cpu  150 0 0 950 0 0 0 0 0 0\n")  # 50 busy of 100 jiffies
    os.replace(tmp_path / "stat.new", root / "stat")
    assert probe.sample().cpu_busy_percent == 50.0


def test_a_fifo_is_read_anew_each_time(tmp_path):
    root = tmp_path / "proc"
    root.mkdir()
    os.mkfifo(root / "meminfo")
    files = LocalFiles(root)

    def serve(text):
        fd = os.open(root / "meminfo", os.O_WRONLY)  # blocks until the reader opens
        os.write(fd, text.encode())
        os.close(fd)
    for text in ("MemTotal: 1 kB\n", "MemTotal: 2 kB\n"):
        writer = threading.Thread(target=serve, args=(text,))
        writer.start()
        assert files.read(["proc/meminfo"])["proc/meminfo"] == text
        writer.join(5)
    files.close()


@pytest.mark.parametrize("name", sorted(p.name for p in TREES.iterdir() if p.is_dir()))
def test_quick_paths_give_what_the_full_parse_gives(name):
    # the layout, the buddyinfo sums and the sample built without __init__, against the plain parsers
    files = LocalFiles(tree(name))
    probe = GuestProbe(files)
    first, again = probe.sample(), probe.sample()  # the second goes through the learnt layout
    texts = files.read(FILES)
    warnings: list[str] = []
    meminfo = _from_meminfo(texts["proc/meminfo"], warnings)
    assert {k: getattr(again, k) for k in meminfo} == meminfo
    if texts["proc/buddyinfo"] is not None:
        zones, _ = parse_buddyinfo(texts["proc/buddyinfo"])
        if zones:
            assert (again.returnable_free, again.fragmented_free) == split_free_blocks(zones, again.page_reporting_order)
    fields = {f.name: getattr(again, f.name) for f in dataclasses.fields(GuestSample)}
    assert GuestSample(**fields) == again and repr(GuestSample(**fields)) == repr(again)
    assert dataclasses.replace(first, time=again.time, cpu_busy_percent=again.cpu_busy_percent) == again
