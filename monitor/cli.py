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
from typing import Callable, NoReturn, Sequence

from monitor import __version__
from monitor.config import Config, ConfigError, find_config_path, load_config, to_toml
from monitor.errors import UserError
from monitor.procfs import check_proc_root

Command = Callable[[argparse.Namespace], int]


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, like every other error here."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE",
                        help="config file (default: $VMMEMCTL_CONFIG, then the user config dir)")
    common.add_argument("--proc-root", metavar="DIR",
                        help="read kernel files from DIR instead of /proc (sysfs from DIR/../sys)")
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
    from monitor import probes, report

    config = load(args)
    p = probes.build(config)
    try:
        p.guest.prime()
        time.sleep(args.cpu_window)  # CPU busy is a rate: it needs two readings
        sample = p.sample()
    finally:
        p.close()
    decision = None
    if args.json:
        print(json.dumps(report.status_json(sample, p.environment, decision), indent=2))
    else:
        print(report.status_text(sample, p.environment, decision))
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    path = args.file or find_config_path(args.config)
    config = load_config(path)
    print(f"{path or 'no config file'}: OK" + ("" if path else " (all defaults)"))
    for i, rule in enumerate(config.rule):
        print(f"  rule[{i}] {rule.label}: {rule.action} when {rule.metric} > {rule.above} for {rule.for_:g}s")
    if config.schedule:
        from monitor.cron import next_runs

        for i, sched in enumerate(config.schedule):
            runs = ", ".join(t.isoformat(timespec="minutes") for t in next_runs(sched.cron, 3))
            print(f"  schedule[{i}] {sched.name or sched.cron!r} ({sched.method}): next {runs}")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    config = load(args)
    print(f"# effective config ({config.path or 'defaults: no config file'})")
    print(to_toml(config), end="")
    return 0


# ------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = Parser(prog="vmmemctl", description=(
        "Watch how much memory the WSL2 VM holds on the host and give the idle part back."))
    parser.add_argument("--version", action="version", version=f"vmmemctl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    p = sub.add_parser("status", parents=[common], help="one snapshot: where the memory is now")
    p.add_argument("--json", action="store_true", help="print one JSON object (bytes as integers, unknown as null)")
    p.add_argument("--cpu-window", type=float, default=0.25, metavar="SECONDS",
                   help="measure CPU busy over this long (default 0.25)")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("config", help="check or show the configuration")
    config_sub = p.add_subparsers(dest="config_command", metavar="ACTION", parser_class=Parser)
    config_sub.required = True
    c = config_sub.add_parser("check", parents=[common], help="validate a config file; list schedules' next runs")
    c.add_argument("file", nargs="?", help="the file to check (default: the one vmmemctl would use)")
    c.set_defaults(func=cmd_config_check)
    c = config_sub.add_parser("show", parents=[common], help="print the effective config as TOML")
    c.set_defaults(func=cmd_config_show)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (UserError, ConfigError) as exc:
        code = getattr(exc, "exit_code", 2)
        print(f"vmmemctl: {'config error: ' if isinstance(exc, ConfigError) else ''}{exc}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print("vmmemctl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0  # `vmmemctl history | head`: the reader left; nothing to report


if __name__ == "__main__":
    sys.exit(main())
