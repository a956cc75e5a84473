# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: a xenstore client on pyxs with a deadline on every call.

pyxs (0.4.1 on PyPI, 0.4.2.dev0 in Debian) supplies the connection, its Router thread and the
packet codec. Its Client is not used for requests because ``RVar.get()`` waits forever: when
xenstored drops the connection the Router thread dies and the caller would hang. Here every
request waits on the reply with a deadline and checks that the Router thread is alive, so a
lost connection or a missing reply becomes an exception.

Watch events are delivered into a queue that also writes a byte into a pipe, so an event loop
can ``select()`` on the pipe together with other file descriptors.

The ``*_many`` calls pipeline: they put up to PIPELINE_DEPTH requests on the connection before
waiting for the first reply. xenstored answers one connection's requests in the order they were
sent, so a batch of N costs one round trip plus N times xenstored's own work instead of N waits
(each wait is a hand-over to pyxs' Router thread and back); per-path order is kept. On a Unix
socket the requests go out many per write (pyxs writes each packet's header and payload apart)
and the Router thread reads whole buffers (pyxs pays a select() and two recv() per packet):
for a fleet's thousands of requests, tens of system calls instead of tens of thousands.

Sending has a deadline too (on the Unix socket: a xenstored that stops reading its socket cannot
block a send for longer than the timeout). Once the connection is judged dead (see
XenstoreClient._probe for when a timeout means dead) every later request fails at once with
XenstoreUnavailable, naming the socket and the reason, instead of waiting out its own timeout.
When xenstored closes the connection (a restart), the client connects again to the same socket
or device within the timeout and registers its watches again; ``reconnects`` and
``take_reconnect()`` tell the caller that watch events may have been lost meanwhile.
"""

import collections
import errno
import fcntl
import itertools
import os
import re
import select
import socket
import stat
import struct
import threading
import time

try:
    import queue
except ImportError:  # pragma: no cover - Python 2 is not a target
    import Queue as queue  # noqa

try:
    from pyxs.client import Router
    try:
        from pyxs.client import RVar as _RouterRVar
    except ImportError:  # a pyxs without it sends through Router.send
        _RouterRVar = None
    try:
        from pyxs._internal import Event as _Event
    except ImportError:  # a pyxs without it reads through its own Router
        _Event = None
    from pyxs.connection import UnixSocketConnection, XenBusConnection
    from pyxs._internal import Op, Packet
    from pyxs.exceptions import PyXSError
    HAS_PYXS = True
    PYXS_IMPORT_ERROR = None
except ImportError as exc:  # reported by the module base with missing_required_lib()
    Router = UnixSocketConnection = XenBusConnection = Op = Packet = _RouterRVar = _Event = None
    PyXSError = Exception
    HAS_PYXS = False
    PYXS_IMPORT_ERROR = exc

from ansible_collections.xen.suspend.plugins.module_utils._errors import (
    DependencyError, XenstoreConnectionLost, XenstoreError, XenstoreTimeout, XenstoreUnavailable)

NUL = b"\x00"
DEFAULT_TIMEOUT = 10.0
DEFAULT_RUNDIR = "/var/run/xenstored"
XENBUS_PATHS = ("/dev/xen/xenbus", "/proc/xen/xenbus")
PAYLOAD_MAX = 4096
PYXS_INSTALL_HINT = "python3-pyxs (Debian/Ubuntu) or 'pip install pyxs'"

# Watch paths and node paths we build ourselves; anything else is a programming error.
_PATH_RE = re.compile(br"^(?:@releaseDomain|@introduceDomain|/[A-Za-z0-9_/-]*)\Z")
_VALUE_RE = re.compile(br"^[\x20-\x7e]*\Z")
# A permission: n(one), r(ead), w(rite) or b(oth), then a domid.
_PERM_RE = re.compile(br"^[nrwb][0-9]{1,5}\Z")

# How often a waiting caller re-checks that the Router thread is alive.
_LIVENESS_SLICE = 0.2

# xsd_sockmsg, the header of every packet: type, req_id, tx_id, len (host byte order).
_HEADER = struct.Struct("=IIII")

# Requests a pipelined batch keeps outstanding. Enough to hide the hand-over latency; small
# enough that xenstored's per-connection output buffer and quotas never come into play.
PIPELINE_DEPTH = 64
# A batch sends again once no more than this many requests are outstanding, as many as fit in
# PIPELINE_DEPTH, in one write: a write per request would wake xenstored once per request.
_REFILL_MARK = PIPELINE_DEPTH // 2

_OP_NAMES = {
    1: "directory", 2: "read", 3: "get_perms", 4: "watch", 5: "unwatch", 6: "transaction_start",
    7: "transaction_end", 11: "write", 12: "mkdir", 13: "rm", 18: "resume",
}

# Wire op numbers needed without pyxs' Op (None when pyxs is missing).
_XS_DIRECTORY, _XS_READ, _XS_GET_PERMS, _XS_WATCH, _XS_UNWATCH = 1, 2, 3, 4, 5
_XS_WATCH_EVENT = 15

# What the Router thread asks of the socket at a time: many packets (at most 4 KiB of payload
# each) per system call.
_RECV_SIZE = 256 * 1024

# A request whose reply had not come when the connection was lost is sent once more on the new
# connection only when that cannot do anything twice: a read or a directory listing outside a
# transaction, or a watch (it lived on the connection that is gone, so it cannot be doubled).
# Anything else (write, rm, a transaction step, XS_RESUME) may or may not have been carried out:
# it fails with XenstoreConnectionLost, as without reconnecting.
_RETRY_AFTER_RECONNECT = frozenset([_XS_DIRECTORY, _XS_READ, _XS_GET_PERMS, _XS_WATCH])

# Pause between connection attempts while a restarting xenstored's socket is absent.
_RECONNECT_INTERVAL = 0.05

# After a timeout, how long the probe may take before the connection is judged dead: a quarter
# of the timeout, at least 1 s, at most the timeout.
_PROBE_MIN = 1.0


def default_socket_path(environ=None):
    """Where libxenstore would connect: $XENSTORED_PATH, else $XENSTORED_RUNDIR/socket."""
    if environ is None:
        environ = os.environ
    explicit = environ.get("XENSTORED_PATH")
    if explicit:
        return explicit
    return os.path.join(environ.get("XENSTORED_RUNDIR") or DEFAULT_RUNDIR, "socket")


def _is_socket(path):
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def _path_text(path):
    return path.decode("ascii", "replace") if isinstance(path, bytes) else path


def _whole_packets(items, sent_bytes):
    """How many of ``items`` (op, payload, tx_id, path) the first ``sent_bytes`` bytes of
    their packets hold whole."""
    whole = 0
    for _op, payload, _tx_id, _path in items:
        sent_bytes -= _HEADER.size + len(payload)
        if sent_bytes < 0:
            break
        whole += 1
    return whole


def domain_path(domid, relative=""):
    """Absolute /local/domain/<domid>[/relative] as bytes (no GET_DOMAIN_PATH round trip)."""
    base = "/local/domain/%d" % int(domid)
    if relative:
        base += "/" + relative
    return base.encode("ascii")


def parse_perms(payload):
    """XS_GET_PERMS' reply (``n0\0r5\0``) as a list of (letter, domid), owner first; the
    first entry's letter is what every domain not listed may do. Raises XenstoreError for a
    reply that is not a permission list."""
    items = payload.rstrip(NUL).split(NUL)
    if not items or not all(_PERM_RE.match(item) for item in items):
        raise XenstoreError("unexpected permissions %r" % payload[:64], op="get_perms")
    return [(item[:1].decode("ascii"), int(item[1:])) for item in items]


def may_write(perms, domid):
    """Whether ``domid`` may write a node with permissions ``perms`` (parse_perms), as
    xenstored decides for an unprivileged domain: the owner may do anything, a domain listed
    after the owner has its own letter, anyone else the owner entry's letter."""
    if not perms:
        return False
    owner_letter, owner = perms[0]
    if owner == domid:
        return True
    for letter, listed in perms[1:]:
        if listed == domid:
            return letter in ("w", "b")
    return owner_letter in ("w", "b")


class WakingQueue(queue.Queue):
    """A queue.Queue whose ``put`` also makes a pipe readable, to wake a select() loop.

    Each event is stored as (path, token, arrival) where arrival counts the events delivered
    so far; only pyxs' Router thread puts, so the count is exact.

    One byte per wake-up, not per event: ``wake_pending`` says that the pipe is readable
    already. The reader (XenstoreClient.events_nowait) drains the pipe, clears it, and only
    then takes the events: an event put after the clearing writes again, one put before it
    is taken."""

    def __init__(self, wake_fd):
        queue.Queue.__init__(self)
        self._wake_fd = wake_fd
        self.arrivals = 0
        self.wake_pending = False

    def put(self, item, block=True, timeout=None):
        self.arrivals += 1
        queue.Queue.put(self, (item[0], item[1], self.arrivals), block, timeout)
        if self.wake_pending:
            return
        self.wake_pending = True
        try:
            os.write(self._wake_fd, b"w")
        except OSError:  # pipe full (a wake-up is pending anyway) or closed at shutdown
            pass


class _ReplyStamps(dict):
    """Stands in for pyxs' Router.rvars. The Router thread pops a request's slot right before
    handing it the reply, after queueing every event that preceded that reply on the socket;
    recording the event count at that moment tells, exactly, which events came before a
    reply. (If a pyxs version does not use ``rvars`` this way, no stamps are recorded and
    callers fall back to not knowing.)"""

    def __init__(self, events):
        dict.__init__(self)
        self.events = events
        self.stamps = {}

    def pop(self, key, *default):
        self.stamps[key] = self.events.arrivals
        return dict.pop(self, key, *default)


class _WatchSink(object):
    """What pyxs' Router delivers watch events to: anything with an ``events`` queue."""

    def __init__(self, events):
        self.events = events


class _ConnectionGone(Exception):
    """Internal: the connection was found lost before a request went out (nothing was sent)."""


class _SendStalled(Exception):
    """The socket did not take a whole packet before the send deadline. Deliberately not an
    OSError: pyxs would turn that into a ConnectionError and the meaning would be lost."""

    def __init__(self, sent, total):
        Exception.__init__(self, "%d of %d bytes sent" % (sent, total))
        self.sent = sent
        self.total = total


class _SendDeadline(object):
    """Wraps pyxs' Unix socket transport so that a send gives up at ``deadline`` (monotonic
    time, set by the client around each packet; None: no deadline).

    pyxs sends with ``socket.sendall`` on a blocking socket, which blocks for as long as
    xenstored does not read. Here each chunk goes out with MSG_DONTWAIT and, when the socket
    buffer is full, poll() waits for room until the deadline. The socket itself stays blocking,
    so pyxs' Router thread reads it as before. Anything else (recv, fileno, close) is pyxs'.
    A transport without a socket (the xenbus device, which cannot be polled for writing) keeps
    pyxs' own send."""

    def __init__(self, real):
        self.real = real
        self.deadline = None
        self.sock = getattr(real, "sock", None)

    def send(self, data):
        sock, deadline = self.sock, self.deadline
        if sock is None or deadline is None or not hasattr(select, "poll"):
            return self.real.send(data)
        total = len(data)
        try:
            sent = sock.send(data, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            sent = 0
        if sent == total:  # the usual case: there was room
            return None
        view = memoryview(data)
        poller = None
        while sent < total:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _SendStalled(sent, total)
            if poller is None:
                poller = select.poll()
                poller.register(sock.fileno(), select.POLLOUT)
            poller.poll(int(remaining * 1000) + 1)
            try:
                sent += sock.send(view[sent:], socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                pass
        return None

    def __getattr__(self, name):
        return getattr(self.real, name)


def _dispatch_packet(router, op, rq_id, tx_id, payload):
    """What pyxs' Router does with one packet read: a watch event goes to the monitors of its
    token, a reply to the request waiting for it (an unexpected reply ends the Router)."""
    if op == _XS_WATCH_EVENT:
        event = _Event(*payload.split(NUL)[:-1])
        for monitor in router.monitors[event.token]:
            monitor.events.put(event)
        return
    rvar = router.rvars.pop(rq_id, None)
    if rvar is None:
        raise _UnexpectedPacket("reply to request %d, which is not waiting" % rq_id)
    rvar.set(Packet(op, payload, rq_id, tx_id))


def _buffered_router_loop(router):
    """The Router thread on a Unix socket: one recv() takes every packet xenstored has sent so
    far (pyxs' loop pays a select() and two recv() per packet: three system calls for each
    reply and each watch event). Ends when xenstored closes the connection, on the router's
    terminator (_abandon), or on a packet it cannot place; the connection is then closed, as
    pyxs does, and callers see the thread gone."""
    sock = router.connection.transport.sock
    watched = [sock, router.r_terminator]
    buffer = bytearray()
    try:
        while True:
            readable, _w, _x = select.select(watched, [], [])
            if router.r_terminator in readable:
                return
            try:
                data = sock.recv(_RECV_SIZE)
            except (OSError, IOError):  # reset or shut down under us: the connection is gone
                return
            if not data:
                return
            buffer += data
            offset = 0
            while len(buffer) - offset >= _HEADER.size:
                op, rq_id, tx_id, size = _HEADER.unpack_from(buffer, offset)
                end = offset + _HEADER.size + size
                if end > len(buffer):
                    break
                payload = bytes(buffer[offset + _HEADER.size:end])
                offset = end
                _dispatch_packet(router, op, rq_id, tx_id, payload)
            del buffer[:offset]
    except _UnexpectedPacket:
        return
    finally:
        for closer in (router.connection.close, router.r_terminator.close, router.w_terminator.close):
            try:
                closer()
            except (OSError, IOError):
                pass


if Router is not None:
    class _BufferedRouter(Router):
        """pyxs' Router, reading a Unix socket whole buffers at a time (_buffered_router_loop);
        the rest (send_lock, rvars, monitors, thread, start) is pyxs'."""

        def __call__(self):
            _buffered_router_loop(self)
else:
    _BufferedRouter = None


class _UnexpectedPacket(Exception):
    """A reply nobody waits for: the stream cannot be trusted any more."""


class _TransactionView(object):
    """Reads and writes bound to one transaction id."""

    def __init__(self, client, tx_id):
        self.client = client
        self.tx_id = tx_id

    def read(self, path):
        return self.client.read(path, tx_id=self.tx_id)

    def write(self, path, value):
        self.client.write(path, value, tx_id=self.tx_id)

    def rm(self, path):
        self.client.rm(path, tx_id=self.tx_id)

    def set_perms(self, path, perms):
        self.client.set_perms(path, perms, tx_id=self.tx_id)


class Outcome(object):
    """One request of a pipelined batch: ``value`` (a read's bytes, None for a missing node),
    or ``error`` (the XenstoreError the single call would have raised); ``events_before`` is
    how many watch events had arrived before its reply (None: not known)."""

    __slots__ = ("value", "error", "events_before")

    def __init__(self, value=None, error=None, events_before=None):
        self.value = value
        self.error = error
        self.events_before = events_before

    @property
    def ok(self):
        return self.error is None

    def __repr__(self):
        return "Outcome(%r, %r)" % (self.value, self.error)


class XenstoreClient(object):
    """One xenstored connection; single caller thread plus pyxs' Router thread.

    ``round_trips`` counts requests sent, so callers can report the xenstore cost of an
    operation.

    Dead and reconnected connections (see the module docstring): ``dead`` is None or why the
    connection was judged dead (requests then fail at once with XenstoreUnavailable until
    ``reconnect()`` succeeds); ``reconnects`` counts successful reconnects and
    ``take_reconnect()`` says, once, that one happened since it was last asked: watch events
    may have been lost across it, so whatever the caller waits for must be polled again.
    ``watches`` holds the (path, token) watches in place; ``lost_watches`` the
    (path, token, error) ones a reconnect could not register again.
    """

    def __init__(self, timeout=DEFAULT_TIMEOUT, socket_path=None, xenbus_path=None,
                 environ=None):
        if not HAS_PYXS:
            raise DependencyError("the Python library pyxs is not installed", library="pyxs",
                                  install=PYXS_INSTALL_HINT, python_library=True)
        if timeout is None or timeout <= 0:
            raise ValueError("xenstore timeout must be > 0")
        self.timeout = float(timeout)
        self.socket_path = socket_path
        self.xenbus_path = xenbus_path
        self._environ = environ
        self.round_trips = 0
        self.events_before_last_reply = None
        self.description = None
        self._router = None
        self._rq_ids = itertools.count(1)
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            _set_nonblocking(fd)
        self.events = WakingQueue(self._wake_w)
        self._sink = _WatchSink(self.events)
        self._watches = set()
        # pyxs' Router delivers events to the monitors of its ``monitors`` dict; every Router
        # of this client shares this one, so subscriptions outlive a reconnect.
        self._monitors = collections.defaultdict(list)
        self._endpoint = None  # (pyxs connection class, path) for reconnecting to the same place
        self._transactions = set()  # transaction ids open on the current connection
        self._lost_transactions = set()  # ... open on a connection that was lost since
        self._dead = None
        self._dead_router = None  # the connection judged dead while still open ...
        self._dead_probe = None  # ... and the probe whose late reply revives it
        # A lost connection is replaced automatically only when the one before it answered a
        # request: a xenstored that accepts and hangs up again is judged dead, not re-dialled.
        self._reconnect_allowed = True
        self._reconnect_pending = False
        self.reconnects = 0
        self.last_reconnect = None
        self.lost_watches = []

    # -- connection ----------------------------------------------------------------------------

    def connect(self):
        socket_path = self.socket_path or default_socket_path(self._environ)
        if _is_socket(socket_path):
            self._endpoint = (UnixSocketConnection, socket_path)
            self.description = "unix socket %s" % socket_path
        else:
            candidates = [self.xenbus_path] if self.xenbus_path else list(XENBUS_PATHS)
            device = None
            for candidate in candidates:
                if os.path.exists(candidate):
                    device = candidate
                    break
            if device is None:
                raise XenstoreError(
                    "no xenstored socket at %s and no xenbus device (%s); is xenstored running "
                    "and is this a Xen dom0?" % (socket_path, ", ".join(candidates)))
            self._endpoint = (XenBusConnection, device)
            self.description = "xenbus device %s" % device
        self._router = self._open_router()
        self._reconnect_allowed = True
        return self

    def _open_router(self):
        """A started pyxs Router on a new connection to ``self._endpoint``."""
        factory, where = self._endpoint
        connection = factory(where)
        try:
            # Connected here rather than in Router.start() so that the send deadline is in place
            # before the Router thread runs.
            connection.connect()
            transport = getattr(connection, "transport", None)
            guard = None
            if getattr(transport, "sock", None) is not None:
                guard = connection.transport = _SendDeadline(transport)
            # A socket is read by our loop; the xenbus device (one message per read) by pyxs'.
            buffered = guard is not None and _BufferedRouter is not None and _Event is not None
            router = (_BufferedRouter if buffered else Router)(connection)
            router.send_guard = guard
            if isinstance(getattr(router, "rvars", None), dict):
                router.rvars = _ReplyStamps(self.events)
            if isinstance(getattr(router, "monitors", None), dict):
                router.monitors = self._monitors
            else:  # a pyxs that keeps subscriptions elsewhere: subscribe every watch again
                for token in set(token for _path, token in self._watches):
                    router.subscribe(token, self._sink)
            router.start()
        except PyXSError as exc:
            self._close_quietly(connection)
            raise XenstoreError("cannot connect to xenstored via %s: %s" % (self.description, exc))
        except (OSError, IOError) as exc:  # pylint: disable=bad-except-order  # PyXSError is Exception without pyxs
            self._close_quietly(connection)
            raise XenstoreError("cannot connect to xenstored via %s: %s" % (self.description, exc))
        return router

    @staticmethod
    def _close_quietly(connection):
        try:
            connection.close()
        except (OSError, IOError, PyXSError):  # already failing: that error is the one to report
            pass

    @staticmethod
    def _abandon(router):
        """Stop a Router and its connection without waiting: its terminator ends the Router's
        select(), and shutting the socket down also ends a recv() it may be blocked in."""
        if router is None:
            return
        try:
            if router.is_connected:
                router.w_terminator.sendall(NUL)
        except (OSError, IOError, AttributeError):
            pass
        sock = getattr(getattr(router.connection, "transport", None), "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except (OSError, IOError):
                pass

    def close(self):
        router, self._router = self._router, None
        if router is not None:
            self._abandon(router)
            # The Router thread is a daemon: never let a wedged connection block our exit.
            router.thread.join(2.0)
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_r = self._wake_w = -1

    def __enter__(self):
        return self.connect()

    def __exit__(self, *exc_info):
        self.close()

    @property
    def connected(self):
        """True while the connection is up and not judged dead."""
        return self._router is not None and self._router.thread.is_alive() and self._dead is None

    @property
    def dead(self):
        """None, or why the connection was judged dead (requests then fail at once)."""
        return self._dead

    @property
    def watches(self):
        """The (path, token) watches in place (registered again after a reconnect)."""
        return frozenset(self._watches)

    @property
    def reconnect_pending(self):
        """True when a reconnect happened that take_reconnect() has not reported yet."""
        return self._reconnect_pending

    def take_reconnect(self):
        """True, once, after a reconnect: watch events may have been lost across it (the
        watches were registered again and fire once each, as any new watch does), so whatever
        the caller waits for must be polled again."""
        pending, self._reconnect_pending = self._reconnect_pending, False
        return pending

    def reconnect(self):
        """Drop the connection and connect again to the same socket or device, registering
        every watch again; the way back after the connection was judged dead. Raises
        XenstoreUnavailable when that fails."""
        if self._endpoint is None:
            return self.connect()
        self._reconnect_allowed = True
        error = self._reconnect("a reconnect was requested")
        if error is not None:
            raise error
        return self

    def _wake(self):
        try:
            os.write(self._wake_w, b"r")
        except OSError:
            pass

    def _declare_dead(self, reason, router=None, probe=None):
        """Judge the connection dead: requests fail at once from now on. ``router`` and
        ``probe``: the connection stays open, and the probe's late reply revives it."""
        self._dead = reason
        self._dead_router = router
        self._dead_probe = probe
        self._wake()
        return self._unavailable(None, None)

    def _unavailable(self, op_name, path_text):
        return XenstoreUnavailable(
            "not sent: the connection to xenstored (%s) is dead: %s" % (self.description, self._dead),
            op=op_name, path=path_text, endpoint=self.description, reason=self._dead)

    def _usable_router(self, op_name, path_text, tx_id):
        """The Router to send on; raises XenstoreUnavailable at once when the connection is
        judged dead, _ConnectionGone when it was lost (nothing sent: the caller reconnects)."""
        router = self._router
        if router is None:
            raise XenstoreConnectionLost("not connected", op=op_name, path=path_text)
        if self._dead is not None:
            if router is not self._dead_router:
                raise self._unavailable(op_name, path_text)
            if not router.thread.is_alive():
                # xenstored closed the connection it had stopped answering on (restarted?):
                # that is a lost connection, which may be reconnected.
                self._dead = self._dead_router = self._dead_probe = None
            elif self._dead_probe is not None and getattr(self._dead_probe, "target", None) is not None:
                # xenstored answered the probe after all: it was slow, not dead.
                self._dead = self._dead_router = self._dead_probe = None
            else:
                raise self._unavailable(op_name, path_text)
        if not router.thread.is_alive():
            raise _ConnectionGone("the connection to xenstored (%s) was lost" % self.description)
        if tx_id and tx_id in self._lost_transactions:
            raise XenstoreConnectionLost("transaction %d was lost with the connection to xenstored"
                                         % tx_id, op=op_name, path=path_text)
        return router

    def _recover(self, reason):
        """After losing the connection: reconnect, or judge it dead. None when reconnected,
        else the XenstoreUnavailable for the requests that cannot be sent."""
        if not self._reconnect_allowed:
            self._abandon(self._router)
            return self._declare_dead("%s again before the connection made by the last reconnect "
                                      "answered any request" % reason)
        return self._reconnect(reason)

    def _reconnect(self, reason):
        """Connect again to the same socket or device (attempts every _RECONNECT_INTERVAL for
        at most the timeout: a restarting xenstored's socket is absent for a moment) and
        register every watch again (replies within the timeout, as for any request). None when
        done, else (the connection judged dead) the XenstoreUnavailable for the requests that
        cannot be sent."""
        old = self._router
        self._abandon(old)
        limit = time.monotonic() + self.timeout
        attempts = 0
        last = None
        while True:
            attempts += 1
            try:
                router = self._open_router()
                break
            except XenstoreError as exc:  # socket absent or refusing while xenstored restarts
                last = exc
            if time.monotonic() + _RECONNECT_INTERVAL >= limit:
                return self._declare_dead("%s; no new connection within %.1f s (%d attempts): %s"
                                          % (reason, self.timeout, attempts, last))
            time.sleep(_RECONNECT_INTERVAL)
        self._router = router
        self._lost_transactions.update(self._transactions)
        self._transactions.clear()
        failure = self._register_watches_again(router)
        if failure is not None:
            self._abandon(router)
            return self._declare_dead("%s; reconnected, but registering the watches again failed: %s"
                                      % (reason, failure))
        self._dead = self._dead_router = self._dead_probe = None
        self._reconnect_allowed = False  # until the new connection answers a request
        self.reconnects += 1
        self.last_reconnect = reason
        self._reconnect_pending = True
        self._wake()
        return None

    def _register_watches_again(self, router):
        """XS_WATCH for every watch in place, pipelined; None, or why it failed. A watch that
        xenstored refuses now is dropped and listed in ``lost_watches``."""
        items = sorted(self._watches)
        for start in range(0, len(items), PIPELINE_DEPTH):
            sent = []
            for path, token in items[start:start + PIPELINE_DEPTH]:
                try:
                    sent.append(((path, token), self._send_on(router, _XS_WATCH,
                                                              path + NUL + token + NUL, 0, path)))
                except XenstoreError as exc:
                    return str(exc)
            deadline = time.monotonic() + self.timeout
            for (path, token), request in sent:
                try:
                    self._finish(request, deadline)
                except (XenstoreTimeout, XenstoreConnectionLost) as exc:
                    return str(exc)
                except XenstoreError as exc:
                    self._watches.discard((path, token))
                    self._unsubscribe(token)
                    self.lost_watches.append((path, token, str(exc)))
        return None

    # -- requests ------------------------------------------------------------------------------

    def _request(self, op, payload, tx_id=0, path=None):
        outcome = self._pipeline([(op, payload, path, tx_id)])[0]
        self.events_before_last_reply = outcome.events_before
        if outcome.error is not None:
            raise outcome.error
        return outcome.value

    def _send_on(self, router, op, payload, tx_id, path):
        """Put one request on the connection; what _finish needs to wait for its reply."""
        if len(payload) > PAYLOAD_MAX:
            raise XenstoreError("payload of %d bytes exceeds %d" % (len(payload), PAYLOAD_MAX),
                                op=_OP_NAMES.get(op, "op %d" % op), path=_path_text(path))
        sent, error = self._send_packets(router, [(op, payload, tx_id, path)])
        if error is not None:
            raise error
        return sent[0]

    def _send_packets(self, router, items):
        """Put requests ``(op, payload, tx_id, path)`` (payloads within PAYLOAD_MAX) on the
        connection, in order; returns (sent, error): what _finish needs for each request that
        went out whole, in order, and None or the error that stopped the rest.

        Each packet goes out as one write, header and payload together (pyxs writes them
        apart: two system calls and two wake-ups of xenstored per request); on a Unix socket the
        whole list goes out in one write. A pyxs without the Router internals this relies on
        (``rvars``, ``send_lock``, RVar) sends through ``Router.send``.

        ``error``: XenstoreTimeout when the socket took nothing more before the send deadline
        (the connection is then closed and judged dead; the request after the sent ones never
        reached xenstored whole); XenstoreConnectionLost when the connection went away under
        the send (``sent`` is then empty: any of the requests may have gone out, in part or
        whole)."""
        self.events_before_last_reply = None
        guard = getattr(router, "send_guard", None)
        if guard is not None:
            guard.deadline = time.monotonic() + self.timeout
        rq_ids = [next(self._rq_ids) for _item in items]
        direct = _RouterRVar is not None and isinstance(getattr(router, "rvars", None), dict) and \
            hasattr(router, "send_lock")
        rvars = []
        try:
            if direct:
                rvars = [_RouterRVar() for _item in items]
                packets = [_HEADER.pack(op, rq_id, tx_id, len(payload)) + payload
                           for (op, payload, tx_id, _path), rq_id in zip(items, rq_ids)]
                with router.send_lock:
                    # Registered before sending: xenstored may reply before send() returns.
                    for rq_id, rvar in zip(rq_ids, rvars):
                        router.rvars[rq_id] = rvar
                    transport = router.connection.transport
                    if guard is not None:  # a stream socket: one write for the lot
                        transport.send(b"".join(packets))
                    else:  # the xenbus device takes one message per write
                        for packet in packets:
                            transport.send(packet)
            else:
                for (op, payload, tx_id, _path), rq_id in zip(items, rq_ids):
                    rvars.append(router.send(Packet(op, payload, rq_id, tx_id)))
        except _SendStalled as stall:
            # Part of a packet may be in the socket: the connection cannot carry another one.
            # Nothing more is sent on it, and xenstored never sees the stalled request whole.
            whole = _whole_packets(items, stall.sent) if direct else len(rvars)
            op, _payload, _tx_id, path = items[whole]
            op_name = _OP_NAMES.get(op, "op %d" % op)
            self._abandon(router)
            self._declare_dead("xenstored did not read its socket for %.1f s (%s of a %s request)"
                               % (self.timeout, stall, op_name))
            error = XenstoreTimeout("not sent within %.1f s: xenstored is not reading its socket; "
                                    "the connection is closed" % self.timeout, op=op_name,
                                    path=_path_text(path))
            return self._sent(router, items[:whole], rq_ids, rvars), error
        except PyXSError as exc:
            return [], self._send_lost(items, "send failed: %s" % exc)
        except (OSError, IOError) as exc:  # pylint: disable=bad-except-order  # PyXSError is Exception without pyxs
            return [], self._send_lost(items, "send failed: %s" % exc)
        except (AttributeError, ValueError) as exc:  # pylint: disable=bad-except-order  # as above
            # pyxs' Router thread closes the connection when xenstored drops it; a send racing
            # with that finds the transport already gone (None) or its socket closed.
            if router.thread.is_alive() and router.is_connected:
                raise
            return [], self._send_lost(items, "the connection to xenstored was closed while "
                                              "sending (%s)" % exc)
        finally:
            if guard is not None:
                guard.deadline = None
        return self._sent(router, items, rq_ids, rvars), None

    def _sent(self, router, items, rq_ids, rvars):
        self.round_trips += len(items)
        sent = []
        for (op, _payload, _tx_id, path), rq_id, rvar in zip(items, rq_ids, rvars):
            sent.append((op, rq_id, rvar, router, _OP_NAMES.get(op, "op %d" % op), _path_text(path)))
        return sent

    @staticmethod
    def _send_lost(items, message):
        op, _payload, _tx_id, path = items[0]
        return XenstoreConnectionLost(message, op=_OP_NAMES.get(op, "op %d" % op),
                                      path=_path_text(path))

    def _finish(self, sent, deadline):
        """The reply payload of a sent request, or the XenstoreError it carries."""
        op, rq_id, rvar, router, op_name, path_text = sent
        reply = self._wait_reply(rvar, router, deadline, op_name, path_text)
        self._reconnect_allowed = True  # this connection works
        stamps = getattr(router.rvars, "stamps", None)
        if stamps is not None:
            self.events_before_last_reply = stamps.pop(rq_id, None)
        if reply.op == Op.ERROR:
            name = reply.payload.rstrip(NUL).decode("ascii", "replace")[:32]
            number = getattr(errno, name, None) if name.startswith("E") else None
            raise XenstoreError(name, op=op_name, path=path_text, errno=number, error_name=name)
        if reply.op != op:
            raise XenstoreError("unexpected reply type %d" % reply.op, op=op_name, path=path_text)
        return reply.payload

    def _wait_reply(self, rvar, router, deadline, op_name, path_text):
        reply = getattr(rvar, "target", None)
        if reply is not None:  # in already (the usual case in a pipelined batch): no lock
            return reply
        condition = getattr(rvar, "condition", None)
        if condition is None or not hasattr(rvar, "target"):
            return self._wait_reply_in_thread(rvar, router, deadline, op_name, path_text)
        with condition:
            while rvar.target is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise XenstoreTimeout("no reply within %.1f s" % self.timeout, op=op_name,
                                          path=path_text)
                condition.wait(min(remaining, _LIVENESS_SLICE))
                if rvar.target is None and not router.thread.is_alive():
                    raise XenstoreConnectionLost("the connection to xenstored was lost while "
                                                 "waiting for the reply", op=op_name,
                                                 path=path_text)
            return rvar.target

    def _wait_reply_in_thread(self, rvar, router, deadline, op_name, path_text):
        # Only for a pyxs whose reply holder differs from 0.4.x: wait in a helper thread.
        box = []
        helper = threading.Thread(target=lambda: box.append(rvar.get()))
        helper.daemon = True
        helper.start()
        while not box:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise XenstoreTimeout("no reply within %.1f s" % self.timeout, op=op_name,
                                      path=path_text)
            helper.join(min(remaining, _LIVENESS_SLICE))
            if not box and not router.thread.is_alive():
                raise XenstoreConnectionLost("the connection to xenstored was lost", op=op_name,
                                             path=path_text)
        return box[0]

    @staticmethod
    def _check_path(path):
        if not isinstance(path, bytes) or not _PATH_RE.match(path) or b"//" in path:
            raise ValueError("refusing xenstore path %r" % (path,))
        return path

    def _ack(self, op, payload, tx_id=0, path=None):
        reply = self._request(op, payload, tx_id=tx_id, path=path)
        if reply.rstrip(NUL) != b"OK":
            raise XenstoreError("unexpected reply %r" % reply[:32], op=_OP_NAMES.get(op),
                                path=path.decode("ascii", "replace") if path else None)

    def read(self, path, tx_id=0):
        """The node's value, or None when it does not exist (ENOENT)."""
        self._check_path(path)
        try:
            return self._request(Op.READ, path + NUL, tx_id=tx_id, path=path).rstrip(NUL)
        except XenstoreError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise

    def write(self, path, value, tx_id=0):
        """Write ``value``; an empty value is legal on the wire (pyxs 0.4.1's Client refuses it)."""
        self._check_path(path)
        if not isinstance(value, bytes) or not _VALUE_RE.match(value):
            raise ValueError("refusing xenstore value %r" % (value,))
        self._ack(Op.WRITE, path + NUL + value, tx_id=tx_id, path=path)

    def rm(self, path, tx_id=0):
        self._check_path(path)
        self._ack(Op.RM, path + NUL, tx_id=tx_id, path=path)

    def set_perms(self, path, perms, tx_id=0):
        """XS_SET_PERMS: ``perms`` as on the wire, owner first (e.g. [b"n5"]: domain 5 owns the
        node, nobody else may read it)."""
        self._check_path(path)
        for perm in perms:
            if not _PERM_RE.match(perm):
                raise ValueError("refusing xenstore permission %r" % (perm,))
        self._ack(Op.SET_PERMS, path + NUL + NUL.join(perms) + NUL, tx_id=tx_id, path=path)

    def directory(self, path, tx_id=0):
        self._check_path(path)
        try:
            payload = self._request(Op.DIRECTORY, path + NUL, tx_id=tx_id, path=path)
        except XenstoreError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise
        payload = payload.rstrip(NUL)
        return payload.split(NUL) if payload else []

    def get_perms(self, path, tx_id=0):
        """XS_GET_PERMS: the node's permissions as parse_perms() returns them, None when the
        node does not exist."""
        self._check_path(path)
        try:
            payload = self._request(_XS_GET_PERMS, path + NUL, tx_id=tx_id, path=path)
        except XenstoreError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise
        return parse_perms(payload)

    def directory_many(self, paths):
        """directory() of every path, pipelined: one Outcome each (value: the children as a
        list of bytes, None for a missing node)."""
        outcomes = self._pipeline([(_XS_DIRECTORY, self._check_path(path) + NUL, path)
                                   for path in paths])
        for outcome in outcomes:
            if outcome.error is None:
                payload = outcome.value.rstrip(NUL)
                outcome.value = payload.split(NUL) if payload else []
            elif outcome.error.errno == errno.ENOENT:
                outcome.error = None
        return outcomes

    def get_perms_many(self, paths):
        """get_perms() of every path, pipelined: one Outcome each (value as get_perms())."""
        outcomes = self._pipeline([(_XS_GET_PERMS, self._check_path(path) + NUL, path)
                                   for path in paths])
        for outcome in outcomes:
            if outcome.error is None:
                try:
                    outcome.value = parse_perms(outcome.value)
                except XenstoreError as exc:
                    outcome.value, outcome.error = None, exc
            elif outcome.error.errno == errno.ENOENT:
                outcome.error = None
        return outcomes

    def resume_domain(self, domid):
        """XS_RESUME: clears C xenstored's per-domain shutdown latch (re-arms @releaseDomain).

        Sent directly: pyxs' resume_domain() refuses unless /proc/xen/capabilities said
        control_d when pyxs was imported.
        """
        self._ack(Op.RESUME, b"%d" % int(domid) + NUL, path=b"@resume")

    def resume_domains(self, domids):
        """XS_RESUME for every domid, pipelined: one Outcome each."""
        return self._acks([(Op.RESUME, b"%d" % int(domid) + NUL, b"@resume") for domid in domids])

    # -- pipelined batches ---------------------------------------------------------------------

    def _pipeline(self, requests):
        """One Outcome per (op, payload, path[, tx_id]) request, in order; ``value`` is the raw
        reply.

        A reply that does not come within the timeout ends the batch: requests already sent get
        that same error (they may have been carried out), requests not sent yet a plain
        XenstoreError saying so; then _probe decides whether the connection is dead. A lost
        connection is replaced (_recover) and the batch goes on over the new one: what was sent
        and unanswered fails with XenstoreConnectionLost unless _RETRY_AFTER_RECONNECT allows
        sending it again (once); what was not sent yet is sent. When the connection is (judged)
        dead, what is left fails at once with XenstoreUnavailable."""
        requests = [request if len(request) == 4 else tuple(request) + (0,) for request in requests]
        outcomes = [None] * len(requests)
        todo = collections.deque(range(len(requests)))
        window = collections.deque()
        retried = set()
        broken = None
        while todo or window:
            if todo and broken is None and len(window) <= _REFILL_MARK:
                index = todo[0]
                op, payload, path, tx_id = requests[index]
                try:
                    router = self._usable_router(_OP_NAMES.get(op, "op %d" % op), _path_text(path),
                                                 tx_id)
                except _ConnectionGone as gone:  # found lost before this request went out
                    broken = self._after_loss(window, requests, outcomes, todo, retried, str(gone))
                    continue
                except XenstoreConnectionLost as exc:  # dead, not connected, lost transaction
                    todo.popleft()
                    outcomes[index] = Outcome(error=exc)
                    broken = exc
                    continue
                if len(payload) > PAYLOAD_MAX:
                    todo.popleft()
                    outcomes[index] = Outcome(error=XenstoreError(
                        "payload of %d bytes exceeds %d" % (len(payload), PAYLOAD_MAX),
                        op=_OP_NAMES.get(op, "op %d" % op), path=_path_text(path)))
                    continue
                chunk = self._next_chunk(requests, todo, PIPELINE_DEPTH - len(window))
                sent, error = self._send_packets(
                    router, [(op, payload, tx_id, path) for op, payload, path, tx_id
                             in (requests[index] for index in chunk)])
                deadline = time.monotonic() + self.timeout
                for index, one in zip(chunk, sent):
                    window.append((index, one, deadline))
                rest = chunk[len(sent):]
                if isinstance(error, XenstoreConnectionLost):
                    # Lost under the send, which may have gone out in part: in flight.
                    for index in rest:
                        window.append((index, None, error))
                    broken = self._after_loss(window, requests, outcomes, todo, retried,
                                              "the connection to xenstored (%s) was lost"
                                              % self.description)
                elif error is not None:  # the send deadline: the connection is dead
                    outcomes[rest[0]] = Outcome(error=error)
                    todo.extendleft(reversed(rest[1:]))  # never sent
                    broken = error
                continue
            if not window:
                break
            index, sent, deadline = window[0]
            if broken is not None:
                deadline = time.monotonic()  # only replies that are already here
            try:
                outcomes[index] = self._reply_outcome(requests[index], sent, deadline)
                window.popleft()
            except (XenstoreTimeout, XenstoreConnectionLost) as exc:
                if broken is None and isinstance(exc, XenstoreConnectionLost):
                    broken = self._after_loss(window, requests, outcomes, todo, retried,
                                              "the connection to xenstored (%s) was lost"
                                              % self.description)
                    continue
                window.popleft()
                if broken is not None:
                    # Sent, unanswered, and the batch is over: it may still have been done.
                    exc = type(broken)("no reply before the batch broke off (%s)" % broken,
                                       op=sent[4], path=sent[5])
                outcomes[index] = Outcome(error=exc)
                broken = broken or exc
            except XenstoreError as exc:
                window.popleft()
                outcomes[index] = Outcome(error=exc, events_before=self.events_before_last_reply)
        if isinstance(broken, XenstoreTimeout) and self._dead is None:
            self._probe(broken)
        for index in range(len(requests)):
            if outcomes[index] is None:
                op, _payload, path, _tx_id = requests[index]
                op_name = _OP_NAMES.get(op)
                path_text = path.decode("ascii", "replace") if path else None
                if self._dead is not None:
                    outcomes[index] = Outcome(error=self._unavailable(op_name, path_text))
                else:
                    outcomes[index] = Outcome(error=XenstoreError(
                        "not sent: an earlier request of the batch failed (%s)" % broken,
                        op=op_name, path=path_text))
        return outcomes

    def _next_chunk(self, requests, todo, room):
        """Take from ``todo`` the requests to send in one write: the first (checked by the
        caller), then up to ``room`` in all that need no check of their own (a payload too
        large, a transaction lost with a connection: those go on their own, next time)."""
        chunk = [todo.popleft()]
        lost = self._lost_transactions
        while todo and len(chunk) < room:
            _op, payload, _path, tx_id = requests[todo[0]]
            if len(payload) > PAYLOAD_MAX or tx_id and tx_id in lost:
                break
            chunk.append(todo.popleft())
        return chunk

    def _reply_outcome(self, request, sent, deadline):
        """The Outcome of a sent request once its reply is in (raises on timeout or loss)."""
        value = self._finish(sent, deadline)
        if request[0] == _XS_WATCH:
            # In place from now on, so that a reconnect before the batch ends registers it again.
            path, token = request[1].split(NUL)[:2]
            self._watches.add((path, token))
        return Outcome(value, None, self.events_before_last_reply)

    def _after_loss(self, window, requests, outcomes, todo, retried, reason):
        """The connection was lost with ``window`` sent: settle those, then reconnect. None when
        the batch can go on over the new connection, else the error that ends it."""
        now = time.monotonic()
        again = []
        while window:
            index, sent, send_error = window.popleft()  # sent None: send_error is why
            op, _payload, _path, tx_id = requests[index]
            if sent is not None:
                try:
                    outcomes[index] = self._reply_outcome(requests[index], sent, now)
                    continue
                except (XenstoreTimeout, XenstoreConnectionLost):
                    pass
                except XenstoreError as exc:
                    outcomes[index] = Outcome(error=exc, events_before=self.events_before_last_reply)
                    continue
            if op == _XS_UNWATCH:
                # Every watch of the lost connection went with it (and an unwatched one is not
                # registered again): the unwatch is done.
                outcomes[index] = Outcome(b"OK" + NUL)
            elif op in _RETRY_AFTER_RECONNECT and not tx_id and index not in retried:
                retried.add(index)
                again.append(index)
            else:
                error = send_error if sent is None else XenstoreConnectionLost(
                    "%s before the reply came: it may or may not have been carried out" % reason,
                    op=sent[4], path=sent[5])
                outcomes[index] = Outcome(error=error)
        todo.extendleft(reversed(again))
        return self._recover(reason)

    def _probe(self, timeout):
        """After a request got no reply within the timeout: is xenstored still answering?

        One slow or lost request does not make a dead connection, so the cost of a timeout is
        not paid again for every later request only when this says so: an XS_DIRECTORY of "/"
        (a few names, nothing to compute; every xenstored answers it to dom0) must be answered
        within a quarter of the timeout (at least _PROBE_MIN). xenstored answers a connection's
        requests in order, so a reply says that it works through this connection's queue; no
        reply, and the connection is judged dead. It stays open: should the probe's reply still
        come, the next request finds it and goes ahead (_usable_router)."""
        router = self._router
        saved = self.events_before_last_reply
        limit = min(self.timeout, max(_PROBE_MIN, self.timeout / 4.0))
        try:
            sent = self._send_on(router, _XS_DIRECTORY, b"/" + NUL, 0, b"/")
        except XenstoreError:  # lost (the next request reconnects), or the send deadline (dead)
            self.events_before_last_reply = saved
            return
        try:
            self._finish(sent, time.monotonic() + limit)
        except XenstoreTimeout:
            what = "%s %s" % (timeout.op, timeout.path) if timeout.path else timeout.op
            self._declare_dead("no reply to %s within %.1f s, nor to a probe within %.1f s"
                               % (what, self.timeout, limit), router=router, probe=sent[2])
        except XenstoreError:
            pass  # answered, with an error: alive; or lost, which the next request handles
        finally:
            self.events_before_last_reply = saved

    def read_many(self, paths):
        """read() of every path, pipelined: one Outcome each (value None: no such node)."""
        outcomes = self._pipeline([(Op.READ, self._check_path(path) + NUL, path) for path in paths])
        for outcome in outcomes:
            if outcome.error is None:
                outcome.value = outcome.value.rstrip(NUL)
            elif outcome.error.errno == errno.ENOENT:
                outcome.error = None
        return outcomes

    def write_many(self, items):
        """write() of every (path, value), pipelined: one Outcome each."""
        requests = []
        for path, value in items:
            self._check_path(path)
            if not isinstance(value, bytes) or not _VALUE_RE.match(value):
                raise ValueError("refusing xenstore value %r" % (value,))
            requests.append((Op.WRITE, path + NUL + value, path))
        return self._acks(requests)

    def watch_many(self, items):
        """watch() of every (path, token), pipelined: one Outcome each."""
        router = self._router
        if router is None:
            raise XenstoreConnectionLost("not connected", op="watch")
        for path, token in items:
            self._check_path(path)
            router.subscribe(token, self._sink)
        outcomes = self._acks([(Op.WATCH, path + NUL + token + NUL, path) for path, token in items])
        for (path, token), outcome in zip(items, outcomes):
            if outcome.error is None:
                self._watches.add((path, token))
            else:
                self._unsubscribe(token)
        return outcomes

    def unwatch_many(self, items):
        """unwatch() of every (path, token), pipelined: one Outcome each."""
        for path, _token in items:
            self._check_path(path)
        for path, token in items:
            self._watches.discard((path, token))  # before: a reconnect must not register it again
        outcomes = self._acks([(Op.UNWATCH, path + NUL + token + NUL, path) for path, token in items])
        for path, token in items:
            self._unsubscribe(token)
        return outcomes

    def _acks(self, requests):
        outcomes = self._pipeline(requests)
        for (op, _payload, path), outcome in zip(requests, outcomes):
            if outcome.error is None:
                if outcome.value.rstrip(NUL) != b"OK":
                    outcome.error = XenstoreError("unexpected reply %r" % outcome.value[:32],
                                                  op=_OP_NAMES.get(op), path=path.decode("ascii", "replace"))
                outcome.value = None
        return outcomes

    # -- transactions --------------------------------------------------------------------------

    def transaction_start(self):
        payload = self._request(Op.TRANSACTION_START, NUL)
        try:
            tx_id = int(payload.rstrip(NUL))
        except ValueError:
            raise XenstoreError("bad transaction id %r" % payload[:32], op="transaction_start")
        # A transaction lives on its connection: after a reconnect its requests fail at once.
        self._transactions.add(tx_id)
        self._lost_transactions.discard(tx_id)
        return tx_id

    def transaction_end(self, tx_id, commit=True):
        """True when committed (or aborted on request); False on EAGAIN (conflict: retry)."""
        try:
            self._ack(Op.TRANSACTION_END, (b"T" if commit else b"F") + NUL, tx_id=tx_id)
        except XenstoreError as exc:
            if commit and exc.errno == errno.EAGAIN:
                return False
            raise
        finally:
            self._transactions.discard(tx_id)
            self._lost_transactions.discard(tx_id)
        return True

    def run_transaction(self, body, attempts=16):
        """Run ``body(view)`` in a transaction, retrying the whole body on EAGAIN.

        ``body`` returns ``(commit, value)``; with commit False the transaction is aborted.
        """
        last = None
        for _attempt in range(attempts):
            tx_id = self.transaction_start()
            try:
                commit, value = body(_TransactionView(self, tx_id))
            except XenstoreError as exc:
                self._abort_quietly(tx_id)
                if exc.errno == errno.EAGAIN:
                    last = exc
                    continue
                raise
            except Exception:
                self._abort_quietly(tx_id)
                raise
            if not commit:
                self.transaction_end(tx_id, commit=False)
                return value
            if self.transaction_end(tx_id, commit=True):
                return value
            last = None
        raise XenstoreError("transaction still conflicting after %d attempts%s"
                            % (attempts, (": %s" % last) if last else ""), errno=errno.EAGAIN)

    def _abort_quietly(self, tx_id):
        try:
            self.transaction_end(tx_id, commit=False)
        except XenstoreError:
            pass

    # -- watches -------------------------------------------------------------------------------

    def watch(self, path, token):
        """Register a watch; it fires once right away, then on every change below ``path``."""
        self._check_path(path)
        router = self._router
        if router is None:
            raise XenstoreConnectionLost("not connected", op="watch")
        router.subscribe(token, self._sink)
        try:
            self._ack(Op.WATCH, path + NUL + token + NUL, path=path)
        except Exception:
            self._unsubscribe(token)
            raise
        self._watches.add((path, token))

    def unwatch(self, path, token):
        self._check_path(path)
        self._watches.discard((path, token))  # before: a reconnect must not register it again
        try:
            self._ack(Op.UNWATCH, path + NUL + token + NUL, path=path)
        finally:
            self._unsubscribe(token)

    def _unsubscribe(self, token):
        router = self._router
        if router is None:
            return
        try:
            router.unsubscribe(token, self._sink)
        except ValueError:
            pass

    def fileno(self):
        """Readable whenever watch events may be queued."""
        return self._wake_r

    def events_nowait(self, limit=100000):
        """Every queued watch event as (path, token, arrival) without blocking; ``arrival``
        compares with ``events_before_last_reply`` (see _ReplyStamps)."""
        try:
            while os.read(self._wake_r, 4096):
                pass
        except OSError:
            pass
        self.events.wake_pending = False  # after draining, before taking (see WakingQueue)
        events = []
        while len(events) < limit:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                break
            events.append(event)
        else:  # stopped at the limit: what is left must still wake the caller's loop
            if not self.events.empty():
                self._wake()
        return events

    def wait_event(self, timeout):
        """The next watch event, or None after ``timeout`` seconds."""
        try:
            event = self.events.get(timeout=timeout)
        except queue.Empty:
            return None
        return (event[0], event[1])


def _set_nonblocking(fd):
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
