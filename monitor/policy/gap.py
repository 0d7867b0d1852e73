"""Where the gap is: the host footprint against the guest, in parts a person can act on (issue 27, item 5).

Users ask why Windows shows the VM at 12 GiB while ``free`` inside says 3 GiB
used (microsoft/WSL#8414, #10143, #6252). The host backs every guest page that
was ever touched and not handed back, so its footprint splits, from one
sample's own numbers, into::

    host footprint = programs (AnonPages)
                   + page cache (Buffers + Cached - Shmem; of it, `reclaimable` a drop frees now)
                   + shmem/tmpfs (Shmem: counted as cache by Linux, freed by no drop)
                   + the kernel (MemTotal - MemFree - the three above: slab, page tables, stacks)
                   + free, not yet returned (free in blocks below the page-reporting order:
                     compaction merges them into blocks free page reporting hands back)
                   + the rest (what is left: the VM's own overhead, memory outside MemTotal,
                     and free memory the host has not taken back yet)

The first four are the guest's own and exact for the moment of the sample. The
last two are estimates: a small free block counts only if the guest ever
touched it (a long-running VM has touched nearly all), and the rest is the
difference, so it carries every error of the host figure (the whole working
set includes shared pages; Windows may have paged out or compressed part of
the VM, which makes it negative). Each part says whether it is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from monitor.sample import HOST_METRIC_WORDS, Sample
from monitor.units import format_bytes


@dataclass(frozen=True)
class GapPart:
    key: str  # programs | page_cache | shmem | kernel | unreturned_free | rest
    label: str
    bytes: int
    estimate: bool  # True: not read from the guest for this moment, worked out (see the module's words)
    words: str  # what it is and what gives it back


@dataclass(frozen=True)
class Gap:
    host_bytes: int
    host_metric: str | None
    parts: tuple[GapPart, ...]  # they add up to host_bytes
    note: str = ""  # what to keep in mind reading it (an estimated host figure, a negative rest)

    def part(self, key: str) -> GapPart:
        return next(p for p in self.parts if p.key == key)


def explain_gap(sample: Sample, order_known: bool = True) -> tuple[Gap | None, str]:
    """The breakdown of ``sample``'s host footprint, or None and why it cannot be made. ``order_known``
    False: the sample's page-reporting order is not its own (the history does not keep it)."""
    g, h = sample.guest, sample.host
    if h.bytes is None:
        return None, "the host footprint is unknown"
    needed = {"MemTotal": g.total, "MemFree": g.free, "AnonPages": g.anon, "page cache": g.page_cache,
              "Shmem": g.shmem}
    missing = [name for name, value in needed.items() if value is None]
    if missing:
        return None, f"the guest's {', '.join(missing)} unknown"
    total, free, anon, cache, shmem = g.total, g.free, g.anon, g.page_cache, g.shmem
    in_use = total - free  # type: ignore[operator]
    kernel = max(0, in_use - anon - cache - shmem)  # type: ignore[operator]
    small_free = g.fragmented_free or 0
    reclaimable = g.reclaimable
    rest = h.bytes - (anon + cache + shmem + kernel + small_free)  # type: ignore[operator]
    order_words = f"below {format_bytes(4096 << g.page_reporting_order)}" if order_known else "below the reporting order"
    cache_words = (f"{format_bytes(reclaimable)} of it reclaimable now (vmmemctl reclaim); the rest is mapped "
                   "by running programs" if reclaimable is not None else "how much a drop frees is unknown")
    slab = (f"; {format_bytes(g.slab_reclaimable)} of it dentries/inodes (method full frees them)"
            if g.slab_reclaimable else "")
    parts = (
        GapPart("programs", "programs (anon)", anon, False, "what programs hold; no reclaim frees it"),  # type: ignore[arg-type]
        GapPart("page_cache", "page cache", cache, False, cache_words),  # type: ignore[arg-type]
        GapPart("shmem", "shmem/tmpfs", shmem, False,  # type: ignore[arg-type]
                "counted as cache by Linux, but no reclaim frees it (delete the tmpfs files, or stop their holder)"),
        GapPart("kernel", "kernel", kernel, False, "slab, page tables, stacks" + slab),
        GapPart("unreturned_free", "free, not yet returned", small_free, True,
                f"estimate: free in blocks {order_words}, too small to hand back; compaction "
                "(vmmemctl reclaim --method compact) merges them and gives them back"
                + ("" if g.fragmented_free is not None else " (buddyinfo unread: counted 0)")),
        GapPart("rest", "the rest", rest, True, _rest_words(sample, rest)),
    )
    return Gap(h.bytes, h.metric, parts, _note(sample, rest)), ""


def _rest_words(sample: Sample, rest: int) -> str:
    if sample.host.estimated:
        return "none by construction: the host figure is estimated from these same numbers"
    if rest < 0:
        return ("estimate: negative: the host holds less than the guest has in use (part of the VM paged out "
                "or compressed by the host, or small free blocks never touched)")
    return ("estimate: what is left: the VM's own overhead (its device model, memory outside MemTotal) and free "
            "memory the host has not taken back yet (free page reporting works in ~2 s batches)")


def _note(sample: Sample, rest: int) -> str:
    h = sample.host
    if h.estimated:
        return "the host figure is an estimate from the guest (no Windows or VM host measured): the parts are the guest's"
    if h.metric == "working_set":
        return "the host figure is the whole working set (shared pages included): the rest runs high"
    if rest < 0:
        return "the host holds less than the guest uses: the rest is negative"
    return ""


def gap_text(gap: Gap | None, why: str) -> list[str]:
    """`status`'s lines for the breakdown (a heading, then one line a part)."""
    from monitor.text import table

    if gap is None:
        return ["where the gap is: unknown (" + why + ")"]
    what = HOST_METRIC_WORDS.get(gap.host_metric or "", "") if gap.host_metric else ""
    head = f"where the gap is: the host footprint {format_bytes(gap.host_bytes)}" + (
        f" ({what.split(' (')[0]})" if what else "") + " is"
    rows = [(p.label, format_bytes(p.bytes), _share(p.bytes, gap.host_bytes), p.words) for p in gap.parts]
    lines = [head, table(rows, indent="  ")]
    if gap.note:
        lines.append(f"  note: {gap.note}")
    return lines


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole > 0 else ""


def gap_json(gap: Gap | None, why: str) -> dict[str, Any] | None:
    """`status --json`'s ``gap``: null-free parts in bytes, each with ``estimate``; ``why`` when there is none."""
    if gap is None:
        return {"host_bytes": None, "parts": [], "why": why}
    return {"host_bytes": gap.host_bytes, "host_metric": gap.host_metric, "note": gap.note,
            "parts": [{"key": p.key, "label": p.label, "bytes": p.bytes, "estimate": p.estimate, "words": p.words}
                      for p in gap.parts]}
