"""The dashboard's groups view (`g`), driven by Pilot at 80x24 on the cgroup trees."""

from __future__ import annotations

import dataclasses

from helpers import tree
from monitor.config.schema import Config, GeneralConfig
from monitor.kernel import cgroups
from monitor.kernel.procfs import LocalFiles
from test_tui_cache import until
from test_tui_pilot import pilot
from tui.app import make_app
from tui.cgroups_view import CgroupsScreen


def app_on(tmp_path, name: str):
    config = Config(general=dataclasses.replace(GeneralConfig(), proc_root=str(tree(name))))
    return make_app(config, tmp_path / "h.db", standalone=False, timers=False, reclaim_lock=tmp_path / "lock")


@pilot
async def test_g_lists_the_groups_largest_first_and_escape_comes_back(tmp_path):
    app = app_on(tmp_path, "cgroup-systemd")
    listing = cgroups.list_groups(LocalFiles(tree("cgroup-systemd")))
    async with app.run_test(size=(80, 24)) as p:
        await p.press("g")
        await until(p, lambda: isinstance(app.screen, CgroupsScreen) and app.screen.listing is not None)
        await p.pause(0.1)
        screen = app.screen
        assert [g.path for g in screen.listing.groups] == [g.path for g in listing.groups]
        text = app.screen_text()
        assert listing.groups[0].name in text and f"{len(listing.groups)} groups" in text
        await p.press("escape")
        await until(p, lambda: not isinstance(app.screen, CgroupsScreen))


@pilot
async def test_on_cgroup_v1_the_view_says_why_in_one_line(tmp_path):
    app = app_on(tmp_path, "cgroup-v1")
    async with app.run_test(size=(120, 24)) as p:
        await p.press("g")
        await until(p, lambda: isinstance(app.screen, CgroupsScreen) and app.screen.listing is not None)
        await p.pause(0.1)
        words = " ".join(app.screen_text().split())  # the line wraps at the screen's width
        assert "per-group numbers need cgroup v2" in words and "inactive" not in words
