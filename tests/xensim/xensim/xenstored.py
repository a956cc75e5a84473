"""The simulated xenstored: a Unix-socket server speaking the xs_wire protocol,
plus C xenstored's domain bookkeeping (introduce/release, the per-domain
@releaseDomain shutdown latch cleared by XS_RESUME).

Socket clients are dom0 (privileged), as with the real daemon.  A
simulator-only XS_CONTROL command ``xensim-impersonate <domid>`` makes the
connection act as an unprivileged guest, for permission tests.
"""

import errno
import logging
import os
import socket

from . import xswire as w
from .loop import Handler
from .store import DOM0, Ident, format_perms, parse_perms
from .xswire import XsError

log = logging.getLogger("xensim.xenstored")

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-/_@")


def canonicalize(ident, raw, allow_special=False):
    """Validate a node name as C xenstored's is_valid_nodename() does and make
    relative paths absolute.  Returns the canonical str path."""
    try:
        s = raw.decode("ascii")
    except UnicodeDecodeError:
        raise XsError(errno.EINVAL)
    if s.startswith("@"):
        if not allow_special or len(s) < 2 or not _NAME_CHARS.issuperset(s) or "/" in s:
            raise XsError(errno.EINVAL)
        return s
    if not s.startswith("/"):
        if len(s) > w.REL_PATH_MAX:
            raise XsError(errno.EINVAL)
        s = ident.dompath + "/" + s
    if (len(s) > w.ABS_PATH_MAX or "//" in s or (s.endswith("/") and s != "/")
            or not _NAME_CHARS.issuperset(s) or "@" in s):
        raise XsError(errno.EINVAL)
    return s


def _domid_arg(b):
    if not b or not b.isdigit() or len(b) > 5:
        raise XsError(errno.EINVAL)
    v = int(b)
    if v >= 0x7FF0:
        raise XsError(errno.EINVAL)
    return v


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
            self.server.add_conn(XsConn(self.server, s))


class XsConn(Handler):
    """One client socket connection."""

    def __init__(self, server, sock):
        self.server = server
        self.sock = sock
        self.fd = sock.fileno()
        self.ident = DOM0
        self.decoder = w.Decoder()
        self.wbuf = bytearray()
        self.closed = False
        self.requests = 0

    def fileno(self):
        return self.fd

    def __repr__(self):
        return "<XsConn fd=%d %r>" % (self.fd, self.ident)

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
        self.decoder.feed(data)
        try:
            for op, req_id, tx_id, payload in self.decoder.packets():
                if self.closed:
                    return
                self.requests += 1
                self.server.handle(self, op, req_id, tx_id, payload)
        except ValueError:
            log.info("%r: oversized packet, dropping connection", self)
            self.close()

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

    def deliver_watch(self, watch, path):
        self.send(w.pack(w.XS_WATCH_EVENT, 0, 0, path.encode() + b"\0" + watch.token + b"\0"))

    def close(self):
        if self.closed:
            return
        self.closed = True
        self.server.drop_conn(self)
        try:
            self.sock.close()
        except OSError:
            pass


class Xenstored:
    def __init__(self, loop, store, watches, hyp, path):
        self.loop = loop
        self.store = store
        self.watches = watches
        self.hyp = hyp
        self.path = path
        self.conns = set()
        self.introduced = {}      # domid -> latched (bool)
        self._listener = None
        self._scan_queued = False
        self.restarts = 0
        store.listener = watches.fire_changes
        hyp.dom_exc_listeners.append(self.on_virq_dom_exc)
        self._ops = {
            w.XS_CONTROL: self.op_control,
            w.XS_DIRECTORY: self.op_directory,
            w.XS_READ: self.op_read,
            w.XS_GET_PERMS: self.op_get_perms,
            w.XS_WATCH: self.op_watch,
            w.XS_UNWATCH: self.op_unwatch,
            w.XS_TRANSACTION_START: self.op_transaction_start,
            w.XS_TRANSACTION_END: self.op_transaction_end,
            w.XS_INTRODUCE: self.op_introduce,
            w.XS_RELEASE: self.op_release,
            w.XS_GET_DOMAIN_PATH: self.op_get_domain_path,
            w.XS_WRITE: self.op_write,
            w.XS_MKDIR: self.op_mkdir,
            w.XS_RM: self.op_rm,
            w.XS_SET_PERMS: self.op_set_perms,
            w.XS_IS_DOMAIN_INTRODUCED: self.op_is_domain_introduced,
            w.XS_RESUME: self.op_resume,
            w.XS_SET_TARGET: self.op_set_target,
            w.XS_RESET_WATCHES: self.op_reset_watches,
            w.XS_DIRECTORY_PART: self.op_directory_part,
        }

    # -- socket lifecycle -------------------------------------------------
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
        log.info("xenstored listening on %s", self.path)

    def _close_listener(self):
        if self._listener is not None:
            self.loop.unregister(self._listener)
            self._listener.sock.close()
            self._listener = None
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def close(self):
        self._close_listener()
        for c in list(self.conns):
            c.close()

    def restart(self, downtime=0.5):
        """Simulate a xenstored restart: every socket client is disconnected
        (its watches and transactions are lost) and the socket is absent for
        ``downtime`` seconds.  The tree, domain introductions and latches
        are kept (as a live update would keep them)."""
        self.restarts += 1
        self._close_listener()
        for c in list(self.conns):
            c.close()
        self.loop.call_later(downtime, self.listen)

    @property
    def listening(self):
        return self._listener is not None

    def add_conn(self, conn):
        self.conns.add(conn)
        self.loop.register(conn)

    def drop_conn(self, conn):
        self.conns.discard(conn)
        self.loop.unregister(conn)
        self.watches.remove_conn(conn)
        self.store.drop_transactions(conn)

    # -- domain bookkeeping (xenstored_domain.c) --------------------------
    def fire_special(self, name):
        self.watches.fire_special(name, self.store.special_perms.get(name))

    def introduce(self, domid):
        if domid in self.introduced:
            return
        self.introduced[domid] = False
        self.fire_special("@introduceDomain")

    def release(self, domid):
        if self.introduced.pop(domid, None) is not None:
            self.fire_special("@releaseDomain")

    def on_virq_dom_exc(self):
        # The daemon handles the VIRQ asynchronously; several VIRQs before
        # the scan runs coalesce into one scan.
        if not self._scan_queued:
            self._scan_queued = True
            self.loop.call_soon(self.check_domains)

    def check_domains(self):
        """check_domains() of C xenstored 4.17: latch shutdown/crash once per
        domain (until XS_RESUME), release dying/vanished domains."""
        self._scan_queued = False
        notify = False
        for domid in sorted(self.introduced):
            st = self.hyp.xs_domain_state(domid)
            if st is not None:
                dying, shut = st
                if shut and not self.introduced[domid]:
                    self.introduced[domid] = True
                    notify = True
                if not dying:
                    continue
            del self.introduced[domid]
            self.fire_special("@releaseDomain")
            notify = False  # destroy_domain() fired the watch
        if notify:
            self.fire_special("@releaseDomain")

    # -- request dispatch -------------------------------------------------
    def handle(self, conn, op, req_id, tx_id, payload):
        fn = self._ops.get(op)
        try:
            if fn is None:
                raise XsError(errno.ENOSYS)
            tx = None
            if tx_id:
                tx = self.store.transactions.get(tx_id)
                if tx is None or tx.owner is not conn:
                    raise XsError(errno.ENOENT)
            reply, after = fn(conn, tx, payload)
        except XsError as e:
            conn.send(w.pack_error(req_id, tx_id, e.errno))
            return
        except Exception:
            log.exception("%r: %s failed", conn, w.OP_NAMES.get(op, op))
            conn.send(w.pack_error(req_id, tx_id, errno.EIO))
            return
        conn.send(w.pack(op, req_id, tx_id, reply))
        if after is not None:
            after()

    @staticmethod
    def _need_priv(conn):
        if not conn.ident.privileged:
            raise XsError(errno.EACCES)

    OK = b"OK\0"

    def op_control(self, conn, tx, payload):
        args = payload.split(b"\0")
        cmd = args[0]
        if cmd == b"print":
            log.info("XS_CONTROL print: %r", b" ".join(args[1:]))
            return self.OK, None
        if cmd == b"help":
            return b"print\0help\0xensim-impersonate\0", None
        if cmd == b"xensim-impersonate" and len(args) >= 2:
            self._need_priv(conn)
            domid = _domid_arg(args[1])
            conn.ident = DOM0 if domid == 0 else Ident(domid, privileged=False)
            return self.OK, None
        raise XsError(errno.EINVAL)

    def op_read(self, conn, tx, payload):
        path = canonicalize(conn.ident, w.one_arg(payload))
        return self.store.read(conn.ident, path, tx), None

    def op_directory(self, conn, tx, payload):
        path = canonicalize(conn.ident, w.one_arg(payload))
        children = self.store.directory(conn.ident, path, tx)
        out = b"".join(c.encode() + b"\0" for c in children)
        if len(out) > w.PAYLOAD_MAX:
            raise XsError(errno.E2BIG)
        return out, None

    def op_directory_part(self, conn, tx, payload):
        path_b, off_b = w.n_args(payload, 2)
        path = canonicalize(conn.ident, path_b)
        if not off_b.isdigit():
            raise XsError(errno.EINVAL)
        off = int(off_b)
        gen = self.store.node_gen(conn.ident, path, tx)
        children = b"".join(c.encode() + b"\0" for c in self.store.directory(conn.ident, path, tx))
        genb = b"%x\0" % gen
        if off >= len(children):
            return genb + b"\0", None
        maxlen = w.PAYLOAD_MAX - len(genb) - 1
        ln = 0
        while off + ln < len(children):
            i = children.index(b"\0", off + ln) + 1 - (off + ln)
            if ln + i > maxlen:
                break
            ln += i
        out = genb + children[off:off + ln]
        if off + ln == len(children):
            out += b"\0"
        return out, None

    def op_get_perms(self, conn, tx, payload):
        path = canonicalize(conn.ident, w.one_arg(payload), allow_special=True)
        perms = self.store.get_perms(conn.ident, path, tx)
        return b"".join(p.encode() + b"\0" for p in format_perms(perms)), None

    def op_set_perms(self, conn, tx, payload):
        parts = payload.split(b"\0")
        if len(parts) < 3 or parts[-1] != b"":
            raise XsError(errno.EINVAL)
        path = canonicalize(conn.ident, parts[0], allow_special=True)
        perms = parse_perms(parts[1:-1])
        self.store.set_perms(conn.ident, path, perms, tx)
        return self.OK, None

    def op_write(self, conn, tx, payload):
        i = payload.find(b"\0")
        if i < 0:
            raise XsError(errno.EINVAL)
        path = canonicalize(conn.ident, payload[:i])
        self.store.write(conn.ident, path, payload[i + 1:], tx)
        return self.OK, None

    def op_mkdir(self, conn, tx, payload):
        path = canonicalize(conn.ident, w.one_arg(payload))
        self.store.mkdir(conn.ident, path, tx)
        return self.OK, None

    def op_rm(self, conn, tx, payload):
        path = canonicalize(conn.ident, w.one_arg(payload))
        self.store.rm(conn.ident, path, tx)
        return self.OK, None

    def op_watch(self, conn, tx, payload):
        path_b, token = w.n_args(payload, 2)
        abspath = canonicalize(conn.ident, path_b, allow_special=True)
        relprefix = None
        if not path_b.startswith(b"/") and not path_b.startswith(b"@"):
            relprefix = conn.ident.dompath + "/"
        watch = self.watches.add(conn, path_b.decode("ascii"), abspath, token, relprefix)
        # "We fire once up front: simplifies clients and restart."
        return self.OK, lambda: conn.deliver_watch(watch, watch.path)

    def op_unwatch(self, conn, tx, payload):
        path_b, token = w.n_args(payload, 2)
        canonicalize(conn.ident, path_b, allow_special=True)
        self.watches.remove(conn, path_b.decode("ascii"), token)
        return self.OK, None

    def op_reset_watches(self, conn, tx, payload):
        self.watches.remove_conn(conn)
        self.store.drop_transactions(conn)
        return self.OK, None

    def op_transaction_start(self, conn, tx, payload):
        if tx is not None:
            raise XsError(errno.EBUSY)
        t = self.store.tx_start(conn.ident, conn)
        return b"%d\0" % t.id, None

    def op_transaction_end(self, conn, tx, payload):
        if tx is None:
            raise XsError(errno.ENOENT)
        arg = w.one_arg(payload)
        if arg == b"F":
            self.store.tx_abort(tx)
        elif arg == b"T":
            if not self.store.tx_commit(tx):
                raise XsError(errno.EAGAIN)
        else:
            raise XsError(errno.EINVAL)
        return self.OK, None

    def op_get_domain_path(self, conn, tx, payload):
        domid = _domid_arg(w.one_arg(payload))
        return b"/local/domain/%d\0" % domid, None

    def op_is_domain_introduced(self, conn, tx, payload):
        self._need_priv(conn)
        domid = _domid_arg(w.one_arg(payload))
        yes = domid == 0 or domid in self.introduced
        return (b"T\0" if yes else b"F\0"), None

    def op_introduce(self, conn, tx, payload):
        self._need_priv(conn)
        domid_b, mfn_b, port_b = w.n_args(payload, 3)
        domid = _domid_arg(domid_b)
        if not mfn_b.isdigit() or not port_b.isdigit() or domid == 0:
            raise XsError(errno.EINVAL)
        st = self.hyp.xs_domain_state(domid)
        if st is None or st[0]:
            raise XsError(errno.EINVAL)  # cannot map the domain's ring
        return self.OK, lambda: self.introduce(domid)

    def op_release(self, conn, tx, payload):
        self._need_priv(conn)
        domid = _domid_arg(w.one_arg(payload))
        if domid == 0:
            raise XsError(errno.EINVAL)
        if domid not in self.introduced:
            raise XsError(errno.ENOENT)
        return self.OK, lambda: self.release(domid)

    def op_resume(self, conn, tx, payload):
        self._need_priv(conn)
        domid = _domid_arg(w.one_arg(payload))
        if domid == 0:
            raise XsError(errno.EINVAL)
        if domid not in self.introduced:
            raise XsError(errno.ENOENT)
        self.introduced[domid] = False
        return self.OK, None

    def op_set_target(self, conn, tx, payload):
        self._need_priv(conn)
        domid_b, target_b = w.n_args(payload, 2)
        domid, target = _domid_arg(domid_b), _domid_arg(target_b)
        if domid not in self.introduced:
            raise XsError(errno.ENOENT)
        # Recorded only; guests in the simulator act through their own
        # in-process identity, which carries no target.
        return self.OK, None
