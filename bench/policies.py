"""Baseline reclaim policies users have today, as small processes (root): cron drop_caches, WSL's dropcache.

    python bench/policies.py cron --every 120           # `*/N * * * * sync; echo 3 > drop_caches`
    python bench/policies.py wsl-dropcache [--poll 10 --window 120 --drop 3]

Each prints one JSON line per event on stdout (flushed), so the bench can
count reclaims and show why one did or did not happen.

wsl-dropcache follows WSL's autoMemoryReclaim=dropcache (docs/wsl-facts.md):

- reworked (PR #41095/#41096, 2026-07; text only): idle from aggregate busy
  time (user+nice+system+irq+softirq, all CPUs) <= 0.5 % sustained over two
  minutes; we poll every 10 s (a 12-poll window) and, like the stored
  mini_init code, need the window filled, its mean <= 0.5 % and the last poll
  <= 0.5 %. Drop once per idle period (re-armed by a busy poll); compact on
  entering idle and after the drop. The brief for this bench says drop 3;
  the stored code writes 1 (``--drop 1`` reproduces that).
- the stored, older version (user time only, 30 s polls, a 20-poll = 10 min
  window) is ``--poll 30 --window 600 --user-only --drop 1``; it cannot fire
  within a bench whose quiet phase is shorter than ten minutes.

Like mini_init's worker, it runs at SCHED_IDLE.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import compact_memory, drop_caches, read_text  # noqa: E402

stopping = False


def emit(**event) -> None:
    print(json.dumps({"t": time.time(), **event}), flush=True)


def stop(*_: object) -> None:
    global stopping
    stopping = True


def sleep_until(deadline: float) -> None:
    while not stopping and time.time() < deadline:
        time.sleep(min(0.2, max(0.0, deadline - time.time())))


def cron(every: float, level: str) -> None:
    start = time.time()
    n = 1
    while not stopping:
        sleep_until(start + n * every)
        if stopping:
            break
        t0 = time.time()
        drop_caches(level)
        emit(event="reclaim", what=f"sync; echo {level} > drop_caches", seconds=round(time.time() - t0, 3))
        n += 1


def busy_jiffies(user_only: bool) -> tuple[int, int]:
    first = (read_text("/proc/stat") or "cpu 0 0 0 0").splitlines()[0].split()
    n = [int(x) for x in first[1:9]] + [0] * 8
    user, nice, system, idle, iowait, irq, softirq, steal = n[:8]
    busy = user if user_only else user + nice + system + irq + softirq
    return busy, user + nice + system + idle + iowait + irq + softirq + steal


def wsl_dropcache(poll: float, window: float, level: str, user_only: bool, threshold: float) -> None:
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except OSError as exc:
        emit(event="note", what=f"SCHED_IDLE refused: {exc}")
    polls = max(1, round(window / poll))
    history: list[float] = []  # busy % of each poll interval, newest last
    last = busy_jiffies(user_only)
    dropped = False
    deadline = time.time()
    while not stopping:
        deadline += poll
        sleep_until(deadline)
        if stopping:
            break
        now = busy_jiffies(user_only)
        d_busy, d_total = now[0] - last[0], now[1] - last[1]
        last = now
        busy = 100.0 * d_busy / d_total if d_total > 0 else 0.0
        history = (history + [busy])[-polls:]
        mean = sum(history) / len(history)
        idle = len(history) == polls and mean <= threshold and busy <= threshold
        emit(event="poll", busy=round(busy, 3), window_mean=round(mean, 3), idle=idle, filled=len(history) == polls)
        if not idle:
            dropped = False
            continue
        if dropped:
            continue
        t0 = time.time()
        compact_memory()  # on entering idle
        drop_caches(level)
        compact_memory()  # after the reclaim
        dropped = True
        emit(event="reclaim", what=f"compact; sync; echo {level} > drop_caches; compact",
             seconds=round(time.time() - t0, 3))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy", choices=["cron", "wsl-dropcache"])
    parser.add_argument("--every", type=float, default=120.0, help="cron: seconds between drops")
    parser.add_argument("--drop", choices=["1", "3"], default="3", help="what to write to drop_caches")
    parser.add_argument("--poll", type=float, default=10.0, help="wsl: seconds between CPU readings")
    parser.add_argument("--window", type=float, default=120.0, help="wsl: sustained idle needed, seconds")
    parser.add_argument("--threshold", type=float, default=0.5, help="wsl: idle = busy %% of all CPUs at most this")
    parser.add_argument("--user-only", action="store_true", help="wsl: the old version's user-time-only idle")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    emit(event="start", policy=args.policy, args=vars(args))
    if args.policy == "cron":
        cron(args.every, args.drop)
    else:
        wsl_dropcache(args.poll, args.window, args.drop, args.user_only, args.threshold)
    emit(event="stop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
