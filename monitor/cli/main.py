"""``vmmemctl``: the command line. Every command is a small function here.

Errors a user can fix (:class:`UserError`, :class:`ConfigError`) end as one
line on stderr and an exit code: 2 for bad input, 3 for a missing privilege.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

from monitor import __version__, logs
from monitor.config.schema import (
    METHODS,
    Config,
    ConfigError,
    find_config_path,
    load_config,
)
from monitor.errors import PrivilegeError, UserError
from monitor.kernel.procfs import LocalFiles, check_proc_root

Command = Callable[[argparse.Namespace], int]


class Formatter(argparse.HelpFormatter):
    """argparse's help, its width found as shutil.get_terminal_size finds it ($COLUMNS, else the terminal,
    else 80) without importing shutil: argparse builds a formatter for every option it adds, and shutil
    imports bz2 and lzma, half a MiB of the watcher's RSS (issue 24) for a width only --help uses."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None):
        super().__init__(prog, indent_increment, max_help_position, width if width is not None else _width() - 2)


def _width() -> int:
    import os

    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns if sys.__stdout__ else 80
    except (AttributeError, ValueError, OSError):
        return 80


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, like every other error here."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def common_options(after_command: bool = True) -> argparse.ArgumentParser:
    """--config, --proc-root and --db: every command takes them, before or after its name. After it, an
    option not given leaves what was given before it (argparse.SUPPRESS: no default to overwrite it)."""
    default = argparse.SUPPRESS if after_command else None
    common = Parser(add_help=False)
    common.add_argument("--config", metavar="FILE", default=default,
                        help="config file (default: $VMMEMCTL_CONFIG, then the user config dir)")
    common.add_argument("--proc-root", metavar="DIR", default=default,
                        help="read kernel files from DIR instead of /proc (sysfs from DIR/../sys)")
    common.add_argument("--db", metavar="PATH", default=default, help="history database (default: [general] db, "
                        "else history.db in the user data dir)")
    return common


def load(args: argparse.Namespace) -> Config:
    """The effective config: the file, then command-line overrides."""
    config = load_config(find_config_path(args.config))
    if getattr(args, "proc_root", None):
        config = dataclasses.replace(config, general=dataclasses.replace(config.general, proc_root=args.proc_root))
    problem = check_proc_root(config.general.proc_root)
    if problem:
        raise UserError(f"proc root {problem}")
    return config


# ------------------------------------------------------------------ commands


def cmd_status(args: argparse.Namespace) -> int:
    from monitor.cli import report
    from monitor.history.places import choose_history
    from monitor.history.store import open_existing
    from monitor.kernel.wslconfig import detect_wsl_reclaim
    from monitor.policy.rules import Facts
    from monitor.policy.state import decision_now
    from monitor.probes import probeset as probes
    from monitor.reclaim import workingset
    from monitor.reclaim.controller import reuse_signal

    config = load(args)
    p = probes.build(config)
    try:
        p.prime()
        time.sleep(args.cpu_window)  # CPU busy is a rate: it needs two readings
        sample = p.sample()
        gradual = p.gradual_available()
        profile = p.windows_profile()  # where WSL reads .wslconfig, as the PowerShell session said it
    finally:
        p.close()
    from monitor.kernel.cgroup_aim import aims_here, with_aims

    aims = aims_here(config)
    sample = with_aims(sample, [aim for _, aim in aims])  # an aimed rule's figure, as the watcher reads it
    from monitor.history.health import history_words

    wsl = detect_wsl_reclaim(config.policy.wslconfig, p.environment.kind, LocalFiles(config.general.proc_root),
                             session_profile=profile)
    db, watcher = choose_history(config.general.db, args.db)
    unwritten = history_words(db)  # "history not written since 14:02: disk full (...)" or ""
    store = open_existing(db)
    try:
        decision = _watchers_decision(watcher)  # the owner's, under its config (a root service's, say)
        by = "watcher" if decision is not None else "here"
        if decision is None:
            decision, _ = decision_now(config, store, sample, Facts(wsl.mode if wsl else None, gradual))
        ws = workingset.load(store)
    finally:
        if store:
            store.close()
    extra = [("WSL autoMemoryReclaim", wsl.describe())] if wsl else []
    extra.append(("watcher", watcher.words() if watcher else f"none running (history {db}); reclaims by rule "
                  "and schedule need `vmmemctl watch` or the service"))
    extra += [("history", unwritten)] if unwritten else []
    now = time.time()
    extra.append(("gradual", workingset.status_words(ws, config.reclaim, now)))
    stop = report.gradual_bound(sample, config, gradual, ws, now)
    extra += [("gradual", stop["words"])] if stop else []
    groups = _cgroups(config)
    extra.append(("who holds the cache", report.cgroups_status_words(groups)))
    extra += [("aimed at groups", f"{who}: cgroup {aim.glob}: {aim.words()}"
               + ("" if aim.cache is not None else "; it does not fire")) for who, aim in aims]
    if args.json:
        data = report.status_json(sample, p.environment, decision)
        data["decision"]["by"] = by  # "watcher": its latest tick's, under its config; "here": this config's
        data["wsl_auto_memory_reclaim"] = {"mode": wsl.mode, "source": wsl.source} if wsl else None
        data["history_not_written"] = unwritten or None
        data["watcher"] = watcher.to_json() if watcher else None
        data["history"] = str(db)
        data["working_set"] = workingset.status_json(ws, config.reclaim, now)
        data["lower_bound_bytes"] = stop["bytes"] if stop else None  # gradual's, as `reclaim --dry-run` gives it
        data["lower_bound_source"] = stop["source"] if stop else None
        # does Active(file) say "used more than once"? not under MGLRU (guest.mglru): then no "active" bound
        data["active_file_reuse_signal"] = reuse_signal(sample.guest.mglru)
        usable = groups.hierarchy.usable
        data["cgroups"] = [g.to_json() for g in report.holders(groups, 5)] if usable else None
        data["cgroups_why"] = groups.hierarchy.why
        data["aims"] = [{"who": who, **aim.to_json()} for who, aim in aims]
        print(json.dumps(data, indent=2))
    else:
        whose = ("the watcher's" if by == "watcher" else
                 "worked out here, under this config: the watcher did not answer this user" if watcher else "")
        print(report.status_text(sample, p.environment, decision, extra, by=whose))
    return 0


def _watchers_decision(watcher: Any) -> Any:
    """The running watcher's latest decision, asked through its control endpoint (``hello``): what it
    does under its own config, which may not be this user's (a root service with auto-reclaim on). None
    when there is no watcher or it does not answer this user (then the policy runs here, as before)."""
    if watcher is None or watcher.control is None:
        return None
    from monitor.control.client import call
    from monitor.policy.rules import Decision

    try:
        said = call(watcher.control, "hello", timeout=2.0)["decision"]
        if said is None:
            return None
        return Decision(said["action"], said["reason"], method=said.get("method"), rule=said.get("rule"),
                        held=said.get("held"))
    except (UserError, OSError, KeyError, TypeError) as exc:
        import logging

        logging.getLogger(__name__).info("the watcher did not give its decision: %s", exc)
        return None


def _cgroups(config: Config):
    """Every cgroup v2 group and its memory, read on this machine (or the --proc-root tree)."""
    from monitor.kernel.cgroups import list_groups_here

    return list_groups_here(config.general.proc_root, through_exec=bool(config.guest.exec))


def cmd_cgroups(args: argparse.Namespace) -> int:
    from monitor.cli import report

    listing = _cgroups(load(args))
    if args.json:
        print(json.dumps(listing.to_json(), indent=2))
    else:
        print(report.cgroups_text(listing, args.top))
    return 0


def cmd_reclaim(args: argparse.Namespace) -> int:
    from monitor.cli import report
    from monitor.history.places import db_path
    from monitor.reclaim.record import ReclaimRequest
    from monitor.watch.wiring import Wiring

    config = load(args)
    paths = _path_args(args)
    if args.cgroup is not None and (paths or args.method):
        raise UserError("reclaim: --cgroup reclaims that group gradually; it takes no --path or --method")
    remote = _reclaim_by_watcher(args, config, paths)
    if remote is not None:
        return remote
    if paths:
        return _reclaim_paths(args, config, paths)
    progress = _progress_printer() if sys.stderr.isatty() else None
    # Ctrl-C stops between steps (and ends the settle): what ran is printed and recorded, exit 130.
    with _stop_on_sigint() as stop:
        wiring = Wiring(config, db_path(config, args.db), stop=stop)
        try:
            request = ReclaimRequest(args.method or config.reclaim.method, dry_run=args.dry_run, settle=args.settle,
                                     cgroup=args.cgroup or "")
            result = wiring.reclaim(request, progress=progress)
        except PrivilegeError as exc:
            if args.json:  # a script reads stdout: give it JSON too; the one line still goes to stderr
                print(json.dumps(_privilege_json(exc), indent=2))
            raise
    if progress:
        print("\r\033[K", end="", file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(report.reclaim_text(result))
    if stop.is_set():
        recorded = "" if args.dry_run else " and recorded in the history"
        print(f"vmmemctl: interrupted: what ran before it is above{recorded}", file=sys.stderr)
        return 130
    return 1 if result.error else 0


RECLAIM_WAIT = 3600.0  # a gradual reclaim of a large cache takes minutes; the watcher bounds its own steps


def _path_args(args: argparse.Namespace) -> list[str]:
    """`reclaim --path`'s trees, absolute (a watcher runs elsewhere), checked before anyone reclaims."""
    paths = [str(Path(p).expanduser().absolute()) for group in (args.path or []) for p in group]
    if paths and args.method:
        raise UserError("reclaim: --path gives back those trees' cache; it takes no --method")
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise UserError(f"reclaim --path: {missing[0]}: no such file or directory")
    return paths


def _reclaim_by_watcher(args: argparse.Namespace, config: Config, paths: list[str]) -> int | None:
    """With a watcher recording, the watcher reclaims (as root, for a root service) and says what it
    gave back; None when no watcher records this history (this process reclaims, if it may)."""
    fields = {"paths": paths} if paths else {"method": args.method} if args.method else {}
    if args.cgroup is not None:
        fields["cgroup"] = args.cgroup
    if args.settle is not None:
        fields["settle"] = args.settle
    answer = ask_watcher(config, args.db, "reclaim", timeout=RECLAIM_WAIT, dry_run=bool(args.dry_run), **fields)
    if answer is None:
        return None
    if getattr(args, "reader", "auto") != "auto":
        print(f"vmmemctl: --reader {args.reader} applies when this process reclaims; the watcher reads page "
              "residency its own way (auto)", file=sys.stderr)
    print(json.dumps(answer["reclaim"], indent=2) if args.json else answer["text"])
    return 1 if answer["reclaim"].get("error") else 0


def _reclaim_paths(args: argparse.Namespace, config: Config, paths: list[str]) -> int:
    """`reclaim --path`: the cache of those trees only (monitor/reclaim/paths.py)."""
    from monitor.cli import report
    from monitor.history.places import db_path
    from monitor.pagecache.residency import choose_reader
    from monitor.reclaim.record import ReclaimRequest
    from monitor.watch.wiring import Wiring

    tty = sys.stderr.isatty()
    with _stop_on_sigint() as stop:
        request = ReclaimRequest(paths=tuple(paths), dry_run=args.dry_run, settle=args.settle)
        result = Wiring(config, db_path(config, args.db)).reclaim(
            request, progress=_progress_line if tty else None, stop=stop, reader=choose_reader(args.reader))
    if tty:
        print("\r\033[K", end="", file=sys.stderr)
    print(json.dumps(result.to_json(), indent=2) if args.json else report.reclaim_text(result))
    return 1 if result.error else 0


def _progress_line(text: str) -> None:
    print(f"\r\033[K{text}", end="", file=sys.stderr, flush=True)


def _privilege_json(exc: PrivilegeError) -> dict:
    from monitor.kernel.privilege import missing_right_hint

    hint = missing_right_hint()
    error = str(exc).removesuffix(hint).rstrip(": ")
    return {"error": error, "hint": hint if error != str(exc) else "run it as root (README: Reclaim without root)"}


def _progress_printer():
    def show(text: str) -> None:
        print(f"\r\033[K{text}", end="" if text.startswith("settling") else "\n", file=sys.stderr, flush=True)
    return show


def cmd_cache(args: argparse.Namespace) -> int:
    from monitor.kernel.procfs import LocalFiles
    from monitor.pagecache.residency import choose_reader
    from monitor.pagecache.scan import (
        default_paths,
        progress_line,
        scan_json,
        scan_text,
        scan_trees,
    )

    config = load(args)
    paths = args.paths or default_paths()
    missing = [p for p in paths if not Path(p).expanduser().exists()]
    if missing:
        raise UserError(f"cache: {missing[0]}: no such file or directory")
    tty = sys.stderr.isatty()

    def show(stats, cached) -> None:
        print(f"\r\033[K{progress_line(stats, cached)} (Ctrl-C: stop and show what was found)",
              end="", file=sys.stderr, flush=True)
    with _stop_on_sigint() as stop:
        result = scan_trees(LocalFiles(config.general.proc_root), paths, depth=args.depth, top=args.top,
                            one_file_system=args.one_file_system, reader=choose_reader(args.reader),
                            stop=stop, progress=show if tty else None)
    if tty:
        print("\r\033[K", end="", file=sys.stderr)
    if args.json:
        print(json.dumps(scan_json(result, args.top), indent=2))
    else:
        print(scan_text(result, args.top))
    return 130 if result.stats.interrupted else 0


def _stop_on_sigint():
    """Ctrl-C sets an event the walk checks, so a long scan stops and still reports what it found."""
    import contextlib
    import signal
    import threading

    @contextlib.contextmanager
    def handler():
        stop = threading.Event()
        previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
        try:
            yield stop
        finally:
            signal.signal(signal.SIGINT, previous)
    return handler()


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number >= 1")
    return int(text)


def cmd_snooze(args: argparse.Namespace) -> int:
    return _set_state(args, "snooze")


def cmd_pause(args: argparse.Namespace) -> int:
    return _set_state(args, "pause")


def cmd_resume(args: argparse.Namespace) -> int:
    args.duration = "0"
    return _set_state(args, "pause")


def _set_state(args: argparse.Namespace, what: str) -> int:
    from monitor.cli.report import iso
    from monitor.history.places import db_path
    from monitor.history.store import Store
    from monitor.policy.state import set_pause, set_snooze
    from monitor.units import UnitError, parse_duration

    config = load(args)
    try:
        seconds = parse_duration(args.duration)
    except UnitError as exc:
        raise UserError(f"{what}: got {args.duration!r}; expected {exc}") from None
    asked = ask_watcher(config, args.db, what, seconds=seconds)  # the watcher owns the state
    if asked is not None:
        until = asked["snoozed_until" if what == "snooze" else "paused_until"]
    else:  # nobody records this history: it is ours to write
        with Store(db_path(config, args.db)) as store:
            setter = set_snooze if what == "snooze" else set_pause
            state = setter(store, seconds)
        until = state.snoozed_until if what == "snooze" else state.paused_until
    if what == "snooze":
        print(f"snoozed until {iso(until)}: no notifications, prompts or rule reclaims" if until else "snooze cleared")
    else:
        print(f"auto-reclaim paused until {iso(until)}" if until else "auto-reclaim resumed")
    return 0


def ask_watcher(config: Config, db: str | None, op: str, timeout: float = 10.0, **fields) -> dict | None:
    """Send ``op`` to the watcher recording the history this command uses (found without flags:
    the system's, then the user's); its result, or None when no watcher records it. A watcher
    that refuses, or does not answer, is one line (ControlError)."""
    from monitor.control.client import call
    from monitor.history.places import choose_history

    _, watcher = choose_history(config.general.db, db)
    if watcher is None:
        return None
    if watcher.control is None:
        raise UserError(f"{watcher.words()} takes no requests (a dashboard, or an older watcher): "
                        "act from that dashboard, or restart it as `vmmemctl watch`")
    print(f"asking the watcher: {watcher.words()}", file=sys.stderr)
    return call(watcher.control, op, timeout=timeout, **fields)


def cmd_watch(args: argparse.Namespace) -> int:
    from monitor.watch import scheduling  # noqa: F401  (first: APScheduler's lean import, before any thread)
    from monitor.history.places import db_path
    from monitor.notify import build_notifier
    from monitor.watch import daemon
    from monitor.history.instance import take_instance_lock
    from monitor.watch.wiring import Wiring

    config, listen = watch_config(args)
    wiring = Wiring(config, db_path(config, args.db))
    lock = take_instance_lock(wiring.db)
    claim = None
    try:
        logs.to_watch_log(config.general.log_level,
                          Path(args.log_file) if args.log_file else daemon.default_log_file())
        claim, owner = _claim_vm(config)
        probes = wiring.probes()
        metrics, server = _start_metrics(listen, probes.environment)
        recorder = wiring.recorder(build_notifier(config.notify), metrics=metrics, probes=probes)
        reloader = daemon.Reloader(lambda: watch_config(args), probes.environment, listen, server)
        try:
            if owner is not None:
                recorder.acts, recorder.vm_owner = False, owner
                recorder.retake = lambda: None if (now := claim.try_take()) is None else now.words()
                recorder.store.add_event("watch", f"recording only: {owner} owns this VM ([control] "
                                                  "second_watcher = \"record\"): no rules, schedules or reclaims here")
                daemon.log.warning("recording only: %s owns this VM", owner)
            refusal = wiring.reclaim_refusal() if recorder.acts else None
            if refusal:
                recorder.store.add_event("error", f"reclaims will fail: {refusal}")
                daemon.log.warning("reclaims will fail: %s", refusal)
            control = _start_control(recorder, wiring.db, tuple(args.allow))
            if args.samples:
                _stop_after(recorder, args.samples, wiring.stop)
            try:
                return daemon.run(recorder, wiring.stop, server, reloader)
            finally:
                control.close()
        finally:
            recorder.close()
    finally:
        if claim is not None:
            claim.release()
        lock.__exit__(None, None, None)


def _stop_after(recorder, samples: int, stop) -> None:
    """`watch --samples N`: the watcher stops as SIGTERM stops it once N ticks have run (a bounded run:
    a check, the Windows smoke test)."""
    tick, done = recorder.tick, [0]

    def counted():
        sample = tick()
        done[0] += 1
        if done[0] >= samples:
            stop.set()
        return sample
    recorder.tick = counted  # the job table is built later (daemon.run): its tick job runs this one


def _claim_vm(config: Config):
    """One watcher acts per VM (every WSL distro shares /mnt/wsl): (the claim, None) when we own it,
    else (the claim, who owns it in words); with [control] second_watcher = "exit", one line instead."""
    import os

    from monitor.kernel.vmclaim import VmClaim, claim_dir, distro_name

    where = claim_dir(os.environ)  # this machine's own mounts: never a recorded tree (--proc-root)
    claim = VmClaim(where.path, distro_name(os.environ))
    owner = claim.try_take()
    if owner is None:
        return claim, None
    if config.control.second_watcher == "exit":
        raise AlreadyActing(f"{owner.words()} owns this VM ({where.why}); this watcher exits "
                            "([control] second_watcher = \"exit\")")
    return claim, owner.words()  # (the recorder tries the claim again once a minute: VmClaim.try_take)


class AlreadyActing(UserError):
    exit_code = 1


def _start_control(recorder, db: Path, allowed: tuple[str, ...]):
    """The watcher's control endpoint: clients' actions, carried out here (monitor.watch.requests)."""
    import os
    import signal
    import socket

    from monitor.control.server import ControlServer, NoControl
    from monitor.history.places import control_path
    from monitor.watch.requests import Requests

    if not hasattr(socket, "AF_UNIX"):  # Windows CPython has no Unix sockets: clients read the history
        recorder.store.add_event("watch", "no control endpoint (no Unix sockets on Windows): other commands act "
                                          "on the history themselves; a changed config needs a restart")
        return NoControl()
    requests = Requests(recorder, lambda: os.kill(os.getpid(), signal.SIGHUP), allowed)
    server = ControlServer(control_path(db), requests.handle, requests.authorize)
    server.start()
    recorder.control = server.path
    return server


def watch_config(args: argparse.Namespace) -> tuple[Config, str]:
    """The watcher's config and metrics address: the file, then the command line (again on SIGHUP)."""
    config = load(args)
    if args.interval is not None:
        config = dataclasses.replace(config, sampling=dataclasses.replace(config.sampling, interval=args.interval))
    return config, args.metrics if args.metrics is not None else config.metrics.listen


def cmd_reload(args: argparse.Namespace) -> int:
    """The watcher recording this history re-reads its config: asked through its control endpoint
    (so a user may reload a root service), else by SIGHUP (a watcher of an older version)."""
    import os
    import signal

    from monitor.history.places import choose_history

    config = load(args)
    db, watcher = choose_history(config.general.db, args.db)
    if watcher is None:
        raise UserError(f"no watcher is recording to {db} (start `vmmemctl watch`, or pass --db PATH)")
    if watcher.holder != "vmmemctl watch":  # SIGHUP would end a dashboard, not reload it
        raise UserError(f"{db} is recorded by {watcher.holder} (pid {watcher.pid}), which reads its config at start: "
                        "restart it")
    if watcher.control is not None:
        ask_watcher(config, args.db, "reload")
    elif watcher.pid == 0:
        raise UserError(f"the lock of {db} does not say which process holds it; reload it by hand (kill -HUP)")
    elif not hasattr(signal, "SIGHUP"):  # Windows: no signal for it, and no control endpoint there either
        raise UserError(f"the watcher of {db} (pid {watcher.pid}) cannot be asked to reload on Windows: restart it")
    else:
        try:
            os.kill(watcher.pid, signal.SIGHUP)
        except ProcessLookupError:
            raise UserError(f"the watcher of {db} (pid {watcher.pid}) is gone") from None
        except PermissionError:
            raise UserError(f"not allowed to signal the watcher of {db} (pid {watcher.pid}): run as its user "
                            "(or `systemctl reload vmmemctl`)") from None
    print(f"asked the watcher (pid {watcher.pid}) to re-read its config; its log and `vmmemctl history --events` "
          "say whether it took it")
    return 0


def _start_metrics(listen: str, environment):
    if not listen:
        return None, None
    from monitor.config.schema import split_listen
    from monitor.watch.metrics import Metrics

    try:
        host, port = split_listen(listen)
    except ValueError as exc:
        raise UserError(f"--metrics: got {listen!r}; expected {exc}") from None
    metrics = Metrics(environment)
    return metrics, metrics.serve(host, port)


def cmd_history(args: argparse.Namespace) -> int:
    from monitor.cli import report
    from monitor.history.places import choose_history
    from monitor.history.store import Store

    config = load(args)
    path, _ = choose_history(config.general.db, args.db)  # the running watcher's, without flags
    if not path.exists():
        if args.db:  # they chose this file: advising --db again would be no help
            raise UserError(f"no history at {path} (--db): check the path, or record one there with "
                            f"`vmmemctl watch --db {args.db}`")
        raise UserError(f"no history at {path}: start `vmmemctl watch` (or `vmmemctl tui`) first, or pass --db PATH")
    now = time.time()
    with Store(path, readonly=True) as store:  # a reader: works on a history it may not write
        if args.events:
            rows = store.events(since=now - args.since)
            print(report.events_export(rows, args.format))
        else:
            tier, rows = store.series(now - args.since, now)
            print(report.samples_export(rows, args.format, tier))
    return 0


def cmd_notify(args: argparse.Namespace) -> int:
    from monitor.notify import notify_test

    config = load(args)
    # The reasons are the report, on stdout; the notifier also logs them (for the watcher's log),
    # which with no handler set would print them a second time on stderr (issue 18).
    logs.silence()
    code, text = notify_test(config)
    print(text)
    return code


def cmd_service_install(args: argparse.Namespace) -> int:
    import os

    from monitor import service
    from monitor.kernel.portable import is_root
    from monitor.kernel.privilege import vmmemctl_executable

    if os.name == "nt":  # Windows CPython: both installers write into the distro (a unit, a task that wakes it)
        raise UserError("service install: run it inside the WSL distro (--windows-task there installs the "
                        "Windows task)")
    if args.windows_task:
        distro = args.distro or os.environ.get("WSL_DISTRO_NAME")
        if not distro:
            raise UserError("service install --windows-task: which distro? pass --distro NAME "
                            "(or run it inside that distro)")
        from monitor.kernel.windows import find_windows_tool

        user = args.windows_user or service.windows_user(find_windows_tool)
        xml = service.windows_task_xml(distro, vmmemctl_executable(), _watch_args(args), user=user)
        if not user:
            print("vmmemctl: no Windows user (whoami.exe /user did not answer; pass --windows-user SID or DOMAIN\\name): "
                  "only an administrator can register this task", file=sys.stderr)
        if args.output:
            Path(args.output).write_bytes(service.encode_task_xml(xml))
            print(f"wrote {args.output} (UTF-16); register it in Windows with:\n"
                  f"  schtasks.exe /create /xml {Path(args.output).name} /tn vmmemctl\n{service.SCHTASKS_NOTE}")
        else:
            print(service.task_xml_as_utf8(xml), end="")
            print("vmmemctl: schtasks.exe wants UTF-16: write the file with --output FILE, then "
                  "schtasks.exe /create /xml FILE /tn vmmemctl", file=sys.stderr)
        return 0
    scope = "system" if args.system or (not args.user and is_root()) else "user"
    code, text = service.install(scope, args.print, vmmemctl_executable(),
                                 _watch_args(args) if scope == "system" else ["watch"])
    if args.print and (hidden := service.tmp_conflict(vmmemctl_executable())):
        print(f"vmmemctl: warning: {hidden}", file=sys.stderr)  # the unit all the same: --print only shows
    if code == 0:
        print(text)
    else:
        print(f"vmmemctl: {text}", file=sys.stderr)
    return code


def _watch_args(args: argparse.Namespace) -> list[str]:
    """The root watcher's command line: who besides root may act through it. `sudo vmmemctl service
    install` allows the user who ran sudo, so their dashboard's Reclaim works with the root service."""
    import os

    users = args.allow if args.allow is not None else \
        [u for u in [os.environ.get("SUDO_USER") or os.environ.get("USER") or ""] if u and u != "root"]
    words = ["watch"]
    for user in users:
        if not user or not all(c.isalnum() or c in "._-" for c in user):
            raise UserError(f"service install --allow: got {user!r}; expected a user name")
        words += ["--allow", user]
    return words


def cmd_doctor(args: argparse.Namespace) -> int:
    import dataclasses as dc
    import os

    from monitor.cli import doctor
    from monitor.kernel.environment import detect_environment
    from monitor.kernel.procfs import LocalFiles

    config_check = doctor.check_config(args.config)
    try:
        config = load_config(find_config_path(args.config))
    except ConfigError:
        config = Config()  # the config check says what is wrong; the rest runs on the defaults
    if args.proc_root:
        config = dc.replace(config, general=dc.replace(config.general, proc_root=args.proc_root))
    problem = check_proc_root(config.general.proc_root)
    if problem:
        raise UserError(f"proc root {problem}")
    if args.db:
        config = dc.replace(config, general=dc.replace(config.general, db=args.db))
    files = LocalFiles(config.general.proc_root)
    ctx = doctor.Context(config, files, os.environ, detect_environment(files, os.environ), notify=args.notify)
    checks = doctor.run_checks(ctx, config_check)
    print(json.dumps(doctor.as_json(checks), indent=2) if args.json else doctor.as_table(checks))
    return 0 if doctor.as_json(checks)["ok"] else 1


def cmd_tui(args: argparse.Namespace) -> int:
    # The only place the core reaches the TUI, and only for this command: `watch` and the
    # rest never import textual (tests/test_headless.py).
    from tui.app import run

    config = load(args)
    return run(config, args)


def cmd_privileged_write(args: argparse.Namespace) -> int:
    from monitor.kernel.privilege import privileged_write

    try:
        privileged_write(args.path, args.value)
    except OSError as exc:
        print(f"vmmemctl: [Errno {exc.errno}] {exc.strerror}", file=sys.stderr)
        return 1
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    from monitor.cli.report import rule_action_words

    path = args.file or find_config_path(args.config)
    config = load_config(path)
    print(f"{path or 'no config file'}: OK" + ("" if path else " (all defaults)"))
    for i, rule in enumerate(config.rule):
        sign = "<" if rule.falls else ">"
        gate = f" while reclaimable > {rule.if_reclaimable_above}" if rule.if_reclaimable_above is not None else ""
        aim = f" of cgroup {rule.cgroup}" if rule.cgroup else ""
        print(f"  rule[{i}] {rule.label}: {rule_action_words(rule.action, config)} when {rule.metric}{aim} {sign} "
              f"{rule.threshold} for {rule.for_:g}s{gate}")
    if config.schedule:
        from monitor.watch.scheduling import next_runs

        for i, sched in enumerate(config.schedule):
            runs = ", ".join(t.isoformat(timespec="minutes") for t in next_runs(sched.cron, 3))
            what = "cache of " + ", ".join(sched.path) if sched.path else \
                f"gradual in cgroup {sched.cgroup}" if sched.cgroup else sched.method
            print(f"  schedule[{i}] {sched.name or sched.cron!r} ({what}): next {runs}")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    from monitor.cli.report import config_toml
    from monitor.history.places import db_path
    from monitor.service.common import SYSTEM_CONFIG

    config = load(args)
    print(f"# effective config ({config.path or 'defaults: no config file'})")
    if str(config.path or "") != SYSTEM_CONFIG:  # the root service reads its own (issue 28)
        print(f"# (the system service, `sudo vmmemctl service install`, reads {SYSTEM_CONFIG}; "
              "`vmmemctl status` names the running watcher)")
    print(config_toml(config, db_path(config, args.db)), end="")
    return 0


# ------------------------------------------------------------------ parser


def _duration(text: str) -> float:
    from monitor.units import UnitError, parse_duration

    try:
        return parse_duration(text)
    except UnitError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = Parser(prog="vmmemctl", parents=[common_options(after_command=False)], description=(
        "Watch how much memory the WSL2 VM holds on the host and give the idle part back."))
    parser.add_argument("--version", action="version", version=f"vmmemctl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    p = sub.add_parser("status", parents=[common], help="one snapshot: where the memory is now")
    p.add_argument("--json", action="store_true", help="print one JSON object (bytes as integers, unknown as null)")
    p.add_argument("--cpu-window", type=float, default=0.25, metavar="SECONDS",
                   help="measure CPU busy over this long (default 0.25)")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("reclaim", parents=[common], help="give memory back now, and report what came back "
                       "(the running watcher does it, when one records)")
    p.add_argument("--method", choices=METHODS,
                   help="how (default: [reclaim] method, auto)")
    p.add_argument("--dry-run", action="store_true", help="say what would be written; write nothing")
    p.add_argument("--json", action="store_true", help="print the measured result as JSON")
    p.add_argument("--settle", type=_duration, metavar="DURATION",
                   help="watch the host footprint this long afterwards (default: [reclaim] settle, 10s)")
    p.add_argument("--path", action="append", nargs="+", metavar="PATH",
                   help="give back only the page cache of these trees (no root needed for your files), "
                        "then compact")
    p.add_argument("--cgroup", metavar="PATH|NAME",
                   help="give back one cgroup v2 group's page cache, gradually (stops on its refaults), then compact")
    p.add_argument("--reader", choices=["auto", "cachestat", "mincore"], default="auto",
                   help=argparse.SUPPRESS)  # with --path: tests force mincore
    p.set_defaults(func=cmd_reclaim)

    from monitor.cli.run import add_parser as add_run
    add_run(sub, common)

    p = sub.add_parser("cache", parents=[common], help="what is in the page cache, by directory")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="trees to scan (default: your home; as root also /var and /tmp)")
    p.add_argument("--depth", type=_positive, default=2, metavar="N",
                   help="roll up to directories N levels below each PATH (default 2)")
    p.add_argument("--top", type=_positive, default=15, metavar="N", help="show the N largest (default 15)")
    p.add_argument("--json", action="store_true", help="print one JSON object (bytes as integers)")
    p.add_argument("--one-file-system", action="store_true", help="do not cross into other filesystems")
    p.add_argument("--reader", choices=["auto", "cachestat", "mincore"], default="auto",
                   help=argparse.SUPPRESS)  # tests and the bench force one; cachestat where the kernel has it
    p.set_defaults(func=cmd_cache)

    p = sub.add_parser("cgroups", parents=[common], help="who holds the cache: each cgroup v2 group's page cache, "
                       "anon and memory.current, the largest first (read-only)")
    p.add_argument("--json", action="store_true", help="print one JSON object (every group; bytes as integers)")
    p.add_argument("--top", type=_positive, default=25, metavar="N", help="show the N largest (default 25)")
    p.set_defaults(func=cmd_cgroups)

    p = sub.add_parser("tui", parents=[common], help="the dashboard: where the memory is, where it is going; act")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--standalone", action="store_true",
                      help="sample by itself even if a watcher is running (default: attach to a running watcher)")
    mode.add_argument("--view", action="store_true",
                      help="only read the history (e.g. someone's recorded --db); never record into it")
    p.add_argument("--interval", type=_duration, metavar="DURATION",
                   help="refresh/sampling interval (default: [sampling] interval, 2s)")
    p.set_defaults(func=cmd_tui)

    p = sub.add_parser("watch", parents=[common], help="the background watcher: sample, store, notify, prompt, reclaim")
    p.add_argument("--interval", type=_duration, metavar="DURATION",
                   help="guest sampling interval (default: [sampling] interval, 2s)")
    p.add_argument("--metrics", metavar="HOST:PORT",
                   help="serve Prometheus metrics, e.g. 127.0.0.1:9469 (default: [metrics] listen, off)")
    p.add_argument("--log-file", metavar="PATH", help="log here (default: watch.log in the user log dir)")
    p.add_argument("--allow", action="append", metavar="USER", default=[],
                   help="a user who may act through this watcher, beside root and [control] users (repeatable)")
    p.add_argument("--samples", type=_positive, metavar="N",
                   help="stop after N samples (default: run until stopped)")
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("reload", parents=[common], help="make the running watcher re-read its config (asked through its control endpoint)")
    p.set_defaults(func=cmd_reload)

    p = sub.add_parser("history", parents=[common], help="export the recorded history")
    p.add_argument("--since", type=_duration, default=3600.0, metavar="DURATION", help="how far back (default 1h)")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--events", action="store_true", help="events (crossings, notifications, prompts, reclaims, "
                   "errors) instead of samples")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("service", help="run the watcher as a service")
    service_sub = p.add_subparsers(dest="service_command", metavar="ACTION", parser_class=Parser)
    service_sub.required = True
    c = service_sub.add_parser("install", help="install (or print) a systemd unit, or a Windows task")
    scope = c.add_mutually_exclusive_group()
    scope.add_argument("--user", action="store_true", help="a user unit (notifies and prompts; cannot reclaim)")
    scope.add_argument("--system", action="store_true", help="a system unit running as root (default as root)")
    scope.add_argument("--windows-task", action="store_true",
                       help="print a Windows Task Scheduler XML that runs the watcher from the Windows side")
    c.add_argument("--print", action="store_true", help="print the unit; install nothing")
    c.add_argument("--distro", help="with --windows-task: the WSL distro (default: this one)")
    c.add_argument("--output", metavar="FILE", help="with --windows-task: write the XML (UTF-16) here")
    c.add_argument("--windows-user", metavar="SID|DOMAIN\\NAME",
                   help="with --windows-task: the Windows account (default: its SID, from whoami.exe /user)")
    c.add_argument("--allow", action="append", metavar="USER", default=None,
                   help="a user who may act through the root watcher (its dashboard's Reclaim, snooze...); "
                        "repeatable (default: the user who ran sudo, or who runs this)")
    c.set_defaults(func=cmd_service_install)

    p = sub.add_parser("doctor", parents=[common], help="check everything vmmemctl depends on, on this machine")
    p.add_argument("--json", action="store_true", help='{"checks": [{name, status, detail, hint}], "ok": bool}')
    p.add_argument("--notify", action="store_true", help="also send a test toast")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("notify", parents=[common], help="notifications")
    p.add_argument("--test", action="store_true", required=True,
                   help="send a test notification; say which backend delivered it, or why none could")
    p.set_defaults(func=cmd_notify)

    p = sub.add_parser("snooze", parents=[common], help="no notifications, prompts or rule reclaims for a while")
    p.add_argument("duration", nargs="?", default="1h", help="for how long (default 1h; 0 clears)")
    p.set_defaults(func=cmd_snooze)
    p = sub.add_parser("pause", parents=[common], help="no automatic reclaims for a while")
    p.add_argument("duration", nargs="?", default="1h", help="for how long (default 1h)")
    p.set_defaults(func=cmd_pause)
    p = sub.add_parser("resume", parents=[common], help="end a pause of automatic reclaims")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("config", help="check or show the configuration")
    config_sub = p.add_subparsers(dest="config_command", metavar="ACTION", parser_class=Parser)
    config_sub.required = True
    c = config_sub.add_parser("check", parents=[common], help="validate a config file; list schedules' next runs")
    c.add_argument("file", nargs="?", help="the file to check (default: the one vmmemctl would use)")
    c.set_defaults(func=cmd_config_check)
    c = config_sub.add_parser("show", parents=[common], help="print the effective config as TOML")
    c.set_defaults(func=cmd_config_show)

    # The narrow privileged path (see monitor/privilege.py); not for people, so not listed.
    p = sub.add_parser("_privileged-write")
    p.add_argument("path")
    p.add_argument("value")
    p.set_defaults(func=cmd_privileged_write)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:  # ConfigError included: one line (one per error in a config), its own exit code
        for line in str(exc).splitlines() or [""]:
            print(f"vmmemctl: {exc.label}{line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("vmmemctl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0  # `vmmemctl history | head`: the reader left; nothing to report


if __name__ == "__main__":
    sys.exit(main())
