"""Notifications: a chain of backends, first that delivers wins, and a rate limiter.

Backends, tried in the order of ``[notify] backends``:

- ``toast``: a Windows toast from inside WSL2 through ``powershell.exe``. The
  script is fixed (``TOAST_SCRIPT``, sent as ``-EncodedCommand``); the title
  and body travel on stdin as two base64 lines, so nothing from a sample or
  the config ever becomes PowerShell or XML. The script sets the decoded text
  as the InnerText of the toast template's nodes (no XML is built from it).
- ``notify-send``: where a D-Bus session bus exists; argv only, never a shell.
- ``plyer``: run in a child Python process (see :class:`PlyerBackend` for why),
  which also tells plyer's silent failures from real deliveries.

The log always gets every notification, and the caller (the watcher) records
the :class:`Delivery` in the history: "delivered by toast", or "no backend
could deliver: toast: ...; notify-send: no session bus; plyer: ...".
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Mapping, Protocol, Sequence

if TYPE_CHECKING:
    from monitor.config import Config, NotifyConfig

log = logging.getLogger(__name__)

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


def _last_line(data: bytes | str, limit: int = 200) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    lines = [ln.strip() for ln in text.replace("\ufeff", "").splitlines() if ln.strip()]
    return lines[-1][:limit] if lines else ""


# ------------------------------------------------------------------- toast

# PowerShell's own AppUserModelID: a toast needs a registered AppId, and this
# one exists on every Windows 10/11 (the usual trick of toast scripts).
TOAST_APP_ID = r"{1AC14E77-02E7-4E5D-B744-2EB1AE5198B7}\WindowsPowerShell\v1.0\powershell.exe"
TOAST_OK = "vmmemctl-toast-ok"
TOAST_ERROR = "vmmemctl-toast-error: "

# Fixed: nothing in it comes from a notification. stdin holds two lines,
# base64 of the UTF-8 title and body. Setting InnerText puts them into the
# ToastText02 template's DOM as text, so no XML is ever parsed from them.
TOAST_SCRIPT = f"""$ErrorActionPreference = 'Stop'
try {{
  $lines = [Console]::In.ReadToEnd().Split([char]10)
  $utf8 = [System.Text.Encoding]::UTF8
  $title = $utf8.GetString([Convert]::FromBase64String($lines[0].Trim()))
  $body = $utf8.GetString([Convert]::FromBase64String($lines[1].Trim()))
  $null = [Windows.UI.Notifications.ToastNotificationManager, Windows.UI.Notifications, ContentType = WindowsRuntime]
  $type = [Windows.UI.Notifications.ToastTemplateType]::ToastText02
  $xml = [Windows.UI.Notifications.ToastNotificationManager]::GetTemplateContent($type)
  $texts = $xml.GetElementsByTagName('text')
  $texts.Item(0).InnerText = $title
  $texts.Item(1).InnerText = $body
  $toast = New-Object Windows.UI.Notifications.ToastNotification $xml
  [Windows.UI.Notifications.ToastNotificationManager]::CreateToastNotifier('{TOAST_APP_ID}').Show($toast)
  '{TOAST_OK}'
}} catch {{
  '{TOAST_ERROR}' + $_.Exception.Message
  exit 1
}}
"""

# Characters XML 1.0 forbids (C0 controls but tab/LF/CR, U+FFFE/U+FFFF): the
# toast XML document would refuse them, so they are dropped before encoding.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def encode_toast_command(script: str = TOAST_SCRIPT) -> str:
    """``-EncodedCommand`` takes base64 of UTF-16LE."""
    import base64  # base64, html, tempfile: imported by the backends that use them (1 MiB of a watcher's RSS)

    return base64.b64encode(script.encode("utf-16-le")).decode("ascii")


def encode_toast_input(title: str, body: str) -> bytes:
    """The toast's stdin: base64 of each UTF-8 text, one per line ([A-Za-z0-9+/=] only)."""
    import base64

    def b64(text: str) -> bytes:
        return base64.b64encode(_XML_INVALID.sub("", text).encode("utf-8", "replace"))
    return b64(title) + b"\n" + b64(body) + b"\n"


def find_powershell(environ: Mapping[str, str]) -> str | None:
    """powershell.exe on PATH; under /mnt/c only inside WSL (where interop may just be off PATH)."""
    found = shutil.which("powershell.exe", path=environ.get("PATH", os.defpath))
    if found or not (environ.get("WSL_INTEROP") or environ.get("WSL_DISTRO_NAME")):
        return found
    from monitor.probes.interop import WINDOWS_TOOL_DIRS  # deferred: the plyer child never needs it

    for folder in WINDOWS_TOOL_DIRS:
        candidate = os.path.join(folder, "powershell.exe")
        if os.access(candidate, os.X_OK):
            return candidate
    return None


class ToastBackend:
    name = "toast"

    def __init__(self, timeout: float, environ: Mapping[str, str] | None = None):
        self.timeout = timeout
        self.environ = os.environ if environ is None else environ

    def argv(self, exe: str) -> list[str]:
        return [exe, "-NoLogo", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass",
                "-EncodedCommand", encode_toast_command()]

    def send(self, notification: Notification) -> tuple[bool, str]:
        exe = find_powershell(self.environ)
        if exe is None:
            return False, "powershell.exe not found (not WSL2, or Windows interop is off)"
        try:
            done = subprocess.run(self.argv(exe), input=encode_toast_input(notification.title, notification.body),
                                  capture_output=True, timeout=self.timeout, env=dict(self.environ),
                                  start_new_session=True)  # a Ctrl-C in our terminal is ours, not PowerShell's
        except subprocess.TimeoutExpired:
            return False, f"powershell.exe gave no answer within {self.timeout:g}s"
        except OSError as exc:
            return False, f"powershell.exe: {exc.strerror or exc}"
        return self._judge(done)

    @staticmethod
    def _judge(done: subprocess.CompletedProcess) -> tuple[bool, str]:
        out = done.stdout.decode("utf-8", "replace").replace("\ufeff", "")
        lines = [ln.strip() for ln in out.splitlines()]
        if done.returncode == 0 and TOAST_OK in lines:
            return True, "Windows toast shown"
        errors = [ln[len(TOAST_ERROR):] for ln in lines if ln.startswith(TOAST_ERROR)]
        if errors:
            return False, f"Windows toast API: {errors[0][:200]}"
        said = _last_line(out) or _last_line(done.stderr) or "nothing"
        if done.returncode != 0:
            return False, f"powershell.exe exited with {done.returncode}: {said!r}"
        return False, f"powershell.exe answered garbage: {said!r}"


# ------------------------------------------------------------- notify-send


class NotifySendBackend:
    name = "notify-send"

    def __init__(self, timeout: float, environ: Mapping[str, str] | None = None):
        self.timeout = timeout
        self.environ = os.environ if environ is None else environ

    def send(self, notification: Notification) -> tuple[bool, str]:
        bus, why = has_session_bus(self.environ)
        if not bus:
            return False, why
        exe = shutil.which("notify-send", path=self.environ.get("PATH", os.defpath))
        if exe is None:
            return False, "notify-send not found on PATH (package libnotify-bin)"
        # The body may hold markup (<b>, <a href>) per the freedesktop spec,
        # so it is escaped; the summary is plain text. NUL cannot be in argv.
        import html

        argv = [exe, f"--app-name={APP_NAME}", f"--urgency={notification.urgency}", "--",
                notification.title.replace("\x00", ""), html.escape(notification.body.replace("\x00", ""), quote=False)]
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


# ------------------------------------------------------------------- plyer

# plyer's implementations that shell out (notify-send, gdbus) and ignore the
# exit code: without a bus they "succeed" having shown nothing.
_PLYER_SHELL_OUT = {"NotifySendNotification": "notify-send", "NotifyDesktopPortals": "gdbus"}
_PLYER_CHILD = ("import sys; sys.path.insert(0, sys.argv[1]); "
                "from monitor.notify import run_plyer_child; run_plyer_child()")


class PlyerBackend:
    """plyer, run in a child Python process.

    Why a child: plyer prints warnings and tracebacks, and the notify-send it
    spawns writes to our fds; redirecting fds 1 and 2 in our own process would
    swallow a running TUI's screen output too. plyer has no timeout (a stuck
    D-Bus call would stall the watcher); a child can be killed. And plyer
    caches its backend choice forever, while a fresh child looks again.
    """

    name = "plyer"

    def __init__(self, timeout: float, environ: Mapping[str, str] | None = None):
        self.timeout = timeout
        self.environ = os.environ if environ is None else environ

    def send(self, notification: Notification) -> tuple[bool, str]:
        request = {"title": notification.title, "body": notification.body,
                   "bus": has_session_bus(self.environ)[0], "timeout": max(1, math.ceil(self.timeout))}
        argv = [sys.executable, "-c", _PLYER_CHILD, str(Path(__file__).resolve().parent.parent)]
        answer, trouble = _run_helper(argv, json.dumps(request).encode(), dict(self.environ), self.timeout)
        if answer is None:
            return False, trouble
        try:
            result = json.loads(answer)
            return bool(result["ok"]), str(result["detail"])
        except (ValueError, KeyError, TypeError):
            return False, f"plyer helper answered garbage: {_last_line(answer)!r}"


def _run_helper(argv: list[str], request: bytes, env: dict, timeout: float) -> tuple[str | None, str]:
    """Send ``request`` on stdin; return the child's stdout (up to EOF) or None and why.

    The child closes stdout as soon as it has answered, but may live on: on
    Windows plyer keeps its balloon window open for a while. A reaper thread
    waits for it so we neither block nor leave a zombie. Threads, not
    selectors, because Windows cannot select on pipes.
    """
    import tempfile

    with tempfile.TemporaryFile() as errors:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, env=env,
                                    start_new_session=True)
        except OSError as exc:
            return None, f"cannot start the plyer helper ({argv[0]!r}): {exc.strerror or exc}"
        box: list[bytes] = []
        reader = threading.Thread(target=_exchange, args=(proc, request, box), daemon=True)
        reader.start()
        reader.join(timeout)
        if reader.is_alive():
            _kill(proc)
            proc.wait()
            reader.join()
            return None, f"plyer gave no answer within {timeout:g}s"
        answer = box[0] if box else b""
        if answer.strip():
            if proc.poll() is None:
                threading.Thread(target=_reap, args=(proc, 120.0), daemon=True).start()
            return answer.decode("utf-8", "replace"), ""
        _reap(proc, 1.0)  # no answer: it died (or is dying); its stderr says why
        errors.seek(0)
        return None, f"plyer helper died: {_last_line(errors.read()) or f'exit {proc.returncode}'}"


def _exchange(proc: subprocess.Popen, request: bytes, box: list[bytes]) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(request)
        proc.stdin.close()
    except OSError:
        pass  # the child died before reading; its (missing) answer says so
    box.append(proc.stdout.read())
    proc.stdout.close()


def _reap(proc: subprocess.Popen, grace: float) -> None:
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _kill(proc)
        proc.wait()


def _kill(proc: subprocess.Popen) -> None:
    """Kill the helper and what it started (a stuck notify-send): it leads its own session."""
    if os.name != "posix":
        proc.kill()
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # already gone: nothing left to stop


def run_plyer_child() -> None:
    """The child side of :class:`PlyerBackend`: JSON request on stdin, one JSON answer on stdout.

    Everything plyer or its subprocesses print lands in a temp file (fds 1
    and 2 point there); only the answer goes to the parent's pipe.
    """
    request = json.loads(sys.stdin.buffer.read())
    answer = os.fdopen(os.dup(1), "w", encoding="utf-8")
    import tempfile

    with tempfile.TemporaryFile() as noise:
        os.dup2(noise.fileno(), 1)
        os.dup2(noise.fileno(), 2)
        ok, detail, shells_out = _plyer_notify(request)
        sys.stdout.flush()
        sys.stderr.flush()
        noise.seek(0)
        said = _last_line(noise.read())
    if ok and shells_out and said:
        # A successful notify-send/gdbus prints nothing; plyer ignores their exit code.
        ok, detail = False, f"plyer ran {shells_out}, which failed: {said}"
    answer.write(json.dumps({"ok": ok, "detail": detail}) + "\n")
    answer.close()


def _plyer_notify(request: dict) -> tuple[bool, str, str]:
    """(delivered, why, the tool plyer shelled out to or "")."""
    import importlib
    import warnings

    try:
        from plyer.utils import platform
    except ImportError as exc:
        return False, f"plyer is not installed ({exc})", ""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:  # what plyer.notification's proxy does, minus its traceback print and its cache
            impl = importlib.import_module(f"plyer.platforms.{platform}.notification").instance()
        except Exception as exc:  # plyer's own proxy treats any failure here as "no backend"; so do we, in words
            return False, f"plyer has no notification backend for {platform}: {type(exc).__name__}: {exc}", ""
    # "The Python dbus package is not installed.\nTry installing ..." -> its first line
    warned = ", ".join(str(w.message).strip().splitlines()[0].rstrip(".") for w in caught if str(w.message).strip())
    kind = type(impl).__name__
    shells_out = _PLYER_SHELL_OUT.get(kind, "")
    if shells_out and not request["bus"]:
        return False, f"plyer would run {shells_out} with no session bus: nothing could be shown", shells_out
    try:
        impl.notify(title=request["title"], message=request["body"], app_name=APP_NAME, timeout=request["timeout"])
    except NotImplementedError:
        return False, "plyer has no notification backend here (NotImplementedError)" + (
            f": {warned}" if warned else ""), shells_out
    except Exception as exc:  # any failure of a third-party backend is a reason, reported to the parent
        return False, f"plyer's {kind} failed: {type(exc).__name__}: {exc}", shells_out
    return True, f"shown by plyer's {kind}", shells_out


# ------------------------------------------------------------------- chain


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


# ------------------------------------------------------------ rate limiting


class RateLimiter:
    """The same condition (``Notification.key``) notifies at most once per ``period`` seconds.

    Times are wall-clock (they outlive the process in the store's state
    table). A clock that went backwards allows the notification rather than
    silencing it until the clock catches up.
    """

    def __init__(self, period: float, last: Mapping[str, float] | None = None):
        self.period = period
        self.last: dict[str, float] = dict(last or {})

    def allow(self, key: str, now: float) -> bool:
        """True (and remembered) when ``key`` has not been allowed within the last period."""
        previous = self.last.get(key)
        if previous is not None and 0 <= now - previous < self.period:
            return False
        self.last[key] = now
        return True

    def prune(self, now: float) -> None:
        """Forget keys whose period is over, so the saved state stays small."""
        self.last = {k: t for k, t in self.last.items() if 0 <= now - t < self.period}

    def to_json(self) -> str:
        return json.dumps({"last": self.last}, sort_keys=True)

    @classmethod
    def from_json(cls, period: float, text: str | None) -> RateLimiter:
        """Read saved state; odd or missing state means "nothing notified yet", never a crash."""
        try:
            data = json.loads(text) if text else {}
            last = data.get("last") if isinstance(data, dict) else None
        except ValueError:
            log.warning("rate limiter state is not JSON; starting afresh: %r", (text or "")[:80])
            last = None
        if not isinstance(last, dict):
            last = {}
        good = {k: float(v) for k, v in last.items()
                if isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        return cls(period, good)
