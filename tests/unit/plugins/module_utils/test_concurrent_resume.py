# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Concurrent resume (issue 13 item 1): resume calls in threads with their own handles, XS_RESUME
pipelined, downtime from the ledger's millisecond stamps."""

import errno
import json
import os
import threading
import time

import pytest

from ansible_collections.xen.suspend.plugins.module_utils._errors import XenCallError
from ansible_collections.xen.suspend.plugins.module_utils._inventory import list_records
from ansible_collections.xen.suspend.plugins.module_utils._ledger import utc_timestamp
from ansible_collections.xen.suspend.plugins.module_utils._resume import ResumeEngine, plan_resume
from ansible_collections.xen.suspend.plugins.module_utils._suspend_engine import RELEASE_TOKEN
from ansible_collections.xen.suspend.plugins.module_utils._protocol_requests import ANSWER_WATCH
from ansible_collections.xen.suspend.plugins.module_utils._targets import parse_selectors
from ansible_collections.xen.suspend.plugins.module_utils._xenstore import (
    PIPELINE_DEPTH, XenstoreClient)

from fake_xenstored import RESUME, running_fake_xenstored
from xen_fakes import FakeXenCtrl, World, run_suspend


class ThreadedXenCtrl(FakeXenCtrl):
    """A FakeXenCtrl whose resume calls come through clone()d handles, counting how many are
    in flight at once; ``gate`` (a Barrier) makes every call wait for the others."""

    def __init__(self, world, gate=None, hold=0.0):
        FakeXenCtrl.__init__(self, world)
        self.gate = gate
        self.hold = hold
        self.lock = threading.Lock()
        self.inflight = 0
        self.max_inflight = 0
        self.clones = []
        self.threads = set()
        self.fail_domids = set()

    def clone(self):
        handle = _Handle(self)
        self.clones.append(handle)
        return handle


class _Handle(object):
    def __init__(self, parent):
        self.parent = parent
        self.calls = 0
        self.closed = False

    def resume(self, domid, fast):
        parent = self.parent
        self.calls += 1
        with parent.lock:
            parent.inflight += 1
            parent.max_inflight = max(parent.max_inflight, parent.inflight)
            parent.threads.add(threading.current_thread().name)
        try:
            if parent.gate is not None:
                parent.gate.wait()
            if parent.hold:
                time.sleep(parent.hold)
            if domid in parent.fail_domids:
                raise XenCallError("xc_domain_resume", errno=errno.EINVAL, domid=domid)
            with parent.lock:
                FakeXenCtrl.resume(parent, domid, fast)
                parent.calls -= 1  # counted by this handle
        finally:
            with parent.lock:
                parent.inflight -= 1

    def close(self):
        self.closed = True


def suspended_world(tmp_path, count, xenctrl=None, **xenctrl_options):
    world = World()
    guests = [world.add_domain(domid, "g%02d" % domid) for domid in range(1, count + 1)]
    report, _backends = run_suspend(world, tmp_path)
    assert len(report.changed_names) == count
    if xenctrl is not None:
        world.xenctrl = xenctrl(world, **xenctrl_options)
    return world, guests


def resume(world, tmp_path, **options):
    backends = world.backends(tmp_path)
    records = list_records(world.xenctrl, world.xenstore)
    plan = plan_resume(records, backends.ledger.read(), parse_selectors([]), clock=backends.clock)
    return ResumeEngine(backends, **options).run(plan)


def ledger_entries(tmp_path):
    return json.loads((tmp_path / "ledger" / "ledger.json").read_text())["entries"]


def test_resume_calls_overlap_in_threads_with_their_own_handles(tmp_path):
    # Every call waits at a barrier for all eight: only eight calls in flight at once get by.
    world, guests = suspended_world(tmp_path, 8, ThreadedXenCtrl,
                                    gate=threading.Barrier(8, timeout=10))
    report = resume(world, tmp_path, parallel=8)
    assert sorted(report.resumed) == ["g%02d" % domid for domid in range(1, 9)]
    assert not any(guest.suspended for guest in guests)
    xc = world.xenctrl
    assert xc.max_inflight == 8 and len(xc.clones) == 8 and all(h.closed for h in xc.clones)
    assert "MainThread" not in xc.threads
    assert report.stats["xenctrl_calls"] >= 8  # the handles' calls are counted in
    assert ledger_entries(tmp_path) == {}


def test_parallel_bounds_the_calls_in_flight(tmp_path):
    world, guests = suspended_world(tmp_path, 12, ThreadedXenCtrl, hold=0.02)
    report = resume(world, tmp_path, parallel=3)
    assert len(report.resumed) == 12 and not any(guest.suspended for guest in guests)
    assert world.xenctrl.max_inflight <= 3 and len(world.xenctrl.clones) == 3


def test_one_at_a_time_needs_no_thread(tmp_path):
    world, guests = suspended_world(tmp_path, 4, ThreadedXenCtrl)
    report = resume(world, tmp_path, parallel=1)
    assert len(report.resumed) == 4
    assert world.xenctrl.clones == [] and world.xenctrl.threads == set()


def test_a_failed_call_in_a_thread_is_that_domains_failure(tmp_path):
    world, guests = suspended_world(tmp_path, 6, ThreadedXenCtrl)
    world.xenctrl.fail_domids = {3}  # xc_domain_resume fails (EINVAL) for g03 alone
    report = resume(world, tmp_path, parallel=4)
    failed = [item for item in report.results if item["error"]]
    assert [item["name"] for item in failed] == ["g03"]
    assert failed[0]["error"]["phase"] == "resume" and "g03" in failed[0]["error"]["message"]
    assert sorted(report.resumed) == ["g01", "g02", "g04", "g05", "g06"]
    assert guests[2].uuid in ledger_entries(tmp_path)  # kept: not resumed


def test_interruption_before_the_calls_attempts_none(tmp_path):
    world, guests = suspended_world(tmp_path, 5, ThreadedXenCtrl)
    backends = world.backends(tmp_path)

    class Interrupted(object):
        reason = "SIGTERM"
    backends.interruption = Interrupted()
    records = list_records(world.xenctrl, world.xenstore)
    plan = plan_resume(records, backends.ledger.read(), parse_selectors([]), clock=backends.clock)
    report = ResumeEngine(backends, parallel=4).run(plan)
    assert report.interrupted == "SIGTERM"
    assert all(item["error"]["kind"] == "not_attempted" for item in report.results)
    assert all(guest.suspended for guest in guests) and len(ledger_entries(tmp_path)) == 5


def test_downtime_is_from_the_ledgers_verified_suspend_to_the_resume(tmp_path):
    world, guests = suspended_world(tmp_path, 2)
    now = world.wall_base + world.clock.now
    path = tmp_path / "ledger" / "ledger.json"
    document = json.loads(path.read_text())
    first, second = guests
    document["entries"][first.uuid]["suspended_at"] = utc_timestamp(now - 12.345)
    document["entries"][second.uuid]["suspended_at"] = "2000-01-01T00:00:00Z"  # an old ledger
    path.write_text(json.dumps(document))
    world.wall_base = now - world.clock.now  # (the fake wall clock stands still)
    report = resume(world, tmp_path)
    by_name = dict((item["name"], item) for item in report.results)
    assert abs(by_name["g01"]["downtime_seconds"] - 12.345) <= 0.002
    assert by_name["g02"]["downtime_seconds"] == pytest.approx(now - 946684800.0, abs=0.002)


def test_downtime_is_null_without_a_verified_suspend(tmp_path):
    world, guests = suspended_world(tmp_path, 1)
    path = tmp_path / "ledger" / "ledger.json"
    document = json.loads(path.read_text())
    document["entries"][guests[0].uuid]["suspended_at"] = None
    path.write_text(json.dumps(document))
    report = resume(world, tmp_path)
    assert report.resumed == ["g01"] and report.results[0]["downtime_seconds"] is None


# -- XS_RESUME, pipelined --------------------------------------------------------------------

@pytest.fixture
def xenstored():
    with running_fake_xenstored() as server:
        yield server


def test_resume_domains_keeps_a_window_of_xs_resume_outstanding(xenstored):
    client = XenstoreClient(timeout=2.0, socket_path=xenstored.path).connect()
    try:
        xenstored.hold_first = PIPELINE_DEPTH  # no reply before a whole window is in
        domids = list(range(1, PIPELINE_DEPTH + 11))
        outcomes = client.resume_domains(domids)
        assert all(outcome.ok for outcome in outcomes)
        sent = [request for request in xenstored.requests if request[0] == RESUME]
        assert [request[2] for request in sent] == [b"%d\x00" % domid for domid in domids]
        assert client.round_trips == len(domids)
    finally:
        client.close()


def test_without_a_second_handle_the_calls_are_made_here(tmp_path):
    world, guests = suspended_world(tmp_path, 5, ThreadedXenCtrl)

    def no_handle():
        raise XenCallError("xc_interface_open", errno=errno.EMFILE)
    world.xenctrl.clone = no_handle
    report = resume(world, tmp_path, parallel=4)
    assert len(report.resumed) == 5 and not any(guest.suspended for guest in guests)


def test_threads_that_cannot_open_a_handle_leave_the_calls_to_the_others(tmp_path):
    world, guests = suspended_world(tmp_path, 9, ThreadedXenCtrl)
    real_clone, opened = world.xenctrl.clone, []

    def first_only():
        if opened:
            raise XenCallError("xc_interface_open", errno=errno.EMFILE)
        opened.append(1)
        return real_clone()
    world.xenctrl.clone = first_only
    report = resume(world, tmp_path, parallel=4)
    assert len(report.resumed) == 9 and not any(guest.suspended for guest in guests)
    assert len(world.xenctrl.threads) == 1


def test_settling_waits_on_release_domain_and_leaves_no_watch(tmp_path):
    world = World()
    guest = world.add_domain(3, "late", suspend_delay=4.0)
    backends = world.backends(tmp_path)
    report, _backends = run_suspend(world, tmp_path, timeout=1.0, continue_on_error=True)
    assert not guest.suspended
    world.xenstore.ops[:] = []
    records = list_records(world.xenctrl, world.xenstore)
    plan = plan_resume(records, backends.ledger.read(), parse_selectors([]), clock=backends.clock)
    report = ResumeEngine(backends, settle_timeout=30.0).run(plan)
    assert report.resumed == ["late"] and not guest.suspended
    watched = [op for op in world.xenstore.ops if op[1] == b"@releaseDomain"]
    assert [op for op, _path in watched] == ["watch", "unwatch"]
    # the suspend run's standing watches stay until its connection closes; the resume's own is gone
    assert world.xenstore.watches == {(b"@releaseDomain", RELEASE_TOKEN), ANSWER_WATCH}


class _Signal(object):
    reason = None


def test_a_signal_stops_the_calls_not_started_yet(tmp_path):
    world, guests = suspended_world(tmp_path, 10, ThreadedXenCtrl, hold=0.05)
    backends = world.backends(tmp_path)
    backends.interruption = signal = _Signal()
    real = _Handle.resume

    def resume_then_signal(handle, domid, fast):
        signal.reason = "SIGTERM"  # arrives while the first calls are under way
        real(handle, domid, fast)
    _Handle.resume = resume_then_signal
    try:
        records = list_records(world.xenctrl, world.xenstore)
        plan = plan_resume(records, backends.ledger.read(), parse_selectors([]), clock=backends.clock)
        report = ResumeEngine(backends, parallel=2).run(plan)
    finally:
        _Handle.resume = real
    assert report.interrupted == "SIGTERM"
    done = [item for item in report.results if item["error"] is None]
    stopped = [item for item in report.results if item["error"] is not None]
    assert 1 <= len(done) <= 4 and len(done) + len(stopped) == 10
    assert all(item["error"]["kind"] == "not_attempted" for item in stopped)
    left = ledger_entries(tmp_path)
    for guest in guests:
        # resumed and removed, or still suspended with its entry ("resuming": the next run's)
        assert (not guest.suspended and guest.uuid not in left) or \
            (guest.suspended and left[guest.uuid]["state"] == "resuming")
    again = resume(world, tmp_path, parallel=2)  # the next run brings back the rest
    assert len(again.resumed) == len(stopped) and not any(guest.suspended for guest in guests)
    assert ledger_entries(tmp_path) == {}


def test_continue_on_error_false_stops_the_calls_not_started_yet(tmp_path):
    world, guests = suspended_world(tmp_path, 10, ThreadedXenCtrl, hold=0.05)
    world.xenctrl.fail_domids = {1, 2}
    report = resume(world, tmp_path, parallel=2, continue_on_error=False)
    kinds = [item["error"]["kind"] if item["error"] else None for item in report.results]
    assert kinds[:2] == ["call_failed", "call_failed"]
    assert kinds.count("not_attempted") >= 6  # (a call or two may have started meanwhile)
    assert all(guest.suspended for guest, kind in zip(guests, kinds) if kind == "not_attempted")


def test_a_missing_xc_domain_resume_fails_the_run_before_any_mark_or_call(tmp_path):
    from ansible_collections.xen.suspend.plugins.module_utils._errors import DependencyError
    world, guests = suspended_world(tmp_path, 3, ThreadedXenCtrl)

    class Libraries(object):
        @staticmethod
        def resume_function():
            raise DependencyError("xc_domain_resume is in neither libxenguest.so.4.17 nor "
                                  "libxenctrl.so.4.17", library="libxenguest.so.4.17")
    world.xenctrl.libraries = Libraries()
    with pytest.raises(DependencyError):
        resume(world, tmp_path, parallel=4)
    assert all(guest.suspended for guest in guests)
    assert [entry["state"] for entry in ledger_entries(tmp_path).values()] == ["suspended"] * 3
    assert world.xenctrl.clones == [] or all(h.calls == 0 for h in world.xenctrl.clones)
    assert not os.listdir(str(tmp_path / "run-xen"))  # every lock given back
