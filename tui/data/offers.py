"""Reclaim offers: what each method would run here and about how much it would free."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from monitor.config.schema import Config
from monitor.history.store import row_sample
from monitor.reclaim.controller import bound
from monitor.reclaim.reclaimer import gradual_start, stop_words
from monitor.reclaim.workingset import Hint
from monitor.units import format_bytes
from tui.data.common import Row


@dataclass(frozen=True)
class Offer:
    method: str
    chain: list[str]  # what runs, in order ("gradual", "compact")
    gain: int | None  # bytes of page cache expected to be freed (compact: free memory made returnable)
    words: str  # "frees about 3.1 GiB of page cache, then compacts"
    notes: list[str] = field(default_factory=list)

    @property
    def falls_back(self) -> bool:
        """auto/gradual that will run pagecache here (no memory.reclaim): the dialog marks it."""
        return self.method in ("auto", "gradual") and bool(self.chain) and self.chain[0] == "pagecache"

    @property
    def runs(self) -> str:
        """What runs, in words for the dialog's middle column: ``pagecache + compact (fallback)``."""
        return " + ".join(self.chain) + (" (fallback)" if self.falls_back else "")


def expected_gain(method: str, chain: Sequence[str], row: Row | None, config: Config,
                  hint: Hint | None = None) -> tuple[int | None, str]:
    """What a reclaim with ``chain`` should give, from the latest row: the promise the confirm shows."""
    row = row or {}
    reclaimable, cache = row.get("reclaimable"), row.get("page_cache")
    first = chain[0] if chain else method
    then = ", then compacts" if "compact" in chain[1:] else ""
    if first == "compact":
        frag = row.get("fragmented_free")
        return frag, f"makes up to {format_bytes(frag)} of fragmented free memory returnable"
    if first == "gradual":
        if cache is None or "t" not in row:
            return None, f"frees cold page cache in steps{then}"
        # the plan the reclaimer builds (issue 25): its lower bound, and in words where it comes from
        plan = gradual_start(row_sample(row).guest, config.reclaim, hint)
        level = bound(plan)[0]
        gain = max(0, min(cache - level, reclaimable if reclaimable is not None else cache))
        return gain, f"frees about {format_bytes(gain)} of cold page cache in steps{then}: it {stop_words(plan, hint)}"
    if first == "full":
        slab = row.get("slab_reclaimable") or 0
        gain = None if reclaimable is None else reclaimable + slab
        return gain, f"frees about {format_bytes(gain)} (page cache + dentries/inodes){then}"
    return reclaimable, f"frees about {format_bytes(reclaimable)} of page cache at once{then}"


def make_offer(method: str, plan: Callable[[str], tuple[list[str], list[str]]], row: Row | None,
               config: Config, hint: Hint | None = None) -> Offer:
    """``hint``: the remembered working set (monitor.reclaim.workingset), which gradual's bound considers."""
    chain, notes = plan(method)
    gain, words = expected_gain(method, chain, row, config, hint)
    return Offer(method, chain, gain, words, notes)

