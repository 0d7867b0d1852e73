"""monitor.kernel.dirs: the XDG rules in the standard library, equal to platformdirs' on Linux (the watcher
leaves platformdirs unimported: 1.2 MiB of its RSS)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers import REPO
from monitor.kernel import dirs

platformdirs = pytest.importorskip("platformdirs")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the XDG rules are Linux's")


@pytest.mark.parametrize("setting", ["absolute", "relative", "unset"])
def test_user_dirs_are_platformdirs_on_linux(setting, tmp_path, monkeypatch):
    for kind in ("CONFIG", "DATA", "STATE"):
        if setting == "absolute":
            monkeypatch.setenv(f"XDG_{kind}_HOME", str(tmp_path / kind.lower()))
        elif setting == "relative":  # the spec says to ignore it, and platformdirs does
            monkeypatch.setenv(f"XDG_{kind}_HOME", f"relative/{kind.lower()}")
        else:
            monkeypatch.delenv(f"XDG_{kind}_HOME", raising=False)
    for kind in ("config", "data", "state", "log"):
        assert str(dirs.user_dir(kind)) == getattr(platformdirs, f"user_{kind}_dir")("vmmemctl"), (setting, kind)


def test_the_runtime_dir_is_platformdirs_when_xdg_runtime_dir_is_right(tmp_path, monkeypatch):
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert str(dirs.user_runtime_dir()) == platformdirs.user_runtime_dir("vmmemctl") == str(runtime / "vmmemctl")
    runtime.chmod(0o755)  # not what the spec asks: platformdirs' own fallback, both ways
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert str(dirs.user_runtime_dir()) == platformdirs.user_runtime_dir("vmmemctl")


def test_the_root_watchers_path_does_not_import_platformdirs():
    code = ("import sys, monitor.cli.main, monitor.watch.daemon, monitor.watch.wiring, monitor.history.places\n"
            "from monitor.config.schema import find_config_path\n"
            "from monitor.history.places import system_places, user_places\n"
            "find_config_path(None); system_places(); monitor.watch.daemon.default_log_file()\n"
            "print('platformdirs' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True,
                          env={**os.environ, "XDG_RUNTIME_DIR": ""})
    assert done.stdout.strip() == "False", done.stderr
