"""vmmemctl's headless core: probes, policy, reclaim, store, scheduler, notifications, CLI.

Nothing here imports ``tui``, ``textual`` or ``rich`` (a test proves it), so the
watcher daemon stays small.
"""

__version__ = "0.1.0"
