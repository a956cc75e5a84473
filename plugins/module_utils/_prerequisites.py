# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: what the modules need on a dom0, checked the way the
modules themselves find it (domain_info's ``gather: prerequisites``).

Works without cffi and pyxs (it reports them missing): the Xen sonames are loaded with ctypes,
the same exact names, in the same probe order, that _xen_libraries opens with cffi; xenstored
is asked through _xenstore's client (socket discovery included) when pyxs is there.
"""

import ctypes
import os
import platform
import shutil
import sys
import threading

from ansible_collections.xen.suspend.plugins.module_utils import _toolstack
from ansible_collections.xen.suspend.plugins.module_utils._errors import XenSuspendError
from ansible_collections.xen.suspend.plugins.module_utils._xen_libraries import (
    CFFI_INSTALL_HINT, HAS_CFFI, XENEVTCHN_SONAME, installed_versions, library_search_dirs,
    package_hint, probe_order, xenctrl_soname, xenguest_soname)
from ansible_collections.xen.suspend.plugins.module_utils._xenstore import (
    HAS_PYXS, PYXS_INSTALL_HINT, XenstoreClient, default_socket_path)
from ansible_collections.xen.suspend.plugins.module_utils._xl_commands import (
    SYSTEMD_RUN, XL, XL_INSTALL_HINT, systemd_is_init)

DEFAULT_SYSFS_DIR = "/sys/hypervisor"
MINIMUM_PYTHON = (3, 8)


def _read(path):
    with open(path) as handle:
        return handle.read(256).strip()


def hypervisor(sysfs):
    """{"ok", "type", "version" (major.minor), "extra", "error", "sysfs"} from the xen sysfs."""
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
    """Whether the dynamic loader opens ``name`` (LD_LIBRARY_PATH counts, as for the modules)."""
    try:
        ctypes.CDLL(name)
    except OSError as exc:
        return {"name": name, "ok": False, "error": str(exc)}
    return {"name": name, "ok": True, "error": None}


def libraries(version):
    """The sonames the modules open for ``version`` ((major, minor) or None: probed in the
    modules' order, _xen_libraries.probe_order)."""
    found = {"version_source": "sysfs", "version": None, "checked": []}
    if version is None:
        found["version_source"] = "probe"
        for candidate in probe_order(None, installed_versions(library_search_dirs())):
            if load(xenctrl_soname(candidate))["ok"]:
                version = candidate
                break
    if version is not None:
        found["version"] = "%d.%d" % tuple(version)
        found["checked"].append(dict(load(xenctrl_soname(version)), package=package_hint(version)))
        found["checked"].append(dict(load(xenguest_soname(version)), package=package_hint(version)))
    else:
        found["checked"].append({"name": "libxenctrl.so.4.*", "ok": False, "package": package_hint((4, 0)),
                                 "error": "no libxenctrl.so.4.14 to 4.22 could be loaded"})
    found["checked"].append(dict(load(XENEVTCHN_SONAME), package="libxenevtchn1 (Debian/Ubuntu)"))
    return found


def python_library(name, present, install):
    result = {"ok": bool(present), "version": None, "error": None, "install": install}
    if not present:
        result["error"] = "%s cannot be imported by %s" % (name, sys.executable)
        return result
    try:
        from importlib import metadata  # pylint: disable=import-outside-toplevel
        result["version"] = metadata.version(name)
    except Exception:  # pylint: disable=broad-except  # metadata missing: still importable
        result["version"] = getattr(sys.modules.get(name), "__version__", None)
    return result


def xenstored(timeout):
    """Ask xenstored (where the modules connect) for /local/domain, bounded by ``timeout``."""
    result = {"ok": False, "connection": default_socket_path(), "domains": None, "error": None}
    if not HAS_PYXS:
        result["error"] = "pyxs is not importable, xenstored was not asked"
        return result

    def ask():
        client = None
        try:
            client = XenstoreClient(timeout=timeout).connect()
            result["connection"] = client.description
            children = client.directory(b"/local/domain")
            result["domains"] = len(children or [])
            result["ok"] = True
        except (XenSuspendError, OSError, ValueError) as exc:
            result["error"] = "xenstored at %s: %s" % (result["connection"], exc)
        finally:
            if client is not None:
                try:
                    client.close()
                except Exception:  # pylint: disable=broad-except
                    pass

    # connect() itself has no deadline: a thread bounds the whole check
    worker = threading.Thread(target=ask)
    worker.daemon = True
    worker.start()
    worker.join(timeout + 1.0)
    if worker.is_alive():
        result["error"] = "xenstored at %s did not answer within %g s" % (result["connection"], timeout)
    return result


def save_restore_tools(path=None, systemd_runtime_dir=None):
    """What domain_saved and domain_restored run besides the libraries: ``xl`` (save, restore,
    destroy, unpause) and, where systemd is init, ``systemd-run`` (a restored guest's xl monitor
    goes into a scope of its own). Suspend to memory needs neither, so what is missing here is a
    note, not a problem: ``notes`` says what it costs."""
    xl_path = shutil.which(XL, path=path)
    systemd_init = systemd_is_init(systemd_runtime_dir)
    systemd_run = shutil.which(SYSTEMD_RUN, path=path)
    result = {"ok": xl_path is not None, "xl": xl_path, "systemd_init": systemd_init,
              "systemd_run": systemd_run, "notes": []}
    if xl_path is None:
        result["notes"].append(
            "xl is not on PATH (%s): domain_saved, domain_restored and the save mode of host_maintenance "
            "need it, suspend to memory does not; install %s"
            % (path if path is not None else os.environ.get("PATH", ""), XL_INSTALL_HINT))
    elif systemd_init and systemd_run is None:
        result["notes"].append(
            "systemd is init but systemd-run is not on PATH: a restored guest's xl monitor stays in the "
            "session of the task that restored it, where logind may kill it at logout")
    return result


def problems(report):
    """What stops the modules, one sentence each."""
    found = []
    python = report["python"]
    if not python["ok"]:
        found.append("Python %s (%s) is too old: the modules need Python %d.%d or later"
                     % ((python["version"], python["executable"]) + MINIMUM_PYTHON))
    for name in ("cffi", "pyxs"):
        item = report[name]
        if not item["ok"]:
            found.append("%s; install %s" % (item["error"], item["install"]))
    libs = report["libraries"]
    for lib in libs["checked"]:
        if not lib["ok"]:
            found.append("%s cannot be loaded (%s); it comes with the Xen tools of the running hypervisor: "
                         "%s" % (lib["name"], lib["error"], lib["package"]))
    if not report["xenstored"]["ok"]:
        found.append("xenstored does not answer: %s" % report["xenstored"]["error"])
    toolstack = report["toolstack"]
    if toolstack["host_refused"]:
        found.append("%s: the modules refuse this host unless allow_other_toolstack is set"
                     % toolstack["host_refused"])
    return found


def check(sysfs_dir=DEFAULT_SYSFS_DIR, xenstore_timeout=10.0):
    """The whole report (JSON-ready); changes nothing."""
    hyp = hypervisor(sysfs_dir)
    version = None
    if hyp["ok"]:
        version = tuple(int(part) for part in hyp["version"].split("."))
    report = {
        "python": {"executable": sys.executable, "version": platform.python_version(),
                   "ok": tuple(sys.version_info[:2]) >= MINIMUM_PYTHON},
        "cffi": python_library("cffi", HAS_CFFI, CFFI_INSTALL_HINT),
        "pyxs": python_library("pyxs", HAS_PYXS, PYXS_INSTALL_HINT),
        "hypervisor": hyp,
        "libraries": libraries(version),
        "xenstored": xenstored(xenstore_timeout),
        "toolstack": _toolstack.detect().as_dict(),
        "save_restore": save_restore_tools(),
    }
    report["problems"] = problems(report)
    report["ok"] = not report["problems"]
    return report
