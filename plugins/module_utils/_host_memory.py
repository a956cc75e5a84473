# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: the host's free memory, as ``xl info`` reports it.

A restore needs the guest's memory free in the hypervisor. ``xl`` frees it by ballooning dom0
down when ``autoballoon`` is on, and fails with "failed to free memory for the domain" when it
cannot, so a shortfall seen here is a warning before anything is touched, not a refusal.
"""

import subprocess

from ansible_collections.xen.suspend.plugins.module_utils._xl_commands import find_xl

INFO_TIMEOUT = 30.0


def parse_xl_info(text):
    """``{key: value}`` of ``xl info``'s ``key : value`` lines (values as text)."""
    values = {}
    for line in text.splitlines():
        key, colon, value = line.partition(":")
        if colon and key.strip() and " " not in key.strip():
            values[key.strip()] = value.strip()
    return values


def host_memory(path=None):
    """``(total_mib, free_mib)`` from ``xl info``, or None when xl cannot say."""
    try:
        output = subprocess.run([find_xl(path), "info"], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                timeout=INFO_TIMEOUT, check=False).stdout
    except Exception:  # no xl, a hung xl, an odd one: the check is advisory
        return None
    values = parse_xl_info(output.decode("utf-8", "replace"))
    try:
        return int(values["total_memory"]), int(values["free_memory"])
    except (KeyError, ValueError):
        return None
