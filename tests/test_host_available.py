"""The host's own available memory as a rule metric (issue 27, item 4): ``host_available`` below a size or a
share of the host's RAM, on samples recorded through the history (the host half measured by the fake
powershell.exe as a real subprocess), and the shipped ``windows-short`` rule."""

from __future__ import annotations

import dataclasses
import os

import pytest

from builders import GiB, MiB
from helpers import FAKEBIN
from monitor.config.schema import DEFAULT_RULES, Config, ConfigError, Rule, config_from_toml, to_toml
from monitor.history.store import Store
from monitor.policy.rules import PolicyState, decide, rule_status
from monitor.probes.interop import PowerShellProbe, find_windows_tool
from monitor.sample import GuestSample, HostSample, Sample
from monitor.units import Size

T0 = 1_000_000.0
WINDOWS_RAM = 34187145216  # the fake's VMTOTAL (tests/fakebin/_fake_windows.py): 31.8 GiB
SHORT = next(r for r in DEFAULT_RULES if r.name == "windows-short")


@pytest.fixture
def windows(monkeypatch, tmp_path):
    """The fake powershell.exe first on PATH; returns a function that measures one host sample with
    Windows' available memory set to ``available`` bytes."""
    monkeypatch.setenv("PATH", f"{FAKEBIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_WINDOWS_LOG", str(tmp_path / "spawns.log"))
    monkeypatch.setenv("FAKE_WINDOWS_MODE", "normal")

    def measure(available: int) -> HostSample:
        monkeypatch.setenv("FAKE_WINDOWS_AVAILABLE", str(available))
        probe = PowerShellProbe(find_windows_tool("powershell.exe"), timeout=10, first_timeout=30)
        try:
            return probe.sample(None)
        finally:
            probe.close()
    return measure


def guest(t: float, reclaimable: int) -> GuestSample:
    return GuestSample(time=t, total=16 * GiB, free=GiB, page_cache=reclaimable + 256 * MiB,
                       reclaimable=reclaimable, used=2 * GiB, cpu_busy_percent=50.0)


def recorded(tmp_path, hosts: list[HostSample | None], reclaimable: int = 4 * GiB, step: float = 10.0) -> list[Sample]:
    """One sample every ``step`` s with these host halves (None: no host figure at all, as the estimate
    on plain Linux), written to a real history and read back as the watcher reads its window."""
    samples = []
    for i, host in enumerate(hosts):
        t = T0 + i * step
        h = (dataclasses.replace(host, time=t) if host is not None
             else HostSample(t, 9 * GiB, "estimate", True, metric="estimate"))
        samples.append(Sample(guest(t, reclaimable), h))
    with Store(tmp_path / "history.db") as store:
        store.add_samples(samples)
        return store.recent_samples(3600, now=samples[-1].time)


def test_the_fake_measures_windows_available_memory(windows):
    host = windows(2 * GiB)
    assert (host.host_available, host.host_total, host.bytes) == (2 * GiB, WINDOWS_RAM, 7812345856)


def test_windows_short_fires_on_recorded_samples(tmp_path, windows):
    short = windows(2 * GiB)  # 2 GiB of 31.8 GiB: below 10 % (3.18 GiB)
    samples = recorded(tmp_path, [short] * 7)  # 60 s of it: the rule's `for`
    assert samples[-1].host.host_available == 2 * GiB  # the history keeps it
    decision, state = decide(samples, Config(), PolicyState(), samples[-1].time)
    assert (decision.action, decision.rule, decision.method) == ("prompt", "windows-short", "auto")
    assert decision.reason.startswith("host available memory 2.0 GiB below 3.2 GiB (10%) for 1m")
    assert not state.rule("windows-short").armed


def test_not_long_enough_or_not_short(tmp_path, windows):
    samples = recorded(tmp_path, [windows(2 * GiB)] * 6)  # 50 s
    status = rule_status(SHORT, samples, PolicyState(), samples[-1].time)
    assert not status.fires and "(needs 1m)" in status.why
    plenty = recorded(tmp_path / "b", [windows(12 * GiB)] * 7)
    status = rule_status(SHORT, plenty, PolicyState(), plenty[-1].time)
    assert not status.fires and status.why == "host available memory 12.0 GiB above 3.2 GiB (10%)"


@pytest.mark.parametrize("hosts", [
    "none",  # no sample says what Windows has available (plain Linux: the estimate)
    "last",  # the newest says nothing: no figure is no reason to act
])
def test_no_host_available_never_fires(tmp_path, windows, hosts):
    short = windows(2 * GiB)
    samples = recorded(tmp_path, [None] * 7 if hosts == "none" else [short] * 7 + [None])
    assert samples[-1].host.host_available is None
    decision, _ = decide(samples, Config(), PolicyState(), samples[-1].time)
    assert decision.rule != "windows-short" and decision.action == "none"
    status = rule_status(SHORT, samples, PolicyState(), samples[-1].time)
    assert not status.fires and status.why == "windows-short: host available memory unknown"


def test_an_unknown_sample_inside_the_run_neither_breaks_nor_extends_it(tmp_path, windows):
    short = windows(2 * GiB)
    samples = recorded(tmp_path, [short] * 3 + [None] + [short] * 3)
    status = rule_status(SHORT, samples, PolicyState(), samples[-1].time)
    assert status.fires and status.above_for == 60.0


def test_nothing_to_give_back_holds_it(tmp_path, windows):
    samples = recorded(tmp_path, [windows(2 * GiB)] * 7, reclaimable=512 * MiB)
    status = rule_status(SHORT, samples, PolicyState(), samples[-1].time)
    assert not status.fires
    assert status.why.endswith("but the guest holds only 512 MiB of reclaimable cache (acts above 1.0 GiB): "
                               "little to give back")


def test_it_rearms_only_once_windows_has_more_again(tmp_path, windows):
    samples = recorded(tmp_path, [windows(2 * GiB)] * 7)
    _, state = decide(samples, Config(), PolicyState(), samples[-1].time)
    rearm_at = int(WINDOWS_RAM * 0.10 * 1.25)  # 125 % of below
    for available, armed in ((rearm_at - 64 * MiB, False), (rearm_at + 64 * MiB, True)):
        later = recorded(tmp_path / str(available), [windows(available)])
        _, after = decide(later, Config(), state, later[-1].time)
        assert after.rule("windows-short").armed is armed


def test_a_size_below(tmp_path, windows):
    rule = Rule(name="w", metric="host_available", below=Size(bytes=4 * GiB, text="4GiB"), for_=0.0, action="notify")
    assert rule.above is None and rule.falls
    samples = recorded(tmp_path, [windows(3 * GiB)])
    assert rule_status(rule, samples, PolicyState(), samples[-1].time).fires


# ------------------------------------------------------------------ the config


def test_a_below_rule_reads_and_writes_back():
    text = ('[[rule]]\nname = "w"\nmetric = "host_available"\nbelow = "8%"\nrearm_above = "12%"\nfor = "30s"\n'
            'action = "reclaim"\nif_reclaimable_above = "2GiB"\n')
    config = config_from_toml(text, "c.toml")
    rule = config.rule[0]
    assert (rule.above, rule.below, rule.rearm_above) == (None, Size(percent=8.0, text="8%"), Size(percent=12.0, text="12%"))
    assert rule.if_reclaimable_above == Size(bytes=2 * GiB, text="2GiB")
    assert "above" not in to_toml(config).split("[[rule]]")[1].split("[[")[0].replace("rearm_above", "").replace(
        "if_reclaimable_above", "")
    assert config_from_toml(to_toml(config), "again.toml").rule == config.rule


def test_the_shipped_rule_reads_back():
    config = config_from_toml(to_toml(Config()), "shown.toml")
    assert config.rule == DEFAULT_RULES and SHORT in config.rule


@pytest.mark.parametrize("body, expected", [
    ('metric = "host_available"\nabove = "10%"',
     'rule[0].above: got "10%"; expected below for metric = "host_available"'),
    ('metric = "host_available"',
     'rule[0].below: missing; expected a size or a percentage of the host\'s RAM for metric = "host_available"'),
    ('metric = "host_available"\nbelow = "10%"\nabove = "20%"',
     'rule[0].below: got "10%"; expected either above or below in one rule, not both (above is 20%)'),
    ('metric = "host_available"\nbelow = "10%"\nrearm_below = "5%"',
     'rule[0].rearm_below: got "5%"; expected rearm_above in a below rule'),
    ('metric = "host_available"\nbelow = "10%"\nrearm_above = "5%"',
     'rule[0].rearm_above: got "5%"; expected at least below (10%)'),
    ('metric = "host_available"\nbelow = "10%"\nrearm_above = "4GiB"',
     'rule[0].rearm_above: got "4GiB"; expected the same kind as below (10%): both sizes or both percentages'),
    ('above = "2GiB"\nrearm_above = "3GiB"',
     'rule[0].rearm_above: got "3GiB"; expected rearm_below in an above rule'),
    ('metric = "host_available"\nbelow = "lots"', 'rule[0].below: got "lots"; expected a size'),
    ('metric = "host_available"\nbelow = "10%"\nif_reclaimable_above = "x"', 'rule[0].if_reclaimable_above: got "x"'),
])
def test_bad_below_rules_are_one_line_errors(body, expected):
    with pytest.raises(ConfigError) as err:
        config_from_toml(f"[[rule]]\n{body}\n", "c.toml")
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"c.toml: {expected}"), message


# ------------------------------------------------------------------ the dashboard's data


def test_the_chart_draws_windows_available_memory_and_the_shipped_rule_against_it(tmp_path, windows):
    from tui import data
    from tui.widgets import legend

    samples = recorded(tmp_path, [windows(2 * GiB)] * 7)
    with Store(tmp_path / "history.db", readonly=True) as store:
        _, rows = store.series(T0 - 10, T0 + 70, "samples")
    assert rows[-1]["host_available"] == 2 * GiB
    limits = data.thresholds(Config(), rows[-1])
    assert ("windows-short", "host_available", int(WINDOWS_RAM * 0.10)) in [(t.label, t.metric, t.bytes) for t in limits]
    chart = data.chart_data(rows, "samples", T0 - 10, samples[-1].time, columns=60, limits=limits)
    assert [v for run in chart.available for _, v in run] and all(v == 2 * GiB for run in chart.available for _, v in run)
    assert "━ host available" in legend(chart).plain
    card = next(c for c in data.build_cards(rows) if c.key == "host")
    assert card.detail == "measured (interop); host has 2.0G (6%) available"
    assert card.narrower[-1] == "2.0G available"


def test_without_a_figure_no_line_no_threshold_and_the_card_as_before(tmp_path):
    from tui import data

    recorded(tmp_path, [None] * 3)
    with Store(tmp_path / "history.db", readonly=True) as store:
        _, rows = store.series(T0 - 10, T0 + 30, "samples")
    rows = [{**r, "host_total": WINDOWS_RAM} for r in rows]  # even with the host's RAM known
    assert "windows-short" not in [t.label for t in data.thresholds(Config(), rows[-1])]
    assert data.chart_data(rows, "samples", T0 - 10, T0 + 30, columns=60).available == []
    card = next(c for c in data.build_cards(rows) if c.key == "host")
    assert card.detail == "estimated" and card.narrower == ()


def test_crossings_of_a_below_rule_say_fell_below_and_rose_above(tmp_path, windows):
    """The recorder's crossing events for a below rule, with its own hysteresis (125 % of below)."""
    from monitor.config.schema import GeneralConfig
    from monitor.notify import Notifier
    from monitor.watch.wiring import Wiring
    from helpers import tree

    config = Config(general=GeneralConfig(proc_root=str(tree("linux-vm"))), rule=(SHORT,))
    recorder = Wiring(config, tmp_path / "h.db", environ={}, reclaim_lock=tmp_path / "l").recorder(Notifier([]))
    limit = int(WINDOWS_RAM * 0.10)
    try:
        for i, available in enumerate((12 * GiB, 2 * GiB, limit + 64 * MiB, int(limit * 1.3))):
            host = dataclasses.replace(windows(available), time=T0 + i)
            recorder._record_crossings(Sample(guest(T0 + i, 4 * GiB), host))
        words = [e.message for e in recorder.store.events(kinds=["crossing"])]
    finally:
        recorder.probes.close()
        recorder.store.close()
    assert len(words) == 2, words  # just above the threshold is no crossing: it re-arms at 125 %
    assert words[0].startswith("host available memory 2.0 GiB fell below 3.2 GiB (windows-short)")
    assert words[1].startswith("host available memory 4.1 GiB rose above 4.0 GiB (where it re-arms)")
