"""Gradual against a re-read set with MGLRU on, one vmmemctl against another, in one QEMU lab guest (issue 25).

    sudo flock /tmp/vmmemctl-lab.lock .venv/bin/python bench/lab_mglru_gradual.py \
        --before /tmp/main-copy --out lab_issue25_mglru_ab          # ~20 min

lab_policies.py's ws448 case lets vmmemctl's rule decide when to reclaim; on a loaded machine the guest
is busier, the idle test waits, and the reclaim comes after the set's last pass (nothing left to re-read
it: 0 % either way). Here the reclaim is asked for while the set is being read: one guest (MGLRU on,
``y`` to /sys/kernel/mm/lru_gen/enabled), a SET MiB region of the data disk re-read every EVERY s in the
background, then for each run: drop the cache, wait a pass (the set is back), read COLD MiB once
beside it, wait two passes, and run ``vmmemctl reclaim --method gradual --json`` from the host in host
mode (shipped settings, a fresh history: no remembered working set) with either checkout, alternating.
What the set re-read is the data disk's sectors read from the reclaim's start until a whole pass began
after its end (nothing else reads that disk after the cold read), as tests/lab/test_slow_set_lab.py
counts it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lab import vm as labvm  # noqa: E402

MiB = 1 << 20


def sh(vm: labvm.LabVM, script: str, timeout: float = 120.0) -> str:
    r = vm.run(["sh", "-c", script], timeout=timeout)
    if r.returncode != 0:
        raise SystemExit(f"lab_mglru_gradual: guest command failed ({r.returncode}): {script[:80]}")
    return r.stdout.decode()


def passes(vm: labvm.LabVM, what: str = "passes") -> int:
    return int(sh(vm, f"cat /run/set-{what} 2>/dev/null || echo 0").strip() or 0)


def wait_passes(vm: labvm.LabVM, at_least: int, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while passes(vm) < at_least:
        if time.monotonic() > deadline:
            raise SystemExit(f"lab_mglru_gradual: the reader did not finish {at_least} passes")
        time.sleep(1)


def disk_read(vm: labvm.LabVM, dev: str) -> int:
    return int(sh(vm, f"cat /sys/class/block/{dev}/stat").split()[2]) * 512


def one(vm: labvm.LabVM, dev: str, checkout: Path, args: argparse.Namespace, tmp: Path, tag: str) -> dict:
    sh(vm, "sync; echo 3 > /proc/sys/vm/drop_caches")
    wait_passes(vm, passes(vm, "begun") + 1, 6 * args.every + 60)  # a whole pass after the drop: the set is back
    vm.fill_page_cache(args.cold)
    wait_passes(vm, passes(vm) + 2, 6 * args.every + 60)
    config = tmp / f"{tag}.toml"
    config.write_text(f'[guest]\nexec = {json.dumps(vm.exec_prefix)}\ntimeout = "30s"\n'
                      f'[host]\nsource = "process"\nprocess = "{vm.pid}"\n[reclaim]\ncompact = false\n')
    python = checkout / ".venv/bin/python"
    before = disk_read(vm, dev)
    t0 = time.monotonic()
    for _ in range(2):  # once more if the channel left the memory.reclaim check unanswered
        done = subprocess.run([str(python), "-m", "monitor", "reclaim", "--method", "gradual", "--json",
                               "--settle", "0", "--config", str(config), "--db", str(tmp / f"{tag}.db")],
                              capture_output=True, text=True, cwd=checkout, timeout=1200,
                              env={**os.environ, "VMMEMCTL_CONFIG": ""})
        if "the guest did not answer" not in done.stdout:
            break
    took = time.monotonic() - t0
    if done.returncode != 0:
        raise SystemExit(f"lab_mglru_gradual: {tag}: {done.stderr[-500:] or done.stdout[-500:]}")
    data = json.loads(done.stdout)
    wait_passes(vm, passes(vm, "begun") + 1, 6 * args.every + 60)
    reread = disk_read(vm, dev) - before
    return {"tag": tag, "checkout": str(checkout), "seconds": round(took, 1), "reread_bytes": reread,
            "stop": data["stop_reason"], "bound": data["lower_bound_bytes"], "source": data["lower_bound_source"],
            "mglru": data.get("mglru"), "cache_before": data["page_cache_before_bytes"],
            "cache_after": data["page_cache_after_bytes"], "notes": data["notes"],
            "steps": [(s["asked_bytes"], s["page_cache_before_bytes"], s["refault_bytes"], s["window_s"])
                      for s in data["gradual_steps"]]}


def row(r: dict, set_mib: int) -> str:
    steps = ", ".join(f"{a / MiB:.0f}" for a, *_ in r["steps"])
    crossing = next((f"{a / MiB:.1f} MiB at {c / MiB:.0f} MiB ({f / MiB:.1f} MiB refaults)"
                     for a, c, f, _ in r["steps"] if (f or 0) >= MiB), "none heard")
    return (f"| {r['tag']} | {r['source']} {r['bound'] / MiB:.0f} MiB | {r['cache_before'] / MiB:.0f} -> "
            f"{r['cache_after'] / MiB:.0f} MiB | {len(r['steps'])} ({steps}) | {crossing} | {r['stop']} | "
            f"{r['seconds']:.0f} s | **{r['reread_bytes'] / MiB:.1f} MiB ({100 * r['reread_bytes'] / (set_mib * MiB):.1f} %)** |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", type=Path, required=True, help="the other checkout (with its own .venv)")
    p.add_argument("--after", type=Path, default=REPO, help="this checkout (default)")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--memory", default="4G")
    p.add_argument("--set", type=int, default=448, help="the working set, MiB")
    p.add_argument("--set-skip", type=int, default=1088, help="where in fill.bin it starts, MiB")
    p.add_argument("--cold", type=int, default=1024, help="read once beside it, MiB")
    p.add_argument("--every", type=float, default=5.0, help="seconds between the set's passes")
    p.add_argument("--mglru", choices=["on", "off"], default="on")
    p.add_argument("--out", default="", help="write bench/results/OUT.md and OUT.json")
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="vmmemctl-lab-mglru-ab-"))
    results = []
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    with labvm.LabVM(reporting=True, cgroup=True, memory=args.memory) as vm:
        lru = sh(vm, f"p=/sys/kernel/mm/lru_gen/enabled; echo {'y' if args.mglru == 'on' else 'n'} > $p; cat $p").strip()
        kernel = sh(vm, "uname -r").strip()
        dev = os.path.basename(sh(vm, "awk '$2 == \"/data\" {print $1}' /proc/mounts").strip())
        reader = (f"n=0; while true; do echo $((n+1)) > /run/set-begun; dd if=/data/fill.bin of=/dev/null bs=1M "
                  f"skip={args.set_skip} count={args.set} 2>/dev/null; n=$((n+1)); echo $n > /run/set-passes; "
                  f"sleep {args.every}; done")
        sh(vm, f"setsid sh -c '{reader}' </dev/null >/dev/null 2>&1 &")
        wait_passes(vm, 1, 120)
        for i in range(1, args.repeat + 1):
            for name, checkout in (("before", args.before), ("after", args.after)):
                r = one(vm, dev, checkout, args, tmp, f"{name}-{i}")
                print(row(r, args.set), flush=True)
                results.append(r)
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    head = (f"# Gradual against a re-read set, MGLRU `{lru}`: before and after (issue 25) ({started})\n\n"
            f"Guest kernel {kernel}, {args.memory}, TCG. A {args.set} MiB set re-read every {args.every:g} s "
            f"(dd, read(2)); per run: drop the cache, a pass, {args.cold} MiB read once, two passes, then "
            "`vmmemctl reclaim --method gradual --json` in host mode with shipped settings and a fresh history; "
            "the set's re-read is the data disk's sectors read from the reclaim's start to a whole pass after "
            f"its end. before = {args.before}, after = {args.after}. Host loadavg {' '.join(load_before)} before, "
            f"{' '.join(load_after)} after.\n\n"
            "| run | bound | page cache | steps (MiB) | the step whose window heard refaults | stop | took | "
            "the set re-read |\n|---|---|---|---|---|---|---|---|\n")
    text = head + "\n".join(row(r, args.set) for r in results) + "\n"
    print(text)
    if args.out:
        out = REPO / "bench/results" / args.out
        out.with_suffix(".md").write_text(text)
        out.with_suffix(".json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                        "lru_gen": lru, "kernel": kernel, "runs": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
