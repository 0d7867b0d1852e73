"""The watcher as the owner, its clients asking: request round trips, an attached dashboard's refresh,
and the watcher's CPU and RSS alone and with one attached dashboard (issue 24).

    .venv/bin/python bench/control_bench.py                       # ~5 min; writes bench/results/control.*
    .venv/bin/python bench/control_bench.py --before /tmp/base    # also an attached dashboard of another checkout

1. A real `vmmemctl watch` (default settings: a sample every 2 s) on this machine, with a
   fresh history. Round trips through its control endpoint while it samples, from this
   process: `hello` (a read: who it is, its config and decision) and `snooze 0` (a write:
   one transaction in the watcher), each --requests times; p50 and p99 in milliseconds.
2. The watcher alone for --duration seconds, then with one attached dashboard beside it (a
   process refreshing as `vmmemctl tui` does, every 2 s: `DataSource.snapshot`): the
   watcher's CPU (% of one core, utime+stime from /proc/PID/stat) and peak RSS (VmHWM), and
   the dashboard's own CPU per refresh. With --before DIR, a second dashboard process runs
   that checkout's code (the dashboard before issue 24), attached to the same watcher.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, loadavg, machine, machine_markdown, now_iso, proc_stat, write_results  # noqa: E402

PYTHON = str(REPO / ".venv/bin/python")

DASHBOARD = """
import sys, time
from pathlib import Path
try:
    from monitor.config.schema import Config
except ImportError:  # a checkout before monitor/ became packages
    from monitor.config import Config
from tui.source import DataSource, Setup
db, duration = Path(sys.argv[1]), float(sys.argv[2])
source = DataSource(Setup(Config(), db, False, 2.0, timers=False))
source.start()
refreshes, cpu = 0, 0.0
end = time.monotonic() + duration
while time.monotonic() < end:
    t0 = time.process_time()
    source.snapshot("1h", 120)
    cpu += time.process_time() - t0
    refreshes += 1
    time.sleep(2.0)
source.close()
print(refreshes, cpu)
"""


def percentile(xs: list[float], q: float) -> float:
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def round_trips(control: Path, op: str, n: int, **fields) -> dict:
    from monitor.control.client import call

    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        call(control, op, **fields)
        times.append((time.perf_counter() - t0) * 1000)
    return {"op": op, "n": n, "p50_ms": round(percentile(times, 0.5), 3), "p99_ms": round(percentile(times, 0.99), 3),
            "max_ms": round(max(times), 3)}


def watcher_cpu(pid: int, duration: float) -> dict:
    before = proc_stat(pid)
    time.sleep(duration)
    after = proc_stat(pid)
    return {"cpu_percent": round(100 * (after.cpu_s - before.cpu_s) / duration, 4),
            "peak_rss_mib": round(after.hwm / 2**20, 2)}


def dashboard(repo: Path, db: Path, duration: float, env: dict) -> subprocess.Popen:
    return subprocess.Popen([PYTHON, "-c", DASHBOARD, str(db), str(duration)], cwd=repo, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def dashboard_result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=600)
    if proc.returncode != 0 or len(out.split()) != 2:
        raise SystemExit(f"a dashboard failed: {err.strip().splitlines()[-1:] or out}")
    refreshes, cpu = out.split()
    return {"refreshes": int(refreshes), "cpu_ms_per_refresh": round(1000 * float(cpu) / max(1, int(refreshes)), 2)}


def run(args: argparse.Namespace, tmp: Path) -> dict:
    from monitor.history.places import watcher_of

    env = {**os.environ, "VMMEMCTL_CONFIG": "", "HOME": str(tmp), "VMMEMCTL_SYSTEM_DIR": str(tmp / "sys"),
           "VMMEMCTL_RUN_DIR": str(tmp / "run"), "VMMEMCTL_VM_CLAIM_DIR": str(tmp / "vm")}
    db = tmp / "sys" / "history.db"
    watcher = subprocess.Popen([PYTHON, "-m", "monitor", "watch", "--log-file", str(tmp / "w.log")], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while (found := watcher_of(db)) is None or found.control is None:
            if time.monotonic() > deadline:
                raise SystemExit("the watcher did not start")
            time.sleep(0.5)
        time.sleep(args.warmup)
        out = {"round_trips": [round_trips(found.control, "hello", args.requests),
                               round_trips(found.control, "snooze", args.requests, seconds=0)]}
        out["watcher_alone"] = watcher_cpu(watcher.pid, args.duration)
        dashboards = {"attached dashboard": dashboard(REPO, db, args.duration, env)}
        if args.before:
            dashboards["attached dashboard (before)"] = dashboard(Path(args.before), db, args.duration, env)
        out["watcher_with_dashboards"] = watcher_cpu(watcher.pid, args.duration)
        out["dashboards"] = {name: dashboard_result(p) for name, p in dashboards.items()}
        return out
    finally:
        watcher.send_signal(signal.SIGTERM)
        watcher.wait(60)


def markdown(data: dict) -> str:
    lines = ["# The watcher and its clients (issue 24)", "", machine_markdown(data["machine"], data["load_before"],
                                                                         data["load_after"]), "",
             "| request | n | p50 | p99 | max |", "|---|---|---|---|---|"]
    for r in data["round_trips"]:
        lines.append(f"| {r['op']} | {r['n']} | {r['p50_ms']} ms | {r['p99_ms']} ms | {r['max_ms']} ms |")
    alone, both = data["watcher_alone"], data["watcher_with_dashboards"]
    lines += ["", f"Watcher alone ({data['duration']:g} s): {alone['cpu_percent']} % of a core, peak RSS "
                  f"{alone['peak_rss_mib']} MiB.",
              f"With {', '.join(data['dashboards'])} beside it: {both['cpu_percent']} % of a core, peak RSS "
              f"{both['peak_rss_mib']} MiB.", ""]
    for name, d in data["dashboards"].items():
        lines.append(f"- {name}: {d['cpu_ms_per_refresh']} ms of CPU a refresh ({d['refreshes']} refreshes)")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--duration", type=float, default=120.0, help="seconds of each CPU measurement")
    p.add_argument("--warmup", type=float, default=10.0)
    p.add_argument("--before", metavar="DIR", help="another checkout whose attached dashboard runs beside ours")
    p.add_argument("--out", default="control")
    args = p.parse_args(argv)
    load_before = loadavg()
    with tempfile.TemporaryDirectory(prefix="vmc-bench-") as tmp:
        data = {"when": now_iso(), "machine": machine(), "duration": args.duration, **run(args, Path(tmp))}
    data["load_before"], data["load_after"] = load_before, loadavg()
    js, md = write_results(args.out, data, markdown(data))
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
