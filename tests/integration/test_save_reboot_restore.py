"""Save to disk, reboot the (simulated) dom0, restore: domain_saved and domain_restored against the
simulator's xl, which writes and reads real save images. The guests come back with their name and
UUID, a new domid, and memory that continues (the heartbeat goes on from its saved value); the
images go only once their guests run. Then what a restore must refuse, keeping image and entry."""

import os

from xsim_harness import by_name, wait_until, xensim_cli

SPEC = {
    "quiesce_ms": 60, "jitter_ms": 20, "heartbeat_ms": 100,
    "xl": {"suspend_timeout_ms": 3000},
    "guests": [
        {"behaviour": "linux-pv", "name": "db-1"},
        {"behaviour": "linux-pv", "name": "web-1"},
        {"behaviour": "linux-pv", "name": "web-2"},
        {"behaviour": "linux-pv", "name": "stays"},
    ],
}


def _defaults(sim, runner):
    return runner.defaults(save_dir=os.path.join(sim.dir, "save"))


def _saved(sim, runner, names):
    run = runner.run([{"xen.suspend.domain_saved": {"domains": names, "parallel": 0},
                       "register": "saved"}])
    result = run["saved"]
    assert not result.get("failed"), run
    return result


def test_saved_guests_come_back_after_a_dom0_reboot_with_their_memory(make_sim):
    sim, runner = make_sim(SPEC)
    wait_until(lambda: min(sim.heartbeats(["db-1", "web-1", "web-2"]).values()) >= 3,
               what="a few heartbeats of every guest")
    before = sim.domains()
    saved = runner.run([{"xen.suspend.domain_saved": {"domains": ["db-1", "web-*"], "parallel": 0,
                                                       "save_dir": os.path.join(sim.dir, "save")},
                         "register": "saved"}])["saved"]
    assert not saved.get("failed"), saved
    assert sorted(saved["saved"]) == ["db-1", "web-1", "web-2"]
    images = dict((item["name"], item["image"]) for item in saved["domains"])
    for name, image in images.items():
        assert os.path.getsize(image) > 0 and oct(os.stat(image).st_mode & 0o777) == "0o600"
    assert sim.ledger_names("saved") == ["db-1", "web-1", "web-2"]
    assert sorted(sim.domains()) == ["Domain-0", "stays"]
    beats = dict((name, before[name]["heartbeat"]) for name in images)

    xensim_cli("reboot", "--dir", sim.dir)
    assert sorted(sim.domains()) == ["Domain-0"]

    run = runner.run([
        {"xen.suspend.domain_info": {}, "register": "info"},
        {"xen.suspend.domain_restored": {"order": ["web-2"]}, "register": "restored"},
        {"xen.suspend.domain_restored": {}, "register": "again"},
    ])
    info = run["info"]
    assert sorted((item["name"], item["state"], item["image_present"]) for item in info["saved"]) == [
        ("db-1", "saved", True), ("web-1", "saved", True), ("web-2", "saved", True)]
    assert info["vanished"] == []
    restored = run["restored"]
    assert not restored.get("failed"), run
    assert [item["name"] for item in restored["domains"]] == ["web-2", "db-1", "web-1"]
    after = sim.domains()
    for name in images:
        item = by_name(restored)[name]
        assert item["changed"] and item["after"] == "running" and item["domid"] == after[name]["domid"]
        assert after[name]["uuid"] == before[name]["uuid"]
        assert after[name]["heartbeat"] >= beats[name] > 0  # memory came back, not a cold boot
        assert not os.path.exists(images[name])
    assert sim.ledger_entries() == {}
    assert run["again"]["changed"] is False and run["again"]["domains"] == []


def test_a_restore_refuses_what_would_diverge_and_keeps_image_and_entry(make_sim):
    sim, runner = make_sim(SPEC)
    save_dir = os.path.join(sim.dir, "save")
    saved = runner.run([{"xen.suspend.domain_saved": {"domains": ["db-1", "web-1", "web-2"],
                                                       "save_dir": save_dir},
                         "register": "saved"}])["saved"]
    images = dict((item["name"], item["image"]) for item in saved["domains"])
    xensim_cli("reboot", "--dir", sim.dir)
    # web-1: its image loses its tail (bit rot, a copy cut short)
    with open(images["web-1"], "r+b") as handle:
        handle.truncate(os.path.getsize(images["web-1"]) // 2)
    # web-2: xl restore fails after creating the domain
    sim.admin("xl_fault", name="web-2", faults={"restore_fail": True})
    run = runner.run([
        {"xen.suspend.domain_restored": {"domains": ["db-1"]}, "register": "first"},
        {"xen.suspend.domain_restored": {"domains": ["db-1", "web-1", "web-2"]}, "register": "refused"},
        {"xen.suspend.domain_restored": {"domains": ["nosuch"]}, "register": "unknown"},
    ])
    assert run["first"]["restored"] == ["db-1"]
    refused = run["refused"]
    assert refused.get("failed") and sorted(refused.get("failed_domains", [])) == ["web-1", "web-2"], refused
    errors = dict((item["name"], item["error"]) for item in refused["domains"] if item["error"])
    assert errors["web-1"]["kind"] == "bad_image" and errors["web-1"]["phase"] == "lookup"
    assert errors["web-2"]["phase"] == "restore" and "web-2" in errors["web-2"]["message"]
    assert "unknown" not in errors and "db-1" not in errors  # db-1 runs now: not saved any more
    assert run["unknown"].get("failed") and "nosuch" in run["unknown"]["msg"]
    assert sorted(sim.domains()) == ["Domain-0", "db-1"]  # nothing half-built left
    for name in ("web-1", "web-2"):
        assert os.path.exists(images[name])
    entries = dict((entry["name"], entry) for entry in sim.ledger_entries().values())
    assert sorted(entries) == ["web-1", "web-2"]
    assert entries["web-2"]["state"] == "saved" and entries["web-2"]["last_restore_error"]

    # once xl works again, the same run restores it from the image it kept
    sim.admin("xl_fault", name="web-2", faults={})
    again = runner.run([{"xen.suspend.domain_restored": {"domains": ["web-2", "db-1"]},
                         "register": "again"}])["again"]
    assert again["restored"] == ["web-2"] and again["unchanged"] == ["db-1"], again
    assert not os.path.exists(images["web-2"])


def test_a_host_short_of_memory_is_warned_about_and_the_guest_that_does_not_fit_keeps_its_image(make_sim):
    spec = dict(SPEC, xl=dict(SPEC["xl"], host_memory_mb=2600))  # the guests have 1024 MiB each
    sim, runner = make_sim(spec)
    _saved(sim, runner, ["db-1", "web-1", "web-2"])
    xensim_cli("reboot", "--dir", sim.dir)
    run = runner.run([{"xen.suspend.domain_restored": {}, "register": "restored"}])
    restored = run["restored"]
    assert restored["memory"] == {"needed_mib": 3072, "free_mib": 2600, "total_mib": 2600}
    assert any("need 3072 MiB" in warning for warning in restored.get("warnings", [])), restored
    assert restored["restored"] == ["db-1", "web-1"] and restored["failed_domains"] == ["web-2"]
    error = by_name(restored)["web-2"]["error"]
    assert error["phase"] == "restore" and "failed to free memory" in error["message"]
    assert sim.ledger_names("saved") == ["web-2"]
    assert os.path.exists(by_name(restored)["web-2"]["image"])
