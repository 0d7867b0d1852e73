"""The messages the dashboard's workers post to its screen (a worker never touches a widget)."""

from __future__ import annotations

from textual.message import Message

from tui.source import Outcome, Snapshot


class SnapshotReady(Message):
    def __init__(self, snapshot: Snapshot):
        super().__init__()
        self.snapshot = snapshot


class Sampled(Message):
    """The standalone recorder's driver ran a job that changed what the screen shows (a new sample)."""


class RefreshFailed(Message):
    def __init__(self, error: str):
        super().__init__()
        self.error = error


class ReclaimProgress(Message):
    def __init__(self, text: str):
        super().__init__()
        self.text = text


class ReclaimDone(Message):
    def __init__(self, result: Outcome | None, error: str | None = None):
        super().__init__()
        self.result = result
        self.error = error


class Notice(Message):
    """The standalone watcher notified: show it (no refresh: the next tick brings the event)."""

    def __init__(self, words: str):
        super().__init__()
        self.words = words


class ActionDone(Message):
    """A snooze, pause or answer was recorded (or failed): say so, and refresh."""

    def __init__(self, words: str, severity: str = "information"):
        super().__init__()
        self.words = words
        self.severity = severity
