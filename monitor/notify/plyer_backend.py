"""plyer, run in a child Python process, and that child's side."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Mapping

from monitor.notify.base import APP_NAME, Notification, has_session_bus, last_line as _last_line


# plyer's implementations that shell out (notify-send, gdbus) and ignore the
# exit code: without a bus they "succeed" having shown nothing.
_PLYER_SHELL_OUT = {"NotifySendNotification": "notify-send", "NotifyDesktopPortals": "gdbus"}
_PLYER_CHILD = ("import sys; sys.path.insert(0, sys.argv[1]); "
                "from monitor.notify.plyer_backend import run_plyer_child; run_plyer_child()")


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
        argv = [sys.executable, "-c", _PLYER_CHILD, str(Path(__file__).resolve().parents[2])]
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
    import tempfile  # only when a notification goes out

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
    import tempfile  # only when a notification goes out

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
