"""The watcher as the owner, its clients asking: request round trips, an attached dashboard's refresh,
and the watcher's CPU and RSS alone and with one attached dashboard (issue 24).

    .venv/bin/python bench/control_bench.py                       # ~7 min; writes bench/results/control.*
    .venv/bin/python bench/control_bench.py --before /tmp/base    # also another checkout, side by side
    .venv/bin/python bench/control_bench.py --before /tmp/base --side-by-side --duration 300   # the watchers only

1. A real `vmmemctl watch` (default settings: a sample every 2 s) on this machine, with a
   fresh history. Round trips through its control endpoint while it samples, from this
   process: `hello` (a read: who it is, its config and decision) and `snooze 0` (a write:
   one transaction in the watcher), each --requests times; p50 and p99 in milliseconds.
2. The watcher alone for --duration seconds, then with one attached dashboard beside it (a
   process refreshing as `vmmemctl tui` does, every 2 s: `DataSource.snapshot`): the
   watcher's CPU (% of one core, utime+stime from /proc/PID/stat) and peak RSS (VmHWM), and
   the dashboard's own CPU per refresh. With --before DIR, a second dashboard process runs
   that checkout's code (the dashboard before issue 24), attached to the same watcher.
3. The watcher with one subscription (`subscribe`, a client streaming samples and events).

CPU is each thread's run time from /proc/PID/task/*/schedstat (nanoseconds: utime+stime count
10 ms ticks, a sixth of what the watcher uses in 120 s). While the watcher runs alone, two more
processes run beside it, in the same conditions: with --before DIR, that checkout's watcher
(its own history), and "the floor": a bare Python loop that reads /proc/meminfo and /proc/stat,
matches five fields and INSERTs a row into a WAL SQLite file every 2 s, the least a sampling
recorder in Python does (what the issue's target is measured against).
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


FLOOR = """
import os, re, sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA journal_mode=WAL"); db.execute("PRAGMA synchronous=NORMAL")
db.execute("CREATE TABLE IF NOT EXISTS s (t REAL PRIMARY KEY, a, b, c, d, e, busy, total)")
m, st = os.open("/proc/meminfo", os.O_RDONLY), os.open("/proc/stat", os.O_RDONLY)
fields = re.compile(r"MemTotal: +(\\d+) kB\\nMemFree: +(\\d+) kB\\nMemAvailable: +(\\d+) kB\\n"
                    r"Buffers: +(\\d+) kB\\nCached: +(\\d+) kB\\n")
while True:
    time.sleep(2.0)
    mem = fields.match(os.pread(m, 65536, 0).decode())
    cpu = os.pread(st, 65536, 0).decode().split("\\n", 1)[0].split()[1:]
    total = sum(map(int, cpu))
    db.execute("INSERT INTO s VALUES (?,?,?,?,?,?,?,?)", (time.time(), *map(int, mem.groups()),
                                                          total - int(cpu[3]) - int(cpu[4]), total))
"""


def cpu_ns(pid: int) -> int:
    """The process's threads' run time so far, in nanoseconds (schedstat; threads that ended are not counted)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def cpu_of(pids: dict[str, int], duration: float) -> dict[str, dict]:
    """Each process's CPU (% of one core) and peak RSS over the same ``duration``."""
    before = {name: cpu_ns(pid) for name, pid in pids.items()}
    time.sleep(duration)
    out = {}
    for name, pid in pids.items():
        used = cpu_ns(pid) - before[name]
        out[name] = {"cpu_percent": round(100 * used / 1e9 / duration, 4),
                     "cpu_ms_per_minute": round(used / 1e6 * 60 / duration, 2),
                     "peak_rss_mib": round(proc_stat(pid).hwm / 2**20, 2)}
    return out


def watcher_cpu(pid: int, duration: float) -> dict:
    return cpu_of({"w": pid}, duration)["w"]


def start_watcher(repo: Path, tmp: Path) -> tuple[subprocess.Popen, Path, dict]:
    """`vmmemctl watch` of the checkout ``repo`` with default settings and places of its own under ``tmp``."""
    env = {**os.environ, "VMMEMCTL_CONFIG": "", "HOME": str(tmp), "VMMEMCTL_SYSTEM_DIR": str(tmp / "sys"),
           "VMMEMCTL_RUN_DIR": str(tmp / "run"), "VMMEMCTL_VM_CLAIM_DIR": str(tmp / "vm"), "PYTHONPATH": str(repo)}
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR"):
        env.pop(name, None)
    proc = subprocess.Popen([PYTHON, "-m", "monitor", "watch", "--log-file", str(tmp / "w.log")], cwd=repo, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, tmp / "sys" / "history.db", env


def subscriber(control: Path, duration: float) -> dict:
    """A client streaming the watcher's samples and events for ``duration`` seconds (on a thread here)."""
    import threading

    from monitor.control.client import subscribe

    got = {"sample": 0, "event": 0, "hello": 0}

    def listen() -> None:
        with subscribe(control) as items:
            for item in items:
                for key in item:
                    got[key] = got.get(key, 0) + 1

    threading.Thread(target=listen, daemon=True).start()
    return got


def dashboard(repo: Path, db: Path, duration: float, env: dict) -> subprocess.Popen:
    return subprocess.Popen([PYTHON, "-c", DASHBOARD, str(db), str(duration)], cwd=repo,
                            env={**env, "PYTHONPATH": str(repo)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def dashboard_result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=600)
    if proc.returncode != 0 or len(out.split()) != 2:
        raise SystemExit(f"a dashboard failed: {err.strip().splitlines()[-1:] or out}")
    refreshes, cpu = out.split()
    return {"refreshes": int(refreshes), "cpu_ms_per_refresh": round(1000 * float(cpu) / max(1, int(refreshes)), 2)}


def run(args: argparse.Namespace, tmp: Path) -> dict:
    from monitor.history.places import watcher_of

    (tmp / "now").mkdir()
    watcher, db, env = start_watcher(REPO, tmp / "now")
    others: dict[str, subprocess.Popen] = {
        "floor": subprocess.Popen([PYTHON, "-c", FLOOR, str(tmp / "floor.db")], stdout=subprocess.DEVNULL)}
    if args.before:
        (tmp / "before").mkdir()
        others["watcher (before)"] = start_watcher(Path(args.before), tmp / "before")[0]
    try:
        deadline = time.monotonic() + 60
        while (found := watcher_of(db)) is None or found.control is None:
            if time.monotonic() > deadline or watcher.poll() is not None:
                raise SystemExit("the watcher did not start")
            time.sleep(0.5)
        time.sleep(args.warmup)
        out = {"round_trips": [round_trips(found.control, "hello", args.requests),
                               round_trips(found.control, "snooze", args.requests, seconds=0)]}
        time.sleep(args.warmup)  # the requests' own work is done before the quiet measurement
        alone = cpu_of({"watcher": watcher.pid, **{name: p.pid for name, p in others.items()}}, args.duration)
        out["watcher_alone"] = alone.pop("watcher")
        out["beside"] = alone
        for p in others.values():
            p.terminate()
        dashboards = {"attached dashboard": dashboard(REPO, db, args.duration, env)}
        if args.before:
            dashboards["attached dashboard (before)"] = dashboard(Path(args.before), db, args.duration, env)
        out["watcher_with_dashboards"] = watcher_cpu(watcher.pid, args.duration)
        out["dashboards"] = {name: dashboard_result(p) for name, p in dashboards.items()}
        got = subscriber(found.control, args.duration)
        out["watcher_with_subscriber"] = {**watcher_cpu(watcher.pid, args.duration), "received": dict(got)}
        return out
    finally:
        watcher.send_signal(signal.SIGTERM)
        watcher.wait(60)
        for p in others.values():
            p.terminate()
            p.wait(60)


def markdown(data: dict) -> str:
    lines = ["# The watcher and its clients (issue 24)", "", machine_markdown(data["machine"], data["load_before"],
                                                                         data["load_after"]), "",
             "| request | n | p50 | p99 | max |", "|---|---|---|---|---|"]
    for r in data["round_trips"]:
        lines.append(f"| {r['op']} | {r['n']} | {r['p50_ms']} ms | {r['p99_ms']} ms | {r['max_ms']} ms |")
    alone, both = data["watcher_alone"], data["watcher_with_dashboards"]
    lines += ["", f"Watcher alone ({data['duration']:g} s): {alone['cpu_percent']} % of a core, peak RSS "
                  f"{alone['peak_rss_mib']} MiB."]
    for name, d in data.get("beside", {}).items():
        lines.append(f"- beside it, in the same {data['duration']:g} s, {name}: {d['cpu_percent']} % of a core, "
                     f"peak RSS {d['peak_rss_mib']} MiB")
    sub = data.get("watcher_with_subscriber")
    if sub:
        lines.append(f"- with one subscription: {sub['cpu_percent']} % of a core ({sub['received'].get('sample', 0)} "
                     "samples streamed)")
    lines += ["",
              f"With {', '.join(data['dashboards'])} beside it: {both['cpu_percent']} % of a core, peak RSS "
              f"{both['peak_rss_mib']} MiB.", ""]
    for name, d in data["dashboards"].items():
        lines.append(f"- {name}: {d['cpu_ms_per_refresh']} ms of CPU a refresh ({d['refreshes']} refreshes)")
    return "\n".join(lines) + "\n"


def side_by_side(args: argparse.Namespace, tmp: Path) -> dict:
    """Our watcher, --before's and the floor started together, measured together after --warmup."""
    procs = {}
    for name, repo in (("watcher", REPO), ("watcher (before)", Path(args.before) if args.before else None)):
        if repo is not None:
            (tmp / name).mkdir()
            procs[name] = start_watcher(repo, tmp / name)[0]
    procs["floor"] = subprocess.Popen([PYTHON, "-c", FLOOR, str(tmp / "floor.db")], stdout=subprocess.DEVNULL)
    try:
        time.sleep(args.warmup + 10)
        return cpu_of({name: p.pid for name, p in procs.items()}, args.duration)
    finally:
        for p in procs.values():
            p.terminate()
            p.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--duration", type=float, default=120.0, help="seconds of each CPU measurement")
    p.add_argument("--warmup", type=float, default=10.0)
    p.add_argument("--before", metavar="DIR", help="another checkout whose watcher and attached dashboard run "
                   "beside ours")
    p.add_argument("--out", default="control")
    p.add_argument("--side-by-side", action="store_true", help="only the watchers (ours and --before's) and the "
                   "floor, started together and left alone for --duration: no requests, dashboards or subscription")
    args = p.parse_args(argv)
    load_before = loadavg()
    if args.side_by_side:
        with tempfile.TemporaryDirectory(prefix="vmc-bench-") as tmp:
            alone = side_by_side(args, Path(tmp))
        print(f"{args.duration:.0f} s, load {load_before} -> {loadavg()}")
        for name, figures in alone.items():
            print(f"{name}: {figures['cpu_percent']} % of a core, peak RSS {figures['peak_rss_mib']} MiB")
        return 0
    with tempfile.TemporaryDirectory(prefix="vmc-bench-") as tmp:
        data = {"when": now_iso(), "machine": machine(), "duration": args.duration, **run(args, Path(tmp))}
    data["load_before"], data["load_after"] = load_before, loadavg()
    js, md = write_results(args.out, data, markdown(data))
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
