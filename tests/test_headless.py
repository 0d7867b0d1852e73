"""The core never pulls in the TUI stack (harlequin's habit): the daemon stays small."""

from __future__ import annotations

import subprocess
import sys

from helpers import REPO

CHECK = """
import sys
import monitor, monitor.cli.main, monitor.probes, monitor.config.schema, monitor.cli.report
{extra}
heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tui', 'textual', 'rich'))
print(','.join(heavy))
"""


def loaded_heavy_modules(extra: str = "") -> str:
    done = subprocess.run([sys.executable, "-c", CHECK.format(extra=extra)], capture_output=True, text=True,
                          cwd=REPO, check=True)
    return done.stdout.strip()


def test_importing_the_core_loads_no_tui():
    assert loaded_heavy_modules() == ""


def test_every_core_module_imports_without_tui():
    modules = sorted(p.relative_to(REPO).with_suffix("").as_posix().replace("/", ".")
                     for p in (REPO / "monitor").rglob("*.py") if p.name != "__main__.py")
    extra = "\n".join(f"import {m}" for m in modules)
    assert loaded_heavy_modules(extra) == ""


def test_running_status_loads_no_tui():
    extra = ("import contextlib, io\nfrom monitor.cli.main import main\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n    main(['status', '--cpu-window', '0'])")
    assert loaded_heavy_modules(extra) == ""
