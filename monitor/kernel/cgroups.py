"""Cgroup v2 groups and the memory each holds, read-only, in words a person knows.

Linux charges every page-cache page to the cgroup of the process that first read it, so the
groups say *who* holds the cache (a build, a container, a service), which /proc/meminfo cannot.
This module finds the cgroup v2 mount in ``/proc/self/mountinfo`` (through the one root of
:mod:`monitor.kernel.procfs`, so a recorded tree stands in: ``tests/trees/cgroup-*``), lists its
groups, and reads each group's ``memory.stat``, ``memory.current``, ``cgroup.events`` and
``cgroup.freeze``. It never writes.

Where only cgroup v1 holds the memory controller (WSL's ``wsl.conf`` cgroup v1 opt-in, or a
hybrid machine whose ``cgroup2`` mount at ``/sys/fs/cgroup/unified`` has no ``memory`` in its
``cgroup.controllers``), :func:`find_hierarchy` says so in one line and nothing is listed: v1's
memory.stat counts differently and its groups are a second tree.

Group names, and the convention of ``vmmemctl run``
---------------------------------------------------
A group made by ``vmmemctl run`` lives under a parent directory named ``vmmemctl.slice`` (at the
top, ``/vmmemctl.slice/...``, when root makes it; under the user manager,
``.../user@1000.service/vmmemctl.slice/...``, when ``systemd-run --user --scope --slice=vmmemctl``
makes it), and its own name carries the command::

    run-<pid>-<command line, escaped as systemd-escape does>.scope
    run-4242-make\\x20\\x2dj8.scope          ->  "vmmemctl run: make -j8"

The command is in the name, not in a file beside it: cgroupfs cannot hold a file of ours, and a
file elsewhere could outlive the group or be missing. systemd's escaping keeps the name a valid
unit name, so the same name works for a group root creates by mkdir and for a ``systemd-run``
scope. :func:`run_group_name` makes such a name (the escaped command cut to
:data:`RUN_COMMAND_MAX` characters); :func:`group_words` reads it back.

Other names (:func:`group_words`): ``service: nginx`` (``*.service``), ``slice: system``,
``user session 1000`` (``user-1000.slice``), ``user session 1000: session 3``,
``docker: 3f2a1b2c3d4e…`` (an id; the 12 characters ``docker ps`` shows), ``docker: postgres``
(only where the path carries a name: ``--cgroup-parent``), ``podman: …`` (``libpod-*.scope``),
``machine: NAME`` (systemd-nspawn and libvirt's ``machine-NAME.scope``), WSL's own groups
(``WSL: all distributions`` for ``/wsl-user``, ``WSL distribution (init pid 4975)`` for
``/wsl-user/distro-4975``, WSL 2.9.8 on; systemd's groups below them are named as above), else the path.

Totals: a group's numbers include its children's (cgroup v2 charges a page to one group and
counts it in every ancestor), so a total adds the top-level groups only.

Files are opened, read and closed here (not kept open as :class:`LocalFiles` keeps /proc files):
a descriptor kept on a group's file would keep a removed group's memory alive as a dying cgroup.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from monitor.kernel.procfs import LocalFiles, SystemFiles

RUN_PARENT = "vmmemctl.slice"
RUN_COMMAND_MAX = 160  # escaped characters of the command kept in a run group's name (NAME_MAX is 255)
MAX_GROUPS = 20000  # a walk stops here: a hierarchy this large is a runaway, not a machine to show whole
STAT_KEYS = ("anon", "file", "active_file", "inactive_file", "shmem", "workingset_refault_file")
_HEX_ID = re.compile(r"^[0-9a-f]{64}$")
_RUN_NAME = re.compile(r"^run-(\d+)-(.*)\.scope$")
_USER_SLICE = re.compile(r"^user-(\d+)\.slice$")
_WSL_DISTRO = re.compile(r"^distro-(\d+)$")


# ------------------------------------------------------------------ the mount


@dataclass(frozen=True)
class Hierarchy:
    """Where cgroup v2 is mounted and whether it has the memory controller."""

    mount_point: str | None  # as mountinfo says: "/sys/fs/cgroup"; None when no cgroup2 is mounted
    path: str | None  # the same as a SystemFiles path ("sys/fs/cgroup"); None when it cannot be read
    memory: bool  # "memory" in the mount's cgroup.controllers: per-group numbers exist
    why: str  # one line: what was found, or why per-group numbers cannot be shown

    @property
    def usable(self) -> bool:
        return self.path is not None and self.memory


def cgroup2_mounts(mountinfo: str | None) -> list[str]:
    """Mount points of every cgroup2 file system in /proc/self/mountinfo, first first.

    A line: ``41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw``: the 5th
    field is the mount point (spaces as ``\\040``), the first field after `` - `` the type.
    """
    found = []
    for line in (mountinfo or "").splitlines():
        head, sep, tail = line.partition(" - ")
        fields = head.split()
        if sep and len(fields) > 4 and tail.split()[:1] == ["cgroup2"]:
            found.append(_unescape_mount(fields[4]))
    return found


def _unescape_mount(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def find_hierarchy(files: SystemFiles) -> Hierarchy:
    """The cgroup v2 mount to read, from the tree's own mountinfo."""
    mountinfo = files.read(["proc/self/mountinfo"]).get("proc/self/mountinfo")
    if mountinfo is None:
        return Hierarchy(None, None, False, "/proc/self/mountinfo cannot be read: where cgroup v2 is mounted is unknown")
    mounts = cgroup2_mounts(mountinfo)
    if not mounts:
        return Hierarchy(None, None, False, "no cgroup v2 is mounted (only cgroup v1): per-group numbers need cgroup v2")
    point = min(mounts, key=len)  # /sys/fs/cgroup before a nested mount of the same hierarchy
    if point != "/sys" and not point.startswith("/sys/"):
        return Hierarchy(point, None, False, f"cgroup v2 is mounted at {point}, outside /sys: not read")
    path = "sys" + point[len("/sys"):]
    controllers = files.read([f"{path}/cgroup.controllers"]).get(f"{path}/cgroup.controllers")
    if controllers is None:
        return Hierarchy(point, path, False, f"{point}/cgroup.controllers cannot be read: "
                         "per-group numbers need cgroup v2's memory controller")
    if "memory" not in controllers.split():
        return Hierarchy(point, path, False, f"cgroup v2 at {point} has no memory controller (memory is on "
                         "cgroup v1 here): per-group numbers need cgroup v2")
    return Hierarchy(point, path, True, f"cgroup v2 at {point}")


# ------------------------------------------------------------------ one group


@dataclass(frozen=True)
class Group:
    """One group's memory, as read once. Sizes in bytes; None where the file did not say."""

    path: str  # from the mount's root: "/system.slice/nginx.service"
    name: str  # in words: "service: nginx"
    current: int | None  # memory.current
    anon: int | None
    file: int | None  # page cache charged here, shmem included (memory.stat "file")
    active_file: int | None
    inactive_file: int | None
    shmem: int | None
    workingset_refault_file: int | None  # refaults counted in this group (pages), where memory.stat has it
    frozen: bool | None  # cgroup.freeze 1 or cgroup.events "frozen 1"
    populated: bool | None  # cgroup.events "populated": processes here or below
    children: int = 0  # groups directly below
    problem: str | None = None  # "memory.stat: permission denied" and the like

    @property
    def depth(self) -> int:
        return self.path.count("/")

    def to_json(self) -> dict:
        data = asdict(self)
        data["depth"] = self.depth
        for key in ("current", "anon", "file", "active_file", "inactive_file", "shmem"):
            data[f"{key}_bytes"] = data.pop(key)
        return data


def parse_memory_stat(text: str | None) -> dict[str, int]:
    """``memory.stat`` -> {key: value}: ``anon 1048576`` per line (bytes, or counts for events)."""
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def parse_events(text: str | None) -> dict[str, int]:
    """``cgroup.events`` -> {"populated": 1, "frozen": 0}: the same ``key value`` lines."""
    return parse_memory_stat(text)


class _Gone(Exception):
    """The group's directory went away while it was read (a container stopped, a scope ended)."""


def _read_file(path: Path) -> tuple[str | None, str | None]:
    """(text, None) or (None, words why not); raises _Gone when the group itself is gone."""
    try:
        with open(path, "rb") as f:
            return f.read(1 << 20).decode("utf-8", "replace"), None
    except FileNotFoundError:
        if not path.parent.is_dir():
            raise _Gone from None
        return None, f"{path.name}: missing"
    except OSError as exc:
        if exc.errno == errno.ENODEV:  # kernfs answers ENODEV on a file of a removed group
            raise _Gone from None
        return None, f"{path.name}: {os.strerror(exc.errno).lower() if exc.errno else exc}"


def read_group(directory: Path, path: str) -> Group | None:
    """One group's memory from its directory; None when the group went away while it was read."""
    problems: list[str] = []
    try:
        texts = {}
        for name in ("memory.stat", "memory.current", "cgroup.events", "cgroup.freeze"):
            texts[name], problem = _read_file(directory / name)
            if problem and name.startswith("memory."):
                problems.append(problem)
        children = _child_dirs(directory)
    except _Gone:
        return None
    stat = parse_memory_stat(texts["memory.stat"])
    current = (texts["memory.current"] or "").strip()
    if texts["memory.stat"] is None and texts["memory.current"] is None and all("missing" in p for p in problems):
        problems = ["no memory numbers (the memory controller is not enabled for this group)"]
    elif texts["memory.stat"] is not None and not any(k in stat for k in STAT_KEYS):
        problems.append("memory.stat: not in the expected form (lines of 'key bytes')")
    if texts["memory.current"] is not None and not current.isdigit():
        problems.append(f"memory.current: {current[:20]!r} is not a number")
    events = parse_events(texts["cgroup.events"])
    freeze = (texts["cgroup.freeze"] or "").strip()
    frozen = None
    if freeze or "frozen" in events:
        frozen = freeze == "1" or events.get("frozen") == 1
    return Group(path=path, name=group_words(path), current=int(current) if current.isdigit() else None,
                 anon=stat.get("anon"), file=stat.get("file"), active_file=stat.get("active_file"),
                 inactive_file=stat.get("inactive_file"), shmem=stat.get("shmem"),
                 workingset_refault_file=stat.get("workingset_refault_file"), frozen=frozen,
                 populated=None if "populated" not in events else events["populated"] == 1,
                 children=len(children), problem="; ".join(problems) or None)


def is_frozen(directory: Path) -> bool | None:
    """Whether a group is frozen (``cgroup.freeze`` 1 or ``cgroup.events`` frozen 1: Docker Desktop's
    Resource Saver pauses containers so, and writes to a paused group hung WSL: microsoft/WSL#11066).
    None when neither file can be read."""
    group = read_group(directory, "/")
    return None if group is None else group.frozen


def _child_dirs(directory: Path) -> list[str]:
    try:
        with os.scandir(directory) as it:
            return sorted(e.name for e in it if e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        raise _Gone from None
    except OSError:
        return []  # an unreadable directory: its own numbers still read; its children are not listed


# ------------------------------------------------------------------ all groups


@dataclass
class Listing:
    """Every group under the mount, the largest page cache first, and what could not be read."""

    hierarchy: Hierarchy
    groups: list[Group] = field(default_factory=list)
    gone: int = 0  # groups that went away while they were read
    truncated: bool = False  # the walk stopped at MAX_GROUPS

    def top_level(self) -> list[Group]:
        return [g for g in self.groups if g.depth == 1]

    def totals(self) -> dict[str, int]:
        """Sums over the top-level groups only: a group's numbers already include its children's."""
        out = {}
        for key in ("file", "anon", "current", "shmem"):
            out[f"{key}_bytes"] = sum(getattr(g, key) or 0 for g in self.top_level())
        return out

    def to_json(self) -> dict:
        return {"mount_point": self.hierarchy.mount_point, "memory_controller": self.hierarchy.memory,
                "why": self.hierarchy.why, "groups": [g.to_json() for g in self.groups],
                "top_level_totals": self.totals(), "gone_while_read": self.gone, "truncated": self.truncated,
                "note": "a group's numbers include its children's; totals add the top-level groups only"}


def mount_directory(files: SystemFiles, hierarchy: Hierarchy) -> Path | None:
    """The mount's directory on this machine (or in the tree); None when these files are not local
    (host mode reads the guest through a command, which lists no directories)."""
    if hierarchy.path is None or not isinstance(files, LocalFiles):
        return None
    return files.resolve(hierarchy.path)


def list_groups(files: SystemFiles, hierarchy: Hierarchy | None = None) -> Listing:
    """Every cgroup v2 group with its memory, the largest page cache first (then memory.current)."""
    hierarchy = hierarchy or find_hierarchy(files)
    listing = Listing(hierarchy)
    root = mount_directory(files, hierarchy) if hierarchy.usable else None
    if hierarchy.usable and root is None:
        listing.hierarchy = Hierarchy(hierarchy.mount_point, None, False,
                                      "per-group numbers are read on the machine itself (not through [guest] exec)")
    if root is None:
        return listing
    for rel in _walk(root):
        if len(listing.groups) + listing.gone >= MAX_GROUPS:
            listing.truncated = True
            break
        group = read_group(root / rel.lstrip("/"), rel)
        if group is None:
            listing.gone += 1
        else:
            listing.groups.append(group)
    listing.groups.sort(key=lambda g: (-(g.file or 0), -(g.current or 0), g.path))
    return listing


def list_groups_here(proc_root: str | Path, through_exec: bool = False) -> Listing:
    """The groups of the machine (or tree) at ``proc_root``; in host mode (the guest read through
    ``[guest] exec``) a listing that says where to look instead."""
    if through_exec:
        return Listing(Hierarchy(None, None, False, "per-group numbers are read inside the guest (run "
                                 "vmmemctl cgroups there), not through [guest] exec"))
    files = LocalFiles(proc_root)
    try:
        return list_groups(files)
    finally:
        files.close()


def _walk(root: Path) -> Iterator[str]:
    """Group paths below the mount's root ("/a", "/a/b", ...), depth first; a group that goes away
    while it is walked is skipped (its reader counts it)."""
    stack = ["/" + name for name in reversed(_safe_children(root))]
    while stack:
        rel = stack.pop()
        yield rel
        stack.extend(f"{rel}/{name}" for name in reversed(_safe_children(root / rel.lstrip("/"))))


def _safe_children(directory: Path) -> list[str]:
    try:
        return _child_dirs(directory)
    except _Gone:
        return []


def find_group(files: SystemFiles, name_or_path: str) -> tuple[Path, str] | None:
    """A group's directory and path from its path below the mount ("system.slice/docker-x.scope",
    with or without the leading /) or its words ("service: nginx"); None when nothing matches."""
    hierarchy = find_hierarchy(files)
    root = mount_directory(files, hierarchy)
    if root is None:
        return None
    rel = "/" + name_or_path.strip("/")
    if rel != "/" and (root / rel.lstrip("/")).is_dir():
        return root / rel.lstrip("/"), rel
    for path in _walk(root):
        if group_words(path) == name_or_path:
            return root / path.lstrip("/"), path
    return None


# ------------------------------------------------------------------ names


def systemd_escape(text: str) -> str:
    """As ``systemd-escape``: "/" -> "-", and every byte but [A-Za-z0-9:_.] (a leading "." too) -> \\xNN."""
    out = []
    for i, byte in enumerate(text.encode("utf-8")):
        char = chr(byte)
        if char == "/":
            out.append("-")
        elif (char.isascii() and (char.isalnum() or char in ":_.")) and not (i == 0 and char == "."):
            out.append(char)
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out)


def systemd_unescape(text: str) -> str:
    """The reverse of :func:`systemd_escape` ("-" -> "/", \\xNN -> the byte)."""
    raw = bytearray()
    i = 0
    while i < len(text):
        if text.startswith("\\x", i) and re.fullmatch(r"[0-9a-fA-F]{2}", text[i + 2:i + 4]):
            raw.append(int(text[i + 2:i + 4], 16))
            i += 4
            continue
        raw.extend(b"/" if text[i] == "-" else text[i].encode("utf-8"))
        i += 1
    return raw.decode("utf-8", "replace")


def run_group_name(pid: int, argv: list[str]) -> str:
    """The group name ``vmmemctl run`` gives a job (see the module's docstring): the command escaped,
    cut at a whole escape to RUN_COMMAND_MAX characters."""
    escaped = systemd_escape(" ".join(argv))
    if len(escaped) > RUN_COMMAND_MAX:
        cut = escaped[:RUN_COMMAND_MAX]
        tail = cut.rfind("\\")
        escaped = cut[:tail] if tail > RUN_COMMAND_MAX - 4 else cut
    return f"run-{pid}-{escaped}.scope"


def run_command(path: str) -> str | None:
    """The command of a group ``vmmemctl run`` made ("make -j8"), or None if the path is not one."""
    parts = path.strip("/").split("/")
    match = _RUN_NAME.match(parts[-1])
    if len(parts) < 2 or parts[-2] != RUN_PARENT or not match:
        return None
    return systemd_unescape(match.group(2))


def group_words(path: str) -> str:
    """A group's path in words a person knows ("service: nginx", "docker: 3f2a1b2c3d4e…")."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return "all groups (the root)"
    last = parts[-1]
    command = run_command(path)
    if command is not None:
        return f"vmmemctl run: {command}"
    for words in (_container_words(parts), _user_words(parts), _wsl_words(parts)):
        if words:
            return words
    if last == RUN_PARENT:
        return "vmmemctl runs"
    if last == "init.scope":
        return "systemd (init)"
    for suffix, kind in ((".service", "service"), (".slice", "slice"), (".scope", "scope"), (".socket", "socket")):
        if last.endswith(suffix):
            return f"{kind}: {systemd_unescape_name(last[: -len(suffix)])}"
    return path if path.startswith("/") else "/" + path


def systemd_unescape_name(name: str) -> str:
    """A unit's name for reading: "\\x2d" -> "-", but "-" stays (in a unit name it is not a "/")."""
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), name)


def _short_id(text: str) -> str:
    return text[:12] + "…" if _HEX_ID.match(text) else text


def _container_words(parts: list[str]) -> str | None:
    last = parts[-1]
    for prefix, engine in (("docker-", "docker"), ("libpod-conmon-", "podman conmon"), ("libpod-", "podman"),
                           ("cri-containerd-", "containerd"), ("crio-", "cri-o")):
        if last.startswith(prefix) and last.endswith(".scope"):
            return f"{engine}: {_short_id(last[len(prefix):-len('.scope')])}"
    if len(parts) >= 2 and parts[-2] in ("docker", "libpod_parent"):  # the cgroupfs driver: /docker/<id>
        return f"{'docker' if parts[-2] == 'docker' else 'podman'}: {_short_id(last)}"
    if last.startswith("machine-libpod_pod_") and last.endswith(".slice"):
        return f"podman pod: {_short_id(last[len('machine-libpod_pod_'):-len('.slice')])}"
    if last.startswith("machine-") and last.endswith(".scope"):
        return f"machine: {systemd_unescape_name(last[len('machine-'):-len('.scope')])}"
    return None


def _wsl_words(parts: list[str]) -> str | None:
    """WSL's own groups (WSL 2.9.8 on): ``/wsl-user`` holds every distribution, ``/wsl-user/distro-<pid>``
    one (the pid of its init in the VM; the name is not in the path: inside, $WSL2_DISTRO_CGROUP_PATH
    says which is ours), with ``systemd`` and ``non-systemd`` below for a systemd distribution."""
    if parts[0] != "wsl-user":
        return None
    if len(parts) == 1:
        return "WSL: all distributions"
    match = _WSL_DISTRO.match(parts[1])
    if not match or len(parts) > 3:
        return None
    distro = f"WSL distribution (init pid {match.group(1)})"
    if len(parts) == 2:
        return distro
    return {"systemd": f"{distro}: systemd", "non-systemd": f"{distro}: outside systemd"}.get(parts[2])


def _user_words(parts: list[str]) -> str | None:
    uid = next((m.group(1) for p in parts if (m := _USER_SLICE.match(p))), None)
    if uid is None:
        return None
    last = parts[-1]
    if _USER_SLICE.match(last):
        return f"user session {uid}"
    if last.startswith("session-") and last.endswith(".scope"):
        return f"user session {uid}: session {last[len('session-'):-len('.scope')]}"
    if last == f"user@{uid}.service":
        return f"user session {uid}: user manager"
    return None
