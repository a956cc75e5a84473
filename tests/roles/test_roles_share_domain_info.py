# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The roles use the collection's one implementation (xen.suspend.domain_info ``gather``) for
the service-domain scan and the prerequisite check, no scripts of their own (issue 11, item
19), and fleet_suspend_detect_service_domains=false reaches the modules' own refusal (item 2)."""

import os

HERE = os.path.dirname(os.path.abspath(__file__))
SUSPEND_PLAYBOOK = os.path.join(HERE, "playbooks", "suspend.yml")
REPO = os.path.dirname(os.path.dirname(HERE))

FLEET = {"quiesce_ms": 100, "jitter_ms": 20, "heartbeat_ms": 200, "guests": [
    {"behaviour": "linux-pv", "name": "web-1"},
    {"behaviour": "linux-pv", "name": "helper"},    # ~/target: stub domain of web-1 (no telling name)
    {"behaviour": "linux-pv", "name": "net"},       # ~/backend: a driver domain
]}


def names(entries):
    return sorted(entry["name"] for entry in entries)


def test_the_roles_ship_no_scripts():
    for role in ("fleet_suspend", "dom0_prerequisites"):
        assert not os.path.exists(os.path.join(REPO, "roles", role, "files")), role


def test_fleet_suspend_scans_with_domain_info_and_the_override_reaches_the_modules(make_dom0, controller):
    dom0 = make_dom0("dom0-svc", FLEET)
    dom0.xenstore_write("/local/domain/%d/target" % dom0.domid("helper"), str(dom0.domid("web-1")))
    dom0.xenstore_write("/local/domain/%d/backend/vbd/%d/51712/state" % (dom0.domid("net"), dom0.domid("web-1")), "4")
    inventory = controller.inventory([dom0], extra_host_vars={"dom0-svc": {
        "fleet_suspend_protect_controller": False}})

    run = controller.run(SUSPEND_PLAYBOOK, inventory, check=True)
    assert run.rc == 0, run
    assert run.results(action="ansible.builtin.script") == []
    result = run.fact("dom0-svc", "fleet_suspend_result")
    assert names(result["suspended"]) == ["web-1"]
    protected = dict((entry["name"], " ".join(entry["reasons"])) for entry in result["protected"])
    assert "~/target" in protected["helper"] and "driver domain" in protected["net"]
    assert dom0.suspended() == []

    # false: the operator allows service domains; the modules, which refuse them by themselves,
    # are told so (or the suspend task would fail on the explicit targets)
    run = controller.run(SUSPEND_PLAYBOOK, inventory, check=True,
                         extra_vars={"fleet_suspend_detect_service_domains": False})
    assert run.rc == 0, run
    result = run.fact("dom0-svc", "fleet_suspend_result")
    assert names(result["suspended"]) == ["helper", "net", "web-1"]
    assert dom0.suspended() == []


def test_dom0_prerequisites_checks_through_domain_info(make_dom0, controller):
    dom0 = make_dom0("dom0-pre", dict(FLEET, guests={"linux-pv": 1}))
    inventory = controller.inventory([dom0])
    run = controller.run("xen.suspend.prerequisites", inventory, extra_vars={
        "dom0_prerequisites_install": False, "dom0_prerequisites_sysfs_dir": os.path.join(HERE, "no-sysfs")})
    assert run.rc == 0, run
    assert run.results(action="ansible.builtin.script") == []
    checks = [record for record in run.results(host="dom0-pre", action="xen.suspend.domain_info", event="ok")
              if "prerequisites" in record["result"]]
    assert len(checks) == 1
    report = run.fact("dom0-pre", "dom0_prerequisites_report")
    assert report["version_source"] == "probe" and report["problems"] == []
    assert [lib["name"] for lib in report["libraries"]] == ["libxenctrl.so.4.17", "libxenguest.so.4.17",
                                                            "libxenevtchn.so.1"]
