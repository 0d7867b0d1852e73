"""Shared by the benches: the machine they ran on, kernel counters, page-cache residency, results files.

Benches are run by hand (see bench/README.md); nothing here asserts a time.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
GiB = 1 << 30
MiB = 1 << 20
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


# ---------------------------------------------------------------- the machine


def read_text(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return None


def loadavg() -> str:
    return (read_text("/proc/loadavg") or "?").strip()


def machine() -> dict:
    """What the numbers were measured on, for the results files."""
    mem = read_text("/proc/meminfo") or ""
    total = next((int(line.split()[1]) * 1024 for line in mem.splitlines() if line.startswith("MemTotal:")), None)
    cpu = read_text("/proc/cpuinfo") or ""
    model = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("model name")), "?")
    damon = damon_scheme()
    return {
        "kernel": platform.release(), "cpus": os.cpu_count(), "cpu_model": model, "mem_total_bytes": total,
        "python": platform.python_version(),
        "page_reporting_order": (read_text("/sys/module/page_reporting/parameters/page_reporting_order") or "").strip()
        or None,
        "psi": os.path.exists("/proc/pressure/io"),
        "cgroup_v2_memory_reclaim": os.path.exists("/sys/fs/cgroup/memory.reclaim"),
        "damon": damon,
    }


def damon_scheme() -> dict | None:
    """The machine's DAMON proactive-reclaim scheme, read-only (it belongs to the machine, not to us)."""
    base = Path("/sys/kernel/mm/damon/admin/kdamonds/0")
    if (read_text(str(base / "state")) or "").strip() != "on":
        return None
    ctx = base / "contexts/0"
    scheme = ctx / "schemes/0"

    def num(rel: Path) -> int | None:
        text = read_text(str(rel))
        return int(text) if text and text.strip().isdigit() else None
    aggr_us = num(ctx / "monitoring_attrs/intervals/aggr_us")
    min_age = num(scheme / "access_pattern/age/min")
    return {
        "action": (read_text(str(scheme / "action")) or "").strip(),
        "min_age_s": min_age * aggr_us / 1e6 if aggr_us and min_age is not None else None,
        "max_accesses_per_aggregation": num(scheme / "access_pattern/nr_accesses/max"),
        "sample_s": (num(ctx / "monitoring_attrs/intervals/sample_us") or 0) / 1e6,
        "aggregation_s": (aggr_us or 0) / 1e6,
        "quota_bytes_per_reset": num(scheme / "quotas/bytes"),
        "quota_reset_s": (num(scheme / "quotas/reset_interval_ms") or 0) / 1e3,
        "quota_ms_per_reset": num(scheme / "quotas/ms"),
    }


def vmstat() -> dict[str, int]:
    out = {}
    for line in (read_text("/proc/vmstat") or "").splitlines():
        name, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[name] = int(value)
    return out


def busy_total(stat_text: str, user_only: bool = False) -> tuple[int, int]:
    """(busy, total) jiffies from /proc/stat's aggregate line: the one parser of the benches.
    busy = user+nice+system+irq+softirq (WSL's reworked idle test), or user alone (its older one)."""
    first = (stat_text or "cpu 0 0 0 0").splitlines()[0].split()
    n = [int(x) for x in first[1:9]] + [0] * 8
    user, nice, system, idle, iowait, irq, softirq, steal = n[:8]
    busy = user + nice + system + irq + softirq
    return (user if user_only else busy), busy + idle + iowait + steal


def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) of this machine now."""
    return busy_total(read_text("/proc/stat") or "")


def meminfo_bytes(text: str) -> dict[str, int]:
    """/proc/meminfo as bytes per field."""
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if rest.split():
            out[key] = int(rest.split()[0]) * 1024
    return out


# ---------------------------------------------------------------- page-cache residency


class _Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _CacheStat(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in ("nr_cache", "nr_dirty", "nr_writeback", "nr_evicted",
                                               "nr_recently_evicted")]


_libc = ctypes.CDLL(None, use_errno=True)
SYS_CACHESTAT = {"x86_64": 451, "aarch64": 451}.get(platform.machine())


@dataclass
class Residency:
    cached: int = 0  # bytes of the files in the page cache now
    evicted: int = 0  # bytes that were cached and have been evicted (kernel shadow entries)
    recently_evicted: int = 0  # ... of which would count as a refault if read now


def cachestat(fd: int) -> Residency:
    """cachestat(2) (Linux 6.5+) over a whole file: resident pages without mapping or touching them."""
    rng, cs = _Range(0, 0), _CacheStat()
    if _libc.syscall(SYS_CACHESTAT, fd, ctypes.byref(rng), ctypes.byref(cs), 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"cachestat: {os.strerror(err)}")
    return Residency(cs.nr_cache * PAGE, cs.nr_evicted * PAGE, cs.nr_recently_evicted * PAGE)


class FileSet:
    """A set of files kept open so their residency can be read cheaply (one syscall a file)."""

    def __init__(self, paths: list[Path]):
        self.paths = paths
        self.fds = [os.open(p, os.O_RDONLY) for p in paths]
        self.size = sum(os.fstat(fd).st_size for fd in self.fds)

    def residency(self) -> Residency:
        total = Residency()
        for fd in self.fds:
            r = cachestat(fd)
            total.cached += r.cached
            total.evicted += r.evicted
            total.recently_evicted += r.recently_evicted
        return total

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []


# ---------------------------------------------------------------- kernel knobs (root)


def drop_caches(level: str = "3") -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as fh:
        fh.write(level)


def compact_memory() -> None:
    with open("/proc/sys/vm/compact_memory", "w") as fh:
        fh.write("1")


# ---------------------------------------------------------------- processes


@dataclass
class ProcStat:
    cpu_s: float  # utime + stime of the process and its waited-for children
    rss: int
    hwm: int  # peak RSS (VmHWM)


def proc_stat(pid: int) -> ProcStat | None:
    stat = read_text(f"/proc/{pid}/stat")
    status = read_text(f"/proc/{pid}/status")
    if not stat or not status:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": a comm may hold spaces and parentheses
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    kb = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in status.splitlines()
          if line.startswith(("VmRSS:", "VmHWM:"))}
    return ProcStat((utime + stime + cutime + cstime) / CLK_TCK, kb.get("VmRSS", 0), kb.get("VmHWM", 0))


def descendants(pid: int) -> list[int]:
    """Live descendants of ``pid`` (a helper a process spawned counts toward its cost)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = read_text(f"/proc/{entry}/stat")
            if stat:
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def ensure_venv(name: str, packages: list[str]) -> Path:
    """bench/<name>: a venv of the bench's own (not a project dependency); created on first use."""
    venv = BENCH / name
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    probe = subprocess.run([str(python), "-m", "pip", "show", "-q", *packages], capture_output=True)
    if probe.returncode != 0:
        print(f"installing {' '.join(packages)} into {venv} ...", file=sys.stderr)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True)
    return venv


# ---------------------------------------------------------------- numbers and files


def integral(points: list[tuple[float, float | None]], start: float, end: float) -> float:
    """Trapezoid integral over [start, end] of (t, value) points (unknown values left out)."""
    pts = [(t, v) for t, v in points if start <= t <= end and v is not None]
    return sum((t1 - t0) * (a + b) / 2 for (t0, a), (t1, b) in zip(pts, pts[1:]))


def rel(t: float | None, start: float) -> float | None:
    """``t`` as seconds after ``start`` (None: never)."""
    return None if t is None else round(t - start, 1)


def median_none_last(xs: list) -> float | None:
    """Median where None ("never") sorts above every number."""
    ordered = sorted(xs, key=lambda x: (x is None, x or 0))
    return ordered[len(ordered) // 2] if ordered else None


def policy_medians(runs: list[dict], fields: tuple[str, ...], order: list[str]) -> dict[str, dict]:
    """Per policy (in ``order``), the number of runs and the median of each summary field."""
    out: dict[str, dict] = {}
    for run in runs:
        v = out.setdefault(run["policy"], {"runs": 0, **{k: [] for k in fields}})
        v["runs"] += 1
        for k in fields:
            v[k].append(run["summary"][k])
    rank = {n: i for i, n in enumerate(order)}
    return {name: {"runs": v["runs"], **{k: median_none_last(v[k]) for k in fields}}
            for name, v in sorted(out.items(), key=lambda kv: rank.get(kv[0], 99))}


def pct_text(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}%"


def secs_text(x: float | None) -> str:
    return "never" if x is None else f"{x:g}"


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "n/a"
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f} B"


def write_results(stem: str, data: dict, markdown: str) -> tuple[Path, Path]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    js, md = RESULTS / f"{stem}.json", RESULTS / f"{stem}.md"
    js.write_text(json.dumps(data, indent=1) + "\n")
    md.write_text(markdown)
    return js, md


def log_decision(decisions: list[dict], db: Path, config_path: Path, now: float,
                 gradual: bool | None = None) -> None:
    """What vmmemctl's policy says now, and why: the pure decide() over the watcher's own history.

    Appended to `decisions` only when the reason's gist (its words without the numbers) changes.
    gradual: whether memory.reclaim is there for the watcher (None: look under the config's proc
    root, as a local watcher does; the lab's host-mode watcher reaches the guest's, so True)."""
    from monitor.config.schema import load_config
    from monitor.history.store import Store
    from monitor.kernel.privilege import MEMORY_RECLAIM
    from monitor.kernel.procfs import LocalFiles
    from monitor.policy.rules import Facts, decide
    from monitor.policy.state import history_window, load_state

    action = None
    try:
        config = load_config(config_path)
        with Store(db, readonly=True) as store:
            samples = store.recent_samples(history_window(config), now)
            if not samples:
                return
            if gradual is None:
                gradual = LocalFiles(config.general.proc_root).exists(MEMORY_RECLAIM)
            decision, _ = decide(samples, config, load_state(store), samples[-1].time,
                                 Facts(gradual_available=gradual))
        action, reason = decision.action, decision.reason
    except Exception as exc:  # a locked or half-written db: skip this look
        reason = f"(could not read: {exc})"
    if not decisions or decisions[-1]["reason_kind"] != reason_kind(reason):
        decisions.append({"t": now, "action": action, "reason": reason, "reason_kind": reason_kind(reason)})


VMMEMCTL = [str(REPO / ".venv/bin/python"), "-m", "monitor"]
PY = sys.executable
RECLAIMERS = [PY, str(BENCH / "reclaimers.py")]  # the baseline policies (cron, WSL's modes)
ENV = {**os.environ, "VMMEMCTL_CONFIG": ""}  # the watcher reads only the config the bench writes


class PolicyProcess:
    """A policy's process, started before the workload and stopped after the quiet phase; its
    events afterwards: vmmemctl's from its history, a baseline's from its JSON lines. A bench
    subclasses it with ``command()`` (None: the policy runs nothing, e.g. "none")."""

    stop_timeout = 30.0
    gradual: bool | None = None  # for log_decision: memory.reclaim there for the watcher (None: look)

    def __init__(self, name: str, tmp: Path):
        self.name, self.tmp = name, tmp
        self.proc: subprocess.Popen | None = None
        self.db = tmp / f"{name}.db"
        self.config_path = tmp / f"{name}.toml"
        self.decisions: list[dict] = []

    def command(self) -> list[str] | None:
        raise NotImplementedError

    def start(self) -> None:
        cmd = self.command()
        if cmd is None:
            return
        self.out = open(self.tmp / f"{self.name}.out", "w")
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=subprocess.STDOUT, cwd=REPO, env=ENV)

    def observe(self, now: float) -> None:
        """vmmemctl only: what its policy says now, and why."""
        if self.name == "vmmemctl" and self.db.exists():
            log_decision(self.decisions, self.db, self.config_path, now, gradual=self.gradual)

    def stop(self) -> list[dict]:
        """Stop it; its reclaims (and a baseline's polls) as events; an early exit is an error event."""
        if self.proc is None:
            return []
        early = self.proc.poll()
        events = [{"t": time.time(), "event": "error", "what": f"{self.name} exited early with code {early}"}] \
            if early is not None else []
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.out.close()
        if self.name == "vmmemctl":
            return events + [{"t": e["t"], "event": e["kind"], "status": e["status"], "rule": e["rule"],
                              "what": e["message"], "data": e.get("data")} for e in self.vmmemctl_events()]
        for line in (self.tmp / f"{self.name}.out").read_text().splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                events.append({"event": "output", "what": line})
        return events

    def vmmemctl_events(self) -> list[dict]:
        done = subprocess.run([*VMMEMCTL, "history", "--events", "--since", "2h", "--format", "json", "--db",
                               str(self.db), "--config", str(self.config_path)], capture_output=True, text=True,
                              cwd=REPO, env=ENV)
        return json.loads(done.stdout or "[]")


def reason_kind(reason: str) -> str:
    """A decision's reason without its changing numbers, to log only changes."""
    return "".join(c for c in reason if not c.isdigit() and c not in ".,")


def save_results(data: dict, markdown) -> tuple[Path, Path]:
    """Write a bench's JSON and its summary (markdown(data) -> str) under bench/results/, stamped finished now."""
    data.setdefault("load_after", loadavg())
    data["finished"] = now_iso()
    return write_results(data["args"]["out"], data, markdown(data))


def rewrite_report(stem: str, markdown) -> int:
    """--report-only: the summary and the chart again from bench/results/STEM.json."""
    js = RESULTS / f"{stem}.json"
    data = json.loads(js.read_text())
    write_results(stem, data, markdown(data))
    plot(js)
    return 0


def plot(js: Path) -> None:
    """The chart, drawn by bench/plot.py in bench/.venv-plot (matplotlib is not a project dependency)."""
    venv = ensure_venv(".venv-plot", ["matplotlib"])
    subprocess.run([str(venv / "bin/python"), str(BENCH / "plot.py"), str(js)], check=True)


def with_case(args, cases: dict[str, dict], argv: list[str] | None):
    """--case NAME: that case's values for every option not given on the command line."""
    if args.case:
        given = {a.split("=")[0].lstrip("-").replace("-", "_") for a in (argv if argv is not None else sys.argv[1:])}
        for key, value in cases[args.case].items():
            if key not in given:
                setattr(args, key, value)
    return args


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def machine_markdown(m: dict, load_before: str, load_after: str) -> str:
    d = m.get("damon")
    damon = (f"DAMON proactive reclaim on ({d['action']} of unmapped file pages idle >= {d['min_age_s']:g} s, "
             f"up to {fmt_bytes(d['quota_bytes_per_reset'])} per {d['quota_reset_s']:g} s)") if d else "no DAMON"
    return (f"Machine: Linux VM, kernel {m['kernel']}, {m['cpus']} CPUs ({m['cpu_model']}), "
            f"{fmt_bytes(m['mem_total_bytes'])} RAM, memory returned to the host by virtio-balloon free page "
            f"reporting (order {m['page_reporting_order']}); PSI {'on' if m['psi'] else 'off'}; "
            f"cgroup v2 memory.reclaim {'present' if m['cgroup_v2_memory_reclaim'] else 'absent'}; {damon}. "
            f"Python {m['python']}. Shared with other engineers' tests: /proc/loadavg before `{load_before}`, "
            f"after `{load_after}`.\n")
