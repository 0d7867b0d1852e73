"""A prepared history: days of a developer's WSL2 VM, for the README screenshot, the tests and the bench.

    python -m tui.demo demo.db [--days 7] [--step 2]
    vmmemctl tui --db demo.db

The shape follows what microsoft/WSL#4166 and our own recordings show: a
16 GiB guest whose page cache climbs through each working day (builds, git,
an indexer) and is never handed back, so the host footprint climbs with it;
a reclaim (by prompt, by rule or by hand) drops both at once. Samples go
through :meth:`Store.add_sample` as real :class:`GuestSample` /
:class:`HostSample` records, then :meth:`Store.roll_up` and
:meth:`Store.prune` as the watcher runs them, so the tiers are as a week of
watching leaves them. Deterministic: the same arguments give the same file.
"""

from __future__ import annotations

import argparse
import math
import random
from dataclasses import dataclass
from pathlib import Path

from monitor.config.schema import HistoryConfig
from monitor.history.store import Store
from monitor.sample import GuestSample, HostSample, Sample

GiB, MiB = 1024**3, 1024**2
TOTAL = 16 * GiB  # WSL's default: half of a 32 GiB host
HOST_TOTAL = 32 * GiB
ANON = int(3.1 * GiB)  # editor, language servers, a dev server
KERNEL = 420 * MiB
ACTIVE_FILE = 1200 * MiB  # the cache read more than once recently (Active(file)): the sources, the toolchain


@dataclass(frozen=True)
class Reclaim:
    t: float
    trigger: str
    method: str


PROMPT_ABOVE = TOTAL // 2  # the default cache-prompt rule: page cache above 50 % for 5 minutes
PROMPT_FOR = 300.0
BUILD_CACHE = 8.8 * GiB  # what the last build leaves cached: above PROMPT_ABOVE, whatever the hour


def cache_at(t: float, now: float, reclaims: list[Reclaim], build_at: float | None = None) -> float:
    """Page cache in bytes: grows while people work (09-19 h), flat at night, dropped by reclaims;
    from ``build_at`` a build has read enough to hold it above the prompt's threshold."""
    last = max((r.t for r in reclaims if r.t <= t), default=now - 30 * 86400)
    grow_start = max(last, t - 3 * 86400)
    working = _working_seconds(grow_start, t)
    cache = min(11.5 * GiB, 0.6 * GiB + working * 1.5 * GiB / 3600)
    if build_at is not None and t >= build_at:
        cache = max(cache, BUILD_CACHE)
    return cache + 90 * MiB * math.sin(t / 900)


def build_time(now: float, reclaims: list[Reclaim]) -> float:
    """The last build: 15 minutes ago, or just after the last reclaim when that was later, so the
    waiting prompt (4 minutes ago) is true of the series: above the threshold for 5 minutes."""
    last = max((r.t for r in reclaims), default=now - 86400)
    return max(now - 900, last + 30)


def _working_seconds(since: float, until: float) -> float:
    """Seconds between since and until that fall within 09-19 h (UTC) on any day."""
    total, t = 0.0, since
    while t < until:
        day = t - t % 86400
        start, end = day + 9 * 3600, day + 19 * 3600
        total += max(0.0, min(until, end) - max(t, start))
        t = day + 86400
    return total


def demo_reclaims(now: float, days: float) -> list[Reclaim]:
    out, day = [], now - now % 86400
    for d in range(int(days) + 1):
        base = day - d * 86400
        out.append(Reclaim(base + 14.5 * 3600, "prompt" if d % 2 else "manual", "auto"))
        out.append(Reclaim(base + 20 * 3600, "rule:reclaim-idle-cache", "auto"))
    return sorted((r for r in out if now - days * 86400 <= r.t <= now - 600), key=lambda r: r.t)


def sample_at(t: float, cache: float, rng: random.Random) -> Sample:
    cache_i = int(max(200 * MiB, cache))
    frag = int(220 * MiB + 80 * MiB * rng.random())
    free = TOTAL - ANON - KERNEL - cache_i
    busy = 35.0 if 9 <= (t % 86400) / 3600 < 19 and rng.random() < 0.3 else 2.0 + 3 * rng.random()
    guest = GuestSample(
        time=t, total=TOTAL, free=free, available=free + cache_i, anon=ANON, shmem=64 * MiB,
        mapped=310 * MiB, slab_reclaimable=180 * MiB, dirty=int(4 * MiB * rng.random()), page_cache=cache_i,
        reclaimable=cache_i - 310 * MiB, used=ANON + KERNEL, returnable_free=free - frag, fragmented_free=frag,
        page_reporting_order=5, cpu_busy_percent=round(busy, 2), active_file=min(cache_i, ACTIVE_FILE),
        inactive_file=cache_i - min(cache_i, ACTIVE_FILE))
    host = HostSample(t, TOTAL - free + frag, "interop", False, detail="vmmemWSL, private working set",
                      host_total=HOST_TOTAL, metric="private_working_set")
    return Sample(guest, host)


def write_history(path: str | Path, now: float, *, days: float = 2.0, step: float = 30.0, raw_step: float = 2.0,
                  raw_for: float = 2 * 3600.0, history: HistoryConfig | None = None, pending_prompt: bool = True) -> Path:
    """Write ``days`` of history ending at ``now``: every ``step`` s, every ``raw_step`` s in the last
    ``raw_for``; roll up and prune as the watcher would; add the events a person would see."""
    history = history or HistoryConfig()
    rng = random.Random(4166)
    reclaims = demo_reclaims(now, days)
    build_at = build_time(now, reclaims) if pending_prompt else None
    with Store(path) as store:
        t = now - days * 86400
        with store.transaction():
            while t <= now:
                store.add_sample(sample_at(t, cache_at(t, now, reclaims, build_at), rng))
                t += raw_step if t >= now - raw_for else step
        store.roll_up(now)
        store.prune(history.raw_for, history.minute_for, history.ten_minute_for, history.events_for, now)
        _write_events(store, now, reclaims, build_at)
    return Path(path)


def _write_events(store: Store, now: float, reclaims: list[Reclaim], build_at: float | None) -> None:
    for r in reclaims:
        before, after = cache_at(r.t - 1, now, reclaims), cache_at(r.t + 1, now, reclaims)
        freed = int(before - after)
        if r.trigger == "prompt":
            pid = store.add_event("prompt", f"page cache {before / GiB:.1f} GiB above 8.0 GiB (50%) for 5m. "
                                  "Reclaim (auto)?", rule="cache-prompt", status="reclaimed", t=r.t - 300,
                                  data={"method": "auto", "metric_bytes": int(before)})
            store.add_event("answer", f"prompt {pid}: reclaimed (auto)", data={"prompt": pid, "answer": "reclaimed"},
                            t=r.t)
        elif r.trigger.startswith("rule:"):
            store.add_event("crossing", f"reclaimable cache {before / GiB:.1f} GiB rose above 4.0 GiB "
                            "(reclaim-idle-cache)", rule="reclaim-idle-cache", t=r.t - 60)
        store.add_event("reclaim", f"reclaim gradual+compact ({r.trigger}): freed {freed / GiB:.1f} GiB of page "
                        f"cache, returnable +{freed / GiB:.1f} GiB; host -{freed / GiB * 0.97:.1f} GiB",
                        rule=r.trigger, status="ok", t=r.t + 12,
                        data={"method": r.method, "methods_run": ["gradual", "compact"], "trigger": r.trigger,
                              "started": r.t, "ended": r.t + 12, "freed_bytes": freed,
                              "host_returned_bytes": int(freed * 0.97), "host_source": "interop"})
    store.add_event("notify", "page cache 5.1 GiB above 4.8 GiB (30%) for 2m [delivered by toast]",
                    rule="cache-notify", t=now - 3 * 3600, data={"backend": "toast", "failures": []})
    store.add_event("error", "host sample: TimeoutError: powershell.exe did not answer within 3s",
                    t=now - 5 * 3600)
    store.add_event("state", "snoozed for 1h", t=now - 26 * 3600)
    if build_at is not None:  # the prompt of the last build, in the words and numbers of the series
        t = now - 240
        cache = cache_at(t, now, reclaims, build_at)
        store.add_event("prompt", f"page cache {cache / GiB:.1f} GiB above {PROMPT_ABOVE / GiB:.1f} GiB (50%) "
                        f"for {PROMPT_FOR / 60:g}m. Reclaim (auto)?",
                        rule="cache-prompt", status="pending", t=t,
                        data={"method": "auto", "metric_bytes": int(cache)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tui.demo", description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--step", type=float, default=2.0, help="seconds between samples (default 2)")
    parser.add_argument("--now", type=float, default=None, help="epoch seconds of the last sample (default: now)")
    args = parser.parse_args(argv)
    import time

    now = args.now if args.now is not None else time.time()
    write_history(args.path, now, days=args.days, step=args.step, raw_step=args.step,
                  raw_for=HistoryConfig().raw_for)
    print(f"wrote {args.days:g} days of history to {args.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
