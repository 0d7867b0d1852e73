"""Host numbers from inside WSL2, through Windows interop.

A ``powershell.exe`` spawn costs about half a second, so we keep one
PowerShell alive and send it one line per query over stdin; it answers with
tab-separated lines and an end marker carrying a fresh nonce:

    VMPROC<TAB>vmmemWSL<TAB>4242<TAB>7864320000<TAB>7700000000
    VMTOTAL<TAB>34187145216
    __END_3f9a..__

(name, pid, WorkingSet64, WorkingSetPrivate from the perf class; the last may
be empty). ``tasklist.exe /fo csv /nh`` is the fallback:

    "vmmemWSL","4242","Services","0","3,937,576 K"

Its size column is the working set in KiB with locale-dependent grouping
("3,937,576 K", "3.937.576 K", "3 937 576 Ko"), so only the digits count.
Every call has a timeout; a hung, missing or babbling Windows tool makes the
host value unknown for that sample and is retried later, never a stall.
"""

from __future__ import annotations

import csv
import errno
import logging
import os
import queue
import re
import secrets
import selectors
import subprocess
import tempfile
import threading
import time
from typing import Callable

from monitor.probes.host import choose_vm
from monitor.sample import GuestSample, HostSample
from monitor.kernel.windows import decode_clixml, decode_windows_text
from monitor.kernel.windows import find_windows_tool as find_windows_tool  # the one finder; re-exported for probes.build

log = logging.getLogger(__name__)

# A cold Windows PowerShell 5.1 after logon, plus loading the CIM module and a first perf-class
# query, takes several seconds (far past the 3 s per-query limit); a session killed then would be
# started cold again a minute later. So a fresh session gets this long for its first answer, and
# a sample taken meanwhile says "starting" instead of killing it.
FIRST_ANSWER_TIMEOUT = 15.0

# One line of PowerShell. Nothing from config or samples is ever put in it; only the nonce, which
# we generate. The private working set comes from one PerformanceCounter per VM process, kept in
# the session ($global:vmc, keyed by pid, so a restarted VM gets a new one): reading it costs
# nothing, where a Get-CimInstance Win32_PerfRawData query every sample costs the WMI provider CPU.
# English counter names; where the counter cannot be made or read, the CIM query is the fallback.
PS_QUERY = (
    "$ErrorActionPreference='SilentlyContinue'; "
    "if($null -eq $global:vmc){$global:vmc=@{}}; "
    "$procs=@(Get-Process -Name vmmemWSL,vmmem); "
    "foreach($k in @($global:vmc.Keys)){if(-not ($procs.Id -contains $k)){$global:vmc.Remove($k)}}; "
    "foreach($p in $procs){$w=$null; "
    "try{$c=$global:vmc[$p.Id]; "
    "if($null -eq $c){$c=New-Object System.Diagnostics.PerformanceCounter('Process','Working Set - Private',"
    "$p.ProcessName,$true); $global:vmc[$p.Id]=$c}; $w=$c.RawValue}catch{$global:vmc.Remove($p.Id)}; "
    "if($null -eq $w){$w=(Get-CimInstance Win32_PerfRawData_PerfProc_Process -Filter \"IDProcess=$($p.Id)\").WorkingSetPrivate}; "
    "\"VMPROC`t$($p.ProcessName)`t$($p.Id)`t$($p.WorkingSet64)`t$w\"}; "
    # Windows' own available memory (issue 27, item 4), in the same round trip: the Memory/Available Bytes
    # counter, kept in the session; where it cannot be had (localized counter names), the CIM figure in KiB
    "$a=$null; try{if($null -eq $global:vma){$global:vma=New-Object System.Diagnostics.PerformanceCounter("
    "'Memory','Available Bytes')}; $a=$global:vma.RawValue}catch{$global:vma=$null}; "
    "if($null -eq $a){$a=1024*(Get-CimInstance Win32_OperatingSystem).FreePhysicalMemory}; "
    "\"VMAVAIL`t$a\"; "
    "{total}"
    "{profile}"
    "'__END_{nonce}__'"
)
PS_TOTAL = "\"VMTOTAL`t$((Get-CimInstance Win32_ComputerSystem).TotalPhysicalMemory)\"; "
# The Windows user's profile folder, where WSL reads .wslconfig (issue 27): asked with the first query
# of a session, in the same round trip. Base64 of its UTF-8 bytes: a pipe from PowerShell 5.1 carries
# the console's OEM code page, which would turn "josé" into U+FFFD.
PS_PROFILE = "\"VMPROFILE`t$([Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes($env:USERPROFILE)))\"; "

# What a Windows tool prints when the .exe ran but WSL's interop server is gone
# ("<3>WSL (1234) ERROR: UtilConnectVsock:..."); with an exec failure, a sign that interop is down.
# "interop" as a word only: .NET's System.Runtime.InteropServices in an exception is PowerShell's own
# trouble, with Windows well reachable (issue 27).
_INTEROP_BROKEN = re.compile(r"Util(Connect|Accept|Bind)\w*|\binterop\b", re.IGNORECASE)


class InteropError(Exception):
    """A Windows tool could not answer. ``unreachable``: Windows itself cannot be reached (exec failed,
    WSL's interop server gone), not just this tool; ``starting``: a cold PowerShell still warming up."""

    def __init__(self, message: str, *, unreachable: bool = False, starting: bool = False):
        super().__init__(message)
        self.unreachable = unreachable
        self.starting = starting


def exec_error(exe: str, exc: OSError) -> InteropError:
    """An exec failure in words; ENOEXEC is the usual sign of a broken interop registration."""
    why = exc.strerror or str(exc)
    if exc.errno == errno.ENOEXEC:
        why += (" (WSL's interop entry in binfmt_misc is gone, often replaced by systemd-binfmt: "
                "microsoft/WSL#8843)")
    return InteropError(f"cannot run {os.path.basename(exe)}: {why}", unreachable=True)


def stderr_line(data: bytes) -> str:
    """A Windows tool's stderr as one line (PowerShell's CLIXML decoded)."""
    return decode_clixml(decode_windows_text(data))[:200]


class PowerShellSession:
    """One long-lived ``powershell.exe -Command -`` answering queries line by line.

    Its first answer may take ``first_timeout``: until then a query that
    gets no answer within ``timeout`` raises a ``starting`` InteropError and
    keeps the process (the answer is picked up by the next query).
    """

    def __init__(self, exe: str, timeout: float, first_timeout: float = FIRST_ANSWER_TIMEOUT,
                 env: dict[str, str] | None = None):
        self.exe = exe
        self.env = env
        self.timeout = timeout
        self.first_timeout = max(first_timeout, timeout)
        self.proc: subprocess.Popen | None = None
        self._buffer = b""
        self._errors = None  # a temp file: PowerShell's stderr (CLIXML), read when it fails
        self._started = 0.0
        self._answered = False
        self._pending: str | None = None  # the end marker of a query still unanswered
        self._stdout: PipeReader | None = None

    def _start(self) -> None:
        self._errors = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(
                [self.exe, "-NoLogo", "-NoProfile", "-NonInteractive", "-Command", "-"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._errors, env=self.env,
                start_new_session=True,  # a Ctrl-C in our terminal is ours to handle, not PowerShell's
            )
        except OSError as exc:  # ENOEXEC, EACCES: not a crash, an unreachable Windows (issue 17)
            self._errors.close()
            self._errors = None
            raise exec_error(self.exe, exc) from None
        self._buffer, self._started, self._answered, self._pending = b"", time.monotonic(), False, None
        assert self.proc.stdout is not None
        self._stdout = PipeReader(self.proc.stdout.fileno(), "powershell.exe stdout")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def query(self, line_template: str) -> list[str]:
        """Run one line; return its output lines (before the end marker)."""
        if not self.running:
            self.close()
            self._start()
        if self._pending is None:
            nonce = secrets.token_hex(8)
            try:
                assert self.proc is not None and self.proc.stdin is not None
                self.proc.stdin.write(line_template.replace("{nonce}", nonce).encode() + b"\r\n")
                self.proc.stdin.flush()
            except OSError as exc:
                self.close()
                raise InteropError(f"powershell.exe stdin: {exc}") from None
            self._pending = f"__END_{nonce}__"
        lines = self._read_until(self._pending, self._wait())
        if lines is None:
            self._no_answer()
        self._pending, self._answered = None, True
        return lines

    def _wait(self) -> float:
        if self._answered:
            return self.timeout
        return max(0.0, min(self.timeout, self._started + self.first_timeout - time.monotonic()))

    def _no_answer(self):
        elapsed = time.monotonic() - self._started
        if not self._answered and elapsed < self.first_timeout:
            raise InteropError(f"powershell.exe starting: no first answer after {elapsed:.0f}s (a cold start after "
                               f"logon can take up to {self.first_timeout:g}s)", starting=True)
        limit = self.timeout if self._answered else self.first_timeout
        said = self.close()
        raise InteropError(f"powershell.exe gave no answer within {limit:g}s" + (f": {said}" if said else ""))

    def _read_until(self, marker: str, wait: float) -> list[str] | None:
        """The lines before ``marker``; None when ``wait`` ran out. Raises when PowerShell exited or babbled."""
        assert self.proc is not None and self._stdout is not None
        deadline = time.monotonic() + wait
        while True:
            lines = [ln.strip() for ln in self._buffer.decode("utf-8", "replace").replace("\ufeff", "").splitlines()]
            if marker in lines:
                self._buffer = b"".join(self._buffer.partition(marker.encode())[2].splitlines(True)[1:])
                return lines[: lines.index(marker)]
            if len(self._buffer) > 1 << 20:
                self.close()
                raise InteropError("powershell.exe babbled: over 1 MiB without an answer")
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            chunk = self._stdout.read(left)
            if chunk is None:
                continue
            if not chunk:
                said = self.close()
                raise InteropError("powershell.exe exited" + (f": {said}" if said else ""),
                                   unreachable=bool(_INTEROP_BROKEN.search(said)))
            self._buffer += chunk

    def close(self) -> str:
        """Stop PowerShell; returns the last thing it said on stderr (one line, CLIXML decoded)."""
        said = ""
        if self._stdout is not None:
            self._stdout.close()
            self._stdout = None
        if self.proc is not None:
            proc, self.proc = self.proc, None
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream:
                    try:
                        stream.close()
                    except OSError:
                        pass  # a broken pipe on close changes nothing: the process is gone
        if self._errors is not None:
            self._errors.seek(0)
            said = stderr_line(self._errors.read(65536))
            self._errors.close()
            self._errors = None
        self._pending = None
        return said


class PipeReader:
    """What a child writes on a pipe, a chunk at a time, waiting at most so long for it.

    On POSIX a selector on the descriptor. Windows' ``select()`` takes sockets only (WinError 10038
    on a pipe): there a thread of its own reads the pipe into a queue until its end (issue 27)."""

    def __init__(self, fd: int, name: str = "pipe"):
        self.fd = fd
        self._sel: selectors.BaseSelector | None = None
        self._queue: queue.Queue[bytes] | None = None
        if os.name == "nt":
            self._queue = queue.Queue()
            threading.Thread(target=self._pump, name=name, daemon=True).start()
        else:
            self._sel = selectors.DefaultSelector()
            self._sel.register(fd, selectors.EVENT_READ)

    def _pump(self) -> None:
        assert self._queue is not None
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # closed under us (close() after a kill): the end
                chunk = b""
            self._queue.put(chunk)
            if not chunk:
                return

    def read(self, wait: float) -> bytes | None:
        """The next chunk (b"": the pipe's end), or None when none came within ``wait`` seconds."""
        if self._queue is not None:
            try:
                return self._queue.get(timeout=max(wait, 0.0))
            except queue.Empty:
                return None
        assert self._sel is not None
        if not self._sel.select(wait):
            return None
        return os.read(self.fd, 65536)

    def close(self) -> None:
        if self._sel is not None:
            self._sel.close()
            self._sel = None


def parse_available(lines: list[str]) -> int | None:
    """Windows' available memory in bytes from the VMAVAIL line, or None (absent, or not a number)."""
    for line in lines:
        parts = line.split("\t")
        if parts[0] == "VMAVAIL" and len(parts) == 2 and parts[1].isdigit():
            return int(parts[1]) or None  # 0: the CIM fallback found nothing either
    return None


def ps_query(total: bool = False, profile: bool = False) -> str:
    """The query line (its nonce still to fill), asking also for the host's RAM and the user's profile."""
    return PS_QUERY.replace("{total}", PS_TOTAL if total else "").replace("{profile}", PS_PROFILE if profile else "")


def parse_profile(lines: list[str]) -> str | None:
    """%USERPROFILE% from the VMPROFILE line (base64 of UTF-8); "" when PowerShell had none; None when the
    line is absent or not base64 of UTF-8."""
    import base64
    import binascii

    for line in lines:
        parts = line.split("\t")
        if parts[0] == "VMPROFILE" and len(parts) == 2:
            try:
                return base64.b64decode(parts[1], validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None
    return None


def parse_powershell_answer(lines: list[str]) -> tuple[list[tuple[str, int, int, int | None]], int | None]:
    """VMPROC rows as (name, pid, working set, private working set or None), and VMTOTAL."""
    rows = []
    total = None
    for line in lines:
        parts = line.split("\t")
        if parts[0] == "VMPROC" and len(parts) in (4, 5) and parts[2].isdigit() and parts[3].isdigit():
            private = int(parts[4]) if len(parts) == 5 and parts[4].isdigit() else None
            rows.append((parts[1], int(parts[2]), int(parts[3]), private))
        elif parts[0] == "VMTOTAL" and len(parts) == 2 and parts[1].isdigit():
            total = int(parts[1])
    return rows, total


class PowerShellProbe:
    name = "interop"
    cheap = False

    def __init__(self, exe: str | None, timeout: float, retry_after: float = 60.0,
                 clock: Callable[[], float] = time.time, first_timeout: float = FIRST_ANSWER_TIMEOUT):
        self.exe = exe
        self.session = PowerShellSession(exe, timeout, first_timeout) if exe else None
        self.retry_after = retry_after
        self.clock = clock
        self.host_total: int | None = None
        self.user_profile: str | None = None  # %USERPROFILE% as this session said it ("" when it has none)
        self.unreachable = False  # the last failure says Windows cannot be reached at all
        self._failed_at: float | None = None
        self._last_error = ""

    def sample(self, guest: GuestSample | None) -> HostSample:
        now = self.clock()
        if self.session is None:
            return HostSample(now, None, "interop", False, error="powershell.exe not found (interop off?)")
        if self._failed_at is not None and now - self._failed_at < self.retry_after:
            return HostSample(now, None, "interop", False, error=f"{self._last_error} (retrying later)")
        try:
            lines = self.session.query(ps_query(total=not self.host_total, profile=self.user_profile is None))
        except InteropError as exc:
            self.unreachable = exc.unreachable
            if not exc.starting:
                self._failed_at, self._last_error = now, str(exc)
            return HostSample(now, None, "interop", False, error=str(exc), starting=exc.starting)
        self.unreachable = False
        return self._judge(now, lines)

    def _judge(self, now: float, lines: list[str]) -> HostSample:
        rows, total = parse_powershell_answer(lines)
        self.host_total = self.host_total or total
        available = parse_available(lines)
        if self.user_profile is None:
            self.user_profile = parse_profile(lines)
        if not rows and any(line and not line.startswith(("VMTOTAL", "VMAVAIL", "VMPROFILE")) for line in lines):
            self._failed_at, self._last_error = now, f"powershell.exe answered garbage: {lines[0][:60]!r}"
            return HostSample(now, None, "interop", False, error=self._last_error)
        self._failed_at = None
        chosen, why = choose_vm(((r[0], r) for r in rows), lambda r: r[2])
        if chosen is None:
            return HostSample(now, None, "interop", False, error=why, host_total=self.host_total,
                              host_available=available)
        name, pid, wset, private = chosen
        value, what, metric = ((private, "private working set", "private_working_set") if private is not None
                               else (wset, "working set", "working_set"))
        return HostSample(now, value, "interop", False, detail=f"{why} pid {pid}, {what} (PowerShell)",
                          host_total=self.host_total, metric=metric, host_available=available)

    def close(self) -> None:
        if self.session:
            self.session.close()


def parse_tasklist_csv(text: str) -> list[tuple[str, int, int]]:
    """(image name, pid, working set bytes) for each CSV row; other lines are ignored."""
    rows = []
    for row in csv.reader(text.replace("\r", "").splitlines()):
        if len(row) < 5 or not row[1].strip().isdigit():
            continue
        digits = "".join(ch for ch in row[4] if ch.isdigit())
        if digits:
            rows.append((row[0].strip(), int(row[1]), int(digits) * 1024))
    return rows


class TasklistProbe:
    name = "tasklist"
    cheap = False

    def __init__(self, exe: str | None, timeout: float, clock: Callable[[], float] = time.time):
        self.exe = exe
        self.timeout = timeout
        self.clock = clock
        self.unreachable = False  # the last failure says Windows cannot be reached at all

    def sample(self, guest: GuestSample | None) -> HostSample:
        now = self.clock()
        if not self.exe:
            return HostSample(now, None, "interop", False, error="tasklist.exe not found (interop off?)")
        self.unreachable = False
        try:
            done = subprocess.run([self.exe, "/fo", "csv", "/nh", "/fi", "IMAGENAME eq vmmem*"],
                                  capture_output=True, timeout=self.timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return HostSample(now, None, "interop", False, error=f"tasklist.exe gave no answer within {self.timeout:g}s")
        except OSError as exc:
            self.unreachable = True
            return HostSample(now, None, "interop", False, error=str(exec_error(self.exe, exc)))
        text = decode_windows_text(done.stdout)
        if done.returncode != 0 and not text.strip():
            said = stderr_line(done.stderr)
            self.unreachable = bool(_INTEROP_BROKEN.search(said))
            return HostSample(now, None, "interop", False,
                              error=f"tasklist.exe exited with {done.returncode}: {said or 'no message'}")
        rows = parse_tasklist_csv(text)
        if not rows and text.strip() and '"' in text:
            return HostSample(now, None, "interop", False, error=f"tasklist.exe answered garbage: {text.strip()[:60]!r}")
        chosen, why = choose_vm(((r[0], r) for r in rows), lambda r: r[2])
        if chosen is None:
            return HostSample(now, None, "interop", False, error=why)
        return HostSample(now, chosen[2], "interop", False, detail=f"{why} pid {chosen[1]}, working set (tasklist)",
                          metric="working_set")  # tasklist's "Mem Usage" is the whole working set

    def close(self) -> None:
        pass
