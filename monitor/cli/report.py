"""Plain-text and JSON renderings of samples for the CLI (no rich: the core stays small)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Sequence

from monitor.sample import HOST_METRIC_WORDS, Environment, HostSample, Sample, diagnose, guest_json, unreturned_bytes
from monitor.history.store import TIER_WORDS
from monitor.policy.gap import explain_gap, gap_json, gap_text
from monitor.reclaim.cost import cost_words
from monitor.reclaim.record import reclaim_text  # noqa: F401  (the CLI prints it from here)
from monitor.text import table
from monitor.units import format_bytes




def iso(ts: float | None) -> str | None:
    """Epoch seconds -> local ISO-8601 with offset, to the second."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def percent(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f}%"


def host_line(host: HostSample) -> str:
    if host.bytes is None:
        return f"{'starting' if host.starting else 'unknown'} ({host.source}: {host.error})"
    how = "estimated" if host.estimated else f"measured by {host.source}"
    if host.starting:
        how = f"starting: PowerShell's first answer is pending; {how}"
    return f"{format_bytes(host.bytes)}  ({how}: {host.detail})"


def status_text(sample: Sample, env: Environment, decision: Any = None, extra: Sequence[tuple[str, str]] = (),
                by: str = "") -> str:
    g, h = sample.guest, sample.host
    order_bytes = format_bytes(4096 << g.page_reporting_order)
    out = [
        f"vmmemctl status  {iso(sample.time)}",
        "",
        table([
            ("environment", f"{env.label()}  (kernel {env.kernel_release or '?'})"),
            ("host footprint", host_line(h)),
            *([("", f"metric: {HOST_METRIC_WORDS[h.metric]}")] if h.bytes is not None and h.metric else []),
            *([("host available", f"{format_bytes(h.host_available)} of {format_bytes(h.host_total)}  "
                "(the host's own; on Windows what Task Manager calls available)")]
              if h.host_available is not None else []),
            *([("", f"note: {h.error}")] if h.error and h.bytes is not None else []),
        ]),
        "",
        "guest memory",
        table([
            ("total", format_bytes(g.total)),
            ("programs (anon)", format_bytes(g.anon)),
            ("page cache", format_bytes(g.page_cache), "file cache; excludes shmem/tmpfs"),
            *_file_lru_rows(g),
            ("shmem/tmpfs", format_bytes(g.shmem), "no cache drop frees it"),
            ("slab reclaimable", format_bytes(g.slab_reclaimable), "dentries/inodes; freed by level 3"),
            ("dirty", format_bytes(g.dirty), "written back by sync before a drop"),
            ("free", format_bytes(g.free)),
            ("available", format_bytes(g.available), "Linux's view: free + droppable cache"),
        ], indent="  "),
        "",
        "what could come back",
        table([
            ("reclaimable now", format_bytes(g.reclaimable), "what sync + drop_caches would free"),
            ("returnable free", format_bytes(g.returnable_free),
             f"free in blocks >= {order_bytes} (order {g.page_reporting_order}): the host can take it"),
            ("fragmented free", format_bytes(g.fragmented_free), "free in smaller blocks: needs compaction"),
            *_unlisted_row(g),
        ], indent="  "),
        "",
        *gap_text(*explain_gap(sample)),
        "",
        "activity",
        table([
            ("PSI memory some avg10", percent(g.psi_memory_some_avg10) if g.psi_memory else "n/a (no PSI)"),
            ("PSI io some avg10", percent(g.psi_io_some_avg10) if g.psi_io else "n/a (no PSI)"),
            ("CPU busy", percent(g.cpu_busy_percent)),
        ], indent="  "),
    ]
    if decision is not None:
        method = f" ({decision.method})" if decision.method else ""
        out += ["", f"decision{f' ({by})' if by else ''}: {decision.action}{method}: {decision.reason}"]
    for label, text in extra:
        out += ["", f"{label}: {text}"]
    for note in diagnose(sample):
        out += ["", f"note: {note}"]
    if g.warnings:
        out += ["", "warnings:"] + [f"  {w}" for w in g.warnings]
    return "\n".join(out)


def host_json(h: HostSample) -> dict[str, Any]:
    return {"bytes": h.bytes, "source": h.source, "estimated": h.estimated, "detail": h.detail,
            "error": h.error, "host_total_bytes": h.host_total, "starting": h.starting,
            "metric": h.metric if h.bytes is not None else None,
            "available_bytes": h.host_available, "total_bytes": h.host_total}


def status_json(sample: Sample, env: Environment, decision: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "time": iso(sample.time),
        "environment": {"kind": env.kind, "distro": env.distro, "kernel_release": env.kernel_release,
                        "why": env.why},
        "host": host_json(sample.host),
        "guest": guest_json(sample.guest),
    }
    if decision is not None:
        out["decision"] = {"action": decision.action, "reason": decision.reason, "method": decision.method}
    out["unreturned_bytes"] = unreturned_bytes(sample)
    out["gap"] = gap_json(*explain_gap(sample))
    out["notes"] = diagnose(sample)
    return out




def samples_export(rows: list[dict], fmt: str, tier: str) -> str:
    """History rows as a table, CSV or JSON (bytes as integers)."""
    if fmt == "json":
        return json.dumps([{"time": iso(r["t"]), **r} for r in rows], indent=1)
    if fmt == "csv":
        return _csv([{"time": iso(r["t"]), **r} for r in rows])
    if not rows:
        return f"no samples in that range ({TIER_WORDS[tier]})"
    body = [(iso(r["t"]), format_bytes(r["host_bytes"]), format_bytes(r["page_cache"]),
             format_bytes(r["reclaimable"]), format_bytes(r["free"]), format_bytes(r["returnable_free"]),
             percent(r["cpu_busy_percent"])) for r in rows]
    head = ("time", "host", "page cache", "reclaimable", "free", "returnable", "CPU")
    return f"{len(rows)} rows, {TIER_WORDS[tier]}\n" + table(body, header=head)


def events_export(events: list[Any], fmt: str) -> str:
    records = [{"time": iso(e.t), "t": e.t, "kind": e.kind, "rule": e.rule, "status": e.status,
                "message": e.message, "data": e.data} for e in events]
    if fmt == "json":
        return json.dumps(records, indent=1)
    if fmt == "csv":
        return _csv([{k: (json.dumps(v) if k == "data" and v is not None else v) for k, v in r.items()}
                     for r in records])
    if not records:
        return "no events in that range"
    return table([(r["time"], r["kind"], r["status"] or "", r["message"] + cost_words(r["data"]))
                  for r in records], header=("time", "kind", "status", "message"))


def _csv(records: list[dict]) -> str:
    import csv
    import io

    out = io.StringIO()
    if records:
        writer = csv.DictWriter(out, fieldnames=list(records[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
    return out.getvalue().rstrip("\n")


# ------------------------------------------------------------------ words shared by the CLI and the dashboard


def rule_action_words(action: str, config: Any) -> str:
    """A rule's action as it stands: a reclaim rule does nothing by itself while [policy]
    auto_reclaim is off (the default), so it must not read as if it would act (issue 18)."""
    if action == "reclaim" and not config.policy.auto_reclaim:
        return "would reclaim (auto-reclaim is off)"
    return action


def config_toml(config: Any, db: Any) -> str:
    """``to_toml`` with the history path actually used where the config leaves ``db`` empty."""
    from monitor.config.schema import to_toml

    text = to_toml(config)
    if config.general.db and str(db) == config.general.db:
        return text
    from monitor.history.places import own_places

    own = own_places()
    why = "from --db" if config.general.db or str(db) != str(own.db) else \
        f"the default: the {'system' if own.scope == 'system' else 'user'}'s history"
    return text.replace(f"db = {json.dumps(config.general.db)}\n", f"db = {json.dumps(str(db))}  # {why}\n", 1)


def _file_lru_rows(g: Any) -> list[tuple[str, str, str]]:
    """The kernel's split of the file cache (issue 25): what gradual keeps and what it takes first."""
    if g.active_file is None and g.inactive_file is None:
        return []
    if g.mglru:  # MGLRU's generations, not the classic lists: "active" says nothing of reuse (issue 25)
        return [("  young gens", format_bytes(g.active_file), "Active(file): MGLRU is on: its two youngest "
                 "generations, not a sign of reuse"),
                ("  older gens", format_bytes(g.inactive_file), "Inactive(file): MGLRU's older generations "
                 "(memory.reclaim takes the oldest first)")]
    return [("  used again", format_bytes(g.active_file), "Active(file): read more than once recently (active)"),
            ("  read once", format_bytes(g.inactive_file), "Inactive(file): memory.reclaim takes it first (inactive)")]


def gradual_bound(sample: Sample, config: Any, gradual: bool, ws: Any, now: float) -> dict[str, Any] | None:
    """Where a gradual reclaim would stop now, from the plan the reclaimer builds (reclaimer.gradual_start):
    {"bytes", "source", "words"}; None where `vmmemctl reclaim` would not run gradual (its method, or no
    memory.reclaim here)."""
    from monitor.reclaim import workingset
    from monitor.reclaim.controller import bound
    from monitor.reclaim.reclaimer import gradual_start, plan_methods, stop_words

    if "gradual" not in plan_methods(config.reclaim.method, gradual, False)[0]:
        return None
    hint = workingset.hint(ws, config.reclaim, now)
    plan = gradual_start(sample.guest, config.reclaim, hint)
    level, source = bound(plan)
    return {"bytes": level, "source": source, "words": stop_words(plan, hint), "mglru": plan.mglru}


UNLISTED_SHOWN = 64 * 1024 * 1024  # per-CPU lists and the like hold a few MiB of free pages: not news


def _unlisted_row(g: Any) -> list[tuple[str, str, str]]:
    """Free memory in no free list, so that returnable + fragmented + this add up to free (issue 28: 21.0 GiB
    free beside 8.6 GiB + 274 MiB, the rest not said)."""
    unlisted = g.unlisted_free
    if unlisted is None or unlisted < UNLISTED_SHOWN:
        return []
    return [("not in free lists", format_bytes(unlisted),
             "counted free but in no free list (zoneinfo: managed < present); the estimate counts it as not held")]


# ------------------------------------------------------------------ who holds the cache (cgroups)


def _cgroup_row(g: Any) -> list[str]:
    name = g.name + ("  (frozen)" if g.frozen else "")
    return ["", format_bytes(g.file), format_bytes(g.active_file), format_bytes(g.inactive_file), format_bytes(g.shmem),
            format_bytes(g.anon), format_bytes(g.current), name, g.path if g.path != name else ""]


def cgroups_text(listing: Any, top: int) -> str:
    """`vmmemctl cgroups`: every group, the largest page cache first; what could not be read, in words."""
    h = listing.hierarchy
    if not h.usable:
        return h.why
    totals = listing.totals()
    out = [f"{h.why}: {len(listing.groups)} groups, the largest page cache first",
           f"a group's numbers include its children's; the top-level groups hold {format_bytes(totals['file_bytes'])} "
           f"of page cache (shmem {format_bytes(totals['shmem_bytes'])}), {format_bytes(totals['anon_bytes'])} anon, "
           f"memory.current {format_bytes(totals['current_bytes'])}", ""]
    shown = listing.groups[:top]
    out.append(table([_cgroup_row(g) for g in shown], header=["", "page cache", "active", "inactive", "shmem", "anon",
                                                               "current", "group", "path"]))
    if len(listing.groups) > top:
        out.append(f"  ... and {len(listing.groups) - top} smaller groups (--top N shows more)")
    problems = [g for g in listing.groups if g.problem]
    if problems:
        out += ["", "not read:"] + [f"  {g.path}: {g.problem}" for g in problems]
    if listing.gone:
        out += ["", f"{listing.gone} group{'s' if listing.gone > 1 else ''} went away while read (not shown)"]
    if listing.truncated:
        out += ["", f"stopped after {len(listing.groups) + listing.gone} groups"]
    return "\n".join(out)


def holders(listing: Any, n: int) -> list[Any]:
    """The ``n`` groups holding the most page cache with no group below them: the holders themselves,
    not the slices that add them up (a parent's numbers include its children's)."""
    return [g for g in listing.groups if g.children == 0 and g.file][:n]


def cgroups_status_words(listing: Any, n: int = 3) -> str:
    """One line for `status`: the few groups that hold the most page cache."""
    if not listing.hierarchy.usable:
        return listing.hierarchy.why
    top = holders(listing, n)
    if not top:
        return f"{listing.hierarchy.why}: no group holds page cache"
    words = ", ".join(f"{g.name} {format_bytes(g.file)}" + (" (frozen)" if g.frozen else "") for g in top)
    return f"{words} (page cache; `vmmemctl cgroups` lists all {len(listing.groups)} groups)"
