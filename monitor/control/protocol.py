"""The control protocol: one JSON object per line, each way.

A request is one line of at most :data:`MAX_REQUEST` bytes (its newline included)::

    {"op": "snooze", "seconds": 3600}

and the answer one line::

    {"ok": true, "result": {...}}
    {"ok": false, "error": "seconds: expected a number of seconds from 0 to 31622400, got \\"x\\""}
    {"ok": false, "error": "uid 1000 (alice) may not control this watcher: ...", "refused": true}

``subscribe`` answers ``{"ok": true, "result": {"subscribed": true}}`` first (the server's own
line: the client knows it was accepted before the first item, however long that takes), then
one such ``{"ok": true, "result": ITEM}`` line per item until either side goes away (an
``{"ok": false, ...}`` line ends it early). One request per connection; bytes after its
newline are ignored.

Every field is checked strictly, and a refusal names the field and what was expected, on one
line, so a person who typed the request (``socat``, a script) can mend it. JSON text is
always written ASCII-only (``ensure_ascii``): a newline, a lone surrogate (a path that is not
UTF-8, as :func:`os.fsdecode` gives it) or any other character inside a string travels as an
escape, so a raw newline only ever ends a line.
"""

from __future__ import annotations

import json
import math
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from monitor.errors import UserError

MAX_REQUEST = 64 * 1024  # bytes, the newline included
MAX_RESPONSE = 1024 * 1024  # what a client reads of one answer line before it gives up on the server
MAX_PATHS = 64
MAX_METHOD = 64  # characters of a reclaim method's name (the watcher knows the real names)
MAX_SECONDS = 366 * 86400  # a longer snooze or pause is a typo (or an overflow further down)
MAX_SETTLE = 3600  # a reclaim's settle a client may ask for
MAX_PROMPT = 2**63 - 1  # prompt numbers are SQLite row ids
MAX_ERROR = 1000  # characters of an error line


class ProtocolError(ValueError):
    """A line that is not a valid request or response; the message is one line naming what is wrong."""


class FramingError(ProtocolError):
    """A line too long, or a connection that ended in the middle of one."""


class ControlError(UserError):
    """The control endpoint could not do what was asked; the message is one line a person can act on."""


class ControlRefused(ControlError):
    """The watcher refused this user (``refused: <its words>``). Exit 3, as a missing privilege."""

    exit_code = 3


class EndpointInUse(ControlError):
    """Another watcher already answers at the endpoint's path. Exit 1, as a history already recorded."""

    exit_code = 1


# ------------------------------------------------------------------ field checks


def _shown(value: object, limit: int = 60) -> str:
    """``value`` as JSON on one line, cut at ``limit`` characters."""
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fail(name: str, expected: str, value: object) -> ProtocolError:
    return ProtocolError(f"{name}: expected {expected}, got {_shown(value)}")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _prompt(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_PROMPT:
        raise _fail(name, "a prompt number (a whole number >= 1)", value)
    return value


def _answer(name: str, value: object) -> str:
    if not isinstance(value, str) or value not in ("reclaim", "dismiss", "snooze"):
        raise _fail(name, '"reclaim", "dismiss" or "snooze" (with seconds)', value)
    return value


def _method(name: str, value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_METHOD or not value.isprintable():
        raise _fail(name, f"a method name (1 to {MAX_METHOD} printable characters)", value)
    return value


def _nameable(path: str) -> bool:
    """Whether ``path`` is a name this machine's file system can hold: what :func:`os.fsdecode` gives
    (UTF-8, undecodable bytes as lone surrogates U+DC80..U+DCFF), so :func:`os.fsencode` takes it
    back. Other surrogates are no path, and a high one before a low one would not survive JSON
    (``"\\ud800\\udc00"`` reads back as one character)."""
    try:
        path.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    return path.startswith("/") and "\0" not in path


def _paths(name: str, value: object) -> list[str]:
    if not isinstance(value, list):
        raise _fail(name, f"a list of at most {MAX_PATHS} absolute paths", value)
    if len(value) > MAX_PATHS:
        raise ProtocolError(f"{name}: expected a list of at most {MAX_PATHS} absolute paths, got {len(value)}")
    for i, path in enumerate(value):
        # Absolute: the watcher does not share the client's working folder.
        if not isinstance(path, str) or not _nameable(path):
            raise _fail(f"{name}[{i}]", 'an absolute path (starting with "/"; no NUL, no stray surrogate)', path)
    return list(value)


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise _fail(name, "true or false", value)
    return value


def _seconds(zero_means: str) -> Callable[[str, object], float]:
    def check(name: str, value: object) -> float:
        if not _is_number(value) or not math.isfinite(value) or not 0 <= value <= MAX_SECONDS:
            raise _fail(name, f"a number of seconds from 0 to {MAX_SECONDS} (0 {zero_means})", value)
        return float(value)
    return check


def _settle(name: str, value: object) -> float:
    if not _is_number(value) or not math.isfinite(value) or not 0 <= value <= MAX_SETTLE:
        raise _fail(name, f"a number of seconds from 0 to {MAX_SETTLE} (how long to watch the host give back)", value)
    return float(value)


MAX_TEXT = 4096


def _text(what: str) -> Callable[[str, object], str]:
    """A short printable string (a cgroup's path, `run`'s command name): the watcher checks what it names."""
    def check(name: str, value: object) -> str:
        if not isinstance(value, str) or not 1 <= len(value) <= MAX_TEXT or not value.isprintable():
            raise _fail(name, f"{what} (1 to {MAX_TEXT} printable characters)", value)
        return value
    return check


MAX_ARGV = 64  # `run`'s command line as the watcher names the group after it (only its first words count)


def _pid(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 < value < 2**22:
        raise _fail(name, "a process id (a whole number from 2 to 4194303)", value)
    return value


def _argv(name: str, value: object) -> list[str]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_ARGV:
        raise _fail(name, f"a command line: a list of 1 to {MAX_ARGV} strings", value)
    for i, word in enumerate(value):
        if not isinstance(word, str) or len(word) > MAX_TEXT or "\0" in word:
            raise _fail(f"{name}[{i}]", f"a word of the command (at most {MAX_TEXT} characters, no NUL)", word)
    return list(value)


def _bytes(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 2**63:
        raise _fail(name, "a size in bytes (a whole number above 0)", value)
    return value


@dataclass(frozen=True)
class _Field:
    check: Callable[[str, object], Any]
    required: bool = False


# op -> its fields. The handler gives each op its meaning; this table only says what is well formed.
OPS: dict[str, dict[str, _Field]] = {
    "hello": {},
    "answer": {"prompt": _Field(_prompt, True), "answer": _Field(_answer, True),
               "seconds": _Field(_seconds("snoozes for the default"))},
    "reclaim": {"method": _Field(_method), "paths": _Field(_paths), "dry_run": _Field(_flag), "settle": _Field(_settle),
                "cgroup": _Field(_text("a cgroup's path or name")), "run": _Field(_text("the command's name"))},
    # `vmmemctl run` as a user: the watcher (root) makes the job's group and moves the waiting child in;
    # at the end it gives the group's cache back (unless keep) and removes the group
    "run_start": {"pid": _Field(_pid, True), "argv": _Field(_argv, True), "cache_max": _Field(_bytes)},
    "run_end": {"group": _Field(_text("the group run_start made"), True), "keep": _Field(_flag),
                "settle": _Field(_settle)},
    "snooze": {"seconds": _Field(_seconds("clears the snooze"), True)},
    "pause": {"seconds": _Field(_seconds("resumes"), True)},
    "resume": {},
    "reload": {},
    "subscribe": {},
}
STREAMS = frozenset({"subscribe"})  # ops answered with a stream of lines, not one


@dataclass(frozen=True)
class Request:
    """One checked request: its op and its fields (only those given; each of the type its op expects)."""

    op: str
    fields: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The JSON object this request is on the wire (``encode(request.as_json())`` is its line)."""
        return {"op": self.op, **{k: list(v) if isinstance(v, list) else v for k, v in self.fields.items()}}


def make_request(op: object, **fields: object) -> Request:
    """A :class:`Request`, each field checked; raises :class:`ProtocolError` naming the first wrong one."""
    if not isinstance(op, str) or op not in OPS:
        raise _fail("op", "one of " + ", ".join(f'"{name}"' for name in OPS), op)
    spec = OPS[op]
    for name in fields:
        if name not in spec:
            takes = f"; its fields: {', '.join(spec)}" if spec else ", which takes none"
            raise ProtocolError(f'{_shown(name, 40)}: not a field of "{op}"{takes}')
    checked = {}
    for name, rule in spec.items():
        if name in fields:
            checked[name] = rule.check(name, fields[name])
        elif rule.required:
            raise ProtocolError(f'{name}: missing; "{op}" needs it')
    return Request(op, checked)


# ------------------------------------------------------------------ lines


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number JSON allows")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise ProtocolError(f"{_shown(key, 40)}: given twice")
        out[key] = value
    return out


def _load(line: bytes, what: str) -> object:
    """The JSON value on ``line`` (its newline stripped), strictly: no NaN, no key twice."""
    if line.endswith(b"\n"):
        line = line[:-1]
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"{what}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not text.strip():
        raise ProtocolError(f'{what}: an empty line; expected a JSON object such as {{"op": "hello"}}')
    try:
        return json.loads(text, parse_constant=_no_constant, object_pairs_hook=_unique_keys)
    except ProtocolError:
        raise
    except RecursionError:
        raise ProtocolError(f"{what}: nested too deep") from None
    except ValueError as exc:  # json.JSONDecodeError, a key twice, NaN, an integer of 4300+ digits
        raise ProtocolError(f"{what}: not valid JSON ({one_line(str(exc), 200)})") from None


def parse_request(line: bytes) -> Request:
    """The :class:`Request` on one line (with or without its newline); raises :class:`ProtocolError`."""
    if len(line.rstrip(b"\n")) + 1 > MAX_REQUEST:
        raise ProtocolError(f"request: longer than {MAX_REQUEST} bytes with its newline")
    value = _load(line, "request")
    if not isinstance(value, dict):
        raise ProtocolError(f'request: expected a JSON object such as {{"op": "hello"}}, got {_shown(value)}')
    if "op" not in value:
        raise ProtocolError("op: missing; expected one of " + ", ".join(f'"{name}"' for name in OPS))
    fields = dict(value)
    return make_request(fields.pop("op"), **fields)


def parse_response(line: bytes) -> dict[str, Any]:
    """The answer on one line, its shape checked: ``{"ok": true, "result": {...}}`` or
    ``{"ok": false, "error": "...", ["refused": true]}``. Raises :class:`ProtocolError`."""
    value = _load(line, "response")
    if not isinstance(value, dict) or not isinstance(value.get("ok"), bool):
        raise ProtocolError(f'response: expected {{"ok": true|false, ...}}, got {_shown(value)}')
    if value["ok"]:
        if set(value) != {"ok", "result"} or not isinstance(value["result"], dict):
            raise ProtocolError(f'response: expected {{"ok": true, "result": {{...}}}}, got {_shown(value)}')
    elif not {"ok", "error"} <= set(value) <= {"ok", "error", "refused"} or not isinstance(value["error"], str) \
            or value.get("refused", True) is not True:
        raise ProtocolError(f'response: expected {{"ok": false, "error": "..."}}, got {_shown(value)}')
    return value


def encode(obj: object) -> bytes:
    """``obj`` as one line of ASCII JSON with its newline; a newline inside a string is escaped."""
    return json.dumps(obj, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii") + b"\n"


def one_line(text: str, limit: int = MAX_ERROR) -> str:
    """``text`` with every run of whitespace (newlines too) made one space, cut at ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def encode_result(result: dict[str, Any]) -> bytes:
    return encode({"ok": True, "result": result})


def encode_error(text: str, *, refused: bool = False) -> bytes:
    return encode({"ok": False, "error": one_line(text) or "error", **({"refused": True} if refused else {})})


class LineReader:
    """Lines from a stream socket, each at most ``limit`` bytes with its newline.

    ``what`` ("request", "response") starts the words of a :class:`FramingError`."""

    def __init__(self, sock: socket.socket, limit: int, what: str):
        self.sock, self.limit, self.what = sock, limit, what
        self.buffer = bytearray()

    def read_line(self, timeout: float | None) -> bytes | None:
        """The next line without its newline, or None when the peer closed between lines.

        Raises :class:`TimeoutError` when no whole line came within ``timeout`` seconds (None:
        wait as long as it takes), :class:`FramingError` for a line too long or cut short, and
        whatever :meth:`socket.recv` raises (``ConnectionResetError``...)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (end := self.buffer.find(b"\n")) < 0:
            if len(self.buffer) >= self.limit:
                raise FramingError(f"{self.what}: longer than {self.limit} bytes with its newline")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"no whole {self.what} line within {timeout:g}s")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(min(1 << 16, self.limit - len(self.buffer)))
            if not chunk:
                if self.buffer:
                    raise FramingError(f"{self.what}: the connection ended in the middle of a line "
                                       f"({len(self.buffer)} bytes and no newline)")
                return None
            self.buffer += chunk
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 1]
        return line
