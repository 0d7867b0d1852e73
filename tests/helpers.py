"""Helpers shared by the tests (a module of its own name: tests/lab has a conftest.py too,
and `from conftest import ...` would pick whichever pytest imported first)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

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
