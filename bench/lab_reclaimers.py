"""The baseline policies of bench/lab_policies.py, acting on the QEMU lab guest through its command channel.

    python bench/lab_reclaimers.py cron --every 60 --socket S [--socket S ...]
    python bench/lab_reclaimers.py wsl-dropcache --socket S ...
    python bench/lab_reclaimers.py wsl-gradual --socket S ...

Like bench/policies.py (the same policies on this machine's own kernel),
each prints one JSON line per event on stdout (flushed). They run on the
host beside the VM and reach into the guest as `wsl.exe -e` would: every
poll and every write is one channel call, and each call costs the guest CPU
(~0.07-0.09 s under TCG, measured by bench/lab_policies.py), which WSL's own
in-guest worker (mini_init) does not pay. The bench reports it.

WSL's autoMemoryReclaim after its rework (docs/wsl-facts.md; PR #41095/#41096,
text only, code not stored):

- idle: aggregate busy time (user+nice+system+irq+softirq over all CPUs) from
  the guest's /proc/stat, polled every 10 s; idle = the 12-poll (2 min)
  window filled, its mean <= 0.5 % and the last poll <= 0.5 % (as
  bench/policies.py does, after the stored mini_init code's window test).
  Each poll is one channel call spanning its 10 s (read, sleep, read), so a
  poll does not judge its own channel call (see POLL_SCRIPT); a poll period
  is 10 s plus one call (~0.15 s), so 12 polls take ~122 s.
- dropcache: on entering idle compact, `sync; echo 3 > drop_caches`, compact;
  once per idle period (a busy poll re-arms it).
- gradual: `"N swappiness=0" > /sys/fs/cgroup/memory.reclaim` in steps of
  MemTotal/32 clamped to 256 MiB..1 GiB "toward a 128 MB floor". The floor is
  read as the stored code's quantity, memory in use = MemTotal - MemFree
  (totalram - freeram), and the last step is cut to what is left above it;
  EAGAIN ends the loop as success; then compact. Once per idle period, and
  again in the same period only if use climbs 10 % above the floor (the stored
  code re-arms above 1.1x its floor). Falls back to dropcache without
  memory.reclaim.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from lab import vm as labvm  # noqa: E402  (lab/vm.py: the channel client, stdlib only)

MiB = 1 << 20
stopping = False


def emit(**event) -> None:
    print(json.dumps({"t": time.time(), **event}), flush=True)


def stop(*_: object) -> None:
    global stopping
    stopping = True


def sleep_until(deadline: float) -> None:
    while not stopping and time.time() < deadline:
        time.sleep(min(0.2, max(0.0, deadline - time.time())))


class Guest:
    def __init__(self, sockets: list[str]):
        self.sockets = sockets
        self.calls = 0

    def sh(self, script: str, timeout: float = 60.0) -> labvm.GuestResult:
        self.calls += 1
        return labvm.guest_call(self.sockets, ["sh", "-c", script], timeout=timeout)

    def read(self, path: str) -> str:
        self.calls += 1
        r = labvm.guest_call(self.sockets, ["cat", path], timeout=30.0)
        if r.returncode != 0:
            raise OSError(f"cat {path}: rc {r.returncode}")
        return r.stdout.decode()


def busy_total(stat_text: str) -> tuple[int, int]:
    first = stat_text.splitlines()[0].split()
    n = [int(x) for x in first[1:9]] + [0] * 8
    user, nice, system, idle, iowait, irq, softirq, steal = n[:8]
    busy = user + nice + system + irq + softirq
    return busy, busy + idle + iowait + steal


def meminfo(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if rest.split():
            out[key] = int(rest.split()[0]) * 1024
    return out


def cron(guest: Guest, every: float, level: str) -> None:
    start = time.time()
    n = 1
    while not stopping:
        sleep_until(start + n * every)
        if stopping:
            break
        t0 = time.time()
        r = guest.sh(f"sync; echo {level} > /proc/sys/vm/drop_caches")
        emit(event="reclaim", what=f"sync; echo {level} > drop_caches", rc=r.returncode,
             seconds=round(time.time() - t0, 3))
        n += 1


# One poll = one channel call that reads /proc/stat, sleeps the poll period and reads it again, so
# the window it judges holds no channel traffic of its own: a call costs the guest ~0.07-0.09 s of
# CPU under TCG, and a poller that read once per call would judge mostly itself (0.09 s per 10 s of
# 2 CPUs = 0.45 %, against WSL's 0.5 % idle threshold). The calls still happen (between windows);
# the bench's in-guest logger sees them.
POLL_SCRIPT = 'head -1 /proc/stat; sleep "$1"; head -1 /proc/stat'


def wsl(guest: Guest, mode: str, poll: float, window: float, threshold: float, floor: int) -> None:
    polls = max(1, round(window / poll))
    history: list[float] = []
    acted = False
    has_reclaim = mode == "gradual" and guest.sh("test -w /sys/fs/cgroup/memory.reclaim").returncode == 0
    if mode == "gradual" and not has_reclaim:
        emit(event="note", what="memory.reclaim not writable: gradual falls back to dropcache")
    last_end: tuple[int, int] | None = None
    while not stopping:
        try:
            guest.calls += 1
            r = labvm.guest_call(guest.sockets, ["sh", "-c", POLL_SCRIPT, "sh", f"{poll:g}"], timeout=poll + 30)
            first, second = (busy_total(line) for line in r.stdout.decode().splitlines()[:2])
        except (OSError, ValueError, labvm.LabError) as exc:
            emit(event="error", what=f"poll: {exc}")
            sleep_until(time.time() + 1)
            continue
        d_busy, d_total = second[0] - first[0], second[1] - first[1]
        busy = 100.0 * d_busy / d_total if d_total > 0 else 0.0
        # what a poller reading once per call would have judged (its own channel call included)
        naive = None
        if last_end is not None and second[1] > last_end[1]:
            naive = round(100.0 * (second[0] - last_end[0]) / (second[1] - last_end[1]), 3)
        last_end = second
        history = (history + [busy])[-polls:]
        mean = sum(history) / len(history)
        idle = len(history) == polls and mean <= threshold and busy <= threshold
        emit(event="poll", busy=round(busy, 3), busy_with_own_call=naive, window_mean=round(mean, 3), idle=idle,
             filled=len(history) == polls, calls=guest.calls)
        if stopping:
            break
        if not idle:
            acted = False
            continue
        if has_reclaim:
            # once per idle period, again only if use climbed 10 % above the floor (the stored code's re-arm)
            gradual(guest, floor, floor if not acted else int(1.1 * floor))
        elif not acted:
            t0 = time.time()
            guest.sh("echo 1 > /proc/sys/vm/compact_memory")  # on entering idle
            guest.sh("sync; echo 3 > /proc/sys/vm/drop_caches")
            guest.sh("echo 1 > /proc/sys/vm/compact_memory")  # after the reclaim
            emit(event="reclaim", what="compact; sync; echo 3 > drop_caches; compact",
                 seconds=round(time.time() - t0, 3))
        acted = True


def gradual(guest: Guest, floor: int, start_above: int) -> None:
    """One gradual episode toward the floor; nothing (and no event) unless use is above ``start_above``."""
    info = meminfo(guest.read("/proc/meminfo"))
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
        r = guest.sh(f"echo '{amount} swappiness=0' > /sys/fs/cgroup/memory.reclaim")
        info = meminfo(guest.read("/proc/meminfo"))
        after = info["MemTotal"] - info["MemFree"]
        steps.append({"asked": amount, "rc": r.returncode, "used_before": used, "used_after": after})
        used = after
        if r.returncode != 0:  # EAGAIN ("could not free that much"): done, as WSL treats it
            break
        if used <= floor:
            break
    guest.sh("echo 1 > /proc/sys/vm/compact_memory")
    emit(event="reclaim", what=f"memory.reclaim x{len(steps)} toward a {floor // MiB} MiB floor of use; compact",
         seconds=round(time.time() - t0, 3), steps=steps)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("policy", choices=["cron", "wsl-dropcache", "wsl-gradual"])
    p.add_argument("--socket", action="append", required=True, help="a lab channel socket (repeat)")
    p.add_argument("--every", type=float, default=60.0, help="cron: seconds between drops")
    p.add_argument("--drop", choices=["1", "3"], default="3", help="cron: what to write to drop_caches")
    p.add_argument("--poll", type=float, default=10.0, help="wsl: seconds between /proc/stat readings")
    p.add_argument("--window", type=float, default=120.0, help="wsl: sustained idle needed, seconds")
    p.add_argument("--threshold", type=float, default=0.5, help="wsl: idle = busy %% of all CPUs at most this")
    p.add_argument("--floor-mb", type=float, default=128.0, help="wsl gradual: floor of use, MB (10^6 bytes)")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    guest = Guest(args.socket)
    emit(event="start", policy=args.policy, args=vars(args))
    if args.policy == "cron":
        cron(guest, args.every, args.drop)
    else:
        wsl(guest, args.policy.removeprefix("wsl-"), args.poll, args.window, args.threshold,
            int(args.floor_mb * 1e6))
    emit(event="stop", calls=guest.calls)
    return 0


if __name__ == "__main__":
    sys.exit(main())
