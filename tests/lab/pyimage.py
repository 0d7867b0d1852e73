"""A read-only ext4 disk holding this machine's Python and this worktree's vmmemctl, for the lab guest.

The guest is busybox and has no Python; `vmmemctl run` must run *in* the guest (its COMMAND goes
into the guest's cgroups). So the test builds an image with Debian's /usr/bin/python3.11, its
standard library, the shared libraries it and its extension modules load (found with ldd), the
dependencies vmmemctl imports and ``monitor/`` as it is now (byte-compiled), attaches it as a second virtio disk
and, in the guest, mounts it on /py and links the loader and libraries where the binary looks for
them. Built in the test's tmp dir (a few seconds: the project changes with every commit).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

PYTHON = Path("/usr/bin/python3.11")
STDLIB = Path("/usr/lib/python3.11")
SKIP = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data", "config-3.11-x86_64-linux-gnu"}
PACKAGES = ("psutil", "platformdirs", "apscheduler", "tzlocal")
MOUNT = "/py"


def available() -> str | None:
    """Why the image cannot be built here, or None."""
    if not PYTHON.exists() or not (STDLIB / "os.py").exists():
        return f"{PYTHON} and {STDLIB} are needed for the guest's Python"
    if shutil.which("mke2fs") is None:
        return "mke2fs is needed"
    return None


def _libs(binaries: list[Path]) -> set[Path]:
    found: set[Path] = set()
    for b in binaries:
        out = subprocess.run(["ldd", str(b)], capture_output=True, text=True).stdout
        for m in re.finditer(r"(/\S+\.so[.\d]*) \(0x", out):
            found.add(Path(m.group(1)))
    return found


def build(dest: Path, repo: Path, site: Path) -> Path:
    root = dest / "pyroot"
    (root / "usr/bin").mkdir(parents=True)
    shutil.copy2(PYTHON, root / "usr/bin/python3.11")
    shutil.copytree(STDLIB, root / "usr/lib/python3.11", symlinks=True,
                    ignore=lambda d, names: [n for n in names if n in SKIP or n == "dist-packages"])
    dynload = sorted((root / "usr/lib/python3.11/lib-dynload").glob("*.so"))
    for lib in _libs([PYTHON, *dynload]):
        real = lib.resolve()
        where = root / "lib64" if lib.name.startswith("ld-linux") else root / "lib/x86_64-linux-gnu"
        where.mkdir(parents=True, exist_ok=True)
        shutil.copy2(real, where / lib.name)
    app = root / "app"
    shutil.copytree(repo / "monitor", app / "monitor", ignore=shutil.ignore_patterns("__pycache__"))
    for name in PACKAGES:
        if (site / name).exists():
            shutil.copytree(site / name, app / "site" / name, ignore=shutil.ignore_patterns("__pycache__"))
    # Byte-compiled here by the guest's own interpreter (the stdlib comes compiled from Debian): under TCG
    # every `vmmemctl` started in the guest compiled vmmemctl and its dependencies from source again (the
    # image is read-only, PYTHONDONTWRITEBYTECODE=1). The same sources run; the .pyc match their mtimes.
    subprocess.run([str(PYTHON), "-m", "compileall", "-q", "-j", "0", str(app)], check=True)
    for d in ("proc", "sys", "tmp"):
        (root / d).mkdir()
    image = dest / "py.img"
    size_mb = 64 + sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) // (1 << 20) * 2
    subprocess.run(["mke2fs", "-q", "-t", "ext4", "-d", str(root), "-L", "py", str(image), f"{size_mb}M"], check=True)
    shutil.rmtree(root)
    return image


# In the guest: mount the image, put the loader and libraries where the binary looks for them.
GUEST_SETUP = f"""set -e
mkdir -p {MOUNT} /lib /lib64 /tmp/run
mount -t ext4 -o ro /dev/vdb {MOUNT}
[ -e /lib64/ld-linux-x86-64.so.2 ] || ln -s {MOUNT}/lib64/ld-linux-x86-64.so.2 /lib64/ld-linux-x86-64.so.2
[ -e /lib/x86_64-linux-gnu ] || ln -s {MOUNT}/lib/x86_64-linux-gnu /lib/x86_64-linux-gnu
{MOUNT}/usr/bin/python3.11 -S -c 'import sqlite3, ctypes; print("python ok")'
"""


def vmmemctl_argv(*args: str) -> list[str]:
    """`vmmemctl ARGS` in the guest (after GUEST_SETUP), as a root shell there would run it."""
    return ["env", f"PYTHONPATH={MOUNT}/app:{MOUNT}/app/site", "HOME=/tmp/run", "XDG_RUNTIME_DIR=/tmp/run",
            "PYTHONDONTWRITEBYTECODE=1", "VMMEMCTL_CONFIG=", f"{MOUNT}/usr/bin/python3.11", "-S", "-m", "monitor",
            *args]
