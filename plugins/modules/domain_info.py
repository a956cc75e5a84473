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
  - It flags a guest whose C(~/control/shutdown) exists but is not writable by the guest (see
    RV(domains[].control_shutdown_guest_writable)). Such a guest cannot acknowledge a suspend request.
  - With O(gather) it also reports the service domains (RV(service_domains)) and checks what the
    modules need on the dom0 (RV(prerequisites)).
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
  gather:
    description:
      - What to report.
      - V(domains) fills RV(domains), RV(vanished) and RV(recovery).
      - V(service_domains) fills RV(service_domains). These are the stub domains and driver domains
        found in xenstore, which the suspend module refuses.
      - V(prerequisites) fills RV(prerequisites). It checks Python, cffi, pyxs, the Xen libraries of
        the running hypervisor, xenstored and the toolstack. Alone, it works without cffi and pyxs
        and without opening the Xen libraries, and reports what is missing.
    type: list
    elements: str
    choices: [domains, service_domains, prerequisites]
    default: [domains]
  sysfs_dir:
    description:
      - The Linux xen sysfs directory that describes the running hypervisor, read by
        O(gather=prerequisites).
    type: path
    default: /sys/hypervisor
extends_documentation_fragment:
  - xen.suspend.common
  - xen.suspend.common.actiongroup
  - xen.suspend.common.service_domains
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

- name: Check the dom0 and list its stub domains and driver domains
  xen.suspend.domain_info:
    gather: [prerequisites, service_domains]
  register: dom0

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
    control_shutdown_guest_writable:
      description:
        - Whether the guest may write its C(control/shutdown), as its xenstore permissions say.
        - V(false) means the guest cannot acknowledge a suspend request, and a warning names it.
          C(xl) or a script may have re-created the node as dom0's after an older Windows PV driver
          removed it. Give it back with C(xenstore-chmod ...control/shutdown n<domid>).
        - V(null) for dom0 and when the node does not exist.
      type: bool
    control_shutdown_permissions:
      description:
        - The xenstore permissions of C(control/shutdown) as C(xenstore-ls -p) shows them, owner
          first (V(n5) means domain 5 owns it). V(null) when the node does not exist.
      type: str
      sample: n5
    service_domain:
      description:
        - Why this domain is a service domain (a device-model stub domain or a driver domain), as
          found in xenstore. V(null) when it is not one.
      type: list
      elements: str
    protected:
      description:
        - Whether the suspend and resume modules refuse this domain. This covers dom0, the xenstore
          domain, O(protected), service domains not in O(allow_service_domains) and the domains
          another toolstack runs.
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
service_domains:
  description:
    - The device-model stub domains and driver domains, in domid order, each with C(domid),
      C(name) and C(reasons).
  returned: when O(gather) has V(service_domains)
  type: list
  elements: dict
  sample: [{"domid": 7, "name": "web1-dm", "reasons": ["device-model stub domain of domid 6 (xenstore ~/target)"]}]
prerequisites:
  description:
    - What the modules need on the dom0, checked the way they find it.
    - C(python) has C(executable), C(version) and C(ok). C(cffi) and C(pyxs) have C(ok),
      C(version), C(error) and C(install).
    - C(hypervisor) is read from O(sysfs_dir) and has C(ok), C(type), C(version), C(extra) and
      C(error). C(libraries) has C(version), C(version_source) (V(sysfs) or V(probe)) and
      C(checked), one item per soname with C(name), C(ok), C(error) and C(package).
    - C(xenstored) has C(ok), C(connection), C(domains) and C(error). C(toolstack) has
      C(toolstack), C(others), C(host_refused) and C(libvirt_domains).
    - C(save_restore) is what M(xen.suspend.domain_saved) and M(xen.suspend.domain_restored) run,
      C(xl) and C(systemd_run) (their paths, V(null) when not on PATH), with C(systemd_init), C(ok)
      (C(xl) is there) and C(notes). Suspend to memory needs neither, so a missing C(xl) is a note
      there, not one of the C(problems).
    - C(problems) lists what stops the modules, one sentence each, and C(ok) is true when it is
      empty.
  returned: when O(gather) has V(prerequisites)
  type: dict
vanished:
  description: Ledger entries of guests suspended in memory whose domain no longer exists.
  returned: always
  type: list
  elements: dict
saved:
  description:
    - The guests the ledger records as saved to disk (by M(xen.suspend.domain_saved)), or being
      saved or restored, with their images as they are on disk now.
    - Each item has C(name), C(uuid), C(state) (V(saving), V(saved) or V(restoring)),
      C(old_domid), C(image), C(image_size) (as saved), C(image_on_disk_bytes), C(image_present),
      C(image_xen) (the Xen version that wrote it), C(saved_at), C(running) (a domain with its
      UUID exists) and C(last_restore_error).
  returned: when O(gather) has V(domains)
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
    - V(null) when O(gather) lacks V(domains).
  returned: always
  type: dict
xen_version:
  description: Version of the running hypervisor (major.minor), V(null) when only O(gather=prerequisites) ran.
  returned: always
  type: str
  sample: "4.17"
'''

import os
import traceback

from ansible_collections.xen.suspend.plugins.module_utils import _prerequisites, _toolstack
from ansible_collections.xen.suspend.plugins.module_utils._argument_spec import service_domains_argument_spec
from ansible_collections.xen.suspend.plugins.module_utils._domain_description import (
    describe_domain, prefetch_control_permissions)
from ansible_collections.xen.suspend.plugins.module_utils._errors import LedgerError
from ansible_collections.xen.suspend.plugins.module_utils._ledger import STATE_SAVING, is_image_entry
from ansible_collections.xen.suspend.plugins.module_utils._module_base import XenSuspendModule
from ansible_collections.xen.suspend.plugins.module_utils._recovery import recover
from ansible_collections.xen.suspend.plugins.module_utils._targets import select_targets

GATHER = ("domains", "service_domains", "prerequisites")


def argument_spec():
    """The module's own options (the shared ones come from xen.suspend.common)."""
    spec = dict(
        domains=dict(type="list", elements="str"),
        exclude=dict(type="list", elements="str", default=[]),
        gather=dict(type="list", elements="str", choices=list(GATHER), default=["domains"]),
        sysfs_dir=dict(type="path", default=_prerequisites.DEFAULT_SYSFS_DIR),
    )
    spec.update(service_domains_argument_spec())
    return spec


class DomainInfoModule(XenSuspendModule):

    def __init__(self):
        super(DomainInfoModule, self).__init__(argument_spec())

    def gathers(self, what):
        return what in (self.params.get("gather") or [])

    def dependencies_required(self):
        # A prerequisite check alone reports missing cffi and pyxs instead of failing on them.
        return set(self.params.get("gather") or []) != set(["prerequisites"])

    def prepare(self):
        self.targets = self.selectors("domains")
        self.exclude = self.selectors("exclude")
        self.protected = self.selectors("protected")
        self.selectors("allow_service_domains")
        # Reported, never refused here: the report is what shows whose host or domain it is.
        self.toolstack = _toolstack.detect()

    def run(self):
        if self.dependencies_required():
            return super(DomainInfoModule, self).run()
        # gather: [prerequisites] only: no backends (they may be what is missing)
        try:
            prerequisites = _prerequisites.check(self.params["sysfs_dir"], self.params["xenstore_timeout"])
        except Exception as exc:  # a bug: still a task failure with the traceback
            self.module.fail_json(msg="unexpected error: %s" % exc, exception=traceback.format_exc())
        self.module.exit_json(changed=False, domains=[], vanished=[], recovery=None, ledger_error=None,
                              xen_version=None, prerequisites=prerequisites)

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
        found = self.mark_refusals(backends, records)
        result = dict(changed=False, domains=[], vanished=[], recovery=None, ledger_error=ledger_error)
        if self.gathers("service_domains"):
            result["service_domains"] = found.as_list(records)
        if self.gathers("domains"):
            self.report_domains(backends, records, entries, ledger_error, result)
        version = getattr(backends.xenctrl, "version", None)
        result["xen_version"] = "%d.%d" % tuple(version) if version else None
        if self.gathers("prerequisites"):
            result["prerequisites"] = _prerequisites.check(self.params["sysfs_dir"],
                                                           self.params["xenstore_timeout"])
        return result, None

    def report_domains(self, backends, records, entries, ledger_error, result):
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
        prefetch_control_permissions(backends.xenstore, chosen)
        domains = [describe_domain(backends, record, entries.get(record.uuid), self.protected)
                   for record in chosen]
        for description in domains:
            if description["control_shutdown_guest_writable"] is False:
                self.warn("%s cannot answer a suspend request: its ~/control/shutdown is not writable "
                          "by the guest (permissions %s); give it back with 'xenstore-chmod "
                          "/local/domain/%d/control/shutdown n%d'"
                          % (_label(description), description["control_shutdown_permissions"],
                             description["domid"], description["domid"]))
        live = set(record.uuid for record in records)
        result["domains"] = domains
        result["vanished"] = [dict(entry) for uuid, entry in sorted(entries.items())
                              if uuid not in live and not is_image_entry(entry)]
        result["saved"] = [describe_saved(entry, entry["uuid"] in live)
                           for _uuid, entry in sorted(entries.items()) if is_image_entry(entry)]
        # read-only: what the next suspend or resume would settle at its start
        result["recovery"] = recover(backends, entries, act=False).as_dict()


def describe_saved(entry, running):
    """A guest saved to disk, as the ledger records it, with what is on disk now."""
    image = entry.get("image_part") if entry.get("state") == STATE_SAVING else entry.get("image")
    try:
        on_disk = os.stat(image).st_size if image else None
    except OSError:
        on_disk = None
    return {
        "name": entry.get("name"), "uuid": entry["uuid"], "state": entry.get("state"),
        "old_domid": entry.get("domid"), "image": entry.get("image"),
        "image_size": entry.get("image_size"), "image_on_disk_bytes": on_disk,
        "image_present": on_disk is not None, "image_xen": entry.get("image_xen"),
        "saved_at": entry.get("saved_at"), "running": running,
        "last_restore_error": entry.get("last_restore_error"),
    }


def _label(description):
    if description["name"]:
        return "%s (domid %d)" % (description["name"], description["domid"])
    return "domid %d" % description["domid"]


def main():
    DomainInfoModule().run()


if __name__ == "__main__":
    main()
