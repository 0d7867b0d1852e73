"""The dashboard's costs: time to first frame, time to draw 7 days, CPU while idle at a 2 s refresh.

    .venv/bin/python bench/tui_bench.py [--idle 60] [--repeat 5]

1. A week of 2 s samples (302,400) goes through Store.add_sample, then
   roll_up and prune as the watcher runs them, so the tiers are what a week
   of watching leaves: 6 h raw, 7 d of 1-minute rows, 10-minute rows.
2. First frame: a fresh `python` process imports the TUI, builds the app on
   that history and runs it headless; we time process start -> first frame
   painted, and -> first numbers on screen (the first snapshot shown).
3. 7 days: in a running app (120x40, headless), press 4 with the series
   cache emptied each time: key -> data read and shaped in the worker ->
   chart drawn and the frame painted. Also the store read alone.
4. Idle CPU: a headless app with its real 2 s timer, left alone for --idle
   seconds; process CPU time (user+sys) over that window / wall time. Cases:
   viewing the week (1 h and 7 d ranges), the same with the prompt modal
   open, and standalone (sampling this machine every 2 s into a copy).

Results: bench/results/tui.json and tui.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, loadavg, machine, machine_markdown, median, now_iso, write_results  # noqa: E402

from monitor.config.schema import HistoryConfig  # noqa: E402
from monitor.history.store import Store  # noqa: E402

DAY = 86400.0

CHILD_FIRST_FRAME = r"""
import sys, time, json
T0 = float(sys.argv[1])
sys.path.insert(0, sys.argv[3])
from monitor.config.schema import Config
from tui.app import make_app, VmmemApp

marks = {}
class Timed(VmmemApp):
    def on_mount(self):
        super().on_mount()
        self.call_after_refresh(lambda: marks.setdefault("first_frame", time.time() - T0))
    def on_snapshot_ready(self, message):
        super().on_snapshot_ready(message)
        self.call_after_refresh(self._numbers)
    def _numbers(self):
        marks.setdefault("first_numbers", time.time() - T0)
        self.exit()

app = Timed(make_app(Config(), sys.argv[2], standalone=False, timers=False, watcher_pid=lambda db: None).setup)
app.run(headless=True, size=(120, 40))
print(json.dumps(marks))
"""

CHILD_IDLE = r"""
import sys, time, json, os
sys.path.insert(0, sys.argv[5])
from monitor.config.schema import Config
from tui.app import make_app, VmmemApp

db, seconds, mode, range_name = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
result = {}

class Idle(VmmemApp):
    def on_mount(self):
        super().on_mount()
        self.set_timer(5.0, start)  # past start-up (imports, the first reads)

app = Idle(make_app(Config(), db, standalone=(mode == "standalone"), interval=2.0,
                    watcher_pid=lambda db: None).setup)
app.range_name = range_name

def start():
    result["cpu0"], result["wall0"] = time.process_time(), time.monotonic()
    app.set_timer(seconds, stop)

def stop():
    result["cpu_s"] = time.process_time() - result["cpu0"]
    result["wall_s"] = time.monotonic() - result["wall0"]
    result["samples_seen"] = len(app.snapshot.chart.cache[-1]) if app.snapshot and app.snapshot.chart.cache else 0
    app.exit()

app.run(headless=True, size=(120, 40))
print(json.dumps(result))
"""


def build_week(path: Path, now: float) -> dict:
    from tui.demo import write_history

    started = time.perf_counter()
    write_history(path, now, days=7, step=2.0, raw_step=2.0, raw_for=HistoryConfig().raw_for)
    took = time.perf_counter() - started
    with Store(path) as store:
        counts = {t: store.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                  for t in ("samples", "samples_1m", "samples_10m", "events")}
    return {"samples_written": int(7 * DAY / 2) + 1, "build_s": round(took, 1), "rows": counts,
            "file_bytes": path.stat().st_size + sum(p.stat().st_size for p in path.parent.glob(path.name + "-*"))}


def first_frame(db: Path, repeat: int) -> dict:
    runs = []
    for _ in range(repeat):
        t0 = time.time()
        done = subprocess.run([sys.executable, "-c", CHILD_FIRST_FRAME, str(t0), str(db), str(REPO)],
                              capture_output=True, text=True, timeout=120, cwd=REPO)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {"runs": runs, "first_frame_s": median([r["first_frame"] for r in runs]),
            "first_numbers_s": median([r["first_numbers"] for r in runs])}


async def draw_week(db: Path, repeat: int) -> dict:
    from monitor.config.schema import Config
    from tui.app import VmmemApp, make_app

    class Timed(VmmemApp):
        painted: asyncio.Future | None = None

        def on_snapshot_ready(self, message) -> None:
            super().on_snapshot_ready(message)
            if self.painted is not None and message.snapshot.range_name == "7d":
                done = self.painted
                self.call_after_refresh(lambda: done.done() or done.set_result(time.perf_counter()))

    app = Timed(make_app(Config(), db, standalone=False, timers=False, watcher_pid=lambda db: None).setup)
    key_to_frame, worker_s = [], []
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("escape")  # the prompt the prepared week leaves waiting
        for _ in range(repeat):
            await pilot.press("2")
            await app.workers.wait_for_complete()
            await pilot.pause()
            app.source._cache.series.clear()  # cold: read the week again
            app.painted = asyncio.get_running_loop().create_future()
            started = time.perf_counter()
            await pilot.press("4")
            end = await asyncio.wait_for(app.painted, 30)
            app.painted = None
            key_to_frame.append(end - started)
            assert app.snapshot.range_name == "7d" and not app.snapshot.chart.empty
            t = time.perf_counter()
            app.source.snapshot("7d", 100)  # warm: the series cache holds the week
            worker_s.append(time.perf_counter() - t)
        rows = app.snapshot.chart.rows
    with Store(db) as store:
        t = time.perf_counter()
        tier, week = store.series(time.time() - 7 * DAY, time.time())
        read_s = time.perf_counter() - t
    return {"key_to_painted_s": median(key_to_frame), "runs_s": [round(x, 4) for x in key_to_frame],
            "warm_snapshot_s": median(worker_s), "rows_drawn_from": rows, "tier": tier,
            "store_read_only_s": round(read_s, 4), "store_rows": len(week)}


def idle_cpu(db: Path, seconds: float, mode: str, range_name: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD_IDLE, str(db), str(seconds), mode, range_name, str(REPO)],
                          capture_output=True, text=True, timeout=seconds + 120, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    r = json.loads(done.stdout.strip().splitlines()[-1])
    return {"mode": mode, "range": range_name, "cpu_s": round(r["cpu_s"], 3), "wall_s": round(r["wall_s"], 1),
            "cpu_percent": round(100 * r["cpu_s"] / r["wall_s"], 2)}


def copy_history(db: Path, to: Path) -> Path:
    for p in db.parent.glob(db.name + "*"):
        shutil.copy(p, to.parent / p.name.replace(db.name, to.name))
    return to


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle per CPU case (default 60)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    load_before = loadavg()
    work = Path(tempfile.mkdtemp(prefix="tui-bench-"))
    try:
        now = time.time()
        db = work / "week.db"
        print("writing a week of 2 s samples ...", file=sys.stderr)
        week = build_week(db, now)
        print(f"  {week}", file=sys.stderr)
        frame = first_frame(db, args.repeat)
        print(f"first frame {frame['first_frame_s']:.3f}s, numbers {frame['first_numbers_s']:.3f}s", file=sys.stderr)
        seven = asyncio.run(draw_week(db, args.repeat))
        print(f"7 days: {seven['key_to_painted_s']:.3f}s key to painted", file=sys.stderr)
        answered = copy_history(db, work / "answered.db")  # the dashboard itself, no prompt modal on top
        with Store(answered) as store:
            for prompt in store.pending_prompts():
                store.answer_prompt(prompt.id, "dismissed")
        idle = []
        for mode, range_name, target, what in (
                ("viewing", "1h", answered, "dashboard"), ("viewing", "7d", answered, "dashboard"),
                ("viewing", "1h", db, "a prompt modal open"),
                ("standalone", "1h", copy_history(answered, work / "standalone.db"), "dashboard")):
            idle.append({**idle_cpu(target, args.idle, mode, range_name), "screen": what})
            print(f"  idle {idle[-1]}", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    m = machine()
    data = {"when": now_iso(), "machine": m, "week": week, "first_frame": frame, "seven_days": seven,
            "idle_cpu": idle, "idle_seconds": args.idle}
    md = markdown(data, load_before, loadavg())
    js, mdp = write_results("tui", data, md)
    print(md)
    print(f"wrote {js} and {mdp}", file=sys.stderr)
    return 0


def markdown(d: dict, load_before: str, load_after: str) -> str:
    w, f, s = d["week"], d["first_frame"], d["seven_days"]
    lines = [
        "# vmmemctl tui: costs", "", f"Measured {d['when']} by `bench/tui_bench.py`.", "",
        machine_markdown(d["machine"], load_before, load_after), "",
        "## The history", "",
        f"A week of 2 s samples ({w['samples_written']:,}) through `Store.add_sample`, `roll_up` and `prune` "
        f"in {w['build_s']} s: {w['rows']['samples']:,} raw rows (6 h), {w['rows']['samples_1m']:,} one-minute "
        f"rows, {w['rows']['samples_10m']:,} ten-minute rows, {w['rows']['events']} events; "
        f"{w['file_bytes'] / 2**20:.1f} MiB on disk.", "",
        "## Results (medians)", "",
        "| what | time |", "|---|---|",
        f"| process start to first frame (headless, 120x40) | {f['first_frame_s'] * 1000:.0f} ms |",
        f"| process start to first numbers on screen | {f['first_numbers_s'] * 1000:.0f} ms |",
        f"| key `4` to 7 days drawn and painted (cold: store read + shaping + chart) | "
        f"{s['key_to_painted_s'] * 1000:.0f} ms |",
        f"| 7 days, warm snapshot in the worker (cache held) | {s['warm_snapshot_s'] * 1000:.1f} ms |",
        f"| the store read alone ({s['store_rows']:,} rows of {s['tier']}) | {s['store_read_only_s'] * 1000:.0f} ms |",
        "", f"## CPU while idle ({d['idle_seconds']:g} s, 2 s refresh, headless)", "",
        "| mode | range | screen | CPU time | CPU |", "|---|---|---|---|---|",
    ]
    for r in d["idle_cpu"]:
        lines.append(f"| {r['mode']} | {r['range']} | {r['screen']} | {r['cpu_s']:.2f} s over {r['wall_s']:.0f} s | "
                     f"{r['cpu_percent']:.2f} % |")
    lines += ["", "viewing: a history no watcher writes (the 2 s refresh re-reads it, the range slides); "
              "standalone: sampling this machine every 2 s and recording through the watcher (samples, "
              "decisions, roll-ups). Headless: the terminal writes are not counted, the rendering is."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
