"""What one host sample costs through interop: one long-lived PowerShell vs a spawn per sample.

    .venv/bin/python bench/interop_bench.py [--n 50]

There is no Windows here: both paths run the fake powershell.exe from
tests/fakebin (a Python script, so a spawn costs a Python start-up, ~20-40 ms,
where a real powershell.exe costs ~0.5 s). What the bench shows is the shape:
the persistent session pays the spawn once and then a pipe round trip per
query; spawn-per-sample pays it every time. Results: bench/results/interop.json.

Issue 27 (item 4) added Windows' own available memory to every host sample. The
bench checks it stays one round trip: it counts the lines written to the
session per sample (each line is one query, answered up to its end marker)
and the powershell.exe starts, and times the session's sample with the
counter and with the counter's statements taken out of the query.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAKEBIN = REPO / "tests" / "fakebin"


# The statements of PS_QUERY that read Windows' available memory (a test of the bench: it fails when they move)
AVAILABLE_PART = (
    "$a=$null; try{if($null -eq $global:vma){$global:vma=New-Object System.Diagnostics.PerformanceCounter("
    "'Memory','Available Bytes')}; $a=$global:vma.RawValue}catch{$global:vma=$null}; "
    "if($null -eq $a){$a=1024*(Get-CimInstance Win32_OperatingSystem).FreePhysicalMemory}; "
    "\"VMAVAIL`t$a\"; "
)


def session_samples(exe: str, n: int, query: str) -> tuple[list[float], int, int]:
    """``n`` samples from one session sending ``query``: their times, the lines written to PowerShell's
    stdin, and how many samples carried the host's available memory."""
    from monitor.probes import interop

    probe = interop.PowerShellProbe(exe, timeout=10)
    written = [0]
    real_query = probe.session.query

    def counted(template: str) -> list[str]:
        written[0] += 1  # one line a query (PowerShellSession.query writes one and reads to its end marker)
        return real_query(template)
    probe.session.query = counted
    saved, interop.PS_QUERY = interop.PS_QUERY, query
    times, available = [], 0
    try:
        for _ in range(n):
            t = time.perf_counter()
            sample = probe.sample(None)
            times.append(time.perf_counter() - t)
            assert sample.bytes is not None
            available += sample.host_available is not None
    finally:
        interop.PS_QUERY = saved
        probe.close()
    return times, written[0], available


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50)
    args = ap.parse_args()
    os.environ["PATH"] = f"{FAKEBIN}{os.pathsep}{os.environ['PATH']}"
    os.environ["FAKE_WINDOWS_MODE"] = "normal"
    from monitor.probes.interop import PS_QUERY, find_windows_tool, ps_query

    exe = find_windows_tool("powershell.exe")
    log = Path(tempfile.mkdtemp()) / "spawns.log"
    os.environ["FAKE_WINDOWS_LOG"] = str(log)
    persistent, lines_written, with_available = session_samples(exe, args.n, PS_QUERY)
    starts = sum(1 for line in log.read_text().splitlines() if line.startswith("powershell.exe"))
    without_query = PS_QUERY.replace(AVAILABLE_PART, "")
    assert without_query != PS_QUERY, "the available counter's statements moved: update AVAILABLE_PART"
    without, _, none_available = session_samples(exe, args.n, without_query)
    assert with_available == args.n and none_available == 0

    spawned = []
    query = ps_query().replace("{nonce}", "0123456789abcdef")
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
        # issue 27: Windows' available memory in the same query
        "queries_per_sample": lines_written / args.n,
        "powershell_starts": starts,
        "samples_with_host_available": with_available,
        "persistent_median_ms_without_available": round(statistics.median(without[1:]) * 1000, 3),
        "note": "fake powershell.exe (a Python script); a real powershell.exe spawn costs ~0.5 s; on Windows the "
                "counter is read from a PerformanceCounter kept in the session (no WMI query per sample)",
    }
    out = REPO / "bench" / "results" / "interop.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
