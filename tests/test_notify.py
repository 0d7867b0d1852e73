"""The notifier chain against real subprocesses: fake powershell.exe and notify-send, the real plyer.

Every test builds its own environment: PATH is a temp dir holding only the
fakes it wants (and a python3 for their shebangs), so what this machine has
installed changes nothing. There is no display and no session bus here;
tests that want a bus set DBUS_SESSION_BUS_ADDRESS (the fakes only look).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import FAKEBIN, REPO, tree
from monitor.config.schema import Config, NotifyConfig
from monitor.kernel.procfs import LocalFiles
from monitor.notify import (TOAST_SCRIPT, Delivery, Notification, Notifier, NotifySendBackend, PlyerBackend,
                            RateLimiter, ToastBackend, build_notifier, notify_test)

BUS = "unix:path=/run/user/1000/bus"


class Fakes:
    """A PATH of chosen fakes, and what they recorded."""

    def __init__(self, tmp_path: Path):
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        (self.bin / "python3").symlink_to(sys.executable)
        self.toast_record = tmp_path / "toast.jsonl"
        self.notify_send_log = tmp_path / "notify-send.jsonl"

    def install(self, *names: str) -> None:
        for name in names:
            files = ["powershell.exe", "_fake_windows.py"] if name == "powershell.exe" else [name]
            for f in files:
                (self.bin / f).symlink_to(FAKEBIN / f)

    def env(self, bus: bool = False, **extra: str) -> dict[str, str]:
        env = {"PATH": str(self.bin), "FAKE_WINDOWS_TOAST_RECORD": str(self.toast_record),
               "FAKE_NOTIFY_SEND_LOG": str(self.notify_send_log), **extra}
        if bus:
            env["DBUS_SESSION_BUS_ADDRESS"] = BUS
        return env

    def toasts(self) -> list[dict]:
        return _jsonl(self.toast_record)

    def notify_sends(self) -> list[list[str]]:
        return _jsonl(self.notify_send_log)


def _jsonl(path: Path) -> list:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


@pytest.fixture
def fakes(tmp_path) -> Fakes:
    return Fakes(tmp_path)


def chain(env: dict, *names: str, timeout: float = 5.0) -> Notifier:
    return build_notifier(NotifyConfig(backends=list(names), timeout=timeout), env)


NOTE = Notification("page cache 9.8 GiB", "run vmmemctl reclaim", key="rule:cache-notify")


# ------------------------------------------------------------------- chain


@pytest.mark.parametrize("order, winner", [
    (["toast", "notify-send", "plyer"], "toast"),
    (["notify-send", "toast", "plyer"], "notify-send"),
    (["plyer", "toast", "notify-send"], "plyer"),
])
def test_first_backend_that_delivers_wins_and_later_ones_never_run(fakes, order, winner):
    fakes.install("powershell.exe", "notify-send")
    delivery = chain(fakes.env(bus=True), *order).send(NOTE)
    assert delivery.delivered and delivery.backend == winner and delivery.failures == ()
    assert delivery.summary() == f"delivered by {winner}"
    assert len(fakes.toasts()) == (winner == "toast")
    # plyer delivers by running notify-send itself
    assert len(fakes.notify_sends()) == (winner in ("notify-send", "plyer"))


def test_each_failure_is_reported_in_words_in_the_order_tried(fakes):
    fakes.install("powershell.exe", "notify-send")
    delivery = chain(fakes.env(FAKE_WINDOWS_MODE="denied"), "toast", "notify-send", "plyer").send(NOTE)
    assert not delivery.delivered and delivery.backend is None
    names = [name for name, _ in delivery.failures]
    assert names == ["toast", "notify-send", "plyer"]
    why = dict(delivery.failures)
    assert why["toast"] == "Windows toast API: Access is denied."
    assert why["notify-send"].startswith("no session bus")
    assert "no session bus" in why["plyer"]
    assert delivery.summary().startswith("no backend could deliver: toast: Windows toast API: Access is denied.; "
                                         "notify-send: no session bus")


def test_a_later_backend_delivers_after_earlier_failures(fakes):
    fakes.install("notify-send")  # no powershell.exe: not WSL
    delivery = chain(fakes.env(bus=True), "toast", "notify-send").send(NOTE)
    assert delivery.backend == "notify-send"
    assert delivery.failures == (("toast", "powershell.exe not found (not WSL2, or Windows interop is off)"),)
    assert delivery.summary().startswith("delivered by notify-send (after toast: powershell.exe not found")


class Broken:
    name = "broken"

    def send(self, notification):
        raise RuntimeError("a bug")


def test_a_backend_that_raises_is_a_failure_not_a_crash(fakes):
    fakes.install("notify-send")
    delivery = Notifier([Broken(), NotifySendBackend(5, fakes.env(bus=True))]).send(NOTE)
    assert delivery.backend == "notify-send"
    assert delivery.failures == (("broken", "internal error: RuntimeError: a bug"),)


def test_the_log_gets_every_notification_delivered_or_not(fakes, caplog):
    caplog.set_level("INFO", logger="monitor.notify")
    chain(fakes.env(), "notify-send").send(Notification("t", "line1\nline2", key="k"))
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "notification [k] 't': 'line1\\nline2'"  # one line, even for a hostile body
    assert messages[1].startswith("no backend could deliver: notify-send: no session bus")
    assert caplog.records[1].levelname == "WARNING"


def test_no_backends_configured_means_log_only(fakes):
    delivery = chain(fakes.env()).send(NOTE)
    assert not delivery.delivered and delivery.summary() == "no backend could deliver: no backends configured"


# ------------------------------------------------------------------- toast

HOSTILE = {
    "quotes": "it's \"quoted\" 'twice'",
    "subexpression": "$(Remove-Item -Recurse -Force C:\\) and ${env:USERPROFILE}",
    "backticks": "`n`r`0 `$(calc.exe)` `",
    "break out": "'; Remove-Item -Recurse C:\\; '",
    "newlines": "line one\nline two\r\nline three\n",
    "xml": "<toast><xml>&amp; & </text></binding>]]><!--",
    "emoji": "page cache \U0001f9f9 9.8 GiB \U0001f4be \u00e9\u00e8 \u4e2d\u6587",
    "10 KB": ("0123456789'\"$`<>&\n\U0001f600" * 400)[:10240],
}


B64 = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_text_reaches_the_toast_only_as_base64_literals(fakes, text):
    fakes.install("powershell.exe")
    backend = ToastBackend(5, fakes.env())
    assert backend.send(Notification(text, text[::-1])) == (True, "Windows toast shown")
    [record] = fakes.toasts()
    # the fixed script, with only the two literals filled in (and the session's end marker)
    assert re.sub(r"__END_[0-9a-f]+__", "__END_{nonce}__", record["script"]) == \
        TOAST_SCRIPT.replace("{title}", "").replace("{body}", "")
    title, body = record["texts"]
    assert set(title) <= B64 and set(body) <= B64
    assert base64.b64decode(title).decode("utf-8") == text
    assert base64.b64decode(body).decode("utf-8") == text[::-1]


def test_the_toast_never_uses_encoded_command(fakes):
    # The fake plays Defender: -EncodedCommand is refused; the toast goes through -Command - on stdin.
    fakes.install("powershell.exe")
    defender = fakes.env(FAKE_POWERSHELL_MODE="defender")
    assert ToastBackend(5, defender).send(NOTE)[0]
    done = subprocess.run([str(fakes.bin / "powershell.exe"), "-NoProfile", "-EncodedCommand", "AAAA"],
                          capture_output=True, env=defender)
    assert done.returncode == 1 and b"virus" in done.stderr


def test_the_toast_script_uses_the_toast_api_and_builds_no_xml_from_text():
    assert "ToastText02" in TOAST_SCRIPT and "CreateToastNotifier" in TOAST_SCRIPT
    assert "FromBase64String('{title}')" in TOAST_SCRIPT and "InnerText=$title" in TOAST_SCRIPT
    assert "$n.Setting -ne 'Enabled'" in TOAST_SCRIPT
    assert "LoadXml" not in TOAST_SCRIPT and "Invoke-Expression" not in TOAST_SCRIPT and "\n" not in TOAST_SCRIPT


def test_characters_xml_cannot_hold_are_dropped_from_the_toast(fakes):
    fakes.install("powershell.exe")
    assert ToastBackend(5, fakes.env()).send(Notification("a\x00b\x07c\td", "\ufffe"))[0]
    [record] = fakes.toasts()
    title, body = record["texts"]
    assert base64.b64decode(title).decode() == "abc\td" and base64.b64decode(body) == b""


@pytest.mark.parametrize("mode, why", [
    ("garbage", "powershell.exe answered garbage: \"The term 'ToastNotificationManager' is not recognized\""),
    ("denied", "Windows toast API: Access is denied."),
    ("off", "notifications are turned off for this app (DisabledForUser)"),
])
def test_a_toast_that_fails_says_why(fakes, mode, why):
    fakes.install("powershell.exe")
    assert ToastBackend(5, fakes.env(FAKE_WINDOWS_MODE=mode)).send(NOTE) == (False, why)


def test_a_hanging_toast_times_out_and_the_next_backend_delivers(fakes):
    fakes.install("powershell.exe", "notify-send")
    delivery = chain(fakes.env(bus=True, FAKE_WINDOWS_MODE="hang"), "toast", "notify-send", timeout=0.5).send(NOTE)
    assert delivery.backend == "notify-send"
    # never answered: the cold-start budget (FIRST_ANSWER_TIMEOUT), not the 0.5 s, was waited out
    assert delivery.failures == (("toast", "powershell.exe gave no answer within 15s"),)


def test_the_first_toast_waits_out_powershells_cold_start_and_later_ones_do_not(fakes):
    """Issue 27: the first toast after logon got [notify] timeout against PowerShell's 15 s cold start."""
    fakes.install("powershell.exe")
    backend = ToastBackend(1, fakes.env(FAKE_WINDOWS_FIRST_DELAY="3"))  # every fake start is 3 s cold
    assert backend.send(NOTE) == (True, "Windows toast shown")
    assert backend.warm
    assert backend.send(NOTE) == (False, "powershell.exe gave no answer within 1s")


def test_toast_finds_no_powershell_off_path_outside_wsl2(fakes):
    # Not on PATH and not a WSL2 kernel: not offered (a dual-boot /mnt/c must not be tried).
    assert ToastBackend(5, fakes.env(), files=LocalFiles(tree("linux-vm"))).send(NOTE) == (
        False, "powershell.exe not found (not WSL2, or Windows interop is off)")


def wsl2_root(tmp_path: Path, mount_point: Path) -> LocalFiles:
    """A WSL2 kernel whose C: is mounted at ``mount_point`` (a moved [automount] root)."""
    proc = tmp_path / "proc"
    shutil.copytree(tree("wsl2-ubuntu"), proc)
    (proc / "mounts").write_text(
        "none /usr/lib/wsl/drivers 9p ro,nosuid,nodev,noatime,dirsync,aname=drivers;fmask=222 0 0\n"
        f"C:\\134 {mount_point} 9p rw,noatime,dirsync,aname=drvfs;path=C:\\134;uid=1000;gid=1000;"
        "symlinkroot=/mnt/,mmap,access=client,msize=65536,trans=fd,rfd=5,wfd=5 0 0\n")
    return LocalFiles(proc)


def test_the_service_environment_finds_the_toast_under_the_system_drive(fakes, tmp_path):
    # Issue 17.2: under systemd (and a unit installed with sudo) no WSL_* variable is set and PATH
    # has no Windows folders; the WSL2 kernel and /proc/mounts still say where Windows is.
    drive = tmp_path / "windir" / "c"
    tools = drive / "Windows/System32/WindowsPowerShell/v1.0"
    tools.mkdir(parents=True)
    for name in ("powershell.exe", "_fake_windows.py"):
        (tools / name).symlink_to(FAKEBIN / name)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "FAKE_WINDOWS_TOAST_RECORD": str(fakes.toast_record)}
    assert ToastBackend(5, env, files=wsl2_root(tmp_path, drive)).send(NOTE) == (True, "Windows toast shown")
    assert len(fakes.toasts()) == 1


# ------------------------------------------------------------- notify-send


def test_notify_send_is_skipped_without_a_session_bus(fakes):
    fakes.install("notify-send")
    ok, why = NotifySendBackend(5, fakes.env()).send(NOTE)
    assert not ok and why == "no session bus (DBUS_SESSION_BUS_ADDRESS unset, no $XDG_RUNTIME_DIR/bus)"
    assert fakes.notify_sends() == []  # never run


def test_notify_send_runs_argv_only_with_a_session_bus(fakes):
    fakes.install("notify-send")
    text = HOSTILE["break out"] + HOSTILE["subexpression"]
    ok, detail = NotifySendBackend(5, fakes.env(bus=True)).send(Notification("-t 0 " + text, "<b>9.8 GiB</b> & more"))
    assert ok and detail == "desktop notification sent (DBUS_SESSION_BUS_ADDRESS is set)"
    assert fakes.notify_sends() == [["--app-name=vmmemctl", "--urgency=normal", "--", "-t 0 " + text,
                                     "&lt;b&gt;9.8 GiB&lt;/b&gt; &amp; more"]]  # body markup escaped


def test_notify_send_finds_the_bus_socket_in_xdg_runtime_dir(fakes, tmp_path):
    fakes.install("notify-send")
    (tmp_path / "bus").touch()
    ok, detail = NotifySendBackend(5, fakes.env(XDG_RUNTIME_DIR=str(tmp_path))).send(NOTE)
    assert ok and detail == f"desktop notification sent ({tmp_path}/bus exists)"


def test_notify_send_not_installed(fakes):
    assert NotifySendBackend(5, fakes.env(bus=True)).send(NOTE) == (
        False, "notify-send not found on PATH (package libnotify-bin)")


def test_notify_send_failure_carries_its_stderr(fakes):
    fakes.install("notify-send")
    ok, why = NotifySendBackend(5, fakes.env(bus=True, FAKE_NOTIFY_SEND_MODE="fail")).send(NOTE)
    assert not ok and why.startswith("notify-send exited with 1: GDBus.Error:org.freedesktop.DBus.Error.ServiceUnknown")


def test_a_hanging_notify_send_times_out(fakes):
    fakes.install("notify-send")
    started = time.monotonic()
    result = NotifySendBackend(0.5, fakes.env(bus=True, FAKE_NOTIFY_SEND_MODE="hang")).send(NOTE)
    assert result == (False, "notify-send gave no answer within 0.5s") and time.monotonic() - started < 3


# ------------------------------------------------------------------- plyer
# The real plyer 2.1.0, in its helper process. Each test also checks that
# nothing reached our own fds: a TUI's screen must not get plyer's warnings.


def test_plyer_without_any_backend_raises_not_implemented_and_we_say_so(fakes, capfd):
    ok, why = PlyerBackend(5, fakes.env()).send(NOTE)  # no dbus module, no notify-send: plyer's facade
    assert not ok
    assert why.startswith("plyer has no notification backend here (NotImplementedError)")
    assert "notify-send not found" in why  # plyer's own warning, as the reason
    assert capfd.readouterr() == ("", "")


def test_plyer_silent_failure_without_a_bus_is_a_failure(fakes, capfd):
    fakes.install("notify-send")
    ok, why = PlyerBackend(5, fakes.env()).send(NOTE)
    assert (ok, why) == (False, "plyer would run notify-send with no session bus: nothing could be shown")
    assert fakes.notify_sends() == []
    assert capfd.readouterr() == ("", "")


def test_plyer_silent_failure_of_the_notify_send_it_runs_is_a_failure(fakes, capfd):
    fakes.install("notify-send")
    ok, why = PlyerBackend(5, fakes.env(bus=True, FAKE_NOTIFY_SEND_MODE="fail")).send(NOTE)
    assert not ok and why.startswith("plyer ran notify-send, which failed: GDBus.Error:")
    assert len(fakes.notify_sends()) == 1  # plyer did run it, and ignored its exit code
    assert capfd.readouterr() == ("", "")


def test_plyer_delivers_through_notify_send_with_a_bus(fakes, capfd):
    fakes.install("notify-send")
    text = HOSTILE["emoji"] + HOSTILE["break out"]
    assert PlyerBackend(5, fakes.env(bus=True)).send(Notification(text, "body")) == (
        True, "shown by plyer's NotifySendNotification")
    [argv] = fakes.notify_sends()
    assert argv[:2] == [text, "body"] and argv[argv.index("-a") + 1] == "vmmemctl"
    assert capfd.readouterr() == ("", "")


def test_a_hanging_plyer_times_out_and_leaves_nothing_running(fakes, capfd):
    fakes.install("notify-send")
    started = time.monotonic()
    result = PlyerBackend(1, fakes.env(bus=True, FAKE_NOTIFY_SEND_MODE="hang")).send(NOTE)
    assert result == (False, "plyer gave no answer within 1s") and time.monotonic() - started < 4
    assert len(fakes.notify_sends()) == 1
    stuck = subprocess.run(["pgrep", "-f", str(fakes.bin / "notify-send")], capture_output=True, text=True)
    assert stuck.stdout == ""  # the helper's whole process group was killed
    assert capfd.readouterr() == ("", "")


def test_plyer_is_never_imported_into_our_own_process(fakes):
    code = ("import sys, json\nfrom monitor.notify import PlyerBackend, Notification\n"
            f"r = PlyerBackend(5, {fakes.env()!r}).send(Notification('t', 'b'))\n"
            "print(json.dumps([r[0], 'plyer' in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert json.loads(done.stdout) == [False, False]


# -------------------------------------------------------------- notify --test


def test_notify_test_says_who_delivered_and_who_could_not(fakes):
    fakes.install("notify-send")
    code, text = notify_test(Config(notify=NotifyConfig(backends=["toast", "notify-send"])), fakes.env(bus=True))
    assert code == 0
    assert text.splitlines() == [
        "test notification delivered by notify-send: desktop notification sent (DBUS_SESSION_BUS_ADDRESS is set)",
        "tried first:",
        "  toast: powershell.exe not found (not WSL2, or Windows interop is off)",
    ]


def test_notify_test_exits_1_when_no_backend_can_deliver(fakes):
    code, text = notify_test(Config(), fakes.env())  # default order: toast, notify-send, plyer
    lines = text.splitlines()
    assert code == 1 and lines[0] == "no backend could deliver the test notification (log only):"
    assert [ln.split(":")[0].strip() for ln in lines[1:]] == ["toast", "notify-send", "plyer"]
    assert "NotImplementedError" in lines[3]


def test_delivery_summary_for_the_history():
    d = Delivery(NOTE, None, failures=(("toast", "x"), ("notify-send", "no session bus")))
    assert d.summary() == "no backend could deliver: toast: x; notify-send: no session bus"


# ------------------------------------------------------------ rate limiting

PERIOD = 1800.0


@pytest.mark.parametrize("steps", [
    # (key, now, allowed)
    [("a", 0, True), ("a", 1, False), ("a", 1799, False), ("a", 1800, True), ("a", 1801, False)],
    [("a", 0, True), ("b", 1, True), ("a", 2, False), ("b", 3, False), ("c", 4, True)],
    [("a", 100, True), ("a", 50, True), ("a", 60, False)],  # the clock went back: notify, and count from there
    [("a", 0, True), ("a", 900, False), ("a", 1800, True)],  # a blocked repeat does not extend the period
])
def test_rate_limiter(steps):
    limiter = RateLimiter(PERIOD)
    assert [limiter.allow(key, now) for key, now, _ in steps] == [allowed for _, _, allowed in steps]


def test_rate_limiter_state_survives_a_json_round_trip():
    limiter = RateLimiter(PERIOD)
    limiter.allow("rule:cache-notify", 1000.0)
    limiter.allow("rule:cache-prompt", 1500.5)
    again = RateLimiter.from_state(PERIOD, json.loads(json.dumps(limiter.to_state())))  # as the store keeps it
    assert again.last == limiter.last
    assert not again.allow("rule:cache-notify", 2000.0) and again.allow("rule:cache-notify", 2800.0)
    assert again.allow("other", 2000.0)


def test_rate_limiter_reads_the_state_an_older_history_encoded_twice():
    old = json.dumps({"last": {"rule:cache-notify": 1000.0}}, sort_keys=True)  # what to_json() used to return
    assert RateLimiter.from_state(PERIOD, old).last == {"rule:cache-notify": 1000.0}
    assert RateLimiter.from_state(PERIOD, {"last": {"rule:cache-notify": 1000.0}}).last == {"rule:cache-notify": 1000.0}


@pytest.mark.parametrize("state", [None, "", "not json", "[1, 2]", '{"last": [1]}', '{"last": {"a": "x", "b": true}}',
                                   [1, 2], {"last": [1]}, {"last": {"a": "x", "b": True, "c": float("nan")}}])
def test_rate_limiter_odd_state_starts_afresh(state):
    assert RateLimiter.from_state(PERIOD, state).last == {}


def test_rate_limiter_prune_forgets_finished_periods():
    limiter = RateLimiter(PERIOD, {"old": 0.0, "new": 3000.0})
    limiter.prune(3600.0)
    assert limiter.last == {"new": 3000.0}
