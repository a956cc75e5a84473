# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: restoring guests saved to disk (domain_restored).

Per guest, under its claim (see _domain_claim)::

    lookup   the entry is "saved" (or a "restoring" that created nothing); no domain with its
             UUID or its name exists (a restored stale image would diverge from the disks the
             running guest has written since); the image is complete (structural walk, and
             its sha256 when the save recorded one) and is this guest's (its UUID)
    restore  ledger "restoring" (durable) -> `xl restore -p <image>` (detached: xl's monitor
             outlives the task) -> the new domain found by UUID
    unpause  `xl unpause`; the guest runs again (verified by domain info)
    finish   the image removed (or moved to archive_dir) and its directory synced, then the
             entry settled "restored"

A failure keeps the image and the entry ("saved" again, with the error), and a half-built
domain xl left is destroyed: nothing is ever deleted before its guest runs.
"""

import collections
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.xen.suspend.plugins.module_utils._errors import (
    DomainBusy, DomainOperationError, XenSuspendError)
from ansible_collections.xen.suspend.plugins.module_utils._image_recovery import (
    XL_SHORT_TIMEOUT, finish_image)
from ansible_collections.xen.suspend.plugins.module_utils._inventory import list_records
from ansible_collections.xen.suspend.plugins.module_utils._ledger import (
    STATE_RESTORING, STATE_SAVED, is_image_entry)
from ansible_collections.xen.suspend.plugins.module_utils._ledger_transitions import (
    RESTORED, MarkRestoring, ReturnToSaved, Settle, apply_transitions)
from ansible_collections.xen.suspend.plugins.module_utils._phases import LOOKUP, VERIFY, PhaseTimer
from ansible_collections.xen.suspend.plugins.module_utils._run_report import RunReport
from ansible_collections.xen.suspend.plugins.module_utils._save_image import check_image
from ansible_collections.xen.suspend.plugins.module_utils._xl_processes import xl_working_on
from ansible_collections.xen.suspend.plugins.module_utils._targets import (
    KIND_PATTERN, refusal)

# Phases of one restore (besides LOOKUP and VERIFY).
CLAIM = "claim"
RESTORE = "restore"
UNPAUSE = "unpause"
FINISH = "finish"

AFTER_SAVED = "saved"
AFTER_RUNNING = "running"


def natural_key(name):
    """web-2 before web-10: digit runs compare as numbers."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part)
            for part in re.split(r"(\d+)", name) if part]


class _EntryRecord(object):
    """A ledger entry seen as a target: what selectors match (its domain is gone)."""

    def __init__(self, entry):
        self.name = entry.get("name")
        self.uuid = entry["uuid"]
        self.domid = entry.get("domid")
        self.xenstore_domain = False


class RestoreJob(object):

    def __init__(self, entry, clock):
        self.entry = entry
        self.uuid = entry["uuid"]
        self.name = entry.get("name")
        self.image = entry.get("image")
        self.old_domid = entry.get("domid")
        self.domid = None
        self.before = AFTER_SAVED
        self.after = AFTER_SAVED
        self.changed = False
        self.error = None
        self.notes = []
        self.seconds = None
        self.image_size = entry.get("image_size")
        self.phases = PhaseTimer(clock)
        self.done = False
        self.claim_fds = ()  # the claim's descriptor, for an xl that must hold it while it runs

    @classmethod
    def already_running(cls, record, clock):
        job = cls({"uuid": record.uuid, "name": record.name, "domid": record.domid}, clock)
        job.domid = record.domid
        job.old_domid = None
        job.before = job.after = AFTER_RUNNING
        job.done = True
        job.notes.append("runs already (domid %d): nothing to restore" % record.domid)
        return job

    @property
    def display_name(self):
        return self.name or self.uuid

    @property
    def label(self):
        return "%s (saved from domid %s)" % (self.display_name, self.old_domid)

    @property
    def mib_per_s(self):
        if not self.image_size or not self.seconds:
            return None
        return round(self.image_size / 1048576.0 / self.seconds, 1)

    def result(self):
        return {
            "name": self.name, "uuid": self.uuid, "old_domid": self.old_domid,
            "domid": self.domid, "image": self.image, "image_size": self.image_size,
            "before": self.before, "after": self.after, "changed": self.changed,
            "seconds": self.seconds, "mib_per_s": self.mib_per_s,
            "phases": self.phases.as_dict(), "notes": list(self.notes), "error": self.error,
        }


class RestorePlan(object):
    def __init__(self, jobs, skipped):
        self.jobs = jobs
        self.skipped = skipped


def plan_restore(entries, selectors, exclude=(), protected=(), order=(), clock=time.monotonic,
                 records=None):
    """The saved guests to restore, in restore order: those matching ``order``'s patterns
    first (in that order), then the rest by name; then the guests named explicitly that run
    already (``records``: the live domains), reported unchanged. Every problem raises before
    anything runs."""
    candidates = [entry for entry in entries.values()
                  if is_image_entry(entry) and entry.get("state") in (STATE_SAVED, STATE_RESTORING)]
    problems = []
    chosen = []
    skipped = []
    for entry in sorted(candidates, key=lambda item: (natural_key(item.get("name") or ""), item["uuid"])):
        record = _EntryRecord(entry)
        if selectors and not any(selector.matches(record) for selector in selectors):
            continue
        if any(rule.matches(record) for rule in exclude):
            continue
        reason = refusal(record, protected)
        if reason is not None:
            skipped.append({"name": record.name, "uuid": record.uuid, "reason": reason})
            continue
        chosen.append(entry)
    running = []
    for selector in selectors:
        if selector.kind != KIND_PATTERN and not any(
                selector.matches(_EntryRecord(entry)) for entry in candidates):
            # Idempotence: a guest named again once it runs is restored already.
            found = [record for record in (records or ()) if selector.matches(record)
                     and record.domid != 0]
            if found:
                running.extend(record for record in found if record not in running)
            else:
                problems.append("no guest saved to disk or running matches %s %r"
                                % (selector.kind, selector.text))
    if problems:
        raise DomainOperationError("invalid targets, nothing was touched: " + "; ".join(problems),
                                   kind="invalid_targets")

    def rank(entry):
        record = _EntryRecord(entry)
        for index, pattern in enumerate(order):
            if pattern.matches(record):
                return index
        return len(order)

    chosen.sort(key=rank)  # stable: by name within a rank
    jobs = [RestoreJob(entry, clock) for entry in chosen]
    jobs.extend(RestoreJob.already_running(record, clock) for record in running)
    return RestorePlan(jobs, skipped)


class RestoreReport(RunReport):
    changed_key = "restored"


class RestoreEngine(object):
    """Restores a plan's guests, ``parallel`` at a time (xl restore serialises domain
    creation on its global lock when autoballoon is on, so 1 is the default)."""

    def __init__(self, backends, timeout=600.0, parallel=1, continue_on_error=True,
                 check_mode=False, archive_dir=None):
        self.backends = backends
        self.timeout = timeout
        self.parallel = max(1, int(parallel))
        self.continue_on_error = continue_on_error
        self.check_mode = check_mode
        self.archive_dir = archive_dir
        self.clock = backends.clock
        self._stop = threading.Event()
        self._errors = []

    def run(self, plan):
        wall_start = self.clock()
        cpu_start = self.backends.cpu_clock()
        queue = collections.deque(plan.jobs)
        if self.check_mode:
            for job in plan.jobs:
                self._check_only(job)
        elif self.parallel == 1 or len(plan.jobs) < 2:
            for job in plan.jobs:
                self._one(job)
        else:
            with ThreadPoolExecutor(max_workers=min(self.parallel, len(queue))) as pool:
                list(pool.map(self._one, plan.jobs))
        stats = {"domains": len(plan.jobs), "wall_seconds": round(self.clock() - wall_start, 6),
                 "cpu_seconds": round(self.backends.cpu_clock() - cpu_start, 6)}
        return RestoreReport(plan.jobs, stats, self._errors, plan.skipped)

    # == one guest ============================================================================

    def _check_only(self, job):
        if job.done:
            return
        try:
            self._lookup(job)
        except XenSuspendError as exc:
            self._fail(job, exc, LOOKUP)
            return
        job.after = AFTER_RUNNING
        job.changed = True
        job.notes.append("check mode: would restore %s" % job.image)

    def _one(self, job):
        if job.done:
            return
        if self._stop.is_set() or self._interrupted():
            job.error = DomainOperationError(
                "not attempted: %s" % ("the run was interrupted" if self._interrupted() else
                                       "an earlier restore failed and continue_on_error is false"),
                kind="not_attempted", domain=job.label).to_dict()
            return
        started = self.clock()
        claim = None
        try:
            job.phases.start(CLAIM)
            try:
                claim = self.backends.claims.acquire(job.uuid)
            except DomainBusy as exc:
                raise exc.with_context(job.label, CLAIM)
            job.claim_fds = claim.fds
            job.phases.start(LOOKUP)
            self._lookup(job)
            self._restore(job)
        except XenSuspendError as exc:
            self._fail(job, exc, job.phases.current)
        finally:
            job.phases.stop()
            job.seconds = round(self.clock() - started, 3)
            if claim is not None:
                claim.release()

    def _lookup(self, job):
        entry = self.backends.ledger.read().get(job.uuid)
        if entry is None or entry.get("state") not in (STATE_SAVED, STATE_RESTORING):
            raise DomainOperationError("its ledger entry changed meanwhile (%s): another run "
                                       "restored it or settled it" % (entry or {}).get("state", "gone"),
                                       kind="busy")
        job.entry = entry
        finder = getattr(self.backends, "xl_working_on", None) or xl_working_on
        busy = finder(job.image)
        if busy:
            # A stopped run's xl restore still at work (it runs detached and holds no claim):
            # its domain is half-built; judging or destroying it now would undo that restore.
            raise DomainOperationError("xl (pid %s) is still restoring it from %s"
                                       % (", ".join(str(pid) for pid in busy), job.image), kind="busy")
        for info in self.backends.xenctrl.list_domains():
            if info.uuid == job.uuid:
                raise DomainOperationError(
                    "a domain with its UUID already runs (domid %d): the image is older than "
                    "that guest and would diverge from its disks; it is kept, not restored"
                    % info.domid, kind="already_running")
        names = self._domain_names()
        if job.name and job.name in names:
            raise DomainOperationError(
                "a domain named %r already runs (domid %d); the image is kept, not restored"
                % (job.name, names[job.name]), kind="name_in_use")
        image = check_image(job.image, sha256=bool(entry.get("image_sha256")))
        if image.uuid != job.uuid:
            raise DomainOperationError("the image %s holds guest %s, not %s; it is kept, not "
                                       "restored" % (job.image, image.uuid, job.uuid), kind="bad_image")
        if entry.get("image_sha256") and image.sha256 != entry["image_sha256"]:
            raise DomainOperationError("the image %s does not have the sha256 recorded when it "
                                       "was saved (changed on disk); it is kept, not restored"
                                       % job.image, kind="bad_image")
        job.image_size = image.size
        if entry.get("image_xen") and entry["image_xen"] != self._xen_version():
            job.notes.append("saved on Xen %s, restored on Xen %s" % (entry["image_xen"], self._xen_version()))

    def _restore(self, job):
        backends = self.backends
        intent_id = job.entry.get("intent_id")
        job.phases.start(RESTORE)
        apply_transitions(backends.ledger, [MarkRestoring(job.uuid, intent_id, self.archive_dir)])
        result = backends.xl.restore(job.image, self.timeout, paused=True)
        info = self._find(job.uuid)
        if not result.ok or info is None:
            why = result.describe() if not result.ok else \
                "xl restore exited 0 but no domain with the guest's UUID exists"
            self._undo(job, info, why)
            raise result.error(RESTORE, job.label) if not result.ok else \
                DomainOperationError(why, kind="xl_failed")
        job.domid = info.domid
        job.phases.start(UNPAUSE)
        if info.paused:
            result = backends.xl.unpause(info.domid, XL_SHORT_TIMEOUT)
            if not result.ok:
                self._undo(job, info, result.describe())
                raise result.error(UNPAUSE, job.label)
        job.phases.start(VERIFY)
        info = backends.xenctrl.domain_info(info.domid)
        if info is None or info.uuid != job.uuid or info.paused or info.shut_down or info.dying:
            state = info.state if info is not None else "gone"
            raise DomainOperationError("restored, but the guest does not run (%s); its image and "
                                       "entry are kept" % state, kind="not_running")
        job.after = AFTER_RUNNING
        job.changed = True
        job.phases.start(FINISH)
        archived = finish_image(job.image, self.archive_dir)
        if archived:
            job.notes.append("image archived as %s" % archived)
        apply_transitions(backends.ledger, [Settle(job.uuid, intent_id, RESTORED)])

    def _undo(self, job, info, why):
        """A restore that did not end with a running guest: destroy what xl left, keep the
        image, and record the entry as saved again."""
        if info is not None:
            # with the claim, as a save's destroy: if this run is killed, the xl destroy that
            # goes on keeps recovery from unpausing the domain under it
            result = self.backends.xl.destroy(info.domid, XL_SHORT_TIMEOUT, keep_fds=job.claim_fds)
            if not result.ok:
                # The entry stays "restoring": the next run finds the domain and decides.
                job.notes.append("the half-restored domain %d could not be destroyed: %s"
                                 % (info.domid, result.describe()))
                return
        apply_transitions(self.backends.ledger,
                          [ReturnToSaved(job.uuid, job.entry.get("intent_id"), why)])

    # == helpers ==============================================================================

    def _fail(self, job, exc, phase):
        exc.with_context(job.label, phase)
        job.error = exc.to_dict()
        if not self.continue_on_error:
            self._stop.set()

    def _find(self, uuid):
        for info in self.backends.xenctrl.list_domains():
            if info.uuid == uuid and not info.dying:
                return info
        return None

    def _domain_names(self):
        return dict((record.name, record.domid) for record in
                    list_records(self.backends.xenctrl, self.backends.xenstore) if record.name)

    def _xen_version(self):
        version = getattr(self.backends.xenctrl, "version", None)
        return "%d.%d" % tuple(version[:2]) if version else None

    def _interrupted(self):
        interruption = self.backends.interruption
        return interruption is not None and interruption.reason is not None
