# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The suspend engine's state machine, driven through the fake dom0 of xen_fakes."""

import errno
import json

import pytest

from ansible_collections.xen.suspend.plugins.module_utils._errors import (
    TargetError, XenstoreError, XenstoreTimeout)
from ansible_collections.xen.suspend.plugins.module_utils._inventory import list_records
from ansible_collections.xen.suspend.plugins.module_utils._ledger import Ledger, make_entry
from ansible_collections.xen.suspend.plugins.module_utils._protocol_requests import ANSWER_WATCH
from ansible_collections.xen.suspend.plugins.module_utils._suspend_engine import (
    RELEASE_TOKEN, SuspendEngine)
from ansible_collections.xen.suspend.plugins.module_utils._targets import (
    parse_selectors, select_targets)

from xen_fakes import FakeLocks, World
from xen_fakes import run_suspend as run


def by_name(report):
    return dict((item["name"], item) for item in report.results)


def ledger_entries(tmp_path):
    path = tmp_path / "ledger" / "ledger.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())["entries"]


# -- the three protocols -------------------------------------------------------------------------

@pytest.mark.parametrize("oxenstored", [False, True], ids=["c-xenstored", "oxenstored"])
def test_xenstore_path_suspends_and_records(tmp_path, oxenstored):
    world = World()
    world.xenstore.ack_before_fire = oxenstored
    guest = world.add_domain(3, "web1")
    report, _backends = run(world, tmp_path)

    result = by_name(report)["web1"]
    assert result["error"] is None
    assert result["changed"] is True
    assert result["method"] == "xenstore"
    assert (result["before"], result["after"]) == ("blocked", "suspended")
    assert list(result["phases"]) == ["lookup", "lock", "request", "acknowledge", "quiesce", "verify"]
    assert guest.suspended
    assert world.xenstore.nodes[guest.control_path] == b""
    # name, event-channel node, write, read after the ack (the answers' watch is the run's)
    assert result["xenstore_round_trips"] <= 4
    assert world.xenstore.watches == {(b"@releaseDomain", RELEASE_TOKEN), ANSWER_WATCH}
    entry = ledger_entries(tmp_path)[guest.uuid]
    assert entry["state"] == "suspended" and entry["method"] == "xenstore" and entry["resume_fast"]
    assert not (tmp_path / "run-xen" / "suspend-evtchn-3.lock").exists()
    assert report.suspended == ["web1"] and report.failed == [] and report.changed


def test_event_channel_path_drains_notifies_and_unsubscribes(tmp_path):
    world = World()
    guest = world.add_domain(4, "legacy", evtchn_port=7, behaviour="ignore")
    report, backends = run(world, tmp_path)

    result = by_name(report)["legacy"]
    assert result["error"] is None, result
    assert result["method"] == "event_channel"
    assert guest.suspended and guest.notifications == 1
    assert "acknowledge" not in result["phases"]
    assert result["xenstore_round_trips"] <= 3
    # subscribed to the guest port, then cleared with port 0 (libxl never does that)
    assert world.xenctrl.subscriptions == [(4, 7), (4, 0)]
    assert guest.subscribed_port == 0
    assert world.evtchn.bindings == {}
    assert "ledger entry" not in " ".join(result["notes"])
    # the initial pending event was eaten before the notify went out
    assert len(world.evtchn.notified) == 1
    assert world.xenstore.nodes[guest.control_path] == b""  # the xenstore path was not used


def test_event_channel_path_needs_no_release_domain(tmp_path):
    world = World(release_events=False)
    guest = world.add_domain(4, "legacy", evtchn_port=9, behaviour="ignore", suspend_delay=2.0)
    report, _backends = run(world, tmp_path)
    assert by_name(report)["legacy"]["error"] is None
    assert guest.suspended


def test_direct_path_for_hvm_without_pv_drivers(tmp_path):
    world = World()
    guest = world.add_domain(5, "win", hvm=True, callback_irq=0, behaviour="ignore")
    report, _backends = run(world, tmp_path)
    result = by_name(report)["win"]
    assert result["error"] is None
    assert result["method"] == "direct"
    assert world.xenctrl.shutdowns == [(5, 2)]
    assert guest.suspended
    assert guest.requests == 0
    # the guest never made the hypercall: resume must not fake a return value in its vCPU
    assert ledger_entries(tmp_path)[guest.uuid]["resume_fast"] is False


def test_direct_path_completes_by_polling_without_release_domain(tmp_path):
    world = World(release_events=False)
    guest = world.add_domain(5, "win", hvm=True, callback_irq=0)
    report, _backends = run(world, tmp_path)
    assert by_name(report)["win"]["error"] is None
    assert guest.suspended


def test_hvm_with_pv_drivers_uses_xenstore(tmp_path):
    world = World()
    world.add_domain(6, "hvm-pv", hvm=True, callback_irq=1)
    world.add_domain(7, "pvh", hvm=True, dtype="pvh", callback_irq=0)
    report, _backends = run(world, tmp_path)
    results = by_name(report)
    assert results["hvm-pv"]["method"] == "xenstore"
    assert results["pvh"]["method"] == "xenstore"  # PVH never takes the direct path
    assert report.failed == []


def test_acknowledgement_by_removing_the_node(tmp_path):
    world = World()
    guest = world.add_domain(3, "win-old", behaviour="ack_remove")
    report, _backends = run(world, tmp_path)
    assert by_name(report)["win-old"]["error"] is None
    assert guest.suspended


# -- failures ------------------------------------------------------------------------------------

def test_not_acknowledged_withdraws_request_and_never_resumes(tmp_path):
    world = World()
    guest = world.add_domain(3, "mute", behaviour="ignore")
    report, _backends = run(world, tmp_path, ack_timeout=2.0, continue_on_error=True)
    result = by_name(report)["mute"]
    assert result["error"]["kind"] == "not_acknowledged"
    assert result["error"]["phase"] == "acknowledge"
    assert "mute (domid 3)" in result["error"]["message"]
    assert world.xenstore.nodes[guest.control_path] == b""  # withdrawn
    assert world.xenstore.transactions == 1
    assert world.xenctrl.resumed == []
    assert result["after"] == "blocked" and not result["changed"]
    assert guest.uuid not in ledger_entries(tmp_path)  # intent removed: it never suspended
    assert report.failed == ["mute"]


def test_cancel_transaction_retries_on_eagain(tmp_path):
    world = World()
    world.add_domain(3, "mute", behaviour="ignore")
    world.xenstore.commit_conflicts = 2
    report, _backends = run(world, tmp_path, ack_timeout=1.0, continue_on_error=True)
    assert by_name(report)["mute"]["error"]["kind"] == "not_acknowledged"
    assert world.xenstore.transactions == 3


def test_last_minute_acknowledgement_counts(tmp_path):
    world = World()
    # Acknowledges at 0.9 s, but no watch event reaches us: only the cancel transaction sees it.
    guest = world.add_domain(3, "quiet", behaviour="ack_silent", ack_delay=0.9, suspend_delay=0.5)
    report, _backends = run(world, tmp_path, ack_timeout=1.0)
    result = by_name(report)["quiet"]
    assert result["error"] is None, result
    assert guest.suspended
    assert any("last moment" in note for note in result["notes"])
    assert world.xenstore.nodes[guest.control_path] == b""


def test_ack_then_crash_fails_without_resume(tmp_path):
    world = World()
    guest = world.add_domain(3, "crashy", behaviour="ack_crash")
    report, _backends = run(world, tmp_path, continue_on_error=True)
    result = by_name(report)["crashy"]
    assert result["error"]["kind"] == "unexpected_shutdown"
    assert "crash" in result["error"]["message"]
    assert result["after"] == "shutdown(crash)"
    assert world.xenctrl.resumed == []
    assert guest.uuid not in ledger_entries(tmp_path)


def test_domain_vanishing_is_reported(tmp_path):
    world = World()
    world.add_domain(3, "gone", behaviour="ack_vanish")
    report, _backends = run(world, tmp_path, continue_on_error=True)
    result = by_name(report)["gone"]
    assert result["error"]["kind"] == "vanished"
    assert result["after"] == "absent"


def test_acknowledged_but_not_suspended_times_out_in_quiesce(tmp_path):
    world = World()
    world.add_domain(3, "frozen", behaviour="ack_no_suspend")
    report, _backends = run(world, tmp_path, timeout=3.0, continue_on_error=True)
    result = by_name(report)["frozen"]
    assert result["error"]["kind"] == "timeout"
    assert result["error"]["phase"] == "quiesce"
    assert "frozen (domid 3)" in result["error"]["message"]
    assert 2.9 < result["phases"]["quiesce"] < 3.5


def test_guest_suspending_after_the_timeout_is_reported_truthfully(tmp_path):
    world = World()
    late = world.add_domain(3, "late", suspend_delay=1.5)
    world.add_domain(4, "slow", ack_delay=2.5)  # keeps the run going past late's suspend
    report, _backends = run(world, tmp_path, timeout=1.0, ack_timeout=5.0, continue_on_error=True)
    result = by_name(report)["late"]
    assert result["error"]["kind"] == "timeout"
    assert result["after"] == "suspended"
    assert any("suspended after the failure" in note for note in result["notes"])
    assert late.suspended
    assert ledger_entries(tmp_path)[late.uuid]["state"] == "suspended"  # so a resume finds it


def test_busy_lock_is_reported_and_nothing_is_requested(tmp_path):
    world = World()
    guest = world.add_domain(3, "saving")
    report, _backends = run(world, tmp_path, locks=FakeLocks(busy={3}), continue_on_error=True)
    result = by_name(report)["saving"]
    assert result["error"]["kind"] == "busy"
    assert result["error"]["phase"] == "lock"
    assert guest.requests == 0
    assert ledger_entries(tmp_path) is None  # no intent for a domain we never asked


def test_xenstore_timeout_names_domain_and_phase(tmp_path):
    world = World()
    world.add_domain(3, "web1")
    backends = world.backends(tmp_path)
    records = list_records(world.xenctrl, world.xenstore)
    world.xenstore.fail["write"] = XenstoreTimeout("no reply within 10.0 s", op="write")
    report = SuspendEngine(backends, continue_on_error=True).run(
        select_targets(records, parse_selectors(["web1"])).targets)
    error = report.results[0]["error"]
    assert error["kind"] == "xenstore_timeout"
    assert error["phase"] == "request"
    assert error["message"].startswith("domain web1 (domid 3), phase request:")


@pytest.mark.parametrize("continue_on_error", [False, True])
def test_a_refused_answer_watch_sends_no_request(tmp_path, continue_on_error):
    """Requests go out in pipelined batches (the standing watch for the answers, then all
    writes): without the watch no guest is asked, whatever continue_on_error says, and the
    intents are settled as never sent."""
    world = World()
    guests = [world.add_domain(domid, "vm%d" % domid) for domid in (3, 4, 5)]
    world.xenstore.fail_paths[("watch", ANSWER_WATCH[0])] = XenstoreError(
        "EACCES", op="watch", errno=errno.EACCES)
    report, _backends = run(world, tmp_path, continue_on_error=continue_on_error)
    results = by_name(report)
    assert results["vm3"]["error"]["phase"] == "request"
    assert "domain vm3 (domid 3), phase request" in results["vm3"]["error"]["message"]
    assert [guest.requests for guest in guests] == [0, 0, 0]
    assert report.suspended == [] and not ledger_entries(tmp_path)
    # each of them failed for that reason (none is merely "not attempted")
    assert [results[name]["error"]["kind"] for name in ("vm3", "vm4", "vm5")] == ["xenstore_error"] * 3
    assert world.xenstore.watches == {(b"@releaseDomain", RELEASE_TOKEN)}


# -- hostile guests and method choice -----------------------------------------------------------

@pytest.mark.parametrize("value", [b"12abc", b"-5", b" 7", b"0", b"9" * 40, b"07", b"\x00\xff"])
def test_hostile_event_channel_value_falls_back_to_xenstore(tmp_path, value):
    world = World()
    guest = world.add_domain(3, "evil", evtchn_value=value)
    report, _backends = run(world, tmp_path)
    result = by_name(report)["evil"]
    assert result["method"] == "xenstore"
    assert result["error"] is None
    assert guest.suspended
    assert world.evtchn.bindings == {} and world.xenctrl.subscriptions == []
    assert any("ignored: invalid" in note for note in result["notes"])


def test_unbindable_event_channel_falls_back_in_auto(tmp_path):
    world = World()
    guest = world.add_domain(3, "liar", evtchn_value=b"33")  # advertises a port it never opened
    report, _backends = run(world, tmp_path)
    result = by_name(report)["liar"]
    assert result["error"] is None
    assert result["method"] == "xenstore"
    assert any("fell back to xenstore" in note for note in result["notes"])
    assert guest.suspended
    assert ledger_entries(tmp_path)[guest.uuid]["method"] == "xenstore"


def test_forced_event_channel_without_port_is_a_lookup_error(tmp_path):
    world = World()
    guest = world.add_domain(3, "modern")
    report, _backends = run(world, tmp_path, method="event_channel")
    result = by_name(report)["modern"]
    assert result["error"]["kind"] == "method_unavailable"
    assert result["error"]["phase"] == "lookup"
    assert guest.requests == 0
    assert ledger_entries(tmp_path) is None


def test_forced_direct_on_pv_is_refused(tmp_path):
    world = World()
    world.add_domain(3, "pv")
    report, _backends = run(world, tmp_path, method="direct")
    assert report.results[0]["error"]["kind"] == "method_unavailable"
    assert world.xenctrl.shutdowns == []


# -- many domains ---------------------------------------------------------------------------------

@pytest.mark.parametrize("oxenstored", [False, True], ids=["c-xenstored", "oxenstored"])
def test_many_domains_run_concurrently_within_parallel_limit(tmp_path, oxenstored):
    world = World()
    world.xenstore.ack_before_fire = oxenstored
    guests = [world.add_domain(domid, "g%02d" % domid, ack_delay=1.0, suspend_delay=0.5)
              for domid in range(1, 41)]
    locks = FakeLocks()
    start = world.clock.now
    report, backends = run(world, tmp_path, locks=locks, parallel=8)
    elapsed = world.clock.now - start
    assert report.failed == []
    assert all(guest.suspended for guest in guests)
    assert locks.max_held <= 8
    assert world.xenstore.max_watches <= 8 + 1  # one control/shutdown watch per domain in flight
    # one at a time would take 40 * 1.5 s; 8 at a time about 5 batches
    assert elapsed < 10.0
    assert report.stats["ledger_writes"] < 40
    # the results keep the request order
    assert [item["name"] for item in report.results] == ["g%02d" % d for d in range(1, 41)]
    assert max(item["xenstore_round_trips"] for item in report.results) <= 6


def test_mixed_methods_in_one_run(tmp_path):
    world = World()
    a = world.add_domain(1, "xs")
    b = world.add_domain(2, "ev", evtchn_port=5, behaviour="ignore")
    c = world.add_domain(3, "hvm", hvm=True)
    report, _backends = run(world, tmp_path)
    assert [r["method"] for r in report.results] == ["xenstore", "event_channel", "direct"]
    assert a.suspended and b.suspended and c.suspended


def test_first_failure_stops_new_admissions(tmp_path):
    world = World()
    world.add_domain(1, "mute", behaviour="ignore")
    second = world.add_domain(2, "fine")
    report, _backends = run(world, tmp_path, parallel=1, ack_timeout=1.0)
    results = by_name(report)
    assert results["mute"]["error"]["kind"] == "not_acknowledged"
    assert results["fine"]["error"]["kind"] == "not_attempted"
    assert second.requests == 0


def test_lookup_failure_touches_nothing_without_continue_on_error(tmp_path):
    world = World()
    world.add_domain(1, "paused", paused=True)
    fine = world.add_domain(2, "fine")
    report, _backends = run(world, tmp_path)
    results = by_name(report)
    assert results["paused"]["error"]["kind"] == "paused"
    assert results["fine"]["error"]["kind"] == "not_attempted"
    assert fine.requests == 0
    assert ledger_entries(tmp_path) is None


# -- idempotence, check mode, validation, ledger ordering ---------------------------------------

def test_already_suspended_and_recorded_is_unchanged(tmp_path):
    world = World()
    guest = world.add_domain(3, "web1")
    guest.shutdown_code = 2
    ledger = Ledger(str(tmp_path / "ledger" / "ledger.json"))
    ledger.update(lambda e: e.update({guest.uuid: make_entry(guest.uuid, 3, "web1", "xenstore")}))
    report, _backends = run(world, tmp_path)
    result = by_name(report)["web1"]
    assert result["changed"] is False and result["error"] is None
    assert report.unchanged == ["web1"] and not report.changed
    # a stopped run's unconfirmed entry is left for domain_resumed to settle under the lock
    assert ledger_entries(tmp_path)[guest.uuid]["state"] == "intent"
    assert any("left unconfirmed" in note for note in result["notes"])
    assert guest.requests == 0


def test_suspended_but_unrecorded_is_left_alone(tmp_path):
    world = World()
    guest = world.add_domain(3, "migrating")
    guest.shutdown_code = 2
    report, _backends = run(world, tmp_path, continue_on_error=True)
    assert report.results[0]["error"]["kind"] == "unrecorded_suspend"
    assert ledger_entries(tmp_path) is None


def test_check_mode_touches_nothing(tmp_path):
    world = World()
    guest = world.add_domain(3, "web1")
    world.add_domain(4, "ev", evtchn_port=5)
    report, _backends = run(world, tmp_path, check_mode=True)
    assert [r["method"] for r in report.results] == ["xenstore", "event_channel"]
    assert all(r["changed"] and r["after"] == "suspended" for r in report.results)
    assert guest.requests == 0 and not guest.suspended
    assert world.evtchn.bindings == {} and world.xenctrl.subscriptions == []
    assert ledger_entries(tmp_path) is None
    assert not [op for op in world.xenstore.ops if op[0] != "read"]


def test_intent_is_on_disk_before_the_request(tmp_path):
    world = World()
    guest = world.add_domain(3, "web1")
    seen = []

    def check(path, value):
        if value == b"suspend":
            seen.append(ledger_entries(tmp_path)[guest.uuid]["state"])

    world.xenstore.on_write = check
    run(world, tmp_path)
    assert seen == ["intent"]


@pytest.mark.parametrize("options", [
    {"timeout": -1}, {"timeout": 0}, {"ack_timeout": -0.5}, {"parallel": -1}, {"method": "magic"},
    {"timeout": float("nan")},
])
def test_invalid_options_are_rejected_before_anything(tmp_path, options):
    world = World()
    with pytest.raises(TargetError) as caught:
        SuspendEngine(world.backends(tmp_path), **options)
    assert "nothing was touched" in str(caught.value)


def test_corrupt_ledger_stops_before_any_request(tmp_path):
    world = World()
    guest = world.add_domain(3, "web1")
    (tmp_path / "ledger").mkdir()
    (tmp_path / "ledger" / "ledger.json").write_text('{"format": "xen.suspend.ledger", "vers')
    backends = world.backends(tmp_path)
    records = list_records(world.xenctrl, world.xenstore)
    from ansible_collections.xen.suspend.plugins.module_utils._errors import LedgerError
    with pytest.raises(LedgerError):
        SuspendEngine(backends).run(select_targets(records, parse_selectors(["web1"])).targets)
    assert guest.requests == 0


def test_event_storm_from_guest_does_not_break_the_loop(tmp_path):
    world = World()
    guest = world.add_domain(4, "noisy", evtchn_port=7, behaviour="ignore", suspend_delay=1.0)

    def hammer():
        local = world.evtchn.local_for(4, 7)
        if local is not None and not guest.suspended:
            world.evtchn.deliver(local)
            world.schedule(0.001, hammer)

    world.schedule(0.01, hammer)
    report, _backends = run(world, tmp_path)
    assert report.results[0]["error"] is None
    assert guest.suspended
    # polls are rate-limited: far fewer domain-info calls than events
    assert world.xenctrl.calls < 400


def test_subscribe_failure_unbinds_and_fails(tmp_path):
    world = World()
    world.add_domain(4, "legacy", evtchn_port=7)
    world.xenctrl.fail["xc_domain_subscribe_for_suspend"] = errno.EPERM
    report, _backends = run(world, tmp_path, method="event_channel", continue_on_error=True)
    error = report.results[0]["error"]
    assert error["kind"] == "call_failed" and error["phase"] == "request"
    assert error["errno"] == "EPERM"
    assert "xc_domain_subscribe_for_suspend(domid 4)" in error["message"]
    assert world.evtchn.bindings == {}


def test_staggered_completions_with_default_parallel(tmp_path):
    # Completions trickle in one by one, so admissions are coalesced by time; this once
    # made the loop spin when float rounding disagreed between "due" and "next wake-up".
    world = World()
    guests = [world.add_domain(domid, "s%02d" % domid, ack_delay=0.02 + 0.0137 * domid,
                               suspend_delay=0.01 + 0.0071 * (domid % 7))
              for domid in range(1, 61)]
    report, backends = run(world, tmp_path)
    assert report.failed == []
    assert all(guest.suspended for guest in guests)
    assert backends.wait.calls < 2000
    assert report.stats["ledger_writes"] < 60


def test_uncertain_request_keeps_the_intent(tmp_path):
    world = World()
    guest = world.add_domain(3, "web1")
    world.xenstore.fail["write"] = XenstoreTimeout("no reply within 10.0 s", op="write")
    report, _backends = run(world, tmp_path, continue_on_error=True)
    result = report.results[0]
    assert result["error"]["kind"] == "xenstore_timeout"
    assert any("may still suspend" in note for note in result["notes"])
    assert ledger_entries(tmp_path)[guest.uuid]["state"] == "intent"


def test_request_that_cannot_be_withdrawn_is_reported(tmp_path):
    world = World()
    guest = world.add_domain(3, "mute", behaviour="ignore")
    world.xenstore.fail["transaction_start"] = XenstoreTimeout("no reply", op="transaction_start")
    report, _backends = run(world, tmp_path, ack_timeout=1.0, continue_on_error=True)
    error = report.results[0]["error"]
    assert error["kind"] == "not_acknowledged" and error["phase"] == "acknowledge"
    assert "could not be withdrawn" in error["message"]
    assert guest.uuid in ledger_entries(tmp_path)
    assert world.xenctrl.resumed == []


def test_failure_inside_a_batch_stops_the_rest_of_the_batch(tmp_path):
    world = World()
    world.add_domain(1, "hvm", hvm=True)
    others = [world.add_domain(domid, "pv%d" % domid) for domid in (2, 3)]
    world.xenctrl.fail["xc_domain_shutdown"] = errno.EPERM
    report, _backends = run(world, tmp_path, parallel=4)
    results = by_name(report)
    assert results["hvm"]["error"]["kind"] == "call_failed"
    assert results["hvm"]["error"]["phase"] == "request"
    assert [results[n]["error"]["kind"] for n in ("pv2", "pv3")] == ["not_attempted"] * 2
    assert all(guest.requests == 0 for guest in others)
    assert ledger_entries(tmp_path) == {}  # every intent of this batch was taken back


def test_guest_flooding_its_control_node_costs_bounded_reads(tmp_path):
    world = World()
    guest = world.add_domain(3, "flood", ack_delay=1.0)
    fired = []

    def flood():
        if world.xenstore.nodes.get(guest.control_path) == b"suspend":
            world.xenstore.guest_write(guest.control_path, b"suspend")  # fires our watch
            fired.append(world.clock.now)
            world.schedule(0.0002, flood)

    world.schedule(0.001, flood)
    report, _backends = run(world, tmp_path)
    result = report.results[0]
    assert result["error"] is None and guest.suspended
    assert len(fired) > 4000
    # one read per 5 ms at most while flooded for ~1 s
    assert result["xenstore_round_trips"] <= 6 + 1.0 / 0.005


def test_release_domain_is_one_standing_watch_sent_with_the_first_requests(tmp_path):
    """No round trip of its own and no per-run watch/unwatch: it rides in the first batch of
    requests with the answers' watch (no watch per domain) and both stay for the connection's
    life; a later run on it registers nothing."""
    world = World()
    world.add_domain(3, "web1")
    world.add_domain(4, "web2")
    batches = []
    real_watch_many = world.xenstore.watch_many

    def watch_many(items):
        batches.append([path for path, _token in items])
        return real_watch_many(items)

    world.xenstore.watch_many = watch_many
    report, backends = run(world, tmp_path, targets=["web1"])
    assert report.failed == []
    assert batches == [[b"@releaseDomain", ANSWER_WATCH[0]]]
    assert (b"@releaseDomain", b"xen-suspend-release") in world.xenstore.watches
    report = SuspendEngine(backends).run(
        select_targets(list_records(world.xenctrl, world.xenstore), parse_selectors(["web2"])).targets)
    assert report.failed == [] and report.suspended == ["web2"]
    assert len(batches) == 1


def test_writes_elsewhere_in_the_guest_home_are_not_answers(tmp_path):
    """One standing watch sees every domain's home: a guest writing other nodes while its
    answer is awaited costs no read and is not taken for an answer."""
    world = World()
    guest = world.add_domain(3, "chatty", ack_delay=0.5)
    other = b"/local/domain/3/data/updated"
    writes = []

    def chatter():
        if not guest.suspended:
            world.xenstore.guest_write(other, b"%d" % len(writes))
            writes.append(world.clock.now)
            world.schedule(0.001, chatter)

    world.schedule(0.001, chatter)
    report, _backends = run(world, tmp_path)
    result = report.results[0]
    assert result["error"] is None and guest.suspended
    assert len(writes) > 300
    assert result["xenstore_round_trips"] <= 4  # name, event channel, write, the answer's read
    assert result["phases"]["acknowledge"] >= 0.45


def test_a_large_fleet_s_release_hints_are_served_by_spaced_scans(tmp_path):
    """Every suspend fires @releaseDomain and each asks for a look at every waiting guest (a
    scan of the fleet): a thousand of them cost a few dozen scans, and no verdict comes late."""
    world = World()
    for domid in range(1, 1001):
        world.add_domain(domid, "g%d" % domid, suspend_delay=0.2 + domid * 0.0005)
    scans = []
    real_domain_infos = world.xenctrl.domain_infos

    def domain_infos(domids):
        scans.append((world.clock.now, len(domids)))
        return real_domain_infos(domids)

    world.xenctrl.domain_infos = domain_infos
    start = world.clock.now
    report, _backends = run(world, tmp_path, parallel=0)  # the module's default: all at once
    assert len(report.suspended) == 1000
    suspended_at = [when for when, what, _domid, _code in
                    [entry for entry in world.log if entry[1] == "shutdown"]]
    waiting = [when for when, count in scans if when >= min(suspended_at)]
    # ~0.5 s of suspends: one scan per 20 ms while a thousand wait, closer as fewer wait
    # (~60 in all), where one per 5 ms would be over a hundred
    assert len(waiting) <= 70, len(waiting)
    # the last verdict within a gap of the last suspend
    assert report.stats["wall_seconds"] <= max(suspended_at) - start + 0.025
