"""Rules and schedules that aim at groups (`cgroup = "GLOB"`, issue 26 item 4), with the real recorder,
policy and reclaimer on a fake cgroup v2 tree (tests/fakecgroup.py: each group's memory.reclaim served
as the kernel's), and `status`/`doctor` on the recorded cgroup trees (tests/trees/cgroup-*).

This machine's own cgroups are never written (its v1 memory hierarchy is its agent's)."""

from __future__ import annotations

import json

import pytest

from fakecgroup import MOUNTINFO_V1, write_mountinfo
from helpers import run_cli, tree
from test_cgroup_reclaim import machine  # noqa: F401  (the fake cgroup v2 tree)
from test_recorder import cfg, make_watcher, notify_log, tiny_rule  # noqa: F401

from monitor.config.schema import ConfigError, IdleConfig, PolicyConfig, Schedule, load_config
from monitor.kernel.cgroup_aim import GlobError, match, normalize_glob, read_aims
from monitor.kernel.procfs import LocalFiles
from monitor.units import Size

MiB, GiB = 1024**2, 1024**3
DOCKER = "system.slice/docker-*.scope"
# the VM-wide idle gate shut (CPU busy at most 0 %, over 10 min of samples nobody has yet): an aimed rule
# does not wait for it, a VM-wide one would
SHUT = IdleConfig(window=600.0, cpu_busy_max=0.0, drop_window=600.0, drop_cpu_busy_max=0.0)


@pytest.fixture
def vm(machine):  # noqa: F811
    """test_cgroup_reclaim's tree (cgroup v2 mounted, groups added with .group), its root's controllers given."""
    (machine.root / "sys/fs/cgroup").mkdir(parents=True, exist_ok=True)
    (machine.root / "sys/fs/cgroup/cgroup.controllers").write_text("cpu memory pids\n")
    return machine




def aimed(**kw):
    return tiny_rule(name="docker", cgroup=DOCKER, action="reclaim", method="auto", **kw)


def test_an_aimed_rule_reclaims_each_matching_group_and_nothing_else(vm, tmp_path):
    a = vm.group("system.slice/docker-aaa.scope", file=700 * MiB)
    b = vm.group("system.slice/docker-bbb.scope", file=500 * MiB)
    paused = vm.group("system.slice/docker-ccc.scope", file=200 * MiB)
    paused.freeze()
    other = vm.group("system.slice/nginx.service", file=900 * MiB)
    editor = vm.group("user.slice/editor.scope", file=300 * MiB, hot=300 * MiB)
    rule = aimed(above=Size(bytes=GiB, text="1GiB"))
    watcher = make_watcher(tmp_path, cfg(rule, policy=PolicyConfig(auto_reclaim=True), idle=SHUT),
                           files=LocalFiles(vm.proc))
    sample = watcher.tick()
    assert dict(sample.cgroups)[DOCKER] == 1400 * MiB  # the three containers' cache, not nginx's nor the VM's
    decision = watcher.last_decision
    assert decision.action == "reclaim" and decision.cgroup == DOCKER, decision.reason
    assert "page cache of cgroup system.slice/docker-*.scope 1.4 GiB above 1.0 GiB" in decision.reason
    events = watcher.store.events(kinds=["reclaim"])
    done = {e.data["cgroup"]: e for e in events if e.status == "ok"}
    assert set(done) == {"/sys/fs/cgroup/system.slice/docker-aaa.scope", "/sys/fs/cgroup/system.slice/docker-bbb.scope"}
    assert all(e.rule == "rule:docker" and e.data["methods_run"] == ["gradual", "compact"] for e in done.values())
    assert a.file < MiB and b.file < MiB and a.requests and b.requests
    assert paused.requests == [] and paused.file == 200 * MiB  # frozen: refused, never written ...
    errors = [e for e in watcher.store.events() if "docker-ccc.scope is frozen" in e.message]
    assert errors, [e.message for e in watcher.store.events()]  # ... and said so
    assert other.requests == [] and editor.requests == [] and vm.requests == []  # nobody else's, nor the VM's
    # the largest first
    order = [e.data["cgroup"] for e in sorted(events, key=lambda e: e.id) if e.data and e.data.get("cgroup")]
    assert order[0].endswith("docker-aaa.scope")


def test_an_aimed_rule_whose_reclaim_could_not_run_is_armed_again(vm, tmp_path):
    """Another reclaim holds the machine: no group was written, so the rule is armed again (it tries after its
    cooldown), as a VM-wide rule is (tests/test_recorder.py)."""
    from monitor.policy.state import load_state
    from monitor.reclaim.reclaimer import ReclaimLock

    a = vm.group("system.slice/docker-aaa.scope", file=700 * MiB)
    watcher = make_watcher(tmp_path, cfg(aimed(above=Size(bytes=GiB // 2, text="512MiB")),
                                         policy=PolicyConfig(auto_reclaim=True), idle=SHUT), files=LocalFiles(vm.proc))
    with ReclaimLock(tmp_path / "reclaim.lock", "another reclaim"):
        watcher.tick()
    assert watcher.last_decision.action == "reclaim", watcher.last_decision.reason
    assert a.requests == [] and [e.status for e in watcher.store.events(kinds=["reclaim"])] == ["skipped"]
    state = load_state(watcher.store).rule("docker")
    assert state.armed and state.last_fired is not None


def test_auto_reclaim_off_holds_an_aimed_rule_and_notify_says_whose_cache(vm, tmp_path, notify_log):  # noqa: F811
    vm.group("system.slice/docker-aaa.scope", file=700 * MiB)
    watcher = make_watcher(tmp_path, cfg(aimed(), tiny_rule(name="say", cgroup=DOCKER, cooldown=3600.0), idle=SHUT),
                           files=LocalFiles(vm.proc))
    watcher.tick()
    assert watcher.store.events(kinds=["reclaim"]) == []
    assert vm.requests == []
    (note,) = watcher.store.events(kinds=["notify"])
    assert "page cache of cgroup system.slice/docker-*.scope 700 MiB above" in note.message, note.message


@pytest.mark.parametrize("how, words", [
    ("v1", "only cgroup v1"), ("nothing", "no group matches system.slice/docker-*.scope under /sys/fs/cgroup")])
def test_no_cgroup_v2_or_no_match_means_no_figure_said_once_never_fires(vm, tmp_path, how, words):
    vm.group("system.slice/nginx.service", file=900 * MiB)
    if how == "v1":
        write_mountinfo(vm.proc, MOUNTINFO_V1)
    watcher = make_watcher(tmp_path, cfg(aimed(), policy=PolicyConfig(auto_reclaim=True)), files=LocalFiles(vm.proc))
    for _ in range(3):
        watcher.tick()
        assert watcher.last_decision.action == "none"
    assert "it does not fire" in watcher.last_decision.reason and words in watcher.last_decision.reason, \
        watcher.last_decision.reason
    said = [e.message for e in watcher.store.events(kinds=["watch"]) if "cgroup" in e.message]
    assert len(said) == 1 and said[0].startswith("rule docker: cgroup system.slice/docker-*.scope: ") and \
        words in said[0], said
    assert watcher.store.events(kinds=["reclaim"]) == [] and vm.requests == []


def test_an_aimed_rule_needs_its_for_on_the_groups_own_figure(vm, tmp_path):
    """`for` counts samples of the groups' cache, not the VM's: a VM full of cache with the groups below the
    threshold is not a run above it."""
    g = vm.group("system.slice/docker-aaa.scope", file=100 * MiB)
    rule = aimed(above=Size(bytes=512 * MiB, text="512MiB"))
    watcher = make_watcher(tmp_path, cfg(rule, policy=PolicyConfig(auto_reclaim=True)), files=LocalFiles(vm.proc))
    watcher.tick()
    assert watcher.last_decision.action == "none" and "100 MiB below 512 MiB" in watcher.last_decision.reason
    g.file = 600 * MiB
    g._publish()
    watcher.tick()
    assert watcher.last_decision.action == "reclaim" and g.file < MiB


def test_an_aimed_schedule_reclaims_the_groups_if_their_cache_is_above(vm, tmp_path):
    run = vm.group("vmmemctl.slice/run-7-make.scope", file=400 * MiB)
    editor = vm.group("user.slice/editor.scope", file=300 * MiB)
    watcher = make_watcher(tmp_path, cfg(), files=LocalFiles(vm.proc))
    watcher.tick()
    watcher.run_schedule(Schedule(cron="*/15 * * * *", name="high", cgroup="vmmemctl.slice/*",
                                  if_page_cache_above=Size(bytes=GiB, text="1GiB")))
    watcher.run_schedule(Schedule(cron="*/15 * * * *", name="none", cgroup="system.slice/docker-*.scope"))
    watcher.run_schedule(Schedule(cron="*/15 * * * *", name="runs", cgroup="/sys/fs/cgroup/vmmemctl.slice/*",
                                  if_page_cache_above=Size(bytes=256 * MiB, text="256MiB")))
    messages = [e.message for e in watcher.store.events(kinds=["schedule"])]
    assert messages[0] == ("schedule:high: skipped: page cache of cgroup vmmemctl.slice/* 400 MiB is not above "
                           "1.0 GiB"), messages
    assert messages[1].startswith("schedule:none: skipped: cgroup system.slice/docker-*.scope: no group matches")
    assert messages[2] == "schedule:runs: reclaiming gradually in cgroup /sys/fs/cgroup/vmmemctl.slice/* " \
        "(400 MiB in 1 group)", messages
    (event,) = watcher.store.events(kinds=["reclaim"])
    assert event.rule == "schedule:runs" and event.data["cgroup"] == "/sys/fs/cgroup/vmmemctl.slice/run-7-make.scope"
    assert run.file < MiB and editor.requests == [] and vm.requests == []


def test_globs_match_level_by_level_and_count_a_nested_match_once(vm):
    vm.group("system.slice", file=150 * MiB)
    vm.group("system.slice/docker-aaa.scope", file=100 * MiB)
    vm.group("system.slice/docker.service", file=50 * MiB)
    vm.group("user.slice", file=300 * MiB)
    vm.group("user.slice/user-1000.slice", file=200 * MiB)
    root = vm.root / "sys/fs/cgroup"
    assert match(root, "system.slice/docker-*.scope") == ["system.slice/docker-aaa.scope"]
    assert match(root, "*/docker*") == ["system.slice/docker-aaa.scope", "system.slice/docker.service"]
    aims = read_aims(LocalFiles(vm.proc), ["user.slice", "user.slice/*", "*", "nosuch/*"])
    assert aims["user.slice/*"].cache == 200 * MiB
    assert aims["*"].cache == 450 * MiB and len(aims["*"].groups) == 2  # top-level ones: children counted in them
    assert aims["nosuch/*"].cache is None and "no group matches nosuch/*" in aims["nosuch/*"].why
    assert normalize_glob("/sys/fs/cgroup/system.slice/*/") == "system.slice/*"


@pytest.mark.parametrize("body, words", [
    ('cgroup = ""\nname = "x"', None),  # "" is the whole VM: valid
    ('cgroup = "a//b"', "rule[0].cgroup: got \"a//b\"; expected one / between parts"),
    ('cgroup = "../etc"', "rule[0].cgroup: got \"../etc\"; expected no . or .. parts"),
    ('cgroup = "**/x.scope"', "expected * ? [..] inside one part; ** (any depth) is not supported"),
    ('cgroup = "a[b"', "expected balanced [ ] in each part"),
    ('cgroup = "/"', "rule[0].cgroup: got \"/\"; expected a group's path below /sys/fs/cgroup"),
    ('cgroup = "x"\nmetric = "reclaimable"', "rule[0].metric: got \"reclaimable\"; expected page_cache with cgroup"),
    ('cgroup = "x"\naction = "prompt"', "rule[0].action: got \"prompt\"; expected notify or reclaim with cgroup"),
    ('cgroup = "x"\nmethod = "pagecache"', "rule[0].method: got \"pagecache\"; expected auto or gradual with cgroup"),
    ('cgroup = 3', "rule[0].cgroup"),
])
def test_a_rules_cgroup_is_checked_in_one_line(tmp_path, body, words):
    path = tmp_path / "c.toml"
    path.write_text(f"[[rule]]\n{body}\n")
    if words is None:
        assert load_config(path).rule[0].cgroup == ""
        return
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert words in str(exc.value) and "\n" not in str(exc.value) and str(path) in str(exc.value), str(exc.value)
    done = run_cli("config", "check", "--config", str(path))
    assert done.returncode != 0 and done.stderr.count("\n") == 1 and words in done.stderr, done.stderr


def test_a_schedules_cgroup_is_checked_in_one_line(tmp_path):
    path = tmp_path / "c.toml"
    for body, words in [('cgroup = "x/*"\npath = ["/tmp"]', 'schedule[0].path: got ["/tmp"]; expected no path with cgroup'),
                        ('cgroup = "x/*"\nmethod = "full"', 'schedule[0].method: got "full"; expected auto or gradual'),
                        ('cgroup = "x/../y"', 'schedule[0].cgroup: got "x/../y"; expected no . or .. parts')]:
        path.write_text(f'[[schedule]]\ncron = "0 3 * * *"\n{body}\n')
        with pytest.raises(ConfigError, match=None) as exc:
            load_config(path)
        assert words in str(exc.value).replace("'", '"'), str(exc.value)
    path.write_text('[[schedule]]\ncron = "0 3 * * *"\ncgroup = "vmmemctl.slice/*"\n')
    assert load_config(path).schedule[0].cgroup == "vmmemctl.slice/*"
    with pytest.raises(GlobError):
        normalize_glob("")


def test_status_and_doctor_show_each_aim_or_why_it_never_fires(tmp_path):
    conf = tmp_path / "c.toml"
    conf.write_text('[[rule]]\nname = "docker"\ncgroup = "system.slice/docker-*.scope"\nabove = "1GiB"\n'
                    'action = "reclaim"\n[[schedule]]\nname = "runs"\ncron = "0 3 * * *"\ncgroup = "vmmemctl.slice/*"\n')
    systemd = run_cli("status", "--cpu-window", "0", "--config", str(conf), "--proc-root", str(tree("cgroup-systemd")))
    assert systemd.returncode == 0, systemd.stderr
    lines = [line for line in systemd.stdout.splitlines() if line.startswith("aimed at groups: rule docker")]
    decision = next(line for line in systemd.stdout.splitlines() if line.startswith("decision:"))
    assert "page cache of cgroup system.slice/docker-*.scope 1.7 GiB above 1.0 GiB" in decision, decision
    assert len(lines) == 1 and "rule docker" in lines[0] and "in 3 groups" in lines[0], systemd.stdout
    data = json.loads(run_cli("status", "--json", "--cpu-window", "0", "--config", str(conf), "--proc-root",
                              str(tree("cgroup-systemd"))).stdout)
    docker, runs = data["aims"]
    assert docker["who"] == "rule docker" and len(docker["groups"]) == 3 and docker["page_cache_bytes"] == \
        sum(g["page_cache_bytes"] for g in docker["groups"]) and docker["why"] is None
    assert runs["who"] == "schedule schedule:runs" and runs["groups"][0]["path"].startswith("/vmmemctl.slice/run-4242")
    v1 = run_cli("status", "--cpu-window", "0", "--config", str(conf), "--proc-root", str(tree("cgroup-v1")))
    said = [line for line in v1.stdout.splitlines() if "it does not fire" in line]
    assert len(said) == 3 and all("cgroup v2" in line for line in said), v1.stdout  # the decision's too
    doctor = json.loads(run_cli("doctor", "--json", "--config", str(conf), "--proc-root", str(tree("cgroup-v1"))).stdout)
    aimed = [c for c in doctor["checks"] if c["name"].startswith("aimed ")]
    assert [c["status"] for c in aimed] == ["warn", "warn"] and "never fires" in aimed[0]["hint"], aimed


def test_host_mode_has_no_figure_and_reads_nothing_through_the_channel():
    """A watcher in host mode reads the guest through [guest] exec, which lists no directories: no figure, and
    no channel call per tick to find that out."""
    class Channel:  # a SystemFiles that is not local: every read would be a wsl.exe call
        def read(self, paths):
            raise AssertionError(f"read through the channel: {paths}")

    aims = read_aims(Channel(), [DOCKER])
    assert aims[DOCKER].cache is None and "host mode" in aims[DOCKER].why
