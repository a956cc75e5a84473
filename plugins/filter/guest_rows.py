# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
name: guest_rows
short_description: One row per guest of a maintenance window, from the suspend and resume results
version_added: 0.1.0
author:
  - xen.suspend maintainers (@xen-suspend)
description:
  - Joins the per-domain results of M(xen.suspend.domain_suspended) and M(xen.suspend.domain_resumed)
    (their C(domains) return values) by UUID into one row per guest - the method, the time the
    suspend took, the time the guest spent suspended (its downtime, from the ledger's record of the verified suspend) and what became of it.
  - The roles C(xen.suspend.fleet_suspend) and C(xen.suspend.fleet_resume) publish these rows as
    C(guests) in their result facts and print them with P(xen.suspend.guest_table#filter).
positional: _input
options:
  _input:
    description:
      - The C(domains) of a M(xen.suspend.domain_suspended) result; V(null) or V([]) when no suspend
        of this run is known (for example C(xen.suspend.resume) on its own).
    type: list
    elements: dict
    required: true
  resume:
    description:
      - The C(domains) of a M(xen.suspend.domain_resumed) result.
      - V(null) when no resume ran (yet); then a suspended guest is reported as suspended and recorded.
    type: list
    elements: dict
  vanished:
    description: The C(vanished) of a M(xen.suspend.domain_resumed) result.
    type: list
    elements: dict
    default: []
  check_mode:
    description: The results come from check mode; nothing was touched.
    type: bool
    default: false
  resume_error:
    description:
      - The message of a resume task that failed as a whole. Guests suspended by this run that it
        does not report are then shown with this message.
    type: str
    default: ""
'''

EXAMPLES = r'''
- name: One row per guest
  ansible.builtin.set_fact:
    guests: "{{ suspend.domains | xen.suspend.guest_rows(resume=resume.domains, vanished=resume.vanished) }}"
  # => [{"name": "web-1", "method": "xenstore", "suspend_seconds": 0.21, "downtime_seconds": 62.4,
  #      "state": "resumed", "outcome": "resumed", ...}, ...]
'''

RETURN = r'''
_value:
  description: One row per guest, in the order of the suspend result, then the guests only the resume reports.
  type: list
  elements: dict
  contains:
    name:
      description: The guest's name.
      type: str
    uuid:
      description: The guest's UUID.
      type: str
    method:
      description: The suspend protocol used (or that would be used); V(null) when not known.
      type: str
    suspend_seconds:
      description: Seconds this run's suspend of the guest took (the sum of its phases); V(null) when it did not suspend it.
      type: float
    downtime_seconds:
      description:
        - Seconds from the verified suspend recorded in the ledger to the completion of the resume
          (the C(downtime_seconds) of M(xen.suspend.domain_resumed)); V(null) when not known.
      type: float
    state:
      description:
        - One word for what became of the guest - V(resumed), V(running) (never suspended, or already
          running again), V(suspended) (suspended and recorded, no resume yet), V(failed) (the suspend
          failed, the guest runs), V(left_suspended) (the resume failed or did not report it),
          V(vanished), V(would_resume) (check mode).
      type: str
    outcome:
      description: The same, for people - resumed, or why not.
      type: str
    notes:
      description: The remarks of both modules about the guest (for example a fallback from the event channel to xenstore).
      type: list
      elements: str
'''

from ansible.errors import AnsibleFilterError

RUNNING = ("running", "blocked")


def _seconds(phases):
    if not isinstance(phases, dict) or not phases:
        return None
    try:
        return round(sum(float(value) for value in phases.values()), 3)
    except (TypeError, ValueError):
        return None


def _error_text(error):
    if not isinstance(error, dict):
        return str(error)
    return "%s in %s" % (error.get("kind") or "error", error.get("phase") or "-")


def _key(entry):
    return entry.get("uuid") or entry.get("name")


def _suspend_row(entry):
    row = {
        "name": entry.get("name"),
        "uuid": entry.get("uuid"),
        "method": entry.get("method"),
        "suspend_seconds": None,
        "downtime_seconds": None,
        "notes": list(entry.get("notes") or []),
    }
    if entry.get("error"):
        after = entry.get("after")
        still = "still running" if after in RUNNING else "now %s" % after
        row.update(state="failed", outcome="not suspended: %s; %s" % (_error_text(entry["error"]), still))
    elif entry.get("changed"):
        row.update(suspend_seconds=_seconds(entry.get("phases")), state="suspended",
                   outcome="suspended, recorded in the ledger")
    else:
        row.update(state="suspended", outcome="already suspended, recorded in the ledger")
    return row


def _resume_outcome(entry, check_mode):
    """(state, outcome) of a domain_resumed entry."""
    if entry.get("error"):
        return "left_suspended", "RESUME FAILED: %s; %s" % (
            _error_text(entry["error"]), entry["error"].get("message") or "see the task's result")
    if entry.get("changed"):
        if check_mode:
            return "would_resume", "would resume"
        return "resumed", "resumed"
    after = entry.get("after")
    notes = "; ".join(entry.get("notes") or [])
    if after in RUNNING:
        return "running", "not resumed: already running%s" % ("; " + notes if notes else "")
    return "left_suspended", "NOT RESUMED: %s" % (notes or "now %s" % after)


def guest_rows(suspend, resume=None, vanished=None, check_mode=False, resume_error=""):
    """Rows (dicts) of the per-guest report; see DOCUMENTATION."""
    for name, value in (("_input", suspend), ("resume", resume), ("vanished", vanished)):
        if value is not None and not isinstance(value, (list, tuple)):
            raise AnsibleFilterError("guest_rows: %s must be a list of per-domain results, not %s"
                                     % (name, type(value).__name__))
    rows = []
    by_key = {}
    for entry in suspend or []:
        row = _suspend_row(entry)
        if check_mode and row["state"] == "suspended" and entry.get("changed"):
            row.update(outcome="would suspend", suspend_seconds=None)
        rows.append(row)
        by_key[_key(entry)] = row
    for entry in resume or []:
        state, outcome = _resume_outcome(entry, check_mode)
        row = by_key.get(_key(entry))
        if row is None:
            row = {"name": entry.get("name"), "uuid": entry.get("uuid"), "method": None,
                   "suspend_seconds": None, "notes": []}
            rows.append(row)
            by_key[_key(entry)] = row
        elif row["state"] == "failed":
            if state not in ("resumed", "left_suspended"):
                continue   # never suspended: the resume has nothing to add
            # It suspended after the suspend gave up on it (recorded in the ledger) and the resume
            # found it: say both.
            outcome = "%s; suspended late, then %s" % (row["outcome"].split(";")[0], outcome)
        if check_mode and state == "would_resume" and row.get("outcome") == "would suspend":
            outcome = "would suspend, then resume"
        row.update(state=state, outcome=outcome, downtime_seconds=entry.get("downtime_seconds"),
                   notes=row["notes"] + [note for note in entry.get("notes") or [] if note not in row["notes"]])
    for entry in vanished or []:
        row = by_key.get(_key(entry))
        if row is None:
            row = {"name": entry.get("name"), "uuid": entry.get("uuid"), "method": None,
                   "suspend_seconds": None, "notes": []}
            rows.append(row)
        row.update(state="vanished", downtime_seconds=None,
                   outcome="VANISHED while suspended (destroyed, or lost in a dom0 reboot)")
    if resume is not None or resume_error:
        for row in rows:
            if row["state"] != "suspended":
                continue
            if check_mode:
                row.update(state="would_resume", outcome="would suspend, then resume")
            else:
                row.update(state="left_suspended", outcome="LEFT SUSPENDED: %s" % (
                    ("the resume failed: %s" % resume_error) if resume_error
                    else "the resume did not report it"))
    return rows


class FilterModule(object):

    def filters(self):
        return {"guest_rows": guest_rows}
