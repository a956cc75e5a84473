# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""XenstoreClient on the real pyxs, against a small protocol-faithful xenstored on a socket."""

import errno
import os
import select
import shutil
import socket
import tempfile
import threading
import time

import pytest

from ansible_collections.xen.suspend.plugins.module_utils._errors import (
    XenstoreConnectionLost, XenstoreError, XenstoreTimeout, XenstoreUnavailable)
from ansible_collections.xen.suspend.plugins.module_utils._xenstore import (
    PIPELINE_DEPTH, XenstoreClient, default_socket_path, domain_path)
from ansible_collections.xen.suspend.plugins.module_utils._protocol_requests import (
    withdraw_suspend_request)

from fake_xenstored import (
    READ, RESUME, TX_END, WRITE, FakeXenstored, running_fake_xenstored)


@pytest.fixture
def xenstored():
    with running_fake_xenstored() as server:
        yield server


@pytest.fixture
def client(xenstored):
    xs = XenstoreClient(timeout=2.0, socket_path=xenstored.path).connect()
    yield xs
    xs.close()


@pytest.fixture
def impatient_client(xenstored):
    xs = XenstoreClient(timeout=0.3, socket_path=xenstored.path).connect()
    yield xs
    xs.close()


def test_read_write_and_missing_nodes(client, xenstored):
    xenstored.nodes[b"/local/domain/3/name"] = b"web1"
    assert client.read(b"/local/domain/3/name") == b"web1"
    assert client.read(b"/local/domain/3/nothing") is None
    client.write(b"/local/domain/3/control/shutdown", b"suspend")
    assert xenstored.nodes[b"/local/domain/3/control/shutdown"] == b"suspend"
    assert client.round_trips == 3
    assert "unix socket" in client.description


def test_empty_value_write_has_the_wire_format_pyxs_041_cannot_produce(client, xenstored):
    client.write(b"/local/domain/3/control/shutdown", b"")
    assert xenstored.requests[-1] == (WRITE, 0, b"/local/domain/3/control/shutdown\x00")
    assert xenstored.nodes[b"/local/domain/3/control/shutdown"] == b""


def test_watch_events_wake_a_select_loop(client, xenstored):
    path = b"/local/domain/3/control/shutdown"
    client.watch(path, b"tok3")
    readable, _w, _x = select.select([client.fileno()], [], [], 2.0)
    assert readable
    assert client.events_nowait() == [(path, b"tok3", 1)]  # the registration event, first to arrive
    xenstored.guest_write(path, b"")
    event = client.wait_event(2.0)
    assert event == (path, b"tok3")
    client.unwatch(path, b"tok3")
    xenstored.guest_write(path, b"again")
    assert client.wait_event(0.2) is None
    assert client.events_nowait() == []


def test_replies_are_ordered_against_watch_events(client, xenstored):
    """The client knows how many events arrived before each reply: what lets the engine tell its
    own write's event from a guest's answer queued right behind it."""
    path = b"/local/domain/3/control/shutdown"
    client.watch(path, b"tok4")
    assert client.events_before_last_reply is not None
    client.write(path, b"suspend")
    replied_at = client.events_before_last_reply
    xenstored.guest_write(path, b"")  # the guest answers
    deadline = time.monotonic() + 2
    events = []
    while len(events) < 3 and time.monotonic() < deadline:
        events += client.events_nowait()
        time.sleep(0.01)
    arrivals = [arrival for _path, token, arrival in events if token == b"tok4"]
    assert len(arrivals) == 3  # registration, our write, the guest's answer
    assert arrivals[-1] > replied_at  # the answer came after our write's reply
    assert arrivals[0] <= replied_at  # the registration before it


def test_transaction_retries_on_eagain(client, xenstored):
    xenstored.eagain_commits = 2
    path = b"/local/domain/3/control/shutdown"
    xenstored.nodes[path] = b"suspend"
    calls = []

    def body(tx):
        calls.append(tx.tx_id)
        assert tx.read(path) == b"suspend"
        tx.write(path, b"")
        return True, "withdrawn"

    assert client.run_transaction(body) == "withdrawn"
    assert calls == [17, 17, 17]
    ends = [r for r in xenstored.requests if r[0] == TX_END]
    assert ends == [(TX_END, 17, b"T\x00")] * 3
    assert all(r[1] == 17 for r in xenstored.requests if r[0] in (READ, WRITE))
    assert xenstored.nodes[path] == b""


def test_transaction_abort_when_body_declines(client, xenstored):
    assert client.run_transaction(lambda tx: (False, "acked")) == "acked"
    assert xenstored.requests[-1] == (TX_END, 17, b"F\x00")


def test_resume_is_sent_without_pyxs_su_check(client, xenstored):
    client.resume_domain(7)
    assert xenstored.requests[-1] == (RESUME, 0, b"7\x00")


def test_missing_reply_becomes_a_timeout(impatient_client, xenstored):
    xenstored.silent.add(READ)
    start = time.monotonic()
    with pytest.raises(XenstoreTimeout) as caught:
        impatient_client.read(b"/local/domain/3/name")
    assert 0.25 < time.monotonic() - start < 1.5
    assert "read /local/domain/3/name" in str(caught.value)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_dropped_connection_fails_fast_instead_of_hanging(xenstored):
    xs = XenstoreClient(timeout=10.0, socket_path=xenstored.path).connect()
    try:
        xenstored.drop.add(READ)
        start = time.monotonic()
        with pytest.raises(XenstoreConnectionLost):
            xs.read(b"/local/domain/3/name")
        assert time.monotonic() - start < 2.0  # well before the 10 s timeout
        with pytest.raises(XenstoreConnectionLost):
            xs.write(b"/local/domain/3/x", b"1")
        assert not xs.connected
    finally:
        xs.close()


# -- pipelined batches ---------------------------------------------------------------------------

def test_read_many_keeps_requests_outstanding_and_replies_in_order(client, xenstored):
    count = 2 * PIPELINE_DEPTH + 22
    for domid in range(1, count + 1):
        if domid % 10:
            xenstored.nodes[domain_path(domid, "name")] = b"vm%d" % domid
    xenstored.hold_first = PIPELINE_DEPTH  # no reply before a whole window is in
    outcomes = client.read_many([domain_path(domid, "name") for domid in range(1, count + 1)])
    assert [o.value for o in outcomes] == [None if domid % 10 == 0 else b"vm%d" % domid
                                           for domid in range(1, count + 1)]
    assert all(o.ok for o in outcomes)  # a missing node is a value (None), not an error
    assert client.round_trips == count


def test_a_failed_request_does_not_spoil_the_batch(client, xenstored):
    paths = [domain_path(domid, "control/shutdown") for domid in (1, 2, 3)]
    xenstored.path_errors[paths[1]] = b"EACCES"
    outcomes = client.write_many([(path, b"suspend") for path in paths])
    assert [o.ok for o in outcomes] == [True, False, True]
    assert outcomes[1].error.errno == errno.EACCES and "write " + paths[1].decode() in str(outcomes[1].error)
    assert xenstored.nodes[paths[0]] == xenstored.nodes[paths[2]] == b"suspend"
    assert paths[1] not in xenstored.nodes


def test_watch_many_then_write_many_stamp_each_reply_with_the_events_before_it(client, xenstored):
    paths = [domain_path(domid, "control/shutdown") for domid in (1, 2)]
    items = [(path, b"tok%d" % i) for i, path in enumerate(paths)]
    assert all(o.ok for o in client.watch_many(items))
    outcomes = client.write_many([(path, b"suspend") for path in paths])
    # C xenstored order: registration events (2), then per write its event before its reply.
    assert [o.events_before for o in outcomes] == [3, 4]
    events = client.events_nowait()
    assert sorted((path, token) for path, token, _n in events) == sorted(items + items)
    assert all(o.ok for o in client.unwatch_many(items))
    xenstored.guest_write(paths[0], b"")
    assert client.wait_event(0.2) is None


def test_a_missing_reply_ends_the_batch_after_one_timeout(impatient_client, xenstored):
    paths = [domain_path(domid, "name") for domid in range(1, 6)]
    for path in paths:
        xenstored.nodes[path] = b"x"
    xenstored.silent_paths.add(paths[1])
    start = time.monotonic()
    outcomes = impatient_client.read_many(paths)
    assert time.monotonic() - start < 1.0  # one timeout, not one per request
    assert outcomes[0].value == b"x"
    assert isinstance(outcomes[1].error, XenstoreTimeout)
    assert all(o.ok or isinstance(o.error, XenstoreTimeout) for o in outcomes[2:])


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dropped_connection_fails_every_request_of_the_batch(xenstored):
    xs = XenstoreClient(timeout=10.0, socket_path=xenstored.path).connect()
    try:
        xenstored.drop.add(WRITE)
        count = PIPELINE_DEPTH + 10
        start = time.monotonic()
        outcomes = xs.write_many([(domain_path(domid, "control/shutdown"), b"suspend")
                                  for domid in range(1, count + 1)])
        assert time.monotonic() - start < 2.0
        assert not any(o.ok for o in outcomes)
        sent = [o for o in outcomes if isinstance(o.error, XenstoreConnectionLost)]
        unsent = [o for o in outcomes if not isinstance(o.error, XenstoreConnectionLost)]
        assert sent and all("not sent" in str(o.error) for o in unsent)
    finally:
        xs.close()


class _ClosedUnderTheSend(object):
    """A transport whose socket pyxs' Router thread closes (xenstored hung up) right as the
    caller writes."""

    def __init__(self, connection):
        self.connection = connection
        self.real = connection.transport

    def send(self, data):
        self.connection.transport = None
        self.real.close()
        return self.real.send(data)

    def __getattr__(self, name):
        return getattr(self.real, name)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_connection_closed_under_a_send_is_a_lost_connection(client):
    # pyxs' Router thread found xenstored gone and dropped the transport, just before the send
    client._router.connection.transport = None
    with pytest.raises(XenstoreConnectionLost) as caught:
        client.write(domain_path(3, "control/shutdown"), b"suspend")
    assert "closed while sending" in str(caught.value)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_socket_closed_during_a_send_is_a_lost_connection(client):
    connection = client._router.connection
    connection.transport = _ClosedUnderTheSend(connection)
    with pytest.raises(XenstoreConnectionLost) as caught:
        client.write(domain_path(3, "control/shutdown"), b"suspend")
    assert "send failed" in str(caught.value) or "closed while sending" in str(caught.value)


def test_error_names_map_to_errno_or_stay_named(client, xenstored):
    xenstored.errors[WRITE] = b"EACCES"
    with pytest.raises(XenstoreError) as caught:
        client.write(b"/local/domain/3/x", b"1")
    assert caught.value.errno == errno.EACCES
    xenstored.errors[WRITE] = b"EQUOTA"  # oxenstored's non-errno error
    with pytest.raises(XenstoreError) as caught:
        client.write(b"/local/domain/3/x", b"1")
    assert caught.value.errno is None and caught.value.error_name == "EQUOTA"


@pytest.mark.parametrize("path", [b"relative", b"/a//b", b"/a/../b", b"/a\n", b"/a b", "/str"])
def test_bad_paths_are_refused_locally(client, path):
    with pytest.raises(ValueError):
        client.read(path)


def test_bad_values_are_refused_locally(client):
    with pytest.raises(ValueError):
        client.write(b"/a", b"\x00oops")


def test_socket_path_resolution():
    assert default_socket_path({"XENSTORED_PATH": "/x/sock"}) == "/x/sock"
    assert default_socket_path({"XENSTORED_RUNDIR": "/r"}) == "/r/socket"
    assert default_socket_path({}) == "/var/run/xenstored/socket"


def test_environment_socket_is_honoured(xenstored):
    xs = XenstoreClient(timeout=1.0, environ={"XENSTORED_PATH": xenstored.path}).connect()
    try:
        xs.write(b"/k", b"v")
        assert xenstored.nodes[b"/k"] == b"v"
    finally:
        xs.close()


def test_no_socket_and_no_xenbus_is_a_clear_error(tmp_path):
    xs = XenstoreClient(timeout=1.0, socket_path=str(tmp_path / "nosock"),
                        xenbus_path=str(tmp_path / "noxenbus"))
    with pytest.raises(XenstoreError) as caught:
        xs.connect()
    assert "no xenstored socket" in str(caught.value)
    xs.close()


def test_domain_path():
    assert domain_path(3) == b"/local/domain/3"
    assert domain_path(3, "control/shutdown") == b"/local/domain/3/control/shutdown"


# -- dead connections, send deadline, reconnect ----------------------------------------------------

def _wait_until(predicate, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(0.01)


class _Once(set):
    """A FakeXenstored.drop whose ops drop the connection once each."""

    def __contains__(self, op):
        if set.__contains__(self, op):
            self.discard(op)
            return True
        return False


class _StallingXenstored(FakeXenstored):
    """A xenstored that stops working while ``going`` is clear (its requests queue up), then
    answers all of them, in order, once it is set again."""

    def __init__(self, path):
        self.going = threading.Event()
        self.going.set()
        FakeXenstored.__init__(self, path)

    def _handle(self, conn, op, rq, tx, payload):
        self.going.wait()
        FakeXenstored._handle(self, conn, op, rq, tx, payload)

    def close(self):
        self.going.set()
        FakeXenstored.close(self)


class _DeafXenstored(object):
    """Accepts connections and never reads from them."""

    def __init__(self, path):
        self.path = path
        self.connections = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(4)
        thread = threading.Thread(target=self._accept)
        thread.daemon = True
        thread.start()

    def _accept(self):
        while True:
            try:
                self.connections.append(self.server.accept()[0])
            except OSError:
                return

    def close(self):
        self.server.close()
        for conn in self.connections:
            conn.close()


@pytest.fixture
def socket_dir():
    directory = tempfile.mkdtemp(prefix="xs", dir="/tmp")  # short: AF_UNIX paths are limited
    servers = []
    yield directory, servers
    for server in servers:
        server.close()
    shutil.rmtree(directory, True)


def _hang_up(server):
    """xenstored closes every client connection (keeps listening)."""
    for conn in server.connections:
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def test_a_xenstored_that_stops_answering_costs_one_timeout_then_requests_fail_fast(xenstored):
    xs = XenstoreClient(timeout=1.0, socket_path=xenstored.path).connect()
    try:
        xenstored.nodes[b"/local/domain/3/name"] = b"web1"
        assert xs.read(b"/local/domain/3/name") == b"web1"
        xenstored.silent.update(range(1, 32))  # no reply to anything from now on
        start = time.monotonic()
        with pytest.raises(XenstoreTimeout):
            xs.read(b"/local/domain/3/name")
        assert time.monotonic() - start < 5.0  # the timeout plus the probe's (1 s each)
        assert xenstored.requests[-1] == (1, 0, b"/\x00")  # the probe: XS_DIRECTORY /
        assert "no reply to read /local/domain/3/name" in xs.dead
        assert not xs.connected
        sent = len(xenstored.requests)
        count = 10
        start = time.monotonic()
        for domid in range(count):
            with pytest.raises(XenstoreUnavailable) as caught:
                xs.write(domain_path(domid, "control/shutdown"), b"suspend")
            assert xenstored.path in str(caught.value) and "no reply to read" in str(caught.value)
            assert isinstance(caught.value, XenstoreConnectionLost)
        outcomes = xs.read_many([domain_path(domid, "name") for domid in range(count)])
        assert all(isinstance(o.error, XenstoreUnavailable) for o in outcomes)
        assert time.monotonic() - start < 0.5 * count * xs.timeout  # not a timeout each
        assert len(xenstored.requests) == sent  # none of them was sent
    finally:
        xs.close()


def test_one_unanswered_request_does_not_condemn_the_connection(impatient_client, xenstored):
    xenstored.nodes[b"/local/domain/4/name"] = b"db"
    xenstored.silent_paths.add(b"/local/domain/3/name")
    with pytest.raises(XenstoreTimeout):
        impatient_client.read(b"/local/domain/3/name")
    assert xenstored.requests[-1][0] == 1  # probed, and the probe was answered
    assert impatient_client.dead is None and impatient_client.connected
    assert impatient_client.read(b"/local/domain/4/name") == b"db"


def test_a_late_reply_to_the_probe_revives_the_connection(socket_dir):
    directory, servers = socket_dir
    server = _StallingXenstored(os.path.join(directory, "socket"))
    servers.append(server)
    server.nodes[b"/k"] = b"v"
    xs = XenstoreClient(timeout=0.5, socket_path=server.path).connect()
    try:
        server.going.clear()  # xenstored stalls
        with pytest.raises(XenstoreTimeout):
            xs.read(b"/k")
        assert xs.dead
        with pytest.raises(XenstoreUnavailable):
            xs.read(b"/k")
        server.going.set()  # ... and gets going again: the read, then the probe are answered
        _wait_until(lambda: server.requests and server.requests[-1][0] == 1, what="the probe")
        deadline = time.monotonic() + 5
        while True:
            try:
                assert xs.read(b"/k") == b"v"
                break
            except XenstoreUnavailable:  # the probe's reply is on its way
                assert time.monotonic() < deadline
                time.sleep(0.02)
        assert xs.dead is None and xs.reconnects == 0
    finally:
        xs.close()


def test_a_send_to_a_xenstored_that_does_not_read_gives_up_at_the_timeout(socket_dir):
    directory, servers = socket_dir
    server = _DeafXenstored(os.path.join(directory, "socket"))
    servers.append(server)
    xs = XenstoreClient(timeout=0.5, socket_path=server.path).connect()
    try:
        transport = xs._router.connection.transport
        transport.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # fills up fast
        results = []
        items = [(domain_path(domid, "data"), b"x" * 4000) for domid in range(1, 200)]
        worker = threading.Thread(target=lambda: results.append(xs.write_many(items)))
        worker.daemon = True
        start = time.monotonic()
        worker.start()
        worker.join(10.0)
        assert not worker.is_alive(), "the send blocked"
        assert time.monotonic() - start < 3.0
        outcomes = results[0]
        assert not any(o.ok for o in outcomes)
        stalled = [o.error for o in outcomes if "not reading its socket" in str(o.error)
                   and "broke off" not in str(o.error)]
        assert len(stalled) == 1 and isinstance(stalled[0], XenstoreTimeout)
        assert "data: not sent within 0.5 s" in str(stalled[0])
        assert "did not read its socket" in xs.dead
        start = time.monotonic()
        with pytest.raises(XenstoreUnavailable) as caught:
            xs.write(domain_path(1, "x"), b"1")
        assert time.monotonic() - start < 1.0
        assert server.path in str(caught.value)
    finally:
        xs.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_reconnects_after_a_xenstored_restart_and_registers_the_watches_again(socket_dir):
    directory, servers = socket_dir
    path = os.path.join(directory, "socket")
    first = FakeXenstored(path)
    servers.append(first)
    xs = XenstoreClient(timeout=2.0, socket_path=path).connect()
    try:
        watched = domain_path(3, "control/shutdown")
        xs.watch(watched, b"tok3")
        assert xs.wait_event(2.0) == (watched, b"tok3")  # the registration's event
        _hang_up(first)  # xenstored goes away ...
        first.close()
        os.unlink(path)
        _wait_until(lambda: not xs.connected, what="the client to see the connection go")
        assert not xs.take_reconnect()
        restarted = []

        def come_back():  # ... and is back 0.3 s later
            restarted.append(FakeXenstored(path))
            servers.append(restarted[0])
            restarted[0].nodes[b"/local/domain/3/name"] = b"web1"

        timer = threading.Timer(0.3, come_back)
        timer.start()
        start = time.monotonic()
        assert xs.read(b"/local/domain/3/name") == b"web1"
        assert 0.2 < time.monotonic() - start < 2.0
        assert xs.reconnects == 1 and xs.connected and xs.dead is None
        assert xs.take_reconnect() and not xs.take_reconnect()
        assert [watch[:2] for watch in restarted[0].watches] == [(watched, b"tok3")]
        assert xs.watches == frozenset([(watched, b"tok3")])
        assert xs.wait_event(2.0) == (watched, b"tok3")  # registered again: it fires once
        restarted[0].guest_write(watched, b"")  # a change after the restart reaches the client
        assert xs.wait_event(2.0) == (watched, b"tok3")
        xs.unwatch(watched, b"tok3")
        assert restarted[0].watches == [] and xs.watches == frozenset()
    finally:
        xs.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_write_in_flight_when_the_connection_drops_is_not_sent_again(xenstored):
    xs = XenstoreClient(timeout=2.0, socket_path=xenstored.path).connect()
    try:
        path = domain_path(3, "control/shutdown")
        xenstored.drop = _Once([WRITE])  # xenstored hangs up on the write, then takes us back
        with pytest.raises(XenstoreConnectionLost) as caught:
            xs.write(path, b"suspend")
        assert not isinstance(caught.value, XenstoreUnavailable)
        assert "may or may not have been carried out" in str(caught.value)
        assert [r for r in xenstored.requests if r[0] == WRITE] == [(WRITE, 0, path + b"\x00suspend")]
        assert xs.reconnects == 1 and xs.connected  # later requests go over the new connection
        xs.write(path, b"again")
        assert xenstored.nodes[path] == b"again"
    finally:
        xs.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_read_in_flight_when_the_connection_drops_is_sent_again_once(xenstored):
    xs = XenstoreClient(timeout=2.0, socket_path=xenstored.path).connect()
    try:
        xenstored.nodes[b"/local/domain/3/name"] = b"web1"
        xenstored.drop = _Once([READ])
        assert xs.read(b"/local/domain/3/name") == b"web1"
        assert len([r for r in xenstored.requests if r[0] == READ]) == 2
        assert xs.reconnects == 1 and xs.take_reconnect()
    finally:
        xs.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_batch_goes_on_over_the_new_connection(xenstored):
    xs = XenstoreClient(timeout=2.0, socket_path=xenstored.path).connect()
    try:
        paths = [domain_path(domid, "name") for domid in range(1, 2 * PIPELINE_DEPTH + 1)]
        for path in paths:
            xenstored.nodes[path] = path
        xenstored.drop = _Once([READ])
        outcomes = xs.read_many(paths)
        assert [o.value for o in outcomes] == paths
        assert xs.reconnects == 1
        writes = [(domain_path(domid, "control/shutdown"), b"suspend") for domid in (1, 2, 3)]
        xenstored.drop = _Once([WRITE])
        outcomes = xs.write_many(writes)
        assert isinstance(outcomes[0].error, XenstoreConnectionLost)  # in flight: may have been done
        assert "may or may not have been carried out" in str(outcomes[0].error)
        # the others were in flight too (lost), or not sent yet (sent over the new connection)
        assert all(o.ok or (isinstance(o.error, XenstoreConnectionLost)
                            and not isinstance(o.error, XenstoreUnavailable)) for o in outcomes)
        received = [r[2] for r in xenstored.requests if r[0] == WRITE]
        for (path, value), outcome in zip(writes, outcomes):
            count = received.count(path + b"\x00" + value)
            assert count <= 1  # never sent twice
            assert count == 1 or not outcome.ok
        assert xs.reconnects == 2 and xs.connected
    finally:
        xs.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_connection_lost_again_right_after_reconnecting_is_judged_dead(xenstored):
    xs = XenstoreClient(timeout=2.0, socket_path=xenstored.path).connect()
    try:
        xenstored.drop.add(READ)  # every read hangs up
        with pytest.raises(XenstoreConnectionLost):
            xs.read(b"/local/domain/3/name")
        assert len([r for r in xenstored.requests if r[0] == READ]) == 2  # sent again once
        assert xs.reconnects == 1 and "again" in xs.dead
        start = time.monotonic()
        with pytest.raises(XenstoreUnavailable):
            xs.write(b"/local/domain/3/x", b"1")
        assert time.monotonic() - start < 1.0
        xenstored.drop.clear()
        xs.reconnect()  # the way back, on request
        xs.write(b"/local/domain/3/x", b"1")
        assert xs.reconnects == 2 and xs.dead is None
    finally:
        xs.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_requests_fail_fast_when_xenstored_does_not_come_back(socket_dir):
    directory, servers = socket_dir
    path = os.path.join(directory, "socket")
    server = FakeXenstored(path)
    servers.append(server)
    xs = XenstoreClient(timeout=0.5, socket_path=path).connect()
    try:
        # (closed before the hang-up: a client reconnecting in between stayed connected)
        server.close()
        os.unlink(path)
        _hang_up(server)
        _wait_until(lambda: not xs.connected, timeout=30.0,
                    what="the client to see the connection go")
        start = time.monotonic()
        with pytest.raises(XenstoreUnavailable) as caught:
            xs.read(b"/local/domain/3/name")
        assert time.monotonic() - start < 4 * xs.timeout  # reconnect attempts, bounded
        assert path in str(caught.value) and "no new connection" in str(caught.value)
        count = 10
        start = time.monotonic()
        for domid in range(count):
            with pytest.raises(XenstoreUnavailable):
                xs.write(domain_path(domid, "control/shutdown"), b"suspend")
        assert time.monotonic() - start < 0.5 * count * xs.timeout
        servers.append(FakeXenstored(path))
        xs.reconnect()
        xs.write(b"/k", b"v")
        assert servers[-1].nodes[b"/k"] == b"v" and xs.reconnects == 1
    finally:
        xs.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_transaction_does_not_survive_a_reconnect(xenstored):
    xs = XenstoreClient(timeout=2.0, socket_path=xenstored.path).connect()
    try:
        tx_id = xs.transaction_start()
        _hang_up(xenstored)
        _wait_until(lambda: not xs.connected, what="the client to see the connection go")
        assert xs.read(b"/local/domain/3/name") is None  # reconnects
        sent = len(xenstored.requests)
        with pytest.raises(XenstoreConnectionLost) as caught:
            xs.read(b"/local/domain/3/name", tx_id=tx_id)
        assert "transaction %d was lost" % tx_id in str(caught.value)
        assert len(xenstored.requests) == sent
        xenstored.nodes[b"/local/domain/3/control/shutdown"] = b"suspend"
        assert withdraw_suspend_request(xs, 3) is True  # a new transaction works
    finally:
        xs.close()


class _CountingTransport(object):
    """Counts the writes the client makes on the connection's socket."""

    def __init__(self, real):
        self.real = real
        self.writes = []

    def send(self, data):
        self.writes.append(len(data))
        return self.real.send(data)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_a_batch_goes_out_many_requests_per_write(client, xenstored):
    count = 4 * PIPELINE_DEPTH
    for domid in range(1, count + 1):
        xenstored.nodes[domain_path(domid, "name")] = b"vm%d" % domid
    counting = client._router.connection.transport = _CountingTransport(client._router.connection.transport)
    outcomes = client.read_many([domain_path(domid, "name") for domid in range(1, count + 1)])
    assert [o.value for o in outcomes] == [b"vm%d" % domid for domid in range(1, count + 1)]
    # pyxs alone: two writes per request (header, payload); here a write per window refill
    assert len(counting.writes) <= count // (PIPELINE_DEPTH // 2) + 1
    assert client.round_trips == count
    client.write(domain_path(1, "name"), b"x")  # a single request: one write, header and payload
    assert len(counting.writes) <= count // (PIPELINE_DEPTH // 2) + 2


class _DribblingXenstored(object):
    """Answers every read with its path, one byte per send(): the client's reader must put
    packets together from any split (and several packets from one read)."""

    def __init__(self, path):
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(1)
        self.thread = threading.Thread(target=self._serve)
        self.thread.daemon = True
        self.thread.start()

    def _serve(self):
        import struct
        conn, _addr = self.listener.accept()
        buffer = b""
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
                while len(buffer) >= 16:
                    op, rq_id, tx_id, size = struct.unpack("=IIII", buffer[:16])
                    if len(buffer) < 16 + size:
                        break
                    payload, buffer = buffer[16:16 + size], buffer[16 + size:]
                    reply = struct.pack("=IIII", op, rq_id, tx_id, size) + payload
                    for index in range(len(reply)):
                        conn.sendall(reply[index:index + 1])

    def close(self):
        self.listener.close()


def test_replies_split_anywhere_are_put_together(socket_dir):
    directory, _servers = socket_dir
    server = _DribblingXenstored(os.path.join(directory, "socket"))
    xs = XenstoreClient(timeout=5.0, socket_path=server.path).connect()
    try:
        paths = [domain_path(domid, "name") for domid in range(1, 40)]
        outcomes = xs.read_many(paths)
        assert [o.value for o in outcomes] == paths  # (the server echoes the path)
    finally:
        xs.close()
        server.close()


def test_one_wake_up_byte_however_many_events(client, xenstored):
    path = domain_path(1, "control/shutdown")
    client.watch(path, b"tok")
    for value in (b"a", b"b", b"c"):
        xenstored.guest_write(path, value)
    deadline = time.monotonic() + 2.0
    while client.events.arrivals < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert os.read(client.fileno(), 4096) == b"w"  # four events, one byte
    assert len(client.events_nowait()) == 4
    xenstored.guest_write(path, b"d")  # after the reader took them, an event wakes it again
    assert select.select([client.fileno()], [], [], 2.0)[0] == [client.fileno()]
    assert [event[:2] for event in client.events_nowait()] == [(path, b"tok")]
