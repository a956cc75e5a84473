"""In-process tests of the store (tree, permissions, transactions), the watch
manager and the hypervisor model."""

import errno

import pytest

import xensim_testlib  # noqa: F401  (puts xensim on sys.path)
from xensim import xenconst as xc
from xensim.hypervisor import HvError, Hypervisor
from xensim.loop import Loop
from xensim.store import DOM0, Ident, Store, parse_perms
from xensim.watches import WatchManager
from xensim.xswire import XsError


def P(*items):
    return parse_perms([i.encode() for i in items])


@pytest.fixture
def st():
    s = Store()
    s.write(DOM0, "/local/domain/5", b"")
    s.set_perms(DOM0, "/local/domain/5", P("n0", "r5"))
    s.write(DOM0, "/local/domain/5/data", b"")
    s.set_perms(DOM0, "/local/domain/5/data", P("n5"))
    s.write(DOM0, "/local/domain/5/control/shutdown", b"")
    s.set_perms(DOM0, "/local/domain/5/control", P("n0", "r5"))
    s.set_perms(DOM0, "/local/domain/5/control/shutdown", P("n5"))
    return s


def errno_of(fn, *a):
    with pytest.raises(XsError) as ei:
        fn(*a)
    return ei.value.errno


def test_permission_rules(st):
    g5, g6 = Ident(5), Ident(6)
    assert st.read(g5, "/local/domain/5/data") == b""
    assert errno_of(st.read, g6, "/local/domain/5/data") == errno.EACCES
    assert errno_of(st.write, g5, "/local/domain/5/name", b"x") == errno.EACCES  # ~ is read-only
    st.write(g5, "/local/domain/5/data/a/b", b"1")
    # created by the guest: inherits the parent's perms, guest is the owner
    assert st.get_perms(DOM0, "/local/domain/5/data/a") == (("n", 5),)
    # an unprivileged owner may not give the node away
    assert errno_of(st.set_perms, g5, "/local/domain/5/data/a", P("n6")) == errno.EPERM
    st.set_perms(g5, "/local/domain/5/data/a", P("n5", "r6"))
    assert st.read(g6, "/local/domain/5/data/a") == b""
    assert errno_of(st.write, g6, "/local/domain/5/data/a", b"x") == errno.EACCES
    # "b" grants both, default letter applies to everybody else
    st.set_perms(DOM0, "/local/domain/5/data/a", P("r5", "b6"))
    st.write(g6, "/local/domain/5/data/a", b"x")
    assert st.read(Ident(7), "/local/domain/5/data/a") == b"x"
    # write access is not enough to change permissions: one must own the node
    assert errno_of(st.set_perms, g6, "/local/domain/5/data/a", P("r5", "b6", "b7")) == errno.EACCES
    # the guest may remove its own node inside a read-only parent (Windows ack)
    st.rm(g5, "/local/domain/5/control/shutdown")
    assert not st.exists("/local/domain/5/control/shutdown")
    # recreated by dom0 it inherits ~/control's perms and is no longer the guest's
    st.write(DOM0, "/local/domain/5/control/shutdown", b"suspend")
    assert errno_of(st.rm, g5, "/local/domain/5/control/shutdown") == errno.EACCES


def test_rm_semantics(st):
    st.rm(DOM0, "/local/domain/5/nonexistent")   # absent, parent exists: fine
    assert errno_of(st.rm, DOM0, "/nope/child") == errno.ENOENT
    assert errno_of(st.rm, DOM0, "/") == errno.EINVAL


def test_node_quota(st):
    st.node_quota = 10
    g5 = Ident(5)
    with pytest.raises(XsError) as ei:
        for i in range(20):
            st.write(g5, "/local/domain/5/data/n%d" % i, b"x")
    assert ei.value.errno == errno.ENOSPC
    st.write(DOM0, "/local/domain/5/data/dom0-is-exempt", b"x")


def test_transactions(st):
    t = st.tx_start(DOM0, None)
    assert st.read(DOM0, "/local/domain/5/control/shutdown", t) == b""
    st.write(DOM0, "/local/domain/5/control/shutdown", b"", t)
    st.write(DOM0, "/local/domain/5/data/x", b"1", t)
    assert not st.exists("/local/domain/5/data/x")          # isolated
    assert st.read(DOM0, "/local/domain/5/data/x", t) == b"1"  # read own writes
    st.write(DOM0, "/local/domain/5/control/shutdown", b"suspend")  # conflicting
    assert st.tx_commit(t) is False
    assert not st.exists("/local/domain/5/data/x")

    # unrelated concurrent change (a value below a node we did not touch): commits
    t = st.tx_start(DOM0, None)
    st.write(DOM0, "/local/domain/5/data/y", b"1", t)
    st.write(DOM0, "/local/domain/5/control/shutdown", b"other")
    assert st.tx_commit(t) is True
    assert st.read(DOM0, "/local/domain/5/data/y") == b"1"

    # two transactions adding children to the same parent conflict
    t1, t2 = st.tx_start(DOM0, None), st.tx_start(DOM0, None)
    st.write(DOM0, "/local/domain/5/data/c1", b"", t1)
    st.write(DOM0, "/local/domain/5/data/c2", b"", t2)
    assert st.tx_commit(t1) is True
    assert st.tx_commit(t2) is False

    # a read of an absent node conflicts with its creation
    t = st.tx_start(DOM0, None)
    assert errno_of(st.read, DOM0, "/local/domain/5/data/late", t) == errno.ENOENT
    st.write(DOM0, "/local/domain/5/data/late", b"")
    assert st.tx_commit(t) is False


class _Conn:
    def __init__(self, ident):
        self.ident = ident
        self.got = []

    def deliver_watch(self, w, path):
        self.got.append((path, w.token))


def test_watch_routing(st):
    wm = WatchManager()
    st.listener = wm.fire_changes
    dom0, g5, g6 = _Conn(DOM0), _Conn(Ident(5)), _Conn(Ident(6))
    wm.add(dom0, "/local/domain/5", "/local/domain/5", b"t0")
    wm.add(g5, "control/shutdown", "/local/domain/5/control/shutdown", b"t5", "/local/domain/5/")
    wm.add(g6, "/local/domain/5/data", "/local/domain/5/data", b"t6")
    with pytest.raises(XsError):
        wm.add(dom0, "/local/domain/5", "/local/domain/5", b"t0")
    st.write(DOM0, "/local/domain/5/control/shutdown", b"suspend")
    assert dom0.got == [("/local/domain/5/control/shutdown", b"t0")]
    assert g5.got == [("control/shutdown", b"t5")]      # relative watch -> relative path
    st.write(DOM0, "/local/domain/5/data/z", b"")
    assert g6.got == []                                  # cannot read it: no event
    # removing a subtree fires watches registered below it, with their own path
    g5.got.clear()
    st.rm(DOM0, "/local/domain/5/control")
    assert g5.got == [("control/shutdown", b"t5")]
    assert dom0.got[-1] == ("/local/domain/5/control", b"t0")
    # transactions fire on commit only
    n = len(dom0.got)
    t = st.tx_start(DOM0, None)
    st.write(DOM0, "/local/domain/5/q", b"", t)
    assert len(dom0.got) == n
    assert st.tx_commit(t)
    assert dom0.got[-1] == ("/local/domain/5/q", b"t0")


def test_hypervisor_shutdown_latch_and_resume():
    loop = Loop()
    hv = Hypervisor(loop)
    excs = []
    hv.dom_exc_listeners.append(lambda: excs.append(1))
    d = hv.create_domain("g", "pv")
    hv.remote_shutdown(d.domid, xc.SHUTDOWN_suspend)
    hv.remote_shutdown(d.domid, xc.SHUTDOWN_crash)          # first code wins
    assert d.shut_down and d.shutdown_code == xc.SHUTDOWN_suspend
    assert len(excs) == 1
    with pytest.raises(HvError) as ei:
        hv.unpause(d.domid)
    assert ei.value.errno == errno.EINVAL
    hv.xc_domain_resume(d.domid, 1)
    assert not d.shut_down and d.shutdown_code is None
    with pytest.raises(HvError) as ei:
        hv.xc_domain_resume(d.domid, 1)                     # not suspended
    assert ei.value.errno == errno.EINVAL
    flags = d.flags()
    assert (flags >> 16) & 0xFF == 255 and not flags & xc.XEN_DOMINF_shutdown


def test_hypervisor_event_channels():
    loop = Loop()
    hv = Hypervisor(loop)
    d = hv.create_domain("g", "pv")

    class H:
        got = []

        def deliver(self, p):
            self.got.append(p)

    h = H()
    gp = hv.evtchn_alloc_unbound(d, 0)
    bad = hv.evtchn_alloc_unbound(d, 9)
    with pytest.raises(HvError) as ei:
        hv.evtchn_bind_interdomain(hv.dom0, d.domid, bad, h)   # not for dom0
    assert ei.value.errno == errno.EINVAL
    with pytest.raises(HvError) as ei:
        hv.evtchn_bind_interdomain(hv.dom0, 999, gp, h)
    assert ei.value.errno == errno.ESRCH
    lp = hv.evtchn_bind_interdomain(hv.dom0, d.domid, gp, h)
    assert h.got == [lp]                     # new local port is pending at once
    # masked after delivery: a second event waits for the unmask
    hv.evtchn_send(d, gp)
    assert h.got == [lp]
    hv.evtchn_unmask(hv.dom0, lp)
    assert h.got == [lp, lp]
    # subscription: suspend signals the channel and raises no VIRQ_DOM_EXC
    excs = []
    hv.dom_exc_listeners.append(lambda: excs.append(1))
    hv.evtchn_unmask(hv.dom0, lp)
    hv.subscribe(d.domid, gp)
    hv.domain_shutdown(d, xc.SHUTDOWN_suspend)
    assert h.got == [lp, lp, lp] and excs == []
    # closing dom0's end: the guest port reverts to unbound; a stale
    # subscription then swallows the suspend notification silently
    hv.xc_domain_resume(d.domid, 1)
    hv.evtchn_close(hv.dom0, lp)
    assert d.ports[gp].state == "unbound" and d.ports[gp].remote_domid == 0
    hv.domain_shutdown(d, xc.SHUTDOWN_suspend)
    assert h.got == [lp, lp, lp] and excs == []
