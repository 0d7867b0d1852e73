"""The dashboard's cache view, driven by Pilot at 80x24: scan in a worker, top directories, give one back."""

from __future__ import annotations

import asyncio
import os
import time

from monitor.config import Config, ReclaimConfig
from monitor.store import Store
from test_cache import cold_file, disk, kernel_cached, warm  # noqa: F401 (a fixture)
from test_tui_pilot import pilot
from tui.app import make_app
from tui.cache_view import CacheScreen, ConfirmScreen

MiB = 1024**2


async def until(pilot_, condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await pilot_.pause(0.05)


def app_for(tmp_path):
    config = Config(reclaim=ReclaimConfig(settle=0.0, compact=False))  # compaction is the reclaim tests' business
    return make_app(config, tmp_path / "h.db", standalone=False, timers=False, reclaim_lock=tmp_path / "lock")


@pilot
async def test_w_opens_the_cache_view_and_escape_comes_back(tmp_path, isolated_home):
    app = app_for(tmp_path)
    async with app.run_test(size=(80, 24)) as p:
        await p.press("w")
        await until(p, lambda: isinstance(app.screen, CacheScreen))
        assert app.screen.paths[0] == isolated_home["HOME"]
        await p.press("escape")
        await until(p, lambda: not isinstance(app.screen, CacheScreen))


@pilot
async def test_the_view_shows_the_hot_tree_and_gives_its_cache_back(disk, isolated_home):
    build, work = disk / "src" / "build", disk / "src" / "work"
    for i in range(2):
        warm(cold_file(build / f"o{i}", 8 * MiB))
        warm(cold_file(work / f"w{i}", 2 * MiB))
    work_before = sum(kernel_cached(f) for f in work.iterdir())
    app = app_for(disk)
    async with app.run_test(size=(80, 24)) as p:
        screen = CacheScreen(app.config, disk / "h.db", paths=[str(disk / "src")], depth=1,
                             reclaim_lock=disk / "lock")
        app.push_screen(screen)
        await until(p, lambda: screen.result is not None)
        await p.pause(0.1)
        text = app.screen_text()
        assert "build" in text and "work" in text and "16.0 MiB" in text
        assert screen.rows[0][0] == str(build)  # the largest first, where the cursor starts
        await p.press("enter")
        await until(p, lambda: isinstance(app.screen, ConfirmScreen))
        assert "Give back" in app.screen_text()
        await p.press("enter")
        await until(p, lambda: screen.gave_back and not screen.busy)
        await until(p, lambda: screen.result is not None and not screen.busy)
    assert sum(kernel_cached(f) for f in build.iterdir()) == 0
    assert sum(kernel_cached(f) for f in work.iterdir()) >= 0.97 * work_before
    with Store(disk / "h.db") as store:
        reclaims = store.events(since=0, kinds=["reclaim"])
    assert len(reclaims) == 1 and str(build) in reclaims[0].message


@pilot
async def test_escape_in_the_confirm_gives_nothing_back(disk, isolated_home):
    warm(cold_file(disk / "t" / "a" / "f", 4 * MiB))
    app = app_for(disk)
    async with app.run_test(size=(80, 24)) as p:
        screen = CacheScreen(app.config, disk / "h.db", paths=[str(disk / "t")], reclaim_lock=disk / "lock")
        app.push_screen(screen)
        await until(p, lambda: screen.result is not None)
        await p.press("enter")
        await until(p, lambda: isinstance(app.screen, ConfirmScreen))
        await p.press("escape")
        await until(p, lambda: app.screen is screen)
        await p.pause(0.2)
    assert kernel_cached(disk / "t" / "a" / "f") > 3 * MiB and not screen.gave_back
