"""The records every notify backend shares: a notification, what became of it, and the backend protocol."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal, Mapping, Protocol

APP_NAME = "vmmemctl"
Urgency = Literal["low", "normal", "critical"]


@dataclass(frozen=True)
class Notification:
    title: str
    body: str
    key: str = ""  # names the condition ("rule:cache-notify") so the rate limiter can hold repeats
    urgency: Urgency = "normal"


@dataclass(frozen=True)
class Delivery:
    """What became of one notification: who delivered it, and why each earlier backend could not."""

    notification: Notification
    backend: str | None  # None: no backend could deliver (it is in the log only)
    detail: str = ""  # what the delivering backend said
    failures: tuple[tuple[str, str], ...] = field(default=())  # (backend, why), in the order tried

    @property
    def delivered(self) -> bool:
        return self.backend is not None

    def summary(self) -> str:
        """One line for the history: ``delivered by toast`` or ``no backend could deliver: ...``."""
        tried = "; ".join(f"{name}: {why}" for name, why in self.failures)
        if self.backend is None:
            return f"no backend could deliver: {tried or 'no backends configured'}"
        return f"delivered by {self.backend}" + (f" (after {tried})" if tried else "")


class Backend(Protocol):
    name: str

    def send(self, notification: Notification) -> tuple[bool, str]:
        """(delivered, what happened in words); never raises."""


def has_session_bus(environ: Mapping[str, str]) -> tuple[bool, str]:
    """notify-send and plyer's Linux backends need a D-Bus session bus; WSL without WSLg has none."""
    if environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return True, "DBUS_SESSION_BUS_ADDRESS is set"
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.exists(os.path.join(runtime, "bus")):
        return True, f"{runtime}/bus exists"
    return False, "no session bus (DBUS_SESSION_BUS_ADDRESS unset, no $XDG_RUNTIME_DIR/bus)"


def last_line(data: bytes | str, limit: int = 200) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    lines = [ln.strip() for ln in text.replace("\ufeff", "").splitlines() if ln.strip()]
    return lines[-1][:limit] if lines else ""
