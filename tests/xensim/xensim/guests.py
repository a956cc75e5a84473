"""Guest behaviours (reference section 7), run inside the simulator.

Each guest talks to xenstore through an in-process client acting as its own
(unprivileged) domid, so xenstored's permission rules apply to it, and reacts
to xenstore watches and event-channel notifications with timers on the
simulator's event loop.  A guest's pending actions (quiesce, crash, ...) only
progress while its domain is runnable (not paused, not shut down).

While running, every guest increments ``~/data/heartbeat`` every
``heartbeat_ms`` (a simulator artefact, standing in for a guest agent; it is
written even by guests without PV drivers).  It stops while the domain is
paused, shut down or dying.
"""

import errno
import logging
from collections import Counter

from . import xenconst as xc
from .store import Ident
from .xswire import XsError

log = logging.getLogger("xensim.guests")

# HVM_PARAM_CALLBACK_IRQ value a Linux/Windows HVM guest registers: delivery
# type 2 (vector) in bits 56-63, vector 0xf3.
CALLBACK_VECTOR = (2 << 56) | 0xF3


class GuestXs:
    """A guest's xenstore connection (in process, acting as its domid)."""

    def __init__(self, sim, domid):
        self.sim = sim
        self.ident = Ident(domid, privileged=False)
        self.prefix = "/local/domain/%d/" % domid
        self._cbs = {}
        self.closed = False

    def _abs(self, rel):
        return rel if rel.startswith("/") else self.prefix + rel

    def read(self, rel, tx=None):
        """Value as str, or None if absent."""
        try:
            return self.sim.store.read(self.ident, self._abs(rel), tx).decode("latin-1")
        except XsError as e:
            if e.errno == errno.ENOENT:
                return None
            raise

    def write(self, rel, value, tx=None):
        if isinstance(value, str):
            value = value.encode("latin-1")
        self.sim.store.write(self.ident, self._abs(rel), value, tx)

    def rm(self, rel, tx=None):
        self.sim.store.rm(self.ident, self._abs(rel), tx)

    def transaction(self, fn):
        """Run fn(tx) in a transaction, retrying on EAGAIN (as the kernel's
        xenbus_transaction_end() callers do).  fn returns (commit, result)."""
        for _ in range(100):
            tx = self.sim.store.tx_start(self.ident, self)
            commit, result = fn(tx)
            if not commit:
                self.sim.store.tx_abort(tx)
                return result
            if self.sim.store.tx_commit(tx):
                return result
        raise XsError(errno.EAGAIN)

    def watch(self, rel, token, cb):
        w = self.sim.watches.add(self, rel, self._abs(rel), token.encode(), self.prefix)
        self._cbs[w.token] = cb
        self.sim.loop.call_soon(self._dispatch, w.token, rel)  # fires once up front

    def deliver_watch(self, watch, path):
        self.sim.loop.call_soon(self._dispatch, watch.token, path)

    def _dispatch(self, token, path):
        cb = self._cbs.get(token)
        if cb is not None and not self.closed:
            cb(path)

    def reset(self):
        """Drop watches (xenbus reconnecting after a real resume)."""
        self.sim.watches.remove_conn(self)
        self._cbs.clear()

    def close(self):
        self.closed = True
        self.reset()
        self.sim.store.drop_transactions(self)


class Guest:
    """Base guest: boots, heartbeats, no suspend protocol."""

    name = "base"
    dtype = "pv"
    pv_drivers = True       # registers HVM_PARAM_CALLBACK_IRQ (HVM/PVH)
    xenstore_client = True  # watches control/shutdown
    features = {"feature-poweroff": "1", "feature-reboot": "1", "feature-suspend": "1"}
    known_commands = ("poweroff", "halt", "reboot", "suspend")

    def __init__(self, sim, dom, cfg):
        self.sim = sim
        self.loop = sim.loop
        self.hyp = sim.hyp
        self.dom = dom
        self.cfg = cfg
        self.params = dict(cfg.get("params") or {})
        self.rng = sim.rng
        self.xs = GuestXs(sim, dom.domid)
        self.state = "running"  # running | quiescing | suspended | crashed | off | dead
        self.busy = False
        self.in_hcall = False
        self.heartbeat = 0
        self.counters = Counter()
        self.last_resume = None
        self._timers = set()
        self._deferred = []
        self._hb_timer = None

    # -- helpers ----------------------------------------------------------
    @property
    def domid(self):
        return self.dom.domid

    @property
    def dead(self):
        return self.state == "dead"

    def later(self, delay, fn, *args):
        """Run fn after delay; if the domain is not runnable then, run it
        once it is again (unpause/resume)."""
        holder = []

        def run():
            self._timers.discard(holder[0])
            if self.dead:
                return
            if not self.dom.runnable:
                self.defer(fn, *args)
                return
            fn(*args)

        t = self.loop.call_later(delay, run)
        holder.append(t)
        self._timers.add(t)
        return t

    def defer(self, fn, *args):
        """Run fn once the domain is runnable again (deduplicated)."""
        if (fn, args) not in self._deferred:
            self._deferred.append((fn, args))

    def _run_deferred(self):
        if self.dead or not self.dom.runnable:
            return
        todo, self._deferred = self._deferred, []
        for fn, args in todo:
            self.loop.call_soon(fn, *args)

    def delay(self, mean_ms, jitter_ms):
        return max(0.0, mean_ms + self.rng.uniform(-jitter_ms, jitter_ms)) / 1000.0

    def quiesce_delay(self):
        return self.delay(self.cfg["quiesce_ms"], self.cfg["jitter_ms"])

    # -- lifecycle --------------------------------------------------------
    def boot(self):
        if self.dom.hvm and self.pv_drivers:
            self.dom.hvm_params[xc.HVM_PARAM_CALLBACK_IRQ] = CALLBACK_VECTOR
        if self.xenstore_client:
            for k, v in self.features.items():
                self.xs.write("control/" + k, v)
            self.xs.watch("control/shutdown", "shutdown", self.on_shutdown_watch)
        self.boot_extra()
        hb = self.cfg["heartbeat_ms"] / 1000.0
        if hb > 0:
            self._hb_timer = self.loop.call_later(self.rng.uniform(0, hb), self._beat)

    def boot_extra(self):
        pass

    def _beat(self):
        if self.dead:
            return
        if self.dom.runnable and self.state in ("running", "quiescing"):
            self.heartbeat += 1
            try:
                self.xs.write("data/heartbeat", str(self.heartbeat))
            except XsError:
                pass
        period = self.cfg["heartbeat_ms"] / 1000.0
        self._hb_timer = self.loop.call_coarse(period, self._beat, granularity=min(0.1, period / 2))

    def on_destroy(self):
        self.state = "dead"
        self.busy = False
        for t in self._timers:
            t.cancel()
        self._timers.clear()
        self._deferred = []
        if self._hb_timer is not None:
            self._hb_timer.cancel()
        self.xs.close()

    def on_unpause(self):
        self._run_deferred()

    def on_evtchn(self, port):
        pass

    def on_resume(self, fast):
        """The toolstack resumed the domain (xc_domain_resume).  With the group's
        ``resume_ms`` (+- ``resume_jitter_ms``) the guest spends that long in state
        "resuming" first (thawing, reconnecting its devices; the hypervisor already reports
        it running): no heartbeat, and its xenstore watch events and event-channel
        notifications wait until it is back, as a real kernel's do."""
        if self.dead:
            return
        if self.in_hcall:
            self.in_hcall = False
            cancelled = bool(fast)
            self.counters["resumes_cancelled" if cancelled else "resumes_new"] += 1
            self.last_resume = "cancelled" if cancelled else "new-domain"
            delay = self.delay(self.cfg.get("resume_ms", 0), self.cfg.get("resume_jitter_ms", 0))
            if delay > 0:
                self.state = "resuming"
                self.busy = True
                self.later(delay, self._resumed, cancelled)
                return
            self.state = "running"
            self.busy = False
            self.after_resume(cancelled)
        else:
            self.counters["resumes_unnoticed"] += 1
        self._run_deferred()

    def _resumed(self, cancelled):
        if self.state != "resuming":
            return
        self.state = "running"
        self.busy = False
        self.heartbeat += 1  # its first heartbeat: it is back
        try:
            self.xs.write("data/heartbeat", str(self.heartbeat))
        except XsError:
            pass
        self.after_resume(cancelled)
        todo, self._while_resuming = getattr(self, "_while_resuming", []), []
        for fn, args in todo:
            self.loop.call_soon(fn, *args)
        self._run_deferred()

    def wait_resumed(self, fn, *args):
        """True (and ``fn(*args)`` queued for when the guest is back) while it is resuming."""
        if self.state != "resuming":
            return False
        queued = self.__dict__.setdefault("_while_resuming", [])
        if (fn, args) not in queued:
            queued.append((fn, args))
        return True

    def after_resume(self, cancelled):
        if not cancelled and self.xenstore_client:
            # xs_resume(): xenbus reconnects and re-registers its watches.
            self.xs.reset()
            self.xs.watch("control/shutdown", "shutdown", self.on_shutdown_watch)

    # -- SCHEDOP_shutdown from the guest ----------------------------------
    def hypercall_shutdown(self, reason):
        if reason == xc.SHUTDOWN_suspend:
            self.state = "suspended"
            self.in_hcall = True
            self.counters["suspends"] += 1
        elif reason == xc.SHUTDOWN_crash:
            self.state = "crashed"
        else:
            self.state = "off"
        self.busy = False
        self.hyp.domain_shutdown(self.dom, reason)

    def external_suspend(self, how=None):
        """Another toolstack suspends the domain (simulator admin op
        ``external_suspend``), without our lock and without writing
        ``control/shutdown``.  ``how="guest"``: the guest makes
        SCHEDOP_shutdown(suspend) now, as if it had acknowledged that
        toolstack's request (a later fast resume is "cancelled" for it);
        ``how="direct"``: xc_domain_shutdown(SHUTDOWN_suspend), the guest does
        not notice.  Default: "guest" for a running guest with PV drivers,
        else "direct"."""
        if self.dead or self.dom.shut_down or self.dom.dying:
            raise ValueError("domain %d is not running" % self.domid)
        if how is None:
            how = "guest" if (self.pv_drivers and self.xenstore_client and
                              self.state in ("running", "quiescing")) else "direct"
        if how not in ("guest", "direct"):
            raise ValueError("how must be guest or direct, not %r" % (how,))
        if how == "guest" and not self.dom.runnable:
            raise ValueError("domain %d is paused: its guest cannot suspend itself" % self.domid)
        self.counters["external_suspends"] += 1
        if how == "guest":
            self.hypercall_shutdown(xc.SHUTDOWN_suspend)
        else:
            self.hyp.domain_shutdown(self.dom, xc.SHUTDOWN_suspend)
        return how

    # -- the xenstore control protocol -------------------------------------
    def on_shutdown_watch(self, path):
        if not self.dom.runnable:
            # a paused guest handles the queued watch event once it runs
            self.defer(self.on_shutdown_watch, path)
            return
        if self.wait_resumed(self.on_shutdown_watch, path):
            return
        if self.state != "running":
            return  # shutting_down != SHUTDOWN_INVALID: ignore
        cmd = self.read_and_ack()
        if cmd is None:
            return
        self.counters["requests"] += 1
        self.dispatch(cmd)

    def read_and_ack(self):
        """Linux drivers/xen/manage.c shutdown_handler(): read in a
        transaction, acknowledge with "" only commands we know."""
        def body(tx):
            v = self.xs.read("control/shutdown", tx)
            if not v:
                return False, None
            if v in self.known_commands:
                self.xs.write("control/shutdown", "", tx)
                return True, v
            return False, ("?", v)
        try:
            r = self.xs.transaction(body)
        except XsError:
            return None
        if isinstance(r, tuple):
            self.counters["ignored"] += 1
            log.info("dom%d: ignoring shutdown request: %s", self.domid, r[1])
            return None
        if r is not None:
            self.counters["acks"] += 1
        return r

    def dispatch(self, cmd):
        if cmd == "suspend":
            self.on_suspend_request()
        elif cmd in ("poweroff", "halt"):
            self.state = "quiescing"
            self.later(0.01, self.hypercall_shutdown, xc.SHUTDOWN_poweroff)
        elif cmd == "reboot":
            self.state = "quiescing"
            self.later(0.01, self.hypercall_shutdown, xc.SHUTDOWN_reboot)

    def on_suspend_request(self):
        self.begin_quiesce(self.quiesce_delay(), self.finish_suspend)

    def begin_quiesce(self, delay, then):
        self.state = "quiescing"
        self.busy = True
        self.later(delay, then)

    def finish_suspend(self):
        if self.state != "quiescing":
            return
        self.hypercall_shutdown(xc.SHUTDOWN_suspend)

    # -- reporting --------------------------------------------------------
    def describe(self):
        return {
            "behaviour": self.name,
            "state": self.state,
            "heartbeat": self.heartbeat,
            "last_resume": self.last_resume,
            "counters": dict(self.counters),
        }


class LinuxPV(Guest):
    """Upstream Linux PV: xenstore protocol, acks known commands with ""."""
    name = "linux-pv"


class LinuxPVH(Guest):
    name = "linux-pvh"
    dtype = "pvh"


class HvmPV(Guest):
    """Linux HVM with PV drivers (callback IRQ registered): xenstore protocol."""
    name = "hvm-pv"
    dtype = "hvm"


class HvmNoPV(Guest):
    """HVM without PV drivers: CALLBACK_IRQ=0, never looks at xenstore; only
    xc_domain_shutdown(SHUTDOWN_suspend) suspends it (it never notices)."""
    name = "hvm-nopv"
    dtype = "hvm"
    pv_drivers = False
    xenstore_client = False


class HvmS3(Guest):
    """HVM with PV drivers asleep in ACPI S3 (ACPI_S_STATE=3): cannot respond;
    libxl uses the direct path for it.  No heartbeat while asleep."""
    name = "hvm-s3"
    dtype = "hvm"
    xenstore_client = False

    def boot_extra(self):
        self.dom.hvm_params[xc.HVM_PARAM_ACPI_S_STATE] = 3
        self.state = "asleep"


class XenLinux(Guest):
    """Classic XenLinux: publishes an unbound port for dom0 in
    device/suspend/event-channel and suspends when it is notified; also
    handles control/shutdown, acknowledging every command before parsing.
    Re-creates the channel after a real resume, not after a cancelled one."""
    name = "xenlinux"
    features = {}

    def boot_extra(self):
        self.port = None
        self._publish_port()

    def _publish_port(self):
        if self.port is not None:
            try:
                self.hyp.evtchn_close(self.dom, self.port)
            except Exception:
                pass
        self.port = self.hyp.evtchn_alloc_unbound(self.dom, 0)
        self.xs.write("device/suspend/event-channel", str(self.port))

    def read_and_ack(self):
        def body(tx):
            v = self.xs.read("control/shutdown", tx)
            if not v:
                return False, None
            self.xs.write("control/shutdown", "", tx)
            return True, v
        try:
            r = self.xs.transaction(body)
        except XsError:
            return None
        if r is None:
            return None
        self.counters["acks"] += 1
        if r not in self.known_commands:
            self.counters["ignored"] += 1
            return None
        return r

    def on_evtchn(self, port):
        if port != self.port or self.dead:
            return
        if not self.dom.runnable:
            self.defer(self.on_evtchn, port)
            return
        if self.wait_resumed(self.on_evtchn, port):
            return
        self.counters["evtchn_notifications"] += 1
        if self.state == "running":
            self.counters["requests"] += 1
            self.on_suspend_request()

    def after_resume(self, cancelled):
        super().after_resume(cancelled)
        if not cancelled:
            self._publish_port()


class Windows(Guest):
    """Windows PV drivers (older xenbus generation): acknowledges suspend by
    *removing* control/shutdown.  Note: once removed, a node recreated by
    dom0 inherits ~/control's read-only permissions, so the driver cannot
    remove it again (EACCES) and the next request goes unacknowledged --
    exactly what would happen with libxl."""
    name = "windows"
    dtype = "hvm"
    features = {"feature-suspend": "1", "feature-poweroff": "1", "feature-reboot": "1",
                "feature-s3": "1", "feature-s4": "1"}
    known_commands = ("poweroff", "reboot", "suspend", "s3", "s4")

    def read_and_ack(self):
        v = self.xs.read("control/shutdown")
        if not v:
            return None
        if v not in self.known_commands:
            self.counters["ignored"] += 1
            return None
        try:
            if v == "suspend":
                self.xs.rm("control/shutdown")
            else:
                self.xs.write("control/shutdown", "")   # xenagent
        except XsError as e:
            self.counters["ack_failed"] += 1
            log.info("dom%d: cannot acknowledge %s: %s", self.domid, v, e)
            return None
        self.counters["acks"] += 1
        return v


class Slow(Guest):
    """Acknowledges after ack_delay_ms (+-ack_jitter_ms), suspends after a
    long quiesce (default 3000 +- 1000 ms; override quiesce_ms/jitter_ms on
    the group)."""
    name = "slow"
    default_quiesce = (3000, 1000)

    def on_shutdown_watch(self, path):
        if not self.dom.runnable:
            self.defer(self.on_shutdown_watch, path)
            return
        if self.wait_resumed(self.on_shutdown_watch, path):
            return
        if self.state != "running":
            return
        if getattr(self, "_ack_pending", False):
            return
        self._ack_pending = True
        d = self.delay(float(self.params.get("ack_delay_ms", 500)),
                       float(self.params.get("ack_jitter_ms", 200)))
        self.later(d, self._late_ack, path)

    def _late_ack(self, path):
        self._ack_pending = False
        Guest.on_shutdown_watch(self, path)


class Unresponsive(Guest):
    """Advertises feature-suspend=1 but never looks at control/shutdown."""
    name = "unresponsive"

    def on_shutdown_watch(self, path):
        self.counters["watch_events"] += 1


class AckNoSuspend(Guest):
    """Acknowledges, tries to freeze, fails (freezer timeout / device refusing)
    and thaws: keeps running and never suspends."""
    name = "ack-no-suspend"

    def on_suspend_request(self):
        self.begin_quiesce(self.quiesce_delay(), self._freeze_failed)

    def _freeze_failed(self):
        self.counters["freeze_failed"] += 1
        self.state = "running"
        self.busy = False


class CrashOnSuspend(Guest):
    """Acknowledges, then crashes while suspending (SHUTDOWN_crash)."""
    name = "crash-on-suspend"

    def finish_suspend(self):
        if self.state == "quiescing":
            self.hypercall_shutdown(xc.SHUTDOWN_crash)


class PoweroffOnSuspend(Guest):
    """Acknowledges, then shuts down for another reason (poweroff)."""
    name = "poweroff-on-suspend"

    def finish_suspend(self):
        if self.state == "quiescing":
            self.hypercall_shutdown(xc.SHUTDOWN_poweroff)


class DestroyOnSuspend(Guest):
    """Acknowledges, then the domain is destroyed (``xl destroy``) while the
    toolstack waits."""
    name = "destroy-on-suspend"

    def finish_suspend(self):
        if self.state == "quiescing":
            self.sim.destroy_domain(self.domid)


class _LateSuspend(object):
    """Mixin: once asked (by whichever protocol), reach SCHEDOP_shutdown(suspend)
    only ``suspend_after_ms`` (+- ``suspend_jitter_ms``) later instead of
    after the group's quiesce delay."""

    default_suspend_after_ms = 1500

    def suspend_delay(self):
        return self.delay(float(self.params.get("suspend_after_ms", self.default_suspend_after_ms)),
                          float(self.params.get("suspend_jitter_ms", 0)))

    def on_suspend_request(self):
        self.counters["late_suspends"] += 1
        self.begin_quiesce(self.suspend_delay(), self.finish_suspend)


class LateSuspender(_LateSuspend, Guest):
    """Linux PV, xenstore protocol, that acknowledges at once but suspends late.

    It reads and acknowledges ``control/shutdown`` in a transaction exactly as
    ``linux-pv`` does (the node is "" right after the request), then takes
    ``suspend_after_ms`` (params, default 1500; ``suspend_jitter_ms`` default
    0) before SCHEDOP_shutdown(suspend): longer than a toolstack's ``timeout``
    of 1 s.  A toolstack that gives up meanwhile has a guest that answered and
    suspends later on its own.  The delay only runs while the domain is
    runnable (pausing it postpones the suspend).  The group's ``quiesce_ms`` is
    not used."""
    name = "late_suspender"


class LateSuspenderEvtchn(_LateSuspend, XenLinux):
    """XenLinux-like (advertises ``device/suspend/event-channel``, event-channel
    protocol) that suspends ``suspend_after_ms`` (params, default 1500,
    ``suspend_jitter_ms`` default 0) after the notification on its port (or
    after acknowledging a ``suspend`` in ``control/shutdown``), instead of after
    the group's quiesce delay."""
    name = "late_suspender_evtchn"


class AckIfStillSuspend(Guest):
    """Linux PV, xenstore protocol, slow to look at its watch: it only answers a
    request that is still there when it gets around to it.

    When its ``control/shutdown`` watch fires with ``suspend`` in the node, it
    waits ``ack_delay_ms`` (params, default 2000, ``ack_jitter_ms`` default 0;
    only while runnable), then reads the node in a transaction: if it still
    says ``suspend`` it acknowledges with "" and suspends after the group's
    quiesce delay, like ``linux-pv``; if the request was withdrawn meanwhile
    (node emptied, removed or changed) it does nothing and keeps running
    (counter ``requests_gone``).  Watch events while a look is pending are
    ignored.  Nothing of this outlives a suspend and resume: afterwards it
    answers the next request the same way again."""
    name = "ack_if_still_suspend"

    def on_shutdown_watch(self, path):
        if not self.dom.runnable:
            self.defer(self.on_shutdown_watch, path)
            return
        if self.wait_resumed(self.on_shutdown_watch, path):
            return
        if self.state != "running" or getattr(self, "_look_pending", False):
            return
        # (simulator shortcut: a glance at the node, so that the delay runs from
        # the request, not from some earlier unrelated event)
        try:
            if self.xs.read("control/shutdown") != "suspend":
                return
        except XsError:
            return
        self._look_pending = True
        self.counters["requests_seen"] += 1
        self.later(self.delay(float(self.params.get("ack_delay_ms", 2000)),
                              float(self.params.get("ack_jitter_ms", 0))), self._look)

    def _look(self):
        self._look_pending = False
        if self.state != "running":
            return

        def body(tx):
            if self.xs.read("control/shutdown", tx) != "suspend":
                return False, None
            self.xs.write("control/shutdown", "", tx)
            return True, "suspend"
        try:
            cmd = self.xs.transaction(body)
        except XsError:
            return
        if cmd is None:
            self.counters["requests_gone"] += 1
            log.info("dom%d: the suspend request was withdrawn before it was looked at", self.domid)
            return
        self.counters["acks"] += 1
        self.counters["requests"] += 1
        self.dispatch(cmd)

    def after_resume(self, cancelled):
        self._look_pending = False
        super().after_resume(cancelled)


class RereadsAfterResume(Guest):
    """Linux PV that re-reads ``control/shutdown`` after *every* resume.

    ``linux-pv`` models upstream Linux: only a real (``fast=0``) resume
    re-registers its xenstore watches (``xs_resume()``), whose initial event
    makes it re-read the node; a cancelled (``fast=1``) resume
    (``xs_suspend_cancel()``) does not, so a ``suspend`` left in the node then
    waits for the node's next change.  This guest re-reads it after a cancelled
    resume too (other kernels, or a watch event that was queued while it was
    suspended): a ``suspend`` still pending there makes it suspend again.
    Otherwise exactly ``linux-pv``."""
    name = "rereads_after_resume"

    def after_resume(self, cancelled):
        super().after_resume(cancelled)
        if cancelled and self.xenstore_client:
            self.counters["rereads"] += 1
            self.loop.call_soon(self.on_shutdown_watch, "control/shutdown")


# Values a hostile guest can put in device/suspend/event-channel.
HOSTILE_EVTCHN = {
    "garbage": "12abc\x01",           # atoi() -> 12
    "nonnumeric": "abc",              # atoi() -> 0
    "negative": "-5",
    "huge": "4294967297",             # 2**32 + 1: wraps to 1 as uint32
    "overflow": "9" * 40,
    "stale": "4000",                  # no such port
    "foreign": None,                  # a real unbound port, remote != dom0
    "none": "",
}


class Hostile(Guest):
    """A guest doing everything wrong.  params:

    * ``evtchn``: a key of HOSTILE_EVTCHN or a literal string for
      device/suspend/event-channel (default "garbage")
    * ``rewrite``: after acknowledging, write "suspend" back into
      control/shutdown this many times, ``rewrite_interval_ms`` apart
      (default 3, 20 ms; only while quiescing)
    * ``flood``: number of nodes written under ~/data/flood/ when a request
      arrives (default 200; capped by the 1000-node guest quota)
    * ``suspend``: whether it then suspends normally (default true)
    """
    name = "hostile"

    def boot_extra(self):
        ev = self.params.get("evtchn", "garbage")
        if ev in HOSTILE_EVTCHN:
            val = HOSTILE_EVTCHN[ev]
            if val is None:
                other = self.params.get("foreign_domid", self.domid)
                val = str(self.hyp.evtchn_alloc_unbound(self.dom, int(other)))
        else:
            val = str(ev)
        self.evtchn_value = val
        self.xs.write("device/suspend/event-channel", val)

    def on_suspend_request(self):
        for i in range(int(self.params.get("flood", 200))):
            try:
                self.xs.write("data/flood/%d" % i, "x" * 64)
                self.counters["flood_writes"] += 1
            except XsError:
                self.counters["flood_refused"] += 1
                break
        n = int(self.params.get("rewrite", 3))
        iv = float(self.params.get("rewrite_interval_ms", 20)) / 1000.0
        for k in range(n):
            self.later(iv * (k + 1), self._rewrite)
        if self.params.get("suspend", True) in (True, "true", "yes", 1, "1"):
            self.begin_quiesce(self.quiesce_delay(), self.finish_suspend)
        else:
            self.state = "quiescing"
            self.busy = False

    def _rewrite(self):
        if self.state != "quiescing":
            return
        try:
            self.xs.write("control/shutdown", "suspend")
            self.counters["rewrites"] += 1
        except XsError:
            pass


BEHAVIOURS = {cls.name: cls for cls in (
    LinuxPV, LinuxPVH, HvmPV, HvmNoPV, HvmS3, XenLinux, Windows, Slow, Unresponsive,
    AckNoSuspend, CrashOnSuspend, PoweroffOnSuspend, DestroyOnSuspend, Hostile,
    LateSuspender, LateSuspenderEvtchn, AckIfStillSuspend, RereadsAfterResume)}
