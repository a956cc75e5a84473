# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: one domain's suspend, as a state machine.

Two enums say where a job is, and only named transitions move them:

``Stage`` -- what the engine is waiting for::

    PENDING --lock--> LOCKED --request--> DRAIN (event channel: the bind's own event)
                                      \\-> ACKNOWLEDGE (xenstore: the guest's answer)
                                      \\-> QUIESCE (direct, or after the answer / notify)
    DRAIN --notify--> QUIESCE;  ACKNOWLEDGE --answer--> QUIESCE;  any --finish--> DONE

``Request`` -- what the guest may have received, which decides what happens to the ledger
entry when the job does not end suspended (see _ledger_transitions)::

    NOT_SENT --send--> SENT --answer--> ANSWERED
             --send_uncertain--> UNCERTAIN (a write that timed out or lost its connection)
    SENT --withdraw--> WITHDRAWN (taken back in a transaction before the guest read it)
"""

import enum

from ansible_collections.xen.suspend.plugins.module_utils._phases import PhaseTimer


class Stage(enum.Enum):
    PENDING = "pending"
    LOCKED = "locked"
    DRAIN = "drain"
    ACKNOWLEDGE = "acknowledge"
    QUIESCE = "quiesce"
    DONE = "done"


class Request(enum.Enum):
    NOT_SENT = "not_sent"
    UNCERTAIN = "uncertain"
    SENT = "sent"
    ANSWERED = "answered"
    WITHDRAWN = "withdrawn"

    @property
    def may_act(self):
        """Whether the guest may still suspend because of this request."""
        return self in (Request.UNCERTAIN, Request.SENT, Request.ANSWERED)


_STAGE_MOVES = {
    Stage.PENDING: (Stage.LOCKED,),
    Stage.LOCKED: (Stage.DRAIN, Stage.ACKNOWLEDGE, Stage.QUIESCE),
    Stage.DRAIN: (Stage.QUIESCE, Stage.ACKNOWLEDGE),  # ACKNOWLEDGE: fell back to xenstore
    Stage.ACKNOWLEDGE: (Stage.QUIESCE,),
    Stage.QUIESCE: (),
    Stage.DONE: (),
}

_REQUEST_MOVES = {
    Request.NOT_SENT: (Request.SENT, Request.UNCERTAIN),
    Request.UNCERTAIN: (Request.WITHDRAWN, Request.ANSWERED),
    Request.SENT: (Request.ANSWERED, Request.WITHDRAWN),
    Request.ANSWERED: (),
    Request.WITHDRAWN: (),
}


class IllegalTransition(AssertionError):
    """A bug: the engine tried a move its state machine does not have."""


class SuspendJob(object):
    """One domain's state machine and its result."""

    def __init__(self, record, clock):
        self.record = record
        self.phases = PhaseTimer(clock)
        self.stage = Stage.PENDING
        self.request = Request.NOT_SENT
        self.before = record.info.state
        self.after = None
        self.changed = False
        self.error = None
        self.notes = []
        # lookup's verdict
        self.actionable = False
        self.method = None
        self.method_reason = None
        self.resume_fast = True
        self.callback_irq = 0
        self.acpi_s_state = 0
        self.port = None
        self.port_reason = None
        # what the job holds (released by the engine's _release_resources)
        self.lock = None
        self.local_port = None
        self.subscribed = False
        self.watch_path = None
        self.watching = False  # its answer is awaited (events on watch_path are its own)
        self.monitor = None
        self.monitor_frozen = False
        # the ledger: set once this attempt's intent is durable
        self.intent_id = None
        self.verified = False
        # timing of the waits
        self.deadline = None
        self.next_poll = None
        self.last_poll = None
        self.poll_requested = False
        self.fresh_event = False
        self.quiesce_started = None  # when the guest answered or was notified (engine clock)
        self.stale_entry_state = None  # an entry lookup found for this running domain
        self.node_touched = False  # the guest wrote ~/control/shutdown since our request
        self.skip_events = 0
        self.last_read = None

    # -- transitions -----------------------------------------------------------------------

    def advance(self, stage):
        if stage not in _STAGE_MOVES[self.stage]:
            raise IllegalTransition("%s: stage %s -> %s" % (self.label, self.stage.value, stage.value))
        self.stage = stage

    def finish(self):
        self.stage = Stage.DONE

    def mark_request(self, request):
        if request not in _REQUEST_MOVES[self.request]:
            raise IllegalTransition("%s: request %s -> %s"
                                    % (self.label, self.request.value, request.value))
        self.request = request

    # -- views -----------------------------------------------------------------------------

    @property
    def done(self):
        return self.stage is Stage.DONE

    @property
    def waiting(self):
        """Waiting for the guest: the backstop poll applies."""
        return self.stage in (Stage.ACKNOWLEDGE, Stage.QUIESCE)

    @property
    def intent_written(self):
        return self.intent_id is not None

    @property
    def label(self):
        return self.record.label

    @property
    def display_name(self):
        return self.record.display_name

    def result(self):
        record = self.record
        return {
            "name": record.name,
            "domid": record.domid,
            "uuid": record.uuid,
            "before": self.before,
            "after": self.after if self.after is not None else self.before,
            "method": self.method,
            "changed": self.changed,
            "phases": self.phases.as_dict(),
            "error": self.error,
            "request": self.request.value,
            "xenstore_round_trips": record.xs_trips,
            "lifecycle_monitor": self.monitor,
            "notes": list(self.notes),
        }
