"""``vmmemctl doctor``: check, on the user's own machine, everything vmmemctl depends on.

Each check is a small function returning a :class:`Check` (ok / warn / fail
/ skipped, what was seen, what to do). A check never raises: a check that
breaks is itself a ``fail`` that says how. ``fail`` means a part of vmmemctl
will not work; ``warn`` means it works with less (an estimate instead of a
measurement, prompts instead of automatic reclaims).
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Literal, Mapping

from monitor.config.schema import Config
from monitor.kernel.portable import is_root
from monitor.kernel.procfs import SystemFiles
from monitor.sample import Environment

Status = Literal["ok", "warn", "fail", "skipped"]


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    hint: str = ""


@dataclass
class Context:
    """What every check may look at: the config, the kernel files, the environment."""

    config: Config
    files: SystemFiles
    environ: Mapping[str, str]
    env: Environment
    notify: bool = False  # send a test toast


def _skip(name: str, env: Environment) -> Check:
    return Check(name, "skipped", f"not WSL2 ({env.label()})")


def check_environment(ctx: Context) -> Check:
    env = ctx.env
    return Check("environment", "ok", f"{env.label()}, kernel {env.kernel_release or 'unknown'} ({env.why})")


def check_windows_drive(ctx: Context) -> Check:
    from monitor.kernel.windows import find_system_drive

    if ctx.env.kind != "wsl2":
        return _skip("windows drive", ctx.env)
    drive, why = find_system_drive(ctx.files, ctx.environ)
    if drive is None:
        return Check("windows drive", "warn", why, "Windows tools are found on PATH only; is automount off in "
                     "/etc/wsl.conf?")
    return Check("windows drive", "ok", why)


def check_powershell(ctx: Context) -> Check:
    from monitor.probes.interop import (
        InteropError,
        PowerShellSession,
        find_windows_tool,
        ps_query,
    )

    if ctx.env.kind != "wsl2":
        return _skip("interop: powershell", ctx.env)
    exe = find_windows_tool("powershell.exe", ctx.environ, ctx.files)
    if exe is None:
        return Check("interop: powershell", "fail", "powershell.exe not found on PATH or the system drive",
                     "Windows interop is off ([interop] enabled=false in /etc/wsl.conf?) or C: is not mounted")
    session = PowerShellSession(exe, ctx.config.host.timeout, first_timeout=ctx.config.host.timeout * 5)
    try:
        first = _timed(lambda: session.query(ps_query(total=True)), session)
        second = _timed(lambda: session.query(ps_query()), session)
    except InteropError as exc:
        return Check("interop: powershell", "fail", f"{exe}: {exc}", _interop_hint(exc, ctx.files))
    finally:
        session.close()
    detail = f"{exe}: first answer {first:.1f}s, then {second:.2f}s per query"
    if second > ctx.config.host.timeout / 2:
        return Check("interop: powershell", "warn", detail, "slow answers: raise [host] timeout")
    return Check("interop: powershell", "ok", detail)


def _timed(query: Callable[[], list[str]], session) -> float:
    started = time.monotonic()
    while True:
        try:
            query()
            return time.monotonic() - started
        except Exception as exc:
            if not getattr(exc, "starting", False):
                raise


# WSL registers its interop handler as WSLInterop, or as WSLInterop-late where systemd's binfmt set-up
# runs first (microsoft/WSL#13449): either one is a working registration.
INTEROP_HANDLERS = ("WSLInterop", "WSLInterop-late")


def _interop_hint(exc, files: SystemFiles) -> str:
    if getattr(exc, "unreachable", False):
        found = [n for n in INTEROP_HANDLERS if files.exists(f"proc/sys/fs/binfmt_misc/{n}")]
        if found:
            return (f"Windows interop is broken although binfmt_misc has {found[0]} registered: "
                    "`wsl --shutdown` restarts the VM")
        return ("Windows interop is broken: /proc/sys/fs/binfmt_misc has neither WSLInterop nor WSLInterop-late "
                "(systemd-binfmt may have replaced it, microsoft/WSL#8843); `wsl --shutdown` restarts the VM")
    return "PowerShell hung or answered oddly: the tasklist fallback and the estimate still work"


def check_tasklist(ctx: Context) -> Check:
    from monitor.probes.interop import TasklistProbe, find_windows_tool

    if ctx.env.kind != "wsl2":
        return _skip("interop: tasklist", ctx.env)
    exe = find_windows_tool("tasklist.exe", ctx.environ, ctx.files)
    sample = TasklistProbe(exe, ctx.config.host.timeout).sample(None)
    if sample.bytes is None:
        return Check("interop: tasklist", "fail" if exe is None else "warn", sample.error or "no answer",
                     "the fallback when PowerShell fails; without both, the host figure is an estimate")
    return Check("interop: tasklist", "ok", sample.detail)


def check_host_figure(ctx: Context) -> Check:
    from monitor.probes.guest import GuestProbe
    from monitor.probes.probeset import build_host_probe
    from monitor.units import format_bytes

    guest = GuestProbe(ctx.files).sample()
    probe = build_host_probe(ctx.config, ctx.env, ctx.files)
    try:
        host = probe.sample(guest)
    finally:
        probe.close()
    if host.bytes is None:
        return Check("host figure", "warn", f"unknown ({host.error})", "see the interop checks above")
    held = (guest.used or 0) + (guest.page_cache or 0)
    how = "estimated from the guest" if host.estimated else f"measured by {host.source}: {host.detail}"
    detail = f"{format_bytes(host.bytes)} ({how})"
    if not host.estimated and guest.used is not None and host.bytes < guest.used // 2:
        return Check("host figure", "warn", detail + f"; below the guest's own use {format_bytes(guest.used)}",
                     "implausible: another VM's process may have been measured ([host] source)")
    if host.estimated and ctx.env.kind in ("wsl2", "windows"):
        return Check("host figure", "warn", detail, "a measurement needs Windows interop (see above)")
    return Check("host figure", "ok", detail + (f"; guest used + cache {format_bytes(held)}" if held else ""))


def check_toast(ctx: Context) -> Check:
    from monitor.notify import Notification, ToastBackend

    if not ctx.notify:
        return Check("toast", "skipped", "not sent", "run `vmmemctl doctor --notify` to send a test toast")
    if ctx.env.kind != "wsl2":
        return _skip("toast", ctx.env)
    ok, why = ToastBackend(ctx.config.notify.timeout, ctx.environ, ctx.files).send(
        Notification("vmmemctl doctor", "If you can read this, toasts work.", key="doctor"))
    return Check("toast", "ok" if ok else "fail", why, "" if ok else "Settings > System > Notifications")


def check_kernel(ctx: Context) -> list[Check]:
    from monitor.kernel.privilege import MEMORY_RECLAIM

    order = (ctx.files.read(["sys/module/page_reporting/parameters/page_reporting_order"])
             ["sys/module/page_reporting/parameters/page_reporting_order"] or "").strip()
    psi = ctx.files.read(["proc/pressure/memory"])["proc/pressure/memory"]
    gradual = ctx.files.exists(MEMORY_RECLAIM)
    return [
        Check("memory.reclaim", "ok" if gradual else "warn", f"/{MEMORY_RECLAIM} " + ("writable" if gradual else
              "missing or not writable"), "" if gradual else "gradual reclaim falls back to drop_caches"),
        Check("page reporting", "ok" if order else "warn", f"page_reporting_order {order}" if order else
              "no page_reporting module parameter", "" if order else "an older kernel: the host takes back less"),
        Check("PSI", "ok" if psi else "warn", "/proc/pressure/memory present" if psi else "no /proc/pressure",
              "" if psi else "WSL's kernel has PSI off unless booted with psi=1 (kernelCommandLine in .wslconfig)"),
    ]


def check_aims(ctx: Context) -> Check | list[Check]:
    """Rules and schedules that aim at groups (cgroup = "GLOB"): each has a figure, or says why it never fires."""
    from monitor.kernel.cgroup_aim import aims_here

    aims = aims_here(ctx.config, ctx.files)
    if not aims:
        return []
    return [Check(f"aimed {who}", "ok" if aim.cache is not None else "warn", f"cgroup {aim.glob}: {aim.words()}",
                  "" if aim.cache is not None else "it never fires until the groups can be read (see README: "
                  "rules that aim at groups)") for who, aim in aims]


def check_privilege(ctx: Context) -> Check:
    if ctx.env.kind == "windows":  # no root nor sudo there: a reclaim runs in the distro ([guest] exec)
        return Check("privileged path", "skipped", "Windows: reclaims run in the distro through [guest] exec")
    if is_root():
        return Check("privileged path", "ok", "running as root")
    try:
        done = subprocess.run(["sudo", "-n", "true"], capture_output=True, timeout=5, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("privileged path", "warn", f"sudo: {exc}", "reclaims need root or a sudo rule (README)")
    if done.returncode == 0:
        return Check("privileged path", "ok", "sudo -n works")
    return Check("privileged path", "warn", "sudo -n needs a password", "add the narrow sudo rule from the README")


def check_service(ctx: Context) -> Check:
    from monitor.service import systemd_running, unit_path

    found = [str(p) for p in (unit_path("system"), unit_path("user", ctx.environ)) if p.is_file()]
    try:
        boot = "vmmemctl" in Path("/etc/wsl.conf").read_text(encoding="utf-8", errors="replace")
    except OSError:
        boot = False
    if boot:
        found.append("/etc/wsl.conf [boot] command")
    if not found:
        return Check("service", "warn", "no systemd unit or wsl.conf boot line",
                     "`vmmemctl service install` (or --windows-task to keep the VM up from Windows)")
    running = "systemd running" if systemd_running() else "systemd not running"
    return Check("service", "ok", f"{', '.join(found)} ({running})")


def check_wslconfig(ctx: Context) -> Check:
    from monitor.kernel.wslconfig import detect_wsl_reclaim

    wsl = detect_wsl_reclaim(ctx.config.policy.wslconfig, ctx.env.kind, ctx.files, ctx.environ)
    if wsl is None:
        return _skip(".wslconfig", ctx.env)
    return Check(".wslconfig", "ok" if wsl.mode else "warn", f"autoMemoryReclaim {wsl.describe()}",
                 "" if wsl.mode else "set [policy] wslconfig to its path")


def check_history(ctx: Context) -> Check:
    from monitor.history.places import db_path
    from monitor.history.store import open_existing
    from monitor.kernel.filelock import who_holds
    from monitor.units import format_bytes, format_duration
    from monitor.history.instance import instance_lock_path

    path = db_path(ctx.config)
    if not path.exists():
        return Check("history", "warn", f"{path}: not created yet", "`vmmemctl watch` (or the service) records it")
    store = open_existing(path)
    try:
        latest = store.latest_sample() if store else None
    finally:
        if store:
            store.close()
    size = path.stat().st_size
    held = who_holds(instance_lock_path(path))
    by = ("no recorder running" if held is None else
          f"recorded by pid {held.pid if held.pid else '?'} ({held.holder or 'holder unknown'})")
    if latest is None:
        return Check("history", "warn", f"{path}: {format_bytes(size)}, no samples, {by}",
                     "start `vmmemctl watch` (or the service)" if held is None else "the recorder has not sampled yet")
    age = time.time() - latest.time
    detail = f"{path}: {format_bytes(size)}, last sample {format_duration(max(0.0, age))} ago, {by}"
    if age < 600:
        return Check("history", "ok", detail)
    if held is None:
        return Check("history", "warn", detail, "nothing records: start `vmmemctl watch` (or `vmmemctl service install`)")
    return Check("history", "warn", detail, f"pid {held.pid or '?'} holds the history but has not sampled for "
                 f"{format_duration(age)}: is it stuck? (`vmmemctl status` says why, if it knows)")


def check_config(path: str | None) -> Check:
    from monitor.config.schema import ConfigError, find_config_path, load_config

    try:
        found = find_config_path(path)
        load_config(found)
    except ConfigError as exc:
        return Check("config", "fail", str(exc), "fix the file: `vmmemctl config check` says more")
    return Check("config", "ok", f"{found} is valid" if found else "no config file: the defaults")


def run_checks(ctx: Context, config_check: Check) -> list[Check]:
    checks = [check_environment(ctx), config_check]
    for check in (check_windows_drive, check_powershell, check_tasklist, check_host_figure, check_toast,
                  check_kernel, check_aims, check_privilege, check_service, check_wslconfig, check_history):
        try:
            result = check(ctx)
        except Exception as exc:  # a broken check is reported, never a traceback for the user
            result = Check(check.__name__.removeprefix("check_"), "fail", f"{type(exc).__name__}: {exc}")
        checks += result if isinstance(result, list) else [result]
    return checks


def as_json(checks: list[Check]) -> dict:
    return {"checks": [asdict(c) for c in checks], "ok": all(c.status != "fail" for c in checks)}


def as_table(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"{'check':<{width}}  result   what was seen / what to do"]
    for c in checks:
        lines.append(f"{c.name:<{width}}  {c.status:<7}  {c.detail}")
        if c.hint:
            lines.append(f"{'':<{width}}           -> {c.hint}")
    return "\n".join(lines)
