"""What a resume costs in the simulator (issue 13 item 4): xc_domain_resume's latency for its
caller (overlapping between callers) and Xen's domctl lock (serialised), and a guest's own
resume before it is back (no heartbeat meanwhile; its watch events wait for it)."""

import errno
import heapq
import itertools

import pytest

from xensim_testlib import RawXs, Xc, wait_until
from xensim import xenconst as xcc
from xensim.hypervisor import HvError, Hypervisor


class VirtualLoop(object):
    """The simulator loop's timer interface on virtual time."""

    def __init__(self):
        self.t = 0.0
        self._timers = []
        self._seq = itertools.count()

    def now(self):
        return self.t

    def call_later(self, delay, cb, *args):
        heapq.heappush(self._timers, (self.t + max(0.0, delay), next(self._seq), cb, args))

    def call_soon(self, cb, *args):
        self.call_later(0.0, cb, *args)

    def run(self):
        while self._timers:
            self.t, _seq, cb, args = heapq.heappop(self._timers)
            cb(*args)


def suspended_domains(hyp, count):
    doms = [hyp.create_domain("d%d" % i) for i in range(count)]
    for d in doms:
        hyp.domain_shutdown(d, xcc.SHUTDOWN_suspend)
    return doms


def test_callers_overlap_and_only_the_domctl_lock_serialises():
    loop = VirtualLoop()
    hyp = Hypervisor(loop, resume_hypercall_s=(0.040, 0.0), domctl_lock_s=0.002)
    doms = suspended_domains(hyp, 3)
    returned = []
    for d in doms:
        hyp.xc_domain_resume_call(d.domid, 1, lambda err, d=d: returned.append(
            (round(loop.now(), 6), d.domid, err, d.shut_down)))
    assert all(d.shut_down for d in doms)  # nothing happens at the call itself
    loop.run()
    # three callers at once: 40 ms each, overlapping; the domctls one after the other
    assert returned == [(0.042, doms[0].domid, None, False), (0.044, doms[1].domid, None, False),
                        (0.046, doms[2].domid, None, False)]


def test_a_resume_of_a_running_domain_fails_when_it_returns():
    loop = VirtualLoop()
    hyp = Hypervisor(loop, resume_hypercall_s=(0.010, 0.0))
    d = hyp.create_domain("running")
    returned = []
    hyp.xc_domain_resume_call(d.domid, 1, lambda err: returned.append((loop.now(), err)))
    loop.run()
    (when, err), = returned
    assert when == pytest.approx(0.010) and isinstance(err, HvError) and err.errno == errno.EINVAL


def test_without_cost_the_call_returns_at_once():
    loop = VirtualLoop()
    hyp = Hypervisor(loop)
    d, = suspended_domains(hyp, 1)
    returned = []
    hyp.xc_domain_resume_call(d.domid, 1, lambda err: returned.append((err, d.shut_down)))
    assert returned == [(None, False)]


FLEET = {"heartbeat_ms": 40, "seed": 3, "resume_hypercall_ms": 20,
         "guests": [{"behaviour": "linux-pv", "name": "slowback", "resume_ms": 400},
                    {"behaviour": "linux-pv", "name": "quick"}]}


def test_a_guest_is_back_only_after_its_own_resume(make_sim):
    sim = make_sim(FLEET)
    ids = dict((d["name"], d["domid"]) for d in sim.domains())
    xc = Xc(sim)
    try:
        for name in ("slowback", "quick"):
            sim.admin("external_suspend", domid=ids[name], how="guest")
        xc.resume(ids["slowback"], 1)
        xc.resume(ids["quick"], 1)
        info = xc.info(ids["slowback"])
        assert not info["shutdown"]  # Xen runs it again at once ...
        slow = sim.dom(ids["slowback"])
        assert slow["state"] == "resuming"  # ... but the guest is not back yet
        beat = slow["heartbeat"]
        assert sim.dom(ids["quick"])["state"] == "running"
        # a request that arrives meanwhile waits for the guest, it is not lost
        xs = RawXs(sim.env["XENSTORED_PATH"])
        try:
            xs.write(b"/local/domain/%d/control/shutdown" % ids["slowback"], b"poweroff")
        finally:
            xs.close()
        assert sim.dom(ids["slowback"])["heartbeat"] == beat
        wait_until(lambda: sim.dom(ids["slowback"])["state"] != "resuming", timeout=5.0)
        after = sim.dom(ids["slowback"])
        assert after["heartbeat"] > beat  # its first heartbeat: it is back
        wait_until(lambda: sim.dom(ids["slowback"])["shutdown_code"] == xcc.SHUTDOWN_poweroff,
                   timeout=5.0, msg="the request that came while it resumed is handled")
    finally:
        xc.close()
