"""``vmmemctl reclaim --path``: give back the page cache of some trees, and nothing else.

Per file (walked by :mod:`monitor.pagecache.treewalk`: no symlinks followed, nothing
outside the trees opened): read its residency, and if any of it is cached,
write back its dirty pages and ``posix_fadvise(POSIX_FADV_DONTNEED)``
(:func:`monitor.pagecache.residency.drop_file_cache`); then compact as every method
does. Measured like every reclaim (:meth:`Reclaimer.run_with`: guest before
and after, host over the settle period) and recorded as a ``reclaim`` event.

Unprivileged it works for every file the user can open (fadvise needs only
a read descriptor); compaction needs root or the sudo rule, and without it
is skipped with a note, not a failure. Files the kernel will not report to
the caller (see :mod:`monitor.pagecache.residency`) are dropped unmeasured.

For schedules and rules: :func:`reclaim_paths` takes ``(reclaimer, paths,
dry_run, progress, stop)`` and returns a :class:`PathReclaimResult`; build the
reclaimer with :func:`make_path_reclaimer`.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from monitor.config.schema import Config
from monitor.errors import PrivilegeError
from monitor.kernel.portable import euid
from monitor.kernel.procfs import LocalFiles
from monitor.pagecache.residency import (
    Reader,
    can_inspect,
    choose_reader,
    drop_file_cache,
)
from monitor.pagecache.scan import PSEUDO_FS, device_fstypes
from monitor.pagecache.treewalk import FileAt, Walker, display, resolve_roots
from monitor.reclaim.reclaimer import (
    Progress,
    Reclaimer,
    ReclaimResult,
    Seams,
    choose_writer,
    default_lock_path,
)
from monitor.reclaim.record import ReclaimRequest, describe_reclaim
from monitor.units import format_bytes

if TYPE_CHECKING:
    from monitor.probes.probeset import Probes

METHOD = "path"
PROGRESS_EVERY = 0.25


@dataclass
class TreeDrop:
    """What happened under one tree."""

    root: str
    files: int = 0  # regular files looked at
    dropped: int = 0  # files whose cache was given back (or would be, in a dry run)
    cached_before: int = 0
    cached_after: int = 0
    unmeasured: int = 0  # dropped, but the kernel would not tell us how much was cached
    errors: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"path": display(self.root), "files": self.files, "dropped_files": self.dropped,
                "cached_before_bytes": self.cached_before, "cached_after_bytes": self.cached_after,
                "unmeasured_files": self.unmeasured, "errors": self.errors, "skipped": self.skipped}


@dataclass
class PathReclaimResult(ReclaimResult):
    paths: list[TreeDrop] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "paths": [t.to_json() for t in self.paths]}


class _NoRight:
    """The writer when compaction is not allowed here: the path drop still runs; compaction is skipped."""

    def __init__(self, why: str):
        self.description = "no privileged writer"
        self.why = why

    def write(self, path: str, value: str) -> None:
        raise PermissionError(self.why)

    def exists(self, path: str) -> bool:
        return False


def make_path_reclaimer(config: Config, probes: Probes, progress: Progress | None = None, *, dry_run: bool = False,
                        lock_path: Path | None = None, stop: threading.Event | None = None) -> Reclaimer:
    """A Reclaimer for path drops: the narrowest writer for compaction, or none (unprivileged)."""
    try:
        writer: Any = choose_writer(probes.files, dry_run)
    except PrivilegeError as exc:
        writer = _NoRight(str(exc))
    return Reclaimer(writer, probes, config.reclaim, lock_path or default_lock_path(), progress, stop,
                     Seams(sync=probes.files.sync))


def reclaim_paths(reclaimer: Reclaimer, paths: Sequence[str], dry_run: bool = False,
                  progress: Progress | None = None, stop: threading.Event | None = None, *,
                  trigger: str = "manual", settle: float | None = None,
                  reader: Reader | None = None) -> PathReclaimResult:
    """Give back the page cache of ``paths`` only, then compact; measured like every reclaim."""
    result = PathReclaimResult(method=METHOD, trigger=trigger, dry_run=dry_run, methods_run=[METHOD])
    progress = progress or reclaimer.progress
    stop = stop or reclaimer.stop
    dropper = _Dropper(reader or choose_reader(), dry_run, progress, stop)

    def act(r: ReclaimResult) -> None:
        for root in resolve_roots(list(paths)):
            tree = dropper.drop_tree(root)
            result.paths.append(tree)
            verb = "would give back" if dry_run else "gave back"
            r.steps.append(f"{verb} the cache of {tree.dropped:,} of {tree.files:,} files under {display(root)}: "
                           f"{format_bytes(tree.cached_before)} cached"
                           + ("" if dry_run else f" -> {format_bytes(tree.cached_after)}"))
            if tree.unmeasured:
                r.notes.append(f"{tree.unmeasured:,} files under {display(root)} were dropped unmeasured: the kernel "
                               "reports residency only for files you own or may write")
            if stop.is_set():
                r.notes.append("stopped early: the rest of the trees kept their cache")
                return
        _compact(reclaimer, r)
    return reclaimer.run_with(result, act, settle)  # type: ignore[return-value]


def _compact(reclaimer: Reclaimer, result: ReclaimResult) -> None:
    if not reclaimer.config.compact:
        return
    if isinstance(reclaimer.writer, _NoRight):
        result.notes.append(f"compaction skipped: {reclaimer.writer.why}")
        return
    result.methods_run.append("compact")
    try:
        reclaimer.compact(result)
    except OSError as exc:
        result.notes.append(f"compaction failed: {exc.strerror or exc}")


def reclaim_paths_and_record(reclaimer: Reclaimer, store: Any, request: ReclaimRequest,
                             stop: threading.Event | None = None, reader: Reader | None = None) -> PathReclaimResult:
    """As :func:`monitor.reclaim.record.reclaim_and_record` for ``request.paths``: run, then record the
    result as a reclaim event (not for dry runs)."""
    result = reclaim_paths(reclaimer, request.paths, request.dry_run, None, stop, trigger=request.trigger,
                           settle=request.settle, reader=reader)
    if store is not None and not request.dry_run:
        where = ", ".join(t.to_json()["path"] for t in result.paths)
        store.add_event("reclaim", f"{describe_reclaim(result)} (paths: {where})", rule=request.trigger,
                        data=result.to_json(), status="error" if result.error else "ok")
    return result


class _Dropper:
    def __init__(self, reader: Reader, dry_run: bool, progress: Progress, stop: threading.Event):
        self.reader, self.dry_run, self.progress, self.stop = reader, dry_run, progress, stop
        self._next = 0.0
        self._euid = euid()
        # the real mount table (the paths are this machine's), through the one /proc seam
        self.fstypes = device_fstypes(LocalFiles().read(["proc/self/mountinfo"])["proc/self/mountinfo"])

    def drop_tree(self, root: str) -> TreeDrop:
        tree = TreeDrop(root)
        walker = Walker(depth=0, stop=self.stop, pseudo=lambda dev: self.fstypes.get(dev) in PSEUDO_FS)
        walker.walk(root, lambda fd, st, where: self._file(tree, fd, st, where))
        tree.files = walker.stats.files
        tree.skipped = dict(walker.stats.skipped)
        return tree

    def _file(self, tree: TreeDrop, fd: int, st: os.stat_result, where: FileAt) -> None:
        size = st.st_size
        try:
            if self.reader.name == "mincore" and not can_inspect(st, os.access(
                    where.name, os.W_OK, dir_fd=where.dir_fd, follow_symlinks=False), self._euid):
                raise PermissionError("mincore would report only our own mappings")
            before = self.reader.read(fd, size)
        except PermissionError:
            before = None  # not ours to inspect: drop it anyway, unmeasured
        except OSError:
            tree.errors += 1
            return
        if before is not None and before.cached == 0:
            return
        tree.dropped += 1
        tree.unmeasured += before is None
        tree.cached_before += before.cached if before else 0
        if self.dry_run:
            tree.cached_after += before.cached if before else 0
            return
        try:
            drop_file_cache(fd, before.dirty if before else None)
            tree.cached_after += self.reader.read(fd, size).cached if before else 0
        except OSError:
            tree.errors += 1
        self._maybe_progress(tree)

    def _maybe_progress(self, tree: TreeDrop) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + PROGRESS_EVERY
            self.progress(f"giving back {display(tree.root)}: {tree.dropped:,} files, "
                          f"{format_bytes(tree.cached_before - tree.cached_after)} so far")
