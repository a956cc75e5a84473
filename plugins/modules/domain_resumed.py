#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
module: domain_resumed
short_description: Resume Xen guests that were suspended on the dom0
version_added: 0.1.0
description:
  - Resumes suspended Xen domains on the dom0 the task runs on. This is the counterpart of
    M(xen.suspend.domain_suspended).
  - By default it resumes exactly the domains recorded in the O(ledger), matched by UUID, so a
    domain restored under a new domid is still found.
  - Only a domain that the hypervisor really holds shut down with reason C(suspend) is resumed. The
    module calls C(xc_domain_resume) (a cooperative "suspend cancelled" resume, as C(xl) does,
    except for guests suspended with the C(direct) method), then C(XS_RESUME) so that xenstored
    reports the domain's later shutdowns again. It then checks that the domain runs, and removes its
    ledger entry.
  - A suspended domain that the ledger does not know may be in the middle of C(xl save) or a live
    migration. Resuming it needs O(force_unrecorded=true).
  - Ledger entries whose domain no longer exists are reported in RV(vanished).
  - The module is idempotent. A recorded domain that is already running is reported unchanged,
    and its ledger entry is removed.
  - Many domains are resumed at once (see O(parallel)); XS_RESUME and the checks that they run
    again are batched. Every domain that could not be resumed is reported, and fails the task.
  - Every domain is handled under libxl's per-domain suspend lock, taken without waiting. A
    domain another run (or C(xl save)/C(xl migrate)) is working on is reported with error kind
    C(busy) and left alone.
  - An entry still in state C(intent) for a running domain means a suspend run stopped part-way
    (it was killed, interrupted, or its guest answered after the timeout). A request the guest
    has not answered is withdrawn atomically and reported in RV(withdrawn), not in RV(resumed), so
    the guest does not suspend later with no ledger entry. A guest that answered (or was notified
    on its event channel) may be on its way down. The module waits for it, up to
    O(settle_timeout), and resumes it once it has suspended. It never reports such a guest as
    running and done while it may still suspend; once the entry's C(settle_by) time has passed
    with the guest still running, the request is known to have been let go and the entry is
    removed.
  - A domain recorded as suspended is resumed only if it is still the suspend this collection
    made (its CPU time is the one recorded when the suspend was verified). A domain that was
    resumed and suspended again by someone else is refused with error kind C(identity_mismatch)
    unless O(force_unrecorded=true).
  - At its start the module also settles what stopped runs left for domains it does not target
    (see RV(recovery)). SIGTERM, SIGHUP and SIGINT stop it cleanly (no further resumes), and the
    task fails naming the signal.
author:
  - xen.suspend maintainers (@xen-suspend)
options:
  domains:
    description:
      - The domains to resume, as names, domids, UUIDs or shell patterns on names, like
        O(xen.suspend.domain_suspended#module:domains).
      - When omitted, every domain recorded in the ledger is resumed.
      - A name, domid or UUID that matches no domain but matches a ledger entry is reported in
        RV(vanished). One that matches neither is an error.
    type: list
    elements: str
  exclude:
    description:
      - Domains to leave out, in the same forms as O(domains).
    type: list
    elements: str
    default: []
  force_unrecorded:
    description:
      - Also resume selected domains that are suspended but not recorded in the ledger.
      - Without it, selecting such a domain is an error and nothing is touched.
    type: bool
    default: false
  timeout:
    description:
      - Seconds to wait for a resumed domain to be reported running.
    type: float
    default: 10.0
  settle_timeout:
    description:
      - Seconds to wait, in all, for guests that may still suspend because of a request of this
        collection (a guest that answered after a suspend run's timeout, or a killed run's). Each
        one is resumed as soon as it has suspended.
      - A guest still on its way down when this time is over fails with error kind
        C(still_suspending); its ledger entry stays for the next run.
      - The default covers a killed run at the default suspend options (its guests' entries are
        settled at most O(xen.suspend.domain_suspended#module:ack_timeout) +
        O(xen.suspend.domain_suspended#module:timeout) + a few seconds after the intent).
    type: float
    default: 150.0
  continue_on_error:
    description:
      - When V(true) (the default), every targeted domain is attempted, whatever happens to the
        others.
      - When V(false), the first failure stops the module from starting further resumes (those
        already under way are finished); the domains not attempted are reported with error
        kind C(not_attempted).
      - Either way, a domain that could not be resumed fails the task, with every failure in
        RV(failed_domains) and RV(domains). A guest left suspended is never a green run.
    type: bool
    default: true
  parallel:
    description:
      - How many C(xc_domain_resume) calls may be under way at the same time, each in a thread
        of its own with its own libxenctrl handle. XS_RESUME and the checks that the domains run
        are batched whatever this is.
      - A resume's cost is mostly its caller's wait (the hypervisor serialises only its own short
        part), so many at once take about as long as one. V(1) resumes one domain after the
        other.
    type: int
    default: 128
  prune_vanished:
    description:
      - Remove the ledger entries reported in RV(vanished).
    type: bool
    default: false
extends_documentation_fragment:
  - xen.suspend.common
  - xen.suspend.common.actiongroup
  - xen.suspend.attributes
attributes:
  check_mode:
    support: full
    details:
      - Reports which domains would be resumed without touching any domain or the ledger.
  diff_mode:
    support: full
    details:
      - Shows each domain's state before and after.
seealso:
  - module: xen.suspend.domain_suspended
  - module: xen.suspend.domain_info
'''

EXAMPLES = r'''
- name: Resume everything the maintenance run suspended on this dom0
  xen.suspend.domain_resumed:

- name: Resume two guests first
  xen.suspend.domain_resumed:
    domains: [db1, web1]

- name: Resume a guest that xl left suspended (no ledger entry)
  xen.suspend.domain_resumed:
    domains: [legacy-vm]
    force_unrecorded: true
'''

RETURN = r'''
ledger:
  description: The ledger this run read (and wrote); the resume or recovery run must name the same one.
  returned: always
  type: str
  sample: /var/lib/xen-suspend/ledger.json
domains:
  description: One entry per targeted domain, in ledger order (or the order requested).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Domain name.
      type: str
      sample: web1
    domid:
      description: Domain id.
      type: int
      sample: 5
    uuid:
      description: Domain UUID.
      type: str
    before:
      description: State before the task.
      type: str
      sample: suspended
    after:
      description: State at the end.
      type: str
      sample: running
    changed:
      description: Whether this domain was resumed.
      type: bool
    recorded:
      description: Whether the ledger had an entry for the domain.
      type: bool
    phases:
      description:
        - Seconds spent in each phase. The phases are C(lock), C(lookup), C(resume) (waiting for
          a free call slot included) and C(verify).
      type: dict
    downtime_seconds:
      description:
        - Seconds from the suspend's verification, as the ledger recorded it, to this resume's
          completion (the domain seen running again), to the millisecond.
        - The record is written once per batch of verified domains, a fraction of a second
          after the guests stopped, so this may understate the downtime by that much.
        - V(null) when unknown, for example for a domain the ledger does not know, one whose
          suspend was never verified, or one that was not resumed.
      type: float
      sample: 42.817
    error:
      description: V(null) on success. Otherwise the failure, with C(kind), C(phase) and C(message).
      type: dict
    lifecycle_monitor:
      description:
        - The C(xl create) process that applies this domain's C(on_poweroff), C(on_reboot) and
          C(on_crash) actions, V(null) when there is none (a host without C(xl), or C(xl create -e)).
        - C(state) is V(running), V(frozen) (stopped by this collection while the domain is
          suspended) or V(gone).
      type: dict
      sample: {"toolstack": "xl", "pid": 284, "start_time": 1234, "state": "frozen"}
    notes:
      description: Remarks, for example that XS_RESUME failed or a stale ledger entry was removed.
      type: list
      elements: str
resumed:
  description: Names of the domains resumed (would be resumed, in check mode).
  returned: always
  type: list
  elements: str
withdrawn:
  description:
    - Names of running domains whose still unanswered suspend request (left by a stopped run)
      was withdrawn. They were not resumed and are not listed in RV(resumed).
  returned: always
  type: list
  elements: str
recovery:
  description:
    - What the module settled, at its start, of what stopped runs left for domains it did not
      target. C(actions) has one item per ledger entry looked at, with C(name), C(uuid),
      C(action) (V(withdrawn), V(settled), V(left_for_resume) or V(busy)), C(reason) and C(detail).
  returned: always
  type: dict
interrupted:
  description: The signal (V(SIGTERM), V(SIGHUP) or V(SIGINT)) that stopped the run, when one did.
  returned: when interrupted
  type: str
unchanged:
  description: Names of targeted domains that were not suspended and needed nothing.
  returned: always
  type: list
  elements: str
failed_domains:
  description:
    - Names of the domains that could not be resumed.
    - Not called C(failed), which Ansible reserves for the task's own status.
  returned: always
  type: list
  elements: str
vanished:
  description: Ledger entries whose domain no longer exists.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "old-vm", "uuid": "1d0f...", "domid": 12, "state": "suspended", "intent_at": "2025-01-01T10:00:00Z"}]
skipped_domains:
  description: Recorded or matched domains that were left alone because they are protected.
  returned: always
  type: list
  elements: dict
stats:
  description: Cost of the run (domains, wall_seconds, cpu_seconds, xenstore_round_trips, xenctrl_calls, ledger_writes).
  returned: always
  type: dict
'''

from ansible_collections.xen.suspend.plugins.module_utils._errors import OptionError
from ansible_collections.xen.suspend.plugins.module_utils._module_base import XenSuspendModule
from ansible_collections.xen.suspend.plugins.module_utils._resume import (
    DEFAULT_PARALLEL, DEFAULT_SETTLE_TIMEOUT, ResumeEngine, plan_resume)


def argument_spec():
    """The module's own options (the shared ones come from xen.suspend.common)."""
    return dict(
        domains=dict(type="list", elements="str"),
        exclude=dict(type="list", elements="str", default=[]),
        force_unrecorded=dict(type="bool", default=False),
        timeout=dict(type="float", default=10.0),
        settle_timeout=dict(type="float", default=DEFAULT_SETTLE_TIMEOUT),
        continue_on_error=dict(type="bool", default=True),
        prune_vanished=dict(type="bool", default=False),
        parallel=dict(type="int", default=DEFAULT_PARALLEL),
    )


class DomainResumedModule(XenSuspendModule):

    def warn_unrecorded(self, records, entries, plan):
        """Suspended domains the ledger does not know are never resumed by default: say so, by
        name, so a missing or replaced ledger never looks like a green "0 resumed"."""
        targeted = set(job.uuid for job in plan.jobs)
        unknown = [record for record in records
                   if record.info.suspended and record.uuid not in entries and record.uuid not in targeted]
        if unknown:
            self.warn("%d suspended domain(s) are not recorded in the ledger %s and were left alone "
                      "(suspended by another tool, or the ledger was lost): %s; resume them by "
                      "name with force_unrecorded=true if they are yours"
                      % (len(unknown), self.params["ledger"],
                         ", ".join(record.label for record in unknown)))

    def __init__(self):
        super(DomainResumedModule, self).__init__(argument_spec())

    def prepare(self):
        timeout = self.params["timeout"]
        if timeout is None or not timeout > 0:
            raise OptionError("invalid options, nothing was touched: timeout must be > 0, not %r" % (timeout,))
        if self.params["parallel"] < 1:
            raise OptionError("invalid options, nothing was touched: parallel must be >= 1, not %r"
                              % (self.params["parallel"],))
        self.targets = self.selectors("domains")
        self.exclude = self.selectors("exclude")
        self.protected = self.selectors("protected")

    def execute(self, backends):
        params = self.params
        engine = ResumeEngine(backends, timeout=params["timeout"],
                              continue_on_error=params["continue_on_error"],
                              check_mode=self.check_mode, prune_vanished=params["prune_vanished"],
                              settle_timeout=params["settle_timeout"],
                              force_unrecorded=params["force_unrecorded"],
                              parallel=params["parallel"])
        entries = backends.ledger.check_usable(write=not self.check_mode)
        records = self.inventory(backends, [], all_names=True)
        plan = plan_resume(records, entries, self.targets, self.exclude, self.protected,
                           force_unrecorded=params["force_unrecorded"], clock=backends.clock)
        # What the plan does not resume is settled by recovery (a stopped run's leftovers).
        recovery = self.recover(backends, entries, skip=set(job.uuid for job in plan.jobs))
        self.warn_unrecorded(records, entries, plan)
        for item in plan.vanished:
            self.warn("%s (uuid %s) was recorded as suspended in the ledger but no longer exists: "
                      "it was destroyed while suspended (prune_vanished removes its entry)"
                      % (item.get("name"), item["uuid"]))
        report = engine.run(plan)
        report.recovery = recovery
        # A domain that could not be resumed always fails the task: continue_on_error only
        # decides whether the others are still attempted.
        return self.report(report, "resumed", recovery, always_fail=True)


def main():
    DomainResumedModule().run()


if __name__ == "__main__":
    main()
