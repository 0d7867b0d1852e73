"""Reclaim for real on this kernel, gradual on a fake sysfs tree, and the privilege path."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakekernel import FakeKernel
from helpers import as_nobody, needs_nobody, run_cli

from monitor.config.schema import Config, ReclaimConfig
from monitor.history.store import Store
from monitor.kernel.procfs import LocalFiles
from monitor.probes.probeset import build
from monitor.reclaim.reclaimer import (
    ReclaimBusy,
    Reclaimer,
    ReclaimLock,
    Seams,
    gradual_plan,
)

MiB, GiB = 1024**2, 1024**3
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="writing /proc/sys/vm needs root")


def reclaimer_for(kernel: FakeKernel, tmp_path: Path, **cfg) -> Reclaimer:
    """No real waits: the pause after each step returns as soon as the fake kernel applied it."""
    config = Config(reclaim=ReclaimConfig(settle=0.0, **cfg))
    probes = build(config, environ={}, files=LocalFiles(kernel.root / "proc"))
    return Reclaimer(probes.files, probes, config.reclaim, tmp_path / "lock", seams=Seams(sleep=kernel.wait_applied))


@pytest.fixture
def fake_kernel(tmp_path):
    kernels = []

    def make(**kw) -> FakeKernel:
        kernel = FakeKernel(tmp_path / f"tree{len(kernels)}", **kw)
        kernels.append(kernel)
        return kernel
    yield make
    for kernel in kernels:
        kernel.close()


# ------------------------------------------------------------------ gradual on a fake tree


@pytest.mark.parametrize("total, step", [(4 * GiB, 256 * MiB), (16 * GiB, 512 * MiB), (24 * GiB, 768 * MiB),
                                         (64 * GiB, GiB)])
def test_gradual_step_is_memtotal_over_32_clamped(total, step):
    assert gradual_plan(total, ReclaimConfig())[0] == step
    assert gradual_plan(total, ReclaimConfig())[1] == int(total * 0.05)


def test_gradual_reclaims_in_steps_down_to_the_floor(fake_kernel, tmp_path):
    kernel = fake_kernel(cached=8 * GiB, hot=600 * MiB)
    result = reclaimer_for(kernel, tmp_path).run("gradual")
    total = result.before.total
    step, floor = gradual_plan(total, ReclaimConfig())
    assert result.methods_run == ["gradual", "compact"] and result.error is None
    sizes = [int(r.split()[0]) for r in kernel.requests]
    assert all(r.endswith(" swappiness=0") for r in kernel.requests)
    whole = sizes.index(next(s for s in sizes if s != step))
    assert whole >= 1 and sizes[:whole] == [step] * whole  # whole steps while far from the floor ...
    assert sizes[whole:] == sorted(sizes[whole:], reverse=True) and all(0 < s < step for s in sizes[whole:])
    assert abs(result.after.page_cache - floor) < MiB  # ... then smaller ones: stopped at the floor, not below
    data = result.to_json()
    assert data["stop_reason"] == "floor" and data["working_set_bytes"] is None
    assert [s["asked_bytes"] for s in data["gradual_steps"]] == sizes
    assert all(s["refault_bytes"] == 0 for s in data["gradual_steps"])  # the recorded vmstat does not move
    assert kernel.cached >= kernel.hot
    assert result.freed_bytes == result.before.page_cache - result.after.page_cache > 6 * GiB
    assert (kernel.proc / "sys/vm/compact_memory").read_text() == "1"
    assert (kernel.proc / "sys/vm/drop_caches").read_text() == ""  # gradual never drops everything
    assert any("page cache" in s and "->" in s for s in result.steps)


def test_gradual_stops_when_only_the_hot_set_is_left(fake_kernel, tmp_path):
    kernel = fake_kernel(cached=6 * GiB, hot=3 * GiB)
    result = reclaimer_for(kernel, tmp_path).run("gradual")
    assert kernel.cached == 3 * GiB
    assert any("the rest is hot or pinned" in n for n in result.notes)


def test_gradual_falls_back_to_pagecache_without_memory_reclaim(fake_kernel, tmp_path):
    kernel = fake_kernel(cached=2 * GiB, hot=0, with_reclaim=False)
    result = reclaimer_for(kernel, tmp_path).run("gradual")
    assert result.methods_run == ["pagecache", "compact"]
    assert result.notes[0] == "gradual: used pagecache (no memory.reclaim here: no cgroup v2 memory controller)"
    assert (kernel.proc / "sys/vm/drop_caches").read_text() == "1"


def test_auto_prefers_gradual_where_available(fake_kernel, tmp_path):
    kernel = fake_kernel(cached=2 * GiB, hot=0)
    assert reclaimer_for(kernel, tmp_path).run("auto").methods_run == ["gradual", "compact"]
    kernel = fake_kernel(cached=2 * GiB, hot=0, with_reclaim=False)
    assert reclaimer_for(kernel, tmp_path).run("auto", dry_run=True).methods_run == ["pagecache", "compact"]


def test_a_dry_run_says_what_it_will_use_not_what_it_used(fake_kernel, tmp_path):
    kernel = fake_kernel(cached=2 * GiB, hot=0, with_reclaim=False)
    result = run_cli("reclaim", "--dry-run", "--proc-root", str(kernel.proc), "--db", str(tmp_path / "h.db"))
    assert result.returncode == 0, result.stderr
    assert "auto: will use pagecache (no memory.reclaim here: no cgroup v2 memory controller)" in result.stdout
    assert "used pagecache" not in result.stdout and "instead" not in result.stdout


def test_dry_run_writes_nothing(fake_kernel, tmp_path):
    kernel = fake_kernel(cached=8 * GiB, hot=0)
    result = run_cli("reclaim", "--method", "gradual", "--dry-run", "--json", "--proc-root", str(kernel.proc),
                     "--db", str(tmp_path / "h.db"))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["dry_run"] is True and data["freed_bytes"] == 0
    assert kernel.requests == [] and kernel.cached == 8 * GiB
    assert (kernel.proc / "sys/vm/compact_memory").read_text() == ""
    assert any(s.startswith("would write") for s in data["steps"])
    assert not (tmp_path / "h.db").exists()  # a dry run records nothing


def test_cli_gradual_json_and_history(fake_kernel, tmp_path):
    kernel = fake_kernel(cached=5 * GiB, hot=0)
    db = tmp_path / "h.db"
    conf = tmp_path / "c.toml"
    conf.write_text('[reclaim]\nrefault_window = "0s"\n')  # listen 0.25 s (the shortest pause) after each step
    result = run_cli("reclaim", "--method", "gradual", "--json", "--settle", "0", "--proc-root", str(kernel.proc),
                     "--db", str(db), "--config", str(conf))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    for key in ("method", "freed_bytes", "page_cache_before_bytes", "page_cache_after_bytes",
                "returnable_free_before_bytes", "returnable_free_after_bytes", "host_before_bytes",
                "host_after_bytes", "duration_s", "dry_run", "error"):
        assert key in data, key
    assert data["method"] == "gradual" and data["error"] is None
    assert data["freed_bytes"] == data["page_cache_before_bytes"] - data["page_cache_after_bytes"] > 3 * GiB
    assert data["before"]["workingset_refault_file"] is not None and data["after"]["pgpgin"] is not None
    assert data["stop_reason"] == "floor" and data["working_set_bytes"] is None and data["gradual_steps"]
    assert all(s["refault_bytes"] == 0 and s["pgpgin_bytes"] == 0 for s in data["gradual_steps"])
    with Store(db) as store:
        (event,) = store.events(kinds=["reclaim"])
    assert event.data["freed_bytes"] == data["freed_bytes"] and "freed" in event.message


def test_gradual_stops_at_the_remembered_working_set_and_says_so(fake_kernel, tmp_path):
    from monitor.reclaim import workingset
    from monitor.reclaim.record import ReclaimRequest, reclaim_and_record

    kernel = fake_kernel(cached=4 * GiB, hot=0)
    with Store(tmp_path / "h.db") as store:
        workingset.save(store, workingset.WorkingSet(int(1.2 * GiB), time.time(), 0.25))
        result = reclaim_and_record(reclaimer_for(kernel, tmp_path), store, ReclaimRequest("gradual"))
        (event,) = store.events(kinds=["reclaim"])
    data = result.to_json()
    start = data["working_set_start_bytes"]
    assert abs(start - 1.5 * GiB) < MiB and data["stop_reason"] == "target"
    # stopped at the start level (to the page: the kernel reclaims whole pages), not the floor
    assert start - 4096 <= result.after.page_cache < start + MiB
    assert abs(data["working_set_bytes"] - 1.2 * GiB) < MiB and event.data["stop_reason"] == "target"
    assert any("working set ~ 1.2 GiB" in n for n in result.notes)


# ------------------------------------------------------------------ the real kernel


def fill_cache(path: Path, mib: int) -> None:
    chunk = os.urandom(MiB)
    with open(path, "wb") as fh:
        for _ in range(mib):
            fh.write(chunk)
    with open(path, "rb") as fh:
        while fh.read(8 * MiB):
            pass


@pytest.mark.slow
@needs_root
def test_real_pagecache_reclaim_frees_most_of_a_file(tmp_path):
    fill_cache(tmp_path / "fill.bin", 600)
    result = run_cli("reclaim", "--method", "pagecache", "--json", "--settle", "2s", "--db", str(tmp_path / "h.db"))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["methods_run"] == ["pagecache", "compact"]
    assert data["page_cache_before_bytes"] - data["page_cache_after_bytes"] > 500 * MiB
    assert data["freed_bytes"] > 500 * MiB
    assert data["after"]["drop_pagecache"] == data["before"]["drop_pagecache"] + 1
    assert len(data["host_trace"]) >= 2 and data["host_source"] == "estimate"
    # the estimate follows the freed memory once compaction has merged it (loosely: other
    # processes on this machine allocate and free at the same time)
    assert data["host_before_bytes"] - data["host_after_bytes"] > 0.3 * data["freed_bytes"]


@pytest.mark.slow
@needs_root
def test_real_full_reclaim_drops_dentries_too(tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(30000):
        (folder / f"f{i}").touch()
    fill_cache(tmp_path / "fill.bin", 200)
    result = run_cli("reclaim", "--method", "full", "--json", "--settle", "0", "--db", str(tmp_path / "h.db"))
    data = json.loads(result.stdout)
    assert result.returncode == 0 and data["methods_run"] == ["full", "compact"]
    assert data["before"]["slab_reclaimable_bytes"] - data["after"]["slab_reclaimable_bytes"] > 5 * MiB
    assert data["freed_bytes"] > 150 * MiB


def compact_scanned() -> int:
    for line in Path("/proc/vmstat").read_text().splitlines():
        if line.startswith("compact_migrate_scanned "):
            return int(line.split()[1])
    return 0


@pytest.mark.slow
@needs_root
def test_real_compact(tmp_path):
    before = compact_scanned()
    result = run_cli("reclaim", "--method", "compact", "--json", "--settle", "0", "--db", str(tmp_path / "h.db"))
    data = json.loads(result.stdout)
    assert result.returncode == 0 and data["methods_run"] == ["compact"]
    assert compact_scanned() > before  # the kernel really ran compaction
    assert data["steps"] == ["wrote '1' to /proc/sys/vm/compact_memory"]


# ------------------------------------------------------------------ never two at once


def test_second_reclaim_waits_for_none_and_says_why(tmp_path):
    with ReclaimLock(Path(os.environ["VMMEMCTL_RECLAIM_LOCK"])):  # the test's own (conftest), not the machine's
        result = run_cli("reclaim", "--method", "compact", "--settle", "0", "--db", str(tmp_path / "h.db"))
    assert result.returncode == 1
    assert f"another reclaim is running (pid {os.getpid()})" in result.stderr
    assert result.stderr.count("\n") == 1


def test_lock_in_process(tmp_path):
    with ReclaimLock(tmp_path / "l"):
        with pytest.raises(ReclaimBusy):
            with ReclaimLock(tmp_path / "l"):
                pass
    with ReclaimLock(tmp_path / "l"):
        pass  # released


# ------------------------------------------------------------------ without root


@needs_nobody
def test_unprivileged_user_gets_one_line_and_exit_3(shared_dir):
    db = shared_dir / "h.db"
    result = as_nobody("reclaim", "--db", str(db))
    assert result.returncode == 3, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "reclaim needs root" in result.stderr and "NOPASSWD:" in result.stderr and "_privileged-write *" in result.stderr
    assert as_nobody("reclaim", "--dry-run", "--db", str(db)).returncode == 0  # a dry run needs no right


@needs_nobody
def test_unprivileged_reclaim_json_prints_the_error_as_json(shared_dir):
    result = as_nobody("reclaim", "--json", "--db", str(shared_dir / "h.db"))
    assert result.returncode == 3 and result.stderr.count("\n") == 1  # the one line, as without --json
    answer = json.loads(result.stdout)  # and a script gets JSON on stdout
    assert answer["error"] == "reclaim needs root to write /proc/sys/vm/drop_caches"
    assert "NOPASSWD:" in answer["hint"] and answer["hint"] in result.stderr


@pytest.mark.slow  # drops this machine's page cache for real
@needs_nobody
@pytest.mark.skipif(not shutil.which("sudo"), reason="sudo is not installed")
def test_sudo_rule_lets_an_unprivileged_user_reclaim(shared_dir):
    tmp_path = shared_dir
    from monitor.kernel.privilege import vmmemctl_executable
    exe = vmmemctl_executable()
    if not os.access(exe, os.X_OK):
        pytest.skip("the vmmemctl script is not installed beside this Python")
    rule = Path("/etc/sudoers.d/zz-vmmemctl-test")
    rule.write_text(f"nobody ALL=(root) NOPASSWD: {exe} _privileged-write *\n")
    rule.chmod(0o440)
    try:
        fill_cache(tmp_path / "fill.bin", 300)
        (tmp_path / "fill.bin").chmod(0o644)
        result = as_nobody("reclaim", "--method", "pagecache", "--json", "--settle", "0", "--db",
                           str(tmp_path / "h.db"))
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        assert data["freed_bytes"] > 250 * MiB
        # the helper refuses anything but the three knobs, whatever sudo allows
        bad = subprocess.run(["sudo", "-n", "-u", "root", exe, "_privileged-write", "proc/sys/kernel/hostname", "x"],
                             capture_output=True, text=True)
        assert bad.returncode == 2 and "is not one of" in bad.stderr
    finally:
        rule.unlink()


def test_privileged_write_refuses_other_paths_and_values(capsys):
    from monitor.cli.main import main
    assert main(["_privileged-write", "proc/sys/kernel/hostname", "evil"]) == 2
    assert main(["_privileged-write", "proc/sys/vm/drop_caches", "1; rm -rf /"]) == 2
    assert main(["_privileged-write", "sys/fs/cgroup/memory.reclaim", "1G"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 3 and "is not one of" in err and "is not a valid value" in err


# ------------------------------------------------------------------ a guest that does not answer


@pytest.mark.parametrize("code, expected", [(0, True), (1, False), (125, None), (124, None)])
def test_a_channel_failure_is_unknown_not_no(tmp_path, code, expected):
    """`test -w` says 0 or 1; the channel's own failure codes (the lab's 124/125) read as unknown, asked twice."""
    from monitor.probes.execfiles import ExecFiles

    calls = tmp_path / "calls"
    guest = tmp_path / "guest-exec"
    guest.write_text(f"#!/bin/sh\necho \"$*\" >> {calls}\nexit {code}\n")
    guest.chmod(0o755)
    assert ExecFiles([str(guest)], timeout=10).writable("sys/fs/cgroup/memory.reclaim") is expected
    assert len(calls.read_text().splitlines()) == (1 if expected is not None else 2)


@pytest.mark.parametrize("method", ["gradual", "auto"])
def test_gradual_refuses_to_guess_when_the_guest_does_not_say(fake_kernel, tmp_path, method):
    """Unknown is not "absent": a reclaim whose memory.reclaim check got no answer drops nothing
    (falling back to drop_caches would drop the working set too) and says why."""
    from monitor.cli.report import reclaim_text
    from monitor.probes.execfiles import ExecFiles
    from monitor.probes.probeset import Probes

    kernel = fake_kernel(cached=2 * GiB, hot=0)
    config = Config(reclaim=ReclaimConfig(settle=0.0))
    local = build(config, environ={}, files=LocalFiles(kernel.proc))

    class Silent(ExecFiles):
        def __init__(self):
            self.description = "a guest that does not answer"

        def writable(self, path):
            return None  # what ExecFiles says when the channel never answered (above)

    files = LocalFiles(kernel.proc)  # what a reclaim would write: the fake kernel's files
    probes = Probes(Silent(), local.environment, local.guest, local.host, host_mode=True)
    before = (kernel.proc / "sys/vm/drop_caches").read_text()
    result = Reclaimer(files, probes, config.reclaim, tmp_path / "lock", seams=Seams(sleep=kernel.wait_applied)).run(method)
    assert result.methods_run == [] and result.steps == []
    assert result.error and "did not answer" in result.error and "nothing was dropped" in result.error
    assert (kernel.proc / "sys/vm/drop_caches").read_text() == before and not kernel.requests
    text = reclaim_text(result)  # what `vmmemctl reclaim` prints
    assert "steps: none (nothing was written)" in text and f"error: {result.error}" in text
    # a dry run still says what it would do
    assert Reclaimer(files, probes, config.reclaim, tmp_path / "lock").run(method, dry_run=True).methods_run


def test_knobs_missing_here_are_said_so_not_needs_root(tmp_path):
    from monitor.errors import PrivilegeError
    from monitor.reclaim.reclaimer import choose_writer

    (tmp_path / "proc" / "sys" / "vm").mkdir(parents=True)
    with pytest.raises(PrivilegeError) as refused:
        choose_writer(LocalFiles(str(tmp_path / "proc")), dry_run=False)
    assert str(refused.value) == ("reclaim cannot write /proc/sys/vm/drop_caches: it does not exist here "
                                  "(a kernel without it, or /proc not mounted)")


READ_ONLY_KNOBS = """
set -e
mount -t tmpfs none "$1"
mkdir -p "$1/sys/vm"
touch "$1/sys/vm/drop_caches" "$1/sys/vm/compact_memory"
mount -o remount,ro "$1"
exec "$2" -c '
import sys
from monitor.errors import PrivilegeError
from monitor.kernel.procfs import LocalFiles
from monitor.reclaim.reclaimer import choose_writer
try:
    choose_writer(LocalFiles(sys.argv[1]), dry_run=False)
except PrivilegeError as exc:
    print(exc)
' "$1"
"""


def test_knobs_on_a_read_only_mount_are_said_so_even_to_root(tmp_path):
    """As in a container whose /proc/sys is read-only: root cannot write either, so "needs root" was wrong."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) (a read-only tmpfs in a mount namespace of its own)")
    where = tmp_path / "proc"
    where.mkdir()
    done = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", READ_ONLY_KNOBS, "sh", str(where),
                           sys.executable], capture_output=True, text=True, cwd=str(Path(__file__).resolve().parents[1]),
                          timeout=60)
    if done.returncode != 0 and "mount" in done.stderr:
        pytest.skip(f"cannot mount here: {done.stderr.strip()}")
    assert done.stdout.strip() == ("reclaim cannot write /proc/sys/vm/drop_caches: it is on a read-only mount "
                                   "(/proc/sys read-only: a container?)"), done


def test_ctrl_c_during_a_reclaim_prints_and_records_what_ran_and_exits_130(fake_kernel, tmp_path):
    """Ctrl-C while it settles (issue 28: "interrupted", exit 130, no table, no event, although the drop ran)."""
    kernel = fake_kernel(cached=2 * GiB, hot=0)
    db = tmp_path / "h.db"
    env = {**os.environ, "VMMEMCTL_CONFIG": "", "VMMEMCTL_RECLAIM_LOCK": str(tmp_path / "reclaim.lock")}
    proc = subprocess.Popen([sys.executable, "-m", "monitor", "reclaim", "--method", "pagecache", "--settle", "1h",
                             "--json", "--proc-root", str(kernel.proc), "--db", str(db)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=str(Path(__file__).resolve().parents[1]))
    try:
        knob = kernel.proc / "sys/vm/compact_memory"
        deadline = time.monotonic() + 60
        while knob.read_text().strip() != "1":  # the drop and the compaction ran: it is settling now
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() else ""
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "vmmemctl: interrupted: what ran before it is above and recorded in the history"
    result = json.loads(out)
    assert result["methods_run"] == ["pagecache", "compact"] and result["error"] is None
    assert any(n.startswith("settle cut short after") and "Ctrl-C" in n for n in result["notes"]), result["notes"]
    with Store(db) as store:
        (event,) = store.events(kinds=["reclaim"])
    assert event.data["methods_run"] == ["pagecache", "compact"] and event.data["notes"] == result["notes"]


@pytest.mark.parametrize("code, stderr, errno_, words", [
    (1, "vmmemctl: [Errno 16] Device or resource busy\n", 16, "Device or resource busy"),  # the kernel's own
    (1, "sudo: a password is required\n", 1, "sudo: a password is required"),  # sudo refused: needs the rule
    (1, "Traceback (most recent call last):\n  ...\nModuleNotFoundError: No module named 'monitor'\n", None,
     "ModuleNotFoundError: No module named 'monitor'"),  # the helper broke: said as it is, not "needs root"
    (2, "vmmemctl: _privileged-write: '7' is not a valid value for proc/sys/vm/drop_caches\n", None,
     "vmmemctl: _privileged-write: '7' is not a valid value for proc/sys/vm/drop_caches"),
    (1, "", None, "failed (exit 1)"),
])
def test_a_sudo_write_failure_keeps_its_own_reason(code, stderr, errno_, words):
    """Issue 28: every failure of `sudo vmmemctl _privileged-write` read as EPERM, so as "reclaim needs root"."""
    from monitor.kernel.privilege import sudo_failure

    failure = sudo_failure(code, stderr)
    assert failure.errno == errno_ and (failure.strerror or str(failure)) == words
