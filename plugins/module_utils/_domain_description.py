# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: the read-only picture domain_info reports per domain."""

from ansible_collections.xen.suspend.plugins.module_utils._domain_state import (
    TYPE_HVM, reason_name)
from ansible_collections.xen.suspend.plugins.module_utils._errors import XenSuspendError
from ansible_collections.xen.suspend.plugins.module_utils._inventory import (
    domain_type, hvm_params, read_control, suspend_event_channel)
from ansible_collections.xen.suspend.plugins.module_utils._suspend_method import AUTO, choose_method
from ansible_collections.xen.suspend.plugins.module_utils._targets import refusal
from ansible_collections.xen.suspend.plugins.module_utils._xenstore import domain_path, may_write


def control_shutdown_path(record):
    return domain_path(record.domid, "control/shutdown")


def prefetch_control_permissions(xenstore, records):
    """The permissions of every guest's ~/control/shutdown in one pipelined batch, kept on the
    records for describe_domain()."""
    guests = [record for record in records if record.domid != 0]
    outcomes = xenstore.get_perms_many([control_shutdown_path(record) for record in guests])
    for record, outcome in zip(guests, outcomes):
        record.xs_trips += 1
        record.control_shutdown_perms = outcome


def _control_permissions(description, record):
    """Fill in whether the guest may answer on ~/control/shutdown (see prefetch_control_permissions)."""
    outcome = getattr(record, "control_shutdown_perms", None)
    if outcome is None:
        return
    if outcome.error is not None:
        description["errors"].append("cannot read the permissions of ~/control/shutdown: %s" % outcome.error)
        return
    if outcome.value is None:  # no node: the modules create it owned by the guest
        return
    description["control_shutdown_permissions"] = ",".join("%s%d" % item for item in outcome.value)
    description["control_shutdown_guest_writable"] = may_write(outcome.value, record.domid)


def describe_domain(backends, record, ledger_entry, protected):
    """A JSON-ready dict; every xenstore value in it went through the hostile-value parsers."""
    xs = backends.xenstore
    info = record.info
    description = {
        "domid": record.domid,
        "name": record.name,
        "uuid": record.uuid,
        "type": None,
        "state": info.state,
        "shutdown_reason": reason_name(info.shutdown_reason),
        "paused": info.paused,
        "dying": info.dying,
        "online_vcpus": info.online_vcpus,
        "memory_kib": info.tot_pages * 4,
        "cpu_time_seconds": round(info.cpu_time / 1e9, 3),
        "suspend_event_channel": None,
        "feature_suspend": None,
        "control_shutdown": None,
        "control_shutdown_guest_writable": None,
        "control_shutdown_permissions": None,
        "service_domain": getattr(record, "service_domain", None),
        "pv_drivers": None,
        "hvm_callback_irq": None,
        "acpi_s_state": None,
        "suspend_method": None,
        "protected": False,
        "protected_reason": None,
        "ledger": dict(ledger_entry) if ledger_entry is not None else None,
        "lifecycle_monitor": None,
        "errors": [],
    }
    reason = refusal(record, protected)
    if reason is not None:
        description["protected"] = True
        description["protected_reason"] = reason
    try:
        description["type"] = domain_type(xs, record)
        callback_irq, s_state = hvm_params(backends.xenctrl, record)
        if info.hvm_guest:
            description["hvm_callback_irq"] = callback_irq
            description["acpi_s_state"] = s_state
        description["pv_drivers"] = callback_irq != 0 if description["type"] == TYPE_HVM else True
        if record.domid == 0:
            return description
        if backends.monitors is not None:
            description["lifecycle_monitor"] = backends.monitors.find(record.domid, record.name)
        port, port_reason = suspend_event_channel(xs, record)
        description["suspend_event_channel"] = {"port": port, "valid": port is not None,
                                                "status": port_reason}
        description["feature_suspend"] = read_control(xs, record, "feature-suspend")
        description["control_shutdown"] = read_control(xs, record, "shutdown")
        _control_permissions(description, record)
        try:
            choice = choose_method(AUTO, info.hvm_guest, lambda: description["type"], port,
                                   port_reason, callback_irq, s_state)
            description["suspend_method"] = choice.method
        except XenSuspendError as exc:
            description["errors"].append(str(exc))
    except XenSuspendError as exc:
        description["errors"].append(str(exc))
    return description
