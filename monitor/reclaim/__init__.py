"""Reclaims: governed by measurement, recorded with what they gave back and what they cost.

    reclaimer     one reclaim: drop_caches, memory.reclaim in gradual steps, compaction, the settle
    controller    the gradual steps' sizes, a pure function of what the last step did
    workingset    what gradual reclaims learned of the working set, kept for the next one
    cost          what a reclaim cost afterwards (what was read back), measured later
    paths         the page cache of a tree of files only (``reclaim --path``)
    record        :class:`ReclaimRequest`, and a reclaim run and recorded as an event

May import: everything below: the vocabulary, kernel, config, probes, history, policy, pagecache.
"""
