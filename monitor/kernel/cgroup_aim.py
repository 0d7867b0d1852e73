"""Rules and schedules that aim at groups: ``cgroup = "GLOB"`` in a ``[[rule]]`` or ``[[schedule]]``.

A glob names groups by their path below the cgroup v2 mount, one ``/``-separated part per level, with
the shell's ``*``, ``?`` and ``[...]`` inside a part (no ``**``): ``"system.slice/docker-*.scope"``,
``"vmmemctl.slice/*"``, ``"user.slice/user-1000.slice"``. A leading ``/`` or ``/sys/fs/cgroup/`` is
allowed and dropped. Its metric is the page cache (``memory.stat`` ``file``) of the groups it matches,
added up (a matched group inside another matched group is counted once, in its ancestor: cgroup v2
counts a child's pages in every ancestor). Read-only: this module never writes.

A glob's reading, :class:`Aim`, is the bytes and the groups, or, when there is no figure, why in one
line: no cgroup v2 (or no memory controller on it), read through ``[guest] exec`` (the channel lists no
directories), or no group matches. A rule with no figure never fires; status and doctor say why.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from monitor.kernel.cgroups import find_hierarchy, mount_directory, parse_memory_stat
from monitor.kernel.procfs import LocalFiles, SystemFiles

PREFIXES = ("/sys/fs/cgroup/", "/")
MAX_MATCHES = 4096  # a glob this wide is a mistake, not a target


class GlobError(ValueError):
    """A cgroup glob that cannot name groups; str() is what was expected, for the config's one line."""


def normalize_glob(text: str) -> str:
    """The glob as matched (relative to the mount, no leading or trailing /); GlobError with what was
    expected."""
    glob = text.strip()
    for prefix in PREFIXES:
        if glob.startswith(prefix):
            glob = glob[len(prefix):]
            break
    glob = glob.rstrip("/")
    if not glob:
        raise GlobError("a group's path below /sys/fs/cgroup, with * ? [..] inside a part, such as "
                        '"system.slice/docker-*.scope"')
    parts = glob.split("/")
    if any(p == "" for p in parts):
        raise GlobError("one / between parts (no empty part)")
    if any(p in (".", "..") for p in parts):
        raise GlobError("no . or .. parts: a path below /sys/fs/cgroup")
    if any("**" in p for p in parts):
        raise GlobError("* ? [..] inside one part; ** (any depth) is not supported: name each level")
    if any(p.count("[") != p.count("]") for p in parts):
        raise GlobError("balanced [ ] in each part")
    return glob


@dataclass(frozen=True)
class Aim:
    """One glob's reading: ``cache`` (bytes, the matched groups' page cache added up) and ``groups`` (their
    paths below the mount, largest cache first), or ``why`` there is no figure."""

    glob: str
    cache: int | None
    groups: tuple[tuple[str, int], ...] = ()
    why: str | None = None

    def words(self) -> str:
        if self.cache is None:
            return self.why or "unknown"
        from monitor.units import format_bytes

        n = len(self.groups)
        return f"{format_bytes(self.cache)} in {n} group{'s' if n != 1 else ''}"

    def to_json(self) -> dict:
        return {"glob": self.glob, "page_cache_bytes": self.cache, "why": self.why,
                "groups": [{"path": "/" + p, "page_cache_bytes": b} for p, b in self.groups]}


def match(root: Path, glob: str) -> list[str]:
    """Paths below ``root`` (a mount's directory) of the groups ``glob`` matches, level by level, sorted."""
    level = [""]
    for part in glob.split("/"):
        found = []
        for rel in level:
            here = root / rel if rel else root
            try:
                with os.scandir(here) as it:
                    names = [e.name for e in it if e.is_dir(follow_symlinks=False)]
            except OSError:
                continue  # gone or unreadable meanwhile: no match below it
            found += [f"{rel}/{n}" if rel else n for n in fnmatch.filter(names, part)]
            if len(found) > MAX_MATCHES:
                break
        level = found
        if not level:
            break
    return sorted(level)


def read_aims(files: SystemFiles, globs: Iterable[str]) -> dict[str, Aim]:
    """Each glob's reading now (``globs`` as written in the config; normalized here)."""
    wanted = list(dict.fromkeys(globs))
    if not wanted:
        return {}
    if not isinstance(files, LocalFiles):  # host mode: not one channel call per tick for groups it cannot list
        return {g: Aim(g, None, why="no figure: the groups are the guest's (a watcher in host mode does not list "
                       "them through [guest] exec; run vmmemctl inside the guest to aim at groups)") for g in wanted}
    hierarchy = find_hierarchy(files)
    root = mount_directory(files, hierarchy) if hierarchy.usable else None
    if root is None:
        why = hierarchy.why if not hierarchy.usable else \
            "per-group numbers are read on the machine itself (not through [guest] exec)"
        return {g: Aim(g, None, why=f"no figure: {why}") for g in wanted}
    out = {}
    for glob in wanted:
        try:
            paths = match(root, normalize_glob(glob))
        except GlobError as exc:  # the config check refuses these; a hand-made Config may not
            out[glob] = Aim(glob, None, why=f"not a group glob: expected {exc}")
            continue
        outer = [p for p in paths if not any(p.startswith(q + "/") for q in paths)]  # counted in an ancestor
        groups = []
        for rel in outer:
            try:
                text = (root / rel / "memory.stat").read_text()
            except OSError:
                continue  # gone meanwhile, or no memory controller there
            cache = parse_memory_stat(text).get("file")
            if cache is not None:
                groups.append((rel, cache))
        if not groups:
            why = f"no group matches {glob} under {hierarchy.mount_point}" if not paths else \
                f"the groups matching {glob} have no memory.stat (no memory controller there)"
            out[glob] = Aim(glob, None, why=why)
            continue
        groups.sort(key=lambda g: (-g[1], g[0]))
        out[glob] = Aim(glob, sum(b for _, b in groups), tuple(groups))
    return out


def aimed_globs(config) -> list[str]:
    """Every glob the config's rules and schedules aim at, in order, once each."""
    return list(dict.fromkeys([r.cgroup for r in config.rule if r.cgroup] +
                              [s.cgroup for s in config.schedule if s.cgroup]))


def aims_here(config, files: SystemFiles | None = None) -> list[tuple[str, Aim]]:
    """(who, reading) for every aimed rule and schedule, read on this machine (or the --proc-root tree):
    what `status` and `doctor` show. In host mode ([guest] exec) the groups are the guest's: no figure."""
    globs = aimed_globs(config)
    if not globs:
        return []
    if config.guest.exec:
        aims = read_aims(object(), globs)  # type: ignore[arg-type]  (not local files: host mode's words)
    else:
        own = files is None
        files = files or LocalFiles(config.general.proc_root)
        try:
            aims = read_aims(files, globs)
        finally:
            if own:
                files.close()
    out = [(f"rule {r.label}", aims[r.cgroup]) for r in config.rule if r.cgroup]
    # a schedule as the watcher names it (monitor.watch.recorder.schedule_name; a box below may not import it)
    return out + [(f"schedule schedule:{s.name or s.cron}", aims[s.cgroup]) for s in config.schedule if s.cgroup]


def with_aims(sample, aims: Iterable[Aim]):
    """``sample`` carrying each reading (bytes, or why there is none), as a rule's metric reads it."""
    import dataclasses

    cgroups = tuple((a.glob, a.cache if a.cache is not None else (a.why or "unknown")) for a in aims)
    return dataclasses.replace(sample, cgroups=tuple(dict(cgroups).items())) if cgroups else sample
