# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: suspending many domains at once from one thread.

One loop owns every domain's state machine. It sleeps in one poll() on two descriptors, the
shared event-channel fd and the xenstore watch pipe, for at most 50 ms, and polls the
hypervisor's domain info for each domain in flight about every 100 ms as a backstop: xenstore
watches and @releaseDomain are hints only (oxenstored fires spuriously, C xenstored latches
per domain, and none fires while a suspend event channel is subscribed).

Per domain (phases in brackets; the job's Stage and Request enums in _suspend_job, the
protocols in _protocol_requests, the ledger's transitions in _ledger_transitions):

    [lookup]   domain info, HVM params, advertised event channel -> method (libxl's choice)
    [lock]     libxl's suspend-evtchn-<domid>.lock, non-blocking; held: "busy"; then the
               domain is looked at again (only what is seen under the lock counts)
               ledger: RecordIntent, durable before any request
    [request]  the protocol's start(): event channel bind+subscribe+drain+notify, xenstore
               watch+write (pipelined batches), or direct xc_domain_shutdown
    [acknowledge] (xenstore) wait for the guest to change the node; on timeout the request is
               withdrawn in a transaction. Suspended while our request still stands in an
               untouched node: somebody else suspended it -- withdrawn, not claimed.
    [quiesce]  wait until Xen reports shutdown with reason suspend
    [verify]   release channel/watch/lock; ledger: ConfirmSuspended with the CPU time as evidence

A domain that fails is never resumed here. At the end every intent that did not end verified
gets a verdict on evidence (_settle_unfinished): Settle when the request was never sent or was
withdrawn, or the domain is gone or shut down otherwise; KeepPending (the entry stays, with a
settle_by time) when the guest may still suspend because of the request. A signal (see
_interruption) stops admission, withdraws unanswered requests and goes through the same end.

Backends are injected (see _backends.Backends) so tests drive this with fakes.
"""

import binascii
import collections
import os

from ansible_collections.xen.suspend.plugins.module_utils._domain_state import (
    STATE_GONE, STATE_SUSPENDED, reason_name)
from ansible_collections.xen.suspend.plugins.module_utils._errors import (
    DomainOperationError, LedgerError, OptionError, XenSuspendError)
from ansible_collections.xen.suspend.plugins.module_utils._inventory import (
    domain_type, hvm_params, prefetch_event_channels, suspend_event_channel)
from ansible_collections.xen.suspend.plugins.module_utils._ledger import (
    STATE_SUSPENDED as LEDGER_SUSPENDED, is_image_entry, make_entry)
from ansible_collections.xen.suspend.plugins.module_utils._ledger_transitions import (
    GONE, NEVER_SENT, NOT_OURS, OTHER_SHUTDOWN, WITHDRAWN, ChangeMethod, ConfirmSuspended,
    KeepPending, RecordIntent, Settle, apply_transitions)
from ansible_collections.xen.suspend.plugins.module_utils._run_report import RunReport
from ansible_collections.xen.suspend.plugins.module_utils._phases import (
    LOCK, LOOKUP, QUIESCE, REQUEST, VERIFY)
from ansible_collections.xen.suspend.plugins.module_utils._suspend_job import (
    Request, Stage, SuspendJob)
from ansible_collections.xen.suspend.plugins.module_utils._suspend_method import (
    AUTO, DIRECT, EVENT_CHANNEL, METHODS, XENSTORE, choose_method)
from ansible_collections.xen.suspend.plugins.module_utils._domain_poll import batch_domain_infos
from ansible_collections.xen.suspend.plugins.module_utils._protocol_requests import (
    earliest, protocol_requests)

MAX_WAIT = 0.05            # longest sleep of the loop
ADMISSION_COALESCE = 0.05  # batch admissions so one ledger write covers several domains
LEDGER_FLUSH_INTERVAL = 0.25
# A guest that answered (or was notified) but has not suspended by our timeout may still get
# there: Linux alone may spend up to 20 s freezing tasks. Its entry stays until at least this
# long after the request (plus SETTLE_MARGIN after we give up), and a later run waits for it
# until then (settle_by in the ledger).
LATE_SUSPEND_WINDOW = 30.0
# Added to the run's own limits for the settle_by written with the intent (a killed run).
SETTLE_MARGIN = 5.0

RELEASE_DOMAIN = b"@releaseDomain"
# One standing @releaseDomain watch per xenstore connection, registered by the first run that
# needs it in the same pipelined batch as its first requests' watches, and gone with the
# connection (the module closes it right after the run): no round trip of its own, and no
# per-run watch/unwatch that a single guest pays for. Tokens are per connection in xenstored.
RELEASE_TOKEN = b"xen-suspend-release"
# parallel=0: no bound (more domains than a dom0 can have)
UNBOUNDED = 1 << 20


class SuspendReport(RunReport):
    changed_key = "suspended"

    @property
    def suspended(self):
        return self.changed_names


def validate_options(method=AUTO, ack_timeout=60.0, timeout=60.0, parallel=32, poll_interval=0.1):
    """Raise OptionError naming every bad option."""
    problems = []
    if method not in METHODS:
        problems.append("method must be one of %s, not %r" % (", ".join(METHODS), method))
    for name, value in (("ack_timeout", ack_timeout), ("timeout", timeout),
                        ("poll_interval", poll_interval)):
        if value is None or not value > 0 or value != value or value == float("inf"):  # pylint: disable=unnecessary-negation,comparison-with-itself
            problems.append("%s must be a number of seconds > 0, not %r" % (name, value))
    if parallel is None or int(parallel) < 0:
        problems.append("parallel must be >= 1, or 0 for no bound, not %r" % (parallel,))
    if problems:
        raise OptionError("invalid options, nothing was touched: " + "; ".join(problems))


def _refuse_image_entry(entry):
    if is_image_entry(entry):
        raise DomainOperationError(
            "the ledger records this guest as %s to disk by domain_saved; it is left to "
            "domain_saved / domain_restored" % ("saved" if entry.get("state") != "saving" else "being saved"),
            kind="saved_to_disk")


class SuspendEngine(object):
    """Suspends a list of DomainRecords. ``run()`` returns a SuspendReport."""

    def __init__(self, backends, method=AUTO, ack_timeout=60.0, timeout=60.0, parallel=32,
                 continue_on_error=False, check_mode=False, poll_interval=0.1, drain_timeout=1.0):
        validate_options(method, ack_timeout, timeout, parallel, poll_interval)
        self.backends = backends
        self.xc = backends.xenctrl
        self.xs = backends.xenstore
        self.clock = backends.clock
        self.method = method
        self.ack_timeout = float(ack_timeout)
        self.timeout = float(timeout)
        self.parallel = int(parallel) or UNBOUNDED  # 0: the whole fleet at once
        self.continue_on_error = continue_on_error
        self.check_mode = check_mode
        self.poll_interval = float(poll_interval)
        self.drain_timeout = float(drain_timeout)
        self._requests = protocol_requests(self)
        self._release_wanted = False
        self._transitions = []
        self._last_flush = None
        self._last_admission = None
        self._stop_reason = None
        self._interrupted = False
        self._inflight = []
        self._errors = []
        # Names this run's watches and intents: unique across processes and reboots.
        self._run_tag = "%d-%s" % (os.getpid(), binascii.hexlify(os.urandom(4)).decode("ascii"))

    # == public ===============================================================================

    def run(self, records, skipped=None):
        """Suspend ``records``; ``skipped`` (what target selection left out) goes into the report."""
        clock = self.clock
        wall_start = clock()
        cpu_start = self.backends.cpu_clock()
        xs_start = self.xs.round_trips
        reconnects_start = self.xs.reconnects
        xc_start = self.xc.calls
        writes_start = self.backends.ledger.writes

        entries = self.backends.ledger.read()  # a damaged ledger stops us before anything
        infos = self._domain_infos([record.domid for record in records]) or {}
        self._prefetch_event_channels(records, infos)
        jobs = [self._plan(record, entries, infos) for record in records]
        actionable = [job for job in jobs if job.actionable]
        lookup_failed = [job for job in jobs if job.error is not None]

        if self.check_mode:
            for job in actionable:
                job.after = STATE_SUSPENDED
                job.changed = True
                job.finish()
                job.notes.append("check mode: would suspend with method %s" % job.method)
        elif lookup_failed and not self.continue_on_error:
            for job in actionable:
                self._not_attempted(job, "another domain failed its lookup and continue_on_error is false; "
                                         "nothing was touched")
        else:
            if actionable:
                self.backends.locks.check_run_dir()
            try:
                self._loop(collections.deque(actionable))
            finally:
                # Also after an unexpected error: every intent gets its evidence-based verdict.
                self._settle_unfinished(jobs)

        stats = {
            "domains": len(jobs),
            "attempted": sum(1 for job in jobs if job.request is not Request.NOT_SENT),
            "wall_seconds": round(clock() - wall_start, 6),
            "cpu_seconds": round(self.backends.cpu_clock() - cpu_start, 6),
            "xenstore_round_trips": self.xs.round_trips - xs_start,
            "xenstore_reconnects": self.xs.reconnects - reconnects_start,
            "xenctrl_calls": self.xc.calls - xc_start,
            "ledger_writes": self.backends.ledger.writes - writes_start,
        }
        report = SuspendReport(jobs, stats, self._errors, skipped)
        report.interrupted = self._interrupted_by()
        return report

    def _interrupted_by(self):
        interruption = self.backends.interruption
        return interruption.reason if interruption is not None else None

    # == lookup ===============================================================================

    def _prefetch_event_channels(self, records, infos):
        """Every candidate's advertised event channel in one pipelined batch, instead of one
        wait per domain during lookup."""
        if self.method not in (AUTO, EVENT_CHANNEL):
            return
        candidates = []
        for record in records:
            info = infos.get(record.domid)
            if info is not None and info.uuid == record.uuid and not (
                    info.dying or info.shut_down or info.paused):  # suspended is shut down too
                candidates.append(record)
        if len(candidates) > 1:
            prefetch_event_channels(self.xs, candidates)

    def _plan(self, record, entries, infos):
        job = SuspendJob(record, self.clock)
        job.phases.start(LOOKUP)
        try:
            self._lookup(job, entries, infos)
        except XenSuspendError as exc:
            self.fail(job, exc, LOOKUP)
        job.phases.stop()
        return job

    def _lookup(self, job, entries, infos):
        record = job.record
        if record.domid in infos:
            info = infos[record.domid]
        else:
            info = self.xc.domain_info(record.domid)
        if info is None or info.uuid != record.uuid:
            raise DomainOperationError("the domain no longer exists", kind="vanished")
        record.info = info
        job.before = info.state
        entry = entries.get(record.uuid)
        _refuse_image_entry(entry)
        if info.suspended:
            if entry is None:
                raise DomainOperationError(
                    "the domain is already suspended but not recorded in the ledger: another tool "
                    "(xl save or migrate?) may be working on it, so it is left alone",
                    kind="unrecorded_suspend")
            job.after = STATE_SUSPENDED
            job.method = entry.get("method")
            job.finish()
            if entry.get("state") != LEDGER_SUSPENDED:
                # Not confirmed: a stopped run's. domain_resumed settles it under the lock.
                job.notes.append("suspended, with a ledger entry a stopped run left unconfirmed")
            return
        if info.dying:
            raise DomainOperationError("the domain is dying", kind="not_running")
        if info.shut_down:
            raise DomainOperationError("the domain is shut down (%s), not running"
                                       % reason_name(info.shutdown_reason), kind="not_running")
        if info.paused:
            raise DomainOperationError("the domain is paused, so its guest cannot take part in a "
                                       "suspend; unpause it first", kind="paused")
        # (an entry here is a stopped run's, or a live run's: the lock tells, see _recheck_locked)
        job.stale_entry_state = entry.get("state") if entry is not None else None

        job.callback_irq, job.acpi_s_state = hvm_params(self.xc, record)
        if self.method in (AUTO, EVENT_CHANNEL):
            job.port, job.port_reason = suspend_event_channel(self.xs, record)
            if job.port is None and job.port_reason != "absent" and not job.port_reason.startswith("empty"):
                job.notes.append("suspend event channel ignored: %s" % job.port_reason)
        choice = choose_method(self.method, info.hvm_guest, lambda: domain_type(self.xs, record),
                               job.port, job.port_reason, job.callback_irq, job.acpi_s_state)
        self._set_method(job, choice)
        job.actionable = True

    @staticmethod
    def _set_method(job, choice):
        job.method = choice.method
        job.method_reason = choice.reason
        job.resume_fast = choice.resume_fast

    # == the loop =============================================================================

    def _loop(self, queue):
        backends = self.backends
        inflight = self._inflight
        try:
            # (registered with the first xenstore requests, or before the first direct one)
            self._release_wanted = any(job.method in (XENSTORE, DIRECT) for job in queue)
            while queue or inflight:
                now = self.clock()
                if not self._interrupted and self._interrupted_by() is not None:
                    self._interrupt(inflight)
                    inflight[:] = [job for job in inflight if not job.done]
                    continue
                if queue and self._stop_reason is not None:
                    while queue:
                        self._not_attempted(queue.popleft(), self._stop_reason)
                    continue
                free = self.parallel - len(inflight)
                if queue and free > 0 and self._admission_due(now, free, len(inflight)):
                    self._admit(queue, free, now)
                    inflight[:] = [job for job in inflight if not job.done]
                    if not inflight:
                        continue
                fds = [self.xs.fileno()]
                if backends.evtchn_opened:
                    fds.append(backends.evtchn.fileno())
                wait = self._next_wakeup(now, queue) - now
                ready = backends.wait(fds, max(0.0, min(wait, MAX_WAIT)))
                now = self.clock()
                if backends.evtchn_opened and backends.evtchn.fileno() in ready:
                    self._requests[EVENT_CHANNEL].on_events(now)
                self._requests[XENSTORE].on_events(now)
                self._poll_due(inflight, self.clock())
                for job in list(inflight):
                    if not job.done:
                        self._step(job, self.clock())
                inflight[:] = [job for job in inflight if not job.done]
                if self._transitions and (self._last_flush is None or
                                          now - self._last_flush >= LEDGER_FLUSH_INTERVAL):
                    self._flush_ledger(now, quiet=True)
        except BaseException as exc:
            for job in inflight:
                if not job.done:
                    self.fail(job, DomainOperationError(
                        "interrupted by an unexpected error: %s" % exc, kind="interrupted"),
                        job.phases.current)
            raise
        finally:
            self._flush_ledger(self.clock(), quiet=True)

    def _admission_due(self, now, free, inflight_count):
        if inflight_count == 0 or free >= max(1, self.parallel // 4):
            return True
        # Same expression as in _next_wakeup, so float rounding cannot make us spin.
        return self._last_admission is None or now >= self._last_admission + ADMISSION_COALESCE

    def _next_wakeup(self, now, queue):
        wakeup = now + MAX_WAIT
        for job in self._inflight:
            if job.done:
                continue
            if job.stage is Stage.DRAIN:
                wakeup = min(wakeup, job.deadline)
                continue
            if job.fresh_event:
                wakeup = min(wakeup, earliest(job.last_read, now))
            if job.poll_requested:
                wakeup = min(wakeup, earliest(job.last_poll, now))
            wakeup = min(wakeup, job.next_poll, job.deadline)
        if queue and self._last_admission is not None and len(self._inflight) < self.parallel:
            wakeup = min(wakeup, self._last_admission + ADMISSION_COALESCE)
        return wakeup

    def _admit(self, queue, slots, now):
        self._last_admission = now
        batch = []
        while queue and len(batch) < slots and self._stop_reason is None:
            job = queue.popleft()
            job.phases.start(LOCK)
            try:
                job.lock = self.backends.locks.acquire(job.record.domid)
            except XenSuspendError as exc:
                self.fail(job, exc, LOCK)
                continue
            job.advance(Stage.LOCKED)
            batch.append(job)
        batch = self._recheck_locked(batch)
        if not batch:
            return
        monitors = self.backends.monitors
        wall = self.backends.wall_clock()
        for job in batch:
            job.phases.stop()
            intent_id = "%s-%d" % (self._run_tag, job.record.domid)
            entry = make_entry(job.record.uuid, job.record.domid, job.record.name, job.method,
                               resume_fast=job.resume_fast, intent_id=intent_id,
                               settle_by=wall + self._request_window(job.method))
            if monitors is not None:
                # Recorded before it is frozen, so whoever resumes the domain can continue it.
                job.monitor = monitors.find(job.record.domid, job.record.name)
                entry["lifecycle_monitor"] = job.monitor
            job.intent_id = intent_id
            self._transitions.append(RecordIntent(entry))
        try:
            self._flush_ledger(now)
        except LedgerError as exc:
            self._errors.append(str(exc))
            self._stop_reason = "the ledger could not be written: %s" % exc
            for job in batch:
                job.intent_id = None
                self.fail(job, DomainOperationError(
                    "the intent could not be recorded in the ledger, so no request was sent: %s"
                    % exc, kind="ledger_error"), REQUEST)
            return
        by_method = collections.OrderedDict((method, []) for method in (EVENT_CHANNEL, DIRECT, XENSTORE))
        for job in batch:
            self._inflight.append(job)
            by_method[job.method].append(job)
        for method, jobs in by_method.items():
            jobs = [job for job in jobs if not self.held_back([job])]  # an earlier one failed
            if method != XENSTORE:
                # (xenstore freezes after its watches are in place, just before its writes)
                for job in jobs:
                    self.freeze_monitor(job)
            # each protocol sends its batch at once (xenstore: pipelined watches, then writes)
            self._requests[method].start(jobs, self.clock())

    def _request_window(self, method):
        """How long after the intent the guest may still suspend because of this run: what
        the run itself waits, plus a margin. Written with the intent, for a run that dies."""
        window = self.timeout + SETTLE_MARGIN
        if method == XENSTORE or method == EVENT_CHANNEL and self.method == AUTO:
            window += self.ack_timeout  # an event channel may fall back to xenstore
        return window + self.drain_timeout

    def _recheck_locked(self, batch):
        """Look again once the locks are held: between lookup and lock another tool (xl save,
        another run of ours) may have suspended, paused or destroyed the domain. Only what is
        seen under the lock counts."""
        if not batch:
            return batch
        infos = self._domain_infos([job.record.domid for job in batch])
        entries = None
        kept = []
        for job in batch:
            try:
                info = infos[job.record.domid] if infos is not None else \
                    self.xc.domain_info(job.record.domid)
                if info is None or info.uuid != job.record.uuid:
                    job.after = STATE_GONE
                    raise DomainOperationError("the domain no longer exists", kind="vanished")
                job.record.info = info
                if entries is None:
                    # Also for a running domain: domain_saved may have recorded "saving" since
                    # our lookup (it writes it under this same lock, then xl save runs).
                    entries = self.backends.ledger.read()
                entry = entries.get(job.record.uuid)
                _refuse_image_entry(entry)
                if info.suspended:
                    job.after = STATE_SUSPENDED
                    if entry is not None and entry.get("state") == LEDGER_SUSPENDED:
                        job.notes.append("suspended meanwhile by another run of this collection")
                        self._release_resources(job)
                        job.finish()
                        continue
                    raise DomainOperationError(
                        "the domain was suspended by someone else (xl save or migrate?) just "
                        "before our request; it is left alone and not recorded",
                        kind="suspended_by_other")
                if info.dying or info.shut_down:
                    job.after = info.state
                    raise DomainOperationError("the domain is %s, not running" % info.state,
                                               kind="not_running")
                if info.paused:
                    job.after = info.state
                    raise DomainOperationError("the domain was paused meanwhile; unpause it first",
                                               kind="paused")
            except XenSuspendError as exc:
                self.fail(job, exc, LOCK)
                continue
            if job.stale_entry_state is not None:
                job.notes.append("replacing a stale ledger entry (state %s) for a running domain"
                                 % job.stale_entry_state)
            kept.append(job)
        return kept

    # == requests =============================================================================

    def held_back(self, jobs):
        """True when a failure stopped the run: ``jobs`` then give back what they hold and are
        reported not attempted (their intents are removed by _reconcile)."""
        if self._stop_reason is None:
            return False
        for job in jobs:
            self._release_resources(job)
            self._not_attempted(job, self._stop_reason)
        return True

    def enter_quiesce(self, job, now):
        job.phases.start(QUIESCE, now)
        job.advance(Stage.QUIESCE)
        job.quiesce_started = now
        job.deadline = now + self.timeout
        job.next_poll = now + self.poll_interval

    def release_watch_items(self):
        """[(@releaseDomain, token)] while the standing watch is wanted and not yet in place on
        this connection (a reconnect registers it again by itself), else []."""
        if not self._release_wanted or (RELEASE_DOMAIN, RELEASE_TOKEN) in self.xs.watches:
            return []
        return [(RELEASE_DOMAIN, RELEASE_TOKEN)]

    def release_watch_result(self, error):
        """What registering it gave: it is only a hint, the backstop polling does the real work."""
        self._release_wanted = False
        if error is not None:
            self._errors.append("could not watch @releaseDomain (polling only): %s" % error)

    def ensure_release_watch(self):
        """For requests that register no watches of their own (direct)."""
        for path, token in self.release_watch_items():
            try:
                self.xs.watch(path, token)
                self.release_watch_result(None)
            except XenSuspendError as exc:
                self.release_watch_result(exc)

    # == what the protocol requests (_protocol_requests) use ====================================

    @property
    def run_tag(self):
        return self._run_tag

    def request_for(self, method):
        return self._requests[method]

    def inflight_jobs(self):
        return self._inflight

    def warn(self, message):
        self._errors.append(message)

    def is_release_event(self, token):
        """True for our @releaseDomain watch: a hint that some domain changed, so every job
        waiting for its guest is looked at in the next backstop poll."""
        if token != RELEASE_TOKEN:
            return False
        for job in self._inflight:
            if job.waiting:
                job.poll_requested = True
        return True

    def change_method(self, job, choice):
        """``auto`` fell back from the event channel (it could not be bound)."""
        self._set_method(job, choice)
        self._transitions.append(ChangeMethod(
            job.record.uuid, job.intent_id, choice.method, choice.resume_fast,
            self.backends.wall_clock() + self._request_window(choice.method)))

    @staticmethod
    def foreign_suspend(job):
        job.after = STATE_SUSPENDED
        return DomainOperationError(
            "the domain was suspended by someone else (xl save or migrate?) while our request "
            "stood unanswered; our request was withdrawn and the suspend is not recorded as "
            "ours", kind="suspended_by_other")

    # == the state machine ====================================================================

    def _step(self, job, now):
        """The job's stage deadline: its protocol decides what that means."""
        if job.deadline is None or now < job.deadline:
            return
        try:
            self._requests[job.method].on_timeout(job, now)
        except XenSuspendError as exc:
            self.fail(job, exc, job.phases.current)

    def _poll_due(self, jobs, now):
        """The backstop: domain info for every job whose poll is due, in one batch."""
        due = [job for job in jobs if not job.done and job.waiting and
               (now >= job.next_poll or job.poll_requested and now >= earliest(job.last_poll, now))]
        if not due:
            return
        infos = self._domain_infos([job.record.domid for job in due])
        for job in due:
            job.poll_requested = False
            job.last_poll = now
            job.next_poll = now + self.poll_interval
            try:
                info = infos[job.record.domid] if infos is not None else \
                    self.xc.domain_info(job.record.domid)
                self._judge(job, info)
            except XenSuspendError as exc:
                self.fail(job, exc, job.phases.current)

    def _domain_infos(self, domids):
        return batch_domain_infos(self.xc, domids)

    def _judge(self, job, info):
        """Act on fresh domain info; True once the job is finished either way."""
        if info is None or info.uuid != job.record.uuid:
            job.after = STATE_GONE
            raise DomainOperationError("the domain disappeared while being suspended", kind="vanished")
        job.record.info = info
        if info.suspended:
            if job.stage is Stage.ACKNOWLEDGE and not self._answered_before_suspend(job):
                raise self.foreign_suspend(job)
            self._verify(job, info)
            return True
        if info.dying:
            job.after = info.state
            raise DomainOperationError("the domain is dying", kind="vanished")
        if info.shut_down:
            job.after = info.state
            raise DomainOperationError(
                "the domain shut down with reason %s instead of suspending; it is not resumed"
                % reason_name(info.shutdown_reason), kind="unexpected_shutdown")
        return False

    def _answered_before_suspend(self, job):
        """The domain is suspended but we saw no answer yet: if our "suspend" still stands in
        ~/control/shutdown the guest never took it, so somebody else suspended the domain. A
        transaction takes it back, so the guest cannot act on it after that other party's
        resume. False means: not ours (the request is withdrawn)."""
        if job.node_touched:
            # The guest wrote its node since our request (we saw the watch fire), so it read
            # it; a "suspend" there now is its own rewrite, and the node is guest-writable:
            # only a node nobody touched tells that the guest never took the request.
            job.mark_request(Request.ANSWERED)
            return True
        if self._requests[XENSTORE].withdraw(job):
            job.after = STATE_SUSPENDED
            return False
        return True

    def quiesce_timeout(self, job):
        info = self.xc.domain_info(job.record.domid)
        if self._judge(job, info):
            return
        if job.method == DIRECT:
            what = "Xen did not finish the suspend within %g s" % self.timeout
        elif job.method == EVENT_CHANNEL:
            what = "the guest did not suspend within %g s of the event-channel notification" % self.timeout
        else:
            what = "the guest acknowledged but did not suspend within %g s" % self.timeout
        job.after = info.state
        raise DomainOperationError(what, kind="timeout")

    def _verify(self, job, info):
        """``info`` was just read from the hypervisor; success needs shutdown with reason
        suspend for this very domain (same UUID), nothing less."""
        job.phases.start(VERIFY)
        if info is None or not info.suspended or info.uuid != job.record.uuid:
            job.after = info.state if info is not None else STATE_GONE
            raise DomainOperationError("the domain is not suspended (now %s)" % job.after,
                                       kind="not_suspended")
        job.record.info = info
        self._release_resources(job)
        job.after = STATE_SUSPENDED
        job.changed = True
        job.verified = True
        job.finish()
        self._transitions.append(ConfirmSuspended(job.record.uuid, job.intent_id, evidence_of(info)))
        job.phases.stop()

    # == endings ==============================================================================

    def fail(self, job, exc, phase):
        if isinstance(exc, XenSuspendError):
            exc.with_context(domain=job.label, phase=phase)
            error = exc.to_dict()
        else:  # pragma: no cover - defensive
            error = {"kind": "error", "message": "domain %s, phase %s: %s" % (job.label, phase, exc),
                     "phase": phase}
        job.error = error
        job.phases.stop()
        job.finish()
        self._release_resources(job)
        if not self.continue_on_error and self._stop_reason is None:
            self._stop_reason = ("not attempted: %s failed and continue_on_error is false"
                                 % job.label)

    def _not_attempted(self, job, reason):
        job.finish()
        job.error = {"kind": "not_attempted", "phase": None,
                     "message": "domain %s: %s" % (job.label, reason)}

    def _interrupt(self, inflight):
        """A signal arrived: no new requests; each guest still waiting gets its unanswered
        request withdrawn; what may still suspend stays in the ledger (_settle_unfinished)."""
        self._interrupted = True
        reason = self._interrupted_by()
        self._stop_reason = "not attempted: the run was interrupted by %s" % reason
        for job in list(inflight):
            if job.done:
                continue
            what = "interrupted by %s while %s" % (reason, job.stage.value)
            if job.stage is Stage.ACKNOWLEDGE:
                try:
                    if self._requests[job.method].withdraw(job):
                        what += "; the unanswered request was withdrawn"
                    else:
                        what += "; the guest had answered, so its ledger entry is kept"
                except XenSuspendError as exc:
                    what += "; the request could not be withdrawn (%s)" % exc
            self.fail(job, DomainOperationError(what, kind="interrupted"), job.phases.current)

    def _release_resources(self, job):
        """Give back everything the request took; problems become notes, not new failures.
        Every protocol is asked: an event channel that fell back to xenstore may hold both."""
        for request in self._requests.values():
            request.release(job)
        if job.lock is not None:
            lock, job.lock = job.lock, None
            lock.release()

    def freeze_monitor(self, job):
        """xl's monitor exits when it sees shutdown(suspend), leaving the guest's next reboot or
        poweroff unhandled after our resume; stopped, it never sees the suspend (_xl_monitor)."""
        if job.monitor is not None and self.backends.monitors.freeze(job.monitor):
            job.monitor_frozen = True
            job.monitor = dict(job.monitor, state="frozen")

    def _thaw_monitor(self, job, why):
        if job.monitor_frozen:
            job.monitor_frozen = False
            if self.backends.monitors.thaw(job.monitor):
                job.monitor = dict(job.monitor, state="running")
                job.notes.append("xl's monitor (pid %s) continued: %s" % (job.monitor["pid"], why))

    def _settle_unfinished(self, jobs):
        """Every job with an intent in the ledger that did not end verified: look at the domain
        once more and decide its entry on evidence only (see _ledger_transitions)."""
        unfinished = [job for job in jobs if job.intent_written and not job.verified]
        infos = self._domain_infos([job.record.domid for job in unfinished]) or {}
        for job in unfinished:
            try:
                info = infos[job.record.domid] if job.record.domid in infos else \
                    self.xc.domain_info(job.record.domid)
            except XenSuspendError as exc:
                job.notes.append("state unknown after the failure (%s); its ledger entry is kept "
                                 "for the next run to settle" % exc)
                continue
            self._settle(job, info)
        try:
            self._flush_ledger(self.clock())
        except LedgerError as exc:
            self._errors.append(str(exc))

    def _settle(self, job, info):
        uuid, intent_id = job.record.uuid, job.intent_id
        if info is None or info.uuid != uuid:
            job.after = STATE_GONE
            self._transitions.append(Settle(uuid, intent_id, GONE))
            self._thaw_monitor(job, "the domain is gone")
            return
        job.after = info.state
        if info.suspended:
            if job.request.may_act:
                job.notes.append("the domain suspended after the failure above: it is recorded "
                                 "as suspended, so domain_resumed brings it back")
                self._transitions.append(ConfirmSuspended(uuid, intent_id, evidence_of(info)))
                return  # its xl monitor stays stopped until the resume
            job.notes.append("suspended by someone else; not recorded as ours")
            self._transitions.append(Settle(uuid, intent_id, NOT_OURS))
            self._thaw_monitor(job, "the suspend is not ours")
            return
        if info.shut_down or info.dying:
            self._transitions.append(Settle(uuid, intent_id, OTHER_SHUTDOWN))
            self._thaw_monitor(job, "the domain %s; xl handles it" % info.state)
            return
        if job.request in (Request.SENT, Request.UNCERTAIN) and job.method == XENSTORE:
            # A request we cannot account for must not stay in the node: taken back unless the
            # guest answered it. (After an answer, a "suspend" there is the guest's own write.)
            try:
                if self._requests[XENSTORE].withdraw(job):
                    job.notes.append("our suspend request was withdrawn")
            except XenSuspendError as exc:
                job.notes.append("the request could not be withdrawn (%s)" % exc)
        if job.request.may_act:
            settle_by = self._late_settle_by(job)
            job.notes.append(
                "the guest may still suspend because of our request (%s): its ledger entry is "
                "kept, and domain_resumed waits for it (settle_timeout) and resumes it"
                % job.request.value)
            self._transitions.append(KeepPending(uuid, intent_id, settle_by, job.request.value))
            return  # its xl monitor stays stopped: it would exit on the late suspend
        reason = WITHDRAWN if job.request is Request.WITHDRAWN else NEVER_SENT
        self._transitions.append(Settle(uuid, intent_id, reason))
        self._thaw_monitor(job, "the domain was not suspended")

    def _late_settle_by(self, job):
        """Until when the guest may still suspend because of our request: from the moment it
        answered (or was notified), at least our own ``timeout`` and at least
        LATE_SUSPEND_WINDOW, plus a margin. A run that stopped early (a signal, an error) did
        not wait its timeout: the rest of it counts too. An unanswered xenstore request may
        still be answered until its acknowledgement deadline."""
        now = self.clock()
        if job.quiesce_started is not None:
            start = job.quiesce_started
        elif job.stage is Stage.ACKNOWLEDGE and job.deadline is not None:
            start = max(now, job.deadline)
        else:
            start = now
        window = max(self.timeout, LATE_SUSPEND_WINDOW) + SETTLE_MARGIN
        return self.backends.wall_clock() + (start - now) + window

    # == ledger ===============================================================================

    def _flush_ledger(self, now, quiet=False):
        if not self._transitions or self.check_mode:
            return
        transitions, self._transitions = self._transitions, []
        self._last_flush = now
        try:
            apply_transitions(self.backends.ledger, transitions)
        except LedgerError as exc:
            # Intents that could not be written must never be written later: their requests
            # are not sent. Confirmations and settlements are retried by the next flush.
            self._transitions = [t for t in transitions if not isinstance(t, RecordIntent)] + \
                self._transitions
            if quiet:
                if str(exc) not in self._errors:
                    self._errors.append(str(exc))
                return
            raise


def evidence_of(info):
    """What ties a ledger entry to this very suspend (see ConfirmSuspended)."""
    return {"domid": info.domid, "cpu_time_ns": int(info.cpu_time)}
