# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A small simulated dom0 for unit tests: fake xenctrl, evtchn and xenstore objects with the
same interface as the real wrappers, a fake clock, and guests whose behaviour is scripted.

Time only moves when the engine waits (FakeWait), so timeouts of 60 s cost nothing.
"""

import errno
import heapq
import itertools
import time
import uuid as uuid_module
from collections import deque

from ansible_collections.xen.suspend.plugins.module_utils._backends import Backends
from ansible_collections.xen.suspend.plugins.module_utils._domain_state import (
    DOMINF_BLOCKED, DOMINF_DYING, DOMINF_HVM_GUEST, DOMINF_PAUSED, DOMINF_SHUTDOWN,
    DOMINF_XS_DOMAIN, SHUTDOWN_SUSPEND, DomainInfo)
from ansible_collections.xen.suspend.plugins.module_utils._errors import (
    DomainBusy, XenCallError, XenstoreError)
from ansible_collections.xen.suspend.plugins.module_utils._ledger import Ledger
from ansible_collections.xen.suspend.plugins.module_utils._suspend_lock import SuspendLocks
from ansible_collections.xen.suspend.plugins.module_utils._xenstore import Outcome


class FakeClock(object):
    def __init__(self, start=1000.0):
        self.now = start

    def __call__(self):
        return self.now


class FakeDomain(object):
    """A guest. ``behaviour`` scripts how it reacts to control/shutdown = suspend:

    ack            acknowledge ("" + watch event) after ack_delay, suspend suspend_delay later
    ack_remove     acknowledge by removing the node (old Windows PV drivers)
    ack_silent     acknowledge without any watch event reaching us, then suspend
    ignore         never acknowledge
    ack_no_suspend acknowledge, never suspend (freezer failure)
    ack_crash      acknowledge, then crash
    ack_vanish     acknowledge, then get destroyed
    With ``evtchn_port`` set, a notification on the bound port suspends it after suspend_delay.
    """

    def __init__(self, world, domid, name, hvm=False, dtype=None, callback_irq=0, s_state=0,
                 behaviour="ack", ack_delay=0.03, suspend_delay=0.02, evtchn_port=None,
                 evtchn_value=None, paused=False, xs_domain=False, uuid=None):
        self.world = world
        self.domid = domid
        self.name = name
        self.hvm = hvm
        self.dtype = dtype or ("hvm" if hvm else "pv")
        self.callback_irq = callback_irq
        self.s_state = s_state
        self.behaviour = behaviour
        self.ack_delay = ack_delay
        self.suspend_delay = suspend_delay
        self.evtchn_port = evtchn_port
        self.paused = paused
        self.xs_domain = xs_domain
        if uuid is None:
            uuid = str(uuid_module.UUID(int=(0xABCD << 96) | domid)) if domid else \
                "00000000-0000-0000-0000-000000000000"
        self.uuid = uuid
        self.shutdown_code = None
        # grows whenever the guest runs again (a resume): what ledger evidence relies on
        self.cpu_time_ns = 10 ** 9
        self.dying = False
        self.destroyed = False
        self.subscribed_port = 0
        self.requests = 0
        self.notifications = 0
        self.resumes = []
        base = b"/local/domain/%d" % domid
        self.control_path = base + b"/control/shutdown"
        store = world.xenstore
        store.nodes[base + b"/name"] = name.encode()
        if domid:
            store.nodes[self.control_path] = b""
            if evtchn_value is not None:
                store.nodes[base + b"/device/suspend/event-channel"] = evtchn_value
            elif evtchn_port is not None:
                store.nodes[base + b"/device/suspend/event-channel"] = b"%d" % evtchn_port
            else:
                store.nodes[base + b"/device/suspend/event-channel"] = b""
            if hvm:
                store.nodes[b"/libxl/%d/type" % domid] = self.dtype.encode()

    # -- what the hypervisor reports ----------------------------------------------------------

    @property
    def flags(self):
        flags = DOMINF_BLOCKED
        if self.hvm:
            flags |= DOMINF_HVM_GUEST
        if self.paused:
            flags |= DOMINF_PAUSED
        if self.xs_domain:
            flags |= DOMINF_XS_DOMAIN
        if self.dying:
            flags |= DOMINF_DYING
        if self.shutdown_code is not None:
            flags |= DOMINF_SHUTDOWN | (self.shutdown_code << 16)
        else:
            flags |= 0xFF << 16  # no code latched
        return flags

    def info(self):
        return DomainInfo(self.domid, self.flags, self.uuid, cpu_time=self.cpu_time_ns,
                          tot_pages=1024, max_pages=1024, online_vcpus=1)

    @property
    def suspended(self):
        return self.shutdown_code == SHUTDOWN_SUSPEND

    # -- guest behaviour ----------------------------------------------------------------------

    def on_suspend_request(self):
        self.requests += 1
        behaviour = self.behaviour
        if behaviour == "ignore":
            return
        self.world.schedule(self.ack_delay, self._acknowledge)

    def _acknowledge(self):
        store = self.world.xenstore
        if self.behaviour == "ack_remove":
            store.guest_rm(self.control_path)
        else:
            store.guest_write(self.control_path, b"", fire=self.behaviour != "ack_silent")
        then = {
            "ack": self.suspend_now, "ack_remove": self.suspend_now, "ack_silent": self.suspend_now,
            "ack_crash": lambda: self.world.domain_shutdown(self, 3),
            "ack_vanish": self.destroy,
        }.get(self.behaviour)
        if then is not None:
            self.world.schedule(self.suspend_delay, then)

    def on_evtchn_notify(self):
        self.notifications += 1
        self.world.schedule(self.suspend_delay, self.suspend_now)

    def suspend_now(self):
        if self.shutdown_code is None and not self.destroyed:
            self.world.domain_shutdown(self, SHUTDOWN_SUSPEND)

    def destroy(self):
        self.destroyed = True
        self.world.fire_release()


class World(object):
    """Hypervisor + xenstored + guests, driven by a fake clock."""

    def __init__(self, release_events=True):
        self.clock = FakeClock()
        # wall time (ledger timestamps) moves with the fake clock, starting at the real now
        self.wall_base = time.time() - self.clock.now
        self._events = []
        self._seq = itertools.count()
        self.domains = {}
        self.release_events = release_events
        self.xenstore = FakeXenstore(self)
        self.xenctrl = FakeXenCtrl(self)
        self.evtchn = FakeEvtchn(self)
        self.log = []
        self.add_domain(0, "Domain-0")

    def add_domain(self, domid, name, **kwargs):
        domain = FakeDomain(self, domid, name, **kwargs)
        self.domains[domid] = domain
        return domain

    def schedule(self, delay, action):
        heapq.heappush(self._events, (self.clock.now + delay, next(self._seq), action))

    def next_event_time(self):
        return self._events[0][0] if self._events else None

    def run_due(self):
        while self._events and self._events[0][0] <= self.clock.now:
            _when, _seq, action = heapq.heappop(self._events)
            action()

    def domain_shutdown(self, domain, code):
        if domain.shutdown_code is not None or domain.destroyed:
            return
        domain.shutdown_code = code
        self.log.append((self.clock.now, "shutdown", domain.domid, code))
        if code == SHUTDOWN_SUSPEND and domain.subscribed_port:
            # Xen signals the subscribed port instead of VIRQ_DOM_EXC: no @releaseDomain.
            local = self.evtchn.local_for(domain.domid, domain.subscribed_port)
            if local is not None:
                self.evtchn.deliver(local)
            return
        self.fire_release()

    def fire_release(self):
        if self.release_events:
            self.xenstore.fire_special(b"@releaseDomain")

    def on_toolstack_write(self, path, value):
        for domain in self.domains.values():
            if path == domain.control_path and value == b"suspend":
                domain.on_suspend_request()

    def backends(self, tmp_path, locks=None, ledger=None):
        run_dir = tmp_path / "run-xen"
        run_dir.mkdir(exist_ok=True)
        return Backends(
            xenctrl=self.xenctrl,
            xenstore=self.xenstore,
            locks=locks or SuspendLocks(str(run_dir)),
            ledger=ledger or Ledger(str(tmp_path / "ledger" / "ledger.json")),
            evtchn_factory=lambda: self.evtchn,
            clock=self.clock,
            wall_clock=lambda: self.wall_base + self.clock.now,
            cpu_clock=lambda: 0.0,
            wait=FakeWait(self),
        )


class FakeWait(object):
    """The engine's sleep: returns ready fds, else advances the clock to the next event."""

    def __init__(self, world):
        self.world = world
        self.calls = 0

    def _ready(self, fds):
        ready = set()
        if FakeXenstore.FD in fds and self.world.xenstore.queue:
            ready.add(FakeXenstore.FD)
        if FakeEvtchn.FD in fds and self.world.evtchn.ready:
            ready.add(FakeEvtchn.FD)
        return ready

    def __call__(self, fds, timeout):
        self.calls += 1
        if self.calls > 200000:
            raise AssertionError("the engine loop does not make progress")
        world = self.world
        world.run_due()
        ready = self._ready(fds)
        if ready:
            return ready
        target = world.clock.now + max(0.0, timeout)
        upcoming = world.next_event_time()
        if upcoming is not None and upcoming < target:
            target = max(upcoming, world.clock.now)
        world.clock.now = target
        world.run_due()
        return self._ready(fds)


class FakeXenCtrl(object):
    version = (4, 17)

    def __init__(self, world):
        self.world = world
        self.calls = 0
        self.resumed = []
        self.shutdowns = []
        self.subscriptions = []
        self.fail = {}

    def _domain(self, domid, call):
        domain = self.world.domains.get(domid)
        if domain is None or domain.destroyed:
            raise XenCallError(call, errno=errno.ESRCH, domid=domid)
        return domain

    def _maybe_fail(self, call, domid):
        if call in self.fail:
            raise XenCallError(call, errno=self.fail[call], domid=domid)

    def domain_info(self, domid):
        self.calls += 1
        self._maybe_fail("xc_domain_getinfolist", domid)
        domain = self.world.domains.get(domid)
        if domain is None or domain.destroyed:
            return None
        return domain.info()

    def domain_infos(self, domids):
        self.calls += 1
        self._maybe_fail("xc_domain_getinfolist", None)
        result = {}
        for domid in domids:
            domain = self.world.domains.get(domid)
            result[domid] = None if domain is None or domain.destroyed else domain.info()
        return result

    def list_domains(self):
        self.calls += 1
        return [domain.info() for _domid, domain in sorted(self.world.domains.items())
                if not domain.destroyed]

    def hvm_param(self, domid, param):
        self.calls += 1
        domain = self._domain(domid, "xc_hvm_param_get")
        if not domain.hvm:
            raise XenCallError("xc_hvm_param_get", errno=errno.EINVAL, domid=domid)
        return {0: domain.callback_irq, 14: domain.s_state}.get(param, 0)

    def shutdown(self, domid, reason):
        self.calls += 1
        self._maybe_fail("xc_domain_shutdown", domid)
        domain = self._domain(domid, "xc_domain_shutdown")
        self.shutdowns.append((domid, reason))
        self.world.schedule(0.002, lambda: self.world.domain_shutdown(domain, reason))

    def subscribe_for_suspend(self, domid, port):
        self.calls += 1
        self._maybe_fail("xc_domain_subscribe_for_suspend", domid)
        domain = self._domain(domid, "xc_domain_subscribe_for_suspend")
        domain.subscribed_port = port
        self.subscriptions.append((domid, port))

    def resume(self, domid, fast):
        self.calls += 1
        self._maybe_fail("xc_domain_resume", domid)
        domain = self._domain(domid, "xc_domain_resume")
        if not domain.suspended:
            raise XenCallError("xc_domain_resume", errno=errno.EINVAL, domid=domid)
        domain.shutdown_code = None
        domain.cpu_time_ns += 10 ** 6
        domain.resumes.append(fast)
        self.resumed.append((domid, fast))

    def close(self):
        pass


class FakeEvtchn(object):
    FD = 901

    def __init__(self, world):
        self.world = world
        self.bindings = {}
        self._next_local = 40
        self.ready = deque()
        self.masked = set()
        self.pending_bits = set()
        self.notified = []
        self.unbound = []
        self.calls = 0

    def fileno(self):
        return self.FD

    def bind_interdomain(self, domid, remote_port):
        self.calls += 1
        domain = self.world.domains.get(domid)
        if (domain is None or domain.evtchn_port != remote_port
                or self.local_for(domid, remote_port) is not None):
            raise XenCallError("xenevtchn_bind_interdomain", errno=errno.EINVAL, domid=domid)
        local = self._next_local
        self._next_local += 1
        self.bindings[local] = (domid, remote_port)
        self.deliver(local)  # Xen marks a freshly bound port pending
        return local

    def local_for(self, domid, remote_port):
        for local, binding in self.bindings.items():
            if binding == (domid, remote_port):
                return local
        return None

    def deliver(self, local):
        if local not in self.bindings:
            return
        if local in self.masked:
            self.pending_bits.add(local)
        else:
            self.masked.add(local)
            self.ready.append(local)

    def pending(self):
        self.calls += 1
        return self.ready.popleft() if self.ready else None

    def unmask(self, port, domid=None):
        self.calls += 1
        self.masked.discard(port)
        if port in self.pending_bits:
            self.pending_bits.discard(port)
            self.deliver(port)

    def notify(self, port, domid=None):
        self.calls += 1
        domid, _remote = self.bindings[port]
        self.notified.append((self.world.clock.now, domid, port))
        self.world.domains[domid].on_evtchn_notify()

    def unbind(self, port, domid=None):
        self.calls += 1
        if port not in self.bindings:
            raise XenCallError("xenevtchn_unbind", errno=errno.EINVAL, domid=domid)
        del self.bindings[port]
        self.masked.discard(port)
        self.pending_bits.discard(port)
        self.ready = deque(p for p in self.ready if p != port)
        self.unbound.append(port)

    def close(self):
        pass


class _FakeTxView(object):
    def __init__(self, store, tx):
        self.store = store
        self.tx = tx

    def read(self, path):
        return self.store.read(path, tx_id=self.tx)

    def write(self, path, value):
        self.store.write(path, value, tx_id=self.tx)

    def set_perms(self, path, perms):
        self.store.set_perms(path, perms, tx_id=self.tx)


class FakeXenstore(object):
    FD = 902

    def __init__(self, world):
        self.world = world
        self.nodes = {}
        self.watches = set()
        self.queue = []
        self.round_trips = 0
        self.perms = {}  # path -> permissions set by us (owner first)
        self.reconnects = 0  # as XenstoreClient: restarts of xenstored survived
        self.ops = []
        self.fail = {}
        self.fail_paths = {}
        self.commit_conflicts = 0
        self.transactions = 0
        self.resumed = []
        self.max_watches = 0
        self._tx = {}
        self._tx_ids = itertools.count(1)
        self.on_write = None
        self.ack_before_fire = False

    def _trip(self, op, path=None):
        self.round_trips += 1
        self.ops.append((op, path))
        failure = self.fail.get(op) or self.fail_paths.get((op, path))
        if failure is not None:
            raise failure

    # -- toolstack side -----------------------------------------------------------------------

    def read(self, path, tx_id=0):
        self._trip("read", path)
        if tx_id and path in self._tx[tx_id]:
            return self._tx[tx_id][path]
        return self.nodes.get(path)

    def write(self, path, value, tx_id=0):
        self._trip("write", path)
        if tx_id:
            self._tx[tx_id][path] = value
            return
        if self.on_write is not None:
            self.on_write(path, value)
        self.nodes[path] = value
        if self.ack_before_fire:
            # oxenstored: the reply goes out first, the watch events right behind it
            self.world.schedule(0.0, lambda: self.fire(path))
        else:
            self.fire(path)
        self.world.on_toolstack_write(path, value)

    def watch(self, path, token):
        self._trip("watch", path)
        self.watches.add((path, token))
        self.max_watches = max(self.max_watches, len(self.watches))
        self.queue.append((path, token))  # fires once on registration

    def unwatch(self, path, token):
        self._trip("unwatch", path)
        if (path, token) not in self.watches:
            raise XenstoreError("ENOENT", op="unwatch", errno=errno.ENOENT)
        self.watches.discard((path, token))

    def transaction_start(self):
        self._trip("transaction_start")
        self.transactions += 1
        tx = next(self._tx_ids)
        self._tx[tx] = {}
        return tx

    def transaction_end(self, tx_id, commit=True):
        self._trip("transaction_end")
        writes = self._tx.pop(tx_id)
        if not commit:
            return True
        if self.commit_conflicts > 0:
            self.commit_conflicts -= 1
            return False
        for path, value in writes.items():
            self.nodes[path] = value
            self.fire(path)
        return True

    def run_transaction(self, body, attempts=16):
        for _attempt in range(attempts):
            tx = self.transaction_start()
            commit, value = body(_FakeTxView(self, tx))
            if not commit:
                self.transaction_end(tx, commit=False)
                return value
            if self.transaction_end(tx, commit=True):
                return value
        raise XenstoreError("conflicts", errno=errno.EAGAIN)

    def set_perms(self, path, perms, tx_id=0):
        self._trip("set_perms", path)
        self.perms[path] = list(perms)

    def directory(self, path, tx_id=0):
        """Children of ``path`` from the leaf nodes kept, None when nothing is there."""
        self._trip("directory", path)
        prefix = path + b"/"
        children = sorted(set(key[len(prefix):].split(b"/")[0] for key in self.nodes
                              if key.startswith(prefix)))
        if not children and path not in self.nodes:
            return None
        return children

    def get_perms(self, path, tx_id=0):
        """As XenstoreClient.get_perms: what set_perms set, else libxl's defaults (a guest owns
        its control/shutdown, dom0 owns the rest)."""
        self._trip("get_perms", path)
        if path not in self.nodes:
            return None
        if path in self.perms:
            return [(perm[:1].decode(), int(perm[1:])) for perm in self.perms[path]]
        for domain in self.world.domains.values():
            if path == domain.control_path:
                return [("n", domain.domid)]
        return [("n", 0)]

    def directory_many(self, paths):
        return [self._outcome(self.directory, path) for path in paths]

    def get_perms_many(self, paths):
        return [self._outcome(self.get_perms, path) for path in paths]

    def resume_domain(self, domid):
        self._trip("resume", domid)
        self.resumed.append(domid)

    # -- pipelined batches: the single calls in order, each outcome kept (as XenstoreClient) --

    def read_many(self, paths):
        return [self._outcome(self.read, path) for path in paths]

    def write_many(self, items):
        return [self._outcome(self.write, path, value) for path, value in items]

    def watch_many(self, items):
        return [self._outcome(self.watch, path, token) for path, token in items]

    def unwatch_many(self, items):
        return [self._outcome(self.unwatch, path, token) for path, token in items]

    @staticmethod
    def _outcome(call, *args):
        try:
            return Outcome(call(*args))
        except XenstoreError as exc:
            return Outcome(error=exc)

    def events_nowait(self):
        events, self.queue = self.queue, []
        return events

    def fileno(self):
        return self.FD

    def close(self):
        pass

    # -- xenstored / guest side ---------------------------------------------------------------

    def fire(self, path):
        for wpath, token in sorted(self.watches):
            if path == wpath or path.startswith(wpath + b"/"):
                self.queue.append((path, token))

    def fire_special(self, name):
        for wpath, token in sorted(self.watches):
            if wpath == name:
                self.queue.append((name, token))

    def guest_write(self, path, value, fire=True):
        self.nodes[path] = value
        if fire:
            self.fire(path)

    def guest_rm(self, path):
        self.nodes.pop(path, None)
        self.fire(path)


class FakeLocks(object):
    """Lock set where some domids are held by "another process"."""

    def __init__(self, busy=()):
        self.busy = set(busy)
        self.held = set()
        self.max_held = 0

    def check_run_dir(self):
        pass

    def acquire(self, domid):
        if domid in self.busy:
            raise DomainBusy("another process holds the lock", domid=domid)
        self.held.add(domid)
        self.max_held = max(self.max_held, len(self.held))
        locks = self

        class _Lock(object):
            def release(self):
                locks.held.discard(domid)

        return _Lock()


def run_suspend(world, tmp_path, targets=("*",), locks=None, **options):
    """Select ``targets`` in ``world`` and run the suspend engine on them: (report, backends)."""
    from ansible_collections.xen.suspend.plugins.module_utils._inventory import list_records
    from ansible_collections.xen.suspend.plugins.module_utils._suspend_engine import SuspendEngine
    from ansible_collections.xen.suspend.plugins.module_utils._targets import (
        parse_selectors, select_targets)
    backends = world.backends(tmp_path, locks=locks)
    records = list_records(world.xenctrl, world.xenstore)
    selection = select_targets(records, parse_selectors(list(targets)))
    return SuspendEngine(backends, **options).run(selection.targets), backends


class FakeMonitors(object):
    """xl's per-domain monitors, with the interface of _xl_monitor.XlMonitors: one per domain,
    frozen or running; ``state`` of a pid never found is "gone"."""

    def __init__(self):
        self.states = {}
        self.events = []

    def find(self, domid, name):
        pid = 1000 + domid
        self.states.setdefault(pid, "running")
        return {"toolstack": "xl", "pid": pid, "start_time": 7, "state": self.states[pid]}

    def state(self, monitor):
        return self.states.get(monitor["pid"], "gone")

    def freeze(self, monitor):
        if monitor["pid"] not in self.states:
            return False
        self.states[monitor["pid"]] = "frozen"
        self.events.append(("freeze", monitor["pid"]))
        return True

    def thaw(self, monitor):
        if monitor["pid"] not in self.states:
            return False
        self.states[monitor["pid"]] = "running"
        self.events.append(("thaw", monitor["pid"]))
        return True

    def frozen(self):
        return sorted(pid for pid, state in self.states.items() if state == "frozen")
