"""Notifications: a chain of backends, first that delivers wins, and a rate limiter.

Backends, tried in the order of ``[notify] backends``:

- ``toast`` (toast.py): a Windows toast from inside WSL2 through one line sent
  to ``powershell.exe -Command -`` (never ``-EncodedCommand``); the title and
  body are base64 literals in that fixed line, so nothing from a sample or the
  config ever becomes PowerShell or XML.
- ``notify-send``: where a D-Bus session bus exists; argv only, never a shell.
- ``plyer``: run in a child Python process (see :class:`PlyerBackend` for why),
  which also tells plyer's silent failures from real deliveries.

The log always gets every notification, and the caller (the watcher) records
the :class:`Delivery` in the history: "delivered by toast", or "no backend
could deliver: toast: ...; notify-send: no session bus; plyer: ...".
"""

from monitor.notify.base import APP_NAME, Backend, Delivery, Notification, has_session_bus
from monitor.notify.chain import BACKENDS, Notifier, build_notifier, notify_test
from monitor.notify.notifysend import NotifySendBackend
from monitor.notify.plyer_backend import PlyerBackend, run_plyer_child
from monitor.notify.ratelimit import RateLimiter
from monitor.notify.toast import TOAST_SCRIPT, ToastBackend, find_powershell, toast_line

__all__ = ["APP_NAME", "BACKENDS", "TOAST_SCRIPT", "Backend", "Delivery", "Notification", "Notifier",
           "NotifySendBackend", "PlyerBackend", "RateLimiter", "ToastBackend", "build_notifier", "find_powershell",
           "has_session_bus", "notify_test", "run_plyer_child", "toast_line"]
