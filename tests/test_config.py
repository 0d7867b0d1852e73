"""Config: defaults, the example file, the search order, and one clear line for every mistake."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from helpers import REPO, run_cli
from monitor.history.places import own_places
from monitor.cli.main import main
from monitor.config.schema import Config, ConfigError, find_config_path, load_config, to_toml
from monitor.units import Size


def test_example_parses_and_equals_defaults():
    assert load_config(REPO / "config.example.toml") == Config()


def test_example_documents_every_key():
    text = (REPO / "config.example.toml").read_text()
    shown = to_toml(Config())
    for line in shown.splitlines():
        if "=" in line:
            key = line.split("=")[0].strip()
            assert f"\n{key} = " in text, f"config.example.toml lacks {key}"


def test_empty_file_is_all_defaults(tmp_path):
    path = tmp_path / "empty.toml"
    path.write_text("")
    assert load_config(path) == Config()


def test_show_round_trips(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[sampling]\ninterval = "500ms"\n[[schedule]]\ncron = "0 3 * * 0"\nmethod = "full"\n'
                    '[[rule]]\nmetric = "host"\nabove = "6GiB"\nrearm_below = "5GiB"\naction = "prompt"\n')
    config = load_config(path)
    again = tmp_path / "again.toml"
    again.write_text(to_toml(config))
    assert load_config(again) == config
    assert config.sampling.interval == 0.5
    assert config.rule[0].above == Size(bytes=6 * 1024**3, text="6GiB")


def test_search_order(tmp_path):
    explicit, from_env = tmp_path / "a.toml", tmp_path / "b.toml"
    assert find_config_path(str(explicit), {"VMMEMCTL_CONFIG": str(from_env)}) == explicit
    assert find_config_path(None, {"VMMEMCTL_CONFIG": str(from_env)}) == from_env


def test_user_config_dir_is_found(isolated_home):
    user_config = Path(isolated_home["XDG_CONFIG_HOME"]) / "vmmemctl" / "config.toml"
    assert find_config_path(None, {}) is None
    user_config.parent.mkdir(parents=True)
    user_config.write_text("[sampling]\ninterval = '7s'\n")
    assert find_config_path(None, {}) == user_config
    assert load_config(find_config_path(None, {})).sampling.interval == 7


BAD_CONFIGS = [
    # (file content, what the one line must say)
    ("[sampling\ninterval = 2", "invalid TOML"),
    ("[sampling]\ninterval = true", "sampling.interval: got True; expected a duration"),
    ("[sampling]\nintervall = '2s'", "sampling.intervall: unknown key; did you mean 'interval'?"),
    ("[samplng]\ninterval = '2s'", "samplng: unknown key; did you mean 'sampling'?"),
    ("[reclaim]\ngradual_floor = '-1GiB'", "reclaim.gradual_floor: got \"-1GiB\"; expected a size that is not negative"),
    ("[reclaim]\ngradual_floor = '4XiB'", "reclaim.gradual_floor: got \"4XiB\"; expected a size such as"),
    ("[reclaim]\ngradual_floor = '140%'", "expected a percentage from 0% to 100%"),
    ("[reclaim]\ngradual_step_min = '10%'", "reclaim.gradual_step_min: got \"10%\"; expected an absolute size"),
    ("[reclaim]\nmethod = 'gentle'", "reclaim.method: got \"gentle\"; expected one of"),
    ("[reclaim]\nmethod = 'gradul'", "(did you mean 'gradual'?)"),
    ("[idle]\ncpu_busy_max = 150", "idle.cpu_busy_max: got 150; expected a percentage from 0 to 100"),
    ("[idle]\ncpu_busy_max = 'lots'", "idle.cpu_busy_max: got \"lots\""),
    ("[sampling]\ninterval = '2 fortnights'", "sampling.interval: got \"2 fortnights\"; expected a duration"),
    ("[sampling]\ninterval = '-2s'", "expected a duration that is not negative"),
    ("[sampling]\ninterval = '10ms'", "sampling.interval: got 0.01s; expected at least 0.1s"),
    ("sampling = 3", "sampling: got 3; expected a table"),
    ("[[rule]]\nmetric = 'cache'", "rule[0].metric: got \"cache\"; expected one of"),
    ("[[rule]]\nabove = '2GiB'\n[[rule]]\nabove = '1GiB'\ntreshold = 1", "rule[1].treshold: unknown key"),
    ("[[rule]]\nabove = '2GiB'\nrearm_below = '3GiB'", "rule[0].rearm_below: got \"3GiB\"; expected at most above"),
    ("[[rule]]\nabove = '20%'\nrearm_below = '1GiB'", "expected the same kind as above"),
    ("[rule]\nabove = '2GiB'", "rule: got a table; expected an array of tables"),
    ("[[schedule]]\ncron = '0 3 * *'", "schedule[0].cron: got \"0 3 * *\"; expected a cron expression"),
    ("[[schedule]]\ncron = '61 3 * * *'", "expected minute values from 0 to 59"),
    ("[[schedule]]\ncron = '0 3 * * 8'", "expected day of week values from 0 to 7"),
    ("[host]\nsource = 'process'", "host.process: got \"\"; expected a process name or PID"),
    ("[guest]\nexec = 'wsl.exe'", "guest.exec: got \"wsl.exe\"; expected a list"),
    ("[guest]\nexec = ['wsl.exe', 3]", "guest.exec[1]: got 3; expected a string"),
    ("[metrics]\nlisten = 'localhost'", "metrics.listen: got \"localhost\"; expected HOST:PORT"),
    ("[notify]\nbackends = ['pigeon']", "notify.backends[0]: got \"pigeon\"; expected one of"),
    ("[general]\nlog_level = 'loud'", "general.log_level"),
]


@pytest.mark.parametrize("content, message", BAD_CONFIGS)
def test_bad_config_is_one_line_exit_2(tmp_path, capsys, content, message):
    path = tmp_path / "bad.toml"
    path.write_text(content)
    code = main(["config", "check", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1, err
    assert str(path) in err and message in err, err


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    garbage = tmp_path / "garbage.toml"
    garbage.write_bytes(os.urandom(64) + b"\xff\xfe\x00")
    folder = tmp_path / "folder.toml"
    folder.mkdir()
    return {
        "binary garbage": (garbage, "not UTF-8 text"),
        "a directory": (folder, "is a directory"),
        "a missing file": (tmp_path / "nope.toml", "no such file"),
    }


@pytest.mark.parametrize("case", ["binary garbage", "a directory", "a missing file"])
def test_unreadable_config_files(tmp_path, capsys, case):
    path, message = _bad_files(tmp_path)[case]
    code = main(["status", "--config", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err and str(path) in err


def test_error_is_one_line_without_traceback_in_a_real_process(tmp_path):
    """The same as above through a real `python -m monitor`, for each kind of command."""
    bad = tmp_path / "bad.toml"
    bad.write_text("[reclaim]\nmethod = 'gentle'\n")
    for args in (["status", "--config", str(bad)], ["config", "show", "--config", str(bad)],
                 ["config", "check", str(bad)]):
        result = run_cli(*args)
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
        assert result.stdout == ""


def test_env_var_names_the_config(tmp_path):
    bad = tmp_path / "env.toml"
    bad.write_text("[sampling]\ninterval = 'x'\n")
    result = run_cli("config", "show", env={"VMMEMCTL_CONFIG": str(bad)})
    assert result.returncode == 2 and str(bad) in result.stderr


def test_config_show_prints_the_effective_config(tmp_path, isolated_home):
    path = tmp_path / "c.toml"
    path.write_text("[sampling]\nhost_interval = '30s'\n")
    result = run_cli("config", "show", "--config", str(path))
    assert result.returncode == 0
    assert 'host_interval = "30s"' in result.stdout and str(path) in result.stdout
    shown = tmp_path / "shown.toml"
    shown.write_text(result.stdout)
    # the same config, with the history path it leaves empty written out: this process's own places
    # (the system's for root, the user's under this HOME otherwise), as the code detects them
    own = own_places()
    default_db = str(own.db)
    assert f"# the default: the {own.scope}'s history" in result.stdout
    given = load_config(path)
    assert load_config(shown) == dataclasses.replace(given, path=shown,
                                                     general=dataclasses.replace(given.general, db=default_db))


def test_config_error_type_carries_the_line():
    with pytest.raises(ConfigError) as err:
        load_config("/definitely/not/here.toml")
    assert "no such file" in str(err.value)


def test_config_check_says_every_error_in_the_file_one_line_each(tmp_path):
    """Two typos and two bad values: all four, in the file's order, each its own line (was: only one)."""
    path = tmp_path / "config.toml"
    path.write_text('[policy]\nauto_reclaimm = true\n[sampling]\nintervall = "2s"\n'
                    '[[rule]]\nname = "x"\nabove = "10 GiBB"\n[[rule]]\nname = "y"\nabove = "1G"\naction = "nottify"\n')
    result = run_cli("config", "check", "--config", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"vmmemctl: config error: {path}: policy.auto_reclaimm: unknown key; did you mean 'auto_reclaim'?",
        f"vmmemctl: config error: {path}: sampling.intervall: unknown key; did you mean 'interval'?",
        f'vmmemctl: config error: {path}: rule[0].above: got "10 GiBB"; expected a size such as "512MiB", "4GiB", '
        '"1.5G", a byte count, or a percentage "40%"',
        f'vmmemctl: config error: {path}: rule[1].action: got "nottify"; expected one of "notify", "prompt", '
        '"reclaim" (did you mean \'notify\'?)',
    ]


def test_a_record_with_a_bad_field_is_not_also_blamed_by_its_cross_checks(tmp_path):
    """rearm_below is checked against above; with above wrong, only above is said."""
    path = tmp_path / "config.toml"
    path.write_text('[[rule]]\nname = "x"\nabove = "lots"\nrearm_below = "1GiB"\n[[rule]]\nname = "y"\n'
                    'above = "1GiB"\nrearm_below = "2GiB"\n')
    with pytest.raises(ConfigError) as bad:
        load_config(path)
    lines = str(bad.value).splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{path}: rule[0].above: got \"lots\"")
    assert lines[1].startswith(f"{path}: rule[1].rearm_below: got \"2GiB\"")
