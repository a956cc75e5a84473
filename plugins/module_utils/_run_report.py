# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: what a suspend or resume run reports, per domain and
as a whole, in the shape both state modules return (kubernetes.core style per-item results).

A job is anything with ``display_name``, ``before``, ``changed``, ``error`` (None or a dict
with ``message`` and ``kind``) and ``result()``.
"""


class RunReport(object):
    """The jobs of one run, with its stats and the run-level errors (warnings)."""

    #: the result key listing the domains this run changed ("suspended", "resumed")
    changed_key = None

    def __init__(self, jobs, stats, errors, skipped=None):
        self.jobs = jobs
        self.stats = stats
        self.errors = errors
        self.skipped = skipped if skipped is not None else []

    @property
    def results(self):
        return [job.result() for job in self.jobs]

    def names(self, predicate):
        return [job.display_name for job in self.jobs if predicate(job)]

    @property
    def changed_names(self):
        return self.names(lambda job: job.changed)

    @property
    def unchanged(self):
        return self.names(lambda job: not job.changed and job.error is None)

    @property
    def failed(self):
        return self.names(lambda job: job.error is not None)

    @property
    def changed(self):
        return any(job.changed for job in self.jobs)

    def module_result(self, diff=False):
        """The module's return values (and ``diff`` when Ansible runs with --diff)."""
        results = self.results
        result = {
            "changed": self.changed,
            "domains": results,
            self.changed_key: self.changed_names,
            "unchanged": self.unchanged,
            "failed_domains": self.failed,
            "skipped_domains": self.skipped,
            "stats": self.stats,
        }
        if diff:
            result["diff"] = {
                "before": dict((job.display_name, job.before) for job in self.jobs),
                "after": dict((job.display_name, item["after"]) for job, item in zip(self.jobs, results)),
            }
        return result

    def failure_summary(self, verb):
        """One message for the task: how many failed, and the first few reasons; None if none."""
        failed = [job for job in self.jobs if job.error is not None]
        if not failed:
            return None
        reasons = [job.error["message"] for job in failed if job.error.get("kind") != "not_attempted"]
        if not reasons:
            reasons = [job.error["message"] for job in failed]
        shown = "; ".join(reasons[:3])
        if len(reasons) > 3:
            shown += "; and %d more" % (len(reasons) - 3)
        # Domains a stopped run never got to are counted apart: they did not fail, they wait.
        not_attempted = sum(1 for job in failed if job.error.get("kind") == "not_attempted")
        if not_attempted and not_attempted < len(failed):
            return "%d of %d domains could not be %s, %d not attempted: %s" % (
                len(failed) - not_attempted, len(self.jobs), verb, not_attempted, shown)
        return "%d of %d domains could not be %s: %s" % (len(failed), len(self.jobs), verb, shown)
