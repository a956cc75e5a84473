"""Watch registry and event routing.

A watch on P fires for changes to P or any descendant of P (C xenstored's
``is_child``), with the changed node's path in the event.  When a subtree is
removed, watches registered on removed descendants fire too, with their own
path.  Special watches (``@releaseDomain``, ``@introduceDomain``) fire only
on exact match.  Unprivileged watchers only see events for nodes they may
read.  Watches are indexed by absolute path, so a change costs one dict
lookup per path component, however many watches exist.
"""

import errno

from .store import PERM_READ, parent_of
from .xswire import XsError


class Watch:
    __slots__ = ("conn", "path", "abspath", "token", "relprefix")

    def __init__(self, conn, path, abspath, token, relprefix):
        self.conn = conn
        self.path = path          # as the client gave it
        self.abspath = abspath    # canonical absolute path (or @special)
        self.token = token        # bytes
        self.relprefix = relprefix  # "/local/domain/N/" for relative watches


class WatchManager:
    """``conn`` objects must provide ``ident`` (store.Ident) and
    ``deliver_watch(watch, path_str)``."""

    def __init__(self):
        self.index = {}
        self.by_conn = {}
        self.events_fired = 0

    def add(self, conn, path, abspath, token, relprefix=None):
        mine = self.by_conn.setdefault(conn, [])
        for w in mine:
            if w.path == path and w.token == token:
                raise XsError(errno.EEXIST)
        w = Watch(conn, path, abspath, token, relprefix)
        mine.append(w)
        self.index.setdefault(abspath, []).append(w)
        return w

    def remove(self, conn, path, token):
        mine = self.by_conn.get(conn, [])
        for w in mine:
            if w.path == path and w.token == token:
                mine.remove(w)
                self._unindex(w)
                return
        raise XsError(errno.ENOENT)

    def remove_conn(self, conn):
        for w in self.by_conn.pop(conn, []):
            self._unindex(w)

    def _unindex(self, w):
        lst = self.index.get(w.abspath)
        if lst is not None:
            lst.remove(w)
            if not lst:
                del self.index[w.abspath]

    def count(self, conn=None):
        if conn is None:
            return sum(len(v) for v in self.by_conn.values())
        return len(self.by_conn.get(conn, ()))

    # -- firing -----------------------------------------------------------
    def _send(self, w, path, perms):
        ident = w.conn.ident
        if perms is not None and not ident.privileged and not ident.access(perms) & PERM_READ:
            return
        if w.relprefix is not None and path.startswith(w.relprefix):
            path = path[len(w.relprefix):]
        self.events_fired += 1
        w.conn.deliver_watch(w, path)

    def fire_changes(self, changes):
        index = self.index
        if not index:
            return
        for path, perms, removed in changes:
            p = path
            while True:
                lst = index.get(p)
                if lst:
                    for w in list(lst):
                        self._send(w, path, perms)
                if p == "/":
                    break
                p = parent_of(p)
            for rpath, rperms in removed:
                lst = index.get(rpath)
                if lst:
                    for w in list(lst):
                        self._send(w, rpath, rperms)

    def fire_special(self, name, perms):
        for w in list(self.index.get(name, ())):
            self._send(w, name, perms)
