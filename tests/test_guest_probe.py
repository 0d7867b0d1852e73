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
from monitor.sample import GuestSample, guest_json
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


@pytest.mark.parametrize("name, text, mglru, warning", [
    ("linux-vm", None, False, None),  # no lru_gen: a kernel without MGLRU (WSL's), off
    ("linux-vm-mglru", None, True, None),  # 0x0007: the lab guest's kernel with MGLRU on
    ("linux-vm", "0x0000\n", False, None),  # built in, switched off (echo n)
    ("linux-vm", "0x0001\n", True, None),  # one feature on is MGLRU on
    ("linux-vm", "yes please\n", None, "lru_gen/enabled: not a number ('yes please'); MGLRU unknown"),
    ("linux-vm", "", None, "lru_gen/enabled: not a number (''); MGLRU unknown"),
])
def test_the_probe_reads_whether_mglru_is_on(name, text, mglru, warning, tmp_path):
    shutil.copytree(TREES / name, tmp_path / "t")
    if text is not None:
        path = tmp_path / "t/sys/kernel/mm/lru_gen/enabled"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    s = GuestProbe(LocalFiles(tmp_path / "t/proc")).sample()
    assert s.mglru is mglru and guest_json(s)["mglru"] is mglru
    assert s.warnings == (() if warning is None else (warning,))


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


# ------------------------------------------------------------- a recorder's tick: the slower files on a cadence


class Tree:
    """A copy of the linux-vm tree whose files a test rewrites, sampled on a clock it sets."""

    def __init__(self, tmp_path):
        shutil.copytree(TREES / "linux-vm", tmp_path / "t")
        self.root = tmp_path / "t"
        self.now = 1_000_000.0
        self.probe = GuestProbe(LocalFiles(self.root / "proc"), clock=lambda: self.now)

    def write(self, path: str, text: str) -> None:
        (self.root / path).parent.mkdir(parents=True, exist_ok=True)
        (self.root / path).write_text(text)  # in place, as the kernel regenerates it

    def sub(self, path: str, pattern: str, value: str) -> None:
        text = (self.root / path).read_text()
        new = re.sub(pattern, value, text, count=1, flags=re.M)
        assert new != text, pattern
        self.write(path, new)

    def tick(self, after: float = 2.0) -> GuestSample:
        self.now += after
        return self.probe.sample(tick=True)


PSI_BUSY = "some avg10=42.00 avg60=1.00 avg300=0.50 total=9999999\nfull avg10=1.00 avg60=0.76 avg300=0.48 total=2840482\n"
BUDDY = "Node 0, zone   Normal      1      0      0      0      0      0      2      0      0      0      {n} \n"
SPLIT_9 = lambda n: (n * (4096 << 10), 4096 + 2 * (4096 << 6))  # noqa: E731  (returnable, fragmented)
SPLIT_5 = lambda n: (n * (4096 << 10) + 2 * (4096 << 6), 4096)  # noqa: E731


def test_a_tick_reads_meminfo_and_stat_every_time_and_the_rest_on_its_cadence(tmp_path):
    t = Tree(tmp_path)
    first = t.tick()
    assert first.carried == () and first.pgpgin is not None and first.psi_io.some_avg10 == 1.68
    start = first.time
    # every slower file changes at once; meminfo and stat too
    t.write("proc/pressure/io", PSI_BUSY)
    t.sub("proc/vmstat", r"^pgpgin \d+", "pgpgin 123")
    t.write("proc/buddyinfo", BUDDY.format(n=7))
    t.write("sys/module/page_reporting/parameters/page_reporting_order", "5\n")
    t.write("sys/kernel/mm/lru_gen/enabled", "0x0007\n")  # MGLRU switched on (none before: off)
    t.sub("proc/meminfo", r"^Cached:\s+\d+ kB", "Cached: 1000 kB")
    t.write("proc/stat", "cpu  10000000 0 0 990000000 0 0 0 0 0 0\n")
    s = t.tick()
    assert s.cached == 1000 * KiB and s.cpu_busy_percent is not None  # read this tick
    # carried from the first sample, and said so
    assert (s.psi_io, s.pgpgin, s.returnable_free, s.page_reporting_order) == \
        (first.psi_io, first.pgpgin, first.returnable_free, 9)
    assert dict(s.carried) == {"pressure": start, "vmstat": start, "buddyinfo": start, "page_reporting_order": start,
                               "lru_gen": start}
    assert first.mglru is False and s.mglru is False
    assert s.read_at("vmstat") == start and s.read_at("meminfo") == s.time and s.warnings == ()
    for _ in range(3):
        s = t.tick()  # +8 s: still within every cadence
        assert s.psi_io == first.psi_io and s.read_at("pressure") == start
    s = t.tick()  # +10 s: PSI is due
    assert s.psi_io.some_avg10 == 42.0 and s.read_at("pressure") == s.time
    assert s.pgpgin == first.pgpgin and s.read_at("vmstat") == start
    while t.now < start + 28:
        s = t.tick()
        assert s.pgpgin == first.pgpgin and s.returnable_free == first.returnable_free
    s = t.tick()  # +30 s: vmstat and buddyinfo
    assert s.pgpgin == 123 and s.read_at("vmstat") == s.time == start + 30
    assert (s.returnable_free, s.fragmented_free) == SPLIT_9(7) and s.read_at("buddyinfo") == s.time
    assert s.page_reporting_order == 9 and s.read_at("page_reporting_order") == start  # split at the order kept
    while t.now < start + 58:
        s = t.tick()
        assert s.page_reporting_order == 9
    s = t.tick()  # +60 s: the module parameter, and the split by the new order; MGLRU's switch
    assert s.page_reporting_order == 5 and s.read_at("page_reporting_order") == s.time
    assert s.mglru is True and s.read_at("lru_gen") == s.time
    assert (s.returnable_free, s.fragmented_free) == SPLIT_5(7) and s.read_at("buddyinfo") == s.time


def test_a_sample_that_is_not_a_tick_reads_every_file_and_restarts_the_cadence(tmp_path):
    t = Tree(tmp_path)
    t.tick()
    t.sub("proc/vmstat", r"^pgpgin \d+", "pgpgin 123")
    t.write("proc/pressure/io", PSI_BUSY)
    t.now += 2
    full = t.probe.sample()  # a reclaim's before/after, status, doctor
    assert full.carried == () and full.pgpgin == 123 and full.psi_io.some_avg10 == 42.0
    t.sub("proc/vmstat", r"^pgpgin \d+", "pgpgin 456")
    s = t.tick()
    assert s.pgpgin == 123 and s.read_at("vmstat") == full.time


def test_buddyinfo_is_read_on_the_tick_after_free_memory_moved(tmp_path):
    t = Tree(tmp_path)
    first = t.tick()
    t.write("proc/buddyinfo", BUDDY.format(n=7))
    t.sub("proc/meminfo", r"^MemFree:\s+\d+ kB", f"MemFree: {first.free // KiB - 16 * 1024} kB")  # 16 MiB
    s = t.tick()
    assert s.returnable_free == first.returnable_free and s.read_at("buddyinfo") == first.time
    assert t.tick().returnable_free == first.returnable_free  # within BUDDY_FREE_MOVE (32 MiB): kept
    t.sub("proc/meminfo", r"^MemFree:\s+\d+ kB", f"MemFree: {first.free // KiB - 40 * 1024} kB")  # 40 MiB
    moved = t.tick()
    assert moved.free == first.free - 40 * 1024 * KiB and moved.returnable_free == first.returnable_free
    s = t.tick()  # the tick after the move reads buddyinfo
    assert (s.returnable_free, s.fragmented_free) == SPLIT_9(7) and s.read_at("buddyinfo") == s.time
    assert s.pgpgin == first.pgpgin and s.read_at("vmstat") == first.time  # the others keep their cadence
    assert t.tick().read_at("buddyinfo") == s.time  # and from there, kept again


def test_a_slower_file_that_vanishes_warns_from_its_next_read_on_every_tick_until_it_is_back(tmp_path):
    t = Tree(tmp_path)
    first = t.tick()
    vmstat = (t.root / "proc/vmstat").read_text()
    (t.root / "proc/vmstat").unlink()
    s = t.tick()  # not due yet: the last values, said to be 2 s old
    assert s.pgpgin == first.pgpgin and s.read_at("vmstat") == first.time and s.warnings == ()
    t.now = first.time + 28
    s = t.tick()  # +30 s, due: read, missing
    assert s.pgpgin is None and s.read_at("vmstat") == s.time
    assert any("vmstat: missing" in w for w in s.warnings)
    assert s.read_at("buddyinfo") == s.time  # due at the same time
    for _ in range(3):  # a file read with a warning is read again on every tick, and warns again
        s = t.tick()
        assert s.pgpgin is None and s.read_at("vmstat") == s.time and any("vmstat: missing" in w for w in s.warnings)
        assert s.read_at("buddyinfo") == first.time + 30  # the others keep their cadence
    (t.root / "proc/vmstat").write_text(vmstat.replace(f"pgpgin {first.pgpgin}\n", "pgpgin 77\n"))
    s = t.tick()  # back: read at once
    assert s.pgpgin == 77 and s.warnings == () and s.read_at("vmstat") == s.time
    s = t.tick()
    assert s.pgpgin == 77 and s.read_at("vmstat") == s.time - 2  # and carried again


def test_an_odd_slower_file_is_read_and_reported_on_every_tick(tmp_path):
    t = Tree(tmp_path)
    t.write("sys/module/page_reporting/parameters/page_reporting_order", "seven\n")
    for _ in range(3):
        s = t.tick()
        assert s.page_reporting_order == 9 and s.read_at("page_reporting_order") == s.time
        assert any("not a number ('seven')" in w for w in s.warnings)


def test_wsl_without_psi_reads_no_pressure_files_between_its_looks(tmp_path):
    shutil.copytree(TREES / "wsl2-ubuntu", tmp_path / "t")
    now = [1_000_000.0]
    probe = GuestProbe(LocalFiles(tmp_path / "t/proc"), clock=lambda: now[0])
    asked: list[list[str]] = []
    read = probe.files.read
    probe.files.read = lambda paths: asked.append(list(paths)) or read(paths)
    for _ in range(5):
        s = probe.sample(tick=True)
        now[0] += 2
        assert s.psi_io is None and s.psi_memory is None and s.warnings == ()  # absent is no warning
    assert "proc/pressure/io" in asked[0] and all(paths == ["proc/meminfo", "proc/stat"] for paths in asked[1:])


def test_a_clock_that_goes_back_reads_every_file_again(tmp_path):
    t = Tree(tmp_path)
    first = t.tick()
    t.sub("proc/vmstat", r"^pgpgin \d+", "pgpgin 123")
    s = t.tick(-3600.0)  # the wall clock stepped back an hour
    assert s.pgpgin == 123 and s.carried == () and s.time < first.time
    assert t.tick().read_at("vmstat") == s.time  # and the cadence starts again from there


def test_ticks_give_what_full_samples_give_when_nothing_changed(tmp_path):
    t = Tree(tmp_path)
    full = t.probe.sample()
    for _ in range(20):
        s = t.tick()
        assert dataclasses.replace(s, time=full.time, cpu_busy_percent=None) == \
            dataclasses.replace(full, cpu_busy_percent=None)


def test_a_multi_page_kernel_file_is_read_past_its_first_page():
    # seq_files of many records hand out about a page per read; only ONE_RECORD files end at a short read
    if not os.path.exists("/proc/kallsyms"):
        pytest.skip("no /proc/kallsyms in this kernel")
    text = LocalFiles("/proc").read(["proc/kallsyms"])["proc/kallsyms"]
    assert text is not None and len(text) > 3 * 4096
    from monitor.kernel.procfs import _one_record
    assert _one_record("proc/meminfo") and _one_record(REPORTING_ORDER) and not _one_record("proc/vmstat")
    assert not _one_record("proc/buddyinfo") and not _one_record("sys/fs/cgroup/cgroup.procs")


REPORTING_ORDER = "sys/module/page_reporting/parameters/page_reporting_order"
