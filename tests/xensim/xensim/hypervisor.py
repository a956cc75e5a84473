"""Hypervisor model: domains, shutdown/resume, pause, HVM params, event channels.

Semantics follow xen/common/{domain,domctl,event_channel}.c @ 4.17:

* ``domain_shutdown``: the first shutdown code wins; the domain is marked
  shutting down, every vCPU pauses (instantly here) and the shutdown is
  finalised (``XEN_DOMINF_shutdown``).  On finalisation, a suspend of a
  domain with a suspend subscription (``XEN_DOMCTL_subscribe``) is signalled
  with ``evtchn_send`` *from the guest port*, and VIRQ_DOM_EXC is not raised;
  every other case raises VIRQ_DOM_EXC (xenstored then scans domains).
* ``XEN_DOMCTL_resumedomain`` clears the shutdown state and unpauses the
  vCPUs paused for shutdown, nothing else.  ``xc_domain_resume(fast=1)``
  additionally requires shutdown(suspend) (libxc's check) and makes the
  guest's suspend hypercall return 1 ("cancelled").
* what a resume costs (``resume_hypercall_s``, ``domctl_lock_s``; zero by
  default, the fleet spec sets them): ``xc_domain_resume`` returns to its
  caller a drawn latency after the call (on the real bed the module's
  ``resume`` phase takes 12-58 ms), and the domain is resumed just before it
  returns.  That latency does *not* serialise between callers: it is the
  caller's own path (privcmd ioctl, libxc's hypercall-buffer bounces, the
  domain_pause() in the vCPU context domctls of modify_returncode waiting
  for the vCPUs to be descheduled, the scheduler), and a caller with its own
  handle (or thread) overlaps with the others.  What serialises is the
  hypervisor's own part: every domctl runs under Xen's global ``domctl_lock``
  (xen/common/domctl.c, ``domctl_lock_acquire``), held for ``domctl_lock_s``
  per resume -- short on real hardware (microseconds).  One simulator
  connection (one xc_interface) still has one call in flight at a time, as a
  thread blocked in the ioctl has.
* event channels: ``alloc_unbound`` (remote domid recorded),
  ``bind_interdomain`` (remote must be unbound for the caller; the new local
  port is always set pending), ``send`` (silently dropped from an unbound
  port), ``close`` (the peer reverts to unbound for the closer).  Dom0 ports
  belong to a shim handle; a pending, unmasked dom0 port is delivered to its
  handle and masked, as the Linux evtchn driver does.
"""

import bisect
import errno
import logging
import uuid as uuidlib

from . import xenconst as xc

log = logging.getLogger("xensim.hypervisor")


class HvError(Exception):
    def __init__(self, code, msg=""):
        super().__init__(code, msg or errno.errorcode.get(code, str(code)))
        self.errno = code


class Port:
    __slots__ = ("port", "state", "remote_domid", "remote_port", "pending", "masked", "handle", "virq")

    def __init__(self, port):
        self.port = port
        self.state = "unbound"
        self.remote_domid = 0
        self.remote_port = 0
        self.pending = False
        self.masked = False
        self.handle = None
        self.virq = None


class Domain:
    def __init__(self, domid, name, dtype, uid, memory_mb, vcpus, now):
        self.domid = domid
        self.name = name
        self.type = dtype            # "pv" | "pvh" | "hvm"
        self.uuid = uid              # uuid.UUID
        self.max_pages = memory_mb * 256
        self.tot_pages = memory_mb * 256
        self.vcpus = vcpus
        self.dying = False
        self.shutting_down = False
        self.shut_down = False
        self.shutdown_code = None
        self.pause_count = 0
        self.hvm_params = {}
        self.suspend_evtchn = 0
        self.ports = {}
        self.guest = None
        self.created = now
        self.cpu_ns = 0
        self.run_since = now

    @property
    def hvm(self):
        return self.type != "pv"

    @property
    def runnable(self):
        return not (self.dying or self.shutting_down or self.pause_count)

    def flags(self):
        f = 0
        if self.dying:
            f |= xc.XEN_DOMINF_dying
        if self.hvm:
            f |= xc.XEN_DOMINF_hvm_guest | xc.XEN_DOMINF_hap
        if self.shut_down:
            f |= xc.XEN_DOMINF_shutdown
        if self.pause_count:
            f |= xc.XEN_DOMINF_paused
        if self.runnable:
            busy = self.domid == 0 or (self.guest is not None and getattr(self.guest, "busy", False))
            f |= xc.XEN_DOMINF_running if busy else xc.XEN_DOMINF_blocked
        code = 255 if self.shutdown_code is None else self.shutdown_code
        return f | ((code & xc.XEN_DOMINF_shutdownmask) << xc.XEN_DOMINF_shutdownshift)

    def state_letters(self):
        """Like the State column of ``xl list``."""
        f = self.flags()
        crashed = self.shut_down and self.shutdown_code == xc.SHUTDOWN_crash
        return "".join((
            "r" if f & xc.XEN_DOMINF_running else "-",
            "b" if f & xc.XEN_DOMINF_blocked else "-",
            "p" if f & xc.XEN_DOMINF_paused else "-",
            "s" if self.shut_down and not crashed else "-",
            "c" if crashed else "-",
            "d" if self.dying else "-",
        ))


class Hypervisor:
    def __init__(self, loop, dying_s=0.05, resume_hypercall_s=(0.0, 0.0), domctl_lock_s=0.0,
                 rng=None):
        self.loop = loop
        self.dying_s = dying_s
        self.resume_hypercall_s = resume_hypercall_s  # (mean, jitter) seconds
        self.domctl_lock_s = domctl_lock_s
        self.rng = rng
        self._domctl_free_at = 0.0
        self.domains = {}
        self._sorted = []
        self._rover = 0
        self.dom_exc_listeners = []   # called on VIRQ_DOM_EXC
        self.stats = {"virq_dom_exc": 0, "suspend_evtchn_sends": 0}
        self.dom0 = self._add(Domain(0, "Domain-0", "pv", uuidlib.UUID(int=0), 4096, 2, loop.now()))

    # -- lookup -----------------------------------------------------------
    def _add(self, d):
        self.domains[d.domid] = d
        bisect.insort(self._sorted, d.domid)
        return d

    def get(self, domid):
        d = self.domains.get(domid)
        if d is None:
            raise HvError(errno.ESRCH)
        return d

    def _guest_dom(self, domid):
        """A domain that is the target of a domctl from dom0 (not dom0)."""
        d = self.get(domid)
        if d.domid == 0:
            raise HvError(errno.EINVAL)
        return d

    # -- lifecycle --------------------------------------------------------
    def create_domain(self, name, dtype="pv", memory_mb=1024, vcpus=1, uid=None):
        if dtype not in ("pv", "pvh", "hvm"):
            raise ValueError("bad domain type %r" % dtype)
        for _ in range(xc.DOMID_FIRST_RESERVED):
            self._rover = self._rover + 1 if self._rover + 1 < xc.DOMID_FIRST_RESERVED else 1
            if self._rover not in self.domains:
                break
        else:
            raise HvError(errno.ENOSPC)
        d = Domain(self._rover, name, dtype, uid or uuidlib.uuid4(), memory_mb, vcpus, self.loop.now())
        return self._add(d)

    def destroy_domain(self, domid):
        """XEN_DOMCTL_destroydomain: the domain turns dying at once, its event
        channels close, VIRQ_DOM_EXC fires, and it disappears after
        ``dying_s`` (a zombie reported with XEN_DOMINF_dying meanwhile)."""
        d = self._guest_dom(domid)
        if d.dying:
            return
        self._account(d)
        d.dying = True
        if d.guest is not None:
            d.guest.on_destroy()
        for port in list(d.ports):
            self.evtchn_close(d, port)
        self.virq_dom_exc()
        self.loop.call_later(self.dying_s, self._reap, d)

    def _reap(self, d):
        if self.domains.get(d.domid) is d:
            del self.domains[d.domid]
            self._sorted.remove(d.domid)
            self.virq_dom_exc()

    def virq_dom_exc(self):
        self.stats["virq_dom_exc"] += 1
        for cb in self.dom_exc_listeners:
            cb()

    def _account(self, d):
        now = self.loop.now()
        if d.runnable:
            d.cpu_ns += int((now - d.run_since) * 1e9 * (0.5 if d.domid == 0 else 0.01))
        d.run_since = now

    # -- shutdown / resume ------------------------------------------------
    def domain_shutdown(self, d, reason):
        """domain_shutdown(): used by SCHEDOP_shutdown (guest) and
        SCHEDOP_remote_shutdown (toolstack)."""
        if d.dying:
            return
        self._account(d)
        if d.shutdown_code is None:
            d.shutdown_code = reason
        if d.shutting_down:
            return
        d.shutting_down = True
        # All vCPUs pause at once (no HVM I/O emulation to defer them), so the
        # shutdown is finalised immediately.
        d.shut_down = True
        log.debug("dom%d shut down, code %s", d.domid, d.shutdown_code)
        if d.shutdown_code == xc.SHUTDOWN_suspend and d.suspend_evtchn:
            self.stats["suspend_evtchn_sends"] += 1
            try:
                self.evtchn_send(d, d.suspend_evtchn)
            except HvError:
                pass
        else:
            self.virq_dom_exc()

    def remote_shutdown(self, domid, reason):
        d = self.get(domid)
        if d.domid == 0:
            raise HvError(errno.EINVAL)  # the simulator's dom0 does not shut down
        if reason < 0 or reason > xc.SHUTDOWN_MAX:
            raise HvError(errno.EINVAL)
        self.domain_shutdown(d, reason)

    def resumedomain(self, d):
        """XEN_DOMCTL_resumedomain."""
        self._account(d)
        d.shutting_down = False
        d.shut_down = False
        d.shutdown_code = None

    def xc_domain_resume(self, domid, fast):
        """libxenguest's xc_domain_resume()."""
        d = self._guest_dom(domid)
        if fast:
            if not (d.shut_down and d.shutdown_code == xc.SHUTDOWN_suspend):
                raise HvError(errno.EINVAL, "Dom %d not suspended" % domid)
        self.resumedomain(d)
        if d.guest is not None:
            self.loop.call_soon(d.guest.on_resume, bool(fast))

    def xc_domain_resume_call(self, domid, fast, done):
        """xc_domain_resume as its caller sees it (see the module doc): ``done(None)`` or
        ``done(HvError)`` when the call returns, at once when resuming costs nothing."""
        mean, jitter = self.resume_hypercall_s
        latency = mean
        if jitter and self.rng is not None:
            latency = max(0.0, mean + self.rng.uniform(-jitter, jitter))
        if latency <= 0 and self.domctl_lock_s <= 0:
            self._resume_and_return(domid, fast, done)
            return

        def domctl():
            now = self.loop.now()
            start = max(now, self._domctl_free_at)     # Xen's domctl_lock
            self._domctl_free_at = start + self.domctl_lock_s
            self.loop.call_later(self._domctl_free_at - now, self._resume_and_return,
                                 domid, fast, done)

        self.loop.call_later(latency, domctl)

    def _resume_and_return(self, domid, fast, done):
        try:
            self.xc_domain_resume(domid, fast)
        except HvError as e:
            done(e)
            return
        done(None)

    def pause(self, domid):
        d = self._guest_dom(domid)
        self._account(d)
        d.pause_count += 1

    def unpause(self, domid):
        d = self._guest_dom(domid)
        if not d.pause_count:
            raise HvError(errno.EINVAL)
        self._account(d)
        d.pause_count -= 1
        if not d.pause_count and d.guest is not None:
            self.loop.call_soon(d.guest.on_unpause)

    # -- queries ----------------------------------------------------------
    def domaininfo(self, d):
        self._account(d)
        return xc.pack_domaininfo(
            d.domid, d.flags(), d.tot_pages, d.max_pages, 0x10000 + d.domid * 0x100,
            d.cpu_ns, d.vcpus, d.vcpus - 1, d.uuid.bytes, xc.EMU_FLAGS[d.type])

    def getinfolist(self, first, max_domains):
        out = []
        i = bisect.bisect_left(self._sorted, first)
        for domid in self._sorted[i:i + max_domains]:
            out.append(self.domaininfo(self.domains[domid]))
        return out

    def hvm_param_get(self, domid, param):
        d = self.get(domid)
        if not d.hvm or param >= xc.HVM_NR_PARAMS or param < 0:
            raise HvError(errno.EINVAL)
        return d.hvm_params.get(param, 0)

    def subscribe(self, domid, port):
        """XEN_DOMCTL_subscribe: no validation, last writer wins, 0 = none."""
        self.get(domid).suspend_evtchn = port

    def xs_domain_state(self, domid):
        """What C xenstored learns from getdomaininfo: None if the domain is
        gone, else (dying, shutdown-or-crashed)."""
        d = self.domains.get(domid)
        if d is None:
            return None
        return d.dying, d.shut_down

    # -- event channels ---------------------------------------------------
    def _alloc_port(self, d):
        for p in range(1, xc.EVTCHN_2L_NR_CHANNELS):
            if p not in d.ports:
                ch = Port(p)
                d.ports[p] = ch
                return ch
        raise HvError(errno.ENOSPC)

    def evtchn_alloc_unbound(self, d, remote_domid, handle=None):
        ch = self._alloc_port(d)
        ch.remote_domid = remote_domid
        ch.handle = handle
        return ch.port

    def evtchn_bind_interdomain(self, ld, remote_domid, remote_port, handle=None):
        rd = self.domains.get(remote_domid)
        if rd is None:
            raise HvError(errno.ESRCH)
        rch = rd.ports.get(remote_port)
        if rch is None or rch.state != "unbound" or rch.remote_domid != ld.domid:
            raise HvError(errno.EINVAL)
        lch = self._alloc_port(ld)
        lch.state = rch.state = "interdomain"
        lch.remote_domid, lch.remote_port = rd.domid, rch.port
        rch.remote_domid, rch.remote_port = ld.domid, lch.port
        lch.handle = handle
        # "We may have lost notifications on the remote unbound port."
        self.evtchn_set_pending(ld, lch.port)
        return lch.port

    def evtchn_bind_virq(self, d, virq, handle=None):
        if virq == xc.VIRQ_DOM_EXC and d.domid == 0:
            raise HvError(errno.EEXIST)  # xenstored holds it
        raise HvError(errno.EINVAL)

    def evtchn_send(self, d, port):
        ch = d.ports.get(port)
        if ch is None:
            raise HvError(errno.EINVAL)
        if ch.state == "interdomain":
            rd = self.domains.get(ch.remote_domid)
            if rd is not None:
                self.evtchn_set_pending(rd, ch.remote_port)
        # ECS_UNBOUND: silently dropped.

    def evtchn_close(self, d, port):
        ch = d.ports.pop(port, None)
        if ch is None:
            raise HvError(errno.EINVAL)
        if ch.state == "interdomain":
            rd = self.domains.get(ch.remote_domid)
            rch = rd.ports.get(ch.remote_port) if rd is not None else None
            if rch is not None and rch.state == "interdomain" and rch.remote_domid == d.domid:
                rch.state = "unbound"
                rch.remote_domid = d.domid
                rch.remote_port = 0

    def evtchn_set_pending(self, d, port):
        ch = d.ports.get(port)
        if ch is None:
            return
        if d.domid == 0:
            ch.pending = True
            if not ch.masked:
                self._deliver(ch)
        elif d.guest is not None:
            self.loop.call_soon(d.guest.on_evtchn, port)

    def _deliver(self, ch):
        ch.pending = False
        if ch.handle is not None:
            ch.masked = True
            ch.handle.deliver(ch.port)

    def evtchn_unmask(self, d, port):
        ch = d.ports.get(port)
        if ch is None:
            return
        ch.masked = False
        if ch.pending:
            self._deliver(ch)
