"""Host probes against real subprocesses: fake Windows tools on PATH, real psutil processes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from helpers import FAKEBIN, tree
from monitor.config.schema import Config, HostConfig
from monitor.probes.probeset import build, build_host_probe
from monitor.probes.host import ChainProbe, EstimateProbe, ProcessProbe, choose_vm, select_vm_process
from monitor.probes.interop import PowerShellProbe, TasklistProbe, find_windows_tool, parse_tasklist_csv
from monitor.kernel.procfs import LocalFiles
from monitor.sample import Environment


@pytest.fixture
def fake_windows(monkeypatch, tmp_path):
    """Fake powershell.exe/tasklist.exe first on PATH; returns a setter for the mode and the spawn log."""
    log = tmp_path / "spawns.log"
    monkeypatch.setenv("PATH", f"{FAKEBIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_WINDOWS_LOG", str(log))

    def set_mode(mode: str) -> Path:
        monkeypatch.setenv("FAKE_WINDOWS_MODE", mode)
        return log
    set_mode("normal")
    return set_mode


def spawns(log: Path, tool: str) -> int:
    return sum(1 for line in log.read_text().splitlines() if line.startswith(tool)) if log.exists() else 0


# ------------------------------------------------------------- PowerShell


def powershell_samples(n: int = 1) -> list:
    """``n`` samples from one PowerShell session (the fake on PATH), closed after."""
    probe = PowerShellProbe(find_windows_tool("powershell.exe"), timeout=5)
    try:
        return [probe.sample(None) for _ in range(n)]
    finally:
        probe.close()


def test_powershell_stays_alive_across_samples(fake_windows):
    log = fake_windows("normal")
    samples = powershell_samples(5)
    assert [s.bytes for s in samples] == [7812345856] * 5  # the private working set
    assert all(s.source == "interop" and not s.estimated for s in samples)
    assert "vmmemWSL pid 15244" in samples[0].detail and "private working set" in samples[0].detail
    assert samples[0].host_total == 34187145216
    assert spawns(log, "powershell.exe") == 1


def test_powershell_prefers_vmmemwsl_over_another_vm(fake_windows):
    fake_windows("sandbox")
    sample, = powershell_samples()
    assert sample.bytes == 7812345856 and "ignored 1 plain vmmem" in sample.detail


def test_powershell_on_an_old_build_takes_plain_vmmem_working_set(fake_windows):
    fake_windows("old")
    sample, = powershell_samples()
    assert sample.bytes == 5318656000 and "working set" in sample.detail and "older Windows" in sample.detail


def test_powershell_no_vm_running(fake_windows):
    fake_windows("novm")
    sample, = powershell_samples()
    assert sample.bytes is None and "is the WSL VM running" in sample.error
    assert sample.host_available == 12884901888  # Windows' own memory is known without a VM


def test_powershell_gives_windows_available_memory_in_the_same_round_trip(fake_windows):
    log = fake_windows("normal")
    samples = powershell_samples(3)
    assert [(s.host_available, s.host_total) for s in samples] == [(12884901888, 34187145216)] * 3
    assert spawns(log, "powershell.exe") == 1  # the same session that measures the VM


@pytest.mark.parametrize("lines, available", [
    (["VMAVAIL\t12884901888"], 12884901888), (["VMAVAIL\t0"], None), (["VMAVAIL\t"], None),
    (["VMAVAIL\tabc"], None), ([], None),
])
def test_parse_available(lines, available):
    from monitor.probes.interop import parse_available
    assert parse_available(lines) == available


@pytest.mark.parametrize("mode, message", [("hang", "no answer within 1s"), ("babble", "babbled"),
                                           ("garbage", "answered garbage"), ("slow", "no answer within 1s")])
def test_powershell_survives_hangs_and_garbage(fake_windows, mode, message):
    log = fake_windows(mode)
    probe = PowerShellProbe(find_windows_tool("powershell.exe"), timeout=1, retry_after=60, first_timeout=1)
    try:
        first = probe.sample(None)
        second = probe.sample(None)  # within retry_after: no new spawn, no new wait (speed: bench/)
    finally:
        probe.close()
    assert first.bytes is None and message in first.error  # the 1 s limit named: it was not waited past
    assert second.bytes is None and "retrying later" in second.error
    assert spawns(log, "powershell.exe") == 1
    assert not left_running(log, "powershell.exe"), "a fake PowerShell was left running"


def left_running(log: Path, tool: str) -> list:
    """This test's own fakes still alive: their environment names this test's spawn log (another suite's
    fakes, running beside this one, are not this test's business)."""
    alive = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(tool in c for c in (proc.info["cmdline"] or [])) and \
                    proc.environ().get("FAKE_WINDOWS_LOG") == str(log):
                alive.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return alive


def test_powershell_recovers_after_retry_period(fake_windows):
    log = fake_windows("hang")
    now = [1000.0]
    probe = PowerShellProbe(find_windows_tool("powershell.exe"), timeout=1, retry_after=60, clock=lambda: now[0],
                            first_timeout=1)
    try:
        assert probe.sample(None).bytes is None
        fake_windows("normal")
        now[0] += 61
        assert probe.sample(None).bytes == 7812345856
    finally:
        probe.close()
    assert spawns(log, "powershell.exe") == 2


# ------------------------------------------------------------- tasklist


@pytest.mark.parametrize("mode, expected", [
    ("normal", 7689168 * 1024), ("de", 7689168 * 1024), ("fr", 7689168 * 1024), ("sandbox", 7689168 * 1024),
    ("old", 5193984 * 1024),
])
def test_tasklist_locales_and_vm_choice(fake_windows, mode, expected):
    fake_windows(mode)
    sample = TasklistProbe(find_windows_tool("tasklist.exe"), timeout=5).sample(None)
    assert sample.bytes == expected, sample.error


@pytest.mark.parametrize("mode, message", [("hang", "no answer within 1s"), ("garbage", "answered garbage"),
                                           ("novm", "is the WSL VM running"),
                                           ("error", "tasklist.exe exited with 1: ERROR: The RPC server is unavailable.")])
def test_tasklist_failures(fake_windows, mode, message):
    fake_windows(mode)
    started = time.monotonic()
    sample = TasklistProbe(find_windows_tool("tasklist.exe"), timeout=1).sample(None)
    assert time.monotonic() - started < 3
    assert sample.bytes is None and message in sample.error


def test_tasklist_argument_vector(fake_windows):
    log = fake_windows("normal")
    TasklistProbe(find_windows_tool("tasklist.exe"), timeout=5).sample(None)
    assert log.read_text().split(" ", 2)[2].strip() == "/fo csv /nh /fi IMAGENAME eq vmmem*"


@pytest.mark.parametrize("text, rows", [
    ('"vmmemWSL","15244","Services","0","3,937,576 K"', [("vmmemWSL", 15244, 3937576 * 1024)]),
    ('"vmmemWSL","15244","Services","0","3.937.576 K"', [("vmmemWSL", 15244, 3937576 * 1024)]),
    ('"vmmemWSL","15244","Services","0","3\u202f937\u202f576 Ko"', [("vmmemWSL", 15244, 3937576 * 1024)]),
    ("INFO: No tasks are running which match the specified criteria.", []),
    ('"a","b","c","d","e"', []),
    ("", []),
])
def test_parse_tasklist(text, rows):
    assert parse_tasklist_csv(text) == rows


# ------------------------------------------------------------- the chain in auto mode


def test_auto_in_wsl2_falls_back_from_hung_powershell_to_tasklist(fake_windows, monkeypatch):
    fake_windows("normal")
    probe = build_host_probe(Config(host=HostConfig(timeout=1)), Environment("wsl2", "Ubuntu"))
    try:
        assert probe.sample(None).detail.endswith("(PowerShell)")
    finally:
        probe.close()
    monkeypatch.setenv("FAKE_POWERSHELL_MODE", "hang")  # PowerShell hangs, tasklist still answers
    probe = build_host_probe(Config(host=HostConfig(timeout=1)), Environment("wsl2", "Ubuntu"))
    try:
        sample = probe.sample(None)
    finally:
        probe.close()
    assert not sample.estimated and sample.bytes is not None and "tasklist" in sample.detail, sample
    assert sample.metric == "working_set"  # not PowerShell's private set: labelled (issue 27)
    assert "powershell.exe" in (sample.error or "")  # and it says why it is not PowerShell's figure


def test_auto_in_wsl2_estimates_when_both_tools_hang(fake_windows):
    fake_windows("hang")  # both tools hang: the estimate answers, and says why
    files = LocalFiles(tree("wsl2-ubuntu"))
    from monitor.probes.guest import GuestProbe
    guest = GuestProbe(files).sample()
    probe = build_host_probe(Config(host=HostConfig(timeout=1)), Environment("wsl2", "Ubuntu"))
    try:
        sample = probe.sample(guest)
    finally:
        probe.close()
    assert sample.estimated and sample.bytes is not None
    # a fresh PowerShell that has not answered yet is "starting" (its first answer may take 15 s)
    assert "interop: powershell.exe starting" in sample.error and "tasklist: tasklist.exe gave no answer" in sample.error
    assert sample.starting


def test_status_in_a_recorded_wsl2_tree_uses_interop(fake_windows):
    fake_windows("normal")
    from helpers import run_cli
    import json
    result = run_cli("status", "--json", "--proc-root", str(tree("wsl2-ubuntu")), "--cpu-window", "0",
                     env={"PATH": os.environ["PATH"], "FAKE_WINDOWS_MODE": "normal", "WSL_DISTRO_NAME": "Ubuntu"})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["environment"] == {"kind": "wsl2", "distro": "Ubuntu", "kernel_release":
                                   "5.15.153.1-microsoft-standard-WSL2", "why": data["environment"]["why"]}
    assert data["host"]["bytes"] == 7812345856 and data["host"]["source"] == "interop"
    assert data["host"]["estimated"] is False and data["host"]["metric"] == "private_working_set"
    assert (data["host"]["available_bytes"], data["host"]["total_bytes"]) == (12884901888, 34187145216)


@pytest.mark.parametrize("powershell, metric, words", [
    ("normal", "private_working_set", "metric: private working set (what Task Manager shows)"),
    ("hang", "working_set", "metric: whole working set (includes shared pages: can be higher than Task Manager)"),
])
def test_status_says_which_host_metric(fake_windows, tmp_path, powershell, metric, words):
    """PowerShell's private set, or (PowerShell hung) tasklist's whole working set: status says which."""
    from helpers import run_cli
    import json
    env = {"PATH": os.environ["PATH"], "FAKE_WINDOWS_MODE": "normal", "FAKE_POWERSHELL_MODE": powershell,
           "WSL_DISTRO_NAME": "Ubuntu"}
    config = tmp_path / "config.toml"
    config.write_text("[host]\ntimeout = 1\n")
    args = ("--proc-root", str(tree("wsl2-ubuntu")), "--cpu-window", "0", "--config", str(config))
    data = json.loads(run_cli("status", "--json", *args, env=env).stdout)
    assert data["host"]["metric"] == metric and data["host"]["bytes"] is not None, data["host"]
    text = run_cli("status", *args, env=env).stdout
    host_lines = text.split("guest memory")[0]
    assert words in host_lines, text
    if powershell == "normal":
        assert re.search(r"host available +12\.0 GiB of 31\.8 GiB  \(the host's own", host_lines), text


# ------------------------------------------------------------- psutil on real processes


@pytest.fixture
def named_processes(tmp_path):
    """Real processes whose names are vmmemWSL / vmmem (a copy of sleep under that name)."""
    started = []

    def start(name: str) -> psutil.Process:
        exe = tmp_path / name
        if not exe.exists():
            shutil.copy(shutil.which("sleep"), exe)
        proc = subprocess.Popen([str(exe), "300"])
        started.append(proc)
        return psutil.Process(proc.pid)
    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def test_select_prefers_vmmemwsl_among_real_processes(named_processes):
    other_vm = named_processes("vmmem")
    wsl_vm = named_processes("vmmemWSL")
    ours = [p for p in psutil.process_iter() if p.pid in (other_vm.pid, wsl_vm.pid, os.getpid())]
    chosen, why = select_vm_process(ours)
    assert chosen.pid == wsl_vm.pid and "ignored 1 plain vmmem" in why


def test_select_accepts_plain_vmmem_only_alone(named_processes):
    old_vm = named_processes("vmmem")
    chosen, why = select_vm_process([p for p in psutil.process_iter() if p.pid in (old_vm.pid, os.getpid())])
    assert chosen.pid == old_vm.pid and "no vmmemWSL" in why
    assert select_vm_process([psutil.Process()])[0] is None


def test_choose_vm_never_sums():
    chosen, why = choose_vm([("vmmemWSL", 5), ("VMMEMWSL.EXE", 9), ("vmmem", 100)], size=lambda n: n)
    assert chosen == 9 and "2 candidates, took the largest" in why


# ------------------------------------------------------------- process source (Linux host)


def test_process_probe_follows_a_real_child():
    code = "import sys, time; b = bytearray(200 * 1024 * 1024); sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"
        sample = ProcessProbe(str(child.pid)).sample(None)
        status = Path(f"/proc/{child.pid}/status").read_text()
        rss_kib = int(next(l for l in status.splitlines() if l.startswith("VmRSS:")).split()[1])
        assert sample.bytes is not None and abs(sample.bytes - rss_kib * 1024) < 4 * 1024 * 1024
        assert sample.bytes > 200 * 1024 * 1024 and sample.source == "process" and not sample.estimated
        assert sample.metric == "rss"
        by_name = ProcessProbe(Path(sys.executable).name).sample(None)
        assert by_name.bytes is not None and by_name.bytes >= sample.bytes  # the largest of that name
    finally:
        child.kill()
        child.wait()
    gone = ProcessProbe(str(child.pid)).sample(None)
    assert gone.bytes is None and "is the VM running" in gone.error


def test_estimate_probe_labels_itself():
    files = LocalFiles(tree("wsl2-ubuntu"))
    from monitor.probes.guest import GuestProbe
    guest = GuestProbe(files).sample()
    sample = EstimateProbe().sample(guest)
    assert sample.estimated and sample.source == "estimate" and sample.metric == "estimate"
    assert sample.bytes == guest.total - guest.free + guest.fragmented_free


def test_wsl1_has_no_vm():
    probes = build(Config(), environ={}, files=LocalFiles(tree("wsl1")))
    sample = probes.sample()
    assert probes.environment.kind == "wsl1"
    assert sample.host.bytes is None and "without a VM" in sample.host.error


# ------------------------------------------------------------- issue 17 / 12: first contact with Windows


def test_a_powershell_that_cannot_be_executed_falls_through_the_chain(tmp_path, fake_windows):
    # systemd-binfmt replacing WSL's interop entry makes every .exe fail with ENOEXEC
    # (microsoft/WSL#8843); a file without the run bit fails the same way, with EACCES.
    denied = tmp_path / "powershell.exe"
    denied.write_text("#!/bin/sh\n")
    garbage = tmp_path / "tasklist.exe"
    garbage.write_bytes(b"MZ\x90\x00 not an ELF")  # the kernel refuses it: ENOEXEC
    garbage.chmod(0o755)
    guest = __import__("monitor.probes.guest", fromlist=["GuestProbe"]).GuestProbe(LocalFiles(tree("wsl2-ubuntu"))).sample()
    chain = ChainProbe([PowerShellProbe(str(denied), timeout=1), TasklistProbe(str(garbage), timeout=1),
                        EstimateProbe("interop unreachable")])
    try:
        first = chain.sample(guest)
        second = chain.sample(guest)
    finally:
        chain.close()
    assert first.estimated and first.bytes is not None
    assert "Windows interop stopped working" in first.error and "estimate" in first.error
    assert second.estimated and second.error == first.error  # latched: one clear state, not a new error


def test_interop_only_with_interop_dead_says_unknown_every_sample_and_never_raises(tmp_path, caplog):
    """[host] source = "interop": no estimate in the chain. Issue 28: the second sample raised AssertionError
    (every tool skipped while interop is latched down) and the log said "estimate"."""
    denied = tmp_path / "powershell.exe"
    denied.write_text("#!/bin/sh\n")
    garbage = tmp_path / "tasklist.exe"
    garbage.write_bytes(b"MZ\x90\x00 not an ELF")
    garbage.chmod(0o755)
    chain = ChainProbe([PowerShellProbe(str(denied), timeout=1), TasklistProbe(str(garbage), timeout=1)])
    try:
        samples = [chain.sample(None) for _ in range(3)]
    finally:
        chain.close()
    assert all(s.bytes is None and not s.estimated for s in samples)
    assert all(s.error.startswith("Windows interop stopped working; host figure is unknown") for s in samples)
    assert [r.message for r in caplog.records if "stopped working" in r.message] == [samples[0].error]


def test_exec_errors_are_interop_errors_in_words(tmp_path):
    denied = tmp_path / "powershell.exe"
    denied.write_text("#!/bin/sh\n")
    sample = PowerShellProbe(str(denied), timeout=1).sample(None)
    assert sample.bytes is None and sample.error.startswith("cannot run powershell.exe: Permission denied")


def test_a_probe_that_raises_leaves_the_next_one_a_chance():
    class Broken:
        name, unreachable, cheap = "broken", False, False

        def sample(self, guest):
            raise RuntimeError("boom")

        def close(self):
            pass
    guest = __import__("monitor.probes.guest", fromlist=["GuestProbe"]).GuestProbe(LocalFiles(tree("wsl2-ubuntu"))).sample()
    sample = ChainProbe([Broken(), EstimateProbe()]).sample(guest)
    assert sample.bytes is not None and "broken: RuntimeError: boom" in sample.error


def test_a_cold_powershell_is_starting_not_killed(fake_windows, monkeypatch):
    log = fake_windows("normal")
    monkeypatch.setenv("FAKE_WINDOWS_FIRST_DELAY", "1.5")
    probe = PowerShellProbe(find_windows_tool("powershell.exe"), timeout=0.5, first_timeout=10)
    try:
        first = probe.sample(None)
        time.sleep(1.2)
        second = probe.sample(None)
    finally:
        probe.close()
    assert first.bytes is None and first.starting and "starting" in first.error
    assert second.bytes == 7812345856 and not second.starting
    assert spawns(log, "powershell.exe") == 1


class _Proc:
    """A psutil process as vmmem answers it on Windows: the address-space walk fails."""

    pid = 4242

    def __init__(self, exc):
        self.exc = exc

    def memory_full_info(self):
        raise self.exc

    def memory_info(self):
        return type("mem", (), {"rss": 100, "wset": 7 << 30})()


class _PosixProc(_Proc):
    """The same refusal where psutil has no working set (not Windows): its memory_info has rss only."""

    def memory_info(self):
        return type("mem", (), {"rss": 3 << 30})()


def test_psutil_fallback_without_a_working_set_is_rss():
    from monitor.probes.host import private_working_set
    value, what, metric = private_working_set(_PosixProc(psutil.AccessDenied(4242)))
    assert (value, metric) == (3 << 30, "rss") and what.startswith("RSS (private set denied")


# ------------------------------------------------------------- which host metric (issue 27)


@pytest.mark.parametrize("mode, value, metric", [
    ("normal", 7812345856, "private_working_set"),  # PowerShell's "Working Set - Private" counter
    ("sandbox", 7812345856, "private_working_set"),
    ("old", 5318656000, "working_set"),  # no private set in the answer: the whole working set, labelled
])
def test_powershell_labels_its_metric(fake_windows, mode, value, metric):
    fake_windows(mode)
    sample, = powershell_samples()
    assert (sample.bytes, sample.metric) == (value, metric), sample


@pytest.mark.parametrize("mode", ["normal", "de", "fr", "old"])
def test_tasklist_is_always_the_whole_working_set(fake_windows, mode):
    fake_windows(mode)
    sample = TasklistProbe(find_windows_tool("tasklist.exe"), timeout=5).sample(None)
    assert sample.bytes is not None and sample.metric == "working_set"


@pytest.mark.parametrize("mode", ["novm", "error"])
def test_no_figure_has_no_metric(fake_windows, mode):
    fake_windows(mode)
    sample = TasklistProbe(find_windows_tool("tasklist.exe"), timeout=5).sample(None)
    assert sample.bytes is None and sample.metric is None


@pytest.mark.parametrize("exc, words", [
    (psutil.AccessDenied(4242), "denied"),
    (RuntimeError("NtQueryVirtualMemory failed"), "RuntimeError: NtQueryVirtualMemory failed"),
    (OSError(22, "Invalid argument"), "OSError"),
])
def test_psutil_errors_on_vmmem_fall_back_to_the_working_set(exc, words):
    from monitor.probes.host import private_working_set
    value, what, metric = private_working_set(_Proc(exc))
    assert value == 7 << 30 and what.startswith("working set (private set") and words in what
    assert metric == "working_set"  # labelled: the whole working set, not the private set Task Manager shows


def test_status_says_the_host_figure_is_starting(fake_windows, monkeypatch):
    from monitor.cli.report import host_line, host_json
    fake_windows("normal")
    monkeypatch.setenv("FAKE_WINDOWS_FIRST_DELAY", "3")
    chain = ChainProbe([PowerShellProbe(find_windows_tool("powershell.exe"), timeout=0.3, first_timeout=10)])
    try:
        sample = chain.sample(None)
    finally:
        chain.close()
    assert sample.starting and host_line(sample).startswith("starting (interop: ")
    assert host_json(sample)["starting"] is True


def test_a_powershell_error_on_command_stdin_is_plain_text_and_the_session_reads_on(fake_windows):
    """Given `-Command -`, PowerShell writes an error as plain text on stderr and goes on reading lines
    (PowerShell#21808): the query gets its end marker, the session lives, the next query is answered."""
    from monitor.probes.interop import PowerShellSession, ps_query
    fake_windows("normal")
    session = PowerShellSession(find_windows_tool("powershell.exe"), timeout=5)
    try:
        assert session.query("Get-Nothing; '__END_{nonce}__'") == []
        assert session.running
        assert any(line.startswith("VMPROC\tvmmemWSL") for line in session.query(ps_query()))
        session._errors.seek(0)
        said = session._errors.read()
    finally:
        session.close()
    assert said.startswith(b"Get-Nothing : The term 'Get-Nothing' is not recognized") and b"CLIXML" not in said


@pytest.mark.parametrize("how", ["encoded", "stdin"])
def test_powershell_errors_read_as_one_line_clixml_or_not(fake_windows, how):
    """CLIXML on stderr only with -EncodedCommand (as the real one); either way one line of words."""
    import base64

    from monitor.probes.interop import stderr_line
    fake_windows("normal")
    exe = find_windows_tool("powershell.exe")
    if how == "encoded":
        command = base64.b64encode("Get-Nothing".encode("utf-16-le")).decode()
        done = subprocess.run([exe, "-NoProfile", "-EncodedCommand", command], capture_output=True, timeout=30)
        assert done.returncode == 1 and done.stderr.startswith(b"#< CLIXML")
    else:
        done = subprocess.run([exe, "-NoLogo", "-NoProfile", "-NonInteractive", "-Command", "-"],
                              input=b"Get-Nothing\r\n", capture_output=True, timeout=30)
        assert done.returncode == 0 and not done.stderr.startswith(b"#< CLIXML")
    words = ("Get-Nothing : The term 'Get-Nothing' is not recognized as the name of a cmdlet, function, script "
             "file, or operable program." + ("" if how == "encoded" else " Check the spelling of the name, or if a "
                                             "path was included, verify that the path is correct and try again."))
    assert stderr_line(done.stderr) == words[:200]  # one line: no "At line:1 char:1", no CategoryInfo


@pytest.mark.parametrize("mode, unreachable", [("dotnet", False), ("interop-down", True)])
def test_only_wsls_own_interop_failure_reads_as_windows_unreachable(fake_windows, mode, unreachable):
    """A .NET ``System.Runtime.InteropServices`` exception is PowerShell's trouble, not WSL's interop (issue 27)."""
    from monitor.probes.interop import InteropError, PowerShellSession
    fake_windows(mode)
    session = PowerShellSession(find_windows_tool("powershell.exe"), timeout=5)
    try:
        with pytest.raises(InteropError) as info:
            session.query("Get-Process -Name vmmemWSL,vmmem; '__END_{nonce}__'")
    finally:
        session.close()
    assert info.value.unreachable is unreachable, str(info.value)
    assert ("InteropServices" if mode == "dotnet" else "UtilConnectVsock") in str(info.value)


def test_decode_clixml_keeps_the_message_and_drops_the_position():
    from monitor.kernel.windows import decode_clixml
    text = ('#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
            '<Obj S="progress" RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject</T></TN></Obj>'
            '<S S="Error">Access is denied_x000D__x000A_</S><S S="Error">At line:1 char:1_x000D__x000A_</S>'
            '<S S="Error">+ Get-Thing_x000D__x000A_</S></Objs>')
    assert decode_clixml(text) == "Access is denied"
    assert decode_clixml("plain words\r\nmore") == "plain words"


def test_interop_dying_and_coming_back_is_one_event_each(tmp_path, fake_windows):
    """Both Windows tools unreachable: one 'stopped working' event in the history, however many
    samples follow; when they answer again (tried every RECHECK_DOWN s): one 'answers again'."""
    from monitor.notify import Notifier
    from monitor.probes.probeset import Probes
    from monitor.probes.guest import GuestProbe
    from monitor.probes.host import RECHECK_DOWN
    from monitor.history.store import Store
    from monitor.watch.wiring import Wiring

    ps, tl = tmp_path / "powershell.exe", tmp_path / "tasklist.exe"
    ps.write_text("#!/bin/sh\n")  # no run bit: EACCES, as when WSL's interop registration is gone
    tl.write_bytes(b"MZ\x90\x00 not an ELF")  # ENOEXEC
    tl.chmod(0o755)
    now = [1_800_000_000.0]
    files = LocalFiles(tree("wsl2-ubuntu"))
    chain = ChainProbe([PowerShellProbe(str(ps), timeout=2), TasklistProbe(str(tl), timeout=2),
                        EstimateProbe("interop unreachable")], clock=lambda: now[0])
    probes = Probes(files, Environment("wsl2", "Ubuntu", "6.6.87.2-microsoft-standard-WSL2", "test"),
                    GuestProbe(files), chain)
    recorder = Wiring(Config(), tmp_path / "h.db", environ={},
                      probes_factory=lambda c, e: probes).recorder(Notifier([]), clock=lambda: now[0])
    try:
        recorder.tick()  # the first host figure comes with the first guest sample
        for _ in range(3):
            now[0] += 10
            recorder.sample_host()
        down = [e for e in Store(tmp_path / "h.db").events(kinds=["watch"]) if e.data.get("interop")]
        assert [e.data["interop"] for e in down] == ["down"]
        assert down[0].message.startswith("Windows interop stopped working; host figure is an estimate")
        assert recorder.last_host.estimated and recorder.last_host.bytes is not None

        tl.write_text(f'#!/bin/sh\nexec "{FAKEBIN / "tasklist.exe"}" "$@"\n')  # interop is back
        recorder.sample_host()  # not tried yet: still latched
        now[0] += RECHECK_DOWN
        recorder.sample_host()
        recorder.sample_host()
    finally:
        recorder.close()
    events = [e for e in Store(tmp_path / "h.db").events(kinds=["watch"]) if e.data.get("interop")]
    assert [e.data["interop"] for e in events] == ["down", "up"]
    assert "Windows interop answers again after 10m30s" in events[1].message
    assert not recorder.last_host.estimated and "tasklist" in recorder.last_host.detail, recorder.last_host
