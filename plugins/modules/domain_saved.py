#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
module: domain_saved
short_description: Save Xen guests to disk on the dom0, several at once, so that they survive a dom0 reboot
version_added: 0.1.0
description:
  - Saves Xen domains to image files on the dom0 the task runs on, with C(xl save), and destroys
    them once each image is complete and on disk. M(xen.suspend.domain_restored) brings them back,
    also after the dom0 rebooted.
  - Before any guest is touched, every target is checked. Guests that cannot be saved are
    refused with the reason. These are paused guests, guests with a virtual NUMA topology or PCI
    devices passed through, domains not created by C(xl)/libxl, guests whose own
    C(data/cant_suspend_reason) says they cannot be suspended now, and guests this collection
    holds suspended in memory. The O(save_dir) must be usable and have room for the memory of
    every selected guest plus O(space_margin_mb). Dom0, the xenstore domain, O(protected) domains,
    service domains and the domains of another toolstack are refused as by
    M(xen.suspend.domain_suspended).
  - Per guest, under a per-guest claim, the O(ledger) records the guest as C(saving) (on disk)
    before C(xl save -p) writes C(<uuid>.xlsave.part). The image is then flushed to disk and
    walked from start to end (xl header and configuration, libxl stream to its END record, the
    libxc stream inside it; with O(verify=sha256) also hashed in the same pass). It is renamed
    to C(<uuid>.xlsave), the directory is flushed, the ledger records C(saved) (on disk), and
    only then is the guest destroyed.
  - Any failure before the destroy gives the guest back. C(xl save -p) leaves the guest paused
    after a cancelled suspend, and C(xl unpause) lets it go on. A guest left suspended by an
    C(xl) that was killed (O(timeout)) or died is resumed the way
    M(xen.suspend.domain_resumed) resumes (a cancelled suspend). Only once the guest is seen
    running again are the partial image and the ledger entry removed.
  - When xendomains would also act on these guests, a warning says how. That is the case when
    its C(XENDOMAINS_SAVE) is this O(save_dir) with C(XENDOMAINS_RESTORE) on, or when a guest is
    started at boot from C(XENDOMAINS_AUTO).
  - At its start the module settles what stopped runs left in the ledger (see RV(recovery)).
  - The module is idempotent. A guest the ledger records as saved, whose domain is gone, is
    reported unchanged.
author:
  - xen.suspend maintainers (@xen-suspend)
options:
  domains:
    description:
      - The domains to save, as names, domids, UUIDs or shell patterns on names (V(*) is every
        guest). Prefix with V(name:), V(domid:) or V(uuid:) to force one reading.
      - An explicit name or UUID of a guest already saved (in the ledger, domain gone) is
        accepted and reported unchanged. Otherwise an explicit selector must match exactly one
        domain.
    type: list
    elements: str
    required: true
  exclude:
    description:
      - Domains to leave out of the selection, in the same forms as O(domains).
    type: list
    elements: str
    default: []
  parallel:
    description:
      - How many guests are saved at the same time, each by its own C(xl save) process; V(0)
        means no bound.
      - Saving copies each guest's whole memory to the disk, so the disk's bandwidth is shared.
        More guests at once than the storage can write in parallel only makes each slower.
    type: int
    default: 4
  timeout:
    description:
      - Seconds one guest's C(xl save) may take, including the guest's own suspend (C(xl) waits
        up to 60 s for that itself). The image is written at the disk's speed, so allow for the
        guest's memory size.
      - When it expires, C(xl) and its helper are killed (SIGKILL), and the guest is given back
        (resumed, unpaused) and keeps running.
    type: float
    default: 600.0
  verify:
    description:
      - V(structure) walks every record of the image, from the xl header to the libxl END
        record, before the guest is destroyed. A truncated or malformed image is refused.
      - V(sha256) also hashes the image in the same pass and records the digest in the ledger
        (RV(domains[].sha256)). The memory is read back from the page cache, which costs time.
    type: str
    choices: [structure, sha256]
    default: structure
  space_margin_mb:
    description:
      - Free space, in MiB, that must remain in O(save_dir) beyond the memory of all selected
        guests, checked before any guest is touched.
    type: int
    default: 256
  continue_on_error:
    description:
      - When V(false), a guest refused by the pre-flight checks means no guest is touched, and
        the first failed save stops the module from starting further saves (those under way
        finish); the task fails.
      - When V(true), every guest that passes the checks is saved. Failures are reported in
        RV(failed_domains) and RV(domains), and the task does not fail.
    type: bool
    default: false
  late_suspend_timeout:
    description:
      - Seconds a guest whose save failed keeps a ledger entry when it may still suspend on its
        own. That is a guest that took the suspend request of C(xl) (it answered, or was notified
        on its event channel) and had not suspended when C(xl) gave up or was stopped.
      - The entry is an in-memory suspend's C(intent). If the guest suspends within this time,
        M(xen.suspend.domain_resumed) (or any later run's recovery) resumes it; after this time,
        with the guest still running, the entry is removed.
    type: float
    default: 150.0
extends_documentation_fragment:
  - xen.suspend.common
  - xen.suspend.common.actiongroup
  - xen.suspend.common.save_dir
  - xen.suspend.common.service_domains
  - xen.suspend.common.toolstack
  - xen.suspend.attributes
attributes:
  check_mode:
    support: full
    details:
      - Runs the pre-flight checks (refusals, save directory, free space) and reports which guests
        would be saved, touching none.
  diff_mode:
    support: full
    details:
      - Shows each domain's state before and after.
notes:
  - C(xl) is found on E(PATH). Each guest is saved by C(xl save -p), which embeds the guest's
    configuration in the image, so C(xl restore) alone can also restore it.
  - C(xl save) of a guest that does not answer takes C(xl)'s own 60 s before it gives up. The
    guest is then given back.
  - An image is about the size of the guest's memory. Nothing in it is encrypted.
requirements:
  - the C(xl) command of the running Xen on E(PATH) (Debian package C(xen-utils-4.<minor>))
seealso:
  - module: xen.suspend.domain_suspended
  - module: xen.suspend.domain_info
'''

EXAMPLES = r'''
- name: Save every guest to disk before a dom0 reboot
  xen.suspend.domain_saved:
    domains: ['*']
    protected: [backup-*, dns1]
  register: saved

- name: Save two guests, hashing their images, at most one at a time
  xen.suspend.domain_saved:
    domains: [db1, web1]
    parallel: 1
    verify: sha256
    save_dir: /srv/xen-save

- name: Show where each image went and how fast it was written
  ansible.builtin.debug:
    msg: "{{ item.name }}: {{ item.image }} {{ item.image_size }} bytes at {{ item.mib_per_s }} MiB/s"
  loop: "{{ saved.domains }}"
'''

RETURN = r'''
ledger:
  description: The ledger this run read (and wrote); the restore or recovery run must name the same one.
  returned: always
  type: str
  sample: /var/lib/xen-suspend/ledger.json
save_dir:
  description: The directory that holds the images.
  returned: always
  type: str
  sample: /var/lib/xen-suspend/save
recovery:
  description:
    - What the module settled at its start of what stopped runs left in the ledger. C(actions)
      has one item per ledger entry looked at, with C(name), C(uuid), C(action), C(reason) and
      C(detail).
  returned: always
  type: dict
interrupted:
  description: The signal (V(SIGTERM), V(SIGHUP) or V(SIGINT)) that stopped the run, when one did.
  returned: when interrupted
  type: str
domains:
  description: One entry per selected domain.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Domain name.
      type: str
      sample: web1
    uuid:
      description: Domain UUID (the image is named after it).
      type: str
      sample: 5b3c9e2a-1f4d-4c21-9a77-0e8d2b1c6f10
    domid:
      description: Domain id before the save (V(null) for a guest that was already saved).
      type: int
      sample: 5
    before:
      description: State before the task (V(saved) for a guest that was already saved).
      type: str
      sample: blocked
    after:
      description:
        - State at the end. V(saved) when the guest is saved and its domain destroyed. Otherwise the
          state reported by the hypervisor (V(running) or V(blocked) for a guest given back).
      type: str
      sample: saved
    changed:
      description: Whether this task saved the domain.
      type: bool
    image:
      description: Path of the image (where it would be, in check mode).
      type: str
      sample: /var/lib/xen-suspend/save/5b3c9e2a-1f4d-4c21-9a77-0e8d2b1c6f10.xlsave
    image_size:
      description: Size of the image in bytes.
      type: int
      sample: 1075838976
    image_xen:
      description: The Xen version that saved the image, as recorded in the image.
      type: str
      sample: '4.17'
    sha256:
      description: SHA-256 of the image with O(verify=sha256), else V(null).
      type: str
    seconds:
      description: Seconds this guest's save took, from its ledger entry to its destroy.
      type: float
      sample: 11.2
    xl_seconds:
      description: Seconds C(xl save) ran (the guest's suspend and the memory copy).
      type: float
      sample: 9.8
    mib_per_s:
      description: Image size over the time of C(xl save) and the flush to disk, in MiB/s.
      type: float
      sample: 104.6
    phases:
      description:
        - Seconds spent in each phase. The phases are C(preflight), C(lock), C(record), C(save),
          C(sync), C(check), C(commit), C(destroy) and C(give_back).
      type: dict
    lifecycle_monitor:
      description:
        - The C(xl create) process that applies the domain's C(on_poweroff), C(on_reboot) and
          C(on_crash) actions, V(null) when there is none. It is stopped during the save (up to
          Xen 4.19) so that it does not exit on the suspend if the guest is given back.
      type: dict
    error:
      description:
        - V(null) on success. Otherwise the failure, with C(kind), C(phase) and C(message).
        - C(kind) is one of C(cannot_save), C(busy), C(vanished), C(not_running), C(xl_failed),
          C(xl_timeout), C(bad_image), C(io_error), C(destroy_failed), C(ledger_error),
          C(save_dir), C(not_attempted) and others.
      type: dict
      sample: {"kind": "xl_failed", "phase": "save", "message": "domain web1 (domid 5), phase save: ..."}
    notes:
      description: Remarks, for example how a guest was given back after a failed save.
      type: list
      elements: str
saved:
  description: Names of the domains this task saved (would save, in check mode).
  returned: always
  type: list
  elements: str
  sample: [web1, db1]
unchanged:
  description: Names of the domains that were already saved.
  returned: always
  type: list
  elements: str
failed_domains:
  description: Names of the domains that could not be saved (or were not attempted).
  returned: always
  type: list
  elements: str
skipped_domains:
  description: Domains a pattern matched but that were left alone, and why.
  returned: always
  type: list
  elements: dict
stats:
  description: Cost of the run.
  returned: always
  type: dict
  contains:
    domains:
      description: Number of selected domains.
      type: int
    attempted:
      description: Number of domains whose save was started (ledger entry written).
      type: int
    wall_seconds:
      description: Elapsed time of the save run.
      type: float
    bytes_saved:
      description: Total size of the images written by this run.
      type: int
    ledger_writes:
      description: Atomic ledger replacements made during the run.
      type: int
'''

from ansible_collections.xen.suspend.plugins.module_utils._argument_spec import (
    save_dir_argument_spec, service_domains_argument_spec, toolstack_argument_spec)
from ansible_collections.xen.suspend.plugins.module_utils._errors import TargetError
from ansible_collections.xen.suspend.plugins.module_utils._image_recovery import LATE_SUSPEND_SETTLE
from ansible_collections.xen.suspend.plugins.module_utils._module_base import XenSuspendModule
from ansible_collections.xen.suspend.plugins.module_utils._save import (
    DEFAULT_MARGIN_MB, DEFAULT_PARALLEL, DEFAULT_TIMEOUT, VERIFY_CHOICES, VERIFY_STRUCTURE,
    SaveEngine, SaveJob, ledger_records, saved_jobs, unmatched_problems, validate_options)
from ansible_collections.xen.suspend.plugins.module_utils._save_preflight import xendomains_warnings
from ansible_collections.xen.suspend.plugins.module_utils._targets import check_safety_options, select_targets
from ansible_collections.xen.suspend.plugins.module_utils._xl_commands import XlCommands


def argument_spec():
    """The module's own options (the shared ones come from xen.suspend.common)."""
    spec = dict(
        domains=dict(type="list", elements="str", required=True),
        exclude=dict(type="list", elements="str", default=[]),
        parallel=dict(type="int", default=DEFAULT_PARALLEL),
        timeout=dict(type="float", default=DEFAULT_TIMEOUT),
        verify=dict(type="str", choices=list(VERIFY_CHOICES), default=VERIFY_STRUCTURE),
        space_margin_mb=dict(type="int", default=DEFAULT_MARGIN_MB),
        continue_on_error=dict(type="bool", default=False),
        late_suspend_timeout=dict(type="float", default=float(LATE_SUSPEND_SETTLE)),
    )
    spec.update(save_dir_argument_spec())
    spec.update(service_domains_argument_spec())
    spec.update(toolstack_argument_spec())
    return spec


class DomainSavedModule(XenSuspendModule):

    def __init__(self):
        super(DomainSavedModule, self).__init__(argument_spec())

    def prepare(self):
        params = self.params
        validate_options(params["parallel"], params["timeout"], params["verify"],
                         params["space_margin_mb"], params["save_dir"])
        self.targets = self.selectors("domains")
        self.exclude = self.selectors("exclude")
        self.protected = self.selectors("protected")
        self.selectors("allow_service_domains")  # a bad selector fails here, before anything is opened
        if not self.targets:
            raise TargetError("domains is empty: name the domains to save (use '*' for every guest)")
        self.check_toolstack()

    def execute(self, backends):
        params = self.params
        xl = XlCommands()
        backends.xl = xl  # recovery gives back guests of a stopped save with it
        engine = SaveEngine(
            backends, xl, params["save_dir"], parallel=params["parallel"],
            timeout=params["timeout"], verify=params["verify"],
            space_margin_mb=params["space_margin_mb"],
            continue_on_error=params["continue_on_error"], check_mode=self.check_mode,
            late_suspend_timeout=params["late_suspend_timeout"])
        records = self.inventory(backends, [], all_names=True)
        self.mark_refusals(backends, records)
        selection = select_targets(records, self.targets, self.exclude, self.protected,
                                   allow_unmatched=True)
        # Every check before anything is touched: targets above, then the ledger.
        entries = backends.ledger.check_usable(write=not self.check_mode)
        done = saved_jobs(entries, set(record.uuid for record in records), self.targets,
                          self.exclude, backends.clock)
        problems = unmatched_problems(selection.unmatched, done)
        # A protected or excluded name that matches nothing is a typo that would let the guest
        # it means be saved, as in domain_suspended; a guest only in the ledger counts.
        warnings = check_safety_options(list(records) + ledger_records(entries), self.exclude,
                                        self.protected, problems)
        if problems:
            raise TargetError("invalid targets, nothing was touched: " + "; ".join(problems))
        for message in selection.warnings + warnings:
            self.warn(message)
        recovery = self.recover(backends, entries)
        for message in xendomains_warnings([record.name for record in selection.targets if record.name],
                                           params["save_dir"]):
            self.warn(message)
        jobs = [SaveJob(record, backends.clock) for record in selection.targets]
        report = engine.run(jobs, selection.skipped, done)
        return self.report(report, "saved", recovery)


def main():
    DomainSavedModule().run()


if __name__ == "__main__":
    main()
