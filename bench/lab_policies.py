"""Giving memory back in the QEMU lab: reclaim policies measured by the VM's real footprint on the host.

    sudo .venv/bin/python bench/lab_policies.py        # ~45 min; writes bench/results/lab_policies.{json,md,png}
    sudo .venv/bin/python bench/lab_policies.py --case 4g --out lab_policies_4g   # 4 GiB guest, 300 MiB working set

bench/reclaim_policies.py runs on this machine's own kernel, which has no
cgroup v2 memory.reclaim, so neither WSL's `gradual` mode nor vmmemctl's
`gradual` method could run there. The lab guest (lab/: Debian's 6.12
cloud kernel, cgroup2 with memory.reclaim, virtio-balloon free page
reporting, TCG, 2 vCPUs, 2 GiB) has both, and a host-side footprint that
falls when the guest frees memory: the RSS of its QEMU process, named
vmmemWSL. One VM for the whole bench; per policy, one after another:

    equalize  drop 3 + compact in the guest, wait until the host RSS settles
    baseline  10 s    the policy's process is already running (as a daemon would be)
    cold      once    read 1 GiB of /data/fill.bin in the guest (a build)
    hot       90 s    re-read a 128 MiB region of fill.bin every 5 s (an editor and its LSP)
    quiet     160 s   nothing: the workload went quiet

Policies: none; cron (`sync; echo 3 > drop_caches` every 60 s through the
channel); WSL's dropcache and gradual as reworked in 2026-07, emulated from
the host through the channel (bench/reclaimers.py --socket); vmmemctl: the real
`vmmemctl watch` in host mode, shipped defaults plus auto_reclaim.

The host RSS is read every second (free for the guest). The guest is sampled
by a logger inside it (bench/lab_guest.py: shell builtins, no forks) whose
file is collected at the end: a channel call costs the guest ~0.07 s of CPU,
more than WSL's whole idle budget allows, so the bench makes none while the
workload is quiet.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))
import lab_guest as lg  # noqa: E402
from lab import vm as labvm  # noqa: E402  (lab/vm.py)
from common import (MiB, busy_total, fmt_bytes, integral, loadavg, machine,  # noqa: E402
                    median, now_iso, pct_text, plot, rel, rewrite_report, save_results, secs_text,
                    RECLAIMERS, VMMEMCTL, PolicyProcess, with_case)
from common import policy_medians as common_medians  # noqa: E402

POLICIES = ["none", "cron", "wsl-dropcache", "wsl-gradual", "vmmemctl"]


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ the guest


class Lab:
    """The VM and the bench's own channel calls (counted: each costs the guest CPU)."""

    def __init__(self, args: argparse.Namespace):
        self.vm = labvm.LabVM(reporting=True, cgroup=True, memory=args.memory)
        self.calls = 0

    def start(self) -> None:
        self.vm.start()
        for name, text in (("logger.sh", lg.LOGGER), ("hot.sh", lg.HOT)):
            self.run(["sh", "-c", lg.INSTALL, "sh", name], stdin=text.encode(), check=True)

    def run(self, argv: list[str], timeout: float = 60.0, stdin: bytes | None = None,
            check: bool = False) -> labvm.GuestResult:
        self.calls += 1
        r = self.vm.run(argv, timeout=timeout, stdin=stdin)
        if check and r.returncode != 0:
            raise labvm.LabError(f"{argv[:3]}... failed with {r.returncode}: {r.stderr.decode()[-300:]}")
        return r

    def sh(self, script: str, *args: str, timeout: float = 60.0, check: bool = True) -> str:
        return self.run(["sh", "-c", script, "sh", *args], timeout=timeout, check=check).stdout.decode()

    def start_script(self, name: str, *args: str) -> int:
        return int(self.sh(lg.START, name, *args).strip())

    def stop_script(self, pid: int) -> str:
        return self.sh(lg.STOP, str(pid)).strip()

    def uptime_offset(self) -> float:
        """host time - guest uptime (error ~ half a call, ~0.05 s)."""
        t0 = time.time()
        up = float(self.sh("cat /proc/uptime").split()[0])
        t1 = time.time()
        return (t0 + t1) / 2 - up

    def vmstat(self) -> dict[str, int]:
        return {k: int(v) for k, v in (line.split() for line in self.sh(lg.VMSTAT).splitlines())}

    def stat(self) -> tuple[int, int]:
        return busy_total(self.sh("head -1 /proc/stat"))

    def facts(self) -> dict:
        out = self.sh('uname -r; grep MemTotal /proc/meminfo; cat /sys/module/page_reporting/parameters/'
                      'page_reporting_order; cat /sys/kernel/mm/lru_gen/enabled 2>/dev/null || echo none; '
                      'test -w /sys/fs/cgroup/memory.reclaim && echo yes || echo no; nproc; '
                      'ls -l /data/fill.bin').splitlines()
        return {"kernel": out[0], "mem_total_bytes": int(out[1].split()[1]) * 1024, "page_reporting_order": out[2],
                "lru_gen": out[3], "memory_reclaim": out[4] == "yes", "cpus": int(out[5]),
                "fill_bytes": int(out[6].split()[4]), "memory": self.vm.memory, "accel": self.vm.accel}


def plan_runs(args: argparse.Namespace) -> list[tuple[str, int, str]]:
    """(MGLRU mode, repeat, policy) in order: every --mglru mode in turn, the policies interleaved in each;
    a policy given as NAME@MODE (vmmemctl@on) runs under that mode only, where it stands in the list."""
    modes = [m.strip() for m in args.mglru.split(",") if m.strip()]
    runs = []
    for repeat in range(1, args.repeat + 1):
        for mode_of_block in modes:
            for entry in args.policies.split(","):
                name, _, mode = entry.strip().partition("@")
                if mode and mode_of_block == modes[0]:
                    runs.append((mode, repeat, name))
                elif not mode:
                    runs.append((mode_of_block, repeat, name))
    return runs


def set_mglru(lab: Lab, mode: str) -> str:
    """MGLRU off (n: the classic active/inactive LRU, as WSL's kernel has) or on (y), or as it is (keep);
    returns what /sys/kernel/mm/lru_gen/enabled reads after."""
    path = "/sys/kernel/mm/lru_gen/enabled"
    if mode in ("off", "on"):
        lab.sh(f"echo {'n' if mode == 'off' else 'y'} > {path}")
    elif mode != "keep":
        raise SystemExit(f"lab_policies: --mglru takes off, on or keep, not {mode!r}")
    return lab.sh(f"cat {path} 2>/dev/null || echo none").strip()


def calibrate(lab: Lab, args: argparse.Namespace, cpus: int) -> dict:
    """What watching costs the guest: its idle floor, the bench's logger, one channel call."""
    log("calibrating: idle floor, logger, channel call")
    lab.sh(lg.EQUALIZE)
    secs = int(args.calibrate_seconds)
    text = lab.sh(f"head -1 /proc/stat; sleep {secs}; head -1 /proc/stat", timeout=secs + 30)
    a, b = (busy_total(line) for line in text.splitlines())
    floor = 100 * (b[0] - a[0]) / (b[1] - a[1])
    out = f"{lg.DIR}/calibrate.log"
    pid = lab.start_script("logger.sh", str(int(args.log_every * 100)), str(secs + 10), out)
    time.sleep(secs + 2)
    rows = lg.parse_log(lab.sh(f"cat {out}; rm -f {out}"))
    lab.stop_script(pid)
    logger = 100 * (rows[-1].busy - rows[0].busy) / (rows[-1].total - rows[0].total) if len(rows) > 1 else None
    calls = 20
    b0, t0 = lab.stat()
    for _ in range(calls):
        lab.run(["true"])
    b1, t1 = lab.stat()
    per_call = (b1 - b0) / (calls + 1) / 100  # jiffies (USER_HZ 100) -> CPU seconds; the second stat is a call too
    return {"idle_floor_busy_percent": round(floor, 3), "idle_with_logger_busy_percent": round(logger, 3),
            "logger_every_s": args.log_every, "channel_call_cpu_s": round(per_call, 4),
            "channel_call_busy_percent_at_10s": round(100 * per_call / (10 * cpus), 3),
            "channel_call_busy_percent_at_5s": round(100 * per_call / (5 * cpus), 3)}


# ------------------------------------------------------------------ the policies


class Policy(PolicyProcess):
    """A running policy beside the lab VM: vmmemctl in host mode, the baselines through the channel."""

    gradual = True  # the lab guest has memory.reclaim, reached through the channel

    def __init__(self, name: str, args: argparse.Namespace, lab: Lab, tmp: Path):
        super().__init__(name, tmp)
        self.args, self.lab = args, lab

    def command(self) -> list[str] | None:
        sockets = [a for s in self.lab.vm.sockets for a in ("--socket", s)]
        if self.name == "cron":
            return [*RECLAIMERS, "cron", "--every", str(self.args.cron_every), *sockets]
        if self.name in ("wsl-dropcache", "wsl-gradual"):
            return [*RECLAIMERS, self.name, *sockets]
        if self.name == "vmmemctl":
            self.config_path.write_text(vmmemctl_config(self.lab.vm, self.args.vmmemctl_interval))
            return [*VMMEMCTL, "watch", "--db", str(self.db), "--config", str(self.config_path),
                    "--log-file", str(self.tmp / "vmmemctl.log")]
        return None

    def stop_and_cost(self) -> tuple[list[dict], dict]:
        """Its events (reclaim data slimmed) and what watching cost: guest samples or channel calls."""
        events = self.stop()
        for e in events:
            if "data" in e:
                e["data"] = _slim(e["data"])
        if self.name == "vmmemctl":
            import sqlite3

            con = sqlite3.connect(self.db)
            samples = con.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
            con.close()
            return events, {"guest_samples": samples}
        calls = [e.get("calls") for e in events if e.get("event") == "stop"]
        return events, ({"channel_calls": calls[-1]} if calls else {})


def _slim(data: dict | None) -> dict | None:
    """A reclaim event's data without the full guest samples."""
    if not data:
        return data
    keep = ("method", "methods_run", "steps", "notes", "duration_s", "freed_bytes", "page_cache_before_bytes",
            "page_cache_after_bytes", "host_before_bytes", "host_after_bytes", "host_returned_bytes", "host_return_s",
            "host_trace", "error")
    return {k: data[k] for k in keep if k in data}


def vmmemctl_config(vm: labvm.LabVM, interval: float) -> str:
    """Host mode against the lab VM; auto_reclaim on; every rule, gate and method as shipped."""
    return ("# bench/lab_policies.py: vmmemctl in host mode, shipped defaults plus auto-reclaim\n"
            f"[guest]\nexec = {json.dumps(vm.exec_prefix)}\n"
            f'[host]\nsource = "process"\nprocess = "{vm.pid}"\n'
            f'[sampling]\ninterval = "{interval:g}s"\n'
            "[policy]\nauto_reclaim = true\n")


# ------------------------------------------------------------------ one run


def settle(lab: Lab, args: argparse.Namespace) -> dict:
    """Drop + compact in the guest, then wait until the host RSS stops falling (6 s within 2 MiB)."""
    t0 = time.time()
    lab.sh(lg.EQUALIZE)
    seen = []
    while time.time() - t0 < args.settle_max:
        seen.append(lab.vm.rss_bytes())
        last = seen[-7:]
        if len(last) == 7 and max(last) - min(last) <= 2 * MiB:
            break
        time.sleep(1)
    return {"seconds": round(time.time() - t0, 1), "rss_bytes": seen[-1], "settled": len(seen[-7:]) == 7 and
            max(seen[-7:]) - min(seen[-7:]) <= 2 * MiB}


def run_policy(lab: Lab, name: str, args: argparse.Namespace, tmp: Path, tag: str) -> dict:
    log(f"{tag}: equalizing")
    settled = settle(lab, args)
    tmp = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=tmp))  # a fresh history and state for every run
    policy = Policy(name, args, lab, tmp)
    logfile, hotfile = f"{lg.DIR}/log-{tag}.txt", f"{lg.DIR}/hot-{tag}.txt"
    lab.sh(f"rm -f {logfile} {hotfile}")
    total_s = int(args.baseline + args.hot_seconds + args.quiet_seconds + 180)
    logger = lab.start_script("logger.sh", str(int(args.log_every * 100)), str(total_s), logfile)
    offset0 = lab.uptime_offset()
    vmstat = {"start": lab.vmstat()}
    calls0 = lab.calls
    load_before = loadavg()
    marks: dict[str, float] = {"policy_start": time.time()}
    policy.start()

    sampler = lg.RssSampler(lab.vm, policy)
    rss = sampler.rss
    try:
        time.sleep(args.baseline)
        log(f"{tag}: cold read of {args.cold_mib} MiB")
        marks["cold_start"] = time.time()
        r = lab.run(["dd", "if=/data/fill.bin", "of=/dev/null", "bs=1M", f"count={args.cold_mib}"], timeout=900)
        marks["cold_end"] = time.time()
        cold = {"rc": r.returncode, "seconds": round(marks["cold_end"] - marks["cold_start"], 2),
                "dd": r.stderr.decode().strip().splitlines()[-1:]}
        hot_pid = lab.start_script("hot.sh", str(int(args.hot_every * 100)), str(int(args.hot_seconds)),
                                   str(args.hot_skip_mib), str(args.hot_mib), hotfile)
        marks["hot_start"] = time.time()
        log(f"{tag}: hot phase ({args.hot_seconds:g} s)")
        time.sleep(max(0.0, marks["hot_start"] + args.hot_seconds - time.time()))
        # one call that returns when the hot loop's last pass is done (it ends itself)
        ended = lab.sh('i=0; while kill -0 "$1" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.2; i=$((i+1)); done; '
                       'kill -0 "$1" 2>/dev/null && echo running || echo ended', str(hot_pid), timeout=90).strip()
        hot_stop = lab.stop_script(hot_pid) if ended != "ended" else "ended"
        marks["quiet"] = time.time()
        vmstat["quiet"] = lab.vmstat()
        calls_quiet = lab.calls
        log(f"{tag}: quiet ({args.quiet_seconds:g} s)")
        time.sleep(args.quiet_seconds)
        marks["end"] = time.time()
    finally:
        sampler.stop()
        events, cost = policy.stop_and_cost()
    offset1 = lab.uptime_offset()
    vmstat["end"] = lab.vmstat()
    logger_stop = lab.stop_script(logger)
    rows = lg.parse_log(lab.sh(f"cat {logfile}"))
    passes = lg.parse_hot(lab.sh(f"cat {hotfile}"))
    hot_end_up = next((float(line.split()[1]) for line in lab.sh(f"cat {hotfile}").splitlines()
                       if line.startswith("end ")), None)
    lab.sh(f"rm -f {logfile} {hotfile}")
    offset = (offset0 + offset1) / 2
    guest = [{"t": round(r.up + offset, 2), "page_cache": r.page_cache, "free": r.free, "active_file": r.active_file,
              "inactive_file": r.inactive_file, "busy": r.busy, "total": r.total} for r in rows]
    hot = [{"t": round(p.up + offset, 2), "read_s": p.read_s, "pgpgin_bytes": p.pgpgin_bytes,
            "refault_bytes": p.refault_bytes} for p in passes]
    if hot_end_up is not None:
        marks["hot_end_guest"] = hot_end_up + offset
    run = {"policy": name, "marks": marks, "settle": settled, "cold": cold, "hot_stop": hot_stop,
           "logger_stop": logger_stop, "vmstat": vmstat, "clock_offset_drift_s": round(offset1 - offset0, 3),
           "bench_channel_calls_in_quiet": lab.calls - calls_quiet - 0, "policy_cost": cost,
           "bench_channel_calls": lab.calls - calls0, "events": events, "decisions": policy.decisions,
           "load_before": load_before, "load_after": loadavg(),
           "series": {"rss": [[round(t, 2), b] for t, b in rss], "guest": guest, "hot": hot}}
    run["summary"] = summarise(run, args)
    log(f"{tag}: {short(run['summary'])}")
    if name != "vmmemctl":
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        run["db"] = str(policy.db)
    return run


# ------------------------------------------------------------------ numbers


def busy_between(guest: list[dict], start: float, end: float) -> float | None:
    rows = [g for g in guest if start <= g["t"] <= end]
    if len(rows) < 2 or rows[-1]["total"] <= rows[0]["total"]:
        return None
    return round(100 * (rows[-1]["busy"] - rows[0]["busy"]) / (rows[-1]["total"] - rows[0]["total"]), 3)


def summarise(run: dict, args: argparse.Namespace) -> dict:
    m, s = run["marks"], run["series"]
    rss = [(t, b) for t, b in s["rss"]]
    guest = s["guest"]
    hot_bytes = args.hot_mib * MiB
    base = median([b for t, b in rss if m["cold_start"] - args.baseline + 2 <= t <= m["cold_start"]]) or rss[0][1]
    at_cold_end = next((b for t, b in rss if t >= m["cold_end"]), rss[-1][1])
    cold_added = at_cold_end - base

    def back(f: float) -> float | None:
        """First time after the cold read when the RSS had given back f of what the cold read added
        (on top of the footprint before it plus the hot working set, which is meant to stay)."""
        goal = base + hot_bytes + (1 - f) * cold_added
        return next((t for t, b in rss if t >= m["cold_end"] and b <= goal), None)

    t50, t90 = back(0.5), back(0.9)
    end_rss = median([b for t, b in rss if t >= m["end"] - 5]) or rss[-1][1]
    quiet_rss = next((b for t, b in rss if t >= m["quiet"]), None)
    held = integral([(t, b / MiB) for t, b in rss], m["cold_start"], m["end"])
    held_above = integral([(t, (b - base) / MiB) for t, b in rss], m["cold_start"], m["end"])

    cache = [(g["t"], g["page_cache"]) for g in guest]
    cache_base = median([c for t, c in cache if t <= m["cold_start"]])
    cache_at = lambda when: next((c for t, c in cache if t >= when), cache[-1][1] if cache else None)  # noqa: E731
    hot = s["hot"]
    later = hot[1:]  # pass 0 is the first load of the working set, not a re-read
    own = [e for e in run["events"] if e.get("event") == "reclaim" and e.get("status", "ok") not in ("skipped", "error")]
    skipped = [e for e in run["events"] if e.get("event") == "reclaim" and e.get("status") == "skipped"]
    quiet_busy = [100 * (b["busy"] - a["busy"]) / (b["total"] - a["total"])
                  for a, b in zip(guest, guest[1:]) if a["t"] >= m["quiet"] and b["t"] <= m["end"]
                  and b["total"] > a["total"]]
    polls = [e for e in run["events"] if e.get("event") == "poll"]
    quiet_polls = [e["busy"] for e in polls if e["t"] >= m["quiet"] + args.log_every]
    return {
        "rss_base_bytes": base,
        "rss_cold_added_bytes": cold_added,
        "rss_at_quiet_bytes": quiet_rss,
        "rss_end_bytes": end_rss,
        "rss_peak_bytes": max(b for t, b in rss if t >= m["cold_start"]),
        "rss_mib_s": round(held),
        "rss_above_base_mib_s": round(held_above),
        "host_50_after_quiet_s": rel(t50, m["quiet"]),
        "host_90_after_quiet_s": rel(t90, m["quiet"]),
        "host_50_after_cold_end_s": rel(t50, m["cold_end"]),
        "host_90_after_cold_end_s": rel(t90, m["cold_end"]),
        "cold_seconds": run["cold"]["seconds"],
        "page_cache_base_bytes": cache_base,
        "page_cache_at_cold_end_bytes": cache_at(m["cold_end"]),
        "page_cache_at_quiet_bytes": cache_at(m["quiet"]),
        "page_cache_end_bytes": cache[-1][1] if cache else None,
        "page_cache_mib_s": round(integral([(t, c / MiB) for t, c in cache], m["cold_start"], m["end"])),
        "hot_passes": len(hot),
        "hot_first_load_bytes": hot[0]["pgpgin_bytes"] if hot else None,
        "hot_reread_bytes": sum(p["pgpgin_bytes"] for p in later),
        "hot_reread_fraction": round(sum(p["pgpgin_bytes"] for p in later) / hot_bytes, 3),
        "hot_refault_bytes": sum(p["refault_bytes"] for p in later),
        "hot_first_pass_s": hot[0]["read_s"] if hot else None,
        "hot_pass_median_s": median([p["read_s"] for p in later]),
        "hot_pass_max_s": max((p["read_s"] for p in later), default=None),
        "hot_read_total_s": round(sum(p["read_s"] for p in later), 2),
        "reclaims": len(own),
        "reclaims_skipped": len(skipped),
        "guest_drop_caches_writes": run["vmstat"]["end"]["drop_pagecache"] - run["vmstat"]["start"]["drop_pagecache"],
        "quiet_pgpgin_bytes": (run["vmstat"]["end"]["pgpgin"] - run["vmstat"]["quiet"]["pgpgin"]) * 1024,
        "guest_busy_baseline_percent": busy_between(guest, m["policy_start"], m["cold_start"]),
        "guest_busy_hot_percent": busy_between(guest, m["hot_start"], m["quiet"]),
        "guest_busy_quiet_percent": busy_between(guest, m["quiet"], m["end"]),
        "guest_busy_quiet_max_interval_percent": round(max(quiet_busy), 3) if quiet_busy else None,
        "wsl_polls": len(polls),
        "wsl_idle_polls": sum(1 for e in polls if e.get("idle")),
        "wsl_quiet_poll_busy_median": median(quiet_polls),
        "wsl_quiet_poll_busy_min": min(quiet_polls, default=None),
    }


def short(s: dict) -> str:
    return (f"host RSS peak {fmt_bytes(s['rss_peak_bytes'])}, end {fmt_bytes(s['rss_end_bytes'])}; 50%/90% back "
            f"{secs_text(s['host_50_after_quiet_s'])}/{secs_text(s['host_90_after_quiet_s'])} s after quiet; "
            f"{s['rss_above_base_mib_s']} MiB·s above base; hot re-read {fmt_bytes(s['hot_reread_bytes'])} "
            f"({s['hot_reread_fraction']:.0%}); reclaims {s['reclaims']}; guest busy hot "
            f"{pct_text(s['guest_busy_hot_percent'])}, quiet {pct_text(s['guest_busy_quiet_percent'])}")


# ------------------------------------------------------------------ report


MEDIAN_FIELDS = ("reclaims", "rss_peak_bytes", "rss_end_bytes", "rss_mib_s", "rss_above_base_mib_s",
                 "host_50_after_quiet_s", "host_90_after_quiet_s", "page_cache_at_quiet_bytes",
                 "page_cache_end_bytes", "page_cache_mib_s", "hot_reread_bytes", "hot_reread_fraction",
                 "hot_refault_bytes", "hot_pass_median_s", "hot_pass_max_s", "guest_busy_hot_percent",
                 "guest_busy_quiet_percent")


def policy_medians(data: dict) -> dict[str, dict]:
    return common_medians(data["runs"], MEDIAN_FIELDS, POLICIES)


def _damon(mach: dict) -> str:
    d = mach.get("damon")
    if not d:
        return "no DAMON on the host"
    return (f"DAMON proactive reclaim on the host ({d['action']} of unmapped file pages idle >= {d['min_age_s']:g} s): "
            "it does not touch the guest's RAM, which is QEMU's anonymous memory, so `none` keeps its footprint")


def _mib(n: float | None) -> str:
    return "n/a" if n is None else f"{n / MiB:.0f} MiB"


def markdown(data: dict) -> str:
    a, g, c = data["args"], data["guest"], data["calibration"]
    medians = policy_medians(data)
    data["medians"] = medians
    mach = data["machine"]
    lines = [
        f"# Giving memory back in the QEMU lab ({data['finished']})", "",
        f"Host: kernel {mach['kernel']}, {mach['cpus']} CPUs ({mach['cpu_model']}), {fmt_bytes(mach['mem_total_bytes'])}; "
        f"/proc/loadavg before `{data['load_before']}`, after `{data['load_after']}`; {_damon(mach)}. "
        f"Guest (lab/): kernel {g['kernel']}, {g['cpus']} vCPUs under QEMU {g['accel'].upper()}, "
        f"-m {g['memory']} (MemTotal {fmt_bytes(g['mem_total_bytes'])}), virtio-balloon free page reporting "
        f"(order {g['page_reporting_order']}), cgroup v2 memory.reclaim {'present' if g['memory_reclaim'] else 'absent'}, "
        f"MGLRU `{g['lru_gen']}` at boot{' (per run: see the note below)' if any(r.get('mglru', 'keep') != 'keep' for r in data['runs']) else ''}, no swap. The host footprint is the VmRSS of the QEMU process (named vmmemWSL), "
        "read every second.", "",
        f"Workload, in the guest: cold = `dd` {a['cold_mib']} MiB of /data/fill.bin once; hot = re-read "
        f"{a['hot_mib']} MiB of it (offset {a['hot_skip_mib']} MiB) every {a['hot_every']:g} s for {a['hot_seconds']:g} s, "
        f"backgrounded with setsid; quiet = {a['quiet_seconds']:g} s of nothing. Each policy starts from drop 3 + "
        f"compact in the guest and a settled host RSS, after {a['baseline']:g} s with its process running. "
        f"Runs interleaved, {a['repeat']} of each.", "",
        "**What watching costs this guest** (TCG, measured at the start): idle floor "
        f"{pct_text(c['idle_floor_busy_percent'])} busy (of all CPUs), with the bench's in-guest logger sampling every "
        f"{c['logger_every_s']:g} s {pct_text(c['idle_with_logger_busy_percent'])}; one channel call costs the guest "
        f"{c['channel_call_cpu_s'] * 1000:.0f} ms of CPU, so polling /proc/stat through it every 10 s (the WSL "
        f"emulation) adds {pct_text(c['channel_call_busy_percent_at_10s'])} and vmmemctl's sample every "
        f"{a['vmmemctl_interval']:g} s adds {pct_text(100 * c['channel_call_cpu_s'] / (a['vmmemctl_interval'] * g['cpus']))}."
        " WSL's idle threshold is 0.5 %.", "",
        "Medians per policy:", "",
        "| policy | runs | reclaims | host RSS peak | 50% / 90% of the cold footprint back (s after quiet) | "
        "host MiB·s above idle | host RSS at end | page cache at end | hot set re-read from disk | refaults | "
        "hot pass (median / max) | guest busy hot / quiet |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, md in medians.items():
        lines.append(
            f"| {name} | {md['runs']} | {md['reclaims']} | {_mib(md['rss_peak_bytes'])} | "
            f"{secs_text(md['host_50_after_quiet_s'])} / {secs_text(md['host_90_after_quiet_s'])} | "
            f"{md['rss_above_base_mib_s']:,} | {_mib(md['rss_end_bytes'])} | {_mib(md['page_cache_end_bytes'])} | "
            f"{_mib(md['hot_reread_bytes'])} ({md['hot_reread_fraction']:.0%}) | {_mib(md['hot_refault_bytes'])} | "
            f"{md['hot_pass_median_s']:.2f} / {md['hot_pass_max_s']:.2f} s | "
            f"{pct_text(md['guest_busy_hot_percent'])} / {pct_text(md['guest_busy_quiet_percent'])} |")
    lines += ["", "Every run:", "",
              "| run | reclaims | idle RSS | cold added | peak | at quiet | at end | 50% / 90% back (s after quiet) | "
              "MiB·s (above idle) | page cache at quiet / end | hot re-read (pgpgin) | refaults | hot pass median / max "
              "| guest busy base / hot / quiet |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in data["runs"]:
        s = run["summary"]
        lines.append(
            f"| {run['policy']} #{run['repeat']} | {s['reclaims']}"
            f"{' (+' + str(s['reclaims_skipped']) + ' skipped)' if s['reclaims_skipped'] else ''} | "
            f"{_mib(s['rss_base_bytes'])} | {_mib(s['rss_cold_added_bytes'])} | {_mib(s['rss_peak_bytes'])} | "
            f"{_mib(s['rss_at_quiet_bytes'])} | {_mib(s['rss_end_bytes'])} | "
            f"{secs_text(s['host_50_after_quiet_s'])} / {secs_text(s['host_90_after_quiet_s'])} | "
            f"{s['rss_mib_s']:,} ({s['rss_above_base_mib_s']:,}) | "
            f"{_mib(s['page_cache_at_quiet_bytes'])} / {_mib(s['page_cache_end_bytes'])} | "
            f"{_mib(s['hot_reread_bytes'])} ({s['hot_reread_fraction']:.0%}) | {_mib(s['hot_refault_bytes'])} | "
            f"{s['hot_pass_median_s']:.2f} / {s['hot_pass_max_s']:.2f} s | "
            f"{pct_text(s['guest_busy_baseline_percent'])} / {pct_text(s['guest_busy_hot_percent'])} / "
            f"{pct_text(s['guest_busy_quiet_percent'])} |")
    lines += ["", "50% / 90% back: the first second after the cold read when the host RSS was at most the idle RSS "
              "+ the hot working set + 50% (10%) of what the cold read added; negative = before the workload went "
              "quiet; \"never\" = not within the run. Hot set re-read = `pgpgin` during every pass after the first "
              "(the guest's disk reads; nothing else reads its disk); refaults = `workingset_refault_file` in those "
              "passes (a page dropped by drop_caches leaves no shadow entry, so drops do not show there).", "",
              f"![host RSS over time]({data['args']['out']}.png)", ""]
    lines += [f"Note: {n}" for n in data.get("notes", [])]
    for run in data["runs"]:
        s, m = run["summary"], run["marks"]
        lines.append(f"- **{run['policy']} #{run['repeat']}**: cold read {run['cold']['seconds']} s; hot passes "
                     f"{s['hot_passes']} (first load {_mib(s['hot_first_load_bytes'])} from disk in "
                     f"{s['hot_first_pass_s']} s); settled at {_mib(run['settle']['rss_bytes'])} in "
                     f"{run['settle']['seconds']} s; guest drop_caches writes {s['guest_drop_caches_writes']}"
                     + (f"; WSL polls {s['wsl_polls']}, idle {s['wsl_idle_polls']}, quiet-phase poll busy median "
                        f"{pct_text(s['wsl_quiet_poll_busy_median'])} (min {pct_text(s['wsl_quiet_poll_busy_min'])})"
                        if s["wsl_polls"] else "")
                     + (f"; channel calls by the policy: {run['policy_cost']}" if run["policy_cost"] else "") + ".")
        for e in run["events"]:
            if e.get("event") in ("reclaim", "error", "notify", "prompt"):
                lines.append(f"  - {e['event']} at +{e['t'] - m['cold_start']:.0f} s after cold start "
                             f"({_phase_at(m, e['t'])}): {str(e.get('what', ''))[:200]}")
        for d in run.get("decisions", []):
            lines.append(f"  - decision +{d['t'] - m['cold_start']:.0f} s ({_phase_at(m, d['t'])}): {d['action']}: "
                         f"{d['reason'][:240]}")
    return "\n".join(lines) + "\n"


def _phase_at(m: dict, t: float) -> str:
    for phase, end in (("baseline", m["cold_start"]), ("cold", m["cold_end"]), ("hot", m["quiet"])):
        if t < end:
            return phase
    return "quiet"


# ------------------------------------------------------------------ main


# Named cases (issue 11): --case sets the guest and the workload; explicit flags still win.
CASES = {
    "2g": dict(memory="2G", cold_mib=1024, hot_mib=128, hot_skip_mib=1280),  # the original lab case
    "4g": dict(memory="4G", cold_mib=1100, hot_mib=300, hot_skip_mib=1200),  # 4 GiB guest, 300 MiB working set
    # issue 25: a working set well above the floor (448 MiB in a 4 GiB guest, floor 205 MiB), re-read every
    # 5 s (the lab's fill.bin is 1.5 GiB: 1 GiB cold + 448 MiB hot, disjoint)
    "ws448": dict(memory="4G", cold_mib=1024, hot_mib=448, hot_skip_mib=1088),
    # issue 25: a 300 MiB working set re-read only every 30 s, for 4 min (8 passes)
    "slow30": dict(memory="4G", cold_mib=1024, hot_mib=300, hot_skip_mib=1200, hot_every=30.0, hot_seconds=240.0),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", choices=sorted(CASES), help="a named guest + workload: 2g (2 GiB, 128 MiB working "
                   "set), 4g (4 GiB, read 1.1 GiB once, 300 MiB working set), ws448 (4 GiB, 1 GiB once, 448 MiB "
                   "re-read every 5 s) or slow30 (4 GiB, 1 GiB once, 300 MiB re-read every 30 s for 4 min); run each "
                   "with its own --out")
    p.add_argument("--policies", default=",".join(POLICIES), help=f"comma-separated subset of {','.join(POLICIES)}")
    p.add_argument("--repeat", type=int, default=2, help="run the policy list this many times (interleaved)")
    p.add_argument("--memory", default="2G", help="guest RAM (QEMU -m)")
    p.add_argument("--cold-mib", type=int, default=1024)
    p.add_argument("--hot-mib", type=int, default=128)
    p.add_argument("--hot-skip-mib", type=int, default=1280, help="where in fill.bin the working set starts")
    p.add_argument("--hot-every", type=float, default=5.0)
    p.add_argument("--hot-seconds", type=float, default=90.0)
    p.add_argument("--quiet-seconds", type=float, default=160.0)
    p.add_argument("--baseline", type=float, default=10.0)
    p.add_argument("--settle-max", type=float, default=45.0)
    p.add_argument("--log-every", type=float, default=5.0, help="the in-guest logger's period, s")
    p.add_argument("--calibrate-seconds", type=float, default=30.0, help="length of each idle measurement")
    p.add_argument("--cron-every", type=float, default=60.0)
    p.add_argument("--vmmemctl-interval", type=float, default=5.0, help="vmmemctl's guest sampling interval, s")
    p.add_argument("--mglru", default="keep", help="comma-separated MGLRU modes to run the policies under: off "
                   "(write n to /sys/kernel/mm/lru_gen/enabled, the classic LRU, as WSL's kernel), on (y), keep "
                   "(as the guest booted: on)")
    p.add_argument("--busy", action="store_true", help="issue 26's case where the work never goes quiet "
                   "(bench/lab_busy.py): an editor in its own group re-reads 200 MiB every 5 s throughout, a build "
                   "reads 1 GiB once; policies run, run-cap, vmmemctl, wsl-gradual, wsl-dropcache, none")
    p.add_argument("--after", type=float, default=120.0, help="--busy: seconds watched after the build's exit")
    p.add_argument("--cache-max", default="256MiB", help="--busy: run-cap's `run --cache-max`")
    p.add_argument("--out", default="lab_policies", help="results file stem under bench/results/")
    p.add_argument("--report-only", action="store_true", help="rewrite OUT.md and the chart from OUT.json")
    return with_case(p.parse_args(argv), CASES, argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.busy:
        return _busy(args, argv)
    if args.report_only:
        return rewrite_report(args.out, markdown)
    if os.geteuid() != 0:
        print("lab_policies: run it as root (like the other benches; vmmemctl's reclaim lock is in /run/lock)",
              file=sys.stderr)
        return 2
    ok, why = labvm.lab_status()
    if not ok:
        print(f"lab_policies: the QEMU lab is not usable: {why} (build it with lab/build.sh)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="vmmemctl-lab-bench-"))
    lab = Lab(args)
    data = {"started": now_iso(), "machine": machine(), "load_before": loadavg(), "args": vars(args), "runs": []}
    t0 = time.time()
    try:
        lab.start()
        data["guest"] = lab.facts()
        data["calibration"] = calibrate(lab, args, data["guest"]["cpus"])
        log(f"calibration: {data['calibration']}")
        for mode, repeat, name in plan_runs(args):
            lru_gen = set_mglru(lab, mode)
            tag = f"{name}-{repeat}" if mode == "keep" else f"{name}-mglru-{mode}-{repeat}"
            run = run_policy(lab, name, args, tmp, tag)
            run["repeat"], run["mglru"], run["lru_gen"] = repeat, mode, lru_gen
            if mode != "keep":
                run["policy"] = f"{name}, MGLRU {mode}"
            data["runs"].append(run)
            save_results(data, markdown)
    finally:
        lab.vm.stop()
    data["load_after"] = loadavg()
    data["wall_seconds"] = round(time.time() - t0)
    if any(r.get("mglru", "keep") != "keep" for r in data["runs"]):
        data.setdefault("notes", []).append(
            "MGLRU per run (/sys/kernel/mm/lru_gen/enabled written before each): " + "; ".join(
                f"{r['policy']} #{r['repeat']}: `{r['lru_gen']}`" for r in data["runs"]))
    js, md = save_results(data, markdown)
    plot(js)
    print(md.read_text())
    log(f"vmmemctl histories kept in {tmp} (vmmemctl history --events --db {tmp}/vmmemctl-*/vmmemctl.db)")
    return 0


def _busy(args: argparse.Namespace, argv: list[str] | None) -> int:
    """--busy: bench/lab_busy.py with its own defaults for every option not given."""
    import lab_busy

    given = {a.split("=")[0].lstrip("-").replace("-", "_") for a in (argv if argv is not None else sys.argv[1:])}
    for key, value in dict(out="lab_busy", hot_mib=200, hot_skip_mib=1280, cold_mib=1024, baseline=15.0,
                           policies="default", memory="2G", after=120.0).items():
        if key not in given:
            setattr(args, key, value)
    if os.geteuid() != 0:
        print("lab_policies --busy: run it as root", file=sys.stderr)
        return 2
    return lab_busy.main(args)


if __name__ == "__main__":
    sys.exit(main())
