"""What each reclaim cost, measured after it: the bytes read back in a window.

A reclaim that took the working set is paid for later, when programs read
their files again. For ``[reclaim] cost_window`` (5 min) after each reclaim
the recorder feeds every guest sample to a :class:`CostMeter`; when the
window ends the meter returns a :class:`Cost` and records it on the reclaim
event (``Store.update_event_data``)::

    "reread_bytes_after": 6291456,     # the figure: what was read back
    "reread_source": "refaults",       # refaults (after gradual) | pgpgin (after a drop)
    "refault_bytes_after": 6291456,    # workingset_refault_file x 4 KiB over the window
    "pgpgin_bytes_after": 7340032,     # pgpgin (KiB read from disk) over the window
    "cost_window_s": 300.0, "cost_window_start": 1764880000.0, "cost_window_end": 1764880300.0

Which counter: memory.reclaim evicts through the LRU, so an evicted page
leaves a shadow entry and its re-read is a refault (exact, other reads do
not count). drop_caches leaves no shadow entries (refaults stay 0, see
bench/README.md), so after pagecache/full the figure is pgpgin: every disk
read in the window, an upper bound.

The window ends with the first sample whose counters were read at or past
its end: a recorder's tick carries vmstat's counters between reads (up to
30 s, ``monitor/probes/guest.py`` CADENCE), so a window may run that much
long, and ``cost_window_s`` says how long it ran.

The base counters are the reclaim's own ``after`` sample (in its event
data), so the window also covers the settle period, and a watcher restarted
mid-window still measures it whole: the counters are cumulative. Any
process's reclaim is measured (a manual ``vmmemctl reclaim`` too), as long as
a recorder is running when its window ends.

API for the recorder's tick, one line::

    costs = meter.tick(store, sample.guest, config.reclaim)   # -> finished Costs, already recorded

or, without a store (tests, benches): ``meter.watch(event_id, data)`` then
``meter.observe(guest_sample)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from monitor.config.schema import ReclaimConfig
from monitor.reclaim import workingset
from monitor.kernel.procfs import PAGE_SIZE
from monitor.sample import GuestSample, counter_bytes
from monitor.units import format_bytes, format_duration



@dataclass(frozen=True)
class Cost:
    event_id: int
    window_start: float
    window_end: float
    refault_bytes: int | None
    pgpgin_bytes: int | None
    source: str  # "refaults" | "pgpgin"
    freed_bytes: int | None = None
    level_after: int | None = None  # page cache right after the reclaim

    @property
    def reread_bytes(self) -> int | None:
        return self.refault_bytes if self.source == "refaults" else self.pgpgin_bytes

    def to_data(self) -> dict[str, Any]:
        return {"reread_bytes_after": self.reread_bytes, "reread_source": self.source,
                "refault_bytes_after": self.refault_bytes, "pgpgin_bytes_after": self.pgpgin_bytes,
                "cost_window_s": round(self.window_end - self.window_start, 1),
                "cost_window_start": self.window_start, "cost_window_end": self.window_end}


@dataclass
class _Watch:
    event_id: int
    start: float
    refaults: int | None
    pgpgin: int | None
    source: str
    freed: int | None
    level_after: int | None


class CostMeter:
    """Counts what was read back after each watched reclaim, until its window ends."""

    def __init__(self, window: float):
        self.window = window
        self._watching: dict[int, _Watch] = {}
        self._seen: tuple[int | None, int] | None = None  # the store's events version at the last look
        self._last_id = 0

    @property
    def watching(self) -> list[int]:
        return sorted(self._watching)

    def watch(self, event_id: int, data: dict[str, Any]) -> bool:
        """Start the window of a reclaim event from its data (ReclaimResult.to_json()); False if unusable."""
        after = data.get("after") or {}
        start = data.get("ended")
        if data.get("dry_run") or data.get("error") or not isinstance(start, (int, float)):
            return False
        refaults, pgpgin = after.get("workingset_refault_file"), after.get("pgpgin")
        evicts = "gradual" in (data.get("methods_run") or [])  # memory.reclaim: evicted pages leave shadows
        source = "refaults" if evicts and refaults is not None else "pgpgin"
        if (refaults if source == "refaults" else pgpgin) is None:
            return False
        self._watching[event_id] = _Watch(event_id, float(start), refaults, pgpgin, source,
                                          data.get("freed_bytes"), data.get("page_cache_after_bytes"))
        return True

    def observe(self, guest: GuestSample) -> list[Cost]:
        """Feed one sample; the costs whose window ended with it (each returned once)."""
        done = []
        # A recorder's tick may carry vmstat's counters from an earlier read (monitor/probes/guest.py
        # CADENCE): the window ends at the first read of them past its end, and says so.
        read_at = guest.read_at("vmstat")
        for w in list(self._watching.values()):
            if read_at < w.start + self.window:
                continue
            del self._watching[w.event_id]
            refaults = counter_bytes(w.refaults, guest.workingset_refault_file, PAGE_SIZE)
            pgpgin = counter_bytes(w.pgpgin, guest.pgpgin, 1024)
            if (refaults if w.source == "refaults" else pgpgin) is None:
                continue  # counters reset (the guest rebooted): nothing to say
            done.append(Cost(w.event_id, w.start, read_at, refaults, pgpgin, w.source, w.freed, w.level_after))
        return done

    def tick(self, store: Any, guest: GuestSample, config: ReclaimConfig, look: bool = True) -> list[Cost]:
        """Pick up new reclaim events from the store (``look``: False when the caller knows no other
        connection wrote since the last tick: reclaims are recorded on their own), feed the sample,
        record what finished."""
        if look:
            self._discover(store, guest.time)
        costs = self.observe(guest)
        for cost in costs:
            record(store, cost, config, guest.time)
        return costs

    def _discover(self, store: Any, now: float) -> None:
        version = store.events_version()
        if version == self._seen:
            return  # no event added since the last look: one cheap query a tick
        self._seen = version
        for event in store.events(since=now - self.window - 60, kinds=["reclaim"]):
            data = event.data or {}
            if event.id > self._last_id and "reread_bytes_after" not in data:
                self.watch(event.id, data)
            self._last_id = max(self._last_id, event.id)


def record(store: Any, cost: Cost, config: ReclaimConfig, now: float) -> None:
    """Write the cost on its event, and let it steer the next reclaim's margin."""
    store.update_event_data(cost.event_id, cost.to_data())
    if cost.reread_bytes is None:
        return
    ws = workingset.load(store)
    new = workingset.after_cost(ws, cost.reread_bytes, cost.freed_bytes, cost.level_after, config, now)
    if new is not None and new != ws:
        workingset.save(store, new)


def cost_words(data: dict | None) -> str:
    """A reclaim event's cost after the fact, as a suffix for its message: the one wording, printed by
    `history --events` and the dashboard's event list alike."""
    if not data or "freed_bytes" not in data:
        return ""
    out = f"; stopped: {data['stop_reason']}" if data.get("stop_reason") else ""
    if "reread_bytes_after" not in data:
        return out + ("; cost: measuring" if not data.get("dry_run") and not data.get("error") else "")
    reread, freed = data["reread_bytes_after"], data.get("freed_bytes")
    share = f" ({100 * reread / freed:.1f}% of freed)" if reread is not None and freed else ""
    window = format_duration(data.get("cost_window_s") or 0)
    return out + f"; re-read {format_bytes(reread)} in {window} after{share} [{data.get('reread_source')}]"
