"""Smoke test of the QEMU lab itself: the command channel is exact, and the
QEMU process's RSS behaves like vmmemWSL's (page cache fills it; dropping the
cache gives it back only with free page reporting); memory.reclaim works.

Takes about a minute on an idle 2-core machine (two TCG boots, two 512 MiB
fills), up to two when the cores are shared.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from lab import vm as labvm

pytestmark = pytest.mark.lab

MiB = 1 << 20
FILL_MIB = 512  # the property (RSS rises with the cache, falls only with reporting) is per page


@pytest.fixture(scope="module")
def vm(lab_built):
    with labvm.LabVM(reporting=True, balloon=True, memory="2G", cgroup=True) as v:
        yield v


def test_agent_exit_codes_and_exact_output(vm):
    assert vm.exec(["true"]) == (0, b"")
    assert vm.exec(["false"]) == (1, b"")
    assert vm.exec(["sh", "-c", "exit 42"]) == (42, b"")
    assert vm.exec(["sh", "-c", "exit 255"])[0] == 255

    # every byte value, NULs and CR/LF included
    fmt = "".join(f"\\{i:03o}" for i in range(256))
    assert vm.exec(["printf", fmt]) == (0, bytes(range(256)))
    # no trailing newline is added or removed
    assert vm.exec(["printf", "x\n\n"]) == (0, b"x\n\n")

    # argv words arrive verbatim: nothing is interpreted twice
    words = ["a b", "c'd", 'e"f', "$HOME", "*", "new\nline", "", "-n", "tab\there",
             "back\\slash", "`id`", "; exit 3", "\u00e9\u00df\u4e2d"]
    rc, out = vm.exec(["printf", "%s|"] + words)
    assert rc == 0
    assert out == ("|".join(words) + "|").encode()

    # stderr is kept apart from stdout
    r = vm.run(["sh", "-c", "echo out; echo err >&2; exit 5"])
    assert (r.returncode, r.stdout, r.stderr) == (5, b"out\n", b"err\n")

    # stdin can be forwarded
    data = bytes(range(256)) * 64
    assert vm.run(["cat"], stdin=data).stdout == data

    # larger binary output survives (checked against the guest's own sha256)
    r = vm.run(["sh", "-c", "head -c 200000 /data/fill.bin; "
                            "head -c 200000 /data/fill.bin | sha256sum >&2"])
    assert r.returncode == 0 and len(r.stdout) == 200000
    assert hashlib.sha256(r.stdout).hexdigest() == r.stderr.split()[0].decode()


def test_guest_side_timeout(vm):
    t0 = time.monotonic()
    rc, _ = vm.exec(["sh", "-c", "sleep 30; echo late"], timeout=1)
    assert rc == labvm.EXIT_TIMEOUT
    assert time.monotonic() - t0 < 10
    assert vm.exec(["echo", "still alive"]) == (0, b"still alive\n")


def test_exec_prefix_as_a_subprocess(vm):
    p = subprocess.run(vm.exec_prefix + ["cat", "/proc/meminfo"], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(b"MemTotal:")
    assert b"\nCached:" in p.stdout

    p = subprocess.run(vm.exec_prefix + ["sh", "-c", "printf 'no newline'; exit 3"],
                       capture_output=True, timeout=60)
    assert (p.returncode, p.stdout) == (3, b"no newline")

    # a single --socket is enough; VMMEMCTL_LAB_SOCKET works instead of --socket
    env = {**os.environ, "VMMEMCTL_LAB_SOCKET": os.pathsep.join(vm.sockets)}
    p = subprocess.run([str(labvm.GUEST_EXEC), "--", "uname", "-s"], capture_output=True,
                       env=env, timeout=60)
    assert (p.returncode, p.stdout) == (0, b"Linux\n"), p.stderr


def test_concurrent_callers(vm):
    """Several host processes at once (a daemon and a test): all get their own answer."""
    results: dict[int, subprocess.CompletedProcess] = {}

    def call(i: int) -> None:
        # each call says, by the guest's own clock (seconds since its boot, /proc/uptime), when it began
        # and ended its 2 s of work
        script = f"cut -d' ' -f1 /proc/uptime; sleep 2; cut -d' ' -f1 /proc/uptime; echo {i}"
        results[i] = subprocess.run(vm.exec_prefix + ["sh", "-c", script], capture_output=True, timeout=120)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spans = []
    for i in range(5):
        assert results[i].returncode == 0, results[i].stderr
        began, ended, echoed = results[i].stdout.decode().split()
        assert echoed == str(i)
        spans.append((float(began), float(ended)))
    # the channels serve callers side by side (3 of them): some calls' work overlapped, which one channel
    # answering in turn could never show, however loaded the machine (no verdict on elapsed time)
    overlaps = sum(1 for a in spans for b in spans if a < b and a[0] < b[1] and b[0] < a[1])
    assert overlaps >= 1, spans


def test_unreachable_exits_125(tmp_path):
    """Needs no VM: a missing socket and a dead one both give 125, fast, one line."""
    missing = tmp_path / "nope.sock"
    dead = tmp_path / "dead.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(dead))
    s.close()  # socket file left behind, nobody listening
    for path in (missing, dead):
        t0 = time.monotonic()
        p = subprocess.run([sys.executable, str(labvm.GUEST_EXEC), "--socket", str(path),
                            "--", "true"], capture_output=True, timeout=30)
        assert p.returncode == labvm.EXIT_UNREACHABLE
        assert p.stdout == b""
        assert len(p.stderr.decode().strip().splitlines()) == 1, p.stderr
        assert time.monotonic() - t0 < 10


def _fill(vm) -> tuple[int, int]:
    """Let the guest settle, then fill FILL_MIB of page cache; (rss before, after)."""
    before = vm.rss_bytes()
    vm.fill_page_cache(FILL_MIB)
    time.sleep(0.5)
    return before, vm.rss_bytes()


def test_page_cache_fills_rss_and_reporting_gives_it_back(vm):
    vm.drop_caches()
    ok, _ = vm.wait_rss(lambda r: False, timeout=4, interval=1)  # let reporting settle
    before, filled = _fill(vm)
    rise = filled - before
    assert rise >= 0.8 * FILL_MIB * MiB, f"RSS {before // MiB} -> {filled // MiB} MiB"

    t0 = time.monotonic()
    vm.drop_caches()
    target = filled - 0.75 * rise
    ok, samples = vm.wait_rss(lambda r: r <= target, timeout=15, interval=0.5)
    took = time.monotonic() - t0
    trace = [(t, r // MiB) for t, r in samples]
    assert ok, f"RSS did not fall by 3/4 of the fill in 15 s: before={before // MiB} " \
               f"filled={filled // MiB} samples={trace}"
    print(f"RSS MiB: before={before // MiB} filled={filled // MiB} "
          f"dropped={samples[-1][1] // MiB} after {took:.1f}s")


def test_memory_reclaim(vm):
    rc, out = vm.exec(["ls", "/sys/fs/cgroup/"])
    assert rc == 0 and b"memory.reclaim" in out.split(), out
    vm.fill_page_cache(600)
    cached_before = vm.meminfo()["Cached"]
    r = vm.run(["sh", "-c", 'echo "268435456 swappiness=0" > /sys/fs/cgroup/memory.reclaim'])
    # EAGAIN ("Resource temporarily unavailable") means it could not free all
    # of it; with 600 MiB of clean page cache it can.
    assert r.returncode == 0, r.stderr
    freed = cached_before - vm.meminfo()["Cached"]
    assert freed >= 200 * MiB, freed // MiB


def test_reporting_off_keeps_rss_and_no_memory_reclaim(lab_vm_factory):
    vm = lab_vm_factory(reporting=False, cgroup=False)
    # fallback case: cgroup2 mounted, but no memory controller -> no memory.reclaim
    rc, out = vm.exec(["ls", "/sys/fs/cgroup/"])
    assert rc == 0 and b"cgroup.procs" in out.split() and b"memory.reclaim" not in out.split()
    r = vm.run(["sh", "-c", 'echo "268435456 swappiness=0" > /sys/fs/cgroup/memory.reclaim'])
    assert r.returncode != 0

    before, filled = _fill(vm)
    rise = filled - before
    assert rise >= 0.8 * FILL_MIB * MiB, f"RSS {before // MiB} -> {filled // MiB} MiB"
    vm.drop_caches()
    assert vm.meminfo()["Cached"] < 100 * MiB  # the guest did free it...
    ok, samples = vm.wait_rss(lambda r: r < filled - 0.25 * rise, timeout=8, interval=1)
    assert not ok, f"RSS fell without free page reporting: {[(t, r // MiB) for t, r in samples]}"

    # stop() leaves nothing behind: QEMU is gone (reaped by stop), run dir removed
    pid, run_dir = vm.pid, vm.run_dir
    vm.stop()
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    assert not run_dir.exists()
    vm.stop()  # idempotent
