# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The engine in real time with the real XenstoreClient (pyxs Router thread, socket, select)
against the fake xenstored, guests acknowledging from another thread."""

import os
import shutil
import tempfile
import threading
import time

import pytest

from ansible_collections.xen.suspend.plugins.module_utils._backends import Backends, wait_for_fds
from ansible_collections.xen.suspend.plugins.module_utils._domain_state import (
    DOMINF_BLOCKED, DOMINF_SHUTDOWN, DomainInfo)
from ansible_collections.xen.suspend.plugins.module_utils._inventory import list_records
from ansible_collections.xen.suspend.plugins.module_utils._ledger import Ledger
from ansible_collections.xen.suspend.plugins.module_utils._suspend_engine import SuspendEngine
from ansible_collections.xen.suspend.plugins.module_utils._suspend_lock import SuspendLocks
from ansible_collections.xen.suspend.plugins.module_utils._targets import (
    parse_selectors, select_targets)
from ansible_collections.xen.suspend.plugins.module_utils._xenstore import XenstoreClient

from fake_xenstored import WRITE, FakeXenstored


class RealTimeXenCtrl(object):
    """Domains whose shutdown state the guest threads flip."""

    def __init__(self, domids):
        self.lock = threading.Lock()
        self.flags = dict((domid, DOMINF_BLOCKED) for domid in domids)
        self.calls = 0

    def uuid(self, domid):
        return "%08x-0000-4000-8000-%012x" % (domid, domid)

    def domain_info(self, domid):
        self.calls += 1
        with self.lock:
            if domid not in self.flags:
                return None
            return DomainInfo(domid, self.flags[domid], self.uuid(domid))

    def domain_infos(self, domids):
        return dict((domid, self.domain_info(domid)) for domid in domids)

    def list_domains(self):
        return [self.domain_info(domid) for domid in sorted(self.flags)]

    def suspend(self, domid):
        with self.lock:
            self.flags[domid] = DOMINF_SHUTDOWN | (2 << 16)

    def hvm_param(self, domid, param):
        raise AssertionError("PV guests have no HVM params")


class GuestXenstored(FakeXenstored):
    """xenstored whose guests acknowledge control/shutdown=suspend from their own thread."""

    def __init__(self, path, xenctrl, ack_delay):
        FakeXenstored.__init__(self, path)
        self.xenctrl = xenctrl
        self.ack_delay = ack_delay

    def _handle(self, conn, op, rq, tx, payload):
        FakeXenstored._handle(self, conn, op, rq, tx, payload)
        if op == WRITE and payload.endswith(b"/control/shutdown\x00suspend"):
            domid = int(payload.split(b"/")[3])
            timer = threading.Timer(self.ack_delay, self._guest, args=(domid, payload.split(b"\x00")[0]))
            timer.daemon = True
            timer.start()

    def _guest(self, domid, path):
        self.guest_write(path, b"")
        time.sleep(0.01)
        self.xenctrl.suspend(domid)


@pytest.fixture(params=["c-xenstored", "oxenstored"])
def setup(tmp_path, request):
    directory = tempfile.mkdtemp(prefix="xe", dir="/tmp")
    domids = list(range(1, 25))
    xenctrl = RealTimeXenCtrl([0] + domids)
    server = GuestXenstored(os.path.join(directory, "socket"), xenctrl, ack_delay=0.02)
    server.ack_before_fire = request.param == "oxenstored"
    for domid in [0] + domids:
        server.nodes[b"/local/domain/%d/name" % domid] = b"vm%d" % domid
        server.nodes[b"/local/domain/%d/control/shutdown" % domid] = b""
    xenstore = XenstoreClient(timeout=2.0, socket_path=server.path).connect()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    backends = Backends(xenctrl=xenctrl, xenstore=xenstore, locks=SuspendLocks(str(run_dir)),
                        ledger=Ledger(str(tmp_path / "ledger.json")), wait=wait_for_fds)
    yield backends, server
    backends.close()
    server.close()
    shutil.rmtree(directory, True)


def test_concurrent_xenstore_suspends_over_pyxs(setup):
    backends, server = setup
    records = list_records(backends.xenctrl, backends.xenstore)
    targets = select_targets(records, parse_selectors(["*"])).targets
    start = time.monotonic()
    report = SuspendEngine(backends, parallel=8, ack_timeout=5, timeout=5).run(targets)
    elapsed = time.monotonic() - start
    assert report.failed == [], report.results
    assert len(report.suspended) == 24
    # 24 guests taking ~30 ms each, 8 at a time: far below one-at-a-time, far below timeouts
    assert elapsed < 3.0
    trips = [item["xenstore_round_trips"] for item in report.results]
    # name, event channel, write, read on the acknowledgement (the answers' watch is the run's)
    assert max(trips) <= 4, trips
    assert all(value == b"" for path, value in server.nodes.items() if path.endswith(b"/control/shutdown"))
    # no watch per domain: only the connection's standing ones (gone with it)
    assert [w[:2] for w in server.watches] == [(b"@releaseDomain", b"xen-suspend-release"),
                                               (b"/local/domain", b"xen-suspend-answers")]
    assert set(backends.ledger.read()) == set(r["uuid"] for r in report.results)
