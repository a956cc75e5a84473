#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Find a dom0's service domains in xenstore (run on the dom0 by the fleet_suspend role).

Prints one JSON object, ``{"domains": [{"domid": N, "reasons": [...]}], "errors": [...]}``.
A domain is reported when xenstore says it serves other domains:

* ``/local/domain/<id>/target`` exists: libxl wrote it for a device-model stub domain
  (the domid of the guest it serves);
* another domain's ``/local/domain/<guest>/image/device-model-domid`` names it;
* ``/local/domain/<id>/backend`` has children: it runs device backends for other
  domains (a driver domain).

Only dom0 can write these nodes (``~`` itself is dom0-owned), so a guest cannot make
itself look like a service domain. Read-only; needs pyxs, which the collection's modules
need on the dom0 anyway. Exit status 1 (with the JSON) when xenstore cannot be read.
"""

from __future__ import absolute_import, division, print_function

import argparse
import errno
import json
import os
import sys
import threading

DEFAULT_RUNDIR = "/var/run/xenstored"
XENBUS_PATH = "/dev/xen/xenbus"


def socket_path():
    """Where libxenstore connects: $XENSTORED_PATH, else $XENSTORED_RUNDIR/socket."""
    explicit = os.environ.get("XENSTORED_PATH")
    if explicit:
        return explicit
    return os.path.join(os.environ.get("XENSTORED_RUNDIR") or DEFAULT_RUNDIR, "socket")


def open_client():
    from pyxs import Client  # pylint: disable=import-outside-toplevel
    path = socket_path()
    if os.path.exists(path) or not os.path.exists(XENBUS_PATH):
        return Client(unix_socket_path=path)
    return Client(xen_bus_path=XENBUS_PATH)


def _missing(exc):
    return bool(exc.args) and exc.args[0] == errno.ENOENT


def read_or_none(client, path, error_class):
    try:
        return client.read(path)
    except error_class as exc:
        if _missing(exc):
            return None
        raise


def list_or_empty(client, path, error_class):
    try:
        return client.list(path)
    except error_class as exc:
        if _missing(exc):
            return []
        raise


def parse_domid(value):
    """A domid from a xenstore value, or None for anything odd."""
    if value is None:
        return None
    text = value.decode("ascii", "replace").strip().rstrip("\0")
    if not text.isdigit() or len(text) > 5:
        return None
    return int(text)


def scan(client, error_class):
    reasons = {}

    def add(domid, reason):
        reasons.setdefault(domid, [])
        if reason not in reasons[domid]:
            reasons[domid].append(reason)

    for entry in list_or_empty(client, b"/local/domain", error_class):
        domid = parse_domid(entry)
        if domid is None or domid == 0:
            continue
        base = b"/local/domain/" + entry
        target = parse_domid(read_or_none(client, base + b"/target", error_class))
        if target is not None:
            add(domid, "device-model stub domain of domid %d (xenstore ~/target)" % target)
        model = parse_domid(read_or_none(client, base + b"/image/device-model-domid", error_class))
        if model is not None and model != 0:
            add(model, "device-model stub domain of domid %d (its ~/image/device-model-domid)" % domid)
        backends = list_or_empty(client, base + b"/backend", error_class)
        if backends:
            kinds = sorted(kind.decode("ascii", "replace") for kind in backends)
            add(domid, "driver domain serving %s backends (xenstore ~/backend)" % ", ".join(kinds))
    return [{"domid": domid, "reasons": reasons[domid]} for domid in sorted(reasons)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait for xenstored before giving up")
    args = parser.parse_args(argv)
    outcome = {"domains": [], "errors": []}

    def work():
        try:
            from pyxs.exceptions import PyXSError  # pylint: disable=import-outside-toplevel
        except ImportError as exc:
            outcome["errors"].append("pyxs is not installed for %s: %s" % (sys.executable, exc))
            return
        try:
            with open_client() as client:
                outcome["domains"] = scan(client, PyXSError)
        except (PyXSError, OSError) as exc:
            outcome["errors"].append("cannot read xenstore at %s: %s" % (socket_path(), exc))

    worker = threading.Thread(target=work)
    worker.daemon = True
    worker.start()
    worker.join(args.timeout)
    if worker.is_alive():
        outcome["errors"].append("xenstored at %s did not answer within %g s" % (socket_path(), args.timeout))
    print(json.dumps(outcome, sort_keys=True))
    return 1 if outcome["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
