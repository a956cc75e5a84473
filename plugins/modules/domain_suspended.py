#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
module: domain_suspended
short_description: Suspend Xen guests from the dom0, many at once
version_added: 0.1.0
description:
  - Suspends Xen domains on the dom0 the task runs on, leaving each one shut down with reason
    C(suspend) in the hypervisor, its memory in place, ready for M(xen.suspend.domain_resumed).
  - Uses the same protocols as libxl (C(xl save)) and chooses between them the same way with
    O(method=auto) - the suspend event channel when the guest advertises one, the PV control node
    C(~/control/shutdown) otherwise, and a direct hypervisor shutdown for HVM guests without PV drivers.
  - All targets are handled concurrently by one event loop, by default every one at once (see
    O(parallel)).
  - Every target is validated before any is touched. Dom0, the xenstore domain, O(protected)
    domains, service domains (device-model stub domains and driver domains, see
    O(allow_service_domains)) and the domains of another toolstack (see O(allow_other_toolstack))
    are refused.
  - Before a request is sent, an intent entry is written to the O(ledger); after the suspend is
    verified it is marked suspended, with the domain's CPU time as evidence of this very suspend.
    A guest is never suspended without a ledger entry.
  - An entry leaves the ledger only on evidence that the guest cannot suspend because of our
    request - the request was never sent, it was withdrawn in a xenstore transaction before the
    guest read it, the domain is gone or shut down for another reason, or it runs again after
    its C(settle_by) time. A guest that answered (or was notified on its event channel) but did
    not suspend within O(timeout) keeps its entry in state C(intent), so a late suspend is
    still recorded; M(xen.suspend.domain_resumed) waits for it and resumes it.
  - A guest that does not acknowledge the request in time gets the request withdrawn and is
    left running; a domain that fails is never resumed by this module.
  - Each domain is worked on under libxl's per-domain suspend lock (the one C(xl save) takes) and
    looked at again once the lock is held. A domain that someone else suspends while our request
    stands unanswered is not claimed (error kind C(suspended_by_other)), and our request is
    withdrawn so that the guest cannot act on it after that party resumes it.
  - At its start the module settles what stopped runs left in the ledger (see RV(recovery)).
  - SIGTERM, SIGHUP and SIGINT (an AWX cancel, a closed SSH session, Ctrl-C) end the run cleanly
    - no new requests, unanswered ones withdrawn, answered ones kept in the ledger, locks and
    channels given back - and fail the task naming the signal. A run killed outright (SIGKILL)
    leaves entries that the next run of any module of this collection settles.
  - The module is idempotent. A domain that is already suspended and recorded in the ledger is
    reported unchanged.
author:
  - xen.suspend maintainers (@xen-suspend)
options:
  domains:
    description:
      - The domains to suspend, as names, domids, UUIDs or shell patterns on names (V(*) is every
        guest). Prefix with V(name:), V(domid:) or V(uuid:) to force one reading.
      - An explicit name, domid or UUID must match exactly one domain.
      - A pattern may match nothing. It never selects dom0, the xenstore domain or O(protected)
        domains, and reports those under RV(skipped_domains).
      - Results are returned in this order. A pattern's matches come in domid order.
    type: list
    elements: str
    required: true
  exclude:
    description:
      - Domains to leave out of the selection, in the same forms as O(domains).
    type: list
    elements: str
    default: []
  method:
    description:
      - The suspend protocol.
      - V(auto) chooses like libxl. It uses V(event_channel) when the guest advertises a valid
        C(device/suspend/event-channel) and is not in an ACPI sleep state. It uses V(direct) for an
        HVM guest without PV drivers or in an ACPI sleep state, and V(xenstore) otherwise. If the
        advertised event channel cannot be bound, V(auto) falls back to V(xenstore) or V(direct).
      - V(event_channel) binds and signals the guest's suspend event channel.
      - V(xenstore) writes C(suspend) to C(~/control/shutdown) and waits for the guest's
        acknowledgement.
      - V(direct) makes the hypervisor suspend the domain (C(xc_domain_shutdown)). Only for HVM guests.
      - A forced method that cannot work for a domain is a lookup error for that domain.
    type: str
    choices: [auto, event_channel, xenstore, direct]
    default: auto
  ack_timeout:
    description:
      - Seconds the guest has to acknowledge a V(xenstore) request (libxl uses 60).
      - When it expires the request is withdrawn atomically, and the guest fails with
        C(not_acknowledged) and keeps running.
    type: float
    default: 60.0
  timeout:
    description:
      - Seconds to wait, after the acknowledgement or the event-channel notification or the
        direct shutdown, until the hypervisor reports the domain suspended (libxl uses 60).
    type: float
    default: 60.0
  parallel:
    description:
      - How many domains may be in the middle of a suspend at the same time; V(0) (the default)
        means no bound.
      - A suspend in place copies no guest memory, so it costs the dom0 little per guest. Without
        a bound the whole fleet is asked at once and the run takes about as long as its slowest
        guest (1000 simulated guests in well under a second in the benchmark of the collection's
        source repository).
      - A bound is how an operator limits how many guests are already on their way down when a
        failure stops the run (see O(continue_on_error)); for example V(1) suspends one guest
        after the other.
    type: int
    default: 0
  continue_on_error:
    description:
      - When V(false), the first failure stops the module from starting further suspends. Those
        already under way are finished (a request a guest may already act on is never taken
        back because another guest failed), and the task fails.
      - With the default O(parallel=0) every request goes out at once, so a guest that fails
        (does not answer, does not suspend in time) holds no other guest back; V(false) then
        stops the run only for what is found before any request is sent (a target whose lookup
        fails means that no guest is touched) and fails the task. This is deliberate. A
        maintenance run wants the fleet down in the time of its slowest guest, and stopping
        half-way would leave it half down just the same. To limit how many guests a failure
        can catch on their way down, bound O(parallel).
      - When V(true), every domain is attempted. Failures are reported in RV(failed_domains) and RV(domains),
        and the task does not fail.
      - Either way, a target refused by validation (unknown, dom0, protected; error kind
        C(invalid_target)) or a bad option value (error kind C(invalid_option)) fails the task before
        anything is touched.
    type: bool
    default: false
extends_documentation_fragment:
  - xen.suspend.common
  - xen.suspend.common.actiongroup
  - xen.suspend.common.service_domains
  - xen.suspend.common.toolstack
  - xen.suspend.attributes
attributes:
  check_mode:
    support: full
    details:
      - Reports which domains would be suspended, and with which method, without touching any.
  diff_mode:
    support: full
    details:
      - Shows each domain's state before and after.
notes:
  - An HVM guest's device model (QEMU) is not stopped. Suspending here is meant for maintenance
    with an in-place resume, not for saving the guest to disk.
  - Up to Xen 4.19 the per-domain monitor process of C(xl create) exits when it sees a suspend (as
    after C(xl save -c)), leaving the domain's C(on_poweroff), C(on_reboot) and C(on_crash) actions
    unhandled after the resume. On those versions this module stops that process (SIGSTOP) just
    before the request, once the ledger records it, and continues it at once if the domain does
    not suspend; M(xen.suspend.domain_resumed) continues it after the resume, so it never sees the
    suspend. Xen 4.20's xl keeps monitoring by itself and is left alone.
  - Device-model stub domains and driver domains are found in xenstore and refused; there is no
    need to list them in O(protected).
seealso:
  - module: xen.suspend.domain_resumed
  - module: xen.suspend.domain_info
'''

EXAMPLES = r'''
- name: Suspend every guest on the dom0 except the infrastructure ones
  xen.suspend.domain_suspended:
    domains: ['*']
    protected: [backup-*, dns1]
  register: suspended

- name: Suspend two guests, giving slow ones more time
  xen.suspend.domain_suspended:
    domains: [web1, db1]
    ack_timeout: 120
    timeout: 300

- name: Suspend what can be suspended and report the rest
  xen.suspend.domain_suspended:
    domains: ['web-*', 'worker-*']
    exclude: [worker-7]
    continue_on_error: true
  register: result

- name: Show what failed
  ansible.builtin.debug:
    var: result.failed_domains
'''

RETURN = r'''
ledger:
  description: The ledger this run read (and wrote); the resume or recovery run must name the same one.
  returned: always
  type: str
  sample: /var/lib/xen-suspend/ledger.json
recovery:
  description:
    - What the module settled at its start of what stopped runs left in the ledger. C(actions)
      has one item per ledger entry looked at, with C(name), C(uuid), C(action) (V(withdrawn),
      V(settled), V(left_for_resume) or V(busy)), C(reason) and C(detail).
  returned: always
  type: dict
interrupted:
  description: The signal (V(SIGTERM), V(SIGHUP) or V(SIGINT)) that stopped the run, when one did.
  returned: when interrupted
  type: str
domains:
  description: One entry per selected domain, in the order requested.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Domain name (V(null) if it has none in xenstore).
      type: str
      sample: web1
    domid:
      description: Domain id.
      type: int
      sample: 5
    uuid:
      description: Domain UUID.
      type: str
      sample: 5b3c9e2a-1f4d-4c21-9a77-0e8d2b1c6f10
    before:
      description:
        - State before the task.
        - One of V(running), V(blocked), V(paused), V(suspended), V(shutdown(<reason>\)), V(dying).
      type: str
      sample: blocked
    after:
      description: State at the end, as reported by the hypervisor (C(absent) if the domain is gone).
      type: str
      sample: suspended
    method:
      description: Protocol used (or that would be used), V(null) when none was chosen.
      type: str
      sample: xenstore
    changed:
      description: Whether this domain was suspended by this task.
      type: bool
    phases:
      description:
        - Seconds spent in each phase. The phases are C(lookup), C(lock), C(request),
          C(acknowledge), C(quiesce) and C(verify).
      type: dict
      sample: {"lookup": 0.0004, "lock": 0.0001, "request": 0.0009, "acknowledge": 0.031, "quiesce": 0.012, "verify": 0.0003}
    error:
      description:
        - V(null) on success. Otherwise the failure, with C(kind), C(phase) and C(message).
        - C(kind) is one of C(busy), C(not_acknowledged), C(timeout), C(unexpected_shutdown), C(vanished),
          C(paused), C(not_running), C(unrecorded_suspend), C(method_unavailable), C(call_failed),
          C(xenstore_error), C(xenstore_timeout), C(ledger_error), C(suspended_by_other),
          C(interrupted), C(not_attempted) and others.
      type: dict
      sample: {"kind": "not_acknowledged", "phase": "acknowledge", "message": "domain web1 (domid 5), phase acknowledge: ..."}
    request:
      description:
        - What the guest may have received - V(not_sent), V(sent), V(answered), V(withdrawn) or
          V(uncertain) (a write whose reply was lost). It decides what happens to the ledger
          entry of a domain that did not end suspended.
      type: str
      sample: answered
    xenstore_round_trips:
      description: Xenstore requests sent for this domain.
      type: int
      sample: 4
    lifecycle_monitor:
      description:
        - The C(xl create) process that applies this domain's C(on_poweroff), C(on_reboot) and
          C(on_crash) actions, V(null) when there is none (a host without C(xl), or C(xl create -e)).
        - C(state) is V(running), V(frozen) (stopped by this collection while the domain is
          suspended) or V(gone).
      type: dict
      sample: {"toolstack": "xl", "pid": 284, "start_time": 1234, "state": "frozen"}
    notes:
      description: Remarks, for example a fallback from the event channel to xenstore.
      type: list
      elements: str
suspended:
  description: Names of the domains this task suspended (would suspend, in check mode).
  returned: always
  type: list
  elements: str
  sample: [web1, db1]
unchanged:
  description: Names of the domains that were already suspended and recorded in the ledger.
  returned: always
  type: list
  elements: str
failed_domains:
  description:
    - Names of the domains that could not be suspended.
    - Not called C(failed), which Ansible reserves for the task's own status.
  returned: always
  type: list
  elements: str
skipped_domains:
  description: Domains a pattern matched but that were left alone, and why.
  returned: always
  type: list
  elements: dict
  sample:
    - name: Domain-0
      domid: 0
      uuid: 00000000-0000-0000-0000-000000000000
      reason: dom0 (the control domain) is never suspended or resumed
stats:
  description: Cost of the run.
  returned: always
  type: dict
  contains:
    domains:
      description: Number of selected domains.
      type: int
    attempted:
      description: Number of domains a suspend request was sent to.
      type: int
    wall_seconds:
      description: Elapsed time of the suspend run.
      type: float
    cpu_seconds:
      description: CPU time the module process used during the run.
      type: float
    xenstore_round_trips:
      description: Xenstore requests sent during the run.
      type: int
    xenctrl_calls:
      description: libxenctrl calls made during the run.
      type: int
    ledger_writes:
      description: Atomic ledger replacements made during the run.
      type: int
'''

from ansible_collections.xen.suspend.plugins.module_utils._argument_spec import (
    service_domains_argument_spec, toolstack_argument_spec)
from ansible_collections.xen.suspend.plugins.module_utils._module_base import XenSuspendModule
from ansible_collections.xen.suspend.plugins.module_utils._errors import TargetError
from ansible_collections.xen.suspend.plugins.module_utils._suspend_engine import (
    SuspendEngine, validate_options)
from ansible_collections.xen.suspend.plugins.module_utils._suspend_method import METHODS
from ansible_collections.xen.suspend.plugins.module_utils._targets import select_targets


def argument_spec():
    """The module's own options (the shared ones come from xen.suspend.common)."""
    spec = dict(
        domains=dict(type="list", elements="str", required=True),
        exclude=dict(type="list", elements="str", default=[]),
        method=dict(type="str", choices=list(METHODS), default="auto"),
        ack_timeout=dict(type="float", default=60.0),
        timeout=dict(type="float", default=60.0),
        parallel=dict(type="int", default=0),
        continue_on_error=dict(type="bool", default=False),
    )
    spec.update(service_domains_argument_spec())
    spec.update(toolstack_argument_spec())
    return spec


class DomainSuspendedModule(XenSuspendModule):

    def __init__(self):
        super(DomainSuspendedModule, self).__init__(argument_spec())

    def prepare(self):
        params = self.params
        validate_options(params["method"], params["ack_timeout"], params["timeout"], params["parallel"])
        self.targets = self.selectors("domains")
        self.exclude = self.selectors("exclude")
        self.protected = self.selectors("protected")
        self.selectors("allow_service_domains")  # a bad selector fails here, before anything is opened
        if not self.targets:
            raise TargetError("domains is empty: name the domains to suspend (use '*' for every guest)")
        self.check_toolstack()

    def execute(self, backends):
        params = self.params
        selectors, exclude, protected = self.targets, self.exclude, self.protected
        engine = SuspendEngine(
            backends, method=params["method"], ack_timeout=params["ack_timeout"],
            timeout=params["timeout"], parallel=params["parallel"],
            continue_on_error=params["continue_on_error"], check_mode=self.check_mode)
        records = self.inventory(backends, [selectors, exclude, protected, self.selectors("allow_service_domains")])
        self.mark_refusals(backends, records)
        selection = select_targets(records, selectors, exclude, protected)
        # Every check before anything is touched: targets above, then the ledger.
        entries = backends.ledger.check_usable(write=not self.check_mode)
        for message in selection.warnings:
            self.warn(message)
        recovery = self.recover(backends, entries)
        self.fill_names(backends, selection.targets)
        report = engine.run(selection.targets, selection.skipped)
        return self.report(report, "suspended", recovery)


def main():
    DomainSuspendedModule().run()


if __name__ == "__main__":
    main()
