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
(each wait is a hand-over to pyxs' Router thread and back); per-path order is kept.
"""

import collections
import errno
import fcntl
import itertools
import os
import re
import stat
import threading
import time

try:
    import queue
except ImportError:  # pragma: no cover - Python 2 is not a target
    import Queue as queue  # noqa

try:
    from pyxs.client import Router
    from pyxs.connection import UnixSocketConnection, XenBusConnection
    from pyxs._internal import Op, Packet
    from pyxs.exceptions import PyXSError
    HAS_PYXS = True
    PYXS_IMPORT_ERROR = None
except ImportError as exc:  # reported by the module base with missing_required_lib()
    Router = UnixSocketConnection = XenBusConnection = Op = Packet = None
    PyXSError = Exception
    HAS_PYXS = False
    PYXS_IMPORT_ERROR = exc

from ansible_collections.xen.suspend.plugins.module_utils._errors import (
    DependencyError, XenstoreConnectionLost, XenstoreError, XenstoreTimeout)

NUL = b"\x00"
DEFAULT_TIMEOUT = 10.0
DEFAULT_RUNDIR = "/var/run/xenstored"
XENBUS_PATHS = ("/dev/xen/xenbus", "/proc/xen/xenbus")
PAYLOAD_MAX = 4096
PYXS_INSTALL_HINT = "python3-pyxs (Debian/Ubuntu) or 'pip install pyxs'"

# Watch paths and node paths we build ourselves; anything else is a programming error.
_PATH_RE = re.compile(br"^(?:@releaseDomain|@introduceDomain|/[A-Za-z0-9_/-]*)\Z")
_VALUE_RE = re.compile(br"^[\x20-\x7e]*\Z")

# How often a waiting caller re-checks that the Router thread is alive.
_LIVENESS_SLICE = 0.2

# Requests a pipelined batch keeps outstanding. Enough to hide the hand-over latency; small
# enough that xenstored's per-connection output buffer and quotas never come into play.
PIPELINE_DEPTH = 64

_OP_NAMES = {
    1: "directory", 2: "read", 4: "watch", 5: "unwatch", 6: "transaction_start",
    7: "transaction_end", 11: "write", 12: "mkdir", 13: "rm", 18: "resume",
}


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


def domain_path(domid, relative=""):
    """Absolute /local/domain/<domid>[/relative] as bytes (no GET_DOMAIN_PATH round trip)."""
    base = "/local/domain/%d" % int(domid)
    if relative:
        base += "/" + relative
    return base.encode("ascii")


class WakingQueue(queue.Queue):
    """A queue.Queue whose ``put`` also makes a pipe readable, to wake a select() loop.

    Each event is stored as (path, token, arrival) where arrival counts the events delivered
    so far; only pyxs' Router thread puts, so the count is exact."""

    def __init__(self, wake_fd):
        queue.Queue.__init__(self)
        self._wake_fd = wake_fd
        self.arrivals = 0

    def put(self, item, block=True, timeout=None):
        self.arrivals += 1
        queue.Queue.put(self, (item[0], item[1], self.arrivals), block, timeout)
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

    # -- connection ----------------------------------------------------------------------------

    def connect(self):
        socket_path = self.socket_path or default_socket_path(self._environ)
        if _is_socket(socket_path):
            connection = UnixSocketConnection(socket_path)
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
            connection = XenBusConnection(device)
            self.description = "xenbus device %s" % device
        router = Router(connection)
        if isinstance(getattr(router, "rvars", None), dict):
            router.rvars = _ReplyStamps(self.events)
        try:
            router.start()
        except PyXSError as exc:
            raise XenstoreError("cannot connect to xenstored via %s: %s" % (self.description, exc))
        except (OSError, IOError) as exc:  # pylint: disable=bad-except-order  # PyXSError is Exception without pyxs
            raise XenstoreError("cannot connect to xenstored via %s: %s" % (self.description, exc))
        self._router = router
        return self

    def close(self):
        router, self._router = self._router, None
        if router is not None:
            try:
                if router.is_connected:
                    router.w_terminator.sendall(NUL)
            except (OSError, IOError, AttributeError):
                pass
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
        return self._router is not None and self._router.thread.is_alive()

    # -- requests ------------------------------------------------------------------------------

    def _request(self, op, payload, tx_id=0, path=None):
        sent = self._send(op, payload, tx_id, path)
        return self._finish(sent, time.monotonic() + self.timeout)

    def _send(self, op, payload, tx_id, path):
        """Put one request on the connection; what _finish needs to wait for its reply."""
        op_name = _OP_NAMES.get(op, "op %d" % op)
        path_text = path.decode("ascii", "replace") if isinstance(path, bytes) else path
        router = self._router
        if router is None:
            raise XenstoreConnectionLost("not connected", op=op_name, path=path_text)
        if not router.thread.is_alive():
            raise XenstoreConnectionLost("the connection to xenstored is gone", op=op_name,
                                         path=path_text)
        if len(payload) > PAYLOAD_MAX:
            raise XenstoreError("payload of %d bytes exceeds %d" % (len(payload), PAYLOAD_MAX),
                                op=op_name, path=path_text)
        packet = Packet(op, payload, next(self._rq_ids), tx_id)
        self.events_before_last_reply = None
        try:
            rvar = router.send(packet)
        except PyXSError as exc:
            raise XenstoreConnectionLost("send failed: %s" % exc, op=op_name, path=path_text)
        except (OSError, IOError) as exc:  # pylint: disable=bad-except-order  # PyXSError is Exception without pyxs
            raise XenstoreConnectionLost("send failed: %s" % exc, op=op_name, path=path_text)
        except (AttributeError, ValueError) as exc:  # pylint: disable=bad-except-order  # as above
            # pyxs' Router thread closes the connection when xenstored drops it; a send racing
            # with that finds the transport already gone (None) or its socket closed.
            if router.thread.is_alive() and router.is_connected:
                raise
            raise XenstoreConnectionLost("the connection to xenstored was closed while sending (%s)"
                                         % exc, op=op_name, path=path_text)
        self.round_trips += 1
        return (op, packet.rq_id, rvar, router, op_name, path_text)

    def _finish(self, sent, deadline):
        """The reply payload of a sent request, or the XenstoreError it carries."""
        op, rq_id, rvar, router, op_name, path_text = sent
        reply = self._wait_reply(rvar, router, deadline, op_name, path_text)
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

    def resume_domain(self, domid):
        """XS_RESUME: clears C xenstored's per-domain shutdown latch (re-arms @releaseDomain).

        Sent directly: pyxs' resume_domain() refuses unless /proc/xen/capabilities said
        control_d when pyxs was imported.
        """
        self._ack(Op.RESUME, b"%d" % int(domid) + NUL, path=b"@resume")

    # -- pipelined batches ---------------------------------------------------------------------

    def _pipeline(self, requests):
        """One Outcome per (op, payload, path) request, in order; ``value`` is the raw reply.

        A reply that does not come within the timeout, or a lost connection, ends the batch:
        requests already sent get that same error (they may have been carried out), requests
        not sent yet a plain XenstoreError saying so."""
        outcomes = [None] * len(requests)
        window = collections.deque()
        position = 0
        broken = None
        while position < len(requests) or window:
            while position < len(requests) and len(window) < PIPELINE_DEPTH and broken is None:
                op, payload, path = requests[position]
                try:
                    window.append((position, self._send(op, payload, 0, path),
                                   time.monotonic() + self.timeout))
                except XenstoreConnectionLost as exc:
                    outcomes[position] = Outcome(error=exc)
                    broken = exc
                except XenstoreError as exc:
                    outcomes[position] = Outcome(error=exc)
                position += 1
            if not window:
                break
            index, sent, deadline = window.popleft()
            if broken is not None:
                deadline = time.monotonic()  # only replies that are already here
            try:
                outcomes[index] = Outcome(self._finish(sent, deadline), None,
                                          self.events_before_last_reply)
            except (XenstoreTimeout, XenstoreConnectionLost) as exc:
                if broken is not None:
                    # Sent, unanswered, and the batch is over: it may still have been done.
                    exc = type(broken)("no reply before the batch broke off (%s)" % broken,
                                       op=sent[4], path=sent[5])
                outcomes[index] = Outcome(error=exc)
                broken = broken or exc
            except XenstoreError as exc:
                outcomes[index] = Outcome(error=exc, events_before=self.events_before_last_reply)
        for index in range(len(requests)):
            if outcomes[index] is None:
                op, _payload, path = requests[index]
                outcomes[index] = Outcome(error=XenstoreError(
                    "not sent: an earlier request of the batch failed (%s)" % broken,
                    op=_OP_NAMES.get(op), path=path.decode("ascii", "replace") if path else None))
        return outcomes

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
        outcomes = self._acks([(Op.UNWATCH, path + NUL + token + NUL, path) for path, token in items])
        for path, token in items:
            self._unsubscribe(token)
            self._watches.discard((path, token))
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
            return int(payload.rstrip(NUL))
        except ValueError:
            raise XenstoreError("bad transaction id %r" % payload[:32], op="transaction_start")

    def transaction_end(self, tx_id, commit=True):
        """True when committed (or aborted on request); False on EAGAIN (conflict: retry)."""
        try:
            self._ack(Op.TRANSACTION_END, (b"T" if commit else b"F") + NUL, tx_id=tx_id)
        except XenstoreError as exc:
            if commit and exc.errno == errno.EAGAIN:
                return False
            raise
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
        try:
            self._ack(Op.UNWATCH, path + NUL + token + NUL, path=path)
        finally:
            self._unsubscribe(token)
            self._watches.discard((path, token))

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
        events = []
        while len(events) < limit:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                break
            events.append(event)
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


def withdraw_suspend_request(xs, domid):
    """Take back a ``suspend`` still waiting in ~/control/shutdown, atomically: True when it was
    withdrawn, False when the guest had already answered (it may be suspending right now)."""
    path = domain_path(domid, "control/shutdown")

    def withdraw(tx):
        if tx.read(path) != b"suspend":
            return False, False
        tx.write(path, b"")
        return True, True

    return xs.run_transaction(withdraw)
