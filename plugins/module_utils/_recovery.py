# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: settling what stopped runs left, at every module start.

A run killed at any line (SIGKILL, a dom0 OOM, a power cut of the controller) leaves ledger
entries, maybe a "suspend" in a guest's ~/control/shutdown, a stopped xl monitor and a suspend
event-channel subscription. Before it does anything else, each module looks at every entry
whose domain no live run is working on (it takes the domain's suspend lock, non-blocking; a
held lock means somebody is: that entry is left alone) and settles it on evidence:

* running, recorded suspended: somebody resumed it -> entry removed, monitor continued;
* running, "resuming": a resume of ours was killed after its hypercall -> entry removed;
* running, intent: a "suspend" still unanswered in the node is withdrawn in a transaction ->
  entry removed; an answered (or event-channel, or direct) request whose settle_by passed
  without a suspend -> entry removed; otherwise it stays: domain_resumed waits for it;
* shut down for another reason (reboot, poweroff, crash): entry removed and the monitor
  continued, so xl applies the domain's on_reboot/on_poweroff as it would have;
* suspended: left for domain_resumed; gone: left for domain_resumed to report as vanished
  (its monitor is continued: it then sees the domain gone and exits as usual);
* every locked event-channel entry gets its suspend subscription cleared (port 0).

Entries of guests saved to disk (saving, saved, restoring) are settled by _image_recovery
under their per-UUID claim instead.

domain_info calls it with ``act=False``: it then reports what would be done, touching nothing.
"""

from ansible_collections.xen.suspend.plugins.module_utils._errors import (
    DomainBusy, XenSuspendError)
from ansible_collections.xen.suspend.plugins.module_utils._image_recovery import (
    ACTION_RETURNED, image_verdict, recover_image_entry)
from ansible_collections.xen.suspend.plugins.module_utils._ledger import (
    STATE_RESUMING, STATE_SUSPENDED, is_image_entry)
from ansible_collections.xen.suspend.plugins.module_utils._ledger_transitions import (
    DID_NOT_SUSPEND, FOUND_RUNNING, GONE, OTHER_SHUTDOWN, RESUMED, WITHDRAWN, Settle,
    apply_transitions, settle_deadline_passed)
from ansible_collections.xen.suspend.plugins.module_utils._suspend_method import (
    EVENT_CHANNEL, XENSTORE)
from ansible_collections.xen.suspend.plugins.module_utils._protocol_requests import withdraw_suspend_request

# What recovery decided for one entry (RecoveryReport.actions[...]["action"]).
ACTION_WITHDRAWN = "withdrawn"
ACTION_SETTLED = "settled"
ACTION_WAIT = "left_for_resume"
ACTION_BUSY = "busy"


class RecoveryReport(object):
    def __init__(self):
        self.actions = []
        self.errors = []

    def add(self, entry, action, detail, reason=None):
        self.actions.append({"name": entry.get("name"), "uuid": entry["uuid"], "action": action,
                             "reason": reason, "detail": detail})

    def names(self, action):
        return [item["name"] or item["uuid"] for item in self.actions if item["action"] == action]

    @property
    def changed(self):
        return any(item["action"] in (ACTION_WITHDRAWN, ACTION_SETTLED, ACTION_RETURNED)
                   for item in self.actions)

    def as_dict(self):
        return {"actions": list(self.actions), "errors": list(self.errors)}


def domains_by_uuid(xenctrl):
    return dict((info.uuid, info) for info in xenctrl.list_domains())


# Why an entry is left for domain_resumed (the report's ``reason`` for ACTION_WAIT).
WAIT_VANISHED = "vanished"
WAIT_SUSPENDED = "suspended"
WAIT_MAY_STILL_SUSPEND = "may_still_suspend"


def wait_reason(info):
    """The reason an entry whose verdict settles nothing stays: what domain_resumed will do."""
    if info is None:
        return WAIT_VANISHED
    return WAIT_SUSPENDED if info.suspended else WAIT_MAY_STILL_SUSPEND


def verdict(entry, info, now):
    """What the evidence says about one entry: (settle reason or None, why). Pure: no I/O."""
    if info is None:
        return None, "the domain no longer exists (domain_resumed reports it as vanished)"
    if not info.suspended and entry.get("state") != STATE_SUSPENDED and \
            entry.get("domid") not in (None, info.domid):
        # e.g. xl restarted a guest that rebooted: same UUID, a new domain, no request of ours
        return GONE, ("the domain the request went to (domid %s) is gone; a new one with its "
                      "UUID runs as domid %d" % (entry.get("domid"), info.domid))
    if info.suspended:
        return None, "suspended: domain_resumed resumes it"
    if info.shut_down or info.dying:
        return OTHER_SHUTDOWN, "the domain is %s, not suspended" % info.state
    if entry.get("state") == STATE_RESUMING:
        return RESUMED, "a stopped resume run of ours had resumed it"
    if entry.get("state") == STATE_SUSPENDED:
        return FOUND_RUNNING, "recorded suspended, but it runs again (resumed by someone else)"
    if settle_deadline_passed(entry, now):
        return DID_NOT_SUSPEND, ("still running after its settle time %s: it did not suspend "
                                 "(it never took the request, or answered and gave up)" % entry.get("settle_by"))
    return None, "running; the guest may still suspend because of the request (until %s)" \
        % entry.get("settle_by")


def recover(backends, entries, act=True, skip=()):
    """Settle ``entries`` (uuid -> entry) except the UUIDs in ``skip``; a RecoveryReport."""
    report = RecoveryReport()
    candidates = [entry for uuid, entry in sorted(entries.items()) if uuid not in skip]
    if not candidates:
        return report
    try:
        live = domains_by_uuid(backends.xenctrl)
    except XenSuspendError as exc:
        report.errors.append("recovery skipped: cannot list domains: %s" % exc)
        return report
    transitions = []
    now = backends.wall_clock()
    for entry in candidates:
        info = live.get(entry["uuid"])
        if is_image_entry(entry):
            if act:
                recover_image_entry(backends, entry, info, report, transitions)
            else:
                step = image_verdict(entry, info)
                report.add(entry, step.action, step.why, step.reason)
            continue
        if not act:
            reason, why = verdict(entry, info, now)
            if reason is None and info is not None and not info.suspended and \
                    entry.get("method") == XENSTORE:
                why += "; an unanswered request would be withdrawn"
            report.add(entry, ACTION_SETTLED if reason else ACTION_WAIT, why,
                       reason or wait_reason(info))
            continue
        _recover_entry(backends, entry, info, now, report, transitions)
    if transitions:
        try:
            apply_transitions(backends.ledger, transitions)
        except XenSuspendError as exc:
            report.errors.append("recovery could not update the ledger: %s" % exc)
    return report


def _recover_entry(backends, entry, info, now, report, transitions):
    domid = info.domid if info is not None else entry.get("domid")
    lock = None
    if info is not None:
        try:
            lock = backends.locks.acquire(domid)
        except DomainBusy:
            report.add(entry, ACTION_BUSY, "another run (or xl save/migrate) is working on it")
            return
        except XenSuspendError as exc:
            report.errors.append("recovery of %s: %s" % (entry.get("name"), exc))
            return
    try:
        reason, why = verdict(entry, info, now)
        if reason is None and info is not None and not info.suspended and \
                entry.get("method") == XENSTORE:
            try:
                if withdraw_suspend_request(backends.xenstore, domid):
                    reason, why = WITHDRAWN, "a stopped run's unanswered request was withdrawn"
            except XenSuspendError as exc:
                why += "; withdrawing failed: %s" % exc
        if reason is not None:
            transitions.append(Settle(entry["uuid"], entry.get("intent_id"), reason))
            report.add(entry, ACTION_WITHDRAWN if reason == WITHDRAWN else ACTION_SETTLED, why, reason)
        else:
            report.add(entry, ACTION_WAIT, why, wait_reason(info))
        if reason is not None or info is None:
            _continue_monitor(backends, entry, report)
        if info is not None and entry.get("method") == EVENT_CHANNEL:
            try:
                backends.xenctrl.subscribe_for_suspend(domid, 0)
            except XenSuspendError as exc:
                report.errors.append("recovery of %s: clearing the suspend subscription: %s"
                                     % (entry.get("name"), exc))
    finally:
        if lock is not None:
            lock.release()


def _continue_monitor(backends, entry, report):
    monitors = backends.monitors
    monitor = entry.get("lifecycle_monitor")
    if monitors is None or not monitor:
        return
    if monitors.state(monitor) == "frozen" and monitors.thaw(monitor):
        report.actions[-1]["detail"] += "; xl's monitor (pid %s) continued" % monitor.get("pid")
