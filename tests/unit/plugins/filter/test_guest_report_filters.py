# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""xen.suspend.guest_rows and guest_table: the per-guest report of a maintenance window."""

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.xen.suspend.plugins.filter.guest_rows import FilterModule as RowsModule, guest_rows
from ansible_collections.xen.suspend.plugins.filter.guest_table import FilterModule as TableModule, guest_table

PHASES = {"lookup": 0.001, "lock": 0.001, "request": 0.002, "acknowledge": 0.1, "quiesce": 0.2, "verify": 0.006}


def suspended(name, method="xenstore", **extra):
    return dict(dict(name=name, uuid="uuid-" + name, domid=1, method=method, changed=True, error=None,
                     phases=PHASES, after="suspended"), **extra)


def resumed(name, **extra):
    return dict(dict(name=name, uuid="uuid-" + name, changed=True, error=None, after="running"), **extra)


def by_name(rows):
    return dict((row["name"], row) for row in rows)


def test_a_suspended_and_resumed_guest_has_method_times_and_downtime():
    rows = guest_rows([suspended("web-1")], resume=[resumed("web-1", downtime_seconds=62.5)])
    assert rows == [{"name": "web-1", "uuid": "uuid-web-1", "method": "xenstore", "suspend_seconds": 0.31,
                     "downtime_seconds": 62.5, "state": "resumed", "outcome": "resumed", "notes": []}]


def test_notes_of_both_modules_are_kept():
    rows = guest_rows([suspended("win-1", notes=["node re-created"])],
                      resume=[resumed("win-1", notes=["monitor continued"])])
    assert rows[0]["notes"] == ["node re-created", "monitor continued"]


def test_downtime_is_unknown_when_the_resume_does_not_report_it():
    rows = guest_rows([suspended("web-1")], resume=[resumed("web-1")])
    assert rows[0]["downtime_seconds"] is None and rows[0]["state"] == "resumed"
    assert guest_table(rows)[2].split()[3] == "-"


def test_every_way_a_guest_can_end():
    stuck = dict(suspended("stuck"), changed=False, after="running", phases=dict(PHASES, acknowledge=5.0),
                 error={"kind": "not_acknowledged", "phase": "acknowledge", "message": "no answer"})
    late = dict(suspended("late"), changed=False, after="running",
                error={"kind": "timeout", "phase": "quiesce", "message": "too slow"})
    already = dict(suspended("old"), changed=False)
    rows = by_name(guest_rows(
        [suspended("web-1"), stuck, late, already, suspended("broken"), suspended("lost"), suspended("gone")],
        resume=[resumed("web-1", downtime_seconds=3.0), resumed("late", downtime_seconds=1.0),
                resumed("old", downtime_seconds=99.0),
                dict(resumed("broken"), changed=False, after="suspended",
                     error={"kind": "call_failed", "phase": "resume", "message": "xc_domain_resume failed"}),
                resumed("earlier", downtime_seconds=7200.0)],
        vanished=[{"name": "gone", "uuid": "uuid-gone"}]))
    assert rows["web-1"]["state"] == "resumed"
    assert rows["stuck"]["state"] == "failed" and rows["stuck"]["suspend_seconds"] is None
    assert rows["stuck"]["outcome"] == "not suspended: not_acknowledged in acknowledge; still running"
    assert rows["late"]["state"] == "resumed" and rows["late"]["downtime_seconds"] == 1.0
    assert rows["late"]["outcome"] == "not suspended: timeout in quiesce; suspended late, then resumed"
    assert rows["old"]["state"] == "resumed" and rows["old"]["suspend_seconds"] is None
    assert rows["broken"]["state"] == "left_suspended"
    assert rows["broken"]["outcome"].startswith("RESUME FAILED: call_failed in resume; xc_domain_resume failed")
    assert rows["lost"]["state"] == "left_suspended" and "did not report it" in rows["lost"]["outcome"]
    assert rows["gone"]["state"] == "vanished" and rows["gone"]["outcome"].startswith("VANISHED")
    # A guest only the ledger knew (an earlier run suspended it): from the resume alone.
    assert rows["earlier"]["method"] is None and rows["earlier"]["downtime_seconds"] == 7200.0


def test_before_any_resume_a_suspended_guest_is_reported_as_suspended_and_recorded():
    rows = guest_rows([suspended("web-1")])
    assert rows[0]["state"] == "suspended" and "recorded in the ledger" in rows[0]["outcome"]


def test_a_resume_task_that_failed_as_a_whole_leaves_its_guests_reported_as_suspended():
    rows = guest_rows([suspended("web-1")], resume=[], resume_error="ledger_error: cannot read")
    assert rows[0]["state"] == "left_suspended"
    assert rows[0]["outcome"] == "LEFT SUSPENDED: the resume failed: ledger_error: cannot read"


def test_check_mode_says_would():
    rows = guest_rows([suspended("web-1")], check_mode=True)
    assert rows[0]["outcome"] == "would suspend" and rows[0]["suspend_seconds"] is None
    rows = guest_rows([suspended("web-1")], resume=[], check_mode=True)
    assert rows[0]["state"] == "would_resume" and rows[0]["outcome"] == "would suspend, then resume"
    rows = guest_rows([], resume=[resumed("earlier")], check_mode=True)
    assert rows[0]["state"] == "would_resume" and rows[0]["outcome"] == "would resume"


def test_the_table_lines_up():
    rows = guest_rows([suspended("web-1"), suspended("a-much-longer-name", method="direct")],
                      resume=[resumed("web-1", downtime_seconds=12.345)])
    lines = guest_table(rows)
    assert lines[0].split("  ")[0].strip() == "guest" and "downtime s" in lines[0]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].split() == ["web-1", "xenstore", "0.31", "12.35", "resumed"]
    assert lines[3].split()[:4] == ["a-much-longer-name", "direct", "0.31", "-"]
    assert lines[2].index("resumed") == lines[0].index("resumed, or why not")
    assert len(guest_table([])) == 2


@pytest.mark.parametrize("bad", ["text", 5, {"name": "x"}])
def test_bad_input_is_an_error(bad):
    with pytest.raises(AnsibleFilterError):
        guest_rows(bad)
    with pytest.raises(AnsibleFilterError):
        guest_table(bad if not isinstance(bad, dict) else [5])


def test_filters_are_registered():
    assert RowsModule().filters()["guest_rows"] is guest_rows
    assert TableModule().filters()["guest_table"] is guest_table
