"""Helpers shared by the tests (a module of its own name: tests/lab has a conftest.py too,
and `from conftest import ...` would pick whichever pytest imported first)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from monitor.errors import UserError
from monitor.store import Store

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
