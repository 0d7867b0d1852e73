"""Probes turn the outside world into samples; :func:`build` wires them from config."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping

from monitor.config.schema import Config
from monitor.kernel.environment import detect_environment
from monitor.probes.guest import GuestProbe
from monitor.probes.host import ChainProbe, EstimateProbe, HostProbe, NoVmProbe, ProcessProbe, PsutilProbe
from monitor.kernel.procfs import LocalFiles, SystemFiles
from monitor.sample import Environment, GuestSample, HostSample, Sample


@dataclass
class Probes:
    files: SystemFiles
    environment: Environment
    guest: GuestProbe
    host: HostProbe
    host_mode: bool = False  # the guest is reached through [guest] exec
    skip_within: int | None = None  # [guest] skip_unchanged: the tolerance in bytes; None: always sample
    _host_at_guest: int | None = field(default=None, repr=False)  # the footprint at the last guest sample
    _gradual: bool | None = field(default=None, repr=False)  # memory.reclaim, once definitely known

    @property
    def gated(self) -> bool:
        """Host mode with a real host probe: look at the VM process before reaching into the guest."""
        return self.host_mode and not self.host.cheap

    def sample(self) -> Sample:
        if self.gated:
            host = self.host.sample(None)
            return Sample(self._guest_if_running(host), host)
        guest = self.guest.sample()
        return Sample(guest, self.host.sample(guest))

    def gradual_available(self) -> bool:
        """Is cgroup v2 memory.reclaim writable in the guest (what `auto` needs for gradual)?

        The one owner of this fact. A definite answer is kept for the process's life; an
        unknown one (the VM is down, the guest did not answer) reads as "no" for now and is
        asked again next time, so one lost call does not make `auto` mean pagecache until restart.
        """
        return bool(self.gradual_known())

    def gradual_known(self) -> bool | None:
        """As :meth:`gradual_available`, with "unknown" kept as None (a reclaim refuses to guess)."""
        if self._gradual is None:
            known = self._memory_reclaim_writable()
            if known is None:
                return None
            self._gradual = known
        return self._gradual

    def _memory_reclaim_writable(self) -> bool | None:
        from monitor.kernel.privilege import MEMORY_RECLAIM

        if self.gated and self.host.sample(None).bytes is None:
            return None  # the VM is down: do not start it to look
        if self.host_mode:
            from monitor.probes.execfiles import ExecFiles

            assert isinstance(self.files, ExecFiles)
            return self.files.writable(MEMORY_RECLAIM)
        return self.files.exists(MEMORY_RECLAIM)

    def prime(self) -> None:
        """A first CPU reading (so the next sample's busy % covers a known interval); gated like sampling."""
        if not self.gated or self.host.sample(None).bytes is not None:
            self.guest.prime()

    def sample_guest(self, idle_skip: bool = False) -> GuestSample:
        """``idle_skip``: the recorder's ticks, which may skip an idle VM ([guest] skip_unchanged) and
        read the guest's slower files on their own cadence (GuestProbe.sample(tick=True)); a
        reclaim's measurements never do: they read every file."""
        if self.gated:
            return self._guest_if_running(self.host.sample(None), idle_skip)
        return self.guest.sample(tick=idle_skip)

    def _guest_if_running(self, host: HostSample, idle_skip: bool = False) -> GuestSample:
        """Host mode reads the guest only while its VM runs: `wsl.exe` would start a stopped VM."""
        if host.bytes is None and host.source in ("psutil", "process", "interop"):
            self._host_at_guest = None
            return GuestSample(time=host.time, warnings=(f"VM not running ({host.error}): guest not sampled; "
                                                         "vmmemctl never starts it",))
        if (idle_skip and self.skip_within is not None and host.bytes is not None
                and self._host_at_guest is not None and abs(host.bytes - self._host_at_guest) <= self.skip_within):
            return GuestSample(time=host.time, warnings=(
                "guest not sampled: the VM's footprint has not moved since the last guest sample "
                "([guest] skip_unchanged), so the distro may idle out",))
        guest = self.guest.sample(tick=idle_skip)
        if guest.total is not None:
            self._host_at_guest = host.bytes
        return guest

    def interop_down_since(self) -> float | None:
        """Since when Windows interop has been dead (every Windows tool unreachable), or None."""
        return self.host.down_since if isinstance(self.host, ChainProbe) else None

    def windows_profile(self) -> str | None:
        """%USERPROFILE% as the running PowerShell session said it (where WSL reads .wslconfig), or None
        before its first answer, without a session (tasklist, psutil, the estimate) or when it had none."""
        from monitor.probes.interop import PowerShellProbe

        probes = self.host.probes if isinstance(self.host, ChainProbe) else [self.host]
        return next((p.user_profile for p in probes if isinstance(p, PowerShellProbe) and p.user_profile), None)

    def sample_host(self, guest: GuestSample | None) -> HostSample:
        return self.host.sample(guest)

    def close(self) -> None:
        """The host probe's session and every kernel file kept open (issue 24: 9 descriptors were left)."""
        self.host.close()
        close_files = getattr(self.files, "close", None)  # LocalFiles keeps descriptors; a command channel none
        if close_files is not None:
            close_files()


def build(config: Config, environ: Mapping[str, str] | None = None, files: SystemFiles | None = None) -> Probes:
    environ = os.environ if environ is None else environ
    host_mode = bool(config.guest.exec) and files is None
    if host_mode:
        from monitor.probes.execfiles import ExecFiles

        files = ExecFiles(config.guest.exec, config.guest.timeout)
    files = files or LocalFiles(config.general.proc_root)
    if not host_mode:
        env = detect_environment(files, environ)
        return Probes(files, env, GuestProbe(files), build_host_probe(config, env, files))
    # Host mode: we run beside the VM, so the host probe is chosen for this side; the guest's
    # kind is read through the channel, and only while the VM runs (never start it to look).
    here = LocalFiles(config.general.proc_root)  # this side's own /proc (--proc-root), not the guest's
    host = build_host_probe(config, detect_environment(here, environ), here)
    skip = config.guest.unchanged_within.bytes if config.guest.skip_unchanged else None
    probe = Probes(files, Environment("linux", why="guest not reachable yet"), GuestProbe(files), host, True, skip)
    if host.sample(None).bytes is not None:
        probe.environment = detect_environment(files, {})
    return probe


def build_host_probe(config: Config, env: Environment, files: SystemFiles | None = None) -> HostProbe:
    source = config.host.source
    auto = source == "auto"
    if auto:
        source = {"windows": "psutil", "wsl2": "interop"}.get(env.kind, "estimate")
    # Only "auto" falls back to an estimate: a source the user named is
    # reported as unknown when it fails, so the failure stays visible.
    fallback = [EstimateProbe(f"{source} unreachable")] if auto else []
    if source == "psutil":
        return ChainProbe([PsutilProbe(), *fallback])
    if source == "process":
        return ProcessProbe(config.host.process)
    if source == "interop":
        from monitor.probes.interop import PowerShellProbe, TasklistProbe, find_windows_tool

        return ChainProbe([
            PowerShellProbe(find_windows_tool("powershell.exe", files=files), config.host.timeout),
            TasklistProbe(find_windows_tool("tasklist.exe", files=files), config.host.timeout),
            *fallback,
        ])
    if env.kind == "wsl1" and auto:
        return NoVmProbe("WSL1 runs Linux without a VM: no VM holds memory on the host")
    note = {"linux": "plain Linux: no VM host in sight"}.get(env.kind, "estimate chosen")
    return EstimateProbe(note)
