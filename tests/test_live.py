"""The guest probe against this machine's real kernel (root needed for drop_caches)."""

from __future__ import annotations

import os
import subprocess

import pytest

from monitor.probes.guest import GuestProbe
from monitor.kernel.procfs import LocalFiles

MiB = 1024**2
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="dropping caches needs root")


def free_b() -> dict[str, int]:
    """`free -b` (procps): total used free shared buff/cache available."""
    lines = subprocess.run(["free", "-b"], capture_output=True, text=True, check=True).stdout.splitlines()
    header = lines[0].split()
    values = lines[1].split()[1:]
    return dict(zip(header, map(int, values)))


def test_guest_numbers_agree_with_free():
    probe = GuestProbe(LocalFiles("/proc"))
    s = probe.sample()
    f = free_b()
    assert s.total == f["total"]
    tolerance = 64 * MiB  # the two reads are a few ms apart on a live machine
    assert abs(s.free - f["free"]) < tolerance
    assert abs(s.available - f["available"]) < tolerance
    assert abs(s.shmem - f["shared"]) < tolerance
    # free's buff/cache = Buffers + Cached + SReclaimable; ours splits shmem out of Cached
    assert abs((s.page_cache + s.shmem + s.slab_reclaimable) - f["buff/cache"]) < tolerance
    assert s.warnings == ()


def drop_caches(level: int = 1) -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as fh:
        fh.write(str(level))


@pytest.mark.slow
@needs_root
def test_reclaimable_estimate_matches_a_real_drop(tmp_path):
    """Fill the cache with a file, estimate what a drop frees, drop, compare (within 15%)."""
    probe = GuestProbe(LocalFiles("/proc"))
    drop_caches()  # start from a small cache, so the file dominates
    path = tmp_path / "fill.bin"
    chunk = os.urandom(MiB)
    with open(path, "wb") as fh:
        for _ in range(400):
            fh.write(chunk)
    with open(path, "rb") as fh:
        while fh.read(8 * MiB):
            pass
    os.sync()
    before = probe.sample()
    assert before.page_cache > 380 * MiB, "the file should be in the page cache"
    drop_caches()
    after = probe.sample()
    freed = before.page_cache - after.page_cache
    estimate = before.reclaimable
    assert freed > 380 * MiB
    print(f"estimate {estimate / MiB:.0f} MiB, freed {freed / MiB:.0f} MiB")
    assert abs(estimate - freed) <= 0.15 * freed, (estimate, freed)
    assert after.drop_pagecache > before.drop_pagecache  # vmstat counted our drop
