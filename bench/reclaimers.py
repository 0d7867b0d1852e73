"""The baseline reclaim policies users have today, over a small kernel interface: this machine's
own files (root), or the QEMU lab guest through its command channel (``--socket``).

    python bench/reclaimers.py cron --every 120                    # `*/N * * * * sync; echo 3 > drop_caches`
    python bench/reclaimers.py wsl-dropcache [--poll 10 --window 120 --drop 3]
    python bench/reclaimers.py wsl-gradual --socket S [--socket S ...]   # in the lab guest

Each prints one JSON line per event on stdout (flushed), so a bench can count
reclaims and show why one did or did not happen. bench/reclaim_policies.py
runs them here, bench/lab_policies.py against the lab.

WSL's autoMemoryReclaim after its rework (docs/wsl-facts.md; PR #41095/#41096,
2026-07, text only, code not stored):

- idle: aggregate busy time (user+nice+system+irq+softirq over all CPUs),
  polled every 10 s; idle = the 12-poll (2 min) window filled, its mean
  <= 0.5 % and the last poll <= 0.5 % (after the stored mini_init code's
  window test). Here the worker runs at SCHED_IDLE, as mini_init's does. In
  the lab each poll is one channel call spanning its 10 s (read, sleep,
  read), so a poll does not judge its own call (a call costs the guest
  ~0.07-0.09 s of CPU under TCG, which mini_init, inside the guest, does not
  pay; bench/lab_policies.py reports it).
- dropcache: on entering idle compact, `sync; echo 3 > drop_caches`, compact;
  once per idle period (a busy poll re-arms it). The brief for these benches
  says drop 3; the stored code writes 1 (``--drop 1`` reproduces that).
- gradual: `"N swappiness=0" > /sys/fs/cgroup/memory.reclaim` in steps of
  MemTotal/32 clamped to 256 MiB..1 GiB "toward a 128 MB floor". The floor is
  read as the stored code's quantity, memory in use = MemTotal - MemFree
  (totalram - freeram), and the last step is cut to what is left above it;
  EAGAIN ends the loop as success; then compact. Once per idle period, and
  again in the same period only if use climbs 10 % above the floor (the stored
  code re-arms above 1.1x its floor). Falls back to dropcache without
  memory.reclaim.
- the stored, older version (user time only, 30 s polls, a 20-poll = 10 min
  window) is ``--poll 30 --window 600 --user-only --drop 1``; it cannot fire
  within a bench whose quiet phase is shorter than ten minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Protocol

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MiB, busy_total, meminfo_bytes, read_text  # noqa: E402

stopping = False


def emit(**event) -> None:
    print(json.dumps({"t": time.time(), **event}), flush=True)


def stop(*_: object) -> None:
    global stopping
    stopping = True


def sleep_until(deadline: float) -> None:
    while not stopping and time.time() < deadline:
        time.sleep(min(0.2, max(0.0, deadline - time.time())))


# ------------------------------------------------------------------ the kernel they act on


class Kernel(Protocol):
    calls: int  # channel calls made (0 for this machine)

    def stat_over(self, seconds: float) -> tuple[str, str]:
        """/proc/stat now and ``seconds`` later."""

    def meminfo(self) -> str: ...

    def write(self, path: str, value: str) -> int:
        """Write a kernel knob (``sync`` first for drop_caches); 0, or an error code."""

    def writable(self, path: str) -> bool: ...


class LocalKernel:
    """This machine (root)."""

    calls = 0

    def stat_over(self, seconds: float) -> tuple[str, str]:
        first = read_text("/proc/stat") or ""
        sleep_until(time.time() + seconds)
        return first, read_text("/proc/stat") or ""

    def meminfo(self) -> str:
        return read_text("/proc/meminfo") or ""

    def write(self, path: str, value: str) -> int:
        if path.endswith("drop_caches"):
            os.sync()
        try:
            with open(path, "w") as fh:
                fh.write(value)
            return 0
        except OSError as exc:
            return exc.errno or 1

    def writable(self, path: str) -> bool:
        return os.access(path, os.W_OK)


# One poll = one channel call that reads /proc/stat, sleeps the poll period and reads it again, so
# the window it judges holds no channel traffic of its own: a poller that read once per call would
# judge mostly itself (0.09 s per 10 s of 2 CPUs = 0.45 %, against WSL's 0.5 % idle threshold).
POLL_SCRIPT = 'head -1 /proc/stat; sleep "$1"; head -1 /proc/stat'


class LabKernel:
    """The lab guest through its channel (as `wsl.exe -e` reaches a distro); every call counted."""

    def __init__(self, sockets: list[str]):
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from lab import vm as labvm  # the channel client (lab/vm.py, stdlib only)

        self.labvm, self.sockets, self.calls = labvm, sockets, 0

    def _call(self, argv: list[str], timeout: float = 60.0):
        self.calls += 1
        return self.labvm.guest_call(self.sockets, argv, timeout=timeout)

    def stat_over(self, seconds: float) -> tuple[str, str]:
        lines = self._call(["sh", "-c", POLL_SCRIPT, "sh", f"{seconds:g}"], timeout=seconds + 30).stdout.decode()
        first, second = lines.splitlines()[:2]
        return first, second

    def meminfo(self) -> str:
        r = self._call(["cat", "/proc/meminfo"], timeout=30.0)
        if r.returncode != 0:
            raise OSError(f"cat /proc/meminfo: rc {r.returncode}")
        return r.stdout.decode()

    def write(self, path: str, value: str) -> int:
        sync = "sync; " if path.endswith("drop_caches") else ""
        return self._call(["sh", "-c", f'{sync}echo "$1" > "$2"', "sh", value, path]).returncode

    def writable(self, path: str) -> bool:
        return self._call(["test", "-w", path]).returncode == 0


DROP, COMPACT, RECLAIM = "/proc/sys/vm/drop_caches", "/proc/sys/vm/compact_memory", "/sys/fs/cgroup/memory.reclaim"


# ------------------------------------------------------------------ the policies


def cron(kernel: Kernel, every: float, level: str) -> None:
    start = time.time()
    n = 1
    while not stopping:
        sleep_until(start + n * every)
        if stopping:
            break
        t0 = time.time()
        rc = kernel.write(DROP, level)
        emit(event="reclaim", what=f"sync; echo {level} > drop_caches", rc=rc, seconds=round(time.time() - t0, 3))
        n += 1


def wsl(kernel: Kernel, mode: str, poll: float, window: float, threshold: float, floor: int, level: str,
        user_only: bool = False) -> None:
    polls = max(1, round(window / poll))
    history: list[float] = []
    acted = False
    has_reclaim = mode == "gradual" and kernel.writable(RECLAIM)
    if mode == "gradual" and not has_reclaim:
        emit(event="note", what="memory.reclaim not writable: gradual falls back to dropcache")
    while not stopping:
        try:
            first, second = (busy_total(text, user_only) for text in kernel.stat_over(poll))
        except (OSError, ValueError, IndexError) as exc:
            emit(event="error", what=f"poll: {exc}")
            sleep_until(time.time() + 1)
            continue
        d_busy, d_total = second[0] - first[0], second[1] - first[1]
        busy = 100.0 * d_busy / d_total if d_total > 0 else 0.0
        history = (history + [busy])[-polls:]
        mean = sum(history) / len(history)
        idle = len(history) == polls and mean <= threshold and busy <= threshold
        emit(event="poll", busy=round(busy, 3), window_mean=round(mean, 3), idle=idle,
             filled=len(history) == polls, calls=kernel.calls)
        if stopping:
            break
        if not idle:
            acted = False
            continue
        if has_reclaim:
            # once per idle period, again only if use climbed 10 % above the floor (the stored code's re-arm)
            gradual(kernel, floor, floor if not acted else int(1.1 * floor))
        elif not acted:
            t0 = time.time()
            kernel.write(COMPACT, "1")  # on entering idle
            kernel.write(DROP, level)
            kernel.write(COMPACT, "1")  # after the reclaim
            emit(event="reclaim", what=f"compact; sync; echo {level} > drop_caches; compact",
                 seconds=round(time.time() - t0, 3))
        acted = True


def gradual(kernel: Kernel, floor: int, start_above: int) -> None:
    """One gradual episode toward the floor; nothing (and no event) unless use is above ``start_above``."""
    info = meminfo_bytes(kernel.meminfo())
    total = info["MemTotal"]
    used = total - info["MemFree"]
    if used <= start_above:
        return
    step = min(max(total // 32, 256 * MiB), 1024 * MiB)
    t0 = time.time()
    steps = []
    for _ in range(64):
        amount = min(step, used - floor)
        if amount <= 0:
            break
        rc = kernel.write(RECLAIM, f"{amount} swappiness=0")
        info = meminfo_bytes(kernel.meminfo())
        after = info["MemTotal"] - info["MemFree"]
        steps.append({"asked": amount, "rc": rc, "used_before": used, "used_after": after})
        used = after
        if rc != 0 or used <= floor:  # EAGAIN ("could not free that much"): done, as WSL treats it
            break
    kernel.write(COMPACT, "1")
    emit(event="reclaim", what=f"memory.reclaim x{len(steps)} toward a {floor // MiB} MiB floor of use; compact",
         seconds=round(time.time() - t0, 3), steps=steps)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("policy", choices=["cron", "wsl-dropcache", "wsl-gradual"])
    p.add_argument("--socket", action="append", help="the lab guest's channel socket (repeat); none: this machine")
    p.add_argument("--every", type=float, default=120.0, help="cron: seconds between drops")
    p.add_argument("--drop", choices=["1", "3"], default="3", help="what to write to drop_caches")
    p.add_argument("--poll", type=float, default=10.0, help="wsl: seconds between /proc/stat readings")
    p.add_argument("--window", type=float, default=120.0, help="wsl: sustained idle needed, seconds")
    p.add_argument("--threshold", type=float, default=0.5, help="wsl: idle = busy %% of all CPUs at most this")
    p.add_argument("--user-only", action="store_true", help="wsl: the old version's user-time-only idle")
    p.add_argument("--floor-mb", type=float, default=128.0, help="wsl gradual: floor of use, MB (10^6 bytes)")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    kernel: Kernel = LabKernel(args.socket) if args.socket else LocalKernel()
    if not args.socket:
        try:  # mini_init's worker runs at SCHED_IDLE
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except OSError as exc:
            emit(event="note", what=f"SCHED_IDLE refused: {exc}")
    emit(event="start", policy=args.policy, args=vars(args))
    if args.policy == "cron":
        cron(kernel, args.every, args.drop)
    else:
        wsl(kernel, args.policy.removeprefix("wsl-"), args.poll, args.window, args.threshold,
            int(args.floor_mb * 1e6), args.drop, args.user_only)
    emit(event="stop", calls=kernel.calls)
    return 0


if __name__ == "__main__":
    sys.exit(main())
