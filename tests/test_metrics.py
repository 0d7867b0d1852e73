"""The Prometheus endpoint, scraped for real over HTTP from an ephemeral port.

Samples come from this machine's kernel (GuestProbe on /proc); a reclaim's
before/after are real samples around evicting a file of our own from the
page cache (posix_fadvise DONTNEED, no root needed).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from monitor.errors import UserError
from monitor.watch.metrics import GUEST_BYTES, MISSING, Metrics, MetricsUnavailable
from monitor.probes.guest import MIN_CPU_INTERVAL, GuestProbe
from monitor.kernel.procfs import LocalFiles
from monitor.reclaim.reclaimer import ReclaimResult
from monitor.sample import Environment, HostSample, Sample

parser = pytest.importorskip("prometheus_client.parser")
openmetrics_parser = pytest.importorskip("prometheus_client.openmetrics.parser")

REPO = Path(__file__).resolve().parent.parent
GiB = 2**30
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


@pytest.fixture
def metrics():
    m = Metrics(Environment("linux", None, os.uname().release, "test"))
    yield m
    m.close()


@pytest.fixture
def server(metrics):
    return metrics.serve("127.0.0.1", 0)  # closed by the metrics fixture


@pytest.fixture
def probe():
    # One per test: each sample moves the probe's CPU baseline, so a shared probe sampled twice
    # within its noise floor (MIN_CPU_INTERVAL) reports CPU busy as unknown.
    p = GuestProbe(LocalFiles("/proc"))
    p.prime()
    time.sleep(2 * MIN_CPU_INTERVAL)  # so CPU busy covers a real interval, past the probe's noise floor
    return p


def host(bytes_: int | None, source: str = "psutil", estimated: bool = False) -> HostSample:
    return HostSample(time.time(), bytes_, source, estimated, host_total=64 * GiB if bytes_ else None,
                      host_available=20 * GiB if bytes_ and not estimated else None)


def scrape(server, accept: str | None = None) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}/metrics",
                                     headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
        return answer.read().decode()


def families(server) -> dict:
    return {f.name: f for f in parser.text_string_to_metric_families(scrape(server))}


def value(fams: dict, name: str, **labels) -> float | None:
    """The value of the one sample called ``name`` with these labels, or None if it has no series."""
    for family in fams.values():
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def test_gauges_carry_the_latest_real_sample(metrics, server, probe):
    guest = probe.sample()
    metrics.observe_sample(Sample(guest, host(6 * GiB)))
    fams = families(server)
    for name, _, attribute in GUEST_BYTES:
        assert value(fams, name) == getattr(guest, attribute), name
        assert fams[name].type == "gauge"
    assert value(fams, "vmmemctl_host_bytes", source="psutil") == 6 * GiB
    assert value(fams, "vmmemctl_host_estimated") == 0
    assert value(fams, "vmmemctl_host_total_bytes") == 64 * GiB
    assert value(fams, "vmmemctl_host_available_bytes") == 20 * GiB
    assert value(fams, "vmmemctl_last_sample_timestamp_seconds") == pytest.approx(guest.time)
    assert guest.cpu_busy_percent is not None  # primed over a real interval: known wherever /proc/stat is
    assert 0 <= value(fams, "vmmemctl_cpu_busy_ratio") <= 1
    assert value(fams, "vmmemctl_cpu_busy_ratio") == pytest.approx(guest.cpu_busy_percent / 100)
    for resource in ("memory", "io"):
        psi = getattr(guest, f"psi_{resource}_some_avg10")
        got = value(fams, "vmmemctl_psi_some_avg10_ratio", resource=resource)
        assert got == (None if psi is None else pytest.approx(psi / 100))
    (info,) = [s for f in fams.values() for s in f.samples if s.name == "vmmemctl_info"]
    assert info.labels["environment"] == "linux" and info.labels["version"]  # the fixture's Environment


def test_a_recorded_wsl2_sample_has_no_psi_series_and_says_wsl2():
    """WSL2's kernel has PSI off: no series, rather than zeros (the recorded tree, not this machine)."""
    tree = REPO / "tests/trees/wsl2-ubuntu/proc"
    guest = GuestProbe(LocalFiles(str(tree))).sample()
    assert guest.psi_io is None and guest.psi_memory is None  # the recording's fact
    m = Metrics(Environment("wsl2", "Ubuntu", "5.15.153.1-microsoft-standard-WSL2", "recorded"))
    try:
        srv = m.serve("127.0.0.1", 0)
        m.observe_sample(Sample(guest, host(6 * GiB)))
        fams = families(srv)
        assert value(fams, "vmmemctl_psi_some_avg10_ratio", resource="io") is None
        assert value(fams, "vmmemctl_guest_page_cache_bytes") == guest.page_cache
        (info,) = [s for f in fams.values() for s in f.samples if s.name == "vmmemctl_info"]
        assert info.labels["environment"] == "wsl2"
    finally:
        m.close()


def test_a_newer_sample_replaces_the_older_one(metrics, server, probe):
    guest = probe.sample()
    metrics.observe_sample(Sample(guest, host(6 * GiB, "interop")))
    metrics.observe_sample(Sample(guest, host(5 * GiB, "estimate", estimated=True)))
    fams = families(server)
    assert [s.labels for s in fams["vmmemctl_host_bytes"].samples] == [{"source": "estimate"}]
    assert value(fams, "vmmemctl_host_bytes") == 5 * GiB
    assert value(fams, "vmmemctl_host_estimated") == 1


def test_units_are_declared_in_openmetrics(metrics, server, probe):
    metrics.observe_sample(Sample(probe.sample(), host(6 * GiB)))
    fams = {f.name: f for f in openmetrics_parser.text_string_to_metric_families(scrape(server, OPENMETRICS))}
    for name, _, _ in GUEST_BYTES:
        assert fams[name].unit == "bytes", name
    assert fams["vmmemctl_host_bytes"].unit == "bytes"
    assert fams["vmmemctl_last_sample_timestamp_seconds"].unit == "seconds"
    assert fams["vmmemctl_reclaimed_bytes"].unit == "bytes" and fams["vmmemctl_reclaimed_bytes"].type == "counter"
    assert fams["vmmemctl_host_returned_bytes"].unit == "bytes"
    assert fams["vmmemctl_reclaims"].type == "counter"
    assert fams["vmmemctl_cpu_busy_ratio"].unit == "ratio"  # the probe is primed: CPU busy is known


def test_unknown_values_have_no_series_rather_than_zero(metrics, server, probe):
    assert value(families(server), "vmmemctl_guest_page_cache_bytes") is None  # no sample yet
    real = probe.sample()
    unknown = dataclasses.replace(real, page_cache=None, reclaimable=None, cpu_busy_percent=None,
                                  psi_memory=None, psi_io=None)
    metrics.observe_sample(Sample(unknown, host(None, "none")))
    text = scrape(server)
    for name in ("vmmemctl_guest_page_cache_bytes", "vmmemctl_guest_reclaimable_bytes", "vmmemctl_cpu_busy_ratio",
                 "vmmemctl_psi_some_avg10_ratio", "vmmemctl_host_bytes", "vmmemctl_host_estimated",
                 "vmmemctl_host_total_bytes", "vmmemctl_host_available_bytes"):
        assert name not in text, name
    assert value(families(server), "vmmemctl_guest_total_bytes") == real.total  # the known ones still are
    metrics.observe_sample(Sample(real, host(6 * GiB)))
    assert value(families(server), "vmmemctl_guest_page_cache_bytes") == real.page_cache  # and come back


def real_cache_drop(probe, tmp_path: Path) -> tuple:
    """Guest samples before and after evicting 64 MiB of our own file from the page cache."""
    path = tmp_path / "cached.bin"
    with open(path, "wb") as fh:
        fh.write(os.urandom(64 * 2**20))
        fh.flush()
        os.fsync(fh.fileno())  # clean pages: DONTNEED can drop them
    path.read_bytes()
    before = probe.sample()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return before, probe.sample()


def test_counters_increase_after_a_reclaim(metrics, server, probe, tmp_path):
    before, after = real_cache_drop(probe, tmp_path)
    result = ReclaimResult(method="auto", trigger="rule:reclaim-idle-cache", methods_run=["pagecache", "compact"],
                           before=before, after=after, host_before=host(8 * GiB), host_after=host(7 * GiB))
    labels = dict(method="pagecache", trigger="rule:reclaim-idle-cache", outcome="ok")
    assert value(families(server), "vmmemctl_reclaims_total", **labels) is None
    metrics.observe_reclaim(result)
    fams = families(server)
    assert value(fams, "vmmemctl_reclaims_total", **labels) == 1
    freed = value(fams, "vmmemctl_reclaimed_bytes_total", method="pagecache")
    assert result.freed_bytes > 0  # the eviction really freed page cache (64 MiB here)
    assert freed == result.freed_bytes
    assert value(fams, "vmmemctl_host_returned_bytes_total") == 1 * GiB
    metrics.observe_reclaim(result)
    fams = families(server)
    assert value(fams, "vmmemctl_reclaims_total", **labels) == 2
    assert value(fams, "vmmemctl_reclaimed_bytes_total", method="pagecache") == 2 * freed
    assert value(fams, "vmmemctl_host_returned_bytes_total") == 2 * GiB


def test_failed_dry_and_estimated_reclaims_count_no_bytes(metrics, server, probe):
    before = probe.sample()
    after = dataclasses.replace(before, page_cache=(before.page_cache or 0) - 2**20)
    common = dict(method="gradual", methods_run=["gradual", "compact"], before=before, after=after)
    metrics.observe_reclaim(ReclaimResult(**common, error="sudo: refused"))
    metrics.observe_reclaim(ReclaimResult(**common, dry_run=True, trigger="manual"))
    metrics.observe_reclaim(ReclaimResult(**common, trigger="prompt", host_before=host(8 * GiB, "estimate", True),
                                          host_after=host(7 * GiB, "estimate", True)))
    fams = families(server)
    assert value(fams, "vmmemctl_reclaims_total", method="gradual", outcome="error", trigger="manual") == 1
    assert value(fams, "vmmemctl_reclaims_total", method="gradual", outcome="dry_run", trigger="manual") == 1
    assert value(fams, "vmmemctl_reclaims_total", method="gradual", outcome="ok", trigger="prompt") == 1
    assert value(fams, "vmmemctl_reclaimed_bytes_total", method="gradual") == 2**20  # only the ok one
    assert value(fams, "vmmemctl_host_returned_bytes_total") == 0  # an estimate "returns" at once: not counted


def test_notifications_prompts_and_errors_are_counted(metrics, server):
    metrics.observe_notification("toast")
    metrics.observe_notification("toast")
    metrics.observe_notification(None)
    metrics.observe_prompt()
    for _ in range(3):
        metrics.observe_error()
    fams = families(server)
    assert value(fams, "vmmemctl_notifications_total", backend="toast") == 2
    assert value(fams, "vmmemctl_notifications_total", backend="none") == 1
    assert value(fams, "vmmemctl_prompts_total") == 1
    assert value(fams, "vmmemctl_sample_errors_total") == 3


def test_registry_is_private(metrics):
    from prometheus_client import REGISTRY

    assert metrics.registry is not REGISTRY
    assert REGISTRY.get_sample_value("vmmemctl_prompts_total") is None


def test_close_frees_the_port(metrics):
    server = metrics.serve("127.0.0.1", 0)
    port = server.port
    metrics.close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))


def test_a_busy_port_is_one_clear_error(metrics):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(UserError, match=f"--metrics 127.0.0.1:{port}: cannot listen"):
            metrics.serve("127.0.0.1", port)


def test_missing_prometheus_client_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import now raises ImportError
    with pytest.raises(MetricsUnavailable) as caught:
        Metrics()
    assert str(caught.value) == MISSING == "--metrics needs prometheus-client: pip install 'vmmemctl[metrics]'"
    assert caught.value.exit_code == 2


def test_importing_the_module_does_not_load_prometheus_client():
    code = "import sys, monitor.watch.metrics; print('prometheus_client' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout.strip() == "False"


def test_reread_after_reclaims_is_counted_by_source(metrics, server):
    from monitor.reclaim.cost import Cost

    assert value(families(server), "vmmemctl_reread_after_reclaim_bytes_total", source="refaults") is None
    metrics.observe_cost(Cost(1, 0.0, 300.0, refault_bytes=3 * 2**20, pgpgin_bytes=5 * 2**20, source="refaults"))
    metrics.observe_cost(Cost(2, 0.0, 300.0, refault_bytes=0, pgpgin_bytes=7 * 2**20, source="pgpgin"))
    metrics.observe_cost(Cost(3, 0.0, 300.0, refault_bytes=2**20, pgpgin_bytes=None, source="refaults"))
    fams = families(server)
    assert value(fams, "vmmemctl_reread_after_reclaim_bytes_total", source="refaults") == 4 * 2**20
    # after a drop the disk reads are nobody's re-read (issue 26): counted apart
    assert value(fams, "vmmemctl_reread_after_reclaim_bytes_total", source="pgpgin") is None
    assert value(fams, "vmmemctl_disk_reads_after_drop_bytes_total") == 7 * 2**20
