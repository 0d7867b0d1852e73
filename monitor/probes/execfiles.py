"""Host mode: the guest's kernel files through a command channel.

On Windows the channel is ``wsl.exe -d Ubuntu -u root -e``; in the lab it
is ``lab/guest-exec``. Either is a command *prefix* (``[guest] exec``)
to which we append a fixed argument vector: nothing from config or samples is
ever turned into a shell string. All files of one sample come back from one
call (a round trip costs ~0.1 s under TCG, more through wsl.exe):

    sh -c SCRIPT sh NONCE /proc/meminfo /proc/vmstat ...

and the answer is each file's text after a line ``NONCE /proc/meminfo``
(``NONCE! /path`` when it is missing or unreadable).
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import subprocess
from typing import Sequence

from monitor.kernel.windows import decode_windows_text, validate_prefix

log = logging.getLogger(__name__)

# Prints each file after a header line holding the nonce; the nonce and the paths are arguments.
READ_SCRIPT = 'n=$1; shift; for f; do if [ -r "$f" ]; then echo "$n $f"; cat "$f"; echo; else echo "$n! $f"; fi; done'
# One write(2) of the whole value, as the kernel's knobs want; dd (coreutils or busybox) names
# the errno in words ("Resource temporarily unavailable"), where dash's printf only says "I/O error".
WRITE_SCRIPT = 'printf "%s" "$1" | dd of="$2" bs=4096 conv=notrunc'
# wsl.exe prints its own messages ("There is no distribution with the supplied name.") in UTF-16LE
# unless WSL_UTF8=1 (microsoft/WSL#4607); the guest's own output is never re-encoded. Set it for every
# call, and still decode stderr defensively. On Windows, CREATE_NO_WINDOW: no console flashes up.
CHANNEL_ENV = {"WSL_UTF8": "1"}
NO_WINDOW = getattr(subprocess, "CREATE_NO_WINDOW", 0)
_STRERRORS = {os.strerror(code).lower(): code for code in errno.errorcode}


def _guest_path(path: str) -> str:
    top, _, rest = path.partition("/")
    if top not in ("proc", "sys") or ".." in rest.split("/"):
        raise ValueError(f"not a proc/ or sys/ path: {path!r}")
    return f"/{top}/{rest}"


class ExecFiles:
    """Reads and writes the guest's /proc and /sys by running commands through ``prefix``."""

    def __init__(self, prefix: Sequence[str], timeout: float):
        validate_prefix(prefix)
        self.prefix = list(prefix)
        self.timeout = timeout
        self.description = " ".join(self.prefix) or "exec"

    def _run(self, argv: list[str], attempts: int = 1) -> subprocess.CompletedProcess:
        """One call through the channel; ``attempts=2`` tries once more after a call that never answered
        (only for what is safe to repeat: a lost `sync` or `test` costs one timeout, not the reclaim)."""
        for attempt in range(1, attempts + 1):
            try:
                return subprocess.run(self.prefix + argv, capture_output=True, timeout=self.timeout,
                                      stdin=subprocess.DEVNULL, env={**os.environ, **CHANNEL_ENV}, creationflags=NO_WINDOW)
            except subprocess.TimeoutExpired:
                error = OSError(errno.ETIMEDOUT, f"{self.prefix[0]}: no answer within {self.timeout:g}s")
            except OSError as exc:
                raise OSError(exc.errno, f"{self.prefix[0]}: {exc.strerror}") from None
            if attempt < attempts:
                log.warning("%s (%s); trying once more", error.strerror, argv[0])
        raise error

    def read(self, paths: Sequence[str]) -> dict[str, str | None]:
        nonce = secrets.token_hex(8)
        wanted = {_guest_path(p): p for p in paths}
        out: dict[str, str | None] = {p: None for p in paths}
        try:
            done = self._run(["sh", "-c", READ_SCRIPT, "sh", nonce, *wanted])
        except OSError:
            return out  # the guest is unreachable: every file unknown, as if missing
        if done.returncode in WSL_OWN_FAILURE and nonce.encode() not in done.stdout:  # the channel's own failure
            log.warning("%s: %s", self.prefix[0], " ".join(failure_lines(done))[:300] or f"exit {done.returncode}")
            return out
        current: str | None = None
        chunks: dict[str, list[str]] = {}
        text = done.stdout.decode("utf-8", "replace").removesuffix("\n")  # the last `echo`'s newline
        for line in text.split("\n"):
            head, _, rest = line.partition(" ")
            if head == nonce and rest in wanted:
                current = rest
                chunks[current] = []
            elif head == nonce + "!":
                current = None
            elif current is not None:
                chunks[current].append(line)
        for guest, lines in chunks.items():
            # each file is followed by the newline `echo` added before the next header
            out[wanted[guest]] = "\n".join(lines)
        return out

    def write(self, path: str, value: str) -> None:
        # drop_caches and compact_memory may run twice; a memory.reclaim step must not (it would free twice)
        again = 1 if path.endswith("memory.reclaim") else 2
        done = self._run(["sh", "-c", WRITE_SCRIPT, "sh", value, _guest_path(path)], attempts=again)
        if done.returncode != 0:
            said = failure_lines(done)
            line = next((ln for ln in said if "error" in ln.lower() or ": " in ln), said[-1] if said else "failed")
            raise OSError(_errno_of(" ".join(said)), f"{path}: {line}")

    def exists(self, path: str) -> bool:
        """Exists and is writable for the guest command (what gradual reclaim needs)."""
        return bool(self.writable(path))

    def writable(self, path: str) -> bool | None:
        """As :meth:`exists`, but None when the guest did not answer (unknown, not "no").

        `test` says 0 (yes) or 1 (no); any other code is the channel's own failure (the lab's
        124/125, wsl.exe's own errors), so it is asked once more and then reads as unknown."""
        for _ in range(2):
            try:
                code = self._run(["test", "-w", _guest_path(path)]).returncode
            except OSError:
                continue
            if code in (0, 1):
                return code == 0
        return None

    def sync(self) -> None:
        self._run(["sync"], attempts=2)


# wsl.exe's own failures (no such distro, the service down) exit -1: 4294967295 to a Windows caller,
# 255 to a Linux one; it prints their words on stdout (WslClient.cpp), not stderr.
WSL_OWN_FAILURE = (255, 4294967295, -1)


def failure_lines(done: subprocess.CompletedProcess) -> list[str]:
    """What a failed call said, as lines: the guest command's stderr; where that is empty and the exit
    is wsl.exe's own -1, its stdout, where wsl.exe writes its errors (UTF-16 unless WSL_UTF8 took, its
    line ends "\r\r\n": no empty lines kept)."""
    said = [ln.strip() for ln in decode_windows_text(done.stderr).splitlines() if ln.strip()]
    if not said and done.returncode in WSL_OWN_FAILURE:
        said = [ln.strip() for ln in decode_windows_text(done.stdout).splitlines() if ln.strip()]
    return said


def _errno_of(message: str) -> int:
    """'sh: write error: Resource temporarily unavailable' -> EAGAIN (the guest's shell says it in words)."""
    text = message.lower()
    for words, code in _STRERRORS.items():
        if words and words in text:
            return code
    return errno.EIO
