"""Shared helpers: recorded trees, and the CLI run as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

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


@pytest.fixture
def isolated_home(tmp_path, monkeypatch):
    """A HOME (and XDG dirs) of the test's own, so no user config or history leaks in."""
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "XDG_DATA_HOME": str(home / ".local/share"),
           "XDG_STATE_HOME": str(home / ".local/state"), "VMMEMCTL_CONFIG": ""}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def tree(name: str) -> Path:
    return TREES / name / "proc"
