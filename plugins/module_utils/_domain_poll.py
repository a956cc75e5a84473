# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: the backstop both engines wait with.

Watches, @releaseDomain and event-channel notifications are hints (oxenstored fires
spuriously, C xenstored latches per domain, none fires while a suspend event channel is
subscribed, a xenstored restart loses them); what counts is the hypervisor's domain info,
read for many domains in one getdomaininfolist scan.
"""

from ansible_collections.xen.suspend.plugins.module_utils._errors import XenSuspendError


def batch_domain_infos(xc, domids):
    """{domid: info or None} in one scan; None when the scan failed, so the caller asks per
    domain and an error names its domain. A single domain is always asked on its own."""
    if len(domids) <= 1:
        return None
    try:
        return xc.domain_infos(domids)
    except XenSuspendError:
        return None


def domain_infos(xc, domids):
    """{domid: info or None}, batched where possible; a per-domain error propagates."""
    infos = batch_domain_infos(xc, domids)
    if infos is None:
        infos = dict((domid, xc.domain_info(domid)) for domid in domids)
    return infos
