"""The xenstore tree: nodes, permissions, transactions.

Nodes are immutable; every modification copies the path from the root to the
changed node ("path copying").  That makes a transaction snapshot O(1): a
transaction simply keeps its own root.  Each node carries a generation number
that changes when its value, permissions or set of children change (as in C
xenstored).  A transaction remembers the generation of every node it touched
(read or written, including absent ones) as seen in its snapshot; commit fails
with EAGAIN if any of them differs in the live tree, otherwise the
transaction's operations are replayed on the live tree, which fires watches.

Permissions follow docs/misc/xenstore.txt and C xenstored: the first entry
names the owner (full access) and gives the default for everybody else; later
entries override per domain.  Privileged identities (dom0) have full access.
Nodes created by an unprivileged domain inherit the parent's permissions with
that domain as owner.
"""

import errno
import itertools
from collections import Counter

from .xswire import XsError

PERM_READ = 1
PERM_WRITE = 2
_LETTERS = {"n": 0, "r": PERM_READ, "w": PERM_WRITE, "b": PERM_READ | PERM_WRITE}

SPECIAL_PATHS = ("@releaseDomain", "@introduceDomain")


class Ident:
    """Who is asking: a domid and whether it is privileged (dom0)."""

    __slots__ = ("domid", "privileged", "target")

    def __init__(self, domid=0, privileged=None, target=None):
        self.domid = domid
        self.privileged = (domid == 0) if privileged is None else privileged
        self.target = target

    @property
    def dompath(self):
        return "/local/domain/%d" % self.domid

    def access(self, perms):
        if self.privileged:
            return PERM_READ | PERM_WRITE
        owner_letter, owner = perms[0]
        if owner == self.domid or (self.target is not None and owner == self.target):
            return PERM_READ | PERM_WRITE
        for letter, domid in perms[1:]:
            if domid == self.domid:
                return _LETTERS[letter]
        return _LETTERS[owner_letter]

    def owns(self, perms):
        owner = perms[0][1]
        return self.privileged or owner == self.domid or (self.target is not None and owner == self.target)

    def __repr__(self):
        return "Ident(%d%s)" % (self.domid, ",priv" if self.privileged else "")


DOM0 = Ident(0, True)


def parse_perms(items):
    """[b"n0", b"r5"] -> (("n", 0), ("r", 5)); EINVAL on malformed entries."""
    out = []
    for it in items:
        if isinstance(it, bytes):
            try:
                it = it.decode("ascii")
            except UnicodeDecodeError:
                raise XsError(errno.EINVAL)
        if len(it) < 2 or it[0] not in _LETTERS or not it[1:].isdigit():
            raise XsError(errno.EINVAL)
        domid = int(it[1:])
        if domid > 0xFFFF:
            raise XsError(errno.EINVAL)
        out.append((it[0], domid))
    if not out:
        raise XsError(errno.EINVAL)
    return tuple(out)


def format_perms(perms):
    return ["%s%d" % p for p in perms]


class Node:
    __slots__ = ("value", "perms", "children", "gen")

    def __init__(self, value, perms, children, gen):
        self.value = value
        self.perms = perms
        self.children = children
        self.gen = gen


def _comps(path):
    return [] if path == "/" else path[1:].split("/")


def parent_of(path):
    i = path.rfind("/")
    return "/" if i <= 0 else path[:i]


def lookup(root, path):
    n = root
    if path == "/":
        return n
    for c in path[1:].split("/"):
        n = n.children.get(c)
        if n is None:
            return None
    return n


def _replace(root, path, node, gen):
    """Return a new root with ``node`` at ``path`` (None deletes it).  The
    parent must exist.  The parent's generation changes only when its set of
    children changes."""
    comps = _comps(path)
    if not comps:
        return node
    chain = [root]
    n = root
    for c in comps[:-1]:
        n = n.children[c]
        chain.append(n)
    name = comps[-1]
    parent = chain[-1]
    ch = dict(parent.children)
    if node is None:
        ch.pop(name, None)
        pgen = gen
    else:
        pgen = parent.gen if name in ch else gen
        ch[name] = node
    new = Node(parent.value, parent.perms, ch, pgen)
    for i in range(len(comps) - 2, -1, -1):
        p = chain[i]
        ch = dict(p.children)
        ch[comps[i]] = new
        new = Node(p.value, p.perms, ch, p.gen)
    return new


def walk(node, path):
    """Yield (path, node) for node and all descendants, parents first."""
    stack = [(path, node)]
    while stack:
        p, n = stack.pop()
        yield p, n
        base = "" if p == "/" else p
        for name, child in n.children.items():
            stack.append((base + "/" + name, child))


class Transaction:
    __slots__ = ("id", "ident", "owner", "base", "root", "touched", "log")

    def __init__(self, txid, ident, owner, root):
        self.id = txid
        self.ident = ident
        self.owner = owner
        self.base = root
        self.root = root
        self.touched = {}
        self.log = []


class Store:
    """The tree plus the operations xenstored performs on it.

    ``listener(changes)`` is called after every live modification with a list
    of ``(path, perms, removed)`` tuples: ``path`` is the changed node,
    ``perms`` its permissions (before removal, for RM), ``removed`` a list of
    ``(path, perms)`` of deleted descendants (RM only, else empty).
    """

    def __init__(self, node_quota=1000):
        self._gen = itertools.count(1)
        self.root = Node(b"", (("n", 0),), {}, next(self._gen))
        self.listener = None
        self.special_perms = {p: (("n", 0),) for p in SPECIAL_PATHS}
        self.owner_counts = Counter({0: 1})
        self.node_quota = node_quota
        self._txids = itertools.count(1)
        self.transactions = {}
        self.stats = Counter()

    # -- plumbing ---------------------------------------------------------
    def _emit(self, changes):
        if self.listener is not None and changes:
            self.listener(changes)

    def _touch(self, tx, path):
        if path not in tx.touched:
            n = lookup(tx.base, path)
            tx.touched[path] = n.gen if n is not None else None

    def _get(self, tx, path):
        if tx is None:
            return lookup(self.root, path)
        self._touch(tx, path)
        return lookup(tx.root, path)

    def _put(self, tx, path, node, membership_change):
        gen = next(self._gen)
        if tx is None:
            self.root = _replace(self.root, path, node, gen)
        else:
            self._touch(tx, path)
            if membership_change and path != "/":
                self._touch(tx, parent_of(path))
            tx.root = _replace(tx.root, path, node, gen)

    @staticmethod
    def _need(ident, node, perm):
        if not ident.access(node.perms) & perm:
            raise XsError(errno.EACCES)

    # -- operations -------------------------------------------------------
    def read(self, ident, path, tx=None):
        n = self._get(tx, path)
        if n is None:
            raise XsError(errno.ENOENT)
        self._need(ident, n, PERM_READ)
        return n.value

    def exists(self, path):
        return lookup(self.root, path) is not None

    def directory(self, ident, path, tx=None):
        n = self._get(tx, path)
        if n is None:
            raise XsError(errno.ENOENT)
        self._need(ident, n, PERM_READ)
        return list(n.children)

    def node_gen(self, ident, path, tx=None):
        n = self._get(tx, path)
        if n is None:
            raise XsError(errno.ENOENT)
        self._need(ident, n, PERM_READ)
        return n.gen

    def get_perms(self, ident, path, tx=None):
        if path.startswith("@"):
            perms = self.special_perms.get(path, (("n", 0),))
            if not ident.access(perms) & PERM_READ:
                raise XsError(errno.EACCES)
            return perms
        n = self._get(tx, path)
        if n is None:
            raise XsError(errno.ENOENT)
        self._need(ident, n, PERM_READ)
        return n.perms

    def write(self, ident, path, value, tx=None):
        n = self._get(tx, path)
        if n is None:
            self._create(ident, path, value, tx)
        else:
            self._need(ident, n, PERM_WRITE)
            self._put(tx, path, Node(value, n.perms, n.children, next(self._gen)), False)
        self._done(tx, ("write", ident, path, value), [(path, self._live_perms(path, tx), [])])

    def mkdir(self, ident, path, tx=None):
        n = self._get(tx, path)
        if n is not None:
            self._need(ident, n, PERM_WRITE)
            return
        self._create(ident, path, b"", tx)
        self._done(tx, ("mkdir", ident, path), [(path, self._live_perms(path, tx), [])])

    def rm(self, ident, path, tx=None):
        n = self._get(tx, path)
        if n is None:
            if path != "/" and self._get(tx, parent_of(path)) is not None:
                return
            raise XsError(errno.ENOENT)
        self._need(ident, n, PERM_WRITE)
        if path == "/":
            raise XsError(errno.EINVAL)
        removed = list(walk(n, path))
        self._put(tx, path, None, True)
        if tx is None:
            for _, rn in removed:
                self.owner_counts[rn.perms[0][1]] -= 1
        self._done(tx, ("rm", ident, path),
                   [(path, n.perms, [(p, rn.perms) for p, rn in removed[1:]])])

    def set_perms(self, ident, path, perms, tx=None):
        if path.startswith("@"):
            old = self.special_perms.get(path, (("n", 0),))
            if not ident.access(old) & PERM_WRITE or not ident.owns(old):
                raise XsError(errno.EACCES)
            if not ident.privileged and perms[0][1] != old[0][1]:
                raise XsError(errno.EPERM)
            self.special_perms[path] = perms
            return
        n = self._get(tx, path)
        if n is None:
            raise XsError(errno.ENOENT)
        # "We must own node to do this (tools can do this too)."
        self._need(ident, n, PERM_WRITE)
        if not ident.owns(n.perms):
            raise XsError(errno.EACCES)
        if not ident.privileged and perms[0][1] != n.perms[0][1]:
            raise XsError(errno.EPERM)
        self._put(tx, path, Node(n.value, perms, n.children, next(self._gen)), False)
        if tx is None and perms[0][1] != n.perms[0][1]:
            self.owner_counts[n.perms[0][1]] -= 1
            self.owner_counts[perms[0][1]] += 1
        self._done(tx, ("set_perms", ident, path, perms), [(path, n.perms, [])])

    def _live_perms(self, path, tx):
        n = lookup(tx.root if tx is not None else self.root, path)
        return n.perms

    def _done(self, tx, logentry, changes):
        if tx is None:
            self.stats[logentry[0]] += 1
            self._emit(changes)
        else:
            tx.log.append(logentry)

    def _create(self, ident, path, value, tx):
        # Find the nearest existing ancestor; it must be writable.
        missing = [path]
        p = parent_of(path)
        anc = self._get(tx, p)
        while anc is None:
            missing.append(p)
            p = parent_of(p)
            anc = self._get(tx, p)
        self._need(ident, anc, PERM_WRITE)
        if not ident.privileged and self.node_quota is not None:
            if self.owner_counts[ident.domid] + len(missing) > self.node_quota:
                raise XsError(errno.ENOSPC)
        # "Inherit permissions, except unprivileged domains own what they
        # create": only the owner id of the copied list changes.
        perms = anc.perms
        if not ident.privileged:
            perms = ((perms[0][0], ident.domid),) + perms[1:]
        for q in reversed(missing):
            node = Node(value if q == path else b"", perms, {}, next(self._gen))
            self._put(tx, q, node, True)
            if tx is None:
                self.owner_counts[perms[0][1]] += 1

    # -- privileged helpers (toolstack side, no permission checks) --------
    def dom0_write(self, path, value, perms=None):
        """Write as dom0 and optionally set permissions (like libxl's
        xs_write + xs_set_permissions)."""
        self.write(DOM0, path, value)
        if perms is not None:
            self.set_perms(DOM0, path, perms)

    # -- transactions -----------------------------------------------------
    def tx_start(self, ident, owner):
        txid = next(self._txids) & 0xFFFFFFFF or next(self._txids)
        tx = Transaction(txid, ident, owner, self.root)
        self.transactions[txid] = tx
        return tx

    def tx_abort(self, tx):
        self.transactions.pop(tx.id, None)

    def tx_commit(self, tx):
        """Return True if committed, False on conflict (EAGAIN)."""
        self.transactions.pop(tx.id, None)
        root = self.root
        for path, gen in tx.touched.items():
            n = lookup(root, path)
            if (n.gen if n is not None else None) != gen:
                self.stats["tx_conflict"] += 1
                return False
        for entry in tx.log:
            op, ident = entry[0], entry[1]
            try:
                getattr(self, op)(ident, *entry[2:])
            except XsError:
                # Cannot happen without a conflict; be defensive.
                pass
        self.stats["tx_commit"] += 1
        return True

    def drop_transactions(self, owner):
        for txid in [t for t, tx in self.transactions.items() if tx.owner is owner]:
            del self.transactions[txid]

    # -- introspection ----------------------------------------------------
    def count_nodes(self):
        return sum(1 for _ in walk(self.root, "/"))
