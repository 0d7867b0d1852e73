"""The chain: backends in the order of ``[notify] backends``, first that delivers wins; the log gets all."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Mapping, Sequence

from monitor.notify.base import Backend, Delivery, Notification
from monitor.notify.notifysend import NotifySendBackend
from monitor.notify.plyer_backend import PlyerBackend
from monitor.notify.toast import ToastBackend

if TYPE_CHECKING:
    from monitor.config.schema import Config, NotifyConfig

log = logging.getLogger("monitor.notify")


BACKENDS = {"toast": ToastBackend, "notify-send": NotifySendBackend, "plyer": PlyerBackend}


class Notifier:
    """Tries each backend in order; the first that delivers wins. The log gets every notification."""

    def __init__(self, backends: Sequence[Backend]):
        self.backends = list(backends)

    def send(self, notification: Notification) -> Delivery:
        # repr keeps a hostile body on one log line
        log.info("notification [%s] %r: %r", notification.key or "-", notification.title, notification.body)
        failures: list[tuple[str, str]] = []
        for backend in self.backends:
            ok, detail = self._try(backend, notification)
            if ok:
                delivery = Delivery(notification, backend.name, detail, tuple(failures))
                log.info("%s", delivery.summary())
                return delivery
            failures.append((backend.name, detail))
        delivery = Delivery(notification, None, "", tuple(failures))
        log.warning("%s", delivery.summary())
        return delivery

    @staticmethod
    def _try(backend: Backend, notification: Notification) -> tuple[bool, str]:
        try:
            return backend.send(notification)
        except Exception as exc:  # a bug in one backend must not stop the chain or the watcher
            log.exception("notify backend %s raised", backend.name)
            return False, f"internal error: {type(exc).__name__}: {exc}"


def build_notifier(config: NotifyConfig, environ: Mapping[str, str] | None = None) -> Notifier:
    return Notifier([BACKENDS[name](config.timeout, environ) for name in config.backends])


def notify_test(config: Config, environ: Mapping[str, str] | None = None) -> tuple[int, str]:
    """``vmmemctl notify --test``: (exit code, lines saying who delivered, or why nobody could)."""
    notification = Notification("vmmemctl test notification",
                                "If you can read this, vmmemctl can reach you.", key="notify-test")
    delivery = build_notifier(config.notify, environ).send(notification)
    lines = [f"  {name}: {why}" for name, why in delivery.failures]
    if delivery.delivered:
        head = f"test notification delivered by {delivery.backend}: {delivery.detail}"
        return 0, "\n".join([head] + (["tried first:"] + lines if lines else []))
    if not delivery.failures:
        return 1, "no backend could deliver the test notification: [notify] backends is empty (log only)"
    return 1, "\n".join(["no backend could deliver the test notification (log only):"] + lines)
