# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Option ranges, check mode and honest summaries of the roles (issue 11, items 11 and 12).

- Out-of-range numbers (negative timeouts, parallel < 0) are refused before any guest is
  touched - also the resume's, which host_maintenance would otherwise only meet after the
  suspend, with the guests already down.
- A check-mode maintenance run says what it would resume, and every summary says
  "(check mode)".
- A suspend or resume task that failed is never summarised as "0 failed".
"""

import os

from test_fleet_roles import FAST, ROLLING_TASKS, SUSPEND_PLAYBOOK

GUESTS = ["linux-pv-1", "linux-pv-2", "linux-pv-3"]


def untouched(dom0):
    assert dom0.suspended() == []
    assert all("requests" not in d.get("counters", {}) for d in dom0.domains().values())
    assert dom0.ledger_entries() is None


def test_out_of_range_suspend_options_are_refused_before_any_guest(make_dom0, controller):
    dom0 = make_dom0("dom0-r", dict(FAST, guests={"linux-pv": 3}))
    inventory = controller.inventory([dom0])

    run = controller.run("xen.suspend.maintenance", inventory, extra_vars={
        "host_maintenance_tasks_file": ROLLING_TASKS, "fleet_suspend_timeout": -1,
        "fleet_suspend_ack_timeout": 0, "fleet_suspend_parallel": -1})
    assert run.rc == 2, run
    assert "fleet_suspend_timeout must be a number of seconds > 0, not -1" in run.stdout
    assert "fleet_suspend_ack_timeout must be a number of seconds > 0, not 0" in run.stdout
    assert "fleet_suspend_parallel must be an integer >= 0 (0: no bound), not -1" in run.stdout
    assert run.results(action="xen.suspend.domain_suspended") == []
    assert run.results(action="xen.suspend.domain_info") == []
    untouched(dom0)

    # The role on its own refuses them as well.
    run = controller.run(SUSPEND_PLAYBOOK, inventory, extra_vars={"fleet_suspend_parallel": -3})
    assert run.rc == 2, run
    assert "fleet_suspend_parallel must be an integer >= 0 (0: no bound), not -3" in run.stdout
    assert run.results(action="xen.suspend.domain_info") == []
    untouched(dom0)


def test_bad_resume_options_stop_the_maintenance_before_the_suspend(make_dom0, controller):
    # The resume runs after the suspend: a resume option it would refuse then must stop the run
    # before any guest goes down, or the guests stay suspended.
    dom0 = make_dom0("dom0-s", dict(FAST, guests={"linux-pv": 3}))
    inventory = controller.inventory([dom0])

    for bad, message in (({"fleet_resume_timeout": -5}, "fleet_resume_timeout must be a number of seconds > 0, not -5"),
                         ({"fleet_resume_timeout": "soon"}, "fleet_resume_timeout"),
                         ({"fleet_resume_xenstore_timeout": 0}, "fleet_resume_xenstore_timeout must be a number")):
        run = controller.run("xen.suspend.maintenance", inventory,
                             extra_vars=dict(bad, host_maintenance_tasks_file=ROLLING_TASKS))
        assert run.rc == 2, run
        assert message in run.stdout, run
        assert run.results(action="xen.suspend.domain_suspended") == [], run
        untouched(dom0)
        assert dom0.running() == GUESTS


def test_check_mode_maintenance_says_what_it_would_resume(make_dom0, controller):
    dom0 = make_dom0("dom0-c", dict(FAST, guests={"linux-pv": 3}))
    inventory = controller.inventory([dom0])

    run = controller.run("xen.suspend.maintenance", inventory, check=True,
                         extra_vars={"host_maintenance_tasks_file": os.path.join(
                             os.path.dirname(ROLLING_TASKS), "maintenance-check-mode.yml")})
    assert run.rc == 0, run
    untouched(dom0)
    suspend = run.results(host="dom0-c", task="Summarise the suspend", event="ok")
    resume = run.results(host="dom0-c", task="Summarise the resume", event="ok")
    assert len(suspend) == len(resume) == 1, run
    assert "(check mode)" in suspend[0]["result"]["msg"] and "would suspend 3" in suspend[0]["result"]["msg"]
    assert "(check mode)" in resume[0]["result"]["msg"] and "would resume 3" in resume[0]["result"]["msg"], resume
    result = run.fact("dom0-c", "fleet_resume_result")
    assert result["check_mode"] is True
    assert sorted(result["would_resume"]) == GUESTS


def test_a_failed_suspend_task_is_not_summarised_as_nothing_failed(make_dom0, controller):
    dom0 = make_dom0("dom0-e", dict(FAST, guests={"linux-pv": 2}))
    # A ledger the module cannot use (its directory is a file): the suspend task fails as a
    # whole, before any guest, with no per-guest failure.
    blocker = controller.write("not-a-directory", "")
    ledger = os.path.join(blocker, "ledger.json")
    inventory = controller.inventory([dom0], extra_host_vars={"dom0-e": dict(
        (name, ledger) for name in ("host_maintenance_ledger_path", "fleet_suspend_ledger_path",
                                    "fleet_resume_ledger_path", "dom0_prerequisites_ledger_path"))})

    run = controller.run("xen.suspend.maintenance", inventory,
                         extra_vars={"host_maintenance_tasks_file": ROLLING_TASKS})
    assert run.rc == 2, run
    failed = run.results(host="dom0-e", action="xen.suspend.domain_suspended", event="failed")
    assert failed, run
    for task in ("Summarise the suspend", "Summarise the resume"):
        summary = run.results(host="dom0-e", task=task, event="ok")
        assert len(summary) == 1, (task, run)
        message = summary[0]["result"]["msg"]
        assert "0 failed" not in message, message
        assert "FAILED" in message, message
    assert run.fact("dom0-e", "fleet_suspend_result")["error"]
    assert dom0.suspended() == []


def test_maintenance_ends_with_a_per_guest_table_in_the_output_facts_and_stats(make_dom0, controller):
    dom0 = make_dom0("dom0-t", dict(FAST, guests=[
        {"behaviour": "linux-pv", "name": "web-1"}, {"behaviour": "unresponsive", "name": "stuck"},
        {"behaviour": "hvm-nopv", "name": "app"}]))
    inventory = controller.inventory([dom0])

    run = controller.run("xen.suspend.maintenance", inventory, extra_vars={
        "host_maintenance_tasks_file": os.path.join(os.path.dirname(ROLLING_TASKS), "maintenance-check-mode.yml"),
        "fleet_suspend_ack_timeout": 1, "fleet_suspend_continue_on_error": True})
    assert run.rc == 0, run

    rows = dict((row["name"], row) for row in run.fact("dom0-t", "fleet_resume_result")["guests"])
    assert sorted(rows) == ["app", "stuck", "web-1"]
    assert rows["web-1"]["method"] == "xenstore" and rows["app"]["method"] == "direct"
    assert rows["web-1"]["state"] == rows["app"]["state"] == "resumed"
    assert rows["web-1"]["suspend_seconds"] > 0
    assert rows["stuck"]["state"] == "failed" and "not_acknowledged" in rows["stuck"]["outcome"]
    # downtime_seconds comes from domain_resumed (a number once it reports it, else null).
    assert all(row["downtime_seconds"] is None or row["downtime_seconds"] >= 0 for row in rows.values())
    assert run.stats["custom"]["_run"]["xen_suspend_guests"]["dom0-t"] == \
        run.fact("dom0-t", "fleet_resume_result")["guests"]

    # One task output, one line per guest.
    shown = run.results(host="dom0-t", role="fleet_resume", task="Show the guests", event="ok")
    assert len(shown) == 1, run
    lines = shown[0]["result"]["msg"]
    assert lines[0].split() == ["guest", "method", "suspend", "s", "downtime", "s", "resumed,", "or", "why", "not"]
    assert [line.split()[0] for line in lines[2:]] == ["web-1", "stuck", "app"]
    assert lines[2].split()[1] == "xenstore" and lines[2].endswith("resumed")
    assert dom0.suspended() == [] and dom0.ledger_entries() == {}
