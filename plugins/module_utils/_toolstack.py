# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: is this dom0 run by a toolstack other than xl/libxl?

The collection works like ``xl``: libxl's suspend locks, libxl's xenstore nodes, xl's
monitor process. A host run by XAPI (XenServer, XCP-ng) keeps its own idea of every domain's
power state in its database, and libvirt's libxl driver keeps its own state of the domains it
created; suspending behind their back leaves them wrong about the guest (and XAPI may act on
it). So such hosts and domains are refused unless ``allow_other_toolstack`` is set.

Evidence, all from the dom0's file system (paths are module constants; tests point them
elsewhere):

* XAPI: ``/etc/xensource-inventory`` (written by every XenServer/XCP-ng install), or a
  running ``xapi`` process. The whole host is refused.
* libvirt's libxl driver: its state directory (``/run/libvirt/libxl``) holds
  ``<name>.xml`` for every domain it runs; those domains are refused. A running ``virtxend``
  (libvirt's modular Xen daemon) without a readable state directory means ownership cannot be
  told per domain: the host is refused.
"""

import os

from ansible_collections.xen.suspend.plugins.module_utils._errors import TargetError
from ansible_collections.xen.suspend.plugins.module_utils._phases import LOOKUP
from ansible_collections.xen.suspend.plugins.module_utils._service_domains import add_refusal

XAPI_INVENTORY = "/etc/xensource-inventory"
PROC_DIR = "/proc"
LIBVIRT_LIBXL_STATE_DIRS = ("/run/libvirt/libxl", "/var/run/libvirt/libxl")

XAPI_PROCESSES = frozenset(["xapi"])
LIBVIRT_PROCESSES = frozenset(["libvirtd", "virtxend"])

OVERRIDE_HINT = "set allow_other_toolstack: true to act anyway"


def running_processes(proc_dir=None):
    """Names (``/proc/<pid>/comm``) of the running processes we look for."""
    proc_dir = PROC_DIR if proc_dir is None else proc_dir
    wanted = XAPI_PROCESSES | LIBVIRT_PROCESSES
    found = set()
    try:
        entries = os.listdir(proc_dir)
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(os.path.join(proc_dir, entry, "comm")) as handle:
                name = handle.read(64).strip()
        except (IOError, OSError, UnicodeDecodeError):
            continue  # gone meanwhile, or not ours to read
        if name in wanted:
            found.add(name)
    return found


def _libvirt_state():
    """(directory, set of domain names) of libvirt's libxl driver, or (None, None)."""
    seen = set()
    for directory in LIBVIRT_LIBXL_STATE_DIRS:
        real = os.path.realpath(directory)
        if real in seen:
            continue
        seen.add(real)
        try:
            entries = os.listdir(directory)
        except OSError:
            continue
        return directory, set(entry[:-4] for entry in entries if entry.endswith(".xml") and len(entry) > 4)
    return None, None


class Toolstack(object):
    """What was found. ``others`` lists the other toolstacks with their evidence;
    ``host_refusal`` says why the whole host is refused (None: it is not); ``libvirt_domains``
    are the names libvirt's libxl driver runs (None: not known)."""

    def __init__(self, others, host_refusal, libvirt_dir, libvirt_domains):
        self.others = others
        self.host_refusal = host_refusal
        self.libvirt_dir = libvirt_dir
        self.libvirt_domains = libvirt_domains

    @property
    def name(self):
        return self.others[0]["toolstack"] if self.others else "xl"

    def as_dict(self):
        return {
            "toolstack": self.name,
            "others": [dict(item) for item in self.others],
            "host_refused": self.host_refusal,
            "libvirt_domains": sorted(self.libvirt_domains) if self.libvirt_domains else [],
        }


def detect():
    """Look at the dom0 (never raises: what cannot be read is not evidence)."""
    others = []
    host_refusal = None
    processes = running_processes()
    xapi = []
    if os.path.exists(XAPI_INVENTORY):
        xapi.append("%s exists" % XAPI_INVENTORY)
    if processes & XAPI_PROCESSES:
        xapi.append("the xapi process is running")
    if xapi:
        others.append({"toolstack": "xapi", "evidence": xapi})
        host_refusal = "the host is managed by XAPI (XenServer/XCP-ng: %s)" % ", ".join(xapi)
    libvirt_dir, libvirt_domains = _libvirt_state()
    daemons = sorted(processes & LIBVIRT_PROCESSES)
    libvirt = []
    if libvirt_domains:
        libvirt.append("%s lists %d domain%s" % (libvirt_dir, len(libvirt_domains),
                                                 "" if len(libvirt_domains) == 1 else "s"))
    if daemons and (libvirt_dir is not None or "virtxend" in daemons):
        libvirt.append("%s is running" % " and ".join(daemons))
    if libvirt:
        others.append({"toolstack": "libvirt", "evidence": libvirt})
        if libvirt_dir is None and host_refusal is None:
            host_refusal = ("libvirt's libxl driver runs (virtxend) but its state directory (%s) "
                            "cannot be read, so which domains it owns is not known"
                            % " or ".join(LIBVIRT_LIBXL_STATE_DIRS))
    return Toolstack(others, host_refusal, libvirt_dir, libvirt_domains)


def check_host(toolstack, allow):
    """Raise TargetError (nothing touched) when the host belongs to another toolstack."""
    if toolstack.host_refusal is None or allow:
        return
    raise TargetError("refusing to act on this dom0, nothing was touched: %s; xen.suspend works "
                      "with the xl/libxl toolstack only (%s)" % (toolstack.host_refusal, OVERRIDE_HINT),
                      phase=LOOKUP, kind="other_toolstack")


def mark_records(records, toolstack, allow):
    """Add a refusal (see _targets.refusal) to the domains libvirt's libxl driver runs."""
    if allow or not toolstack.libvirt_domains:
        return
    for record in records:
        if record.domid != 0 and record.name and record.name in toolstack.libvirt_domains:
            add_refusal(record, "it is managed by libvirt (%s/%s.xml); %s"
                        % (toolstack.libvirt_dir, record.name, OVERRIDE_HINT))


def warnings(toolstack, allow):
    """What to warn about when another toolstack was overridden or only partly owns the host."""
    messages = []
    if allow and toolstack.others:
        messages.append("acting although %s (allow_other_toolstack)" % "; ".join(
            "%s: %s" % (item["toolstack"], ", ".join(item["evidence"])) for item in toolstack.others))
    return messages
