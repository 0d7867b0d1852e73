"""Shared fixtures; shared functions live in helpers.py."""

from __future__ import annotations

import pytest


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
