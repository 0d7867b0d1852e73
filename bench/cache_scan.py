"""`vmmemctl cache` on a tree of 200,000 files: how long a scan takes, and what it costs the page cache.

    sudo .venv/bin/python bench/cache_scan.py [--files 200000] [--rounds 3]

Builds (once) a tree under bench/out/tmp/cache-tree: 200 directories of 1,000
files of 1-8 KiB (a node_modules or a build tree), and reads a tenth of them
back so there is cache to find. Then, per reader (cachestat, mincore),
interleaved, ``--rounds`` times each:

    warm  the dentries and inodes are cached (a second scan)
    cold  after `echo 2 > drop_caches` (dentries and inodes only: the page cache, this machine's
          and the other engineers', is left alone), so the walk reads its directories and inodes again

and records the wall time of the whole command, its peak RSS, and the
scan's own footprint: the change of `Buffers + Cached` (page cache: a scan
must not fill it) and of `SReclaimable` (the dentries and inodes the walk
brings in) over the run. Results: bench/results/cache_scan.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from common import BENCH, REPO, drop_caches, fmt_bytes, loadavg, machine, machine_markdown, median, \
    meminfo_bytes, now_iso, read_text, write_results

TREE = BENCH / "out" / "tmp" / "cache-tree"
PER_DIR = 1000


def meminfo() -> dict[str, int]:
    return meminfo_bytes(read_text("/proc/meminfo") or "")


def build_tree(files: int) -> None:
    marker = TREE / f".built-{files}"
    if marker.exists():
        return
    subprocess.run(["rm", "-rf", str(TREE)], check=True)
    for i in range(files):
        d = TREE / f"d{i // PER_DIR:04}"
        if i % PER_DIR == 0:
            d.mkdir(parents=True)
        with open(d / f"f{i % PER_DIR:04}", "wb") as fh:
            fh.write(os.urandom(1024 * (1 + i % 8)))
    os.sync()
    marker.write_text("")


def warm_a_tenth(files: int) -> None:
    """Drop the whole tree's cache (fadvise, this tree only), then read every tenth file back."""
    for i in range(files):
        fd = os.open(TREE / f"d{i // PER_DIR:04}" / f"f{i % PER_DIR:04}", os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
    for i in range(0, files, 10):
        with open(TREE / f"d{i // PER_DIR:04}" / f"f{i % PER_DIR:04}", "rb") as fh:
            fh.read()


def one_run(reader: str, cold: bool) -> dict:
    if cold:
        drop_caches("2")
    before = meminfo()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "monitor", "cache", str(TREE), "--json", "--reader", reader],
                          capture_output=True, text=True, cwd=REPO, env={**os.environ, "VMMEMCTL_CONFIG": ""})
    wall = time.monotonic() - t0
    after = meminfo()
    if done.returncode != 0:
        raise SystemExit(f"cache failed: {done.stderr.strip()}")
    data = json.loads(done.stdout)
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    cache = lambda m: m["Buffers"] + m["Cached"]  # noqa: E731
    return {"reader": reader, "cold": cold, "wall_s": round(wall, 3), "scan_s": data["elapsed_s"],
            "files": data["total"]["files"], "found_bytes": data["found_bytes"],
            "page_cache_delta_bytes": cache(after) - cache(before),
            "slab_reclaimable_delta_bytes": after["SReclaimable"] - before["SReclaimable"],
            "peak_rss_bytes": max(rss, usage.ru_maxrss * 1024)}


def report(runs: list[dict], m: dict, load: tuple[str, str], files: int) -> str:
    lines = ["# `vmmemctl cache` on a tree of %s files\n" % f"{files:,}", f"Measured {now_iso()}. " +
             machine_markdown(m, *load), "",
             "| reader | metadata | wall (median) | of which scanning | page cache change | slab change | found "
             "| peak RSS |",
             "|---|---|---|---|---|---|---|---|"]
    for reader in ("cachestat", "mincore"):
        for cold in (False, True):
            rs = [r for r in runs if r["reader"] == reader and r["cold"] == cold]
            if not rs:
                continue
            lines.append(f"| {reader} | {'cold (drop_caches 2)' if cold else 'warm'} | "
                         f"{median([r['wall_s'] for r in rs]):.2f} s | {median([r['scan_s'] for r in rs]):.2f} s | "
                         f"{fmt_bytes(median([r['page_cache_delta_bytes'] for r in rs]))} | "
                         f"{fmt_bytes(median([r['slab_reclaimable_delta_bytes'] for r in rs]))} | "
                         f"{fmt_bytes(median([r['found_bytes'] for r in rs]))} | "
                         f"{fmt_bytes(max(r['peak_rss_bytes'] for r in rs))} |")
    lines += ["", f"{len(runs)} runs, interleaved. Page cache change is `Buffers + Cached` after minus before the "
              "whole command (other engineers' work moves it too); slab change is `SReclaimable` (dentries, "
              "inodes). Found is what the scan reports of the tree; a tenth of the tree (every tenth file) was read "
              "into the cache before the runs, so a scan that read files would show it growing.", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (drop_caches 2 for the cold runs)")
    load_before = loadavg()
    t0 = time.monotonic()
    build_tree(args.files)
    print(f"tree ready in {time.monotonic() - t0:.1f}s", file=sys.stderr)
    warm_a_tenth(args.files)
    runs = []
    for _ in range(args.rounds):
        for reader in ("cachestat", "mincore"):
            for cold in (True, False):
                runs.append(one_run(reader, cold))
                print(json.dumps(runs[-1]), file=sys.stderr)
    m = machine()
    data = {"machine": m, "files": args.files, "runs": runs, "load": [load_before, loadavg()], "when": now_iso()}
    js, md = write_results("cache_scan", data, report(runs, m, (load_before, loadavg()), args.files))
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
