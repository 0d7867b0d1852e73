"""Writes the hand-made cgroup v2 trees (cgroup-systemd, cgroup-odd) and records cgroup-v1 from this
machine. Run from the repo root: ``python tests/trees/make_cgroup_trees.py``. The trees are committed;
this script says how they were made. Layouts are those systemd, Docker (systemd driver), Podman and
``vmmemctl run`` make (see monitor/kernel/cgroups.py); the numbers are made up, and every parent's
are the sum of its children's plus its own, as cgroup v2 counts them."""

from __future__ import annotations

import shutil
from pathlib import Path

HERE = Path(__file__).parent
MiB = 1 << 20
DOCKER_PG = "3f2a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8"
DOCKER_WEB = "9c8b7a6f5e4d3c2b1a09f8e7d6c5b4a3928170f6e5d4c3b2a190807060504030"
PODMAN = "aa11bb22cc33dd44ee55ff6600112233445566778899aabbccddeeff00112233"
MOUNTINFO_V2 = ("22 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n"
                "23 1 0:22 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n"
                "30 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 "
                "rw,nsdelegate,memory_recursiveprot\n")

# group path -> own (file, active_file, shmem, anon) in MiB; a parent's numbers add its children's
SYSTEMD = {
    "init.scope": (12, 8, 0, 6),
    "system.slice": (0, 0, 0, 0),
    "system.slice/nginx.service": (180, 150, 0, 40),
    "system.slice/systemd-journald.service": (64, 20, 0, 8),
    "system.slice/docker.service": (90, 30, 0, 120),
    f"system.slice/docker-{DOCKER_PG}.scope": (1500, 1200, 64, 300),
    f"system.slice/docker-{DOCKER_WEB}.scope": (220, 100, 0, 90),
    "system.slice/docker-postgres.scope": (35, 10, 0, 5),
    "machine.slice": (0, 0, 0, 0),
    f"machine.slice/libpod-{PODMAN}.scope": (48, 16, 0, 30),
    "user.slice": (0, 0, 0, 0),
    "user.slice/user-1000.slice": (0, 0, 0, 0),
    "user.slice/user-1000.slice/session-3.scope": (700, 600, 12, 250),
    "user.slice/user-1000.slice/user@1000.service": (40, 20, 0, 60),
    "vmmemctl.slice": (0, 0, 0, 0),
    # a plain name: a "\\" in a committed file name cannot be checked out on Windows; the tests add
    # run-4242-make\\x20\\x2dj8.scope in a copy
    "vmmemctl.slice/run-4242-make.scope": (2300, 100, 0, 400),
}


def write_group(root: Path, rel: str, own: dict, tree: dict, frozen: bool = False) -> None:
    kids = [p for p in tree if p.startswith(rel + "/") and "/" not in p[len(rel) + 1:]] if rel else \
        [p for p in tree if "/" not in p]
    totals = list(own.get(rel, (0, 0, 0, 0)))
    for kid in kids:
        write_group(root, kid, own, tree, frozen=frozen)
        sub = subtree(kid, own)
        totals = [a + b for a, b in zip(totals, sub)]
    if not rel:
        return
    d = root / rel
    d.mkdir(parents=True, exist_ok=True)
    file, active, shmem, anon = (v * MiB for v in totals)
    inactive = file - active
    (d / "memory.stat").write_text(f"anon {anon}\nfile {file}\nkernel 1048576\nshmem {shmem}\n"
                                   f"active_anon 0\ninactive_anon {anon}\nactive_file {active}\n"
                                   f"inactive_file {inactive}\nworkingset_refault_file {file // 8192}\n")
    (d / "memory.current").write_text(f"{anon + file + MiB}\n")
    (d / "cgroup.events").write_text(f"populated 1\nfrozen {int(frozen)}\n")
    (d / "cgroup.freeze").write_text(f"{int(frozen)}\n")


def subtree(rel: str, own: dict) -> list[int]:
    out = list(own.get(rel, (0, 0, 0, 0)))
    for p, v in own.items():
        if p.startswith(rel + "/"):
            out = [a + b for a, b in zip(out, v)]
    return out


def base(name: str) -> Path:
    root = HERE / name
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(HERE / "linux-vm", root)  # meminfo and the rest: status works on this tree too
    (root / "proc/self").mkdir(parents=True)
    return root


def systemd_tree() -> None:
    root = base("cgroup-systemd")
    (root / "proc/self/mountinfo").write_text(MOUNTINFO_V2)
    cg = root / "sys/fs/cgroup"
    cg.mkdir(parents=True)
    (cg / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma misc\n")
    write_group(cg, "", SYSTEMD, SYSTEMD)
    # Docker Desktop's Resource Saver pauses a container by freezing its group (microsoft/WSL#11066)
    for name in ("cgroup.events", "cgroup.freeze"):
        path = cg / f"system.slice/docker-{DOCKER_WEB}.scope" / name
        path.write_text(path.read_text().replace("frozen 0", "frozen 1").replace("0\n", "1\n"))


def odd_tree() -> None:
    """Groups as the kernel can show them mid-change: no memory controller below a parent that did not
    enable it (no memory.* files), garbage, and a group that keeps only cgroup.events."""
    root = base("cgroup-odd")
    (root / "proc/self/mountinfo").write_text(MOUNTINFO_V2)
    cg = root / "sys/fs/cgroup"
    cg.mkdir(parents=True)
    (cg / "cgroup.controllers").write_text("cpu io memory pids\n")
    own = {"system.slice": (0, 0, 0, 0), "system.slice/cron.service": (30, 10, 0, 4),
           "system.slice/locked.service": (50, 10, 0, 5), "system.slice/garbage.service": (20, 5, 0, 1)}
    write_group(cg, "", own, own)
    nomem = cg / "system.slice/cron.service/nomemory"
    nomem.mkdir()
    (nomem / "cgroup.events").write_text("populated 0\nfrozen 0\n")
    (cg / "system.slice/garbage.service/memory.stat").write_text("anon lots\nfile -5\n\x00\xff\nshmem\n")
    (cg / "system.slice/garbage.service/memory.current").write_text("max\n")


def v1_tree() -> None:
    """This machine as recorded: a hybrid layout, memory on cgroup v1, cgroup2 at /sys/fs/cgroup/unified
    with only hugetlb in its controllers."""
    root = base("cgroup-v1")
    lines = [line for line in Path("/proc/self/mountinfo").read_text().splitlines(keepends=True)
             if line.split(" - ")[1].split()[0] in ("proc", "sysfs", "cgroup", "cgroup2")
             or " /sys/fs/cgroup " in line]  # the cgroup mounts only: the rest is this machine's business
    (root / "proc/self/mountinfo").write_text("".join(lines))
    unified = root / "sys/fs/cgroup/unified"
    unified.mkdir(parents=True)
    (unified / "cgroup.controllers").write_text(Path("/sys/fs/cgroup/unified/cgroup.controllers").read_text())


if __name__ == "__main__":
    systemd_tree()
    odd_tree()
    if Path("/sys/fs/cgroup/unified/cgroup.controllers").exists():
        v1_tree()
