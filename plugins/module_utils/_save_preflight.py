# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: which guests may be saved to disk, asked before any
is touched (reference xen-save-restore.md, 1.5).

A guest is refused, with the reason, when:

* it is paused: it cannot answer the suspend request, xl waits its 60 s and gives up, and the
  request it left may make the guest suspend itself later, once unpaused, with nobody to
  resume it;
* it is not running (shut down, dying);
* this toolstack did not create it: no ``/libxl/<domid>`` in xenstore (libxl writes it for
  every domain it builds; only dom0 can write there);
* it has PCI devices passed through (a PCI backend in xenstore, or ``pcidevs`` in libxl's
  configuration): Xen does not support saving those;
* it has a virtual NUMA topology (``vnuma_nodes`` in libxl's configuration): libxl refuses to
  save it;
* the guest itself says it cannot be suspended now: ``data/cant_suspend_reason`` in its own
  xenstore area (what XAPI honours). The guest writes that node, so its value is only shown
  bounded and printable;
* this collection's ledger already holds the guest: suspended in memory (resume it first), or
  in the middle of a save or restore.

xendomains has its own save and restore at dom0 shutdown and boot (``XENDOMAINS_SAVE``,
``XENDOMAINS_RESTORE`` in /etc/default/xendomains or /etc/sysconfig/xendomains) and starts the
guests of ``XENDOMAINS_AUTO`` at boot: when those would act on the guests saved here, a warning
says how (a guest cold-booted from /etc/xen/auto while its image waits would diverge from it).
"""

import json
import os
import re

from ansible_collections.xen.suspend.plugins.module_utils._guest_values import decode_short
from ansible_collections.xen.suspend.plugins.module_utils._ledger import (
    STATE_INTENT, STATE_RESUMING, STATE_SUSPENDED)
from ansible_collections.xen.suspend.plugins.module_utils._xenstore import domain_path

# Where libxl keeps each domain's configuration (libxl__userdata_path: XEN_LIB_DIR).
LIBXL_USERDATA_DIR = "/var/lib/xen"
XENDOMAINS_CONFIGS = ("/etc/default/xendomains", "/etc/sysconfig/xendomains")
XENDOMAINS_AUTO_DEFAULT = "/etc/xen/auto"
# A libxl configuration is a few tens of KiB; a larger file is not read.
MAX_USERDATA_BYTES = 4 * 1024 * 1024
MAX_SETTINGS_BYTES = 256 * 1024
MAX_AUTO_FILES = 4096
MAX_AUTO_CONFIG_BYTES = 64 * 1024

# The ledger states of a guest this collection has suspended in memory.
IN_MEMORY_STATES = (STATE_INTENT, STATE_SUSPENDED, STATE_RESUMING)

_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?(XENDOMAINS_[A-Z_]+)=(.*)$")
_CFG_NAME = re.compile(r"""^\s*name\s*=\s*["']([^"']{1,256})["']""", re.MULTILINE)


def userdata_path(domid, uuid, directory=None):
    return os.path.join(LIBXL_USERDATA_DIR if directory is None else directory,
                        "userdata-d.%d.%s.libxl-json" % (int(domid), uuid))


def read_libxl_config(domid, uuid, directory=None):
    """libxl's configuration of the domain (a dict), or None when it cannot be read here. Its
    absence is not a refusal: /libxl/<domid> already tells an xl-made domain, and xl itself
    fails a save it cannot embed a configuration for, before touching the guest."""
    path = userdata_path(domid, uuid, directory)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_USERDATA_BYTES + 1)
    except (IOError, OSError):
        return None
    if len(data) > MAX_USERDATA_BYTES:
        return None
    try:
        config = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return config if isinstance(config, dict) else None


def _config_refusals(config):
    reasons = []
    b_info = config.get("b_info") if isinstance(config.get("b_info"), dict) else {}
    if b_info.get("vnuma_nodes"):
        reasons.append("it has a virtual NUMA topology (vnuma), which libxl cannot save")
    if config.get("pcidevs"):
        reasons.append("it has PCI devices passed through, which Xen cannot save")
    return reasons


def refusals(xenstore, record, entry=None, userdata_dir=None):
    """Why ``record`` (a DomainRecord, its info read just now) cannot be saved: a list of
    reasons, empty when it can. ``entry``: the ledger's entry for its UUID, if any."""
    info = record.info
    domid = record.domid
    if info.dying or info.shut_down:
        return ["it is not running (%s)" % info.state]
    reasons = []
    if info.paused:
        reasons.append("it is paused, so it cannot answer the suspend request (xl would give up "
                       "after 60 s and leave a request the guest may act on once unpaused); "
                       "unpause it first")
    if entry is not None:
        state = entry.get("state")
        if state in IN_MEMORY_STATES:
            reasons.append("this collection's ledger holds it %s in memory (state %s): resume it "
                           "with xen.suspend.domain_resumed first" % (
                               "suspended" if state != STATE_INTENT else "being suspended", state))
        else:
            reasons.append("this collection's ledger holds it in state %s (a save or restore is "
                           "under way, or a stopped one is not settled yet)" % state)
    if xenstore.directory(("/libxl/%d" % domid).encode("ascii")) is None:
        reasons.append("it was not created by xl/libxl (no /libxl/%d in xenstore), so xl cannot "
                       "save it" % domid)
    if xenstore.directory(("/local/domain/0/backend/pci/%d" % domid).encode("ascii")) is not None:
        reasons.append("it has PCI devices passed through, which Xen cannot save")
    config = read_libxl_config(domid, record.uuid, userdata_dir)
    if config is not None:
        reasons.extend(reason for reason in _config_refusals(config) if reason not in reasons)
    cant = xenstore.read(domain_path(domid, "data/cant_suspend_reason"))
    if cant:
        reasons.append("the guest says it cannot be suspended now (data/cant_suspend_reason: %r)"
                       % decode_short(cant))
    return reasons


# -- xendomains --------------------------------------------------------------------------------

def _unquote(value):
    value = value.strip()
    if "#" in value and not value.startswith(("'", '"')):
        value = value.split("#", 1)[0].strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    return value


def read_xendomains_settings(paths=None):
    """{path, XENDOMAINS_*: value} of the first xendomains settings file found, or None."""
    for path in (XENDOMAINS_CONFIGS if paths is None else paths):
        try:
            with open(path, "rb") as handle:
                text = handle.read(MAX_SETTINGS_BYTES).decode("utf-8", "replace")
        except (IOError, OSError):
            continue
        settings = {"path": path}
        for line in text.splitlines():
            match = _ASSIGNMENT.match(line)
            if match:
                settings[match.group(1)] = _unquote(match.group(2))
        return settings
    return None


def auto_start_names(directory):
    """Domain names started at boot from ``directory`` (XENDOMAINS_AUTO): each file's
    ``name = "..."``, else its base name without .cfg."""
    names = set()
    try:
        entries = sorted(os.listdir(directory))[:MAX_AUTO_FILES]
    except OSError:
        return names
    for entry in entries:
        path = os.path.join(directory, entry)
        try:
            with open(path, "rb") as handle:
                text = handle.read(MAX_AUTO_CONFIG_BYTES).decode("utf-8", "replace")
        except (IOError, OSError):
            continue
        match = _CFG_NAME.search(text)
        names.add(match.group(1) if match else (entry[:-4] if entry.endswith(".cfg") else entry))
    return names


def _true(value):
    return str(value).strip().lower() in ("true", "yes", "1", "on")


def xendomains_warnings(names, save_dir, settings=None, paths=None):
    """Warnings about what xendomains would do to the guests named ``names``."""
    if settings is None:
        settings = read_xendomains_settings(paths)
    if not settings:
        return []
    messages = []
    source = settings["path"]
    save = settings.get("XENDOMAINS_SAVE", "")
    restore = _true(settings.get("XENDOMAINS_RESTORE", "false"))
    if save and restore and os.path.realpath(save.rstrip(os.sep) or os.sep) == os.path.realpath(save_dir):
        messages.append(
            "xendomains (%s) restores at boot the images it finds in XENDOMAINS_SAVE=%s, which "
            "is this save_dir: it would restore these images itself (and delete them) before "
            "xen.suspend.domain_restored runs; use another save_dir" % (source, save))
    auto_dir = settings.get("XENDOMAINS_AUTO", XENDOMAINS_AUTO_DEFAULT) or XENDOMAINS_AUTO_DEFAULT
    started = sorted(set(names) & auto_start_names(auto_dir))
    if started:
        messages.append(
            "xendomains starts %s at boot from %s: a guest started fresh while its image waits "
            "diverges from it, and domain_restored then refuses the image; remove them from %s "
            "or disable xendomains for the reboot" % (", ".join(started), auto_dir, auto_dir))
    return messages
