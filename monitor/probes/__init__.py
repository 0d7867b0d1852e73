"""Probes turn the outside world into samples; :func:`build` wires them from config."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from monitor.config import Config
from monitor.environment import detect_environment
from monitor.probes.guest import GuestProbe
from monitor.probes.host import ChainProbe, EstimateProbe, HostProbe, NoVmProbe, ProcessProbe, PsutilProbe
from monitor.procfs import LocalFiles, SystemFiles
from monitor.sample import Environment, GuestSample, HostSample, Sample


@dataclass
class Probes:
    files: SystemFiles
    environment: Environment
    guest: GuestProbe
    host: HostProbe

    def sample(self) -> Sample:
        guest = self.guest.sample()
        return Sample(guest, self.host.sample(guest))

    def sample_guest(self) -> GuestSample:
        return self.guest.sample()

    def sample_host(self, guest: GuestSample | None) -> HostSample:
        return self.host.sample(guest)

    def close(self) -> None:
        self.host.close()


def build(config: Config, environ: Mapping[str, str] | None = None, files: SystemFiles | None = None) -> Probes:
    environ = os.environ if environ is None else environ
    files = files or LocalFiles(config.general.proc_root)
    env = detect_environment(files, environ)
    return Probes(files, env, GuestProbe(files), build_host_probe(config, env))


def build_host_probe(config: Config, env: Environment) -> HostProbe:
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
            PowerShellProbe(find_windows_tool("powershell.exe"), config.host.timeout),
            TasklistProbe(find_windows_tool("tasklist.exe"), config.host.timeout),
            *fallback,
        ])
    if env.kind == "wsl1" and auto:
        return NoVmProbe("WSL1 runs Linux without a VM: no VM holds memory on the host")
    note = {"linux": "plain Linux: no VM host in sight"}.get(env.kind, "estimate chosen")
    return EstimateProbe(note)
