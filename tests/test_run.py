"""`vmmemctl run`: a real COMMAND, its streams, exit code and signals passed through; its group on a
fake cgroup v2 tree (this machine's cgroups are never written: every test points --proc-root at a tree).

In a tree, cgroup.procs is a plain file: "moving" the child writes its pid there, and the child reads
it back as its first act, which proves the pid was written before COMMAND ran. The kernel's own part
(the group's files appearing, cgroup.procs emptying when the last process leaves) is played by the
child here; what a real kernel does with the group is tests/lab/test_cgroup_lab.py's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fakecgroup import MOUNTINFO_V1, write_mountinfo
from fakekernel import FakeKernel
from helpers import REPO, run_cli

from monitor.history.store import Store
from monitor.kernel.cgroups import run_command

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="run makes its group as root")


@pytest.fixture
def kernel(tmp_path):
    k = FakeKernel(tmp_path / "tree", cached=1 << 30, hot=0)
    write_mountinfo(k.proc)
    cg = k.root / "sys/fs/cgroup"
    (cg / "cgroup.controllers").write_text("cpu memory pids\n")
    (cg / "cgroup.subtree_control").write_text("memory\n")
    yield k
    k.close()


def conf(tmp_path: Path) -> str:
    path = tmp_path / "c.toml"
    path.write_text('[reclaim]\nrefault_window = "0s"\nsettle = "0s"\n')
    return str(path)


# The child: its group's files (the kernel's part), its pid as the group holds it, then its own pid.
CHILD = r'''d="$ROOT$VMMEMCTL_RUN_CGROUP"
cat "$d/cgroup.procs"; echo; echo "$$"; cat "$d/memory.high" 2>/dev/null; echo
echo "memory pids" > "$d/cgroup.controllers"
printf 'anon 0\nfile 314572800\nactive_file 0\ninactive_file 314572800\nworkingset_refault_file 0\n' > "$d/memory.stat"
: > "$d/memory.reclaim"; read line; echo "got $line"; : > "$d/cgroup.procs"; exit 5'''


@needs_root
def test_run_starts_the_command_inside_its_group_and_gives_its_cache_back(kernel, tmp_path):
    db = tmp_path / "h.db"
    done = subprocess.run([sys.executable, "-m", "monitor", "run", "--cache-max", "256MiB", "--proc-root",
                           str(kernel.proc), "--db", str(db), "--config", conf(tmp_path), "--", "sh", "-c", CHILD],
                          input="from stdin\n", capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**os.environ, "VMMEMCTL_CONFIG": "", "ROOT": str(kernel.root)})
    assert done.returncode == 5, done.stderr  # COMMAND's exit code
    procs, pid, high, got = done.stdout.split("\n")[:4]
    assert procs.strip() == pid and pid.isdigit()  # the child's pid was in cgroup.procs before it ran
    assert high.strip() == str(256 << 20) and got == "got from stdin"
    first = done.stderr.splitlines()[0]
    path = first.removeprefix("vmmemctl run: in cgroup ").partition(", memory.high 256 MiB;")[0]
    assert path.startswith("/sys/fs/cgroup/vmmemctl.slice/run-") and ", memory.high 256 MiB;" in first, first
    named = run_command(path)  # the cgroups view's name for it: "vmmemctl run: sh -c d=..." (cut to 160 escaped)
    assert named is not None and f"sh -c {CHILD}".startswith(named) and len(named) > 40, named
    assert "group page cache" in done.stderr and "in cgroup /sys/fs/cgroup/vmmemctl.slice/run-" in done.stderr
    with Store(db) as store:
        (event,) = store.events(kinds=["reclaim"])
    assert event.rule == "run:sh" and event.data["cgroup"].startswith("/sys/fs/cgroup/vmmemctl.slice/run-")
    assert event.data["cgroup_page_cache_before_bytes"] == 300 << 20 and event.data["methods_run"] == ["gradual", "compact"]
    assert not (kernel.root / "sys/fs/cgroup/vmmemctl.slice").exists()  # the group, and the slice, removed
    assert kernel.requests == []  # the VM's memory.reclaim: untouched


@needs_root
def test_keep_gives_nothing_back_and_still_removes_the_group(kernel, tmp_path):
    db = tmp_path / "h.db"
    script = 'd="$ROOT$VMMEMCTL_RUN_CGROUP"; cat "$d/cgroup.procs"; echo; echo $$; : > "$d/cgroup.procs"'
    done = run_cli("run", "--keep", "--proc-root", str(kernel.proc), "--db", str(db), "--config", conf(tmp_path),
                   "--", "sh", "-c", script, env={"ROOT": str(kernel.root)})
    assert done.returncode == 0, done.stderr
    procs, pid = done.stdout.split()[:2]
    assert procs == pid and "--keep: not reclaimed" in done.stderr
    assert not db.exists() or not Store(db).events(kinds=["reclaim"])
    assert not (kernel.root / "sys/fs/cgroup/vmmemctl.slice").exists()


def test_without_cgroup_v2_the_command_runs_plainly_and_says_so(kernel, tmp_path):
    write_mountinfo(kernel.proc, MOUNTINFO_V1)
    done = subprocess.run([sys.executable, "-m", "monitor", "run", "--proc-root", str(kernel.proc), "--db",
                           str(tmp_path / "h.db"), "--", "sh", "-c", "cat; echo err >&2; exit 7"],
                          input="through\n", capture_output=True, text=True, timeout=60, cwd=REPO,
                          env={**os.environ, "VMMEMCTL_CONFIG": ""})
    assert done.returncode == 7 and done.stdout == "through\n"
    said = done.stderr.splitlines()
    assert said[-1] == "err" and len(said) == 2
    assert "only cgroup v1 is mounted here" in said[0] and "running sh plainly" in said[0] or \
        "needs root" in said[0]
    assert not (kernel.root / "sys/fs/cgroup/vmmemctl.slice").exists()


@pytest.mark.parametrize("sig, script, code", [
    (signal.SIGTERM, 'trap "exit 42" TERM; echo > "$READY"; while :; do sleep 0.2; done', 42),  # caught
    (signal.SIGTERM, 'echo > "$READY"; exec sleep 60', 128 + signal.SIGTERM),  # killed by it: 128+N
    (signal.SIGHUP, 'echo > "$READY"; exec sleep 60', 128 + signal.SIGHUP),
    (signal.SIGINT, 'trap "exit 9" INT; echo > "$READY"; while :; do sleep 0.2; done', 9),
])
def test_signals_are_sent_on_and_the_exit_code_comes_back(kernel, tmp_path, sig, script, code):
    write_mountinfo(kernel.proc, MOUNTINFO_V1)  # no group needed for this
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-m", "monitor", "run", "--proc-root", str(kernel.proc), "--db",
                             str(tmp_path / "h.db"), "--", "sh", "-c", script], cwd=REPO,
                            env={**os.environ, "VMMEMCTL_CONFIG": "", "READY": str(ready)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # as from a terminal: a suite run under nohup ignores SIGHUP, and an ignored
                            # signal stays ignored through exec (COMMAND would inherit it, as it should)
                            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert ready.exists(), proc.communicate(timeout=10)
    proc.send_signal(sig)  # to vmmemctl only, as a supervisor or `kill` would: COMMAND gets it from vmmemctl
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err


def test_bad_input_is_one_line(kernel, tmp_path):
    base = ("run", "--proc-root", str(kernel.proc), "--db", str(tmp_path / "h.db"))
    for args, words in [((), "expected a command after --"),
                        (("--cache-max", "lots", "--", "true"), "run --cache-max 'lots': expected a size"),
                        (("--cache-max", "50%", "--", "true"), "expected an absolute size")]:
        done = run_cli(*base, *args)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and words in done.stderr, (args, done.stderr)
    write_mountinfo(kernel.proc, MOUNTINFO_V1)
    done = run_cli(*base, "--", "no-such-command-here")
    assert done.returncode == 127 and "vmmemctl run: no-such-command-here: No such file or directory" in done.stderr


@needs_root
def test_with_a_watcher_recording_the_watcher_gives_the_groups_cache_back(kernel, tmp_path):
    from helpers import start_watch, wait_for_samples

    db = tmp_path / "h.db"
    watcher = start_watch(db, "--proc-root", str(kernel.proc), "--config", conf(tmp_path))
    try:
        wait_for_samples(db, 2, timeout=60)
        done = subprocess.run([sys.executable, "-m", "monitor", "run", "--proc-root", str(kernel.proc), "--db",
                               str(db), "--config", conf(tmp_path), "--", "sh", "-c", CHILD],
                              input="x\n", capture_output=True, text=True, timeout=120, cwd=REPO,
                              env={**os.environ, "VMMEMCTL_CONFIG": "", "ROOT": str(kernel.root)})
    finally:
        watcher.terminate()
        watcher.communicate(timeout=60)
    assert done.returncode == 5, done.stderr
    assert f"asking the watcher: vmmemctl watch (pid {watcher.pid}" in done.stderr and "group page cache" in done.stderr
    with Store(db) as store:
        (event,) = store.events(kinds=["reclaim"])
    assert event.rule.startswith("run:sh (") and event.data["cgroup"].startswith("/sys/fs/cgroup/vmmemctl.slice/run-")
    assert event.data["cgroup_page_cache_before_bytes"] == 300 << 20
    assert not (kernel.root / "sys/fs/cgroup/vmmemctl.slice").exists()
