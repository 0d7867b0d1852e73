"""What the active/inactive split says about a re-read set, with MGLRU off and on (issue 25), in the QEMU lab.

The gradual controller's prior is the file cache's active list (``Active(file)``
in /proc/meminfo, ``active_file`` in memory.stat). With MGLRU those two fields
are its generations (the youngest two count as active), not the classic lists.
This reads, in one 2 GiB guest, for each mode: 1 GiB read once (cold), then a
300 MiB set read N more times with ``dd`` (read(2), as the benches' sets are);
what meminfo, the root's memory.stat and /sys/kernel/debug/lru_gen say; then
what they say after memory.reclaim steps (to ~430 MiB, then two of 64 MiB into the set) (does the kernel's own eviction move
the re-read set where the split shows it?), and what a re-read of the set then
brings back (workingset_refault_file).

Run as root, in the lab lock: ``flock /tmp/vmmemctl-lab.lock .venv/bin/python bench/lab_mglru.py``
(~3 min). Prints a table; ``--out`` writes it to bench/results/.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lab import vm as labvm  # noqa: E402

MiB = 1 << 20
COLD, HOT, HOT_SKIP = 1024, 300, 1200
KEYS = ("Active(file)", "Inactive(file)", "Cached")


def sh(vm: labvm.LabVM, script: str, timeout: float = 120.0) -> str:
    r = vm.run(["sh", "-c", script], timeout=timeout)
    if r.returncode != 0:
        raise SystemExit(f"lab_mglru: guest command failed ({r.returncode}): {script[:80]}: {r.stderr.decode()[-300:]}")
    return r.stdout.decode()


def look(vm: labvm.LabVM) -> dict:
    text = sh(vm, "cat /proc/meminfo; echo ==; cat /sys/fs/cgroup/memory.stat 2>/dev/null; echo ==; "
                  "cat /proc/vmstat; echo ==; cat /sys/kernel/debug/lru_gen 2>/dev/null || true")
    meminfo, stat, vmstat, lru = text.split("==\n")
    out = {}
    for line in meminfo.splitlines():
        k, _, v = line.partition(":")
        if k in KEYS:
            out[k] = int(v.split()[0]) * 1024
    for line in stat.splitlines():
        k, _, v = line.partition(" ")
        if k in ("active_file", "inactive_file"):
            out["memory.stat " + k] = int(v)
    for line in vmstat.splitlines():
        k, _, v = line.partition(" ")
        if k in ("workingset_refault_file", "workingset_activate_file", "pgactivate", "pgdeactivate"):
            out[k] = int(v) * 4096 if k.startswith("workingset") else int(v)
    # lru_gen: per memcg and node, one line per generation: "seq age_ms anon_pages file_pages"
    gens = []
    for line in lru.splitlines():
        parts = line.split()
        if len(parts) == 4 and all(p.lstrip("-").isdigit() for p in parts):
            gens.append((int(parts[0]), int(parts[1]), int(parts[3]) * 4096))
    out["lru_gen file MiB by gen (seq:age s:MiB)"] = " ".join(
        f"{s}:{a // 1000}:{f // MiB}" for s, a, f in gens if f >= MiB) or "-"
    return out


def row(label: str, seen: dict) -> str:
    return (f"| {label} | {seen['Active(file)'] // MiB} / {seen['Inactive(file)'] // MiB} | "
            f"{seen.get('memory.stat active_file', 0) // MiB} / {seen.get('memory.stat inactive_file', 0) // MiB} | "
            f"{seen['workingset_refault_file'] // MiB} | {seen['lru_gen file MiB by gen (seq:age s:MiB)']} |")


def run_mode(vm: labvm.LabVM, mode: str, reads: int) -> list[str]:
    sh(vm, f"echo {'y' if mode == 'on' else 'n'} > /sys/kernel/mm/lru_gen/enabled; sync; "
           "echo 3 > /proc/sys/vm/drop_caches")
    enabled = sh(vm, "cat /sys/kernel/mm/lru_gen/enabled").strip()
    rows = [f"| **MGLRU {mode}** (`{enabled}`) | | | | |"]
    sh(vm, f"dd if=/data/fill.bin of=/dev/null bs=1M count={COLD} 2>/dev/null", timeout=600)
    hot = f"dd if=/data/fill.bin of=/dev/null bs=1M skip={HOT_SKIP} count={HOT} 2>/dev/null"
    sh(vm, hot, timeout=300)
    rows.append(row(f"cold {COLD} MiB once, set {HOT} MiB read once", look(vm)))
    for _ in range(reads):
        time.sleep(2)
        sh(vm, hot, timeout=300)
    rows.append(row(f"... the set read {reads} more times", look(vm)))
    for sizes in ((512, 256, 128), (64, 64)):  # down to ~430 MiB (the set + ~130), then into the set
        for size in sizes:
            sh(vm, f"echo '{size}M swappiness=0' > /sys/fs/cgroup/memory.reclaim || true")
            before = look(vm)
            rows.append(row(f"after memory.reclaim {size}M", before))
        sh(vm, hot, timeout=300)
        after = look(vm)
        refaults = (after["workingset_refault_file"] - before["workingset_refault_file"]) // MiB
        rows.append(row(f"the set read again: {refaults} MiB of it refaulted", after))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reads", type=int, default=4, help="how many more times the set is read")
    p.add_argument("--out", help="write the table to bench/results/OUT.md")
    args = p.parse_args(argv)
    ok, why = labvm.lab_status()
    if not ok:
        print(f"lab_mglru: the QEMU lab is not usable: {why}", file=sys.stderr)
        return 2
    lines = ["| state | Active / Inactive(file) MiB (meminfo) | active_file / inactive_file MiB (root memory.stat) "
             "| refaults so far MiB | MGLRU generations with file pages (debugfs lru_gen) |", "|---|---|---|---|---|"]
    with labvm.LabVM(reporting=True, cgroup=True, memory="2G") as vm:
        sh(vm, "mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug || true")
        kernel = sh(vm, "uname -r").strip()
        for mode in ("off", "on"):
            lines += run_mode(vm, mode, args.reads)
    text = (f"# Active(file) and a re-read set, MGLRU off and on ({time.strftime('%Y-%m-%dT%H:%M:%S%z')})\n\n"
            f"Guest kernel {kernel}, 2 GiB. {COLD} MiB of /data/fill.bin read once with dd, then a {HOT} MiB set "
            f"(offset {HOT_SKIP} MiB) read {args.reads + 1} times with dd (read(2)), 2 s apart; then "
            "memory.reclaim steps at the root, then the set read once more.\n\n" + "\n".join(lines) + "\n")
    print(text)
    if args.out:
        (REPO / "bench" / "results" / f"{args.out}.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
