"""The Windows toast from inside WSL2, through ``powershell.exe -Command -``.

The line is fixed (``TOAST_SCRIPT``); the title and body travel in it only
as base64 literals, so nothing from a sample or the config ever becomes
PowerShell or XML.
"""

from __future__ import annotations

import os
import re
from typing import Mapping

from monitor.notify.base import Notification, last_line as _last_line


# PowerShell's own AppUserModelID: a toast needs a registered AppId, and this
# one exists on every Windows 10/11 (the usual trick of toast scripts).
TOAST_APP_ID = r"{1AC14E77-02E7-4E5D-B744-2EB1AE5198B7}\WindowsPowerShell\v1.0\powershell.exe"
TOAST_OK = "vmmemctl-toast-ok"
TOAST_OFF = "vmmemctl-toast-off: "
TOAST_ERROR = "vmmemctl-toast-error: "

# One line for ``powershell.exe -Command -`` on stdin (the interop probe's session shape), never
# ``-EncodedCommand``: "-NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand <b64>" is
# the shape Microsoft Defender's ML detection kills as malware (mondoohq/mql#9802, inspec/train#707,
# sindresorhus/open#304). The text arrives as two single-quoted base64 literals ([A-Za-z0-9+/=] only,
# so no quote can end them), decoded in the script; setting InnerText puts it into the ToastText02
# template as text, so no XML is parsed from it. ToastNotifier.Setting says when the user (or a
# policy) turned notifications off for the app: that is reported, not called "delivered".
TOAST_SCRIPT = (
    "$ErrorActionPreference='Stop'; try { $utf8=[System.Text.Encoding]::UTF8; "
    "$title=$utf8.GetString([Convert]::FromBase64String('{title}')); "
    "$body=$utf8.GetString([Convert]::FromBase64String('{body}')); "
    "$null=[Windows.UI.Notifications.ToastNotificationManager, Windows.UI.Notifications, ContentType = WindowsRuntime]; "
    "$xml=[Windows.UI.Notifications.ToastNotificationManager]::GetTemplateContent("
    "[Windows.UI.Notifications.ToastTemplateType]::ToastText02); "
    "$texts=$xml.GetElementsByTagName('text'); $texts.Item(0).InnerText=$title; $texts.Item(1).InnerText=$body; "
    f"$n=[Windows.UI.Notifications.ToastNotificationManager]::CreateToastNotifier('{TOAST_APP_ID}'); "
    f"if ($n.Setting -ne 'Enabled') {{ '{TOAST_OFF}' + $n.Setting }} else {{ "
    f"$n.Show((New-Object Windows.UI.Notifications.ToastNotification $xml)); '{TOAST_OK}' }} "
    f"}} catch {{ '{TOAST_ERROR}' + $_.Exception.Message }}; "
    "'__END_{nonce}__'"
)

# Characters XML 1.0 forbids (C0 controls but tab/LF/CR, U+FFFE/U+FFFF): the
# toast XML document would refuse them, so they are dropped before encoding.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _b64(text: str) -> str:
    import base64  # only when a toast goes out

    return base64.b64encode(_XML_INVALID.sub("", text).encode("utf-8", "replace")).decode("ascii")


def toast_line(title: str, body: str) -> str:
    """The fixed script with the two texts as base64 literals (``{nonce}`` left for the session)."""
    return TOAST_SCRIPT.replace("{title}", _b64(title)).replace("{body}", _b64(body))


def find_powershell(environ: Mapping[str, str], files=None) -> str | None:
    """The one Windows-tool finder (monitor.kernel.windows), keyed on the WSL2 kernel, not on WSL variables."""
    from monitor.kernel.windows import find_windows_tool  # deferred: the plyer child never needs it

    return find_windows_tool("powershell.exe", environ, files)


class ToastBackend:
    name = "toast"

    def __init__(self, timeout: float, environ: Mapping[str, str] | None = None, files=None,
                 first_timeout: float | None = None):
        self.timeout = timeout
        self.environ = os.environ if environ is None else environ
        self.files = files  # the proc root the finder reads (a test's temporary root); default /proc
        # Until PowerShell has answered once, a toast waits out its cold start after logon (the interop
        # probe's FIRST_ANSWER_TIMEOUT, 15 s), not just [notify] timeout (10 s): the first toast of a
        # session was lost to it (issue 27).
        self.first_timeout = first_timeout
        self.warm = False

    def send(self, notification: Notification) -> tuple[bool, str]:
        from monitor.probes.interop import FIRST_ANSWER_TIMEOUT, InteropError, PowerShellSession

        exe = find_powershell(self.environ, self.files)
        if exe is None:
            return False, "powershell.exe not found (not WSL2, or Windows interop is off)"
        cold = FIRST_ANSWER_TIMEOUT if self.first_timeout is None else self.first_timeout
        budget = self.timeout if self.warm else max(self.timeout, cold)
        # A session of its own, for one toast: the same one-line protocol as the interop probe.
        session = PowerShellSession(exe, self.timeout, first_timeout=budget, env=dict(self.environ))
        line = toast_line(notification.title, notification.body)
        try:
            while True:
                try:
                    lines = session.query(line)
                    break
                except InteropError as exc:
                    if not exc.starting:  # "starting": still within the first answer's budget; wait on
                        return False, str(exc)
        finally:
            session.close()
        self.warm = True
        return self._judge(lines)

    @staticmethod
    def _judge(lines: list[str]) -> tuple[bool, str]:
        if TOAST_OK in lines:
            return True, "Windows toast shown"
        for line in lines:
            if line.startswith(TOAST_OFF):
                return False, f"notifications are turned off for this app ({line[len(TOAST_OFF):]})"
            if line.startswith(TOAST_ERROR):
                return False, f"Windows toast API: {line[len(TOAST_ERROR):][:200]}"
        return False, f"powershell.exe answered garbage: {_last_line(chr(10).join(lines)) or 'nothing'!r}"
