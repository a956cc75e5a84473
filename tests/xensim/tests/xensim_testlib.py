"""Helpers shared by the xensim tests: starting simulators through the CLI, a
raw xenstore wire client, and cffi bindings to the shim libraries."""

import errno
import json
import os
import socket
import struct
import subprocess
import sys
import time

XENSIM_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBDIR = os.path.join(XENSIM_ROOT, "build", "lib")
XENSIMCTL = [sys.executable, "-m", "xensim"]

if XENSIM_ROOT not in sys.path:
    sys.path.insert(0, XENSIM_ROOT)

from xensim import admin  # noqa: E402
from xensim import xswire as w  # noqa: E402


def wait_until(pred, timeout=5.0, interval=0.01, msg="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % msg)
        time.sleep(interval)


def ctl(*args, check=True, **kw):
    env = dict(os.environ)
    env["PYTHONPATH"] = XENSIM_ROOT
    r = subprocess.run(XENSIMCTL + list(args), capture_output=True, text=True, env=env, **kw)
    if check and r.returncode:
        raise AssertionError("xensim %s failed (%d): %s%s" % (args, r.returncode, r.stdout, r.stderr))
    return r


class Sim:
    """A simulator started with ``xensim start`` in ``dirpath``."""

    def __init__(self, dirpath, spec):
        self.dir = str(dirpath)
        os.makedirs(self.dir, exist_ok=True)
        self.spec_path = os.path.join(self.dir, "fleet.json")
        with open(self.spec_path, "w") as f:
            json.dump(spec, f)
        r = ctl("start", "--spec", self.spec_path, "--dir", self.dir, "--json")
        self.env = json.loads(r.stdout)
        self.xs_path = self.env["XENSTORED_PATH"]
        self.control = os.path.join(self.dir, "control.sock")
        self.pid = int(open(os.path.join(self.dir, "xensim.pid")).read())

    def admin(self, op, **kw):
        r = admin.call(self.control, op, **kw)
        if not r.get("ok"):
            raise RuntimeError(r.get("error"))
        return r

    def domains(self):
        return self.admin("list")["domains"]

    def dom(self, domid):
        d = self.admin("list", domid=domid)["domains"]
        return d[0] if d else None

    def by_behaviour(self, name):
        return [d["domid"] for d in self.domains() if d.get("behaviour") == name]

    def fault(self, kind, domid=None, **kw):
        return self.admin("fault", kind=kind, domid=domid, **kw)

    def stop(self):
        ctl("stop", "--dir", self.dir)

    def subprocess_env(self):
        env = dict(os.environ)
        env.update(self.env)
        return env


# -- raw xenstore client ---------------------------------------------------

class RawXs:
    """Minimal synchronous xs_wire client; keeps watch events aside."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(path)
        self.buf = b""
        self.events = []
        self.req = 0

    def close(self):
        self.sock.close()

    def send_raw(self, data):
        self.sock.sendall(data)

    def _packet(self, timeout=5.0):
        self.sock.settimeout(timeout)
        while True:
            if len(self.buf) >= 16:
                op, rq, tx, ln = w.HEADER.unpack_from(self.buf)
                if len(self.buf) >= 16 + ln:
                    p = self.buf[16:16 + ln]
                    self.buf = self.buf[16 + ln:]
                    return op, rq, tx, p
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk

    def request(self, op, payload=b"", tx=0):
        self.req += 1
        rq = self.req
        self.sock.sendall(w.pack(op, rq, tx, payload))
        while True:
            p = self._packet()
            if p[0] == w.XS_WATCH_EVENT:
                self.events.append(tuple(p[3].split(b"\0")[:2]))
                continue
            assert p[1] == rq, p
            assert p[2] == tx, p
            return p[0], p[3]

    def ok(self, op, payload=b"", tx=0):
        rop, p = self.request(op, payload, tx)
        if rop == w.XS_ERROR:
            raise OSError(getattr(errno, p.rstrip(b"\0").decode()), p.rstrip(b"\0").decode())
        assert rop == op
        return p

    def err(self, op, payload=b"", tx=0):
        rop, p = self.request(op, payload, tx)
        assert rop == w.XS_ERROR, (rop, p)
        assert p.endswith(b"\0")
        return p[:-1].decode()

    # conveniences
    def read(self, path, tx=0):
        return self.ok(w.XS_READ, path + b"\0", tx)

    def write(self, path, value, tx=0):
        return self.ok(w.XS_WRITE, path + b"\0" + value, tx)

    def watch(self, path, token):
        return self.ok(w.XS_WATCH, path + b"\0" + token + b"\0")

    def tx_start(self):
        return int(self.ok(w.XS_TRANSACTION_START, b"\0").rstrip(b"\0"))

    def tx_end(self, tx, commit=True):
        return self.request(w.XS_TRANSACTION_END, (b"T" if commit else b"F") + b"\0", tx)

    def wait_event(self, timeout=2.0, match=None):
        deadline = time.monotonic() + timeout
        while True:
            for i, e in enumerate(self.events):
                if match is None or match(e):
                    return self.events.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                p = self._packet(timeout=left)
            except socket.timeout:
                return None
            if p[0] == w.XS_WATCH_EVENT:
                self.events.append(tuple(p[3].split(b"\0")[:2]))

    def drain(self, quiet=0.05):
        while self.wait_event(quiet) is not None:
            pass


# -- cffi bindings to the shims -------------------------------------------

CDEF = """
typedef struct xc_interface_core xc_interface;
typedef struct xenevtchn_handle xenevtchn_handle;
typedef struct { uint16_t domain; uint16_t pad1; uint32_t flags;
                 uint64_t tot_pages, max_pages, outstanding_pages, shr_pages, paged_pages,
                          shared_info_frame, cpu_time;
                 uint32_t nr_online_vcpus, max_vcpu_id, ssidref; uint8_t handle[16];
                 uint32_t cpupool; } dominfo_prefix_t;
xc_interface *xc_interface_open(void *logger, void *dombuild_logger, unsigned open_flags);
int xc_interface_close(xc_interface *xch);
int xc_version(xc_interface *xch, int cmd, void *arg);
int xc_domain_getinfolist(xc_interface *xch, uint32_t first_domain, unsigned int max_domains, void *info);
int xc_domain_pause(xc_interface *xch, uint32_t domid);
int xc_domain_unpause(xc_interface *xch, uint32_t domid);
int xc_domain_shutdown(xc_interface *xch, uint32_t domid, int reason);
int xc_domain_subscribe_for_suspend(xc_interface *xch, uint32_t domid, uint32_t port);
int xc_hvm_param_get(xc_interface *handle, uint32_t dom, uint32_t param, uint64_t *value);
int xc_domain_resume(xc_interface *xch, uint32_t domid, int fast);
int xc_suspend_evtchn_init_exclusive(xc_interface *xch, xenevtchn_handle *xce, uint32_t domid, int port, int *lockfd);
int xc_suspend_evtchn_release(xc_interface *xch, xenevtchn_handle *xce, uint32_t domid, int suspend_evtchn, int *lockfd);
xenevtchn_handle *xenevtchn_open(void *logger, unsigned int flags);
int xenevtchn_close(xenevtchn_handle *xce);
int xenevtchn_fd(xenevtchn_handle *xce);
int xenevtchn_notify(xenevtchn_handle *xce, uint32_t port);
int xenevtchn_bind_unbound_port(xenevtchn_handle *xce, uint32_t domid);
int xenevtchn_bind_interdomain(xenevtchn_handle *xce, uint32_t domid, uint32_t remote_port);
int xenevtchn_unbind(xenevtchn_handle *xce, uint32_t port);
int xenevtchn_pending(xenevtchn_handle *xce);
int xenevtchn_unmask(xenevtchn_handle *xce, uint32_t port);
"""

_LIBS = None


def load_shims():
    """dlopen the shims in this process by absolute path (the soname-based
    LD_LIBRARY_PATH route is exercised in a subprocess by test_xsim_shims)."""
    global _LIBS
    if _LIBS is None:
        import cffi
        ffi = cffi.FFI()
        ffi.cdef(CDEF)
        ev = ffi.dlopen(os.path.join(LIBDIR, "libxenevtchn.so.1"))
        ctrl = ffi.dlopen(os.path.join(LIBDIR, "libxenctrl.so.4.17"))
        guest = ffi.dlopen(os.path.join(LIBDIR, "libxenguest.so.4.17"))
        _LIBS = (ffi, ctrl, guest, ev)
    return _LIBS


def _check(ffi, rc):
    if rc < 0:
        e = ffi.errno
        raise OSError(e, os.strerror(e))
    return rc


class Xc:
    """xc_interface + xenevtchn handle bound to one simulator."""

    def __init__(self, sim):
        # The shims read these while the handle is in use; put back what was there on close(),
        # so later tests (and their subprocesses) in the same session do not inherit them.
        self._saved_env = dict((k, os.environ.get(k)) for k in ("XENSIM_SOCKET", "XENSIM_RUN_DIR"))
        os.environ["XENSIM_SOCKET"] = sim.env["XENSIM_SOCKET"]
        os.environ["XENSIM_RUN_DIR"] = sim.env["XENSIM_RUN_DIR"]
        self.ffi, self.ctrl, self.guest, self.ev = load_shims()
        self.xch = self.ctrl.xc_interface_open(self.ffi.NULL, self.ffi.NULL, 0)
        assert self.xch != self.ffi.NULL
        self.buf = self.ffi.new("char[]", 256 * 64)

    def close(self):
        self.ctrl.xc_interface_close(self.xch)
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def info(self, domid):
        n = _check(self.ffi, self.ctrl.xc_domain_getinfolist(self.xch, domid, 1, self.buf))
        e = self.ffi.cast("dominfo_prefix_t *", self.buf)
        if n != 1 or e.domain != domid:
            return None
        return {"domain": e.domain, "flags": e.flags,
                "shutdown": bool(e.flags & 4), "reason": (e.flags >> 16) & 0xFF,
                "paused": bool(e.flags & 8), "dying": bool(e.flags & 1),
                "hvm": bool(e.flags & 2), "handle": bytes(e.handle)}

    def shutdown(self, domid, reason):
        return _check(self.ffi, self.ctrl.xc_domain_shutdown(self.xch, domid, reason))

    def resume(self, domid, fast=1):
        return _check(self.ffi, self.guest.xc_domain_resume(self.xch, domid, fast))

    def pause(self, domid):
        return _check(self.ffi, self.ctrl.xc_domain_pause(self.xch, domid))

    def unpause(self, domid):
        return _check(self.ffi, self.ctrl.xc_domain_unpause(self.xch, domid))

    def subscribe(self, domid, port):
        return _check(self.ffi, self.ctrl.xc_domain_subscribe_for_suspend(self.xch, domid, port))

    def hvm_param(self, domid, param):
        v = self.ffi.new("uint64_t *")
        _check(self.ffi, self.ctrl.xc_hvm_param_get(self.xch, domid, param, v))
        return v[0]

    def evtchn_open(self):
        h = self.ev.xenevtchn_open(self.ffi.NULL, 0)
        assert h != self.ffi.NULL
        return h


def suspended(xc, domid):
    i = xc.info(domid)
    return i is not None and i["shutdown"] and i["reason"] == 2
