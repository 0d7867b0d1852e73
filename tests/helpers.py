"""Helpers shared by the tests (a module of its own name: tests/lab has a conftest.py too,
and `from conftest import ...` would pick whichever pytest imported first)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from monitor.pagecache.scan import device_fstypes
from monitor.errors import UserError
from monitor.pagecache.residency import MincoreReader
from monitor.history.store import Store

TESTS = Path(__file__).parent
TREES = TESTS / "trees"
FAKEBIN = TESTS / "fakebin"
REPO = TESTS.parent


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, env: dict | None = None, timeout: float = 60, cwd: str | Path | None = None) -> Run:
    """``python -m monitor ARGS`` in a fresh process, as a user would run it."""
    full_env = {**os.environ, "VMMEMCTL_CONFIG": "", **(env or {})}
    done = subprocess.run([sys.executable, "-m", "monitor", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=cwd or REPO)
    return Run(done.returncode, done.stdout, done.stderr)


def tree(name: str) -> Path:
    return TREES / name / "proc"


def start_watch(db: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "monitor", "watch", "--db", str(db), "--interval", "0.2s",
                             "--log-file", str(db.with_suffix(".log")), *extra],
                            cwd=REPO, env={**os.environ, "VMMEMCTL_CONFIG": "", **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_samples(db: Path, n: int, timeout: float = 20) -> int:
    deadline = time.time() + timeout
    count = 0
    while time.time() < deadline:
        if db.exists():
            try:
                with Store(db, readonly=True) as store:
                    count = store.db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
            except (UserError, sqlite3.OperationalError):  # not created yet, or mid-creation
                count = 0
            if count >= n:
                return count
        time.sleep(0.1)
    raise AssertionError(f"only {count} samples after {timeout}s")


# ------------------------------------------------------------------ as 'nobody', and the page cache of files


def as_nobody(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m monitor ARGS`` as the unprivileged user 'nobody', with a HOME of its own for this call."""
    home = Path(tempfile.mkdtemp(prefix="vmmemctl-nobody-"))
    home.chmod(0o777)
    # A reclaim lock of this call's own, as conftest gives every test: the machine-wide one is held by
    # any reclaim running beside the suite, and the call would then say "another reclaim is running".
    base = {"HOME": str(home), "PATH": "/usr/bin:/bin", "VMMEMCTL_CONFIG": "",
            "VMMEMCTL_RECLAIM_LOCK": str(home / "reclaim.lock")}
    try:
        return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               sys.executable, "-m", "monitor", *args], capture_output=True, text=True,
                              env={**base, **(env or {})}, cwd=REPO, timeout=120)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def nobody_can_run_python() -> bool:
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        return False
    done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", "0"],
                          capture_output=True)
    return done.returncode == 0


needs_nobody = pytest.mark.skipif(not nobody_can_run_python(),
                                  reason="needs root to switch to 'nobody', who must be able to run this Python")


def on_shmem(path: Path) -> bool:
    types = device_fstypes(Path("/proc/self/mountinfo").read_text())
    return types.get(os.stat(path).st_dev, "") in ("tmpfs", "devtmpfs")


def cold_file(path: Path, size: int) -> Path:
    """A file of ``size`` bytes that is not in the page cache (written, written back, dropped)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(os.urandom(size))
        f.flush()
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    return path


def warm(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(1 << 20):
            pass


def kernel_cached(path: Path) -> int:
    """What the kernel says is cached of one file, by mincore (root sees every file)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return MincoreReader().read(fd, os.fstat(fd).st_size).cached
    finally:
        os.close(fd)


# ------------------------------------------------------------------ the TUI as a person uses it


class Tmux:
    def __init__(self, tmp_path: Path):
        self.socket = f"vmmemctl-test-{os.getpid()}-{tmp_path.name}"[:80]

    def __call__(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10)
        return done.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "tui")

    def wait_for(self, *words: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if all(w in text for w in words):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"never saw {words!r}; the screen:\n{text}")
            time.sleep(0.1)

    def keys(self, *keys: str) -> None:
        self("send-keys", "-t", "tui", *keys)
