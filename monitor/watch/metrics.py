"""Prometheus metrics for ``vmmemctl watch --metrics HOST:PORT``.

prometheus-client is an optional extra (``pip install 'vmmemctl[metrics]'``),
imported only when a :class:`Metrics` is made, so the watcher without
``--metrics`` never loads it. Everything lives in the exporter's own
``CollectorRegistry``, not the process-wide default.

Two kinds of numbers:

- gauges read off the latest sample, at scrape time, by a custom collector.
  An unknown value (None in the sample) has no series at all in the scrape:
  it is left out, never exported as 0, and reappears when it is known again.
  Before the first sample there are no gauge series.
- counters of what the watcher did (reclaims, bytes freed, notifications,
  prompts, sampling errors), which only go up while the process lives.

What a scrape looks like (text format, abridged)::

    vmmemctl_host_bytes{source="interop"} 6.4e+09
    vmmemctl_guest_page_cache_bytes 3.5e+09
    vmmemctl_psi_some_avg10_ratio{resource="memory"} 0.0031
    vmmemctl_reclaims_total{method="gradual",outcome="ok",trigger="rule:reclaim-idle-cache"} 2.0
    vmmemctl_info{distro="Ubuntu",environment="wsl2",version="0.1.0"} 1.0
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Iterator

from monitor import __version__
from monitor.errors import UserError
from monitor.sample import Environment, GuestSample, HostSample, Sample

MISSING = "--metrics needs prometheus-client: pip install 'vmmemctl[metrics]'"

# (metric name, help, GuestSample attribute): all bytes.
GUEST_BYTES = (
    ("vmmemctl_guest_total_bytes", "Guest MemTotal.", "total"),
    ("vmmemctl_guest_page_cache_bytes", "Guest page cache: Buffers + Cached - Shmem.", "page_cache"),
    ("vmmemctl_guest_reclaimable_bytes", "What sync + drop_caches would free now: page cache - Mapped.",
     "reclaimable"),
    ("vmmemctl_guest_anon_bytes", "Guest anonymous memory (programs).", "anon"),
    ("vmmemctl_guest_used_bytes", "Guest memory no cache drop gives back: MemTotal - MemFree - page cache - "
     "SReclaimable.", "used"),
    ("vmmemctl_guest_available_bytes", "Guest MemAvailable.", "available"),
    ("vmmemctl_guest_free_bytes", "Guest MemFree.", "free"),
    ("vmmemctl_guest_returnable_free_bytes", "Free guest memory in blocks of at least the page reporting order: "
     "what free page reporting hands to the host.", "returnable_free"),
    ("vmmemctl_guest_fragmented_free_bytes", "Free guest memory in smaller blocks: the host cannot take it "
     "until compaction.", "fragmented_free"),
)


class MetricsUnavailable(UserError):
    """prometheus-client is not installed: the CLI prints the message as its one line (exit 2)."""


def _prometheus() -> Any:
    try:
        import prometheus_client
        import prometheus_client.core  # noqa: F401  (the *MetricFamily classes)
    except ImportError:
        raise MetricsUnavailable(MISSING) from None
    return prometheus_client


@dataclass
class MetricsServer:
    """The HTTP endpoint serving one registry; ``close()`` stops it and frees the port."""

    httpd: Any  # wsgiref WSGIServer
    thread: threading.Thread

    @property
    def host(self) -> str:
        return self.httpd.server_address[0]

    @property
    def port(self) -> int:
        return self.httpd.server_port

    def close(self) -> None:
        self.httpd.shutdown()  # returns once serve_forever has stopped (it polls every 0.5 s)
        self.httpd.server_close()
        self.thread.join(timeout=5)

    shutdown = close


class Metrics:
    """The exporter: observe what the watcher sees and does; serve it over HTTP."""

    def __init__(self, environment: Environment | None = None):
        prom = self._prom = _prometheus()
        self.registry = prom.CollectorRegistry()
        self.latest: Sample | None = None  # replaced whole, so a scrape reads one consistent sample
        self._servers: list[MetricsServer] = []
        reg = self.registry
        self.reclaims = prom.Counter("vmmemctl_reclaims", "Reclaims run, by effective method, trigger "
                                     "(manual, rule:NAME, schedule:NAME, prompt) and outcome (ok, error, dry_run).",
                                     ["method", "trigger", "outcome"], registry=reg)
        self.reclaimed = prom.Counter("vmmemctl_reclaimed_bytes", "Guest page cache freed by reclaims "
                                      "(before - after), by effective method.", ["method"], unit="bytes",
                                      registry=reg)
        self.host_returned = prom.Counter("vmmemctl_host_returned_bytes", "Host footprint given back after "
                                          "reclaims, as measured on the host (estimates are not counted).",
                                          unit="bytes", registry=reg)
        self.reread_after = prom.Counter("vmmemctl_reread_after_reclaim_bytes", "What of what reclaims gave back "
                                         "was read back in the cost window ([reclaim] cost_window): refaults after "
                                         "gradual (the group's own after one group's), the trees' own "
                                         "cache after --path; by what counted it.", ["source"],
                                         unit="bytes", registry=reg)
        self.disk_reads_after_drop = prom.Counter("vmmemctl_disk_reads_after_drop_bytes", "Every disk read in the "
                                                  "cost window after a drop_caches reclaim: not attributable to it",
                                                  unit="bytes", registry=reg)
        self.notifications = prom.Counter("vmmemctl_notifications", "Notifications sent, by the backend that "
                                          "delivered them (none: only the log and the history got it).",
                                          ["backend"], registry=reg)
        self.prompts = prom.Counter("vmmemctl_prompts", "Prompts recorded for the user to answer.", registry=reg)
        self.sample_errors = prom.Counter("vmmemctl_sample_errors", "Jobs that failed: a sample, a host sample, "
                                          "maintenance, a reclaim (each also an error event).", registry=reg)
        self.history_outages = prom.Counter("vmmemctl_history_outages", "Times the history stopped taking samples "
                                            "(disk full, read-only...): counted when it stops, not every tick.",
                                            registry=reg)
        info = prom.Info("vmmemctl", "The vmmemctl version and where it runs.", registry=reg)
        info.info(_info_labels(environment))
        reg.register(_SampleCollector(prom, self))

    # ------------------------------------------------------------ observing

    def observe_sample(self, sample: Sample) -> None:
        self.latest = sample

    def observe_reclaim(self, result: Any) -> None:
        """Count a :class:`monitor.reclaim.reclaimer.ReclaimResult` and what it freed."""
        method = result.methods_run[0] if result.methods_run else result.method  # auto -> gradual/pagecache
        outcome = "dry_run" if result.dry_run else "error" if result.error else "ok"
        self.reclaims.labels(method, result.trigger, outcome).inc()
        if outcome != "ok":
            return
        freed = result.freed_bytes
        if freed is not None:
            self.reclaimed.labels(method).inc(max(0, freed))  # the cache may have grown meanwhile: not negative
        returned = result.host_returned_bytes
        # An estimated host number is computed from the guest: it "returns" at once, which measures nothing.
        if returned is not None and result.host_before is not None and not result.host_before.estimated:
            self.host_returned.inc(max(0, returned))

    def observe_cost(self, cost: Any) -> None:
        """Count a :class:`monitor.reclaim.cost.Cost` (what a reclaim's window read back)."""
        if cost.reread_bytes is not None:
            self.reread_after.labels(cost.source).inc(max(0, cost.reread_bytes))
        elif cost.source == "pgpgin" and cost.pgpgin_bytes is not None:  # a group gone: nothing to count
            self.disk_reads_after_drop.inc(max(0, cost.pgpgin_bytes))

    def observe_notification(self, backend: str | None) -> None:
        self.notifications.labels(backend or "none").inc()

    def observe_prompt(self) -> None:
        self.prompts.inc()

    def observe_error(self) -> None:
        self.sample_errors.inc()

    def observe_history_outage(self) -> None:
        self.history_outages.inc()

    # ------------------------------------------------------------ serving

    def serve(self, host: str, port: int) -> MetricsServer:
        """Serve ``/metrics`` (any path, in fact) on host:port; port 0 picks a free one (see ``.port``)."""
        try:
            httpd, thread = self._prom.start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise UserError(f"--metrics {host}:{port}: cannot listen: {exc.strerror or exc}") from None
        server = MetricsServer(httpd, thread)
        self._servers.append(server)
        return server

    def close(self) -> None:
        while self._servers:
            self._servers.pop().close()


def _info_labels(environment: Environment | None) -> dict[str, str]:
    labels = {"version": __version__}
    if environment is not None:
        labels["environment"] = environment.kind
        labels["distro"] = environment.distro or ""
        labels["kernel"] = environment.kernel_release or ""
    return labels


class _SampleCollector:
    """Gauges from the latest sample, built at scrape time so unknown values have no series."""

    def __init__(self, prom: Any, metrics: Metrics):
        self.core = prom.core
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        sample = self.metrics.latest
        if sample is None:
            return
        yield from self._host(sample.host)
        yield from self._guest(sample.guest)
        yield self.core.GaugeMetricFamily("vmmemctl_last_sample_timestamp_seconds",
                                          "When the latest sample was taken (Unix time).",
                                          value=sample.time, unit="seconds")

    def _gauge(self, name: str, doc: str, value: float | None, unit: str = "") -> Iterator[Any]:
        if value is not None:
            yield self.core.GaugeMetricFamily(name, doc, value=value, unit=unit)

    def _host(self, host: HostSample) -> Iterator[Any]:
        if host.bytes is not None:
            family = self.core.GaugeMetricFamily(
                "vmmemctl_host_bytes", "The VM's memory footprint on the host, and where the number came from "
                "(psutil, interop, process, estimate).", labels=["source"], unit="bytes")
            family.add_metric([host.source], host.bytes)
            yield family
            yield from self._gauge("vmmemctl_host_estimated", "1 if vmmemctl_host_bytes is estimated from the "
                                   "guest rather than measured on the host, else 0.", int(host.estimated))
        yield from self._gauge("vmmemctl_host_total_bytes", "The host's RAM.", host.host_total, "bytes")
        yield from self._gauge("vmmemctl_host_available_bytes", "The host's own available memory (Windows: "
                               "the Memory/Available Bytes counter; psutil's available in host mode).",
                               host.host_available, "bytes")

    def _guest(self, guest: GuestSample) -> Iterator[Any]:
        for name, doc, attribute in GUEST_BYTES:
            yield from self._gauge(name, doc, getattr(guest, attribute), "bytes")
        busy = guest.cpu_busy_percent
        yield from self._gauge("vmmemctl_cpu_busy_ratio", "Guest CPU busy over the sampling interval (0..1).",
                               None if busy is None else busy / 100, "ratio")
        psi = self.core.GaugeMetricFamily("vmmemctl_psi_some_avg10_ratio", "PSI 'some' avg10 of the guest "
                                          "(0..1); absent where /proc/pressure is off, as on WSL's kernel.",
                                          labels=["resource"], unit="ratio")
        for resource, value in (("memory", guest.psi_memory_some_avg10), ("io", guest.psi_io_some_avg10)):
            if value is not None:
                psi.add_metric([resource], value / 100)
        if psi.samples:
            yield psi
