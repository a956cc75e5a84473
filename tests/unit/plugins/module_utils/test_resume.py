# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

import json

import pytest

from ansible_collections.xen.suspend.plugins.module_utils._errors import TargetError
from ansible_collections.xen.suspend.plugins.module_utils._inventory import list_records
from ansible_collections.xen.suspend.plugins.module_utils._resume import ResumeEngine, plan_resume
from ansible_collections.xen.suspend.plugins.module_utils._targets import parse_selectors

from xen_fakes import FakeLocks, World
from xen_fakes import run_suspend


def resume(world, tmp_path, selectors=(), force=False, locks=None, **options):
    backends = world.backends(tmp_path, locks=locks)
    records = list_records(world.xenctrl, world.xenstore)
    plan = plan_resume(records, backends.ledger.read(), parse_selectors(list(selectors)),
                       force_unrecorded=force, clock=backends.clock)
    return ResumeEngine(backends, **options).run(plan)


def entries(tmp_path):
    path = tmp_path / "ledger" / "ledger.json"
    return json.loads(path.read_text())["entries"] if path.exists() else {}


def test_round_trip_resumes_exactly_what_was_suspended(tmp_path):
    world = World()
    a = world.add_domain(1, "xs")
    b = world.add_domain(2, "ev", evtchn_port=5, behaviour="ignore")
    c = world.add_domain(3, "hvm", hvm=True)
    other = world.add_domain(4, "other")
    run_suspend(world, tmp_path, targets=["xs", "ev", "hvm"])
    other.shutdown_code = 2  # suspended by somebody else: must stay suspended

    report = resume(world, tmp_path)
    assert sorted(report.resumed) == ["ev", "hvm", "xs"]
    assert not (a.suspended or b.suspended or c.suspended)
    assert other.suspended
    # cooperative resume for guests that made the hypercall, plain resume after direct
    assert sorted(world.xenctrl.resumed) == [(1, True), (2, True), (3, False)]
    assert sorted(world.xenstore.resumed) == [1, 2, 3]  # XS_RESUME for each
    assert entries(tmp_path) == {}
    result = report.results[0]
    assert list(result["phases"]) == ["lookup", "lock", "resume", "verify"]
    assert result["after"] == "blocked" and result["recorded"]


def test_resume_is_idempotent(tmp_path):
    world = World()
    world.add_domain(1, "xs")
    run_suspend(world, tmp_path)
    assert resume(world, tmp_path).changed
    again = resume(world, tmp_path)
    assert not again.changed and again.results == []


def test_running_domain_with_intent_entry_is_unchanged_and_cleaned(tmp_path):
    world = World()
    guest = world.add_domain(1, "mute", behaviour="ignore")
    world.add_domain(2, "keep", ack_delay=5.0)  # keeps the run busy while we look
    backends = world.backends(tmp_path)
    backends.ledger.update(lambda e: e.update({guest.uuid: {
        "uuid": guest.uuid, "domid": 1, "name": "mute", "method": "xenstore", "state": "intent",
        "resume_fast": True, "intent_at": "2025-01-01T00:00:00Z", "suspended_at": None}}))
    report = resume(world, tmp_path)
    assert report.unchanged == ["mute"] and not report.changed
    assert world.xenctrl.resumed == []
    assert guest.uuid not in entries(tmp_path)


def test_unrecorded_suspended_domain_needs_force(tmp_path):
    world = World()
    guest = world.add_domain(1, "saved")
    guest.shutdown_code = 2
    with pytest.raises(TargetError) as caught:
        resume(world, tmp_path, selectors=["saved"])
    assert "force_unrecorded" in str(caught.value)
    assert world.xenctrl.resumed == []
    report = resume(world, tmp_path, selectors=["saved"], force=True)
    assert report.resumed == ["saved"]
    assert world.xenctrl.resumed == [(1, True)]
    assert report.results[0]["recorded"] is False


def test_default_run_ignores_unrecorded_domains(tmp_path):
    world = World()
    guest = world.add_domain(1, "saved")
    guest.shutdown_code = 2
    report = resume(world, tmp_path)
    assert report.results == [] and guest.suspended


def test_vanished_entries_are_reported_and_pruned_on_request(tmp_path):
    world = World()
    guest = world.add_domain(1, "gone")
    run_suspend(world, tmp_path)
    guest.destroyed = True
    report = resume(world, tmp_path)
    assert [item["name"] for item in report.vanished] == ["gone"]
    assert guest.uuid in entries(tmp_path)
    report = resume(world, tmp_path, selectors=["gone"], prune_vanished=True)
    assert [item["uuid"] for item in report.vanished] == [guest.uuid]
    assert entries(tmp_path) == {}


def test_domain_restored_under_new_domid_is_found_by_uuid(tmp_path):
    world = World()
    guest = world.add_domain(1, "moved")
    run_suspend(world, tmp_path)
    del world.domains[1]
    moved = world.add_domain(9, "moved", uuid=guest.uuid)
    moved.shutdown_code = 2
    report = resume(world, tmp_path)
    assert report.resumed == ["moved"] and report.results[0]["domid"] == 9
    assert world.xenctrl.resumed == [(9, True)]


def test_other_shutdown_reason_is_not_resumed(tmp_path):
    world = World()
    guest = world.add_domain(1, "off")
    run_suspend(world, tmp_path)
    guest.shutdown_code = 0
    report = resume(world, tmp_path, continue_on_error=True)
    error = report.results[0]["error"]
    assert error["kind"] == "not_suspended" and "poweroff" in error["message"]
    assert error["phase"] == "lookup"
    assert world.xenctrl.resumed == []
    # not suspended because of us any more: the entry goes, xl handles the poweroff
    assert guest.uuid not in entries(tmp_path)


def test_resume_failure_names_domain_and_phase_and_keeps_entry(tmp_path):
    world = World()
    guest = world.add_domain(1, "web1")
    world.add_domain(2, "web2")
    run_suspend(world, tmp_path)
    world.xenctrl.fail["xc_domain_resume"] = 22
    report = resume(world, tmp_path, continue_on_error=False, parallel=1)
    first, second = report.results
    assert first["error"]["phase"] == "resume" and "web1 (domid 1)" in first["error"]["message"]
    assert first["error"]["errno"] == "EINVAL"
    assert second["error"]["kind"] == "not_attempted"
    assert guest.uuid in entries(tmp_path)


def test_busy_lock_blocks_resume(tmp_path):
    world = World()
    world.add_domain(1, "web1")
    run_suspend(world, tmp_path)
    report = resume(world, tmp_path, locks=FakeLocks(busy={1}))
    assert report.results[0]["error"]["kind"] == "busy"
    assert world.xenctrl.resumed == []


def test_check_mode_resumes_nothing(tmp_path):
    world = World()
    guest = world.add_domain(1, "web1")
    run_suspend(world, tmp_path)
    before = entries(tmp_path)
    report = resume(world, tmp_path, check_mode=True)
    assert report.resumed == ["web1"] and report.results[0]["after"] == "running"
    assert guest.suspended and world.xenctrl.resumed == []
    assert entries(tmp_path) == before


def test_protected_recorded_domain_is_skipped(tmp_path):
    world = World()
    world.add_domain(1, "dns1")
    run_suspend(world, tmp_path)
    backends = world.backends(tmp_path)
    records = list_records(world.xenctrl, world.xenstore)
    plan = plan_resume(records, backends.ledger.read(), [], protected=parse_selectors(["dns*"]))
    assert plan.jobs == [] and plan.skipped[0]["name"] == "dns1"


def test_unknown_selector_is_an_error(tmp_path):
    world = World()
    with pytest.raises(TargetError) as caught:
        resume(world, tmp_path, selectors=["nosuch"])
    assert "nosuch" in str(caught.value)
