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
import os
import secrets
import selectors
import shutil
import subprocess
import time
from typing import Callable

from monitor.probes.host import choose_vm
from monitor.sample import GuestSample, HostSample

WINDOWS_TOOL_DIRS = ("/mnt/c/Windows/System32/WindowsPowerShell/v1.0", "/mnt/c/Windows/System32")

# One line of PowerShell. Nothing from config or samples is ever put in it;
# only the nonce, which we generate.
PS_QUERY = (
    "$ErrorActionPreference='SilentlyContinue'; "
    "foreach($p in (Get-Process -Name vmmemWSL,vmmem)){"
    "$w=(Get-CimInstance Win32_PerfRawData_PerfProc_Process -Filter \"IDProcess=$($p.Id)\").WorkingSetPrivate; "
    "\"VMPROC`t$($p.ProcessName)`t$($p.Id)`t$($p.WorkingSet64)`t$w\"}; "
    "{total}"
    "'__END_{nonce}__'"
)
PS_TOTAL = "\"VMTOTAL`t$((Get-CimInstance Win32_ComputerSystem).TotalPhysicalMemory)\"; "


class InteropError(Exception):
    pass


def find_windows_tool(name: str) -> str | None:
    """``powershell.exe`` on PATH (WSL appends Windows' PATH), else its usual place under /mnt/c."""
    found = shutil.which(name)
    if found:
        return found
    for folder in WINDOWS_TOOL_DIRS:
        candidate = os.path.join(folder, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


class PowerShellSession:
    """One long-lived ``powershell.exe -Command -`` answering queries line by line."""

    def __init__(self, exe: str, timeout: float):
        self.exe = exe
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None
        self._buffer = b""

    def _start(self) -> subprocess.Popen:
        return subprocess.Popen(
            [self.exe, "-NoLogo", "-NoProfile", "-NonInteractive", "-Command", "-"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in our terminal is ours to handle, not PowerShell's
        )

    def query(self, line_template: str) -> list[str]:
        """Run one line; return its output lines (before the end marker)."""
        nonce = secrets.token_hex(8)
        marker = f"__END_{nonce}__"
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
            self._buffer = b""
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(line_template.replace("{nonce}", nonce).encode() + b"\r\n")
            self.proc.stdin.flush()
        except OSError as exc:
            self.close()
            raise InteropError(f"powershell.exe stdin: {exc}") from None
        return self._read_until(marker)

    def _read_until(self, marker: str) -> list[str]:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + self.timeout
        fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                lines = self._buffer.decode("utf-8", "replace").replace("\ufeff", "").splitlines()
                if marker in (ln.strip() for ln in lines):
                    self._buffer = b""
                    return [ln.strip() for ln in lines[: [ln.strip() for ln in lines].index(marker)]]
                left = deadline - time.monotonic()
                if left <= 0 or len(self._buffer) > 1 << 20:
                    self.close()
                    raise InteropError(f"powershell.exe gave no answer within {self.timeout:g}s")
                if not sel.select(left):
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    self.close()
                    raise InteropError("powershell.exe exited")
                self._buffer += chunk

    def close(self) -> None:
        if self.proc is None:
            return
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
                 clock: Callable[[], float] = time.time):
        self.exe = exe
        self.session = PowerShellSession(exe, timeout) if exe else None
        self.retry_after = retry_after
        self.clock = clock
        self.host_total: int | None = None
        self._failed_at: float | None = None
        self._last_error = ""

    def sample(self, guest: GuestSample | None) -> HostSample:
        now = self.clock()
        if self.session is None:
            return HostSample(now, None, "interop", False, error="powershell.exe not found (interop off?)")
        if self._failed_at is not None and now - self._failed_at < self.retry_after:
            return HostSample(now, None, "interop", False, error=f"{self._last_error} (retrying later)")
        try:
            lines = self.session.query(PS_QUERY.replace("{total}", "" if self.host_total else PS_TOTAL))
        except InteropError as exc:
            self._failed_at, self._last_error = now, str(exc)
            return HostSample(now, None, "interop", False, error=str(exc))
        rows, total = parse_powershell_answer(lines)
        self.host_total = self.host_total or total
        if not rows and any(line and not line.startswith("VMTOTAL") for line in lines):
            self._failed_at, self._last_error = now, f"powershell.exe answered garbage: {lines[0][:60]!r}"
            return HostSample(now, None, "interop", False, error=self._last_error)
        self._failed_at = None
        chosen, why = choose_vm(((r[0], r) for r in rows), lambda r: r[2])
        if chosen is None:
            return HostSample(now, None, "interop", False, error=why, host_total=self.host_total)
        name, pid, wset, private = chosen
        value, what = (private, "private working set") if private is not None else (wset, "working set")
        return HostSample(now, value, "interop", False, detail=f"{why} pid {pid}, {what} (PowerShell)",
                          host_total=self.host_total)

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

    def sample(self, guest: GuestSample | None) -> HostSample:
        now = self.clock()
        if not self.exe:
            return HostSample(now, None, "interop", False, error="tasklist.exe not found (interop off?)")
        try:
            done = subprocess.run([self.exe, "/fo", "csv", "/nh", "/fi", "IMAGENAME eq vmmem*"],
                                  capture_output=True, timeout=self.timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return HostSample(now, None, "interop", False, error=f"tasklist.exe gave no answer within {self.timeout:g}s")
        except OSError as exc:
            return HostSample(now, None, "interop", False, error=f"tasklist.exe: {exc.strerror or exc}")
        text = done.stdout.decode("utf-8", "replace")
        rows = parse_tasklist_csv(text)
        if not rows and text.strip() and '"' in text:
            return HostSample(now, None, "interop", False, error=f"tasklist.exe answered garbage: {text.strip()[:60]!r}")
        chosen, why = choose_vm(((r[0], r) for r in rows), lambda r: r[2])
        if chosen is None:
            return HostSample(now, None, "interop", False, error=why)
        return HostSample(now, chosen[2], "interop", False, detail=f"{why} pid {chosen[1]}, working set (tasklist)")

    def close(self) -> None:
        pass
