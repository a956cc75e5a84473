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

import traceback

try:
    import resource
except ImportError:  # pragma: no cover - not on Linux
    resource = None

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.xen.suspend.plugins.module_utils._argument_spec import common_argument_spec
from ansible_collections.xen.suspend.plugins.module_utils._backends import open_backends
from ansible_collections.xen.suspend.plugins.module_utils._errors import (
    DependencyError, XenSuspendError)
from ansible_collections.xen.suspend.plugins.module_utils._interruption import Interruption
from ansible_collections.xen.suspend.plugins.module_utils._inventory import list_records, read_names
from ansible_collections.xen.suspend.plugins.module_utils._recovery import recover
from ansible_collections.xen.suspend.plugins.module_utils._targets import (
    needs_names, parse_selectors)
from ansible_collections.xen.suspend.plugins.module_utils._xen_libraries import (
    CFFI_IMPORT_ERROR, CFFI_INSTALL_HINT, HAS_CFFI)
from ansible_collections.xen.suspend.plugins.module_utils._xenstore import (
    HAS_PYXS, PYXS_IMPORT_ERROR, PYXS_INSTALL_HINT)

# Replaced by unit tests (and usable by a harness) to hand the modules other backends.
BACKENDS_FACTORY = open_backends


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

    def _check_python_dependencies(self):
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
        names_needed = all_names or needs_names(selector_lists)
        return list_records(backends.xenctrl, backends.xenstore,
                            names_for=None if names_needed else set())

    @staticmethod
    def fill_names(backends, records):
        read_names(backends.xenstore, [record for record in records if record.name is None])

    def warn(self, message):
        self.module.warn(message)

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
        if failure:
            self.module.fail_json(msg=failure, **result)
        self.module.exit_json(**result)
