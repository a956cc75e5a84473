# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One ledger variable, xen_suspend_ledger_path, for every role and playbook (issue 11, item 13).

The recovery playbook (xen.suspend.resume) must read the ledger the suspending run wrote when
the operator named it once; the older per-role names still work, and names that disagree stop
the run before any guest is touched.
"""

import os

import yaml

from test_fleet_roles import FAST, ROLLING_TASKS, SUSPEND_PLAYBOOK

GUESTS = ["linux-pv-1", "linux-pv-2"]
OLD_NAMES = ("host_maintenance_ledger_path", "fleet_suspend_ledger_path", "fleet_resume_ledger_path",
             "dom0_prerequisites_ledger_path")


def inventory_with(controller, dom0, name, ledger):
    """An inventory whose only ledger variable is ``name``."""
    host_vars = dict((key, value) for key, value in dom0.host_vars().items() if key not in OLD_NAMES)
    host_vars[name] = ledger
    return controller.write("inventory-%s.yml" % name, yaml.safe_dump({"xen_dom0": {"hosts": {dom0.name: host_vars}}}))


def test_one_ledger_variable_for_suspend_resume_and_maintenance(make_dom0, controller):
    dom0 = make_dom0("dom0-l", dict(FAST, guests={"linux-pv": 2}))
    inventory = inventory_with(controller, dom0, "xen_suspend_ledger_path", dom0.ledger)

    # The role alone writes the ledger xen_suspend_ledger_path names ...
    run = controller.run(SUSPEND_PLAYBOOK, inventory)
    assert run.rc == 0, run
    assert dom0.suspended() == GUESTS
    assert sorted(dom0.ledger_entries()) == sorted(dom0.uuid(name) for name in GUESTS)
    assert run.fact(dom0.name, "fleet_suspend_result")["ledger"] == dom0.ledger

    # ... an older name that names another ledger stops the recovery before it touches anything ...
    elsewhere = os.path.join(controller.workdir, "elsewhere", "ledger.json")
    run = controller.run("xen.suspend.resume", inventory, extra_vars={"fleet_resume_ledger_path": elsewhere})
    assert run.rc == 2, run
    assert "name different ledgers" in run.stdout and "Set only xen_suspend_ledger_path" in run.stdout
    assert run.results(action="xen.suspend.domain_resumed") == []
    assert dom0.suspended() == GUESTS and len(dom0.ledger_entries()) == 2
    assert not os.path.exists(elsewhere)

    # ... and the recovery playbook reads the same ledger and brings both guests back.
    run = controller.run("xen.suspend.resume", inventory)
    assert run.rc == 0, run
    result = run.fact(dom0.name, "fleet_resume_result")
    assert result["ledger"] == dom0.ledger
    assert sorted(entry["name"] for entry in result["resumed"]) == GUESTS
    assert dom0.suspended() == [] and dom0.running() == GUESTS
    assert dom0.ledger_entries() == {}

    # The maintenance playbook passes it to both fleet roles (and to the tasks file, whose
    # host_maintenance_ledger_path defaults to it).
    run = controller.run("xen.suspend.maintenance", inventory,
                         extra_vars={"host_maintenance_tasks_file": ROLLING_TASKS})
    assert run.rc == 0, run
    suspend = run.results(host=dom0.name, action="xen.suspend.domain_suspended", event="ok")
    resume = run.results(host=dom0.name, action="xen.suspend.domain_resumed", event="ok")
    assert len(suspend) == len(resume) == 1
    assert sorted(suspend[0]["result"]["suspended"]) == sorted(resume[0]["result"]["resumed"]) == GUESTS
    assert dom0.ledger_entries() == {} and dom0.running() == GUESTS


def test_the_older_host_maintenance_name_reaches_the_recovery_playbook(make_dom0, controller):
    # An inventory written for the older docs names the ledger host_maintenance_ledger_path only;
    # the fleet roles run on their own (xen.suspend.resume) must read that ledger too.
    dom0 = make_dom0("dom0-o", dict(FAST, guests={"linux-pv": 2}))
    inventory = inventory_with(controller, dom0, "host_maintenance_ledger_path", dom0.ledger)

    run = controller.run(SUSPEND_PLAYBOOK, inventory)
    assert run.rc == 0, run
    assert dom0.suspended() == GUESTS and len(dom0.ledger_entries()) == 2

    run = controller.run("xen.suspend.resume", inventory)
    assert run.rc == 0, run
    assert sorted(entry["name"] for entry in run.fact(dom0.name, "fleet_resume_result")["resumed"]) == GUESTS
    assert dom0.suspended() == [] and dom0.ledger_entries() == {}


def test_maintenance_refuses_a_disagreeing_name_before_the_suspend(make_dom0, controller):
    # An extra var beats what host_maintenance passes to include_role: a disagreeing
    # fleet_resume_ledger_path found only by the resume in `always` left every guest suspended.
    dom0 = make_dom0("dom0-d", dict(FAST, guests={"linux-pv": 2}))
    inventory = inventory_with(controller, dom0, "xen_suspend_ledger_path", dom0.ledger)
    elsewhere = os.path.join(controller.workdir, "elsewhere-d", "ledger.json")
    for name, value in (("fleet_resume_ledger_path", elsewhere),
                        ("fleet_suspend_xen_run_dir", os.path.join(controller.workdir, "run-d"))):
        run = controller.run("xen.suspend.maintenance", inventory,
                             extra_vars={"host_maintenance_tasks_file": ROLLING_TASKS, name: value})
        assert run.rc == 2, run
        assert name in run.stdout and "no guest was touched" in run.stdout
        assert run.results(action="xen.suspend.domain_suspended") == []
        assert dom0.suspended() == [] and dom0.running() == GUESTS


RUN_DIR_NAMES = ("host_maintenance_xen_run_dir", "fleet_suspend_xen_run_dir", "fleet_resume_xen_run_dir",
                 "dom0_prerequisites_xen_run_dir")


def test_one_run_directory_variable_reaches_the_recovery_playbook(make_dom0, controller):
    dom0 = make_dom0("dom0-r", dict(FAST, guests={"linux-pv": 2}))
    host_vars = dict((key, value) for key, value in dom0.host_vars().items()
                     if key not in OLD_NAMES + RUN_DIR_NAMES)
    host_vars["xen_suspend_ledger_path"] = dom0.ledger
    host_vars["xen_suspend_xen_run_dir"] = dom0.env["XENSIM_RUN_DIR"]
    inventory = controller.write("inventory-run-dir.yml",
                                 yaml.safe_dump({"xen_dom0": {"hosts": {dom0.name: host_vars}}}))
    run = controller.run(SUSPEND_PLAYBOOK, inventory)
    assert run.rc == 0, run
    assert dom0.suspended() == GUESTS
    run = controller.run("xen.suspend.resume", inventory)
    assert run.rc == 0, run
    assert dom0.suspended() == [] and dom0.ledger_entries() == {}
