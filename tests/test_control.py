"""The control endpoint (monitor/control) over real Unix sockets, threads and processes.

Each bad input of issue 24 ("Bad input and faults") is sent for real: garbage, a line cut
short, a request over 64 KiB, a client that never speaks, a thousand at once, a client killed
with SIGKILL mid-request and mid-answer, a user who may not ask (a real 'nobody' process), a
socket left by a watcher killed with SIGKILL, a path another watcher serves or that is not a
socket at all. Nothing here decides on timing: waits are generous (WAIT) and end as soon as
the behaviour shows, so the file passes on a loaded machine.

Socket paths live under /tmp (tempfile.mkdtemp), not pytest's tmp_path: a socket's path must
fit sun_path's 108 bytes.
"""

from __future__ import annotations

import logging
import os
import pwd
import resource
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from monitor.control import (
    MAX_REQUEST,
    ControlError,
    ControlRefused,
    ControlServer,
    EndpointInUse,
    Peer,
    ProtocolError,
    call,
    describe_peer,
    encode,
    make_request,
    parse_request,
    parse_response,
    peer_in_group,
    subscribe,
)
from monitor.control.protocol import MAX_PATHS, MAX_SECONDS
from monitor.errors import UserError

REPO = Path(__file__).resolve().parent.parent
WAIT = 60.0  # seconds: how long a test waits for a behaviour to show before it fails


# ------------------------------------------------------------------ shared by test_control_props.py


def echo(peer: Peer, request) -> dict:
    """A trivial handler: what arrived, and from whom. A subscription is an empty stream."""
    if request.op == "subscribe":
        return iter(())
    return {"op": request.op, "fields": request.fields,
            "peer": {"pid": peer.pid, "uid": peer.uid, "gid": peer.gid, "user": peer.user}}


def allow_all(peer: Peer) -> None:
    return None


@contextmanager
def serving(handler=echo, authorize=allow_all, **options):
    """A started ControlServer on a fresh short path; closed and removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="vmc-"))
    server = ControlServer(folder / "c.sock", handler, authorize, **options)
    server.start()
    try:
        yield server
    finally:
        server.close()
        shutil.rmtree(folder, ignore_errors=True)


def read_all(sock: socket.socket) -> bytes:
    """Everything the server writes until it closes."""
    out = bytearray()
    while True:
        try:
            chunk = sock.recv(1 << 16)
        except ConnectionResetError:  # it closed with our bytes unread; what it wrote came first
            break
        if not chunk:
            return bytes(out)
        out += chunk
    return bytes(out)


def exchange(path: Path, data: bytes) -> bytes:
    """Send ``data`` raw, close our sending side, and return all the server wrote until it closed."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(WAIT)
        sock.connect(str(path))
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return read_all(sock)


def error_of(raw: bytes) -> str:
    """The error of a raw answer, which must be exactly one line."""
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1, raw[:300]
    response = parse_response(raw)
    assert response["ok"] is False, response
    return response["error"]


def eventually(check, wait: float = WAIT):
    """``check()``'s value once it stops raising AssertionError or ControlError (within ``wait`` s)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return check()
        except (AssertionError, ControlError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture
def folder():
    path = Path(tempfile.mkdtemp(prefix="vmc-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start_process(code: str, *args: str, user: str | None = None) -> subprocess.Popen:
    """``python -c code args`` (as ``user`` through runuser), once it printed "ready"."""
    argv = [sys.executable, "-c", code, *args]
    if user:
        argv = ["runuser", "-u", user, "--", *argv]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    first = proc.stdout.readline()
    if first != b"ready\n":
        proc.kill()
        raise AssertionError(f"the helper process did not start: {first!r} {proc.stderr.read()!r}")
    return proc


def kill9(proc: subprocess.Popen) -> None:
    proc.kill()  # SIGKILL: no finally, no atexit; the kernel closes its sockets
    proc.wait(timeout=WAIT)
    proc.stdout.close()
    proc.stderr.close()


# A watcher's endpoint in a process of its own: its handler answers with that process's pid.
SERVER_PROCESS = """
import os, sys, time
from pathlib import Path
from monitor.control.server import ControlServer
server = ControlServer(Path(sys.argv[1]), lambda peer, request: {"pid": os.getpid()}, lambda peer: None)
server.start()
print("ready", flush=True)
time.sleep(600)
"""
# Something else listening there (an older watcher, another program): no lock beside it.
BARE_LISTENER = """
import socket, sys, time
sock = socket.socket(socket.AF_UNIX)
sock.bind(sys.argv[1])
sock.listen()
print("ready", flush=True)
time.sleep(600)
"""


# ------------------------------------------------------------------ every op, there and back

ROUND_TRIPS = [
    ("hello", {}),
    ("answer", {"prompt": 7, "answer": "reclaim"}),
    ("answer", {"prompt": 1, "answer": "dismiss"}),
    ("reclaim", {}),
    ("reclaim", {"method": "gradual", "paths": ["/var/cache", "/home/a b/ünïcode\nnewline"], "dry_run": True}),
    ("reclaim", {"paths": [f"/p{i}" for i in range(MAX_PATHS)], "dry_run": False}),
    ("reclaim", {"paths": [os.fsdecode(b"/data/not-utf8-\xff\xfe")]}),
    ("snooze", {"seconds": 3600}),
    ("snooze", {"seconds": 0}),
    ("pause", {"seconds": 90.5}),
    ("pause", {"seconds": MAX_SECONDS}),
    ("resume", {}),
    ("reload", {}),
]


@pytest.mark.parametrize("op, fields", ROUND_TRIPS, ids=[f"{op}-{i}" for i, (op, _) in enumerate(ROUND_TRIPS)])
def test_each_op_reaches_the_handler_with_its_fields_and_who_asked(op, fields):
    with serving() as server:
        result = call(server.path, op, **fields)
    assert result["op"] == op
    assert result["fields"] == fields
    assert result["peer"] == {"pid": os.getpid(), "uid": os.getuid(), "gid": os.getgid(),
                              "user": pwd.getpwuid(os.getuid()).pw_name}


def test_the_peer_is_the_process_at_the_other_end_as_the_kernel_says():
    code = ("import sys; from monitor.control.client import call; "
            "print(call(sys.argv[1], 'hello')['peer']['pid'])")
    with serving() as server:
        done = subprocess.run([sys.executable, "-c", code, str(server.path)], cwd=REPO, capture_output=True,
                              text=True, timeout=WAIT)
    assert done.stderr == ""
    assert int(done.stdout) != os.getpid()  # the child's own pid, not this process's


def test_a_subscription_streams_the_handlers_items_then_ends_with_them():
    def handler(peer, request):
        return iter([{"n": 1}, {"n": 2}, {"n": 3}]) if request.op == "subscribe" else echo(peer, request)

    with serving(handler) as server:
        with subscribe(server.path) as items:
            assert list(items) == [{"n": 1}, {"n": 2}, {"n": 3}]


# ------------------------------------------------------------------ what a request may be


BAD_REQUESTS = [
    (b"garbage", "request: not valid JSON"),
    (b"", 'request: an empty line; expected a JSON object such as {"op": "hello"}'),
    (b"\xff\xfe{}", "request: not UTF-8 text"),
    (b"[1, 2]", 'request: expected a JSON object such as {"op": "hello"}, got [1, 2]'),
    (b'{"seconds": 5}', 'op: missing; expected one of "hello", "answer"'),
    (b'{"op": "frobnicate"}', 'op: expected one of "hello", "answer", "reclaim", "run_start", "run_end", "snooze", '
                              '"pause", "resume", "reload", "subscribe", got "frobnicate"'),
    (b'{"op": "run_start", "pid": 7, "argv": "make"}', 'argv: expected a command line: a list of 1 to 64 strings, got "make"'),
    (b'{"op": "run_end", "group": "/sys/fs/cgroup/x", "keep": "yes"}', 'keep: expected true or false, got "yes"'),
    (b'{"op": 5}', "op: expected one of"),
    (b'{"op": "hello", "colour": 1}', '"colour": not a field of "hello", which takes none'),
    (b'{"op": "snooze", "second": 5}', '"second": not a field of "snooze"; its fields: seconds'),
    (b'{"op": "snooze"}', 'seconds: missing; "snooze" needs it'),
    (b'{"op": "snooze", "seconds": "x"}',
     'seconds: expected a number of seconds from 0 to 31622400 (0 clears the snooze), got "x"'),
    (b'{"op": "snooze", "seconds": -1}', "seconds: expected a number of seconds from 0 to 31622400"),
    (b'{"op": "pause", "seconds": true}', "seconds: expected a number of seconds from 0 to 31622400 (0 resumes)"),
    (b'{"op": "pause", "seconds": 31622401}', "seconds: expected a number of seconds from 0 to 31622400"),
    (b'{"op": "pause", "seconds": 1e400}', "seconds: expected a number of seconds from 0 to 31622400"),
    (b'{"op": "pause", "seconds": NaN}', "request: not valid JSON (NaN is not a number JSON allows)"),
    (b'{"op": "pause", "seconds": 1' + b"0" * 5000 + b"}", "request: not valid JSON"),
    (b'{"op": "snooze", "seconds": 1, "seconds": 2}', '"seconds": given twice'),
    (b'{"op": "answer", "prompt": 0, "answer": "reclaim"}', "prompt: expected a prompt number (a whole number >= 1), got 0"),
    (b'{"op": "answer", "prompt": 1.5, "answer": "reclaim"}', "prompt: expected a prompt number"),
    (b'{"op": "answer", "prompt": true, "answer": "reclaim"}', "prompt: expected a prompt number"),
    (b'{"op": "answer", "answer": "reclaim"}', 'prompt: missing; "answer" needs it'),
    (b'{"op": "answer", "prompt": 3, "answer": "yes"}', 'answer: expected "reclaim", "dismiss" or "snooze" (with seconds), got "yes"'),
    (b'{"op": "answer", "prompt": 3, "answer": ["reclaim"]}', 'answer: expected "reclaim", "dismiss" or "snooze" (with seconds)'),
    (b'{"op": "reclaim", "paths": "/tmp"}', 'paths: expected a list of at most 64 absolute paths, got "/tmp"'),
    (b'{"op": "reclaim", "paths": ["relative"]}', 'paths[0]: expected an absolute path (starting with "/"; no NUL, no stray surrogate)'),
    (b'{"op": "reclaim", "paths": ["/a", 5]}', "paths[1]: expected an absolute path"),
    (b'{"op": "reclaim", "paths": ["/a\\u0000b"]}', "paths[0]: expected an absolute path"),
    (('{"op": "reclaim", "paths": [%s]}' % ", ".join(['"/x"'] * 65)).encode(),
     "paths: expected a list of at most 64 absolute paths, got 65"),
    (b'{"op": "reclaim", "paths": ["/a\\ud800"]}', "paths[0]: expected an absolute path"),  # no path decodes to it
    (b'{"op": "reclaim", "method": ""}', "method: expected a method name (1 to 64 printable characters)"),
    (b'{"op": "reclaim", "method": "gra\\ndual"}', 'method: expected a method name (1 to 64 printable characters), '
                                                  'got "gra\\ndual"'),
    (b'{"op": "reclaim", "method": 3}', "method: expected a method name"),
    (b'{"op": "reclaim", "dry_run": "yes"}', 'dry_run: expected true or false, got "yes"'),
    (b"[" * 60000, "request: nested too deep"),
    (b'{"op": "hello"}\n{"op": "hello"}', "request: not valid JSON (Extra data"),
    (b'{"op": "hello"}' + b" " * MAX_REQUEST, f"request: longer than {MAX_REQUEST} bytes"),
]


@pytest.mark.parametrize("line, words", BAD_REQUESTS, ids=[w[:40] for _, w in BAD_REQUESTS])
def test_a_bad_request_is_refused_in_one_line_that_names_what_is_wrong(line, words):
    with pytest.raises(ProtocolError) as caught:
        parse_request(line)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 400
    assert message.startswith(words)


def test_a_valid_line_parses_with_or_without_its_newline_and_encodes_back():
    request = parse_request(b'{"op": "reclaim", "paths": ["/a"], "dry_run": true}\n')
    assert request == make_request("reclaim", paths=["/a"], dry_run=True)
    assert parse_request(encode(request.as_json())) == request
    assert parse_request(b'{"op":"snooze","seconds":5}').fields == {"seconds": 5.0}


@pytest.mark.parametrize("line", [
    b'{"ok": true}', b'{"ok": true, "result": []}', b'{"ok": "yes", "result": {}}', b'{"ok": false}',
    b'{"ok": false, "error": 5}', b'{"ok": false, "error": "x", "refused": false}', b'{"ok": true, "result": {}, "x": 1}',
    b"[]", b"nonsense",
])
def test_a_response_of_the_wrong_shape_is_refused(line):
    with pytest.raises(ProtocolError):
        parse_response(line)


def test_encode_writes_one_ascii_line_whatever_the_strings_hold():
    line = encode({"path": "/a\nb\r\u2028\udcff", "n": 1})
    assert line.count(b"\n") == 1 and line.endswith(b"\n") and line.isascii()


# ------------------------------------------------------------------ bad input and faults, for real


@pytest.mark.parametrize("data", [
    b"garbage\n", b"\x00\xff\xfe\x80\n", b"{}\n", b"\n", b'{"op": "snooze", "seconds": "x"}\n', b"[" * 60000 + b"\n",
])
def test_garbage_gets_one_error_line_and_the_server_carries_on(data):
    with serving() as server:
        message = error_of(exchange(server.path, data))
        assert message.startswith(("request:", "op:", "seconds:"))
        assert call(server.path, "hello")["op"] == "hello"


def test_a_line_cut_short_by_the_client_is_told_so_and_frees_its_place():
    with serving(max_clients=1, read_timeout=WAIT * 10) as server:
        assert error_of(exchange(server.path, b'{"op": "hel')).startswith(
            "request: the connection ended in the middle of a line (11 bytes and no newline)")
        # Half a line, then gone without reading: its place is freed by the close, not the (long) timeout.
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(server.path))
            sock.sendall(b'{"op": "sno')
        assert eventually(lambda: call(server.path, "hello"))["op"] == "hello"


def test_a_request_over_64_KiB_is_refused_and_one_of_exactly_64_KiB_is_read():
    exact = b'{"op":"hello"}' + b" " * (MAX_REQUEST - 15) + b"\n"
    assert len(exact) == MAX_REQUEST
    with serving() as server:
        assert parse_response(exchange(server.path, exact))["result"]["op"] == "hello"
        for oversized in (b" " + exact, b"x" * (MAX_REQUEST + 1), b"y" * (4 << 20)):
            assert error_of(exchange(server.path, oversized)) == f"request: longer than {MAX_REQUEST} bytes with its newline"
        assert call(server.path, "hello")["op"] == "hello"


def test_a_client_that_never_speaks_holds_up_nobody():
    with serving(read_timeout=WAIT * 10) as server:
        with socket.socket(socket.AF_UNIX) as silent:
            silent.connect(str(server.path))  # accepted before the next one: one accept thread, in order
            assert call(server.path, "hello")["op"] == "hello"
            assert call(server.path, "snooze", seconds=5)["fields"] == {"seconds": 5}


def test_a_client_that_never_speaks_is_dropped_after_read_timeout():
    with serving(read_timeout=1.0) as server:
        with socket.socket(socket.AF_UNIX) as silent:
            silent.settimeout(WAIT)
            silent.connect(str(server.path))
            assert error_of(read_all(silent)) == "request: no whole line within 1s; closing"


def test_a_client_that_trickles_its_request_is_dropped_too():
    """The timeout is for the whole line, not each byte: a byte now and then keeps nobody's place."""
    with serving(read_timeout=1.0) as server:
        with socket.socket(socket.AF_UNIX) as slow:
            slow.connect(str(server.path))
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                try:
                    slow.sendall(b" ")
                except (BrokenPipeError, ConnectionResetError):
                    break
                time.sleep(0.05)
            slow.settimeout(WAIT)
            assert error_of(read_all(slow)) == "request: no whole line within 1s; closing"


def test_past_max_clients_a_client_is_told_busy_at_once():
    with serving(max_clients=1, read_timeout=WAIT * 10) as server:
        silent = socket.socket(socket.AF_UNIX)
        silent.connect(str(server.path))
        with pytest.raises(ControlError) as caught:
            call(server.path, "hello")
        assert str(caught.value) == "busy: 1 client connected; try again"
        silent.close()
        assert eventually(lambda: call(server.path, "hello"))["op"] == "hello"


@pytest.fixture
def plenty_of_files():
    """Room for 1000 client sockets and their 1000 server ends."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2500
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"needs {need} open files; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_thousand_clients_at_once_each_get_an_answer_or_busy_and_the_server_carries_on(plenty_of_files):
    with serving(read_timeout=WAIT * 10) as server:
        def connect(_: int) -> socket.socket:
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(str(server.path))  # blocking: waits while the listen queue is full
            sock.settimeout(WAIT)
            return sock

        with ThreadPoolExecutor(64) as pool:  # all 1000 connected and held open before any speaks
            socks = list(pool.map(connect, range(1000)))
        try:
            for sock in socks:
                try:
                    sock.sendall(encode({"op": "hello"}))
                except (BrokenPipeError, ConnectionResetError):
                    pass  # turned away already; its "busy" is waiting to be read
            answers = [parse_response(_one_line(read_all(sock))) for sock in socks]
        finally:
            for sock in socks:
                sock.close()
        served = [a for a in answers if a["ok"]]
        busy = [a for a in answers if not a["ok"]]
        assert served and all(a["result"]["op"] == "hello" for a in served)
        assert {a["error"] for a in busy} <= {"busy: 16 clients connected; try again"}
        # The first 16 accepted hold their places until all 1000 have spoken; after them, one still in
        # the listen queue when a place came free is served too.
        assert len(served) >= 16 and len(served) + len(busy) == 1000
        assert eventually(lambda: call(server.path, "hello"))["op"] == "hello"

        # And a thousand clients asking through call() at once, from 100 threads.
        def ask(_: int) -> str:
            try:
                return call(server.path, "hello", timeout=WAIT)["op"]
            except ControlError as exc:
                return str(exc)

        with ThreadPoolExecutor(100) as pool:
            said = list(pool.map(ask, range(1000)))
        assert set(said) <= {"hello", "busy: 16 clients connected; try again"} and "hello" in said
        assert eventually(lambda: call(server.path, "hello"))["op"] == "hello"


def _one_line(raw: bytes) -> bytes:
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1, raw[:200]
    return raw


HALF_A_REQUEST = """
import socket, sys, time
sock = socket.socket(socket.AF_UNIX)
sock.connect(sys.argv[1])
sock.sendall(sys.argv[2].encode())
print("ready", flush=True)
time.sleep(600)
"""


def test_a_client_killed_mid_request_frees_its_place_and_kills_nothing(caplog):
    caplog.set_level(logging.DEBUG, logger="monitor.control")
    with serving(max_clients=1, read_timeout=WAIT * 10) as server:
        proc = start_process(HALF_A_REQUEST, str(server.path), '{"op": "snooze", "sec')
        try:
            # The killed client holds the one place: others are busy until it dies.
            def held() -> None:
                with pytest.raises(ControlError, match="busy"):
                    call(server.path, "hello")
            eventually(held)
        finally:
            kill9(proc)
        # Freed by the kernel closing its socket: the read timeout is far longer than this wait.
        assert eventually(lambda: call(server.path, "hello"))["op"] == "hello"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_client_killed_mid_answer_kills_nothing(caplog):
    caplog.set_level(logging.DEBUG, logger="monitor.control")
    entered, release = threading.Event(), threading.Event()

    def handler(peer, request):
        if request.op == "hello":
            return {"op": "hello"}
        entered.set()
        release.wait(WAIT)
        return {"blob": "x" * (8 << 20)}  # far more than a socket buffer: the send meets the dead peer

    with serving(handler, max_clients=1) as server:
        proc = start_process(HALF_A_REQUEST, str(server.path), '{"op": "reload"}\n')
        try:
            assert entered.wait(WAIT)
        finally:
            kill9(proc)
            release.set()
        assert eventually(lambda: call(server.path, "hello"))["op"] == "hello"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_handler_that_fails_gets_its_client_one_line_and_the_server_carries_on(caplog):
    def handler(peer, request):
        if request.op == "reload":
            raise RuntimeError("boom\nsecond line")
        if request.op == "resume":
            raise UserError("nothing is paused")
        if request.op == "reclaim":
            return ["not", "a", "dict"]
        if request.op == "pause":
            return {"when": object()}
        return {"op": request.op}

    with serving(handler) as server:
        with pytest.raises(ControlError) as caught:
            call(server.path, "reload")
        assert str(caught.value) == "internal error: RuntimeError: boom second line"
        with pytest.raises(ControlError) as caught:
            call(server.path, "resume")
        assert str(caught.value) == "nothing is paused"
        with pytest.raises(ControlError, match="^internal error: TypeError: the handler gave list, not a dict$"):
            call(server.path, "reclaim")
        with pytest.raises(ControlError, match="^internal error: TypeError: Object of type object is not JSON"):
            call(server.path, "pause", seconds=1)
        assert call(server.path, "hello") == {"op": "hello"}
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(failures) == 3 and all(r.exc_info for r in failures)


def test_a_refused_user_gets_the_callers_words_and_the_handler_never_runs():
    asked = []

    def handler(peer, request):
        asked.append(request)
        return {}

    def authorize(peer):
        return f"{describe_peer(peer)} may not control this watcher: nobody may"

    with serving(handler, authorize) as server:
        with pytest.raises(ControlRefused) as caught:
            call(server.path, "snooze", seconds=60)
        with pytest.raises(ControlRefused):
            subscribe(server.path)
    me = pwd.getpwuid(os.getuid()).pw_name
    assert str(caught.value) == f"refused: uid {os.getuid()} ({me}) may not control this watcher: nobody may"
    assert caught.value.exit_code == 3 and isinstance(caught.value, UserError)
    assert asked == []


def test_an_authorize_that_fails_refuses_with_an_internal_error():
    def authorize(peer):
        raise KeyError("users")

    with serving(authorize=authorize) as server:
        with pytest.raises(ControlError, match=r"^internal error: KeyError: 'users'$"):
            call(server.path, "hello")


def nobody_can_run_this_python() -> bool:
    if os.geteuid() != 0 or not shutil.which("runuser"):
        return False
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        return False
    done = subprocess.run(["runuser", "-u", "nobody", "--", sys.executable, "-c", "import monitor.control"],
                          cwd=REPO, capture_output=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    return done.returncode == 0


ASK_AS_IS = """
import sys
from monitor.control.client import ControlError, call
try:
    call(sys.argv[1], "snooze", seconds=60)
except ControlError as exc:
    print(exc)
    sys.exit(exc.exit_code)
"""


@pytest.mark.skipif(not nobody_can_run_this_python(), reason="needs root, runuser, and 'nobody' able to run this Python")
def test_a_user_not_allowed_gets_one_line_of_refusal():
    nobody = pwd.getpwnam("nobody")
    peers = []

    def authorize(peer):
        peers.append(peer)
        if peer.uid == 0:
            return None
        return (f"{describe_peer(peer)} may not control this watcher: root may; "
                f'allow a user with [control] users = ["{peer.user}"]')

    with serving(authorize=authorize) as server:
        server.path.parent.chmod(0o755)  # mkdtemp's 0o700 would stop 'nobody' at the folder
        done = subprocess.run(["runuser", "-u", "nobody", "--", sys.executable, "-c", ASK_AS_IS, str(server.path)],
                              cwd=REPO, capture_output=True, text=True, timeout=WAIT,
                              env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
        assert call(server.path, "hello")["op"] == "hello"  # root still may
    assert done.stdout == (f"refused: uid {nobody.pw_uid} (nobody) may not control this watcher: root may; "
                           'allow a user with [control] users = ["nobody"]\n')
    assert done.returncode == 3
    assert peers[0].uid == nobody.pw_uid and peers[0].gid == nobody.pw_gid and peers[0].user == "nobody"


def test_describe_peer_and_group_membership():
    root = Peer(pid=1, uid=0, gid=0, user="root")
    assert describe_peer(root) == "uid 0 (root)"
    assert describe_peer(Peer(pid=1, uid=4242, gid=4242, user=None)) == "uid 4242"
    assert peer_in_group(root, "root")
    assert not peer_in_group(root, "no-such-group-vmmemctl")


# ------------------------------------------------------------------ the socket's path


@pytest.mark.parametrize("leftover", [SERVER_PROCESS, BARE_LISTENER], ids=["a-watcher", "a-bare-socket"])
def test_a_socket_left_by_a_watcher_killed_with_sigkill_is_taken_over(folder, leftover):
    path = folder / "c.sock"
    kill9(start_process(leftover, str(path)))
    assert stat.S_ISSOCK(os.lstat(path).st_mode)  # SIGKILL left it behind
    server = ControlServer(path, echo, allow_all)
    server.start()
    try:
        assert call(path, "hello")["peer"]["pid"] == os.getpid()
    finally:
        server.close()
    assert not path.exists()


def test_a_path_another_watcher_serves_in_this_process_is_refused(folder):
    path = folder / "c.sock"
    with ControlServer(path, echo, allow_all):
        second = ControlServer(path, echo, allow_all)
        with pytest.raises(EndpointInUse) as caught:
            second.start()
        second.close()  # closing the one that never started touches nothing
        assert str(caught.value) == f"vmmemctl watch (pid {os.getpid()}) already serves {path}"
        assert call(path, "hello")["op"] == "hello"


def test_a_path_another_watcher_process_serves_is_refused(folder):
    path = folder / "c.sock"
    proc = start_process(SERVER_PROCESS, str(path))
    try:
        with pytest.raises(EndpointInUse) as caught:
            ControlServer(path, echo, allow_all).start()
        assert str(caught.value) == f"vmmemctl watch (pid {proc.pid}) already serves {path}"
        assert call(path, "hello") == {"pid": proc.pid}
    finally:
        kill9(proc)


def test_a_path_something_else_answers_at_is_refused_and_left_alone(folder):
    path = folder / "c.sock"
    proc = start_process(BARE_LISTENER, str(path))
    try:
        before = os.lstat(path).st_ino
        with pytest.raises(EndpointInUse) as caught:
            ControlServer(path, echo, allow_all).start()
        assert str(caught.value).startswith(f"another process answers at {path}")
        assert os.lstat(path).st_ino == before
    finally:
        kill9(proc)


@pytest.mark.parametrize("kind", ["file", "folder", "symlink"])
def test_a_path_that_is_not_a_socket_is_refused_and_left_untouched(folder, kind):
    path, target = folder / "c.sock", folder / "precious"
    target.write_text("keep me")
    if kind == "file":
        path.write_text("keep me")
    elif kind == "folder":
        path.mkdir()
    else:
        path.symlink_to(target)
    with pytest.raises(ControlError) as caught:
        ControlServer(path, echo, allow_all).start()
    assert str(caught.value) == (f"{path} exists and is a {kind}, not a socket; not removing it "
                                 "(move it away or choose another path)")
    assert target.read_text() == "keep me"
    if kind == "file":
        assert path.read_text() == "keep me"
    assert path.is_dir() if kind == "folder" else path.is_symlink() if kind == "symlink" else path.is_file()


def test_a_path_too_long_for_a_socket_is_refused_in_words(folder):
    path = folder / ("x" * 120)
    with pytest.raises(ControlError, match=r"too long for a socket's path \(\d+ bytes; at most 107\)"):
        ControlServer(path, echo, allow_all).start()


def test_the_socket_is_0o666_and_its_new_folders_0o755_whatever_the_umask(folder):
    path = folder / "run" / "vmmemctl" / "c.sock"
    old = os.umask(0o077)
    try:
        server = ControlServer(path, echo, allow_all)
        server.start()
    finally:
        os.umask(old)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o666
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o755
        assert stat.S_IMODE(os.stat(path.parent.parent).st_mode) == 0o755
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700  # a folder that was there is left as it was
    finally:
        server.close()


def test_close_removes_the_socket_only_while_it_is_still_ours(folder):
    path = folder / "c.sock"
    server = ControlServer(path, echo, allow_all)
    server.start()
    path.rename(folder / "moved.sock")
    stranger = socket.socket(socket.AF_UNIX)
    stranger.bind(str(path))  # someone else's socket now has that name
    server.close()
    stranger.close()
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    server.close()  # twice is fine

    path.unlink()
    with ControlServer(path, echo, allow_all):
        assert path.exists()
    assert not path.exists()
    with pytest.raises(ControlError) as caught:
        call(path, "hello")
    assert str(caught.value) == f"no watcher answers at {path}"


# ------------------------------------------------------------------ the client's words


def test_the_client_says_when_no_watcher_answers(folder):
    path = folder / "c.sock"
    with pytest.raises(ControlError) as caught:
        call(path, "hello")
    assert str(caught.value) == f"no watcher answers at {path}"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))  # a socket file nobody listens on
    dead.close()
    with pytest.raises(ControlError) as caught:
        call(path, "hello")
    assert str(caught.value) == f"no watcher answers at {path}"


def test_the_client_says_when_the_answer_does_not_come_in_time():
    release = threading.Event()

    def handler(peer, request):
        release.wait(WAIT)
        return {}

    with serving(handler) as server:
        try:
            with pytest.raises(ControlError) as caught:
                call(server.path, "reload", timeout=1)
            assert str(caught.value) == f"no answer within 1s from the watcher at {server.path}"
        finally:
            release.set()


def test_the_client_waits_for_room_in_a_full_queue_until_its_timeout(folder):
    """A Unix socket with a timeout does not wait for room in a full listen queue (EAGAIN at
    once): the client tries again until its time is up, then says so."""
    path = folder / "c.sock"
    with socket.socket(socket.AF_UNIX) as stuck:  # listens, never accepts
        stuck.bind(str(path))
        stuck.listen(1)
        queued = []
        try:
            while len(queued) < 100:
                sock = socket.socket(socket.AF_UNIX)
                sock.setblocking(False)
                queued.append(sock)
                sock.connect(str(path))
        except BlockingIOError:
            pass
        try:
            assert len(queued) < 100
            with pytest.raises(ControlError) as caught:
                call(path, "hello", timeout=1)
            assert str(caught.value) == f"no answer within 1s from the watcher at {path}"
        finally:
            for sock in queued:
                sock.close()


def test_the_client_checks_a_request_before_it_asks(folder):
    path = folder / "nothing-here.sock"
    with pytest.raises(ControlError, match='^seconds: expected a number of seconds .*, got "x"$'):
        call(path, "snooze", seconds="x")
    with pytest.raises(ControlError, match="^op: expected one of"):
        call(path, "frobnicate")
    with pytest.raises(ControlError, match=f"longer than the {MAX_REQUEST} a watcher reads"):
        call(path, "reclaim", paths=["/" + "p" * 2000] * MAX_PATHS)


# ------------------------------------------------------------------ subscriptions


def ticking(stopped: threading.Event):
    def handler(peer, request):
        if request.op != "subscribe":
            return echo(peer, request)

        def items():
            try:
                n = 0
                while True:
                    yield {"tick": n}
                    n += 1
                    time.sleep(0.02)  # a heartbeat's pace; nothing waits on it
            finally:
                stopped.set()  # where a real handler unsubscribes
        return items()
    return handler


def test_a_subscription_stops_cleanly_when_the_client_closes():
    stopped = threading.Event()
    with serving(ticking(stopped), max_clients=1) as server:
        with subscribe(server.path) as items:
            assert [next(items)["tick"] for _ in range(3)] == [0, 1, 2]
        assert stopped.wait(WAIT)  # the handler's generator was closed
        assert eventually(lambda: call(server.path, "hello"))["op"] == "hello"  # and its place freed


def test_a_quiet_stream_notices_a_client_that_left_at_its_next_heartbeat():
    stopped = threading.Event()

    def handler(peer, request):
        if request.op != "subscribe":
            return echo(peer, request)

        def items():
            try:
                yield {"hello": True}
                while True:  # nothing new to say, ever: only heartbeats
                    time.sleep(0.02)
                    yield None
            finally:
                stopped.set()
        return items()

    with serving(handler, max_clients=1) as server:
        with subscribe(server.path) as items:
            assert next(items) == {"hello": True}
        assert stopped.wait(WAIT)
        assert eventually(lambda: call(server.path, "hello"))  # its place is free again


def test_closing_the_server_ends_a_subscription():
    stopped = threading.Event()
    server = ControlServer(Path(tempfile.mkdtemp(prefix="vmc-")) / "c.sock", ticking(stopped), allow_all)
    server.start()
    try:
        with subscribe(server.path, idle_timeout=WAIT) as items:
            assert next(items) == {"tick": 0}
            server.close()
            for _ in items:  # what was already on its way, then the end (not an idle timeout)
                pass
        assert stopped.wait(WAIT)
    finally:
        server.close()
        shutil.rmtree(server.path.parent, ignore_errors=True)


def test_a_stream_that_fails_ends_with_the_handlers_words():
    def handler(peer, request):
        def items():
            yield {"n": 1}
            raise UserError("the watcher is stopping")
        return items()

    with serving(handler) as server:
        with subscribe(server.path) as items:
            assert next(items) == {"n": 1}
            with pytest.raises(ControlError, match="^the watcher is stopping$"):
                next(items)


# ------------------------------------------------------------------ its place in the layers


def test_the_package_imports_only_the_vocabulary_and_the_kernel():
    code = ("import sys, monitor.control; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith(('monitor', 'tui', 'textual', 'rich')))))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=WAIT)
    loaded = done.stdout.split()
    assert "monitor.control.server" in loaded
    allowed = ("monitor.control", "monitor.kernel", "monitor.errors", "monitor.units")
    assert [m for m in loaded if m != "monitor" and not m.startswith(allowed)] == []
