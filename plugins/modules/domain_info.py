#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
module: domain_info
short_description: Report Xen domains, their state and what they support for suspend
version_added: 0.1.0
description:
  - Lists the domains on the dom0 the task runs on, or those selected by O(domains). For each
    domain it reports the domid, name, UUID, type (C(pv), C(pvh) or C(hvm)) and state.
  - It also reports what the guest advertises. That is its suspend event channel (and whether the
    value is valid), C(control/feature-suspend), and for HVM guests whether PV drivers are present.
  - It shows which suspend method V(auto) would choose and the domain's ledger entry, if any.
  - Ledger entries whose domain no longer exists are listed in RV(vanished).
  - Nothing is changed.
author:
  - xen.suspend maintainers (@xen-suspend)
options:
  domains:
    description:
      - Domains to report, as names, domids, UUIDs or shell patterns on names. All when omitted.
      - Unlike the other modules, dom0 and O(protected) domains can be selected here. They are
        flagged with RV(domains[].protected).
    type: list
    elements: str
  exclude:
    description:
      - Domains to leave out, in the same forms as O(domains).
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - xen.suspend.common
  - xen.suspend.common.actiongroup
  - xen.suspend.attributes.info_module
seealso:
  - module: xen.suspend.domain_suspended
  - module: xen.suspend.domain_resumed
'''

EXAMPLES = r'''
- name: Get every domain on the dom0
  xen.suspend.domain_info:
  register: xen

- name: Guests that would need the direct method
  ansible.builtin.debug:
    msg: "{{ xen.domains | selectattr('suspend_method', 'equalto', 'direct') | map(attribute='name') }}"

- name: Check one guest's advertised event channel
  xen.suspend.domain_info:
    domains: [legacy-xenlinux]
  register: legacy
'''

RETURN = r'''
ledger:
  description: The ledger this run read (and wrote); the resume or recovery run must name the same one.
  returned: always
  type: str
  sample: /var/lib/xen-suspend/ledger.json
domains:
  description: One entry per domain, in domid order (or the order requested).
  returned: always
  type: list
  elements: dict
  contains:
    domid:
      description: Domain id.
      type: int
      sample: 5
    name:
      description: Domain name, V(null) when xenstore has none.
      type: str
      sample: web1
    uuid:
      description: Domain UUID.
      type: str
    type:
      description: V(pv), V(pvh) or V(hvm) (libxl's view, from the hvm flag and C(/libxl/<domid>/type)).
      type: str
      sample: pv
    state:
      description: One of V(running), V(blocked), V(paused), V(suspended), V(shutdown(<reason>\)), V(dying).
      type: str
      sample: blocked
    shutdown_reason:
      description: Shutdown reason once the shutdown finished (V(poweroff), V(reboot), V(suspend), V(crash), ...).
      type: str
    paused:
      description: Whether the domain is paused.
      type: bool
    dying:
      description: Whether the domain is being destroyed.
      type: bool
    online_vcpus:
      description: Number of online vCPUs.
      type: int
    memory_kib:
      description: Memory currently allocated to the domain, in KiB.
      type: int
    cpu_time_seconds:
      description: CPU time the domain has used.
      type: float
    suspend_event_channel:
      description:
        - What the guest wrote to C(device/suspend/event-channel), with C(port), C(valid) and C(status).
        - V(null) for dom0.
      type: dict
      sample: {"port": null, "valid": false, "status": "empty (not advertised)"}
    feature_suspend:
      description: Value of C(control/feature-suspend) (V(1) the guest will answer, V(0) it will not), V(null) when absent.
      type: str
    control_shutdown:
      description: Current value of C(control/shutdown). A non-empty value is a pending request.
      type: str
    pv_drivers:
      description: Whether the guest has PV drivers (always true for PV and PVH; for HVM, a callback IRQ is registered).
      type: bool
    hvm_callback_irq:
      description: HVM_PARAM_CALLBACK_IRQ for HVM and PVH guests, V(null) for PV guests.
      type: int
    acpi_s_state:
      description: HVM_PARAM_ACPI_S_STATE (the ACPI sleep state) for HVM and PVH guests, V(null) for PV guests.
      type: int
    suspend_method:
      description: The method M(xen.suspend.domain_suspended) would choose with O(xen.suspend.domain_suspended#module:method=auto).
      type: str
      sample: xenstore
    protected:
      description: Whether the suspend and resume modules refuse this domain.
      type: bool
    protected_reason:
      description: Why it is protected.
      type: str
    ledger:
      description: The domain's ledger entry, V(null) when there is none.
      type: dict
    lifecycle_monitor:
      description:
        - The C(xl create) process that applies this domain's C(on_poweroff), C(on_reboot) and
          C(on_crash) actions, V(null) when there is none (a host without C(xl), or C(xl create -e)).
        - C(state) is V(running), V(frozen) (stopped by this collection while the domain is
          suspended) or V(gone).
      type: dict
      sample: {"toolstack": "xl", "pid": 284, "start_time": 1234, "state": "frozen"}
    errors:
      description: Problems met while gathering this domain's data.
      type: list
      elements: str
vanished:
  description: Ledger entries whose domain no longer exists.
  returned: always
  type: list
  elements: dict
ledger_error:
  description:
    - Why the ledger could not be read (V(null) when it could). The domains are still listed, so
      the state of every guest can be seen before the ledger is repaired.
  returned: always
  type: str
recovery:
  description:
    - What the next M(xen.suspend.domain_suspended) or M(xen.suspend.domain_resumed) run would
      settle at its start, of what stopped runs left in the ledger (nothing is touched here).
    - C(actions) has one item per ledger entry, with C(name), C(uuid), C(action) (V(settled),
      V(withdrawn) or V(left_for_resume)), C(reason) (why the entry would leave the ledger) and
      C(detail).
  returned: always
  type: dict
xen_version:
  description: Version of the running hypervisor (major.minor).
  returned: always
  type: str
  sample: "4.17"
'''

from ansible_collections.xen.suspend.plugins.module_utils._domain_description import describe_domain
from ansible_collections.xen.suspend.plugins.module_utils._errors import LedgerError
from ansible_collections.xen.suspend.plugins.module_utils._module_base import XenSuspendModule
from ansible_collections.xen.suspend.plugins.module_utils._recovery import recover
from ansible_collections.xen.suspend.plugins.module_utils._targets import select_targets


def argument_spec():
    """The module's own options (the shared ones come from xen.suspend.common)."""
    return dict(
        domains=dict(type="list", elements="str"),
        exclude=dict(type="list", elements="str", default=[]),
    )


class DomainInfoModule(XenSuspendModule):

    def __init__(self):
        super(DomainInfoModule, self).__init__(argument_spec())

    def prepare(self):
        self.targets = self.selectors("domains")
        self.exclude = self.selectors("exclude")
        self.protected = self.selectors("protected")

    def execute(self, backends):
        ledger_error = None
        try:
            entries = backends.ledger.read()
        except LedgerError as exc:
            # A report is most needed exactly then: list the domains anyway.
            ledger_error = str(exc)
            self.warn(ledger_error)
            entries = {}
        records = self.inventory(backends, [], all_names=True)
        unknown = [record.label for record in records
                   if record.info.suspended and record.uuid not in entries]
        if unknown and ledger_error is None:
            self.warn("suspended but not recorded in the ledger (not resumed by default): %s"
                      % ", ".join(unknown))
        if self.targets:
            # Selection here may name dom0 or protected domains: it only reads.
            selection = select_targets(records, self.targets, self.exclude, read_only=True)
            chosen = selection.targets
        else:
            chosen = [record for record in records
                      if not any(rule.matches(record) for rule in self.exclude)]
        domains = [describe_domain(backends, record, entries.get(record.uuid), self.protected)
                   for record in chosen]
        live = set(record.uuid for record in records)
        vanished = [dict(entry) for uuid, entry in sorted(entries.items()) if uuid not in live]
        version = getattr(backends.xenctrl, "version", None)
        # read-only: what the next suspend or resume would settle at its start
        pending = recover(backends, entries, act=False)
        return dict(
            changed=False,
            domains=domains,
            vanished=vanished,
            recovery=pending.as_dict(),
            ledger_error=ledger_error,
            xen_version="%d.%d" % tuple(version) if version else None,
        ), None


def main():
    DomainInfoModule().run()


if __name__ == "__main__":
    main()
