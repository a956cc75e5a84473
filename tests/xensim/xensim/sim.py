"""The simulator process: wires the hypervisor model, xenstored, the shim RPC
server, the admin socket and the guests onto one event loop.

Files in the state directory DIR:

    xenstored.sock   XENSTORED_PATH (xenstore wire protocol)
    hypervisor.sock  XENSIM_SOCKET (C shim libraries)
    control.sock     admin JSON socket (CLI)
    xensim.pid       pid of the simulator
    xensim.log       its log
    env.sh/env.json  the environment to point production code at it
    run/xen/         XENSIM_RUN_DIR: suspend-evtchn-<domid>.lock files
    log/xen/         the simulated xl's xl-<name>.log (unless the spec's xl.log_dir says otherwise)
    boot_id          the simulated dom0's boot id (a new one after a simulated reboot)
"""

import errno
import fcntl
import gc
import json
import logging
import os
import random
import resource
import signal
import shutil
import socket
import uuid

from . import toolstack
from . import xenconst as xc
from .admin import AdminServer
from .guests import BEHAVIOURS
from .hypervisor import HvError, Hypervisor
from .loop import Handler, Loop
from .rpcserver import RpcServer
from .store import Store
from .watches import WatchManager
from .xenstored import Xenstored
from .xlsim import XlSupport

log = logging.getLogger("xensim")

# the simulated xl (and nothing else): prepended to PATH
BINDIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bin")


def state_paths(dirpath):
    d = os.path.abspath(dirpath)
    return {
        "dir": d,
        "xenstored": os.path.join(d, "xenstored.sock"),
        "hypervisor": os.path.join(d, "hypervisor.sock"),
        "control": os.path.join(d, "control.sock"),
        "pid": os.path.join(d, "xensim.pid"),
        "log": os.path.join(d, "xensim.log"),
        "env_sh": os.path.join(d, "env.sh"),
        "env_json": os.path.join(d, "env.json"),
        "rundir": os.path.join(d, "run", "xen"),
        "boot_id": os.path.join(d, "boot_id"),
    }


def environment(paths, libdir):
    return {
        "XENSTORED_PATH": paths["xenstored"],
        "XENSIM_SOCKET": paths["hypervisor"],
        "XENSIM_RUN_DIR": paths["rundir"],
        "XENSIM_DIR": paths["dir"],
        "LD_LIBRARY_PATH": libdir,
        "PATH": BINDIR + (os.pathsep + os.environ["PATH"] if os.environ.get("PATH") else ""),
    }


def env_sh(env):
    lines = []
    for k, v in env.items():
        if k == "LD_LIBRARY_PATH":
            lines.append('export LD_LIBRARY_PATH="%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"' % v)
        elif k == "PATH":
            # env.json carries the full PATH; for the shell, prepend the simulator's bin dir
            lines.append('export PATH="%s${PATH:+:$PATH}"' % BINDIR)
        else:
            lines.append("export %s=%s" % (k, v))
    return "\n".join(lines) + "\n"


class _Wakeup(Handler):
    def __init__(self, sock):
        self.sock = sock

    def fileno(self):
        return self.sock.fileno()

    def on_readable(self):
        try:
            self.sock.recv(4096)
        except OSError:
            pass


class Simulator:
    def __init__(self, dirpath, spec, libdir):
        self.paths = state_paths(dirpath)
        self.spec = spec
        self.libdir = libdir
        self.loop = Loop()
        self.rng = random.Random(spec.get("seed"))
        self.store = Store()
        self.watches = WatchManager()
        self.hyp = Hypervisor(self.loop, dying_s=spec.get("dying_ms", 50) / 1000.0,
                              resume_hypercall_s=(spec.get("resume_hypercall_ms", 0) / 1000.0,
                                                  spec.get("resume_hypercall_jitter_ms", 0) / 1000.0),
                              domctl_lock_s=spec.get("domctl_lock_us", 0) / 1e6, rng=self.rng)
        self.xenstored = Xenstored(self.loop, self.store, self.watches, self.hyp, self.paths["xenstored"])
        self.rpc = RpcServer(self.loop, self.hyp, self.paths["hypervisor"])
        self.admin = AdminServer(self.loop, self, self.paths["control"])
        self.guests = {}
        self.locks = {}
        self._names = set()
        self._stopping = False
        self.boot_id = str(uuid.uuid4())
        self.boots = 1
        self.xl = XlSupport(self, spec.get("xl"))

    # -- setup ------------------------------------------------------------
    def setup(self):
        # Every xenevtchn handle costs two sockets here: allow thousands.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else 65536
        if soft != resource.RLIM_INFINITY and soft < want:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            except (ValueError, OSError):
                pass
        os.makedirs(self.paths["rundir"], exist_ok=True)
        self._write_boot_id()
        toolstack.build_dom0(self.store)
        for g in self.spec["groups"]:
            self.spawn_group(g)
        self.xenstored.listen()
        self.rpc.listen()
        self.admin.listen()
        env = self.env()
        with open(self.paths["env_sh"] + ".tmp", "w") as f:
            f.write(env_sh(env))
        os.replace(self.paths["env_sh"] + ".tmp", self.paths["env_sh"])
        with open(self.paths["env_json"] + ".tmp", "w") as f:
            json.dump(env, f)
        os.replace(self.paths["env_json"] + ".tmp", self.paths["env_json"])
        gc.collect()
        gc.freeze()
        log.info("simulator ready: %d guests", len(self.guests))

    def env(self):
        return environment(self.paths, self.libdir)

    def _write_boot_id(self):
        with open(self.paths["boot_id"] + ".tmp", "w") as f:
            f.write(self.boot_id + "\n")
        os.replace(self.paths["boot_id"] + ".tmp", self.paths["boot_id"])

    def _unique_name(self, base):
        name = base
        i = 1
        while name in self._names:
            i += 1
            name = "%s.%d" % (base, i)
        self._names.add(name)
        return name

    def spawn_group(self, g):
        cls = BEHAVIOURS[g["behaviour"]]
        out = []
        n = g["count"]
        for i in range(1, n + 1):
            # an explicit name for a single guest is used as is, otherwise
            # it is a prefix: name-1, name-2, ...
            name = self._unique_name(g["name"] if n == 1 and g["name"]
                                     else "%s-%d" % (g["name"] or g["behaviour"], i))
            d = self.hyp.create_domain(name, cls.dtype, int(g["memory_mb"]), int(g["vcpus"]))
            guest = cls(self, d, g)
            d.guest = guest
            self.guests[d.domid] = guest
            toolstack.build_domain(self.store, d)
            self.xenstored.introduce(d.domid)
            guest.boot()
            if g.get("xl_faults"):
                self.xl.set_faults(name, g["xl_faults"])
            out.append(d.domid)
        return out

    # -- actions ----------------------------------------------------------
    def destroy_domain(self, domid):
        """What ``xl destroy`` does: libxl removes the domain's xenstore
        area, then destroys the domain."""
        d = self.hyp.get(domid)
        if d.domid == 0:
            raise HvError(errno.EINVAL)
        if d.dying:
            return
        toolstack.destroy_domain_nodes(self.store, d)
        self.hyp.destroy_domain(domid)
        self.guests.pop(domid, None)
        self._names.discard(d.name)

    def crash_domain(self, domid):
        d = self.hyp.get(domid)
        if d.domid == 0:
            raise HvError(errno.EINVAL)
        g = d.guest
        if g is not None and not g.dead:
            g.hypercall_shutdown(xc.SHUTDOWN_crash)
        else:
            self.hyp.domain_shutdown(d, xc.SHUTDOWN_crash)

    def lock_path(self, domid, lock_dir=None):
        return os.path.join(lock_dir or self.paths["rundir"], "suspend-evtchn-%d.lock" % int(domid))

    def hold_lock(self, domid, lock_dir=None):
        """Hold libxl's suspend lock for domid: the same fcntl lock as
        xg_suspend.c (F_WRLCK on byte 0, non-blocking)."""
        path = self.lock_path(domid, lock_dir)
        if path in self.locks:
            return path
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
        except OSError:
            os.close(fd)
            raise
        self.locks[path] = fd
        return path

    def release_lock(self, domid, lock_dir=None):
        path = self.lock_path(domid, lock_dir)
        fd = self.locks.pop(path, None)
        if fd is None:
            raise KeyError("lock for domain %s is not held" % domid)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        os.close(fd)
        return path

    # -- admin ops ----------------------------------------------------------
    def admin_ping(self):
        return {"pid": os.getpid(), "boot_id": self.boot_id, "boots": self.boots}

    def admin_xl(self, action, conn=None, **kw):
        """The simulated xl's requests (see xlsim.py)."""
        return self.xl.handle(action, conn=conn, **kw)
    admin_xl.wants_conn = True

    def admin_xl_fault(self, name, faults=None):
        """Set (replace) the xl faults of domain ``name``; ``{}`` or none clears them."""
        return {"name": name, "faults": self.xl.set_faults(name, faults)}

    def admin_reboot(self, conn=None):
        """A simulated dom0 reboot: every guest and the whole store vanish, every process that
        talked to the simulator loses its connection (it "died"), /var/run (``run/xen``) is
        emptied, and the simulator comes back with only dom0: a fresh xenstore, a fresh
        hypervisor (domids start again from 1) and a new boot id.  Files on disk (save files,
        ledgers, xl logs) are untouched; the sockets, the environment and the xl faults stay."""
        for guest in list(self.guests.values()):
            guest.on_destroy()
        self.guests = {}
        self._names = set()
        self.admin.close_others(conn)
        old = self.xenstored
        old.listen = lambda: None   # a pending restart-xenstored of the old one must not rebind
        old.close()
        self.rpc.close()
        for path in list(self.locks):
            fd = self.locks.pop(path)
            os.close(fd)
        shutil.rmtree(self.paths["rundir"], ignore_errors=True)
        os.makedirs(self.paths["rundir"], exist_ok=True)
        self.store = Store()
        self.watches = WatchManager()
        self.hyp = Hypervisor(self.loop, dying_s=self.spec.get("dying_ms", 50) / 1000.0)
        self.xenstored = Xenstored(self.loop, self.store, self.watches, self.hyp, self.paths["xenstored"])
        self.rpc = RpcServer(self.loop, self.hyp, self.paths["hypervisor"])
        self.xl.attach_hypervisor()
        self.boot_id = str(uuid.uuid4())
        self.boots += 1
        self._write_boot_id()
        toolstack.build_dom0(self.store)
        self.xenstored.listen()
        self.rpc.listen()
        log.info("simulated dom0 reboot: boot %d, id %s", self.boots, self.boot_id)
        return {"boot_id": self.boot_id, "boots": self.boots}
    admin_reboot.wants_conn = True

    def admin_env(self):
        return {"env": self.env()}

    def describe(self, d):
        g = d.guest
        info = {
            "domid": d.domid, "name": d.name, "type": d.type,
            "flags": d.state_letters(), "dominf_flags": d.flags(),
            "shutdown_code": d.shutdown_code, "paused": d.pause_count,
            "dying": d.dying, "suspend_evtchn": d.suspend_evtchn,
            "hvm_params": {str(k): v for k, v in d.hvm_params.items()},
            "introduced": d.domid in self.xenstored.introduced,
            "release_latched": self.xenstored.introduced.get(d.domid, False),
            "uuid": str(d.uuid),
        }
        if g is not None:
            info.update(g.describe())
            if getattr(g, "port", None) is not None:
                info["guest_port"] = g.port
        xl_save = self.xl.describe(d.domid)
        if xl_save:
            info["xl_save"] = xl_save
        return info

    def admin_list(self, domid=None):
        doms = [self.hyp.domains[i] for i in sorted(self.hyp.domains)]
        if domid is not None:
            doms = [d for d in doms if d.domid == int(domid)]
        return {"domains": [self.describe(d) for d in doms]}

    def admin_stats(self):
        return {
            "domains": len(self.hyp.domains),
            "xenstored_connections": len(self.xenstored.conns),
            "xenstored_listening": self.xenstored.listening,
            "xenstored_restarts": self.xenstored.restarts,
            "watches": self.watches.count(),
            "watch_events": self.watches.events_fired,
            "store_nodes": self.store.count_nodes(),
            "store_ops": dict(self.store.stats),
            "open_transactions": len(self.store.transactions),
            "rpc_connections": len(self.rpc.conns),
            "rpc_calls": self.rpc.calls,
            "evtchn_handles": len(self.rpc.handles),
            "hypervisor": dict(self.hyp.stats),
            "locks": sorted(self.locks),
        }

    def admin_spawn(self, behaviour, count=1, name=None, params=None, **overrides):
        from .fleet import normalise_group
        g = dict(overrides, behaviour=behaviour, count=count, params=params or {})
        if name:
            g["name"] = name
        return {"domids": self.spawn_group(normalise_group(g, self.spec.get("defaults", {}), "spawn"))}

    def admin_fault(self, kind, domid=None, downtime=0.5, lock_dir=None, reason=None):
        if kind == "restart-xenstored":
            self.xenstored.restart(float(downtime))
            return {"downtime": float(downtime)}
        if domid is None:
            raise ValueError("fault %s needs a domid" % kind)
        domid = int(domid)
        if kind == "destroy":
            self.destroy_domain(domid)
        elif kind == "crash":
            self.crash_domain(domid)
        elif kind == "lock":
            return {"path": self.hold_lock(domid, lock_dir)}
        elif kind == "unlock":
            return {"path": self.release_lock(domid, lock_dir)}
        elif kind == "pause":
            self.hyp.pause(domid)
        elif kind == "unpause":
            self.hyp.unpause(domid)
        elif kind == "shutdown":
            r = {v: k for k, v in xc.SHUTDOWN_NAMES.items()}.get(reason, reason)
            self.hyp.remote_shutdown(domid, int(r))
        else:
            raise ValueError("unknown fault %r" % kind)
        return {}

    def admin_external_suspend(self, domid, how=None):
        """Another toolstack suspends the domain, e.g. ``xl save`` on the
        xenstore or direct path, which takes no suspend lock: nothing is
        written to ``control/shutdown`` and no lock is taken; the domain ends
        up shut down with reason suspend.  ``how``: ``guest`` (default for a
        running guest with PV drivers: the guest makes the suspend hypercall
        itself, as when it acknowledges that toolstack's request) or
        ``direct`` (xc_domain_shutdown(SHUTDOWN_suspend); default for HVM
        without PV drivers and guests that cannot respond)."""
        d = self.hyp._guest_dom(int(domid))
        if d.guest is not None and not d.guest.dead:
            how = d.guest.external_suspend(how)
        else:
            if how not in (None, "direct"):
                raise ValueError("domain %d has no guest to suspend itself" % d.domid)
            if d.shut_down or d.dying:
                raise ValueError("domain %d is not running" % d.domid)
            how = "direct"
            self.hyp.domain_shutdown(d, xc.SHUTDOWN_suspend)
        return {"domid": d.domid, "how": how}

    def admin_external_resume(self, domid, fast=True):
        """The other toolstack resumes the domain as ``xl`` does after a
        checkpoint: xc_domain_resume(fast), then XS_RESUME (xenstored re-arms
        the domain's @releaseDomain latch)."""
        d = self.hyp._guest_dom(int(domid))
        self.hyp.xc_domain_resume(d.domid, bool(fast))
        if d.domid in self.xenstored.introduced:
            self.xenstored.introduced[d.domid] = False
        return {"domid": d.domid, "fast": bool(fast)}

    def admin_stop(self):
        self.loop.call_soon(self.loop.stop)
        return {"stopping": True}

    # -- running ------------------------------------------------------------
    def run(self):
        rsock, wsock = socket.socketpair()
        rsock.setblocking(False)
        wsock.setblocking(False)
        self.loop.register(_Wakeup(rsock))
        old_fd = signal.set_wakeup_fd(wsock.fileno())

        def on_signal(signum, frame):
            self.loop.stop()

        old_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        try:
            self.loop.run()
        finally:
            signal.set_wakeup_fd(old_fd)
            for s, h in old_handlers.items():
                signal.signal(s, h)
            self.shutdown()
            rsock.close()
            wsock.close()

    def shutdown(self):
        if self._stopping:
            return
        self._stopping = True
        self.admin.close()
        self.xenstored.close()
        self.rpc.close()
        for path in list(self.locks):
            fd = self.locks.pop(path)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            os.close(fd)
        for key in ("env_sh", "env_json", "boot_id"):
            try:
                os.unlink(self.paths[key])
            except FileNotFoundError:
                pass
        log.info("simulator stopped")
