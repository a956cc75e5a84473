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
                self.send(self.server.handle(line))

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

    def handle(self, line):
        try:
            req = json.loads(line)
            op = req.pop("op")
            fn = getattr(self.target, "admin_" + op.replace("-", "_"), None)
            if fn is None:
                return {"ok": False, "error": "unknown op %r" % op}
            res = fn(**req)
            out = {"ok": True}
            if res:
                out.update(res)
            return out
        except Exception as e:  # report, never crash the simulator
            log.info("admin request %r failed: %s", line[:200], e)
            return {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}


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
