"""The soak: `vmmemctl watch` for a long real run, with a dashboard attached and Prometheus scraping.

    .venv/bin/python bench/soak.py [--minutes 30] [--interval 1]

Runs a real watcher (`--interval 1s --metrics 127.0.0.1:PORT`) on this
machine's /proc with a HOME of its own, a `vmmemctl tui` attached to it in a
detached tmux session (its own -L server), and a metrics scrape every 5 s.
Every minute it reads the watcher's RSS (VmRSS), its CPU time and the
database size (with its WAL). At the end it stops the watcher with SIGTERM and
reads the history back: samples recorded against samples expected, the gaps
between samples (a tick that slipped shows as a gap), error events.

"Tick time" here is the watcher's CPU time divided by the ticks it ran: what
one tick costs the machine, scheduler, metrics scrapes and maintenance
included (an upper bound on the tick itself). Results: bench/results/soak.json
and soak.md. Nothing asserts a number.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import CLK_TCK, MiB, REPO, RESULTS, loadavg, machine

PY = str(REPO / ".venv/bin/python") if (REPO / ".venv/bin/python").exists() else sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def db_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--scrape-every", type=float, default=5.0)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="vmmemctl-soak-"))
    home = work / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_DATA_HOME": str(home / ".local/share"), "XDG_STATE_HOME": str(home / ".local/state"),
           "VMMEMCTL_CONFIG": "", "TERM": "xterm-256color"}
    db, port = work / "history.db", free_port()
    load_before = loadavg()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()  # the code the watcher runs: read at its start
    watcher = subprocess.Popen([PY, "-m", "monitor", "watch", "--db", str(db), "--interval", f"{args.interval:g}s",
                                "--metrics", f"127.0.0.1:{port}", "--log-file", str(work / "watch.log")],
                               cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    sock = f"soak{os.getpid()}"
    tmux = shutil.which("tmux")
    tui_pid = None
    start = time.time()
    points, scrapes, scrape_failures = [], 0, 0
    try:
        time.sleep(3)
        if tmux:
            subprocess.run([tmux, "-L", sock, "new-session", "-d", "-s", "soak", "-x", "120", "-y", "40",
                            f"{PY} -m monitor tui --db {db}"], cwd=REPO, env=env, check=True)
            time.sleep(3)
            out = subprocess.run([tmux, "-L", sock, "list-panes", "-F", "#{pane_pid}"], capture_output=True,
                                 text=True).stdout.split()
            tui_pid = int(out[0]) if out else None
        end = start + args.minutes * 60
        next_point = time.time()
        while time.time() < end and watcher.poll() is None:
            now = time.time()
            if now >= next_point:
                points.append({"t": round(now - start, 1), "rss": rss(watcher.pid), "cpu_s": cpu_seconds(watcher.pid),
                               "db_bytes": db_bytes(db), "tui_rss": rss(tui_pid) if tui_pid else None})
                next_point += 60
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    r.read()
                scrapes += 1
            except OSError:
                scrape_failures += 1
            time.sleep(args.scrape_every)
        points.append({"t": round(time.time() - start, 1), "rss": rss(watcher.pid), "cpu_s": cpu_seconds(watcher.pid),
                       "db_bytes": db_bytes(db), "tui_rss": rss(tui_pid) if tui_pid else None})
        screen = subprocess.run([tmux, "-L", sock, "capture-pane", "-p", "-t", "soak"], capture_output=True,
                                text=True).stdout if tmux else ""
    finally:
        if tmux:
            subprocess.run([tmux, "-L", sock, "kill-server"], capture_output=True)
        alive_at_end = watcher.poll() is None
        watcher.send_signal(signal.SIGTERM)
        try:
            code = watcher.wait(30)
        except subprocess.TimeoutExpired:
            watcher.kill()
            code = None
    stderr = watcher.stderr.read() if watcher.stderr else ""
    elapsed = time.time() - start
    con = sqlite3.connect(db)
    times = [r[0] for r in con.execute("SELECT t FROM samples ORDER BY t")]
    minutes = con.execute("SELECT COUNT(*) FROM samples_1m").fetchone()[0]
    errors = [r[0] for r in con.execute("SELECT message FROM events WHERE kind = 'error'")]
    con.close()
    gaps = [b - a for a, b in zip(times, times[1:])]
    ticks = len(times)
    cpu = (points[-1]["cpu_s"] or 0) - (points[0]["cpu_s"] or 0)
    span = points[-1]["t"] - points[0]["t"]
    result = {
        "machine": machine(), "commit": commit, "load_before": load_before, "load_after": loadavg(), "minutes": args.minutes,
        "interval_s": args.interval, "elapsed_s": round(elapsed, 1), "watcher_alive_at_end": alive_at_end,
        "exit_code": code, "stderr_tail": stderr[-500:], "tui_attached": tui_pid is not None,
        "tui_screen_mentions_watcher": "watch" in screen, "scrapes": scrapes, "scrape_failures": scrape_failures,
        "samples": ticks, "samples_1m_rows": minutes, "error_events": errors[:10], "n_error_events": len(errors),
        "gap_p50_s": statistics.median(gaps) if gaps else None,
        "gap_p99_s": sorted(gaps)[int(0.99 * (len(gaps) - 1))] if gaps else None,
        "gap_max_s": max(gaps) if gaps else None,
        "cpu_per_tick_ms": 1000 * cpu / max(1.0, span / args.interval),
        "cpu_percent_of_core": 100 * cpu / span if span else None,
        "rss_start": points[0]["rss"], "rss_end": points[-1]["rss"],
        "rss_max": max(p["rss"] or 0 for p in points), "db_end": points[-1]["db_bytes"],
        "tui_rss_start": points[0]["tui_rss"], "tui_rss_end": points[-1]["tui_rss"], "points": points,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(result, indent=1))
    (RESULTS / "soak.md").write_text(markdown(result))
    print(markdown(result))
    shutil.rmtree(work, ignore_errors=True)
    return 0


def markdown(r: dict) -> str:
    m = r["machine"]
    mib = lambda b: f"{b / MiB:.1f} MiB" if b else "?"  # noqa: E731
    return f"""# Soak: `vmmemctl watch --interval {r['interval_s']:g}s` for {r['minutes']:g} minutes

Commit {r['commit']}. Machine: kernel {m['kernel']}, {m['cpus']} CPUs, Python {m['python']}; shared with other engineers
(load before {r['load_before']}, after {r['load_after']}). A `vmmemctl tui` attached
({'yes' if r['tui_attached'] else 'no: tmux missing'}), Prometheus scraped every 5 s.

| | start | end |
|---|---|---|
| watcher RSS | {mib(r['rss_start'])} | {mib(r['rss_end'])} (max {mib(r['rss_max'])}) |
| dashboard RSS | {mib(r['tui_rss_start'])} | {mib(r['tui_rss_end'])} |
| database (with WAL) | | {mib(r['db_end'])} |

- samples recorded: {r['samples']} in {r['elapsed_s']:.0f} s; 1-minute roll-up rows: {r['samples_1m_rows']}
- gap between samples: median {r['gap_p50_s']:.3f} s, p99 {r['gap_p99_s']:.3f} s, max {r['gap_max_s']:.3f} s
- watcher CPU: {r['cpu_percent_of_core']:.3f} % of one core, {r['cpu_per_tick_ms']:.2f} ms per tick
  (CPU time / ticks: scheduler, scrapes and maintenance included)
- scrapes: {r['scrapes']} ok, {r['scrape_failures']} failed; error events: {r['n_error_events']}
- watcher alive at the end: {r['watcher_alive_at_end']}; exit code after SIGTERM: {r['exit_code']}
"""


if __name__ == "__main__":
    sys.exit(main())
