# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: settling what a stopped save or restore run left.

Every module runs this at start for the ledger's image entries (states saving, saved,
restoring) whose guest no run of ours is working on (the per-UUID claim is free and no live
``xl`` works on the image). The rule is the collection's first one: the guest ends running, or
saved with a complete image and an entry; an image is removed only when its guest runs.

========== =================================== ===========================================
state      what is found                       what recovery does
========== =================================== ===========================================
saving     the domain, suspended (xl died      resume it (fast: a cancelled suspend),
           mid-save), paused (xl save -p       unpause it, remove the partial image,
           done) or running                    settle save_abandoned
saving     no domain                           keep entry and files: the guest vanished
                                               while being saved (someone destroyed it)
saved      no domain                           nothing: domain_restored restores it
saved      the same domain (domid), paused     the destroy never happened: unpause, remove
           or suspended                        the image, settle save_abandoned
saved      the same domain, running            someone unpaused it: the image is stale;
                                               set aside as ``.stale``, settle found_running
saved      another domain with the UUID runs   cold-booted meanwhile: the image is older
                                               than the guest; set aside, settle found_running
restoring  no domain                           the restore created nothing: back to saved
restoring  the domain, paused                  xl restore -p finished: unpause it, then as
                                               below
restoring  the domain, running                 remove (or archive) the image, settle restored
========== =================================== ===========================================
"""

import errno
import os
import time

from ansible_collections.xen.suspend.plugins.module_utils._errors import DomainBusy, DomainOperationError, XenSuspendError
from ansible_collections.xen.suspend.plugins.module_utils._ledger import (
    STATE_RESTORING, STATE_SAVED, STATE_SAVING)
from ansible_collections.xen.suspend.plugins.module_utils._save_dir import fsync_directory
from ansible_collections.xen.suspend.plugins.module_utils._xl_processes import xl_destroying, xl_working_on
from ansible_collections.xen.suspend.plugins.module_utils._ledger_transitions import (
    FOUND_RUNNING, OTHER_SHUTDOWN, RESTORED, SAVE_ABANDONED, AwaitLateSuspend, ReturnToSaved,
    Settle)
from ansible_collections.xen.suspend.plugins.module_utils._protocol_requests import (
    withdraw_suspend_request)

# xl unpause / destroy get this long.
XL_SHORT_TIMEOUT = 60.0

# Recovery report actions (the same vocabulary as _recovery's).
ACTION_SETTLED = "settled"
ACTION_WAIT = "left_for_restore"
ACTION_BUSY = "busy"
ACTION_RETURNED = "returned_to_saved"

# A running guest of a stopped save that may still suspend: left for domain_resumed (the
# in-memory suspend's vocabulary, see _recovery).
ACTION_WAIT_RESUME = "left_for_resume"
WAIT_MAY_STILL_SUSPEND = "may_still_suspend"
# How long after a failed or stopped save a guest that may have taken xl's request keeps a
# ledger entry (an in-memory intent) in case it suspends after all: libxl's own waits (60 s for
# the answer, 60 s for the suspend) again, and room.
LATE_SUSPEND_SETTLE = 150

# Why an image entry stays (the report's reason for ACTION_WAIT).
WAIT_SAVED = "saved"
WAIT_VANISHED_WHILE_SAVING = "vanished_while_saving"
WAIT_RESTORED_NOT_RUNNING = "restored_not_running"


class ImageStep(object):
    """What recovery decided for one image entry (pure, see ``image_verdict``)."""

    def __init__(self, action, why, reason=None, bring_back=False, unpause=False,
                 remove_image=False, set_aside=False, archive=False, return_to_saved=False,
                 late=False):
        self.action = action
        self.why = why
        self.reason = reason
        self.bring_back = bring_back          # resume a suspended domain (fast), then unpause
        self.unpause = unpause                # unpause a paused domain
        self.remove_image = remove_image      # the partial and the final image of a save
        self.set_aside = set_aside            # keep a stale image under another name
        self.archive = archive                # remove or archive the image of a restored guest
        self.return_to_saved = return_to_saved
        self.late = late                      # the guest may still act on xl's request


def image_verdict(entry, info):
    """What the evidence says about one image entry; ``info`` is the live domain with the
    entry's UUID (or None). Pure: no I/O."""
    state = entry.get("state")
    same_domain = info is not None and info.domid == entry.get("domid")
    if state == STATE_SAVING:
        if info is None:
            return ImageStep(ACTION_WAIT, "the guest vanished while it was being saved (destroyed "
                             "by someone else?); its entry and any image are kept for the operator",
                             WAIT_VANISHED_WHILE_SAVING)
        if info.dying or (info.shut_down and not info.suspended):
            return ImageStep(ACTION_SETTLED, "the guest is %s, not saved; the partial image is "
                             "removed" % info.state, OTHER_SHUTDOWN, remove_image=True)
        if not (info.suspended or info.paused):
            # Running: xl may have been killed after its request reached the guest, which may
            # still suspend on its own; unless the request is withdrawn, it is watched for.
            return ImageStep(ACTION_SETTLED, "a stopped save had not completed and the guest "
                             "runs; the partial image is removed", SAVE_ABANDONED,
                             remove_image=True, late=True)
        return ImageStep(ACTION_SETTLED, "a stopped save had not completed: the guest runs "
                         "again (it saw a cancelled suspend) and the partial image is removed",
                         SAVE_ABANDONED, bring_back=info.suspended, unpause=True, remove_image=True)
    if state == STATE_SAVED:
        if info is None:
            return ImageStep(ACTION_WAIT, "saved to disk: domain_restored restores it", WAIT_SAVED)
        if same_domain and (info.paused or info.suspended) and not info.dying:
            return ImageStep(ACTION_SETTLED, "saved, but a stopped save never destroyed the "
                             "guest: it runs again and the image is removed", SAVE_ABANDONED,
                             bring_back=info.suspended, unpause=True, remove_image=True)
        return ImageStep(ACTION_SETTLED, "saved, but a domain with its UUID runs (domid %d): the "
                         "image is older than that guest and is set aside, never restored"
                         % info.domid, FOUND_RUNNING, set_aside=True)
    if state == STATE_RESTORING:
        if info is None:
            return ImageStep(ACTION_RETURNED, "a stopped restore created no domain: the image "
                             "stays saved for the next restore", return_to_saved=True)
        if info.dying or info.shut_down:
            return ImageStep(ACTION_WAIT, "restored, but the domain is %s: the image is kept"
                             % info.state, WAIT_RESTORED_NOT_RUNNING)
        return ImageStep(ACTION_SETTLED, "a stopped restore had restored it: it runs, and its "
                         "image is removed", RESTORED, unpause=info.paused, archive=True)
    raise ValueError("not an image entry: %r" % (state,))


def recover_image_entry(backends, entry, info, report, transitions):
    """Apply ``image_verdict`` to one entry under its claim; adds to ``report`` (a
    _recovery.RecoveryReport) and ``transitions``."""
    try:
        claim = backends.claims.acquire(entry["uuid"])
    except DomainBusy:
        report.add(entry, ACTION_BUSY, "another run of this collection is saving or restoring it")
        return
    except XenSuspendError as exc:
        report.errors.append("recovery of %s: %s" % (entry.get("name"), exc))
        return
    try:
        xl = getattr(backends, "xl", None)
        busy = _xl_working_on(backends, entry)
        if busy:
            report.add(entry, ACTION_BUSY, "xl (pid %s) is still working on its image"
                       % ", ".join(str(pid) for pid in busy))
            return
        # What was listed before the claim and the look for a live xl may be old by now.
        info = _fresh_info(backends, entry, info)
        # why both: a save passes its claim to xl destroy (busy above), but an xl destroy of
        # the domain started without it (an older release, an operator) must stop us too
        destroying = _xl_destroying(backends, info)
        if destroying:
            report.add(entry, ACTION_BUSY, "xl destroy (pid %s) left by a stopped run is still "
                       "destroying domain %d" % (", ".join(str(pid) for pid in destroying), info.domid))
            return
        step = image_verdict(entry, info)
        try:
            if step.late:
                step = _late_step(backends, entry, info, step)
            _carry_out(backends, xl, entry, info, step)
        except (XenSuspendError, OSError) as exc:
            report.errors.append("recovery of %s (%s entry): %s" % (entry.get("name"), entry.get("state"), exc))
            return
        continued = _continue_monitor(backends, entry)
        if step.late:
            transitions.append(AwaitLateSuspend(entry["uuid"], entry.get("intent_id"),
                                                backends.wall_clock() + _late_window(entry),
                                                "xl_save_stopped"))
        elif step.reason in (SAVE_ABANDONED, OTHER_SHUTDOWN, FOUND_RUNNING, RESTORED):
            transitions.append(Settle(entry["uuid"], entry.get("intent_id"), step.reason))
        elif step.return_to_saved:
            transitions.append(ReturnToSaved(entry["uuid"], entry.get("intent_id"), step.why))
        report.add(entry, step.action, step.why + continued, step.reason)
    finally:
        claim.release()


def _fresh_info(backends, entry, listed):
    """The domain with the entry's UUID as it is now (None when there is none)."""
    try:
        for info in backends.xenctrl.list_domains():
            if info.uuid == entry["uuid"]:
                return info
        return None
    except XenSuspendError:
        return listed


def _late_step(backends, entry, info, step):
    """A running guest of a stopped save: a request xl left unanswered is withdrawn (then the
    save is simply abandoned); otherwise the guest may have taken it and the entry becomes an
    in-memory intent that every later run watches until its settle time."""
    try:
        withdrawn = withdraw_suspend_request(backends.xenstore, info.domid)
    except XenSuspendError:
        withdrawn = False
    if withdrawn:
        step.late = False
        step.why += "; xl's unanswered request was withdrawn"
        return step
    step.action = ACTION_WAIT_RESUME
    step.reason = WAIT_MAY_STILL_SUSPEND
    step.why += ("; it may still act on xl's request, so its entry stays (as a suspend's intent) "
                 "for %g s: domain_resumed resumes it if it suspends" % _late_window(entry))
    return step


def _late_window(entry):
    value = entry.get("late_suspend_timeout")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 86400:
        return float(value)
    return float(LATE_SUSPEND_SETTLE)


def _continue_monitor(backends, entry):
    """The save froze xl's monitor (up to Xen 4.19 it exits when it sees the suspend xl save
    makes); whatever became of the guest, no xl may wait for it: a guest running again needs
    its monitor, a destroyed guest's monitor exits once it sees the domain gone."""
    monitors = getattr(backends, "monitors", None)
    monitor = entry.get("lifecycle_monitor")
    if monitors is None or not monitor:
        return ""
    if monitors.state(monitor) == "frozen" and monitors.thaw(monitor):
        return "; xl's monitor (pid %s) continued" % monitor.get("pid")
    return ""


def _xl_working_on(backends, entry):
    finder = getattr(backends, "xl_working_on", None) or xl_working_on
    pids = []
    for path in (entry.get("image_part"), entry.get("image")):
        if path:
            pids.extend(finder(path))
    return sorted(set(pids))


def _xl_destroying(backends, info):
    if info is None:
        return []
    finder = getattr(backends, "xl_destroying", None) or xl_destroying
    return finder(info.domid)


def _carry_out(backends, xl, entry, info, step):
    if step.bring_back:
        backends.xenctrl.resume(info.domid, True)
        try:
            backends.xenstore.resume_domain(info.domid)
        except XenSuspendError:
            pass  # xenstored only needs it for a non-cancelled suspend (libxl ignores it too)
    if step.unpause and info is not None:
        unpause(backends, xl, info.domid)
    if (step.remove_image or step.archive) and step.unpause and info is not None:
        # Positive evidence before an image goes: the guest runs now. (A stopped run's xl
        # destroy - a save's, or a failed restore's undo - may have reached it after we
        # looked: then the image is all that is left of the guest, and the entry keeps it
        # for domain_restored.)
        now = _fresh_info(backends, entry, None)
        if now is None or now.domid != info.domid or now.dying or now.shut_down or now.paused:
            raise DomainOperationError(
                "it does not run after the unpause (%s): its image and entry are kept"
                % (now.state if now is not None else "gone"), kind="not_running")
    if step.remove_image:
        for path in (entry.get("image_part"), entry.get("image")):
            remove_file(path)
    if step.set_aside:
        set_aside(entry.get("image"))
    if step.archive:
        finish_image(entry.get("image"), entry.get("archive_dir"))


def unpause(backends, xl, domid):
    """``xl unpause`` where xl is there (it also continues an HVM guest's device model),
    libxenctrl's unpause otherwise."""
    if xl is not None:
        result = xl.unpause(domid, XL_SHORT_TIMEOUT)
        if result is not None and not result.ok:
            raise result.error("unpause")
    else:
        backends.xenctrl.unpause(domid)


def remove_file(path):
    """Remove ``path`` if it exists; the directory's entry removal is made durable."""
    if not path:
        return False
    try:
        os.unlink(path)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise
    fsync_directory(os.path.dirname(path))
    return True


def set_aside(path, now=None):
    """Keep a stale image as ``<path>.stale-<epoch seconds>``: never restored, never lost."""
    if not path or not os.path.exists(path):
        return None
    target = "%s.stale-%d" % (path, int(time.time() if now is None else now))
    os.rename(path, target)
    fsync_directory(os.path.dirname(path))
    return target


def finish_image(path, archive_dir=None):
    """After the restored guest runs: the image goes (into ``archive_dir`` when given)."""
    if not path or not os.path.exists(path):
        return None
    if archive_dir:
        target = os.path.join(archive_dir, os.path.basename(path))
        os.rename(path, target)
        fsync_directory(archive_dir)
        fsync_directory(os.path.dirname(path))
        return target
    remove_file(path)
    return None
