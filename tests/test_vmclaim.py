"""The VM claim (monitor/kernel/vmclaim.py): one watcher acts on the WSL2 VM, the others say who does.

Real kernel, real processes. Each process is a small worker driven through its stdin/stdout, one
command and one answer per line, so the processes take turns through pipes, never through sleeps.
The two-distros test runs the workers in mount and PID namespaces of their own, as WSL runs its
distros, sharing one folder bind-mounted into each, as WSL shares /mnt/wsl.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import REPO
from monitor.errors import UserError
from monitor.kernel.vmclaim import ENV_DIR, ClaimDir, Owner, VmClaim, claim_dir, distro_name, lock_pids

WORKER = r"""
import json, os, sys
from monitor.errors import UserError
from monitor.kernel.vmclaim import VmClaim, claim_dir, distro_name, lock_pids

claim = VmClaim(claim_dir(os.environ).path, distro_name(os.environ))

def who(owner):
    return None if owner is None else {"pid": owner.pid, "distro": owner.distro, "holder": owner.holder,
                                       "words": owner.words()}

def reply(answer):
    print(json.dumps(answer), flush=True)

def churn(n):
    failures = []
    for _ in range(n):
        owner = claim.try_take()
        if owner is not None:
            failures.append(who(owner))
        claim.release()
    return {"failures": failures}

def watch(n, stop):
    count, seen = 0, set()
    while count < n or not os.path.exists(stop):
        owner = claim.owner()
        count += 1
        seen.add(owner.pid if owner else None)
        if count == 1:
            reply({"started": True})
    return {"count": count, "seen": sorted(seen, key=str)}

def whoami():
    try:
        st = os.stat(claim.path)
        pids = lock_pids(st.st_dev, st.st_ino)
    except OSError:
        pids = None
    return {"pid": os.getpid(), "pidns": os.readlink("/proc/self/ns/pid"), "mntns": os.readlink("/proc/self/ns/mnt"),
            "lock_pids": pids}

for line in sys.stdin:
    cmd, *args = line.split()
    try:
        if cmd == "take":
            reply({"owner": who(claim.try_take())})
        elif cmd == "owner":
            reply({"owner": who(claim.owner())})
        elif cmd == "owners":
            reply({"owners": [who(claim.owner()) for _ in range(int(args[0]))]})
        elif cmd == "release":
            claim.release()
            reply({})
        elif cmd == "churn":
            reply(churn(int(args[0])))
        elif cmd == "watch":
            reply(watch(int(args[0]), args[1]))
        elif cmd == "whoami":
            reply(whoami())
    except UserError as exc:
        reply({"error": str(exc)})
"""


class Worker:
    """A process running WORKER; ``ask`` sends one command and waits for its one answer."""

    def __init__(self, log: Path, claims: Path, distro: str, prefix: tuple[str, ...] = (), **popen):
        self.log = log
        env = {**os.environ, ENV_DIR: str(claims), "WSL_DISTRO_NAME": distro, "PYTHONPATH": str(REPO)}
        with open(log, "w") as err:
            self.proc = subprocess.Popen([*prefix, sys.executable, "-c", WORKER], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=REPO, **popen)
        self.pid = self.whoami()["pid"]

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def answer(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"the worker ended (rc {self.proc.poll()}): {self.log.read_text()}"
        return json.loads(line)

    def ask(self, command: str) -> dict:
        self.send(command)
        return self.answer()

    def whoami(self) -> dict:
        return self.ask("whoami")

    def take(self) -> dict | None:
        return self.ask("take")["owner"]

    def owner(self) -> dict | None:
        return self.ask("owner")["owner"]

    def close(self) -> None:
        """Let it end by itself (stdin closed) and wait: its locks are gone when this returns."""
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


@pytest.fixture
def workers(tmp_path):
    started: list[Worker] = []

    def start(claims: Path, distro: str, prefix: tuple[str, ...] = (), **popen) -> Worker:
        worker = Worker(tmp_path / f"worker{len(started)}.log", claims, distro, prefix, **popen)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.proc.kill()
        worker.proc.wait(timeout=60)


needs_root = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
NOBODY = {"user": 65534, "group": 65534, "extra_groups": []}


# --- 1. two processes, one claim ------------------------------------------------------------------


def test_the_first_owns_the_second_is_told_who_and_takes_over_when_the_first_is_killed(tmp_path, workers):
    claims = tmp_path / "claims"
    ubuntu, debian = workers(claims, "Ubuntu"), workers(claims, "Debian")
    assert ubuntu.take() is None
    told = debian.take()
    assert (told["pid"], told["distro"], told["holder"]) == (ubuntu.pid, "Ubuntu", "vmmemctl watch")
    assert told["words"].startswith(f"pid {ubuntu.pid} in distro Ubuntu (vmmemctl watch) since ")
    assert debian.owner() == told
    ubuntu.proc.kill()
    assert ubuntu.proc.wait(timeout=60) == -9
    # The killed owner's record is still in the file, but the kernel let go of its lock: nobody owns.
    assert json.loads((claims / "vm.claim").read_text())["pid"] == ubuntu.pid
    assert debian.owner() is None
    assert debian.take() is None
    assert debian.owner()["pid"] == debian.pid and debian.owner()["distro"] == "Debian"


def test_a_second_claim_in_the_same_process_is_told_the_first(tmp_path):
    first, second = VmClaim(tmp_path, "Ubuntu"), VmClaim(tmp_path, "Ubuntu", holder="vmmemctl tui")
    assert first.try_take() is None
    assert first.try_take() is None  # taking again what we hold is no change
    assert second.try_take() == first.owner()
    assert second.owner().pid == os.getpid() and second.owner().holder == "vmmemctl watch"
    first.release()
    assert second.owner() is None
    assert second.try_take() is None
    second.release()


# --- 2. two distros: two mount and PID namespaces sharing one folder -------------------------------


def _unshare_works() -> str | None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root (mount namespaces)"
    if shutil.which("unshare") is None:
        return "needs unshare(1)"
    probe = subprocess.run(["unshare", "-m", "-p", "-f", "--mount-proc", "true"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"unshare cannot make namespaces here: {probe.stderr.strip()}"


def test_two_distros_sharing_a_folder_as_wsl_shares_mnt_wsl(tmp_path, workers):
    why_not = _unshare_works()
    if why_not:
        pytest.skip(why_not)
    shared, point = tmp_path / "shared", tmp_path / "point"  # `point` exists in every namespace made below
    shared.mkdir()
    point.mkdir()
    distro = ("unshare", "-m", "-p", "-f", "--mount-proc", "--propagation", "private",
              "sh", "-c", 'mount --bind "$1" "$2" && shift 2 && exec "$@"', "sh", str(shared), str(point))
    ubuntu, debian = workers(point / "vmmemctl", "Ubuntu", distro), workers(point / "vmmemctl", "Debian", distro)
    a, b = ubuntu.whoami(), debian.whoami()
    own = {"pidns": os.readlink("/proc/self/ns/pid"), "mntns": os.readlink("/proc/self/ns/mnt")}
    assert len({a["pidns"], b["pidns"], own["pidns"]}) == 3 and len({a["mntns"], b["mntns"], own["mntns"]}) == 3

    assert ubuntu.take() is None
    told = debian.take()
    assert (told["pid"], told["distro"]) == (a["pid"], "Ubuntu")
    assert told["words"].startswith(f"pid {a['pid']} in distro Ubuntu (vmmemctl watch)")
    assert debian.owner() == told  # asked without the lock, through /proc/locks
    # Debian's /proc/locks cannot name Ubuntu's flock (another PID namespace): it sees the OFD lock only.
    seen = debian.whoami()["lock_pids"]
    assert seen and all(pid <= 0 for pid in seen)
    # The folders met through the bind mounts alone: this namespace's `point` is still empty.
    assert (shared / "vmmemctl" / "vm.claim").is_file() and list(point.iterdir()) == []

    ubuntu.close()
    assert debian.owner() is None
    assert debian.take() is None
    assert ubuntu.proc.returncode == 0
    assert json.loads((shared / "vmmemctl" / "vm.claim").read_text())["distro"] == "Debian"


# --- 3. owner() never takes the lock ----------------------------------------------------------------


def test_asking_who_owns_leaves_the_owner_and_the_next_taker_alone(tmp_path, workers):
    claims = tmp_path / "claims"
    holder, observer, taker = workers(claims, "Ubuntu"), workers(claims, "Debian"), workers(claims, "Arch")
    assert observer.owner() is None and not claims.exists()  # asking makes nothing
    assert holder.take() is None
    owners = observer.ask("owners 200")["owners"]
    assert {o["pid"] for o in owners} == {holder.pid}
    assert taker.take()["pid"] == holder.pid
    assert holder.owner()["pid"] == holder.pid  # still the holder's
    holder.ask("release")
    assert observer.owner() is None
    assert taker.take() is None


def test_an_observer_asking_1000_times_never_makes_a_taker_fail(tmp_path, workers):
    claims, stop = tmp_path / "claims", tmp_path / "stop"
    observer, taker = workers(claims, "Debian"), workers(claims, "Ubuntu")
    observer.send(f"watch 1000 {stop}")
    assert observer.answer() == {"started": True}  # it is asking now, and goes on until told to stop
    assert taker.ask("churn 1000") == {"failures": []}
    stop.touch()
    watched = observer.answer()
    assert watched["count"] >= 1000
    assert set(watched["seen"]) <= {None, taker.pid}  # it saw the claim free, or the taker's


# --- the record, /proc/locks, and their fallbacks -----------------------------------------------------


def test_without_proc_locks_the_record_counts_while_its_pid_runs(tmp_path):
    holder = VmClaim(tmp_path, "Ubuntu")
    observer = VmClaim(tmp_path, "Debian", proc_locks=str(tmp_path / "no-such-locks"))
    assert holder.try_take() is None
    assert (observer.owner().pid, observer.owner().distro) == (os.getpid(), "Ubuntu")
    holder.release()
    assert observer.owner() is None  # a release empties the record
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / "vm.claim").write_text(json.dumps({"pid": gone.pid, "distro": "Ubuntu", "holder": "x", "since": 1}))
    assert observer.owner() is None  # a killed holder's record, its pid gone


def test_lock_pids_reads_the_kernels_lines(tmp_path):
    locks = tmp_path / "locks"
    locks.write_text("1: FLOCK  ADVISORY  WRITE 4242 103:05:77 0 EOF\n"
                     "1: -> FLOCK  ADVISORY  WRITE 5151 103:05:77 0 EOF\n"
                     "2: OFDLCK ADVISORY  READ -1 103:05:77 0 EOF\n"
                     "3: POSIX  ADVISORY  WRITE 6161 103:05:77 0 EOF\n"
                     "4: FLOCK  ADVISORY  WRITE 7171 103:05:78 0 EOF\n"
                     "5: FLOCK  ADVISORY  WRITE 8181 00:05:77 0 EOF\n")
    assert lock_pids(os.makedev(0x103, 5), 77, str(locks)) == [4242, -1]
    assert lock_pids(os.makedev(0x103, 5), 99, str(locks)) == []
    assert lock_pids(os.makedev(0x103, 5), 77, str(tmp_path / "none")) is None


@needs_root
def test_another_users_claim_is_locked_read_only_and_told_right(shared_dir, workers, tmp_path):
    claims = shared_dir / "claims"
    killed = workers(claims, "Ubuntu")  # root's, killed: its record stays in a file nobody cannot write
    assert killed.take() is None
    killed.proc.kill()
    killed.proc.wait(timeout=60)
    assert stat.S_IMODE(claims.stat().st_mode) == 0o755 and stat.S_IMODE((claims / "vm.claim").stat().st_mode) == 0o644
    user = workers(claims, "Ubuntu", **NOBODY)
    assert user.take() is None  # read-only is enough to lock
    assert json.loads((claims / "vm.claim").read_text())["pid"] == killed.pid  # ... but not to write
    # The flock's pid, named in this namespace, is not the record's: the record is not believed.
    told = VmClaim(claims, "Ubuntu").try_take()
    assert (told.pid, told.distro, told.holder) == (user.pid, "Ubuntu", "")
    user.close()
    root = VmClaim(claims, "Ubuntu")
    assert root.try_take() is None
    root.release()


# --- 4. where the claim lives --------------------------------------------------------------------------

MOUNTS = ("22 1 8:32 / / rw,relatime shared:1 - ext4 /dev/sdc rw,discard\n"
          "60 22 0:52 / /mnt/wslg rw,relatime shared:4 - tmpfs none rw\n"
          "61 22 0:53 / /mnt/wsl/sub rw,relatime shared:5 - tmpfs none rw\n"
          "62 22 0:54 / /mnt/wsl\\040x rw,relatime shared:6 - tmpfs none rw\n")
WSL_MOUNT = "58 22 0:50 / /mnt/wsl rw,relatime shared:2 - tmpfs none rw\n"


def fake_proc(tmp_path: Path, mountinfo: str | None) -> Path:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True, exist_ok=True)
    if mountinfo is not None:
        (proc / "self" / "mountinfo").write_text(mountinfo)
    return proc


def test_claim_dir_is_mnt_wsl_where_it_is_mounted(tmp_path):
    place = claim_dir({}, fake_proc(tmp_path, MOUNTS + WSL_MOUNT))
    assert (place.path, place.vm_wide) == (Path("/mnt/wsl/vmmemctl"), True)
    assert "/mnt/wsl is mounted" in place.why


def test_the_environment_names_the_claim_dir_first(tmp_path):
    proc = fake_proc(tmp_path, MOUNTS + WSL_MOUNT)
    place = claim_dir({ENV_DIR: str(tmp_path / "c")}, proc)
    assert (place.path, place.vm_wide) == (tmp_path / "c", True) and ENV_DIR in place.why
    assert claim_dir({ENV_DIR: ""}, proc).path == Path("/mnt/wsl/vmmemctl")  # empty: not set


def test_claim_dir_falls_back_to_run_lock_then_the_runtime_dir(tmp_path, monkeypatch):
    proc = fake_proc(tmp_path, MOUNTS)  # /mnt/wslg, /mnt/wsl/sub, "/mnt/wsl x": none of them is /mnt/wsl
    run_lock = tmp_path / "run-lock"
    run_lock.mkdir()
    place = claim_dir({}, proc, run_lock=run_lock)
    assert place == ClaimDir(run_lock / "vmmemctl-vm", False, place.why) and "not mounted" in place.why
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg-run"))
    place = claim_dir({}, proc, run_lock=tmp_path / "no-run-lock")
    assert (place.path, place.vm_wide) == (tmp_path / "xdg-run" / "vmmemctl", False)
    assert "not writable" in place.why


def test_claim_dir_without_a_mountinfo_asks_the_mount_point_itself(tmp_path):
    place = claim_dir({}, fake_proc(tmp_path, None))
    assert place.vm_wide == os.path.ismount("/mnt/wsl")


def test_claim_dir_on_this_machine_is_one_of_its_choices():
    import platformdirs

    place = claim_dir({})
    fallbacks = {Path("/run/lock/vmmemctl-vm"), Path(platformdirs.user_runtime_dir("vmmemctl"))}
    assert place.path == Path("/mnt/wsl/vmmemctl") if place.vm_wide else place.path in fallbacks
    assert place.why


def test_distro_name_is_wsls_else_the_hostname():
    assert distro_name({"WSL_DISTRO_NAME": "Ubuntu-24.04"}) == "Ubuntu-24.04"
    assert distro_name({}) == socket.gethostname()


def test_owner_words():
    today = time.localtime()
    at_1402 = time.mktime((*today[:3], 14, 2, 0, 0, 0, -1))
    assert Owner(4242, "Ubuntu", "vmmemctl watch", at_1402).words() == \
        "pid 4242 in distro Ubuntu (vmmemctl watch) since 14:02"
    days_ago = time.mktime((today[0], today[1], today[2] - 3, 14, 2, 0, 0, 0, -1))
    assert Owner(7, "Debian", "", days_ago).words() == \
        f"pid 7 in distro Debian since {time.strftime('%Y-%m-%d', time.localtime(days_ago))} 14:02"
    assert Owner(None, "", "", None).words() == "pid ? in distro ?"


# --- 5. folders and files ---------------------------------------------------------------------------------


def test_a_folder_that_cannot_be_made_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError) as caught:
        VmClaim(tmp_path / "file" / "vmmemctl", "Ubuntu").try_take()
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path / "file") in message and ENV_DIR in message


@needs_root
def test_a_folder_another_user_cannot_make_is_one_line(shared_dir, workers):
    root_only = shared_dir / "root-only"
    root_only.mkdir(mode=0o755)
    answer = workers(root_only / "vmmemctl", "Ubuntu", **NOBODY).ask("take")
    assert answer["error"].startswith(f"cannot make the VM claim {root_only / 'vmmemctl'}: Permission denied")
    assert "\n" not in answer["error"] and ENV_DIR in answer["error"]
    private = shared_dir / "private"
    private.mkdir(mode=0o700)
    answer = workers(private / "vmmemctl", "Ubuntu", **NOBODY).ask("owner")
    assert "Permission denied" in answer["error"] and "\n" not in answer["error"]


def test_the_folder_and_file_are_open_to_all_whatever_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        claim = VmClaim(tmp_path / "a" / "vmmemctl", "Ubuntu")
        assert claim.try_take() is None
    finally:
        os.umask(old)
    assert stat.S_IMODE(claim.directory.stat().st_mode) == 0o755
    assert stat.S_IMODE(claim.path.stat().st_mode) == 0o644
    claim.release()
    assert claim.path.read_text() == ""  # released: no record left to mislead
