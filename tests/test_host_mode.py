"""Host mode: guest files through a command prefix; checked here with a local channel (`env`)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from helpers import FAKEBIN, run_cli
from monitor.kernel.environment import detect_environment
from monitor.config.schema import Config, GuestConfig, HostConfig
from monitor.errors import UserError
from monitor.probes.probeset import build
from monitor.kernel.windows import validate_prefix
from monitor.probes.execfiles import ExecFiles
from monitor.kernel.procfs import LocalFiles
from monitor.history.store import Store


def test_one_call_reads_every_file_exactly(tmp_path):
    files = ExecFiles(["env"], timeout=10)  # `env CMD...` runs CMD here: a channel into "this" machine
    paths = ["proc/meminfo", "proc/vmstat", "proc/buddyinfo", "proc/sys/kernel/osrelease", "proc/nonexistent",
             "sys/module/page_reporting/parameters/page_reporting_order"]
    through_exec = files.read(paths)
    direct = LocalFiles("/proc").read(paths)
    assert through_exec["proc/nonexistent"] is None
    assert through_exec["proc/sys/kernel/osrelease"] == direct["proc/sys/kernel/osrelease"]
    assert through_exec["sys/module/page_reporting/parameters/page_reporting_order"] == \
        direct["sys/module/page_reporting/parameters/page_reporting_order"]
    for name in ("proc/meminfo", "proc/vmstat"):
        # live files move between two reads; their shape (keys, line count) must not
        assert [l.split()[0] for l in through_exec[name].splitlines()] == \
            [l.split()[0] for l in direct[name].splitlines()]
    assert through_exec["proc/meminfo"].endswith("kB\n")


def test_a_single_small_file_comes_back_byte_for_byte():
    files = ExecFiles(["env"], timeout=10)
    out = files.read(["proc/sys/kernel/hostname"])
    assert out["proc/sys/kernel/hostname"] == open("/proc/sys/kernel/hostname").read()


def test_unreachable_guest_reads_as_missing_and_fails_writes():
    files = ExecFiles(["/nonexistent/wsl.exe"], timeout=2)
    assert files.read(["proc/meminfo"]) == {"proc/meminfo": None}
    assert not files.exists("proc/sys/vm/drop_caches")
    with pytest.raises(OSError):
        files.write("proc/sys/vm/compact_memory", "1")


def test_hanging_channel_times_out():
    files = ExecFiles(["sh", "-c", "sleep 30", "x"], timeout=0.5)
    assert files.read(["proc/meminfo"]) == {"proc/meminfo": None}


# How long a call may take before the channel gives it up. The verdicts below rest on the fake's call
# count alone: its lost call never answers (however long the wait), its other calls answer at once,
# so a timeout far beyond a shell's start on a loaded machine keeps them from depending on timing.
# Each test pays it once, for its lost call.
LOST_AFTER = 5.0


def lossy_channel(tmp_path):
    """A channel that never answers its first call (a lost request), then answers each call at once,
    without running it (a real `sync` flushes the whole machine: seconds, beside a build). Each call's
    command is logged before anything else, so the log is every call made, in order."""
    script = tmp_path / "lossy-exec"
    script.write_text('#!/bin/sh\necho "$*" >> "$0.calls"\n'
                      '[ "$(wc -l < "$0.calls")" -eq 1 ] && exec sleep 3600\nexit 0\n')
    script.chmod(0o755)
    calls = tmp_path / "lossy-exec.calls"
    return ExecFiles([str(script)], timeout=LOST_AFTER), lambda: calls.read_text().splitlines()


def test_a_lost_call_that_is_safe_to_repeat_is_tried_once_more(tmp_path):
    files, calls = lossy_channel(tmp_path)
    assert files.exists("proc/meminfo")  # lost, then answered
    assert calls() == ["test -w /proc/meminfo"] * 2
    files.sync()
    assert calls() == ["test -w /proc/meminfo"] * 2 + ["sync"]  # answered the first time: not repeated


def test_a_lost_memory_reclaim_step_is_not_repeated(tmp_path):
    files, calls = lossy_channel(tmp_path)
    with pytest.raises(OSError) as err:
        files.write("sys/fs/cgroup/memory.reclaim", "268435456")  # repeating it would free twice
    assert err.value.errno == errno.ETIMEDOUT and f"no answer within {LOST_AFTER:g}s" in str(err.value)
    (call,) = calls()
    assert call.endswith(" 268435456 /sys/fs/cgroup/memory.reclaim")


def test_a_sample_read_is_not_repeated(tmp_path):
    files, calls = lossy_channel(tmp_path)
    assert files.read(["proc/meminfo"]) == {"proc/meminfo": None}  # the next sample comes anyway
    (call,) = calls()
    assert call.endswith(" /proc/meminfo")


@pytest.mark.skipif(os.geteuid() != 0, reason="writes /proc/sys/vm as root")
def test_writes_go_through_the_channel():
    files = ExecFiles(["env"], timeout=30)
    files.write("proc/sys/vm/compact_memory", "1")
    assert files.exists("proc/sys/vm/drop_caches")
    with pytest.raises(OSError) as err:
        files.write("proc/sys/vm/drop_caches", "0")  # the kernel refuses it: EINVAL, named by dd
    assert err.value.errno == errno.EINVAL


def test_paths_are_checked():
    files = ExecFiles(["env"], timeout=5)
    for bad in ("etc/passwd", "proc/../etc/passwd"):
        with pytest.raises(ValueError):
            files.read([bad])


@pytest.mark.parametrize("prefix, ok", [
    (["wsl.exe", "-d", "Ubuntu-22.04", "-u", "root", "-e"], True),
    (["C:\\Windows\\System32\\wsl.exe", "--distribution", "Debian", "-e"], True),
    (["wsl.exe", "-d", "Ubuntu; rm -rf /", "-e"], False),
    (["wsl.exe", "-d", "$(reboot)", "-e"], False),
    (["wsl.exe", "-d", "", "-e"], False),
    (["wsl.exe", "-d", "x" * 65, "-e"], False),
    (["ssh", "vm", "--"], True),  # other channels carry their own rules
])
def test_wsl_distro_names_are_validated(prefix, ok):
    if ok:
        validate_prefix(prefix)
    else:
        with pytest.raises(UserError, match="expected a plain name"):
            validate_prefix(prefix)


def test_host_mode_sample_through_the_channel_with_a_real_vm_process(tmp_path):
    """The 'VM' is a real child process; the channel is `env`; the guest is this machine."""
    child = subprocess.Popen(["sleep", "60"])
    try:
        config = Config(guest=GuestConfig(exec=["env"]), host=HostConfig(source="process", process=str(child.pid)))
        probes = build(config)
        sample = probes.sample()
        assert probes.host_mode and sample.host.source == "process" and sample.host.bytes > 0
        assert sample.guest.total == \
            build(Config()).sample_guest().total
        # the guest is this machine, seen through the channel: the same kind its own detection finds
        assert probes.environment.kind == detect_environment(LocalFiles("/proc"), {}).kind
    finally:
        child.kill()
        child.wait()
    stopped = build(config).sample()
    assert stopped.host.bytes is None and stopped.guest.total is None
    assert "VM not running" in stopped.guest.warnings[0] and "never starts it" in stopped.guest.warnings[0]


def test_host_mode_never_reaches_into_a_stopped_vm(tmp_path):
    """With the VM process absent, not one command goes through the channel (wsl.exe would boot the VM)."""
    log = tmp_path / "calls"
    spy = tmp_path / "wsl.exe"
    spy.write_text(f"#!/bin/sh\necho called >> {log}\nexec \"$@\"\n")
    spy.chmod(0o755)
    config_file = tmp_path / "c.toml"
    config_file.write_text(f'[guest]\nexec = ["{spy}", "-d", "Ubuntu", "-u", "root", "-e"]\n'
                           '[host]\nsource = "process"\nprocess = "no-such-vm-process"\n')
    result = run_cli("status", "--json", "--config", str(config_file), "--cpu-window", "0",
                     "--db", str(tmp_path / "h.db"))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["host"]["bytes"] is None and data["guest"]["total_bytes"] is None
    assert not log.exists()


def test_wsl_exe_messages_are_readable_whatever_their_encoding():
    # wsl.exe writes its own errors on stdout and exits -1 (255 here), in UTF-16LE with "\r\r\n" unless
    # WSL_UTF8=1; the channel sets it, and decodes defensively (the fake honours the variable as the real one does).
    files = ExecFiles([str(FAKEBIN / "wsl.exe"), "-d", "Nope", "-u", "root", "-e"], timeout=5)
    with pytest.raises(OSError) as info:
        files.write("proc/sys/vm/drop_caches", "1")
    assert "Error code: Wsl/Service/WSL_E_DISTRO_NOT_FOUND" in str(info.value) and "\x00" not in str(info.value)
    from monitor.kernel.windows import decode_windows_text
    assert decode_windows_text("Error: Wsl\r\n".encode("utf-16-le")) == "Error: Wsl\r\n"


@pytest.mark.parametrize("utf8", ["1", ""])
def test_wsl_exe_own_failure_on_stdout_is_the_reason_in_either_encoding(utf8, monkeypatch, caplog):
    """Issue 27: the reason was read from stderr only, where wsl.exe writes nothing."""
    from monitor.probes import execfiles
    monkeypatch.setitem(execfiles.CHANNEL_ENV, "WSL_UTF8", utf8)  # as an older wsl.exe that ignores it
    files = ExecFiles([str(FAKEBIN / "wsl.exe"), "-d", "Nope", "-u", "root", "-e"], timeout=5)
    with pytest.raises(OSError) as info:
        files.write("proc/sys/vm/drop_caches", "1")
    assert str(info.value).endswith("proc/sys/vm/drop_caches: Error code: Wsl/Service/WSL_E_DISTRO_NOT_FOUND")
    with caplog.at_level("WARNING", logger="monitor.probes.execfiles"):
        assert files.read(["proc/meminfo"]) == {"proc/meminfo": None}
    assert "There is no distribution with the supplied name. Error code: Wsl/Service/WSL_E_DISTRO_NOT_FOUND" \
        in caplog.text


GROWS_ON_SIGNAL = """
import signal, sys, time
held = []
def grow(*_):
    block = bytearray(64 * 2**20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    held.append(block)
    open(sys.argv[1] + ".grown", "w").close()
signal.signal(signal.SIGUSR1, grow)
open(sys.argv[1], "w").close()
while True:
    time.sleep(1)
"""


def spy_wsl(tmp_path):
    """A wsl.exe that logs each call and runs the command after -e here."""
    log = tmp_path / "wsl-calls"
    spy = tmp_path / "wsl.exe"
    spy.write_text(f'#!/bin/sh\necho called >> {log}\nwhile [ "$1" != "-e" ]; do shift; done\nshift\nexec "$@"\n')
    spy.chmod(0o755)
    return [str(spy), "-d", "Ubuntu", "-u", "root", "-e"], lambda: len(log.read_text().splitlines()) if log.exists() else 0


@pytest.mark.parametrize("skip", [True, False])
def test_skip_unchanged_leaves_an_idle_vm_alone(tmp_path, skip):
    """[guest] skip_unchanged: no wsl.exe call while the VM's footprint stays put; one as soon as it moves."""
    from monitor.notify import Notifier
    from monitor.probes.guest import MIN_CPU_INTERVAL
    from monitor.units import Size
    from monitor.watch.wiring import Wiring

    ready = tmp_path / "vm-ready"
    vm = subprocess.Popen([sys.executable, "-c", GROWS_ON_SIGNAL, str(ready)])
    try:
        while not ready.exists():
            time.sleep(0.01)
        prefix, calls = spy_wsl(tmp_path)
        config = Config(guest=GuestConfig(exec=prefix, skip_unchanged=skip, unchanged_within=Size(16 * 2**20, text="16MiB")),
                        host=HostConfig(source="process", process=str(vm.pid)))
        recorder = Wiring(config, tmp_path / "h.db", environ={}).recorder(Notifier([]))

        def tick():
            time.sleep(MIN_CPU_INTERVAL)
            before = calls()
            sample = recorder.tick()
            return calls() - before, sample

        first = [tick() for _ in range(3)]
        vm.send_signal(signal.SIGUSR1)
        while not (tmp_path / "vm-ready.grown").exists():
            time.sleep(0.01)
        after = [tick() for _ in range(2)]
        recorder.close()
    finally:
        vm.kill()
        vm.wait()
    made = [n for n, _ in first + after]
    if not skip:
        assert all(n >= 1 for n in made)  # every tick reaches into the guest
        return
    assert made[0] >= 1 and made[1:3] == [0, 0]  # sampled once, then left alone while nothing moves
    assert made[3] >= 1 and made[4] == 0  # 64 MiB more on the host: sampled again, then quiet
    skipped = first[1][1].guest
    assert skipped.total is None and "guest not sampled" in skipped.warnings[0] and "skip_unchanged" in skipped.warnings[0]
    assert after[0][1].guest.total is not None
    rows = Store(tmp_path / "h.db").recent_samples(3600)
    assert len(rows) == 5  # the skipped ticks are in the history too, as unknown guest figures


# ------------------------------------------- SYSTEM_PROCESS_INFORMATION records (issue 27, item 3)


def _record(next_offset: int, pid: int, private: int, wset: int, name_at: int, name: str) -> bytes:
    """One 64-bit SYSTEM_PROCESS_INFORMATION record, laid out as winternl.h/phnt declare it."""
    import struct

    rec = bytearray(256)
    struct.pack_into("<I", rec, 0, next_offset)
    struct.pack_into("<q", rec, 8, private)
    struct.pack_into("<HH", rec, 56, len(name) * 2, len(name) * 2 + 2)
    struct.pack_into("<Q", rec, 64, name_at)
    struct.pack_into("<Q", rec, 80, pid)
    struct.pack_into("<Q", rec, 144, wset)
    return bytes(rec)


def test_system_process_records_are_read_by_their_offsets():
    from monitor.kernel.ntprocess import NtProcess, parse_process_records

    names = {0x1000: "vmmemWSL", 0x2000: "explorer.exe"}
    buffer = (_record(256, 4242, 7_700_000_000, 7_864_320_000, 0x1000, "vmmemWSL")
              + _record(256, 77, 0, 50_000_000, 0x2000, "explorer.exe")  # 0 beside a working set: unfilled
              + _record(0, 0, 0, 0, 0, ""))  # the idle process: no name, nothing held
    procs = parse_process_records(buffer, lambda address, length: names[address][: length // 2])
    assert procs == [NtProcess(4242, "vmmemWSL", 7_864_320_000, 7_700_000_000),
                     NtProcess(77, "explorer.exe", 50_000_000, None),
                     NtProcess(0, "System Idle Process", 0, 0)]


def test_the_system_process_query_is_windows_only():
    import os

    from monitor.kernel.ntprocess import query_processes
    from monitor.probes.host import _system_private_set

    if os.name == "nt":
        pytest.skip("this is Windows: the smoke test under Wine covers the call")
    with pytest.raises(OSError, match="Windows only"):
        query_processes()
    assert _system_private_set(os.getpid()) == (None, "")  # elsewhere psutil's own paths, unchanged
