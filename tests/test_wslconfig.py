"""Reading WSL's own autoMemoryReclaim from .wslconfig, and showing it in status."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from helpers import run_cli, tree
from monitor.kernel.wslconfig import find_wslconfig, read_wsl_reclaim


@pytest.mark.parametrize("text, mode, words", [
    ("[experimental]\nautoMemoryReclaim=gradual\n", "gradual", ""),
    ("[Experimental]\nAUTOMEMORYRECLAIM = DropCache ; comment\n", "dropcache", ""),
    ("\ufeff[wsl2]\nmemory=8GB\n[experimental]\nautoMemoryReclaim = \"disabled\"\n", "disabled", ""),
    ("[wsl2]\nmemory=8GB\n", "dropcache", "does not set it; WSL's default"),
    ("[experimental]\nautoMemoryReclaim=sometimes\n", "dropcache", "is not a mode WSL knows"),
    ("[wsl2]\nautoMemoryReclaim=gradual\n", "dropcache", "does not set it"),  # only [experimental] counts
    ("not an ini file at all\n\x00\x01", None, "unreadable"),
])
def test_read_wsl_reclaim(tmp_path, text, mode, words):
    path = tmp_path / ".wslconfig"
    path.write_text(text, encoding="utf-8")
    found = read_wsl_reclaim(path)
    assert found.mode == mode
    assert words in found.source


def test_missing_wslconfig():
    found = read_wsl_reclaim(None)
    assert found.mode is None and "not found" in found.source and "dropcache" in found.source


def test_find_wslconfig_from_inside_wsl(tmp_path):
    users = tmp_path / "Users"
    (users / "alice").mkdir(parents=True)
    (users / "Public").mkdir()
    assert find_wslconfig("", {}, users) is None
    (users / "alice" / ".wslconfig").write_text("")
    assert find_wslconfig("", {"USER": "bob"}, users) == users / "alice" / ".wslconfig"  # the only one
    (users / "bob").mkdir()
    (users / "bob" / ".wslconfig").write_text("")
    assert find_wslconfig("", {"USER": "bob"}, users) == users / "bob" / ".wslconfig"  # same name as the Linux user
    assert find_wslconfig("", {"USER": "carol"}, users) is None  # ambiguous: say unknown rather than guess
    assert find_wslconfig("/x/.wslconfig", {}, users) == Path("/x/.wslconfig")
    assert find_wslconfig("", {"USERPROFILE": "C:\\Users\\Me"}, users, windows=True) == Path("C:\\Users\\Me/.wslconfig")


def test_status_in_wsl_shows_wsl_reclaim_mode(tmp_path):
    wslconfig = tmp_path / ".wslconfig"
    wslconfig.write_text("[experimental]\nautoMemoryReclaim=gradual\n")
    config = tmp_path / "c.toml"
    config.write_text(f'[policy]\nwslconfig = "{wslconfig}"\n[host]\nsource = "estimate"\n')
    result = run_cli("status", "--json", "--config", str(config), "--proc-root", str(tree("wsl2-ubuntu")),
                     "--cpu-window", "0", "--db", str(tmp_path / "none.db"))
    data = json.loads(result.stdout)
    assert data["wsl_auto_memory_reclaim"] == {"mode": "gradual", "source": str(wslconfig)}
    assert data["decision"]["action"] in ("none", "notify", "prompt")
    text = run_cli("status", "--config", str(config), "--proc-root", str(tree("wsl2-ubuntu")), "--cpu-window", "0",
                   "--db", str(tmp_path / "none.db")).stdout
    assert f"WSL autoMemoryReclaim: gradual ({wslconfig})" in text
    assert not (tmp_path / "none.db").exists()  # status reads history, never creates it


def test_status_outside_wsl_has_no_wsl_line(tmp_path):
    data = json.loads(run_cli("status", "--json", "--cpu-window", "0", "--db", str(tmp_path / "x.db")).stdout)
    assert data["wsl_auto_memory_reclaim"] is None
    assert data["decision"]["action"] == "none" and data["decision"]["reason"]


def test_an_unreadable_profile_does_not_hide_the_users_wslconfig():
    # Issue 17.4: is_file() on another user's profile raises PermissionError (Python ignores only
    # ENOENT, ENOTDIR, EBADF, ELOOP). Root reads everything, so as root the lookup runs with
    # the effective uid of nobody (and back), as a normal user it is chmod 000.
    import shutil
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="vmmemctl-users-"))
    users = top / "Users"
    try:
        (users / "alice").mkdir(parents=True)
        (users / "alice" / ".wslconfig").write_text("[experimental]\nautoMemoryReclaim=gradual\n")
        (users / "bob").mkdir()
        for d in (top, users, users / "alice"):
            d.chmod(0o755)
        (users / "bob").chmod(0o700 if os.geteuid() == 0 else 0o000)  # another profile: not ours to read
        as_root = os.geteuid() == 0
        if as_root:
            os.seteuid(65534)
        try:
            by_name = find_wslconfig("", {"USER": "bob"}, users)  # the $USER check meets the unreadable one
            by_scan = find_wslconfig("", {"USER": "carol"}, users)
        finally:
            if as_root:
                os.seteuid(0)
        assert by_name == by_scan == users / "alice" / ".wslconfig"
    finally:
        (users / "bob").chmod(0o700)
        shutil.rmtree(top)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig", "utf-16-be"])
def test_a_wslconfig_written_by_windows_tools_is_read(tmp_path, encoding):
    path = tmp_path / ".wslconfig"
    data = "[experimental]\r\nautoMemoryReclaim=gradual\r\n".encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    path.write_bytes(data)
    assert read_wsl_reclaim(path).mode == "gradual"


def test_a_posix_userprofile_from_wslenv_is_accepted(tmp_path):
    (tmp_path / "Me").mkdir()
    (tmp_path / "Me" / ".wslconfig").write_text("")
    assert find_wslconfig("", {"USERPROFILE": str(tmp_path / "Me")}, tmp_path / "nowhere") == tmp_path / "Me" / ".wslconfig"


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_vmmemctl_config_saved_by_windows_tools_is_read(tmp_path, encoding):
    from monitor.config.schema import load_config
    path = tmp_path / "config.toml"
    path.write_bytes("[host]\r\ntimeout = 7\r\n".encode(encoding))  # both write a BOM
    assert load_config(path).host.timeout == 7


# ------------------------------------------------- the PowerShell session's %USERPROFILE% (issue 27)

FAKE_WINDOWS = {"PATH": f"{Path(__file__).parent / 'fakebin'}{os.pathsep}{os.environ['PATH']}",
                "FAKE_WINDOWS_MODE": "normal"}


def wsl_tree_with_c_drive(tmp_path: Path) -> tuple[Path, Path]:
    """The recorded WSL2 tree with C: mounted (drvfs, as /proc/mounts shows it) at a folder of the test's:
    returns (proc root, Users folder) with alice's and josé's profiles, each with a .wslconfig."""
    import shutil

    root = tmp_path / "tree"
    shutil.copytree(tree("wsl2-ubuntu").parent, root)
    c = tmp_path / "c"
    (root / "proc" / "mounts").write_text(
        f"C:\\134 {c} 9p rw,noatime,dirsync,aname=drvfs;path=C:\\134;uid=1000;gid=1000,mmap,access=client 0 0\n")
    (c / "Windows" / "System32").mkdir(parents=True)  # what marks the system drive
    users = c / "Users"
    for name, mode in (("alice", "gradual"), ("josé", "disabled")):
        (users / name).mkdir(parents=True)
        (users / name / ".wslconfig").write_text(f"[experimental]\nautoMemoryReclaim={mode}\n")
    (users / "nobody").mkdir()
    return root / "proc", users


def test_the_sessions_profile_is_where_wsl_reads_it(tmp_path):
    from monitor.kernel.procfs import LocalFiles

    proc, users = wsl_tree_with_c_drive(tmp_path)
    files = LocalFiles(proc)
    env = {"USER": "alice"}  # the guess by the Linux user's name would say alice's
    assert find_wslconfig("", env, files=files) == users / "alice" / ".wslconfig"
    assert find_wslconfig("", env, files=files, session_profile="C:\\Users\\josé") == users / "josé" / ".wslconfig"
    # the profile folder is there without a .wslconfig: WSL reads none, so none (never alice's)
    assert find_wslconfig("", env, files=files, session_profile="C:\\Users\\nobody") is None
    # a profile on a drive not mounted here (nor at /mnt/q): the guess stands
    assert find_wslconfig("", env, files=files, session_profile="Q:\\Profiles\\alice") == users / "alice" / ".wslconfig"
    assert find_wslconfig("/x/.wslconfig", env, files=files, session_profile="C:\\Users\\josé") == Path("/x/.wslconfig")


def test_the_powershell_session_says_the_profile_once_in_its_first_answer(monkeypatch, tmp_path):
    from monitor.probes.interop import PowerShellProbe, find_windows_tool

    for key, value in FAKE_WINDOWS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("FAKE_WINDOWS_USERPROFILE", "C:\\Users\\josé")  # not ASCII: through a pipe in cp850
    probe = PowerShellProbe(find_windows_tool("powershell.exe"), timeout=10, first_timeout=30)
    asked = []
    real_query = probe.session.query
    probe.session.query = lambda line: asked.append("VMPROFILE" in line) or real_query(line)
    try:
        first, second = probe.sample(None), probe.sample(None)
    finally:
        probe.close()
    assert probe.user_profile == "C:\\Users\\josé" and asked == [True, False]
    assert first.bytes == second.bytes == 7812345856  # the extra line is not taken for garbage


@pytest.mark.parametrize("profile, mode", [("C:\\Users\\josé", "disabled"), ("C:\\Users\\alice", "gradual")])
def test_status_reads_the_wslconfig_in_the_sessions_profile(tmp_path, profile, mode):
    proc, users = wsl_tree_with_c_drive(tmp_path)
    result = run_cli("status", "--json", "--proc-root", str(proc), "--cpu-window", "0", "--db", str(tmp_path / "x.db"),
                     env={**FAKE_WINDOWS, "FAKE_WINDOWS_USERPROFILE": profile, "USER": "nobody-here"})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["host"]["source"] == "interop"
    name = profile.rsplit("\\", 1)[1]
    assert data["wsl_auto_memory_reclaim"] == {"mode": mode, "source": str(users / name / ".wslconfig")}


def test_the_watcher_reads_wsl_mode_again_once_the_session_said_the_profile(monkeypatch, tmp_path):
    from monitor.config.schema import Config, GeneralConfig
    from monitor.notify import Notifier
    from monitor.watch.wiring import Wiring

    proc, users = wsl_tree_with_c_drive(tmp_path)
    for key, value in FAKE_WINDOWS.items():
        monkeypatch.setenv(key, value)  # the PowerShell session is found on PATH
    monkeypatch.setenv("FAKE_WINDOWS_USERPROFILE", "C:\\Users\\josé")
    config = Config(general=GeneralConfig(proc_root=str(proc)))
    wiring = Wiring(config, tmp_path / "h.db", environ={"USER": "alice", "PATH": FAKE_WINDOWS["PATH"]},
                    reclaim_lock=tmp_path / "reclaim.lock")
    recorder = wiring.recorder(Notifier([]))
    try:
        assert recorder.wsl_mode == "gradual"  # built before any answer: the guess by name (alice's)
        recorder.sample_host()
        assert recorder.last_host.source == "interop"
        assert recorder.wsl_mode == "disabled"  # josé's, where the session said WSL reads it
    finally:
        recorder.probes.close()
        recorder.store.close()
