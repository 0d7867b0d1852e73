"""`vmmemctl run [--cache-max SIZE] [--keep] -- COMMAND ARGS...` (monitor/reclaim/runjob.py says how).

COMMAND's stdin, stdout and stderr are its own: everything vmmemctl says goes to stderr, each
line starting "vmmemctl run:", so a pipeline that reads COMMAND's stdout reads only COMMAND's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from monitor.errors import UserError
from monitor.units import UnitError, format_bytes, parse_size


def say(text: str) -> None:
    print(f"vmmemctl run: {text}", file=sys.stderr, flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    from monitor.cli.main import load
    from monitor.reclaim import runjob
    from monitor.kernel.cgroups import run_group_name
    from monitor.reclaim.cgroup_target import CgroupError, make_run_group

    argv = list(args.command)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        raise UserError("run: expected a command after --, as in: vmmemctl run -- make -j8")
    limit = None
    if args.cache_max is not None:
        try:
            limit = parse_size(args.cache_max, allow_percent=False).bytes
        except UnitError as exc:
            raise UserError(f"run --cache-max {args.cache_max!r}: expected {exc}") from None
    config = load(args)
    name = os.path.basename(argv[0]) or argv[0]

    group, why, via = None, "", None
    if config.guest.exec:
        why = "host mode ([guest] exec): COMMAND runs on this machine, the VM's groups are elsewhere"
    elif os.geteuid() != 0:
        why = "running in a group of its own needs root (or a user manager that delegates memory)"
        via = _root_watcher(config, args.db)  # the root service makes the group for us
    else:
        from monitor.kernel.procfs import LocalFiles
        try:
            group = make_run_group(LocalFiles(config.general.proc_root), os.getpid(), argv)
            if limit is not None:
                group.set_high(limit)
        except (CgroupError, OSError) as exc:
            why = str(exc) if isinstance(exc, CgroupError) else f"cannot make a group: {exc.strerror or exc}"
            if group is not None:
                group.remove()
            group = None

    env = dict(os.environ)
    made: dict[str, str] = {}
    if via is not None:
        run_argv = argv
        def move(pid: int) -> None:
            _start_through(via, pid, argv, limit, name, args.keep, made)
    elif group is not None:
        cap = f", memory.high {format_bytes(limit)}" if limit is not None else ""
        say(f"in cgroup {group.shown}{cap}; its cache goes back when {name} ends"
            + (" (--keep: not reclaimed)" if args.keep else ""))
        env[runjob.ENV_GROUP] = group.shown
        run_argv, move = argv, group.move
    else:
        scope = runjob.user_scope_argv(argv, limit, run_group_name(os.getpid(), argv).removesuffix(".scope")) \
            if os.geteuid() != 0 and not config.guest.exec else None
        if scope is not None:
            say(f"{why}: in a systemd user scope instead{' (MemoryHigh=' + format_bytes(limit) + ')' if limit else ''}; "
                "its cache cannot be given back per group when it ends")
            run_argv = scope
        else:
            say(f"{why}: running {name} plainly; its cache cannot be given back per group"
                + (" (--cache-max ignored)" if limit is not None else ""))
            run_argv = argv
        move = None

    try:
        job = runjob.start(run_argv, move, env)
    except OSError as exc:
        if group is not None:
            group.remove()
        raise UserError(f"run: could not start {name}: {exc.strerror or exc}") from None
    code = runjob.wait(job)
    if made:
        _end_through(via, made["group"], args, name)
    if group is None:
        return code
    try:
        if not args.keep:
            _give_back(args, config, group, name)
    finally:
        problem = group.remove()
        if problem:
            say(problem)
    return code


def _root_watcher(config, db: str | None):
    """The running root watcher of the history this command uses (its control endpoint answers), or None."""
    from monitor.history.places import choose_history
    from monitor.kernel.users import user_name

    try:
        _, watcher = choose_history(config.general.db, db)
    except UserError:
        return None
    if watcher is None or watcher.control is None or watcher.user not in ("root", user_name(0)):
        return None
    return watcher


def _start_through(watcher, pid: int, argv: list[str], limit: int | None, name: str, keep: bool,
                   made: dict[str, str]) -> None:
    """Ask the root watcher to make the group and move the waiting child ``pid`` in (`run_start`); on a
    refusal the job runs plainly, said in one line."""
    from monitor.control.client import ControlError, call
    from monitor.control.protocol import MAX_ARGV, MAX_TEXT

    fields = {"pid": pid, "argv": [w[:MAX_TEXT] for w in argv[:MAX_ARGV]], **({"cache_max": limit} if limit else {})}
    try:
        answer = call(watcher.control, "run_start", timeout=30, **fields)
    except ControlError as exc:
        say(f"the watcher made no group ({exc}): running {name} plainly; its cache cannot be given back per group")
        return
    made["group"] = answer["group"]
    cap = f", memory.high {format_bytes(limit)}" if limit is not None else ""
    say(f"in cgroup {answer['group']}{cap}, made by {watcher.words()}; its cache goes back when {name} ends"
        + (" (--keep: not reclaimed)" if keep else ""))


def _end_through(watcher, shown: str, args: argparse.Namespace, name: str) -> None:
    """The job ended: the watcher gives its group's cache back (unless --keep) and removes the group."""
    from monitor.cli.main import RECLAIM_WAIT
    from monitor.control.client import ControlError, call

    fields = {"group": shown, "keep": bool(args.keep), **({"settle": args.settle} if args.settle is not None else {})}
    try:
        answer = call(watcher.control, "run_end", timeout=RECLAIM_WAIT, **fields)
    except ControlError as exc:
        say(f"{name}'s cache was not given back: {exc}")
        return
    if "reclaim" in answer:
        print(json.dumps(answer["reclaim"], indent=2) if args.json else answer["text"], file=sys.stderr)
    if answer.get("problem"):
        say(answer["problem"])


def _give_back(args: argparse.Namespace, config, group, name: str) -> None:
    """The group's cache, reclaimed by the watcher when one records (it owns the history), else here."""
    from monitor.cli import report
    from monitor.cli.main import RECLAIM_WAIT, ask_watcher
    from monitor.history.places import db_path
    from monitor.reclaim.record import ReclaimRequest
    from monitor.watch.wiring import Wiring

    settle = args.settle
    try:
        fields = {"cgroup": group.shown, "run": name, **({"settle": settle} if settle is not None else {})}
        answer = ask_watcher(config, args.db, "reclaim", timeout=RECLAIM_WAIT, **fields)
        if answer is not None:
            print(json.dumps(answer["reclaim"], indent=2) if args.json else answer["text"], file=sys.stderr)
            return
        request = ReclaimRequest("gradual", trigger=f"run:{name}", settle=settle, cgroup=group.shown,
                                 active_prior=False)
        result = Wiring(config, db_path(config, args.db)).reclaim(request)
    except UserError as exc:
        say(f"{name}'s cache was not given back: {exc}")
        return
    print(json.dumps(result.to_json(), indent=2) if args.json else report.reclaim_text(result), file=sys.stderr)


def add_parser(sub, common) -> None:
    from monitor.cli.main import _duration

    p = sub.add_parser("run", parents=[common], help="run a command in a cgroup of its own and give its page "
                       "cache back when it ends")
    p.add_argument("--cache-max", metavar="SIZE", help="the group's memory.high: its own cold pages are "
                   "reclaimed first once it holds this much (e.g. 2GiB)")
    p.add_argument("--keep", action="store_true", help="give nothing back at the end (the empty group is "
                   "still removed; its cache stays in the VM)")
    p.add_argument("--settle", type=_duration, metavar="DURATION",
                   help="watch the host footprint this long after the reclaim (default: [reclaim] settle)")
    p.add_argument("--json", action="store_true", help="print the reclaim's result as JSON (on stderr)")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND ARGS...")
    p.set_defaults(func=cmd_run)
