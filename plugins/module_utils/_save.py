# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: saving guests to disk with ``xl save``.

The collection's first rule holds at every line: a guest is running, or saved with a complete
image *and* a ledger entry that lets a later run bring it back. Per guest::

    claim (per UUID, for the whole operation; _domain_claim)
    pre-flight: running, not paused, saveable, no ledger entry (_save_preflight)
    under libxl's suspend lock: look again, ledger "saving" (durable), xl's monitor frozen
    xl save -p <domid> <uuid>.xlsave.part     (umask 077, file pre-created 0600)
    fsync the image, check its structure (and sha256), rename to <uuid>.xlsave, fsync the dir
    ledger "saved" (durable)
    xl destroy <domid>

Any failure before the destroy gives the guest back: ``xl save -p`` leaves it paused after a
cancelled suspend, so ``xl unpause`` lets it go on; an xl killed (our timeout) or dead
half-way leaves it shut down with reason suspend, and the collection's own cooperative resume
(xc_domain_resume fast, as domain_resumed does) brings it back. A request xl wrote that the
guest has not answered yet is withdrawn. Only once the guest is seen running again are the
partial image and the entry removed (settled ``save_abandoned``); if it cannot be seen
running, the entry stays for the next run's recovery. A failure *of* the destroy leaves the
guest paused with a complete image and a "saved" entry, which the next run's recovery
settles (the guest runs again and the image goes).

Guests are saved ``parallel`` at a time, each in its own thread: the work is xl's (one
process per guest, with its own libxl-save-helper), the thread mostly waits for it. Calls to
libxenctrl, xenstore, the ledger and xl's monitors are serialised by one lock (the ledger's
writer lock is per process, and the xenstore client has one caller at a time).
"""

import math
import os
import re
import threading
import uuid as uuid_module

from ansible_collections.xen.suspend.plugins.module_utils._domain_state import (
    STATE_GONE, STATE_RUNNING)
from ansible_collections.xen.suspend.plugins.module_utils._errors import (
    DomainBusy, DomainOperationError, OptionError, XenSuspendError)
from ansible_collections.xen.suspend.plugins.module_utils._image_recovery import LATE_SUSPEND_SETTLE
from ansible_collections.xen.suspend.plugins.module_utils._inventory import DomainRecord
from ansible_collections.xen.suspend.plugins.module_utils._ledger import (
    STATE_SAVED, make_save_entry)
from ansible_collections.xen.suspend.plugins.module_utils._ledger_transitions import (
    OTHER_SHUTDOWN, SAVE_ABANDONED, AwaitLateSuspend, MarkSaved, RecordSaving, Settle,
    apply_transitions)
from ansible_collections.xen.suspend.plugins.module_utils._phases import LOCK, PhaseTimer
from ansible_collections.xen.suspend.plugins.module_utils._protocol_requests import (
    withdraw_suspend_request)
from ansible_collections.xen.suspend.plugins.module_utils._resume import (
    ResumeEngine, ResumeJob, ResumePlan)
from ansible_collections.xen.suspend.plugins.module_utils._run_report import RunReport
from ansible_collections.xen.suspend.plugins.module_utils import _save_dir
from ansible_collections.xen.suspend.plugins.module_utils._save_image import ImageError, check_image
from ansible_collections.xen.suspend.plugins.module_utils._save_preflight import refusals
from ansible_collections.xen.suspend.plugins.module_utils._xl_commands import SHORT_TIMEOUT

# Phases of one guest's save (PhaseTimer names; errors name the one that failed).
PREFLIGHT = "preflight"
RECORD = "record"
SAVE = "save"
SYNC = "sync"
CHECK = "check"
COMMIT = "commit"
DESTROY = "destroy"
GIVE_BACK = "give_back"

VERIFY_STRUCTURE = "structure"
VERIFY_SHA256 = "sha256"
VERIFY_CHOICES = (VERIFY_STRUCTURE, VERIFY_SHA256)

DEFAULT_PARALLEL = 4
DEFAULT_TIMEOUT = 600.0
DEFAULT_MARGIN_MB = 256
# After xl was killed: how long a guest that may have taken its request (answered, or notified
# on its event channel) is watched for the suspend it may still make.
LATE_SUSPEND_WATCH = 5.0
# libxl's words when the guest took the request but did not suspend in time
# (libxl_dom_suspend.c: "guest did not suspend, timed out").
_GUEST_DID_NOT_SUSPEND = re.compile(r"did not suspend")
POLL = 0.05
# How long a resumed guest has to be seen running, and a destroyed domain to be gone.
RESUME_TIMEOUT = 10.0
GONE_TIMEOUT = 10.0
PAGE_BYTES = 4096
MIB = 1024.0 * 1024.0
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


def validate_options(parallel, timeout, verify, space_margin_mb, save_dir):
    """OptionError (nothing touched) for a bad value."""
    problems = []
    if parallel is None or int(parallel) < 0:
        problems.append("parallel must be >= 0 (0: no bound), not %r" % (parallel,))
    if timeout is None or not timeout > 0:  # also NaN
        problems.append("timeout must be > 0, not %r" % (timeout,))
    if verify not in VERIFY_CHOICES:
        problems.append("verify must be one of %s, not %r" % (", ".join(VERIFY_CHOICES), verify))
    if space_margin_mb is None or int(space_margin_mb) < 0:
        problems.append("space_margin_mb must be >= 0, not %r" % (space_margin_mb,))
    if not save_dir or not os.path.isabs(save_dir):
        problems.append("save_dir must be an absolute path on the dom0, not %r" % (save_dir,))
    if problems:
        raise OptionError("invalid options, nothing was touched: " + "; ".join(problems))


def read_boot_id(path=BOOT_ID_PATH):
    try:
        with open(path) as handle:
            return handle.read(64).strip() or None
    except (IOError, OSError):
        return None


class SaveJob(object):
    """One guest. ``record`` is None for a guest found only in the ledger (already saved)."""

    def __init__(self, record, clock, entry=None):
        self.record = record
        self.entry = entry
        self.phases = PhaseTimer(clock)
        self.before = record.info.state if record is not None else STATE_SAVED
        self.after = None
        self.changed = False
        self.error = None
        self.notes = []
        self.claim = None
        self.intent_id = None
        self.recorded = False
        # The guest took xl's request (answered, or was notified) and had not suspended when
        # xl ended: it may still suspend on its own (see _give_back).
        self.may_still_suspend = False
        self.image = None
        self.image_size = None
        self.sha256 = None
        self.image_xen = None
        self.seconds = None
        self.xl_seconds = None
        self.monitor = None
        self.memory_bytes = (record.info.tot_pages * PAGE_BYTES) if record is not None else 0

    @property
    def uuid(self):
        return self.record.uuid if self.record is not None else self.entry["uuid"]

    @property
    def domid(self):
        return self.record.domid if self.record is not None else None

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

    @property
    def mib_per_s(self):
        """Image size over the time xl took plus the flush: the rate the dom0 wrote it."""
        spent = (self.xl_seconds or 0.0) + self.phases.as_dict().get(SYNC, 0.0)
        if not self.image_size or spent <= 0:
            return None
        return round(self.image_size / MIB / spent, 1)

    def fail(self, exc, phase=None):
        exc.with_context(domain=self.label, phase=self.phases.current or phase)
        self.error = exc.to_dict()

    def release(self):
        if self.claim is not None:
            claim, self.claim = self.claim, None
            claim.release()

    def result(self):
        return {
            "name": self.record.name if self.record is not None else self.entry.get("name"),
            "uuid": self.uuid,
            "domid": self.domid,
            "before": self.before,
            "after": self.after if self.after is not None else self.before,
            "changed": self.changed,
            "image": self.image,
            "image_size": self.image_size,
            "image_xen": self.image_xen,
            "sha256": self.sha256,
            "seconds": self.seconds,
            "xl_seconds": None if self.xl_seconds is None else round(self.xl_seconds, 3),
            "mib_per_s": self.mib_per_s,
            "phases": self.phases.as_dict(),
            "lifecycle_monitor": self.monitor,
            "error": self.error,
            "notes": list(self.notes),
        }


class SaveReport(RunReport):
    changed_key = "saved"

    def __init__(self, jobs, stats, errors, skipped, save_dir):
        RunReport.__init__(self, jobs, stats, errors, skipped)
        self.save_dir = save_dir
        self.interrupted = None

    def module_result(self, diff=False):
        result = RunReport.module_result(self, diff)
        result["save_dir"] = self.save_dir
        return result


def saved_jobs(entries, live_uuids, selectors, exclude, clock):
    """Jobs (unchanged) for guests the ledger records as saved whose domain is gone and that
    a selector names (by UUID or name, or a pattern on the name): saving them is done."""
    jobs = []
    for entry in sorted(entries.values(), key=lambda item: (item.get("name") or "", item["uuid"])):
        if entry.get("state") != STATE_SAVED or entry["uuid"] in live_uuids:
            continue
        probe = _EntryRecord(entry)
        if any(rule.matches(probe) for rule in exclude):
            continue
        if any(rule.matches(probe) for rule in selectors):
            job = SaveJob(None, clock, entry)
            job.image = entry.get("image")
            job.image_size = entry.get("image_size")
            job.sha256 = entry.get("image_sha256")
            job.image_xen = entry.get("image_xen")
            job.after = STATE_SAVED
            job.notes.append("already saved (ledger entry saved at %s)" % entry.get("saved_at"))
            jobs.append(job)
    return jobs


class _EntryRecord(object):
    """What a Selector matches on, for a ledger entry without a domain."""

    def __init__(self, entry):
        self.uuid = entry["uuid"]
        self.name = entry.get("name")
        self.domid = None


class SaveEngine(object):
    """Saves the guests of ``jobs`` (SaveJob with a record) to ``save_dir``; see the module
    docstring. ``xl`` is an _xl_commands.XlCommands (or a fake with its interface)."""

    def __init__(self, backends, xl, save_dir, parallel=DEFAULT_PARALLEL, timeout=DEFAULT_TIMEOUT,
                 verify=VERIFY_STRUCTURE, space_margin_mb=DEFAULT_MARGIN_MB,
                 continue_on_error=False, check_mode=False, userdata_dir=None, boot_id=None,
                 late_suspend_timeout=LATE_SUSPEND_SETTLE):
        validate_options(parallel, timeout, verify, space_margin_mb, save_dir)
        if late_suspend_timeout is None or math.isnan(late_suspend_timeout) or late_suspend_timeout < 0:
            raise OptionError("invalid options, nothing was touched: late_suspend_timeout must be "
                              ">= 0, not %r" % (late_suspend_timeout,))
        self.late_suspend_timeout = float(late_suspend_timeout)
        self.backends = backends
        self.xl = xl
        self.save_dir = save_dir
        self.parallel = int(parallel)
        self.timeout = float(timeout)
        self.verify = verify
        self.margin = int(space_margin_mb) * 1024 * 1024
        self.continue_on_error = continue_on_error
        self.check_mode = check_mode
        self.userdata_dir = userdata_dir
        self.boot_id = boot_id if boot_id is not None else read_boot_id()
        self.clock = backends.clock
        self._backend_lock = threading.RLock()
        self._state_lock = threading.Lock()
        self._stop_reason = None
        self._errors = []

    # -- the run --------------------------------------------------------------------------------

    def run(self, jobs, skipped=(), done=()):
        """Save ``jobs``; ``done`` are jobs of guests already saved (reported unchanged)."""
        wall_start = self.clock()
        writes_start = self.backends.ledger.writes
        try:
            todo = self._preflight(jobs)
            if todo and not self.check_mode:
                with _save_dir.private_umask():
                    self._run_parallel(todo)
        finally:
            for job in jobs:
                job.release()
        all_jobs = list(jobs) + list(done)
        stats = {
            "domains": len(all_jobs),
            "attempted": sum(1 for job in jobs if job.recorded),
            "wall_seconds": round(self.clock() - wall_start, 6),
            "bytes_saved": sum(job.image_size or 0 for job in jobs if job.changed and not self.check_mode),
            "ledger_writes": self.backends.ledger.writes - writes_start,
        }
        report = SaveReport(all_jobs, stats, self._errors, list(skipped), self.save_dir)
        report.interrupted = self._interrupted_by()
        return report

    def _interrupted_by(self):
        interruption = self.backends.interruption
        return interruption.reason if interruption is not None else None

    # -- before anything is touched --------------------------------------------------------------

    def _preflight(self, jobs):
        """Claims, a fresh look at each guest, the refusals, the save directory and its free
        space. Returns the jobs to save; with a refusal and continue_on_error false, none."""
        if not jobs:
            return []
        save_dir_error = None
        try:
            _save_dir.prepare_save_dir(self.save_dir, create=not self.check_mode)
        except _save_dir.SaveDirError as exc:
            if not (self.check_mode and not os.path.exists(self.save_dir)):
                raise
            save_dir_error = exc  # check mode: it would be created
        entries = self.backends.ledger.read()
        infos = self._infos(jobs)
        ok = []
        for job in jobs:
            job.phases.start(PREFLIGHT)
            try:
                if not self.check_mode:
                    job.phases.start(LOCK)
                    job.claim = self.backends.claims.acquire(job.uuid)
                    job.phases.start(PREFLIGHT)
                info = infos.get(job.domid)
                if info is None or info.uuid != job.uuid:
                    job.after = STATE_GONE
                    raise DomainOperationError("the domain no longer exists", kind="vanished")
                job.record.info = info
                job.before = info.state
                job.memory_bytes = info.tot_pages * PAGE_BYTES
                reasons = refusals(self.backends.xenstore, job.record, entries.get(job.uuid),
                                   self.userdata_dir)
                if reasons:
                    raise DomainOperationError("cannot be saved: " + "; ".join(reasons),
                                               kind="cannot_save")
                ok.append(job)
            except XenSuspendError as exc:
                job.fail(exc, PREFLIGHT)
                job.release()
            finally:
                job.phases.stop()
        refused = [job for job in jobs if job.error is not None]
        if refused and not self.continue_on_error:
            self._stop_reason = ("not attempted: %s could not be saved and continue_on_error is "
                                 "false, so no guest was touched" % refused[0].label)
            for job in ok:
                self._not_attempted(job)
            return []
        needed = sum(job.memory_bytes for job in ok)
        if ok:
            where = self.save_dir if save_dir_error is None else _existing_parent(self.save_dir)
            _save_dir.check_free_space(where, needed, self.margin)
        for job in ok:
            job.image = _save_dir.image_paths(self.save_dir, job.uuid)[0]
            if self.check_mode:
                job.changed = True
                job.after = STATE_SAVED
                job.notes.append("check mode: would be saved to %s" % job.image)
        return ok

    def _infos(self, jobs):
        with self._backend_lock:
            return self.backends.xenctrl.domain_infos([job.domid for job in jobs])

    def _not_attempted(self, job):
        job.release()
        job.error = {"kind": "not_attempted", "phase": None,
                     "message": "domain %s: %s" % (job.label, self._stop_reason)}

    # -- in parallel ----------------------------------------------------------------------------

    def _run_parallel(self, jobs):
        pending = list(jobs)
        workers = []
        count = len(jobs) if self.parallel == 0 else min(self.parallel, len(jobs))

        def next_job():
            with self._state_lock:
                if not pending:
                    return None
                job = pending.pop(0)
                if self._stopping() is not None:
                    self._not_attempted(job)
                    return False
                return job

        def work():
            while True:
                job = next_job()
                if job is None:
                    return
                if job is False:
                    continue
                try:
                    self._save_one(job)
                except Exception as exc:  # a bug: the guest is looked after, the run goes on
                    job.fail(DomainOperationError("unexpected error: %s" % exc, kind="error"))
                finally:
                    job.release()
                if job.error is not None and not self.continue_on_error:
                    with self._state_lock:
                        if self._stop_reason is None:
                            self._stop_reason = ("not attempted: %s failed and continue_on_error "
                                                 "is false" % job.label)

        for index in range(count):
            worker = threading.Thread(target=work, name="xen-suspend-save-%d" % index)
            worker.daemon = True
            worker.start()
            workers.append(worker)
        for worker in workers:
            # joined in slices: the main thread must get back to Python for signal handlers
            while worker.is_alive():
                worker.join(0.2)

    def _stopping(self):
        if self._stop_reason is None and self._interrupted_by() is not None:
            self._stop_reason = "not attempted: the run was interrupted by %s" % self._interrupted_by()
        return self._stop_reason

    # -- one guest ------------------------------------------------------------------------------

    def _save_one(self, job):
        started = self.clock()
        final, part = _save_dir.image_paths(self.save_dir, job.uuid)
        job.image = final
        try:
            if not self._record(job, final):
                return
            self._write_image(job, part)
            if job.error is not None:
                return
            self._commit(job, part, final)
            if job.error is not None:
                return
            self._destroy(job)
        finally:
            job.phases.stop()
            job.seconds = round(self.clock() - started, 3)
            self._thaw_monitor(job)

    def _record(self, job, final):
        """Under libxl's suspend lock (so no suspend of ours or xl's is under way): look at the
        domain again, write the "saving" entry (durable), freeze xl's monitor."""
        job.phases.start(RECORD)
        lock = None
        try:
            with self._backend_lock:
                try:
                    lock = self.backends.locks.acquire(job.domid)
                except DomainBusy as exc:
                    raise exc.with_context(phase=LOCK)
                info = self.backends.xenctrl.domain_info(job.domid)
                if info is None or info.uuid != job.uuid:
                    job.after = STATE_GONE
                    raise DomainOperationError("the domain vanished before its save", kind="vanished")
                if info.paused or info.shut_down or info.dying:
                    job.after = info.state
                    raise DomainOperationError("the domain is %s now; it is not saved" % info.state,
                                               kind="not_running")
                entry = self.backends.ledger.read().get(job.uuid)
                if entry is not None:
                    raise DomainOperationError(
                        "the ledger now holds it (state %s): another run got to it first"
                        % entry.get("state"), kind="busy")
                job.intent_id = uuid_module.uuid4().hex
                version = getattr(self.backends.xenctrl, "version", None)
                record = make_save_entry(
                    job.uuid, job.domid, job.record.name, final, job.intent_id,
                    boot_id=self.boot_id,
                    xen_version="%d.%d" % tuple(version[:2]) if version else None,
                    memory_kib=info.tot_pages * (PAGE_BYTES // 1024))
                job.monitor = self._find_monitor(job)
                if job.monitor is not None:
                    record["lifecycle_monitor"] = job.monitor
                # For a later run's recovery, should this run stop with the guest running.
                record["late_suspend_timeout"] = self.late_suspend_timeout
                apply_transitions(self.backends.ledger, [RecordSaving(record)])
                job.recorded = True
                self._freeze_monitor(job)
            return True
        except XenSuspendError as exc:
            job.fail(exc, RECORD)
            return False
        finally:
            if lock is not None:
                lock.release()

    def _write_image(self, job, part):
        """xl save -p into the partial image; on failure the guest is given back."""
        job.phases.start(SAVE)
        try:
            _save_dir.create_private_file(part)
        except OSError as exc:
            self._give_back(job, DomainOperationError(
                "cannot create the image %s: %s" % (part, exc), kind="save_dir", errno=exc.errno),
                xl_killed=False)
            return
        try:
            result = self.xl.save(job.domid, part, self.timeout, keep_fds=job.claim.fds if job.claim is not None else ())
        except XenSuspendError as exc:  # xl could not even be started
            self._give_back(job, exc, xl_killed=False)
            return
        job.xl_seconds = result.seconds
        if not result.ok:
            if result.outcome == "failed" and _GUEST_DID_NOT_SUSPEND.search(result.stderr or ""):
                # libxl gave up waiting for a guest that had taken its request (acknowledged
                # it, or was notified): the guest may still suspend, later, on its own.
                job.may_still_suspend = True
            self._give_back(job, result.error(SAVE, domain=job.label),
                            xl_killed=result.outcome != "failed")

    def _commit(self, job, part, final):
        """fsync, check, rename, fsync the directory, ledger "saved"."""
        try:
            job.phases.start(SYNC)
            try:
                _save_dir.fsync_file(part)
            except OSError as exc:
                raise DomainOperationError("cannot flush the image %s: %s" % (part, exc),
                                           kind="io_error", errno=exc.errno)
            job.phases.start(CHECK)
            image = check_image(part, sha256=self.verify == VERIFY_SHA256)
            if image.uuid != job.uuid:
                raise ImageError("the image %s holds the guest %s, not %s" % (part, image.uuid, job.uuid))
            if job.record.name and image.name != job.record.name:
                job.notes.append("the image names the guest %r (xenstore: %r)" % (image.name, job.record.name))
            job.phases.start(COMMIT)
            try:
                os.rename(part, final)
                _save_dir.fsync_directory(self.save_dir)
            except OSError as exc:
                raise DomainOperationError("cannot move the image into place (%s): %s" % (final, exc),
                                           kind="io_error", errno=exc.errno)
            with self._backend_lock:
                apply_transitions(self.backends.ledger, [MarkSaved(
                    job.uuid, job.intent_id, image.size, image.sha256, image.xen_version)])
            job.image_size = image.size
            job.sha256 = image.sha256
            job.image_xen = image.xen_version
        except XenSuspendError as exc:
            self._give_back(job, exc, xl_killed=False)

    def _destroy(self, job):
        """The image is safe: the guest goes. A failure leaves it paused with its image and a
        "saved" entry (the next run's recovery settles that: never two live copies)."""
        job.phases.start(DESTROY)
        try:
            # why the claim goes along: xl runs in a session of its own and outlives a SIGKILL
            # of this run; while it lives, the next run's recovery must not unpause the guest
            # (it would be destroyed running, its image then taken for stale). The child holds
            # the claim from the fork on, so there is no window before it is named xl.
            result = self.xl.destroy(job.domid, SHORT_TIMEOUT, keep_fds=job.claim.fds if job.claim is not None else ())
            if not result.ok:
                raise result.error(DESTROY, domain=job.label, kind="destroy_failed")
            deadline = self.clock() + GONE_TIMEOUT
            while True:
                with self._backend_lock:
                    info = self.backends.xenctrl.domain_info(job.domid)
                if info is None or info.uuid != job.uuid:
                    break
                if self.clock() >= deadline:
                    raise DomainOperationError("the domain is still %s %g s after xl destroy"
                                               % (info.state, GONE_TIMEOUT), kind="destroy_failed")
                self._sleep()
            job.changed = True
            job.after = STATE_SAVED
        except XenSuspendError as exc:
            job.fail(exc, DESTROY)
            job.after = "paused"
            job.notes.append("the image %s is complete and recorded saved; the guest was not "
                             "destroyed and stays paused: the next run of this collection gives "
                             "it back and removes the image" % job.image)

    # -- giving the guest back ----------------------------------------------------------------

    def _give_back(self, job, error, xl_killed):
        """The save failed before the destroy: the guest runs again, then the images and the
        entry go. ``xl_killed``: xl did not end on its own (it may have left the guest
        suspended, or a request the guest has not answered)."""
        job.fail(error, SAVE)
        job.phases.start(GIVE_BACK)
        final, part = _save_dir.image_paths(self.save_dir, job.uuid)
        try:
            with self._backend_lock:
                running = self._bring_back(job, xl_killed)
                if running is None:  # gone, or shut down otherwise
                    return
                if not running:
                    job.notes.append("the guest could not be seen running again; its ledger entry "
                                     "stays for the next run's recovery")
                    return
                removed = [path for path in (part, final) if _save_dir.remove_quietly(path)]
                if removed:
                    _save_dir.fsync_directory(self.save_dir)
                # Before the entry goes: it is what lets a later run find a monitor we froze.
                self._thaw_monitor(job)
                if job.may_still_suspend:
                    settle_by = self.backends.wall_clock() + self.late_suspend_timeout
                    apply_transitions(self.backends.ledger, [AwaitLateSuspend(
                        job.uuid, job.intent_id, settle_by, "xl_save_gave_up")])
                    job.notes.append(
                        "the guest runs, but it took xl's suspend request and may still suspend on "
                        "its own: its ledger entry stays for %d s so that domain_resumed (or any "
                        "later run) resumes it if it does; no image was kept" % self.late_suspend_timeout)
                    _outcome(job, "the guest runs (it may still suspend on its own: its ledger "
                                  "entry stays for domain_resumed); no image was kept")
                    return
                apply_transitions(self.backends.ledger, [Settle(job.uuid, job.intent_id, SAVE_ABANDONED)])
                job.notes.append("the guest runs again (it saw a cancelled suspend); no image was kept")
                _outcome(job, "the guest runs again; no image was kept")
        except (XenSuspendError, OSError) as exc:
            job.notes.append("giving the guest back failed: %s; its ledger entry stays for the next "
                             "run's recovery" % exc)

    def _bring_back(self, job, xl_killed):
        """True once the guest runs (unpaused), False when it could not be seen running, None
        when there is no guest to give back (gone, or shut down for another reason)."""
        xc = self.backends.xenctrl
        info = xc.domain_info(job.domid)
        if xl_killed and info is not None and info.uuid == job.uuid and not info.shut_down:
            info = self._watch_late_suspend(job)
        if info is None or info.uuid != job.uuid:
            job.after = STATE_GONE
            job.notes.append("the domain vanished during its save; the ledger entry and any "
                             "partial image are kept for the operator")
            return None
        if info.dying or (info.shut_down and not info.suspended):
            job.after = info.state
            _save_dir.remove_quietly(_save_dir.image_paths(self.save_dir, job.uuid)[1])
            self._thaw_monitor(job)  # before the entry that records it goes
            apply_transitions(self.backends.ledger, [Settle(job.uuid, job.intent_id, OTHER_SHUTDOWN)])
            job.notes.append("the domain is %s, not saved; its partial image was removed" % info.state)
            return None
        if info.suspended:
            resumed = self._resume(job, info)
            info = xc.domain_info(job.domid)
            if not resumed:
                job.after = info.state if info is not None else STATE_GONE
                return False
        if info is not None and info.paused:
            result = self.xl.unpause(job.domid, SHORT_TIMEOUT)
            if not result.ok:
                job.notes.append(result.describe())
            info = xc.domain_info(job.domid)
        if info is None or info.uuid != job.uuid:
            job.after = STATE_GONE
            return False
        job.after = info.state
        return not (info.paused or info.shut_down or info.dying)

    def _watch_late_suspend(self, job):
        """After a killed xl: withdraw a request the guest has not taken; one it has taken (or
        an event-channel notification) may still make it suspend: watched for a moment."""
        try:
            if withdraw_suspend_request(self.backends.xenstore, job.domid):
                job.notes.append("withdrew the suspend request xl left unanswered")
                return self.backends.xenctrl.domain_info(job.domid)
        except XenSuspendError as exc:
            job.notes.append("could not withdraw xl's suspend request: %s" % exc)
        deadline = self.clock() + LATE_SUSPEND_WATCH
        while True:
            info = self.backends.xenctrl.domain_info(job.domid)
            if info is None or info.shut_down:
                return info
            if self.clock() >= deadline:
                # Still running: the request it took may yet make it suspend (see _give_back).
                job.may_still_suspend = True
                return info
            self._sleep()

    def _sleep(self):
        """One poll interval (the backends' wait: unit tests move a fake clock with it)."""
        with self._backend_lock:
            self.backends.wait([], POLL)

    def _resume(self, job, info):
        """The collection's own cooperative resume (domain_resumed's engine, fast: the guest
        sees a cancelled suspend), for a guest a killed xl left suspended."""
        record = DomainRecord(info, job.record.name)
        resume_job = ResumeJob(record, None, self.clock, forced=True)
        engine = ResumeEngine(self.backends, timeout=RESUME_TIMEOUT, continue_on_error=True,
                              force_unrecorded=True, parallel=1)
        engine.run(ResumePlan([resume_job], [], []))
        if resume_job.succeeded:
            job.notes.append("xl left it suspended: resumed (cancelled suspend)")
            return True
        job.notes.append("xl left it suspended and the resume failed: %s"
                         % (resume_job.error or {}).get("message"))
        return False

    # -- xl's monitor -------------------------------------------------------------------------

    def _find_monitor(self, job):
        monitors = self.backends.monitors
        if monitors is None:
            return None
        return monitors.find(job.domid, job.record.name)

    def _freeze_monitor(self, job):
        """xl's monitor up to 4.19 exits when it sees the suspend (see _xl_monitor); should the
        save fail and the guest run on, it must still be there."""
        monitors = self.backends.monitors
        if job.monitor is not None and monitors.freeze(job.monitor):
            job.monitor = dict(job.monitor, state="frozen")

    def _thaw_monitor(self, job):
        monitors = self.backends.monitors
        if job.monitor is None or monitors is None or job.monitor.get("state") != "frozen":
            return
        with self._backend_lock:
            thawed = monitors.thaw(job.monitor)
        job.monitor = dict(job.monitor, state=STATE_RUNNING if thawed else "gone")


def _outcome(job, text):
    """Say in the failure itself what became of the guest: xl's words alone ("xc_domain_resume
    failed") read like a guest lost."""
    if job.error is not None:
        job.error["message"] = "%s -- %s" % (job.error["message"], text)


def _existing_parent(path):
    while path and not os.path.isdir(path):
        parent = os.path.dirname(path.rstrip(os.sep))
        if parent == path:
            break
        path = parent
    return path or os.sep


def ledger_records(entries):
    """What a Selector matches on, for every guest the ledger holds (saved, or on its way)."""
    return [_EntryRecord(entry) for entry in entries.values()]


def unmatched_problems(unmatched, done):
    """Explicit selectors that match no live domain and no guest already saved."""
    problems = []
    for selector in unmatched:
        if not any(selector.matches(_EntryRecord(job.entry)) for job in done):
            problems.append("no domain or saved guest matches %s %r" % (selector.kind, selector.text))
    return problems
