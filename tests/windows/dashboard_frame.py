"""One headless frame of the dashboard, as tests/test_windows_smoke.py runs it under the Windows CPython.

Usage: python dashboard_frame.py REPO PROC_ROOT DB
Records standalone (the dashboard's own recorder samples, as `vmmemctl tui` does with no watcher) into
DB over a history made by tui.demo, draws one frame in Textual's headless driver (App.run_test), and
prints what the frame shows and the latest sample recorded as JSON on stdout.
"""

import asyncio
import json
import sys
import time

repo, proc_root, db = sys.argv[1:4]
sys.path.insert(0, repo)

from monitor.config.schema import Config, GeneralConfig  # noqa: E402
from monitor.history.store import Store  # noqa: E402
from tui.app import make_app  # noqa: E402
from tui.demo import write_history  # noqa: E402
from tui.widgets import TrendChart  # noqa: E402


async def frame() -> dict:
    now = time.time() // 60 * 60
    write_history(db, now, days=1, step=60.0)
    app = make_app(Config(general=GeneralConfig(proc_root=proc_root)), db, standalone=True, timers=False)
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(3):
            await pilot.pause()
            await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        text = " ".join(app.screen_text().split())
        chart_empty = app.query_one(TrendChart).shown.empty
    with Store(db) as store:
        latest = store.latest_sample()  # the dashboard's own recorder's sample (the demo's are older)
    return {"text": text, "chart_empty": bool(chart_empty), "latest_t": latest.time if latest else None,
            "drawn_at": now, "latest_host_source": latest.host.source if latest else None}


print(json.dumps(asyncio.run(frame())))
