# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The save engine on fakes: the order of ledger, image and destroy; every failure before the
destroy gives the guest back and leaves no image; refusals touch nothing."""

import os
import threading
import time

import pytest

from ansible_collections.xen.suspend.plugins.module_utils import _save_dir
from ansible_collections.xen.suspend.plugins.module_utils._inventory import DomainRecord
from ansible_collections.xen.suspend.plugins.module_utils._ledger import Ledger
from ansible_collections.xen.suspend.plugins.module_utils._save import (
    SaveEngine, SaveJob, saved_jobs, unmatched_problems)
from ansible_collections.xen.suspend.plugins.module_utils._save_dir import SaveDirError
from ansible_collections.xen.suspend.plugins.module_utils._errors import OptionError
from ansible_collections.xen.suspend.plugins.module_utils._save_image import check_image
from ansible_collections.xen.suspend.plugins.module_utils._targets import parse_selectors

from xen_fakes import World
from xl_fakes import FakeXl, file_mode, saveable


class Setup(object):
    def __init__(self, tmp_path, count=3, modes=None, destroy_fails=(), paused=(), **options):
        self.world = World()
        for domid in range(1, count + 1):
            saveable(self.world, domid, paused=domid in paused)
        self.backends = self.world.backends(tmp_path)
        self.backends.ledger.check_usable()  # as the module does first: the ledger's directory
        self.xl = FakeXl(self.world, modes, destroy_fails)
        self.save_dir = str(tmp_path / "save")
        options.setdefault("userdata_dir", str(tmp_path / "no-userdata"))
        self.engine = SaveEngine(self.backends, self.xl, self.save_dir, boot_id="boot-1", **options)

    def jobs(self, domids=None):
        domids = sorted(self.world.domains) if domids is None else domids
        return [SaveJob(DomainRecord(self.world.domains[d].info(), self.world.domains[d].name),
                        self.backends.clock) for d in domids if d != 0]

    def run(self, domids=None):
        self.report = self.engine.run(self.jobs(domids))
        self.results = dict((item["name"], item) for item in self.report.results)
        return self.report

    def ledger(self):
        return Ledger(self.backends.ledger.path).read()

    def files(self):
        return sorted(os.listdir(self.save_dir)) if os.path.isdir(self.save_dir) else []

    def domain(self, domid):
        return self.world.domains[domid]


def test_round_trip_in_parallel(tmp_path):
    s = Setup(tmp_path, count=3, parallel=3)
    report = s.run()
    assert sorted(report.changed_names) == ["guest1", "guest2", "guest3"]
    assert report.failed == []
    entries = s.ledger()
    for domid in (1, 2, 3):
        domain = s.domain(domid)
        assert domain.destroyed
        result = s.results[domain.name]
        assert result["after"] == "saved" and result["changed"] and result["error"] is None
        image = os.path.join(s.save_dir, domain.uuid + ".xlsave")
        assert result["image"] == image and file_mode(image) == 0o600
        info = check_image(image)
        assert info.uuid == domain.uuid and result["image_size"] == info.size
        assert result["mib_per_s"] > 0 and result["seconds"] is not None
        entry = entries[domain.uuid]
        assert (entry["state"], entry["image"], entry["image_size"], entry["image_xen"]) == (
            "saved", image, info.size, "4.17")
        assert entry["boot_id"] == "boot-1" and entry["xen_version"] == "4.17"
        assert entry["memory_kib"] == 4096 and "image_part" not in entry
    assert not any(name.endswith(".part") for name in s.files())
    assert file_mode(s.save_dir) == 0o700
    # xl save and xl destroy kept each guest's claim for as long as they ran
    assert len(s.xl.kept_fds) == 3 and all(len(fds) == 1 for fds in s.xl.kept_fds)
    assert sorted(s.xl.destroy_kept_fds) == sorted(s.xl.kept_fds)


def test_saving_is_on_disk_before_xl_runs_and_saved_before_the_destroy(tmp_path):
    s = Setup(tmp_path, count=1)
    seen = []
    save, destroy = s.xl.save, s.xl.destroy

    def checking_save(domid, path, timeout, keep_fds=()):
        entry = s.ledger()[s.domain(domid).uuid]
        seen.append(("save", entry["state"], entry["image_part"] == path, file_mode(path)))
        return save(domid, path, timeout, keep_fds)

    def checking_destroy(domid, timeout=60.0, keep_fds=()):
        entry = s.ledger()[s.domain(domid).uuid]
        seen.append(("destroy", entry["state"], os.path.exists(entry["image"])))
        return destroy(domid, timeout, keep_fds)

    s.xl.save, s.xl.destroy = checking_save, checking_destroy
    s.run()
    assert seen == [("save", "saving", True, 0o600), ("destroy", "saved", True)]


def test_sha256_is_recorded(tmp_path):
    import hashlib
    s = Setup(tmp_path, count=1, verify="sha256")
    s.run()
    uuid = s.domain(1).uuid
    with open(os.path.join(s.save_dir, uuid + ".xlsave"), "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    assert s.results["guest1"]["sha256"] == digest == s.ledger()[uuid]["image_sha256"]


def test_parallel_bounds_the_xl_processes_at_once(tmp_path):
    s = Setup(tmp_path, count=6, parallel=2)
    save = s.xl.save
    lock = threading.Lock()
    at_once = [0, 0]

    def slow_save(*args, **kwargs):
        with lock:
            at_once[0] += 1
            at_once[1] = max(at_once)
        time.sleep(0.05)  # xl at work: the other threads get to start theirs
        with lock:
            at_once[0] -= 1
        return save(*args, **kwargs)

    s.xl.save = slow_save
    s.run()
    assert len(s.report.changed_names) == 6
    assert at_once[1] == 2


def assert_given_back(s, domid):
    domain = s.domain(domid)
    assert not domain.destroyed and not domain.paused and domain.shutdown_code is None
    assert domain.uuid not in s.ledger()
    assert s.files() == []
    assert s.results[domain.name]["changed"] is False


def test_enospc_gives_the_guest_back_and_removes_the_partial_image(tmp_path):
    s = Setup(tmp_path, count=1, modes={1: "enospc"})
    s.run()
    error = s.results["guest1"]["error"]
    assert (error["kind"], error["phase"]) == ("xl_failed", "save")
    assert "No space left on device" in error["message"]
    assert error["message"].startswith("domain guest1 (domid 1), phase save: `xl save -p 1 ")
    assert_given_back(s, 1)
    assert ("unpause", 1) not in s.xl.calls  # xl resumed it itself: it was never paused


def test_a_killed_xl_leaves_the_guest_suspended_and_it_is_resumed(tmp_path):
    s = Setup(tmp_path, count=1, modes={1: "killed"})
    s.run()
    assert s.results["guest1"]["error"]["kind"] == "xl_timeout"
    assert_given_back(s, 1)
    assert s.world.xenctrl.resumed == [(1, True)]  # fast: a cancelled suspend
    assert any("resumed (cancelled suspend)" in note for note in s.results["guest1"]["notes"])
    assert s.results["guest1"]["after"] in ("running", "blocked")


def test_a_request_xl_left_unanswered_is_withdrawn(tmp_path):
    s = Setup(tmp_path, count=1, modes={1: "unanswered"})
    s.run()
    assert s.world.xenstore.nodes[s.domain(1).control_path] == b""
    assert any("withdrew" in note for note in s.results["guest1"]["notes"])
    assert_given_back(s, 1)


@pytest.mark.parametrize("mode", ["late", "answered_killed"])
def test_a_guest_that_took_the_request_keeps_an_entry_in_case_it_suspends_later(tmp_path, mode):
    s = Setup(tmp_path, count=1, modes={1: mode})
    s.run()
    domain = s.domain(1)
    entry = s.ledger()[domain.uuid]
    # an in-memory intent that every later run settles: resumed if it suspends, removed after
    # settle_by if it does not
    assert entry["state"] == "intent" and entry["settle_by"] and entry["pending"] == "xl_save_gave_up"
    assert "image" not in entry and s.files() == []
    assert not domain.destroyed and domain.shutdown_code is None
    message = s.results["guest1"]["error"]["message"]
    assert message.endswith("the guest runs (it may still suspend on its own: its ledger entry "
                            "stays for domain_resumed); no image was kept")
    # ... and when it does suspend, domain_resumed resumes it as the suspend of a stopped run
    from ansible_collections.xen.suspend.plugins.module_utils._inventory import list_records
    from ansible_collections.xen.suspend.plugins.module_utils._resume import ResumeEngine, plan_resume
    domain.shutdown_code = 2
    records = list_records(s.backends.xenctrl, s.backends.xenstore)
    report = ResumeEngine(s.backends, timeout=5.0).run(plan_resume(records, s.ledger(), []))
    assert report.resumed == ["guest1"] and domain.shutdown_code is None and s.ledger() == {}


def test_a_guest_that_never_took_xls_request_is_settled_at_once(tmp_path):
    s = Setup(tmp_path, count=1, modes={1: "enospc"})
    s.run()
    assert s.ledger() == {}
    assert s.results["guest1"]["error"]["message"].endswith("the guest runs again; no image was kept")


@pytest.mark.parametrize("mode", ["truncate", "wrong_uuid"])
def test_a_bad_image_is_refused_and_the_paused_guest_unpaused(tmp_path, mode):
    s = Setup(tmp_path, count=1, modes={1: mode})
    s.run()
    error = s.results["guest1"]["error"]
    assert (error["kind"], error["phase"]) == ("bad_image", "check")
    assert ("unpause", 1) in s.xl.calls
    assert ("destroy", 1) not in s.xl.calls
    assert_given_back(s, 1)


def test_xl_failing_before_the_suspend(tmp_path):
    s = Setup(tmp_path, count=1, modes={1: "fail_early"})
    s.run()
    assert "unable to retrieve domain configuration" in s.results["guest1"]["error"]["message"]
    assert_given_back(s, 1)


def test_a_failed_destroy_keeps_the_image_and_the_saved_entry(tmp_path):
    s = Setup(tmp_path, count=1, destroy_fails={1})
    s.run()
    error = s.results["guest1"]["error"]
    assert (error["kind"], error["phase"]) == ("destroy_failed", "destroy")
    domain = s.domain(1)
    assert domain.paused and not domain.destroyed
    assert s.ledger()[domain.uuid]["state"] == "saved"
    assert s.files() == [domain.uuid + ".xlsave"]


def test_a_failure_stops_further_saves_unless_continue_on_error(tmp_path):
    s = Setup(tmp_path, count=3, modes={1: "enospc"}, parallel=1)
    s.run()
    assert s.results["guest2"]["error"]["kind"] == "not_attempted"
    assert not s.domain(2).destroyed and not s.domain(3).destroyed
    (tmp_path / "b").mkdir()
    s = Setup(tmp_path / "b", count=3, modes={1: "enospc"}, parallel=1, continue_on_error=True)
    s.run()
    assert sorted(s.report.changed_names) == ["guest2", "guest3"]


def test_a_paused_guest_is_refused_before_any_guest_is_touched(tmp_path):
    s = Setup(tmp_path, count=3, paused={2})
    s.run()
    error = s.results["guest2"]["error"]
    assert (error["kind"], error["phase"]) == ("cannot_save", "preflight")
    assert "it is paused" in error["message"]
    assert [s.results[name]["error"]["kind"] for name in ("guest1", "guest3")] == ["not_attempted"] * 2
    assert s.xl.calls == []
    assert s.backends.ledger.writes == 0 and not os.path.exists(s.backends.ledger.path)
    assert not os.path.exists(s.save_dir) or s.files() == []
    assert not any(s.domain(d).destroyed or s.domain(d).shutdown_code for d in (1, 2, 3))
    assert s.report.stats["attempted"] == 0


def test_with_continue_on_error_the_others_are_saved(tmp_path):
    s = Setup(tmp_path, count=3, paused={2}, continue_on_error=True)
    s.run()
    assert sorted(s.report.changed_names) == ["guest1", "guest3"]
    assert s.domain(2).paused and not s.domain(2).destroyed


def test_a_guest_the_ledger_holds_in_memory_is_refused(tmp_path):
    s = Setup(tmp_path, count=1)
    uuid = s.domain(1).uuid
    s.backends.ledger.update(lambda entries: entries.update({uuid: {
        "uuid": uuid, "domid": 1, "name": "guest1", "state": "suspended", "method": "xenstore"}}))
    s.run()
    assert "domain_resumed first" in s.results["guest1"]["error"]["message"]
    assert s.ledger()[uuid]["state"] == "suspended"
    assert s.xl.calls == []


def test_a_claimed_guest_is_busy(tmp_path):
    s = Setup(tmp_path, count=2, continue_on_error=True)
    claim = s.backends.claims.acquire(s.domain(1).uuid)
    try:
        s.run()
    finally:
        claim.release()
    error = s.results["guest1"]["error"]
    assert (error["kind"], error["phase"]) == ("busy", "lock")
    assert s.report.changed_names == ["guest2"]


def test_check_mode_touches_nothing(tmp_path):
    s = Setup(tmp_path, count=2, check_mode=True)
    s.run()
    assert sorted(s.report.changed_names) == ["guest1", "guest2"]
    assert s.xl.calls == [] and not os.path.exists(s.save_dir)
    assert not os.path.exists(s.backends.ledger.path)
    assert all("check mode" in s.results[n]["notes"][0] for n in ("guest1", "guest2"))


def test_check_mode_still_refuses(tmp_path):
    s = Setup(tmp_path, count=2, check_mode=True, paused={1})
    s.run()
    assert s.results["guest1"]["error"]["kind"] == "cannot_save"


def test_not_enough_space_touches_nothing(tmp_path, monkeypatch):
    s = Setup(tmp_path, count=2)
    monkeypatch.setattr(_save_dir, "free_bytes", lambda path: 100 * 1024 * 1024)
    with pytest.raises(SaveDirError, match="not enough free space"):
        s.run()
    assert s.xl.calls == [] and not os.path.exists(s.backends.ledger.path)


def test_an_unusable_save_dir_touches_nothing(tmp_path):
    s = Setup(tmp_path, count=1)
    os.makedirs(s.save_dir, 0o777)
    os.chmod(s.save_dir, 0o777)
    with pytest.raises(SaveDirError, match="writable"):
        s.run()
    assert s.xl.calls == []


def test_an_interrupted_run_starts_no_save(tmp_path):
    s = Setup(tmp_path, count=2)

    class Stop(object):
        reason = "SIGTERM"

    s.backends.interruption = Stop()
    s.run()
    assert s.report.interrupted == "SIGTERM"
    assert s.xl.calls == []
    assert all(item["error"]["kind"] == "not_attempted" for item in s.report.results)


@pytest.mark.parametrize("options, words", [
    ({"parallel": -1}, "parallel"), ({"timeout": 0}, "timeout"), ({"verify": "md5"}, "verify"),
    ({"space_margin_mb": -1}, "space_margin_mb"),
])
def test_bad_options(tmp_path, options, words):
    with pytest.raises(OptionError, match=words):
        Setup(tmp_path, **options)


def test_guests_already_saved_are_found_by_name_uuid_or_pattern():
    entries = {
        "u1": {"uuid": "u1", "name": "web1", "state": "saved", "domid": 3, "image": "/s/u1.xlsave"},
        "u2": {"uuid": "u2", "name": "db1", "state": "saving", "domid": 4},
        "u3": {"uuid": "u3", "name": "web2", "state": "saved", "domid": 5},
    }
    found = saved_jobs(entries, {"u3"}, parse_selectors(["web*"]), [], time.monotonic)
    assert [job.display_name for job in found] == ["web1"]
    assert found[0].result()["after"] == "saved" and found[0].result()["changed"] is False
    assert saved_jobs(entries, set(), parse_selectors(["web1"]), parse_selectors(["web1"]), time.monotonic) == []
    named = saved_jobs(entries, set(), parse_selectors(["web1", "nosuch"]), [], time.monotonic)
    assert unmatched_problems(parse_selectors(["web1", "nosuch"]), named) == [
        "no domain or saved guest matches name 'nosuch'"]


def test_threads_do_not_outlive_the_run(tmp_path):
    before = set(threading.enumerate())
    Setup(tmp_path, count=3, parallel=3).run()
    assert not [t for t in threading.enumerate() if t not in before and t.name.startswith("xen-suspend-save")]
