"""`vmmemctl tui` in a real terminal (tmux), driven as a person drives it: keys in, screen out.

The dashboard runs as `python -m monitor tui` in a detached tmux session of
100x30 on a tmux server of the test's own (-L), records standalone into a
fresh history, and reads the fake kernel tree (tests/fakekernel.py), so the
reclaim it runs is real code writing real files, without dropping this
machine's caches.
"""

from __future__ import annotations

import shlex
import shutil
import sys
import time

import pytest

from fakekernel import FakeKernel
from helpers import REPO, Tmux

GiB = 1024**3
pytestmark = [pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"), pytest.mark.slow]


def card_bytes(screen: str, label: str) -> float:
    """The number under a card's label, in GiB ("4.0 GiB ↑ +1.2G" -> 4.0)."""
    lines = screen.splitlines()
    row = next(i for i, line in enumerate(lines) if label in line)
    value, unit = lines[row + 1][lines[row].index(label):].split()[:2]
    return float(value) / (1024 if unit == "MiB" else 1)


@pytest.fixture
def tmux(tmp_path):
    t = Tmux(tmp_path)
    yield t
    t("kill-server")


def test_tui_in_tmux_shows_numbers_reclaims_and_quits(tmp_path, tmux):
    kernel = FakeKernel(tmp_path / "tree", cached=4 * GiB, hot=GiB)
    try:
        config = tmp_path / "config.toml"
        config.write_text('[reclaim]\nsettle = "0s"\nrefault_window = "0s"\n')  # gradual's steps listen 0.25 s
        home = tmp_path / "home"
        env = {"HOME": home, "XDG_CONFIG_HOME": home / ".config", "XDG_DATA_HOME": home / ".local/share",
               "XDG_STATE_HOME": home / ".local/state", "XDG_CACHE_HOME": home / ".cache", "TERM": "xterm-256color",
               "PYTHONPATH": REPO, "VMMEMCTL_CONFIG": ""}
        exit_file = tmp_path / "exit"
        command = " ".join(shlex.quote(str(a)) for a in (
            sys.executable, "-m", "monitor", "tui", "--config", config, "--db", tmp_path / "h.db",
            "--proc-root", kernel.proc, "--interval", "1s"))
        # Textual draws on stderr, so stderr stays the terminal; test_tui_pilot checks nothing else writes there
        shell = f"cd {shlex.quote(str(REPO))} && {command}; echo $? > {exit_file}"
        exports = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in env.items())
        # -u: a COLUMNS/LINES inherited from the test process (a plugin sets them) beats the terminal's real size
        tmux("new-session", "-d", "-s", "tui", "-x", "100", "-y", "30",
             f"env -u COLUMNS -u LINES {exports} sh -c {shlex.quote(shell)}")

        screen = tmux.wait_for("host footprint", "page cache", "GiB", "standalone: recording every 1s", "r Reclaim")
        assert card_bytes(screen, "page cache") >= 3.9  # the fake kernel's 4 GiB, as a person reads it

        tmux.keys("r")
        tmux.wait_for("Reclaim now", "frees about")
        tmux.keys("Enter")
        # in the event list, and marked on the chart (the legend names the mark); the chart may
        # redraw a refresh after the event list, so wait for both
        screen = tmux.wait_for("reclaim ", "freed", "│ reclaim", timeout=60)
        deadline = time.monotonic() + 10
        while card_bytes(screen, "page cache") > 2.0:  # the next sample: down to the hot set (1 GiB)
            assert time.monotonic() < deadline, screen
            time.sleep(0.2)
            screen = tmux.screen()
        assert kernel.requests, "memory.reclaim was never written"

        tmux.keys("q")
        deadline = time.monotonic() + 15
        while not exit_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert exit_file.read_text().strip() == "0", tmux.screen()
    finally:
        kernel.close()
