"""The "groups" view: who holds the page cache, one cgroup v2 group a line, the largest first.

A screen of its own (key ``g``, palette "Who holds the cache"), beside the cache view (``w``),
which answers "which files"; this one answers "which program". The groups are read
(:func:`monitor.kernel.cgroups.list_groups_here`, read-only, no privilege) in a thread worker,
on opening and on ``g`` again. Where memory is on cgroup v1 the view says so in one line.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from monitor.config.schema import Config
from monitor.units import format_bytes


class GroupsRead(Message):
    def __init__(self, listing: Any = None, error: str | None = None):
        super().__init__()
        self.listing = listing
        self.error = error


class CgroupsScreen(Screen):
    DEFAULT_CSS = """
    CgroupsScreen #groups-title { height: 1; text-style: bold; }
    CgroupsScreen #groups-summary { height: auto; max-height: 3; color: $text-muted; }
    CgroupsScreen #groups-table { height: 1fr; }
    CgroupsScreen #groups-problems { height: auto; max-height: 4; color: $text-muted; }
    """
    BINDINGS = [Binding("escape", "close", "Back"), Binding("q", "close", "Back", show=False),
                Binding("g", "reread", "Read again")]

    def __init__(self, config: Config):
        super().__init__()
        self.config = config
        self.listing: Any = None

    def compose(self) -> ComposeResult:
        yield Static("who holds the cache: cgroup v2 groups, the largest page cache first", id="groups-title")
        yield Static("reading…", id="groups-summary")
        table: DataTable = DataTable(id="groups-table", cursor_type="row", zebra_stripes=True)
        table.add_columns("cache", "active", "inactive", "anon", "current", "group")
        yield table
        yield Static("", id="groups-problems")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self.action_reread()

    def action_reread(self) -> None:
        self._read()

    @work(thread=True, exclusive=True, group="cgroups-read", exit_on_error=False)
    def _read(self) -> None:
        from monitor.kernel.cgroups import list_groups_here

        try:
            listing = list_groups_here(self.config.general.proc_root, through_exec=bool(self.config.guest.exec))
        except OSError as exc:  # the walk itself guards each group; this is a proc root gone meanwhile
            self.post_message(GroupsRead(error=str(exc)))
            return
        self.post_message(GroupsRead(listing))

    def on_groups_read(self, message: GroupsRead) -> None:
        summary = self.query_one("#groups-summary", Static)
        if message.error:
            summary.update(f"could not read the groups: {message.error}")
            return
        self.listing = listing = message.listing
        table = self.query_one(DataTable)
        table.clear()
        table.display = listing.hierarchy.usable  # no empty columns under the one line that says why
        if not listing.hierarchy.usable:
            summary.update(Text(listing.hierarchy.why))
            return
        totals = listing.totals()
        summary.update(Text(f"{len(listing.groups)} groups; a group's numbers include its children's: the "
                            f"top-level groups hold {format_bytes(totals['file_bytes'])} of page cache",
                            overflow="ellipsis"))
        for g in listing.groups:
            name = "  " * (g.depth - 1) + g.name + (" (frozen)" if g.frozen else "")
            table.add_row(format_bytes(g.file), format_bytes(g.active_file), format_bytes(g.inactive_file),
                          format_bytes(g.anon), format_bytes(g.current), name)
        lines = [f"{g.path}: {g.problem}" for g in listing.groups if g.problem]
        if listing.gone:
            lines.append(f"{listing.gone} group(s) went away while read")
        self.query_one("#groups-problems", Static).update(Text("\n".join(lines), overflow="ellipsis"))

    def action_close(self) -> None:
        self.dismiss(None)
