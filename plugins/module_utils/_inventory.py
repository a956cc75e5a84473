# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: what we know about each domain, gathered cheaply.

Domain info comes from the hypervisor (no xenstore). Names, types and advertised features
come from xenstore, one read each, only when needed: every read is a round trip and the
round trips per suspended domain are part of the collection's performance budget.
"""

from ansible_collections.xen.suspend.plugins.module_utils._domain_state import (
    HVM_PARAM_ACPI_S_STATE, HVM_PARAM_CALLBACK_IRQ, TYPE_PV)
from ansible_collections.xen.suspend.plugins.module_utils._errors import XenSuspendError
from ansible_collections.xen.suspend.plugins.module_utils._guest_values import (
    decode_name, decode_short, parse_event_channel, parse_libxl_type)
from ansible_collections.xen.suspend.plugins.module_utils._xenstore import domain_path


class DomainRecord(object):
    """One domain. ``xs_trips`` counts xenstore round trips spent on it so far."""

    def __init__(self, info, name=None):
        self.info = info
        self.domid = info.domid
        self.uuid = info.uuid
        self.name = name
        self.xs_trips = 0
        self.prefetched_event_channel = None
        self._type = None

    def __repr__(self):
        return "DomainRecord(%d, %r)" % (self.domid, self.name)

    @property
    def xenstore_domain(self):
        return self.info.xenstore_domain

    @property
    def label(self):
        if self.name:
            return "%s (domid %d)" % (self.name, self.domid)
        return "domid %d" % self.domid

    @property
    def display_name(self):
        return self.name if self.name else "domid %d" % self.domid


def counted_read(xenstore, record, path):
    """xenstore read attributed to ``record``'s round-trip count."""
    before = xenstore.round_trips
    try:
        return xenstore.read(path)
    finally:
        record.xs_trips += xenstore.round_trips - before


def read_names(xenstore, records):
    """Each record's name from ~/name, read in one pipelined batch."""
    outcomes = xenstore.read_many([domain_path(record.domid, "name") for record in records])
    for record, outcome in zip(records, outcomes):
        record.xs_trips += 1
        if outcome.error is not None:
            raise outcome.error
        record.name = decode_name(outcome.value)


def list_records(xenctrl, xenstore, names_for=None):
    """Every domain as a DomainRecord. Names are read for all domains (names_for=None) or
    for the domids in ``names_for`` only."""
    records = [DomainRecord(info) for info in xenctrl.list_domains()]
    read_names(xenstore, [record for record in records
                          if names_for is None or record.domid in names_for])
    return records


def domain_type(xenstore, record):
    """pv / pvh / hvm the way libxl tells them apart, reading /libxl/<domid>/type only for
    domains the hypervisor flags as HVM containers."""
    if record._type is None:
        if not record.info.hvm_guest:
            record._type = TYPE_PV
        else:
            value = counted_read(xenstore, record, ("/libxl/%d/type" % record.domid).encode("ascii"))
            record._type = parse_libxl_type(value)
    return record._type


def hvm_params(xenctrl, record):
    """(callback_irq, acpi_s_state); errors count as 0, as libxl ignores them too."""
    if not record.info.hvm_guest:
        return 0, 0
    values = []
    for param in (HVM_PARAM_CALLBACK_IRQ, HVM_PARAM_ACPI_S_STATE):
        try:
            values.append(xenctrl.hvm_param(record.domid, param))
        except XenSuspendError:
            values.append(0)
    return values[0], values[1]


def suspend_event_channel(xenstore, record):
    """(port or None, reason) from ~/device/suspend/event-channel, validated; the value
    prefetch_event_channels() read, when it read one for this record."""
    prefetched, record.prefetched_event_channel = record.prefetched_event_channel, None
    if prefetched is None:
        value = counted_read(xenstore, record, event_channel_path(record))
    elif prefetched.error is not None:
        raise prefetched.error
    else:
        value = prefetched.value
    return parse_event_channel(value)


def event_channel_path(record):
    return domain_path(record.domid, "device/suspend/event-channel")


def prefetch_event_channels(xenstore, records):
    """Read the suspend event channel of every record in one pipelined batch, for
    suspend_event_channel() to use."""
    outcomes = xenstore.read_many([event_channel_path(record) for record in records])
    for record, outcome in zip(records, outcomes):
        record.xs_trips += 1
        record.prefetched_event_channel = outcome


def read_control(xenstore, record, node):
    return decode_short(counted_read(xenstore, record, domain_path(record.domid, "control/" + node)))
