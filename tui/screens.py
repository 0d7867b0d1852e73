"""Modal screens: reclaim confirm, pending prompt, snooze, effective config, help, event detail.

Each returns its answer with ``dismiss``; the app carries it out (in a worker) and records it.
Choices are OptionLists: arrows choose, Enter confirms, Escape backs out, the mouse works too.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from rich.console import Group
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from monitor.history.store import Event
from monitor.units import format_bytes, format_duration
from monitor.policy.state import DEFAULT_SNOOZE
from tui import data

SNOOZE_CHOICES = (900.0, 3600.0, 4 * 3600.0, 86400.0)


class Modal(ModalScreen):
    BINDINGS = [Binding("escape", "close", "Close")]

    def action_close(self) -> None:
        self.dismiss(None)


class ReclaimScreen(Modal):
    """Reclaim now: choose the method, see what it should give back, confirm."""

    def __init__(self, offers: dict[str, data.Offer], default: str):
        super().__init__()
        self.offers = offers
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="reclaim-dialog") as box:
            box.border_title = "Reclaim now"
            yield Static("Choose a method, Enter to reclaim, Esc to cancel.", classes="hint")
            options = [Option(self._label(o), id=o.method) for o in self.offers.values()]
            yield OptionList(*options, id="methods")
            yield Static(id="offer", classes="offer")

    def _label(self, offer: data.Offer) -> Text:
        """Three columns: the method, what runs here (a fallback marked), the expected gain right-aligned."""
        runs = max(len(o.runs) for o in self.offers.values())
        gain = "" if offer.gain is None else f"~{format_bytes(offer.gain)}"
        return Text.assemble((f"{offer.method:<10}", "bold"), (f"{offer.runs:<{runs}}", "dim"),
                             (f"{gain:>11}", "green"))

    def on_mount(self) -> None:
        methods = self.query_one("#methods", OptionList)
        methods.highlighted = list(self.offers).index(self.default) if self.default in self.offers else 0
        methods.focus()

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        offer = self.offers[event.option.id or ""]
        text = Text(offer.words)
        for note in offer.notes:
            text.append(f"\nnote: {note}", style="italic dim")
        self.query_one("#offer", Static).update(text)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)


@dataclass(frozen=True)
class PromptAnswer:
    answer: str  # reclaim | snooze | dismiss
    method: str | None = None
    seconds: float | None = None


class PromptScreen(Modal):
    """A pending prompt from the policy: what, why, and Reclaim / Snooze / Dismiss. Esc answers later."""

    BINDINGS = [Binding("escape", "close", "Later")]

    def __init__(self, prompt: Event, offer: data.Offer | None, when: str, read_only: str = ""):
        super().__init__()
        self.prompt = prompt
        self.offer = offer
        self.when = when
        self.read_only = read_only  # why it cannot be answered here (viewing someone's history)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="prompt-dialog") as box:
            box.border_title = f"vmmemctl asks ({self.prompt.rule or 'policy'}, {self.when})"
            yield Static(Text(self.prompt.message), classes="what")
            if self.read_only or self.offer is None:
                yield OptionList(Option(Text.assemble(("Close", "bold"), (" (nothing is recorded)", "dim")),
                                        id="close"), id="answers")
                yield Static(Text(f"Not answerable here: {self.read_only}", style="dim"), classes="offer")
                yield Static("Enter or Esc closes (press a to see it again)", classes="hint")
                return
            gain = "" if self.offer.gain is None else f": ~{format_bytes(self.offer.gain)}"
            options = [Option(Text.assemble(("Reclaim ", "bold green"), f"({self.offer.method}){gain}"),
                              id="reclaim")]
            for seconds in SNOOZE_CHOICES:
                options.append(Option(Text.assemble(("Snooze ", "bold yellow"), format_duration(seconds),
                                                    (" (no prompts, notifications or rule reclaims)", "dim")
                                                    if seconds == DEFAULT_SNOOZE else ""), id=f"snooze:{seconds:g}"))
            options.append(Option(Text.assemble(("Dismiss", "bold"), (" (the rule re-arms later)", "dim")),
                                  id="dismiss"))
            yield OptionList(*options, id="answers")
            yield Static(Text(self.offer.words, style="dim"), classes="offer")
            yield Static("Enter answers · Esc: later (press a to come back)", classes="hint")

    def on_mount(self) -> None:
        self.query_one("#answers", OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        choice = event.option.id or ""
        if choice == "close" or self.offer is None:
            self.dismiss(None)
        elif choice == "reclaim":
            self.dismiss(PromptAnswer("reclaim", method=self.offer.method))
        elif choice.startswith("snooze:"):
            self.dismiss(PromptAnswer("snooze", seconds=float(choice.split(":", 1)[1])))
        else:
            self.dismiss(PromptAnswer("dismiss"))


class SnoozeScreen(Modal):
    """How long to snooze (1 h highlighted), or clear a snooze in force."""

    def __init__(self, snoozed_until: str):
        super().__init__()
        self.snoozed_until = snoozed_until

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog small", id="snooze-dialog") as box:
            box.border_title = "Snooze"
            yield Static("No notifications, prompts or rule reclaims for:", classes="hint")
            options = [Option(format_duration(s), id=f"{s:g}") for s in SNOOZE_CHOICES]
            if self.snoozed_until:
                options.append(Option(f"clear ({self.snoozed_until})", id="0"))
            yield OptionList(*options, id="durations")

    def on_mount(self) -> None:
        durations = self.query_one("#durations", OptionList)
        durations.highlighted = SNOOZE_CHOICES.index(DEFAULT_SNOOZE)
        durations.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(float(event.option.id or 0))


class TextScreen(Modal):
    """A scrollable page of text (the config, help, an event's details)."""

    BINDINGS = [Binding("escape", "close", "Close"), Binding("q", "close", "Close", show=False)]

    def __init__(self, title: str, body: Any, dialog_id: str):
        super().__init__()
        self.title_text = title
        self.body = body
        self.dialog_id = dialog_id

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog page", id=self.dialog_id) as box:
            box.border_title = self.title_text
            box.border_subtitle = "Esc closes"
            yield Static(self.body)


def config_screen(toml: str, path: str | None) -> TextScreen:
    return TextScreen(f"effective config ({path or 'defaults: no config file'})",
                      Syntax(toml, "toml", theme="ansi_dark", background_color="default"), "config-dialog")


HELP_KEYS = (
    ("r", "reclaim now: choose a method, see its expected gain, Enter runs it"),
    ("s", "snooze notifications, prompts and rule reclaims (1 h, or choose)"),
    ("p", "pause / resume automatic reclaims (1 h)"),
    ("a", "answer the waiting prompt (shown when one waits)"),
    ("t 1-4", "chart range: next, or 5 min, 1 h, 24 h, 7 days"),
    ("c", "the effective config"),
    ("w", "what is in the page cache, by folder; give one tree's cache back"),
    ("g", "who holds the cache: cgroup v2 groups (services, containers, sessions), the largest first"),
    ("b", "where the gap is: the host footprint against the guest, part by part"),
    ("enter", "details of the selected event, in words (j there: the raw record)"),
    ("ctrl+p", "command palette"),
    ("?", "this help"),
    ("q", "quit"),
)
HELP_READING = (
    ("arrows", "the latest sample against the one 5 minutes before: [green]green[/green] is the way you want "
               "it to go (less cache held, more memory the host can take back), [yellow]yellow[/yellow] the other"),
    ("host footprint", "what the VM holds on the host; \"estimated\" when computed from the guest"),
    ("reclaimable", "what dropping the page cache frees now (cache minus mapped pages)"),
    ("returnable / frag.", "free memory in blocks the host can take back / too small until compaction"),
    ("chart", "dashed lines are the configured thresholds (grey: a reclaim rule while auto-reclaim is off); "
              "vertical lines are reclaims; long ranges read 1- or 10-minute averages"),
)
HELP_MODES = (
    ("attached", "a `vmmemctl watch` records the history; the dashboard reads it and writes only what you do "
                 "(snooze, pause, answers, reclaims)"),
    ("standalone", "no watcher: the dashboard samples and records by itself, so trends survive between runs"),
    ("viewing", "--view: reads a history (someone else's, say) and records nothing; prompts are shown, "
                "not answered; r, s and p are unavailable"),
)


def _help_table(rows: tuple[tuple[str, str], ...], key_width: int) -> Table:
    """Two columns, so a long line wraps under its own description, not under the keys."""
    table = Table.grid(padding=(0, 2))
    table.add_column(width=key_width, no_wrap=True, style="bold")
    table.add_column(ratio=1)
    for key, words in rows:
        table.add_row(key, Text.from_markup(words))
    return table


def help_screen() -> TextScreen:
    body = Group(Text("Keys", style="bold underline"), _help_table(HELP_KEYS, 6), Text(),
                 Text("Reading it", style="bold underline"), _help_table(HELP_READING, 18), Text(),
                 Text("Modes (the header says which)", style="bold underline"), _help_table(HELP_MODES, 10))
    return TextScreen("help", body, "help-dialog")


def gap_screen(row: dict | None) -> TextScreen:
    """The host footprint of the newest sample, part by part (monitor.policy.gap), as `status` says it."""
    from monitor.history.store import row_sample
    from monitor.policy.gap import explain_gap

    gap, why = explain_gap(row_sample(row), order_known=False) if row else (None, "no sample yet")
    if gap is None:
        return TextScreen("where the gap is", Text(f"Unknown: {why}."), "gap-dialog")
    table = Table.grid(padding=(0, 2))
    table.add_column(no_wrap=True, style="bold")
    table.add_column(justify="right", no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    table.add_column(ratio=1)
    for p in gap.parts:
        share = f"{100 * p.bytes / gap.host_bytes:.0f}%" if gap.host_bytes > 0 else ""
        table.add_row(p.label, format_bytes(p.bytes), share, Text(p.words, style="dim" if p.estimate else ""))
    head = Text(f"The host footprint, {format_bytes(gap.host_bytes)}, is (dim: an estimate):")
    body = [head, table] + ([Text(), Text(f"note: {gap.note}", style="yellow")] if gap.note else [])
    return TextScreen("where the gap is", Group(*body), "gap-dialog")


class EventScreen(TextScreen):
    """One event whole: its data in words; `j` shows the raw record (JSON) and back."""

    BINDINGS = [*TextScreen.BINDINGS, Binding("j", "raw", "Raw JSON")]

    def __init__(self, title: str, words: Text, raw: Text):
        super().__init__(title, words, "event-dialog")
        self.words, self.raw, self.showing_raw = words, raw, False

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog page", id=self.dialog_id) as box:
            box.border_title = self.title_text
            box.border_subtitle = "j: raw JSON · Esc closes" if self.raw.plain else "Esc closes"
            yield Static(self.body, id="event-body")

    def action_raw(self) -> None:
        if not self.raw.plain:
            return
        self.showing_raw = not self.showing_raw
        self.query_one("#event-body", Static).update(self.raw if self.showing_raw else self.words)
        box = self.query_one(VerticalScroll)
        box.border_subtitle = "j: in words · Esc closes" if self.showing_raw else "j: raw JSON · Esc closes"


def event_screen(event: Event | None, line: data.EventLine, now: float | None = None,
                 localtime: Any = time.localtime) -> EventScreen:
    head = Text()
    head.append(f"{line.when}  {line.kind}\n\n", style="bold")
    head.append((event.message if event else line.text) + "\n")
    words, raw = head.copy(), Text()
    if event and event.data:
        words.append("\n")
        words.append("\n".join(data.detail_lines(event.data, time.time() if now is None else now, localtime)))
        raw = head.copy()
        raw.append("\n")
        raw.append(json.dumps(event.data, indent=2, default=str), style="dim")
    return EventScreen(f"event {line.id}", words, raw)
