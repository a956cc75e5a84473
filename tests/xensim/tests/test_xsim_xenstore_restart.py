"""The collection's XenstoreClient (on pyxs 0.4.1) across a restart of the simulated xenstored:
it connects again, registers its watches again and says so; the tree survives the restart."""

import importlib.util
import os
import time

import pytest

from xensim_testlib import XENSIM_ROOT, RawXs, wait_until

pytest.importorskip("pyxs")

REPO_ROOT = os.path.dirname(os.path.dirname(XENSIM_ROOT))
FLEET = {"quiesce_ms": 50, "jitter_ms": 0, "heartbeat_ms": 0, "guests": {"linux-pv": 1}}


def _xenstore_module():
    """plugins/module_utils/_xenstore.py as ansible_collections.xen.suspend (tests/unit's
    conftest makes the checkout importable so when it ran first; otherwise it is run here)."""
    try:
        from ansible_collections.xen.suspend.plugins.module_utils import _xenstore
    except ImportError:
        spec = importlib.util.spec_from_file_location(
            "xen_suspend_unit_paths", os.path.join(REPO_ROOT, "tests", "unit", "conftest.py"))
        paths = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(paths)
        from ansible_collections.xen.suspend.plugins.module_utils import _xenstore
    return _xenstore


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_client_reconnects_across_a_xenstored_restart(make_sim):
    xenstore = _xenstore_module()
    sim = make_sim(FLEET)
    xs = xenstore.XenstoreClient(timeout=5.0, socket_path=sim.xs_path).connect()
    try:
        node = b"/restart-test/node"
        xs.write(node, b"before")
        xs.watch(node, b"rt")
        assert xs.wait_event(2.0) == (node, b"rt")  # the registration's event
        sim.fault("restart-xenstored", downtime=0.5)
        wait_until(lambda: not xs.connected, timeout=5.0, msg="the client to see xenstored go")
        start = time.monotonic()
        xs.write(node, b"during")  # not sent before the restart: sent over the new connection
        assert 0.2 < time.monotonic() - start < 5.0  # waited for the socket to come back
        assert xs.reconnects == 1 and xs.take_reconnect() and xs.dead is None
        assert xs.watches == frozenset([(node, b"rt")])
        events = []
        wait_until(lambda: events.extend(xs.events_nowait()) or len(events) >= 2, timeout=3.0,
                   msg="the watch to fire again")
        # registered again (it fires once), then our write's event
        assert [event[:2] for event in events] == [(node, b"rt"), (node, b"rt")]
        other = RawXs(sim.xs_path)
        try:
            other.write(node, b"after")  # a change after the restart reaches the client
        finally:
            other.close()
        assert xs.wait_event(3.0) == (node, b"rt")
        assert xs.read(node) == b"after"
        assert sim.admin("stats")["xenstored_restarts"] == 1
    finally:
        xs.close()
