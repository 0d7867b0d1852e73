"""The watcher's side of the control endpoint: a Unix socket, one thread per client.

    server = ControlServer(path, handler, authorize)
    server.start()      # binds (taking over a dead watcher's leftover socket), then accepts in a thread
    ...
    server.close()      # stops accepting and removes the socket, if it is still ours

``handler(peer, request)`` returns the result dict (for ``subscribe``: an iterator of dicts; a
generator is closed when its client goes away, so its ``finally`` can unsubscribe; it may yield
None now and then, which sends nothing but lets the server see a client that left: a stream that
is quiet for long should), or raises
:class:`~monitor.errors.UserError` to refuse with its words ("prompt 12 has expired"). Any other
exception is a bug: the client gets ``internal error: ExcType: msg``, the log gets the traceback,
and the server carries on. ``authorize(peer)`` returns None to allow, or the one line to refuse
with (compose it with :func:`describe_peer`).

Who may ask is decided here, in-process, from the kernel's word (``SO_PEERCRED``), not by the
socket's mode: the socket is 0o666, so a refused user gets a sentence instead of ``EACCES``.
"""

from __future__ import annotations

import logging
import os
import select
import selectors
import socket
import stat
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from monitor.control.protocol import (
    MAX_REQUEST,
    STREAMS,
    ControlError,
    EndpointInUse,
    FramingError,
    LineReader,
    ProtocolError,
    Request,
    encode_error,
    encode_result,
    parse_request,
)
from monitor.errors import UserError
from monitor.kernel.filelock import FileLock, LockHeld
from monitor.kernel.users import in_group, user_name

log = logging.getLogger(__name__)

SUN_PATH_MAX = 107  # bytes of a socket's path (sun_path is 108, with its NUL)
# Connections the kernel queues before accept (capped by net.core.somaxconn). Past it a blocking
# connect waits, and a non-blocking one (any socket with a timeout) fails with EAGAIN: the client retries.
BACKLOG = socket.SOMAXCONN
PROBE_TIMEOUT = 2.0  # seconds a leftover socket has to accept before it counts as alive but busy
_CRED = struct.Struct("3i")  # struct ucred {pid_t pid; uid_t uid; gid_t gid;}


@dataclass(frozen=True)
class Peer:
    """Who is at the other end, as the kernel saw it at connect time (``SO_PEERCRED``)."""

    pid: int
    uid: int
    gid: int
    user: str | None  # the uid's name, None where the user database has none


Handler = Callable[[Peer, Request], "dict[str, Any] | Iterator[dict[str, Any]]"]
Authorize = Callable[[Peer], "str | None"]


def read_peer(conn: socket.socket) -> Peer:
    pid, uid, gid = _CRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))
    return Peer(pid, uid, gid, user_name(uid))


def describe_peer(peer: Peer) -> str:
    """``uid 65534 (nobody)``, or ``uid 4242`` for a uid the user database does not name."""
    return f"uid {peer.uid} ({peer.user})" if peer.user else f"uid {peer.uid}"


def peer_in_group(peer: Peer, group: str) -> bool:
    """Whether the peer's primary group is ``group`` or the group database lists its user in it.

    The database, not the process's live groups: SO_PEERCRED carries only the primary gid."""
    return in_group(peer.gid, peer.user, group)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class NoControl:
    """In place of a :class:`ControlServer` where none can listen (Windows CPython has no Unix sockets)."""

    path = None

    def close(self) -> None:
        pass


class ControlServer:
    """The control endpoint at ``path``: requests in, answers out, one worker thread per client.

    At most ``max_clients`` are served at once; the next one is told ``busy`` and closed without
    holding up the others. ``read_timeout`` is the time a client has to send its whole request
    line, and to take each line of its answer: a silent client, or one that stopped reading,
    is dropped then, and nobody else waits for it. ``holder`` names this process in the
    endpoint's lock, for whoever finds it taken.
    """

    def __init__(self, path: Path, handler: Handler, authorize: Authorize, *, max_clients: int = 16,
                 read_timeout: float = 5.0, holder: str = "vmmemctl watch"):
        if max_clients < 1 or read_timeout <= 0:
            raise ValueError("max_clients must be >= 1 and read_timeout > 0")
        self.path = Path(path)
        self.handler, self.authorize = handler, authorize
        self.max_clients, self.read_timeout, self.holder = max_clients, read_timeout, holder
        self._slots = threading.BoundedSemaphore(max_clients)
        self._clients: set[socket.socket] = set()
        self._clients_lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._lock: FileLock | None = None
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the socket we bound
        self._wake_r = self._wake_w = -1
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()

    @property
    def lock_path(self) -> Path:
        """An flock beside the socket, held while serving: it orders two watchers starting at once
        and names the holder; the kernel drops it when the process dies, even by SIGKILL."""
        return self.path.with_name(self.path.name + ".lock")

    # ------------------------------------------------------------------ start and close

    def start(self) -> None:
        """Bind and listen, then accept in a thread. Raises a one-line :class:`ControlError` when the
        path is unusable (too long, not a socket, an unwritable folder), :class:`EndpointInUse`
        when another watcher answers there."""
        if self._listener is not None or self._closing.is_set():
            raise RuntimeError("a ControlServer starts once")
        self._check_path()
        self._make_parent()
        self._lock = self._take_lock()
        try:
            self._remove_leftover()
            self._listener = self._bind()
        except BaseException:
            self._lock.__exit__(None, None, None)
            self._lock = None
            raise
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._accept_loop, name=f"control {self.path}", daemon=True)
        self._thread.start()
        log.info("control endpoint listening at %s", self.path)

    def close(self) -> None:
        """Stop accepting, end every connection, and remove the socket (only if it is still the one
        bound here). Handlers already running finish; their answers go nowhere."""
        if self._closing.is_set():
            return
        self._closing.set()
        if self._thread is not None:
            os.write(self._wake_w, b"x")
            self._thread.join()
            os.close(self._wake_r)
            os.close(self._wake_w)
        if self._listener is not None:
            self._listener.close()
            self._unlink_if_ours()
        with self._clients_lock:
            clients = list(self._clients)
        for conn in clients:  # wakes a worker blocked on recv or send; a streaming one stops at its next item
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None

    def __enter__(self) -> ControlServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_path(self) -> None:
        size = len(os.fsencode(self.path))
        if size > SUN_PATH_MAX:
            raise ControlError(f"{self.path}: too long for a socket's path ({size} bytes; at most {SUN_PATH_MAX})")
        self._refuse_if_not_socket()

    def _refuse_if_not_socket(self) -> bool:
        """Whether a socket is there; refuses anything else. Never delete what is not a socket: a
        file there is someone's, whatever its name says."""
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise ControlError(f"cannot look at {self.path}: {exc.strerror}") from None
        if not stat.S_ISSOCK(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "a symlink" if stat.S_ISLNK(mode) else "a file"
            raise ControlError(f"{self.path} exists and is {kind}, not a socket; not removing it "
                               "(move it away or choose another path)")
        return True

    def _make_parent(self) -> None:
        parent = self.path.parent
        missing = [folder for folder in (parent, *parent.parents) if not folder.is_dir()]
        try:
            for folder in reversed(missing):
                folder.mkdir()
                folder.chmod(0o755)  # not left to the umask: clients of any user pass through it
        except FileExistsError:
            pass  # another process made it meanwhile; os.access below has the last word
        except OSError as exc:
            raise ControlError(f"cannot create {parent} for the control socket: {exc.strerror or exc}") from None
        if not os.access(parent, os.W_OK | os.X_OK):
            raise ControlError(f"cannot listen at {self.path}: uid {os.geteuid()} cannot write {parent}")

    def _take_lock(self) -> FileLock:
        lock = FileLock(self.lock_path, self.holder)
        try:
            return lock.__enter__()
        except LockHeld as held:
            raise EndpointInUse(f"{held.holder or 'another watcher'} (pid {held.pid if held.pid is not None else '?'}) "
                                f"already serves {self.path}") from None
        except UserError:
            raise ControlError(f"cannot listen at {self.path}: cannot open its lock {self.lock_path}") from None

    def _remove_leftover(self) -> None:
        """A socket nobody answers is the leftover of a watcher that died (SIGKILL leaves it behind):
        remove it. One that answers belongs to a live process: leave it alone and say so."""
        if not self._refuse_if_not_socket():
            return
        if _answers(self.path):
            raise EndpointInUse(f"another process answers at {self.path} (a watcher without its lock?); "
                                "stop it or choose another path")
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise ControlError(f"cannot remove the leftover socket {self.path}: {exc.strerror}") from None
        log.info("removed %s, the leftover socket of a watcher that is gone", self.path)

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(self.path))
            # Everyone may connect; authorize() decides, and says why in words.
            os.chmod(self.path, 0o666)
            sock.listen(BACKLOG)
            sock.setblocking(False)
            st = os.lstat(self.path)
        except OSError as exc:
            sock.close()
            raise ControlError(f"cannot listen at {self.path}: {exc.strerror or exc}") from None
        self._identity = (st.st_dev, st.st_ino)
        return sock

    def _unlink_if_ours(self) -> None:
        try:
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self._identity:
                self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove the control socket %s: %s", self.path, exc.strerror)

    # ------------------------------------------------------------------ accepting

    def _accept_loop(self) -> None:
        assert self._listener is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._closing.is_set():
                selector.select()
                if self._closing.is_set():
                    break
                try:
                    conn, _ = self._listener.accept()
                except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                    continue
                except OSError as exc:
                    if self._closing.is_set():
                        break
                    # Out of file descriptors (EMFILE) and the like: back off instead of spinning.
                    log.warning("control endpoint: accept failed: %s", exc)
                    self._closing.wait(0.5)
                    continue
                self._admit(conn)

    def _admit(self, conn: socket.socket) -> None:
        if not self._slots.acquire(blocking=False):
            self._turn_away(conn)
            return
        with self._clients_lock:
            self._clients.add(conn)
        try:
            threading.Thread(target=self._serve, args=(conn,), name="control client", daemon=True).start()
        except RuntimeError:  # can't start new thread
            self._release(conn)
            self._turn_away(conn)

    def _turn_away(self, conn: socket.socket) -> None:
        """``busy``, without waiting on this client: the accept thread must never block."""
        try:
            conn.setblocking(False)
            try:
                # Read what it already sent: closing with unread data resets the connection.
                conn.recv(MAX_REQUEST)
            except OSError:
                pass
            conn.send(encode_error(f"busy: {_plural(self.max_clients, 'client')} connected; try again"))
        except OSError:
            pass
        finally:
            conn.close()
        log.debug("control endpoint busy: turned a client away")

    def _release(self, conn: socket.socket) -> None:
        with self._clients_lock:
            self._clients.discard(conn)
        conn.close()
        self._slots.release()

    # ------------------------------------------------------------------ one client

    def _serve(self, conn: socket.socket) -> None:
        peer = None
        try:
            peer = read_peer(conn)
            self._converse(conn, peer)
        except OSError as exc:  # it went away mid-request or mid-answer (BrokenPipe, ConnectionReset, a timeout)
            log.debug("control client %s went away: %s", peer and describe_peer(peer), exc)
        except Exception:  # a bug here must not end the endpoint: it loses this client only
            log.exception("control endpoint failed on a client (%s)", peer and describe_peer(peer))
        finally:
            self._release(conn)

    def _converse(self, conn: socket.socket, peer: Peer) -> None:
        reader = LineReader(conn, MAX_REQUEST, "request")
        try:
            line = reader.read_line(self.read_timeout)
        except TimeoutError:
            self._say(conn, encode_error(f"request: no whole line within {self.read_timeout:g}s; closing"))
            return
        except FramingError as exc:
            self._say(conn, encode_error(str(exc)))
            return
        if line is None:  # connected and left without a word (a liveness probe)
            return
        try:
            refusal = self.authorize(peer)
        except Exception as exc:
            self._send(conn, self._failure(exc, "authorize"))
            return
        if refusal is not None:
            log.info("control: refused pid %d %s: %s", peer.pid, describe_peer(peer), refusal)
            self._send(conn, encode_error(refusal, refused=True))
            return
        try:
            request = parse_request(line)
        except ProtocolError as exc:
            self._send(conn, encode_error(str(exc)))
            return
        log.debug("control: pid %d %s asks %s", peer.pid, describe_peer(peer), request.op)
        if request.op in STREAMS:
            self._stream(conn, peer, request)
        else:
            self._send(conn, self._answer(peer, request))

    def _answer(self, peer: Peer, request: Request) -> bytes:
        try:
            return encode_result(_checked(self.handler(peer, request)))
        except Exception as exc:
            return self._failure(exc, request.op)

    def _stream(self, conn: socket.socket, peer: Peer, request: Request) -> None:
        try:
            items = iter(self.handler(peer, request))
        except Exception as exc:
            self._send(conn, self._failure(exc, request.op))
            return
        try:
            self._send(conn, encode_result({"subscribed": True}))
            while True:
                try:
                    item = next(items)
                    if item is None:  # a heartbeat: nothing to send, but is anyone still listening?
                        if _hung_up(conn):
                            return
                        continue
                    line = encode_result(_checked(item))
                except StopIteration:
                    return
                except Exception as exc:
                    self._send(conn, self._failure(exc, request.op))
                    return
                self._send(conn, line)  # raises once the client is gone, which ends the stream
        finally:
            _close_items(items)

    def _failure(self, exc: Exception, what: str) -> bytes:
        """The error line for an exception of the handler (or of authorize) while doing ``what``."""
        if isinstance(exc, UserError):  # the handler's refusal, in words for the person who asked
            return encode_error(str(exc))
        log.error("control endpoint: %s failed", what, exc_info=exc)
        return encode_error(f"internal error: {type(exc).__name__}: {exc}")

    def _send(self, conn: socket.socket, data: bytes) -> None:
        conn.settimeout(self.read_timeout)
        conn.sendall(data, socket.MSG_NOSIGNAL)

    def _say(self, conn: socket.socket, data: bytes) -> None:
        """A last word to a client that may be gone already."""
        try:
            self._send(conn, data)
        except OSError:
            pass


def _checked(result: object) -> dict[str, Any]:
    if not isinstance(result, dict):
        raise TypeError(f"the handler gave {type(result).__name__}, not a dict")
    return result


def _hung_up(conn: socket.socket) -> bool:
    """Whether the client closed its end (or the server is closing): POLLHUP, without reading.
    A client that only shut its writing side (``socat`` after its input ends) still listens."""
    poller = select.poll()
    poller.register(conn, select.POLLHUP)
    return any(mask & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, mask in poller.poll(0))


def _close_items(items: Iterator[Any]) -> None:
    close = getattr(items, "close", None)
    if close is None:
        return
    try:
        close()  # a generator's finally runs here: it can unsubscribe
    except Exception:
        log.exception("closing a control stream failed")


def _answers(path: Path) -> bool:
    """Whether a process accepts connections at the socket ``path`` (ECONNREFUSED: nobody does)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(PROBE_TIMEOUT)
    try:
        probe.connect(str(path))
        return True
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except (TimeoutError, BlockingIOError):  # someone listens, with a full queue
        return True
    except PermissionError:
        raise ControlError(f"{path} belongs to someone else (connecting is not permitted)") from None
    finally:
        probe.close()
