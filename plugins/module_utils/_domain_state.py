# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: Xen domain constants and flag decoding.

Values are those of the public Xen headers (domctl.h, sched.h, hvm/params.h), unchanged
from 4.14 to 4.22.
"""

import uuid as _uuid

DOMINF_DYING = 1 << 0
DOMINF_HVM_GUEST = 1 << 1
DOMINF_SHUTDOWN = 1 << 2
DOMINF_PAUSED = 1 << 3
DOMINF_BLOCKED = 1 << 4
DOMINF_RUNNING = 1 << 5
DOMINF_DEBUGGED = 1 << 6
DOMINF_XS_DOMAIN = 1 << 7
DOMINF_HAP = 1 << 8
DOMINF_SHUTDOWN_SHIFT = 16
DOMINF_SHUTDOWN_MASK = 0xFF

SHUTDOWN_POWEROFF = 0
SHUTDOWN_REBOOT = 1
SHUTDOWN_SUSPEND = 2
SHUTDOWN_CRASH = 3
SHUTDOWN_WATCHDOG = 4
SHUTDOWN_SOFT_RESET = 5

SHUTDOWN_REASON_NAMES = {
    SHUTDOWN_POWEROFF: "poweroff",
    SHUTDOWN_REBOOT: "reboot",
    SHUTDOWN_SUSPEND: "suspend",
    SHUTDOWN_CRASH: "crash",
    SHUTDOWN_WATCHDOG: "watchdog",
    SHUTDOWN_SOFT_RESET: "soft_reset",
}

HVM_PARAM_CALLBACK_IRQ = 0
HVM_PARAM_ACPI_S_STATE = 14

XENVER_VERSION = 0

DOMID_MAX_REAL = 0x7FEF  # DOMID_FIRST_RESERVED - 1

TYPE_PV = "pv"
TYPE_PVH = "pvh"
TYPE_HVM = "hvm"

STATE_RUNNING = "running"
STATE_BLOCKED = "blocked"
STATE_PAUSED = "paused"
STATE_SUSPENDED = "suspended"
STATE_DYING = "dying"
STATE_GONE = "absent"


def shutdown_reason(flags):
    """The shutdown code, or None when the shutdown has not finished.

    Xen can latch a code before the shutdown completes (and reports 255 when none is latched),
    so the reason only means something once XEN_DOMINF_shutdown is set.
    """
    if not flags & DOMINF_SHUTDOWN:
        return None
    return (flags >> DOMINF_SHUTDOWN_SHIFT) & DOMINF_SHUTDOWN_MASK


def is_suspended(flags):
    return shutdown_reason(flags) == SHUTDOWN_SUSPEND


def reason_name(reason):
    if reason is None:
        return None
    return SHUTDOWN_REASON_NAMES.get(reason, "code %d" % reason)


def state_name(flags):
    """One word for the domain state, as the modules report it."""
    if flags & DOMINF_DYING:
        return STATE_DYING
    reason = shutdown_reason(flags)
    if reason is not None:
        if reason == SHUTDOWN_SUSPEND:
            return STATE_SUSPENDED
        return "shutdown(%s)" % reason_name(reason)
    if flags & DOMINF_PAUSED:
        return STATE_PAUSED
    if flags & DOMINF_BLOCKED and not flags & DOMINF_RUNNING:
        return STATE_BLOCKED
    return STATE_RUNNING


def format_uuid(handle_bytes):
    """Canonical lower-case UUID text from the 16-byte domain handle."""
    return str(_uuid.UUID(bytes=bytes(handle_bytes)))


NIL_UUID = "00000000-0000-0000-0000-000000000000"


class DomainInfo(object):
    """The stable part of xen_domctl_getdomaininfo for one domain, as plain Python values."""

    __slots__ = ("domid", "flags", "uuid", "cpu_time", "tot_pages", "max_pages",
                 "online_vcpus", "cpupool")

    def __init__(self, domid, flags, uuid, cpu_time=0, tot_pages=0, max_pages=0,
                 online_vcpus=0, cpupool=0):
        self.domid = domid
        self.flags = flags
        self.uuid = uuid
        self.cpu_time = cpu_time
        self.tot_pages = tot_pages
        self.max_pages = max_pages
        self.online_vcpus = online_vcpus
        self.cpupool = cpupool

    def __repr__(self):
        return "DomainInfo(domid=%d, flags=%#x, state=%s)" % (self.domid, self.flags, self.state)

    @property
    def state(self):
        return state_name(self.flags)

    @property
    def dying(self):
        return bool(self.flags & DOMINF_DYING)

    @property
    def paused(self):
        return bool(self.flags & DOMINF_PAUSED)

    @property
    def hvm_guest(self):
        return bool(self.flags & DOMINF_HVM_GUEST)

    @property
    def xenstore_domain(self):
        return bool(self.flags & DOMINF_XS_DOMAIN)

    @property
    def shutdown_reason(self):
        return shutdown_reason(self.flags)

    @property
    def suspended(self):
        return is_suspended(self.flags)

    @property
    def shut_down(self):
        return bool(self.flags & DOMINF_SHUTDOWN)
