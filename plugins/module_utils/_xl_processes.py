# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: which live ``xl`` processes work on a save image,
or destroy a domain.

A save or restore run can die while the ``xl save`` / ``xl restore`` it started goes on (xl
runs in a session of its own, so that a restored guest's monitor outlives the task). Until that
xl ends, nobody else may judge the guest from what it sees: the domain is half-saved or
half-built. Every process whose command line runs an ``xl`` (its own executable, or a script
called ``xl`` under an interpreter) with ``save`` or ``restore`` and names the image counts;
likewise an ``xl destroy`` a stopped save run started goes on after it (``xl_destroying``).
"""

import os

PROC = "/proc"
XL_VERBS = ("save", "restore")


def xl_working_on(path, proc_dir=PROC):
    """PIDs of live xl processes whose arguments name ``path`` (sorted)."""
    if not path:
        return []
    return sorted(pid for pid, rest in _xl_processes(proc_dir)
                  if any(verb in rest for verb in XL_VERBS) and path in rest)


def xl_destroying(domid, proc_dir=PROC):
    """PIDs of live ``xl destroy <domid>`` processes (sorted). A stopped save run's destroy
    goes on in its own session: a guest it is about to destroy must not be judged alive."""
    if domid is None:
        return []
    return sorted(pid for pid, rest in _xl_processes(proc_dir)
                  if "destroy" in rest and str(int(domid)) in rest)


def _xl_processes(proc_dir):
    """(pid, the arguments after ``xl``) of every live process that runs an xl."""
    try:
        names = os.listdir(proc_dir)
    except OSError:
        return
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(os.path.join(proc_dir, name, "cmdline"), "rb") as handle:
                raw = handle.read(65536)
        except (IOError, OSError):
            continue  # gone meanwhile, or not ours to read
        argv = [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]
        rest = _after_xl(argv)
        if rest is not None:
            yield int(name), rest


def _after_xl(argv):
    for index, arg in enumerate(argv[:3]):  # xl itself, or an interpreter running a script xl
        if os.path.basename(arg) == "xl":
            return argv[index + 1:]
    return None
