"""Desktop notifications through libnotify's ``notify-send``, where a session bus exists."""

from __future__ import annotations

import os
import subprocess
from typing import Mapping

from monitor.notify.base import APP_NAME, Notification, has_session_bus, last_line as _last_line


class NotifySendBackend:
    name = "notify-send"

    def __init__(self, timeout: float, environ: Mapping[str, str] | None = None):
        self.timeout = timeout
        self.environ = os.environ if environ is None else environ

    def send(self, notification: Notification) -> tuple[bool, str]:
        bus, why = has_session_bus(self.environ)
        if not bus:
            return False, why
        import shutil  # (shutil imports bz2 and lzma: only when a notification goes out)

        exe = shutil.which("notify-send", path=self.environ.get("PATH", os.defpath))
        if exe is None:
            return False, "notify-send not found on PATH (package libnotify-bin)"
        # The body may hold markup (<b>, <a href>) per the freedesktop spec,
        # so it is escaped; the summary is plain text. NUL cannot be in argv.
        argv = [exe, f"--app-name={APP_NAME}", f"--urgency={notification.urgency}", "--",
                notification.title.replace("\x00", ""), _escape(notification.body.replace("\x00", ""), quote=False)]
        try:
            done = subprocess.run(argv, capture_output=True, timeout=self.timeout, env=dict(self.environ),
                                  stdin=subprocess.DEVNULL, start_new_session=True)
        except subprocess.TimeoutExpired:
            return False, f"notify-send gave no answer within {self.timeout:g}s"
        except OSError as exc:
            return False, f"notify-send: {exc.strerror or exc}"
        if done.returncode != 0:
            said = _last_line(done.stderr) or _last_line(done.stdout) or "no message"
            return False, f"notify-send exited with {done.returncode}: {said}"
        return True, f"desktop notification sent ({why})"


def _escape(text: str, quote: bool = False) -> str:
    import html  # only when a notification goes out (the watcher's RSS, bench/results/overhead.md)

    return html.escape(text, quote=quote)
