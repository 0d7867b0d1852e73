"""What each reclaim cost, measured after it: what of what it gave back was read again.

A reclaim that took the working set is paid for later, when programs read
their files again. For ``[reclaim] cost_window`` (5 min) after each reclaim
the recorder feeds every guest sample to a :class:`CostMeter`; when the
window ends the meter returns a :class:`Cost` and records it on the reclaim
event (``Store.update_event_data``)::

    "reread_bytes_after": 6291456,     # the figure: what was read back; null when it cannot be told
    "reread_source": "refaults",       # refaults | cgroup_refaults | residency | pgpgin (see below)
    "attributable": true,              # false after a drop: the figure is then null
    "refault_bytes_after": 6291456,    # workingset_refault_file x 4 KiB over the window
    "pgpgin_bytes_after": 7340032,     # pgpgin (KiB read from disk) over the window
    "disk_reads_bytes_after": 7340032, # after a drop only: every disk read, not attributable
    "residency_bytes_after": 0,        # after --path only: the trees' cache now minus right after
    "cost_window_s": 300.0, "cost_window_start": 1764880000.0, "cost_window_end": 1764880300.0
    # one group's reclaim (reclaim --cgroup, aimed rules and schedules, run) only:
    "reread_cgroup": "/sys/fs/cgroup/system.slice/docker-3f2a.scope",  # whose refaults were counted
    "cgroup_refault_bytes_after": 0,   # the group's memory.stat workingset_refault_file x 4 KiB
    "reread_why": "...",               # why the figure is null (the group gone, no counter); else absent
    "cost_window_ended_by": "group removed",  # run only: the window ended as the group was removed

Only a figure that can be attributed to what was reclaimed counts (issue 26: after a 300 MiB
``reclaim --path``, a build's 2.5 GiB of disk reads were reported as its "re-read" and grew the
margin to 200 %):

- ``refaults`` (after ``gradual``): memory.reclaim evicts through the LRU, so an evicted page
  leaves a shadow entry and its re-read is a refault (exact; other reads do not count).
- ``cgroup_refaults`` (after ``memory.reclaim`` of one group: ``reclaim --cgroup``, aimed rules and
  schedules, ``run``): that group's own ``workingset_refault_file`` (its memory.stat, which counts its
  descendants too), read at the writes' end and again when the window ends, never the VM's: the VM's
  counts every group's refaults, so a group's reclaim was charged with everybody's. A source of its
  own, not ``refaults``: ``refaults`` stays the VM's counter (``refault_bytes_after`` too, still recorded
  over the window), and a group's figure founds no VM estimate. The group is read only when its window
  ends, on the watcher's reclaim worker (as the trees are walked), never on the sampling tick. No figure
  (``reread_why`` says why, ``attributable`` false) when the group is gone at the window's end (removed,
  its container stopped: its count went with it, and the VM's is not its), when it was made again under
  the same path (its counter started again), or when its memory.stat has no such counter.
  ``run``'s group is removed as its reclaim ends, so its window ends there: from the writes' end
  through the settle period (``cost_window_ended_by``), both read by the reclaim itself. A finished job
  has no process left to re-read anything; another program re-reading its files is charged the refault
  in its own group (the kernel counts a refault in the group of the page's new owner), which nothing
  attributes to the job: the VM-wide counter would count every group's refaults as the job's.
- ``residency`` (after ``reclaim --path`` and path schedules): the cache of the reclaimed trees,
  measured again (cachestat or mincore, :mod:`monitor.pagecache.scan`) when the window ends, minus
  what they held right after the reclaim: exactly what of those trees came back. Files in the trees
  that had no cache before count too when read (a new file, an old one read for the first time).
- ``pgpgin`` (after ``pagecache``/``full``/``compact``): a drop leaves no shadow entries, so
  refaults stay 0 (bench/README.md) and nothing tells a re-read from any other disk read. The disk
  reads are recorded as "disk reads after (not attributable)" and the figure is null.

Only attributable figures teach the controller (:func:`record`): the margin of the remembered
working set, and, from refaults alone, a first estimate. The remembered working set is the VM's (one,
not per group): a group's reclaim starts from none of it (monitor.reclaim.record) and its cost teaches
it nothing either; it is recorded, shown and counted. :func:`reset_unattributable` resets once,
on a history from before this rule, a margin or an estimate that disk reads after drops taught.

The window ends with the first sample whose counters were read at or past
its end: a recorder's tick carries vmstat's counters between reads (up to
30 s, ``monitor/probes/guest.py`` CADENCE), so a window may run that much
long, and ``cost_window_s`` says how long it ran.

The base counters are the reclaim's own ``after`` sample (in its event
data), so the window also covers the settle period, and a watcher restarted
mid-window still measures it whole: the counters are cumulative, and the trees
are measured from the event's own ``paths``. Any process's reclaim is measured
(a manual ``vmmemctl reclaim`` too), as long as a recorder is running when its
window ends. Measuring trees walks them once on the recorder's thread (as
long as the reclaim's own walk took).

API for the recorder's tick, one line::

    costs = meter.tick(store, sample.guest, config.reclaim)   # -> finished Costs, already recorded

or, without a store (tests, benches): ``meter.watch(event_id, data)`` then
``meter.observe(guest_sample)``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Callable

from monitor.config.schema import ReclaimConfig
from monitor.errors import UserError
from monitor.reclaim import workingset
from monitor.kernel.procfs import PAGE_SIZE
from monitor.sample import GuestSample, counter_bytes
from monitor.units import format_bytes, format_duration



SOURCES = ("refaults", "cgroup_refaults", "residency", "pgpgin")
ATTRIBUTABLE = ("refaults", "cgroup_refaults", "residency")
GROUP_SOURCE = "cgroup_refaults"


@dataclass(frozen=True)
class Cost:
    event_id: int
    window_start: float
    window_end: float
    refault_bytes: int | None
    pgpgin_bytes: int | None
    source: str  # one of SOURCES
    freed_bytes: int | None = None
    level_after: int | None = None  # page cache right after the reclaim
    residency_bytes: int | None = None  # residency: what of the reclaimed trees came back
    cgroup: str | None = None  # cgroup_refaults: the group ("/sys/fs/cgroup/...")
    cgroup_refault_bytes: int | None = None  # ... its own refaults over the window
    why: str | None = None  # why there is no figure where the source would have one (the group gone)
    ended_by: str | None = None  # "group removed": `run`'s window ended with its group

    @property
    def attributable(self) -> bool:
        return self.source in ATTRIBUTABLE and self.why is None

    @property
    def reread_bytes(self) -> int | None:
        """What of what was reclaimed was read back; None where that cannot be told (after a drop, a group gone)."""
        if self.why is not None:
            return None
        return {"refaults": self.refault_bytes, "residency": self.residency_bytes,
                GROUP_SOURCE: self.cgroup_refault_bytes}.get(self.source)

    def to_data(self) -> dict[str, Any]:
        data = {"reread_bytes_after": self.reread_bytes, "reread_source": self.source,
                "attributable": self.attributable,
                "refault_bytes_after": self.refault_bytes, "pgpgin_bytes_after": self.pgpgin_bytes,
                "cost_window_s": round(self.window_end - self.window_start, 1),
                "cost_window_start": self.window_start, "cost_window_end": self.window_end}
        if self.source == "residency":
            data["residency_bytes_after"] = self.residency_bytes
        if self.source == GROUP_SOURCE:
            data.update(reread_cgroup=self.cgroup, cgroup_refault_bytes_after=self.cgroup_refault_bytes)
        if self.why is not None:
            data["reread_why"] = self.why
        if self.ended_by is not None:
            data["cost_window_ended_by"] = self.ended_by
        if self.source == "pgpgin":
            data["disk_reads_bytes_after"] = self.pgpgin_bytes
        return data


@dataclass
class _Watch:
    event_id: int
    start: float
    refaults: int | None
    pgpgin: int | None
    source: str
    freed: int | None
    level_after: int | None
    paths: list[str] | None = None  # residency: the reclaimed trees
    trees_after: int = 0  # ... and what they held right after the reclaim
    cgroup: str | None = None  # cgroup_refaults: the group
    group_base: int | None = None  # ... its workingset_refault_file (pages) at the writes' end
    group_why: str | None = None  # ... why it has no base (no counter; an older vmmemctl's event)
    ready: Cost | None = None  # a cost known when it was watched (`run`: its window ended with the group)


def measure_trees(paths: list[str]) -> int | None:
    """The page cache of the files under ``paths`` now (trees that are gone hold none); None when
    no tree can be walked."""
    from monitor.kernel.procfs import LocalFiles
    from monitor.pagecache.scan import Scan, device_fstypes

    here = [p for p in paths if os.path.lexists(p)]
    if not here:
        return 0
    files = LocalFiles()  # the trees are this machine's: its real mount table, as reclaim --path reads it
    try:
        fstypes = device_fstypes(files.read(["proc/self/mountinfo"])["proc/self/mountinfo"])
    finally:
        files.close()
    try:
        return Scan(here, depth=0, top=1, fstypes=fstypes).run().total.cached
    except (OSError, UserError):
        return None


NO_COUNTER = ("the group's memory.stat has no workingset_refault_file (kernels before 5.9 had only "
              "workingset_refault): its refaults cannot be counted, and the VM's are every group's")


def read_group_stat(shown: str, files: Any = None) -> dict[str, int] | None:
    """The memory.stat of the group at ``shown`` ("/sys/fs/cgroup/x.slice") read through ``files`` (this
    machine's by default), as numbers; None when it cannot be read (the group is gone)."""
    from monitor.kernel.procfs import LocalFiles
    from monitor.reclaim.cgroup_target import Group

    own = files is None
    files = LocalFiles() if own else files
    try:
        return Group(files, "", shown.strip("/")).memory_stat()
    finally:
        if own:
            files.close()


def _group_cost(cost: Cost, w: _Watch, stat: dict[str, int] | None) -> Cost:
    """``cost`` with the group's own refaults since the writes' end (``stat``: its memory.stat at the window's
    end), or why there are none: never the VM's counter in their place."""
    now = None if stat is None else stat.get("workingset_refault_file")
    if w.group_why is not None:
        why = w.group_why
    elif stat is None:
        why = (f"the group {w.cgroup} was gone at the window's end (removed, or its container stopped): its "
               "refaults since the reclaim went with it, and the VM's are every group's")
    elif now is None:
        why = NO_COUNTER
    elif now < (w.group_base or 0):
        why = (f"the group {w.cgroup} was made again under the same path during the window (its counter "
               "started again): its refaults since the reclaim cannot be told")
    else:
        return dataclasses.replace(cost, cgroup_refault_bytes=(now - (w.group_base or 0)) * PAGE_SIZE)
    return dataclasses.replace(cost, why=why)


class CostMeter:
    """Counts what was read back after each watched reclaim, until its window ends."""

    def __init__(self, window: float, measure: Callable[[list[str]], int | None] = measure_trees,
                 read_group: Callable[[str], dict[str, int] | None] | None = None):
        self.window = window
        self.measure = measure  # residency of trees (a bench may count them its own way)
        # a group's memory.stat now, by its shown path; None when it is gone (the watcher: through its probes)
        self.read_group = read_group or (lambda shown: read_group_stat(shown))
        self.on_cost: Callable[[Cost], None] | None = None  # a cost recorded off the tick (tick's ``later``)
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
        methods = data.get("methods_run") or []
        trees = [t for t in data.get("paths") or [] if isinstance(t, dict) and isinstance(t.get("path"), str)]
        group = data.get("cgroup") if isinstance(data.get("cgroup"), str) and data.get("cgroup") else None
        if group is not None and "gradual" in methods:  # one group's memory.reclaim: its own refaults
            source = GROUP_SOURCE
        elif "gradual" in methods and refaults is not None:  # memory.reclaim: evicted pages leave shadows
            source = "refaults"
        elif "path" in methods and trees:  # the trees themselves say what came back
            source = "residency"
        else:
            source = "pgpgin"
        if source not in ("residency", GROUP_SOURCE) and (refaults if source == "refaults" else pgpgin) is None:
            return False
        paths = [t["path"] for t in trees] if source == "residency" else None
        after_trees = sum(int(t.get("cached_after_bytes") or 0) for t in trees)
        freed = data.get("cgroup_freed_bytes") if source == GROUP_SOURCE else data.get("freed_bytes")
        w = _Watch(event_id, float(start), refaults, pgpgin, source, freed, data.get("page_cache_after_bytes"),
                   paths, after_trees)
        if source == GROUP_SOURCE:
            self._watch_group(w, group, data)
        self._watching[event_id] = w
        return True

    @staticmethod
    def _watch_group(w: _Watch, group: str, data: dict[str, Any]) -> None:
        """A group's window: its base count from the event; `run`'s whole cost, already known."""
        w.cgroup, w.group_base = group, data.get("cgroup_refaults_after")
        if "cgroup_refaults_after" not in data:
            w.group_why = "recorded by an older vmmemctl, which did not read the group's own refaults"
        elif not isinstance(w.group_base, int):
            w.group_base, w.group_why = None, NO_COUNTER
        if not data.get("cgroup_removed_at_end"):
            return
        # `run`: the group was removed as the reclaim ended, its counter read once more just before
        end = data.get("cgroup_refaults_end")
        begun = data.get("cgroup_refaults_after_t")
        cost = Cost(w.event_id, float(begun) if isinstance(begun, (int, float)) else w.start, w.start, None, None,
                    GROUP_SOURCE, w.freed, w.level_after, cgroup=group, ended_by="group removed")
        w.ready = _group_cost(cost, w, {"workingset_refault_file": end} if isinstance(end, int) else {})

    def observe(self, guest: GuestSample) -> list[Cost]:
        """Feed one sample; the costs whose window ended with it (each returned once)."""
        return [c for c in (self.finish(c, w) for c, w in self._ended(guest)) if c is not None]

    def _ended(self, guest: GuestSample) -> list[tuple[Cost, _Watch]]:
        """The windows that ended with ``guest``: their costs from the counters (a --path reclaim's
        residency still to be measured: :meth:`finish`)."""
        ended = []
        # A recorder's tick may carry vmstat's counters from an earlier read (monitor/probes/guest.py
        # CADENCE): the window ends at the first read of them past its end, and says so.
        read_at = guest.read_at("vmstat")
        for w in list(self._watching.values()):
            if w.ready is not None:  # `run`: measured already, recorded with the next sample
                del self._watching[w.event_id]
                ended.append((w.ready, w))
                continue
            if read_at < w.start + self.window:
                continue
            del self._watching[w.event_id]
            refaults = counter_bytes(w.refaults, guest.workingset_refault_file, PAGE_SIZE)
            pgpgin = counter_bytes(w.pgpgin, guest.pgpgin, 1024)
            if w.source not in ("residency", GROUP_SOURCE) and (refaults if w.source == "refaults" else pgpgin) is None:
                continue  # counters reset (the guest rebooted): nothing to say
            ended.append((Cost(w.event_id, w.start, read_at, refaults, pgpgin, w.source, w.freed, w.level_after,
                               cgroup=w.cgroup), w))
        return ended

    def _slow(self, w: _Watch) -> bool:
        """Whether finishing ``w`` reads files (a tree walked, a group's memory.stat): off the tick."""
        return w.source == "residency" or (w.source == GROUP_SOURCE and w.ready is None)

    def finish(self, cost: Cost, w: _Watch) -> Cost | None:
        """The cost complete: a --path reclaim's trees walked again (what of them came back), a group's
        counter read again; None when the trees cannot be walked from here (nothing true to say)."""
        if w.source == GROUP_SOURCE:
            return cost if w.ready is not None else _group_cost(cost, w, self.read_group(w.cgroup or ""))
        if w.source != "residency":
            return cost
        now = self.measure(w.paths or [])
        return None if now is None else dataclasses.replace(cost, residency_bytes=max(0, now - w.trees_after))

    def tick(self, store: Any, guest: GuestSample, config: ReclaimConfig, look: bool = True,
             later: Callable[[Callable[[], None]], None] | None = None,
             open_store: Callable[[], Any] | None = None) -> list[Cost]:
        """Pick up new reclaim events from the store (``look``: False when the caller knows no other
        connection wrote since the last tick: reclaims are recorded on their own), feed the sample,
        record what finished; the costs recorded now.

        A --path reclaim's trees are walked again at the end of its window: seconds for a big tree
        (bench/cache_scan.py); a group's memory.stat is read again (through the guest's channel in host
        mode: a round trip). With ``later`` (the watcher's reclaim worker) and ``open_store`` (that
        thread's own connection) the walk and its record run there, off the sampling tick, and its cost
        is recorded when the walk is done; without them, here."""
        if look:
            self._discover(store, guest.time)
        costs = []
        for pending, w in self._ended(guest):
            if self._slow(w) and later is not None and open_store is not None:
                later(lambda pending=pending, w=w: self._finish_elsewhere(pending, w, config, open_store))
                continue
            done = self.finish(pending, w)
            if done is not None:
                record(store, done, config, guest.time)
                costs.append(done)
        return costs

    def _finish_elsewhere(self, pending: Cost, w: _Watch, config: ReclaimConfig, open_store: Callable[[], Any]) -> None:
        done = self.finish(pending, w)
        if done is None:
            return
        store = open_store()
        try:
            record(store, done, config, pending.window_end)
        finally:
            store.close()
        if self.on_cost is not None:
            self.on_cost(done)

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
    """Write the cost on its event, and let an attributable one steer the next reclaim's margin."""
    store.update_event_data(cost.event_id, cost.to_data())
    if not cost.attributable or cost.reread_bytes is None:
        return  # disk reads after a drop are anybody's: they teach nothing
    if cost.source == GROUP_SOURCE:
        return  # the remembered working set is the VM's: a group's reclaim neither starts from it nor teaches it
    ws = workingset.load(store)
    # Only refaults may found a first estimate: they say where the working set begins in the page
    # cache as a whole; a tree's re-reads say how hot that tree was, which only tunes the margin.
    level = cost.level_after if cost.source == "refaults" else None
    new = workingset.after_cost(ws, cost.reread_bytes, cost.freed_bytes, level, config, now)
    if new is not None and new != ws:
        workingset.save(store, new)


SOURCE_WORDS = {"refaults": "refaults", "residency": "cache of the trees", "pgpgin": "pgpgin",
                GROUP_SOURCE: "refaults of the group"}


def cost_words(data: dict | None) -> str:
    """A reclaim event's cost after the fact, as a suffix for its message: the one wording, printed by
    `history --events` and the dashboard's event list alike. After a drop (source pgpgin, in events
    recorded before issue 26 too) it is "disk reads ... (not attributable)", never a re-read."""
    if not data or "freed_bytes" not in data:
        return ""
    out = f"; stopped: {data['stop_reason']}" if data.get("stop_reason") else ""
    if "reread_bytes_after" not in data:
        return out + ("; cost: measuring" if not data.get("dry_run") and not data.get("error") else "")
    window = format_duration(data.get("cost_window_s") or 0)
    source = data.get("reread_source")
    if source == "pgpgin":
        reads = data.get("disk_reads_bytes_after", data.get("pgpgin_bytes_after"))
        return out + f"; disk reads {format_bytes(reads)} in {window} after (not attributable) [pgpgin]"
    label = SOURCE_WORDS.get(source, source)
    reread = data["reread_bytes_after"]
    freed = data.get("cgroup_freed_bytes") if source == GROUP_SOURCE else data.get("freed_bytes")
    if reread is None and data.get("reread_why"):
        return out + f"; re-read after: not attributable ({data['reread_why']}) [{label}]"
    share = f" ({100 * reread / freed:.1f}% of freed)" if reread is not None and freed else ""
    until = ", until it was removed" if data.get("cost_window_ended_by") == "group removed" else ""
    return out + f"; re-read {format_bytes(reread)} in {window} after{share}{until} [{label}]"


# ------------------------------------------------------------------ the upgrade to attributable costs

RULE_KEY = "cost_rule"  # state: RULE once the remembered working set was checked against it
RULE = "attributable"  # issue 26: only refaults and a tree's own residency teach the controller
GROUP_RULE_KEY = "cost_rule_groups"  # state: RULE once checked against group costs counted with the VM's refaults


def reset_unattributable(store: Any, config: ReclaimConfig, now: float) -> str | None:
    """Once per history: a margin (or a first estimate) taught by disk reads after drops, recorded
    before costs had to be attributable, is reset, with a ``state`` event that says why; and once more
    (a check of its own, for histories checked before) one taught by a group reclaim's cost counted from
    the VM's refaults (every group's), before a group's cost was its own refaults. Returns its words,
    or None when there was nothing to reset (or it was done before)."""
    said, events = [], None
    for key, taught, what in ((RULE_KEY, _taught_by_drop, "disk reads after {n} drop{s} were counted as re-reads; "
                               "they cannot be attributed to what was dropped"),
                              (GROUP_RULE_KEY, _taught_by_group, "the VM's refaults after {n} group reclaim{s} "
                               "were counted as their re-reads; they are every group's")):
        if store.get_state(key) != RULE:
            if events is None:  # read once, and only for a check not yet done
                events = store.events(since=0, kinds=["reclaim"], limit=1_000_000)
            words = _reset_once(store, config, events, taught, what)
            store.set_state(key, RULE)
            if words:
                said.append(words)
    return "; ".join(said) or None


def _taught_by_drop(data: dict) -> bool:
    return data.get("reread_source") == "pgpgin" and data.get("reread_bytes_after") is not None


def _taught_by_group(data: dict) -> bool:
    return bool(data.get("cgroup")) and data.get("reread_source") == "refaults" and \
        data.get("reread_bytes_after") is not None


def _reset_once(store: Any, config: ReclaimConfig, events: list, taught: Callable[[dict], bool], what: str) -> str | None:
    ws = workingset.load(store)
    bad = [e for e in events if taught(e.data or {})]
    base = config.working_set_margin / 100
    if ws is None or not bad:
        return None
    words = None
    why = what.format(n=len(bad), s="s" if len(bad) > 1 else "") + ", so they no longer teach the controller"
    learned = any((e.data or {}).get("working_set_learned_bytes") for e in events)
    if not learned and ws.learned <= max(e.t for e in bad) + config.cost_window + 120:
        store.set_state(workingset.STATE_KEY, None)  # founded by such a cost, never by a reclaim's own refaults
        words = f"working set estimate {format_bytes(ws.bytes)} forgotten: {why}"
    elif ws.margin != base:
        workingset.save(store, dataclasses.replace(ws, margin=base, why=""))
        words = f"working-set margin reset from {100 * ws.margin:.0f}% to {100 * base:.0f}%: {why}"
    if words:
        store.add_event("state", words, data={"cost_rule": RULE, "reset_from": ws.to_json()})
    return words
