"""Where the core's log records go: the one place that sets up the ``monitor`` logger.

Three processes, three destinations, one format (with the pid: a watcher and a
dashboard may write beside each other):

    vmmemctl watch     a rotating file (and stderr on a terminal)        :func:`to_watch_log`
    vmmemctl tui       tui.log while the screen is Textual's             :func:`to_file_while`
    one-shot commands  nowhere (their report is what they print)         :func:`silence`
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import sys
from pathlib import Path
from typing import Iterator

from monitor.errors import UserError

FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
ROOT = "monitor"


def _formatted(handler: logging.Handler) -> logging.Handler:
    handler.setFormatter(logging.Formatter(FORMAT))
    return handler


def to_watch_log(level: str, log_file: Path | None) -> None:
    """The watcher's log: ``log_file`` rotated at 1 MiB (3 kept), and stderr on a terminal or without a file."""
    root = logging.getLogger(ROOT)
    root.setLevel(level.upper())
    if log_file is not None:
        try:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.handlers.RotatingFileHandler(log_file, maxBytes=1 << 20, backupCount=3)
        except OSError as exc:
            raise UserError(f"cannot write the log {log_file}: {exc.strerror or exc} (pass --log-file PATH)") from None
        root.addHandler(_formatted(handler))
    if sys.stderr.isatty() or log_file is None:
        root.addHandler(_formatted(logging.StreamHandler()))
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


@contextlib.contextmanager
def to_file_while(path: Path, level: str) -> Iterator[None]:
    """The core's records go to ``path`` only (never over a full-screen app) until the block ends."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = _formatted(logging.FileHandler(path))
    except OSError:  # no log dir: drop the records rather than print them over the screen
        handler = logging.NullHandler()
    root = logging.getLogger(ROOT)
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


def silence() -> None:
    """A one-shot command prints its own report: the records its pieces log would repeat it on stderr."""
    logging.getLogger(ROOT).addHandler(logging.NullHandler())
