"""Running as a service: the systemd units, the wsl.conf boot command, the Windows task, install.

Each output is read back the way its consumer reads it: units by
``systemd-analyze verify`` (where the systemd package is installed) and by a
word splitter following systemd.service(5); the wsl.conf value by the rules
of WSL's config parser and then by a real ``sh -c``; the task by an XML
parser and by the CommandLineToArgvW rules wsl.exe parses its arguments with.
"""

from __future__ import annotations

import os
import tempfile
import shlex
import shutil
import stat
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from monitor import service
from monitor.service import (
    KEEPALIVE_TEXT,
    ServiceError,
    default_environment,
    default_paths,
    encode_task_xml,
    install,
    systemd_quote,
    systemd_unit,
    validate_distro_name,
    windows_task_xml,
    wsl_conf_boot_command,
)

REPO = Path(__file__).resolve().parent.parent
HOSTILE_ARGS = ["watch", "with space", 'dq"uote', "sq'uote", "back\\slash", "100%", "$HOME", "$(rm -rf /)",
                "#hash", ";", "--db=/tmp/a b/history.db"]
NS = {"t": service.TASK_NAMESPACE}


def fake_exe(directory: Path, body: str = "exit 0") -> str:
    directory.mkdir(parents=True, exist_ok=True)
    exe = directory / "vmmemctl"
    exe.write_text(f"#!/bin/sh\n{body}\n")
    exe.chmod(0o755)
    return str(exe)


# ------------------------------------------------------------------ reading a unit back


def unit_settings(text: str) -> dict[str, list[tuple[str, str]]]:
    """Sections of a unit file -> [(key, value)], as systemd reads them (comments and blanks skipped)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in text.splitlines():
        if not line.strip() or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"not a setting: {line!r}"
        current.append((key, value))
    return sections


def values(text: str, section: str, key: str) -> list[str]:
    return [v for k, v in unit_settings(text)[section] if k == key]


def systemd_words(line: str) -> list[str]:
    """Split an Exec/Environment value as systemd does, for the quoting systemd_quote produces."""
    words, i = [], 0
    while i < len(line):
        if line[i] in " \t":
            i += 1
            continue
        word = ""
        if line[i] == '"':
            i += 1
            while line[i] != '"':
                if line[i] == "\\":
                    i += 1
                word += line[i]
                i += 1
            i += 1
        else:
            while i < len(line) and line[i] not in " \t":
                word += line[i]
                i += 1
        words.append(word.replace("%%", "%").replace("$$", "$"))
    return words


@pytest.mark.parametrize("scope", ["system", "user"])
def test_unit_has_the_hardening_and_lifecycle_settings(scope, tmp_path):
    unit = systemd_unit("/opt/vmmemctl/bin/vmmemctl", ["watch"], scope, default_paths(scope, {"HOME": "/home/u"}))
    service_settings = dict(unit_settings(unit)["Service"])
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "read-only",
                       "PrivateTmp": "yes", "MemoryMax": "64M", "Restart": "on-failure", "KillSignal": "SIGTERM",
                       "TimeoutStopSec": "5", "Type": "exec"}.items():
        assert service_settings[key] == value, key
    assert "RestartSec" in service_settings
    # /proc/sys/vm must stay writable for the root unit: ProtectKernelTunables would make it read-only.
    assert "ProtectKernelTunables" not in service_settings
    assert "ProtectControlGroups" not in service_settings  # gradual writes /sys/fs/cgroup/memory.reclaim
    assert "-/run/lock" in values(unit, "Service", "ReadWritePaths")


def test_system_unit_writes_only_its_state_dir_the_lock_its_endpoint_and_the_vm_claim():
    unit = systemd_unit("/usr/bin/vmmemctl", ["watch"], "system", default_paths("system"),
                        default_environment("system", {}))
    assert values(unit, "Service", "StateDirectory") == ["vmmemctl"]
    assert values(unit, "Service", "ReadWritePaths") == ["-/run/lock", "-/mnt/wsl"]
    # /run/vmmemctl for the control endpoint, 0755 so that users reach the socket (the watcher checks them)
    assert values(unit, "Service", "RuntimeDirectory") == ["vmmemctl"]
    assert values(unit, "Service", "RuntimeDirectoryMode") == ["0755"]
    assert values(unit, "Service", "CapabilityBoundingSet") == ["CAP_DAC_READ_SEARCH"]
    assert values(unit, "Install", "WantedBy") == ["multi-user.target"]
    env = [systemd_words(v)[0] for v in values(unit, "Service", "Environment")]
    assert {"XDG_DATA_HOME=/var/lib", "XDG_STATE_HOME=/var/lib", "XDG_CONFIG_HOME=/etc",
            "VMMEMCTL_SERVICE=system"} <= set(env)


def test_user_unit_sandboxes_in_a_user_namespace_and_allows_its_own_dirs():
    paths = default_paths("user", {"HOME": "/home/u"})
    unit = systemd_unit("/home/u/.venv/bin/vmmemctl", ["watch"], "user", paths)
    assert values(unit, "Service", "PrivateUsers") == ["yes"]
    assert values(unit, "Service", "ReadWritePaths") == [
        "/home/u/.local/share/vmmemctl", "/home/u/.local/state/vmmemctl", "-/run/lock"]
    assert values(unit, "Install", "WantedBy") == ["default.target"]
    assert "does not reclaim" in unit  # the decision is written where a reader of the unit sees it


def test_hostile_arguments_come_back_as_the_same_words():
    unit = systemd_unit("/opt/my tools/vmmemctl", HOSTILE_ARGS, "user", {"data": "/home/u/da ta"},
                        {"WSL_DISTRO_NAME": "x y%z$w"})
    (exec_start,) = values(unit, "Service", "ExecStart")
    assert systemd_words(exec_start) == ["/opt/my tools/vmmemctl", *HOSTILE_ARGS]
    assert systemd_words(values(unit, "Service", "Environment")[0]) == ["WSL_DISTRO_NAME=x y%z$w"]
    assert systemd_words(values(unit, "Service", "ReadWritePaths")[0]) == ["/home/u/da ta"]


@pytest.mark.parametrize("bad", [
    dict(exe="vmmemctl"),  # relative: systemd needs an absolute path
    dict(exe="/bin/vmmemctl\nExecStartPre=/bin/sh"),  # a newline would add a setting
    dict(args=["watch\n[Install]"]),
    dict(paths={"data": "relative/dir"}),
    dict(paths={"data": "/home/u/../../etc"}),
])
def test_unit_refuses_what_would_change_its_meaning(bad):
    kwargs = dict(exe="/usr/bin/vmmemctl", args=["watch"], scope="user", paths={"data": "/home/u/d"}) | bad
    with pytest.raises(ServiceError):
        systemd_unit(**kwargs)


def test_systemd_quote_leaves_plain_words_alone():
    assert systemd_quote("/usr/bin/vmmemctl") == "/usr/bin/vmmemctl"
    assert systemd_quote("127.0.0.1:9469") == "127.0.0.1:9469"
    assert systemd_quote("50%") == '"50%%"'


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if not path:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd); the parser checks above still ran")
    return path


@pytest.mark.parametrize("scope", ["system", "user"])
def test_systemd_analyze_verify_accepts_the_unit(scope, tmp_path):
    analyze = systemd_analyze()
    # Not under /tmp: the unit's PrivateTmp=yes would hide it, and install refuses that (issue 28)
    if not os.access("/dev/shm", os.W_OK):
        pytest.skip("needs a writable folder outside /tmp (/dev/shm) for the unit's executable")
    outside = Path(tempfile.mkdtemp(prefix="vmmemctl-test-", dir="/dev/shm"))
    try:
        exe = fake_exe(outside / "bin dir")
        unit = systemd_unit(exe, HOSTILE_ARGS, scope, default_paths(scope, {"HOME": str(tmp_path / "home")}),
                            default_environment(scope, {"WSL_DISTRO_NAME": "Ubuntu-24.04"}))
        unit_dir = tmp_path / "units"
        unit_dir.mkdir()
        (unit_dir / service.UNIT_NAME).write_text(unit)
        runtime = tmp_path / "runtime"
        runtime.mkdir(mode=0o700)
        cmd = [analyze] + (["--user"] if scope == "user" else []) + ["verify", str(unit_dir / service.UNIT_NAME)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)})
    finally:
        shutil.rmtree(outside, ignore_errors=True)
    # verify exits 0 on mere warnings ("Unknown key ..., ignoring"), so any line about our unit fails too.
    about_us = [line for line in (done.stdout + done.stderr).splitlines() if "vmmemctl" in line]
    assert done.returncode == 0 and about_us == [], done.stdout + done.stderr


def test_read_only_proc_sys_is_what_breaks_reclaims(tmp_path):
    """Why the system unit sets ProtectSystem=strict but not ProtectKernelTunables.

    systemd implements both with read-only bind mounts; redo them in a
    private mount namespace and write a sysctl back unchanged: a read-only
    root leaves /proc/sys writable, a read-only /proc/sys does not.
    """
    if os.geteuid() != 0 or not shutil.which("unshare") or \
            subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs root and unshare -m")
    current = Path("/proc/sys/vm/swappiness").read_text().strip()
    write = f"printf %s {current} > /proc/sys/vm/swappiness"

    def in_namespace(read_only: str) -> subprocess.CompletedProcess:
        script = f"mount --bind {read_only} {read_only} && mount -o remount,bind,ro {read_only} && {write}"
        return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                              capture_output=True, text=True, timeout=30)

    assert in_namespace("/").returncode == 0  # ProtectSystem=strict
    blocked = in_namespace("/proc/sys")  # ProtectKernelTunables=yes
    assert blocked.returncode != 0 and "Read-only file system" in blocked.stderr


# ------------------------------------------------------------------ wsl.conf


def wsl_conf_decode(line: str) -> str:
    """A ``key = value`` line read as WSL's configfile.cpp does: quotes dropped, 5 escapes, # comments."""
    key, _, raw = line.partition("=")
    raw = raw.lstrip(" \t")
    value, in_quote, i = "", False, 0
    while i < len(raw):
        ch = raw[i]
        if ch == '"':
            in_quote = not in_quote
        elif ch == "\\":
            i += 1
            value += {"\\": "\\", '"': '"', "b": "\b", "n": "\n", "t": "\t"}[raw[i]]  # else: an invalid line
        elif ch == "#" and not in_quote:
            break
        else:
            value += ch
        i += 1
    assert not in_quote
    return value


def boot_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines[0] == "[boot]"
    (command,) = [line for line in lines if line.startswith("command")]
    return command


def test_boot_command_value_survives_wsl_conf_and_sh_quoting():
    exe = "/home/u/my tools/vmmemctl"
    command = wsl_conf_decode(boot_line(wsl_conf_boot_command(exe, HOSTILE_ARGS)))
    words = shlex.split(command)
    assert words[:5] == ["env", "XDG_DATA_HOME=/var/lib", "XDG_STATE_HOME=/var/lib", "XDG_CONFIG_HOME=/etc",
                         "nohup"]
    assert words[5:5 + 1 + len(HOSTILE_ARGS)] == [exe, *HOSTILE_ARGS]
    assert command.endswith("2>&1 &")  # detached: the distro's start never waits for it


def test_boot_command_runs_detached_with_the_exact_arguments(tmp_path, monkeypatch):
    monkeypatch.setattr(service, "BOOT_LOG", str(tmp_path / "boot.log"))
    record = tmp_path / "args"
    go = tmp_path / "go"
    # the stand-in watcher waits until the test says go: a boot command that waited for it would hang
    exe = fake_exe(tmp_path / "bin dir", f"while [ ! -e '{go}' ]; do sleep 0.05; done\n"
                                         f"printf '%s\\000' \"$@\" \"$XDG_DATA_HOME\" > '{record}.tmp'\n"
                                         f"mv '{record}.tmp' '{record}'")
    command = wsl_conf_decode(boot_line(wsl_conf_boot_command(exe, HOSTILE_ARGS)))
    subprocess.run(["sh", "-c", command], check=True, timeout=30)  # what WSL runs at distro start
    assert not record.exists()  # it returned while the watcher still waits: boot is not blocked
    go.touch()
    deadline = time.monotonic() + 20
    while not record.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert record.read_bytes().split(b"\0")[:-1] == [a.encode() for a in [*HOSTILE_ARGS, "/var/lib"]]


def test_boot_command_refuses_control_characters():
    with pytest.raises(ServiceError):
        wsl_conf_boot_command("/usr/bin/vmmemctl", ["watch", "a\nb"])


# ------------------------------------------------------------------ Windows task


def windows_argv(cmdline: str) -> list[str]:
    """CommandLineToArgvW's rules (backslashes count only before a quote), as wsl.exe parses arguments."""
    args, i, n = [], 0, len(cmdline)
    while True:
        while i < n and cmdline[i] in " \t":
            i += 1
        if i >= n:
            return args
        arg, in_quote = "", False
        while i < n and (in_quote or cmdline[i] not in " \t"):
            if cmdline[i] == "\\":
                j = i
                while j < n and cmdline[j] == "\\":
                    j += 1
                if j < n and cmdline[j] == '"':
                    arg += "\\" * ((j - i) // 2)
                    if (j - i) % 2:
                        arg += '"'
                        j += 1
                else:
                    arg += "\\" * (j - i)
                i = j
            elif cmdline[i] == '"':
                in_quote = not in_quote
                i += 1
            else:
                arg += cmdline[i]
                i += 1
        args.append(arg)


def task_exec(xml: str) -> tuple[str, list[str]]:
    root = ET.fromstring(encode_task_xml(xml))  # the UTF-16 bytes schtasks reads, BOM and declaration
    return root.findtext("t:Actions/t:Exec/t:Command", namespaces=NS), \
        windows_argv(root.findtext("t:Actions/t:Exec/t:Arguments", namespaces=NS))


def test_task_xml_is_well_formed_and_runs_the_watcher_headless_at_logon():
    xml = windows_task_xml("Ubuntu-24.04", "/home/u/.venv/bin/vmmemctl", ["watch"])
    assert xml.startswith('<?xml version="1.0" encoding="UTF-16"?>')
    assert encode_task_xml(xml)[:2] == b"\xff\xfe"  # UTF-16 LE byte-order mark
    root = ET.fromstring(encode_task_xml(xml))
    assert root.tag == f"{{{service.TASK_NAMESPACE}}}Task"
    assert root.find("t:Triggers/t:LogonTrigger", NS) is not None
    assert root.findtext("t:Settings/t:ExecutionTimeLimit", namespaces=NS) == "PT0S"
    assert root.findtext("t:Settings/t:MultipleInstancesPolicy", namespaces=NS) == "IgnoreNew"
    assert root.find("t:Settings/t:RestartOnFailure/t:Interval", NS) is not None
    command, argv = task_exec(xml)
    assert command == r"%SystemRoot%\System32\conhost.exe"
    # the system unit's places (issue 24): the same XDG folders as the unit and the wsl.conf line
    assert argv == ["--headless", "wsl.exe", "-d", "Ubuntu-24.04", "-u", "root", "-e", "/usr/bin/env",
                    *(f"{k}={v}" for k, v in service.SYSTEM_ENVIRONMENT.items()), "/home/u/.venv/bin/vmmemctl", "watch"]


def test_task_xml_escapes_and_quotes_awkward_but_allowed_values():
    args = ["watch", "a b", 'q"uote', "<tag>&amp;", "back\\slash\\", "#"]
    xml = windows_task_xml("Debian", "/opt/a&b <c>/vmmemctl", args, user="CORP\\J. O'Brien", headless=False)
    command, argv = task_exec(xml)
    assert command == r"%SystemRoot%\System32\wsl.exe"
    assert argv == ["-d", "Debian", "-u", "root", "-e", "/usr/bin/env",
                    *(f"{k}={v}" for k, v in service.SYSTEM_ENVIRONMENT.items()), "/opt/a&b <c>/vmmemctl", *args]
    root = ET.fromstring(encode_task_xml(xml))
    assert root.findtext("t:Triggers/t:LogonTrigger/t:UserId", namespaces=NS) == "CORP\\J. O'Brien"


@pytest.mark.parametrize("name", ["Ubuntu", "Ubuntu-24.04", "my_distro.v2", "a" * 64, "0"])
def test_distro_names_that_pass(name):
    assert validate_distro_name(name) == name
    windows_task_xml(name, "/usr/bin/vmmemctl")


@pytest.mark.parametrize("name", ["Ubuntu; rm -rf /", "$(x)", "", "a" * 65, "Übuntu", "Ubuntu\n",
                                  "Ubuntu 22.04", "`id`", "a&b", "%USERPROFILE%", "Ubuntu\x00", "中文", None])
def test_hostile_distro_names_are_refused(name):
    with pytest.raises(ServiceError, match="distro name"):
        windows_task_xml(name, "/usr/bin/vmmemctl")


def test_service_errors_are_user_errors_the_cli_prints_in_one_line():
    from monitor.errors import UserError

    with pytest.raises(UserError) as caught:
        validate_distro_name("Ubuntu; rm -rf /")
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)


@pytest.mark.parametrize("exe, args", [("vmmemctl", []), ("/usr/bin/vmmemctl", ["%PATH%"]),
                                       ("/usr/bin/vmm\x07", []), ("/usr/bin/vmmemctl", ["a\r\nb"])])
def test_task_refuses_relative_paths_percent_and_control_characters(exe, args):
    with pytest.raises(ServiceError):
        windows_task_xml("Ubuntu", exe, args)


# ------------------------------------------------------------------ install


def test_print_gives_exactly_the_unit(isolated_home):
    code, text = install("user", True, "/usr/bin/vmmemctl", ["watch"])
    assert code == 0
    assert text == systemd_unit("/usr/bin/vmmemctl", ["watch"], "user", default_paths("user"),
                                default_environment("user"))


def test_install_without_systemd_writes_nothing_and_explains_the_alternatives(isolated_home, tmp_path):
    """Issue 28: it wrote the unit (to /etc, as root) although nothing would ever run it."""
    code, text = install("user", False, "/usr/bin/vmmemctl", root=tmp_path / "no-systemd")
    home = Path(isolated_home["HOME"])
    assert code == 1 and not (home / ".config/systemd/user/vmmemctl.service").exists()
    assert text.startswith("systemd is not running in this distro (PID 1 is not systemd): no unit written.")
    assert "systemd=true" in text and "[boot]" in text and "command = " in text and "does not reclaim" in text
    assert "/etc/vmmemctl/config.toml" in text  # which config the boot line's watcher reads


def test_an_executable_under_tmp_is_refused_in_one_line(isolated_home, tmp_path):
    """Issue 28: a clone under /tmp gave ExecStart=/tmp/... with PrivateTmp=yes: a unit that cannot start.
    `install` refuses it; `--print` shows the unit (and the CLI warns on stderr)."""
    environ, calls = fake_systemctl(tmp_path)
    code, text = install("system", False, "/tmp/clone/.venv/bin/vmmemctl", environ=environ, root=tmp_path / "root")
    assert code == 2 and "\n" not in text and text.startswith("the executable /tmp/clone/.venv/bin/vmmemctl "
                                                               "is under /tmp, which the service cannot see")
    assert not (tmp_path / "root/etc/systemd/system/vmmemctl.service").exists() and not calls.exists()
    assert install("system", False, "/var/tmp/x/vmmemctl", environ=environ, root=tmp_path / "root")[0] == 2
    assert install("system", True, "/tmp/clone/.venv/bin/vmmemctl")[0] == 0
    assert service.tmp_conflict("/tmpfoo/bin/vmmemctl") is None  # only /tmp itself


def test_the_unit_and_the_install_say_which_config_the_service_reads(isolated_home, tmp_path):
    unit = install("system", True, "/usr/bin/vmmemctl")[1]
    assert "# Its config: /etc/vmmemctl/config.toml (`vmmemctl config check /etc/vmmemctl/config.toml`" in unit
    environ, calls = fake_systemctl(tmp_path)
    code, text = install("user", False, "/usr/bin/vmmemctl", environ=environ, root=tmp_path / "root")
    assert code == 0 and "its config: ~/.config/vmmemctl/config.toml" in text
    for directory in default_paths("user").values():  # ReadWritePaths= must exist when the unit starts
        assert Path(directory).is_dir()


def fake_systemctl(tmp_path: Path, exit_code: int = 0, stderr: str = "") -> tuple[dict, Path]:
    calls = tmp_path / "systemctl-calls"
    fake_exe(tmp_path / "fakebin", f"echo \"$*\" >> '{calls}'\necho '{stderr}' >&2\nexit {exit_code}")
    (tmp_path / "fakebin/vmmemctl").rename(tmp_path / "fakebin/systemctl")
    root = tmp_path / "root"
    (root / "run/systemd/system").mkdir(parents=True)  # "systemd is PID 1"
    return {**os.environ, "PATH": str(tmp_path / "fakebin")}, calls


def test_install_with_systemd_reloads_and_enables(isolated_home, tmp_path):
    environ, calls = fake_systemctl(tmp_path)
    code, text = install("user", False, "/usr/bin/vmmemctl", environ=environ, root=tmp_path / "root")
    assert code == 0, text
    assert calls.read_text().splitlines() == ["--user daemon-reload", "--user enable --now vmmemctl.service"]
    assert "systemctl --user status vmmemctl.service" in text


def test_install_reports_a_systemctl_failure_in_one_line(isolated_home, tmp_path):
    environ, _ = fake_systemctl(tmp_path, exit_code=1, stderr="Failed to connect to bus: No medium found")
    code, text = install("user", False, "/usr/bin/vmmemctl", environ=environ, root=tmp_path / "root")
    assert code == 1
    assert "\n" not in text and "daemon-reload" in text and "No medium found" in text


def test_install_system_scope_writes_under_etc(tmp_path):
    environ, calls = fake_systemctl(tmp_path)
    code, text = install("system", False, "/usr/bin/vmmemctl", environ=environ, root=tmp_path / "root")
    unit_file = tmp_path / "root/etc/systemd/system/vmmemctl.service"
    assert code == 0 and str(unit_file) in text
    assert "StateDirectory=vmmemctl" in unit_file.read_text()


def test_install_errors_are_one_line(isolated_home, tmp_path):
    environ, calls = fake_systemctl(tmp_path)
    (tmp_path / "root/etc").write_text("a file where a directory should be")
    code, text = install("system", False, "/usr/bin/vmmemctl", environ=environ, root=tmp_path / "root")
    assert code == 1 and "\n" not in text and text.startswith("cannot write")
    code, text = install("user", True, "vmmemctl")
    assert code == 2 and "absolute path" in text and "\n" not in text


def test_default_paths_agree_with_platformdirs(isolated_home):
    platformdirs = pytest.importorskip("platformdirs")
    paths = default_paths("user")
    assert paths["data"] == platformdirs.user_data_dir("vmmemctl")
    assert paths["state"] == platformdirs.user_state_dir("vmmemctl")
    assert platformdirs.user_log_dir("vmmemctl").startswith(paths["state"])  # logs are inside the state dir


def test_system_environment_moves_platformdirs_to_var_lib(monkeypatch):
    platformdirs = pytest.importorskip("platformdirs")
    for key, value in service.SYSTEM_ENVIRONMENT.items():
        monkeypatch.setenv(key, value)
    assert platformdirs.user_data_dir("vmmemctl") == service.SYSTEM_STATE_DIR
    assert platformdirs.user_state_dir("vmmemctl") == service.SYSTEM_STATE_DIR
    assert platformdirs.user_config_dir("vmmemctl") == "/etc/vmmemctl"


def test_service_module_needs_only_the_stdlib():
    code = ("import sys; before = set(sys.modules); import monitor.service; "
            "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
            "print(sorted(new - set(sys.stdlib_module_names) - {'monitor'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout.strip() == "[]"


def test_keepalive_text_says_what_stops_the_watcher():
    for phrase in ("vmIdleTimeout", "instanceIdleTimeout", "microsoft/WSL#8854", "Task Scheduler",
                   "nothing left to reclaim"):
        assert phrase in KEEPALIVE_TEXT
    assert all(len(line) <= 80 for line in KEEPALIVE_TEXT.splitlines())


def test_unit_files_are_not_world_writable(isolated_home, tmp_path):
    environ, calls = fake_systemctl(tmp_path)
    assert install("user", False, "/usr/bin/vmmemctl", environ=environ, root=tmp_path / "root")[0] == 0
    unit_file = Path(isolated_home["XDG_CONFIG_HOME"]) / "systemd/user/vmmemctl.service"
    assert not unit_file.stat().st_mode & stat.S_IWOTH


# ------------------------------------------------------------------ issue 17.3, 12.5: the task from the CLI


def _parse_as_declared(data: bytes) -> ET.Element:
    """Parse bytes with the declaration they carry, as schtasks would (expat honours encoding=)."""
    parser = ET.XMLParser()
    parser.feed(data)
    return parser.close()


def _fake_tools_env(tmp_path) -> dict:
    fake = tmp_path / "win"
    fake.mkdir()
    for name in ("whoami.exe", "_fake_windows.py"):
        (fake / name).symlink_to(Path(__file__).parent / "fakebin" / name)
    return {"PATH": f"{fake}:{os.environ['PATH']}", "WSL_DISTRO_NAME": "Ubuntu"}


def test_printed_and_written_task_files_parse_as_what_they_declare(tmp_path, isolated_home):
    from helpers import run_cli

    env = _fake_tools_env(tmp_path)
    printed = run_cli("service", "install", "--windows-task", env=env)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    assert "--output" in printed.stderr
    root = _parse_as_declared(printed.stdout.encode("utf-8"))
    assert root.findtext("t:Principals/t:Principal/t:UserId", namespaces=NS) == FAKE_SID
    out = tmp_path / "task.xml"
    written = run_cli("service", "install", "--windows-task", "--output", str(out), env=env)
    assert written.returncode == 0 and "schtasks.exe /create /xml task.xml /tn vmmemctl" in written.stdout
    data = out.read_bytes()
    assert data.startswith(b"\xff\xfe") and data.decode("utf-16").startswith('<?xml version="1.0" encoding="UTF-16"?>')
    assert ET.tostring(_parse_as_declared(data)) == ET.tostring(root)


FAKE_SID = "S-1-5-21-1004336348-1177238915-682003330-1001"  # tests/fakebin/_fake_windows.py's whoami.exe


def test_a_non_ascii_windows_user_is_given_to_the_task_by_sid(tmp_path, isolated_home):
    """whoami.exe writes in the OEM code page (850 here): 'josé' would decode to U+FFFD and map to no
    account; the SID from `whoami.exe /user /fo csv /nh` is ASCII (issue 27)."""
    from helpers import run_cli

    env = {**_fake_tools_env(tmp_path), "FAKE_WINDOWS_USER": "DESKTOP-4F2K9\\josé",
           "FAKE_WINDOWS_SID": "S-1-5-21-11-22-33-1002"}
    out = tmp_path / "task.xml"
    result = run_cli("service", "install", "--windows-task", "--output", str(out), env=env)
    assert result.returncode == 0, result.stderr
    root = ET.fromstring(out.read_bytes())
    for where in ("t:Triggers/t:LogonTrigger/t:UserId", "t:Principals/t:Principal/t:UserId"):
        assert root.findtext(where, namespaces=NS) == "S-1-5-21-11-22-33-1002"
    assert "\ufffd" not in out.read_bytes().decode("utf-16")


def test_a_user_name_lost_in_decoding_is_refused_in_one_line(tmp_path, isolated_home):
    from helpers import run_cli

    result = run_cli("service", "install", "--windows-task", "--output", str(tmp_path / "task.xml"),
                     "--windows-user", "DESKTOP-4F2K9\\jos\ufffd", env=_fake_tools_env(tmp_path))
    assert result.returncode != 0 and result.stderr.count("\n") == 1 and "U+FFFD" in result.stderr, result.stderr
    assert not (tmp_path / "task.xml").exists()


def test_task_user_from_the_command_line_wins_and_the_trigger_repeats(tmp_path, isolated_home):
    from helpers import run_cli

    out = tmp_path / "task.xml"
    result = run_cli("service", "install", "--windows-task", "--output", str(out), "--windows-user", "CORP\\bob",
                     env=_fake_tools_env(tmp_path))
    assert result.returncode == 0, result.stderr
    root = ET.fromstring(out.read_bytes())
    assert root.findtext("t:Triggers/t:LogonTrigger/t:UserId", namespaces=NS) == "CORP\\bob"
    # conhost --headless hides the exit code: restarts come from a repeating trigger
    assert root.findtext("t:Triggers/t:LogonTrigger/t:Repetition/t:Interval", namespaces=NS) == "PT5M"


def test_the_windows_task_the_unit_and_the_boot_line_record_in_the_same_places(tmp_path):
    """Issue 24: the Windows task's watcher once kept its history in root's XDG folders, where no
    user's CLI looked, beside the unit's. Each way of starting the root watcher gives it one
    environment: the system unit's."""
    env = {**os.environ, "SUDO_USER": "alice"}
    unit = subprocess.run([sys.executable, "-m", "monitor", "service", "install", "--system", "--print"],
                          capture_output=True, text=True, env=env, cwd=REPO)
    task = subprocess.run([sys.executable, "-m", "monitor", "service", "install", "--windows-task", "--distro",
                           "Ubuntu", "--windows-user", "PC\\alice"], capture_output=True, text=True, env=env, cwd=REPO)
    assert unit.returncode == 0 and task.returncode == 0, (unit.stderr, task.stderr)
    for key, value in service.SYSTEM_ENVIRONMENT.items():
        assert f"{key}={value}" in unit.stdout and f"{key}={value}" in task.stdout
    # and both let the user who ran sudo act through the root watcher (their dashboard's Reclaim)
    assert "watch --allow alice" in unit.stdout and "watch --allow alice" in task.stdout
