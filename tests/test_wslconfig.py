"""Reading WSL's own autoMemoryReclaim from .wslconfig, and showing it in status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import run_cli, tree
from monitor.wslconfig import find_wslconfig, read_wsl_reclaim


@pytest.mark.parametrize("text, mode, words", [
    ("[experimental]\nautoMemoryReclaim=gradual\n", "gradual", ""),
    ("[Experimental]\nAUTOMEMORYRECLAIM = DropCache ; comment\n", "dropcache", ""),
    ("\ufeff[wsl2]\nmemory=8GB\n[experimental]\nautoMemoryReclaim = \"disabled\"\n", "disabled", ""),
    ("[wsl2]\nmemory=8GB\n", "dropcache", "does not set it; WSL's default"),
    ("[experimental]\nautoMemoryReclaim=sometimes\n", "dropcache", "is not a mode WSL knows"),
    ("[wsl2]\nautoMemoryReclaim=gradual\n", "dropcache", "does not set it"),  # only [experimental] counts
    ("not an ini file at all\n\x00\x01", None, "unreadable"),
])
def test_read_wsl_reclaim(tmp_path, text, mode, words):
    path = tmp_path / ".wslconfig"
    path.write_text(text, encoding="utf-8")
    found = read_wsl_reclaim(path)
    assert found.mode == mode
    assert words in found.source


def test_missing_wslconfig():
    found = read_wsl_reclaim(None)
    assert found.mode is None and "not found" in found.source and "dropcache" in found.source


def test_find_wslconfig_from_inside_wsl(tmp_path):
    users = tmp_path / "Users"
    (users / "alice").mkdir(parents=True)
    (users / "Public").mkdir()
    assert find_wslconfig("", {}, users) is None
    (users / "alice" / ".wslconfig").write_text("")
    assert find_wslconfig("", {"USER": "bob"}, users) == users / "alice" / ".wslconfig"  # the only one
    (users / "bob").mkdir()
    (users / "bob" / ".wslconfig").write_text("")
    assert find_wslconfig("", {"USER": "bob"}, users) == users / "bob" / ".wslconfig"  # same name as the Linux user
    assert find_wslconfig("", {"USER": "carol"}, users) is None  # ambiguous: say unknown rather than guess
    assert find_wslconfig("/x/.wslconfig", {}, users) == Path("/x/.wslconfig")
    assert find_wslconfig("", {"USERPROFILE": "C:\\Users\\Me"}, users, windows=True) == Path("C:\\Users\\Me/.wslconfig")


def test_status_in_wsl_shows_wsl_reclaim_mode(tmp_path):
    wslconfig = tmp_path / ".wslconfig"
    wslconfig.write_text("[experimental]\nautoMemoryReclaim=gradual\n")
    config = tmp_path / "c.toml"
    config.write_text(f'[policy]\nwslconfig = "{wslconfig}"\n[host]\nsource = "estimate"\n')
    result = run_cli("status", "--json", "--config", str(config), "--proc-root", str(tree("wsl2-ubuntu")),
                     "--cpu-window", "0", "--db", str(tmp_path / "none.db"))
    data = json.loads(result.stdout)
    assert data["wsl_auto_memory_reclaim"] == {"mode": "gradual", "source": str(wslconfig)}
    assert data["decision"]["action"] in ("none", "notify", "prompt")
    text = run_cli("status", "--config", str(config), "--proc-root", str(tree("wsl2-ubuntu")), "--cpu-window", "0",
                   "--db", str(tmp_path / "none.db")).stdout
    assert f"WSL autoMemoryReclaim: gradual ({wslconfig})" in text
    assert not (tmp_path / "none.db").exists()  # status reads history, never creates it


def test_status_outside_wsl_has_no_wsl_line(tmp_path):
    data = json.loads(run_cli("status", "--json", "--cpu-window", "0", "--db", str(tmp_path / "x.db")).stdout)
    assert data["wsl_auto_memory_reclaim"] is None
    assert data["decision"]["action"] == "none" and data["decision"]["reason"]
