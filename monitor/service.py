"""Running ``vmmemctl watch`` in the background: a systemd unit, a wsl.conf boot command, a Windows task.

Three ways, one per situation:

    systemd unit       WSL with ``[boot] systemd=true`` in /etc/wsl.conf: ``service install [--user|--system]``
    wsl.conf command   systemd off: ``[boot] command=`` runs as root when the distro starts
    Windows task       Task Scheduler starts a hidden ``wsl.exe -d DISTRO -u root -e vmmemctl watch`` at logon

The system unit runs as root so it can reclaim; it is hardened (read-only
filesystem except what it writes, no new privileges, a memory cap). The user
unit is hardened the same way and therefore cannot reclaim: see USER_SCOPE_NOTE.

Nothing here builds a shell string from user input except the wsl.conf
command, which WSL itself runs through a shell; every word of it is quoted
with :func:`shlex.quote` and then escaped for WSL's config parser.
Stdlib only: the CLI imports this for ``service install`` and nothing heavier.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable, Literal, Mapping, Sequence

from monitor.errors import UserError
from monitor.windows import DISTRO_NAME  # one rule for distro names, shared with host mode

Scope = Literal["user", "system"]
UNIT_NAME = "vmmemctl.service"
LOCK_DIR = "/run/lock"  # monitor.reclaim.default_lock_path: shared by root and sudo reclaims
SYSTEM_STATE_DIR = "/var/lib/vmmemctl"
BOOT_LOG = "/var/log/vmmemctl-boot.log"
MEMORY_MAX = "64M"  # our target RSS is <= 30 MiB; twice that leaves room for a reclaim's samples
TASK_NAMESPACE = "http://schemas.microsoft.com/windows/2004/02/mit/task"

# For the system scope, platformdirs (which the CLI uses for the history DB, the
# state and log dirs and the config) honours the XDG variables, so these put
# everything under /var/lib/vmmemctl and read /etc/vmmemctl/config.toml,
# instead of root's home, which ProtectHome= makes read-only.
SYSTEM_ENVIRONMENT = {"XDG_DATA_HOME": "/var/lib", "XDG_STATE_HOME": "/var/lib", "XDG_CONFIG_HOME": "/etc"}

USER_SCOPE_NOTE = (
    "The user unit notifies, prompts and keeps the history, but does not reclaim by itself: a user cannot "
    "write /proc/sys/vm, and the sudo path (sudo -n vmmemctl _privileged-write) needs sudo's setuid bit, "
    "which NoNewPrivileges=yes forbids, as does the user namespace (PrivateUsers=yes) that a user unit needs "
    "for any filesystem sandboxing. For automatic reclaims install the system unit (sudo vmmemctl service "
    "install --system); with the user unit, answer prompts with `vmmemctl reclaim` or the TUI.")

KEEPALIVE_TEXT = """\
What keeps the watcher alive, and what happens when the VM stops

WSL stops a distro a few seconds after the last wsl.exe session attached to
it exits ([general] instanceIdleTimeout, 15 s by default), and stops the VM
after vmIdleTimeout (60 s by default) once no distro runs. A systemd service
is not a session: since WSL's systemd support, a distro is shut down shortly
after its last shell closes even with services running (microsoft/WSL#8854,
still open; microsoft/WSL#9968). Reports differ across WSL versions
(sakai135/wsl-vpnkit#221 saw a systemd service hold the VM up), so do not
rely on it either way.

So the systemd unit and the wsl.conf boot command run the watcher while you
use WSL: from the first shell, VS Code window or any wsl.exe until shortly
after the last one exits. That is the time that matters. When the VM stops,
the watcher stops with it (SIGTERM, then the VM is gone) and there is
nothing left to reclaim: Windows gets all of the VM's memory back. The next
wsl.exe boots the VM, systemd or the boot command starts the watcher again,
and it carries on with the same history.

To keep the watcher (and so the VM) running with no terminal open, start it
from Windows: the Task Scheduler task runs a hidden `wsl.exe -d DISTRO -u
root -e vmmemctl watch` at logon, and that wsl.exe is a session, so it holds
the distro and the VM up (agezt/agezt#489 found an in-VM systemd keepalive
was not enough and a Windows-side wsl.exe task was). Setting
`vmIdleTimeout=-1` under [wsl2] and `instanceIdleTimeout=-1` under [general]
in .wslconfig also keeps them up (a maintainer suggests the former in
microsoft/WSL#11239). Either way the VM then never returns its base
footprint; vmmemctl keeps the page-cache part of it small.
"""

Run = Callable[..., subprocess.CompletedProcess]


class ServiceError(UserError):
    """Input that cannot go into a unit or a task (a hostile distro name, a relative path): one line, exit 2."""


# ------------------------------------------------------------------ quoting


def _check_text(what: str, text: str) -> None:
    """Control characters would end a unit line, an INI value or an XML attribute early: refuse them."""
    if any(not ch.isprintable() for ch in text):
        raise ServiceError(f"{what} {text!r}: contains control characters")


def systemd_quote(word: str, *, expand_dollar: bool = True) -> str:
    """One word for a unit file, read back by systemd as exactly ``word``.

    systemd splits on whitespace, honours "double quotes" with C escapes,
    expands %-specifiers everywhere and (in Exec lines) $VARIABLES, so
    ``%`` becomes ``%%`` and ``$`` becomes ``$$`` (systemd.service(5),
    "Command lines"; systemd.unit(5), "Specifiers").
    """
    _check_text("unit word", word)
    escaped = word.replace("%", "%%")
    if expand_dollar:
        escaped = escaped.replace("$", "$$")
    if re.fullmatch(r"[A-Za-z0-9_@+=:,./-]+", word):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _absolute(what: str, path: str) -> str:
    _check_text(what, path)
    if not path.startswith("/") or ".." in Path(path).parts:
        raise ServiceError(f"{what} {path!r}: expected an absolute path without '..'")
    return path


# ------------------------------------------------------------------ systemd


def default_paths(scope: Scope, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The directories the watcher writes (history DB, state and logs), as platformdirs computes them on Linux.

    Stdlib only, so the rule is repeated here: ``$XDG_DATA_HOME`` else
    ``~/.local/share``, ``$XDG_STATE_HOME`` else ``~/.local/state`` (logs go
    to the state dir's ``log/``); a test keeps it equal to platformdirs.
    """
    if scope == "system":
        return {"data": SYSTEM_STATE_DIR, "state": SYSTEM_STATE_DIR}
    environ = os.environ if environ is None else environ
    home = environ.get("HOME") or str(Path.home())
    data = environ.get("XDG_DATA_HOME", "").strip() or f"{home}/.local/share"
    state = environ.get("XDG_STATE_HOME", "").strip() or f"{home}/.local/state"
    return {"data": f"{data}/vmmemctl", "state": f"{state}/vmmemctl"}


def default_environment(scope: Scope, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment= lines: where files go (system), which distro this is, and which unit runs us."""
    environ = os.environ if environ is None else environ
    env = dict(SYSTEM_ENVIRONMENT) if scope == "system" else {}
    # Under systemd WSL sets no WSL_DISTRO_NAME; the kernel still says WSL2, this just names the distro.
    distro = environ.get("WSL_DISTRO_NAME", "")
    if DISTRO_NAME.fullmatch(distro):
        env["WSL_DISTRO_NAME"] = distro
    env["VMMEMCTL_SERVICE"] = scope  # lets the watcher say "user unit: prompts only" instead of failing reclaims
    return env


def systemd_unit(exe: str, args: Sequence[str], scope: Scope, paths: Mapping[str, str],
                 environment: Mapping[str, str] | None = None) -> str:
    """A hardened unit that runs ``exe args`` (``vmmemctl watch ...``) in WSL with systemd=true.

    ``paths`` names every directory the watcher writes (e.g. from
    :func:`default_paths`); everything else is read-only to it.
    """
    if scope not in ("user", "system"):
        raise ServiceError(f"scope {scope!r}: expected 'user' or 'system'")
    command = " ".join([systemd_quote(_absolute("executable", exe))] + [systemd_quote(a) for a in args])
    lines = _unit_header(scope) + [
        "[Unit]",
        "Description=vmmemctl: watch the WSL2 VM's memory and reclaim idle guest page cache",
        "# At most 5 restarts in 5 minutes, then stay failed (systemctl status shows why).",
        "StartLimitIntervalSec=300",
        "StartLimitBurst=5",
        "",
        "[Service]",
        "Type=exec",
        f"ExecStart={command}",
        "# `systemctl reload vmmemctl`: the watcher re-reads its config (README: Reloading the config).",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ]
    for key, value in (environment or {}).items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ServiceError(f"environment name {key!r}: expected letters, digits and _")
        lines.append(f"Environment={systemd_quote(f'{key}={value}', expand_dollar=False)}")
    lines += [
        "Restart=on-failure",
        "RestartSec=10s",
        "# The watcher exits cleanly on SIGTERM within a second or two.",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=5",
        f"# Our target RSS is <= 30 MiB; past {MEMORY_MAX} something is wrong and the kernel stops it.",
        f"MemoryMax={MEMORY_MAX}",
        "",
    ] + (_system_sandbox(paths) if scope == "system" else _user_sandbox(paths)) + [
        "",
        "[Install]",
        f"WantedBy={'multi-user.target' if scope == 'system' else 'default.target'}",
    ]
    return "\n".join(lines) + "\n"


def _unit_header(scope: Scope) -> list[str]:
    where = "/etc/systemd/system" if scope == "system" else "~/.config/systemd/user"
    ctl = "systemctl" if scope == "system" else "systemctl --user"
    return [
        f"# vmmemctl {scope} unit, written by `vmmemctl service install --{scope}`.",
        "# For WSL with systemd: [boot] systemd=true in /etc/wsl.conf, then `wsl --shutdown` once.",
        f"# Install by hand: save as {where}/{UNIT_NAME}, then",
        f"#   {ctl} daemon-reload && {ctl} enable --now {UNIT_NAME}",
        "# systemd creates /var/lib/vmmemctl (StateDirectory=)." if scope == "system" else
        "# The directories in ReadWritePaths= must exist first (install creates them).",
        "",
    ]


def _rw_lines(paths: Mapping[str, str], state_directory: bool) -> list[str]:
    lines, seen = [], set()
    for name, path in paths.items():
        path = _absolute(f"{name} directory", str(path)).rstrip("/") or "/"
        if path in seen:
            continue
        seen.add(path)
        if state_directory and path.startswith("/var/lib/") and path.count("/") == 3:
            # systemd creates it (root-owned, 0755) and exempts it from ProtectSystem=.
            lines.append(f"StateDirectory={systemd_quote(path.removeprefix('/var/lib/'))}")
        else:
            lines.append(f"ReadWritePaths={systemd_quote(path)}")
    # "-": ignored where /run/lock does not exist; the reclaim lock then falls back to the runtime dir.
    lines.append(f"ReadWritePaths={systemd_quote('-' + LOCK_DIR)}")
    return lines


def _system_sandbox(paths: Mapping[str, str]) -> list[str]:
    return [
        "# Hardening. Root is needed only to write /proc/sys/vm/{drop_caches,compact_memory} and",
        "# /sys/fs/cgroup/memory.reclaim; root writes them by owner rights, with no capability at all",
        "# (checked with setpriv --bounding-set -all), so only CAP_DAC_READ_SEARCH is kept: it lets",
        "# root reach an executable inside a 0750 home directory.",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=CAP_DAC_READ_SEARCH",
        "# strict: the whole filesystem is read-only except ReadWritePaths=/StateDirectory=, and the",
        "# API filesystems /proc, /sys and /dev, which ProtectSystem= leaves alone.",
        "ProtectSystem=strict",
        *_rw_lines(paths, state_directory=True),
        "# ProtectKernelTunables= is deliberately NOT set: it makes /proc/sys read-only, and every",
        "# reclaim writes /proc/sys/vm/drop_caches or compact_memory, so all reclaims would fail with",
        "# EROFS. ProtectControlGroups= is not set either: gradual writes /sys/fs/cgroup/memory.reclaim.",
        "ProtectHome=read-only",
        "PrivateTmp=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
    ]


def _user_sandbox(paths: Mapping[str, str]) -> list[str]:
    return [
        "# Hardening. A user manager can set up ProtectSystem=, ProtectHome=, PrivateTmp= and",
        "# ReadWritePaths= only inside a user namespace, hence PrivateUsers=yes (systemd.exec(5)).",
        "# This unit does not reclaim by itself: writing /proc/sys/vm needs root, and the sudo path",
        "# (sudo -n vmmemctl _privileged-write) needs sudo's setuid bit, which NoNewPrivileges=yes",
        "# ignores and which the user namespace (where root is unmapped) cannot honour either.",
        "# It notifies, prompts and records; install the system unit for automatic reclaims.",
        "NoNewPrivileges=yes",
        "PrivateUsers=yes",
        "ProtectSystem=strict",
        *_rw_lines(paths, state_directory=False),
        "ProtectHome=read-only",
        "PrivateTmp=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
    ]


# ------------------------------------------------------------------ wsl.conf


def wsl_conf_value(text: str) -> str:
    """``text`` as a value WSL's config parser reads back unchanged.

    WSL's parser (src/shared/configfile/configfile.cpp) drops unescaped
    double quotes, understands only the escapes ``\\\\ \\" \\b \\n \\t``, and
    ends the value at an unquoted ``#``. So: escape backslashes and double
    quotes, and put the whole value in double quotes.
    """
    _check_text("wsl.conf value", text)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def boot_shell_command(exe: str, args: Sequence[str]) -> str:
    """The ``sh -c`` line: the system unit's environment, detached, output to a log, never blocking boot."""
    words = ["env", *(f"{k}={v}" for k, v in SYSTEM_ENVIRONMENT.items()), "nohup",
             _absolute("executable", exe), *args]
    for word in words:
        _check_text("argument", word)
    return " ".join(shlex.quote(w) for w in words) + f" </dev/null >>{BOOT_LOG} 2>&1 &"


def wsl_conf_boot_command(exe: str, args: Sequence[str]) -> str:
    """The /etc/wsl.conf ``[boot] command=`` alternative for a distro without systemd, with how to use it."""
    return "\n".join([
        "# Without systemd, WSL runs [boot] command as root, through a shell, each time the distro",
        "# starts. The trailing & and nohup detach the watcher so the distro's start never waits",
        f"# for it; what escapes its own log goes to {BOOT_LOG}.",
        f"# It runs as root, so it reclaims; history and state go to {SYSTEM_STATE_DIR},",
        "# the config is read from /etc/vmmemctl/config.toml.",
        "# Add this to /etc/wsl.conf (merge with an existing [boot] section: a key may appear once),",
        "# then run `wsl --shutdown` in Windows and open the distro again. Do not also enable the",
        "# systemd unit: the watcher's single-instance lock would make one of them exit.",
        "[boot]",
        f"command = {wsl_conf_value(boot_shell_command(exe, args))}",
        "",
    ])


# ------------------------------------------------------------------ Windows task


def validate_distro_name(name: str) -> str:
    """A WSL distro name safe to pass on: 1 to 64 of ``A-Z a-z 0-9 . _ -``; ServiceError otherwise."""
    if not isinstance(name, str) or not DISTRO_NAME.fullmatch(name):
        shown = repr(name) if len(repr(name)) <= 40 else repr(name)[:37] + "..."
        raise ServiceError(f"distro name {shown}: expected 1 to 64 characters from A-Z a-z 0-9 . _ -")
    return name


def _windows_word(what: str, word: str) -> str:
    _check_text(what, word)
    # Task Scheduler expands %VARIABLES% in an action's arguments: a % could pull in another value.
    if "%" in word:
        raise ServiceError(f"{what} {word!r}: '%' is not allowed (Task Scheduler expands %VARIABLES%)")
    return word


def windows_task_xml(distro: str, exe_in_distro: str, args: Sequence[str] = ("watch",), *,
                     user: str | None = None, headless: bool = True) -> str:
    """A Task Scheduler definition: at logon, run the watcher in ``distro`` as root, windowless, restart on failure.

    Register it with ``schtasks /create /xml FILE /tn vmmemctl`` (FILE in
    UTF-16, see :func:`encode_task_xml`). ``user`` (``DOMAIN\\name``) ties
    the logon trigger to one account; without it the trigger fires for any
    user, which Task Scheduler lets only an administrator register.
    ``headless`` starts wsl.exe through ``conhost.exe --headless``: wsl.exe
    is a console program and would otherwise open a window at every logon.
    No shell runs anywhere: conhost starts wsl.exe, and ``wsl.exe -e``
    executes the program without a Linux shell.
    """
    validate_distro_name(distro)
    words = ["wsl.exe", "-d", distro, "-u", "root", "-e", _absolute("executable", exe_in_distro), *args]
    words = [_windows_word("argument", w) for w in words]
    if user is not None:
        _windows_word("user", user)
    command = r"%SystemRoot%\System32\conhost.exe" if headless else r"%SystemRoot%\System32\wsl.exe"
    arguments = subprocess.list2cmdline(["--headless", *words] if headless else words[1:])
    root = _task_element(command, arguments, user)
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-16"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def task_xml_as_utf8(xml: str) -> str:
    """The same task for stdout, whose bytes are UTF-8: a declaration that says so (issue 17.3).

    ``schtasks /create /xml`` wants the UTF-16 file that ``--output`` writes.
    """
    return xml.replace('encoding="UTF-16"', 'encoding="UTF-8"', 1)


def windows_user(find_tool: Callable[[str], str | None], run: Run = subprocess.run) -> str | None:
    """``DOMAIN\\name`` from ``whoami.exe`` (for the task's UserId); None when it cannot be asked."""
    exe = find_tool("whoami.exe")
    if not exe:
        return None
    try:
        done = run([exe], capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    from monitor.windows import decode_windows_text

    name = decode_windows_text(done.stdout).strip()
    return name if done.returncode == 0 and name and name.isprintable() and "%" not in name else None


SCHTASKS_NOTE = (
    "conhost.exe --headless does not pass wsl.exe's exit code on, so Task Scheduler's restart-on-failure "
    "never sees a failure: the logon trigger repeats every 5 minutes instead, and with "
    "MultipleInstancesPolicy=IgnoreNew a start while the watcher runs is ignored; one that finds it "
    "gone starts it again.")


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = text
    return element


def _task_element(command: str, arguments: str, user: str | None) -> ET.Element:
    root = ET.Element("Task", {"version": "1.2", "xmlns": TASK_NAMESPACE})
    info = _sub(root, "RegistrationInfo")
    _sub(info, "Description", "vmmemctl: watch the WSL2 VM's memory and reclaim idle guest page cache. "
                              "Keeps the VM running while it runs.")
    _sub(info, "URI", "\\vmmemctl")
    trigger = _sub(_sub(root, "Triggers"), "LogonTrigger")
    _sub(trigger, "Enabled", "true")
    # conhost --headless hides wsl.exe's exit code, so RestartOnFailure never fires: repeat the
    # trigger instead (IgnoreNew below makes a repeat a no-op while the watcher runs). SCHTASKS_NOTE.
    repeat = _sub(trigger, "Repetition")
    _sub(repeat, "Interval", "PT5M")
    _sub(repeat, "StopAtDurationEnd", "false")
    if user:
        _sub(trigger, "UserId", user)
    principal = _sub(_sub(root, "Principals"), "Principal")
    principal.set("id", "Author")
    if user:
        _sub(principal, "UserId", user)
    _sub(principal, "LogonType", "InteractiveToken")  # wsl.exe needs the user's logon session
    _sub(principal, "RunLevel", "LeastPrivilege")  # -u root is root in the distro, not a Windows admin
    _task_settings(_sub(root, "Settings"))
    actions = _sub(root, "Actions")
    actions.set("Context", "Author")
    exec_ = _sub(actions, "Exec")
    _sub(exec_, "Command", command)
    _sub(exec_, "Arguments", arguments)
    return root


def _task_settings(settings: ET.Element) -> None:
    for tag, text in (("MultipleInstancesPolicy", "IgnoreNew"), ("DisallowStartIfOnBatteries", "false"),
                      ("StopIfGoingOnBatteries", "false"), ("AllowHardTerminate", "true"),
                      ("StartWhenAvailable", "true"), ("RunOnlyIfNetworkAvailable", "false")):
        _sub(settings, tag, text)
    idle = _sub(settings, "IdleSettings")
    _sub(idle, "StopOnIdleEnd", "false")
    _sub(idle, "RestartOnIdle", "false")
    for tag, text in (("AllowStartOnDemand", "true"), ("Enabled", "true"), ("Hidden", "false"),
                      ("RunOnlyIfIdle", "false"), ("WakeToRun", "false"),
                      ("ExecutionTimeLimit", "PT0S"),  # no limit: it runs all day
                      ("Priority", "7")):
        _sub(settings, tag, text)
    restart = _sub(settings, "RestartOnFailure")
    _sub(restart, "Interval", "PT5M")
    _sub(restart, "Count", "3")


def encode_task_xml(xml: str) -> bytes:
    """The bytes of a task file: UTF-16 with a byte-order mark, as its declaration says."""
    return xml.encode("utf-16")


# ------------------------------------------------------------------ install


def unit_path(scope: Scope, environ: Mapping[str, str] | None = None, root: Path = Path("/")) -> Path:
    """Where systemd looks for the unit: ~/.config/systemd/user or /etc/systemd/system."""
    if scope == "system":
        return root / "etc/systemd/system" / UNIT_NAME
    environ = os.environ if environ is None else environ
    home = environ.get("HOME") or str(Path.home())
    config = environ.get("XDG_CONFIG_HOME", "").strip() or f"{home}/.config"
    return Path(config) / "systemd/user" / UNIT_NAME


def systemd_running(root: Path = Path("/")) -> bool:
    """systemd is PID 1 (sd_booted(3) checks exactly this directory)."""
    return (root / "run/systemd/system").is_dir()


def install(scope: Scope, print_only: bool, exe: str, args: Sequence[str] = ("watch",), *,
            environ: Mapping[str, str] | None = None, root: Path = Path("/"),
            run: Run = subprocess.run) -> tuple[int, str]:
    """``vmmemctl service install``: (exit code, text). 0 with what was done and what to do next;
    otherwise one line saying what went wrong (no traceback). ``root`` and ``run`` are test seams."""
    environ = os.environ if environ is None else environ
    try:
        paths = default_paths(scope, environ)
        unit = systemd_unit(exe, list(args), scope, paths, default_environment(scope, environ))
    except ServiceError as exc:
        return 2, str(exc)
    if print_only:
        return 0, unit
    target = unit_path(scope, environ, root)
    problem = _write_unit(target, unit, paths if scope == "user" else {})
    if problem:
        return problem
    systemctl = shutil.which("systemctl", path=environ.get("PATH", os.defpath))
    if not systemctl or not systemd_running(root):
        return 0, _without_systemd(scope, target, exe, args)
    return _enable(systemctl, scope, target, run)


def _write_unit(target: Path, unit: str, make_dirs: Mapping[str, str]) -> tuple[int, str] | None:
    """Create the writable dirs and the unit file; (exit code, one line) if that fails: 3 = no right to."""
    try:
        for directory in make_dirs.values():
            Path(directory).mkdir(parents=True, exist_ok=True)  # ReadWritePaths= must exist at start
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(unit, encoding="utf-8")
        tmp.chmod(0o644)  # systemd reads it as any user; nobody else may change what root will run
        tmp.replace(target)  # never leave a half-written unit for a daemon-reload to find
    except OSError as exc:
        denied = isinstance(exc, PermissionError)
        hint = " (the system unit needs root: sudo vmmemctl service install --system)" if denied else ""
        return (3 if denied else 1), f"cannot write {exc.filename or target}: {exc.strerror or exc}{hint}"
    return None


def _without_systemd(scope: Scope, target: Path, exe: str, args: Sequence[str]) -> str:
    ctl = "systemctl" if scope == "system" else "systemctl --user"
    lines = [f"wrote {target}, but systemd is not running in this distro, so it is not enabled.",
             "To use it: add `[boot]` / `systemd=true` to /etc/wsl.conf, run `wsl --shutdown` in Windows,",
             f"open the distro again, then: {ctl} daemon-reload && {ctl} enable --now {UNIT_NAME}",
             "", "Or, without systemd, start the watcher from /etc/wsl.conf (as root, so it also reclaims):", ""]
    try:
        lines.append(wsl_conf_boot_command(exe, args))
    except ServiceError as exc:
        lines.append(f"(no boot command: {exc})")
    if scope == "user":
        lines += [USER_SCOPE_NOTE]
    return "\n".join(lines)


def _enable(systemctl: str, scope: Scope, target: Path, run: Run) -> tuple[int, str]:
    base = [systemctl] + (["--user"] if scope == "user" else [])
    for extra in (["daemon-reload"], ["enable", "--now", UNIT_NAME]):
        try:
            done = run(base + extra, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return 1, f"wrote {target}; `{' '.join(base[1:] + extra)}` failed: {exc}"
        if done.returncode != 0:
            why = ((done.stderr or "").strip().splitlines() or [f"exit code {done.returncode}"])[-1]
            return 1, f"wrote {target}; `systemctl {' '.join(base[1:] + extra)}` failed: {why}"
    ctl = "systemctl" if scope == "system" else "systemctl --user"
    lines = [f"wrote {target} and started it: {ctl} status {UNIT_NAME}",
             f"logs: journalctl {'--user-unit' if scope == 'user' else '-u'} {UNIT_NAME}"]
    if scope == "user":
        lines += ["A user unit runs while you have a session; `loginctl enable-linger` starts it at boot.",
                  USER_SCOPE_NOTE]
    return 0, "\n".join(lines)
