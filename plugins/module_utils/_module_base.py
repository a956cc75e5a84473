# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: what every module of the collection does the same way.

A module subclasses XenSuspendModule, gives its own argument spec and implements
``execute(backends)``; this class builds the AnsibleModule with the shared options, reports
missing cffi/pyxs/Xen libraries with install hints, opens and always closes the backends, and
turns every XenSuspendError into a failure that names the domain and the phase.
"""

import os
import sys
import traceback

try:
    import resource
except ImportError:  # pragma: no cover - not on Linux
    resource = None

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.common.respawn import (
    has_respawned, probe_interpreters_for_module, respawn_module)

from ansible_collections.xen.suspend.plugins.module_utils._argument_spec import common_argument_spec
from ansible_collections.xen.suspend.plugins.module_utils._backends import open_backends
from ansible_collections.xen.suspend.plugins.module_utils._errors import (
    DependencyError, OptionError, XenSuspendError)
from ansible_collections.xen.suspend.plugins.module_utils._interruption import Interruption
from ansible_collections.xen.suspend.plugins.module_utils._inventory import list_records, read_names
from ansible_collections.xen.suspend.plugins.module_utils._recovery import recover
from ansible_collections.xen.suspend.plugins.module_utils._service_domains import (
    find_service_domains, mark_records as mark_service_domains)
from ansible_collections.xen.suspend.plugins.module_utils import _toolstack
from ansible_collections.xen.suspend.plugins.module_utils._targets import (
    needs_names, parse_selectors)
from ansible_collections.xen.suspend.plugins.module_utils._xen_libraries import (
    CFFI_IMPORT_ERROR, CFFI_INSTALL_HINT, HAS_CFFI)
from ansible_collections.xen.suspend.plugins.module_utils._xenstore import (
    HAS_PYXS, PYXS_IMPORT_ERROR, PYXS_INSTALL_HINT)

# Replaced by unit tests (and usable by a harness) to hand the modules other backends.
BACKENDS_FACTORY = open_backends

# Where the dom0's own python3 (with the distribution's python3-cffi and python3-pyxs) may be,
# when the interpreter Ansible uses lacks them (a virtualenv as ansible_python_interpreter).
RESPAWN_INTERPRETERS = ("/usr/bin/python3", "/usr/libexec/platform-python", "/usr/local/bin/python3",
                        "/usr/bin/python")

# The respawn functions, replaceable by unit tests (respawning needs an AnsiballZ payload).
RESPAWN = {"has_respawned": has_respawned, "probe": probe_interpreters_for_module,
           "respawn": respawn_module}


def respawn_interpreter(missing, candidates=None, probe=None, executable=None):
    """The first candidate interpreter (not this one) that imports every module in
    ``missing``, or None."""
    candidates = RESPAWN_INTERPRETERS if candidates is None else candidates
    probe = RESPAWN["probe"] if probe is None else probe
    here = os.path.realpath(executable or sys.executable)
    for path in candidates:
        if not os.path.exists(path) or os.path.realpath(path) == here:
            continue
        if all(probe([path], name) for name in missing):
            return path
    return None


def raise_open_file_limit():
    """A whole fleet at once holds a lock file per domain (and a resume a handle per thread):
    the soft limit on open files (often 1024) goes up to the hard one, for this process only."""
    if resource is None:
        return
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = hard if hard != resource.RLIM_INFINITY else 65536
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):  # a container may forbid it: the run goes on with what it has
        pass


def _exception_text(exc):
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


class XenSuspendModule(object):
    """Base class of the collection's modules."""

    #: extra AnsibleModule keyword arguments (mutually_exclusive, ...)
    module_kwargs = {}

    def __init__(self, argument_spec):
        spec = common_argument_spec()
        spec.update(argument_spec)
        self.module = AnsibleModule(argument_spec=spec, supports_check_mode=True,
                                    **self.module_kwargs)
        self.params = self.module.params
        self.check_mode = self.module.check_mode
        self.diff_mode = bool(getattr(self.module, "_diff", False))
        self._check_python_dependencies()

    # -- dependencies --------------------------------------------------------------------------

    def dependencies_required(self):
        """False lets a module run without cffi or pyxs (a prerequisite report)."""
        return True

    def _check_python_dependencies(self):
        missing = [name for present, name in ((HAS_CFFI, "cffi"), (HAS_PYXS, "pyxs")) if not present]
        if not missing:
            return
        # Respawned once at most: the respawned process never respawns again.
        if not RESPAWN["has_respawned"]():
            interpreter = respawn_interpreter(missing)
            if interpreter is not None:
                RESPAWN["respawn"](interpreter)  # exits with the respawned module's status
        if not self.dependencies_required():
            return
        for present, library, error, hint in (
                (HAS_CFFI, "cffi", CFFI_IMPORT_ERROR, CFFI_INSTALL_HINT),
                (HAS_PYXS, "pyxs", PYXS_IMPORT_ERROR, PYXS_INSTALL_HINT)):
            if not present:
                self.module.fail_json(
                    msg=missing_required_lib(library, reason="on the Xen dom0 (install %s)" % hint),
                    exception=_exception_text(error) if error is not None else None)

    # -- helpers for subclasses ----------------------------------------------------------------

    def selectors(self, option):
        return parse_selectors(self.params.get(option) or [])

    def inventory(self, backends, selector_lists, all_names=False):
        """Every domain; names read for all of them only when some selector needs names."""
        names_needed = all_names or needs_names(selector_lists) or self.toolstack_needs_names()
        return list_records(backends.xenctrl, backends.xenstore,
                            names_for=None if names_needed else set())

    @staticmethod
    def fill_names(backends, records):
        read_names(backends.xenstore, [record for record in records if record.name is None])

    def warn(self, message):
        self.module.warn(message)

    # -- what must never be touched: service domains, another toolstack's domains ---------------

    def check_toolstack(self):
        """Before anything is opened: refuse a host run by another toolstack (TargetError),
        unless allow_other_toolstack. Keeps what was found for mark_refusals()."""
        allow = bool(self.params.get("allow_other_toolstack"))
        self.toolstack = _toolstack.detect()
        _toolstack.check_host(self.toolstack, allow)
        for message in _toolstack.warnings(self.toolstack, allow):
            self.warn(message)
        return self.toolstack

    def toolstack_needs_names(self):
        toolstack = getattr(self, "toolstack", None)
        return bool(toolstack is not None and toolstack.libvirt_domains
                    and not self.params.get("allow_other_toolstack"))

    def mark_refusals(self, backends, records):
        """Mark the service domains and another toolstack's domains among ``records`` (see
        _targets.refusal), before targets are selected; returns the ServiceDomains found."""
        found = find_service_domains(backends.xenstore, records)
        allowed = self.selectors("allow_service_domains") if "allow_service_domains" in self.params else []
        idle = mark_service_domains(records, found, allowed)
        if idle:
            self.warn("allow_service_domains: %s match%s no service domain" % (
                ", ".join(repr(selector.text) for selector in idle), "" if len(idle) > 1 else "es"))
        toolstack = getattr(self, "toolstack", None)
        if toolstack is not None:
            _toolstack.mark_records(records, toolstack, bool(self.params.get("allow_other_toolstack")))
        return found

    def recover(self, backends, entries, skip=()):
        """Settle what stopped runs left in ``entries`` (see _recovery); only reports in check
        mode."""
        report = recover(backends, entries, act=not self.check_mode, skip=skip)
        for message in report.errors:
            self.warn(message)
        return report

    def report(self, report, verb, recovery=None, always_fail=False):
        """(result, failure) of a suspend or resume run, as execute() returns them: run-level
        errors become warnings; failed domains fail the task unless continue_on_error (and
        always with ``always_fail``); an interrupted run always fails."""
        for message in report.errors:
            self.warn(message)
        summary = report.failure_summary(verb)
        if summary and self.params.get("continue_on_error") and not always_fail:
            self.warn(summary)
            summary = None
        result = report.module_result(diff=self.diff_mode)
        if recovery is not None:
            result["recovery"] = recovery.as_dict()
            result["changed"] = result["changed"] or recovery.changed
        interrupted = getattr(report, "interrupted", None)
        if interrupted:
            result["interrupted"] = interrupted
            summary = "interrupted by %s: what was in flight was settled (see the per-domain " \
                      "results)%s" % (interrupted, "; " + summary if summary else "")
        return result, summary

    # -- running -------------------------------------------------------------------------------

    def prepare(self):
        """Check options before anything is opened; raise TargetError for bad ones."""

    def execute(self, backends):
        """Do the work; return (result dict, failure message or None)."""
        raise NotImplementedError

    def run(self):
        params = self.params
        backends = None
        try:
            self._check_ledger_path(params["ledger"])
            self.prepare()
            raise_open_file_limit()
            backends = BACKENDS_FACTORY(
                ledger_path=params["ledger"], xen_run_dir=params.get("xen_run_dir"),
                xenstore_timeout=params["xenstore_timeout"])
            with Interruption() as interruption:
                backends.interruption = interruption
                result, failure = self.execute(backends)
        except DependencyError as exc:
            if exc.python_library:
                msg = missing_required_lib(exc.library, reason="on the Xen dom0 (install %s)" % exc.install)
            else:
                msg = "%s; install %s" % (exc, exc.install) if exc.install else str(exc)
            self.module.fail_json(msg=msg, error=exc.to_dict())
        except XenSuspendError as exc:
            self.module.fail_json(msg=str(exc), error=exc.to_dict(),
                                  exception=_exception_text(exc))
        except Exception as exc:  # a bug: still report it as a task failure with the traceback
            self.module.fail_json(msg="unexpected error: %s" % exc, exception=_exception_text(exc))
        finally:
            if backends is not None:
                backends.close()
        # Which ledger this run read and wrote: the recovery playbook must name the same one.
        result["ledger"] = params["ledger"]
        if failure:
            self.module.fail_json(msg=failure, **result)
        self.module.exit_json(**result)

    @staticmethod
    def _check_ledger_path(path):
        # A relative path would be resolved against the module's working directory (the remote
        # user's home or Ansible's temporary directory): the next run could read another ledger
        # and not know which guests this one suspended.
        if not os.path.isabs(path):
            raise OptionError("invalid options, nothing was touched: ledger must be an absolute "
                              "path on the dom0, not %r" % (path,))
