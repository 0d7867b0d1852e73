"""The client's side of the control endpoint: ask the watcher, get its result or its words.

    call(path, "snooze", seconds=3600)          -> the result dict
    with subscribe(path) as items:              -> one dict per item the watcher sends
        for item in items: ...

Every failure is a :class:`ControlError` of one line ("no watcher answers at PATH", "refused:
<the watcher's words>", "no answer within 10s from the watcher at PATH", or the watcher's own
error line); a refusal is a :class:`ControlRefused` (exit 3). The request is checked here first,
so a bad field is reported the same way whether or not a watcher runs.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any, Iterator

from monitor.control.protocol import (
    MAX_REQUEST,
    MAX_RESPONSE,
    ControlError,
    ControlRefused,
    FramingError,
    LineReader,
    ProtocolError,
    encode,
    make_request,
    one_line,
    parse_response,
)

__all__ = ["ControlError", "ControlRefused", "Subscription", "call", "subscribe"]


def call(path: Path, op: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
    """Send one request and return its result; ``timeout`` bounds the whole exchange (connecting,
    sending, the watcher's work and its answer), so give a reclaim the time it takes."""
    deadline = time.monotonic() + timeout
    with _connect(Path(path), _request_line(op, fields), timeout) as sock:
        reader = LineReader(sock, MAX_RESPONSE, "response")
        return _result(_read(reader, Path(path), deadline, timeout), Path(path))


def subscribe(path: Path, timeout: float = 10.0, *, idle_timeout: float | None = None) -> Subscription:
    """A stream of the watcher's items, once it accepted the subscription (within ``timeout``;
    else :class:`ControlError` is raised here, not at the first item). The stream ends when the
    watcher closes it; ``idle_timeout`` (None: no limit) bounds the wait for each next item."""
    path = Path(path)
    deadline = time.monotonic() + timeout
    sock = _connect(path, _request_line("subscribe", {}), timeout)
    try:
        reader = LineReader(sock, MAX_RESPONSE, "response")
        _result(_read(reader, path, deadline, timeout), path)
    except BaseException:
        sock.close()
        raise
    return Subscription(path, sock, reader, idle_timeout)


class Subscription:
    """An iterator of a subscription's items (dicts); closing it (or leaving ``with``) ends the
    stream, and the watcher notices at its next item."""

    def __init__(self, path: Path, sock: socket.socket, reader: LineReader, idle_timeout: float | None):
        self.path, self._sock, self._reader, self.idle_timeout = path, sock, reader, idle_timeout
        self.closed = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        if self.closed:
            raise StopIteration
        try:
            line = self._reader.read_line(self.idle_timeout)
        except TimeoutError:
            self.close()
            raise ControlError(f"no word from the watcher at {self.path} within {self.idle_timeout:g}s") from None
        except (FramingError, OSError) as exc:
            self.close()
            raise ControlError(f"the watcher at {self.path} broke off the stream: {exc}") from None
        if line is None:  # the watcher ended the stream (it stopped, or closed the endpoint)
            self.close()
            raise StopIteration
        try:
            return _result(line, self.path)
        except ControlError:
            self.close()
            raise

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._sock.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _request_line(op: str, fields: dict[str, Any]) -> bytes:
    try:
        line = encode(make_request(op, **fields).as_json())
    except ProtocolError as exc:
        raise ControlError(str(exc)) from None
    if len(line) > MAX_REQUEST:
        raise ControlError(f"request: {len(line)} bytes, longer than the {MAX_REQUEST} a watcher reads "
                           "(fewer or shorter paths)")
    return line


def _connect(path: Path, line: bytes, timeout: float) -> socket.socket:
    """A socket connected to ``path`` that has sent ``line``."""
    deadline = time.monotonic() + timeout
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    while True:
        try:
            sock.connect(str(path))
            break
        except BlockingIOError:
            # EAGAIN: the watcher's queue of connections not yet accepted is full (a socket with a
            # timeout connects without blocking, and a Unix socket does not wait for room then).
            if time.monotonic() >= deadline:
                sock.close()
                raise ControlError(f"no answer within {timeout:g}s from the watcher at {path}") from None
            time.sleep(0.01)
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            raise ControlError(f"no watcher answers at {path}") from None
        except OSError as exc:
            sock.close()
            raise ControlError(f"no watcher answers at {path}: {exc.strerror or exc}") from None
    try:
        sock.sendall(line)
    except (BrokenPipeError, ConnectionResetError):
        pass  # it closed early (busy, or going away); what it said before is still there to read
    except TimeoutError:
        sock.close()
        raise ControlError(f"no answer within {timeout:g}s from the watcher at {path}") from None
    return sock


def _read(reader: LineReader, path: Path, deadline: float, timeout: float) -> bytes:
    try:
        line = reader.read_line(max(deadline - time.monotonic(), 0.001))
    except TimeoutError:
        raise ControlError(f"no answer within {timeout:g}s from the watcher at {path}") from None
    except FramingError as exc:
        raise ControlError(f"the watcher at {path} answered something unreadable: {exc}") from None
    except OSError:  # ConnectionResetError: it closed before answering
        line = None
    if line is None:
        raise ControlError(f"the watcher at {path} closed the connection without answering")
    return line


def _result(line: bytes, path: Path) -> dict[str, Any]:
    try:
        response = parse_response(line)
    except ProtocolError as exc:
        raise ControlError(f"the watcher at {path} answered something unreadable: {exc}") from None
    if response["ok"]:
        return response["result"]
    words = one_line(response["error"])  # the watcher's words, kept to one line whoever wrote them
    if response.get("refused"):
        raise ControlRefused(f"refused: {words}")
    raise ControlError(words)
