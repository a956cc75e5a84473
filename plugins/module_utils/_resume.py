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
@releaseDomain for the domain, then a check that it runs.

Many domains are resumed at once: they are locked and looked at in windows (one
getdomaininfolist scan, one "resuming" ledger write per window), their xc_domain_resume
calls go to up to ``parallel`` threads, each with its own libxenctrl handle (cffi releases
the GIL during the call, and a resume's cost is mostly its caller's wait, which overlaps:
only Xen's domctl lock serialises, briefly), and each call's return is the event that moves
its domain on: the returns that are in are handled together, with one pipelined batch of
XS_RESUME and one batched domain-info read to verify them. Only a domain not yet seen
running then is looked at again (every VERIFY_POLL, until ``timeout``).
"""

import os
import time

from ansible_collections.xen.suspend.plugins.module_utils._domain_state import (
    STATE_GONE, STATE_RUNNING, reason_name)
from ansible_collections.xen.suspend.plugins.module_utils._domain_poll import (
    batch_domain_infos, domain_infos)
from ansible_collections.xen.suspend.plugins.module_utils._errors import (
    DomainOperationError, LedgerError, OptionError, TargetError, XenSuspendError, XenstoreError)
from ansible_collections.xen.suspend.plugins.module_utils._phases import (
    LOCK, LOOKUP, RESUME, VERIFY, PhaseTimer)
from ansible_collections.xen.suspend.plugins.module_utils._ledger import (
    STATE_INTENT, STATE_RESUMING, is_image_entry)
from ansible_collections.xen.suspend.plugins.module_utils._ledger_transitions import (
    DID_NOT_SUSPEND, FOUND_RUNNING, GONE, NOT_OURS, OTHER_SHUTDOWN, PRUNED, RESUMED, WITHDRAWN,
    MarkResuming, Settle, apply_transitions, parse_timestamp, settle_deadline_passed)
from ansible_collections.xen.suspend.plugins.module_utils._suspend_method import XENSTORE
from ansible_collections.xen.suspend.plugins.module_utils._run_report import RunReport
from ansible_collections.xen.suspend.plugins.module_utils._targets import (
    KIND_DOMID, KIND_NAME, KIND_UUID, refusal, select_targets)
from ansible_collections.xen.suspend.plugins.module_utils._protocol_requests import withdraw_suspend_request
from ansible_collections.xen.suspend.plugins.module_utils._resume_calls import NOT_STARTED, ResumeCalls

VERIFY_POLL = 0.005
SETTLE_POLL = 0.05
# Domains locked and looked at together before their "resuming" mark (one ledger write) and
# their resumes: a whole host's fleet is one window, so one write. Bounds the lock
# descriptors held at once.
RESUME_BATCH = 1024
# xc_domain_resume calls at once (threads, each with its own libxenctrl handle).
DEFAULT_PARALLEL = 128
# Longest wait for a resume call's return before the loop looks at signals again.
CALL_WAIT = 0.05
# What _start found a job needs next.
NEXT_DONE, NEXT_RESUME, NEXT_WAIT = "done", "resume", "wait"
# _start: the domain's info was not read in a batch
_UNKNOWN = object()
RELEASE_DOMAIN = b"@releaseDomain"
# Long enough for a killed run's guests at the default options (their settle_by is at most
# ack_timeout + timeout + a few seconds after the intent), so one resume settles them.
DEFAULT_SETTLE_TIMEOUT = 150.0


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
        self.withdrawn = False
        self.lock = None
        self.monitor = (entry or {}).get("lifecycle_monitor")
        self.downtime = None
        self.verify_by = None

    def release(self):
        if self.lock is not None:
            lock, self.lock = self.lock, None
            lock.release()

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
            "withdrawn": self.withdrawn,
            "lifecycle_monitor": self.monitor,
            "phases": self.phases.as_dict(),
            "downtime_seconds": self.downtime,
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


def _matches(selector, entry):
    """Does a selector name this ledger entry (for domains that no longer exist)?"""
    return (selector.kind == KIND_UUID and entry["uuid"] == selector.value or
            selector.kind == KIND_NAME and entry.get("name") == selector.value or
            selector.kind == KIND_DOMID and entry.get("domid") == selector.value)


def plan_resume(records, entries, selectors, exclude=(), protected=(), force_unrecorded=False,
                clock=None):
    """Targets for a resume. Raises TargetError, with every problem, before touching anything."""
    by_uuid = dict((record.uuid, record) for record in records)
    # Guests saved to disk are domain_restored's (and recovery's), never resumed from memory.
    image_entries = [entry for entry in entries.values() if is_image_entry(entry)]
    image_uuids = set(entry["uuid"] for entry in image_entries)
    entries = dict((uuid, entry) for uuid, entry in entries.items() if uuid not in image_uuids)
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
        saved = [entry for entry in image_entries if _matches(selector, entry)]
        if saved:
            problems.append("%s is saved to disk (ledger state %s): restore it with domain_restored"
                            % (saved[0].get("name") or saved[0]["uuid"], saved[0]["state"]))
            continue
        found = [entry for entry in entries.values() if _matches(selector, entry)]
        if found:
            vanished.extend(_vanished_item(entry) for entry in sorted(found, key=_entry_order))
        else:
            problems.append("no domain or ledger entry matches %s %r" % (selector.kind, selector.text))
    for record in selection.targets:
        if record.uuid in image_uuids:
            continue  # a guest saved to disk: recovery and domain_restored deal with it
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
        self.recovery = None
        self.interrupted = None

    @property
    def changed_names(self):
        """Only domains really resumed: withdrawn requests are their own list."""
        return self.names(lambda job: job.changed and not job.withdrawn)

    @property
    def resumed(self):
        return self.changed_names

    @property
    def withdrawn(self):
        return self.names(lambda job: job.withdrawn)

    pruned = False

    @property
    def changed(self):
        return (RunReport.changed.fget(self) or bool(self.recovery and self.recovery.changed)
                or self.pruned)

    def module_result(self, diff=False):
        result = RunReport.module_result(self, diff)
        result["vanished"] = self.vanished
        withdrawn = self.withdrawn
        if self.recovery is not None:
            withdrawn += [name for name in self.recovery.names("withdrawn") if name not in withdrawn]
            result["recovery"] = self.recovery.as_dict()
        result["withdrawn"] = withdrawn
        if self.interrupted:
            result["interrupted"] = self.interrupted
        return result


class ResumeEngine(object):
    """Resumes the jobs of a ResumePlan. ``timeout``: how long to wait for a resumed domain
    to be seen running; ``settle_timeout``: how long to wait for guests that may still be on
    their way down because of a request of ours (answered, notified, or a stopped run's);
    ``parallel``: resume calls at once (threads). ``continue_on_error`` false stops starting
    resumes after the first failure (those under way finish)."""

    def __init__(self, backends, timeout=10.0, continue_on_error=True, check_mode=False,
                 prune_vanished=False, settle_timeout=DEFAULT_SETTLE_TIMEOUT,
                 force_unrecorded=False, parallel=DEFAULT_PARALLEL):
        for name, value in (("timeout", timeout), ("settle_timeout", settle_timeout)):
            if value is None or not value >= 0 or (name == "timeout" and not value > 0):  # pylint: disable=unnecessary-negation  # also rejects NaN
                raise OptionError("invalid options, nothing was touched: %s must be > 0, not %r"
                                  % (name, value))
        if parallel is None or int(parallel) < 1:
            raise OptionError("invalid options, nothing was touched: parallel must be >= 1, not %r"
                              % (parallel,))
        self.backends = backends
        self.xc = backends.xenctrl
        self.xs = backends.xenstore
        self.clock = backends.clock
        self.timeout = float(timeout)
        self.settle_timeout = float(settle_timeout)
        self.continue_on_error = continue_on_error
        self.check_mode = check_mode
        self.prune_vanished = prune_vanished
        self.force_unrecorded = force_unrecorded
        self.parallel = int(parallel)
        self._errors = []
        self._transitions = []
        self._stop_reason = None
        self._verifying = []

    def _interrupted_by(self):
        interruption = self.backends.interruption
        return interruption.reason if interruption is not None else None

    def run(self, plan):
        clock = self.clock
        wall_start = clock()
        cpu_start = self.backends.cpu_clock()
        xs_start = self.xs.round_trips
        xc_start = self.xc.calls
        writes_start = self.backends.ledger.writes
        if not self.check_mode and any(job.record is not None for job in plan.jobs):
            self.backends.locks.check_run_dir()
        waiting = []
        calls = ResumeCalls(self.xc, min(self.parallel, max(1, len(plan.jobs))))
        try:
            try:
                if not self.check_mode and len(plan.jobs) > 1:
                    calls.prestart()
                self._resume_all(plan.jobs, waiting, calls)
            finally:
                calls.close()
            self._wait_for_settling(waiting)
        finally:
            for job in plan.jobs:
                job.release()
            self._thaw_vanished_monitors(plan)
            self._update_ledger(plan)
        stats = {
            "domains": len(plan.jobs),
            "wall_seconds": round(clock() - wall_start, 6),
            "cpu_seconds": round(self.backends.cpu_clock() - cpu_start, 6),
            "xenstore_round_trips": self.xs.round_trips - xs_start,
            "xenctrl_calls": self.xc.calls - xc_start,
            "ledger_writes": self.backends.ledger.writes - writes_start,
        }
        report = ResumeReport(plan.jobs, plan.vanished, plan.skipped, stats, self._errors)
        report.interrupted = self._interrupted_by()
        # removing the entries of vanished guests is a change (that check mode would make)
        report.pruned = bool(self.prune_vanished and plan.vanished)
        return report

    def _resume_all(self, jobs, waiting, calls):
        """Windows of domains are locked, looked at and marked "resuming" while the resume
        calls of earlier ones are under way (at most RESUME_BATCH hold their locks at once;
        a new window waits until half of that is free, so that the "resuming" marks stay few
        ledger writes); each call's return is verified with the others in at that moment."""
        first = 0
        while True:
            active = calls.pending + len(self._verifying)
            left = len(jobs) - first
            if left and (active == 0 or RESUME_BATCH - active >= min(RESUME_BATCH // 2, left)):
                batch = jobs[first:first + RESUME_BATCH - active]
                first += len(batch)
                for job in self._start_batch(batch, waiting):
                    if self._check_stop(job):
                        job.release()
                        continue
                    job.phases.start(RESUME)
                    fast = True if job.entry is None else bool(job.entry.get("resume_fast", True))
                    calls.submit(job, fast)
                    if calls.inline:  # returned already: one at a time, as it says
                        self._returned(calls.wait(0))
                        self._verify(self._verifying)
                continue
            if not active:
                return
            if self._stopping():
                calls.stopped = True
            if calls.pending:
                self._returned(calls.wait(VERIFY_POLL if self._verifying else CALL_WAIT))
            else:
                self.backends.wait([], VERIFY_POLL)
            self._verify(self._verifying)

    def _start_batch(self, batch, waiting):
        """Lock every job of ``batch`` (not in check mode), look at them in one scan, settle
        what needs no resume, mark the rest "resuming" (one ledger write): those are returned."""
        looked = []
        for job in batch:
            if self._check_stop(job):
                continue
            if self._lock(job):
                looked.append(job)
            else:
                self._note_failure(job)
        infos = self._batch_infos(looked)
        to_resume = []
        for job in looked:
            if self._check_stop(job):
                job.release()
                continue
            step = self._start(job, infos.get(job.record.domid, _UNKNOWN))
            if step == NEXT_WAIT:
                waiting.append(job)
            elif step == NEXT_RESUME:
                to_resume.append(job)
            else:
                job.release()
            self._note_failure(job)
        if to_resume:
            self._check_resume_function()
        candidates = list(to_resume)
        self._mark_resuming(to_resume)
        for job in candidates:
            if job.error is not None:  # the mark could not be written: not resumed
                job.release()
                self._note_failure(job)
        return to_resume

    def _check_resume_function(self):
        """A missing xc_domain_resume (libxenguest) fails the run with its install hint here,
        before any mark or call, rather than each domain in its thread."""
        libraries = getattr(self.xc, "libraries", None)
        if libraries is not None and hasattr(libraries, "resume_function"):
            libraries.resume_function()

    def _lock(self, job):
        """True when the job holds its domain's lock (check mode takes none)."""
        if self.check_mode:
            return True
        job.phases.start(LOOKUP)  # (first in the phases, as a lookup begins with the lock)
        job.phases.start(LOCK)
        try:
            # Before looking: what a live run is doing must not be judged from outside.
            job.lock = self.backends.locks.acquire(job.record.domid)
            return True
        except XenSuspendError as exc:
            self._failed(job, exc, LOCK)
            return False
        finally:
            job.phases.stop()

    def _batch_infos(self, jobs):
        """{domid: info} of one scan, {} when a scan is not possible (each job asks alone)."""
        infos = batch_domain_infos(self.xc, [job.record.domid for job in jobs])
        return infos if infos is not None else {}

    def _returned(self, returned):
        """Resume calls that returned: failures reported; the others get XS_RESUME (one
        pipelined batch) and are verified together."""
        resumed = []
        for job, exc in returned:
            if exc is NOT_STARTED:
                job.phases.stop()
                self._check_stop(job)
                job.release()
                continue
            if exc is not None:
                self._failed(job, exc, RESUME)
                job.phases.stop()
                self._note_failure(job)
                continue
            job.changed = True
            resumed.append(job)
        if not resumed:
            return
        self._xs_resume(resumed)
        deadline = self.clock() + self.timeout
        for job in resumed:
            job.phases.start(VERIFY)
            job.verify_by = deadline
        self._verifying.extend(resumed)

    def _xs_resume(self, jobs):
        many = getattr(self.xs, "resume_domains", None)
        if many is not None and len(jobs) > 1:
            outcomes = many([job.record.domid for job in jobs])
            for job, outcome in zip(jobs, outcomes):
                if outcome.error is not None:
                    self._xs_resume_failed(job, outcome.error)
            return
        for job in jobs:
            try:
                self.xs.resume_domain(job.record.domid)
            except XenstoreError as exc:
                self._xs_resume_failed(job, exc)

    @staticmethod
    def _xs_resume_failed(job, exc):
        job.notes.append("XS_RESUME failed (%s): C xenstored may not report this domain's "
                         "next shutdown" % exc)

    def _verify(self, jobs):
        """One look at every resumed domain not yet seen running: done, failed, or (still shut
        down, before its deadline) looked at again next time."""
        if not jobs:
            return
        infos = self._batch_infos(jobs)
        still = []
        now = self.clock()
        for job in jobs:
            try:
                info = infos[job.record.domid] if job.record.domid in infos else \
                    self.xc.domain_info(job.record.domid)
                if self._judge_resumed(job, info, now):
                    continue
            except XenSuspendError as exc:
                self._failed(job, exc, VERIFY)
                job.phases.stop()
                self._note_failure(job)
                continue
            still.append(job)
        self._verifying = still

    def _judge_resumed(self, job, info, now):
        """True once the job is done (running: success); raises when it failed."""
        if info is None or info.uuid != job.record.uuid:
            job.after = STATE_GONE
            raise DomainOperationError("the domain vanished after resume", kind="vanished")
        job.after = info.state
        if not info.shut_down and not info.dying:
            self._resumed(job)
            return True
        if now >= job.verify_by:
            raise DomainOperationError("the domain is still %s %g s after xc_domain_resume"
                                       % (info.state, self.timeout), kind="timeout")
        return False

    def _resumed(self, job):
        job.succeeded = True
        job.downtime = self._downtime(job)
        job.phases.stop()
        if job.entry is not None:
            self._settle(job, RESUMED)
        self._thaw_monitor(job)
        job.release()

    def _downtime(self, job):
        """Seconds from the ledger's verified suspend to now (the resume's completion)."""
        suspended_at = parse_timestamp((job.entry or {}).get("suspended_at"))
        if suspended_at is None:
            return None
        return round(max(0.0, self.backends.wall_clock() - suspended_at), 3)

    def _stopping(self):
        """The reason no further resume is started (a signal, or a failure with
        continue_on_error false), None while they go on."""
        if self._stop_reason is None and self._interrupted_by() is not None:
            self._stop_reason = "not attempted: the run was interrupted by %s" % self._interrupted_by()
        return self._stop_reason

    def _check_stop(self, job):
        if self._stopping() is None:
            return False
        job.error = {"kind": "not_attempted", "phase": None,
                     "message": "domain %s: %s" % (job.label, self._stop_reason)}
        return True

    def _note_failure(self, job):
        if job.error is not None and not self.continue_on_error and self._stop_reason is None:
            self._stop_reason = "not attempted: %s failed and continue_on_error is false" % job.label

    # -- one domain ------------------------------------------------------------------------

    def _start(self, job, info=None):
        """Look (the lock is held) and settle what needs no resume; NEXT_RESUME, NEXT_WAIT (the
        guest may still suspend because of our request) or NEXT_DONE. ``info``: the domain's
        info from a batch read under the lock, _UNKNOWN to read it here."""
        try:
            job.phases.start(LOOKUP)
            if info is _UNKNOWN:
                info = self.xc.domain_info(job.record.domid)
            if info is None or info.uuid != job.record.uuid:
                job.after = STATE_GONE
                raise DomainOperationError("the domain no longer exists", kind="vanished")
            job.before = info.state
            if info.dying:
                raise DomainOperationError("the domain is dying", kind="not_suspended")
            if not info.shut_down:
                job.after = info.state
                if job.entry is not None and self._settle_running(job, info):
                    return NEXT_WAIT
                return NEXT_DONE
            if not info.suspended:
                self._settle(job, OTHER_SHUTDOWN)
                self._thaw_monitor(job)
                raise DomainOperationError(
                    "the domain is shut down with reason %s, not suspended; it is not resumed"
                    % reason_name(info.shutdown_reason), kind="not_suspended")
            self._check_ours(job, info)
            if self.check_mode:
                job.after = STATE_RUNNING
                job.changed = True
                job.notes.append("check mode: would resume")
                return NEXT_DONE
            return NEXT_RESUME
        except XenSuspendError as exc:
            self._failed(job, exc, LOOKUP)
        finally:
            job.phases.stop()
        return NEXT_DONE

    @staticmethod
    def _failed(job, exc, phase):
        """The job's error, naming its domain and the phase it was in; its lock goes."""
        exc.with_context(domain=job.label, phase=job.phases.current or phase)
        job.error = exc.to_dict()
        job.release()

    def _mark_resuming(self, jobs):
        """One durable write before the hypercalls: a run killed between a resume and its
        final ledger write leaves "resuming", which the next run reads as ours-and-resumed."""
        marks = [MarkResuming(job.uuid, job.entry.get("intent_id")) for job in jobs
                 if job.entry is not None and job.entry.get("state") != STATE_RESUMING]
        if not marks:
            return
        try:
            apply_transitions(self.backends.ledger, marks)
        except LedgerError as exc:
            # Without the mark a kill could leave a stale entry: do not resume blind.
            for job in jobs:
                job.error = {"kind": "ledger_error", "phase": LOOKUP,
                             "message": "domain %s, phase lookup: the ledger could not be written "
                                        "before the resume, so it was not resumed: %s"
                                        % (job.label, exc)}
            del jobs[:]

    def _check_ours(self, job, info):
        """Resume only the suspend we made: a stopped run's intent whose request still stands
        unanswered was not taken by the guest (somebody else suspended it); a confirmed entry
        must match the domain's CPU time at our verification."""
        entry = job.entry
        if entry is None:
            return
        if entry.get("state") == STATE_INTENT and entry.get("method") == XENSTORE and not self.check_mode:
            # (a "resuming" entry was seen suspended by a resume run of ours: it is ours)
            if withdraw_suspend_request(self.xs, job.record.domid):
                self._settle(job, NOT_OURS)
                job.notes.append("our request was still unanswered: withdrawn")
                self._thaw_monitor(job)
                raise DomainOperationError(
                    "suspended by someone else (xl save or migrate?) while our request stood "
                    "unanswered; it is not resumed", kind="suspended_by_other")
        evidence = entry.get("evidence")
        if evidence and not self.force_unrecorded and (
                evidence.get("cpu_time_ns") != int(info.cpu_time)):
            raise DomainOperationError(
                "suspended, but not by the suspend the ledger recorded (its CPU time changed "
                "since: it ran and was suspended again, by someone else); it is not resumed "
                "unless force_unrecorded is set", kind="identity_mismatch")

    def _settle_running(self, job, info):
        """The ledger says we meant to suspend this domain, but it runs."""
        entry = job.entry
        if entry.get("state") == STATE_INTENT and entry.get("domid") not in (None, info.domid):
            # e.g. xl restarted a guest that rebooted: same UUID, a new domain
            self._settle(job, GONE)
            job.notes.append("the domain our request went to (domid %s) is gone; a new one with "
                             "its UUID runs: its ledger entry is removed" % entry.get("domid"))
            self._thaw_monitor(job)
            return False
        if entry.get("state") == STATE_RESUMING:
            self._settle(job, RESUMED)
            job.notes.append("a stopped resume run had resumed it; its ledger entry is removed")
            self._thaw_monitor(job)
            return False
        if entry.get("state") != STATE_INTENT:
            self._settle(job, FOUND_RUNNING)
            job.notes.append("recorded suspended, but running (resumed by someone else); its "
                             "ledger entry is removed")
            self._thaw_monitor(job)
            return False
        if self.check_mode:
            job.notes.append("check mode: a stopped run's request would be withdrawn or waited for")
            return False
        if entry.get("method") == XENSTORE:
            try:
                withdrawn = withdraw_suspend_request(self.xs, job.record.domid)
            except XenSuspendError as exc:
                job.notes.append("a suspend request may still be pending (%s)" % exc)
                withdrawn = False
            if withdrawn:
                self._settle(job, WITHDRAWN)
                job.withdrawn = True
                job.changed = True
                job.notes.append("withdrew the suspend request a stopped run left pending")
                self._thaw_monitor(job)
                return False
        if settle_deadline_passed(entry, self.backends.wall_clock()):
            self._settle(job, DID_NOT_SUSPEND)
            job.notes.append("still running after its settle time %s: it did not suspend (it "
                             "never took the request, or answered and gave up); its ledger "
                             "entry is removed" % entry.get("settle_by"))
            self._thaw_monitor(job)
            return False
        job.notes.append("running, but the guest may still suspend because of a request of ours: "
                         "waited for")
        return True

    def _resume(self, job):
        """One domain, here and now (a guest that suspended late, while settling)."""
        job.phases.start(RESUME)
        fast = True if job.entry is None else bool(job.entry.get("resume_fast", True))
        self.xc.resume(job.record.domid, fast)
        job.changed = True
        self._xs_resume([job])
        job.phases.start(VERIFY)
        deadline = self.clock() + self.timeout
        job.verify_by = deadline
        while not self._judge_resumed(job, self.xc.domain_info(job.record.domid), self.clock()):
            self.backends.wait([], VERIFY_POLL)

    def _wait_for_settling(self, jobs):
        """Guests that may still suspend because of our request: resumed once they did, settled
        once their settle time passed, reported still suspending after settle_timeout. A
        suspend fires @releaseDomain (not while an event channel is subscribed): its watch
        wakes us at once; every SETTLE_POLL the domains are looked at anyway."""
        if not jobs:
            return
        token = self._watch_release() if not self.check_mode else None
        try:
            self._settle_jobs(jobs, token)
        finally:
            if token is not None:
                try:
                    self.xs.unwatch(RELEASE_DOMAIN, token)
                except XenSuspendError:
                    pass

    def _watch_release(self):
        token = ("xen-suspend-resume-%d-release" % os.getpid()).encode("ascii")
        try:
            self.xs.watch(RELEASE_DOMAIN, token)
        except XenSuspendError:
            return None  # a hint only: the polling does the work
        return token

    def _settle_jobs(self, jobs, token):
        deadline = self.clock() + self.settle_timeout
        while jobs:
            interrupted = self._interrupted_by()
            infos = self._domain_infos([job.record.domid for job in jobs])
            pending = []
            for job in jobs:
                try:
                    if self._settle_step(job, infos.get(job.record.domid)):
                        pending.append(job)
                except XenSuspendError as exc:
                    self._failed(job, exc, RESUME)
                finally:
                    job.phases.stop()
            jobs = pending
            if not jobs:
                return
            if interrupted or self.clock() >= deadline:
                for job in jobs:
                    why = ("interrupted by %s" % interrupted) if interrupted else \
                        "not suspended within settle_timeout (%g s)" % self.settle_timeout
                    job.error = {
                        "kind": "still_suspending", "phase": "settle",
                        "message": "domain %s, phase settle: the guest answered a suspend request "
                                   "of ours and may still suspend (%s); its ledger entry is kept: "
                                   "run domain_resumed again" % (job.label, why)}
                    # Long after its answer it has most likely given up: its reboots and
                    # poweroffs must be handled meanwhile, so xl's monitor runs again.
                    self._thaw_monitor(job)
                    job.release()
                return
            if self.backends.wait([self.xs.fileno()] if token is not None else [], SETTLE_POLL):
                self.xs.events_nowait()  # (hints: the domain info decides)

    def _settle_step(self, job, info):
        """True while the job must go on waiting."""
        job.phases.start("settle")
        if info is None or info.uuid != job.record.uuid:
            job.after = STATE_GONE
            raise DomainOperationError("the domain vanished while it was settling", kind="vanished")
        job.after = info.state
        if info.suspended:
            job.notes.append("it suspended: resumed")
            marked = [job]
            self._mark_resuming(marked)
            if marked:
                self._resume(job)
            return False
        if info.shut_down or info.dying:
            self._settle(job, OTHER_SHUTDOWN)
            self._thaw_monitor(job)
            raise DomainOperationError("the domain shut down with reason %s instead of suspending"
                                       % reason_name(info.shutdown_reason), kind="not_suspended")
        if settle_deadline_passed(job.entry, self.backends.wall_clock()):
            self._settle(job, DID_NOT_SUSPEND)
            job.notes.append("still running after its settle time: it did not suspend (it answered "
                             "and gave up); its ledger entry is removed")
            self._thaw_monitor(job)
            return False
        return True

    def _domain_infos(self, domids):
        return domain_infos(self.xc, domids)

    def _settle(self, job, reason):
        if job.entry is not None:
            self._transitions.append(Settle(job.uuid, job.entry.get("intent_id"), reason))

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

    def _update_ledger(self, plan):
        if self.check_mode:
            return
        transitions = list(self._transitions)
        if self.prune_vanished:
            transitions.extend(Settle(item["uuid"], None, PRUNED) for item in plan.vanished)
        try:
            apply_transitions(self.backends.ledger, transitions)
        except LedgerError as exc:
            self._errors.append(str(exc))
