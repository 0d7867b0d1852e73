"""Shared fixtures; shared functions live in helpers.py."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from helpers import on_shmem


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """A HOME (and XDG dirs) of the test's own, for every test, so no user config or history leaks in
    and none is written: a test that runs the CLI without --db writes under this HOME, not the user's."""
    home = tmp_path / "home"
    home.mkdir()
    # The system watcher's places (root's history, /run/vmmemctl) move too: the suite runs as root.
    # Control sockets live under the run dirs, so those are short (a socket path has 108 bytes).
    run = Path(tempfile.mkdtemp(prefix="vmc-"))
    run.chmod(0o755)
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "XDG_DATA_HOME": str(home / ".local/share"),
           "XDG_STATE_HOME": str(home / ".local/state"), "XDG_RUNTIME_DIR": str(run / "user"),
           "VMMEMCTL_SYSTEM_DIR": str(home / "system"), "VMMEMCTL_RUN_DIR": str(run / "system"),
           "VMMEMCTL_VM_CLAIM_DIR": str(run / "vm"),  # each test its own "VM": watchers of two tests never meet
           # and its own reclaim lock: a reclaim elsewhere on this machine (another suite, the lab's host-mode
           # watcher, a person) never makes a test's reclaim "busy"
           "VMMEMCTL_RECLAIM_LOCK": str(run / "reclaim.lock"),
           "VMMEMCTL_CONFIG": ""}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield env
    shutil.rmtree(run, ignore_errors=True)


@pytest.fixture
def shared_dir():
    """A folder 'nobody' can write (pytest's tmp_path sits under a root-only folder)."""
    path = Path(tempfile.mkdtemp(prefix="vmmemctl-test-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def disk(tmp_path):
    """A folder on a disk filesystem: tmpfs pages are shmem, which no fadvise gives back."""
    if on_shmem(tmp_path):
        pytest.skip(f"{tmp_path} is on tmpfs; these tests need a disk filesystem")
    return tmp_path
