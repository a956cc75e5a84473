"""Issue "Never lose a guest": each reproduction, on the unit fakes. Every test here failed on
the engine before the ledger state machine (commit 464a124)."""
import json
import os
import signal

import pytest

from ansible_collections.xen.suspend.plugins.module_utils._domain_state import SHUTDOWN_SUSPEND
from ansible_collections.xen.suspend.plugins.module_utils._errors import LedgerError
from ansible_collections.xen.suspend.plugins.module_utils._interruption import Interruption
from ansible_collections.xen.suspend.plugins.module_utils._inventory import list_records
from ansible_collections.xen.suspend.plugins.module_utils._ledger import Ledger, make_entry
from ansible_collections.xen.suspend.plugins.module_utils._ledger_transitions import (
    ConfirmSuspended, RecordIntent, Settle, apply_transitions)
from ansible_collections.xen.suspend.plugins.module_utils._recovery import recover
from ansible_collections.xen.suspend.plugins.module_utils._resume import ResumeEngine, plan_resume
from ansible_collections.xen.suspend.plugins.module_utils._suspend_engine import SuspendEngine
from ansible_collections.xen.suspend.plugins.module_utils._targets import (
    parse_selectors, select_targets)

from xen_fakes import FakeLocks, FakeMonitors, World


def entries(tmp_path):
    path = tmp_path / "ledger" / "ledger.json"
    return json.loads(path.read_text())["entries"] if path.exists() else {}


def suspend(world, backends, targets=("*",), **options):
    records = list_records(world.xenctrl, world.xenstore)
    selection = select_targets(records, parse_selectors(list(targets)))
    return SuspendEngine(backends, **options).run(selection.targets)


def resume(world, backends, force=False, **options):
    records = list_records(world.xenctrl, world.xenstore)
    plan = plan_resume(records, backends.ledger.read(), [], force_unrecorded=force)
    return ResumeEngine(backends, force_unrecorded=force, **options).run(plan)


def advance(world, seconds):
    world.clock.now += seconds
    world.run_due()


def result_of(report, name):
    return [item for item in report.results if item["name"] == name][0]


# -- 1. a guest that suspends after the timeout stays recorded ------------------------------------

@pytest.mark.parametrize("protocol", ["xenstore", "event_channel"])
def test_a_single_late_suspender_keeps_its_entry_and_is_resumed(tmp_path, protocol):
    world = World()
    kwargs = {"evtchn_port": 7} if protocol == "event_channel" else {}
    guest = world.add_domain(3, "late", suspend_delay=1.5, **kwargs)
    backends = world.backends(tmp_path)
    backends.monitors = FakeMonitors()

    report = suspend(world, backends, timeout=1.0, continue_on_error=True)
    result = result_of(report, "late")
    assert result["error"]["kind"] == "timeout" and result["method"] == protocol
    assert not guest.suspended
    kept = entries(tmp_path)[guest.uuid]
    assert kept["state"] == "intent" and kept["settle_by"]
    assert backends.monitors.frozen() == [1003]  # it may still suspend: xl must not see it

    advance(world, 5.0)
    assert guest.suspended
    assert guest.uuid in entries(tmp_path)  # at no moment suspended without an entry

    report = resume(world, backends)
    assert report.resumed == ["late"] and not guest.suspended
    assert entries(tmp_path) == {}
    assert backends.monitors.frozen() == []


def test_resume_waits_for_a_guest_still_on_its_way_down(tmp_path):
    world = World()
    guest = world.add_domain(3, "late", suspend_delay=4.0)
    backends = world.backends(tmp_path)
    suspend(world, backends, timeout=1.0, continue_on_error=True)
    assert not guest.suspended

    report = resume(world, backends, settle_timeout=30.0)  # the guest suspends 3 s into it
    result = result_of(report, "late")
    assert result["error"] is None and report.resumed == ["late"]
    assert not guest.suspended and guest.resumes == [True]
    assert entries(tmp_path) == {}


def test_a_guest_that_never_suspends_is_settled_after_its_settle_time(tmp_path):
    world = World()
    guest = world.add_domain(3, "fickle", behaviour="ack_no_suspend")
    backends = world.backends(tmp_path)
    suspend(world, backends, timeout=1.0, continue_on_error=True)
    assert guest.uuid in entries(tmp_path)

    short = resume(world, backends, settle_timeout=2.0, continue_on_error=True)
    assert result_of(short, "fickle")["error"]["kind"] == "still_suspending"
    assert guest.uuid in entries(tmp_path) and not short.resumed

    report = resume(world, backends, settle_timeout=120.0)
    result = result_of(report, "fickle")
    assert result["error"] is None and not result["changed"]
    assert entries(tmp_path) == {}
    assert world.xenctrl.resumed == []


# -- 2. an interrupted run ----------------------------------------------------------------------

def test_a_signal_withdraws_unanswered_requests_and_keeps_answered_ones(tmp_path):
    world = World()
    slow_ack = world.add_domain(3, "slow-ack", ack_delay=5.0)
    answered = world.add_domain(4, "answered", suspend_delay=3.0)
    backends = world.backends(tmp_path)
    backends.interruption = Interruption()
    world.schedule(0.5, lambda: setattr(backends.interruption, "reason", "SIGTERM"))

    report = suspend(world, backends, continue_on_error=True)
    assert report.interrupted == "SIGTERM"
    assert {r["name"]: r["error"]["kind"] for r in report.results} == {
        "slow-ack": "interrupted", "answered": "interrupted"}
    assert world.xenstore.nodes[slow_ack.control_path] == b""  # withdrawn
    assert slow_ack.uuid not in entries(tmp_path)
    assert entries(tmp_path)[answered.uuid]["state"] == "intent"

    advance(world, 10.0)  # the slow guest's late answer finds nothing to act on
    assert not slow_ack.suspended and slow_ack.requests == 1
    assert answered.suspended and answered.uuid in entries(tmp_path)
    report = resume(world, ResumeBackends(world, tmp_path))
    assert report.resumed == ["answered"] and entries(tmp_path) == {}


def ResumeBackends(world, tmp_path):  # pylint: disable=invalid-name
    return world.backends(tmp_path)


def test_resume_right_after_a_kill_waits_and_lists_withdrawn_requests_apart(tmp_path):
    """Ctrl-C of a fleet suspend, then the resume playbook at once: the guests that answered
    must not be called running while they go down, withdrawn ones are not 'resumed'."""
    world = World()
    unanswered = world.add_domain(3, "unanswered", behaviour="ignore")
    answered = world.add_domain(4, "answered", suspend_delay=2.0)
    backends = world.backends(tmp_path)
    # what a killed run leaves: intents, requests in the nodes, one of them answered
    for guest in (unanswered, answered):
        backends.ledger.update(lambda e, g=guest: e.update({g.uuid: make_entry(
            g.uuid, g.domid, g.name, "xenstore", intent_id="dead-run-%d" % g.domid,
            settle_by=backends.wall_clock() + 60)}))
        world.xenstore.write(guest.control_path, b"suspend")
        world.on_toolstack_write(guest.control_path, b"suspend")
    advance(world, 0.1)  # "answered" acknowledged; it suspends 2 s later

    report = resume(world, backends)
    assert report.resumed == ["answered"]
    assert report.withdrawn == ["unanswered"]
    assert report.module_result()["withdrawn"] == ["unanswered"]
    assert not answered.suspended and not unanswered.suspended
    assert world.xenstore.nodes[unanswered.control_path] == b""
    assert entries(tmp_path) == {}


# -- 3. a concurrent resume never disturbs a live suspend ---------------------------------------

def test_resume_leaves_a_domain_another_run_holds_alone(tmp_path):
    world = World()
    guest = world.add_domain(3, "web1", behaviour="ignore")
    # the live suspend run holds domid 3's lock (POSIX locks do not conflict inside one
    # process, so the other process is a fake here; the simulator tests use two processes)
    backends = world.backends(tmp_path, locks=FakeLocks(busy=[3]))
    backends.ledger.update(lambda e: e.update({guest.uuid: make_entry(
        guest.uuid, 3, "web1", "xenstore", intent_id="live-3", settle_by=0)}))
    world.xenstore.write(guest.control_path, b"suspend")
    report = resume(world, backends, continue_on_error=True)
    assert result_of(report, "web1")["error"]["kind"] == "busy"
    assert world.xenstore.nodes[guest.control_path] == b"suspend"  # untouched
    assert guest.uuid in entries(tmp_path)
    recovery = recover(backends, backends.ledger.read())
    assert [a["action"] for a in recovery.actions] == ["busy"]
    assert guest.uuid in entries(tmp_path)


def test_a_late_ledger_write_never_undoes_a_newer_attempt(tmp_path):
    ledger = Ledger(str(tmp_path / "ledger.json"))
    old = make_entry("u1", 3, "web1", "xenstore", intent_id="run-a-3")
    new = make_entry("u1", 3, "web1", "xenstore", intent_id="run-b-3")
    apply_transitions(ledger, [RecordIntent(old)])
    apply_transitions(ledger, [RecordIntent(new)])
    apply_transitions(ledger, [Settle("u1", "run-a-3", "never_sent"),
                               ConfirmSuspended("u1", "run-a-3", {"domid": 3, "cpu_time_ns": 1})])
    assert ledger.read()["u1"]["intent_id"] == "run-b-3"
    assert ledger.read()["u1"]["state"] == "intent"


# -- 4. a suspend by someone else is never recorded as ours -------------------------------------

def test_a_foreign_suspend_while_our_request_is_unanswered_is_not_claimed(tmp_path):
    world = World()
    guest = world.add_domain(3, "web1", behaviour="ignore")
    backends = world.backends(tmp_path)
    world.schedule(0.5, lambda: world.domain_shutdown(guest, SHUTDOWN_SUSPEND))  # xl save

    report = suspend(world, backends, ack_timeout=5.0, continue_on_error=True)
    result = result_of(report, "web1")
    assert result["error"]["kind"] == "suspended_by_other"
    assert result["changed"] is False and report.suspended == []
    assert entries(tmp_path) == {}
    assert world.xenstore.nodes[guest.control_path] == b""  # no request left for later


def test_a_domain_suspended_again_by_someone_else_is_not_resumed(tmp_path):
    world = World()
    guest = world.add_domain(3, "web1")
    backends = world.backends(tmp_path)
    suspend(world, backends)
    assert guest.suspended
    world.xenctrl.resume(3, True)                       # someone resumes it ...
    world.domain_shutdown(guest, SHUTDOWN_SUSPEND)       # ... and suspends it again
    world.xenctrl.resumed.clear()

    report = resume(world, backends, continue_on_error=True)
    assert result_of(report, "web1")["error"]["kind"] == "identity_mismatch"
    assert guest.suspended and world.xenctrl.resumed == []
    report = resume(world, backends, force=True)
    assert report.resumed == ["web1"]


# -- 7. monitors and stale subscriptions after a kill -------------------------------------------

def test_recovery_continues_the_monitor_of_a_killed_event_channel_run(tmp_path):
    world = World()
    guest = world.add_domain(3, "legacy", evtchn_port=7)
    backends = world.backends(tmp_path)
    backends.monitors = FakeMonitors()
    monitor = backends.monitors.find(3, "legacy")
    backends.monitors.freeze(monitor)
    world.xenctrl.subscribe_for_suspend(3, 7)
    entry = make_entry(guest.uuid, 3, "legacy", "event_channel", intent_id="dead-3",
                       settle_by=backends.wall_clock() + 20)
    entry["lifecycle_monitor"] = monitor
    backends.ledger.update(lambda e: e.update({guest.uuid: entry}))

    early = recover(backends, backends.ledger.read())
    assert [(a["action"], a["reason"]) for a in early.actions] == [("left_for_resume", "may_still_suspend")]
    assert backends.monitors.frozen() == [1003]

    report = resume(world, backends, settle_timeout=60.0)
    assert result_of(report, "legacy")["error"] is None
    assert backends.monitors.frozen() == []            # not 600 s later: by its settle time
    assert entries(tmp_path) == {}
    assert guest.subscribed_port == 0


def test_recovery_lets_xl_handle_a_guest_that_rebooted_while_recorded(tmp_path):
    world = World()
    guest = world.add_domain(3, "web1")
    backends = world.backends(tmp_path)
    backends.monitors = FakeMonitors()
    monitor = backends.monitors.find(3, "web1")
    backends.monitors.freeze(monitor)
    entry = make_entry(guest.uuid, 3, "web1", "xenstore", intent_id="dead-3",
                       settle_by=backends.wall_clock() + 60)
    entry["lifecycle_monitor"] = monitor
    backends.ledger.update(lambda e: e.update({guest.uuid: entry}))
    world.domain_shutdown(guest, 1)  # the guest rebooted itself

    report = recover(backends, backends.ledger.read())
    assert [(a["action"], a["reason"]) for a in report.actions] == [("settled", "other_shutdown")]
    assert backends.monitors.frozen() == []
    assert entries(tmp_path) == {}


def test_domain_info_style_recovery_only_reports(tmp_path):
    world = World()
    guest = world.add_domain(3, "web1", behaviour="ignore")
    backends = world.backends(tmp_path)
    backends.ledger.update(lambda e: e.update({guest.uuid: make_entry(
        guest.uuid, 3, "web1", "xenstore", intent_id="dead-3", settle_by=0)}))
    world.xenstore.write(guest.control_path, b"suspend")
    report = recover(backends, backends.ledger.read(), act=False)
    assert report.actions[0]["action"] == "settled"
    assert world.xenstore.nodes[guest.control_path] == b"suspend"
    assert guest.uuid in entries(tmp_path)


def test_every_entry_left_for_resume_says_why(tmp_path):
    world = World()
    asleep = world.add_domain(3, "asleep")
    asleep.shutdown_code = SHUTDOWN_SUSPEND
    gone = world.add_domain(4, "gone")
    pending = world.add_domain(5, "pending", behaviour="ignore")
    backends = world.backends(tmp_path)
    backends.ledger.update(lambda e: e.update({
        asleep.uuid: make_entry(asleep.uuid, 3, "asleep", "xenstore", state="suspended"),
        gone.uuid: make_entry(gone.uuid, 4, "gone", "xenstore", state="suspended"),
        pending.uuid: make_entry(pending.uuid, 5, "pending", "event_channel", intent_id="i-5",
                                 settle_by=backends.wall_clock() + 60)}))
    gone.destroy()
    del world.domains[4]
    for act in (False, True):
        report = recover(backends, backends.ledger.read(), act=act)
        assert sorted((a["name"], a["action"], a["reason"]) for a in report.actions) == [
            ("asleep", "left_for_resume", "suspended"),
            ("gone", "left_for_resume", "vanished"),
            ("pending", "left_for_resume", "may_still_suspend")]


# -- signals ------------------------------------------------------------------------------------

def test_the_interruption_handler_only_raises_a_flag():
    with Interruption() as interruption:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGHUP)  # a second one while cleaning up changes nothing
        assert interruption.reason == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None) or \
        signal.getsignal(signal.SIGTERM) is not interruption._handle  # pylint: disable=protected-access


# -- bad ledger paths: an error before anything is touched --------------------------------------

def test_a_fifo_at_the_ledger_path_is_an_error_not_a_hang(tmp_path):
    path = tmp_path / "ledger.json"
    os.mkfifo(str(path))
    with pytest.raises(LedgerError, match="not a regular file"):
        Ledger(str(path)).check_usable()
    with pytest.raises(LedgerError, match="not a regular file"):
        Ledger(str(path)).read()


def test_a_directory_at_the_ledger_path_or_a_file_as_its_directory_is_an_error(tmp_path):
    (tmp_path / "ledger.json").mkdir()
    with pytest.raises(LedgerError, match="not a regular file"):
        Ledger(str(tmp_path / "ledger.json")).check_usable()
    (tmp_path / "plain").write_text("x")
    with pytest.raises(LedgerError):
        Ledger(str(tmp_path / "plain" / "ledger.json")).check_usable()


# -- a resume killed between its hypercalls and its ledger write -------------------------------

def test_a_resume_marks_resuming_before_its_hypercalls(tmp_path):
    world = World()
    guests = [world.add_domain(domid, "g%d" % domid) for domid in (3, 4, 5)]
    backends = world.backends(tmp_path)
    suspend(world, backends)
    seen = []
    real_resume = world.xenctrl.resume

    def resume_watching_the_ledger(domid, fast):
        seen.append((domid, [e["state"] for e in entries(tmp_path).values()]))
        real_resume(domid, fast)

    world.xenctrl.resume = resume_watching_the_ledger
    writes = backends.ledger.writes
    report = resume(world, backends)
    assert sorted(report.resumed) == ["g3", "g4", "g5"]
    assert all(states == ["resuming"] * 3 for _domid, states in seen), seen
    assert backends.ledger.writes - writes == 2  # the mark, then the removal: not one per domain
    assert entries(tmp_path) == {} and not any(g.suspended for g in guests)


def test_what_a_killed_resume_leaves_is_settled_at_once(tmp_path):
    world = World()
    guest = world.add_domain(3, "web1")
    backends = world.backends(tmp_path)
    entry = make_entry(guest.uuid, 3, "web1", "xenstore", intent_id="dead-3",
                       settle_by=backends.wall_clock() + 120)
    entry["state"] = "resuming"  # the killed resume's mark; the guest runs again
    backends.ledger.update(lambda e: e.update({guest.uuid: entry}))
    report = resume(world, backends, settle_timeout=60.0)
    result = result_of(report, "web1")
    assert result["error"] is None and not result["changed"]
    assert world.clock.now < 1001  # no waiting: "resuming" on a running domain is evidence
    assert entries(tmp_path) == {}


# -- issue 11, item 5: a guest that answers by removing its node can answer again -------------

def test_a_removed_control_node_is_recreated_owned_by_the_guest(tmp_path):
    world = World()
    guest = world.add_domain(3, "win1", behaviour="ack_remove")
    backends = world.backends(tmp_path)
    report = suspend(world, backends)
    assert report.suspended == ["win1"]
    assert world.xenstore.nodes[guest.control_path] == b""
    assert world.xenstore.perms[guest.control_path] == [b"n3"]
    assert any("re-created" in note for note in result_of(report, "win1")["notes"])


def test_an_interrupted_run_keeps_its_answered_guests_for_the_rest_of_their_timeout(tmp_path):
    """Found by trying it as an operator: a SIGTERM 0.5 s into a run (timeout 60) kept the
    answered guests' entries for only 5 s; the resume right after gave up on them green, and
    they suspended 10 s later with no entry."""
    world = World()
    answered = world.add_domain(3, "slow-freeze", suspend_delay=15.0)
    backends = world.backends(tmp_path)
    backends.interruption = Interruption()
    world.schedule(0.5, lambda: setattr(backends.interruption, "reason", "SIGTERM"))
    suspend(world, backends, continue_on_error=True)  # default timeout: 60 s
    assert not answered.suspended and answered.uuid in entries(tmp_path)

    report = resume(world, world.backends(tmp_path))  # at once, default settle_timeout
    assert report.resumed == ["slow-freeze"], report.results
    assert not answered.suspended and entries(tmp_path) == {}


def test_a_rebooted_guest_restarted_under_a_new_domid_is_not_waited_for(tmp_path):
    """Seen on real Xen 4.20: a killed run's intent, the guest rebooted, xl restarted it as a
    new domain with the same UUID; the resume waited its whole settle_timeout for it."""
    world = World()
    old = world.add_domain(3, "web1")
    backends = world.backends(tmp_path)
    backends.ledger.update(lambda e: e.update({old.uuid: make_entry(
        old.uuid, 3, "web1", "xenstore", intent_id="dead-3",
        settle_by=backends.wall_clock() + 120)}))
    old.destroyed = True
    world.add_domain(9, "web1", uuid=old.uuid)  # xl's restart: same name and UUID, new domid
    report = resume(world, backends, settle_timeout=60.0)
    assert result_of(report, "web1")["error"] is None
    assert world.clock.now < 1001 and entries(tmp_path) == {}
