# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: the set of backends the engines work with.

The engines only see this object, so tests (and any harness) can hand them fakes with the
same interface as the real wrappers: XenCtrl, XenEvtchn, XenstoreClient, SuspendLocks,
Ledger, plus a monotonic clock, a CPU clock and a ``wait(fds, timeout)`` function.
"""

import select
import time

from ansible_collections.xen.suspend.plugins.module_utils._domain_claim import DomainClaims
from ansible_collections.xen.suspend.plugins.module_utils._ledger import Ledger
from ansible_collections.xen.suspend.plugins.module_utils._suspend_lock import SuspendLocks
from ansible_collections.xen.suspend.plugins.module_utils._xen_libraries import SYSFS_VERSION_DIR
from ansible_collections.xen.suspend.plugins.module_utils._xl_commands import XlCommands
from ansible_collections.xen.suspend.plugins.module_utils._xl_monitor import XlMonitors
from ansible_collections.xen.suspend.plugins.module_utils._xenctrl import XenCtrl
from ansible_collections.xen.suspend.plugins.module_utils._xenevtchn import XenEvtchn
from ansible_collections.xen.suspend.plugins.module_utils._xenstore import XenstoreClient


def wait_for_fds(fds, timeout):
    """Sleep until one of ``fds`` is readable or ``timeout`` seconds pass; the readable set."""
    if not fds:
        if timeout > 0:
            time.sleep(timeout)
        return set()
    if hasattr(select, "poll"):
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        return set(fd for fd, _events in poller.poll(max(0, int(timeout * 1000 + 0.999))))
    readable, _w, _x = select.select(fds, [], [], max(0.0, timeout))
    return set(readable)


class Backends(object):
    """``evtchn`` is opened on first use through ``evtchn_factory``: only the event-channel
    path needs /dev/xen/evtchn. ``monitors`` (XlMonitors or None) keeps xl's per-domain
    monitor from seeing our suspends. Fakes implement every method the real objects have that
    the engines call (see tests/unit/xen_fakes.py)."""

    def __init__(self, xenctrl, xenstore, locks, ledger, evtchn_factory=None,
                 clock=time.monotonic, cpu_clock=time.process_time, wait=wait_for_fds, monitors=None,
                 wall_clock=time.time, interruption=None):
        self.xenctrl = xenctrl
        self.xenstore = xenstore
        self.locks = locks
        self.ledger = ledger
        self._evtchn_factory = evtchn_factory
        self._evtchn = None
        self.clock = clock
        self.cpu_clock = cpu_clock
        self.wait = wait
        self.monitors = monitors
        # Seconds since the epoch, for what the ledger keeps across processes (settle_by).
        self.wall_clock = wall_clock
        # An _interruption.Interruption the module installs; engines stop cleanly once it is set.
        self.interruption = interruption
        self._claims = None
        self._xl = None

    @property
    def claims(self):
        """Per-guest claims of save and restore runs, beside the ledger (see _domain_claim)."""
        if self._claims is None:
            self._claims = DomainClaims(self.ledger.directory)
        return self._claims

    @claims.setter
    def claims(self, claims):
        self._claims = claims

    @property
    def xl(self):
        """``xl`` on PATH, for save and restore (see _xl_commands)."""
        if self._xl is None:
            self._xl = XlCommands()
        return self._xl

    @xl.setter
    def xl(self, xl):
        self._xl = xl

    @property
    def evtchn(self):
        if self._evtchn is None:
            if self._evtchn_factory is None:
                raise RuntimeError("no event channel backend configured")
            self._evtchn = self._evtchn_factory()
        return self._evtchn

    @property
    def evtchn_opened(self):
        return self._evtchn is not None

    def close(self):
        for closer in (getattr(self._evtchn, "close", None),
                       getattr(self.xenstore, "close", None),
                       getattr(self.xenctrl, "close", None)):
            if closer is None:
                continue
            try:
                closer()
            except Exception:  # closing must never hide the error that brought us here
                pass
        self._evtchn = None


def open_backends(ledger_path, xen_run_dir=None, xenstore_timeout=10.0, sysfs_dir=None):
    """The real thing: libxenctrl for the running Xen, xenstored, lock directory, ledger."""
    xenctrl = XenCtrl.open(sysfs_dir=sysfs_dir or SYSFS_VERSION_DIR)
    try:
        xenstore = XenstoreClient(timeout=xenstore_timeout).connect()
    except BaseException:
        xenctrl.close()
        raise
    return Backends(
        xenctrl=xenctrl,
        xenstore=xenstore,
        locks=SuspendLocks(xen_run_dir),
        ledger=Ledger(ledger_path),
        evtchn_factory=lambda: XenEvtchn(xenctrl.libraries),
        monitors=XlMonitors.for_xen(xenctrl.version),
    )
