"""What libxl does in xenstore around a domain's life (reference section 1.1,
tools/libs/light/libxl_create.c@RELEASE-4.17.0 libxl__domain_make and
libxl__destroy_domid), performed as dom0 directly on the store.
"""

import time

from .store import DOM0, Node, _replace, lookup, parent_of


def _perm(domid, kind):
    if kind == "ro":
        return (("n", 0), ("r", domid))
    if kind == "rw":
        return (("n", domid),)
    return (("n", 0),)


def domain_nodes(dom, start_time=None):
    """(path, value, perms-kind) tuples, parents before children, as libxl
    creates them for a new domain."""
    d = dom.domid
    dp = "/local/domain/%d" % d
    vm = "/vm/%s" % dom.uuid
    lp = "/libxl/%d" % d
    hvm = dom.type == "hvm"
    nodes = [
        (vm, "", "ro"),
        (vm + "/uuid", str(dom.uuid), "ro"),
        (vm + "/name", dom.name, "ro"),
        (vm + "/start_time", "%.2f" % (start_time or time.time()), "ro"),
        (dp, "", "ro"),
        (dp + "/vm", vm, "ro"),
        (dp + "/name", dom.name, "ro"),
        (dp + "/domid", str(d), "ro"),
        (dp + "/cpu", "", "ro"),
        (dp + "/memory", "", "ro"),
        (dp + "/memory/static-max", str(dom.max_pages * 4), "ro"),
        (dp + "/memory/target", str(dom.tot_pages * 4), "ro"),
        (dp + "/device", "", "ro"),
        (dp + "/device/suspend", "", "ro"),
        (dp + "/device/suspend/event-channel", "", "rw"),
        (dp + "/control", "", "ro"),
        (dp + "/control/shutdown", "", "rw"),
        (dp + "/control/feature-poweroff", "", "rw"),
        (dp + "/control/feature-reboot", "", "rw"),
        (dp + "/control/feature-suspend", "", "rw"),
        (dp + "/control/sysrq", "", "rw"),
    ]
    if hvm:
        nodes += [
            (dp + "/control/feature-s3", "", "rw"),
            (dp + "/control/feature-s4", "", "rw"),
        ]
    nodes += [
        (dp + "/control/platform-feature-multiprocessor-suspend", "1", "ro"),
        (dp + "/control/platform-feature-xs_reset_watches", "1", "ro"),
        (dp + "/data", "", "rw"),
        (dp + "/drivers", "", "rw"),
        (dp + "/feature", "", "rw"),
        (dp + "/attr", "", "rw"),
        (dp + "/messages", "", "rw"),
        (dp + "/store", "", "ro"),
        (dp + "/store/port", "1", "ro"),
        (dp + "/store/ring-ref", str(0xFEFFF if dom.hvm else 0x1000 + d), "ro"),
        (lp, "", "none"),
        (lp + "/type", dom.type, "none"),
    ]
    if hvm:
        nodes.append((lp + "/dm-version", "qemu_xen", "none"))
    return nodes


def build_domain(store, dom):
    """Create the domain's xenstore area in one go.  Equivalent to libxl's
    transaction: the nodes are grafted into the tree and watch events are
    fired for each of them, as a commit would."""
    root = store.root
    changes = []
    gen = store._gen
    for path, value, kind in domain_nodes(dom):
        perms = _perm(dom.domid, kind)
        parent = parent_of(path)
        if lookup(root, parent) is None:
            # create missing ancestors (/vm, /libxl, /local/domain) as dom0
            missing = []
            p = parent
            while lookup(root, p) is None:
                missing.append(p)
                p = parent_of(p)
            for q in reversed(missing):
                pp = lookup(root, parent_of(q)).perms
                root = _graft(root, q, Node(b"", pp, {}, next(gen)), next(gen))
                store.owner_counts[pp[0][1]] += 1
        old = lookup(root, path)
        children = old.children if old is not None else {}
        root = _graft(root, path, Node(value.encode(), perms, children, next(gen)), next(gen))
        if old is None:
            store.owner_counts[perms[0][1]] += 1
        changes.append((path, perms, []))
    store.root = root
    store._emit(changes)


def _graft(root, path, node, gen):
    return _replace(root, path, node, gen)


def destroy_domain_nodes(store, dom):
    """libxl__destroy_domid: remove ~, /vm/<uuid> and /libxl/<domid>."""
    for p in ("/local/domain/%d" % dom.domid, "/vm/%s" % dom.uuid, "/libxl/%d" % dom.domid):
        store.rm(DOM0, p)


def build_dom0(store):
    """What xen-init-dom0 writes."""
    for path, value in (("/local/domain/0/name", "Domain-0"),
                        ("/local/domain/0/domid", "0"),
                        ("/local/domain/0/vm", "/vm/00000000-0000-0000-0000-000000000000"),
                        ("/vm/00000000-0000-0000-0000-000000000000/name", "Domain-0"),
                        ("/tool/xenstored", "")):
        store.write(DOM0, path, value.encode())
