"""While the screen is Textual's, the core's log records go to tui.log, never over the screen."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def log_to_file(level: str) -> Iterator[None]:
    """The core logs (the watcher, the notifier) into tui.log while the screen is Textual's."""
    import platformdirs

    path = Path(platformdirs.user_log_dir("vmmemctl")) / "tui.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(path)
    except OSError:  # no log dir: drop the records rather than print them over the screen
        handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("monitor")
    saved = root.level, root.propagate
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(saved[0])
        root.propagate = saved[1]
