# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: ending a run cleanly on SIGTERM, SIGHUP or SIGINT.

An AWX job cancel sends SIGTERM, a closed SSH session SIGHUP, Ctrl-C SIGINT. Python's default
(an exception at whatever line runs, or death) would skip the cleanup that keeps the ledger
true. The handler only raises a flag; the engines look at it between steps (their loop wakes
at least every 50 ms), stop sending requests, withdraw the unanswered ones, record the
answered ones, give back locks and channels, and report what was interrupted. A second
signal of the same kind while cleaning up is ignored; SIGKILL stays the hammer, and the next
run's recovery settles what it leaves.
"""

import signal

SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP", "SIGINT")
                if hasattr(signal, name))


class Interruption(object):
    """``reason`` is None until a signal arrived, then e.g. "SIGTERM"."""

    def __init__(self):
        self.reason = None
        self._previous = {}

    @property
    def requested(self):
        return self.reason is not None

    def _handle(self, signum, _frame):
        if self.reason is None:
            try:
                self.reason = signal.Signals(signum).name
            except ValueError:  # pragma: no cover - a signal Python does not name
                self.reason = "signal %d" % signum

    def install(self):
        """Catch the signals (main thread only; elsewhere this does nothing)."""
        for signum in SIGNALS:
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except (ValueError, OSError):  # not the main thread
                pass
        return self

    def restore(self):
        for signum, previous in self._previous.items():
            try:
                signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
            except (ValueError, OSError):
                pass
        self._previous = {}

    def __enter__(self):
        return self.install()

    def __exit__(self, *exc_info):
        self.restore()
        return False
