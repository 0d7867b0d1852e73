"""Issue 26 in the lab: one group's cache, on a real kernel's cgroup v2 (memory.reclaim per group).

One 2 GiB guest with the memory controller on, vmmemctl itself running *in* the guest (the guest's
Python comes on a second disk, tests/lab/pyimage.py), as it runs inside WSL:

- `reclaim --cgroup` on one of two groups that each read part of the data disk: that group's cache
  goes, the other's stays; a frozen group is refused with one line and keeps its cache;
- `run` wraps a real reader: its exit code comes back, its group's cache goes back when it ends and
  the group is removed; a SIGTERM to `vmmemctl run` reaches the reader (exit 128+15).

Slow (TCG): deadlines are generous and nothing depends on sub-second timing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import pyimage

REPO = Path(__file__).resolve().parents[2]
SITE = next((REPO / ".venv/lib").glob("python3*/site-packages"), REPO / ".venv/lib/python3.11/site-packages")
MiB = 1024**2
CG = "/sys/fs/cgroup"
CONFIG = '[reclaim]\nrefault_window = "2s"\nrefault_window_near = "2s"\nsettle = "0s"\n'

pytestmark = [pytest.mark.lab, pytest.mark.timeout(1500)]


@pytest.fixture(scope="module")
def py_image(tmp_path_factory):
    why = pyimage.available()
    if why:
        pytest.skip(why)
    return pyimage.build(tmp_path_factory.mktemp("pyimage"), REPO, SITE)


def python_on_its_disk(vm) -> None:
    rc, out = vm.sh(pyimage.GUEST_SETUP, timeout=180)
    assert rc == 0 and b"python ok" in out, out.decode(errors="replace")


@pytest.fixture
def guest(lab_shared_vm, py_image):
    """The module's guest with its Python disk mounted, put back as it was after that between the tests
    (their processes, groups and files in /tmp/run gone, the page cache dropped: tests/lab/conftest.py)."""
    vm = lab_shared_vm(setup=python_on_its_disk, reporting=True, cgroup=True, memory="2G",
                       extra_qemu_args=["-drive", f"file={py_image},if=virtio,format=raw,readonly=on"])
    rc, _ = vm.sh(f"printf '{CONFIG}' > /tmp/run/c.toml")
    assert rc == 0
    return vm


def vmmemctl(vm, *args: str, timeout: float = 600):
    command, *rest = args  # the options go before `run`'s "--"
    return vm.run(pyimage.vmmemctl_argv(command, "--config", "/tmp/run/c.toml", "--db", "/tmp/run/h.db", *rest),
                  timeout=timeout)


def group_file(vm, rel: str) -> int:
    rc, out = vm.exec(["cat", f"{CG}/{rel}/memory.stat"])
    assert rc == 0, out
    return next(int(line.split()[1]) for line in out.decode().splitlines() if line.startswith("file "))


def read_in_group(vm, rel: str, skip_mib: int, mib: int) -> None:
    rc, out = vm.sh(f"mkdir -p {CG}/{rel} && sh -c 'echo $$ > {CG}/{rel}/cgroup.procs && "
                    f"exec dd if=/data/fill.bin of=/dev/null bs=1M skip={skip_mib} count={mib} 2>/dev/null'",
                    timeout=300)
    assert rc == 0, out


def json_in(text: str) -> dict:
    """The JSON object `--json` printed among other lines (on stderr for `run`)."""
    lines = text.splitlines()
    start = lines.index("{")
    end = start + lines[start:].index("}")
    return json.loads("\n".join(lines[start:end + 1]))


def test_reclaim_one_group_leaves_the_other_and_refuses_a_frozen_one(guest):
    vm = guest
    read_in_group(vm, "build", 0, 400)
    read_in_group(vm, "editor", 512, 300)
    build0, editor0 = group_file(vm, "build"), group_file(vm, "editor")
    assert build0 > 350 * MiB and editor0 > 250 * MiB, (build0, editor0)

    done = vmmemctl(vm, "reclaim", "--cgroup", "build", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(done.stdout)
    build1, editor1 = group_file(vm, "build"), group_file(vm, "editor")
    print(f"\nbuild group {build0 // MiB} -> {build1 // MiB} MiB, editor {editor0 // MiB} -> {editor1 // MiB} MiB; "
          f"stop: {data['stop_reason']}; steps: {len(data['gradual_steps'])}; took {data['duration_s']} s")
    assert data["cgroup"] == f"{CG}/build" and data["cgroup_freed_bytes"] > 300 * MiB
    assert build1 < 0.1 * build0  # the group's cache went
    assert editor1 > 0.9 * editor0  # the other's stayed

    rc, _ = vm.sh(f"echo 1 > {CG}/editor/cgroup.freeze")
    assert rc == 0
    done = vmmemctl(vm, "reclaim", "--cgroup", f"{CG}/editor")
    said = done.stderr.decode(errors="replace") if isinstance(done.stderr, bytes) else done.stderr
    assert done.returncode == 2 and "is frozen" in said and said.count("\n") == 1, said
    assert group_file(vm, "editor") > 0.9 * editor0  # never written


def test_run_wraps_a_reader_passes_its_exit_code_and_a_signal_and_gives_its_cache_back(guest):
    vm = guest
    # The baseline is taken after vmmemctl's own code has run in this guest once: QEMU's RSS also holds
    # TCG's translations of the code the guest runs, and the first `run` (Python compiling and running
    # vmmemctl's modules, then the reclaim) grew it by ~100 MiB that no guest reclaim gives back (the
    # guest then had 1.9 GB free in order-10 blocks while QEMU kept ~100 MiB more; measured 2026-12-07);
    # after a warm-up it still grew ~90 MiB (a dropped cache's code is translated again), so the reader
    # reads 1200 MiB: what it read, given back, stands well clear of that.
    warm = vmmemctl(vm, "run", "--", "true")
    assert warm.returncode == 0, warm.stderr
    vm.drop_caches()
    vm.wait_rss_settled(timeout=30)  # free page reporting hands the dropped pages back in ~2 s batches: the
    # baseline is taken once QEMU's RSS stopped falling (3 s within 8 MiB; it was a fixed 10 s)
    cached0, rss0 = vm.meminfo()["Cached"], vm.rss_bytes()
    done = vmmemctl(vm, "run", "--json", "--", "sh", "-c",
                    "dd if=/data/fill.bin of=/dev/null bs=1M skip=200 count=1200 2>/dev/null; exit 3")
    err = done.stderr.decode(errors="replace") if isinstance(done.stderr, bytes) else done.stderr
    assert done.returncode == 3, err[-3000:]  # the reader's own exit code
    assert err.startswith(f"vmmemctl run: in cgroup {CG}/vmmemctl.slice/run-"), err[:500]
    data = json_in(err)
    cached1 = vm.meminfo()["Cached"]
    print(f"\nrun: group cache {data['cgroup_page_cache_before_bytes'] // MiB} -> "
          f"{data['cgroup_page_cache_after_bytes'] // MiB} MiB; stop: {data['stop_reason']}; "
          f"VM Cached {cached0 // MiB} -> {cached1 // MiB} MiB; took {data['duration_s']} s")
    assert data["cgroup_page_cache_before_bytes"] > 1000 * MiB and data["trigger"] == "run:sh"
    assert data["cgroup_page_cache_after_bytes"] < 0.1 * data["cgroup_page_cache_before_bytes"]
    assert cached1 - cached0 < 60 * MiB  # what the reader read did not stay in the VM
    # most of the 1200 MiB back on the host: QEMU's own growth (TCG's translations, above) stays within 150 MiB
    back, trace = vm.wait_rss(lambda rss: rss < rss0 + 150 * MiB, timeout=90)
    print(f"host (QEMU VmRSS): {rss0 // MiB} MiB before the run, {trace[-1][1] // MiB} MiB {trace[-1][0]:.0f} s "
          f"after it ended (the reader read 1200 MiB)")
    assert back, trace  # ... nor on the host
    rc, out = vm.exec(["ls", f"{CG}/vmmemctl.slice"])
    assert rc != 0, out  # the group, and the slice, are gone

    # A signal: SIGTERM to `vmmemctl run` reaches the reader, whose death by it is 128+15
    import shlex
    argv = pyimage.vmmemctl_argv("run", "--keep", "--", "sh", "-c", "echo $$ > /tmp/run/child; exec sleep 600")
    script = f"{shlex.join(argv)} >/dev/null 2>/tmp/run/err &\necho $! > /tmp/run/vpid\nwait $!\necho $? > /tmp/run/rc\n"
    rc, _ = vm.exec(["sh", "-c", "cat > /tmp/run/sig.sh"], stdin=script.encode())
    assert rc == 0
    rc, _ = vm.sh("setsid sh /tmp/run/sig.sh </dev/null >/dev/null 2>&1 &")
    assert rc == 0
    deadline = time.monotonic() + 300
    while vm.exec(["test", "-s", "/tmp/run/child"])[0] != 0 and time.monotonic() < deadline:
        time.sleep(1)
    rc, out = vm.sh("kill -TERM $(cat /tmp/run/vpid)")
    assert rc == 0, out
    code = None
    while time.monotonic() < deadline:
        rc, out = vm.exec(["cat", "/tmp/run/rc"])
        if rc == 0 and out.strip():
            code = int(out)
            break
        time.sleep(1)
    assert code == 143, vm.exec(["cat", "/tmp/run/err"])[1]
    rc, _ = vm.sh("kill -0 $(cat /tmp/run/child)")
    assert rc != 0  # the reader is gone with it


# A watcher that only records and measures costs here: its one rule never fires (the shipped ones
# would reclaim an idle guest after 30 s, which is not this test's).
COST_CONFIG = CONFIG + 'cost_window = "30s"\n' + (
    '[[rule]]\nname = "quiet"\nmetric = "page_cache"\nabove = "99%"\nfor = "1h"\naction = "notify"\n')
EVENT_DATA = ("import sqlite3; db = sqlite3.connect('/tmp/run/h.db'); "
              "row = db.execute(\"SELECT data FROM events WHERE kind = 'reclaim' ORDER BY id DESC\").fetchone(); "
              "print(row[0] if row else '{}')")


EVENTS = ("import sqlite3; db = sqlite3.connect('/tmp/run/h.db'); "
          "[print(r) for r in db.execute('SELECT id, t, kind, message FROM events ORDER BY id')]")


def last_reclaim_data(vm) -> dict:
    done = vm.run([f"{pyimage.MOUNT}/usr/bin/python3.11", "-S", "-c", EVENT_DATA], timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def vm_refaults(vm) -> int:
    rc, out = vm.exec(["cat", "/proc/vmstat"])
    assert rc == 0
    return next(int(line.split()[1]) for line in out.decode().splitlines() if line.startswith("workingset_refault_file "))


def test_a_group_reclaims_cost_counts_that_groups_re_reads_not_the_other_groups(guest):
    """Issue 26, item 5: after `reclaim --cgroup build`, "re-read after" is the build group's own
    workingset_refault_file. During its 30 s window the build re-reads 32 MiB of what went back and the
    editor, in another group, re-reads 192 MiB it had lost too: the VM-wide counter climbs by the
    editor's, the recorded cost counts none of it. A real `vmmemctl watch`, started as the reclaim
    ends, measures the window."""
    vm = guest
    rc, _ = vm.exec(["sh", "-c", "cat > /tmp/run/c.toml"], stdin=COST_CONFIG.encode())  # (printf: its 99%)
    assert rc == 0
    read_in_group(vm, "editor", 512, 192)
    read_in_group(vm, "build", 0, 128)
    # the editor's cache goes first (a plain write: not vmmemctl's, no event), so that its re-reads are
    # refaults too (a page read for the first time is none)
    vm.sh(f"echo 512M > {CG}/editor/memory.reclaim")
    assert group_file(vm, "editor") < 32 * MiB
    done = vmmemctl(vm, "reclaim", "--cgroup", "build", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(done.stdout)
    assert data["cgroup"] == f"{CG}/build" and data["cgroup_freed_bytes"] > 100 * MiB
    assert isinstance(data["cgroup_refaults_after"], int)
    watch = " ".join(pyimage.vmmemctl_argv("watch", "--config", "/tmp/run/c.toml", "--db", "/tmp/run/h.db",
                                           "--log-file", "/tmp/run/watch.log"))
    rc, _ = vm.sh(f"setsid {watch} </dev/null >/tmp/run/watch.out 2>&1 & echo $! > /tmp/run/watch.pid")
    assert rc == 0
    try:
        vm0 = vm_refaults(vm)
        read_in_group(vm, "build", 0, 32)  # the build re-reads a quarter of what it gave back
        read_in_group(vm, "editor", 512, 192)  # the other group re-reads all of its own
        vm1 = vm_refaults(vm)
        rc, out = vm.exec(["date", "+%s"])
        reads_done = int(out)
        deadline = time.monotonic() + 300
        cost: dict = {}
        while time.monotonic() < deadline and "reread_source" not in cost:
            time.sleep(3)
            cost = last_reclaim_data(vm)
    finally:
        vm.sh("kill $(cat /tmp/run/watch.pid)")
    print(f"\nVM-wide refaults over the re-reads {(vm1 - vm0) * 4096 // MiB} MiB (done {reads_done - data['ended']:.0f} s "
          f"after the reclaim); the build group's re-read {cost.get('reread_bytes_after')} B "
          f"({cost.get('reread_source')}) in {cost.get('cost_window_s')} s; the VM's refaults in that window "
          f"{cost.get('refault_bytes_after')} B")
    if cost.get("reread_source") != "cgroup_refaults":
        events = vm.run([f"{pyimage.MOUNT}/usr/bin/python3.11", "-S", "-c", EVENTS], timeout=60).stdout
        log = vm.exec(["sh", "-c", "cat /tmp/run/watch.out /tmp/run/watch.log"])[1]
        pytest.fail(f"no cost recorded; events:\n{events.decode(errors='replace')[-3000:]}\nwatch log:\n"
                    f"{log.decode(errors='replace')[-4000:]}")
    assert (vm1 - vm0) * 4096 > 180 * MiB  # the VM's counter climbed by both groups' re-reads
    assert cost["attributable"] is True and cost["reread_cgroup"] == f"{CG}/build"
    # Not the editor's 192 MiB. Nor, measured, the whole of the build's 32 MiB: 1 MiB of it (2026-12-07, both
    # in the group and VM-wide): a group reclaimed to empty loses most of its shadow entries too (the
    # kernel's shadow-node shrinker runs per group and allows a group with no pages almost none), and a
    # re-read with no shadow entry is no refault. So the figure is the group's own, and a floor.
    assert cost["reread_bytes_after"] <= 40 * MiB
    if reads_done < cost["cost_window_end"]:  # (the guest's clock: both ends read there)
        assert cost["refault_bytes_after"] > 180 * MiB  # the VM-wide key, recorded beside it, counts both
