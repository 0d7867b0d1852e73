"""The Windows Task Scheduler task: at logon, the watcher in a distro, windowless."""

from __future__ import annotations

import csv
import re
import subprocess
import xml.etree.ElementTree as ET
from typing import Callable, Sequence

from monitor.service.common import SYSTEM_ENVIRONMENT, Run, ServiceError, _absolute, _check_text
from monitor.kernel.windows import DISTRO_NAME

TASK_NAMESPACE = "http://schemas.microsoft.com/windows/2004/02/mit/task"


def validate_distro_name(name: str) -> str:
    """A WSL distro name safe to pass on: 1 to 64 of ``A-Z a-z 0-9 . _ -``; ServiceError otherwise."""
    if not isinstance(name, str) or not DISTRO_NAME.fullmatch(name):
        shown = repr(name) if len(repr(name)) <= 40 else repr(name)[:37] + "..."
        raise ServiceError(f"distro name {shown}: expected 1 to 64 characters from A-Z a-z 0-9 . _ -")
    return name


def _windows_word(what: str, word: str) -> str:
    _check_text(what, word)
    # Task Scheduler expands %VARIABLES% in an action's arguments: a % could pull in another value.
    if "%" in word:
        raise ServiceError(f"{what} {word!r}: '%' is not allowed (Task Scheduler expands %VARIABLES%)")
    return word


def windows_task_xml(distro: str, exe_in_distro: str, args: Sequence[str] = ("watch",), *,
                     user: str | None = None, headless: bool = True) -> str:
    """A Task Scheduler definition: at logon, run the watcher in ``distro`` as root, windowless, restart on failure.

    Register it with ``schtasks.exe /create /xml FILE /tn vmmemctl`` (FILE in
    UTF-16, see :func:`encode_task_xml`). ``user`` (a SID, or ``DOMAIN\\name``) ties
    the logon trigger to one account; without it the trigger fires for any
    user, which Task Scheduler lets only an administrator register.
    ``headless`` starts wsl.exe through ``conhost.exe --headless``: wsl.exe
    is a console program and would otherwise open a window at every logon.
    No shell runs anywhere: conhost starts wsl.exe, and ``wsl.exe -e``
    executes the program without a Linux shell.
    """
    validate_distro_name(distro)
    # The system unit's places (/var/lib/vmmemctl, /etc/vmmemctl): a root watcher is the system's however
    # it starts, and `wsl.exe -u root` alone would give it root's XDG folders (issue 24).
    environment = [f"{k}={v}" for k, v in SYSTEM_ENVIRONMENT.items()]
    words = ["wsl.exe", "-d", distro, "-u", "root", "-e", "/usr/bin/env", *environment,
             _absolute("executable", exe_in_distro), *args]
    words = [_windows_word("argument", w) for w in words]
    if user is not None:
        _windows_word("user", user)
        if "\ufffd" in user:  # a name decoded in the wrong code page: schtasks.exe would map it to no account
            raise ServiceError(f"user {user!r}: it holds U+FFFD, a character lost in decoding; pass the SID "
                               "(whoami.exe /user) or the name as Windows spells it")
    command = r"%SystemRoot%\System32\conhost.exe" if headless else r"%SystemRoot%\System32\wsl.exe"
    arguments = subprocess.list2cmdline(["--headless", *words] if headless else words[1:])
    root = _task_element(command, arguments, user)
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-16"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def task_xml_as_utf8(xml: str) -> str:
    """The same task for stdout, whose bytes are UTF-8: a declaration that says so (issue 17.3).

    ``schtasks.exe /create /xml`` wants the UTF-16 file that ``--output`` writes.
    """
    return xml.replace('encoding="UTF-16"', 'encoding="UTF-8"', 1)


SID = re.compile(r"S-1-\d+(-\d+)+")


def windows_user(find_tool: Callable[[str], str | None], run: Run = subprocess.run) -> str | None:
    """The user's SID from ``whoami.exe /user /fo csv /nh`` (for the task's UserId); None when it cannot be asked.

    The SID, not ``DOMAIN\\name``: through a pipe whoami.exe writes in the console's OEM code page
    (850, 437...), so a non-ASCII name (josé) comes out as bytes that decode to U+FFFD here, and
    schtasks.exe then refuses the task ("No mapping between account names and security IDs"). The
    SID is ASCII in every code page, and Task Scheduler takes it as a UserId. The line it prints:
    ``"desktop-4f2k9\\alice","S-1-5-21-1004336348-1177238915-682003330-1001"``."""
    exe = find_tool("whoami.exe")
    if not exe:
        return None
    try:
        done = run([exe, "/user", "/fo", "csv", "/nh"], capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    from monitor.kernel.windows import decode_windows_text

    for row in csv.reader(decode_windows_text(done.stdout).splitlines()):
        if len(row) == 2 and SID.fullmatch(row[1].strip()):
            return row[1].strip()
    return None


SCHTASKS_NOTE = (
    "conhost.exe --headless does not pass wsl.exe's exit code on, so Task Scheduler's restart-on-failure "
    "never sees a failure: the logon trigger repeats every 5 minutes instead, and with "
    "MultipleInstancesPolicy=IgnoreNew a start while the watcher runs is ignored; one that finds it "
    "gone starts it again.")


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = text
    return element


def _task_element(command: str, arguments: str, user: str | None) -> ET.Element:
    root = ET.Element("Task", {"version": "1.2", "xmlns": TASK_NAMESPACE})
    info = _sub(root, "RegistrationInfo")
    _sub(info, "Description", "vmmemctl: watch the WSL2 VM's memory and reclaim idle guest page cache. "
                              "Keeps the VM running while it runs.")
    _sub(info, "URI", "\\vmmemctl")
    trigger = _sub(_sub(root, "Triggers"), "LogonTrigger")
    _sub(trigger, "Enabled", "true")
    # conhost --headless hides wsl.exe's exit code, so RestartOnFailure never fires: repeat the
    # trigger instead (IgnoreNew below makes a repeat a no-op while the watcher runs). SCHTASKS_NOTE.
    repeat = _sub(trigger, "Repetition")
    _sub(repeat, "Interval", "PT5M")
    _sub(repeat, "StopAtDurationEnd", "false")
    if user:
        _sub(trigger, "UserId", user)
    principal = _sub(_sub(root, "Principals"), "Principal")
    principal.set("id", "Author")
    if user:
        _sub(principal, "UserId", user)
    _sub(principal, "LogonType", "InteractiveToken")  # wsl.exe needs the user's logon session
    _sub(principal, "RunLevel", "LeastPrivilege")  # -u root is root in the distro, not a Windows admin
    _task_settings(_sub(root, "Settings"))
    actions = _sub(root, "Actions")
    actions.set("Context", "Author")
    exec_ = _sub(actions, "Exec")
    _sub(exec_, "Command", command)
    _sub(exec_, "Arguments", arguments)
    return root


def _task_settings(settings: ET.Element) -> None:
    for tag, text in (("MultipleInstancesPolicy", "IgnoreNew"), ("DisallowStartIfOnBatteries", "false"),
                      ("StopIfGoingOnBatteries", "false"), ("AllowHardTerminate", "true"),
                      ("StartWhenAvailable", "true"), ("RunOnlyIfNetworkAvailable", "false")):
        _sub(settings, tag, text)
    idle = _sub(settings, "IdleSettings")
    _sub(idle, "StopOnIdleEnd", "false")
    _sub(idle, "RestartOnIdle", "false")
    for tag, text in (("AllowStartOnDemand", "true"), ("Enabled", "true"), ("Hidden", "false"),
                      ("RunOnlyIfIdle", "false"), ("WakeToRun", "false"),
                      ("ExecutionTimeLimit", "PT0S"),  # no limit: it runs all day
                      ("Priority", "7")):
        _sub(settings, tag, text)
    restart = _sub(settings, "RestartOnFailure")
    _sub(restart, "Interval", "PT5M")
    _sub(restart, "Count", "3")


def encode_task_xml(xml: str) -> bytes:
    """The bytes of a task file: UTF-16 with a byte-order mark, as its declaration says."""
    return xml.encode("utf-16")
