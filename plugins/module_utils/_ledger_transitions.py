# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: the only ways a ledger entry may change.

An entry's life::

    (none) --RecordIntent--> intent --ConfirmSuspended--> suspended
                               |  \\--KeepPending (request may still act: settle_by moves)
                               |          intent, suspended --MarkResuming--> resuming
                               \\---------------+----------------+-----------> Settle(reason)

A guest saved to disk (domain_saved, domain_restored)::

    (none) --RecordSaving--> saving --MarkSaved--> saved --MarkRestoring--> restoring
                               |                    ^                          |
                               |                    \\------ReturnToSaved-------+
                               \\--Settle(save_abandoned)        Settle(restored) --/

``saving`` means the guest was never destroyed; ``saved`` means its image is complete and on
disk (only then is the guest destroyed); ``restored`` removes the entry once the restored guest
runs and its image is gone (deleted or archived).

``Settle`` removes an entry and needs one of SETTLE_REASONS: each is positive evidence that
the guest cannot (any more) suspend because of our request, or that it runs again. Nothing
else removes an entry. Every transition names the intent it belongs to (``intent_id``, unique
per suspend attempt) and does nothing when the entry now belongs to another attempt: a run
whose ledger write is late never undoes a newer run's record.
"""

import calendar
import time

from ansible_collections.xen.suspend.plugins.module_utils._ledger import (
    IMAGE_STATES, STATE_INTENT, STATE_RESTORING, STATE_RESUMING, STATE_SAVED, STATE_SAVING,
    STATE_SUSPENDED, utc_timestamp)

# Why an entry left the ledger (the evidence).
NEVER_SENT = "never_sent"            # our process knows no request reached the guest
WITHDRAWN = "withdrawn"              # "suspend" taken back from ~/control/shutdown in a transaction
GONE = "gone"                        # the domain no longer exists (destroyed, or another UUID)
OTHER_SHUTDOWN = "other_shutdown"    # shut down for another reason (reboot, poweroff, crash)
RESUMED = "resumed"                  # we resumed it and saw it run
FOUND_RUNNING = "found_running"      # recorded suspended, but runs again (resumed by someone else)
DID_NOT_SUSPEND = "did_not_suspend"  # still running after its settle_by time: the guest let the request go
NOT_OURS = "not_ours"                # suspended by someone else while our request stood unanswered
PRUNED = "pruned"                    # a vanished domain's entry removed on request (prune_vanished)
SAVE_ABANDONED = "save_abandoned"    # a save that did not complete: the guest runs, no image is kept
RESTORED = "restored"                # the restored guest runs, and its image is deleted or archived
SETTLE_REASONS = (NEVER_SENT, WITHDRAWN, GONE, OTHER_SHUTDOWN, RESUMED, FOUND_RUNNING,
                  DID_NOT_SUSPEND, NOT_OURS, PRUNED, SAVE_ABANDONED, RESTORED)


def parse_timestamp(stamp):
    """Seconds since the epoch (a float) of a ledger timestamp, with or without milliseconds
    (``...T10:00:00.250Z``, or ``...T10:00:00Z`` as older versions wrote), None when absent or
    malformed."""
    try:
        whole, dot, fraction = stamp.partition(".")
        if dot:
            if not (fraction.endswith("Z") and fraction[:-1].isdigit() and len(fraction) <= 10):
                return None
            whole += "Z"
            fraction = float("0." + fraction[:-1])
        else:
            fraction = 0.0
        return calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%SZ")) + fraction
    except (AttributeError, TypeError, ValueError):
        return None


def settle_deadline_passed(entry, now=None):
    """True once the time by which an answered request must have led to a suspend is over."""
    deadline = parse_timestamp(entry.get("settle_by"))
    if deadline is None:  # entries of older versions: libxl's 60 s + 60 s, with room
        intent = parse_timestamp(entry.get("intent_at"))
        deadline = None if intent is None else intent + 600
    return deadline is not None and (time.time() if now is None else now) >= deadline


def _belongs(entry, intent_id):
    """Entries written before intent ids existed have none, and a transition without one (an
    operator's explicit prune) applies to whatever entry the UUID has."""
    if entry is None:
        return False
    return intent_id is None or entry.get("intent_id", intent_id) == intent_id


class Transition(object):
    """One change to one entry; ``apply(entries, stamp)`` changes ``entries`` in place.

    ``durable``: the write carrying it must be on disk before the caller goes on (a request
    may follow). False only where losing the write in a crash leaves an entry that the next
    run settles on the evidence it finds anyway (see apply_transitions)."""

    uuid = None
    durable = True

    def apply(self, entries, stamp):
        raise NotImplementedError


class RecordIntent(Transition):
    """Before any request: the entry that lets a later run find and settle this domain. It
    replaces a stale entry of the same UUID (the caller holds the domain's lock and has just
    seen the domain running)."""

    def __init__(self, entry):
        self.entry = entry
        self.uuid = entry["uuid"]

    def apply(self, entries, stamp):
        if entries.get(self.uuid, {}).get("state") in IMAGE_STATES:
            # A guest saved to disk (or being saved): never overwritten by a suspend's intent
            # (the engine refuses such a domain under its lock before it gets here).
            return
        entries[self.uuid] = dict(self.entry)


class ConfirmSuspended(Transition):
    """The domain reached shutdown(suspend) because of our request. ``evidence`` identifies
    this very suspend: the domid and the domain's CPU time, which cannot change while the
    domain stays suspended and grows if anybody resumes it in between."""

    # Lost in a crash, the entry stays an intent of a suspended domain: domain_resumed resumes
    # it as ours (only without the evidence, which this write adds).
    durable = False

    def __init__(self, uuid, intent_id, evidence):
        self.uuid = uuid
        self.intent_id = intent_id
        self.evidence = evidence

    def apply(self, entries, stamp):
        entry = entries.get(self.uuid)
        if not _belongs(entry, self.intent_id) or entry["state"] != STATE_INTENT:
            return  # (a resume run may already be at it: never step back)
        entry["state"] = STATE_SUSPENDED
        entry["suspended_at"] = stamp
        entry["evidence"] = dict(self.evidence)
        entry.pop("settle_by", None)
        entry.pop("pending", None)


class ChangeMethod(Transition):
    """The event channel could not be bound and ``auto`` fell back to another protocol."""

    def __init__(self, uuid, intent_id, method, resume_fast, settle_by):
        self.uuid = uuid
        self.intent_id = intent_id
        self.method = method
        self.resume_fast = resume_fast
        self.settle_by = settle_by

    def apply(self, entries, stamp):
        entry = entries.get(self.uuid)
        if _belongs(entry, self.intent_id) and entry["state"] == STATE_INTENT:
            entry["method"] = self.method
            entry["resume_fast"] = bool(self.resume_fast)
            entry["settle_by"] = utc_timestamp(self.settle_by)


class KeepPending(Transition):
    """The request may still make the guest suspend (it answered, was notified, or our write's
    fate is unknown): the entry stays, and ``settle_by`` says until when a later run waits."""

    def __init__(self, uuid, intent_id, settle_by, why):
        self.uuid = uuid
        self.intent_id = intent_id
        self.settle_by = settle_by
        self.why = why

    def apply(self, entries, stamp):
        entry = entries.get(self.uuid)
        if _belongs(entry, self.intent_id) and entry["state"] == STATE_INTENT:
            entry["settle_by"] = utc_timestamp(self.settle_by)
            entry["pending"] = self.why


class MarkResuming(Transition):
    """Just before xc_domain_resume of a domain seen suspended under its lock: if the run dies
    after the hypercall, the next run finds "resuming" on a running domain and knows."""

    def __init__(self, uuid, intent_id):
        self.uuid = uuid
        self.intent_id = intent_id

    def apply(self, entries, stamp):
        entry = entries.get(self.uuid)
        if _belongs(entry, self.intent_id):
            entry["state"] = STATE_RESUMING
            entry["resuming_at"] = stamp


class Settle(Transition):
    """Remove the entry, for one of SETTLE_REASONS."""

    # Lost in a crash, the entry comes back, and the next run settles it again on evidence.
    durable = False

    def __init__(self, uuid, intent_id, reason):
        if reason not in SETTLE_REASONS:
            raise ValueError("not a reason to remove a ledger entry: %r" % (reason,))
        self.uuid = uuid
        self.intent_id = intent_id
        self.reason = reason

    def apply(self, entries, stamp):
        if _belongs(entries.get(self.uuid), self.intent_id):
            del entries[self.uuid]


class RecordSaving(Transition):
    """Before ``xl save`` runs (the caller holds the domain's claim and libxl's suspend lock,
    and has just seen the domain running with no entry of a suspend in memory)."""

    def __init__(self, entry):
        if entry.get("state") != STATE_SAVING:
            raise ValueError("RecordSaving needs a 'saving' entry")
        self.entry = entry
        self.uuid = entry["uuid"]

    def apply(self, entries, stamp):
        current = entries.get(self.uuid)
        if current is not None and current.get("state") not in (STATE_SAVING, STATE_SAVED):
            return  # a suspend in memory of this collection's: never overwritten
        entries[self.uuid] = dict(self.entry)


class MarkSaved(Transition):
    """The image is complete, checked, renamed into place and on disk: from now on the guest
    may be destroyed, and only an image restore brings it back."""

    def __init__(self, uuid, intent_id, image_size, image_sha256=None, image_xen=None):
        self.uuid = uuid
        self.intent_id = intent_id
        self.image_size = int(image_size)
        self.image_sha256 = image_sha256
        self.image_xen = image_xen

    def apply(self, entries, stamp):
        entry = entries.get(self.uuid)
        if not _belongs(entry, self.intent_id) or entry["state"] != STATE_SAVING:
            return
        entry["state"] = STATE_SAVED
        entry["saved_at"] = stamp
        entry["image_size"] = self.image_size
        entry.pop("image_part", None)
        if self.image_sha256:
            entry["image_sha256"] = self.image_sha256
        if self.image_xen:
            entry["image_xen"] = self.image_xen


class MarkRestoring(Transition):
    """Just before ``xl restore`` runs: a run killed while it runs leaves this, and the next
    run looks for the restored domain (or the xl still at work) before anything else."""

    def __init__(self, uuid, intent_id, archive_dir=None):
        self.uuid = uuid
        self.intent_id = intent_id
        self.archive_dir = archive_dir

    def apply(self, entries, stamp):
        entry = entries.get(self.uuid)
        if _belongs(entry, self.intent_id) and entry["state"] in (STATE_SAVED, STATE_RESTORING):
            entry["state"] = STATE_RESTORING
            if self.archive_dir:  # where a later run's recovery puts the image too
                entry["archive_dir"] = self.archive_dir
            else:
                entry.pop("archive_dir", None)
            entry["restore_started_at"] = stamp
            entry["restore_attempts"] = int(entry.get("restore_attempts") or 0) + 1


class ReturnToSaved(Transition):
    """A restore that created no domain that runs (xl failed, or its half-built domain was
    destroyed): the image is still the guest's, and a later restore may try again."""

    def __init__(self, uuid, intent_id, why):
        self.uuid = uuid
        self.intent_id = intent_id
        self.why = why

    def apply(self, entries, stamp):
        entry = entries.get(self.uuid)
        if _belongs(entry, self.intent_id) and entry["state"] == STATE_RESTORING:
            entry["state"] = STATE_SAVED
            entry["last_restore_error"] = str(self.why)[:500]


def apply_transitions(ledger, transitions):
    """All ``transitions`` in one atomic ledger write (none when nothing changes), durable
    when any of them has to be: an intent before its request, "resuming" before the resume,
    a later settle_by while the guest may still suspend. A write of only confirmations and
    removals is atomic but not waited for: a crash that loses it leaves entries (never fewer
    than before), which the next run settles on evidence."""
    if not transitions:
        return None
    stamp = utc_timestamp()

    def mutate(entries):
        for transition in transitions:
            transition.apply(entries, stamp)

    return ledger.update(mutate, durable=any(transition.durable for transition in transitions))
