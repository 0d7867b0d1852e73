"""The running watcher and its clients, as users run them (issue 24): real `vmmemctl watch`
processes, and real client processes (root, and 'nobody') that find the watcher without flags and
ask it to act through its control endpoint. Nothing of the project is mocked; every verdict is
read from what the processes leave behind (their output, the history, the log, the files a
reclaim writes), polled with generous deadlines, never sub-second timing.

    1  one root watcher in the system places and its clients: snooze, pause (refused / allowed),
       status and history as a user, prompts answered (expired / pending / twice), reclaim
       --dry-run, reload
    2  two WSL distros (two mount namespaces sharing one folder, as /mnt/wsl): one acts, one records
    3  [control] second_watcher = "exit": the second watcher exits in one line and records nothing
    4  the log lines name the pid of the watcher that wrote them
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import REPO, as_nobody, needs_nobody, run_cli, start_watch, tree, wait_for_samples
from monitor.control import ControlError
from monitor.control.client import call
from monitor.history.places import watcher_of
from monitor.history.store import Event, Store
from monitor.kernel.vmclaim import VmClaim
from monitor.policy.state import load_state

TREE = tree("wsl2-ubuntu")
DEADLINE = 30.0  # seconds: for anything a loaded machine may be slow at; never a verdict on speed
# One log record's first line: "2026-01-02 03:04:05,678 INFO [4242] monitor.x: words"
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) \[(\d+)\] \S+: ")
QUIET_RULES = """
[reclaim]
settle = "0s"

[[rule]]  # the only rule (any [[rule]] replaces the defaults): it never fires within a test
name = "quiet"
metric = "page_cache"
above = "99%"
for = "1h"
action = "notify"
"""


# ------------------------------------------------------------------ helpers


@contextlib.contextmanager
def watching(db: Path, *extra: str, env: dict | None = None, samples: int = 2) -> Iterator[subprocess.Popen]:
    """A `vmmemctl watch` recording ``db`` (with samples in it), terminated however the test ends."""
    proc = start_watch(db, *extra, env=env)
    try:
        wait_for_samples(db, samples, timeout=DEADLINE)
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=30)
    finally:
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def events(db: Path, kind: str | None = None) -> list[Event]:
    with Store(db, readonly=True) as store:
        return store.events(since=0, kinds=[kind] if kind else None)


def wait_for_event(db: Path, found: Callable[[Event], bool], what: str, timeout: float = DEADLINE) -> Event:
    deadline = time.monotonic() + timeout
    while True:
        hits = [e for e in events(db) if found(e)]
        if hits:
            return hits[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no event {what} within {timeout:g}s; the history has: "
                                 f"{[(e.kind, e.message) for e in events(db)]}")
        time.sleep(0.2)


def answer_line(stderr: str) -> str:
    """The client said which watcher it asks, then exactly one line: the watcher's answer."""
    lines = stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("asking the watcher: "), stderr
    return lines[1]


def db_log(db: Path) -> Path:
    return db.with_suffix(".log")  # where start_watch logs


def prompt_status(db: Path, prompt_id: int) -> str | None:
    return next(e.status for e in events(db, "prompt") if e.id == prompt_id)


@dataclass
class System:
    """The system places (the root watcher's history and run dir), in a folder 'nobody' can reach."""

    db: Path
    run: Path
    env: dict[str, str]  # what a 'nobody' client needs to look where root's watcher is


@pytest.fixture
def system(shared_dir, monkeypatch) -> System:
    places = {}
    for name in ("system", "run"):
        places[name] = shared_dir / name
        places[name].mkdir()
        places[name].chmod(0o755)  # readable by all, writable by root only, whatever the umask
    env = {"VMMEMCTL_SYSTEM_DIR": str(places["system"]), "VMMEMCTL_RUN_DIR": str(places["run"])}
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # root's clients (run_cli) look there with no flags
    return System(places["system"] / "history.db", places["run"], env)


@pytest.fixture
def reclaim_lock(tmp_path, monkeypatch) -> Path:
    """Watchers started by a test take a reclaim lock of its own, never the machine's."""
    path = tmp_path / "reclaim.lock"
    monkeypatch.setenv("VMMEMCTL_RECLAIM_LOCK", str(path))
    return path


# ------------------------------------------------------------------ 1. one root watcher and its clients


def test_root_snoozes_the_system_watcher_with_no_flags_and_the_watcher_records_who_asked(system, reclaim_lock):
    with watching(system.db, "--proc-root", str(TREE)) as proc:
        before = time.time()
        done = run_cli("snooze", "1h")
        after = time.time()
        assert done.returncode == 0, done
        assert done.stderr == f"asking the watcher: vmmemctl watch (pid {proc.pid}, root) recording {system.db}\n"
        assert done.stdout.startswith("snoozed until "), done.stdout
        # "(asked by ...)" is the watcher's record: a client writing the history itself names nobody.
        [state] = events(system.db, "state")
        asker = re.fullmatch(r"snoozed for 1h \(asked by root, pid (\d+)\)", state.message)
        assert asker and int(asker[1]) not in (proc.pid, os.getpid()), state.message  # the client's pid
        with Store(system.db, readonly=True) as store:
            until = load_state(store).snoozed_until
        assert until is not None and before + 3600 <= until <= after + 3600


@needs_nobody
def test_a_user_not_allowed_is_refused_in_one_line_and_nothing_is_recorded(system, reclaim_lock):
    with watching(system.db, "--proc-root", str(TREE)) as proc:
        done = as_nobody("pause", "30m", env=system.env)
        assert done.returncode == 3, done  # a refusal is a missing privilege
        assert done.stdout == ""
        line = answer_line(done.stderr)
        assert f"pid {proc.pid}, root" in done.stderr  # it found root's watcher with no flags
        assert "nobody (uid 65534) may not act" in line and line.startswith("vmmemctl: refused: "), line
        # The watcher says whom it refused, in its log; and changed nothing.
        log = db_log(system.db)
        deadline = time.monotonic() + DEADLINE
        while "refused pid" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert re.search(r"control: refused pid \d+ uid 65534 \(nobody\)", log.read_text())
        assert events(system.db, "state") == []
        with Store(system.db, readonly=True) as store:
            assert load_state(store).paused_until is None
        assert proc.poll() is None  # and carries on


@needs_nobody
def test_a_user_the_watcher_allows_pauses_and_resumes_it_and_is_named(system, reclaim_lock):
    with watching(system.db, "--proc-root", str(TREE), "--allow", "nobody"):
        paused = as_nobody("pause", "30m", env=system.env)
        assert paused.returncode == 0, paused
        assert paused.stdout.startswith("auto-reclaim paused until "), paused.stdout
        assert paused.stderr.startswith("asking the watcher: ") and len(paused.stderr.splitlines()) == 1
        with Store(system.db, readonly=True) as store:
            assert load_state(store).paused_until is not None
        resumed = as_nobody("resume", env=system.env)
        assert resumed.returncode == 0 and resumed.stdout == "auto-reclaim resumed\n", resumed
        words = [e.message for e in events(system.db, "state")]
        assert len(words) == 2, words
        assert re.fullmatch(r"auto-reclaim paused for 30m \(asked by nobody, pid \d+\)", words[0]), words
        assert re.fullmatch(r"auto-reclaim resumed \(asked by nobody, pid \d+\)", words[1]), words
        with Store(system.db, readonly=True) as store:
            assert load_state(store).paused_until is None


@needs_nobody
def test_a_user_sees_the_system_watcher_in_status_and_its_events_in_history(system, reclaim_lock):
    with watching(system.db, "--proc-root", str(TREE)) as proc:
        assert run_cli("snooze", "1h").returncode == 0  # an event by root, for the user to read
        status = as_nobody("status", "--json", "--cpu-window", "0", "--proc-root", str(TREE), env=system.env)
        assert status.returncode == 0, status.stderr
        data = json.loads(status.stdout)
        assert data["history"] == str(system.db)
        watcher = data["watcher"]
        assert (watcher["pid"], watcher["user"], watcher["db"]) == (proc.pid, "root", str(system.db))
        assert watcher["control"] == str(system.run / "control.sock") and watcher["holder"] == "vmmemctl watch"
        listed = as_nobody("history", "--events", env=system.env)
        assert listed.returncode == 0 and listed.stderr == "", listed
        rows = listed.stdout.splitlines()
        assert rows[0].split() == ["time", "kind", "status", "message"], rows
        assert any(row.endswith(f"watcher started (pid {proc.pid}, every 0.2s)") for row in rows), rows
        assert any(re.search(r"\bstate +snoozed for 1h \(asked by root, pid \d+\)$", row) for row in rows), rows


@needs_nobody
def test_status_gives_the_watchers_decision_under_its_own_config(system, reclaim_lock, tmp_path):
    """A user the watcher allows: `status` says what the watcher decides under the watcher's config (its
    only rule here: page cache above 99 %), not what this user's defaults would; a user it does not
    answer, or no watcher: the policy runs here (the shipped rules) and says so."""
    config = tmp_path / "watcher.toml"
    config.write_text(QUIET_RULES)
    args = ("status", "--cpu-window", "0", "--proc-root", str(TREE))
    with watching(system.db, "--proc-root", str(TREE), "--config", str(config), "--allow", "nobody"):
        data = json.loads(as_nobody(*args, "--json", env=system.env).stdout)
        assert data["decision"]["by"] == "watcher", data["decision"]
        assert data["decision"]["action"] == "none" and "(99%)" in data["decision"]["reason"], data["decision"]
        text = as_nobody(*args, env=system.env).stdout
        assert re.search(r"^decision \(the watcher's\): none: page cache .* below .* \(99%\)$", text, re.M), text
    with watching(system.db, "--proc-root", str(TREE), "--config", str(config)):  # nobody not allowed
        data = json.loads(as_nobody(*args, "--json", env=system.env).stdout)
        assert data["decision"]["by"] == "here" and "(99%)" not in data["decision"]["reason"], data["decision"]
        text = as_nobody(*args, env=system.env).stdout
        assert "\ndecision (worked out here, under this config: the watcher did not answer this user): " in text, text
    data = json.loads(as_nobody(*args, "--json", env=system.env).stdout)
    assert data["watcher"] is None and data["decision"]["by"] == "here"
    assert "(99%)" not in data["decision"]["reason"], data["decision"]


def tree_with_knobs(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the recorded tree with plain-file drop_caches and compact_memory: (the tree, sys/vm)."""
    root = tmp_path / "tree"
    shutil.copytree(TREE.parent, root)
    knobs = root / "proc" / "sys" / "vm"
    knobs.mkdir()
    for name in ("drop_caches", "compact_memory"):
        (knobs / name).write_text("")
    return root, knobs


@pytest.fixture
def prompt_watcher(tmp_path, reclaim_lock):
    """A watcher on a copy of the recorded tree whose drop_caches and compact_memory are plain files:
    a reclaim that runs writes '1' into them, so "nothing ran" is seen, not assumed. Its only rule
    never fires, and a reclaim does not settle."""
    root, knobs = tree_with_knobs(tmp_path)
    config = tmp_path / "config.toml"
    config.write_text(QUIET_RULES)
    db = tmp_path / "history.db"
    with watching(db, "--proc-root", str(root / "proc"), "--config", str(config)):
        found = watcher_of(db)
        assert found is not None and found.control is not None
        yield db, found.control, knobs


def knobs_written(knobs: Path) -> dict[str, str]:
    return {name: (knobs / name).read_text() for name in ("drop_caches", "compact_memory")}


def test_an_expired_prompt_is_refused_and_no_reclaim_runs_but_a_pending_one_does(prompt_watcher):
    db, control, knobs = prompt_watcher
    with Store(db) as store:
        expired = store.add_event("prompt", "page cache above 50%. Reclaim (pagecache)?", rule="r",
                                  status="expired", data={"method": "pagecache"})
    with pytest.raises(ControlError) as refused:
        call(control, "answer", prompt=expired, answer="reclaim", timeout=DEADLINE)
    words = str(refused.value)
    assert words == f"prompt {expired} is not pending any more: it is expired", words
    assert "\n" not in words
    assert prompt_status(db, expired) == "expired"
    assert events(db, "answer") == [] and events(db, "reclaim") == []
    assert knobs_written(knobs) == {"drop_caches": "", "compact_memory": ""}  # nothing was written

    # The same answer to a prompt still pending does run, here: so the refusal above is what stopped it.
    with Store(db) as store:
        pending = store.add_event("prompt", "page cache above 50%. Reclaim (pagecache)?", status="pending",
                                  data={"method": "pagecache"})
    told = call(control, "answer", prompt=pending, answer="reclaim", timeout=DEADLINE)
    assert (told["prompt"], told["answer"]) == (pending, "reclaimed")
    assert prompt_status(db, pending) == "reclaimed"
    assert knobs_written(knobs) == {"drop_caches": "1", "compact_memory": "1"}
    [reclaim] = events(db, "reclaim")
    assert reclaim.rule == f"prompt (root, pid {os.getpid()})" and reclaim.status == "ok", reclaim
    answers = [e.message for e in events(db, "answer")]
    assert answers == [f"prompt {pending}: reclaimed (asked by root, pid {os.getpid()})"]


def test_a_prompt_answered_snooze_is_recorded_as_snoozed_and_snoozes_in_one_request(prompt_watcher):
    db, control, knobs = prompt_watcher
    with Store(db) as store:
        pending = store.add_event("prompt", "page cache above 50%. Reclaim (pagecache)?", rule="r", status="pending",
                                  data={"method": "pagecache"})
    before = time.time()
    told = call(control, "answer", prompt=pending, answer="snooze", seconds=600, timeout=DEADLINE)
    assert (told["prompt"], told["answer"]) == (pending, "snoozed")
    assert before + 600 <= told["snoozed_until"] <= time.time() + 600
    assert prompt_status(db, pending) == "snoozed"
    answers = [e.message for e in events(db, "answer")]
    assert answers == [f"prompt {pending}: snoozed (for 10m, asked by root, pid {os.getpid()})"]
    with Store(db) as store:
        assert store.get_state("policy")["snoozed_until"] == told["snoozed_until"]
    assert knobs_written(knobs) == {"drop_caches": "", "compact_memory": ""}  # a snooze reclaims nothing
    with pytest.raises(ControlError) as again:
        call(control, "answer", prompt=pending, answer="snooze", timeout=DEADLINE)
    assert str(again.value) == f"prompt {pending} is not pending any more: it is snoozed"


def test_a_clients_settle_reaches_the_watchers_reclaim_and_a_bad_one_is_refused(prompt_watcher):
    """`vmmemctl reclaim --settle 2s` with a watcher: the watcher's reclaim settles 2 s (its config: 0 s)."""
    db, control, knobs = prompt_watcher
    with pytest.raises(ControlError) as refused:
        call(control, "reclaim", method="pagecache", settle=-1, timeout=DEADLINE)
    assert "settle" in str(refused.value) and "from 0 to 3600" in str(refused.value) and "-1" in str(refused.value)
    assert knobs_written(knobs) == {"drop_caches": "", "compact_memory": ""} and events(db, "reclaim") == []
    done = run_cli("reclaim", "--db", str(db), "--method", "pagecache", "--settle", "2s", "--json")
    assert done.returncode == 0, done
    trace = json.loads(done.stdout)["host_trace"]
    assert trace[-1][0] >= 2.0 and len(trace) >= 2  # watched the host for the 2 s asked, not the config's 0
    assert knobs_written(knobs)["drop_caches"] == "1"


def test_a_dismissed_prompt_names_who_dismissed_it_and_cannot_be_answered_again(prompt_watcher):
    db, control, knobs = prompt_watcher
    with Store(db) as store:  # no rule: the watcher's ticks never expire it meanwhile
        pending = store.add_event("prompt", "page cache above 50%. Reclaim (pagecache)?", status="pending",
                                  data={"method": "pagecache"})
    told = call(control, "answer", prompt=pending, answer="dismiss", timeout=DEADLINE)
    assert told == {"prompt": pending, "answer": "dismissed"}
    assert prompt_status(db, pending) == "dismissed"
    answers = [e.message for e in events(db, "answer")]
    assert answers == [f"prompt {pending}: dismissed (asked by root, pid {os.getpid()})"]
    for again in ("reclaim", "dismiss"):
        with pytest.raises(ControlError, match=rf"^prompt {pending} is not pending any more: it is dismissed$"):
            call(control, "answer", prompt=pending, answer=again, timeout=DEADLINE)
    assert prompt_status(db, pending) == "dismissed"
    assert len(events(db, "answer")) == 1 and events(db, "reclaim") == []
    assert knobs_written(knobs) == {"drop_caches": "", "compact_memory": ""}


def test_reclaim_dry_run_with_no_flags_is_the_watchers_report(system, reclaim_lock):
    with watching(system.db, "--proc-root", str(TREE)) as proc:
        done = run_cli("reclaim", "--dry-run")
        assert done.returncode == 0, done
        assert done.stderr == f"asking the watcher: vmmemctl watch (pid {proc.pid}, root) recording {system.db}\n"
        assert done.stdout.startswith("reclaim: ") and "(dry run: nothing written)" in done.stdout.splitlines()[0]
        # The watcher's tree, not this machine: its page cache, and the writes it would do there.
        assert "page cache        21.0 GiB" in done.stdout
        assert "would write '1' to /proc/sys/vm/drop_caches" in done.stdout
        assert events(system.db, "reclaim") == []  # a dry run records nothing


def test_reload_with_no_flags_makes_the_watcher_reread_its_config(system, reclaim_lock, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(QUIET_RULES)
    with watching(system.db, "--proc-root", str(TREE), "--config", str(config)) as proc:
        config.write_text(QUIET_RULES.replace('settle = "0s"', 'settle = "5s"'))
        done = run_cli("reload")
        assert done.returncode == 0, done
        assert done.stderr.startswith("asking the watcher: ") and f"(pid {proc.pid}, root)" in done.stderr
        assert done.stdout.startswith(f"asked the watcher (pid {proc.pid}) to re-read its config")
        event = wait_for_event(system.db, lambda e: e.kind == "watch" and e.message.startswith("config reloaded"),
                               "config reloaded")
        assert event.message.startswith(f"config reloaded from {config}: reclaim ("), event.message
        assert event.data == {"changed": ["reclaim"]}


# ------------------------------------------------------------------ 2. two distros, one VM


def _unshare_works() -> str | None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root (mount namespaces)"
    if shutil.which("unshare") is None:
        return "needs unshare(1)"
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True, text=True,
                           check=False)
    return None if probe.returncode == 0 else f"unshare cannot make a mount namespace here: {probe.stderr.strip()}"


@dataclass
class Distro:
    name: str
    db: Path
    proc: subprocess.Popen


def test_two_distros_on_one_vm_one_watcher_acts_and_the_other_only_records(tmp_path, isolated_home):
    why_not = _unshare_works()
    if why_not:
        pytest.skip(why_not)
    # `shared` is the VM-wide folder (as /mnt/wsl); each distro sees it at `point` through its own bind
    # mount, made in its own mount namespace: in ours, `point` stays an empty folder.
    shared, point = tmp_path / "shared", tmp_path / "point"
    shared.mkdir()
    point.mkdir()
    runs = Path(isolated_home["VMMEMCTL_RUN_DIR"]).parent  # short: a socket path has 108 bytes
    lock = tmp_path / "reclaim.lock"  # one VM, one reclaim lock

    def distro(name: str) -> Distro:
        db = tmp_path / name / "history.db"
        db.parent.mkdir()
        env = {**os.environ, "VMMEMCTL_CONFIG": "", "WSL_DISTRO_NAME": name, "VMMEMCTL_RUN_DIR": str(runs / name),
               "VMMEMCTL_VM_CLAIM_DIR": str(point / "vmmemctl"), "VMMEMCTL_RECLAIM_LOCK": str(lock)}
        proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private",
             "sh", "-c", 'mount --bind "$1" "$2" && shift 2 && exec "$@"', "sh", str(shared), str(point),
             sys.executable, "-m", "monitor", "watch", "--db", str(db), "--interval", "0.2s",
             "--log-file", str(db_log(db)), "--proc-root", str(TREE)],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        return Distro(name, db, proc)

    started: list[Distro] = []
    try:
        started += [distro("Ubuntu"), distro("Debian")]  # at once: whichever claims the VM first owns it
        for d in started:
            wait_for_samples(d.db, 2, timeout=DEADLINE)
        recording_only = {d.name: [e.message for e in events(d.db, "watch") if e.message.startswith("recording only")]
                          for d in started}
        [recorder] = [d for d in started if recording_only[d.name]]  # exactly one records only
        [owner] = [d for d in started if d is not recorder]
        [words] = recording_only[recorder.name]
        # unshare and sh exec in place: the watcher's pid is the one we started (one PID namespace here).
        assert words.startswith(f"recording only: pid {owner.proc.pid} in distro {owner.name} (vmmemctl watch)"), words
        assert recording_only[owner.name] == []
        claim = json.loads((shared / "vmmemctl" / "vm.claim").read_text())
        assert (claim["pid"], claim["distro"]) == (owner.proc.pid, owner.name)
        assert list(point.iterdir()) == []  # they met through their bind mounts only

        # A dry run writes nothing: the recorder may do it. A real reclaim it refuses, in one line.
        dry = run_cli("reclaim", "--dry-run", "--db", str(recorder.db))
        assert dry.returncode == 0, dry
        assert f"(pid {recorder.proc.pid}, root)" in dry.stderr and "dry run" in dry.stdout.splitlines()[0]
        real = run_cli("reclaim", "--method", "pagecache", "--db", str(recorder.db))
        assert real.returncode != 0, real
        line = answer_line(real.stderr)
        assert f"this watcher only records: pid {owner.proc.pid} in distro {owner.name}" in line, line
        assert real.stdout == ""
        assert events(recorder.db, "reclaim") == [] and events(owner.db, "reclaim") == []

        # The owner stops: the claim is free, and the next watcher to start (a third distro) takes it.
        stop(owner.proc)
        assert owner.proc.returncode == 0
        assert VmClaim(shared / "vmmemctl", "observer").owner() is None
        arch = distro("Arch")
        started.append(arch)
        wait_for_samples(arch.db, 2, timeout=DEADLINE)
        assert [e for e in events(arch.db, "watch") if "recording only" in e.message] == []
        claim = json.loads((shared / "vmmemctl" / "vm.claim").read_text())
        assert (claim["pid"], claim["distro"]) == (arch.proc.pid, "Arch")
    finally:
        for d in started:
            stop(d.proc)


# ------------------------------------------------------------------ 3. second_watcher = "exit"


def test_a_second_watcher_told_to_exit_exits_in_one_line_naming_the_owner(tmp_path, reclaim_lock):
    config = tmp_path / "config.toml"
    config.write_text('[control]\nsecond_watcher = "exit"\n')
    first, second = tmp_path / "first.db", tmp_path / "second.db"
    with watching(first, "--proc-root", str(TREE), "--config", str(config), env={"WSL_DISTRO_NAME": "Ubuntu"}) as owner:
        late = start_watch(second, "--proc-root", str(TREE), "--config", str(config), env={"WSL_DISTRO_NAME": "Debian"})
        try:
            out, err = late.communicate(timeout=DEADLINE)
        finally:
            stop(late)
        assert late.returncode == 1, (out, err)
        assert out == ""
        [line] = err.splitlines()
        assert line.startswith(f"vmmemctl: pid {owner.pid} in distro Ubuntu (vmmemctl watch)"), line
        assert line.endswith('owns this VM (VMMEMCTL_VM_CLAIM_DIR names it); this watcher exits '
                             '([control] second_watcher = "exit")'), line
        # It recorded nothing; the owner carries on.
        if second.exists():
            with Store(second, readonly=True) as store:
                assert store.db.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 0
        assert owner.poll() is None
        with Store(first, readonly=True) as store:
            count = store.db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
        wait_for_samples(first, count + 2, timeout=DEADLINE)


# ------------------------------------------------------------------ 4. the log names the pid


def test_two_watchers_writing_one_log_file_are_told_apart_by_their_pids(tmp_path, reclaim_lock):
    log = tmp_path / "watch.log"
    a_db, b_db = tmp_path / "a.db", tmp_path / "b.db"
    # b starts once a records, so a owns the VM and b records only.
    with watching(a_db, "--proc-root", str(TREE), "--log-file", str(log)) as a, \
            watching(b_db, "--proc-root", str(TREE), "--log-file", str(log)) as b:
        pids = {"a": a.pid, "b": b.pid}
    # Every record's first line (a traceback's further lines start otherwise) names its writer.
    lines = [line for line in log.read_text().splitlines() if re.match(r"\d{4}-\d\d-\d\d ", line)]
    assert lines and all(LOG_LINE.match(line) for line in lines), [line for line in lines if not LOG_LINE.match(line)]
    by_pid: dict[int, list[str]] = {}
    for line in lines:
        by_pid.setdefault(int(LOG_LINE.match(line)[2]), []).append(line)
    assert set(by_pid) == set(pids.values()), by_pid.keys()
    for pid in pids.values():
        assert any("watching: sample every 0.2s" in line for line in by_pid[pid])
        assert any(line.endswith(": stopped") for line in by_pid[pid])
    assert any(f"recording only: pid {pids['a']} in distro" in line for line in by_pid[pids["b"]])
    assert not any("recording only" in line for line in by_pid[pids["a"]])


# ------------------------------------------------------------------ 5. the dashboard as a person uses it


PROMPT_RULES = """
[reclaim]
settle = "0s"

[[rule]]  # asks at once: any page cache at all
name = "ask"
metric = "page_cache"
above = "1"
for = "0s"
cooldown = "1h"
action = "prompt"
method = "pagecache"

[control]
users = ["nobody"]
"""


@needs_nobody
@pytest.mark.skipif(not shutil.which("tmux"), reason="needs tmux")
def test_a_users_dashboard_answers_the_root_watchers_prompt_and_the_watcher_reclaims(system, reclaim_lock,
                                                                                      tmp_path, shared_dir):
    """Issue 24's done-when: a normal user, with the root service running, types `vmmemctl tui` with no
    flags, sees the prompt, answers Reclaim, and the root watcher reclaims (here into a tree whose
    drop_caches and compact_memory are plain files, so what ran is seen)."""
    from helpers import Tmux

    root, knobs = tree_with_knobs(tmp_path)
    config = tmp_path / "config.toml"
    config.write_text(PROMPT_RULES)
    home = shared_dir / "nobody-home"
    home.mkdir()
    home.chmod(0o777)  # (mkdir's mode is masked by the umask)
    env = {**system.env, "HOME": str(home), "TERM": "xterm-256color", "VMMEMCTL_CONFIG": "", "PATH": "/usr/bin:/bin"}
    command = " ".join(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env", "-i",
                        *(f"{k}={v}" for k, v in env.items()), sys.executable, "-m", "monitor", "tui"])
    tmux = Tmux(tmp_path)
    with watching(system.db, "--proc-root", str(root / "proc"), "--config", str(config)) as watcher:
        prompt = wait_for_event(system.db, lambda e: e.kind == "prompt" and e.status == "pending", "a prompt")
        try:
            tmux("new-session", "-d", "-s", "tui", "-x", "120", "-y", "40", "-c", str(REPO), command)
            tmux("set-option", "-t", "tui", "remain-on-exit", "on")  # a dashboard that died leaves its last words
            tmux.wait_for(f"attached to watcher (pid {watcher.pid})", "vmmemctl asks", timeout=DEADLINE)
            tmux.keys("Enter")  # Reclaim (pagecache), the first choice
            done = wait_for_event(system.db, lambda e: e.kind == "reclaim", "the watcher's reclaim")
            assert done.rule.startswith("prompt (nobody, pid ") and done.status == "ok"
            assert knobs_written(knobs) == {"drop_caches": "1", "compact_memory": "1"}  # root wrote them
            assert prompt_status(system.db, prompt.id) == "reclaimed"
            tmux.wait_for("reclaim pagecache", timeout=DEADLINE)  # the dashboard shows what came back
            tmux.keys("q")
        finally:
            tmux("kill-server")


@needs_nobody
def test_a_config_folder_the_user_cannot_enter_is_one_line_not_a_traceback(shared_dir):
    private = shared_dir / "private"
    (private / "vmmemctl").mkdir(parents=True)
    private.chmod(0o700)  # root's: 'nobody' cannot look inside
    done = as_nobody("config", "show", env={"XDG_CONFIG_HOME": str(private)})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"vmmemctl: config error: {private}/vmmemctl/config.toml: cannot read: Permission denied (pass --config FILE)"]


# ------------------------------------------------------------------ the attached dashboard shows the watcher's policy


def test_an_attached_dashboard_shows_the_watchers_config_and_decision_and_follows_a_reload(system, reclaim_lock,
                                                                                         tmp_path):
    """Issue 24: `tui` showed the viewer's own config (auto-reclaim off) while the watcher ran with it on. The
    dashboard asks the watcher for its config and facts (on attaching, after a reload) and runs the same
    policy on the same history: the watcher's decision, in the same words."""
    from monitor.config.schema import Config
    from monitor.policy.rules import Decision
    from tui.source import DataSource, Setup, policy_words

    config = tmp_path / "watcher.toml"
    config.write_text('[policy]\nauto_reclaim = true\n\n[[rule]]\nname = "big"\nmetric = "page_cache"\n'
                      'above = "1GiB"\nfor = "1h"\naction = "reclaim"\n')
    with watching(system.db, "--proc-root", str(TREE), "--config", str(config)):
        viewer = Config()  # the viewer's own: defaults, auto-reclaim off
        source = DataSource(Setup(viewer, system.db, standalone=False, interval=2.0, timers=False))
        source.start()
        try:
            snap = source.snapshot("5m", 100)
            assert source.config.policy.auto_reclaim and source.config.rule[0].label == "big"
            assert "auto-reclaim on" in snap.header.auto, snap.header
            said = call(watcher_of(system.db).control, "hello", timeout=DEADLINE)["decision"]
            assert snap.policy.startswith(policy_words(Decision(**said)).split(" for ")[0]), \
                (snap.policy, said)  # the same decision, up to how long the rule has been above
            # a reload: the dashboard takes the new config without waiting for its next half-minute hello
            config.write_text(config.read_text().replace('above = "1GiB"', 'above = "2GiB"'))
            assert run_cli("reload").returncode == 0
            wait_for_event(system.db, lambda e: e.message.startswith("config reloaded"), "config reloaded")
            deadline = time.monotonic() + DEADLINE
            while source.config.rule[0].above.text != "2GiB":
                assert time.monotonic() < deadline, source.config.rule
                source.snapshot("5m", 100)
                time.sleep(0.2)
        finally:
            source.close()
