"""The simulator's side of the simulated ``xl`` (``tests/xensim/bin/xl``).

The ``xl`` executable does what the real one does in its own process (parses arguments, opens
and writes or reads the save file, prints xl's messages, daemonizes the per-domain monitor) and
asks the simulator, over the admin socket, for what libxl would do to the hypervisor and to
xenstore: suspend a domain the way libxl does (reference xen-save-restore.md section 1.1),
resume, pause, destroy, create a domain for a restore and give it its guest back.

One admin connection is held by each ``xl`` process for its whole run: when the process dies
(SIGKILL), the connection closes and what the process held goes with it (the suspend lock),
and nothing else happens -- a guest it had suspended stays suspended, a ``suspend`` it wrote
into ``control/shutdown`` stays there, a half-restored domain stays, as with the real xl.

libxl's suspend (libxl_dom_suspend.c), as modelled here:

* the guest advertised a suspend event channel (``device/suspend/event-channel`` non-empty)
  and is not in ACPI S3: take the suspend lock (``XENSIM_RUN_DIR/suspend-evtchn-<domid>.lock``),
  bind the port, subscribe, notify it; a value that does not name a port the guest offers to
  dom0, or a lock held by somebody else, fails the save ("Suspend event channel initialization
  failed");
* HVM without PV drivers (``CALLBACK_IRQ`` 0) or in S3: ``xc_domain_shutdown(SHUTDOWN_suspend)``;
* otherwise write ``suspend`` into ``control/shutdown`` and wait for the acknowledgement (the
  node emptied or removed); on timeout withdraw the request in a transaction;
* then wait for the domain to be shut down with reason suspend.
Each wait lasts ``suspend_timeout_ms`` (xl's 60 s by default; the fleet spec's
``xl: {suspend_timeout_ms: N}`` or ``XENSIM_XL_SUSPEND_TIMEOUT_MS`` in the *simulator's*
environment).

Faults (per domain *name*, from the fleet spec's ``xl_faults`` or the ``xl set_fault`` admin
op; they survive a simulated dom0 reboot, being test configuration, not dom0 state):

* ``enospc_after: N``  the save file cannot grow past N bytes (ENOSPC): xl fails, resumes the
  guest (fast/cancelled) and leaves the partial file;
* ``stall_after: N``   xl stops writing after N bytes and blocks (reported in ``list`` as
  ``xl_save.stage == "stalled"``) so that a test can SIGKILL it mid-save deterministically;
* ``truncate_to: N``   the save succeeds (exit 0, domain destroyed) but only the first N bytes
  reach the disk (a lost page-cache tail: xl never fsyncs);
* ``restore_fail: true``  a restore of that name fails after the domain was created (libxl
  error), xl destroys the half-built domain and exits 1.
"""

import errno
import logging
import os
import uuid as uuidlib
from collections import Counter

from . import toolstack
from . import xenconst as xc
from .admin import Deferred
from .guests import BEHAVIOURS
from .hypervisor import HvError
from .store import DOM0
from .xswire import XsError

log = logging.getLogger("xensim.xl")

DEFAULT_SUSPEND_TIMEOUT_MS = 60000
FAULT_KEYS = ("enospc_after", "stall_after", "truncate_to", "restore_fail")
POLL_S = 0.01


def check_faults(faults, where="xl_faults"):
    if faults is None:
        return {}
    if not isinstance(faults, dict):
        raise ValueError("%s must be a mapping" % where)
    unknown = set(faults) - set(FAULT_KEYS)
    if unknown:
        raise ValueError("%s: unknown keys %s (known: %s)" % (where, sorted(unknown), ", ".join(FAULT_KEYS)))
    out = {}
    for k, v in faults.items():
        if k == "restore_fail":
            out[k] = bool(v)
        elif v is not None:
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError("%s: %s must be a non-negative number of bytes" % (where, k))
            out[k] = v
    return out


DEFAULT_HOST_MEMORY_MB = 262144


class XlSupport(object):
    def __init__(self, sim, config):
        self.sim = sim
        config = dict(config or {})
        env_timeout = os.environ.get("XENSIM_XL_SUSPEND_TIMEOUT_MS")
        timeout = config.get("suspend_timeout_ms")
        if timeout is None and env_timeout:
            timeout = float(env_timeout)
        self.suspend_timeout = (DEFAULT_SUSPEND_TIMEOUT_MS if timeout is None else float(timeout)) / 1000.0
        self.pages_per_mib = float(config.get("pages_per_mib", 1))
        # The host's memory as `xl info` reports it: guests take their memory from it, and a
        # restore that does not fit fails as libxl's freemem() does (no ballooning of dom0).
        self.host_memory_mb = int(config.get("host_memory_mb", DEFAULT_HOST_MEMORY_MB))
        self.log_dir = config.get("log_dir") or os.path.join(sim.paths["dir"], "log", "xen")
        self.faults = {}          # domain name -> {fault: value}
        self.saves = {}           # domid -> {"stage": ..., "bytes": ...} (for list)
        self.monitor_waits = []   # (Deferred, domid)
        self.attach_hypervisor()

    def attach_hypervisor(self):
        """(Again after a simulated reboot: the hypervisor object is new.)"""
        self.sim.hyp.dom_exc_listeners.append(self._on_dom_exc)
        self.saves = {}

    # -- faults ----------------------------------------------------------------------------
    def set_faults(self, name, faults):
        faults = check_faults(faults)
        if faults:
            self.faults[name] = faults
        else:
            self.faults.pop(name, None)
        return dict(self.faults.get(name, {}))

    def faults_for(self, name):
        return dict(self.faults.get(name, {}))

    # -- helpers ---------------------------------------------------------------------------
    @property
    def hyp(self):
        return self.sim.hyp

    def find(self, dom):
        """xl's find_domain(): a domid or a name; the name is looked up among live domains."""
        s = str(dom)
        if s.isdigit():
            return int(s)
        for d in self.hyp.domains.values():
            if d.name == s and not d.dying:
                return d.domid
        raise LookupError("%s is an invalid domain identifier (rc=-6)" % s)

    def domain_info(self, d):
        g = d.guest
        info = {"domid": d.domid, "name": d.name, "uuid": str(d.uuid), "type": d.type,
                "memory_mb": d.max_pages // 256, "vcpus": d.vcpus, "state": d.state_letters(),
                "cpu_s": d.cpu_ns / 1e9}
        if g is not None:
            info["behaviour"] = g.name
        return info

    def guest_state(self, d):
        g = d.guest
        if g is None:
            return None
        cfg = {k: v for k, v in g.cfg.items() if k != "count"}
        return {"behaviour": g.name, "cfg": cfg, "heartbeat": g.heartbeat,
                "guest_state": g.state, "counters": dict(g.counters)}

    # -- admin actions -----------------------------------------------------------------------
    def handle(self, action, conn=None, **kw):
        fn = getattr(self, "act_" + action.replace("-", "_"), None)
        if fn is None:
            raise ValueError("unknown xl action %r" % action)
        return fn(conn=conn, **kw)

    def act_config(self, conn=None):
        return {"suspend_timeout_ms": self.suspend_timeout * 1000.0, "pages_per_mib": self.pages_per_mib,
                "log_dir": self.log_dir, "boot_id": self.sim.boot_id}

    def act_set_fault(self, name, faults=None, conn=None):
        return {"name": name, "faults": self.set_faults(name, faults)}

    def act_list(self, conn=None):
        doms = [self.hyp.domains[i] for i in sorted(self.hyp.domains)]
        return {"domains": [self.domain_info(d) for d in doms]}

    def free_memory_mb(self):
        used = sum(d.max_pages // 256 for d in self.hyp.domains.values() if d.domid != 0)
        return max(0, self.host_memory_mb - used)

    def act_info(self, conn=None):
        return {"total_memory": self.host_memory_mb, "free_memory": self.free_memory_mb(),
                "xen_major": 4, "xen_minor": 17}

    def act_find(self, dom, conn=None):
        try:
            domid = self.find(dom)
        except LookupError as e:
            return {"error_lines": [str(e)]}
        d = self.hyp.domains.get(domid)
        if d is None:
            return {"domid": domid, "exists": False}
        return dict(self.domain_info(d), exists=True)

    def act_destroy(self, domid, conn=None):
        d = self.hyp.domains.get(int(domid))
        if d is None or d.dying:
            return {"error_lines": ["libxl: error: libxl_domain.c: Domain %d:Non-existant domain" % int(domid),
                                    "libxl: error: libxl_domain.c: Domain %d:Unable to destroy guest" % int(domid),
                                    "libxl: error: libxl_domain.c: Domain %d:Destruction of domain failed" % int(domid)],
                    "rc": -21}
        self.sim.destroy_domain(d.domid)
        return {}

    def act_unpause(self, domid, conn=None):
        try:
            self.hyp.unpause(int(domid))
        except HvError as e:
            return {"error_lines": ["libxl: error: libxl_domain.c: Domain %d:Unpausing domain: %s"
                                    % (int(domid), os.strerror(e.errno))]}
        return {}

    # ---- xl save ---------------------------------------------------------------------------
    def act_save_begin(self, domid, conn=None):
        """libxl_retrieve_domain_configuration: the config to embed, and the faults."""
        d = self.hyp.domains.get(int(domid))
        if d is None or d.dying or d.domid == 0:
            return {"error_lines": ["libxl: error: libxl_domain.c: Domain %d:Non-existant domain" % int(domid),
                                    "unable to retrieve domain configuration"]}
        info = self.domain_info(d)
        info["faults"] = self.faults_for(d.name)
        info["pages_per_mib"] = self.pages_per_mib
        self.saves[d.domid] = {"stage": "begin", "bytes": 0, "name": d.name}
        return info

    def act_save_progress(self, domid, stage, bytes=0, conn=None):
        s = self.saves.setdefault(int(domid), {})
        s.update(stage=stage, bytes=int(bytes))
        if conn is not None:
            conn.cleanups.append(lambda: s.update(stage="abandoned") if s.get("stage") == stage else None)
        return {}

    def act_suspend(self, domid, conn=None):
        job = SuspendJob(self, int(domid), conn)
        return job.start()

    def act_save_end(self, domid, outcome, conn=None):
        """After the stream was written (or failed): ``destroy`` (plain save), ``pause`` (-p:
        pause, then a fast resume) or ``resume`` (failed save: fast resume)."""
        domid = int(domid)
        job = getattr(conn, "xl_suspend_job", None)
        if job is not None:
            job.release()
        s = self.saves.setdefault(domid, {})
        s["stage"] = "done-" + outcome
        lines = []
        d = self.hyp.domains.get(domid)
        if d is None or d.dying:
            return {"error_lines": ["libxl: error: libxl_domain.c: Domain %d:Non-existant domain" % domid]}
        if outcome == "destroy":
            self.sim.destroy_domain(domid)
            return {}
        if outcome == "pause":
            self.hyp.pause(domid)
        try:
            self.sim.admin_external_resume(domid, fast=True)
        except HvError as e:
            lines.append("xc: error: Dom %d not suspended: (shutdown %s, reason %s): Invalid argument"
                         % (domid, int(d.shut_down), -1 if d.shutdown_code is None else d.shutdown_code))
            lines.append("libxl: error: libxl_dom_suspend.c: Domain %d:xc_domain_resume failed: %s"
                         % (domid, os.strerror(e.errno)))
        return {"error_lines": lines} if lines else {}

    # ---- xl restore ------------------------------------------------------------------------
    def act_restore_create(self, name, uuid, type, memory_mb, vcpus, conn=None):
        """libxl__domain_make for a restore: refuse a name in use, create the domain (paused, as
        Xen creates every domain) with the saved UUID and a new domid, write its xenstore area."""
        for d in self.hyp.domains.values():
            if d.name == name and not d.dying:
                return {"error_lines": ["libxl: error: libxl_create.c: Domain with name %s already exists" % name,
                                        "libxl: error: libxl_create.c: cannot make domain: -6"]}
        if type not in ("pv", "pvh", "hvm"):
            return {"error_lines": ["libxl: error: libxl_create.c: unsupported domain type %s" % type]}
        if int(memory_mb) > self.free_memory_mb():
            return {"error_lines": ["libxl: error: libxl.c: failed to free memory for the domain",
                                    "libxl: error: libxl_create.c: cannot make domain: -3"]}
        d = self.hyp.create_domain(name, type, int(memory_mb), int(vcpus), uid=uuidlib.UUID(uuid))
        self.hyp.pause(d.domid)
        self.sim._names.add(name)
        toolstack.build_domain(self.sim.store, d)
        self.sim.xenstored.introduce(d.domid)
        return {"domid": d.domid, "faults": self.faults_for(name)}

    def act_restore_finish(self, domid, state, conn=None):
        """The stream was read: the guest gets its memory back and continues from where it
        stopped (a successful suspend from its point of view: "new domain")."""
        domid = int(domid)
        d = self.hyp.domains.get(domid)
        if d is None or d.dying:
            return {"error_lines": ["libxl: error: libxl_create.c: Domain %d:Non-existant domain" % domid]}
        if self.faults_for(d.name).get("restore_fail"):
            return {"error_lines": [
                "libxl: error: libxl_create.c: Domain %d:cannot (re-)build domain: -3" % domid,
                "libxl: error: libxl_domain.c: Domain %d:Non-existant domain" % domid]}
        if not state:
            return {"error_lines": ["xc: error: no guest state in the image: cannot restore domain %d" % domid]}
        if state:
            cls = BEHAVIOURS.get(state.get("behaviour"))
            if cls is None:
                return {"error_lines": ["xc: error: unknown guest behaviour %r in image" % state.get("behaviour")]}
            cfg = dict(self.sim.spec.get("defaults", {}))
            cfg.update(state.get("cfg") or {})
            cfg.setdefault("params", {})
            g = cls(self.sim, d, cfg)
            g.heartbeat = int(state.get("heartbeat", 0))
            g.counters = Counter(state.get("counters") or {})
            g.counters["restores"] += 1
            g.last_resume = "new-domain"
            d.guest = g
            self.sim.guests[domid] = g
            g.boot()
        return {}

    def act_monitor_wait(self, domid, now=False, conn=None):
        """The xl monitor (``xl-<name>``) waiting for its domain: replies with the domain's state
        at once when ``now``, else at the next domain event (VIRQ_DOM_EXC, which is also what
        makes xenstored fire @releaseDomain for the real one)."""
        dfd = Deferred()
        st = self._dom_state(int(domid))
        if now or st["state"] != "running":
            dfd.resolve(st)
        else:
            self.monitor_waits.append((dfd, int(domid)))
        return dfd

    def _dom_state(self, domid):
        d = self.hyp.domains.get(domid)
        if d is None or d.dying:
            return {"state": "gone"}
        if d.shut_down:
            return {"state": "shutdown", "code": d.shutdown_code}
        return {"state": "running"}

    def _on_dom_exc(self):
        if not self.monitor_waits:
            return
        waits, self.monitor_waits = self.monitor_waits, []
        for dfd, domid in waits:
            if dfd.abandoned:
                continue
            dfd.resolve(self._dom_state(domid))

    def describe(self, domid):
        s = self.saves.get(domid)
        return dict(s) if s else None


class SuspendJob(object):
    """libxl_domain_suspend's suspend phase for one domain, on the simulator's event loop."""

    def __init__(self, xl, domid, conn):
        self.xl = xl
        self.sim = xl.sim
        self.hyp = xl.sim.hyp
        self.loop = xl.sim.loop
        self.domid = domid
        self.conn = conn
        self.dfd = Deferred()
        self.lock_path = None
        self.dom0_port = None
        self.subscribed = False
        self.deadline = None
        self.released = False
        self.lines = []

    # -- result ----------------------------------------------------------------------------
    def fail(self, *lines):
        self.lines.extend(lines)
        self.release()
        self.dfd.resolve({"suspended": False, "error_lines": self.lines})

    def succeed(self, d):
        self.dfd.resolve({"suspended": True, "state": self.xl.guest_state(d), "info_lines": self.lines})

    def release(self):
        """xc_suspend_evtchn_release + closing the lock fd (also when xl dies)."""
        if self.released:
            return
        self.released = True
        d = self.hyp.domains.get(self.domid)
        if self.subscribed and d is not None:
            try:
                self.hyp.subscribe(self.domid, 0)
            except HvError:
                pass
        if self.dom0_port is not None:
            try:
                self.hyp.evtchn_close(self.hyp.dom0, self.dom0_port)
            except HvError:
                pass
        if self.lock_path is not None:
            try:
                self.sim.release_lock(self.domid)
            except KeyError:
                pass

    # -- the suspend -----------------------------------------------------------------------
    def start(self):
        if self.conn is not None:
            self.conn.xl_suspend_job = self
            self.conn.cleanups.append(self.release)
        d = self.hyp.domains.get(self.domid)
        if d is None or d.dying:
            self.fail("libxl: error: libxl_domain.c: Domain %d:Non-existant domain" % self.domid)
            return self.dfd
        if d.shut_down and d.shutdown_code != xc.SHUTDOWN_suspend:
            self.fail("libxl: error: libxl_dom_suspend.c: Domain %d:guest we were suspending has shut down "
                      "with unexpected reason code %d" % (self.domid, d.shutdown_code))
            return self.dfd
        s_state = d.hvm_params.get(xc.HVM_PARAM_ACPI_S_STATE, 0) if d.hvm else 0
        port = self._advertised_port(d)
        self.xl.saves.setdefault(self.domid, {})["stage"] = "suspending"
        if port is not None and not s_state:
            self._evtchn_path(d, port)
        elif d.hvm and (not d.hvm_params.get(xc.HVM_PARAM_CALLBACK_IRQ, 0) or s_state):
            try:
                self.hyp.domain_shutdown(d, xc.SHUTDOWN_suspend)
            except HvError as e:
                self.fail("libxl: error: libxl_dom_suspend.c: Domain %d:xc_domain_shutdown failed: %s"
                          % (self.domid, os.strerror(e.errno)))
                return self.dfd
            self._wait_suspended()
        else:
            self._xenstore_path(d)
        return self.dfd

    def _advertised_port(self, d):
        """xs_suspend_evtchn_port(): atoi() of device/suspend/event-channel; absent/empty -> none."""
        try:
            v = self.sim.store.read(DOM0, "/local/domain/%d/device/suspend/event-channel" % d.domid)
        except XsError:
            return None
        v = v.decode("latin-1")
        if not v:
            return None
        digits = ""
        s = v.lstrip()
        sign = 1
        if s[:1] in "+-":
            sign = -1 if s[0] == "-" else 1
            s = s[1:]
        for ch in s:
            if not ch.isdigit():
                break
            digits += ch
        n = sign * int(digits) if digits else 0
        return n & 0xFFFFFFFF if n > 0x7FFFFFFF or n < -0x80000000 else n

    def _evtchn_path(self, d, port):
        try:
            if self.sim.lock_path(self.domid) in self.sim.locks:
                raise OSError(errno.EAGAIN, "held")
            self.lock_path = self.sim.hold_lock(self.domid)
        except OSError:
            self.lock_path = None
            self.fail("libxl: warning: libxl_dom_suspend.c: Domain %d:Suspend event channel initialization "
                      "failed" % self.domid)
            return
        try:
            if port <= 0:
                raise HvError(errno.EINVAL)
            self.dom0_port = self.hyp.evtchn_bind_interdomain(self.hyp.dom0, self.domid, port)
            self.hyp.subscribe(self.domid, port)
            self.subscribed = True
        except HvError:
            self.fail("libxl: warning: libxl_dom_suspend.c: Domain %d:Suspend event channel initialization "
                      "failed" % self.domid)
            return
        self.hyp.evtchn_send(self.hyp.dom0, self.dom0_port)
        self._wait_suspended()

    def _xenstore_path(self, d):
        path = "/local/domain/%d/control/shutdown" % self.domid
        try:
            self.sim.store.write(DOM0, path, b"suspend")
        except XsError as e:
            self.fail("libxl: error: libxl_dom_suspend.c: Domain %d:failed to write suspend request: %s"
                      % (self.domid, os.strerror(e.errno)))
            return
        self.deadline = self.loop.now() + self.xl.suspend_timeout
        self.path = path
        self._poll_ack()

    def _read_shutdown(self, tx=None):
        try:
            return self.sim.store.read(DOM0, self.path, tx)
        except XsError:
            return None

    def _poll_ack(self):
        if self.dfd.done or self.dfd.abandoned:
            return self._abandon()
        v = self._read_shutdown()
        if not v:   # acknowledged: emptied ("" from Linux) or removed (Windows)
            self._wait_suspended()
            return
        d = self.hyp.domains.get(self.domid)
        if d is None or d.dying:
            self.fail("libxl: error: libxl_dom_suspend.c: Domain %d:guest we were suspending has been destroyed"
                      % self.domid)
            return
        if self.loop.now() < self.deadline:
            self.loop.call_later(POLL_S, self._poll_ack)
            return
        # timed out: withdraw the request in a transaction unless it was acknowledged meanwhile
        store = self.sim.store
        tx = store.tx_start(DOM0, self)
        v = self._read_shutdown(tx)
        if v:
            store.write(DOM0, self.path, b"", tx)
        store.tx_commit(tx)
        if not v:
            self.lines.append("libxl: error: libxl_dom_suspend.c: Domain %d:guest didn't acknowledge suspend, "
                              "request cancelled" % self.domid)
            self._wait_suspended()
            return
        self.fail("libxl: error: libxl_dom_suspend.c: Domain %d:guest didn't acknowledge suspend, "
                  "cancelling request" % self.domid)

    def _wait_suspended(self):
        self.deadline = self.loop.now() + self.xl.suspend_timeout
        self._poll_suspended()

    def _poll_suspended(self):
        if self.dfd.done or self.dfd.abandoned:
            return self._abandon()
        d = self.hyp.domains.get(self.domid)
        if d is None or d.dying:
            self.fail("libxl: error: libxl_dom_suspend.c: Domain %d:guest we were suspending has been destroyed"
                      % self.domid)
            return
        if d.shut_down:
            if d.shutdown_code == xc.SHUTDOWN_suspend:
                self.xl.saves.setdefault(self.domid, {})["stage"] = "suspended"
                self.succeed(d)
            else:
                self.fail("libxl: error: libxl_dom_suspend.c: Domain %d:guest we were suspending has shut down "
                          "with unexpected reason code %d" % (self.domid, d.shutdown_code))
            return
        if self.loop.now() >= self.deadline:
            self.fail("libxl: error: libxl_dom_suspend.c: Domain %d:guest did not suspend, timed out" % self.domid)
            return
        self.loop.call_later(POLL_S, self._poll_suspended)

    def _abandon(self):
        # the xl process died while waiting: nothing is withdrawn (its lock went with it)
        self.release()
