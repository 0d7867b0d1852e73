"""Issue 7: vmmemctl in host mode against a real VM with free page reporting.

The QEMU process (named vmmemWSL) is the host-side process, guest-exec is our
wsl.exe. Each test takes a 2 GiB guest (TCG), fills its page cache from the
data disk and checks what vmmemctl sees, decides and gives back. The tests on
the same guest configuration share one booted guest, put back between them to
its state after boot (tests/lab/conftest.py: lab_shared_vm).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MiB = 1024**2
FILL_MIB = 1024

pytestmark = pytest.mark.lab


def host_mode_config(tmp_path: Path, vm, extra: str = "", reclaim: str = "") -> Path:
    """Host mode on the lab guest. These tests are about host mode, not working sets (no program re-reads
    anything here: tests/lab/test_controller_lab.py and test_slow_set_lab.py listen for those): the gradual
    controller listens 2 s after each step, near the bound too (its defaults are 5 s growing to 30 s, issue
    25), still as long as free page reporting takes to hand a step back (~2 s batches), so a reclaim of the
    fill's ~19 steps takes about a minute."""
    path = tmp_path / "host-mode.toml"
    path.write_text(f'[guest]\nexec = {json.dumps(vm.exec_prefix)}\ntimeout = "30s"\n'
                    f'[host]\nsource = "process"\nprocess = "{vm.pid}"\n'
                    f'[reclaim]\nrefault_window = "2s"\nrefault_window_near = "2s"\n{reclaim}{extra}')
    return path


def wsl_like(vm):
    """MGLRU off, as on WSL's kernel (the lab guest's is on): under MGLRU a gradual reclaim with nothing
    remembered takes steps of 1/16 of the cache (issue 25; tests/test_mglru.py and the controller's lab case
    cover that), ~36 steps for the fill here; these tests are about host mode, with WSL's whole steps. (A
    shared guest whose MGLRU changed is booted afresh for the next test: tests/lab/conftest.py.)"""
    rc, _ = vm.exec(["sh", "-c", "[ ! -e /sys/kernel/mm/lru_gen/enabled ] || echo n > /sys/kernel/mm/lru_gen/enabled"])
    assert rc == 0
    return vm


def vmmemctl(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "monitor", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout, env={**os.environ, "VMMEMCTL_CONFIG": ""})


GUEST_SILENT = "the guest did not answer whether cgroup v2 memory.reclaim is there"


def reclaim(tmp_path: Path, vm, method: str, settle: str = "12s") -> dict:
    config = host_mode_config(tmp_path, vm)
    for _ in range(2):
        t0 = time.monotonic()
        done = vmmemctl("reclaim", "--method", method, "--json", "--settle", settle, "--config", str(config),
                        "--db", str(tmp_path / "h.db"))
        print(f"\nreclaim --method {method}: {time.monotonic() - t0:.1f} s; stderr: {done.stderr.strip()[-1500:]!r}")
        result = json.loads(done.stdout) if done.stdout.startswith("{") else {}
        # The lab's channel now and then leaves a call unanswered (twice in a row, 30 s each; cause not
        # known, seen in CI and clean runs): the reclaim then rightly refuses and writes nothing, which is
        # tests/test_reclaim.py's subject. Here the subject is what a reclaim does: ask once more.
        if not (result.get("error") or "").startswith(GUEST_SILENT):
            break
    assert done.returncode == 0, done.stderr or {k: result.get(k) for k in ("error", "steps", "notes")}
    return result


def test_host_probe_follows_the_qemu_rss(lab_shared_vm):
    from monitor.probes.host import ProcessProbe
    vm = lab_shared_vm(reporting=True, cgroup=True)
    seen = []
    for fill in (0, 512):
        if fill:
            vm.fill_page_cache(fill)
        sample = ProcessProbe(str(vm.pid)).sample(None)
        status_rss = vm.rss_bytes()  # VmRSS from /proc/PID/status
        assert sample.bytes is not None and abs(sample.bytes - status_rss) < 8 * MiB
        assert "vmmemWSL pid" in sample.detail
        seen.append(sample.bytes)
    assert sample.bytes > 700 * MiB  # the fill is in the host's RSS ...
    assert seen[1] - seen[0] > 0.8 * 512 * MiB  # ... all of it (a shared guest starts from its own baseline)


def test_watcher_in_host_mode_reclaims_by_rule(lab_shared_vm, tmp_path):
    """The real watcher, an automatic rule, the real guest: the host RSS falls by most of the fill."""
    vm = wsl_like(lab_shared_vm(reporting=True, cgroup=True))
    config = host_mode_config(tmp_path, vm, reclaim='settle = "6s"\n', extra=(
        '[sampling]\ninterval = "1s"\nhost_interval = "1s"\n'
        '[idle]\nwindow = "3s"\n'
        '[policy]\nauto_reclaim = true\n'
        '[[rule]]\nname = "lab-auto"\nmetric = "reclaimable"\nabove = "400MiB"\nfor = "2s"\naction = "reclaim"\n'))
    before_fill = vm.rss_bytes()
    vm.fill_page_cache(FILL_MIB)
    filled = vm.rss_bytes()
    assert filled - before_fill > 0.8 * FILL_MIB * MiB
    for attempt in range(2):  # once more if the lab's channel left the memory.reclaim check unanswered: the
        # refusal is right (tests/test_reclaim.py's subject, not this one's), and the rule, having acted, re-arms
        # only below its mark; a fresh history is a fresh watcher's first decision
        db = tmp_path / f"h{attempt}.db"
        watch = subprocess.Popen([sys.executable, "-m", "monitor", "watch", "--config", str(config), "--db", str(db),
                                  "--log-file", str(tmp_path / "watch.log")], cwd=REPO,
                                 env={**os.environ, "VMMEMCTL_CONFIG": ""})
        try:
            # gradual's steps each wait a refault window (2 s): 1 GiB of cold cache is ~19 steps, then settle
            event = wait_for_reclaim(db, timeout=240)
        finally:
            watch.send_signal(signal.SIGTERM)
            watch.wait(timeout=20)
        # the same channel left unanswered mid-reclaim (a guest command, 30 s): the reclaim rightly fails
        # and says so; the subject here is what a reclaim by rule gives back, so once more
        if GUEST_SILENT not in (event["data"] or "") and "no answer within" not in (event["message"] or ""):
            break
    data = json.loads(event["data"])
    assert event["rule"] == "rule:lab-auto" and event["status"] == "ok", event
    assert data["methods_run"] == ["gradual", "compact"]  # auto: memory.reclaim exists in this guest
    assert data["host_source"] == "process" and data["host_estimated"] is False
    returned = data["host_before_bytes"] - data["host_after_bytes"]
    assert returned > 0.7 * FILL_MIB * MiB, data["host_trace"]
    assert vm.rss_bytes() < filled - 0.7 * FILL_MIB * MiB
    print(f"\nwatcher reclaim: host {data['host_before_bytes'] / MiB:.0f} -> {data['host_after_bytes'] / MiB:.0f} MiB, "
          f"90% back after {data['host_return_s']} s")


def wait_for_reclaim(db: Path, timeout: float) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if db.exists():
            con = sqlite3.connect(db)
            con.row_factory = sqlite3.Row
            try:
                row = con.execute("SELECT * FROM events WHERE kind = 'reclaim' ORDER BY id LIMIT 1").fetchone()
            except sqlite3.OperationalError:
                row = None
            finally:
                con.close()
            if row:
                return dict(row)
        time.sleep(0.5)
    raise AssertionError(f"no reclaim recorded within {timeout}s")


def test_gradual_lowers_the_host_rss_in_steps(lab_shared_vm, tmp_path):
    vm = wsl_like(lab_shared_vm(reporting=True, cgroup=True))
    vm.fill_page_cache(FILL_MIB)
    # the VM's RSS as the host sees it, every 0.5 s while the reclaim runs (its steps wait a refault
    # window each, so free page reporting hands each step back before the settle trace starts)
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.append(vm.rss_bytes())
            done.wait(0.5)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        data = reclaim(tmp_path, vm, "gradual", settle="8s")
    finally:
        done.set()
        watcher.join()
    steps = [s for s in data["steps"] if s.startswith("step ")]
    assert len(steps) >= 3 and "asked 256 MiB" in steps[0]  # 2 GiB / 32 = 64 MiB, clamped up to 256 MiB
    levels = sorted({round(b / (128 * MiB)) for b in seen}, reverse=True)
    assert len(levels) >= 3, [round(b / MiB) for b in seen]  # given back step by step, not at once
    assert data["host_before_bytes"] - data["host_after_bytes"] > 0.7 * FILL_MIB * MiB
    print(f"\ngradual: host {data['host_before_bytes'] / MiB:.0f} -> {data['host_after_bytes'] / MiB:.0f} MiB, "
          f"seen {[round(b / MiB) for b in seen]}")


def test_gradual_falls_back_where_memory_reclaim_is_absent(lab_vm_factory, tmp_path):
    vm = lab_vm_factory(reporting=True, cgroup=False)
    vm.fill_page_cache(FILL_MIB)
    data = reclaim(tmp_path, vm, "gradual")
    assert data["methods_run"] == ["pagecache", "compact"]
    assert any("used pagecache (no memory.reclaim here" in n for n in data["notes"]), data["notes"]
    assert data["freed_bytes"] > 0.8 * FILL_MIB * MiB
    assert data["host_before_bytes"] - data["host_after_bytes"] > 0.7 * FILL_MIB * MiB
    print(f"\npagecache: host {data['host_before_bytes'] / MiB:.0f} -> {data['host_after_bytes'] / MiB:.0f} MiB, "
          f"90% back after {data['host_return_s']} s")


def test_without_reporting_the_guest_frees_but_the_host_keeps_it(lab_vm_factory, tmp_path):
    vm = lab_vm_factory(reporting=False)
    vm.fill_page_cache(FILL_MIB)
    data = reclaim(tmp_path, vm, "pagecache", settle="8s")
    assert data["freed_bytes"] > 0.8 * FILL_MIB * MiB  # the guest did its part
    assert data["host_returned_bytes"] < 0.2 * data["freed_bytes"]  # the host got almost nothing back
    status = vmmemctl("status", "--json", "--config", str(host_mode_config(tmp_path, vm)),
                      "--db", str(tmp_path / "h.db"))
    report = json.loads(status.stdout)
    assert report["unreturned_bytes"] > 0.7 * FILL_MIB * MiB
    assert any("is not going back" in n for n in report["notes"]), report["notes"]
    text = vmmemctl("status", "--config", str(host_mode_config(tmp_path, vm)), "--db", str(tmp_path / "h.db"))
    assert "note: the host holds" in text.stdout


OLD_KERNEL = "6.1.0-56-cloud-amd64"  # Debian 12's own kernel: memory.reclaim without swappiness=


def old_kernel_cache() -> Path:
    from lab import vm as labvm
    return Path(os.environ.get("VMMEMCTL_LAB_CACHE_OLD") or f"{labvm.default_cache_dir()}-6.1")


def test_gradual_on_a_kernel_that_refuses_swappiness(lab_built, tmp_path):
    """Kernels before 6.9 answer EINVAL to "N swappiness=0"; with no swap the plain form is the same."""
    from lab import vm as labvm
    ok, why = labvm.lab_status(old_kernel_cache())
    if not ok:
        pytest.skip(f"the {OLD_KERNEL} lab is not built ({why}): VMMEMCTL_LAB_CACHE={old_kernel_cache()} "
                    f"VMMEMCTL_LAB_KERNEL={OLD_KERNEL} lab/build.sh")
    with labvm.LabVM(reporting=True, cache_dir=old_kernel_cache()) as vm:
        rc, out = vm.exec(["cat", "/proc/sys/kernel/osrelease"])
        assert out.decode().startswith("6.1.")
        vm.fill_page_cache(FILL_MIB)
        data = reclaim(tmp_path, vm, "gradual", settle="6s")
    assert "kernel refused swappiness=0; no swap, so retried without it" in data["notes"]
    assert data["methods_run"] == ["gradual", "compact"] and data["error"] is None
    assert data["freed_bytes"] > 0.8 * FILL_MIB * MiB
    assert data["host_before_bytes"] - data["host_after_bytes"] > 0.7 * FILL_MIB * MiB
