"""The systemd units (system and user scope) and their install: write, daemon-reload, enable --now."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Mapping, Sequence

from monitor.service.common import (LOCK_DIR, MEMORY_MAX, SYSTEM_CONFIG, SYSTEM_ENVIRONMENT, SYSTEM_STATE_DIR,
                                    UNIT_NAME, USER_SCOPE_NOTE, Run, Scope, ServiceError, _absolute, systemctl_words,
                                    systemd_quote, under_private_tmp)
from monitor.kernel.dirs import user_dir, xdg_dir
from monitor.service.wslconf import wsl_conf_boot_command
from monitor.kernel.windows import DISTRO_NAME  # one rule for distro names, shared with host mode


def default_paths(scope: Scope, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The directories the watcher writes (history DB, state and logs): the system's, or the user's by the
    watcher's own XDG rule (monitor.kernel.dirs; logs go to the state dir's ``log/``)."""
    if scope == "system":
        return {"data": SYSTEM_STATE_DIR, "state": SYSTEM_STATE_DIR}
    return {"data": str(user_dir("data", environ)), "state": str(user_dir("state", environ))}


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
    ctl = systemctl_words(scope)
    config = SYSTEM_CONFIG if scope == "system" else "~/.config/vmmemctl/config.toml"
    return [
        f"# vmmemctl {scope} unit, written by `vmmemctl service install --{scope}`.",
        f"# Its config: {config} (`vmmemctl config check {config}`; `systemctl reload` re-reads it).",
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
        "# The control endpoint, /run/vmmemctl/control.sock: clients' requests (the dashboard's Reclaim,",
        "# snooze...). 0755: any user may connect; the watcher checks who asks ([control] users).",
        "RuntimeDirectory=vmmemctl",
        "RuntimeDirectoryMode=0755",
        "# The VM-wide claim in /mnt/wsl, which every distro of the VM shares: one watcher acts per VM",
        "# (\"-\": ignored where /mnt/wsl does not exist, off WSL).",
        "ReadWritePaths=-/mnt/wsl",
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


def unit_path(scope: Scope, environ: Mapping[str, str] | None = None, root: Path = Path("/")) -> Path:
    """Where systemd looks for the unit: ~/.config/systemd/user or /etc/systemd/system."""
    if scope == "system":
        return root / "etc/systemd/system" / UNIT_NAME
    return Path(xdg_dir("config", environ)) / "systemd/user" / UNIT_NAME


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
    if hidden := tmp_conflict(exe):  # issue 28: systemd-analyze verify passes, and the unit cannot start
        return 2, hidden
    target = unit_path(scope, environ, root)
    systemctl = shutil.which("systemctl", path=environ.get("PATH", os.defpath))
    if not systemctl or not systemd_running(root):  # nothing written: a unit nobody runs only misleads
        return 1, _without_systemd(scope, target, exe, args)
    problem = _write_unit(target, unit, paths if scope == "user" else {})
    if problem:
        return problem
    return _enable(systemctl, scope, target, run)


def tmp_conflict(exe: str) -> str | None:
    """Why a unit running ``exe`` cannot start (it is under /tmp, which PrivateTmp=yes hides), or None."""
    if not under_private_tmp(exe):
        return None
    return (f"the executable {exe} is under /tmp, which the service cannot see (PrivateTmp=yes gives it a "
            "/tmp of its own): install vmmemctl elsewhere (a venv in your home or /opt, or pipx) and run "
            "`service install` from there")


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
    lines = ["systemd is not running in this distro (PID 1 is not systemd): no unit written.",
             "To use one: add `[boot]` / `systemd=true` to /etc/wsl.conf, run `wsl --shutdown` in Windows, open",
             f"the distro again and run `vmmemctl service install` again (it writes {target}).",
             "", "Or, without systemd, start the watcher from /etc/wsl.conf (as root, so it also reclaims; it reads",
             f"{SYSTEM_CONFIG}):", ""]
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
    ctl = systemctl_words(scope)
    config = SYSTEM_CONFIG if scope == "system" else "~/.config/vmmemctl/config.toml"
    lines = [f"wrote {target} and started it: {ctl} status {UNIT_NAME}",
             f"logs: journalctl {'--user-unit' if scope == 'user' else '-u'} {UNIT_NAME}",
             f"its config: {config} (after a change: {ctl} reload {UNIT_NAME})"]
    if scope == "user":
        lines += ["A user unit runs while you have a session; `loginctl enable-linger` starts it at boot.",
                  USER_SCOPE_NOTE]
    return 0, "\n".join(lines)
