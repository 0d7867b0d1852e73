"""`vmmemctl run -- COMMAND ARGS...`: a job in a group of its own, whose cache goes back when it ends.

Which way it runs (said on stderr before COMMAND starts):

    group   root, cgroup v2 with a memory controller: a fresh group (monitor.reclaim.cgroup_target's
            naming), ``--cache-max`` as its memory.high; when COMMAND exits, a gradual reclaim of that
            group only (whole steps; its refault stop cannot fire, as a refault is charged to the
            reader's group and the job's is empty now; no active-list bound: nobody in the group uses
            its pages any more), compaction, the report,
            an event with trigger ``run:COMMAND``; then the group is removed. The watcher owns the
            history: with one running, it is asked to do that reclaim (as ``reclaim`` asks it).
    scope   not root, systemd-run and a user manager: ``systemd-run --user --scope`` (``--cache-max``
            as MemoryHigh=). The scope goes when COMMAND ends and its cache falls to the parent, so
            nothing is given back per group at the end: that needs root.
    plain   neither (or cgroup v1 only, or host mode): COMMAND runs as is; nothing per group.

Starting inside the group: COMMAND must not run a single instruction outside it (its first reads
would be charged elsewhere). The child is a tiny Python stub (:data:`STUB`) that waits on a pipe;
the parent writes the child's pid to the group's cgroup.procs and only then tells it to go, and
the stub execs COMMAND (same pid, so same group). No ``preexec_fn``: it is unsafe with threads.
If the move fails, the stub is told to stop and COMMAND never runs.

Signals: SIGTERM, SIGHUP and SIGINT sent to `vmmemctl run` are sent on to COMMAND. Those the
terminal sends (Ctrl-C, a hangup) reach the whole foreground process group, COMMAND included, so
they are not sent twice: the signal's ``si_code`` (SI_KERNEL) tells them apart. The exit code is
COMMAND's; death by signal N is 128+N, as a shell says it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable, Sequence

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
SI_KERNEL = 0x80  # si_code of a signal the kernel sent (the terminal's Ctrl-C, a hangup)
ENV_GROUP = "VMMEMCTL_RUN_CGROUP"  # COMMAND finds its group here (a script that wants to look at it)

# argv: STUB FD SIGNALS COMMAND ARGS... ; waits for one byte on FD: "1" go, anything else stop
STUB = r"""
import errno, os, signal, sys
fd, blocked, argv = int(sys.argv[1]), [int(s) for s in sys.argv[2].split(",") if s], sys.argv[3:]
for s in (signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ):
    signal.signal(s, signal.SIG_DFL)  # Python's own (KeyboardInterrupt, SIGPIPE ignored) must not reach COMMAND
go = os.read(fd, 1)
os.close(fd)
signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)  # the parent waits for these; COMMAND takes them as usual
if go != b"1":
    os._exit(126)
try:
    os.execvp(argv[0], argv)
except OSError as exc:
    print(f"vmmemctl run: {argv[0]}: {exc.strerror}", file=sys.stderr)
    os._exit(127 if exc.errno == errno.ENOENT else 126)
"""


@dataclass
class Job:
    """A started COMMAND: its process, and the group it runs in (None: scope or plain)."""

    process: subprocess.Popen
    blocked: tuple[int, ...]


def exit_code(returncode: int) -> int:
    """Popen's returncode as a shell says it: -N (killed by signal N) is 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def start(argv: Sequence[str], move: Callable[[int], None] | None, env: dict[str, str] | None = None) -> Job:
    """Start ``argv`` with the signals to forward blocked here (collected by :func:`wait`); ``move(pid)``
    puts the stopped child in its group before COMMAND runs (None: no group). An error of ``move``
    stops the child and is raised."""
    wanted = FORWARDED + (signal.SIGCHLD,)
    signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
    read, write = os.pipe()
    try:
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", STUB, str(read), ",".join(str(int(s)) for s in wanted),
                                 *argv], pass_fds=(read,), env=env)
    except BaseException:
        os.close(write)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, wanted)
        raise
    finally:
        os.close(read)
    try:
        if move is not None:
            move(proc.pid)
    except BaseException:
        os.write(write, b"0")
        os.close(write)
        proc.wait()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, wanted)
        raise
    os.write(write, b"1")
    os.close(write)
    return Job(proc, tuple(int(s) for s in wanted))


def wait(job: Job) -> int:
    """Wait for COMMAND, sending on the signals this process gets (see the module docstring); its exit
    code (128+N for death by signal N). The signals are unblocked again on return."""
    proc = job.process
    wanted = set(job.blocked)
    try:
        while proc.poll() is None:
            info = signal.sigtimedwait(wanted, 1.0)  # SIGCHLD wakes it; the timeout only guards a lost one
            if info is None or info.si_signo == signal.SIGCHLD:
                continue
            if info.si_code != SI_KERNEL:  # sent by a process (kill, a supervisor): COMMAND did not get it
                try:
                    os.kill(proc.pid, info.si_signo)
                except ProcessLookupError:
                    pass
        return exit_code(proc.returncode)
    finally:
        # a forwarded signal that arrived after the child's end is dropped, not turned on this process
        while signal.sigtimedwait(wanted, 0) is not None:
            pass
        signal.pthread_sigmask(signal.SIG_UNBLOCK, wanted)


def user_scope_argv(argv: Sequence[str], memory_high: int | None, name: str) -> list[str] | None:
    """``systemd-run --user --scope ...`` for a user with a user manager, else None."""
    runner = shutil.which("systemd-run")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runner is None or not runtime or not os.path.exists(os.path.join(runtime, "systemd", "private")):
        return None
    props = ["-p", f"MemoryHigh={memory_high}"] if memory_high else []
    return [runner, "--user", "--scope", "--quiet", "--collect", "--slice=vmmemctl", f"--unit={name}", *props,
            "--", *argv]
