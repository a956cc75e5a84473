# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: resuming what the ledger says we suspended.

By default the targets are the ledger's entries, matched to live domains by UUID (a domain
restored under a new domid is still found). A suspended domain the ledger does not know may
be in the middle of ``xl save`` or a migration, so resuming it needs ``force_unrecorded``.

Only a domain that really is shut down with reason suspend is resumed:
xc_domain_resume(fast) -- fast=1 ("suspend cancelled") unless the ledger says the guest never
made the hypercall itself (direct method) -- then XS_RESUME, so C xenstored re-arms
@releaseDomain for the domain, then a check that it runs. Resuming is a handful of
synchronous hypercalls per domain, so domains are done one after another.
"""

import calendar
import time

from ansible_collections.xen.suspend.plugins.module_utils._domain_state import (
    STATE_GONE, STATE_RUNNING, reason_name)
from ansible_collections.xen.suspend.plugins.module_utils._errors import (
    DomainOperationError, LedgerError, TargetError, XenSuspendError, XenstoreError)
from ansible_collections.xen.suspend.plugins.module_utils._phases import (
    LOCK, LOOKUP, RESUME, VERIFY, PhaseTimer)
from ansible_collections.xen.suspend.plugins.module_utils._ledger import STATE_INTENT
from ansible_collections.xen.suspend.plugins.module_utils._run_report import RunReport
from ansible_collections.xen.suspend.plugins.module_utils._targets import (
    KIND_DOMID, KIND_NAME, KIND_UUID, refusal, select_targets)
from ansible_collections.xen.suspend.plugins.module_utils._xenstore import withdraw_suspend_request

VERIFY_POLL = 0.005
# How long after its intent an answered request may still turn into a suspend: libxl's 60 s
# acknowledgement plus 60 s quiesce, with room to spare.
ANSWERED_REQUEST_GRACE = 600


def _recent(stamp, now=None):
    try:
        written = calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))
    except (TypeError, ValueError):
        return False
    return (time.time() if now is None else now) - written < ANSWERED_REQUEST_GRACE


class ResumeJob(object):
    def __init__(self, record, entry, clock, forced=False):
        self.record = record
        self.entry = entry
        self.forced = forced
        self.phases = PhaseTimer(clock or time.monotonic)
        self.before = record.info.state if record is not None else STATE_GONE
        self.after = None
        self.changed = False
        self.error = None
        self.notes = []
        self.succeeded = False
        self.remove_entry = False
        self.monitor = (entry or {}).get("lifecycle_monitor")

    @property
    def uuid(self):
        return self.record.uuid if self.record is not None else self.entry["uuid"]

    @property
    def label(self):
        if self.record is not None:
            return self.record.label
        return "%s (uuid %s)" % (self.entry.get("name"), self.entry["uuid"])

    @property
    def display_name(self):
        if self.record is not None:
            return self.record.display_name
        return self.entry.get("name") or self.entry["uuid"]

    def result(self):
        record = self.record
        return {
            "name": record.name if record is not None else self.entry.get("name"),
            "domid": record.domid if record is not None else None,
            "uuid": self.uuid,
            "before": self.before,
            "after": self.after if self.after is not None else self.before,
            "changed": self.changed,
            "recorded": self.entry is not None,
            "lifecycle_monitor": self.monitor,
            "phases": self.phases.as_dict(),
            "error": self.error,
            "notes": list(self.notes),
        }


class ResumePlan(object):
    def __init__(self, jobs, vanished, skipped):
        self.jobs = jobs
        self.vanished = vanished
        self.skipped = skipped


def _entry_order(entry):
    return (entry.get("intent_at") or "", entry.get("name") or "", entry["uuid"])


def _vanished_item(entry):
    return {"name": entry.get("name"), "uuid": entry["uuid"], "domid": entry.get("domid"),
            "state": entry.get("state"), "intent_at": entry.get("intent_at"),
            "lifecycle_monitor": entry.get("lifecycle_monitor")}


def plan_resume(records, entries, selectors, exclude=(), protected=(), force_unrecorded=False,
                clock=None):
    """Targets for a resume. Raises TargetError, with every problem, before touching anything."""
    by_uuid = dict((record.uuid, record) for record in records)
    jobs = []
    vanished = []
    skipped = []
    problems = []

    if not selectors:
        for entry in sorted(entries.values(), key=_entry_order):
            record = by_uuid.get(entry["uuid"])
            if record is None:
                if not any(rule.kind == KIND_UUID and rule.value == entry["uuid"] or
                           rule.kind == KIND_NAME and rule.value == entry.get("name")
                           for rule in exclude):
                    vanished.append(_vanished_item(entry))
                continue
            if any(rule.matches(record) for rule in exclude):
                continue
            reason = refusal(record, protected)
            if reason is not None:
                skipped.append({"name": record.name, "domid": record.domid, "uuid": record.uuid,
                                "reason": reason})
                continue
            jobs.append(ResumeJob(record, entry, clock))
        return ResumePlan(jobs, vanished, skipped)

    selection = select_targets(records, selectors, exclude, protected, allow_unmatched=True)
    skipped = selection.skipped
    for selector in selection.unmatched:
        found = [entry for entry in entries.values() if
                 selector.kind == KIND_UUID and entry["uuid"] == selector.value or
                 selector.kind == KIND_NAME and entry.get("name") == selector.value or
                 selector.kind == KIND_DOMID and entry.get("domid") == selector.value]
        if found:
            vanished.extend(_vanished_item(entry) for entry in sorted(found, key=_entry_order))
        else:
            problems.append("no domain or ledger entry matches %s %r" % (selector.kind, selector.text))
    for record in selection.targets:
        entry = entries.get(record.uuid)
        if entry is None and record.info.suspended and not force_unrecorded:
            problems.append(
                "%s is suspended but not recorded in the ledger (it may be in the middle of xl save "
                "or a migration); set force_unrecorded=true to resume it anyway" % record.label)
            continue
        jobs.append(ResumeJob(record, entry, clock, forced=entry is None))
    if problems:
        raise TargetError("invalid targets, nothing was touched: " + "; ".join(problems))
    return ResumePlan(jobs, vanished, skipped)


class ResumeReport(RunReport):
    changed_key = "resumed"

    def __init__(self, jobs, vanished, skipped, stats, errors):
        RunReport.__init__(self, jobs, stats, errors, skipped)
        self.vanished = vanished

    @property
    def resumed(self):
        return self.changed_names

    def module_result(self, diff=False):
        result = RunReport.module_result(self, diff)
        result["vanished"] = self.vanished
        return result


class ResumeEngine(object):
    """Resumes the jobs of a ResumePlan. ``timeout``: how long to wait for a resumed domain
    to be seen running."""

    def __init__(self, backends, timeout=10.0, continue_on_error=False, check_mode=False,
                 prune_vanished=False):
        if timeout is None or not timeout > 0:  # pylint: disable=unnecessary-negation  # also rejects NaN
            raise TargetError("invalid options, nothing was touched: timeout must be > 0, not %r"
                              % (timeout,))
        self.backends = backends
        self.xc = backends.xenctrl
        self.xs = backends.xenstore
        self.clock = backends.clock
        self.timeout = float(timeout)
        self.continue_on_error = continue_on_error
        self.check_mode = check_mode
        self.prune_vanished = prune_vanished
        self._errors = []

    def run(self, plan):
        clock = self.clock
        wall_start = clock()
        cpu_start = self.backends.cpu_clock()
        xs_start = self.xs.round_trips
        xc_start = getattr(self.xc, "calls", 0)
        writes_start = self.backends.ledger.writes
        stop_reason = None
        if not self.check_mode and any(job.record is not None for job in plan.jobs):
            self.backends.locks.check_run_dir()
        for job in plan.jobs:
            if stop_reason is not None:
                job.error = {"kind": "not_attempted", "phase": None,
                             "message": "domain %s: %s" % (job.label, stop_reason)}
                continue
            self._resume_one(job)
            if job.error is not None and not self.continue_on_error:
                stop_reason = "not attempted: %s failed and continue_on_error is false" % job.label
        self._thaw_vanished_monitors(plan)
        self._update_ledger(plan)
        stats = {
            "domains": len(plan.jobs),
            "wall_seconds": round(clock() - wall_start, 6),
            "cpu_seconds": round(self.backends.cpu_clock() - cpu_start, 6),
            "xenstore_round_trips": self.xs.round_trips - xs_start,
            "xenctrl_calls": getattr(self.xc, "calls", 0) - xc_start,
            "ledger_writes": self.backends.ledger.writes - writes_start,
        }
        return ResumeReport(plan.jobs, plan.vanished, plan.skipped, stats, self._errors)

    def _resume_one(self, job):
        lock = None
        phase = LOOKUP
        try:
            job.phases.start(LOOKUP)
            info = self.xc.domain_info(job.record.domid)
            if info is None or info.uuid != job.record.uuid:
                job.after = STATE_GONE
                raise DomainOperationError("the domain no longer exists", kind="vanished")
            job.before = info.state
            if info.dying:
                raise DomainOperationError("the domain is dying", kind="not_suspended")
            if not info.shut_down:
                job.after = info.state
                if job.entry is not None:
                    self._settle_running_entry(job, info)
                job.phases.stop()
                return
            if not info.suspended:
                raise DomainOperationError(
                    "the domain is shut down with reason %s, not suspended; it is not resumed"
                    % reason_name(info.shutdown_reason), kind="not_suspended")
            if self.check_mode:
                job.after = STATE_RUNNING
                job.changed = True
                job.notes.append("check mode: would resume")
                job.phases.stop()
                return
            phase = LOCK
            job.phases.start(LOCK)
            lock = self.backends.locks.acquire(job.record.domid)
            phase = RESUME
            job.phases.start(RESUME)
            fast = True if job.entry is None else bool(job.entry.get("resume_fast", True))
            self.xc.resume(job.record.domid, fast)
            job.changed = True
            try:
                self.xs.resume_domain(job.record.domid)
            except XenstoreError as exc:
                job.notes.append("XS_RESUME failed (%s): C xenstored may not report this domain's "
                                 "next shutdown" % exc)
            phase = VERIFY
            job.phases.start(VERIFY)
            self._wait_running(job)
            job.succeeded = True
            job.remove_entry = job.entry is not None
            self._thaw_monitor(job)
        except XenSuspendError as exc:
            exc.with_context(domain=job.label, phase=phase)
            job.error = exc.to_dict()
        finally:
            job.phases.stop()
            if lock is not None:
                lock.release()

    def _settle_running_entry(self, job, info):
        """The ledger says we meant to suspend this domain, but it runs. An ``intent`` entry
        means a suspend run stopped part-way (killed, say): its request may still wait in
        ~/control/shutdown, and the guest would suspend later, unrecorded. Resuming means
        wanting it running, so a request it has not answered is withdrawn; one it has answered
        may be in progress, so the entry stays for a later run."""
        if job.entry.get("state") == STATE_INTENT and not self.check_mode:
            try:
                withdrawn = withdraw_suspend_request(self.xs, job.record.domid)
            except XenSuspendError as exc:
                job.notes.append("a suspend request may still be pending (%s); the ledger entry "
                                 "is kept" % exc)
                return
            if not withdrawn and _recent(job.entry.get("intent_at")):
                job.notes.append("running, but the guest answered a suspend request (intent of %s) "
                                 "and may still be suspending; the ledger entry is kept"
                                 % job.entry.get("intent_at"))
                return
            if withdrawn:
                job.changed = True
                job.notes.append("withdrew the suspend request a stopped run left pending")
        job.remove_entry = True
        job.notes.append("not suspended (%s); its ledger entry (state %s) is removed"
                         % (info.state, job.entry.get("state")))
        self._thaw_monitor(job)

    def _thaw_vanished_monitors(self, plan):
        monitors = self.backends.monitors
        if monitors is None or self.check_mode:
            return
        for item in plan.vanished:
            monitor = item.get("lifecycle_monitor")
            if monitor and monitors.thaw(monitor):
                item["lifecycle_monitor"] = dict(monitor, state="running")

    def _thaw_monitor(self, job):
        """Continue the xl monitor we froze before the suspend; it never saw the suspend and
        handles the domain's next reboot or poweroff as before (see _xl_monitor)."""
        monitors = self.backends.monitors
        monitor = (job.entry or {}).get("lifecycle_monitor")
        if monitors is None or not monitor or self.check_mode:
            return
        if monitors.thaw(monitor):
            job.monitor = dict(monitor, state="running")
            job.notes.append("xl's monitor (pid %s) continued" % monitor.get("pid"))
        else:
            job.monitor = dict(monitor, state="gone")

    def _wait_running(self, job):
        deadline = self.clock() + self.timeout
        while True:
            info = self.xc.domain_info(job.record.domid)
            if info is None or info.uuid != job.record.uuid:
                job.after = STATE_GONE
                raise DomainOperationError("the domain vanished after resume", kind="vanished")
            job.after = info.state
            if not info.shut_down and not info.dying:
                return
            if self.clock() >= deadline:
                raise DomainOperationError("the domain is still %s %g s after xc_domain_resume"
                                           % (info.state, self.timeout), kind="timeout")
            self.backends.wait([], VERIFY_POLL)

    def _update_ledger(self, plan):
        if self.check_mode:
            return
        remove = set(job.uuid for job in plan.jobs if job.remove_entry)
        if self.prune_vanished:
            remove.update(item["uuid"] for item in plan.vanished)
        if not remove:
            return

        def apply(entries):
            for uuid in remove:
                entries.pop(uuid, None)

        try:
            self.backends.ledger.update(apply)
        except LedgerError as exc:
            self._errors.append(str(exc))
