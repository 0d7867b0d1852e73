"""The watcher's control endpoint: clients ask the one watcher to act, and it checks who asks.

    protocol      newline-delimited JSON: the ops and their fields, checked strictly; lines and their limits
    server        ControlServer: the Unix socket, who is at the other end (SO_PEERCRED), one thread per client
    client        call() and subscribe(): ask, and get the result or one line saying why not

Why a Unix stream socket, not TCP, D-Bus or a folder of request files:

- Local only: no port to choose, configure, collide with or firewall; nothing reaches it from
  the network, and it works the same in each distro and in ``/run``.
- The kernel says who the peer is (``SO_PEERCRED``: pid, uid, gid at connect time), so the
  watcher decides who may act without passwords or tokens, and names them in its records.
- The file's permissions are a first gate where one is wanted (the folder's mode); here the
  socket itself is 0o666 because the check is in-process, so a refused user is told why in
  words ("uid 1000 (alice) may not control this watcher: ...") instead of ``EACCES``.
- A leftover of a dead watcher is recognised for sure: nobody answers it (``ECONNREFUSED``).

Wire format, one request per connection (see :mod:`monitor.control.protocol`)::

    -> {"op": "snooze", "seconds": 3600}
    <- {"ok": true, "result": {...}}   or   {"ok": false, "error": "one line"}

May import: the vocabulary (monitor.errors, monitor.units) and monitor.kernel; the standard
library only. Never monitor.config/history/watch/cli, and never tui or textual: the watcher and
the CLI import this package, not the other way round.
"""

from monitor.control.client import Subscription, call, subscribe
from monitor.control.protocol import (
    MAX_REQUEST,
    OPS,
    ControlError,
    ControlRefused,
    EndpointInUse,
    ProtocolError,
    Request,
    encode,
    make_request,
    parse_request,
    parse_response,
)
from monitor.control.server import ControlServer, Peer, describe_peer, peer_in_group

__all__ = [
    "MAX_REQUEST", "OPS", "ControlError", "ControlRefused", "ControlServer", "EndpointInUse", "Peer",
    "ProtocolError", "Request", "Subscription", "call", "describe_peer", "encode", "make_request",
    "parse_request", "parse_response", "peer_in_group", "subscribe",
]
