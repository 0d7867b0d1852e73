"""A walk over the regular files of a tree that a hostile tree cannot lead astray.

Shared by ``vmmemctl cache`` (what is cached) and ``reclaim --path`` (give it
back). Every directory is opened relative to its parent's descriptor with
``O_NOFOLLOW``, every file with ``O_RDONLY|O_NOATIME|O_NOFOLLOW|O_NONBLOCK``,
so no symlink is followed, not even one swapped in during the walk, a FIFO
never blocks, and nothing outside the tree is ever opened. Files are only
opened and ``fstat``-ed, never read. What the walk cannot use is counted by
reason and skipped: symlinks, FIFOs/devices/sockets, unreadable files and
directories, entries deleted meanwhile, other filesystems
(``one_file_system``), directory loops through bind mounts, trees deeper
than :data:`MAX_DEPTH`.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Protocol

from monitor.kernel.portable import open_flags

MAX_DEPTH = 256  # one open descriptor per level; far below RLIMIT_NOFILE's usual 1024
EXAMPLES = 3  # paths kept per skip reason, for the report
PROGRESS_EVERY = 0.1  # seconds between progress calls
# open_flags leaves out what the platform lacks: this module must import on Windows (issue 27)
FILE_FLAGS = os.O_RDONLY | open_flags("O_NOFOLLOW", "O_NONBLOCK", "O_CLOEXEC")
DIR_FLAGS = os.O_RDONLY | open_flags("O_DIRECTORY", "O_NOFOLLOW", "O_NONBLOCK", "O_CLOEXEC")
NOATIME = getattr(os, "O_NOATIME", 0)

SKIP_WORDS = {
    "symlink": "symlinks (not followed)",
    "special": "FIFOs, devices and sockets",
    "unreadable-file": "files you cannot open",
    "unreadable-dir": "directories you cannot read",
    "vanished": "entries deleted during the walk",
    "other-fs": "directories on other filesystems (--one-file-system)",
    "pseudo-fs": "directories on filesystems that hold no page cache (proc, sysfs, ...)",
    "loop": "directory loops (bind mounts)",
    "too-deep": f"directories deeper than {MAX_DEPTH} levels",
    "hardlink": "extra hard links (counted once)",
    "not-inspectable": "files whose cache the kernel will not report to you (not yours, not writable)",
}


class Visitor(Protocol):
    def __call__(self, fd: int, st: os.stat_result, walk: FileAt) -> None: ...


@dataclass(frozen=True)
class FileAt:
    """Where a visited file is: its directory's path, its name, the roll-up key of that directory."""

    dir_fd: int
    directory: str
    name: str
    key: str

    @property
    def path(self) -> str:
        return f"{self.directory.rstrip('/')}/{self.name}"


@dataclass
class WalkStats:
    files: int = 0  # regular files visited
    dirs: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    interrupted: bool = False
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def skip(self, reason: str, path: str) -> None:
        self.skipped[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < EXAMPLES:
            shown.append(display(path))


def display(path: str) -> str:
    """A path as a person can read it: bytes that are not UTF-8 shown as \\xNN (never an exception)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


class Walker:
    """Walks trees, calling ``visit(fd, stat, where)`` for each regular file, with the file open."""

    def __init__(self, depth: int = 3, one_file_system: bool = False, stop: threading.Event | None = None,
                 progress: Callable[[WalkStats], None] | None = None,
                 pseudo: Callable[[int], bool] | None = None):
        self.depth = depth  # roll-up depth: keys are directories at most this far below a root
        self.one_file_system = one_file_system
        self.pseudo = pseudo or (lambda dev: False)  # st_dev of /proc, /sys...: not walked (opens there can act)
        self.stop = stop or threading.Event()
        self.progress = progress
        self.stats = WalkStats()
        self._seen_links: set[tuple[int, int]] = set()
        self._noatime = NOATIME
        self._next_progress = 0.0

    def walk(self, root: str, visit: Visitor) -> None:
        """One tree (a directory, or a single file). ``root`` is used as given: resolve it first."""
        try:
            fd = os.open(root, DIR_FLAGS)
        except NotADirectoryError:
            parent, name = os.path.split(root.rstrip("/")) if root != "/" else ("/", "")
            self._file_in(parent or ".", name, parent or ".", visit)
            return
        except OSError as exc:
            self.stats.skip(_reason(exc, "unreadable-dir"), root)
            return
        try:
            st = os.fstat(fd)
            if self.pseudo(st.st_dev):
                self.stats.skip("pseudo-fs", root)
                return
            self._dir(fd, root, root, 0, st.st_dev, {(st.st_dev, st.st_ino)}, visit)
        finally:
            os.close(fd)

    def _file_in(self, parent: str, name: str, key: str, visit: Visitor) -> None:
        try:
            dfd = os.open(parent, DIR_FLAGS)
        except OSError as exc:
            self.stats.skip(_reason(exc, "unreadable-dir"), parent)
            return
        try:
            self._file(dfd, parent, name, key, visit)
        finally:
            os.close(dfd)

    def _dir(self, dfd: int, path: str, key: str, level: int, dev: int, ancestors: set[tuple[int, int]],
             visit: Visitor) -> None:
        self.stats.dirs += 1
        try:
            with os.scandir(dfd) as it:
                entries = list(it)
        except OSError as exc:
            self.stats.skip(_reason(exc, "unreadable-dir"), path)
            return
        subdirs = []
        for entry in entries:
            if self.stop.is_set():
                self.stats.interrupted = True
                return
            kind = _kind(entry)
            if kind == "file":
                self._file(dfd, path, entry.name, key, visit)
            elif kind == "dir":
                subdirs.append(entry.name)
            else:
                self.stats.skip(kind, f"{path.rstrip('/')}/{entry.name}")
        for name in subdirs:
            if self.stop.is_set():
                self.stats.interrupted = True
                return
            child = f"{path.rstrip('/')}/{name}"
            self._descend(dfd, child, name, child if level + 1 <= self.depth else key, level + 1, dev,
                          ancestors, visit)

    def _descend(self, dfd: int, path: str, name: str, key: str, level: int, dev: int,
                 ancestors: set[tuple[int, int]], visit: Visitor) -> None:
        if level > MAX_DEPTH:
            self.stats.skip("too-deep", path)
            return
        try:
            fd = os.open(name, DIR_FLAGS, dir_fd=dfd)
        except OSError as exc:
            self.stats.skip(_reason(exc, "unreadable-dir"), path)
            return
        try:
            st = os.fstat(fd)
            ident = (st.st_dev, st.st_ino)
            if self.one_file_system and st.st_dev != dev:
                self.stats.skip("other-fs", path)
            elif st.st_dev != dev and self.pseudo(st.st_dev):
                self.stats.skip("pseudo-fs", path)
            elif ident in ancestors:
                self.stats.skip("loop", path)
            else:
                ancestors.add(ident)
                self._dir(fd, path, key, level, dev, ancestors, visit)
                ancestors.discard(ident)
        finally:
            os.close(fd)

    def _file(self, dfd: int, directory: str, name: str, key: str, visit: Visitor) -> None:
        fd = self._open(dfd, directory, name)
        if fd is None:
            return
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):  # replaced by a FIFO or a device after the listing
                self.stats.skip("special", f"{directory.rstrip('/')}/{name}")
                return
            if st.st_nlink > 1:
                ident = (st.st_dev, st.st_ino)
                if ident in self._seen_links:
                    self.stats.skipped["hardlink"] += 1
                    return
                self._seen_links.add(ident)
            self.stats.files += 1
            visit(fd, st, FileAt(dfd, directory, name, key))
        finally:
            os.close(fd)
        self._maybe_progress()

    def _open(self, dfd: int, directory: str, name: str) -> int | None:
        try:
            return os.open(name, FILE_FLAGS | self._noatime, dir_fd=dfd)
        except PermissionError as exc:
            # O_NOATIME is allowed only on our own files (or with CAP_FOWNER): EPERM on others'.
            if exc.errno == errno.EPERM and self._noatime:
                try:
                    return os.open(name, FILE_FLAGS, dir_fd=dfd)
                except OSError as again:
                    exc = again  # type: ignore[assignment]
            self.stats.skip(_reason(exc, "unreadable-file"), f"{directory.rstrip('/')}/{name}")
        except OSError as exc:
            self.stats.skip(_reason(exc, "unreadable-file"), f"{directory.rstrip('/')}/{name}")
        return None

    def _maybe_progress(self) -> None:
        if self.progress is None or self.stats.files & 63:
            return
        now = time.monotonic()
        if now >= self._next_progress:
            self._next_progress = now + PROGRESS_EVERY
            self.progress(self.stats)


def _kind(entry: os.DirEntry) -> str:
    """file | dir | symlink | special | vanished, from the directory's d_type (a stat only if unknown)."""
    try:
        if entry.is_symlink():
            return "symlink"
        if entry.is_dir(follow_symlinks=False):
            return "dir"
        if entry.is_file(follow_symlinks=False):
            return "file"
        return "special"
    except FileNotFoundError:
        return "vanished"
    except OSError:
        return "unreadable-file"


def _reason(exc: OSError, default: str) -> str:
    if exc.errno == errno.ENOENT:
        return "vanished"
    if exc.errno == errno.ELOOP:
        return "symlink"  # swapped for a symlink after the listing: O_NOFOLLOW refused it
    if exc.errno in (errno.ENXIO, errno.ENODEV, errno.EOPNOTSUPP):
        return "special"
    if exc.errno == errno.ENOTDIR and default == "unreadable-dir":
        return "vanished"  # replaced by a file meanwhile
    return default


def resolve_roots(paths: list[str]) -> list[str]:
    """Absolute real paths, each once, none inside another (a file would be counted twice)."""
    real = sorted({os.path.realpath(os.path.expanduser(p)) for p in paths})
    kept: list[str] = []
    for path in real:
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(path)
    return kept
