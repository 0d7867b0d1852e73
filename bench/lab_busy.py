"""The lab case where the work never goes quiet (issue 26): `lab_policies.py --busy` runs it.

    sudo flock /tmp/vmmemctl-lab.lock .venv/bin/python bench/lab_policies.py --busy   # ~20 min
        writes bench/results/lab_busy.{json,md}

One 2 GiB lab guest (TCG, cgroup v2 with the memory controller, free page reporting), vmmemctl itself
inside it on a second disk (tests/lab/pyimage.py, as the lab tests run it). Per policy, one after
another, after an equalize (drop 3 + compact, the host RSS settled):

    editor  for the whole run, in its own group /sys/fs/cgroup/editor: re-read a 200 MiB region of
            /data/fill.bin every 5 s; per pass the group's own workingset_refault_file (memory.stat)
            before and after, and the pass's seconds
    idle    15 s with the editor running (the footprint "above idle" is measured from here)
    build   read 1 GiB of fill.bin once (dd) and exit; the build script notes the guest uptime when dd
            ends and, inside a `run` group, the group's memory.stat file every 0.5 s
    after   120 s from the build's exit (--after; the first run watched 60 s: lab_busy_after60.md)

Policies: run (`vmmemctl run -- <build>` in the guest, shipped defaults), run-cap (`run --cache-max
256MiB`), vmmemctl (the real `vmmemctl watch` on the host in host mode, shipped defaults plus
auto_reclaim: global), wsl-gradual and wsl-dropcache (bench/reclaimers.py through the channel), none.

Reported per policy: seconds from the build's exit until 90 % of what it added to the host RSS is back,
host MiB·s above the idle footprint (build start to --after s after its exit), the editor's re-read
(its group's refaults over the passes after the build started, and the slowest pass); for run-cap the
largest group cache seen during the build and the build's seconds against run's (no cap).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests/lab"))
import lab_guest as lg  # noqa: E402
import pyimage  # noqa: E402  (tests/lab/pyimage.py)
from common import MiB, fmt_bytes, integral, loadavg, machine, median, now_iso, rel, save_results  # noqa: E402
from lab import vm as labvm  # noqa: E402

POLICIES = ["run", "run-cap", "vmmemctl", "wsl-gradual", "wsl-dropcache", "none"]
CG = "/sys/fs/cgroup"
EDITOR_GROUP = f"{CG}/editor"
GUEST_CONFIG = '[reclaim]\nsettle = "0s"\n'  # shipped defaults; no settle (inside the guest there is no host to watch)

# The editor: lab_guest's HOT loop, counting its own group's refaults (memory.stat) instead of the VM's
# pgpgin (the build reads the disk at the same time).
EDITOR = lg._COMMON + r"""
# usage: editor.sh EVERY_CS SECONDS SKIP_MIB COUNT_MIB OUT  (moves itself into /sys/fs/cgroup/editor first)
echo $$ > /sys/fs/cgroup/editor/cgroup.procs || exit 1
every=$1; seconds=$2; skip=$3; count=$4; out=$5
rf() { r=0; while read -r k v; do [ "$k" = workingset_refault_file ] && { r=$v; break; }; done < /sys/fs/cgroup/editor/memory.stat; }
cs; end=$((now + seconds * 100)); next=$now
while :; do
    cs
    [ "$now" -ge "$end" ] && break
    up0=$up; rf; r0=$r
    dd if=/data/fill.bin of=/dev/null bs=1M skip="$skip" count="$count" 2>/dev/null
    cs; rf
    echo "pass $up0 $up $r0 $r" >> "$out"
    next=$((next + every))
    cs
    pause $((next - now))
done
"""

# The build: read MIB MiB once; note when dd ends (guest uptime) and, in a `run` group, its cache every 0.5 s.
BUILD = lg._COMMON + r"""
# usage: build.sh MIB OUT
mib=$1; out=$2; g=${VMMEMCTL_RUN_CGROUP:-}
read -r up _ < /proc/uptime; echo "start $up $g" >> "$out"
rm -f /tmp/bench/build.done
(dd if=/data/fill.bin of=/dev/null bs=1M count="$mib" 2>/dev/null; read -r up _ < /proc/uptime; echo "end $up" >> "$out"; : > /tmp/bench/build.done) &
while [ ! -e /tmp/bench/build.done ]; do
    if [ -n "$g" ]; then while read -r k v; do [ "$k" = file ] && { echo "file $v" >> "$out"; break; }; done < "$g/memory.stat"; fi
    pause 50
done
wait
"""


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class BusyLab:
    """The VM with the guest's Python disk attached; the channel calls lab_policies.Lab makes."""

    def __init__(self, args: argparse.Namespace, image: Path):
        import lab_policies as lp

        self.vm = labvm.LabVM(reporting=True, cgroup=True, memory=args.memory,
                              extra_qemu_args=["-drive", f"file={image},if=virtio,format=raw,readonly=on"])
        self.calls = 0
        self.run, self.sh = lp.Lab.run.__get__(self), lp.Lab.sh.__get__(self)
        self.start_script, self.stop_script = lp.Lab.start_script.__get__(self), lp.Lab.stop_script.__get__(self)
        self.uptime_offset = lp.Lab.uptime_offset.__get__(self)

    def start(self) -> None:
        self.vm.start()
        rc, out = self.vm.sh(pyimage.GUEST_SETUP, timeout=180)
        if rc != 0 or b"python ok" not in out:
            raise labvm.LabError(f"the guest's Python did not start: {out.decode(errors='replace')[-300:]}")
        for name, text in (("logger.sh", lg.LOGGER), ("editor.sh", EDITOR), ("build.sh", BUILD)):
            self.run(["sh", "-c", lg.INSTALL, "sh", name], stdin=text.encode(), check=True)
        self.sh(f"printf '{GUEST_CONFIG}' > /tmp/run/c.toml; mkdir -p {EDITOR_GROUP}; "
                f"grep -qw memory {CG}/cgroup.subtree_control || echo +memory > {CG}/cgroup.subtree_control")


def run_policy(lab: BusyLab, name: str, args: argparse.Namespace, tmp: Path, tag: str) -> dict:
    import lab_policies as lp

    log(f"{tag}: equalizing")
    settled = lp.settle(lab, args)
    tmp = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=tmp))
    policy = lp.Policy(name if name in ("vmmemctl", "wsl-gradual", "wsl-dropcache") else "none", args, lab, tmp)
    logfile, edfile, buildfile = (f"{lg.DIR}/{x}-{tag}.txt" for x in ("log", "editor", "build"))
    lab.sh(f"rm -f {logfile} {edfile} {buildfile}")
    total = int(args.baseline + args.after + 240)
    logger = lab.start_script("logger.sh", str(int(args.log_every * 100)), str(total), logfile)
    offset0 = lab.uptime_offset()
    marks = {"policy_start": time.time()}
    policy.start()
    editor = lab.start_script("editor.sh", str(int(args.hot_every * 100)), str(total), str(args.hot_skip_mib),
                              str(args.hot_mib), edfile)
    marks["editor_start"] = time.time()
    sampler = lg.RssSampler(lab.vm, policy)
    rss = sampler.rss
    run_out = None
    try:
        time.sleep(args.baseline)
        build = ["sh", f"{lg.DIR}/build.sh", str(args.cold_mib), buildfile]
        if name in ("run", "run-cap"):
            cap = ["--cache-max", args.cache_max] if name == "run-cap" else []
            build = pyimage.vmmemctl_argv("run", "--config", "/tmp/run/c.toml", "--db", f"/tmp/run/{tag}.db",
                                          "--json", *cap, "--", *build)
        log(f"{tag}: build ({args.cold_mib} MiB once)")
        marks["build_call"] = time.time()
        r = lab.run(build, timeout=900)
        marks["build_call_end"] = time.time()
        run_out = {"rc": r.returncode, "stderr": r.stderr.decode(errors="replace")[-6000:]}
        offset = lab.uptime_offset()
        lines = lab.sh(f"cat {buildfile}").splitlines()
        start_up = next(float(x.split()[1]) for x in lines if x.startswith("start "))
        end_up = next(float(x.split()[1]) for x in lines if x.startswith("end "))
        marks["build_start"], marks["build_end"] = start_up + offset, end_up + offset
        files = [int(x.split()[1]) for x in lines if x.startswith("file ")]
        wait = marks["build_end"] + args.after - time.time()
        log(f"{tag}: build took {end_up - start_up:.1f} s; after ({wait:.0f} s left)")
        time.sleep(max(0.0, wait))
        marks["end"] = time.time()
    finally:
        sampler.stop()
        events, cost = policy.stop_and_cost()
        lab.stop_script(editor)
    offset1 = lab.uptime_offset()
    lab.stop_script(logger)
    passes = []
    for line in lab.sh(f"cat {edfile}").splitlines():
        f = line.split()
        if len(f) == 5 and f[0] == "pass":
            passes.append({"t": round(float(f[1]) + offset1, 2), "read_s": round(float(f[2]) - float(f[1]), 2),
                           "refault_bytes": (int(f[4]) - int(f[3])) * 4096})
    guest = [{"t": round(g.up + offset1, 2), "page_cache": g.page_cache, "free": g.free}
             for g in lg.parse_log(lab.sh(f"cat {logfile}"))]
    lab.sh(f"rm -f {logfile} {edfile} {buildfile}")
    run = {"policy": name, "marks": marks, "settle": settled, "build": run_out, "group_file_samples": files,
           "clock_offset_drift_s": round(offset1 - offset0, 3), "events": events, "policy_cost": cost,
           "series": {"rss": [[round(t, 2), b] for t, b in rss], "guest": guest, "editor": passes}}
    if name in ("run", "run-cap"):
        run["reclaim"] = _json_in(run_out["stderr"])
    run["summary"] = summarise(run, args)
    log(f"{tag}: {json.dumps(run['summary'])}")
    shutil.rmtree(tmp, ignore_errors=True)
    return run


def _json_in(text: str) -> dict | None:
    """The reclaim JSON `run --json` printed on stderr, slimmed."""
    lines = text.splitlines()
    try:
        start = lines.index("{")
        end = start + lines[start:].index("}")
        data = json.loads("\n".join(lines[start:end + 1]))
    except ValueError:
        return None
    keep = ("stop_reason", "duration_s", "cgroup", "cgroup_page_cache_before_bytes", "cgroup_page_cache_after_bytes",
            "cgroup_freed_bytes", "notes", "steps")
    return {k: data[k] for k in keep if k in data}


def summarise(run: dict, args: argparse.Namespace) -> dict:
    m = run["marks"]
    rss = [(t, b) for t, b in run["series"]["rss"]]
    idle = median([b for t, b in rss if m["build_start"] - 6 <= t <= m["build_start"]]) or rss[0][1]
    at_end = next((b for t, b in rss if t >= m["build_end"]), rss[-1][1])
    added = at_end - idle
    goal90 = idle + 0.1 * added
    t90 = next((t for t, b in rss if t >= m["build_end"] and b <= goal90), None)
    edits = [p for p in run["series"]["editor"] if p["t"] >= m["build_start"]]
    before = [p for p in run["series"]["editor"][1:] if p["t"] < m["build_start"]]
    reread = sum(p["refault_bytes"] for p in edits)
    files = run["group_file_samples"]
    return {
        "rss_idle_bytes": idle,
        "rss_build_added_bytes": added,
        "rss_end_bytes": median([b for t, b in rss if t >= m["end"] - 5]),
        "host_90_after_build_exit_s": rel(t90, m["build_end"]),
        "host_mib_s_above_idle": round(integral([(t, (b - idle) / MiB) for t, b in rss], m["build_start"], m["end"])),
        "build_seconds": round(m["build_end"] - m["build_start"], 1),
        "editor_passes_during": len(edits),
        "editor_reread_bytes": reread,
        "editor_reread_share_of_set": round(reread / (args.hot_mib * MiB), 4),
        "editor_reread_share_of_reads": round(reread / (args.hot_mib * MiB * len(edits)), 5) if edits else None,
        "editor_pass_idle_median_s": median([p["read_s"] for p in before]),
        "editor_pass_median_s": median([p["read_s"] for p in edits]),
        "editor_pass_max_s": max((p["read_s"] for p in edits), default=None),
        "group_cache_max_bytes": max(files) if files else None,
        "reclaims": len([e for e in run["events"] if e.get("event") == "reclaim"
                         and e.get("status", "ok") not in ("skipped", "error")]),
        "wsl_polls": len([e for e in run["events"] if e.get("event") == "poll"]),
        "wsl_idle_polls": len([e for e in run["events"] if e.get("event") == "poll" and e.get("idle")]),
        "wsl_poll_busy_min": min((e["busy"] for e in run["events"] if e.get("event") == "poll"
                                  and e.get("busy") is not None), default=None),
        "run_reclaim_s": (run.get("reclaim") or {}).get("duration_s"),
        "run_stop_reason": (run.get("reclaim") or {}).get("stop_reason"),
    }


def _n(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _s(x) -> str:
    return "never" if x is None else f"{x:g} s"


def markdown(data: dict) -> str:
    a = data["args"]
    out = [f"# The work never goes quiet: lab ({now_iso() if 'finished' not in data else data['finished']})", "",
           f"{a['memory']} guest, TCG; an editor in /sys/fs/cgroup/editor re-reads {a['hot_mib']} MiB every "
           f"{a['hot_every']:g} s for the whole run; a build reads {a['cold_mib']} MiB once and exits; "
           f"{a['after']:g} s after its exit. One run per policy, in the order shown. `bench/lab_busy.py`.", "",
           "| policy | build s | the build's footprint on the host (RSS at its exit - idle) | 90 % back after build exit | host MiB·s above idle | "
           "editor re-read (its refaults) | editor pass median / max s (idle median) | reclaims |",
           "|---|---|---|---|---|---|---|---|"]
    for r in data["runs"]:
        s = r["summary"]
        out.append(f"| {r['policy']} | {s['build_seconds']:g} | {fmt_bytes(s['rss_build_added_bytes'])} | "
                   f"{_s(s['host_90_after_build_exit_s'])} | {s['host_mib_s_above_idle']} | "
                   f"{fmt_bytes(s['editor_reread_bytes'])} ({100 * s['editor_reread_share_of_set']:.2f} % of the set; "
                   f"{s['editor_passes_during']} passes) | {_n(s['editor_pass_median_s'])} / {_n(s['editor_pass_max_s'])} "
                   f"({_n(s['editor_pass_idle_median_s'])}) | {s['reclaims'] or '-'} |")
    out.append("")
    for r in data["runs"]:
        s = r["summary"]
        if r["policy"] in ("run", "run-cap"):
            rc = r.get("reclaim") or {}
            out.append(f"- {r['policy']}: the group's reclaim took {rc.get('duration_s')} s, stop "
                       f"`{rc.get('stop_reason')}`, {fmt_bytes(rc.get('cgroup_page_cache_before_bytes'))} -> "
                       f"{fmt_bytes(rc.get('cgroup_page_cache_after_bytes'))}; largest group cache seen during the "
                       f"build {fmt_bytes(s['group_cache_max_bytes'])} (sampled every 0.5 s)")
        if r["policy"].startswith("wsl-") and "wsl_polls" in s:
            out.append(f"- {r['policy']}: {s['wsl_polls']} idle polls, {s['wsl_idle_polls']} of them idle by WSL's "
                       f"test (<= 0.5 % busy), the least busy {s['wsl_poll_busy_min']} %; reclaims {s['reclaims']}")
        if r["policy"] == "vmmemctl":
            for e in r["events"]:
                if e.get("event") == "reclaim":
                    out.append(f"- vmmemctl (global): at +{e['t'] - r['marks']['build_end']:.0f} s after the build's "
                               f"exit (the event's end): {e['what']}")
    caps = [r for r in data["runs"] if r["policy"] == "run-cap"]
    plain = [r for r in data["runs"] if r["policy"] == "run"]
    if caps and plain:
        c, p = caps[0]["summary"], plain[0]["summary"]
        out.append(f"- --cache-max {a['cache_max']}: the build took {c['build_seconds']:g} s against "
                   f"{p['build_seconds']:g} s with no cap; its group held at most {fmt_bytes(c['group_cache_max_bytes'])}")
    out += ["", f"Wall time {data.get('wall_seconds', '?')} s; host load before {data.get('load_before')}."]
    return "\n".join(out) + "\n"


def main(args: argparse.Namespace) -> int:
    why = pyimage.available()
    if why:
        print(f"lab_policies --busy: {why}", file=sys.stderr)
        return 2
    ok, why = labvm.lab_status()
    if not ok:
        print(f"lab_policies --busy: the QEMU lab is not usable: {why}", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="vmmemctl-lab-busy-"))
    site = next((REPO / ".venv/lib").glob("python3*/site-packages"))
    image = pyimage.build(tmp, REPO, site)
    lab = BusyLab(args, image)
    data = {"started": now_iso(), "machine": machine(), "load_before": loadavg(), "args": vars(args), "runs": []}
    t0 = time.time()
    try:
        lab.start()
        names = [p.strip() for p in args.policies.split(",") if p.strip()] if args.policies != "default" else POLICIES
        for name in names:
            data["runs"].append(run_policy(lab, name, args, tmp, name))
            save_results(data, markdown)
    finally:
        lab.vm.stop()
    data["wall_seconds"] = round(time.time() - t0)
    js, md = save_results(data, markdown)
    print(md.read_text())
    shutil.rmtree(tmp, ignore_errors=True)
    return 0
