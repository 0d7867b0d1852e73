"""The workload of bench/reclaim_policies.py: files on the real disk, a cold reader and a hot reader.

    python bench/workload.py prepare --data DIR --cold-gib 8 --hot-mib 512
    python bench/workload.py cold --data DIR                  # read every cold file once (a build, a clone)
    python bench/workload.py hot --data DIR --seconds 150     # re-read the hot set (an editor and its LSP)

Each reader prints one JSON object on stdout when it ends. The hot reader
asks cachestat(2), before reading each file, how much of it is not in the
page cache: those bytes come from disk on that pass, so after the first pass
they are exactly what reclaims (or DAMON) cost the working set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MiB, cachestat  # noqa: E402

CHUNK = 1 * MiB
MANIFEST = "manifest.json"


def files(data: Path, kind: str) -> list[Path]:
    return sorted((data / kind).glob(f"{kind}-*.bin"))


def prepare(data: Path, cold_gib: float, cold_file_mib: int, hot_mib: int, hot_file_mib: int) -> dict:
    """Write the files once (incompressible bytes, fsynced); reuse them when the sizes match."""
    want = {"cold_bytes": int(cold_gib * 1024) * MiB, "cold_file_bytes": cold_file_mib * MiB,
            "hot_bytes": hot_mib * MiB, "hot_file_bytes": hot_file_mib * MiB}
    manifest = data / MANIFEST
    if manifest.exists() and json.loads(manifest.read_text()) == want and \
            len(files(data, "cold")) == want["cold_bytes"] // want["cold_file_bytes"] and \
            len(files(data, "hot")) == want["hot_bytes"] // want["hot_file_bytes"]:
        return want
    manifest.unlink(missing_ok=True)
    block = os.urandom(16 * MiB)
    for kind in ("cold", "hot"):
        (data / kind).mkdir(parents=True, exist_ok=True)
        for old in files(data, kind):
            old.unlink()
        size = want[f"{kind}_file_bytes"]
        for i in range(want[f"{kind}_bytes"] // size):
            path = data / kind / f"{kind}-{i:04d}.bin"
            with open(path, "wb") as fh:
                fh.write(i.to_bytes(8, "little"))  # no two files alike, in case something below dedups
                left = size - 8
                while left > 0:
                    n = min(left, len(block))
                    fh.write(block[:n])
                    left -= n
                fh.flush()
                os.fsync(fh.fileno())
    manifest.write_text(json.dumps(want))
    return want


def read_whole(path: Path, buf: bytearray) -> int:
    view = memoryview(buf)
    total = 0
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(view):
            total += n
    return total


def cold(data: Path) -> dict:
    buf = bytearray(CHUNK)
    start = time.time()
    total = sum(read_whole(p, buf) for p in files(data, "cold"))
    end = time.time()
    return {"start": start, "end": end, "bytes": total, "seconds": end - start}


def spin(seconds: float) -> None:
    """Light CPU work (an editor's and a language server's own computing), not I/O."""
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += sum(range(200))


def hot(data: Path, seconds: float, every: float, cpu_ms_per_s: float) -> dict:
    paths = files(data, "hot")
    sizes = [p.stat().st_size for p in paths]
    buf = bytearray(CHUNK)
    passes = []
    start = time.time()
    next_pass = start
    while time.time() - start < seconds:
        t0 = time.time()
        missing = 0
        for path, size in zip(paths, sizes):
            fd = os.open(path, os.O_RDONLY)
            try:
                missing += max(0, size - cachestat(fd).cached)
            finally:
                os.close(fd)
            read_whole(path, buf)
        t1 = time.time()
        passes.append({"t": t0, "read_s": round(t1 - t0, 4), "missing_bytes": missing})
        spin(every * cpu_ms_per_s / 1000)
        next_pass += every
        time.sleep(max(0.0, next_pass - time.time()))
    end = time.time()
    return {"start": start, "end": end, "bytes": sum(sizes), "every_s": every, "cpu_ms_per_s": cpu_ms_per_s,
            "passes": passes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["prepare", "cold", "hot"])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--cold-gib", type=float, default=8.0)
    parser.add_argument("--cold-file-mib", type=int, default=128)
    parser.add_argument("--hot-mib", type=int, default=512)
    parser.add_argument("--hot-file-mib", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=150.0, help="hot: how long")
    parser.add_argument("--every", type=float, default=2.0, help="hot: seconds between passes over the working set")
    parser.add_argument("--cpu-ms-per-s", type=float, default=20.0, help="hot: light CPU work per second")
    args = parser.parse_args(argv)
    if args.role == "prepare":
        out = prepare(args.data, args.cold_gib, args.cold_file_mib, args.hot_mib, args.hot_file_mib)
    elif args.role == "cold":
        out = cold(args.data)
    else:
        out = hot(args.data, args.seconds, args.every, args.cpu_ms_per_s)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
