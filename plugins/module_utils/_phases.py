# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: named, monotonic-timed phases of one domain's operation.

Reports show where time went and, on failure, which phase failed, so that a timeout names
both the domain and the step that did not finish.
"""

LOOKUP = "lookup"
LOCK = "lock"
REQUEST = "request"
ACKNOWLEDGE = "acknowledge"
QUIESCE = "quiesce"
VERIFY = "verify"
RESUME = "resume"


class PhaseTimer(object):
    """At most one phase runs at a time; re-entering a phase adds to its total."""

    def __init__(self, clock):
        self._clock = clock
        self._totals = {}
        self.current = None
        self._started = None

    def start(self, name, now=None):
        now = self._clock() if now is None else now
        self._close(now)
        self.current = name
        self._started = now
        self._totals.setdefault(name, 0.0)

    def stop(self, now=None):
        self._close(self._clock() if now is None else now)
        self.current = None

    def _close(self, now):
        if self.current is not None:
            self._totals[self.current] = self._totals.get(self.current, 0.0) + max(0.0, now - self._started)
            self._started = None

    def elapsed(self, now=None):
        """Seconds spent in the current phase so far."""
        if self.current is None:
            return 0.0
        now = self._clock() if now is None else now
        return max(0.0, now - self._started)

    def as_dict(self):
        """{phase: seconds} in the order the phases were first entered, rounded for JSON."""
        return dict((name, round(total, 6)) for name, total in self._totals.items())
