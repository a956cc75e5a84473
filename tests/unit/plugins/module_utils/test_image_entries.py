# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Ledger entries of guests saved to disk: their transitions, the per-UUID claim, what
recovery does with what a stopped save or restore left, and how the in-memory suspend and
resume keep away from them."""

import os
import subprocess
import sys

import pytest

from ansible_collections.xen.suspend.plugins.module_utils._domain_claim import DomainClaims
from ansible_collections.xen.suspend.plugins.module_utils._errors import DomainBusy, LedgerError
from ansible_collections.xen.suspend.plugins.module_utils._image_recovery import (
    ACTION_BUSY, ACTION_RETURNED, ACTION_SETTLED, ACTION_WAIT, image_verdict)
from ansible_collections.xen.suspend.plugins.module_utils._ledger import (
    STATE_INTENT, STATE_RESTORING, STATE_SAVED, STATE_SAVING, STATE_SUSPENDED, make_entry,
    make_save_entry)
from ansible_collections.xen.suspend.plugins.module_utils._ledger_transitions import (
    FOUND_RUNNING, RESTORED, SAVE_ABANDONED, MarkRestoring, MarkSaved, RecordIntent,
    RecordSaving, ReturnToSaved, Settle, apply_transitions)
from ansible_collections.xen.suspend.plugins.module_utils._recovery import recover
from ansible_collections.xen.suspend.plugins.module_utils._restore import RestoreEngine, RestoreJob
from ansible_collections.xen.suspend.plugins.module_utils._resume import plan_resume
from ansible_collections.xen.suspend.plugins.module_utils._inventory import list_records
from ansible_collections.xen.suspend.plugins.module_utils._suspend_engine import SuspendEngine
from ansible_collections.xen.suspend.plugins.module_utils._targets import parse_selectors
from ansible_collections.xen.suspend.plugins.module_utils._xl_processes import xl_destroying, xl_working_on

from xen_fakes import World
from xl_fakes import FakeXl as RecordingXl

SHUTDOWN_SUSPEND = 2


class FakeXl(object):
    """What recovery asks of xl; records the calls."""

    def __init__(self, world):
        self.world = world
        self.calls = []

    def unpause(self, domid, timeout=60):
        self.calls.append(("unpause", domid))
        self.world.domains[domid].paused = False

    def destroy(self, domid, timeout=60):
        self.calls.append(("destroy", domid))
        self.world.domains[domid].destroyed = True


def _save_entry(tmp_path, domain, state=STATE_SAVING, intent_id="run-1"):
    image = str(tmp_path / "save" / (domain.uuid + ".xlsave"))
    entry = make_save_entry(domain.uuid, domain.domid, domain.name, image, intent_id)
    entry["state"] = state
    return entry


def _setup(tmp_path, state, **domain_kwargs):
    world = World()
    domain = world.add_domain(5, "web-1", **domain_kwargs)
    backends = world.backends(tmp_path)
    backends.xl = FakeXl(world)
    backends.xl_working_on = lambda path: []
    (tmp_path / "save").mkdir()
    entry = _save_entry(tmp_path, domain, state)
    backends.ledger.update(lambda entries: entries.__setitem__(entry["uuid"], entry))
    return world, domain, backends, entry


def _recover_with_a_destroy_right_after_the_unpause(world, backends):
    """Recovery, while a stopped run's xl destroy takes the domain just after recovery's
    unpause; the report must say the guest does not run."""
    real_unpause = backends.xl.unpause

    def unpause_then_destroyed(domid, timeout=60):
        real_unpause(domid, timeout)
        world.domains[domid].destroyed = True
    backends.xl.unpause = unpause_then_destroyed
    report = recover(backends, backends.ledger.read())
    assert any("does not run after the unpause" in error for error in report.errors), report.errors
    return report


# -- transitions --------------------------------------------------------------------------------

def test_a_save_goes_saving_saved_restoring_and_is_settled_restored(tmp_path):
    world = World()
    domain = world.add_domain(5, "web-1")
    ledger = world.backends(tmp_path).ledger
    entry = _save_entry(tmp_path, domain)
    apply_transitions(ledger, [RecordSaving(entry)])
    assert ledger.read()[domain.uuid]["state"] == STATE_SAVING
    assert ledger.read()[domain.uuid]["image_part"].endswith(".xlsave.part")
    apply_transitions(ledger, [MarkSaved(domain.uuid, "run-1", 4096, "ab" * 32, "4.17")])
    saved = ledger.read()[domain.uuid]
    assert (saved["state"], saved["image_size"], saved["image_xen"]) == (STATE_SAVED, 4096, "4.17")
    assert "image_part" not in saved and saved["saved_at"]
    apply_transitions(ledger, [MarkRestoring(domain.uuid, "run-1")])
    assert ledger.read()[domain.uuid]["state"] == STATE_RESTORING
    apply_transitions(ledger, [ReturnToSaved(domain.uuid, "run-1", "xl restore failed")])
    back = ledger.read()[domain.uuid]
    assert back["state"] == STATE_SAVED and back["last_restore_error"] == "xl restore failed"
    apply_transitions(ledger, [MarkRestoring(domain.uuid, "run-1")])
    assert ledger.read()[domain.uuid]["restore_attempts"] == 2
    apply_transitions(ledger, [Settle(domain.uuid, "run-1", RESTORED)])
    assert ledger.read() == {}


def test_mark_saved_only_follows_its_own_saving_entry(tmp_path):
    world = World()
    domain = world.add_domain(5, "web-1")
    ledger = world.backends(tmp_path).ledger
    apply_transitions(ledger, [RecordSaving(_save_entry(tmp_path, domain, intent_id="new-run"))])
    apply_transitions(ledger, [MarkSaved(domain.uuid, "old-run", 10)])
    assert ledger.read()[domain.uuid]["state"] == STATE_SAVING


def test_an_in_memory_suspend_and_a_save_never_overwrite_each_other(tmp_path):
    world = World()
    domain = world.add_domain(5, "web-1")
    ledger = world.backends(tmp_path).ledger
    intent = make_entry(domain.uuid, 5, "web-1", "xenstore", intent_id="suspend-run")
    apply_transitions(ledger, [RecordIntent(intent)])
    apply_transitions(ledger, [RecordSaving(_save_entry(tmp_path, domain))])
    assert ledger.read()[domain.uuid]["state"] == STATE_INTENT
    apply_transitions(ledger, [Settle(domain.uuid, "suspend-run", "never_sent")])
    apply_transitions(ledger, [RecordSaving(_save_entry(tmp_path, domain))])
    apply_transitions(ledger, [RecordIntent(intent)])
    assert ledger.read()[domain.uuid]["state"] == STATE_SAVING


def test_a_ledger_with_image_entries_reads_back(tmp_path):
    world = World()
    domain = world.add_domain(5, "web-1")
    ledger = world.backends(tmp_path).ledger
    for state in (STATE_SAVING, STATE_SAVED, STATE_RESTORING):
        entry = _save_entry(tmp_path, domain, state)
        ledger.update(lambda entries: entries.__setitem__(entry["uuid"], entry))
        assert ledger.read()[domain.uuid]["state"] == state


# -- the claim ----------------------------------------------------------------------------------

UUID = "0000abcd-0000-0000-0000-000000000005"


def test_a_claim_is_exclusive_and_goes_with_its_holder(tmp_path):
    claims = DomainClaims(str(tmp_path))
    held = claims.acquire(UUID)
    with pytest.raises(DomainBusy):
        claims.acquire(UUID)
    # another process cannot take it either
    code = ("import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR)\n"
            "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept OSError:\n    sys.exit(3)\n")
    assert subprocess.call([sys.executable, "-c", code, claims.path(UUID)]) == 3
    held.release()
    assert subprocess.call([sys.executable, "-c", code, claims.path(UUID)]) == 0
    claims.acquire(UUID).release()
    assert oct(os.stat(os.path.join(str(tmp_path), "claims")).st_mode & 0o777) == "0o700"


def test_a_claim_is_only_ever_for_a_uuid(tmp_path):
    with pytest.raises(LedgerError):
        DomainClaims(str(tmp_path)).acquire("../../etc/passwd")


# -- recovery's decisions -----------------------------------------------------------------------

class _Info(object):
    def __init__(self, domid=5, paused=False, suspended=False, shut_down=False, dying=False):
        self.domid = domid
        self.paused = paused
        self.suspended = suspended
        self.shut_down = shut_down or suspended
        self.dying = dying
        self.state = "suspended" if suspended else "paused" if paused else "running"


@pytest.mark.parametrize("state, info, action, reason, what", [
    (STATE_SAVING, None, ACTION_WAIT, "vanished_while_saving", ()),
    (STATE_SAVING, _Info(suspended=True), ACTION_SETTLED, SAVE_ABANDONED, ("bring_back", "unpause", "remove_image")),
    (STATE_SAVING, _Info(paused=True), ACTION_SETTLED, SAVE_ABANDONED, ("unpause", "remove_image")),
    (STATE_SAVING, _Info(), ACTION_SETTLED, SAVE_ABANDONED, ("remove_image", "late")),
    (STATE_SAVED, None, ACTION_WAIT, "saved", ()),
    (STATE_SAVED, _Info(paused=True), ACTION_SETTLED, SAVE_ABANDONED, ("unpause", "remove_image")),
    (STATE_SAVED, _Info(), ACTION_SETTLED, FOUND_RUNNING, ("set_aside",)),
    (STATE_SAVED, _Info(domid=9, paused=True), ACTION_SETTLED, FOUND_RUNNING, ("set_aside",)),
    (STATE_RESTORING, None, ACTION_RETURNED, None, ("return_to_saved",)),
    (STATE_RESTORING, _Info(domid=9, paused=True), ACTION_SETTLED, RESTORED, ("unpause", "archive")),
    (STATE_RESTORING, _Info(domid=9), ACTION_SETTLED, RESTORED, ("archive",)),
])
def test_image_verdicts(state, info, action, reason, what):
    entry = {"uuid": UUID, "domid": 5, "state": state}
    step = image_verdict(entry, info)
    assert (step.action, step.reason) == (action, reason)
    flags = ("bring_back", "unpause", "remove_image", "set_aside", "archive", "return_to_saved", "late")
    assert set(flag for flag in flags if getattr(step, flag)) == set(what)


def test_a_save_killed_mid_copy_leaves_the_guest_running_and_no_partial_image(tmp_path):
    world, domain, backends, entry = _setup(tmp_path, STATE_SAVING)
    domain.shutdown_code = SHUTDOWN_SUSPEND  # xl was killed while the guest was suspended
    domain.paused = True
    with open(entry["image_part"], "wb") as part:
        part.write(b"half an image")
    report = recover(backends, backends.ledger.read())
    assert [a["action"] for a in report.actions] == [ACTION_SETTLED]
    assert not domain.suspended and not domain.paused and domain.resumes == [True]
    assert not os.path.exists(entry["image_part"])
    assert backends.ledger.read() == {}


def test_an_xl_still_at_work_keeps_recovery_away(tmp_path):
    world, domain, backends, entry = _setup(tmp_path, STATE_SAVING)
    domain.shutdown_code = SHUTDOWN_SUSPEND
    backends.xl_working_on = lambda path: [4242] if path == entry["image_part"] else []
    report = recover(backends, backends.ledger.read())
    assert report.actions[0]["action"] == ACTION_BUSY and "4242" in report.actions[0]["detail"]
    assert domain.suspended and backends.ledger.read()[domain.uuid]["state"] == STATE_SAVING


def test_a_run_holding_the_claim_keeps_recovery_away(tmp_path):
    world, domain, backends, entry = _setup(tmp_path, STATE_SAVING)
    domain.paused = True
    held = backends.claims.acquire(domain.uuid)
    try:
        report = recover(backends, backends.ledger.read())
    finally:
        held.release()
    assert report.actions[0]["action"] == ACTION_BUSY
    assert domain.paused and backends.xl.calls == []


def test_a_saved_guest_is_left_for_the_restore_and_its_image_kept(tmp_path):
    world, domain, backends, entry = _setup(tmp_path, STATE_SAVED)
    domain.destroyed = True
    with open(entry["image"], "wb") as image:
        image.write(b"image")
    report = recover(backends, backends.ledger.read())
    assert report.actions[0]["action"] == ACTION_WAIT and not report.changed
    assert os.path.exists(entry["image"]) and backends.ledger.read()[domain.uuid]["state"] == STATE_SAVED


def test_a_saved_guest_never_destroyed_runs_again_and_its_image_goes(tmp_path):
    world, domain, backends, entry = _setup(tmp_path, STATE_SAVED, paused=True)
    with open(entry["image"], "wb") as image:
        image.write(b"image")
    recover(backends, backends.ledger.read())
    assert not domain.paused and backends.xl.calls == [("unpause", 5)]
    assert not os.path.exists(entry["image"]) and backends.ledger.read() == {}


def test_a_saved_guest_destroyed_by_a_stopped_runs_xl_destroy_keeps_its_image_and_entry(tmp_path):
    """A killed save run's xl destroy goes on in its own session. Seen in the campaign sample:
    recovery unpaused the guest, the orphaned destroy then took it, and the image was removed:
    the guest was lost. Now an xl destroy still at work keeps recovery away, and an image goes
    only while its guest is seen running after the unpause."""
    world, domain, backends, entry = _setup(tmp_path, STATE_SAVED, paused=True)
    with open(entry["image"], "wb") as image:
        image.write(b"image")
    backends.xl_destroying = lambda domid: [4343] if domid == 5 else []
    report = recover(backends, backends.ledger.read())
    assert report.actions[0]["action"] == ACTION_BUSY and "4343" in report.actions[0]["detail"]
    assert domain.paused and backends.xl.calls == [] and os.path.exists(entry["image"])

    # the destroy lands between our unpause and the removal: image and entry stay
    backends.xl_destroying = lambda domid: []
    report = _recover_with_a_destroy_right_after_the_unpause(world, backends)
    assert os.path.exists(entry["image"]), report.errors
    assert backends.ledger.read()[domain.uuid]["state"] == STATE_SAVED


def test_a_stale_image_is_set_aside_never_deleted(tmp_path):
    world, domain, backends, entry = _setup(tmp_path, STATE_SAVED)
    domain.destroyed = True
    world.add_domain(9, "web-1", uuid=domain.uuid)  # cold-booted meanwhile
    with open(entry["image"], "wb") as image:
        image.write(b"image")
    report = recover(backends, backends.ledger.read())
    assert report.actions[0]["reason"] == FOUND_RUNNING
    kept = [name for name in os.listdir(str(tmp_path / "save")) if ".stale-" in name]
    assert len(kept) == 1 and backends.ledger.read() == {}


def test_a_restore_killed_after_xl_finished_is_completed(tmp_path):
    world, domain, backends, entry = _setup(tmp_path, STATE_RESTORING)
    domain.destroyed = True
    restored = world.add_domain(9, "web-1", uuid=domain.uuid, paused=True)
    with open(entry["image"], "wb") as image:
        image.write(b"image")
    recover(backends, backends.ledger.read())
    assert not restored.paused and backends.xl.calls == [("unpause", 9)]
    assert not os.path.exists(entry["image"]) and backends.ledger.read() == {}


def test_a_restored_guest_gone_after_recoverys_unpause_keeps_its_image_and_entry(tmp_path):
    """A stopped restore left the domain paused; recovery unpauses it, and before the image
    goes the domain is gone (a failed restore's undo, xl destroy, outlived its run): the image
    is all that is left of the guest, so it stays, and so does the entry."""
    world, domain, backends, entry = _setup(tmp_path, STATE_RESTORING)
    domain.destroyed = True
    world.add_domain(9, "web-1", uuid=domain.uuid, paused=True)
    with open(entry["image"], "wb") as image:
        image.write(b"image")
    report = _recover_with_a_destroy_right_after_the_unpause(world, backends)
    assert os.path.exists(entry["image"]), report.errors
    assert backends.ledger.read()[domain.uuid]["state"] == STATE_RESTORING
    # the next run finds no domain: the image is saved again, for domain_restored
    report = recover(backends, backends.ledger.read())
    assert report.actions[0]["action"] == ACTION_RETURNED
    assert os.path.exists(entry["image"]) and backends.ledger.read()[domain.uuid]["state"] == STATE_SAVED


def test_a_restore_that_created_nothing_goes_back_to_saved_with_its_image(tmp_path):
    world, domain, backends, entry = _setup(tmp_path, STATE_RESTORING)
    domain.destroyed = True
    with open(entry["image"], "wb") as image:
        image.write(b"image")
    report = recover(backends, backends.ledger.read())
    assert report.actions[0]["action"] == ACTION_RETURNED and report.changed
    assert os.path.exists(entry["image"]) and backends.ledger.read()[domain.uuid]["state"] == STATE_SAVED


def test_check_mode_recovery_touches_nothing(tmp_path):
    world, domain, backends, entry = _setup(tmp_path, STATE_SAVING, paused=True)
    report = recover(backends, backends.ledger.read(), act=False)
    assert report.actions[0]["action"] == ACTION_SETTLED
    assert domain.paused and backends.xl.calls == [] and backends.ledger.read()[domain.uuid]


# -- the in-memory suspend and resume keep away -------------------------------------------------

def test_domain_suspended_refuses_a_guest_being_saved(tmp_path):
    world, domain, backends, entry = _setup(tmp_path, STATE_SAVING)
    records = list_records(backends.xenctrl, backends.xenstore)
    target = [record for record in records if record.domid == 5]
    report = SuspendEngine(backends, timeout=5.0).run(target, [])
    result = report.module_result()["domains"][0]
    assert result["error"]["kind"] == "saved_to_disk"
    assert world.domains[5].requests == 0
    assert backends.ledger.read()[domain.uuid]["state"] == STATE_SAVING


def test_domain_resumed_leaves_saved_guests_to_the_restore(tmp_path):
    world, domain, backends, entry = _setup(tmp_path, STATE_SAVED)
    domain.destroyed = True
    other = world.add_domain(6, "db-1")
    other.shutdown_code = SHUTDOWN_SUSPEND
    suspended = make_entry(other.uuid, 6, "db-1", "xenstore", state=STATE_SUSPENDED)
    backends.ledger.update(lambda entries: entries.__setitem__(other.uuid, suspended))
    records = list_records(backends.xenctrl, backends.xenstore, names_for=None)
    plan = plan_resume(records, backends.ledger.read(), [])
    assert [job.uuid for job in plan.jobs] == [other.uuid] and plan.vanished == []
    plan = plan_resume(records, backends.ledger.read(), parse_selectors(["*"]))
    assert [job.uuid for job in plan.jobs] == [other.uuid]
    with pytest.raises(Exception) as failure:
        plan_resume(records, backends.ledger.read(), parse_selectors(["web-1"]))
    assert "domain_restored" in str(failure.value)


def test_live_xl_processes_on_an_image_are_found(tmp_path):
    proc = tmp_path / "proc"
    image = "/var/lib/xen-suspend/save/x.xlsave"
    for pid, argv in ((10, ["/usr/sbin/xl", "save", "-p", "5", image + ".part"]),
                      (11, ["/usr/bin/python3", "/opt/sim/bin/xl", "restore", "-p", image]),
                      (12, ["/usr/bin/vim", image]),
                      (13, ["/usr/sbin/xl", "list"]),
                      (14, ["/usr/sbin/xl", "destroy", "5"]),
                      (15, ["/usr/bin/vim", "destroy", "7"])):
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (proc / "self").mkdir()
    assert xl_working_on(image, str(proc)) == [11]
    assert xl_working_on(image + ".part", str(proc)) == [10]
    assert xl_working_on("", str(proc)) == []
    assert xl_destroying(5, str(proc)) == [14]
    assert xl_destroying(7, str(proc)) == [] and xl_destroying(None, str(proc)) == []


class FakeMonitors(object):
    def __init__(self):
        self.thawed = []

    def state(self, monitor):
        return "frozen" if monitor["pid"] not in self.thawed else "running"

    def thaw(self, monitor):
        self.thawed.append(monitor["pid"])
        return True


def test_a_killed_saves_frozen_monitor_is_continued_with_its_guest(tmp_path):
    world, domain, backends, entry = _setup(tmp_path, STATE_SAVING, paused=True)
    entry["lifecycle_monitor"] = {"toolstack": "xl", "pid": 77, "start_time": 5, "state": "frozen"}
    backends.ledger.update(lambda entries: entries.__setitem__(entry["uuid"], entry))
    backends.monitors = FakeMonitors()
    report = recover(backends, backends.ledger.read())
    assert backends.monitors.thawed == [77] and "continued" in report.actions[0]["detail"]
    assert not domain.paused and backends.ledger.read() == {}


def test_a_destroyed_guests_frozen_monitor_is_continued_so_that_it_exits(tmp_path):
    world, domain, backends, entry = _setup(tmp_path, STATE_SAVED)
    domain.destroyed = True
    entry["lifecycle_monitor"] = {"toolstack": "xl", "pid": 78, "start_time": 5, "state": "frozen"}
    backends.ledger.update(lambda entries: entries.__setitem__(entry["uuid"], entry))
    backends.monitors = FakeMonitors()
    recover(backends, backends.ledger.read())
    assert backends.monitors.thawed == [78]
    assert backends.ledger.read()[domain.uuid]["state"] == STATE_SAVED


def test_a_stopped_saves_running_guest_that_took_the_request_is_watched_for_a_late_suspend(tmp_path):
    world, domain, backends, entry = _setup(tmp_path, STATE_SAVING)
    world.xenstore.nodes[domain.control_path] = b""  # answered (or never asked: it cannot tell)
    with open(entry["image_part"], "wb") as part:
        part.write(b"half")
    report = recover(backends, backends.ledger.read())
    assert (report.actions[0]["action"], report.actions[0]["reason"]) == ("left_for_resume", "may_still_suspend")
    left = backends.ledger.read()[domain.uuid]
    assert left["state"] == STATE_INTENT and left["settle_by"] and "image" not in left
    assert not os.path.exists(entry["image_part"])


def test_a_stopped_saves_unanswered_request_is_withdrawn_and_the_entry_settled(tmp_path):
    world, domain, backends, entry = _setup(tmp_path, STATE_SAVING)
    world.xenstore.nodes[domain.control_path] = b"suspend"
    report = recover(backends, backends.ledger.read())
    assert report.actions[0]["reason"] == SAVE_ABANDONED and "withdrawn" in report.actions[0]["detail"]
    assert world.xenstore.nodes[domain.control_path] == b"" and backends.ledger.read() == {}


def test_a_failed_restores_undo_destroys_with_the_claim_handed_to_xl(tmp_path):
    """What a failed restore left is destroyed by an xl that holds the guest's claim, as a
    save's destroy does: killed meanwhile, that xl keeps recovery off the domain."""
    world, domain, backends, entry = _setup(tmp_path, STATE_RESTORING)
    domain.destroyed = True
    half = world.add_domain(9, "web-1", uuid=domain.uuid, paused=True)
    backends.xl = RecordingXl(world)
    claim = backends.claims.acquire(domain.uuid)
    try:
        job = RestoreJob(backends.ledger.read()[domain.uuid], backends.clock)
        job.claim_fds = (claim.fd,)
        RestoreEngine(backends)._undo(job, half.info(), "xl restore failed")
        assert backends.xl.destroy_kept_fds == [(claim.fd,)] and half.destroyed
        assert backends.ledger.read()[domain.uuid]["state"] == STATE_SAVED
    finally:
        claim.release()
