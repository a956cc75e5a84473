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
import struct
import tempfile
import threading
import time

import pytest

from ansible_collections.xen.suspend.plugins.module_utils._errors import (
    XenstoreConnectionLost, XenstoreError, XenstoreTimeout)
from ansible_collections.xen.suspend.plugins.module_utils._xenstore import (
    XenstoreClient, default_socket_path, domain_path)

HEADER = struct.Struct("IIII")
READ, WATCH, UNWATCH, TX_START, TX_END, WRITE, RM, WATCH_EVENT, ERROR, RESUME = (
    2, 4, 5, 6, 7, 11, 13, 15, 16, 18)


class FakeXenstored(object):
    """Enough of xenstored for the client: nodes, watches (reply first, then the initial
    event, as C xenstored does), transactions with injectable EAGAIN, and misbehaviour."""

    def __init__(self, path):
        self.path = path
        self.nodes = {}
        self.watches = []
        self.requests = []
        self.silent = set()
        self.drop = set()
        self.errors = {}
        self.eagain_commits = 0
        self.ack_before_fire = False
        self.pending = {}
        self.lock = threading.Lock()
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(4)
        self.connections = []
        self.thread = threading.Thread(target=self._accept)
        self.thread.daemon = True
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, _addr = self.server.accept()
            except OSError:
                return
            self.connections.append(conn)
            worker = threading.Thread(target=self._serve, args=(conn,))
            worker.daemon = True
            worker.start()

    @staticmethod
    def _recv(conn, size):
        data = b""
        while len(data) < size:
            chunk = conn.recv(size - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def _send(self, conn, op, rq, tx, payload):
        conn.sendall(HEADER.pack(op, rq, tx, len(payload)) + payload)

    def _serve(self, conn):
        try:
            while True:
                op, rq, tx, size = HEADER.unpack(self._recv(conn, HEADER.size))
                payload = self._recv(conn, size) if size else b""
                with self.lock:
                    self.requests.append((op, tx, payload))
                if op in self.drop:
                    conn.shutdown(socket.SHUT_RDWR)
                    conn.close()
                    return
                if op in self.silent:
                    continue
                self._handle(conn, op, rq, tx, payload)
        except (EOFError, OSError):
            return

    def _handle(self, conn, op, rq, tx, payload):
        parts = payload.split(b"\x00")
        if op in self.errors:
            self._send(conn, ERROR, rq, tx, self.errors[op] + b"\x00")
        elif op == READ:
            view = dict(self.nodes, **self.pending.get(tx, {})) if tx else self.nodes
            if parts[0] in view:
                self._send(conn, READ, rq, tx, view[parts[0]])
            else:
                self._send(conn, ERROR, rq, tx, b"ENOENT\x00")
        elif op == WRITE:
            path, _sep, value = payload.partition(b"\x00")
            if tx:
                self.pending.setdefault(tx, {})[path] = value
                self._send(conn, WRITE, rq, tx, b"OK\x00")
                return
            self.nodes[path] = value
            if self.ack_before_fire:  # oxenstored
                self._send(conn, WRITE, rq, tx, b"OK\x00")
                self._fire(path)
            else:  # C xenstored: fire_watches() then send_ack()
                self._fire(path)
                self._send(conn, WRITE, rq, tx, b"OK\x00")
        elif op == RM:
            self.nodes.pop(parts[0], None)
            self._send(conn, RM, rq, tx, b"OK\x00")
            self._fire(parts[0])
        elif op == WATCH:
            self.watches.append((parts[0], parts[1], conn))
            self._send(conn, WATCH, rq, tx, b"OK\x00")
            self._send(conn, WATCH_EVENT, 0, 0, parts[0] + b"\x00" + parts[1] + b"\x00")
        elif op == UNWATCH:
            self.watches = [w for w in self.watches if w[:2] != (parts[0], parts[1])]
            self._send(conn, UNWATCH, rq, tx, b"OK\x00")
        elif op == TX_START:
            self._send(conn, TX_START, rq, tx, b"17\x00")
        elif op == TX_END:
            writes = self.pending.pop(tx, {})
            if parts[0] == b"T" and self.eagain_commits:
                self.eagain_commits -= 1
                self._send(conn, ERROR, rq, tx, b"EAGAIN\x00")
                return
            if parts[0] == b"T":
                for path, value in writes.items():
                    self.nodes[path] = value
                    self._fire(path)
            self._send(conn, TX_END, rq, tx, b"OK\x00")
        elif op == RESUME:
            self._send(conn, RESUME, rq, tx, b"OK\x00")
        else:
            self._send(conn, ERROR, rq, tx, b"ENOSYS\x00")

    def _fire(self, path):
        for wpath, token, conn in list(self.watches):
            if path == wpath or path.startswith(wpath + b"/"):
                self._send(conn, WATCH_EVENT, 0, 0, path + b"\x00" + token + b"\x00")

    def guest_write(self, path, value):
        with self.lock:
            self.nodes[path] = value
            self._fire(path)

    def close(self):
        self.server.close()
        for conn in self.connections:
            try:
                conn.close()
            except OSError:
                pass


@pytest.fixture
def xenstored():
    directory = tempfile.mkdtemp(prefix="xs", dir="/tmp")  # short: AF_UNIX paths are limited
    server = FakeXenstored(os.path.join(directory, "socket"))
    yield server
    server.close()
    shutil.rmtree(directory, True)


@pytest.fixture
def client(xenstored):
    xs = XenstoreClient(timeout=2.0, socket_path=xenstored.path).connect()
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
    assert client.events_nowait() == [(path, b"tok3")]  # the registration event
    xenstored.guest_write(path, b"")
    event = client.wait_event(2.0)
    assert event == (path, b"tok3")
    client.unwatch(path, b"tok3")
    xenstored.guest_write(path, b"again")
    assert client.wait_event(0.2) is None
    assert client.events_nowait() == []


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


def test_missing_reply_becomes_a_timeout(xenstored):
    xs = XenstoreClient(timeout=0.3, socket_path=xenstored.path).connect()
    try:
        xenstored.silent.add(READ)
        start = time.monotonic()
        with pytest.raises(XenstoreTimeout) as caught:
            xs.read(b"/local/domain/3/name")
        assert 0.25 < time.monotonic() - start < 1.5
        assert "read /local/domain/3/name" in str(caught.value)
    finally:
        xs.close()


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
