"""Every guest behaviour, observed the way a toolstack observes it: xenstore
(raw wire client) plus the shim libraries (cffi, in process)."""

import errno
import os
import select
import time

import pytest

from xensim_testlib import RawXs, Xc, suspended, wait_until
from xensim import xswire as w

Q = 250  # quiesce delay (ms) for the fleet; jitter kept small for timing checks

FLEET = {
    "quiesce_ms": Q, "jitter_ms": 10, "heartbeat_ms": 40, "dying_ms": 100, "seed": 7,
    "guests": [
        {"behaviour": "linux-pv", "name": "lin"},
        {"behaviour": "linux-pvh", "name": "pvh"},
        {"behaviour": "hvm-pv", "name": "hvmpv"},
        {"behaviour": "hvm-nopv", "name": "nopv"},
        {"behaviour": "hvm-s3", "name": "s3"},
        {"behaviour": "xenlinux", "name": "xl"},
        {"behaviour": "windows", "name": "win"},
        {"behaviour": "slow", "name": "slow", "quiesce_ms": 400, "jitter_ms": 0,
         "params": {"ack_delay_ms": 300, "ack_jitter_ms": 0}},
        {"behaviour": "unresponsive", "name": "unresp"},
        {"behaviour": "ack-no-suspend", "name": "nosusp"},
        {"behaviour": "crash-on-suspend", "name": "crash"},
        {"behaviour": "poweroff-on-suspend", "name": "poweroff"},
        {"behaviour": "destroy-on-suspend", "name": "destroy"},
        {"behaviour": "hostile", "name": "h-garbage",
         "params": {"evtchn": "garbage", "rewrite": 3, "flood": 1500}},
        {"behaviour": "hostile", "name": "h-negative", "params": {"evtchn": "negative"}},
        {"behaviour": "hostile", "name": "h-huge", "params": {"evtchn": "huge"}},
        {"behaviour": "hostile", "name": "h-nonnumeric", "params": {"evtchn": "nonnumeric"}},
        {"behaviour": "hostile", "name": "h-foreign", "params": {"evtchn": "foreign"}},
        {"behaviour": "hostile", "name": "h-stale", "params": {"evtchn": "stale"}},
        {"behaviour": "linux-pv", "name": "lin-pause"},
        {"behaviour": "xenlinux", "name": "xl-stale"},
        {"behaviour": "late_suspender", "name": "late", "params": {"suspend_after_ms": 700}},
        {"behaviour": "late_suspender_evtchn", "name": "late-ev", "params": {"suspend_after_ms": 700}},
        {"behaviour": "ack_if_still_suspend", "name": "still", "params": {"ack_delay_ms": 300}},
        {"behaviour": "ack_if_still_suspend", "name": "still-ext", "params": {"ack_delay_ms": 1500}},
        {"behaviour": "linux-pv", "name": "lin-stale"},
        {"behaviour": "rereads_after_resume", "name": "reread"},
        {"behaviour": "linux-pv", "name": "ext"},
        {"behaviour": "hvm-nopv", "name": "ext-nopv"},
    ],
}


@pytest.fixture(scope="module")
def ids(module_sim):
    return {d["name"]: d["domid"] for d in module_sim.domains()}


@pytest.fixture
def xs(module_sim):
    c = RawXs(module_sim.xs_path)
    yield c
    c.close()


@pytest.fixture
def xc(module_sim):
    x = Xc(module_sim)
    yield x
    x.close()


def ctl_path(domid):
    return b"/local/domain/%d/control/shutdown" % domid


def ctl_value(xs, domid):
    op, p = xs.request(w.XS_READ, ctl_path(domid) + b"\0")
    return None if op == w.XS_ERROR else p


def heartbeat(xs, domid):
    return int(xs.read(b"/local/domain/%d/data/heartbeat" % domid))


def heart_beating(xs, domid, window=0.2):
    """Whether the heartbeat moved within `window`: for asserting that a guest is frozen."""
    a = heartbeat(xs, domid)
    time.sleep(window)
    return heartbeat(xs, domid) > a


def beats_again(xs, domid, timeout=3.0):
    """Whether the heartbeat moves within `timeout`, polled: for asserting that a guest runs.
    A fixed short window fails a running guest whose simulator thread a loaded host delayed."""
    a = heartbeat(xs, domid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.05)
        if heartbeat(xs, domid) > a:
            return True
    return False


def watch_release(xs):
    xs.watch(b"@releaseDomain", b"rel")
    xs.drain()


def release_event(xs, timeout):
    return xs.wait_event(timeout, match=lambda e: e[1] == b"rel")


def full_resume(xc, xs, domid, fast=1):
    xc.resume(domid, fast)
    xs.ok(w.XS_RESUME, b"%d\0" % domid)


def test_linux_pv_cycle(module_sim, ids, xs, xc):
    d = ids["lin"]
    assert xs.read(b"/local/domain/%d/control/feature-suspend" % d) == b"1"
    assert beats_again(xs, d)
    watch_release(xs)
    t0 = time.monotonic()
    xs.write(ctl_path(d), b"suspend")
    wait_until(lambda: ctl_value(xs, d) == b"", timeout=2, msg="ack")
    assert not xc.info(d)["shutdown"]                  # still quiescing
    wait_until(lambda: suspended(xc, d), timeout=3, msg="suspend")
    assert time.monotonic() - t0 >= (Q - 15) / 1000.0
    assert release_event(xs, 2) == (b"@releaseDomain", b"rel")
    assert not heart_beating(xs, d)                    # frozen while suspended
    full_resume(xc, xs, d, fast=1)
    assert beats_again(xs, d)
    g = module_sim.dom(d)
    assert g["state"] == "running" and g["last_resume"] == "cancelled"
    assert g["counters"]["suspends"] == 1 and g["counters"]["acks"] == 1
    # again, resuming with fast=0: the guest believes it is a new domain and
    # re-registers its xenstore watch; a third request still works
    xs.write(ctl_path(d), b"suspend")
    wait_until(lambda: suspended(xc, d), timeout=3)
    full_resume(xc, xs, d, fast=0)
    assert module_sim.dom(d)["last_resume"] == "new-domain"
    xs.write(ctl_path(d), b"suspend")
    wait_until(lambda: suspended(xc, d), timeout=3)
    full_resume(xc, xs, d)
    assert module_sim.dom(d)["counters"]["suspends"] == 3
    # unknown commands are not acknowledged by Linux
    xs.write(ctl_path(d), b"bogus")
    time.sleep(0.15)
    assert ctl_value(xs, d) == b"bogus"
    xs.write(ctl_path(d), b"")


def test_domain_types_and_callback_irq(ids, xs, xc):
    assert xs.read(b"/libxl/%d/type" % ids["pvh"]) == b"pvh"
    assert xs.read(b"/libxl/%d/type" % ids["hvmpv"]) == b"hvm"
    assert not xc.info(ids["lin"])["hvm"]
    assert xc.info(ids["pvh"])["hvm"] and xc.info(ids["hvmpv"])["hvm"]
    assert xc.hvm_param(ids["pvh"], 0) != 0
    assert xc.hvm_param(ids["hvmpv"], 0) != 0
    assert xc.hvm_param(ids["nopv"], 0) == 0
    assert xc.hvm_param(ids["s3"], 14) == 3
    assert xc.hvm_param(ids["hvmpv"], 14) == 0
    with pytest.raises(OSError) as ei:
        xc.hvm_param(ids["lin"], 0)
    assert ei.value.errno == errno.EINVAL
    for name in ("pvh", "hvmpv"):
        d = ids[name]
        xs.write(ctl_path(d), b"suspend")
        wait_until(lambda: suspended(xc, d), timeout=3)
        full_resume(xc, xs, d)


def test_hvm_without_pv_drivers(module_sim, ids, xs, xc):
    d = ids["nopv"]
    assert xs.read(b"/local/domain/%d/control/feature-suspend" % d) == b""
    watch_release(xs)
    xs.write(ctl_path(d), b"suspend")
    time.sleep(0.4)
    assert ctl_value(xs, d) == b"suspend"               # nobody home
    assert not xc.info(d)["shutdown"] and beats_again(xs, d)
    xs.write(ctl_path(d), b"")
    xc.shutdown(d, 2)                                    # the direct path works
    assert suspended(xc, d)
    assert release_event(xs, 2) is not None
    assert not heart_beating(xs, d)
    full_resume(xc, xs, d)
    assert beats_again(xs, d)
    assert module_sim.dom(d)["counters"].get("resumes_unnoticed") == 1


def test_hvm_s3_direct_path(module_sim, ids, xs, xc):
    d = ids["s3"]
    xs.write(ctl_path(d), b"suspend")
    time.sleep(0.3)
    assert ctl_value(xs, d) == b"suspend"
    xs.write(ctl_path(d), b"")
    xc.shutdown(d, 2)
    assert suspended(xc, d)
    full_resume(xc, xs, d)
    assert module_sim.dom(d)["state"] == "asleep"


def test_xenlinux_event_channel(module_sim, ids, xs, xc):
    d = ids["xl"]
    port = int(xs.read(b"/local/domain/%d/device/suspend/event-channel" % d))
    ev, ffi = xc.ev, xc.ffi
    h = xc.evtchn_open()
    fd = ev.xenevtchn_fd(h)
    try:
        watch_release(xs)
        local = ev.xenevtchn_bind_interdomain(h, d, port)
        assert local > 0
        assert select.select([fd], [], [], 1)[0] and ev.xenevtchn_pending(h) == local
        ev.xenevtchn_unmask(h, local)
        xc.subscribe(d, port)
        assert ev.xenevtchn_notify(h, local) == 0
        assert select.select([fd], [], [], 3)[0], "no suspend notification"
        assert ev.xenevtchn_pending(h) == local
        ev.xenevtchn_unmask(h, local)
        assert suspended(xc, d)
        assert ctl_value(xs, d) == b""                  # xenstore untouched
        # subscribed: Xen signalled the channel instead of VIRQ_DOM_EXC
        assert release_event(xs, 0.4) is None
        xc.resume(d, 1)
        assert module_sim.dom(d)["last_resume"] == "cancelled"
        # cancelled resume keeps the channel
        assert int(xs.read(b"/local/domain/%d/device/suspend/event-channel" % d)) == port
        assert ev.xenevtchn_unbind(h, local) == 0
        xc.subscribe(d, 0)
        xs.ok(w.XS_RESUME, b"%d\0" % d)

        # a real (fast=0) resume makes it publish a fresh channel
        local = ev.xenevtchn_bind_interdomain(h, d, port)
        assert select.select([fd], [], [], 1)[0] and ev.xenevtchn_pending(h) == local
        ev.xenevtchn_unmask(h, local)
        xc.subscribe(d, port)
        ev.xenevtchn_notify(h, local)
        wait_until(lambda: suspended(xc, d), timeout=3)
        ev.xenevtchn_unbind(h, local)
        xc.subscribe(d, 0)
        evpath = b"/local/domain/%d/device/suspend/event-channel" % d
        xs.watch(evpath, b"evch")
        xs.drain()
        full_resume(xc, xs, d, fast=0)
        assert xs.wait_event(2, match=lambda e: e[1] == b"evch") == (evpath, b"evch")
        xs.ok(w.XS_UNWATCH, evpath + b"\0evch\0")
        newport = int(xs.read(b"/local/domain/%d/device/suspend/event-channel" % d))
        local = ev.xenevtchn_bind_interdomain(h, d, newport)
        assert local > 0
        ev.xenevtchn_unbind(h, local)
    finally:
        ev.xenevtchn_close(h)
    # XenLinux also speaks xenstore and acknowledges *every* command
    xs.write(ctl_path(d), b"bogus")
    wait_until(lambda: ctl_value(xs, d) == b"", timeout=2)
    time.sleep(Q / 1000.0 + 0.1)
    assert not xc.info(d)["shutdown"]
    xs.write(ctl_path(d), b"suspend")
    wait_until(lambda: suspended(xc, d), timeout=3)
    full_resume(xc, xs, d)


def test_windows_acks_by_deleting(module_sim, ids, xs, xc):
    d = ids["win"]
    xs.write(ctl_path(d), b"suspend")
    wait_until(lambda: ctl_value(xs, d) is None, timeout=2, msg="node removed")
    wait_until(lambda: suspended(xc, d), timeout=3)
    full_resume(xc, xs, d)
    # the node we now recreate is dom0-owned, read-only to the guest: the
    # driver cannot remove it again and the request goes unacknowledged
    xs.write(ctl_path(d), b"suspend")
    assert xs.ok(w.XS_GET_PERMS, ctl_path(d) + b"\0") == b"n0\0r%d\0" % d
    time.sleep(0.4)
    assert ctl_value(xs, d) == b"suspend"
    assert module_sim.dom(d)["counters"]["ack_failed"] >= 1
    xs.write(ctl_path(d), b"")


def test_slow_guest(ids, xs, xc):
    d = ids["slow"]
    t0 = time.monotonic()
    xs.write(ctl_path(d), b"suspend")
    time.sleep(0.15)
    assert ctl_value(xs, d) == b"suspend"
    wait_until(lambda: ctl_value(xs, d) == b"", timeout=2)
    t_ack = time.monotonic() - t0
    assert t_ack >= 0.28
    assert not xc.info(d)["shutdown"]
    wait_until(lambda: suspended(xc, d), timeout=3)
    assert time.monotonic() - t0 >= 0.68
    full_resume(xc, xs, d)


def test_unresponsive_guest_and_libxl_cancel(module_sim, ids, xs, xc):
    d = ids["unresp"]
    assert xs.read(b"/local/domain/%d/control/feature-suspend" % d) == b"1"
    xs.write(ctl_path(d), b"suspend")
    time.sleep(0.4)
    assert ctl_value(xs, d) == b"suspend"
    assert beats_again(xs, d) and not xc.info(d)["shutdown"]
    # libxl's cancel: in a transaction, write "" only if still "suspend"
    while True:
        tx = xs.tx_start()
        assert xs.read(ctl_path(d), tx) == b"suspend"
        xs.write(ctl_path(d), b"", tx)
        if xs.tx_end(tx)[0] == w.XS_TRANSACTION_END:
            break
    assert ctl_value(xs, d) == b""
    assert module_sim.dom(d)["counters"]["watch_events"] >= 2


def test_ack_but_never_suspend(module_sim, ids, xs, xc):
    d = ids["nosusp"]
    xs.write(ctl_path(d), b"suspend")
    wait_until(lambda: ctl_value(xs, d) == b"", timeout=2)
    time.sleep(Q / 1000.0 + 0.2)
    assert not xc.info(d)["shutdown"]
    assert beats_again(xs, d)
    g = module_sim.dom(d)
    assert g["counters"]["freeze_failed"] == 1 and g["state"] == "running"
    with pytest.raises(OSError) as ei:
        xc.resume(d, 1)                                 # must not be resumed
    assert ei.value.errno == errno.EINVAL


@pytest.mark.parametrize("name,reason", [("crash", 3), ("poweroff", 0)])
def test_shutdown_for_another_reason(ids, xs, xc, name, reason):
    d = ids[name]
    watch_release(xs)
    xs.write(ctl_path(d), b"suspend")
    wait_until(lambda: ctl_value(xs, d) == b"", timeout=2)
    wait_until(lambda: xc.info(d)["shutdown"], timeout=3)
    assert xc.info(d)["reason"] == reason
    assert release_event(xs, 2) is not None
    assert not heart_beating(xs, d)
    with pytest.raises(OSError) as ei:
        xc.resume(d, 1)
    assert ei.value.errno == errno.EINVAL


def test_destroyed_while_waiting(module_sim, ids, xs, xc):
    d = ids["destroy"]
    watch_release(xs)
    xs.watch(ctl_path(d), b"ctl")
    xs.drain()
    xs.write(ctl_path(d), b"suspend")
    wait_until(lambda: xc.info(d) is None or xc.info(d)["dying"], timeout=3)
    assert release_event(xs, 2) is not None
    assert ctl_value(xs, d) is None                     # libxl removed ~
    assert xs.ok(w.XS_IS_DOMAIN_INTRODUCED, b"%d\0" % d) == b"F\0"
    wait_until(lambda: xc.info(d) is None, timeout=2, msg="domain gone")
    with pytest.raises(OSError) as ei:
        xc.shutdown(d, 2)
    assert ei.value.errno == errno.ESRCH


def test_hostile_event_channel_values(module_sim, ids, xs, xc):
    def val(name):
        return xs.read(b"/local/domain/%d/device/suspend/event-channel" % ids[name])
    assert val("h-garbage") == b"12abc\x01"
    assert val("h-negative") == b"-5"
    assert val("h-huge") == b"4294967297"
    assert val("h-nonnumeric") == b"abc"
    assert val("h-stale") == b"4000"
    foreign = int(val("h-foreign"))
    h = xc.evtchn_open()
    try:
        for name, port in (("h-garbage", 12), ("h-stale", 4000), ("h-foreign", foreign),
                           ("h-huge", 1), ("h-nonnumeric", 0)):
            r = xc.ev.xenevtchn_bind_interdomain(h, ids[name], port)
            assert r == -1 and xc.ffi.errno == errno.EINVAL, name
    finally:
        xc.ev.xenevtchn_close(h)


def test_hostile_rewrite_and_flood(module_sim, ids, xs, xc):
    d = ids["h-garbage"]
    xs.watch(ctl_path(d), b"ctl")
    xs.drain()
    xs.write(ctl_path(d), b"suspend")
    values = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not suspended(xc, d):
        if xs.wait_event(0.05, match=lambda e: e[1] == b"ctl"):
            values.append(ctl_value(xs, d))
    assert suspended(xc, d)
    assert b"" in values
    assert values[values.index(b""):].count(b"suspend") >= 1   # rewritten after the ack
    g = module_sim.dom(d)
    assert g["counters"]["rewrites"] == 3
    assert g["counters"]["flood_refused"] == 1                  # hit the node quota
    n = len(xs.ok(w.XS_DIRECTORY, b"/local/domain/%d/data/flood\0" % d).split(b"\0")) - 1
    assert 900 < n < 1000
    full_resume(xc, xs, d)
    xs.ok(w.XS_UNWATCH, ctl_path(d) + b"\0ctl\0")


def test_pause_defers_quiesce_and_stops_heartbeat(module_sim, ids, xs, xc):
    d = ids["lin-pause"]
    xs.write(ctl_path(d), b"suspend")
    wait_until(lambda: ctl_value(xs, d) == b"", timeout=2)
    xc.pause(d)
    assert xc.info(d)["paused"]
    time.sleep(Q / 1000.0 + 0.15)
    assert not xc.info(d)["shutdown"]
    assert not heart_beating(xs, d, 0.15)
    xc.unpause(d)
    wait_until(lambda: suspended(xc, d), timeout=2)
    full_resume(xc, xs, d)
    assert beats_again(xs, d)
    # a request made while paused is handled once the guest runs again
    xc.pause(d)
    xs.write(ctl_path(d), b"suspend")
    time.sleep(0.2)
    assert ctl_value(xs, d) == b"suspend"
    xc.unpause(d)
    wait_until(lambda: ctl_value(xs, d) == b"", timeout=2)
    wait_until(lambda: suspended(xc, d), timeout=2)
    full_resume(xc, xs, d)


def test_stale_subscription_suppresses_release(module_sim, ids, xs, xc):
    d = ids["xl-stale"]
    port = int(xs.read(b"/local/domain/%d/device/suspend/event-channel" % d))
    h = xc.evtchn_open()
    try:
        local = xc.ev.xenevtchn_bind_interdomain(h, d, port)
        xc.subscribe(d, port)
        xc.ev.xenevtchn_unbind(h, local)       # dom0 end gone, subscription stays
    finally:
        xc.ev.xenevtchn_close(h)
    watch_release(xs)
    xs.write(ctl_path(d), b"suspend")
    wait_until(lambda: suspended(xc, d), timeout=3)
    assert release_event(xs, 0.4) is None      # swallowed: no VIRQ_DOM_EXC
    full_resume(xc, xs, d)
    xc.subscribe(d, 0)                         # clear it
    xs.write(ctl_path(d), b"suspend")
    wait_until(lambda: suspended(xc, d), timeout=3)
    assert release_event(xs, 2) is not None
    full_resume(xc, xs, d)


# -- behaviours for the "never lose a guest" tests ----------------------------

def lock_files(module_sim):
    rundir = module_sim.env["XENSIM_RUN_DIR"]
    return [f for f in os.listdir(rundir) if f.endswith(".lock")] if os.path.isdir(rundir) else []


def test_late_suspender_acks_at_once_and_suspends_late(module_sim, ids, xs, xc):
    d = ids["late"]
    t0 = time.monotonic()
    xs.write(ctl_path(d), b"suspend")
    wait_until(lambda: ctl_value(xs, d) == b"", timeout=0.5, msg="prompt ack")
    time.sleep(Q / 1000.0 + 0.15)                      # the group's quiesce delay is not used
    assert not xc.info(d)["shutdown"] and module_sim.dom(d)["state"] == "quiescing"
    wait_until(lambda: suspended(xc, d), timeout=3, msg="late suspend")
    assert time.monotonic() - t0 >= 0.68
    g = module_sim.dom(d)
    assert g["counters"]["acks"] == 1 and g["counters"]["late_suspends"] == 1
    full_resume(xc, xs, d)
    assert beats_again(xs, d)


def test_late_suspender_evtchn_suspends_late_after_notification(module_sim, ids, xs, xc):
    d = ids["late-ev"]
    port = int(xs.read(b"/local/domain/%d/device/suspend/event-channel" % d))
    ev = xc.ev
    h = xc.evtchn_open()
    fd = ev.xenevtchn_fd(h)
    try:
        local = ev.xenevtchn_bind_interdomain(h, d, port)
        assert select.select([fd], [], [], 1)[0] and ev.xenevtchn_pending(h) == local
        ev.xenevtchn_unmask(h, local)
        xc.subscribe(d, port)
        t0 = time.monotonic()
        assert ev.xenevtchn_notify(h, local) == 0
        assert not select.select([fd], [], [], Q / 1000.0 + 0.15)[0]   # not yet
        assert not xc.info(d)["shutdown"] and module_sim.dom(d)["state"] == "quiescing"
        assert select.select([fd], [], [], 3)[0], "no suspend notification"
        assert time.monotonic() - t0 >= 0.68
        assert ev.xenevtchn_pending(h) == local
        ev.xenevtchn_unmask(h, local)
        assert suspended(xc, d) and ctl_value(xs, d) == b""
        assert module_sim.dom(d)["counters"]["late_suspends"] == 1
        ev.xenevtchn_unbind(h, local)
        xc.subscribe(d, 0)
    finally:
        ev.xenevtchn_close(h)
    full_resume(xc, xs, d)
    assert module_sim.dom(d)["last_resume"] == "cancelled"


def test_ack_if_still_suspend(module_sim, ids, xs, xc):
    d = ids["still"]
    # a request withdrawn before the guest looks: nothing happens
    xs.write(ctl_path(d), b"suspend")
    time.sleep(0.1)
    xs.write(ctl_path(d), b"")
    time.sleep(0.5)
    assert ctl_value(xs, d) == b"" and not xc.info(d)["shutdown"]
    assert beats_again(xs, d)
    g = module_sim.dom(d)
    assert g["counters"]["requests_gone"] == 1 and not g["counters"].get("acks")
    assert g["state"] == "running"
    # a request still there when it looks: acknowledged (only then) and suspended
    for cycle in (1, 2):                               # and the same again after a resume
        t0 = time.monotonic()
        xs.write(ctl_path(d), b"suspend")
        time.sleep(0.15)
        assert ctl_value(xs, d) == b"suspend"
        wait_until(lambda: ctl_value(xs, d) == b"", timeout=2, msg="ack")
        assert time.monotonic() - t0 >= 0.28
        wait_until(lambda: suspended(xc, d), timeout=3)
        full_resume(xc, xs, d)
        assert module_sim.dom(d)["counters"]["acks"] == cycle
    # a request removed before the guest looks: nothing happens either
    xs.write(ctl_path(d), b"suspend")
    time.sleep(0.1)
    xs.ok(w.XS_RM, ctl_path(d) + b"\0")
    time.sleep(0.5)
    assert not xc.info(d)["shutdown"] and beats_again(xs, d)
    assert module_sim.dom(d)["counters"]["requests_gone"] == 2


def test_external_suspend_by_another_toolstack(module_sim, ids, xs, xc):
    d = ids["ext"]
    watch_release(xs)
    assert module_sim.admin("external_suspend", domid=d)["how"] == "guest"
    assert suspended(xc, d)
    assert ctl_value(xs, d) == b""                     # control/shutdown untouched
    assert lock_files(module_sim) == []                # and no lock taken
    assert release_event(xs, 2) is not None
    g = module_sim.dom(d)
    assert g["state"] == "suspended" and g["counters"]["external_suspends"] == 1
    assert not g["counters"].get("requests")
    with pytest.raises(RuntimeError):                  # not twice
        module_sim.admin("external_suspend", domid=d)
    r = module_sim.admin("external_resume", domid=d)
    assert r["fast"] is True and not xc.info(d)["shutdown"]
    wait_until(lambda: module_sim.dom(d)["last_resume"] == "cancelled", timeout=2)
    assert beats_again(xs, d)
    # XS_RESUME re-armed the @releaseDomain latch: the next suspend is seen
    xs.drain()
    module_sim.admin("external_suspend", domid=d, how="direct")
    assert suspended(xc, d) and release_event(xs, 2) is not None
    full_resume(xc, xs, d)
    assert module_sim.dom(d)["counters"]["resumes_unnoticed"] == 1
    # HVM without PV drivers: the direct path, the guest never notices
    n = ids["ext-nopv"]
    assert module_sim.admin("external_suspend", domid=n)["how"] == "direct"
    assert suspended(xc, n)
    with pytest.raises(RuntimeError):
        module_sim.admin("external_suspend", domid=0)
    full_resume(xc, xs, n)
    assert module_sim.dom(n)["counters"]["resumes_unnoticed"] == 1


def test_external_suspend_while_a_request_waits_unanswered(module_sim, ids, xs, xc):
    """Our request sits in control/shutdown when another toolstack suspends the
    guest; we withdraw it while the guest is suspended: once resumed, the guest
    finds nothing to answer and keeps running."""
    d = ids["still-ext"]
    xs.write(ctl_path(d), b"suspend")
    # suspended well within the guest's 1.5 s before it looks (300 ms was too tight for a
    # loaded host: the guest looked and answered first)
    time.sleep(0.1)
    module_sim.admin("external_suspend", domid=d)
    assert suspended(xc, d)
    assert not module_sim.dom(d)["counters"].get("acks"), "the guest answered before the suspend"
    time.sleep(1.7)                                    # its look waits while it is suspended
    assert ctl_value(xs, d) == b"suspend"
    xs.write(ctl_path(d), b"")
    module_sim.admin("external_resume", domid=d)
    time.sleep(0.5)
    assert not xc.info(d)["shutdown"] and beats_again(xs, d)
    g = module_sim.dom(d)
    assert g["counters"]["requests_gone"] == 1 and not g["counters"].get("acks")


@pytest.mark.parametrize("name,suspends_again", [("lin-stale", False), ("reread", True)])
def test_stale_request_after_a_cancelled_resume(module_sim, ids, xs, xc, name, suspends_again):
    """A "suspend" written while the guest is already quiescing is ignored and
    stays in the node.  After a cancelled (fast=1) resume upstream Linux does not
    re-read it (xs_suspend_cancel() keeps the watches); rereads_after_resume does
    and suspends again.  After a real (fast=0) resume both re-register their
    watch, re-read the node and suspend again."""
    d = ids[name]
    xs.write(ctl_path(d), b"suspend")
    wait_until(lambda: ctl_value(xs, d) == b"", timeout=2)
    xs.write(ctl_path(d), b"suspend")                  # while quiescing: ignored
    wait_until(lambda: suspended(xc, d), timeout=3)
    assert ctl_value(xs, d) == b"suspend"
    full_resume(xc, xs, d, fast=1)
    time.sleep(Q / 1000.0 + 0.2)
    assert bool(xc.info(d)["shutdown"]) is suspends_again
    if suspends_again:
        wait_until(lambda: suspended(xc, d), timeout=2)
        assert module_sim.dom(d)["counters"]["rereads"] >= 1
        assert ctl_value(xs, d) == b""
        full_resume(xc, xs, d, fast=1)
        xs.write(ctl_path(d), b"suspend")
        wait_until(lambda: ctl_value(xs, d) == b"", timeout=2)
        xs.write(ctl_path(d), b"suspend")
        wait_until(lambda: suspended(xc, d), timeout=3)
    else:
        assert ctl_value(xs, d) == b"suspend" and beats_again(xs, d)
        assert module_sim.dom(d)["counters"]["suspends"] == 1
        # the node's next change is what it reacts to; make it suspend and leave a stale one
        xs.write(ctl_path(d), b"suspend")
        wait_until(lambda: ctl_value(xs, d) == b"", timeout=2)
        xs.write(ctl_path(d), b"suspend")
        wait_until(lambda: suspended(xc, d), timeout=3)
    # a real resume: the re-registered watch fires and the stale request is acted on
    full_resume(xc, xs, d, fast=0)
    wait_until(lambda: ctl_value(xs, d) == b"", timeout=2)
    wait_until(lambda: suspended(xc, d), timeout=3)
    full_resume(xc, xs, d, fast=1)
    assert beats_again(xs, d)
