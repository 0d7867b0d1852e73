"""Stand-ins for Windows tools, run as real executables on PATH by the tests.

Behaviour is chosen by $FAKE_WINDOWS_MODE (normal, hang, garbage, babble,
novm, sandbox, old, de, fr, slow; denied for the toast) and every start is logged to
$FAKE_WINDOWS_LOG, so a test can count spawns. The output formats are those
of the real tools: tasklist's CSV as printed by Windows 10/11 in en-US, de-DE
and fr-FR locales, and the tab-separated lines our own PowerShell query prints.
"""

import base64
import json
import os
import re
import sys
import time
from pathlib import Path

RECORDED = Path(__file__).parent / "recorded"
MODE = os.environ.get("FAKE_WINDOWS_MODE", "normal")


def log_start(tool: str) -> None:
    path = os.environ.get("FAKE_WINDOWS_LOG")
    if path:
        with open(path, "a") as fh:
            fh.write(f"{tool} {os.getpid()} {' '.join(sys.argv[1:])}\n")


def out(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


# What monitor.notify.TOAST_SCRIPT prints on success and before an error.
TOAST_OK = "vmmemctl-toast-ok"
TOAST_ERROR = "vmmemctl-toast-error: "
BASE64_LINE = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def toast() -> None:
    """``powershell.exe ... -EncodedCommand B64``: the toast script, its data on stdin.

    Appends {"argv", "script", "stdin"} (one JSON object a line) to
    $FAKE_WINDOWS_TOAST_RECORD, then answers as the script would: the success
    line, or its error line when the data is not two base64 lines (the real
    FromBase64String throws) or in mode "denied" (toasts disabled). Modes
    hang/slow never answer; garbage answers something else.
    """
    argv = sys.argv[1:]
    script = base64.b64decode(argv[argv.index("-EncodedCommand") + 1]).decode("utf-16-le")
    data = sys.stdin.buffer.read().decode("ascii", "replace")
    record = os.environ.get("FAKE_WINDOWS_TOAST_RECORD")
    if record:
        with open(record, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"argv": argv, "script": script, "stdin": data}) + "\n")
    if MODE in ("hang", "slow"):
        time.sleep(3600)
    if MODE == "garbage":
        out(b"\xef\xbb\xbf#< CLIXML\r\nThe term 'ToastNotificationManager' is not recognized\r\n")
        return
    lines = data.split("\n")
    if MODE == "denied" or len(lines) < 2 or not all(BASE64_LINE.fullmatch(ln.strip()) for ln in lines[:2]):
        why = "Access is denied." if MODE == "denied" else "The input is not a valid Base-64 string."
        out(f"{TOAST_ERROR}{why}\r\n".encode())
        sys.exit(1)
    out(f"{TOAST_OK}\r\n".encode())


def powershell() -> None:
    log_start("powershell.exe")
    if "-EncodedCommand" in sys.argv[1:]:
        toast()
        return
    if sys.argv[1:] != ["-NoLogo", "-NoProfile", "-NonInteractive", "-Command", "-"]:
        out(b"fake powershell: unexpected arguments\r\n")
        sys.exit(1)
    if MODE == "slow":
        time.sleep(30)
    delay = float(os.environ.get("FAKE_WINDOWS_FIRST_DELAY") or 0)  # a cold start after logon
    for line in sys.stdin:
        if delay:
            time.sleep(delay)
            delay = 0
        nonce = re.search(r"'__END_([0-9a-f]+)__'", line)
        if MODE == "hang":
            time.sleep(3600)
        if MODE == "babble":
            while True:
                out(b"WARNING: something odd happened \x00\xff\r\n" * 100)
        if MODE == "garbage":
            out(b"\xef\xbb\xbfThe term 'Get-Process' is not recognized\r\n")
        elif "Get-Process -Name vmmemWSL,vmmem" in line:
            name = {"novm": "ps-novm.txt", "sandbox": "ps-sandbox.txt", "old": "ps-old.txt"}.get(MODE, "ps-normal.txt")
            out((RECORDED / name).read_bytes())
            if "VMTOTAL" in line:
                out(b"VMTOTAL\t34187145216\r\n")
        if nonce:
            out(f"__END_{nonce.group(1)}__\r\n".encode())


def tasklist() -> None:
    log_start("tasklist.exe")
    if MODE == "hang":
        time.sleep(3600)
    name = {"garbage": "tasklist-garbage.txt", "novm": "tasklist-novm.txt", "de": "tasklist-de.txt",
            "fr": "tasklist-fr.txt", "sandbox": "tasklist-sandbox.txt", "old": "tasklist-old.txt"}.get(
        MODE, "tasklist-en.txt")
    out((RECORDED / name).read_bytes())


if __name__ == "__main__":
    {"powershell.exe": powershell, "tasklist.exe": tasklist}[Path(sys.argv[0]).name]()
