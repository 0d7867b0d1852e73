"""Stand-ins for Windows tools, run as real executables on PATH by the tests.

Behaviour is chosen by $FAKE_WINDOWS_MODE (normal, hang, garbage, babble,
novm, sandbox, old, de, fr, slow, dotnet, interop-down, error; denied for the toast; defender for
-EncodedCommand), or for one tool by
$FAKE_POWERSHELL_MODE / $FAKE_TASKLIST_MODE (a PowerShell that hangs beside a tasklist that
answers, say), and every start is logged to
$FAKE_WINDOWS_LOG, so a test can count spawns.

What each imitates, and where that comes from:
- tasklist.exe (Microsoft's tasklist documentation; outputs recorded on Windows 10/11, in recorded/):
  the CSV of `/fo csv /nh` in en-US, de-DE and fr-FR; with no match the localized "INFO: No tasks
  ..." line on stdout, exit 0; a failure "ERROR: ..." on stderr, exit 1 (mode "error"). Mode
  "garbage" is no output tasklist prints: the guard against the unexpected.
- powershell.exe (Windows PowerShell 5.1): our own query's tab-separated lines (recorded/ps-*.txt;
  the VMAVAIL line, Windows' available memory, is our own shape with a made-up 12 GiB, not recorded;
  VMPROFILE, $env:USERPROFILE as base64 of UTF-8, ours too). Errors as the real one writes them
  (PowerShell#21808): given `-Command -` (what vmmemctl runs), an unknown cmdlet is plain text on
  stderr, in PowerShell 5.1's layout, and the session reads on (the rest of the line runs, so the end
  marker still comes); given -EncodedCommand, the error is CLIXML on stderr ("#< CLIXML" and <Objs>)
  and it exits 1. Mode "defender" refuses -EncodedCommand as Microsoft Defender kills that shape
  (mondoohq/mql#9802).
- whoami.exe (Microsoft's whoami documentation): through a pipe, in the OEM code page; see whoami().
"""

import json
import os
import re
import sys
import time
from pathlib import Path

RECORDED = Path(__file__).parent / "recorded"
TOOL = {"powershell.exe": "POWERSHELL", "tasklist.exe": "TASKLIST"}.get(Path(sys.argv[0]).name, "")
MODE = os.environ.get(f"FAKE_{TOOL}_MODE") or os.environ.get("FAKE_WINDOWS_MODE", "normal")


def log_start(tool: str) -> None:
    path = os.environ.get("FAKE_WINDOWS_LOG")
    if path:
        with open(path, "a") as fh:
            fh.write(f"{tool} {os.getpid()} {' '.join(sys.argv[1:])}\n")


def out(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


# What monitor.notify.TOAST_SCRIPT prints on success, when toasts are off, and before an error.
TOAST_OK = "vmmemctl-toast-ok"
TOAST_OFF = "vmmemctl-toast-off: "
TOAST_ERROR = "vmmemctl-toast-error: "
LITERAL = re.compile(r"FromBase64String\('([^']*)'\)")
# The cmdlets our scripts use; any other is an error on stderr (plain text for `-Command -`, after which
# the session reads on as the real one does; CLIXML and exit 1 for -EncodedCommand).
KNOWN_CMDLETS = {"Get-Process", "Get-CimInstance", "New-Object"}
CMDLET = re.compile(r"\b[A-Z][a-z]+-[A-Z][A-Za-z]+\b")


def plain_error(cmdlet: str) -> None:
    """An unknown cmdlet as Windows PowerShell 5.1 given `-Command -` writes it on a redirected stderr."""
    sys.stderr.buffer.write(
        f"{cmdlet} : The term '{cmdlet}' is not recognized as the name of a cmdlet, function, script file, or "
        "operable program. Check the spelling of the name, or if a path was included, verify that the path is "
        f"correct and try again.\r\nAt line:1 char:1\r\n+ {cmdlet}\r\n+ {'~' * len(cmdlet)}\r\n"
        f"    + CategoryInfo          : ObjectNotFound: ({cmdlet}:String) [], CommandNotFoundException\r\n"
        "    + FullyQualifiedErrorId : CommandNotFoundException\r\n \r\n".encode())
    sys.stderr.buffer.flush()


def clixml_error(message: str) -> None:
    """An error as PowerShell given -EncodedCommand writes it on a redirected stderr."""
    body = message.replace("\r\n", "_x000D__x000A_")
    sys.stderr.buffer.write(
        b"#< CLIXML\r\n<Objs Version=\"1.1.0.1\" xmlns=\"http://schemas.microsoft.com/powershell/2004/04\">"
        + f'<S S="Error">{body}_x000D__x000A_</S><S S="Error">At line:1 char:1_x000D__x000A_</S>'.encode()
        + b"</Objs>")
    sys.stderr.buffer.flush()


def toast(line: str, nonce: str | None) -> None:
    """One line of monitor.notify.TOAST_SCRIPT: the two texts are base64 literals in it.

    Appends {"script", "title", "body"} to $FAKE_WINDOWS_TOAST_RECORD, then
    answers as the script would: the success line; the "off" line in mode
    "off" (ToastNotifier.Setting is DisabledForUser); the error line in mode
    "denied" or when a literal is not base64 (the real FromBase64String
    throws). Modes hang/slow never answer; garbage answers something else.
    """
    texts = LITERAL.findall(line)
    record = os.environ.get("FAKE_WINDOWS_TOAST_RECORD")
    if record:
        with open(record, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"script": LITERAL.sub("FromBase64String('')", line.rstrip("\r\n")), "texts": texts}) + "\n")
    if MODE in ("hang", "slow"):
        time.sleep(3600)
    if MODE == "garbage":
        out(b"\xef\xbb\xbfThe term 'ToastNotificationManager' is not recognized\r\n")
    elif MODE == "off":
        out(f"{TOAST_OFF}DisabledForUser\r\n".encode())
    elif MODE == "denied" or len(texts) != 2 or not all(BASE64_LINE.fullmatch(t) for t in texts):
        why = "Access is denied." if MODE == "denied" else "The input is not a valid Base-64 string."
        out(f"{TOAST_ERROR}{why}\r\n".encode())
    else:
        out(f"{TOAST_OK}\r\n".encode())
    if nonce:
        out(f"__END_{nonce}__\r\n".encode())


BASE64_LINE = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def powershell() -> None:
    log_start("powershell.exe")
    if "-EncodedCommand" in sys.argv[1:]:
        if MODE == "defender":  # Microsoft Defender kills this command-line shape as malware (mondoohq/mql#9802)
            sys.stderr.write("Program 'powershell.exe' failed to run: Operation did not complete successfully "
                             "because the file contains a virus or potentially unwanted software\r\n")
            sys.exit(1)
        encoded(sys.argv[sys.argv.index("-EncodedCommand") + 1:])
        return
    if sys.argv[1:] != ["-NoLogo", "-NoProfile", "-NonInteractive", "-Command", "-"]:
        out(b"fake powershell: unexpected arguments\r\n")
        sys.exit(1)
    if MODE == "slow":
        time.sleep(30)
    if MODE in ("dotnet", "interop-down"):  # it dies at start, saying why on stderr (plain text for -Command -)
        sys.stderr.buffer.write({
            # PowerShell's own failure, naming .NET's System.Runtime.InteropServices: Windows is reachable
            "dotnet": b"Exception: System.Runtime.InteropServices.COMException (0x80070005): Access is denied.\r\n",
            # what a Windows tool prints when WSL's interop server is gone (the .exe ran, its output cannot come back)
            "interop-down": b"<3>WSL (1234) ERROR: UtilConnectVsock:250: connect failed 110\n",
        }[MODE])
        sys.exit(1)
    delay = float(os.environ.get("FAKE_WINDOWS_FIRST_DELAY") or 0)  # a cold start after logon
    for line in sys.stdin:
        if delay:
            time.sleep(delay)
            delay = 0
        nonce = re.search(r"'__END_([0-9a-f]+)__'", line)
        unknown = set(CMDLET.findall(line)) - KNOWN_CMDLETS
        if unknown:  # said on stderr; the line's other statements run, and the session reads on
            plain_error(sorted(unknown)[0])
            if nonce:
                out(f"__END_{nonce.group(1)}__\r\n".encode())
            continue
        if "ToastNotificationManager" in line:
            toast(line, nonce.group(1) if nonce else None)
            continue
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
            if "VMAVAIL" in line:  # our own line's shape; the value is made up (12 GiB; $FAKE_WINDOWS_AVAILABLE
                # sets it: a Windows short of memory), not recorded
                out(f"VMAVAIL\t{os.environ.get('FAKE_WINDOWS_AVAILABLE', '12884901888')}\r\n".encode())
            if "VMTOTAL" in line:
                out(b"VMTOTAL\t34187145216\r\n")
            if "VMPROFILE" in line:  # our own line: $env:USERPROFILE as base64 of UTF-8 ($FAKE_WINDOWS_USERPROFILE)
                import base64
                profile = os.environ.get("FAKE_WINDOWS_USERPROFILE", "C:\\Users\\alice")
                out(b"VMPROFILE\t" + base64.b64encode(profile.encode("utf-8")) + b"\r\n")
        if nonce:
            out(f"__END_{nonce.group(1)}__\r\n".encode())


def encoded(rest: list[str]) -> None:
    """``-EncodedCommand B64`` (base64 of UTF-16LE): one command, then exit; an unknown cmdlet is a CLIXML
    error on stderr and exit 1; our query is answered as on stdin."""
    import base64
    import binascii

    try:
        line = base64.b64decode(rest[0], validate=True).decode("utf-16-le")
    except (IndexError, binascii.Error, UnicodeDecodeError):
        clixml_error("Cannot process the command because the value specified with -EncodedCommand is not "
                     "properly encoded. The value must be Base64 encoded.")
        sys.exit(1)
    unknown = set(CMDLET.findall(line)) - KNOWN_CMDLETS
    if unknown:
        cmdlet = sorted(unknown)[0]
        clixml_error(f"{cmdlet} : The term '{cmdlet}' is not recognized as the name of a cmdlet, function, "
                     "script file, or operable program.")
        sys.exit(1)
    if "Get-Process -Name vmmemWSL,vmmem" in line:
        out((RECORDED / "ps-normal.txt").read_bytes())


def whoami() -> None:
    """``whoami.exe`` as it prints through a pipe: in the console's OEM code page ($FAKE_WINDOWS_OEM_CP,
    850 as on a Western European Windows; not UTF-8, not the ANSI code page), CRLF, the domain in lower case.

    Plain: ``desktop-4f2k9\\alice``. With ``/user /fo csv /nh``: ``"desktop-4f2k9\\alice","S-1-5-21-..."``
    (Microsoft's whoami documentation; /nh drops the header row). $FAKE_WINDOWS_USER sets the name
    (``DESKTOP-4F2K9\\josé`` is the non-ASCII case), $FAKE_WINDOWS_SID the SID."""
    log_start("whoami.exe")
    name = os.environ.get("FAKE_WINDOWS_USER", "DESKTOP-4F2K9\\alice")
    domain, _, user = name.rpartition("\\")
    name = f"{domain.lower()}\\{user}" if domain else user
    code_page = "cp" + os.environ.get("FAKE_WINDOWS_OEM_CP", "850")
    args = [a.lower() for a in sys.argv[1:]]
    if args == ["/user", "/fo", "csv", "/nh"]:
        sid = os.environ.get("FAKE_WINDOWS_SID", "S-1-5-21-1004336348-1177238915-682003330-1001")
        out(f'"{name}","{sid}"\r\n'.encode(code_page))
    elif not args:
        out(name.encode(code_page) + b"\r\n")
    else:
        out(b"ERROR: Invalid argument/option - '" + sys.argv[1].encode() + b"'.\r\nType \"WHOAMI /?\" for usage.\r\n")
        sys.exit(1)


def tasklist() -> None:
    log_start("tasklist.exe")
    if MODE == "hang":
        time.sleep(3600)
    if MODE == "error":  # as when the WMI/RPC service it asks is down: words on stderr, exit 1
        sys.stderr.buffer.write(b"ERROR: The RPC server is unavailable.\r\n")
        sys.exit(1)
    name = {"garbage": "tasklist-garbage.txt", "novm": "tasklist-novm.txt", "de": "tasklist-de.txt",
            "fr": "tasklist-fr.txt", "sandbox": "tasklist-sandbox.txt", "old": "tasklist-old.txt"}.get(
        MODE, "tasklist-en.txt")
    out((RECORDED / name).read_bytes())


if __name__ == "__main__":
    {"powershell.exe": powershell, "tasklist.exe": tasklist, "whoami.exe": whoami}[Path(sys.argv[0]).name]()
