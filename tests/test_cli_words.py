"""What the CLI says, word for word, where a newcomer tripped (issue 18): rules that cannot act,
the history path actually used, advice that fits what was typed, reasons said once."""

from __future__ import annotations

import json

from helpers import run_cli

from monitor.history.places import own_places


def test_config_check_shows_a_reclaim_rule_as_inactive_while_auto_reclaim_is_off(tmp_path):
    off = run_cli("config", "check")
    assert off.returncode == 0
    assert "reclaim-idle-cache: would reclaim (auto-reclaim is off) when reclaimable > 512MiB" in off.stdout
    assert "cache-notify: notify when page_cache > 30%" in off.stdout
    config = tmp_path / "on.toml"
    config.write_text("[policy]\nauto_reclaim = true\n")
    on = run_cli("config", "check", str(config))
    assert "reclaim-idle-cache: reclaim when reclaimable > 512MiB for 30s" in on.stdout and "auto-reclaim is off" not in on.stdout


def test_config_show_prints_the_history_path_used():

    shown = run_cli("config", "show").stdout
    own = own_places()
    assert f'db = {json.dumps(str(own.db))}  # the default: the {own.scope}\'s history' in shown
    assert 'db = ""' not in shown


def test_config_show_says_which_config_the_system_service_reads():
    """Issue 28: only the wsl.conf alternative named /etc/vmmemctl/config.toml."""
    shown = run_cli("config", "show").stdout.splitlines()
    assert shown[0] == "# effective config (defaults: no config file)"
    assert shown[1].startswith("# (the system service, `sudo vmmemctl service install`, reads /etc/vmmemctl/config.toml")


def test_config_show_with_db_says_where_it_came_from(tmp_path):
    shown = run_cli("config", "show", "--db", str(tmp_path / "x.db")).stdout
    assert f'db = {json.dumps(str(tmp_path / "x.db"))}  # from --db' in shown


def test_history_of_a_missing_db_does_not_advise_passing_db(tmp_path):
    missing = tmp_path / "missing.db"
    result = run_cli("history", "--db", str(missing))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert f"no history at {missing} (--db)" in result.stderr and "or pass --db" not in result.stderr
    assert not missing.exists()
    default = run_cli("history")
    assert default.returncode == 2 and "or pass --db PATH" in default.stderr


def test_notify_test_without_a_backend_gives_its_reasons_once(tmp_path):
    result = run_cli("notify", "--test", env={"PATH": "/usr/bin:/bin", "DBUS_SESSION_BUS_ADDRESS": "",
                                              "XDG_RUNTIME_DIR": str(tmp_path)})
    assert result.returncode == 1
    assert "no backend could deliver the test notification" in result.stdout and "no session bus" in result.stdout
    assert result.stderr == ""
