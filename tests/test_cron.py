"""cron(5) semantics on top of APScheduler 3, whose from_crontab counts 0 as Monday."""

from __future__ import annotations

import datetime as dt

import pytest
from apscheduler.triggers.cron import CronTrigger

from helpers import run_cli
from monitor.config.cron import CronError, parse_cron
from monitor.watch.scheduling import next_runs

UTC = dt.timezone.utc
START = dt.datetime(2026, 11, 26, 12, 0, tzinfo=UTC)  # a Thursday


def weekdays(text: str, n: int = 7) -> list[str]:
    return [t.strftime("%a") for t in next_runs(text, n, START)]


@pytest.mark.parametrize("text, days", [
    ("0 3 * * 0", ["Sun"] * 3),
    ("0 3 * * 7", ["Sun"] * 3),
    ("0 3 * * 1", ["Mon"] * 3),
    ("0 3 * * 6", ["Sat"] * 3),
    ("0 3 * * sun", ["Sun"] * 3),
    ("0 3 * * 0,7", ["Sun"] * 3),
])
def test_day_of_week_is_cron5_not_apscheduler(text, days):
    assert weekdays(text, 3) == days


def test_ranges_and_steps_over_sunday():
    assert weekdays("0 3 * * 1-5") == ["Fri", "Mon", "Tue", "Wed", "Thu", "Fri", "Mon"]
    assert weekdays("0 3 * * 5-7") == ["Fri", "Sat", "Sun", "Fri", "Sat", "Sun", "Fri"]
    assert weekdays("0 3 * * 0-2") == ["Sun", "Mon", "Tue", "Sun", "Mon", "Tue", "Sun"]
    assert weekdays("0 3 * * */2") == ["Sat", "Sun", "Tue", "Thu", "Sat", "Sun", "Tue"]  # 0,2,4,6


def test_the_apscheduler_pitfall_is_real():
    """What we avoid: from_crontab('... 0') fires on Mondays."""
    trigger = CronTrigger.from_crontab("0 3 * * 0", timezone=UTC)
    assert trigger.get_next_fire_time(None, START).strftime("%a") == "Mon"


def test_day_of_month_or_day_of_week():
    """cron(5): when both day fields are restricted, either one matching is enough."""
    runs = next_runs("0 3 1 * 1", 4, START)
    assert [(t.day, t.strftime("%a")) for t in runs] == [(30, "Mon"), (1, "Tue"), (7, "Mon"), (14, "Mon")]


def test_times_and_macros():
    assert [t.isoformat() for t in next_runs("*/20 9-10 * * *", 4, START)] == [
        "2026-11-27T09:00:00+00:00", "2026-11-27T09:20:00+00:00", "2026-11-27T09:40:00+00:00",
        "2026-11-27T10:00:00+00:00"]
    assert next_runs("@daily", 1, START)[0].isoformat() == "2026-11-27T00:00:00+00:00"
    assert next_runs("@weekly", 1, START)[0].strftime("%a %H:%M") == "Sun 00:00"
    assert next_runs("30 2 * feb *", 1, START)[0].isoformat() == "2027-02-01T02:30:00+00:00"


@pytest.mark.parametrize("bad, words", [
    ("0 3 * *", "got 4 field(s)"), ("60 3 * * *", "minute values from 0 to 59"),
    ("0 24 * * *", "hour values"), ("0 3 0 * *", "day of month values from 1 to 31"),
    ("0 3 * 13 *", "month values"), ("0 3 * * 8", "day of week values from 0 to 7"),
    ("0 3 * * mon-xyz", "a number in the day of week field"), ("*/0 * * * *", "a step of at least 1"),
    ("5-1 * * * *", "a minute range that goes upward"), ("", "a cron expression"), ("@often", "got 1 field"),
])
def test_bad_cron(bad, words):
    with pytest.raises(CronError, match=words.replace("(", r"\(").replace(")", r"\)")):
        parse_cron(bad)


def test_config_check_lists_the_next_three_runs(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[[schedule]]\nname = "weekly"\ncron = "30 3 * * 0"\nmethod = "full"\n'
                    '[[schedule]]\ncron = "0 12 * * 1-5"\n')
    result = run_cli("config", "check", str(path), env={"TZ": "UTC"})
    assert result.returncode == 0, result.stderr
    weekly = next(line for line in result.stdout.splitlines() if "weekly" in line)
    stamps = weekly.split("next ")[1].split(", ")
    assert len(stamps) == 3
    for stamp in stamps:
        when = dt.datetime.fromisoformat(stamp)
        assert when.strftime("%a %H:%M") == "Sun 03:30" and when.utcoffset() is not None
    assert "schedule[1] '0 12 * * 1-5' (auto): next" in result.stdout


BERLIN = "Europe/Berlin"


@pytest.mark.parametrize("start, expected", [
    # spring forward (2026-03-29 02:00 -> 03:00): 04:00 is 04:00 local on both sides of the change
    ("2026-03-28T00:00", ["2026-03-28T04:00:00+01:00", "2026-03-29T04:00:00+02:00", "2026-03-30T04:00:00+02:00"]),
    # fall back (2026-10-25 03:00 -> 02:00)
    ("2026-10-24T00:00", ["2026-10-24T04:00:00+02:00", "2026-10-25T04:00:00+01:00", "2026-10-26T04:00:00+01:00"]),
])
def test_next_runs_follow_daylight_saving(start, expected):
    """Issue 28: config check and the dashboard used today's fixed offset, so after the change they showed
    05:00 (or 03:00) for a run the watcher makes at 04:00 local."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(BERLIN)
    runs = next_runs("0 4 * * *", 3, dt.datetime.fromisoformat(start).replace(tzinfo=zone), zone)
    assert [r.isoformat() for r in runs] == expected


def test_the_dashboards_next_schedule_is_in_the_zone_not_a_fixed_offset():
    from zoneinfo import ZoneInfo

    from monitor.config.schema import Config, Schedule
    from tui.data import next_schedule

    zone = ZoneInfo(BERLIN)
    config = Config(schedule=(Schedule(cron="0 4 * * *", name="night", method="pagecache"),))
    before_the_change = dt.datetime(2026, 3, 29, 0, 30, tzinfo=zone).timestamp()
    sched, when = next_schedule(config, before_the_change, zone)
    assert when.isoformat() == "2026-03-29T04:00:00+02:00"  # (a fixed +01:00 said 05:00 of the new offset)


def test_config_check_in_a_zone_with_daylight_saving_prints_each_run_in_its_own_offset(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[[schedule]]\nname = "night"\ncron = "0 4 * * *"\n')
    result = run_cli("config", "check", str(path), env={"TZ": BERLIN})
    assert result.returncode == 0, result.stderr
    stamps = next(line for line in result.stdout.splitlines() if "night" in line).split("next ")[1].split(", ")
    assert all(dt.datetime.fromisoformat(s).strftime("%H:%M") == "04:00" for s in stamps), stamps
