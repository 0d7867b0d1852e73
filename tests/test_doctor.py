"""`vmmemctl doctor` against recorded trees and fake Windows tools, and on this machine as it is."""

from __future__ import annotations

import json
import os
import shutil

import pytest


from helpers import FAKEBIN, run_cli, start_watch, tree, wait_for_samples


def doctor(*args: str, env: dict | None = None, config: str = "[host]\ntimeout = 0.5\n", tmp_path=None):
    extra = dict(env or {})
    if tmp_path is not None:
        path = tmp_path / "config.toml"
        path.write_text(config)
        args = ("--config", str(path), *args)
    result = run_cli("doctor", "--json", *args, env=extra)
    return result, (json.loads(result.stdout) if result.stdout.startswith("{") else None)


def by_name(data: dict) -> dict[str, dict]:
    return {c["name"]: c for c in data["checks"]}


def test_the_json_has_the_documented_shape_and_exit_code_follows_it(isolated_home, tmp_path):
    result, data = doctor("--proc-root", str(tree("linux-vm")), tmp_path=tmp_path)
    assert set(data) == {"checks", "ok"}
    assert all(set(c) == {"name", "status", "detail", "hint"} for c in data["checks"])
    assert all(c["status"] in ("ok", "warn", "fail", "skipped") for c in data["checks"])
    assert data["ok"] == all(c["status"] != "fail" for c in data["checks"])
    assert result.returncode == (0 if data["ok"] else 1)


def test_plain_linux_tree_skips_every_windows_check(isolated_home, tmp_path):
    result, data = doctor("--proc-root", str(tree("linux-vm")), tmp_path=tmp_path)
    checks = by_name(data)
    assert checks["environment"]["detail"].startswith("Linux")
    for name in ("windows drive", "interop: powershell", "interop: tasklist", ".wslconfig"):
        assert checks[name]["status"] == "skipped"
    assert checks["host figure"]["status"] == "ok" and "estimated" in checks["host figure"]["detail"]
    assert checks["PSI"]["status"] == "ok"  # the linux-vm tree has /proc/pressure
    assert result.returncode == 0 and data["ok"]


def test_on_this_machine_as_it_is(isolated_home):
    from monitor.kernel.environment import detect_environment
    from monitor.kernel.procfs import LocalFiles

    result = run_cli("doctor", "--json")
    data = json.loads(result.stdout)
    kind = detect_environment(LocalFiles(), os.environ).kind
    label = {"linux": "Linux", "wsl2": "WSL2", "wsl1": "WSL1", "windows": "Windows"}[kind]
    assert by_name(data)["environment"]["detail"].startswith(label)
    assert result.returncode == (0 if data["ok"] else 1)


def fake_path(mode: str) -> dict:
    return {"PATH": f"{FAKEBIN}{os.pathsep}{os.environ['PATH']}", "FAKE_WINDOWS_MODE": mode}


def test_wsl2_with_working_interop(isolated_home, tmp_path):
    # a generous timeout: "slow answers" is a warning at half of it, and this machine is shared
    result, data = doctor("--proc-root", str(tree("wsl2-ubuntu")), env=fake_path("normal"), tmp_path=tmp_path,
                          config="[host]\ntimeout = 5\n")
    checks = by_name(data)
    assert checks["environment"]["detail"].startswith("WSL2")
    assert checks["interop: powershell"]["status"] == "ok" and "first answer" in checks["interop: powershell"]["detail"]
    assert checks["interop: tasklist"]["status"] == "ok"
    assert checks["host figure"]["status"] == "ok" and "measured by interop" in checks["host figure"]["detail"]
    assert checks["PSI"]["status"] == "warn"  # the recorded WSL2 tree has no /proc/pressure
    assert result.returncode == 0, data


def test_wsl2_with_hung_powershell_fails_that_check_and_exits_1(isolated_home, tmp_path):
    result, data = doctor("--proc-root", str(tree("wsl2-ubuntu")), env=fake_path("hang"), tmp_path=tmp_path)
    checks = by_name(data)
    assert checks["interop: powershell"]["status"] == "fail"
    assert "no answer" in checks["interop: powershell"]["detail"]
    assert result.returncode == 1 and not data["ok"]


def test_wsl2_without_interop(isolated_home, tmp_path):
    result, data = doctor("--proc-root", str(tree("wsl2-ubuntu")), env={"PATH": "/usr/bin:/bin"}, tmp_path=tmp_path)
    checks = by_name(data)
    assert checks["interop: powershell"]["status"] == "fail" and "not found" in checks["interop: powershell"]["detail"]
    assert checks["host figure"]["status"] == "warn" and "estimated" in checks["host figure"]["detail"]
    assert result.returncode == 1


@pytest.mark.parametrize("registered", ["WSLInterop", "WSLInterop-late", None])
def test_broken_interop_hint_reads_binfmt_misc_either_name(isolated_home, tmp_path, registered):
    """systemd distros can register WSL's handler as WSLInterop-late (microsoft/WSL#13449): not missing."""
    proc = tmp_path / "tree" / "proc"
    shutil.copytree(tree("wsl2-ubuntu"), proc)
    if registered:
        (proc / "sys/fs/binfmt_misc").mkdir(parents=True)
        (proc / "sys/fs/binfmt_misc" / registered).write_text("enabled\ninterpreter /init\nflags: PF\n")
    result, data = doctor("--proc-root", str(proc), env=fake_path("interop-down"), tmp_path=tmp_path)
    check = by_name(data)["interop: powershell"]
    assert check["status"] == "fail" and "UtilConnectVsock" in check["detail"], check
    if registered:
        assert f"although binfmt_misc has {registered} registered" in check["hint"], check
    else:
        assert "neither WSLInterop nor WSLInterop-late" in check["hint"], check


def test_a_moved_automount_root_is_found(tmp_path):
    from monitor.kernel.procfs import LocalFiles
    from monitor.kernel.windows import parse_drvfs_mounts

    text = LocalFiles(tree("wsl2-automount")).read(["proc/mounts"])["proc/mounts"]
    assert parse_drvfs_mounts(text) == {"c": "/windir/c", "d": "/windir/d"}


def test_an_invalid_config_is_a_failed_check(isolated_home, tmp_path):
    result, data = doctor("--proc-root", str(tree("linux-vm")), config="[host]\ntimeuot = 1\n", tmp_path=tmp_path)
    assert by_name(data)["config"]["status"] == "fail" and "timeuot" in by_name(data)["config"]["detail"]
    assert result.returncode == 1


def test_a_bad_proc_root_is_bad_input(isolated_home, tmp_path):
    result = run_cli("doctor", "--proc-root", str(tmp_path / "nowhere"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_history_says_who_records_it_and_how_old_the_last_sample_is(isolated_home, tmp_path):
    db = tmp_path / "h.db"
    config = f'[host]\ntimeout = 0.5\n[general]\ndb = "{db}"\n'
    watch = start_watch(db)
    try:
        wait_for_samples(db, 2)
        _, data = doctor("--proc-root", str(tree("linux-vm")), tmp_path=tmp_path, config=config)
        history = by_name(data)["history"]
        assert history["status"] == "ok", history
        assert f"recorded by pid {watch.pid} (vmmemctl watch)" in history["detail"]
        assert "last sample" in history["detail"] and "s ago" in history["detail"]
    finally:
        watch.terminate()
        watch.wait(timeout=20)
    _, data = doctor("--proc-root", str(tree("linux-vm")), tmp_path=tmp_path, config=config)
    assert "no recorder running" in by_name(data)["history"]["detail"]


def test_a_stale_history_with_nobody_recording_says_to_start_the_watcher(isolated_home, tmp_path):
    import time

    from monitor.sample import GuestSample, HostSample, Sample
    from monitor.history.store import Store

    db = tmp_path / "old.db"
    with Store(db) as store:
        t = time.time() - 7200
        store.add_samples([Sample(GuestSample(time=t, total=2**30, free=2**29, cached=2**28),
                                  HostSample(t, None, "estimate", True))])
    _, data = doctor("--proc-root", str(tree("linux-vm")), tmp_path=tmp_path,
                     config=f'[host]\ntimeout = 0.5\n[general]\ndb = "{db}"\n')
    history = by_name(data)["history"]
    assert history["status"] == "warn" and "last sample 2h" in history["detail"], history
    assert "no recorder running" in history["detail"] and "start `vmmemctl watch`" in history["hint"]
