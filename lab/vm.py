"""vmmemctl lab: a QEMU guest that stands in for WSL2's ``vmmemWSL``.

The QEMU process (renamed ``vmmemWSL`` by default) plays the host-side process
whose memory the project watches; a virtio-balloon device with free page
reporting gives guest memory back to the host the way WSL2 does; a command
channel into the guest plays ``wsl.exe -d Distro -u root -e ...``.

Stdlib only (Python 3.11). Build the artefacts first with ``lab/build.sh``.

Typical use::

    from lab.vm import LabVM        # the repository root on sys.path (tests/lab/conftest.py does it)
    with LabVM(reporting=True) as vm:
        rc, out = vm.exec(["cat", "/proc/meminfo"])
        print(vm.pid, vm.rss_bytes(), vm.exec_prefix)

Command channel protocol (see guest/lab-agent): the host sends a header line
``RUN <nonce> <timeout> <len> <len> <sha256> .`` and a body of base64(cmd) +
base64(stdin), where cmd is the argv joined with ``shlex.quote``; the guest
answers ``<nonce> ACK``, then base64 stdout and stderr blocks and
``<nonce> END <rc>``. Each channel (a QEMU PCI serial port behind a
unix socket) serves one caller at a time; callers take an ``flock`` on
``<socket>.lock`` and use whichever channel is free, so a watcher daemon and a
test can call in concurrently (up to ``channels`` at once, the rest wait).

Environment variables:
    VMMEMCTL_LAB_CACHE   artefact cache (default ~/.cache/vmmemctl-lab)
    VMMEMCTL_LAB_KEEP    1 = keep the run directory (console log) after stop
"""

from __future__ import annotations

import atexit
import base64
import ctypes
import fcntl
import hashlib
import json
import math
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

HERE = Path(__file__).resolve().parent
BUILD_SH = HERE / "build.sh"
GUEST_EXEC = HERE / "guest-exec"

EXIT_TIMEOUT = 124       # guest command (or the channel) timed out
EXIT_UNREACHABLE = 125   # no VM / channel broken / all channels busy too long

DEFAULT_PROCESS_NAME = "vmmemWSL"
DATA_FILL = "/data/fill.bin"   # pseudo-random file on the guest's data disk


def default_cache_dir() -> Path:
    env = os.environ.get("VMMEMCTL_LAB_CACHE")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "vmmemctl-lab"


class LabError(RuntimeError):
    """Something went wrong with the lab (not with the guest command)."""


class LabNotBuilt(LabError):
    """The artefacts from build.sh are missing."""


class GuestUnreachable(LabError):
    """No agent answered: VM not running, socket gone, channel busy too long."""


class GuestTimeout(LabError):
    """The channel gave no complete answer in time."""


class GuestPanickedAtBoot(LabError):
    """The guest kernel panicked before its agent answered (QEMU then quits)."""

    def __init__(self, panic: str, message: str):
        super().__init__(message)
        self.panic = panic


BOOT_ATTEMPTS = 3   # boots of one guest before a panic at boot is the test's failure


def _boot_panic(console: str) -> str:
    """The first oops or panic line of a console log, or "" if there is none."""
    for line in console.splitlines():
        text = line.split("] ", 1)[-1].strip()
        if text.startswith(("Oops:", "Kernel panic", "BUG:", "general protection fault")):
            return text
    return ""


@dataclass
class GuestResult:
    returncode: int
    stdout: bytes
    stderr: bytes


# --------------------------------------------------------------------------
# Command channel client (also used by guest-exec)
# --------------------------------------------------------------------------

def _as_list(sockets: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    if isinstance(sockets, (str, os.PathLike)):
        sockets = [sockets]
    out: list[str] = []
    for s in sockets:
        out.extend(p for p in str(s).split(os.pathsep) if p)
    return out


class _Channel:
    """A locked, connected channel (context manager)."""

    def __init__(self, sockets: list[str], connect_timeout: float, lock_timeout: float):
        self.sockets = sockets
        self.connect_timeout = connect_timeout
        self.lock_timeout = lock_timeout
        self.lock_fd: int | None = None
        self.sock: socket.socket | None = None
        self.path: str | None = None

    def __enter__(self) -> "_Channel":
        present = [s for s in self.sockets if os.path.exists(s)]
        if not present:
            raise GuestUnreachable(f"no lab VM socket at {', '.join(self.sockets) or '(none given)'}")
        deadline = time.monotonic() + self.lock_timeout
        fds: dict[str, int] = {}
        try:
            while True:
                for s in present:
                    if s not in fds:
                        fds[s] = os.open(s + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
                    try:
                        fcntl.flock(fds[s], fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue
                    self.lock_fd, self.path = fds.pop(s), s
                    break
                if self.lock_fd is not None:
                    break
                if time.monotonic() >= deadline:
                    raise GuestUnreachable(
                        f"all {len(present)} lab channel(s) busy for {self.lock_timeout:.0f}s")
                time.sleep(0.02)
        finally:
            for fd in fds.values():
                os.close(fd)
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.connect_timeout)
            try:
                sock.connect(self.path)
            except OSError as e:
                sock.close()
                raise GuestUnreachable(f"cannot connect to {self.path}: {e.strerror or e}") from None
            self.sock = sock
        except BaseException:
            self._release()
            raise
        return self

    def _release(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
        if self.lock_fd is not None:
            os.close(self.lock_fd)   # drops the flock
            self.lock_fd = None

    def __exit__(self, *exc) -> None:
        self._release()

    def send(self, data: bytes) -> None:
        assert self.sock is not None
        try:
            self.sock.settimeout(self.connect_timeout + len(data) / 20_000)
            self.sock.sendall(data)
        except OSError as e:
            raise GuestUnreachable(f"writing to {self.path} failed: {e}") from None

    def lines(self, deadline: Callable[[], float]):
        """Yield reply lines; raise GuestTimeout once deadline() has passed
        (the caller moves the deadline as the answer progresses)."""
        assert self.sock is not None
        buf = b""
        while True:
            *lines, buf = buf.split(b"\n")
            for line in lines:
                yield line.rstrip(b"\r")
            remaining = deadline() - time.monotonic()
            if remaining <= 0:
                raise GuestTimeout(f"no answer on {self.path} in time")
            self.sock.settimeout(min(remaining, 5.0))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError as e:
                raise GuestUnreachable(f"reading {self.path} failed: {e}") from None
            if not chunk:
                raise GuestUnreachable(f"{self.path}: connection closed (VM gone?)")
            buf += chunk


def guest_call(
    sockets: str | os.PathLike | Sequence[str | os.PathLike],
    argv: Sequence[str],
    *,
    timeout: float = 60.0,
    stdin: bytes | None = None,
    connect_timeout: float = 5.0,
    lock_timeout: float = 120.0,
    ack_timeout: float = 30.0,
    idle_timeout: float = 15.0,
) -> GuestResult:
    """Run argv in the guest through the agent; return its exit code and output.

    ``argv`` words are shell-quoted with shlex.quote and run by the guest's
    ``sh``, so nothing is interpreted twice (pass ``["sh", "-c", script]`` for
    shell syntax). The guest kills the command's process group after
    ``timeout`` seconds (rounded up) and then reports exit code 124.

    Timeouts: ``lock_timeout`` waiting for a free channel, ``connect_timeout``
    to connect, ``ack_timeout`` for the agent to accept the request, then
    ``timeout`` (+ ``idle_timeout`` transport slack) for the command.

    Raises GuestUnreachable if no agent can be reached (no socket, QEMU gone,
    all channels busy for ``lock_timeout``, no ACK within ``ack_timeout``),
    GuestTimeout if an accepted command's answer does not arrive in time.
    """
    if not argv:
        raise ValueError("empty argv")
    sockets = _as_list(sockets)
    cmd = " ".join(shlex.quote(str(a)) for a in argv) + "\n"
    guest_timeout = max(1, math.ceil(timeout))
    nonce = secrets.token_hex(8)
    cmd_b64 = base64.b64encode(cmd.encode())
    stdin_b64 = base64.b64encode(stdin) if stdin else b""
    body = cmd_b64 + stdin_b64
    request = (f"\nRUN {nonce} {guest_timeout} {len(cmd_b64)} {len(stdin_b64)} "
               f"{hashlib.sha256(body).hexdigest()} .\n").encode() + body

    with _Channel(sockets, connect_timeout, lock_timeout) as ch:
        ch.send(request)
        # Until the ACK: ack_timeout. Then the guest itself gives up after
        # guest_timeout; allow transport slack. Then idle_timeout between lines.
        state = {"deadline": time.monotonic() + ack_timeout, "acked": False}

        prefix = nonce.encode() + b" "
        try:
            return _read_answer(ch, prefix, state, guest_timeout, idle_timeout)
        except GuestTimeout:
            if not state["acked"]:
                raise GuestUnreachable(
                    f"agent on {ch.path} did not accept the request within {ack_timeout:.0f}s") from None
            raise


def _read_answer(ch: "_Channel", prefix: bytes, state: dict, guest_timeout: int,
                 idle_timeout: float) -> GuestResult:
    out: list[bytes] = []
    err: list[bytes] = []
    target: list[bytes] | None = None
    for line in ch.lines(lambda: state["deadline"]):
        if line.startswith(prefix):
            word = line[len(prefix):]
            state["deadline"] = time.monotonic() + idle_timeout
            if word == b"ACK":
                state["acked"] = True
                state["deadline"] = time.monotonic() + guest_timeout + idle_timeout
            elif word == b"OUT":
                target = out
            elif word == b"ERR":
                target = err
            elif word.startswith(b"END "):
                try:
                    rc = int(word[4:])
                except ValueError:
                    raise LabError(f"bad end marker from guest: {line!r}") from None
                try:
                    so = base64.b64decode(b"".join(out), validate=True)
                    se = base64.b64decode(b"".join(err), validate=True)
                except ValueError as e:
                    raise LabError(f"corrupt output from guest: {e}") from None
                return GuestResult(rc, so, se)
            elif word == b"BAD":
                raise LabError("guest agent rejected the request (BAD)")
            else:
                raise LabError(f"unexpected line from guest: {line!r}")
        elif target is not None and line and b" " not in line:
            target.append(line)
            state["deadline"] = time.monotonic() + idle_timeout
        # anything else: stale output of an earlier caller, banners: ignore
    raise GuestUnreachable(f"{ch.path}: connection closed")


def guest_ping(sockets: str | os.PathLike | Sequence[str | os.PathLike],
               timeout: float = 2.0) -> bool:
    """True if one agent answers a PING within timeout."""
    nonce = secrets.token_hex(8)
    try:
        with _Channel(_as_list(sockets), timeout, timeout) as ch:
            ch.send(f"\nPING {nonce} .\n".encode())
            end = time.monotonic() + timeout
            want = f"{nonce} PONG".encode()
            for line in ch.lines(lambda: end):
                if line == want:
                    return True
    except LabError:
        return False
    return False


# --------------------------------------------------------------------------
# Artefacts
# --------------------------------------------------------------------------

def load_manifest(cache_dir: str | os.PathLike | None = None) -> dict:
    """Read <cache>/lab.json written by build.sh; raise LabNotBuilt if absent."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    path = cache / "lab.json"
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise LabNotBuilt(f"lab not built: {path} missing (run {BUILD_SH})") from None
    for key in ("kernel", "initrd", "data"):
        if not Path(manifest.get(key, "")).is_file():
            raise LabNotBuilt(f"lab artefact {key}={manifest.get(key)!r} missing (run {BUILD_SH})")
    return manifest


def lab_status(cache_dir: str | os.PathLike | None = None) -> tuple[bool, str]:
    """(usable, reason): built and qemu-system-x86_64 present?"""
    try:
        manifest = load_manifest(cache_dir)
    except LabNotBuilt as e:
        return False, str(e)
    qemu = manifest.get("qemu") or shutil.which("qemu-system-x86_64")
    if not qemu or not os.access(qemu, os.X_OK):
        return False, "qemu-system-x86_64 not installed (run lab/build.sh)"
    return True, "ok"


def build(cache_dir: str | os.PathLike | None = None, quiet: bool = False) -> None:
    """Run build.sh (idempotent; fast when cached)."""
    env = dict(os.environ)
    if cache_dir:
        env["VMMEMCTL_LAB_CACHE"] = str(cache_dir)
    subprocess.run(["bash", str(BUILD_SH)], env=env, check=True,
                   stdout=subprocess.DEVNULL if quiet else None)


# --------------------------------------------------------------------------
# QMP
# --------------------------------------------------------------------------

def qmp_command(path: str, command: str, arguments: dict | None = None,
                timeout: float = 5.0) -> dict:
    """Run one QMP command on the socket at path; return its "return" value."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        f = s.makefile("rwb")

        def read_reply() -> dict:
            while True:
                line = f.readline()
                if not line:
                    raise LabError("QMP connection closed")
                msg = json.loads(line)
                if "return" in msg or "error" in msg:
                    return msg

        f.readline()  # greeting
        f.write(b'{"execute": "qmp_capabilities"}\n')
        f.flush()
        read_reply()
        req = {"execute": command}
        if arguments:
            req["arguments"] = arguments
        f.write(json.dumps(req).encode() + b"\n")
        f.flush()
        msg = read_reply()
        if "error" in msg:
            raise LabError(f"QMP {command}: {msg['error']}")
        return msg["return"]


# --------------------------------------------------------------------------
# The VM
# --------------------------------------------------------------------------

_LIVE: "weakref.WeakSet[LabVM]" = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for vm in list(_LIVE):
        try:
            vm.stop(timeout=3.0)
        except Exception:
            pass


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def read_rss_bytes(pid: int) -> int:
    """VmRSS of a process in bytes (what Task Manager would call its memory)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise LabError(f"no VmRSS for pid {pid}")


class LabVM:
    """A QEMU/TCG guest with a virtio-balloon (free page reporting) and an agent.

    Parameters:
        reporting: free-page-reporting on the balloon (ignored if balloon=False)
        balloon:   attach virtio-balloon-pci at all
        memory:    guest RAM, QEMU -m syntax ("2G", "3072M")
        cgroup:    True = cgroup2 with the memory controller, so
                   /sys/fs/cgroup/memory.reclaim exists; False = booted with
                   cgroup_disable=memory, no memory.reclaim (fallback case)
        cache_dir: artefact cache (default $VMMEMCTL_LAB_CACHE or ~/.cache/vmmemctl-lab)
        smp:       guest CPUs (TCG threads)
        channels:  number of command channels (concurrent callers)
        process_name: name QEMU gives its process (/proc/PID/comm), "vmmemWSL"
        run_dir:   where sockets/logs go (default: a fresh temp dir, removed on stop)
        boot_timeout: seconds to wait for the agents
        extra_qemu_args / extra_kernel_args: appended verbatim
        accel:     QEMU accelerator; keep "tcg" (this host's /dev/kvm is PVM)
    """

    def __init__(
        self,
        reporting: bool = True,
        balloon: bool = True,
        memory: str = "2G",
        cgroup: bool = True,
        cache_dir: str | os.PathLike | None = None,
        *,
        smp: int = 2,
        channels: int = 3,
        process_name: str | None = DEFAULT_PROCESS_NAME,
        run_dir: str | os.PathLike | None = None,
        boot_timeout: float = 120.0,
        extra_qemu_args: Iterable[str] = (),
        extra_kernel_args: Iterable[str] = (),
        accel: str = "tcg",
        keep_run_dir: bool | None = None,
    ):
        self.reporting = reporting
        self.balloon = balloon
        self.memory = memory
        self.cgroup = cgroup
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.smp = smp
        self.channels = max(1, int(channels))
        self.process_name = process_name
        self._run_dir_arg = Path(run_dir) if run_dir else None
        self.boot_timeout = boot_timeout
        self.extra_qemu_args = list(extra_qemu_args)
        self.extra_kernel_args = list(extra_kernel_args)
        self.accel = accel
        if keep_run_dir is None:
            keep_run_dir = os.environ.get("VMMEMCTL_LAB_KEEP", "") not in ("", "0")
        self.keep_run_dir = keep_run_dir

        self.run_dir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.boot_seconds: float | None = None
        self._stop_lock = threading.Lock()

    # -- paths ---------------------------------------------------------------
    @property
    def sockets(self) -> list[str]:
        """The agent channel sockets (each has a <socket>.lock next to it)."""
        self._need_run_dir()
        return [str(self.run_dir / f"agent{i}.sock") for i in range(self.channels)]

    @property
    def socket_path(self) -> str:
        """The first agent socket (guest-exec also works with just this one)."""
        return self.sockets[0]

    @property
    def qmp_path(self) -> str:
        self._need_run_dir()
        return str(self.run_dir / "qmp.sock")

    @property
    def console_log(self) -> Path:
        """Kernel + init messages (guest ttyS0)."""
        self._need_run_dir()
        return self.run_dir / "console.log"

    @property
    def qemu_log(self) -> Path:
        self._need_run_dir()
        return self.run_dir / "qemu.log"

    def _need_run_dir(self) -> None:
        if self.run_dir is None:
            raise LabError("VM not started")

    # -- lifecycle ------------------------------------------------------------
    @property
    def pid(self) -> int:
        """PID of the QEMU process (the lab's vmmemWSL)."""
        if self.proc is None:
            raise LabError("VM not started")
        return self.proc.pid

    @property
    def exec_prefix(self) -> list[str]:
        """argv prefix: prefix + ["cat", "/proc/meminfo"] runs that in the guest,
        prints its stdout, exits with its exit code (125: VM unreachable)."""
        prefix = [sys.executable, str(GUEST_EXEC)]
        for s in self.sockets:
            prefix += ["--socket", s]
        return prefix + ["--"]

    def qemu_argv(self) -> list[str]:
        m = load_manifest(self.cache_dir)
        qemu = m.get("qemu") or shutil.which("qemu-system-x86_64")
        if not qemu or not os.access(qemu, os.X_OK):
            raise LabNotBuilt("qemu-system-x86_64 not found (run lab/build.sh)")
        self._need_run_dir()
        rd = self.run_dir
        kargs = ["console=ttyS0", "panic=-1", "quiet", "loglevel=4",
                 f"lab.cgroup={1 if self.cgroup else 0}"]
        if not self.cgroup:
            kargs.append("cgroup_disable=memory")
        kargs += self.extra_kernel_args
        argv = [qemu]
        if self.process_name:
            argv += ["-name", f"vmmemctl-lab,process={self.process_name}"]
        argv += [
            "-accel", self.accel, "-cpu", "max", "-smp", str(self.smp), "-m", self.memory,
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-kernel", m["kernel"], "-initrd", m["initrd"], "-append", " ".join(kargs),
            "-chardev", f"file,id=con,path={rd / 'console.log'}", "-serial", "chardev:con",
            "-drive", f"file={m['data']},if=virtio,format=raw,readonly=on",
            "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
        ]
        for i, s in enumerate(self.sockets):
            argv += ["-chardev", f"socket,id=agent{i},path={s},server=on,wait=off",
                     "-device", f"pci-serial,chardev=agent{i}"]
        if self.balloon:
            argv += ["-device", "virtio-balloon-pci,id=balloon0,free-page-reporting="
                     + ("on" if self.reporting else "off")]
        return argv + self.extra_qemu_args

    def start(self) -> "LabVM":
        if self.proc is not None:
            raise LabError("already started")
        if self._run_dir_arg:
            self._run_dir_arg.mkdir(parents=True, exist_ok=True)
            self.run_dir = self._run_dir_arg
        else:
            self.run_dir = Path(tempfile.mkdtemp(prefix="vmmemctl-lab-"))
        argv = self.qemu_argv()
        (self.run_dir / "qemu.argv").write_text(shlex.join(argv) + "\n")
        self.boot_panics = []
        for attempt in range(1, BOOT_ATTEMPTS + 1):
            t0 = time.monotonic()
            with open(self.qemu_log, "wb") as log:
                self.proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent, close_fds=True)
            _LIVE.add(self)
            try:
                self._wait_ready(t0 + self.boot_timeout)
                break
            except GuestPanickedAtBoot as e:
                # QEMU's multi-threaded TCG now and then shows a guest CPU a
                # half-patched instruction while the kernel rewrites its static
                # keys at boot (an "Oops: int3" in early init, then a panic):
                # nothing of ours ran yet, so boot the same guest again.
                self.boot_panics.append(e.panic)
                self._set_aside_boot_files(attempt)
                print(f"lab: guest kernel panicked during boot (attempt {attempt} of "
                      f"{BOOT_ATTEMPTS}): {e.panic}", file=sys.stderr)
                if attempt == BOOT_ATTEMPTS:
                    self.stop()
                    raise
            except BaseException:
                self.stop()
                raise
        self.boot_seconds = time.monotonic() - t0
        return self

    def _set_aside_boot_files(self, attempt: int) -> None:
        """Keep a panicked boot's logs beside the next one; drop its sockets."""
        for p in (self.console_log, self.qemu_log):
            try:
                p.rename(p.with_name(f"{p.name}.boot{attempt}"))
            except OSError:
                pass
        for s in [*self.sockets, self.qmp_path]:
            try:
                os.unlink(s)
            except OSError:
                pass

    def _wait_ready(self, deadline: float) -> None:
        """Wait until every channel's agent answers a PING.

        The connection stays open and a PING is re-sent every 0.2 s: bytes sent
        before the guest opened its port are dropped by the UART, so the first
        answer comes as soon as the agent runs, without reconnect delays."""
        for path in self.sockets:
            while not os.path.exists(path):
                self._check_boot(deadline)
                time.sleep(0.05)
            while True:
                try:
                    self._ping_until_answered(path, deadline)
                    break
                except (ConnectionError, GuestUnreachable):  # QEMU reset the connection during boot: again
                    self._check_boot(deadline)
                    time.sleep(0.2)

    def _ping_until_answered(self, path: str, deadline: float) -> None:
        with _Channel([path], 5.0, 5.0) as ch:
            nonces: set[bytes] = set()
            buf = b""
            while True:
                self._check_boot(deadline)
                nonce = secrets.token_hex(8)
                nonces.add(nonce.encode())
                ch.send(f"\nPING {nonce} .\n".encode())
                end = time.monotonic() + 0.2
                answered = False
                while not answered and time.monotonic() < end:
                    ch.sock.settimeout(max(0.01, end - time.monotonic()))
                    try:
                        chunk = ch.sock.recv(4096)
                    except socket.timeout:
                        break
                    if not chunk:
                        raise LabError("agent socket closed during boot:\n" + self._diagnostics())
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    answered = any(line.rstrip(b"\r").endswith(b" PONG")
                                   and line.split(b" ")[0] in nonces for line in lines)
                if answered:
                    break

    def _check_boot(self, deadline: float) -> None:
        if self.proc.poll() is not None:
            panic = _boot_panic(self.console_text())
            if panic:
                raise GuestPanickedAtBoot(panic, f"QEMU exited with {self.proc.returncode} "
                                          "during boot (guest kernel panic):\n" + self._diagnostics())
            raise LabError(f"QEMU exited with {self.proc.returncode} during boot:\n"
                           + self._diagnostics())
        if time.monotonic() >= deadline:
            raise LabError("lab VM did not answer in time:\n" + self._diagnostics())

    def _diagnostics(self) -> str:
        parts = []
        for p in (self.qemu_log, self.console_log):
            try:
                text = p.read_text(errors="replace")
            except OSError:
                continue
            parts.append(f"--- {p.name} (tail) ---\n" + "\n".join(text.splitlines()[-30:]))
        return "\n".join(parts)

    def console_text(self) -> str:
        try:
            return self.console_log.read_text(errors="replace")
        except OSError:
            return ""

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Quit QEMU (QMP quit, then SIGTERM, then SIGKILL). Idempotent."""
        with self._stop_lock:
            proc = self.proc
            if proc is not None and proc.poll() is None:
                try:
                    qmp_command(self.qmp_path, "quit", timeout=2.0)
                except Exception:
                    pass
                for sig, wait in ((None, timeout / 2), (signal.SIGTERM, timeout / 2),
                                  (signal.SIGKILL, 10.0)):
                    if sig is not None:
                        try:
                            proc.send_signal(sig)
                        except ProcessLookupError:
                            pass
                    try:
                        proc.wait(wait)
                        break
                    except subprocess.TimeoutExpired:
                        continue
            _LIVE.discard(self)
            if self.run_dir is not None and not self.keep_run_dir and self._run_dir_arg is None:
                shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> "LabVM":
        return self.start() if self.proc is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- guest commands -----------------------------------------------------
    def run(self, argv: Sequence[str], timeout: float = 60.0,
            stdin: bytes | None = None) -> GuestResult:
        """Run argv in the guest: GuestResult(returncode, stdout, stderr)."""
        return guest_call(self.sockets, argv, timeout=timeout, stdin=stdin)

    def exec(self, argv: Sequence[str], timeout: float = 60.0,
             stdin: bytes | None = None) -> tuple[int, bytes]:
        """Run argv in the guest; (returncode, stdout). 124 = guest-side timeout."""
        r = self.run(argv, timeout=timeout, stdin=stdin)
        return r.returncode, r.stdout

    def sh(self, script: str, timeout: float = 60.0) -> tuple[int, bytes]:
        """exec(["sh", "-c", script])."""
        return self.exec(["sh", "-c", script], timeout=timeout)

    def fill_page_cache(self, mib: int, timeout: float = 300.0) -> float:
        """Read mib MiB of /data/fill.bin into the guest page cache; seconds taken."""
        t0 = time.monotonic()
        rc, _ = self.exec(["dd", f"if={DATA_FILL}", "of=/dev/null", "bs=1M",
                           f"count={int(mib)}"], timeout=timeout)
        if rc != 0:
            raise LabError(f"dd in guest failed with {rc}")
        return time.monotonic() - t0

    def drop_caches(self) -> None:
        rc, _ = self.sh("sync; echo 1 > /proc/sys/vm/drop_caches")
        if rc != 0:
            raise LabError(f"drop_caches failed with {rc}")

    def meminfo(self) -> dict[str, int]:
        """Guest /proc/meminfo in bytes."""
        rc, out = self.exec(["cat", "/proc/meminfo"])
        if rc != 0:
            raise LabError("cat /proc/meminfo failed")
        info = {}
        for line in out.decode().splitlines():
            key, _, rest = line.partition(":")
            fields = rest.split()
            if fields:
                info[key] = int(fields[0]) * (1024 if len(fields) > 1 else 1)
        return info

    # -- host-side observation ----------------------------------------------
    def rss_bytes(self) -> int:
        """VmRSS of the QEMU process."""
        return read_rss_bytes(self.pid)

    def wait_rss(self, predicate: Callable[[int], bool], timeout: float = 15.0,
                 interval: float = 0.5) -> tuple[bool, list[tuple[float, int]]]:
        """Poll rss_bytes() until predicate(rss) holds; (held, [(t, rss), ...])."""
        t0 = time.monotonic()
        samples = []
        while True:
            rss = self.rss_bytes()
            samples.append((round(time.monotonic() - t0, 2), rss))
            if predicate(rss):
                return True, samples
            if time.monotonic() - t0 >= timeout:
                return False, samples
            time.sleep(interval)

    def wait_rss_settled(self, timeout: float = 30.0, within: int = 8 << 20,
                         over: float = 3.0) -> tuple[bool, list[tuple[float, int]]]:
        """Poll rss_bytes() every second until it moved less than ``within`` bytes over the last ``over``
        seconds: free page reporting has handed back what the guest freed (it reports freed pages ~2 s
        after they were freed, in batches). (settled, [(t, rss), ...]); False after ``timeout``."""
        t0 = time.monotonic()
        samples = [(0.0, self.rss_bytes())]
        while time.monotonic() - t0 < timeout:
            time.sleep(1.0)
            samples.append((round(time.monotonic() - t0, 2), self.rss_bytes()))
            recent = [r for t, r in samples if t >= samples[-1][0] - over - 0.5]
            if samples[-1][0] >= over and max(recent) - min(recent) < within:
                return True, samples
        return False, samples

    def qmp(self, command: str, arguments: dict | None = None) -> dict:
        return qmp_command(self.qmp_path, command, arguments)


# --------------------------------------------------------------------------
# CLI: python3 lab/vm.py boot  (boots a VM and waits for Ctrl-C)
# --------------------------------------------------------------------------

def _main(argv: list[str]) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="vm.py", description="vmmemctl lab VM")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("boot", help="boot a lab VM and keep it up until Ctrl-C/SIGTERM")
    b.add_argument("--memory", default="2G")
    b.add_argument("--no-reporting", action="store_true")
    b.add_argument("--no-balloon", action="store_true")
    b.add_argument("--no-cgroup", action="store_true")
    b.add_argument("--run-dir", default=None)
    b.add_argument("--cache-dir", default=None)
    sub.add_parser("status", help="is the lab built?")
    a = ap.parse_args(argv)
    if a.cmd == "status":
        ok, why = lab_status()
        print(why)
        return 0 if ok else 1
    vm = LabVM(reporting=not a.no_reporting, balloon=not a.no_balloon, memory=a.memory,
               cgroup=not a.no_cgroup, cache_dir=a.cache_dir, run_dir=a.run_dir)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    vm.start()
    try:
        print(f"booted in {vm.boot_seconds:.1f}s; pid {vm.pid}; run dir {vm.run_dir}")
        print("exec prefix: " + shlex.join(vm.exec_prefix))
        print(f"export VMMEMCTL_LAB_SOCKET={os.pathsep.join(vm.sockets)}")
        sys.stdout.flush()
        while not stop.is_set() and vm.is_running():
            stop.wait(0.5)
    finally:
        vm.stop()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
