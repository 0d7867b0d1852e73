"""Snapshots of the dashboard at 80x24 and 120x40 from a prepared history.

Deterministic: the history is written by tui.demo for a fixed "now", the app's
clock is that "now", times print in UTC, the environment is read from the
recorded linux-vm tree, timers are off and nothing blinks. Review a change
with `pytest tests/test_tui_snapshots.py --snapshot-report` and accept it
with `--snapshot-update`.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from helpers import TREES
from monitor.config.schema import Config, GeneralConfig, ReclaimConfig
from tui.app import make_app
from tui.demo import write_history
from tui.screens import PromptScreen

NOW = 1_800_022_800.0  # Friday 2027-01-15 14:20 UTC: mid-afternoon, the cache near the prompt threshold


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Path:
    return write_history(tmp_path_factory.mktemp("snap") / "h.db", NOW, days=8, step=60.0)


def build(history, tmp_path, **kw):
    config = Config(general=GeneralConfig(proc_root=str(TREES / "linux-vm" / "proc")),
                    reclaim=ReclaimConfig(settle=0.0))
    return make_app(config, history, standalone=False, clock=lambda: NOW, timers=False, environ={},
                    localtime=time.gmtime, watcher_pid=lambda db: 4166, reclaim_lock=tmp_path / "lock", **kw)


@pytest.fixture
def app(history, tmp_path):
    """Attached to a watcher (pid 4166): the dashboard a person acts from."""
    return build(history, tmp_path)


@pytest.fixture
def viewing(history, tmp_path):
    """`--view`: read only, its prompt shown without answers (issue 18)."""
    return build(history, tmp_path, view=True)


async def loaded(pilot, keep_prompt: bool = False) -> None:
    for _ in range(3):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
    if not keep_prompt and isinstance(pilot.app.screen, PromptScreen):
        await pilot.press("escape")
    await pilot.pause()


async def with_prompt(pilot) -> None:
    await loaded(pilot, keep_prompt=True)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_dashboard(snap_compare, app, size):
    assert snap_compare(app, terminal_size=size, run_before=loaded)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_pending_prompt(snap_compare, app, size):
    assert snap_compare(app, terminal_size=size, run_before=with_prompt)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_viewing(snap_compare, viewing, size):
    assert snap_compare(viewing, terminal_size=size, run_before=loaded)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_viewing_prompt(snap_compare, viewing, size):
    assert snap_compare(viewing, terminal_size=size, run_before=with_prompt)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_reclaim_confirm(snap_compare, app, size):
    assert snap_compare(app, press=["r"], terminal_size=size, run_before=loaded)


@pytest.mark.parametrize("key", ["1", "3", "4"])
def test_long_ranges(snap_compare, app, key):
    async def range_loaded(pilot) -> None:
        await loaded(pilot)
        await pilot.press(key)
        await loaded(pilot)
    assert snap_compare(app, terminal_size=(120, 40), run_before=range_loaded)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_help(snap_compare, app, size):
    assert snap_compare(app, press=["question_mark"], terminal_size=size, run_before=loaded)
