"""Overhead of watching: one guest sample in-process, and the watcher as a process, next to glances.

    .venv/bin/python bench/overhead.py                    # 3 rounds x 180 s; writes bench/results/overhead.*
    .venv/bin/python bench/overhead.py --duration 60 --rounds 1   # a quick look (say so if you quote it)

1. In-process, side by side (each round times every candidate in turn, so a machine
   that speeds up or slows down moves them together): a bare read of /proc/meminfo
   (the floor), ``GuestProbe.sample(tick=True)`` as the watcher takes it (a clock
   stepping 2 s a call, the default interval, so the slower files come on their
   cadence: median, p90 and the mean over the cadence), ``GuestProbe.sample()``
   (every file read, as a reclaim's measurements and ``status`` take it) and
   ``psutil.virtual_memory()``; then what a sample is made of (each file's bare read
   and its re-read on a kept descriptor, and each parse).
   ``--only-sample`` runs just this part and keeps parts 2 and 3 of the previous
   results file, marked with the date they were measured. ``--before COMMIT`` also
   times that commit's ``GuestProbe.sample()`` the same way, in a process of its own
   (its ``monitor/`` from ``git archive``), so a change is compared on one machine.
2. Processes side by side for --duration seconds, in the same run: ``vmmemctl watch
   --interval 2s`` (default config, a fresh database), the same with the TUI's imports
   loaded first, ``glances --stdout mem.used,mem.cached -t 2`` (from bench/.venv-glances,
   created on first use), and a sleeping Python (the interpreter's floor). CPU % of
   one core from /proc/PID/stat (utime+stime of the process, its live descendants and
   its reaped children) after a warm-up, and peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (MiB, REPO, descendants, ensure_venv, loadavg, machine, machine_markdown, median,  # noqa: E402
                    now_iso, proc_stat, write_results)

import psutil  # noqa: E402

from monitor.kernel import procfs  # noqa: E402
from monitor.probes import guest as guest_mod  # noqa: E402
from monitor.probes.guest import FILES, GuestProbe  # noqa: E402
from monitor.kernel.procfs import LocalFiles  # noqa: E402

VMMEMCTL = str(REPO / ".venv/bin/vmmemctl")
PYTHON = str(REPO / ".venv/bin/python")


# ------------------------------------------------------------------ in-process


def per_call_us(fn, calls: int, rounds: int) -> dict:
    """Median (and p90) of per-call times in microseconds, over ``rounds`` x ``calls``; GC off while timing."""
    return side_by_side({"fn": fn}, calls, rounds)["fn"]


def side_by_side(fns: dict, calls: int, rounds: int, floor: str | None = None) -> dict:
    """Per-call times of each function, timed in turn within each round (``calls`` calls each), so
    drift in the machine's speed (a shared VM) moves all of them alike. Median, p90 and mean over
    all calls in microseconds; with ``floor``, each one's median and mean over the floor's median
    round by round, and the median of those ratios (robust to the drift). GC off while timing."""
    for fn in fns.values():
        for _ in range(50):
            fn()  # warm caches and lazy imports
    times: dict[str, list[int]] = {name: [] for name in fns}
    per_round: dict[str, list[tuple[float, float]]] = {name: [] for name in fns}
    gc.disable()
    try:
        for _ in range(rounds):
            for name, fn in fns.items():
                got = []
                for _ in range(calls):
                    t0 = time.perf_counter_ns()
                    fn()
                    got.append(time.perf_counter_ns() - t0)
                times[name] += got
                got.sort()
                per_round[name].append((got[len(got) // 2], sum(got) / len(got)))
    finally:
        gc.enable()
    out = {}
    for name, ts in times.items():
        ts.sort()
        out[name] = {"median_us": round(ts[len(ts) // 2] / 1000, 2), "p90_us": round(ts[int(len(ts) * 0.9)] / 1000, 2),
                     "mean_us": round(sum(ts) / len(ts) / 1000, 2), "calls": len(ts)}
        if floor is not None:
            base = [m for m, _ in per_round[floor]]
            out[name]["ratio_median"] = round(median([m / b for (m, _), b in zip(per_round[name], base)]), 2)
            out[name]["ratio_mean"] = round(median([a / b for (_, a), b in zip(per_round[name], base)]), 2)
    return out


def bare_read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


class _StepClock:
    def __init__(self, start: float, step: float = 2.0):
        self.now, self.step_s = start, step

    def step(self) -> None:
        self.now += self.step_s

    def __call__(self) -> float:
        return self.now


def micro(calls: int, rounds: int) -> dict:
    clock = _StepClock(time.time())
    ticking = GuestProbe(LocalFiles("/proc"), clock=clock)
    ticking.prime()

    def tick():
        clock.step()  # the watcher's default interval: the slower files come on their cadence
        return ticking.sample(tick=True)
    probe = GuestProbe(LocalFiles("/proc"))
    probe.prime()
    files = LocalFiles("/proc")
    rounds_of = max(1, calls // 250)  # short rounds: the machine's drift is shared within each
    out = side_by_side({
        "bare_read_meminfo": lambda: bare_read("/proc/meminfo"),
        "guest_tick": tick,
        "guest_sample": probe.sample,
        "psutil_virtual_memory": psutil.virtual_memory,
        "localfiles_read_all7": lambda: files.read(FILES),
    }, 250, rounds * rounds_of, floor="bare_read_meminfo")
    # What the sample is made of: each file's bare read, its re-read on a kept descriptor, each parse.
    reads = {p: per_call_us(lambda p=p: bare_read(str(files.resolve(p))), calls // 2, rounds) for p in FILES}
    out["bare_read_each"] = reads
    out["kept_read_each"] = {p: per_call_us(lambda p=p: files.read([p]), calls // 2, rounds) for p in FILES}
    out["bare_read_all7_sum_us"] = round(sum(r["median_us"] for r in reads.values()), 2)
    texts = files.read(FILES)
    parsers = {
        "meminfo by the learnt layout (what a sample runs)": lambda: probe._meminfo(texts["proc/meminfo"], []),
        "parse_meminfo+fields (full: the first or an odd file)": lambda: guest_mod._from_meminfo(texts["proc/meminfo"], []),
        "cpu_busy_total (stat's first line)": lambda: procfs.cpu_busy_total(texts["proc/stat"]),
        "parse_pressure x2": lambda: (procfs.parse_pressure(texts["proc/pressure/memory"]),
                                      procfs.parse_pressure(texts["proc/pressure/io"])),
        "vmstat's three counters": lambda: guest_mod._from_vmstat(texts["proc/vmstat"], []),
        "buddyinfo's free-block sums": lambda: guest_mod._from_buddyinfo(texts["proc/buddyinfo"], 9, []),
    }
    out["parse_each"] = {k: per_call_us(fn, calls // 2, rounds) for k, fn in parsers.items()}
    out["file_sizes"] = {p: len(t or "") for p, t in texts.items()}
    out["cadence_s"] = dict(guest_mod.CADENCE)
    out["tick_files"] = list(guest_mod.QUICK_FILES)
    out["ratio_tick_to_bare_meminfo"] = out["guest_tick"]["ratio_mean"]
    out["ratio_sample_to_bare_meminfo"] = out["guest_sample"]["ratio_median"]
    out["ratio_psutil_to_bare_meminfo"] = out["psutil_virtual_memory"]["ratio_median"]
    return out


BEFORE_SCRIPT = """
import gc, json, sys, time
sys.path.insert(0, sys.argv[1])
from monitor.probes.guest import GuestProbe
from monitor.kernel.procfs import LocalFiles
rounds = int(sys.argv[2])
def bare():
    with open("/proc/meminfo", "rb") as fh:
        return fh.read()
now = [time.time()]
probe = GuestProbe(LocalFiles("/proc"), clock=lambda: now[0])
probe.prime()
def sample():
    now[0] += 2.0  # as the watcher's ticks come; an older probe reads every file each time
    return probe.sample()
fns = {"bare_read_meminfo": bare, "guest_sample": sample}
for fn in fns.values():
    for _ in range(50):
        fn()
times = {k: [] for k in fns}
per_round = {k: [] for k in fns}
gc.disable()
for _ in range(rounds):
    for k, fn in fns.items():
        got = []
        for _ in range(250):
            t0 = time.perf_counter_ns()
            fn()
            got.append(time.perf_counter_ns() - t0)
        times[k] += got
        got.sort()
        per_round[k].append((got[125], sum(got) / len(got)))
gc.enable()
def med(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]
out = {}
for k, ts in times.items():
    ts.sort()
    out[k] = {"median_us": round(ts[len(ts) // 2] / 1000, 2), "p90_us": round(ts[int(len(ts) * 0.9)] / 1000, 2),
              "mean_us": round(sum(ts) / len(ts) / 1000, 2), "calls": len(ts)}
base = [m for m, _ in per_round["bare_read_meminfo"]]
out["guest_sample"]["ratio_median"] = round(med([m / b for (m, _), b in zip(per_round["guest_sample"], base)]), 2)
out["guest_sample"]["ratio_mean"] = round(med([a / b for (_, a), b in zip(per_round["guest_sample"], base)]), 2)
print(json.dumps(out))
"""


def before(commit: str, rounds: int) -> dict:
    """``commit``'s GuestProbe.sample() against a bare meminfo read, side by side, in a process of its own."""
    rev = subprocess.run(["git", "rev-parse", "--short", commit], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="vmmemctl-before-") as tmp:
        archive = subprocess.run(["git", "archive", rev, "monitor"], cwd=REPO, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        done = subprocess.run([PYTHON, "-c", BEFORE_SCRIPT, tmp, str(rounds)], cwd=tmp, capture_output=True,
                              text=True, check=True)
    return {"commit": rev, **json.loads(done.stdout)}


def watcher_tick(ticks: int, tmp: Path) -> dict:
    """One Recorder.tick with a full history window behind it (default config), timed, and where it goes.

    A fake clock advances 2 s a tick so the policy's window (the longest rule's `for`, 5 min)
    fills as it does after 5 minutes of `vmmemctl watch`; the kernel files read are the real ones.
    """
    import cProfile
    import io
    import pstats

    from monitor.probes import probeset as probes_mod
    from monitor.config.schema import Config
    from monitor.notify import build_notifier
    from monitor.history.store import Store as _Store
    from monitor.watch.wiring import Wiring

    clock = _StepClock(time.time() - 2 * (ticks + 400))
    config = Config()
    p = probes_mod.build(config)
    p.guest = GuestProbe(p.files, clock=clock)
    p.guest.prime()
    watcher = Wiring(config, tmp / "tick.db").recorder(build_notifier(config.notify), clock=clock, probes=p)
    for _ in range(200):  # fill the policy's history window
        clock.step()
        watcher.tick()
    times = []
    for _ in range(ticks):
        clock.step()
        t0 = time.perf_counter_ns()
        watcher.tick()
        times.append(time.perf_counter_ns() - t0)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(ticks):
        clock.step()
        watcher.tick()
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(25)
    own = io.StringIO()
    pstats.Stats(profiler, stream=own).sort_stats("tottime").print_stats(12)
    watcher.close()
    times.sort()
    db = tmp / "tick.db"
    return {"median_us": round(times[len(times) // 2] / 1000, 1), "p90_us": round(times[int(len(times) * .9)] / 1000, 1),
            "ticks": ticks, "history_samples": len(_Store(db, readonly=True).recent_samples(
                __import__("monitor.policy.state", fromlist=["x"]).history_window(config), clock())),
            "profile_cumulative": _trim(text.getvalue()), "profile_tottime": _trim(own.getvalue()),
            "last_decision": watcher.last_decision.reason if watcher.last_decision else None}


def _trim(profile: str) -> str:
    lines = profile.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().startswith("ncalls")), 0)
    return "\n".join(line.replace(str(REPO) + "/", "").rstrip() for line in lines[start:] if line.strip())


# ------------------------------------------------------------------ processes


TUI_PRELUDE = """
import importlib.util, sys
try:
    import tui.app  # the real TUI, once it exists
    loaded = 'tui.app'
except ImportError:
    import textual.app, textual.widgets, rich  # its stack, when tui.app is not there yet
    loaded = 'textual.app+textual.widgets+rich (no tui.app yet)'
import textual
print('TUI prelude loaded:', loaded, file=sys.stderr, flush=True)
from monitor.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def commands(tmp: Path, glances: Path) -> dict[str, list[str]]:
    config = tmp / "empty.toml"
    config.write_text("# defaults\n")

    def watch(name: str) -> list[str]:
        return ["watch", "--interval", "2s", "--db", str(tmp / f"{name}.db"), "--config", str(config),
                "--log-file", str(tmp / f"{name}.log")]
    out = {
        "vmmemctl watch": [VMMEMCTL, *watch("watch")],
        "vmmemctl watch + TUI imports": [PYTHON, "-c", TUI_PRELUDE, *watch("watch-tui")],
        "glances --stdout (mem.used,mem.cached) -t 2": [str(glances / "bin/glances"), "--stdout",
                                                        "mem.used,mem.cached", "-t", "2"],
        "python sleeping (floor)": [PYTHON, "-c", "import time; time.sleep(1e9)"],
    }
    if shutil.which("btop") and shutil.which("script"):
        # btop 1.2 has no batch mode and no interval flag: it draws into a pty (script(1)) at its
        # default update_ms of 2000, with a fresh HOME so no config changes that.
        out[BTOP] = ["script", "-qc", "stty cols 120 rows 40; exec btop --utf-force", "/dev/null"]
    return out


BTOP = "btop --utf-force in a 120x40 pty (2 s, its default)"


def cpu_of_tree(pid: int) -> tuple[float, int]:
    """CPU seconds of a process and its live descendants (reaped ones are in cutime/cstime), and the
    largest peak RSS among them (btop's, not that of the script(1) that holds its pty)."""
    cpu, hwm = 0.0, 0
    for p in [pid, *descendants(pid)]:
        st = proc_stat(p)
        if st:
            cpu += st.cpu_s
            hwm = max(hwm, st.hwm)
    return cpu, hwm


def processes_round(duration: float, warmup: float, tmp: Path, glances: Path) -> dict:
    cmds = commands(tmp, glances)
    procs = {}
    for name, cmd in cmds.items():
        log = open(tmp / (name.split()[0] + f"-{len(procs)}.out"), "w")
        home = tmp / f"home-{len(procs)}"
        home.mkdir()
        env = {**os.environ, "HOME": str(home)} if name == BTOP else None
        procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.PIPE, cwd=REPO,
                                        env=env), log)
    start = time.time()
    time.sleep(warmup)
    warm = {name: (time.time(), cpu_of_tree(p.pid)[0]) for name, (p, _) in procs.items()}
    busy0 = _machine_busy()
    time.sleep(max(0.0, duration - warmup))
    out = {}
    busy1 = _machine_busy()
    for name, (p, log) in procs.items():
        t1 = time.time()
        cpu1, hwm = cpu_of_tree(p.pid)
        rss = (proc_stat(p.pid).rss if proc_stat(p.pid) else None)
        alive = p.poll() is None
        t0, cpu0 = warm[name]
        out[name] = {"cpu_percent_of_one_core": round(100 * (cpu1 - cpu0) / (t1 - t0), 4),
                     "cpu_percent_incl_startup": round(100 * cpu1 / (t1 - start), 4),
                     "startup_cpu_s": round(cpu0, 3), "peak_rss_bytes": hwm, "rss_end_bytes": rss,
                     "alive_at_end": alive, "measured_s": round(t1 - t0, 1)}
    for name, (p, log) in procs.items():
        for child in descendants(p.pid):  # btop under script(1): end it by its pid too
            try:
                os.kill(child, signal.SIGTERM)
            except ProcessLookupError:
                pass
        p.terminate()
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        log.close()
    out["_machine_busy_percent_of_all_cpus"] = round(100 * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]), 2)
    return out


def _machine_busy() -> tuple[int, int]:
    from common import cpu_jiffies

    return cpu_jiffies()


def summarise_rounds(rounds: list[dict]) -> dict:
    names = [k for k in rounds[0] if not k.startswith("_")]
    out = {}
    for name in names:
        rs = [r[name] for r in rounds]
        out[name] = {"cpu_percent_of_one_core_median": median([r["cpu_percent_of_one_core"] for r in rs]),
                     "cpu_percent_of_one_core_all": [r["cpu_percent_of_one_core"] for r in rs],
                     "cpu_percent_incl_startup_median": median([r["cpu_percent_incl_startup"] for r in rs]),
                     "startup_cpu_s_median": median([r["startup_cpu_s"] for r in rs]),
                     "peak_rss_bytes_max": max(r["peak_rss_bytes"] for r in rs),
                     "peak_rss_bytes_median": median([r["peak_rss_bytes"] for r in rs]),
                     "alive_all_rounds": all(r["alive_at_end"] for r in rs)}
    return out


# ------------------------------------------------------------------ report


def markdown(data: dict) -> str:
    m = data["micro"]
    a = data["args"]
    row = lambda name, r: f"| {name} | {r['median_us']:.1f} | {r['p90_us']:.1f} | {r['mean_us']:.1f} |"  # noqa: E731
    tick, cad = m["guest_tick"], m["cadence_s"]
    lines = [f"# Overhead of watching ({data['finished']})", "",
             machine_markdown(data["machine"], data["load_before"], data["load_after"]), "",
             "## One sample, in-process", "",
             f"{m['guest_sample']['calls']} calls each, side by side: rounds of 250 calls of each in turn, so the "
             "machine's drift moves them alike; ratios are the median over rounds of each round's figure over "
             "that round's bare read (GC off while timing).", "",
             "| what | median µs | p90 µs | mean µs | / bare read |", "|---|---|---|---|---|",
             row("bare read of /proc/meminfo (the floor)", m["bare_read_meminfo"]) + " 1 |",
             row("GuestProbe.sample(tick=True), the watcher's sample, 2 s apart", tick)
             + f" {tick['ratio_median']}x (median), **{tick['ratio_mean']}x (mean)** |",
             row("GuestProbe.sample(), every file read (a reclaim's before/after, status)", m["guest_sample"])
             + f" {m['guest_sample']['ratio_median']}x |",
             *([row(f"the same before ({m['before']['commit']}: every file each call; its own bare read "
                    f"{m['before']['bare_read_meminfo']['median_us']:.1f} µs)", m["before"]["guest_sample"])
                + f" {m['before']['guest_sample']['ratio_median']}x (median), {m['before']['guest_sample']['ratio_mean']}x (mean) |"]
               if m.get("before") else []),
             row("psutil.virtual_memory()", m["psutil_virtual_memory"]) + f" {m['psutil_virtual_memory']['ratio_median']}x |",
             row("LocalFiles.read(the 7 files), no parsing", m["localfiles_read_all7"])
             + f" {m['localfiles_read_all7']['ratio_median']}x |", "",
             f"The watcher's guest sample / bare meminfo read: **{m['ratio_tick_to_bare_meminfo']}x** over the "
             f"cadence (the mean; target <= 3x), {tick['ratio_median']}x for a tick that reads "
             f"{' and '.join('/' + f for f in m['tick_files'])} only (the median). A tick reads those two every "
             "time and the others when due, carrying their last values in between with the time they were read "
             "(`GuestSample.carried`): " + ", ".join(f"{k} every {v:g} s" for k, v in cad.items())
             + " (buddyinfo also on the tick after MemFree moved by 32 MiB).", "",
             "What a sample is made of (each file's bare open/read/close; its re-read on the descriptor "
             "LocalFiles keeps; each parse of its text):", "",
             "| part | median µs | kept: median µs | bytes |", "|---|---|---|---|"]
    for path, r in m["bare_read_each"].items():
        kept = m.get("kept_read_each", {}).get(path)
        lines.append(f"| read /{path} | {r['median_us']:.1f} | {kept['median_us']:.1f} | {m['file_sizes'][path]} |"
                     if kept else f"| read /{path} | {r['median_us']:.1f} | | {m['file_sizes'][path]} |")
    for name, r in m["parse_each"].items():
        lines.append(f"| {name} | {r['median_us']:.1f} | | |")
    t = data["watcher_tick"]
    kept = data.get("kept_from")  # --only-sample: parts 2 and 3 are the previous run's
    note = ([f"Not re-run (`--only-sample`): measured {kept['finished']} on kernel {kept['kernel']} "
             f"({kept.get('cpu_model', '?')}), {kept['damon']}, before the sample's cadence; "
             f"{kept['sample_figure']}.", ""] if kept else [])
    lines += ["", "## One watcher tick, in-process", "", *note,
              f"`Watcher.tick()` (sample, store, decide over the stored history, act) with default config and "
              f"{t['history_samples']} samples of history behind it (a full policy window): median "
              f"**{t['median_us']:.0f} µs**, p90 {t['p90_us']:.0f} µs, over {t['ticks']} ticks. At one tick per "
              f"2 s that is {t['median_us'] / 2e6 * 100:.3f} % of one core before the scheduler's own cost. "
              "Where it goes (cProfile, cumulative):", "", "```", *t["profile_cumulative"].splitlines()[:22], "```",
              "", "Own time (tottime):", "", "```", *t["profile_tottime"].splitlines()[:14], "```"]
    a = kept["args"] if kept else a
    lines += ["", f"## The watcher as a process ({a['rounds']} round(s) of {a['duration']:g} s, all side by side; "
              f"CPU measured after a {a['warmup']:g} s warm-up)", "", *note,
              "| process | CPU % of one core (median) | per round | incl. startup | startup CPU s | peak RSS (max) |",
              "|---|---|---|---|---|---|"]
    for name, r in data["processes"].items():
        lines.append(f"| {name} | {r['cpu_percent_of_one_core_median']:.3f} | "
                     f"{', '.join(f'{x:.3f}' for x in r['cpu_percent_of_one_core_all'])} | "
                     f"{r['cpu_percent_incl_startup_median']:.3f} | {r['startup_cpu_s_median']:.2f} | "
                     f"{r['peak_rss_bytes_max'] / MiB:.1f} MiB |" + ("" if r["alive_all_rounds"] else " (died!)"))
    busy = [r["_machine_busy_percent_of_all_cpus"] for r in data["rounds"]]
    lines += ["", f"Whole machine busy during the rounds (other engineers' load): {busy} % of all CPUs.",
              f"TUI prelude: {data.get('tui_prelude', '?')}", ""]
    return "\n".join(lines) + "\n"


def only_sample(args: argparse.Namespace, data: dict) -> int:
    """Part 1 measured now; parts 2 and 3 as the previous results file has them, with where they come from."""
    from common import RESULTS

    import json

    old = json.loads((RESULTS / f"{args.out}.json").read_text())
    for key in ("watcher_tick", "rounds", "processes", "tui_prelude"):
        data[key] = old.get(key)
    d = old["machine"].get("damon")
    m = old["micro"]
    data["kept_from"] = old.get("kept_from") or {  # a file written by --only-sample passes on where they came from
        "finished": old["finished"], "kernel": old["machine"]["kernel"], "args": old["args"],
        "cpu_model": old["machine"]["cpu_model"],
        "damon": "DAMON on" if d else "no DAMON",
        "sample_figure": (f"its guest sample was {m['guest_sample']['median_us']} µs, {m['ratio_sample_to_bare_meminfo']}x its bare "
         f"read of {m['bare_read_meminfo']['median_us']} µs"),
    }
    data["load_after"] = loadavg()
    data["finished"] = now_iso()
    js, md = write_results(args.out, data, markdown(data))
    print(md.read_text())
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=180.0, help="seconds each process round lasts")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=float, default=15.0, help="seconds of startup left out of the CPU %%")
    p.add_argument("--calls", type=int, default=2000, help="in-process calls per round")
    p.add_argument("--micro-rounds", type=int, default=5)
    p.add_argument("--ticks", type=int, default=300, help="in-process watcher ticks to time")
    p.add_argument("--skip-processes", action="store_true")
    p.add_argument("--only-sample", action="store_true",
                   help="only part 1 (one sample); parts 2 and 3 are kept from the previous results file, "
                        "marked with their date")
    p.add_argument("--before", metavar="COMMIT", help="also time COMMIT's guest sample the same way (side by side "
                   "with its own bare read, in a process of its own)")
    p.add_argument("--out", default="overhead")
    args = p.parse_args(argv)
    data = {"started": now_iso(), "machine": machine(), "load_before": loadavg(), "args": vars(args)}
    data["micro"] = micro(args.calls, args.micro_rounds)
    if args.before:
        data["micro"]["before"] = before(args.before, args.micro_rounds * max(1, args.calls // 250))
    print(f"guest tick {data['micro']['guest_tick']['mean_us']} us (mean), sample {data['micro']['guest_sample']['median_us']}"
          f" us, bare meminfo {data['micro']['bare_read_meminfo']['median_us']} us", file=sys.stderr, flush=True)
    if args.only_sample:
        return only_sample(args, data)
    with tempfile.TemporaryDirectory(prefix="vmmemctl-tick-") as tmp:
        data["watcher_tick"] = watcher_tick(args.ticks, Path(tmp))
    print(f"watcher tick {data['watcher_tick']['median_us']} us", file=sys.stderr, flush=True)
    data["rounds"] = []
    if not args.skip_processes:
        glances = ensure_venv(".venv-glances", ["glances"])
        for i in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="vmmemctl-overhead-") as tmp:
                data["rounds"].append(processes_round(args.duration, args.warmup, Path(tmp), glances))
                prelude = next(Path(tmp).glob("vmmemctl-1.out")).read_text()
                data["tui_prelude"] = next((line.split(":", 1)[1].strip() for line in prelude.splitlines()
                                            if line.startswith("TUI prelude loaded")), prelude[-300:])
            print(f"round {i + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        data["processes"] = summarise_rounds(data["rounds"])
    else:
        data["processes"] = {}
    data["load_after"] = loadavg()
    data["finished"] = now_iso()
    js, md = write_results(args.out, data, markdown(data))
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
