# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A small protocol-faithful xenstored on a Unix socket, for tests of the real pyxs client."""

import contextlib
import os
import shutil
import socket
import struct
import tempfile
import threading

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
        self.silent_paths = set()
        self.drop = set()
        self.errors = {}
        self.path_errors = {}
        self.hold_first = 0
        self.eagain_commits = 0
        self.ack_before_fire = False
        self.pending = {}
        self.lock = threading.Lock()
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(4)
        self.connections = []
        self.closed = False
        self.thread = threading.Thread(target=self._accept)
        self.thread.daemon = True
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, _addr = self.server.accept()
            except OSError:
                return
            with self.lock:
                # a connection the kernel queued before close() but accept() returned only
                # after it: close() never saw it, so it is hung up here (the client would
                # otherwise stay connected to a server that is gone)
                if self.closed:
                    self._hang_up_quietly(conn)
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
        held = []
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
                if op in self.silent or payload.split(b"\x00")[0] in self.silent_paths:
                    continue
                if self.hold_first:
                    # Answer nothing until this many requests are in: a client waiting for
                    # each reply before sending the next would never get one.
                    held.append((op, rq, tx, payload))
                    if len(held) < self.hold_first:
                        continue
                    self.hold_first = 0
                    for request in held:
                        self._handle(conn, *request)
                    continue
                self._handle(conn, op, rq, tx, payload)
        except (EOFError, OSError):
            return

    def _handle(self, conn, op, rq, tx, payload):
        parts = payload.split(b"\x00")
        if op in self.errors:
            self._send(conn, ERROR, rq, tx, self.errors[op] + b"\x00")
        elif parts[0] in self.path_errors:
            self._send(conn, ERROR, rq, tx, self.path_errors[parts[0]] + b"\x00")
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
        # shutdown first: a bare close() wakes neither the accept() blocked in our thread (a
        # client reconnecting meanwhile would still be accepted) nor the client of a connection
        # whose serving thread sits in recv() (no FIN is sent while it holds the socket)
        with self.lock:
            self.closed = True
            sockets = [self.server] + list(self.connections)
        for sock in sockets:
            self._hang_up_quietly(sock)

    @staticmethod
    def _hang_up_quietly(sock):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            sock.close()
        except OSError:
            pass


@contextlib.contextmanager
def running_fake_xenstored():
    """A FakeXenstored on a socket in a fresh short directory (AF_UNIX paths are limited)."""
    directory = tempfile.mkdtemp(prefix="xs", dir="/tmp")
    server = FakeXenstored(os.path.join(directory, "socket"))
    try:
        yield server
    finally:
        server.close()
        shutil.rmtree(directory, True)
