"""Where are we running: WSL2, WSL1, Windows or plain Linux.

The kernel release is read through the same proc root as everything else,
so a recorded tree of a WSL2 machine is detected as WSL2. What each WSL
generation's kernel calls itself (``/proc/sys/kernel/osrelease``):

    4.4.0-19041-Microsoft                 WSL1 (a fake kernel; capital M, Windows build number)
    4.19.128-microsoft-standard           WSL2, 2019-2021 kernels (no "WSL2" suffix yet)
    5.15.153.1-microsoft-standard-WSL2    WSL2, since 5.10
    6.6.87.2-microsoft-standard-WSL2+     WSL2, self-built from Microsoft's tree

A custom WSL2 kernel may call itself anything; WSL still sets
``WSL_DISTRO_NAME`` and (WSL2 only) ``WSL_INTEROP`` in the environment.
"""

from __future__ import annotations

import re
import sys
from typing import Mapping

from monitor.kernel.procfs import SystemFiles
from monitor.sample import Environment

_WSL1 = re.compile(r"-Microsoft$")  # case matters: WSL2 kernels say "microsoft"


def detect_environment(files: SystemFiles, environ: Mapping[str, str], platform: str = sys.platform) -> Environment:
    distro = environ.get("WSL_DISTRO_NAME") or None
    if platform == "win32":
        return Environment("windows", why="running on Windows")
    texts = files.read(["proc/sys/kernel/osrelease", "proc/version"])
    release = (texts["proc/sys/kernel/osrelease"] or "").strip() or None
    version = texts["proc/version"] or ""
    if release and (_WSL1.search(release) or "Microsoft@Microsoft.com" in version):
        return Environment("wsl1", distro, release, f"kernel release {release!r} is WSL1's")
    if release and ("microsoft" in release.lower() or "wsl2" in release.lower()):
        return Environment("wsl2", distro, release, f"kernel release {release!r} is a WSL2 kernel")
    if environ.get("WSL_INTEROP"):
        return Environment("wsl2", distro, release, "WSL_INTEROP is set (custom WSL2 kernel)")
    if distro:
        # WSL1 always reports its own "-Microsoft" release, so a distro with
        # another kernel is WSL2 running a custom kernel.
        return Environment("wsl2", distro, release, "WSL_DISTRO_NAME is set (custom WSL2 kernel)")
    return Environment("linux", None, release, "no sign of WSL")
