"""One cgroup v2 group as a reclaim's target: find it, read it, refuse it, make one for `run`.

The small cgroup v2 plumbing `reclaim --cgroup` and `run` need (the read-only view of every group,
`vmmemctl cgroups`, is monitor/kernel/cgroups.py's). Every read and write goes through the
:class:`~monitor.kernel.procfs.SystemFiles` of the reclaim (``sys/fs/cgroup/...`` paths), so the
same code runs on this machine as root, on a recorded tree (tests: ``--proc-root``) and in host mode
through the guest channel (the lab). Only :func:`make_run_group` and :meth:`RunGroup.remove` touch
directories (mkdir, rmdir): they need a local tree.

Where cgroup v2 is: the ``cgroup2`` line of ``proc/self/mountinfo`` (on WSL and systemd machines
/sys/fs/cgroup; on a hybrid layout /sys/fs/cgroup/unified, which has no memory controller).

A group is refused, with one line and nothing written, when it is frozen: ``cgroup.freeze`` holds
1 or ``cgroup.events`` says ``frozen 1``. Docker Desktop's Resource Saver pauses containers that
way, and writes to a paused group hung WSL (microsoft/WSL#11066).

`vmmemctl run`'s groups are named as monitor/kernel/cgroups.py (issue 26's item 1, on main) reads
them back:

    <v2 root>/vmmemctl.slice/run-<pid>-<command line, escaped as systemd-escape does>.scope
    /sys/fs/cgroup/vmmemctl.slice/run-4242-make\x20\x2dj8.scope   ->  "vmmemctl run: make -j8"

``pid`` is the pid of the `vmmemctl run` that made it (unique while it runs; a leftover of a killed
run names its dead owner); the escaped command line is cut, at a whole escape, to
:data:`monitor.kernel.cgroups.RUN_COMMAND_MAX` characters (NAME_MAX is 255). The same name is a valid unit
name, so a user's ``systemd-run --user --scope --slice=vmmemctl`` scope carries it too. The name is made
and read back in :mod:`monitor.kernel.cgroups` (run_group_name, run_command), which the cgroups view uses.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from monitor.errors import UserError
from monitor.kernel.cgroups import RUN_PARENT, cgroup2_mounts, run_group_name  # the names the cgroups view reads

if TYPE_CHECKING:
    from monitor.kernel.procfs import SystemFiles

MOUNTINFO = "proc/self/mountinfo"


class CgroupError(UserError):
    """No cgroup v2, no such group, no memory controller, a frozen group: one line, exit 2."""


def v2_root(files: SystemFiles) -> str:
    """Where cgroup v2 is mounted, as a ``sys/...`` path of ``files`` ("sys/fs/cgroup"); CgroupError
    when it is not mounted (only cgroup v1, or none) or sits outside /sys."""
    text = files.read([MOUNTINFO])[MOUNTINFO]
    if text is None:
        raise CgroupError(f"cannot read /{MOUNTINFO}: cannot tell where cgroup v2 is mounted")
    mounts = cgroup2_mounts(text)  # the cgroups view's reading of mountinfo: the two find the same mount
    if mounts:
        mount = min(mounts, key=len)  # /sys/fs/cgroup before a nested mount of the same hierarchy
        if mount != "/sys" and not mount.startswith("/sys/"):
            raise CgroupError(f"cgroup v2 is mounted at {mount}, outside /sys: vmmemctl looks for it under /sys")
        return mount.lstrip("/").rstrip("/")
    # 36 25 0:31 / /sys/fs/cgroup/memory rw,nosuid shared:9 - cgroup cgroup rw,memory
    tails = (line.partition(" - ")[2].split() for line in text.splitlines())
    if any(len(t) > 2 and t[0] == "cgroup" and "memory" in t[2].split(",") for t in tails):
        raise CgroupError("only cgroup v1 is mounted here (its memory controller has no memory.reclaim): "
                          "per-group reclaim needs cgroup v2")
    raise CgroupError("no cgroup v2 is mounted here (no cgroup2 line in /proc/self/mountinfo)")


@dataclass(frozen=True)
class Group:
    """One group: ``root`` is the v2 mount ("sys/fs/cgroup"), ``rel`` the group's path below it."""

    files: SystemFiles
    root: str
    rel: str

    def path(self, name: str) -> str:
        return "/".join(p for p in (self.root, self.rel, name) if p)

    @property
    def shown(self) -> str:
        """The group as a person finds it: /sys/fs/cgroup/vmmemctl.slice/run-42-make."""
        return "/" + self.path("")

    @property
    def reclaim_knob(self) -> str:
        return self.path("memory.reclaim")

    def read(self, name: str) -> str | None:
        return self.files.read([self.path(name)])[self.path(name)]

    def memory_stat(self) -> dict[str, int] | None:
        """``memory.stat`` as numbers (bytes, except the event counters), or None when unreadable."""
        text = self.read("memory.stat")
        if text is None:
            return None
        out = {}
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if value.strip().isdigit():
                out[key] = int(value)
        return out

    def frozen(self) -> str | None:
        """Why the group is frozen ("cgroup.freeze is 1", "cgroup.events says frozen 1"), or None."""
        freeze = self.read("cgroup.freeze")
        if freeze is not None and freeze.strip() == "1":
            return "cgroup.freeze is 1"
        events = self.read("cgroup.events") or ""
        if any(line.split() == ["frozen", "1"] for line in events.splitlines()):
            return "cgroup.events says frozen 1"
        return None

    def pressure_some_us(self) -> int | None:
        """``memory.pressure``'s "some" total (microseconds stalled), where PSI exists."""
        for line in (self.read("memory.pressure") or "").splitlines():
            if line.startswith("some "):
                for part in line.split():
                    if part.startswith("total="):
                        return int(part[6:]) if part[6:].isdigit() else None
        return None

    def refuse_if_frozen(self) -> None:
        why = self.frozen()
        if why is not None:
            raise CgroupError(f"cgroup {self.shown} is frozen ({why}: a paused container?): not touched, since "
                              "writes to a frozen group can hang (microsoft/WSL#11066); thaw it first")


def find_group(files: SystemFiles, spec: str) -> Group:
    """The group ``spec`` names, checked for a reclaim: a path (absolute under the v2 mount, or below it),
    else the name of exactly one group in a local tree. CgroupError when there is no cgroup v2, no such
    group, no memory controller or no memory.reclaim there, or the group is frozen."""
    root = v2_root(files)
    text = spec.strip()
    if not text:
        raise CgroupError("reclaim --cgroup: expected a group's path or name, got an empty string")
    rel = text.rstrip("/")
    if rel.startswith("/" + root + "/") or rel == "/" + root:
        rel = rel[len(root) + 1:]
    rel = rel.strip("/")
    if ".." in rel.split("/"):
        raise CgroupError(f"reclaim --cgroup {spec}: a group's path has no '..'")
    top = Group(files, root, "")
    controllers = top.read("cgroup.controllers")
    if controllers is not None and "memory" not in controllers.split():
        # a hybrid layout (cgroup v2 on /sys/fs/cgroup/unified, memory on v1): no group below it has one,
        # so this is the answer whatever ``spec`` names (said before "no such group")
        raise CgroupError(f"cgroup v2 at /{root} has no memory controller (memory is on cgroup v1 here, a "
                          "hybrid layout): per-group reclaim needs it on cgroup v2")
    group = Group(files, root, rel)
    if files.read([group.path("cgroup.controllers")])[group.path("cgroup.controllers")] is None:
        found = _by_name(files, root, rel) if rel and "/" not in rel else []
        if len(found) > 1:
            raise CgroupError(f"reclaim --cgroup {spec}: {len(found)} groups have that name ({found[0]}, {found[1]}"
                              f"{', ...' if len(found) > 2 else ''}): give the path")
        if not found:
            raise CgroupError(f"reclaim --cgroup {spec}: no such group under /{root}")
        group = Group(files, root, found[0])
    if group.memory_stat() is None:
        raise CgroupError(f"cgroup {group.shown} has no memory controller (no memory.stat): enable it with "
                          f"'+memory' in its parent's cgroup.subtree_control")
    if not files.exists(group.reclaim_knob):
        raise CgroupError(f"cgroup {group.shown} has no writable memory.reclaim (a kernel before 5.19, "
                          "or not root)")
    group.refuse_if_frozen()
    return group


def _by_name(files: SystemFiles, root: str, name: str) -> list[str]:
    """Paths below ``root`` of the groups called ``name`` (a local tree only: the guest channel lists
    no directories), shortest first."""
    resolve = getattr(files, "resolve", None)
    if resolve is None:
        return []
    top = Path(resolve(root))
    found = []
    for here, dirs, _ in os.walk(top):
        if name in dirs:
            found.append(str((Path(here) / name).relative_to(top)))
    return sorted(found, key=lambda p: (p.count("/"), p))


# ------------------------------------------------------------------ `vmmemctl run`'s own group


@dataclass(frozen=True)
class RunGroup(Group):
    """A group `run` made; :meth:`remove` takes it away (and the slice, when it is left empty)."""

    def local(self, name: str = "") -> Path:
        return Path(self.files.resolve(self.path(name)))  # type: ignore[attr-defined]

    def move(self, pid: int) -> None:
        """Move ``pid`` into the group (one write of cgroup.procs)."""
        _write(self.local("cgroup.procs"), str(pid))

    def set_high(self, limit: int) -> None:
        _write(self.local("memory.high"), str(limit))

    def remove(self) -> str | None:
        """rmdir the group (then the slice if empty); why not, in words, else None. A tree's group is a
        plain directory with files in it (tests): those go too."""
        path = self.local()
        try:
            _rmdir(path)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return None
            return f"could not remove {self.shown}: {exc.strerror}"
        try:
            _rmdir(path.parent)
        except OSError:
            pass  # another run's group is still in the slice
        return None


def _write(path: Path, value: str) -> None:
    """One write(2) of ``value``. O_CREAT: a plain tree's new group (tests) has no files until one is
    written; in cgroupfs the files came with mkdir (and none can be created)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _rmdir(path: Path) -> None:
    try:
        path.rmdir()
    except OSError as exc:
        # cgroupfs: a group's files vanish with it. A plain tree (tests): its files are ordinary ones.
        procs = path / "cgroup.procs"
        if exc.errno != errno.ENOTEMPTY or any(p.is_dir() for p in path.iterdir()) or \
                (procs.exists() and procs.read_text().strip()):
            raise
        for p in path.iterdir():
            p.unlink()
        path.rmdir()


def make_run_group(files: SystemFiles, pid: int, argv: list[str]) -> RunGroup:
    """Make ``<v2 root>/vmmemctl.slice/run-<pid>-<command>.scope`` with the memory controller on (root, a local
    tree). CgroupError when there is no cgroup v2 with a memory controller; PermissionError as the
    kernel said when not allowed."""
    from monitor.errors import PrivilegeError

    root = v2_root(files)
    if not hasattr(files, "resolve"):
        raise CgroupError("run starts COMMAND on this machine: with [guest] exec the VM's groups are elsewhere")
    top = Group(files, root, "")
    if "memory" not in (top.read("cgroup.controllers") or "").split():
        raise CgroupError(f"cgroup v2 at /{root} has no memory controller: per-group reclaim needs it")
    slice_ = RunGroup(files, root, RUN_PARENT)
    try:
        slice_.local().mkdir(exist_ok=True)
        _enable_memory(files, top)
        _enable_memory(files, slice_)
        group = RunGroup(files, root, f"{RUN_PARENT}/{run_group_name(pid, argv)}")
        group.local().mkdir()
    except PermissionError as exc:
        raise PrivilegeError(f"run: cannot make a group under /{root} ({exc.strerror}): that needs root "
                             "(or a delegated user manager)") from None
    return group


def _enable_memory(files: SystemFiles, group: Group) -> None:
    """'+memory' into the group's cgroup.subtree_control, unless it is on already."""
    if "memory" in (group.read("cgroup.subtree_control") or "").split():
        return
    _write(Path(files.resolve(group.path("cgroup.subtree_control"))), "+memory")  # type: ignore[attr-defined]
