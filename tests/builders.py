"""Builders for the tests' samples, rules and configs: one place, so a test says only what matters.

Sizes are bytes; ``GiB``/``MiB`` are here for the tables."""

from __future__ import annotations

from monitor.config.schema import Config, IdleConfig, PolicyConfig, ReclaimConfig, Rule
from monitor.sample import GuestSample, HostSample, Pressure, Sample
from monitor.units import Size

GiB, MiB = 1024**3, 1024**2


def sample(t: float, cache: int, cpu: float | None = 2.0, *, host: int | None = None, host_total: int | None = None,
           total: int = 16 * GiB, used: int = 2 * GiB, psi_io: float | None = None, pgpgin: int | None = None,
           source: str = "interop", metric: str | None = None) -> Sample:
    """A sample whose page cache is all reclaimable (what the policy's tables need); ``metric``: the host
    figure's (monitor.sample.HostMetric)."""
    guest = GuestSample(time=t, total=total, free=GiB, page_cache=cache, reclaimable=cache, used=used,
                        cpu_busy_percent=cpu, psi_io=Pressure(some_avg10=psi_io) if psi_io is not None else None,
                        pgpgin=pgpgin)
    return Sample(guest, HostSample(t, host, source, False, host_total=host_total, metric=metric))


def size(text: str) -> Size:
    from monitor.units import parse_size

    return parse_size(text)


def rule(**kw) -> Rule:
    """A notify rule on the page cache above 6 GiB for 2 minutes; keywords change any field."""
    base = dict(name="r", metric="page_cache", above=Size(bytes=6 * GiB, text="6GiB"), for_=120.0, cooldown=600.0,
                action="notify")
    return Rule(**{**base, **kw})


def config(*rules: Rule, auto: bool = True, settle: float | None = None, **idle) -> Config:
    """Only these rules; auto-reclaim on unless ``auto=False``; ``settle`` for reclaims that run for real."""
    extra = {"reclaim": ReclaimConfig(settle=settle)} if settle is not None else {}
    return Config(rule=rules, policy=PolicyConfig(auto_reclaim=auto), idle=IdleConfig(**idle) if idle else IdleConfig(),
                  **extra)
