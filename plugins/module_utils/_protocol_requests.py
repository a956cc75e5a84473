# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: the toolstack side of the three guest suspend protocols.

One class per protocol, each with the same interface, so the engine's loop knows nothing of
how a request travels:

``start(jobs, now)``   send the request of each (admitted, locked, intent recorded) job
``on_events(now)``     take what the protocol's descriptor delivered and move jobs on
``on_timeout(job, now)`` the job's stage deadline passed
``withdraw(job)``      take the request back if the guest has not taken it (True) -- only
                       xenstore can: an event-channel notification or a hypercall is final
``release(job)``       give back what the request holds (channel, subscription, watch)

Event channel (libxl's preferred path): bind the guest's advertised port, subscribe it for
suspend, eat the pending event Xen sets on bind, notify; the guest suspends without answering.
Xenstore: watch ~/control/shutdown, write "suspend", wait for the guest to change the node
(the answer), then for the suspend. Direct (HVM without PV drivers): SCHEDOP-less
xc_domain_shutdown(SHUTDOWN_suspend), which Xen carries out itself.
"""

from ansible_collections.xen.suspend.plugins.module_utils._domain_state import SHUTDOWN_SUSPEND
from ansible_collections.xen.suspend.plugins.module_utils._errors import (
    DomainOperationError, XenSuspendError, XenstoreConnectionLost, XenstoreTimeout)
from ansible_collections.xen.suspend.plugins.module_utils._inventory import domain_type
from ansible_collections.xen.suspend.plugins.module_utils._phases import ACKNOWLEDGE, REQUEST
from ansible_collections.xen.suspend.plugins.module_utils._suspend_job import Request, Stage
from ansible_collections.xen.suspend.plugins.module_utils._suspend_method import (
    AUTO, DIRECT, EVENT_CHANNEL, XENSTORE, choose_method)
from ansible_collections.xen.suspend.plugins.module_utils._xenstore import domain_path

SUSPEND_VALUE = b"suspend"
MAX_EVENTS_PER_PASS = 4096
# One standing watch for every guest's answer: a watch fires for changes anywhere below its
# path and each event names the node that changed, so the answers are told apart by path.
# Registered by the first xenstore requests that need it, in the same pipelined batch as the
# @releaseDomain watch and ahead of the writes, and gone with the connection (the module closes
# it right after the run). libxl watches each domain's node instead: a watch and an unwatch
# round trip per domain, and xenstored matches every write against a thousand watches.
ANSWER_WATCH = (b"/local/domain", b"xen-suspend-answers")


def withdraw_suspend_request(xs, domid):
    """Take back a ``suspend`` still waiting in ~/control/shutdown, atomically: True when it was
    withdrawn, False when the guest had already answered (it may be suspending right now)."""
    path = domain_path(domid, "control/shutdown")

    def withdraw(tx):
        if tx.read(path) != SUSPEND_VALUE:
            return False, False
        tx.write(path, b"")
        return True, True

    return xs.run_transaction(withdraw)


class counted(object):  # pylint: disable=invalid-name  # used like a function
    """Attribute the xenstore round trips of a block to one domain."""

    def __init__(self, xs, record):
        self.xs = xs
        self.record = record
        self.before = 0

    def __enter__(self):
        self.before = self.xs.round_trips
        return self

    def __exit__(self, *exc_info):
        self.record.xs_trips += self.xs.round_trips - self.before
        return False


class ProtocolRequest(object):
    """Common part: the engine (its backends, options, _fail, _enter_quiesce, ...)."""

    method = None

    def __init__(self, engine):
        self.engine = engine
        self.xs = engine.xs
        self.xc = engine.xc

    def start(self, jobs, now):
        raise NotImplementedError

    def on_events(self, now):
        """Nothing to read by default."""

    def on_timeout(self, job, now):
        self.engine.quiesce_timeout(job)

    def withdraw(self, job):
        return False

    def release(self, job):
        """Nothing held by default."""


class DirectRequest(ProtocolRequest):
    method = DIRECT

    def start(self, jobs, now):
        if jobs:
            self.engine.ensure_release_watch()
        for job in jobs:
            job.phases.start(REQUEST, now)
            try:
                self.send(job)
            except XenSuspendError as exc:
                self.engine.fail(job, exc, REQUEST)

    def send(self, job):
        self.xc.shutdown(job.record.domid, SHUTDOWN_SUSPEND)  # a hypercall that fails did nothing
        job.mark_request(Request.SENT)
        self.engine.enter_quiesce(job, self.engine.clock())


class EventChannelRequest(ProtocolRequest):
    method = EVENT_CHANNEL

    def __init__(self, engine):
        ProtocolRequest.__init__(self, engine)
        self.port_jobs = {}

    def start(self, jobs, now):
        for job in jobs:
            job.phases.start(REQUEST, now)
            try:
                self._bind(job, now)
            except XenSuspendError as exc:
                self.engine.fail(job, exc, REQUEST)

    def _bind(self, job, now):
        engine = self.engine
        domid = job.record.domid
        try:
            job.local_port = engine.backends.evtchn.bind_interdomain(domid, job.port)
        except XenSuspendError as exc:
            if engine.method != AUTO:
                raise
            # The documentation allows falling back to xenstore when the channel cannot be
            # set up (garbage or a port not offered to dom0); libxl aborts instead.
            choice = choose_method(AUTO, job.record.info.hvm_guest,
                                   lambda: domain_type(self.xs, job.record), None, "unusable",
                                   job.callback_irq, job.acpi_s_state)
            job.notes.append("event channel %d could not be bound (%s); fell back to %s"
                             % (job.port, exc, choice.method))
            engine.change_method(job, choice)
            engine.request_for(choice.method).start([job], now)
            return
        self.port_jobs[job.local_port] = job
        self.xc.subscribe_for_suspend(domid, job.port)
        job.subscribed = True
        # Xen sets a freshly bound port pending; eat that event before notifying, or the
        # first wake-up would come from it rather than from the guest.
        job.advance(Stage.DRAIN)
        job.deadline = now + min(engine.drain_timeout, engine.timeout)

    def notify(self, job):
        evtchn = self.engine.backends.evtchn
        evtchn.unmask(job.local_port, job.record.domid)
        evtchn.notify(job.local_port, job.record.domid)  # an ioctl that fails did nothing
        job.mark_request(Request.SENT)
        self.engine.enter_quiesce(job, self.engine.clock())

    def on_events(self, now):
        engine = self.engine
        if not engine.backends.evtchn_opened:
            return
        evtchn = engine.backends.evtchn
        for _count in range(MAX_EVENTS_PER_PASS):
            try:
                port = evtchn.pending()
            except XenSuspendError as exc:
                engine.warn("reading the event channel device failed: %s" % exc)
                return
            if port is None:
                return
            job = self.port_jobs.get(port)
            if job is None or job.done:
                continue
            try:
                if job.stage is Stage.DRAIN:
                    self.notify(job)
                else:
                    evtchn.unmask(port, job.record.domid)
                    job.poll_requested = True
            except XenSuspendError as exc:
                engine.fail(job, exc, job.phases.current)

    def on_timeout(self, job, now):
        if job.stage is Stage.DRAIN:
            job.notes.append("the event Xen sets on bind did not show up; notifying anyway")
            self.notify(job)
            return
        ProtocolRequest.on_timeout(self, job, now)

    def release(self, job):
        domid = job.record.domid
        if job.local_port is not None:
            port, job.local_port = job.local_port, None
            self.port_jobs.pop(port, None)
            try:
                self.engine.backends.evtchn.unbind(port, domid)
            except XenSuspendError as exc:
                job.notes.append("cleanup: %s" % exc)
        if job.subscribed:
            job.subscribed = False
            # libxl never unsubscribes; a stale subscription would silently swallow the
            # @releaseDomain of every later suspend of this domain by other tools.
            try:
                self.xc.subscribe_for_suspend(domid, 0)
            except XenSuspendError as exc:
                job.notes.append("cleanup: %s" % exc)


class XenstoreRequest(ProtocolRequest):
    method = XENSTORE

    def __init__(self, engine):
        ProtocolRequest.__init__(self, engine)
        self.path_jobs = {}  # ~/control/shutdown -> the job whose answer is awaited there

    # -- sending ---------------------------------------------------------------------------

    def start(self, jobs, now):
        """~/control/shutdown = "suspend" for every job: first a watch on each node, then the
        write into each node whose watch is in place, each step one pipelined batch."""
        engine = self.engine
        for job in jobs:
            job.phases.start(REQUEST, now)
        if not jobs or engine.held_back(jobs):
            return
        for job in jobs:
            job.watch_path = domain_path(job.record.domid, "control/shutdown")
        watched = []
        failure = self._watch_answers()
        for job in jobs:
            if failure is not None:
                engine.fail(job, failure, REQUEST)
                continue
            self.path_jobs[job.watch_path] = job
            job.watching = True
            watched.append(job)
        if engine.held_back(watched):  # a watch failed and continue_on_error is false
            return
        for job in watched:
            engine.freeze_monitor(job)
        requested = []
        outcomes = self.xs.write_many([(job.watch_path, SUSPEND_VALUE) for job in watched])
        for job, outcome in zip(watched, outcomes):
            job.record.xs_trips += 1
            if outcome.error is not None:
                # A write that timed out or lost the connection may have reached the guest.
                if isinstance(outcome.error, (XenstoreTimeout, XenstoreConnectionLost)):
                    job.mark_request(Request.UNCERTAIN)
                engine.fail(job, outcome.error, REQUEST)
                continue
            job.mark_request(Request.SENT)
            requested.append((job, outcome.events_before))
        own = self.dispatch_watches(own_paths=set(job.watch_path for job, _stamp in requested))
        start = engine.clock()
        for job, replied_at in requested:
            self._settle_own_events(job, own.get(job.watch_path, []), replied_at)
            job.phases.start(ACKNOWLEDGE, start)
            job.advance(Stage.ACKNOWLEDGE)
            job.deadline = start + engine.ack_timeout
            job.next_poll = start + engine.poll_interval

    def _watch_answers(self):
        """Put the standing watches in place (ANSWER_WATCH, and @releaseDomain when the engine
        wants it) in one pipelined batch, unless they are already; None, or the error that
        leaves the answers unwatched."""
        engine = self.engine
        release = engine.release_watch_items()
        answers = [] if ANSWER_WATCH in self.xs.watches else [ANSWER_WATCH]
        if not release and not answers:
            return None
        outcomes = self.xs.watch_many(release + answers)
        if release:
            engine.release_watch_result(outcomes[0].error)
            outcomes = outcomes[1:]
        return outcomes[0].error if answers else None

    @staticmethod
    def _settle_own_events(job, own, replied_at):
        """Tell our own write's event on this job's node from the guest's answer.

        ``own`` are the arrival numbers of the node's events queued by now, ``replied_at`` how
        many events had arrived before the reply to our write (None: not known). C xenstored
        sends our write's event before the reply, oxenstored right after it. Whatever else is
        there is the guest answering, already: pyxs' Router thread may queue it before we look.
        """
        if replied_at is None or None in own:
            # Arrival order unknown: count them (our write's event, if here yet). A guest
            # answering this fast then costs a wait for the backstop poll, never a false ack.
            if not own:
                job.skip_events = 1
            return
        before = sum(1 for arrival in own if arrival <= replied_at)
        after = len(own) - before
        own_after_reply = 1 if before == 0 else 0
        if after > own_after_reply:
            job.fresh_event = True
            job.node_touched = True
        job.skip_events = max(0, own_after_reply - after)

    # -- receiving -------------------------------------------------------------------------

    def dispatch_watches(self, own_paths=()):
        """Dispatch queued watch events; returns {path: [arrival numbers]} (None when the
        backend does not number them) of those on one of ``own_paths``: the nodes of requests
        just sent, whose events _settle_own_events sorts out."""
        engine = self.engine
        own = {}
        path_jobs = self.path_jobs
        for event in self.xs.events_nowait():
            if engine.is_release_event(event[1]):
                continue
            path = event[0]
            if path == ANSWER_WATCH[0]:
                # The watch fires once when registered, and again when a reconnect registers
                # it anew: answers may have been missed meanwhile, so every node is read again.
                for job in path_jobs.values():
                    if job.stage is Stage.ACKNOWLEDGE:
                        job.fresh_event = True
                continue
            if path in own_paths:
                own.setdefault(path, []).append(event[2] if len(event) > 2 else None)
                continue
            job = path_jobs.get(path)
            if job is not None and job.stage is Stage.ACKNOWLEDGE:
                if job.skip_events:
                    job.skip_events -= 1
                    continue
                job.fresh_event = True
                job.node_touched = True
        return own

    def on_events(self, now):
        self.dispatch_watches()
        self.read_answers(self.engine.inflight_jobs(), self.engine.clock())

    def read_answers(self, jobs, now):
        """Read ~/control/shutdown of every job whose watch fired, in one pipelined batch; a
        guest that no longer leaves "suspend" there has answered."""
        due = [job for job in jobs if not job.done and job.stage is Stage.ACKNOWLEDGE and job.fresh_event
               and now >= earliest(job.last_read, now)]
        if not due:
            return
        answered = []
        removed = []
        for job, outcome in zip(due, self.xs.read_many([job.watch_path for job in due])):
            job.fresh_event = False
            job.last_read = now
            job.record.xs_trips += 1
            if outcome.error is not None:
                self.engine.fail(job, outcome.error, job.phases.current)
            elif outcome.value != SUSPEND_VALUE:
                answered.append(job)
                if outcome.value is None:
                    removed.append(job)
        self.acknowledged(answered)
        for job in removed:
            self.restore_node(job)

    def restore_node(self, job):
        """Older Windows PV drivers answer by removing ~/control/shutdown. Re-created by a plain
        write, the node would belong to dom0 and the guest could never answer again (the next
        maintenance window would time out): it is re-created as libxl creates it with the
        domain, owned by the guest (n<domid>), empty."""
        domid = job.record.domid

        def recreate(tx):
            if tx.read(job.watch_path) is not None:
                return False, False
            tx.write(job.watch_path, b"")
            tx.set_perms(job.watch_path, [b"n%d" % domid])
            return True, True

        try:
            with counted(self.xs, job.record):
                if self.xs.run_transaction(recreate):
                    job.notes.append("the guest answered by removing ~/control/shutdown; the node "
                                     "was re-created owned by the guest, as at domain creation")
        except XenSuspendError as exc:
            job.notes.append("could not re-create ~/control/shutdown for the guest (%s): its next "
                             "suspend may go unanswered" % exc)

    def acknowledged(self, jobs):
        """The guests of ``jobs`` answered: their answers are no longer watched for, and they
        are waited for to suspend."""
        engine = self.engine
        for job in jobs:
            if job.request is not Request.ANSWERED:
                job.mark_request(Request.ANSWERED)
            self.release(job)
        for job in jobs:
            if not job.done:
                engine.enter_quiesce(job, engine.clock())

    # -- the guest does not answer ---------------------------------------------------------

    def on_timeout(self, job, now):
        if job.stage is not Stage.ACKNOWLEDGE:
            ProtocolRequest.on_timeout(self, job, now)
            return
        if self.engine.clock() < job.deadline:
            return
        self._ack_timeout(job)

    def _ack_timeout(self, job):
        engine = self.engine
        # A guest that answers while we give up still counts as having answered.
        try:
            withdrawn = self.withdraw(job)
        except XenSuspendError as exc:
            raise DomainOperationError(
                "the guest did not acknowledge the suspend request within %g s, and the request "
                "could not be withdrawn (%s): the guest may still act on it later, so its ledger "
                "entry is kept" % (engine.ack_timeout, exc), kind="not_acknowledged")
        if not withdrawn:
            job.notes.append("acknowledged at the last moment")
            self.acknowledged([job])
            return
        info = self.xc.domain_info(job.record.domid)
        if info is not None and info.suspended and info.uuid == job.record.uuid:
            raise engine.foreign_suspend(job)
        raise DomainOperationError(
            "the guest did not acknowledge the suspend request within %g s; the request was "
            "withdrawn and the guest is left running (a guest that never answered is never "
            "resumed)" % engine.ack_timeout, kind="not_acknowledged")

    def withdraw(self, job):
        """Take the request back in a transaction; the job's Request follows what was found."""
        with counted(self.xs, job.record):
            withdrawn = withdraw_suspend_request(self.xs, job.record.domid)
        if withdrawn:
            job.mark_request(Request.WITHDRAWN)
        elif job.request is not Request.ANSWERED:
            job.mark_request(Request.ANSWERED)
        return withdrawn

    def release(self, job):
        """Nothing to send: the standing ANSWER_WATCH stays for the others."""
        if job.watching:
            job.watching = False
            if self.path_jobs.get(job.watch_path) is job:
                del self.path_jobs[job.watch_path]


MIN_POLL_GAP = 0.005  # a guest hammering its node or port costs us at most this rate


def earliest(last, now, gap=MIN_POLL_GAP):
    """The earliest moment for the next read or poll of something a guest can trigger."""
    return now if last is None else max(now, last + gap)


def protocol_requests(engine):
    """{method: request handler} for one engine run."""
    return dict((cls.method, cls(engine)) for cls in (EventChannelRequest, XenstoreRequest, DirectRequest))
