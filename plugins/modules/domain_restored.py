#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
module: domain_restored
short_description: Restore Xen guests that were saved to disk on the dom0
version_added: 0.1.0
description:
  - Restores the guests that M(xen.suspend.domain_saved) saved to disk, from their images, with
    C(xl restore). This works across a reboot of the dom0. It is the counterpart of
    M(xen.suspend.domain_saved).
  - By default it restores exactly the guests the O(ledger) records as saved.
  - For each guest, under a claim that keeps other runs of this collection away from it, the
    module checks before anything else that no domain with the guest's UUID or name exists. A
    guest that runs again, perhaps cold-booted from its disks meanwhile, must never be restored
    from an older image, which would diverge from those disks. It also walks the image to its
    end record, checks that it is this guest's, and compares its sha256 when the save recorded
    one.
  - It then records C(restoring) in the ledger and runs C(xl restore -p). Where systemd is
    the init system, C(xl) runs in a transient scope of its own, so that the per-domain monitor
    C(xl) leaves behind outlives the task. The module finds the new domain by UUID, unpauses it
    and checks that it runs. Only then is the image deleted (or moved to O(archive_dir)) and the
    ledger entry removed.
  - A restore that fails keeps the image and the entry (C(saved) again, with the error) and
    destroys any half-built domain that C(xl) left. The module says why, and the task fails.
  - Restores run one at a time by default. With C(autoballoon) on, C(xl) serialises domain
    creation on its global lock anyway.
  - At its start the module settles what stopped runs left (see RV(recovery)). For example, a
    restore killed after C(xl restore) finished is completed, and a save killed before it
    completed leaves its guest running again.
author:
  - xen.suspend maintainers (@xen-suspend)
options:
  domains:
    description:
      - The saved guests to restore, as names, UUIDs or shell patterns on names, matched against
        the ledger's entries (their domains no longer exist).
      - When omitted, every guest the ledger records as saved is restored.
      - A name or UUID that matches no saved guest but a running domain is reported unchanged
        (restored already). One that matches neither is an error, and nothing is touched.
    type: list
    elements: str
  exclude:
    description:
      - Saved guests to leave out, in the same forms as O(domains).
    type: list
    elements: str
    default: []
  order:
    description:
      - Name patterns of guests to restore first, in this order, for example infrastructure
        guests before the applications that need them (V([dns-*, db-*])).
      - The guests that match none of them come last, by name, numbers in names comparing as numbers (V(web-2) before V(web-10)).
    type: list
    elements: str
    default: []
  parallel:
    description:
      - How many restores may run at the same time. V(1) restores one guest after the other, in
        O(order).
    type: int
    default: 1
  timeout:
    description:
      - Seconds one C(xl restore) may take before it is killed (the guest's image is kept, and
        any half-built domain destroyed).
    type: float
    default: 600.0
  archive_dir:
    description:
      - A directory on the dom0 where images are moved once their guest runs again, instead of
        being deleted.
    type: path
  continue_on_error:
    description:
      - When V(true) (the default), every targeted guest is attempted, whatever happens to the
        others.
      - When V(false), the first failure stops the module from starting further restores. The
        guests not attempted are reported with error kind C(not_attempted).
      - Either way, a guest that could not be restored fails the task.
    type: bool
    default: true
extends_documentation_fragment:
  - xen.suspend.common
  - xen.suspend.common.actiongroup
  - xen.suspend.attributes
attributes:
  check_mode:
    support: full
    details:
      - Checks each guest (no domain with its UUID or name, a complete image of this guest)
        and reports what would be restored, without touching anything.
  diff_mode:
    support: full
    details:
      - Shows each guest's state before and after.
seealso:
  - module: xen.suspend.domain_saved
  - module: xen.suspend.domain_info
'''

EXAMPLES = r'''
- name: Restore every guest saved on this dom0, databases first
  xen.suspend.domain_restored:
    order: ["db-*"]

- name: Restore one guest and keep its image
  xen.suspend.domain_restored:
    domains: [web1]
    archive_dir: /var/lib/xen-suspend/archive
'''

RETURN = r'''
ledger:
  description: The ledger this run read and wrote.
  returned: always
  type: str
  sample: /var/lib/xen-suspend/ledger.json
domains:
  description: One entry per targeted guest, in restore order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Guest name.
      type: str
      sample: web1
    uuid:
      description: Guest UUID (kept across the save and the restore).
      type: str
    old_domid:
      description: The domain id the guest had when it was saved.
      type: int
    domid:
      description: The domain id of the restored guest, V(null) when it was not restored.
      type: int
    image:
      description: The image the guest was restored from.
      type: str
    image_size:
      description: The image's size in bytes.
      type: int
    before:
      description: V(saved).
      type: str
    after:
      description: V(running) once restored, V(saved) otherwise.
      type: str
    changed:
      description: Whether this guest was restored.
      type: bool
    seconds:
      description: Seconds this guest's restore took, checks included.
      type: float
    mib_per_s:
      description: The image's size over O(timeout)-bounded restore time, in MiB per second.
      type: float
    phases:
      description: Seconds spent in each phase (C(claim), C(lookup), C(restore), C(unpause), C(verify), C(finish)).
      type: dict
    error:
      description: V(null) on success. Otherwise the failure, with C(kind), C(phase) and C(message).
      type: dict
    notes:
      description: Remarks, for example where the image was archived.
      type: list
      elements: str
restored:
  description: Names of the guests restored (would be restored, in check mode).
  returned: always
  type: list
  elements: str
unchanged:
  description: Names of targeted guests that needed nothing.
  returned: always
  type: list
  elements: str
failed_domains:
  description: Names of the guests that could not be restored.
  returned: always
  type: list
  elements: str
skipped_domains:
  description: Saved guests left alone because they are protected.
  returned: always
  type: list
  elements: dict
recovery:
  description:
    - What the module settled, at its start, of what stopped runs left. C(actions) has one item
      per ledger entry looked at, with C(name), C(uuid), C(action), C(reason) and C(detail).
  returned: always
  type: dict
memory:
  description:
    - The memory the guests to restore need (C(needed_mib), as recorded when they were saved)
      and what the host has (C(free_mib), C(total_mib), from C(xl info); V(null) when C(xl)
      could not say). When short, the module warns and still tries; C(xl) balloons dom0 down
      when C(autoballoon) is on, and a restore that does not fit fails with the image kept.
  returned: always
  type: dict
  sample: {"needed_mib": 4096, "free_mib": 12010, "total_mib": 16383}
stats:
  description: Cost of the run (domains, wall_seconds, cpu_seconds).
  returned: always
  type: dict
'''

import os

from ansible_collections.xen.suspend.plugins.module_utils._errors import OptionError
from ansible_collections.xen.suspend.plugins.module_utils._host_memory import host_memory
from ansible_collections.xen.suspend.plugins.module_utils._module_base import XenSuspendModule
from ansible_collections.xen.suspend.plugins.module_utils._restore import RestoreEngine, plan_restore


def argument_spec():
    """The module's own options (the shared ones come from xen.suspend.common)."""
    return dict(
        domains=dict(type="list", elements="str"),
        exclude=dict(type="list", elements="str", default=[]),
        order=dict(type="list", elements="str", default=[]),
        parallel=dict(type="int", default=1),
        timeout=dict(type="float", default=600.0),
        archive_dir=dict(type="path"),
        continue_on_error=dict(type="bool", default=True),
    )


class DomainRestoredModule(XenSuspendModule):

    def __init__(self):
        super(DomainRestoredModule, self).__init__(argument_spec())

    def prepare(self):
        params = self.params
        if params["timeout"] is None or not params["timeout"] > 0:
            raise OptionError("invalid options, nothing was touched: timeout must be > 0, not %r"
                              % (params["timeout"],))
        if params["parallel"] < 1:
            raise OptionError("invalid options, nothing was touched: parallel must be >= 1, not %r"
                              % (params["parallel"],))
        archive_dir = params.get("archive_dir")
        if archive_dir and not (os.path.isabs(archive_dir) and os.path.isdir(archive_dir)):
            raise OptionError("invalid options, nothing was touched: archive_dir must be an "
                              "existing directory on the dom0, not %r" % (archive_dir,))
        self.targets = self.selectors("domains")
        self.exclude = self.selectors("exclude")
        self.protected = self.selectors("protected")
        self.order = self.selectors("order")

    def execute(self, backends):
        params = self.params
        entries = backends.ledger.check_usable(write=not self.check_mode)
        recovery = self.recover(backends, entries)
        if not self.check_mode and recovery.actions:
            entries = backends.ledger.read()  # what recovery settled or returned to "saved"
        records = self.inventory(backends, [self.targets]) if self.targets else None
        plan = plan_restore(entries, self.targets, self.exclude, self.protected, self.order,
                            clock=backends.clock, records=records)
        result_memory = self.check_memory(plan)
        engine = RestoreEngine(backends, timeout=params["timeout"], parallel=params["parallel"],
                               continue_on_error=params["continue_on_error"],
                               check_mode=self.check_mode, archive_dir=params.get("archive_dir"))
        report = engine.run(plan)
        result, failure = self.report(report, "restored", recovery, always_fail=True)
        result["memory"] = result_memory
        return result, failure

    def check_memory(self, plan):
        """What the restores need against what the host has free (a warning when short)."""
        needed_kib = sum(int(job.entry.get("memory_kib") or 0) for job in plan.jobs if not job.done)
        memory = host_memory()
        report = {"needed_mib": needed_kib // 1024,
                  "free_mib": memory[1] if memory else None,
                  "total_mib": memory[0] if memory else None}
        if memory and needed_kib // 1024 > memory[1]:
            self.warn("the guests to restore need %d MiB and the host has %d MiB free (xl info): "
                      "restores fail once it runs out, unless xl can balloon dom0 down "
                      "(autoballoon); the images are kept either way"
                      % (needed_kib // 1024, memory[1]))
        return report


def main():
    DomainRestoredModule().run()


if __name__ == "__main__":
    main()
