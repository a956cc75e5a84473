# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""host_maintenance in save mode with a dom0 reboot, against a simulated dom0 (issue 12, item 3).

The simulator's ``xl`` (tests/xensim/bin) is put on the modules' PATH through
``xen_suspend_environment``, the reboot is ``xensimctl reboot`` (every domain gone, files kept,
a new boot id) given to ansible.builtin.reboot as its reboot_command, and the boot id file as
its boot_time_command; the connection is the local one under another name
(connection_plugins/xen_suspend_simdom0.py), since ansible.builtin.reboot refuses ``local``.
Each test then checks the simulated hypervisor itself, the ledger and the save directory.
"""

import glob
import json
import os
import sys

from roletest import XENSIM_ROOT
from test_fleet_roles import FAST

HERE = os.path.dirname(os.path.abspath(__file__))
RECORD_TASKS = os.path.join(HERE, "tasks", "maintenance-record-saved.yml")
XENSIMCTL = os.path.join(XENSIM_ROOT, "xensimctl")

ROUND_TRIP = dict(FAST, guests=[
    {"behaviour": "linux-pv", "name": "web-1"},
    {"behaviour": "linux-pv", "name": "web-2"},
    {"behaviour": "linux-pvh", "name": "db-1"},
    {"behaviour": "xenlinux", "name": "old-pv"},
    {"behaviour": "hvm-nopv", "name": "legacy-hvm"},
])
GUESTS = ["db-1", "legacy-hvm", "old-pv", "web-1", "web-2"]


def boot_id(dom0):
    with open(os.path.join(dom0.dir, "boot_id")) as handle:
        return handle.read().strip()


def save_dir(dom0):
    return os.path.join(dom0.dir, "save")


def images(dom0):
    return sorted(os.path.basename(path) for path in glob.glob(os.path.join(save_dir(dom0), "*")))


def save_host_vars(dom0, **extra):
    """The variables that point host_maintenance's save mode and reboot at the simulator."""
    env = dict(dom0.host_vars()["xen_suspend_environment"], PATH=dom0.env["PATH"])
    host_vars = {
        "ansible_connection": "xen_suspend_simdom0",
        "xen_suspend_environment": env,
        "xen_suspend_save_dir": save_dir(dom0),
        "host_maintenance_reboot_command": "/usr/bin/env PYTHON=%s %s reboot --dir %s" % (
            sys.executable, XENSIMCTL, dom0.dir),
        "host_maintenance_boot_time_command": "cat %s" % os.path.join(dom0.dir, "boot_id"),
        "host_maintenance_reboot_timeout": 60,
        "host_maintenance_wait_timeout": 30,
        "fleet_save_timeout": 60,
        "fleet_restore_timeout": 60,
    }
    host_vars.update(extra)
    return host_vars


def maintenance_vars(record, **extra):
    variables = {"host_maintenance_tasks_file": RECORD_TASKS, "test_record_path": record,
                 "host_maintenance_mode": "save", "host_maintenance_reboot": True}
    variables.update(extra)
    return variables


def names(entries):
    return sorted(entry["name"] for entry in entries)


def test_save_reboot_restore_brings_back_exactly_the_saved_guests(make_dom0, controller):
    dom0 = make_dom0("dom0-sr", ROUND_TRIP)
    inventory = controller.inventory([dom0], extra_host_vars={"dom0-sr": save_host_vars(dom0)})
    before = dom0.domains()
    first_boot = boot_id(dom0)
    record = os.path.join(controller.workdir, "during.json")

    run = controller.run("xen.suspend.maintenance", inventory, extra_vars=maintenance_vars(record))

    assert run.rc == 0, run
    # During the maintenance the guests were on disk, not in the hypervisor.
    with open(record) as handle:
        assert json.load(handle)["domains"] == {"Domain-0": "running"}
    # The dom0 rebooted (a new boot id), between the save and the restore, and the role waited
    # for xenstored and xl before restoring.
    assert boot_id(dom0) != first_boot
    save = run.results(host="dom0-sr", action="xen.suspend.domain_saved", event="ok")
    reboot = run.results(host="dom0-sr", action="ansible.builtin.reboot", event="ok")
    waited = run.results(host="dom0-sr", task="Wait for xl to answer after the reboot", event="ok")
    restore = run.results(host="dom0-sr", action="xen.suspend.domain_restored", event="ok")
    assert len(save) == len(reboot) == len(waited) == len(restore) == 1, run
    assert save[0]["seq"] < reboot[0]["seq"] < waited[0]["seq"] < restore[0]["seq"]
    assert reboot[0]["result"]["rebooted"] is True
    assert sorted(save[0]["result"]["saved"]) == GUESTS
    assert sorted(restore[0]["result"]["restored"]) == GUESTS

    # Exactly the saved guests run again: same names and UUIDs, new domids, their heartbeats
    # continuing from where they stopped (not from zero); nothing else was created.
    after = dom0.domains()
    assert sorted(after) == sorted(["Domain-0"] + GUESTS)
    assert dom0.running() == GUESTS
    for name in GUESTS:
        assert after[name]["uuid"] == before[name]["uuid"], name
        assert after[name]["heartbeat"] >= before[name]["heartbeat"], (name, before[name], after[name])
    # Nothing left behind: no ledger entry, no image.
    assert dom0.ledger_entries() == {}
    assert images(dom0) == []

    # The per-guest table carries image size, time to save and to restore.
    rows = dict((row["name"], row) for row in run.fact("dom0-sr", "fleet_restore_result")["guests"])
    assert sorted(rows) == GUESTS
    for name, row in rows.items():
        assert row["state"] == "restored", row
        assert row["image_size"] > 0 and row["save_seconds"] > 0 and row["restore_seconds"] > 0, row
    table = run.results(host="dom0-sr", task="Show the guests", event="ok")
    assert table and "image MiB" in table[-1]["result"]["msg"][0]
    assert run.stats["summary"]["dom0-sr"]["failures"] == 0


def test_a_guest_that_fails_to_restore_fails_the_host_and_keeps_its_image(make_dom0, controller):
    dom0 = make_dom0("dom0-rf", dict(FAST, guests=[
        {"behaviour": "linux-pv", "name": "web-1"},
        {"behaviour": "linux-pv", "name": "db-1", "xl_faults": {"restore_fail": True}},
        {"behaviour": "linux-pvh", "name": "app-1"}]))
    inventory = controller.inventory([dom0], extra_host_vars={"dom0-rf": save_host_vars(dom0)})
    db_uuid = dom0.uuid("db-1")
    first_boot = boot_id(dom0)

    run = controller.run("xen.suspend.maintenance", inventory,
                         extra_vars=maintenance_vars(os.path.join(controller.workdir, "during.json")))

    assert run.rc == 2, run
    assert boot_id(dom0) != first_boot
    assert dom0.running() == ["app-1", "web-1"]
    assert "db-1" not in dom0.domains()   # no half-built domain left
    # Its image and its ledger entry are kept, so that a later run can restore it.
    assert images(dom0) == ["%s.xlsave" % db_uuid]
    entries = dom0.ledger_entries()
    assert list(entries) == [db_uuid] and entries[db_uuid]["state"] == "saved"
    result = run.fact("dom0-rf", "fleet_restore_result")
    assert names(result["restored"]) == ["app-1", "web-1"]
    assert names(result["failed"]) == ["db-1"]
    failure = run.results(host="dom0-rf", task="Fail when guests could not be restored", event="failed")
    assert failure and "db-1" in failure[0]["result"]["msg"], [
        (record["task"], record["result"].get("msg")) for record in run.results(event="failed")]
    assert run.stats["summary"]["dom0-rf"]["failures"] == 1

    # Once the cause is gone, xen.suspend.resume restores it from the kept image.
    dom0.admin("xl_fault", name="db-1", faults={})
    run = controller.run("xen.suspend.resume", inventory)
    assert run.rc == 0, run
    # It waited for xenstored and xl, as the maintenance does after its reboot, before restoring.
    waited = run.results(host="dom0-rf", task="Wait for xl to answer after the reboot", event="ok")
    restore = run.results(host="dom0-rf", action="xen.suspend.domain_restored", event="ok")
    assert len(waited) == len(restore) == 1, run
    assert waited[0]["seq"] < restore[0]["seq"]
    assert names(run.fact("dom0-rf", "fleet_restore_result")["restored"]) == ["db-1"]
    assert dom0.running() == ["app-1", "db-1", "web-1"]
    assert dom0.uuid("db-1") == db_uuid
    assert dom0.ledger_entries() == {}
    assert images(dom0) == []


def test_reboot_refused_in_suspend_mode_before_anything_is_touched(make_dom0, controller):
    dom0 = make_dom0("dom0-rs", dict(FAST, guests={"linux-pv": 2}))
    inventory = controller.inventory([dom0], extra_host_vars={"dom0-rs": save_host_vars(dom0)})
    first_boot = boot_id(dom0)

    run = controller.run("xen.suspend.maintenance", inventory, extra_vars=maintenance_vars(
        os.path.join(controller.workdir, "during.json"), host_maintenance_mode="suspend"))

    assert run.rc == 2, run
    assert "host_maintenance_reboot=true needs host_maintenance_mode=save" in run.stdout
    assert "no guest was touched" in run.stdout
    assert run.results(action="xen.suspend.domain_info") == []
    assert run.results(action="xen.suspend.domain_suspended") == []
    assert run.results(action="ansible.builtin.reboot") == []
    assert boot_id(dom0) == first_boot
    assert dom0.running() == ["linux-pv-1", "linux-pv-2"]
    assert dom0.ledger_entries() is None


def test_reboot_refused_while_a_domain_the_save_leaves_would_be_stopped(make_dom0, controller):
    dom0 = make_dom0("dom0-rp", dict(FAST, guests=[
        {"behaviour": "linux-pv", "name": "web-1"}, {"behaviour": "linux-pv", "name": "monitor"},
        {"behaviour": "linux-pv", "name": "scratch-1"}]))
    inventory = controller.inventory([dom0], extra_host_vars={"dom0-rp": save_host_vars(
        dom0, fleet_save_protected=["monitor"], fleet_save_exclude=["scratch-*"])})
    first_boot = boot_id(dom0)

    run = controller.run("xen.suspend.maintenance", inventory,
                         extra_vars=maintenance_vars(os.path.join(controller.workdir, "during.json")))

    assert run.rc == 2, run
    refusal = run.results(host="dom0-rp", task="Refuse a reboot that would stop domains the save leaves running",
                          event="failed")
    assert refusal, run
    message = refusal[0]["result"]["msg"]
    assert "monitor (domid" in message and "protected" in message
    assert "scratch-1 (domid" in message and "web-1" not in message
    assert "no guest was touched" in message
    assert run.results(action="xen.suspend.domain_saved") == []
    assert boot_id(dom0) == first_boot
    assert dom0.running() == ["monitor", "scratch-1", "web-1"]
    assert images(dom0) == []


def test_check_mode_save_and_reboot_touches_nothing(make_dom0, controller):
    dom0 = make_dom0("dom0-cm", dict(FAST, guests={"linux-pv": 3}))
    inventory = controller.inventory([dom0], extra_host_vars={"dom0-cm": save_host_vars(dom0)})
    first_boot = boot_id(dom0)

    run = controller.run("xen.suspend.maintenance", inventory, check=True,
                         extra_vars=maintenance_vars(os.path.join(controller.workdir, "during.json")))

    assert run.rc == 0, run
    assert boot_id(dom0) == first_boot
    assert dom0.running() == ["linux-pv-1", "linux-pv-2", "linux-pv-3"]
    assert dom0.ledger_entries() in (None, {})
    assert images(dom0) == []
    save = run.results(host="dom0-cm", task="Summarise the save", event="ok")
    restore = run.results(host="dom0-cm", task="Summarise the restore", event="ok")
    assert save and save[0]["result"]["msg"].startswith("(check mode) would save 3"), run
    assert restore and restore[0]["result"]["msg"].startswith("(check mode) would restore 3"), run
    reboot = run.results(host="dom0-cm", action="ansible.builtin.reboot")
    assert reboot and reboot[0]["result"].get("changed") is True


def test_out_of_range_save_options_are_refused_before_any_guest(make_dom0, controller):
    dom0 = make_dom0("dom0-or", dict(FAST, guests={"linux-pv": 2}))
    inventory = controller.inventory([dom0], extra_host_vars={"dom0-or": save_host_vars(dom0)})

    run = controller.run("xen.suspend.maintenance", inventory, extra_vars=maintenance_vars(
        os.path.join(controller.workdir, "during.json"), fleet_save_parallel=-1, fleet_save_space_margin_mb=-5,
        fleet_restore_parallel=0, fleet_restore_timeout=0, host_maintenance_reboot_timeout=0))

    assert run.rc == 2, run
    for message in ("host_maintenance_reboot_timeout must be a whole number of seconds > 0, not 0",):
        assert message in run.stdout, run
    assert run.results(action="xen.suspend.domain_info") == []
    # the fleet roles' own checks, once host_maintenance's pass
    run = controller.run("xen.suspend.maintenance", inventory, extra_vars=maintenance_vars(
        os.path.join(controller.workdir, "during.json"), fleet_save_parallel=-1, fleet_save_space_margin_mb=-5))
    assert run.rc == 2, run
    assert "fleet_save_parallel must be an integer >= 0 (0: no bound), not -1" in run.stdout
    assert "fleet_save_space_margin_mb must be an integer >= 0 (MiB), not -5" in run.stdout
    run = controller.run("xen.suspend.maintenance", inventory, extra_vars=maintenance_vars(
        os.path.join(controller.workdir, "during.json"), fleet_restore_parallel=0, fleet_restore_timeout=0))
    assert run.rc == 2, run
    assert "fleet_restore_parallel must be an integer >= 1, not 0" in run.stdout
    assert "fleet_restore_timeout must be a number of seconds > 0, not 0" in run.stdout
    assert run.results(action="xen.suspend.domain_info") == []
    assert run.results(action="xen.suspend.domain_saved") == []
    assert dom0.running() == ["linux-pv-1", "linux-pv-2"]
    assert dom0.ledger_entries() is None


def fake_chronyc(directory, synchronised_from_call, unreachable_calls=0):
    """A chronyc on PATH whose `chronyc -n tracking` reports the clock synchronised from its Nth
    call on (never, with 0), and cannot talk to chronyd on its first unreachable_calls calls (as
    right after a boot); returns the file counting its calls."""
    os.makedirs(directory)
    calls = os.path.join(directory, "calls")
    script = os.path.join(directory, "chronyc")
    with open(script, "w") as handle:
        handle.write("""#!/bin/sh
n=$(cat %(calls)s 2>/dev/null || echo 0); n=$((n + 1)); echo $n > %(calls)s
if [ $n -le %(unreachable)d ]; then echo "506 Cannot talk to daemon" >&2; exit 1; fi
if [ %(from)d -gt 0 ] && [ $n -ge %(from)d ]; then status=Normal; else status='Not synchronised'; fi
echo "Reference ID    : 7F7F0101 ()"
echo "Leap status     : $status"
""" % {"calls": calls, "from": synchronised_from_call, "unreachable": unreachable_calls})
    os.chmod(script, 0o755)
    return calls


def fake_systemctl(directory, starting_unit):
    """A systemctl on PATH that shows starting_unit as still starting (ActiveState activating)
    and every other unit inactive."""
    script = os.path.join(directory, "systemctl")
    with open(script, "w") as handle:
        handle.write("""#!/bin/sh
case "$*" in
  "show --property ActiveState --value %s") echo activating ;;
  "show --property ActiveState --value "*) echo inactive ;;
  *) exit 1 ;;
esac
""" % starting_unit)
    os.chmod(script, 0o755)


def test_the_restore_waits_for_time_sync_after_the_reboot(make_dom0, controller):
    dom0 = make_dom0("dom0-ts", dict(FAST, guests={"linux-pv": 2}))
    record = os.path.join(controller.workdir, "during.json")

    # chrony answers "synchronised" at its third call (the first finds it): the restore waits.
    slow = os.path.join(controller.workdir, "chrony-slow")
    calls = fake_chronyc(slow, 3)
    host_vars = save_host_vars(dom0)
    host_vars["xen_suspend_environment"]["PATH"] = slow + os.pathsep + host_vars["xen_suspend_environment"]["PATH"]
    inventory = controller.inventory([dom0], extra_host_vars={"dom0-ts": host_vars})
    run = controller.run("xen.suspend.maintenance", inventory, extra_vars=maintenance_vars(record))
    assert run.rc == 0, run
    waited = run.results(host="dom0-ts", task="Wait for chrony to report the clock synchronised", event="ok")
    restore = run.results(host="dom0-ts", action="xen.suspend.domain_restored", event="ok")
    assert len(waited) == len(restore) == 1, run
    assert waited[0]["seq"] < restore[0]["seq"]
    assert waited[0]["result"]["attempts"] == 2
    with open(calls) as handle:
        assert handle.read().strip() == "3"
    assert run.fact("dom0-ts", "host_maintenance_time_sync") == "synchronised (chrony)"
    report = run.results(host="dom0-ts", task="Report the dom0's clock before the restore", event="ok")
    assert report and report[0]["result"]["msg"] == "dom0-ts: dom0 clock synchronised (chrony)", run
    assert report[0]["seq"] < restore[0]["seq"]
    assert dom0.running() == ["linux-pv-1", "linux-pv-2"]

    # chrony never synchronises: at the timeout the guests are restored anyway, and it is said.
    never = os.path.join(controller.workdir, "chrony-never")
    fake_chronyc(never, 0)
    host_vars = save_host_vars(dom0, host_maintenance_time_sync_timeout=1)
    host_vars["xen_suspend_environment"]["PATH"] = never + os.pathsep + host_vars["xen_suspend_environment"]["PATH"]
    inventory = controller.inventory([dom0], extra_host_vars={"dom0-ts": host_vars})
    run = controller.run("xen.suspend.maintenance", inventory, extra_vars=maintenance_vars(record))
    assert run.rc == 0, run
    assert run.fact("dom0-ts", "host_maintenance_time_sync").startswith("NOT synchronised within 1 s")
    assert names(run.fact("dom0-ts", "fleet_restore_result")["restored"]) == ["linux-pv-1", "linux-pv-2"]
    assert dom0.running() == ["linux-pv-1", "linux-pv-2"]

    # chronyd is still starting when the dom0 is back (chronyc cannot talk to it yet): that is
    # chrony, not "nothing synchronises the clock", and the restore waits for it.
    starting = os.path.join(controller.workdir, "chrony-starting")
    calls = fake_chronyc(starting, 4, unreachable_calls=2)
    fake_systemctl(starting, "chrony.service")
    host_vars = save_host_vars(dom0)
    host_vars["xen_suspend_environment"]["PATH"] = starting + os.pathsep + host_vars["xen_suspend_environment"]["PATH"]
    inventory_starting = controller.inventory([dom0], extra_host_vars={"dom0-ts": host_vars})
    run = controller.run("xen.suspend.maintenance", inventory_starting, extra_vars=maintenance_vars(record))
    assert run.rc == 0, run
    assert run.fact("dom0-ts", "host_maintenance_time_sync") == "synchronised (chrony)", run
    waited = run.results(host="dom0-ts", task="Wait for chrony to report the clock synchronised", event="ok")
    assert len(waited) == 1 and waited[0]["result"]["attempts"] == 3, run
    with open(calls) as handle:
        assert handle.read().strip() == "4"
    assert dom0.running() == ["linux-pv-1", "linux-pv-2"]

    # host_maintenance_wait_time_sync=false does not look.
    run = controller.run("xen.suspend.maintenance", inventory,
                         extra_vars=maintenance_vars(record, host_maintenance_wait_time_sync=False))
    assert run.rc == 0, run
    assert run.results(host="dom0-ts", task="Find the dom0's time synchronisation service", event="ok") == []
    report = run.results(host="dom0-ts", task="Report the dom0's clock before the restore", event="ok")
    assert report and "not waited for (host_maintenance_wait_time_sync=false)" in report[0]["result"]["msg"], run
    assert dom0.running() == ["linux-pv-1", "linux-pv-2"]


def test_save_mode_keeps_the_protection_and_exclusions_written_for_suspend_mode(make_dom0, controller):
    """-e fleet_suspend_protected=... (as the README shows for suspend mode) must still protect in
    save mode: a protected guest is never saved, whichever of the two names protects it."""
    dom0 = make_dom0("dom0-sp", dict(FAST, guests=[
        {"behaviour": "linux-pv", "name": "web-1"}, {"behaviour": "linux-pv", "name": "monitoring-1"},
        {"behaviour": "linux-pv", "name": "backup-1"}, {"behaviour": "linux-pv", "name": "scratch-1"}]))
    inventory = controller.inventory([dom0], extra_host_vars={"dom0-sp": save_host_vars(
        dom0, fleet_save_protected=["backup-*"])})
    record = os.path.join(controller.workdir, "during.json")

    run = controller.run("xen.suspend.maintenance", inventory, extra_vars=maintenance_vars(
        record, host_maintenance_reboot=False,
        # comma-separated text, as from the command line or an AWX survey
        fleet_suspend_protected="monitoring-*", fleet_suspend_exclude="scratch-*"))

    assert run.rc == 0, run
    with open(record) as handle:
        during = json.load(handle)["domains"]
    # During the maintenance only web-1 was on disk; the protected and excluded guests ran.
    assert sorted(during) == ["Domain-0", "backup-1", "monitoring-1", "scratch-1"], during
    assert set(during.values()) <= {"running", "blocked"}, during
    save = run.results(host="dom0-sp", action="xen.suspend.domain_saved", event="ok")
    assert len(save) == 1 and save[0]["result"]["saved"] == ["web-1"], run
    result = run.fact("dom0-sp", "fleet_save_result")
    assert names(result["protected"]) == ["Domain-0", "backup-1", "monitoring-1"]
    assert names(result["guests"]) == ["web-1"]
    # dom0 is not counted among the protected guests in the summary.
    summary = run.results(host="dom0-sp", task="Summarise the save", event="ok")
    assert summary and "2 protected (dom0 apart)" in summary[0]["result"]["msg"], summary
    assert dom0.running() == ["backup-1", "monitoring-1", "scratch-1", "web-1"]
    assert dom0.ledger_entries() == {}

    # With a reboot, the guest protected under the suspend name refuses it before anything is touched.
    run = controller.run("xen.suspend.maintenance", inventory, extra_vars=maintenance_vars(
        record, fleet_suspend_protected="monitoring-*", fleet_suspend_exclude="scratch-*",
        host_maintenance_reboot_allow_running=["xenstore*", "backup-*", "scratch-*"]))
    assert run.rc == 2, run
    refusal = run.results(host="dom0-sp", task="Refuse a reboot that would stop domains the save leaves running",
                          event="failed")
    assert refusal and "monitoring-1 (domid" in refusal[0]["result"]["msg"], run
    assert run.results(action="xen.suspend.domain_saved") == []


def test_save_mode_refuses_a_protected_typo_and_accepts_a_controller_elsewhere(make_dom0, controller):
    """A protected name that matches no domain fails the host before any guest is saved (a typo
    would leave the guest it means unprotected); the UUID of a controller that is a Xen VM on
    another host names no domain here and is no typo."""
    dom0 = make_dom0("dom0-pt", dict(FAST, guests=[
        {"behaviour": "linux-pv", "name": "web-1"}, {"behaviour": "linux-pv", "name": "firewall"}]))
    uuid_file = os.path.join(str(controller.workdir), "controller-uuid")
    with open(uuid_file, "w") as handle:
        handle.write("0b7e5d3c-6a0f-4c55-9d1e-2f8a4b6c9e01\n")
    inventory = controller.inventory([dom0], extra_host_vars={"dom0-pt": save_host_vars(
        dom0, fleet_save_controller_uuid_file=uuid_file)})
    record = os.path.join(controller.workdir, "during.json")

    run = controller.run("xen.suspend.maintenance", inventory, extra_vars=maintenance_vars(
        record, host_maintenance_reboot=False, fleet_suspend_protected="firewal"))
    assert run.rc != 0, run
    failed = run.results(host="dom0-pt", action="xen.suspend.domain_saved", event="failed")
    assert failed and "protected name 'firewal' matches no domain" in failed[0]["result"]["msg"], run
    assert dom0.running() == ["firewall", "web-1"] and images(dom0) == []

    run = controller.run("xen.suspend.maintenance", inventory, extra_vars=maintenance_vars(
        record, host_maintenance_reboot=False, fleet_suspend_protected="firewall"))
    assert run.rc == 0, run
    save = run.results(host="dom0-pt", action="xen.suspend.domain_saved", event="ok")
    assert len(save) == 1 and save[0]["result"]["saved"] == ["web-1"], run
    assert dom0.running() == ["firewall", "web-1"]


def test_a_long_save_error_is_cut_in_the_table_and_kept_whole_in_the_result(make_dom0, controller):
    dom0 = make_dom0("dom0-le", dict(FAST, guests=[
        {"behaviour": "linux-pv", "name": "web-1"},
        {"behaviour": "linux-pv", "name": "full-1", "xl_faults": {"enospc_after": 4096}}]))
    inventory = controller.inventory([dom0], extra_host_vars={"dom0-le": save_host_vars(
        dom0, fleet_save_continue_on_error=True)})

    run = controller.run("xen.suspend.maintenance", inventory, extra_vars=maintenance_vars(
        os.path.join(controller.workdir, "during.json"), host_maintenance_reboot=False))

    rows = dict((row["name"], row) for row in run.fact("dom0-le", "fleet_save_result")["guests"])
    full = rows["full-1"]["outcome"]
    assert rows["full-1"]["state"] == "failed" and len(full) > 100, rows
    tables = [record["result"]["msg"] for record in run.results(host="dom0-le", task="Show the guests", event="ok")
              if "msg" in record["result"]]
    assert len(tables) == 2, run   # the save's, then the restore's
    lines = tables[0]
    assert "xl save s" in lines[0] and "write MiB/s" in lines[0], lines
    line = [text for text in lines if text.startswith("full-1")][0]
    cell = line[line.index("not saved"):]
    assert len(cell) == 100 and cell.endswith("...") and full.startswith(cell[:-3]), line
    assert lines[-1] == "text cut at 100 characters; the full text is in fleet_save_result.guests", lines
    assert dom0.running() == ["full-1", "web-1"]
