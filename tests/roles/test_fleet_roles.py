# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The roles and playbooks of xen.suspend against simulated dom0s (tests/xensim).

Every test runs ansible-playbook as an operator would - the collection's own playbooks by
FQCN (xen.suspend.maintenance, xen.suspend.resume, xen.suspend.prerequisites) or a small
playbook that applies a role - and then checks the simulated hypervisor itself (which
guests are shut down with reason suspend), the ledger file, and the facts, stats and task
order the run reported.
"""

import json
import os
import time

from roletest import SuspendWatcher

HERE = os.path.dirname(os.path.abspath(__file__))
SUSPEND_PLAYBOOK = os.path.join(HERE, "playbooks", "suspend.yml")
ROLLING_TASKS = os.path.join(HERE, "tasks", "maintenance-rolling.yml")
FAILING_TASKS = os.path.join(HERE, "tasks", "maintenance-record-and-fail.yml")

FAST = {"quiesce_ms": 100, "jitter_ms": 20, "heartbeat_ms": 200}

# The guests fleet_suspend must suspend, one of each protocol family ...
SUSPENDABLE = ["app-hvm", "db-1", "legacy-hvm", "old-pv", "slow-1", "web-1", "web-2", "win-1"]
MIXED = dict(FAST, guests=[
    {"behaviour": "linux-pv", "name": "web-1"},
    {"behaviour": "linux-pv", "name": "web-2"},
    {"behaviour": "linux-pvh", "name": "db-1"},
    {"behaviour": "hvm-pv", "name": "app-hvm"},
    {"behaviour": "hvm-nopv", "name": "legacy-hvm"},
    {"behaviour": "xenlinux", "name": "old-pv"},
    {"behaviour": "windows", "name": "win-1"},
    {"behaviour": "slow", "name": "slow-1", "quiesce_ms": 400, "jitter_ms": 50, "params": {"ack_delay_ms": 300}},
    # ... and the ones it must not touch.
    {"behaviour": "linux-pv", "name": "web-1-dm"},     # stub-domain name pattern
    {"behaviour": "linux-pv", "name": "qemu-helper"},  # xenstore ~/target: a device-model stub domain
    {"behaviour": "linux-pv", "name": "ioemu"},        # named by app-hvm's ~/image/device-model-domid
    {"behaviour": "linux-pv", "name": "netback"},      # xenstore ~/backend: a driver domain
    {"behaviour": "linux-pv", "name": "awx"},          # the VM the controller runs in
    {"behaviour": "linux-pv", "name": "monitor"},      # fleet_suspend_protected
    {"behaviour": "linux-pv", "name": "scratch-1"},    # fleet_suspend_exclude
    {"behaviour": "linux-pv", "name": "paused-1"},     # paused: left alone
    {"behaviour": "linux-pv", "name": "off-1"},        # powered off: left alone
])


def names(entries):
    return sorted(entry["name"] for entry in entries)


def set_up_mixed_fleet(dom0, workdir):
    """Mark the service domains in xenstore, pause one guest, power one off; returns the
    path of a fake controller /sys/hypervisor/uuid naming the guest 'awx'."""
    dom0.xenstore_write("/local/domain/%d/target" % dom0.domid("qemu-helper"), str(dom0.domid("web-2")))
    dom0.xenstore_write("/local/domain/%d/image/device-model-domid" % dom0.domid("app-hvm"),
                        str(dom0.domid("ioemu")))
    dom0.xenstore_write("/local/domain/%d/backend/vif/%d/0/state" % (dom0.domid("netback"), dom0.domid("web-1")), "4")
    dom0.fault("pause", "paused-1")
    dom0.fault("shutdown", "off-1", reason="poweroff")
    uuid_file = os.path.join(str(workdir), "controller-uuid")
    with open(uuid_file, "w") as handle:
        handle.write(dom0.uuid("awx").upper() + "\n")
    return uuid_file


def test_a_controller_vm_on_another_host_does_not_fail_the_suspend(make_dom0, controller):
    """A controller that is a Xen VM elsewhere reads its own UUID, which names no domain on this
    dom0: that is no typo in the protected list (which the module refuses), and the guests are
    suspended; a typo next to it is still refused."""
    dom0 = make_dom0("dom0-away", dict(FAST, guests=[{"behaviour": "linux-pv", "name": "web-1"}]))
    uuid_file = os.path.join(str(controller.workdir), "controller-uuid")
    with open(uuid_file, "w") as handle:
        handle.write("0b7e5d3c-6a0f-4c55-9d1e-2f8a4b6c9e01\n")
    host_vars = {"fleet_suspend_controller_uuid_file": uuid_file}
    run = controller.run(SUSPEND_PLAYBOOK, controller.inventory([dom0], extra_host_vars={"dom0-away": host_vars}))
    assert run.rc == 0, run
    result = run.fact("dom0-away", "fleet_suspend_result")
    assert names(result["suspended"]) == ["web-1"] and result["controller_vm"] is None
    assert dom0.suspended() == ["web-1"]

    dom0b = make_dom0("dom0-typo", dict(FAST, guests=[{"behaviour": "linux-pv", "name": "web-1"}]))
    run = controller.run(SUSPEND_PLAYBOOK, controller.inventory([dom0b], extra_host_vars={"dom0-typo": dict(
        host_vars, fleet_suspend_protected="web-11")}))
    assert run.rc != 0, run
    assert "protected name 'web-11' matches no domain" in run.stdout, run
    assert dom0b.suspended() == []


def test_fleet_suspend_mixed_fleet_and_resume_from_another_run(make_dom0, controller):
    dom0 = make_dom0("dom0-mixed", MIXED)
    uuid_file = set_up_mixed_fleet(dom0, controller.workdir)
    inventory = controller.inventory([dom0], extra_host_vars={"dom0-mixed": {
        "fleet_suspend_controller_uuid_file": uuid_file,
        # AWX surveys hand lists over as text: a comma-separated string must work.
        # (a pattern that matches nothing only warns; an explicit name that matches nothing is
        # refused: a typo in protected must not leave the guest it meant unprotected)
        "fleet_suspend_protected": "monitor, no-such-guest-*",
        "fleet_suspend_exclude": "scratch-*",
    }})
    before = dom0.domains()

    # Check mode: reports what it would do, touches nothing.
    run = controller.run(SUSPEND_PLAYBOOK, inventory, check=True)
    assert run.rc == 0, run
    would = run.fact("dom0-mixed", "fleet_suspend_result")
    assert would["check_mode"] is True
    assert names(would["suspended"]) == SUSPENDABLE
    assert dom0.suspended() == []
    assert dom0.ledger_entries() is None
    assert all("requests" not in d.get("counters", {}) for d in dom0.domains().values())

    # The real run.
    run = controller.run(SUSPEND_PLAYBOOK, inventory)
    assert run.rc == 0, run
    result = run.fact("dom0-mixed", "fleet_suspend_result")
    assert names(result["suspended"]) == SUSPENDABLE
    assert result["failed"] == [] and result["unchanged"] == []
    assert dom0.suspended() == SUSPENDABLE

    protected = dict((entry["name"], " ".join(entry["reasons"])) for entry in result["protected"])
    assert sorted(protected) == ["Domain-0", "awx", "ioemu", "monitor", "netback", "qemu-helper", "web-1-dm"]
    assert "dom0" in protected["Domain-0"]
    assert "controller" in protected["awx"]
    assert "~/target" in protected["qemu-helper"]
    assert "device-model-domid" in protected["ioemu"]
    assert "driver domain" in protected["netback"] and "vif" in protected["netback"]
    assert "monitor" in protected["monitor"]
    assert "*-dm" in protected["web-1-dm"]
    assert result["controller_vm"]["name"] == "awx"

    left = dict((entry["name"], entry) for entry in result["left_alone"])
    assert sorted(left) == ["off-1", "paused-1"]
    assert left["paused-1"]["reason"].startswith("paused")
    assert left["off-1"]["state"] == "shutdown(poweroff)"
    everything = [e["name"] for key in ("suspended", "protected", "left_alone") for e in result[key]]
    assert "scratch-1" not in everything  # excluded: not even reported

    untouched = set(dom0.domains()) - set(SUSPENDABLE)
    for name in untouched - {"Domain-0"}:
        assert "requests" not in dom0.domains()[name].get("counters", {}), name
    assert "scratch-1" in dom0.running() and "monitor" in dom0.running()

    ledger = dom0.ledger_entries()
    assert sorted(ledger) == sorted(before[name]["uuid"] for name in SUSPENDABLE)
    assert sorted(run.stats["custom"]["_run"]["xen_suspend_suspended_guests"]["dom0-mixed"]) == SUSPENDABLE
    assert run.stats["summary"]["dom0-mixed"]["failures"] == 0

    # Again: idempotent, nothing suspended twice.
    run = controller.run(SUSPEND_PLAYBOOK, inventory)
    assert run.rc == 0, run
    again = run.fact("dom0-mixed", "fleet_suspend_result")
    assert again["suspended"] == []
    assert names(again["unchanged"]) == SUSPENDABLE
    module = run.results(host="dom0-mixed", action="xen.suspend.domain_suspended")
    assert len(module) == 1 and module[0]["result"]["changed"] is False

    # Resume from a different playbook run: the collection's resume playbook, which only
    # knows what the ledger on the dom0 says.
    run = controller.run("xen.suspend.resume", inventory)
    assert run.rc == 0, run
    resumed = run.fact("dom0-mixed", "fleet_resume_result")
    assert names(resumed["resumed"]) == SUSPENDABLE
    assert resumed["failed"] == [] and resumed["vanished"] == []
    assert dom0.suspended() == []
    assert set(SUSPENDABLE) <= set(dom0.running())
    assert sorted(set(dom0.running()) - set(SUSPENDABLE)) == sorted(
        ["awx", "ioemu", "monitor", "netback", "qemu-helper", "scratch-1", "web-1-dm"])
    assert dom0.ledger_entries() == {}
    assert sorted(run.stats["custom"]["_run"]["xen_suspend_resumed_guests"]["dom0-mixed"]) == SUSPENDABLE

    # The resumed guests really run again: their heartbeats move.
    beats = dict((name, dom0.domains()[name]["heartbeat"]) for name in SUSPENDABLE)
    time.sleep(0.6)
    after = dom0.domains()
    assert all(after[name]["heartbeat"] > beats[name] for name in SUSPENDABLE), (beats, after)


def test_vanished_guest_is_reported_on_resume(make_dom0, controller):
    dom0 = make_dom0("dom0-v", dict(FAST, guests={"linux-pv": 3}))
    inventory = controller.inventory([dom0])
    run = controller.run(SUSPEND_PLAYBOOK, inventory)
    assert run.rc == 0, run
    assert dom0.suspended() == ["linux-pv-1", "linux-pv-2", "linux-pv-3"]
    gone_uuid = dom0.uuid("linux-pv-2")
    dom0.fault("destroy", "linux-pv-2")
    deadline = time.time() + 5
    while "linux-pv-2" in dom0.domains() and time.time() < deadline:
        time.sleep(0.02)
    assert "linux-pv-2" not in dom0.domains()

    run = controller.run("xen.suspend.resume", inventory)
    assert run.rc == 0, run
    result = run.fact("dom0-v", "fleet_resume_result")
    assert names(result["resumed"]) == ["linux-pv-1", "linux-pv-3"]
    assert [(v["name"], v["uuid"]) for v in result["vanished"]] == [("linux-pv-2", gone_uuid)]
    assert result["vanished_pruned"] is False
    assert run.stats["custom"]["_run"]["xen_suspend_vanished_guests"] == {"dom0-v": ["linux-pv-2"]}
    report = run.results(host="dom0-v", task="Report the guests that vanished while they were suspended")
    assert report and report[0]["event"] == "ok"
    assert "linux-pv-2" in report[0]["result"]["msg"] and "no longer exist" in report[0]["result"]["msg"]
    assert dom0.running() == ["linux-pv-1", "linux-pv-3"]
    assert list(dom0.ledger_entries()) == [gone_uuid]  # kept: not pruned by default

    # An operator who wants it to fail (and the entry gone) says so.
    run = controller.run("xen.suspend.resume", inventory,
                         extra_vars={"fleet_resume_fail_on_vanished": True, "fleet_resume_prune_vanished": True})
    assert run.rc == 2, run
    assert "Recorded guests vanished on dom0-v: linux-pv-2" in run.stdout
    assert dom0.ledger_entries() == {}


def test_failed_maintenance_resumes_guests_and_fails_the_play(make_dom0, controller):
    dom0 = make_dom0("dom0-f", dict(FAST, guests=[
        {"behaviour": "linux-pv", "name": "web-1"}, {"behaviour": "linux-pv", "name": "web-2"},
        {"behaviour": "linux-pvh", "name": "db-1"}, {"behaviour": "hvm-nopv", "name": "legacy"}]))
    record = os.path.join(controller.workdir, "seen-during-maintenance.json")
    inventory = controller.inventory([dom0], extra_host_vars={"dom0-f": {"test_record_path": record}})
    # A path relative to the directory ansible-playbook runs in, as in an AWX project.
    with open(FAILING_TASKS) as handle:
        controller.write("site-maintenance.yml", handle.read())

    run = controller.run("xen.suspend.maintenance", inventory,
                         extra_vars={"host_maintenance_tasks_file": "site-maintenance.yml"})

    assert run.rc == 2, run
    with open(record) as handle:
        seen = json.load(handle)
    assert seen == {"Domain-0": "running", "web-1": "suspended", "web-2": "suspended",
                    "db-1": "suspended", "legacy": "suspended"}
    summary = run.stats["summary"]["dom0-f"]
    assert summary["failures"] == 1 and summary["rescued"] == 1
    failing = run.results(host="dom0-f", task="Break the maintenance on purpose", event="failed")
    resume = run.results(host="dom0-f", action="xen.suspend.domain_resumed", event="ok")
    final = run.results(host="dom0-f", task="Fail the host after resuming its guests", event="failed")
    assert len(failing) == len(resume) == len(final) == 1
    assert failing[0]["seq"] < resume[0]["seq"] < final[0]["seq"]
    assert "planned maintenance failure" in final[0]["result"]["msg"]
    assert "Break the maintenance on purpose" in final[0]["result"]["msg"]
    assert sorted(resume[0]["result"]["resumed"]) == ["db-1", "legacy", "web-1", "web-2"]
    assert dom0.suspended() == []
    assert dom0.running() == ["db-1", "legacy", "web-1", "web-2"]
    assert dom0.ledger_entries() == {}


def test_guest_that_will_not_suspend_stops_maintenance_before_it_starts(make_dom0, controller):
    dom0 = make_dom0("dom0-u", dict(FAST, guests=[
        {"behaviour": "linux-pv", "name": "web-1"}, {"behaviour": "unresponsive", "name": "stuck"},
        {"behaviour": "linux-pv", "name": "web-2"}]))
    record = os.path.join(controller.workdir, "maintenance-ran.json")
    inventory = controller.inventory([dom0], extra_host_vars={"dom0-u": {"test_record_path": record}})

    run = controller.run("xen.suspend.maintenance", inventory,
                         extra_vars={"host_maintenance_tasks_file": FAILING_TASKS, "fleet_suspend_ack_timeout": 1})

    assert run.rc == 2, run
    assert not os.path.exists(record)  # the maintenance tasks never ran
    result = run.fact("dom0-u", "fleet_suspend_result")
    assert names(result["failed"]) == ["stuck"]
    assert result["failed"][0]["error"]["kind"] == "not_acknowledged"
    resumed = run.fact("dom0-u", "fleet_resume_result")
    assert names(resumed["resumed"]) == ["web-1", "web-2"]
    final = run.results(host="dom0-u", task="Fail the host after resuming its guests", event="failed")
    assert final and "stuck" in final[0]["result"]["msg"]
    assert dom0.suspended() == [] and dom0.running() == ["stuck", "web-1", "web-2"]
    assert dom0.ledger_entries() == {}


def test_bad_operator_input_touches_no_guest(make_dom0, controller):
    dom0 = make_dom0("dom0-m", dict(FAST, guests={"linux-pv": 2}))
    inventory = controller.inventory([dom0])

    run = controller.run("xen.suspend.maintenance", inventory)  # no tasks file at all
    assert run.rc == 2, run
    assert "missing required arguments: host_maintenance_tasks_file" in run.stdout

    run = controller.run("xen.suspend.maintenance", inventory,
                         extra_vars={"host_maintenance_tasks_file": "no-such-tasks.yml"})
    assert run.rc == 2, run
    assert "is not a file on the controller" in run.stdout

    # A survey answer the fleet_suspend argument spec rejects.
    run = controller.run("xen.suspend.maintenance", inventory,
                         extra_vars={"host_maintenance_tasks_file": ROLLING_TASKS, "fleet_suspend_method": "hibernate",
                                     "fleet_suspend_timeout": "soon"})
    assert run.rc == 2, run
    # (host_maintenance checks both fleet roles' options before it suspends anything)
    validation = run.results(host="dom0-m", role="host_maintenance", event="failed")
    assert validation and "Validation of arguments failed" in validation[0]["result"]["msg"]
    assert "fleet_suspend_method" in validation[0]["result"]["msg"]
    assert "fleet_suspend_timeout" in validation[0]["result"]["msg"]

    assert run.results(action="xen.suspend.domain_suspended") == []
    assert all("requests" not in d.get("counters", {}) for d in dom0.domains().values())
    assert dom0.ledger_entries() is None


def rolling_fleets(make_dom0):
    dom0_a = make_dom0("dom0-a", dict(FAST, guests=[
        {"behaviour": "linux-pv", "name": "a-web-1"}, {"behaviour": "linux-pv", "name": "a-web-2"},
        {"behaviour": "hvm-nopv", "name": "a-legacy"}]))
    dom0_b = make_dom0("dom0-b", dict(FAST, guests=[
        {"behaviour": "linux-pv", "name": "b-web-1"}, {"behaviour": "xenlinux", "name": "b-old"},
        {"behaviour": "linux-pvh", "name": "b-db"}]))
    return dom0_a, dom0_b


def test_rolling_maintenance_handles_one_dom0_at_a_time(make_dom0, controller):
    dom0_a, dom0_b = rolling_fleets(make_dom0)
    inventory = controller.inventory([dom0_a, dom0_b])

    with SuspendWatcher([dom0_a, dom0_b]) as watcher:
        run = controller.run("xen.suspend.maintenance", inventory,
                             extra_vars={"host_maintenance_tasks_file": ROLLING_TASKS})

    assert run.rc == 0, run
    a_events = run.results(host="dom0-a")
    b_events = run.results(host="dom0-b")
    assert a_events and b_events
    # Everything done for dom0-a - suspend, maintenance, resume - came before anything for dom0-b.
    assert max(e["seq"] for e in a_events) < min(e["seq"] for e in b_events)
    assert max(e["time"] for e in a_events) < min(e["time"] for e in b_events)
    for host, expected in (("dom0-a", ["a-legacy", "a-web-1", "a-web-2"]), ("dom0-b", ["b-db", "b-old", "b-web-1"])):
        suspend = run.results(host=host, action="xen.suspend.domain_suspended", event="ok")
        resume = run.results(host=host, action="xen.suspend.domain_resumed", event="ok")
        checked = run.results(host=host, task="Check that every guest of this dom0 is suspended during its maintenance",
                              event="ok")
        assert len(suspend) == len(resume) == len(checked) == 1, host
        assert suspend[0]["seq"] < checked[0]["seq"] < resume[0]["seq"]
        assert sorted(suspend[0]["result"]["suspended"]) == expected
        assert sorted(resume[0]["result"]["resumed"]) == expected

    # What the hypervisors showed meanwhile: never both dom0s with suspended guests, and
    # dom0-a's guests were all back before dom0-b's were touched.
    samples = watcher.samples
    assert len(samples) > 20
    assert not [s for s in samples if s["dom0-a"] and s["dom0-b"]]
    a_down = [s["time"] for s in samples if s["dom0-a"] == ["a-legacy", "a-web-1", "a-web-2"]]
    b_down = [s["time"] for s in samples if s["dom0-b"] == ["b-db", "b-old", "b-web-1"]]
    assert a_down and b_down
    assert max(s["time"] for s in samples if s["dom0-a"]) < min(s["time"] for s in samples if s["dom0-b"])

    custom = run.stats["custom"]["_run"]
    assert sorted(custom["xen_suspend_suspended_guests"]) == ["dom0-a", "dom0-b"]
    assert sorted(custom["xen_suspend_resumed_guests"]["dom0-b"]) == ["b-db", "b-old", "b-web-1"]
    for dom0 in (dom0_a, dom0_b):
        assert dom0.suspended() == []
        assert len(dom0.running()) == 3
        assert dom0.ledger_entries() == {}


def test_rolling_maintenance_stops_at_the_first_failed_dom0(make_dom0, controller):
    dom0_a, dom0_b = rolling_fleets(make_dom0)
    inventory = controller.inventory([dom0_a, dom0_b])

    run = controller.run("xen.suspend.maintenance", inventory,
                         extra_vars={"host_maintenance_tasks_file": ROLLING_TASKS, "test_fail_on": "dom0-a"})

    assert run.rc == 2, run
    assert "planned failure on dom0-a" in run.stdout
    assert run.results(host="dom0-b") == []
    assert "dom0-b" not in run.stats["summary"]
    assert all("requests" not in d.get("counters", {}) for d in dom0_b.domains().values())
    assert dom0_b.ledger_entries() is None
    assert dom0_a.suspended() == [] and len(dom0_a.running()) == 3
    assert dom0_a.ledger_entries() == {}


def write_sysfs(base, major, minor, extra=".3"):
    os.makedirs(os.path.join(base, "version"))
    for path, value in (("type", "xen"), ("version/major", major), ("version/minor", minor),
                        ("version/extra", extra), ("uuid", "00000000-0000-0000-0000-000000000000")):
        with open(os.path.join(base, path), "w") as handle:
            handle.write("%s\n" % value)
    return base


def test_dom0_prerequisites_checks_libraries_and_xenstored(make_dom0, controller):
    dom0 = make_dom0("dom0-p", dict(FAST, guests={"linux-pv": 1}))
    inventory = controller.inventory([dom0])
    good = write_sysfs(os.path.join(controller.workdir, "sys-4.17"), 4, 17)

    # the simulator's xl on the modules' PATH, and the dom0 declared one that saves to disk
    with_xl = dict(dom0.host_vars()["xen_suspend_environment"], PATH=dom0.env["PATH"])
    run = controller.run("xen.suspend.prerequisites", inventory,
                         extra_vars={"dom0_prerequisites_install": False, "dom0_prerequisites_sysfs_dir": good,
                                     "dom0_prerequisites_save_restore": True,
                                     "xen_suspend_environment": with_xl})
    assert run.rc == 0, run
    report = run.fact("dom0-p", "dom0_prerequisites_report")
    xl = report["save_restore"]["xl"]
    assert report["save_restore"]["ok"] is True and os.path.dirname(xl) in dom0.env["PATH"].split(os.pathsep)
    assert "xl %s" % xl in run.stdout
    assert report["xen_version"] == "4.17" and report["xen_version_sysfs"] == "4.17"
    assert report["version_source"] == "sysfs"
    assert [(lib["name"], lib["ok"]) for lib in report["libraries"]] == [
        ("libxenctrl.so.4.17", True), ("libxenguest.so.4.17", True), ("libxenevtchn.so.1", True)]
    assert report["xenstored"]["ok"] is True and report["problems"] == []
    assert report["pyxs_version"] and report["cffi_version"]
    assert "Xen 4.17.3 (sysfs)" in run.stdout

    # A hypervisor whose tools are missing (sysfs says 4.18; only 4.17 is installed) and a
    # xenstored that is not there.
    newer = write_sysfs(os.path.join(controller.workdir, "sys-4.18"), 4, 18)
    # And no xl on PATH, on a dom0 that saves to disk.
    no_xl = os.path.join(controller.workdir, "path-without-xl")
    os.makedirs(no_xl, exist_ok=True)
    broken_env = dict(dom0.host_vars()["xen_suspend_environment"],
                      XENSTORED_PATH=os.path.join(controller.workdir, "no-xenstored.sock"), PATH=no_xl)
    run = controller.run("xen.suspend.prerequisites", inventory,
                         extra_vars={"dom0_prerequisites_install": False, "dom0_prerequisites_sysfs_dir": newer,
                                     "dom0_prerequisites_xenstore_timeout": 2,
                                     "dom0_prerequisites_save_restore": True,
                                     "xen_suspend_environment": broken_env})
    assert run.rc == 2, run
    failure = run.results(host="dom0-p", task="Fail when the dom0 is not ready for the modules", event="failed")
    assert failure, run
    message = failure[0]["result"]["msg"]
    assert "libxenctrl.so.4.18 cannot be loaded" in message and "libxenmisc4.18" in message
    assert "libxenguest.so.4.18 cannot be loaded" in message
    assert "libxenevtchn.so.1" not in message
    assert "xenstored does not answer" in message and "no-xenstored.sock" in message
    assert "xl is not on PATH (%s)" % no_xl in message

    # A dom0 that only suspends in memory: no xl is a note, not a failure.
    run = controller.run("xen.suspend.prerequisites", inventory,
                         extra_vars={"dom0_prerequisites_install": False, "dom0_prerequisites_sysfs_dir": good,
                                     "xen_suspend_environment": dict(
                                         dom0.host_vars()["xen_suspend_environment"], PATH=no_xl)})
    assert run.rc == 0, run
    report = run.fact("dom0-p", "dom0_prerequisites_report")
    assert report["problems"] == [] and report["save_restore"]["xl"] is None
    assert any("xl is not on PATH" in note for note in report["notes"]), report["notes"]
    assert "xl not on PATH" in run.stdout
