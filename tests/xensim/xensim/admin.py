"""Admin control socket: one JSON object per line in each direction.

Request ``{"op": "list"}`` -> ``{"ok": true, ...}`` or
``{"ok": false, "error": "..."}``.  Ops are the ``admin_<op>`` methods of the
Simulator.  Used by the CLI (list, fault, spawn, stop) and by tests.
"""

import json
import logging
import os
import socket

from .loop import Handler

log = logging.getLogger("xensim.admin")


class _Conn(Handler):
    def __init__(self, server, sock):
        self.server = server
        self.sock = sock
        self.rbuf = b""
        self.wbuf = b""
        self.closed = False
        self.cleanups = []   # called once when the connection goes away (client died)

    def fileno(self):
        return self.sock.fileno()

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
        self.rbuf += data
        while b"\n" in self.rbuf:
            line, self.rbuf = self.rbuf.split(b"\n", 1)
            if line.strip():
                reply = self.server.handle(line, self)
                if reply is not None:
                    self.send(reply)

    def send(self, obj):
        self.wbuf += json.dumps(obj).encode() + b"\n"
        self.on_writable()

    def on_writable(self):
        try:
            n = self.sock.send(self.wbuf)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:
            self.close()
            return
        self.wbuf = self.wbuf[n:]
        if not self.closed:
            self.server.loop.set_events(self, read=True, write=bool(self.wbuf))

    def close(self):
        if not self.closed:
            self.closed = True
            self.server.conns.discard(self)
            self.server.loop.unregister(self)
            self.sock.close()
            cleanups, self.cleanups = self.cleanups, []
            for fn in cleanups:
                try:
                    fn()
                except Exception as e:  # never crash the simulator
                    log.info("admin connection cleanup failed: %s", e)


class _Listener(Handler):
    def __init__(self, server, sock):
        self.server = server
        self.sock = sock

    def fileno(self):
        return self.sock.fileno()

    def on_readable(self):
        try:
            s, _ = self.sock.accept()
        except OSError:
            return
        s.setblocking(False)
        c = _Conn(self.server, s)
        self.server.conns.add(c)
        self.server.loop.register(c)


class AdminServer:
    def __init__(self, loop, target, path):
        self.loop = loop
        self.target = target
        self.path = path
        self.conns = set()
        self._listener = None

    def listen(self):
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(self.path)
        s.listen(16)
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
            c.on_writable()
            c.close()

    def close_others(self, keep):
        """Drop every client connection but ``keep`` (their processes "died")."""
        for c in list(self.conns):
            if c is not keep:
                c.close()

    def handle(self, line, conn=None):
        try:
            req = json.loads(line)
            op = req.pop("op")
            fn = getattr(self.target, "admin_" + op.replace("-", "_"), None)
            if fn is None:
                return {"ok": False, "error": "unknown op %r" % op}
            if getattr(fn, "wants_conn", False):
                req["conn"] = conn
            res = fn(**req)
            if isinstance(res, Deferred):
                res.attach(conn)
                return None
            out = {"ok": True}
            if res:
                out.update(res)
            return out
        except Exception as e:  # report, never crash the simulator
            log.info("admin request %r failed: %s", line[:200], e)
            return {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}


class Deferred(object):
    """A reply sent later (an op that waits for the simulated guests, e.g. ``xl save``'s
    suspend): the handler returns one and calls ``resolve`` or ``fail`` when done."""

    def __init__(self):
        self.conn = None
        self.done = False
        self._early = None

    def attach(self, conn):
        self.conn = conn
        if self._early is not None:
            reply, self._early = self._early, None
            self._send(reply)

    def _send(self, reply):
        if self.conn is None:
            self._early = reply
        elif not self.conn.closed:
            self.conn.send(reply)

    def resolve(self, res=None):
        if self.done:
            return
        self.done = True
        out = {"ok": True}
        out.update(res or {})
        self._send(out)

    def fail(self, error):
        if self.done:
            return
        self.done = True
        self._send({"ok": False, "error": error})

    @property
    def abandoned(self):
        return self.conn is not None and self.conn.closed


def call(path, op, timeout=10.0, **args):
    """Client helper: send one request, return the decoded reply."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(json.dumps(dict(args, op=op)).encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("simulator closed the admin connection")
            buf += chunk
        return json.loads(buf.split(b"\n", 1)[0])
    finally:
        s.close()
