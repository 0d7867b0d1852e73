"""`vmmemctl run` as a user with the root watcher running (issue 26, item 3): the watcher makes the job's
group and moves the user's waiting child in (`run_start`), and gives the group's cache back and removes
it when the job ends (`run_end`). Real processes: a root `vmmemctl watch` on a fake cgroup v2 tree
(this machine's cgroups are never written), and `vmmemctl run` as 'nobody'.

In a tree, cgroup.procs is a plain file and nothing moves for real: the test plays the kernel's part
(the group's memory.stat) once the child has said it started, then lets it end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import REPO, needs_nobody
from monitor.control import ControlError
from monitor.control.client import call
from monitor.history.places import watcher_of
from test_run import conf, kernel  # noqa: F401  (the fake cgroup v2 tree, and a quick reclaim's config)
from test_watcher_clients import DEADLINE, events, reclaim_lock, system, watching  # noqa: F401

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the watcher makes groups as root")
MiB = 1024**2


def nobody_run(shared: Path, env: dict, *args: str) -> subprocess.Popen:
    """`vmmemctl run ARGS` as 'nobody', with a HOME of its own in ``shared``."""
    home = shared / "home"
    home.mkdir(exist_ok=True)
    home.chmod(0o777)
    base = {"HOME": str(home), "PATH": "/usr/bin:/bin", "VMMEMCTL_CONFIG": ""}
    return subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                             "monitor", "run", *args], cwd=REPO, env={**base, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, proc: subprocess.Popen) -> str:
    deadline = time.monotonic() + DEADLINE
    while not (path.exists() and path.read_text().endswith("\n")):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"no {path.name}: {proc.communicate(timeout=10)}")
        time.sleep(0.1)
    return path.read_text().strip()


@needs_root
@needs_nobody
def test_a_user_runs_a_job_in_a_group_the_root_watcher_makes_and_gives_back(kernel, system, reclaim_lock,  # noqa: F811
                                                                           shared_dir, tmp_path):
    started, go = shared_dir / "started", shared_dir / "go"
    os.mkfifo(go)
    go.chmod(0o666)
    child = f'echo $$ > {started}; read line < {go}; echo "got $line"; exit 5'
    with watching(system.db, "--proc-root", str(kernel.proc), "--allow", "nobody", "--config", conf(tmp_path)) as watch:
        run = nobody_run(shared_dir, system.env, "--cache-max", "256MiB", "--", "sh", "-c", child)
        pid = wait_for(started, run)
        slice_ = kernel.root / "sys/fs/cgroup/vmmemctl.slice"
        (group,) = [g for g in slice_.iterdir() if g.is_dir() and (g / "cgroup.procs").read_text().strip() == pid]
        assert group.name.startswith(f"run-{pid}-sh") and (group / "memory.high").read_text() == str(256 * MiB)
        # the kernel's part: the group's files, 300 MiB of cache charged to it
        (group / "cgroup.controllers").write_text("memory pids\n")
        (group / "memory.stat").write_text("anon 0\nfile 314572800\nactive_file 0\ninactive_file 314572800\n"
                                           "workingset_refault_file 0\n")
        (group / "memory.reclaim").write_text("")
        (group / "cgroup.procs").write_text("")
        with open(go, "w") as f:
            f.write("go\n")
        out, err = run.communicate(timeout=120)
        assert run.returncode == 5 and out == "got go\n", err  # COMMAND's exit code and streams
        said = err.splitlines()
        assert said[0] == (f"vmmemctl run: in cgroup /sys/fs/cgroup/vmmemctl.slice/{group.name}, memory.high 256 MiB, "
                           f"made by vmmemctl watch (pid {watch.pid}, root) recording {system.db}; its cache goes "
                           "back when sh ends"), err
        assert "group page cache" in err and "Traceback" not in err
        assert not group.exists() and not slice_.exists()  # removed by the watcher, which made it
        (event,) = events(system.db, "reclaim")
        assert event.rule.startswith("run:sh (nobody, pid ") and event.data["cgroup"].endswith(group.name)
        assert event.data["cgroup_page_cache_before_bytes"] == 300 * MiB
        assert event.data["methods_run"] == ["gradual", "compact"]
        assert kernel.requests == []  # the VM's own memory.reclaim: untouched


@needs_root
@needs_nobody
def test_where_the_watcher_can_make_no_group_the_job_runs_plainly_and_says_why(kernel, system, reclaim_lock,  # noqa: F811
                                                                             shared_dir, tmp_path):
    (kernel.root / "sys/fs/cgroup/cgroup.controllers").write_text("cpu pids\n")  # v2 without memory
    with watching(system.db, "--proc-root", str(kernel.proc), "--allow", "nobody", "--config", conf(tmp_path)):
        run = nobody_run(shared_dir, system.env, "--", "sh", "-c", "echo ran; exit 3")
        out, err = run.communicate(timeout=120)
    assert run.returncode == 3 and out == "ran\n", err
    (line,) = err.splitlines()
    assert line.startswith("vmmemctl run: the watcher made no group (cgroup v2 at /sys/fs/cgroup has no memory "
                           "controller"), line
    assert line.endswith("running sh plainly; its cache cannot be given back per group"), line
    assert events(system.db, "reclaim") == []


@needs_root
def test_the_watcher_moves_only_the_askers_own_child_and_ends_only_its_own_groups(kernel, system, reclaim_lock,  # noqa: F811
                                                                                 tmp_path):
    with watching(system.db, "--proc-root", str(kernel.proc), "--config", conf(tmp_path)):
        control = watcher_of(system.db).control
        # a grandchild: this process's child's child, not its own (run_start moves only the asker's child)
        shell = subprocess.Popen(["sh", "-c", "sleep 60 & echo $!; wait"], stdout=subprocess.PIPE, text=True)
        try:
            other = int(shell.stdout.readline())
            with pytest.raises(ControlError, match=rf"pid {other} is not a child of the asking process \(pid \d+, uid 0\)"):
                call(control, "run_start", pid=other, argv=["sh"])
        finally:
            subprocess.run(["pkill", "-P", str(shell.pid)])
            shell.wait(timeout=30)
            shell.stdout.close()
        with pytest.raises(ControlError, match="no run group /sys/fs/cgroup/x of uid 0 in this watcher"):
            call(control, "run_end", group="/sys/fs/cgroup/x")
        with pytest.raises(ControlError, match=r"argv: expected a command line"):
            call(control, "run_start", pid=2, argv=[])
    assert not (kernel.root / "sys/fs/cgroup/vmmemctl.slice").exists()
