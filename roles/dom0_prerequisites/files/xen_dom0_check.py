#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Check what the xen.suspend modules need on a dom0 (run there by the dom0_prerequisites role).

Prints one JSON object and changes nothing:

* ``python``: the interpreter running this check (the one the modules will use);
* ``cffi`` and ``pyxs``: importable, and their versions;
* ``hypervisor``: the running Xen from ``<sysfs>/type`` and ``<sysfs>/version/{major,minor,extra}``;
* ``libraries``: whether the exact sonames load (``libxenctrl.so.<major>.<minor>`` and
  ``libxenguest.so.<major>.<minor>`` of the running Xen, ``libxenevtchn.so.1``), with the
  dynamic loader's search path, so ``LD_LIBRARY_PATH`` counts as it does for the modules;
  when sysfs does not tell the version, 4.22 down to 4.14 are probed like the modules do;
* ``xenstored``: whether xenstored answers a directory request within the timeout.
"""

from __future__ import absolute_import, division, print_function

import argparse
import ctypes
import json
import os
import platform
import sys
import threading

PROBE_MINORS = range(22, 13, -1)
DEFAULT_RUNDIR = "/var/run/xenstored"
XENBUS_PATH = "/dev/xen/xenbus"


def _read(path):
    with open(path) as handle:
        return handle.read().strip()


def hypervisor(sysfs):
    """{"ok", "type", "version" (major.minor), "extra", "error"} from the xen sysfs."""
    result = {"ok": False, "type": None, "version": None, "extra": None, "error": None, "sysfs": sysfs}
    try:
        result["type"] = _read(os.path.join(sysfs, "type"))
        major = int(_read(os.path.join(sysfs, "version", "major")))
        minor = int(_read(os.path.join(sysfs, "version", "minor")))
    except (IOError, OSError, ValueError) as exc:
        result["error"] = "cannot read the Xen version from %s: %s" % (sysfs, exc)
        return result
    try:
        result["extra"] = _read(os.path.join(sysfs, "version", "extra"))
    except (IOError, OSError):
        result["extra"] = ""
    result["version"] = "%d.%d" % (major, minor)
    if result["type"] != "xen":
        result["error"] = "%s/type is %r, not 'xen'" % (sysfs, result["type"])
        return result
    result["ok"] = True
    return result


def load(name):
    try:
        ctypes.CDLL(name)
    except OSError as exc:
        return {"name": name, "ok": False, "error": str(exc)}
    return {"name": name, "ok": True, "error": None}


def libraries(version):
    """Load the sonames the modules open; probe like the modules when the version is unknown."""
    found = {"version_source": "sysfs", "version": version, "checked": []}
    if version is None:
        found["version_source"] = "probe"
        for minor in PROBE_MINORS:
            attempt = load("libxenctrl.so.4.%d" % minor)
            if attempt["ok"]:
                found["version"] = "4.%d" % minor
                break
    if found["version"] is not None:
        found["checked"].append(load("libxenctrl.so.%s" % found["version"]))
        found["checked"].append(load("libxenguest.so.%s" % found["version"]))
    else:
        found["checked"].append({"name": "libxenctrl.so.4.*", "ok": False,
                                 "error": "no libxenctrl.so.4.14 to 4.22 could be loaded"})
    found["checked"].append(load("libxenevtchn.so.1"))
    return found


def distribution_version(name, module):
    """The installed distribution's version (pyxs has no __version__), else the module's."""
    try:
        from importlib import metadata  # pylint: disable=import-outside-toplevel
        return metadata.version(name)
    except Exception:  # pylint: disable=broad-except
        return getattr(module, "__version__", None)


def python_library(name):
    try:
        module = __import__(name)
    except ImportError as exc:
        return {"ok": False, "version": None, "error": str(exc)}
    return {"ok": True, "version": distribution_version(name, module), "error": None}


def socket_path():
    explicit = os.environ.get("XENSTORED_PATH")
    if explicit:
        return explicit
    return os.path.join(os.environ.get("XENSTORED_RUNDIR") or DEFAULT_RUNDIR, "socket")


def xenstored(timeout):
    """Ask xenstored for the children of /local/domain, in a thread bounded by ``timeout``."""
    path = socket_path()
    use_socket = os.path.exists(path) or not os.path.exists(XENBUS_PATH)
    result = {"ok": False, "connection": path if use_socket else XENBUS_PATH, "domains": None, "error": None}

    def ask():
        try:
            from pyxs import Client  # pylint: disable=import-outside-toplevel
            from pyxs.exceptions import PyXSError  # pylint: disable=import-outside-toplevel
        except ImportError as exc:
            result["error"] = "pyxs is not importable: %s" % exc
            return
        try:
            client = Client(unix_socket_path=path) if use_socket else Client(xen_bus_path=XENBUS_PATH)
            with client:
                result["domains"] = len(client.list(b"/local/domain"))
            result["ok"] = True
        except (PyXSError, OSError) as exc:
            result["error"] = "xenstored at %s: %s" % (result["connection"], exc)

    worker = threading.Thread(target=ask)
    worker.daemon = True
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        result["error"] = "xenstored at %s did not answer within %g s" % (result["connection"], timeout)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sysfs", default="/sys/hypervisor", help="the xen sysfs directory")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for xenstored")
    args = parser.parse_args(argv)
    hyp = hypervisor(args.sysfs)
    report = {
        "python": {"executable": sys.executable, "version": platform.python_version(),
                   "ok": sys.version_info >= (3, 8)},
        "cffi": python_library("cffi"),
        "pyxs": python_library("pyxs"),
        "hypervisor": hyp,
        "libraries": libraries(hyp["version"] if hyp["ok"] else None),
        "xenstored": xenstored(args.timeout),
    }
    print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
