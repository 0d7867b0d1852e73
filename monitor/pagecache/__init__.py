"""What is in the page cache, by file and directory.

    treewalk      a walk that follows no symlink and reads nothing
    residency     per file: how much is cached (cachestat, else mincore), and dropping it
    scan          ``vmmemctl cache``: the largest cached trees, in words

May import: the vocabulary, monitor.kernel, monitor.config, monitor.probes.
"""
