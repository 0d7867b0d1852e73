"""The "cache" view: what is in the page cache, by directory, and giving one directory's back.

A screen of its own (key ``w``, palette "What is in the page cache"). The
scan (:mod:`monitor.pagecache.scan`) runs in a thread worker and reports progress by
message; Esc stops it and leaves. Enter on a directory asks first, then gives
that tree's cache back in a worker (``Wiring.reclaim``: monitor/cache_reclaim.py),
which records a reclaim event like every reclaim; the dashboard shows it in the
events and on the chart when the view closes.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, OptionList, Static
from textual.widgets.option_list import Option

from monitor.config.schema import Config
from monitor.errors import UserError
from monitor.units import format_bytes

log = logging.getLogger("monitor.tui")
BAR = 12
# (paths, progress, stop) -> the reclaim's Outcome: DataSource.give_back (the watcher's, or ours)
GiveBack = Callable[[list[str], Callable[[str], None], threading.Event], Any]


class ScanProgress(Message):
    def __init__(self, text: str):
        super().__init__()
        self.text = text


class ScanDone(Message):
    def __init__(self, result: Any = None, error: str | None = None):
        super().__init__()
        self.result = result
        self.error = error


class GiveBackDone(Message):
    def __init__(self, result: Any = None, error: str | None = None):
        super().__init__()
        self.result = result
        self.error = error


def bar(fraction: float, width: int = BAR) -> Text:
    cells = max(0.0, min(1.0, fraction)) * width
    return Text("█" * int(cells) + ("▌" if cells - int(cells) >= 0.5 else ""), style="green")


def short(path: str) -> str:
    """A path for the eye: the home as ~, bytes that are not UTF-8 as \\xNN."""
    import os

    from monitor.pagecache.treewalk import display

    home = os.path.expanduser("~")
    shown = display(path)
    return "~" + shown[len(home):] if home != "/" and (shown == home or shown.startswith(home + "/")) else shown


class ConfirmScreen(ModalScreen):
    """Give this directory's cache back? Enter on the first line does; Esc or the second does not."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, path: str, cached: int):
        super().__init__()
        self.path, self.cached = path, cached

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog small", id="cache-confirm") as box:
            box.border_title = "Give this cache back?"
            yield Static(Text(self.path, overflow="fold"), classes="what")
            yield OptionList(Option(Text.assemble(("Give back ", "bold green"), f"~{format_bytes(self.cached)}"),
                                    id="yes"), Option("Cancel", id="no"), id="confirm")
            yield Static("only these files; hot caches elsewhere stay", classes="hint")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id == "yes")

    def action_cancel(self) -> None:
        self.dismiss(False)


class CacheScreen(Screen):
    DEFAULT_CSS = """
    CacheScreen #cache-title { height: 1; text-style: bold; }
    CacheScreen #cache-progress { height: 1; color: $text-muted; }
    CacheScreen #cache-table { height: 1fr; }
    CacheScreen #cache-summary { height: auto; max-height: 4; color: $text-muted; }
    """
    BINDINGS = [Binding("escape", "close", "Back"), Binding("q", "close", "Back", show=False),
                Binding("enter", "give_back", "Give back", show=True, priority=True),
                Binding("g", "rescan", "Rescan")]

    def __init__(self, config: Config, give_back: GiveBack | None, paths: list[str] | None = None, depth: int = 2,
                 refusal: str = ""):
        super().__init__()
        from monitor.pagecache.scan import default_paths

        self.config, self.give_back, self.depth = config, give_back, depth
        self.refusal = refusal  # why nothing is given back from here (--view), when give_back is None
        self.paths = paths or default_paths()
        self.stop = threading.Event()
        self.result: Any = None
        self.rows: list[tuple[str, int]] = []  # (path, cached) per table row
        self.busy = ""  # "scanning" | "giving back" | ""
        self.gave_back = False

    def compose(self) -> ComposeResult:
        yield Static(Text(f"what is in the page cache under {', '.join(map(short, self.paths))}",
                          overflow="ellipsis", no_wrap=True), id="cache-title")
        yield Static("", id="cache-progress")
        table: DataTable = DataTable(id="cache-table", cursor_type="row", zebra_stripes=True)
        table.add_columns("cached", "share", "", "files", "directory")
        yield table
        yield Static("", id="cache-summary")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self.action_rescan()

    def on_unmount(self) -> None:
        self.stop.set()

    # ------------------------------------------------------------ scanning

    def action_rescan(self) -> None:
        if self.busy:
            return
        self.busy = "scanning"
        self.stop.clear()
        self._say("scanning…")
        self._scan()

    @work(thread=True, exclusive=True, group="cache-scan", exit_on_error=False)
    def _scan(self) -> None:
        from monitor.kernel.procfs import LocalFiles
        from monitor.pagecache.scan import progress_line, scan_trees

        try:
            result = scan_trees(LocalFiles(self.config.general.proc_root), self.paths, depth=self.depth, top=50,
                                stop=self.stop,
                                progress=lambda stats, cached: self.post_message(
                                    ScanProgress(progress_line(stats, cached) + " · Esc stops")))
        except (OSError, UserError) as exc:
            self.post_message(ScanDone(error=str(exc)))
            return
        self.post_message(ScanDone(result))

    def on_scan_progress(self, message: ScanProgress) -> None:
        self._say(message.text)

    def on_scan_done(self, message: ScanDone) -> None:
        self.busy = ""
        if message.error:
            self._say(f"scan failed: {message.error}")
            return
        self.result = message.result
        self._show(message.result)

    def _show(self, result: Any) -> None:
        from monitor.pagecache.scan import found_words

        s = result.stats
        share = f" · {100 * result.share:.0f} % of the page cache ({format_bytes(result.page_cache)})" \
            if result.share is not None else ""
        self._say(f"{s.files:,} files in {result.elapsed:.1f}s: {format_bytes(result.found)} cached{share}"
                  + (" · stopped early" if s.interrupted else ""))
        table = self.query_one(DataTable)
        table.clear()
        top = result.top_dirs(50)
        biggest = max((t.cached for _, t in top), default=1)
        self.rows = [(path, t.cached) for path, t in top]
        for path, t in top:
            pct = f"{100 * t.cached / result.page_cache:.1f}%" if result.page_cache else "-"
            table.add_row(format_bytes(t.cached), pct, bar(t.cached / biggest), f"{t.files:,}",
                          self._shown(path, result.roots))
        summary = self.query_one("#cache-summary", Static)
        summary.update(Text("\n".join(found_words(result)) or "nothing skipped", overflow="ellipsis"))

    @staticmethod
    def _shown(path: str, roots: list[str]) -> str:
        """Relative to its tree (the title names the trees): 80 columns leave ~40 for a path."""
        root = next((r for r in roots if path == r or path.startswith(r.rstrip("/") + "/")), "")
        rel = path[len(root):].lstrip("/") or "."
        if len(roots) == 1:
            return rel
        return short(root) if rel == "." else f"{short(root).rstrip('/')}/{rel}"

    def _say(self, text: str) -> None:
        self.query_one("#cache-progress", Static).update(Text(text, no_wrap=True, overflow="ellipsis"))

    # ------------------------------------------------------------ giving back

    def action_give_back(self) -> None:
        table = self.query_one(DataTable)
        if self.give_back is None:
            self.notify(f"giving back is unavailable: {self.refusal or 'nothing can act from here'}",
                        severity="warning")
            return
        if self.busy or not self.rows or table.cursor_row >= len(self.rows):
            if self.busy:
                self.notify(f"{self.busy}: wait for it to finish", severity="warning")
            return
        from monitor.pagecache.treewalk import display

        path, cached = self.rows[table.cursor_row]
        self.app.push_screen(ConfirmScreen(display(path), cached), lambda yes: yes and self._give_back(path))

    def _give_back(self, path: str) -> None:
        self.busy = "giving back"
        self._say(f"giving back the cache of {path}…")
        self._reclaim(path)

    @work(thread=True, exclusive=True, group="cache-reclaim", exit_on_error=False)
    def _reclaim(self, path: str) -> None:
        try:
            result = self.give_back([path], lambda text: self.post_message(ScanProgress(text)), self.stop)
        except UserError as exc:  # another reclaim running
            self.post_message(GiveBackDone(error=str(exc)))
            return
        except Exception as exc:  # a locked database, a vanished tree: say it, keep the view up
            log.exception("reclaim --path failed")
            self.post_message(GiveBackDone(error=f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(GiveBackDone(result))

    def on_give_back_done(self, message: GiveBackDone) -> None:

        self.busy = ""
        if message.error or message.result is None:
            self.notify(f"giving back failed: {message.error}", severity="error", timeout=10)
            self._say(f"giving back failed: {message.error}")
            return
        self.gave_back = True
        self.notify(message.result.words, title="reclaim --path", timeout=10)
        self.action_rescan()

    def action_close(self) -> None:
        self.stop.set()
        self.dismiss(self.gave_back)
