"""``vmmemctl cache``: what is in the page cache, by directory, and how much of it a scan explains.

The walk is :mod:`monitor.pagecache.treewalk` (no symlinks, nothing read), the
per-file residency :mod:`monitor.pagecache.residency` (cachestat, else mincore). The
page-cache figure it is compared with is the guest probe's (``Buffers +
Cached - Shmem``, through the one /proc seam), so "share" means the same
thing here as on the dashboard. Files on tmpfs are shmem: counted apart,
since no cache drop frees them.

What a scan cannot find, and says so: block-device buffers (ext4's
directories and metadata live there, not in any file), files on other
filesystems or outside the trees, deleted files that are still open, and the
files the kernel will not report to an unprivileged caller.
"""

from __future__ import annotations

import heapq
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from monitor.pagecache.residency import Reader, Residency, can_inspect, choose_reader
from monitor.kernel import portable
from monitor.pagecache.treewalk import SKIP_WORDS, FileAt, Walker, WalkStats, display, resolve_roots
from monitor.units import format_bytes

SHMEM_FS = frozenset({"tmpfs", "devtmpfs", "shmem"})
# Filesystems whose files are not page cache (and where opening a file can do something): never walked.
PSEUDO_FS = frozenset({"proc", "sysfs", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs", "devpts",
                       "mqueue", "bpf", "pstore", "configfs", "fusectl", "binfmt_misc", "autofs", "efivarfs",
                       "rpc_pipefs", "nsfs", "selinuxfs"})


@dataclass
class Totals:
    cached: int = 0
    dirty: int = 0
    writeback: int = 0
    evicted: int = 0
    recently_evicted: int = 0
    files: int = 0
    size: int = 0

    def add(self, r: Residency, size: int) -> None:
        self.cached += r.cached
        self.dirty += r.dirty or 0
        self.writeback += r.writeback or 0
        self.evicted += r.evicted or 0
        self.recently_evicted += r.recently_evicted or 0
        self.files += 1
        self.size += size

    def to_json(self, detailed: bool = True) -> dict[str, int | None]:
        """``detailed``: dirty/writeback/evicted are known (cachestat); mincore cannot tell: null."""
        known = (lambda n: n) if detailed else (lambda n: None)
        return {"cached_bytes": self.cached, "dirty_bytes": known(self.dirty),
                "writeback_bytes": known(self.writeback), "evicted_bytes": known(self.evicted),
                "recently_evicted_bytes": known(self.recently_evicted), "files": self.files,
                "size_bytes": self.size}


@dataclass
class ScanResult:
    roots: list[str]
    depth: int
    reader: str  # cachestat | mincore
    dirs: dict[str, Totals] = field(default_factory=dict)  # roll-up key (a real path) -> totals
    top_files: list[tuple[int, str]] = field(default_factory=list)  # (cached, path), largest first
    total: Totals = field(default_factory=Totals)
    shmem: int = 0  # cached bytes found on tmpfs: inside the scan's total, outside the page-cache figure
    stats: WalkStats = field(default_factory=WalkStats)
    page_cache: int | None = None  # the guest probe's figure, read when the scan ended
    elapsed: float = 0.0

    @property
    def found(self) -> int:
        """What the scan explains of the page-cache figure (shmem excluded, as the figure excludes it)."""
        return self.total.cached - self.shmem

    @property
    def share(self) -> float | None:
        return self.found / self.page_cache if self.page_cache else None

    @property
    def not_found(self) -> int | None:
        return None if self.page_cache is None else max(0, self.page_cache - self.found)

    def top_dirs(self, n: int) -> list[tuple[str, Totals]]:
        ranked = sorted(self.dirs.items(), key=lambda kv: (-kv[1].cached, kv[0]))
        return [kv for kv in ranked if kv[1].cached > 0][:n]


class Scan:
    """One scan of some trees; :meth:`run` may be stopped (``stop``) and keeps what it found."""

    def __init__(self, paths: list[str], depth: int = 2, top: int = 20, one_file_system: bool = False,
                 reader: Reader | None = None, stop: threading.Event | None = None,
                 progress: Callable[[WalkStats, int], None] | None = None,
                 fstypes: dict[int, str] | None = None):
        self.roots = resolve_roots(paths)
        self.reader = reader or choose_reader()
        self.top = top
        self.fstypes = fstypes or {}
        self.user_progress = progress
        self.walker = Walker(depth, one_file_system, stop, self._progress,
                             pseudo=lambda dev: self.fstypes.get(dev) in PSEUDO_FS)
        self.result = ScanResult(self.roots, depth, self.reader.name, stats=self.walker.stats)
        self._heap: list[tuple[int, str]] = []
        self._euid = portable.euid()

    def run(self) -> ScanResult:
        for root in self.roots:
            if self.walker.stop.is_set():
                break
            self.walker.walk(root, self._visit)
        self.result.top_files = sorted(self._heap, reverse=True)
        self.result.elapsed = self.walker.stats.elapsed
        return self.result

    def _visit(self, fd: int, st: os.stat_result, where: FileAt) -> None:
        if self.reader.name == "mincore" and not can_inspect(st, self._writable(where), self._euid):
            self.walker.stats.skip("not-inspectable", where.path)  # mincore would say 0, not "unknown"
            return
        try:
            r = self.reader.read(fd, st.st_size)
        except PermissionError:
            self.walker.stats.skip("not-inspectable", where.path)
            return
        except OSError:
            self.walker.stats.skip("unreadable-file", where.path)
            return
        totals = self.result.dirs.get(where.key)
        if totals is None:
            totals = self.result.dirs[where.key] = Totals()
        totals.add(r, st.st_size)
        self.result.total.add(r, st.st_size)
        if self.fstypes.get(st.st_dev) in SHMEM_FS:
            self.result.shmem += r.cached
        if r.cached and (len(self._heap) < self.top or r.cached > self._heap[0][0]):
            item = (r.cached, where.path)
            (heapq.heapreplace if len(self._heap) >= self.top else heapq.heappush)(self._heap, item)

    def _writable(self, where: FileAt) -> bool:
        try:
            return os.access(where.name, os.W_OK, dir_fd=where.dir_fd, follow_symlinks=False)
        except OSError:
            return False

    def _progress(self, stats: WalkStats) -> None:
        if self.user_progress is not None:
            self.user_progress(stats, self.result.total.cached)


def scan_trees(files: Any, paths: list[str], **options: Any) -> ScanResult:
    """Scan ``paths`` (see :class:`Scan` for ``options``), then read the page-cache figure to compare.

    ``files`` is the one /proc seam (:class:`monitor.kernel.procfs.LocalFiles`): the figure and the
    filesystem types come from it, so the scan and the dashboard mean the same page cache.
    """
    from monitor.probes.guest import GuestProbe

    mountinfo = files.read(["proc/self/mountinfo"]).get("proc/self/mountinfo")
    scan = Scan(paths, fstypes=device_fstypes(mountinfo), **options)
    result = scan.run()
    result.page_cache = GuestProbe(files).sample().page_cache
    return result


def device_fstypes(mountinfo: str | None) -> dict[int, str]:
    """st_dev -> filesystem type, from /proc/self/mountinfo:

        36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    """
    types: dict[int, str] = {}
    for line in (mountinfo or "").splitlines():
        left, sep, right = line.partition(" - ")
        parts, rest = left.split(), right.split()
        if not sep or len(parts) < 3 or not rest or ":" not in parts[2]:
            continue
        major, _, minor = parts[2].partition(":")
        if major.isdigit() and minor.isdigit():
            types[os.makedev(int(major), int(minor))] = rest[0]
    return types


def default_paths(euid: int | None = None) -> list[str]:
    """The user's home; as root also /var and /tmp (where package caches and builds pile up)."""
    euid = portable.euid() if euid is None else euid
    paths = [os.path.expanduser("~")]
    return paths + (["/var", "/tmp"] if euid == 0 else [])


# ------------------------------------------------------------------ the report


def progress_line(stats: WalkStats, cached: int) -> str:
    return f"scanned {stats.files:,} files, {format_bytes(cached)} cached, {stats.elapsed:.1f}s"


def _bar(fraction: float, width: int = 12) -> str:
    cells = max(0.0, min(1.0, fraction)) * width
    full = int(cells)
    return "█" * full + ("▌" if cells - full >= 0.5 else "")


def _pct(part: int, whole: int | None) -> str:
    return f"{100 * part / whole:5.1f} %" if whole else "    - "


def scan_text(result: ScanResult, top: int) -> str:
    s = result.stats
    lines = [f"scanned {s.files:,} files in {s.dirs:,} directories under {', '.join(map(display, result.roots))} "
             f"in {result.elapsed:.1f}s ({result.reader})" + ("  INTERRUPTED: partial" if s.interrupted else "")]
    if result.page_cache is not None:
        lines.append(f"page cache {format_bytes(result.page_cache)}; these trees hold {format_bytes(result.found)} "
                     f"of it ({_pct(result.found, result.page_cache).strip()})")
    else:
        lines.append(f"these trees hold {format_bytes(result.found)} of page cache (the total is unknown)")
    lines += ["", f"  {'cached':>9}  {'share':>7}  {'dirty':>9}  {'files':>8}  directory"]
    biggest = max((t.cached for _, t in result.top_dirs(1)), default=0)
    for path, t in result.top_dirs(top):
        dirty = format_bytes(t.dirty) if result.reader == "cachestat" else "-"
        lines.append(f"  {format_bytes(t.cached):>9}  {_pct(t.cached, result.page_cache):>7}  "
                     f"{dirty:>9}  {t.files:>8,}  {display(path)}  {_bar(t.cached / biggest)}")
    if not result.top_dirs(1):
        lines.append("  (nothing of these trees is in the page cache)")
    if result.top_files:
        lines += ["", "largest cached files:"]
        lines += [f"  {format_bytes(c):>9}  {display(p)}" for c, p in result.top_files[:min(top, 5)]]
    lines.append("")
    lines += found_words(result)
    return "\n".join(lines)


def found_words(result: ScanResult) -> list[str]:
    words = []
    if result.shmem:
        words.append(f"on tmpfs (shmem, outside the page-cache figure; no cache drop frees it): "
                     f"{format_bytes(result.shmem)}")
    if result.total.recently_evicted:
        words.append(f"recently evicted from these trees (would be read back from disk): "
                     f"{format_bytes(result.total.recently_evicted)}")
    if result.not_found is not None:
        words.append(f"not found: {format_bytes(result.not_found)} "
                     f"({_pct(result.not_found, result.page_cache).strip()}) of the page cache is elsewhere: "
                     "block-device buffers (directories, metadata), other filesystems, files outside these "
                     "trees, deleted files still open")
    if result.stats.skipped:
        words.append("skipped: " + "; ".join(f"{n:,} {SKIP_WORDS.get(k, k)}"
                                             for k, n in sorted(result.stats.skipped.items())))
    return words


def scan_json(result: ScanResult, top: int) -> dict[str, Any]:
    s = result.stats
    detailed = result.reader == "cachestat"
    return {
        "roots": [display(r) for r in result.roots], "depth": result.depth, "reader": result.reader,
        "elapsed_s": round(result.elapsed, 3), "interrupted": s.interrupted, "dirs_scanned": s.dirs,
        "page_cache_bytes": result.page_cache, "found_bytes": result.found,
        "found_share": None if result.share is None else round(result.share, 4),
        "not_found_bytes": result.not_found, "shmem_bytes": result.shmem,
        "total": result.total.to_json(detailed),
        "dirs": [{"path": display(p),
                  "share": None if not result.page_cache else round(t.cached / result.page_cache, 4),
                  **t.to_json(detailed)} for p, t in result.top_dirs(top)],
        "top_files": [{"path": display(p), "cached_bytes": c} for c, p in result.top_files[:top]],
        "skipped": dict(s.skipped), "skipped_examples": s.examples,
    }
