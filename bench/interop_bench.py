"""What one host sample costs through interop: one long-lived PowerShell vs a spawn per sample.

    .venv/bin/python bench/interop_bench.py [--n 50]

There is no Windows here: both paths run the fake powershell.exe from
tests/fakebin (a Python script, so a spawn costs a Python start-up, ~20-40 ms,
where a real powershell.exe costs ~0.5 s). What the bench shows is the shape:
the persistent session pays the spawn once and then a pipe round trip per
query; spawn-per-sample pays it every time. Results: bench/results/interop.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAKEBIN = REPO / "tests" / "fakebin"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50)
    args = ap.parse_args()
    os.environ["PATH"] = f"{FAKEBIN}{os.pathsep}{os.environ['PATH']}"
    os.environ["FAKE_WINDOWS_MODE"] = "normal"
    from monitor.probes.interop import PS_QUERY, PowerShellProbe, find_windows_tool

    exe = find_windows_tool("powershell.exe")
    probe = PowerShellProbe(exe, timeout=10)
    persistent = []
    for _ in range(args.n):
        t = time.perf_counter()
        assert probe.sample(None).bytes is not None
        persistent.append(time.perf_counter() - t)
    probe.close()

    spawned = []
    query = PS_QUERY.replace("{total}", "").replace("{nonce}", "0123456789abcdef")
    for _ in range(args.n):
        t = time.perf_counter()
        subprocess.run([exe, "-NoLogo", "-NoProfile", "-NonInteractive", "-Command", "-"], input=query.encode(),
                       capture_output=True, check=True)
        spawned.append(time.perf_counter() - t)

    result = {
        "n": args.n,
        "persistent_first_ms": round(persistent[0] * 1000, 2),
        "persistent_median_ms": round(statistics.median(persistent[1:]) * 1000, 3),
        "spawn_median_ms": round(statistics.median(spawned) * 1000, 2),
        "note": "fake powershell.exe (a Python script); a real powershell.exe spawn costs ~0.5 s",
    }
    out = REPO / "bench" / "results" / "interop.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
