"""The configuration: one typed record per TOML table, defaults that work.

Every field is declared once, here, with its default and its documentation
(the ``doc`` metadata); ``config.example.toml`` repeats them for people and a
test keeps the two equal. Loading is strict (:mod:`monitor.config.tomlrecord` turns
TOML into these records): an unknown key, a wrong type or a value out of
range is a :class:`ConfigError` whose message is one line naming the file,
the key path, the value and what was expected.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from monitor.config.tomlrecord import ABSOLUTE, DURATION, PERCENT, ConfigError, RecordLoader, doc, public_fields, show, table_lines
from monitor.units import DURATION_EXPECTED, Size

Method = Literal["auto", "gradual", "pagecache", "full", "compact"]
METHODS: tuple[str, ...] = typing.get_args(Method)  # the one list of reclaim methods (CLI choices, TUI offers)
Metric = Literal["page_cache", "reclaimable", "host", "host_gap", "host_available"]
Action = Literal["notify", "prompt", "reclaim"]


@dataclass(frozen=True)
class GeneralConfig:
    proc_root: str = field(default="/proc", metadata=doc(
        "Where every kernel file is read from. sysfs is read beside it "
        "(DIR/../sys), so a recorded tree holds proc/ and sys/ side by side."))
    db: str = field(default="", metadata=doc(
        'History database; "" means history.db in the platform\'s user data dir. '
        "Keep it on the Linux filesystem (SQLite locking is unreliable on /mnt/c)."))
    log_level: Literal["debug", "info", "warning", "error"] = field(default="info", metadata=doc(
        "How much the watcher logs."))


@dataclass(frozen=True)
class SamplingConfig:
    interval: Annotated[float, DURATION] = field(default=2.0, metadata=doc(
        "How often the guest (the Linux side) is sampled."))
    host_interval: Annotated[float, DURATION] = field(default=10.0, metadata=doc(
        "How often the host footprint is sampled; Windows tools cost ~0.5 s a spawn."))


@dataclass(frozen=True)
class HostConfig:
    source: Literal["auto", "psutil", "interop", "process", "estimate"] = field(default="auto", metadata=doc(
        "Where the VM's footprint on the host comes from. auto: psutil on Windows, "
        "interop (powershell.exe, then tasklist.exe) inside WSL2, else an estimate from the guest."))
    process: str = field(default="", metadata=doc(
        'For source = "process": the VM process name (qemu-system-x86_64, firecracker) or its PID.'))
    timeout: Annotated[float, DURATION] = field(default=3.0, metadata=doc(
        "Longest wait for one host query; past it the host value is unknown for that sample."))


@dataclass(frozen=True)
class GuestConfig:
    exec: list[str] = field(default_factory=list, metadata=doc(
        "Host mode: a command prefix that runs a command inside the guest, e.g. "
        '["wsl.exe", "-d", "Ubuntu", "-u", "root", "-e"]. Empty: we are the guest.'))
    timeout: Annotated[float, DURATION] = field(default=10.0, metadata=doc(
        "Longest wait for one command run through guest.exec."))
    skip_unchanged: bool = field(default=False, metadata=doc(
        "Host mode: skip a guest sample (no wsl.exe call) while the VM's footprint on the host has moved "
        "less than unchanged_within since the last guest sample. Each wsl.exe call is activity in the "
        "distro, so sampling every few seconds keeps it from idling out (.wslconfig instanceIdleTimeout); "
        "with this on, an idle VM can stop, and its history shows 'guest not sampled' meanwhile."))
    unchanged_within: Annotated[Size, ABSOLUTE] = field(default=Size(16 * 2**20, text="16MiB"), metadata=doc(
        "How far the host footprint may move and still count as unchanged (skip_unchanged)."))


@dataclass(frozen=True)
class ReclaimConfig:
    method: Method = field(default="auto", metadata=doc(
        "Default method. auto: gradual where cgroup v2 memory.reclaim exists, else pagecache; then compact."))
    settle: Annotated[float, DURATION] = field(default=10.0, metadata=doc(
        "How long to watch the host footprint after a reclaim (free page reporting works in ~2 s batches)."))
    gradual_step_min: Annotated[Size, ABSOLUTE] = field(default=Size(256 * 2**20, text="256MiB"), metadata=doc(
        "Smallest gradual step (WSL uses MemTotal/32 clamped to 256MiB..1GiB)."))
    gradual_step_max: Annotated[Size, ABSOLUTE] = field(default=Size(2**30, text="1GiB"), metadata=doc(
        "Largest gradual step."))
    gradual_floor: Size = field(default=Size(percent=5.0, text="5%"), metadata=doc(
        "A safety minimum: gradual never takes the page cache below this (percent of guest MemTotal). "
        "Where it really stops is the working set, found by listening for refaults."))
    refault_window: Annotated[float, DURATION] = field(default=5.0, metadata=doc(
        "After each gradual step, how long to listen for refaults (and PSI memory stalls): long enough for "
        "a program that re-reads its files every few seconds to show it lost them."))
    refault_window_near: Annotated[float, DURATION] = field(default=30.0, metadata=doc(
        "Near the lower bound the window grows to this (linearly over the last whole step), so a working set "
        "re-read only every half minute is heard before the next small step; far above it stays refault_window. "
        "Never below refault_window; a refault_window of 0 (no listening) keeps every window at the shortest pause."))
    refault_share: Annotated[float, PERCENT] = field(default=10.0, metadata=doc(
        "Gradual stops when the refaults since a step pass this share of what was asked since: the working "
        "set begins there."))
    working_set_margin: Annotated[float, PERCENT] = field(default=25.0, metadata=doc(
        "The next reclaim stops this much above the remembered working set; gradual also stops this much "
        "above the active file cache (Active(file), pages used more than once recently)."))
    working_set_half_life: Annotated[float, DURATION] = field(default=3600.0, metadata=doc(
        "The remembered working set halves every this long, so a later reclaim probes lower again."))
    cost_window: Annotated[float, DURATION] = field(default=300.0, metadata=doc(
        "How long after a reclaim to count what was read back (its cost, shown in the history)."))
    cost_share: Annotated[float, PERCENT] = field(default=10.0, metadata=doc(
        "A reclaim that re-read more than this share of what it freed doubles the margin for the next one."))
    compact: bool = field(default=True, metadata=doc(
        "After auto/gradual/pagecache, write compact_memory so freed pages form blocks the host can take."))


@dataclass(frozen=True)
class IdleConfig:
    window: Annotated[float, DURATION] = field(default=60.0, metadata=doc(
        "gradual and compact run when CPU busy, averaged over this window, is at most cpu_busy_max."))
    cpu_busy_max: Annotated[float, PERCENT] = field(default=30.0, metadata=doc(
        "Not near-total idle: gradual takes cold pages first and keeps the hot ones, so it may run while an "
        "editor and its language server keep a few percent busy (WSL's own reclaim never fires then, WSL#10011)."))
    drop_window: Annotated[float, DURATION] = field(default=20.0, metadata=doc(
        "pagecache and full drop hot pages too (as does auto where memory.reclaim is missing), so they wait "
        "for a lull: every sample of this window at most drop_cpu_busy_max."))
    drop_cpu_busy_max: Annotated[float, PERCENT] = field(default=3.0, metadata=doc(
        "CPU busy limit for the lull, in percent of all CPUs."))
    psi_io_max: Annotated[float, PERCENT] = field(default=10.0, metadata=doc(
        "For every method: PSI io some avg10 at most this (skipped where /proc/pressure is absent, as on WSL)."))
    psi_memory_max: Annotated[float, PERCENT] = field(default=5.0, metadata=doc(
        "For every method: PSI memory some avg10 at most this."))


@dataclass(frozen=True)
class PolicyConfig:
    auto_reclaim: bool = field(default=False, metadata=doc(
        'Master switch for rules with action = "reclaim". Off: such rules only say what they would do.'))
    defer_to_wsl: bool = field(default=True, metadata=doc(
        "Skip an automatic reclaim when WSL's own autoMemoryReclaim (in .wslconfig) would do the same."))
    wslconfig: str = field(default="", metadata=doc(
        'Path of the Windows user\'s .wslconfig; "" finds it (%USERPROFILE% as the PowerShell session says it, '
        'else USERPROFILE from WSLENV or /mnt/c/Users/<you>).'))


# A rule's ``above`` when it names none. A rule that says ``below`` and leaves ``above`` at this very
# object compares below only (Rule.__post_init__); a TOML file that writes both is refused (check_record).
DEFAULT_ABOVE = Size(percent=40.0, text="40%")


@dataclass(frozen=True)
class Rule:
    name: str = field(default="", metadata=doc("A name for messages and history; defaults to metric+action."))
    metric: Metric = field(default="page_cache", metadata=doc(
        "page_cache | reclaimable (percent of guest MemTotal); host | host_gap (host footprint minus "
        "programs) | host_available (the host's own available memory: Windows' Available Bytes; percent of "
        "host RAM)."))
    above: Size | None = field(default=DEFAULT_ABOVE, metadata=doc("Fires when the metric is above this..."))
    below: Size | None = field(default=None, metadata=doc(
        "... or, instead of above, when it is below this (host_available: Windows running short)."))
    for_: Annotated[float, DURATION] = field(default=120.0, metadata=doc(
        "... continuously for this long.", key="for"))
    rearm_below: Size | None = field(default=None, metadata=doc(
        "Hysteresis: after firing, fires again only once the metric fell below this (default: 75% of above)."))
    rearm_above: Size | None = field(default=None, metadata=doc(
        "For a below rule: fires again only once the metric rose above this (default: 125% of below)."))
    cooldown: Annotated[float, DURATION] = field(default=1800.0, metadata=doc(
        "After firing, stays quiet at least this long."))
    action: Action = field(default="notify", metadata=doc("notify | prompt | reclaim"))
    method: Method = field(default="auto", metadata=doc("Reclaim method for action = \"reclaim\" (and the prompt's offer)."))
    if_reclaimable_above: Size | None = field(default=None, metadata=doc(
        "Fires only while the guest's reclaimable cache is above this (size or percent of guest MemTotal): "
        "Windows short of memory is worth a prompt only when the VM has cache to give back."))
    cgroup: str = field(default="", metadata=doc(
        'Aim at cgroup v2 groups (a glob below /sys/fs/cgroup, e.g. "system.slice/docker-*.scope"): the metric is '
        "their page cache (memory.stat file; metric page_cache, above a size or % of MemTotal) and a reclaim goes "
        "to each of them gradually, stopping on its refaults (as `reclaim --cgroup`), with no VM-wide idle gate. "
        'action notify or reclaim. "" = the whole VM.'))

    def __post_init__(self) -> None:
        if self.below is not None and self.above is DEFAULT_ABOVE:  # said below, left above alone
            object.__setattr__(self, "above", None)

    @property
    def label(self) -> str:
        return self.name or f"{self.metric}-{self.action}"

    @property
    def falls(self) -> bool:
        """The rule fires below its threshold (``below``), not above it."""
        return self.below is not None

    @property
    def threshold(self) -> Size:
        return self.below if self.below is not None else self.above  # type: ignore[return-value]

    @property
    def direction(self) -> str:
        return "below" if self.falls else "above"


DEFAULT_RULES = (
    Rule(name="cache-notify", metric="page_cache", above=Size(percent=30.0, text="30%"), for_=120.0,
         cooldown=3600.0, action="notify"),
    Rule(name="cache-prompt", metric="page_cache", above=Size(percent=50.0, text="50%"), for_=300.0,
         cooldown=3600.0, action="prompt", method="auto"),
    # An absolute minimum, not a share of MemTotal: 10% of a 24 GiB VM (2.4 GiB) let a 3 GiB cold read
    # slip under the threshold (a background page-out) before the lull gate opened (issue 11).
    Rule(name="reclaim-idle-cache", metric="reclaimable", above=Size(bytes=512 * 2**20, text="512MiB"), for_=30.0,
         cooldown=600.0, action="reclaim", method="auto"),
    # Windows itself running short while the VM sits on cache it could give back (microsoft/WSL#10011:
    # Windows at 97 % while the VM held 28 GB of cache). A prompt, not a reclaim: the guest may be busy,
    # and the person at Windows is the one who feels it. Never fires without a host_available figure
    # (an estimate, plain Linux).
    Rule(name="windows-short", metric="host_available", below=Size(percent=10.0, text="10%"), for_=60.0,
         cooldown=1800.0, action="prompt", method="auto",
         if_reclaimable_above=Size(bytes=1024 * 2**20, text="1GiB")),
)


@dataclass(frozen=True)
class Schedule:
    cron: str = field(default="", metadata=doc('Standard 5-field cron "m h dom mon dow"; dow 0 and 7 are Sunday.'))
    method: Method = field(default="auto", metadata=doc("Reclaim method."))
    name: str = field(default="", metadata=doc("A name for messages and history."))
    if_page_cache_above: Size | None = field(default=None, metadata=doc(
        "Only run if page cache is above this (size or percent of MemTotal)."))
    only_if_idle: bool = field(default=False, metadata=doc("Only run if the idle gate for the method passes."))
    grace: Annotated[float, DURATION] = field(default=300.0, metadata=doc(
        "A run missed by more than this (sleep, suspended VM) is skipped, never run late in a burst."))
    path: list[str] = field(default_factory=list, metadata=doc(
        "Give back only the page cache of these trees (files and folders; ~ is the watcher's home), on any "
        "kernel, instead of a method: as `vmmemctl reclaim --path`."))
    cgroup: str = field(default="", metadata=doc(
        'Give back the page cache of these cgroup v2 groups (a glob below /sys/fs/cgroup, e.g. '
        '"vmmemctl.slice/*"), each gradually, as `reclaim --cgroup`; if_page_cache_above is then their cache. '
        '"" = the whole VM.'))


@dataclass(frozen=True)
class NotifyConfig:
    backends: list[Literal["plyer", "toast", "notify-send"]] = field(
        default_factory=lambda: ["toast", "notify-send", "plyer"], metadata=doc(
            "Tried in order; the first that delivers wins. The log and the history always get it."))
    rate_limit: Annotated[float, DURATION] = field(default=1800.0, metadata=doc(
        "The same condition notifies at most once per this period."))
    timeout: Annotated[float, DURATION] = field(default=10.0, metadata=doc("Longest wait for one backend."))


@dataclass(frozen=True)
class HistoryConfig:
    raw_for: Annotated[float, DURATION] = field(default=6 * 3600.0, metadata=doc("Keep every sample this long."))
    minute_for: Annotated[float, DURATION] = field(default=7 * 86400.0, metadata=doc(
        "Then one row a minute (min/avg/max) this long."))
    ten_minute_for: Annotated[float, DURATION] = field(default=90 * 86400.0, metadata=doc(
        "Then one row per 10 minutes this long; older rows are deleted."))
    events_for: Annotated[float, DURATION] = field(default=90 * 86400.0, metadata=doc("Keep events this long."))


@dataclass(frozen=True)
class MetricsConfig:
    listen: str = field(default="", metadata=doc(
        'Serve Prometheus metrics on HOST:PORT, e.g. "127.0.0.1:9469". "" = off.'))


@dataclass(frozen=True)
class ControlConfig:
    users: list[str] = field(default_factory=list, metadata=doc(
        "Who besides root and the watcher's own user may act through the watcher (snooze, pause, answer "
        "prompts, reclaim, reload), by user name. `service install` run through sudo adds the invoking user."))
    group: str = field(default="", metadata=doc('Members of this group may too (e.g. "vmmemctl"); "" = none.'))
    second_watcher: Literal["record", "exit"] = field(default="record", metadata=doc(
        "A watcher that finds another owning the VM (another distro's, or a second one here): "
        '"record" keeps a read-only record of its own (no rules, schedules or reclaims); "exit" stops.'))


@dataclass(frozen=True)
class TuiConfig:
    range: Literal["5m", "1h", "24h", "7d"] = field(default="1h", metadata=doc("Chart range at start."))


@dataclass(frozen=True)
class Config:
    general: GeneralConfig = field(default_factory=GeneralConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    host: HostConfig = field(default_factory=HostConfig)
    guest: GuestConfig = field(default_factory=GuestConfig)
    reclaim: ReclaimConfig = field(default_factory=ReclaimConfig)
    idle: IdleConfig = field(default_factory=IdleConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    rule: tuple[Rule, ...] = field(default=DEFAULT_RULES, metadata=doc(
        "[[rule]] tables; writing any replaces the defaults."))
    schedule: tuple[Schedule, ...] = field(default=(), metadata=doc("[[schedule]] tables: cron-style reclaims."))
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    history: HistoryConfig = field(default_factory=HistoryConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    tui: TuiConfig = field(default_factory=TuiConfig)
    path: str | None = field(default=None, compare=False, metadata=doc("", internal=True))


# --------------------------------------------------------------------- loading


def find_config_path(explicit: str | None, environ: typing.Mapping[str, str] | None = None) -> Path | None:
    """``--config``, then ``$VMMEMCTL_CONFIG``, then the user config dir; None means defaults."""
    environ = os.environ if environ is None else environ
    if explicit:
        return Path(explicit)
    if environ.get("VMMEMCTL_CONFIG"):
        return Path(environ["VMMEMCTL_CONFIG"])
    from monitor.kernel.dirs import user_dir

    candidate = user_dir("config", environ) / "config.toml"
    try:
        return candidate if candidate.is_file() else None
    except OSError as exc:  # a config dir this user may not enter: say so, never a traceback
        raise ConfigError(f"{candidate}: cannot read: {exc.strerror or exc} (pass --config FILE)") from None


def load_config(path: str | Path | None) -> Config:
    """Read and validate ``path``; ``None`` gives the defaults."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        raw_bytes = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (expected a TOML config file)") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory (expected a TOML config file)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        # A UTF-8 BOM (Notepad) or UTF-16 with a BOM (PowerShell 5.1's `>`) is text, not invalid TOML.
        if raw_bytes.startswith((b"\xff\xfe", b"\xfe\xff")):
            text = raw_bytes.decode("utf-16")
        else:
            text = raw_bytes.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); expected a TOML config file") from None
    return config_from_toml(text, str(path))


def config_from_toml(text: str, origin: str) -> Config:
    """A config from TOML text (a file's, or a running watcher's as it told a client), checked alike."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: invalid TOML: {exc}") from None
    config = LOADER.build(Config, data, origin, "")
    return dataclasses.replace(config, path=origin)


def check_record(obj: Any, file: str, prefix: str) -> None:
    """Checks that involve more than one field of a record, or another module's rules (cron, exec)."""
    if isinstance(obj, ReclaimConfig):
        if obj.gradual_step_min.bytes > obj.gradual_step_max.bytes:
            raise ConfigError(f"{file}: {prefix}gradual_step_min: got {obj.gradual_step_min}; "
                              f"expected at most gradual_step_max ({obj.gradual_step_max})")
    if isinstance(obj, SamplingConfig):
        for name in ("interval", "host_interval"):
            if getattr(obj, name) < 0.1:
                raise ConfigError(f"{file}: {prefix}{name}: got {getattr(obj, name)}s; expected at least 0.1s")
    if isinstance(obj, Rule):
        _check_rule(obj, file, prefix)
    if isinstance(obj, (Rule, Schedule)) and obj.cgroup:
        _check_aim(obj, file, prefix)
    if isinstance(obj, Schedule) and obj.path and obj.method != "auto":
        raise ConfigError(f"{file}: {prefix}method: got {show(obj.method)}; expected no method with path "
                          "(a path schedule gives back those trees' cache)")
    if isinstance(obj, Schedule) and any(not p.strip() for p in obj.path):
        raise ConfigError(f'{file}: {prefix}path: got ""; expected a file or folder')
    if isinstance(obj, Schedule):
        from monitor.config.cron import CronError, parse_cron

        try:
            parse_cron(obj.cron)
        except CronError as exc:
            raise ConfigError(f"{file}: {prefix}cron: got {show(obj.cron)}; expected {exc}") from None
    if isinstance(obj, GuestConfig) and obj.exec:
        if not obj.exec[0]:
            raise ConfigError(f"{file}: {prefix}exec[0]: got \"\"; expected a program name")
        from monitor.errors import UserError
        from monitor.kernel.windows import validate_prefix

        try:
            validate_prefix(obj.exec)
        except UserError as exc:
            raise ConfigError(f"{file}: {prefix}exec: {exc}") from None
    if isinstance(obj, HostConfig) and obj.source == "process" and not obj.process:
        raise ConfigError(f'{file}: {prefix}process: got ""; expected a process name or PID '
                          'when source = "process"')
    if isinstance(obj, MetricsConfig) and obj.listen:
        try:
            split_listen(obj.listen)
        except ValueError as exc:
            raise ConfigError(f"{file}: {prefix}listen: got {show(obj.listen)}; expected {exc}") from None


def _check_aim(obj: Rule | Schedule, file: str, prefix: str) -> None:
    """A rule's or schedule's ``cgroup``: a glob that can name groups, and nothing it cannot do."""
    from monitor.kernel.cgroup_aim import GlobError, normalize_glob

    try:
        normalize_glob(obj.cgroup)
    except GlobError as exc:
        raise ConfigError(f"{file}: {prefix}cgroup: got {show(obj.cgroup)}; expected {exc}") from None
    if obj.method not in ("auto", "gradual"):
        raise ConfigError(f"{file}: {prefix}method: got {show(obj.method)}; expected auto or gradual with cgroup "
                          "(a group is reclaimed gradually through its memory.reclaim)")
    if isinstance(obj, Rule) and obj.metric != "page_cache":
        raise ConfigError(f"{file}: {prefix}metric: got {show(obj.metric)}; expected page_cache with cgroup "
                          "(the metric is the groups' page cache)")
    if isinstance(obj, Rule) and obj.action == "prompt":
        raise ConfigError(f"{file}: {prefix}action: got {show(obj.action)}; expected notify or reclaim with cgroup "
                          "(a prompt's answer reclaims the whole VM)")
    if isinstance(obj, Schedule) and obj.path:
        raise ConfigError(f"{file}: {prefix}path: got {show(obj.path)}; expected no path with cgroup "
                          "(one or the other)")


LOADER = RecordLoader(check_record)


def _check_rule(rule: Rule, file: str, prefix: str) -> None:
    """A rule compares one way: above (rearm_below) or below (rearm_above); host_available only below."""
    if rule.above is not None and rule.below is not None:
        raise ConfigError(f"{file}: {prefix}below: got {show(str(rule.below))}; expected either above or below "
                          f"in one rule, not both (above is {rule.above})")
    if rule.metric == "host_available" and rule.below is None and rule.above is not DEFAULT_ABOVE:
        raise ConfigError(f"{file}: {prefix}above: got {show(str(rule.above))}; expected below for metric = "
                          '"host_available" (it fires when the host\'s available memory is below a size or a share)')
    if rule.metric == "host_available" and rule.below is None:
        raise ConfigError(f"{file}: {prefix}below: missing; expected a size or a percentage of the host's RAM "
                          'for metric = "host_available" (it fires when the host\'s available memory is below it)')
    if rule.falls and rule.rearm_below is not None:
        raise ConfigError(f"{file}: {prefix}rearm_below: got {show(str(rule.rearm_below))}; expected rearm_above "
                          f"in a below rule (it re-arms once the metric rose above it)")
    if not rule.falls and rule.rearm_above is not None:
        raise ConfigError(f"{file}: {prefix}rearm_above: got {show(str(rule.rearm_above))}; expected rearm_below "
                          f"in an above rule (it re-arms once the metric fell below it)")
    rearm, key = (rule.rearm_above, "rearm_above") if rule.falls else (rule.rearm_below, "rearm_below")
    if rearm is None:
        return
    limit = rule.threshold
    if (limit.percent is None) != (rearm.percent is None):
        raise ConfigError(f"{file}: {prefix}{key}: got {show(str(rearm))}; "
                          f"expected the same kind as {rule.direction} ({limit}): both sizes or both percentages")
    if (_size_key(rearm) < _size_key(limit)) if rule.falls else (_size_key(rearm) > _size_key(limit)):
        raise ConfigError(f"{file}: {prefix}{key}: got {show(str(rearm))}; "
                          f"expected at {'least' if rule.falls else 'most'} {rule.direction} ({limit})")


def _size_key(size: Size) -> float:
    return size.percent if size.percent is not None else float(size.bytes or 0)


def split_listen(text: str) -> tuple[str, int]:
    """``"127.0.0.1:9469"`` -> ``("127.0.0.1", 9469)``; ``"[::1]:9469"`` works too."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError('HOST:PORT such as "127.0.0.1:9469"')
    return host, int(port)


# ------------------------------------------------------------------- showing


def to_toml(config: Config) -> str:
    """The effective config as TOML that :func:`load_config` reads back equal."""
    lines: list[str] = []
    for f in public_fields(Config):
        value = getattr(config, f.name)
        if isinstance(value, tuple):
            if not value:
                lines += [f"# no [[{f.name}]] entries", ""]
            for item in value:
                lines.append(f"[[{f.name}]]")
                lines += table_lines(item)
                lines.append("")
        else:
            lines.append(f"[{f.name}]")
            lines += table_lines(value)
            lines.append("")
    return "\n".join(lines)


# durations for messages elsewhere, kept here so callers need one import
__all__ = ["Config", "ConfigError", "load_config", "find_config_path", "to_toml", "DURATION_EXPECTED"]
