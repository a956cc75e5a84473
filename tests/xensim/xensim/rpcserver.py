"""Server end of the C shim libraries (csrc/).

Transport: a Unix stream socket (``$XENSIM_SOCKET``, default
``$(dirname $XENSTORED_PATH)/hypervisor.sock``).  Every xc_interface and every
xenevtchn handle opens its own control connection; a xenevtchn handle opens a
second "event stream" connection, which is what xenevtchn_fd() returns.

Control protocol (host byte order, one request in flight per connection):

    request:  uint32 op, uint32 nargs, uint64 args[nargs]
    response: int64 ret, int32 err, uint32 len, uint8 payload[len]

``ret < 0`` means failure with errno ``err``.  Event stream: after the
ATTACH response, the simulator writes one uint32 per delivered port, like
reads from /dev/xen/evtchn; a delivered port stays masked until unmasked.
"""

import errno
import logging
import os
import socket
import struct

from . import xenconst as xc
from .hypervisor import HvError
from .loop import Handler

log = logging.getLogger("xensim.rpc")

REQ = struct.Struct("=II")
ARG = struct.Struct("=Q")
RESP = struct.Struct("=qiI")
PORT = struct.Struct("=I")

OP_HELLO_XC = 1
OP_HELLO_EVTCHN = 2
OP_ATTACH_EVENTS = 3

OP_XC_VERSION = 10
OP_XC_GETINFOLIST = 11
OP_XC_PAUSE = 12
OP_XC_UNPAUSE = 13
OP_XC_SHUTDOWN = 14
OP_XC_RESUME = 15
OP_XC_SUBSCRIBE = 16
OP_XC_HVM_PARAM_GET = 17

OP_EV_NOTIFY = 30
OP_EV_BIND_UNBOUND = 31
OP_EV_BIND_INTERDOMAIN = 32
OP_EV_BIND_VIRQ = 33
OP_EV_UNBIND = 34
OP_EV_UNMASK = 35
OP_EV_RESTRICT = 36

MAX_ARGS = 16


def _s64(v):
    return v - (1 << 64) if v & (1 << 63) else v


def _s32(v):
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & (1 << 31) else v


class RpcError(Exception):
    def __init__(self, code):
        super().__init__(code)
        self.errno = code


class EvtchnHandle:
    """Kernel-side state of one open /dev/xen/evtchn."""

    def __init__(self, hid, secret, ctl):
        self.id = hid
        self.secret = secret
        self.ctl = ctl
        self.events = None
        self.ports = set()
        self.queue = []
        self.restrict = None

    def deliver(self, port):
        if self.events is not None:
            self.events.send(PORT.pack(port))
        else:
            self.queue.append(port)


class RpcConn(Handler):
    def __init__(self, server, sock):
        self.server = server
        self.sock = sock
        self.fd = sock.fileno()
        self.rbuf = bytearray()
        self.wbuf = bytearray()
        self.role = None
        self.handle = None
        self.closed = False

    def fileno(self):
        return self.fd

    def on_readable(self):
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        if self.role == "events":
            return  # nothing is expected from the client on this stream
        self.rbuf += data
        buf = self.rbuf
        pos = 0
        while len(buf) - pos >= REQ.size:
            op, nargs = REQ.unpack_from(buf, pos)
            if nargs > MAX_ARGS:
                self.close()
                return
            need = REQ.size + nargs * 8
            if len(buf) - pos < need:
                break
            args = struct.unpack_from("=%dQ" % nargs, buf, pos + REQ.size)
            pos += need
            self.server.dispatch(self, op, args)
            if self.closed:
                return
        del buf[:pos]

    def reply(self, ret, err=0, payload=b""):
        self.send(RESP.pack(ret, err, len(payload)) + payload)

    def send(self, data):
        if self.closed:
            return
        if not self.wbuf:
            try:
                n = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError:
                self.close()
                return
            if n == len(data):
                return
            self.wbuf += data[n:]
            self.server.loop.set_events(self, read=True, write=True)
        else:
            self.wbuf += data

    def on_writable(self):
        try:
            n = self.sock.send(self.wbuf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        del self.wbuf[:n]
        if not self.wbuf:
            self.server.loop.set_events(self, read=True, write=False)

    def close(self):
        if self.closed:
            return
        self.closed = True
        self.server.drop(self)
        try:
            self.sock.close()
        except OSError:
            pass


class _Listener(Handler):
    def __init__(self, server, sock):
        self.server = server
        self.sock = sock

    def fileno(self):
        return self.sock.fileno()

    def on_readable(self):
        for _ in range(64):
            try:
                s, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            s.setblocking(False)
            c = RpcConn(self.server, s)
            self.server.conns.add(c)
            self.server.loop.register(c)


class RpcServer:
    def __init__(self, loop, hyp, path):
        self.loop = loop
        self.hyp = hyp
        self.path = path
        self.conns = set()
        self.handles = {}
        self._next_id = 1
        self._listener = None
        self.calls = 0
        self._xc_ops = {
            OP_XC_VERSION: self.xc_version,
            OP_XC_GETINFOLIST: self.xc_getinfolist,
            OP_XC_PAUSE: lambda a: (self.hyp.pause(self._domid(a[0])), 0)[1],
            OP_XC_UNPAUSE: lambda a: (self.hyp.unpause(self._domid(a[0])), 0)[1],
            OP_XC_SHUTDOWN: lambda a: (self.hyp.remote_shutdown(self._domid(a[0]), _s32(a[1])), 0)[1],
            OP_XC_SUBSCRIBE: lambda a: (self.hyp.subscribe(self._domid(a[0]), a[1] & 0xFFFFFFFF), 0)[1],
            OP_XC_HVM_PARAM_GET: self.xc_hvm_param_get,
        }
        self._ev_ops = {
            OP_EV_NOTIFY: self.ev_notify,
            OP_EV_BIND_UNBOUND: self.ev_bind_unbound,
            OP_EV_BIND_INTERDOMAIN: self.ev_bind_interdomain,
            OP_EV_BIND_VIRQ: self.ev_bind_virq,
            OP_EV_UNBIND: self.ev_unbind,
            OP_EV_UNMASK: self.ev_unmask,
            OP_EV_RESTRICT: self.ev_restrict,
        }

    # -- lifecycle --------------------------------------------------------
    def listen(self):
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(self.path)
        s.listen(512)
        s.setblocking(False)
        self._listener = _Listener(self, s)
        self.loop.register(self._listener)

    def close(self):
        if self._listener is not None:
            self.loop.unregister(self._listener)
            self._listener.sock.close()
            self._listener = None
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        for c in list(self.conns):
            c.close()

    def drop(self, conn):
        self.conns.discard(conn)
        self.loop.unregister(conn)
        h = conn.handle
        if h is None:
            return
        if conn.role == "evtchn":
            # close(/dev/xen/evtchn): unbind every port of the handle.
            self.handles.pop(h.id, None)
            for port in list(h.ports):
                try:
                    self.hyp.evtchn_close(self.hyp.dom0, port)
                except HvError:
                    pass
            h.ports.clear()
            if h.events is not None:
                h.events.close()
        elif conn.role == "events" and h.events is conn:
            h.events = None

    # -- dispatch ---------------------------------------------------------
    def dispatch(self, conn, op, args):
        self.calls += 1
        try:
            if conn.role is None:
                self._hello(conn, op, args)
                return
            if conn.role == "xc" and op == OP_XC_RESUME:
                # answered when the call returns (Hypervisor.xc_domain_resume_call)
                self.hyp.xc_domain_resume_call(self._domid(args[0]), _s32(args[1]),
                                               lambda e, c=conn: c.reply(-1, e.errno) if e else c.reply(0))
                return
            if conn.role == "xc":
                fn = self._xc_ops.get(op)
            elif conn.role == "evtchn":
                evfn = self._ev_ops.get(op)
                fn = None if evfn is None else (lambda a, h=conn.handle, f=evfn: f(h, a))
            else:
                fn = None
            if fn is None:
                raise RpcError(errno.ENOSYS)
            r = fn(args)
            if isinstance(r, tuple):
                conn.reply(*r)
            else:
                conn.reply(r)
        except HvError as e:
            conn.reply(-1, e.errno)
        except RpcError as e:
            conn.reply(-1, e.errno)
        except Exception:
            log.exception("rpc op %d failed", op)
            conn.reply(-1, errno.EIO)

    def _hello(self, conn, op, args):
        if op == OP_HELLO_XC:
            conn.role = "xc"
            conn.reply(0)
        elif op == OP_HELLO_EVTCHN:
            conn.role = "evtchn"
            hid = self._next_id
            self._next_id += 1
            secret = os.urandom(8)
            h = EvtchnHandle(hid, secret, conn)
            self.handles[hid] = h
            conn.handle = h
            conn.reply(hid, 0, secret)
        elif op == OP_ATTACH_EVENTS and len(args) >= 2:
            h = self.handles.get(args[0])
            if h is None or ARG.pack(args[1]) != h.secret or h.events is not None:
                conn.reply(-1, errno.EINVAL)
                return
            conn.role = "events"
            conn.handle = h
            h.events = conn
            conn.reply(0)
            for port in h.queue:
                conn.send(PORT.pack(port))
            h.queue = []
        else:
            conn.reply(-1, errno.EINVAL)

    @staticmethod
    def _domid(v):
        # domid_t is 16 bits in every domctl/sysctl; libxc truncates.
        d = v & 0xFFFF
        if d >= xc.DOMID_FIRST_RESERVED:
            raise RpcError(errno.ESRCH)
        return d

    # -- libxenctrl -------------------------------------------------------
    def xc_version(self, a):
        cmd = _s32(a[0])
        if cmd == xc.XENVER_version:
            return (xc.XEN_VERSION[0] << 16) | xc.XEN_VERSION[1]
        if cmd == xc.XENVER_extraversion:
            return 0, 0, xc.XEN_EXTRAVERSION.encode().ljust(16, b"\0")[:16]
        if cmd == xc.XENVER_capabilities:
            return 0, 0, xc.XEN_CAPABILITIES.encode().ljust(1024, b"\0")[:1024]
        raise RpcError(errno.ENOSYS)

    def xc_getinfolist(self, a):
        first = a[0] & 0xFFFF
        maxd = a[1] & 0xFFFFFFFF
        infos = self.hyp.getinfolist(first, maxd)
        return len(infos), 0, b"".join(infos)

    def xc_hvm_param_get(self, a):
        v = self.hyp.hvm_param_get(self._domid(a[0]), a[1] & 0xFFFFFFFF)
        return 0, 0, ARG.pack(v)

    # -- libxenevtchn -----------------------------------------------------
    def _own(self, h, port):
        if port not in h.ports:
            raise RpcError(errno.ENOTCONN)

    def ev_notify(self, h, a):
        port = a[0] & 0xFFFFFFFF
        self._own(h, port)
        self.hyp.evtchn_send(self.hyp.dom0, port)
        return 0

    def ev_bind_unbound(self, h, a):
        domid = a[0] & 0xFFFF
        if h.restrict is not None and domid != h.restrict:
            raise RpcError(errno.EPERM)
        port = self.hyp.evtchn_alloc_unbound(self.hyp.dom0, domid, h)
        h.ports.add(port)
        return port

    def ev_bind_interdomain(self, h, a):
        domid = a[0] & 0xFFFF
        rport = a[1] & 0xFFFFFFFF
        if h.restrict is not None and domid != h.restrict:
            raise RpcError(errno.EPERM)
        if rport >= xc.EVTCHN_2L_NR_CHANNELS:
            raise RpcError(errno.EINVAL)
        # Register ownership before Xen marks the new port pending, so the
        # initial event reaches this handle.
        port = self.hyp.evtchn_bind_interdomain(self.hyp.dom0, domid, rport, h)
        h.ports.add(port)
        return port

    def ev_bind_virq(self, h, a):
        return self.hyp.evtchn_bind_virq(self.hyp.dom0, a[0] & 0xFFFFFFFF, h)

    def ev_unbind(self, h, a):
        port = a[0] & 0xFFFFFFFF
        self._own(h, port)
        h.ports.discard(port)
        self.hyp.evtchn_close(self.hyp.dom0, port)
        return 0

    def ev_unmask(self, h, a):
        port = a[0] & 0xFFFFFFFF
        if port in h.ports:
            self.hyp.evtchn_unmask(self.hyp.dom0, port)
        return 0

    def ev_restrict(self, h, a):
        h.restrict = a[0] & 0xFFFF
        return 0
