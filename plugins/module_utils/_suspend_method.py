# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: which suspend protocol to use for a domain.

``auto`` reproduces libxl's domain_suspend_callback_common():

    if ACPI_S_STATE == 0 and an event channel is advertised  -> event channel (PV, PVH, HVM)
    elif HVM and (CALLBACK_IRQ == 0 or ACPI_S_STATE != 0)    -> direct xc_domain_shutdown
    else                                                     -> ~/control/shutdown = suspend

A forced method is refused when it cannot work or is unsafe for the domain.
"""

from ansible_collections.xen.suspend.plugins.module_utils._domain_state import (
    TYPE_HVM, TYPE_PV, TYPE_PVH)
from ansible_collections.xen.suspend.plugins.module_utils._errors import DomainOperationError

AUTO = "auto"
EVENT_CHANNEL = "event_channel"
XENSTORE = "xenstore"
DIRECT = "direct"
METHODS = (AUTO, EVENT_CHANNEL, XENSTORE, DIRECT)


class MethodChoice(object):
    """The protocol, and how a later resume must treat the guest.

    ``resume_fast``: the guest itself made the suspend hypercall, so xc_domain_resume(fast=1)
    may return "cancelled" to it. After the direct path the guest never made the call; fast
    resume would write EAX=1 into a vCPU of an HVM guest with PV drivers (Xen's S3 case), so
    those are resumed with fast=0, which for HVM is a plain resumedomain.
    """

    def __init__(self, method, reason):
        self.method = method
        self.reason = reason
        self.resume_fast = method != DIRECT

    def __repr__(self):
        return "MethodChoice(%s)" % self.method


def _unavailable(message):
    return DomainOperationError(message, kind="method_unavailable", phase="lookup")


def choose_method(requested, hvm_guest, get_type, port, port_reason, callback_irq, acpi_s_state):
    """Pick the protocol. ``get_type()`` is only called when pv/pvh/hvm matters (it may cost a
    xenstore read). ``port`` is a validated port or None."""
    if requested not in METHODS:
        raise _unavailable("unknown suspend method %r (choose one of %s)" % (requested, ", ".join(METHODS)))
    if not hvm_guest:
        callback_irq = acpi_s_state = 0

    if requested == AUTO:
        if acpi_s_state == 0 and port is not None:
            return MethodChoice(EVENT_CHANNEL, "the guest advertises suspend event channel %d" % port)
        if hvm_guest and (callback_irq == 0 or acpi_s_state != 0) and get_type() == TYPE_HVM:
            if acpi_s_state != 0:
                return MethodChoice(DIRECT, "HVM guest in ACPI S%d" % acpi_s_state)
            return MethodChoice(DIRECT, "HVM guest without PV drivers (no callback IRQ)")
        return MethodChoice(XENSTORE, "PV control node ~/control/shutdown")

    if requested == EVENT_CHANNEL:
        if port is None:
            raise _unavailable("method event_channel: the guest's suspend event channel is %s" % port_reason)
        if acpi_s_state != 0:
            raise _unavailable("method event_channel: the guest is in ACPI S%d" % acpi_s_state)
        return MethodChoice(EVENT_CHANNEL, "requested")

    if requested == XENSTORE:
        if hvm_guest:
            if acpi_s_state != 0:
                raise _unavailable("method xenstore: the guest is in ACPI S%d and cannot answer" % acpi_s_state)
            if callback_irq == 0 and get_type() == TYPE_HVM:
                raise _unavailable("method xenstore: HVM guest without PV drivers (no callback IRQ)")
        return MethodChoice(XENSTORE, "requested")

    # DIRECT
    if not hvm_guest:
        raise _unavailable("method direct is for HVM guests only; this is a %s guest" % TYPE_PV)
    if get_type() == TYPE_PVH:
        raise _unavailable("method direct is for HVM guests only; this is a %s guest" % TYPE_PVH)
    return MethodChoice(DIRECT, "requested")
