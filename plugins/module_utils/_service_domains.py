# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: finding the domains that serve other domains.

Suspending one of them takes its guests' devices away while those guests run, so the modules
refuse them (unless named in ``allow_service_domains``), as dom0 and the xenstore domain:

* ``/local/domain/<id>/target`` exists: libxl wrote it when it created a device-model stub
  domain, naming the guest it serves;
* another domain's ``/local/domain/<guest>/image/device-model-domid`` names it;
* ``/local/domain/<id>/backend`` has children: it runs device backends for other domains (a
  driver domain).

Only dom0 can write these nodes (``~`` itself is dom0-owned and read-only to the guest), so a
guest cannot make itself look like a service domain, nor hide one; the values are still parsed
as hostile (a domid is 1 to 5 ASCII digits, nothing else).

Cost: one pipelined directory listing of ``/local/domain/<id>`` per domain; the few domains
whose listing has ``target``, ``image`` or ``backend`` cost one more request each, in a second
batch.
"""

from ansible_collections.xen.suspend.plugins.module_utils._xenstore import domain_path

MAX_DOMID = 0x7FEF  # DOMID_FIRST_RESERVED - 1


def parse_domid(value):
    """A domid from a xenstore value, or None for anything else (a hostile-safe parse)."""
    if value is None or not isinstance(value, bytes):
        return None
    text = value.rstrip(b"\x00").strip()
    if not text or len(text) > 5 or not all(0x30 <= byte <= 0x39 for byte in bytearray(text)):
        return None
    domid = int(text)
    return domid if domid <= MAX_DOMID else None


def _kind_name(raw):
    text = raw.decode("ascii", "replace")
    return "".join(char if char.isalnum() or char in "-_" else "?" for char in text)[:32]


class ServiceDomains(object):
    """domid -> reasons (in the order found); ``errors`` are problems met while looking."""

    def __init__(self):
        self.reasons = {}
        self.errors = []

    def add(self, domid, reason):
        reasons = self.reasons.setdefault(domid, [])
        if reason not in reasons:
            reasons.append(reason)

    def get(self, domid):
        return self.reasons.get(domid)

    def as_list(self, records=()):
        """[{"domid", "name", "reasons"}] in domid order (names from ``records`` when known)."""
        names = dict((record.domid, record.name) for record in records)
        return [{"domid": domid, "name": names.get(domid), "reasons": list(self.reasons[domid])}
                for domid in sorted(self.reasons)]


def _count(records, domid, trips):
    record = records.get(domid)
    if record is not None and hasattr(record, "xs_trips"):
        record.xs_trips += trips


def find_service_domains(xenstore, records):
    """Look at every domain of ``records`` but dom0 (objects with ``domid``; ``xs_trips`` is
    increased when they have one). Raises the XenstoreError of a listing that failed: whether
    a domain is a service domain must be known before it is touched."""
    found = ServiceDomains()
    by_domid = dict((record.domid, record) for record in records if record.domid != 0)
    domids = sorted(by_domid)
    listings = xenstore.directory_many([domain_path(domid) for domid in domids])
    follow = []  # (domid, what, path)
    for domid, outcome in zip(domids, listings):
        _count(by_domid, domid, 1)
        if outcome.error is not None:
            raise outcome.error
        children = set(outcome.value or [])
        if b"target" in children:
            follow.append((domid, "target", domain_path(domid, "target")))
        if b"image" in children:
            follow.append((domid, "image", domain_path(domid, "image/device-model-domid")))
        if b"backend" in children:
            follow.append((domid, "backend", domain_path(domid, "backend")))
    if not follow:
        return found
    reads = [item for item in follow if item[1] != "backend"]
    lists = [item for item in follow if item[1] == "backend"]
    read_outcomes = xenstore.read_many([path for _domid, _what, path in reads]) if reads else []
    list_outcomes = xenstore.directory_many([path for _domid, _what, path in lists]) if lists else []
    for (domid, what, _path), outcome in zip(reads, read_outcomes):
        _count(by_domid, domid, 1)
        if outcome.error is not None:
            raise outcome.error
        if outcome.value is None:
            continue
        served = parse_domid(outcome.value)
        if what == "target":
            if served is None:
                # Only dom0 writes it: an odd value is still a stub domain of something.
                found.add(domid, "device-model stub domain (xenstore ~/target, unreadable value)")
            else:
                found.add(domid, "device-model stub domain of domid %d (xenstore ~/target)" % served)
        elif served is not None and served != 0 and served != domid:
            found.add(served, "device-model stub domain of domid %d (its ~/image/device-model-domid)"
                      % domid)
    for (domid, _what, _path), outcome in zip(lists, list_outcomes):
        _count(by_domid, domid, 1)
        if outcome.error is not None:
            raise outcome.error
        kinds = sorted(set(_kind_name(kind) for kind in (outcome.value or [])))
        if kinds:
            found.add(domid, "driver domain serving %s backends (xenstore ~/backend)" % ", ".join(kinds))
    return found


def add_refusal(record, reason):
    """Record on ``record`` why the modules must not touch it (read by _targets.refusal)."""
    refusals = getattr(record, "refusals", None)
    if refusals is None:
        refusals = record.refusals = []
    if reason not in refusals:
        refusals.append(reason)


def mark_records(records, found, allowed=()):
    """Set ``service_domain`` (reasons or None) on every record, and add to ``refusals`` (see
    _targets.refusal) of those that no selector of ``allowed`` names; returns the allowed selectors that matched no
    service domain (a typo there must not pass silently)."""
    used = set()
    for record in records:
        reasons = found.get(record.domid)
        record.service_domain = list(reasons) if reasons else None
        if not reasons:
            continue
        allowing = [selector for selector in allowed if selector.matches(record)]
        for selector in allowing:
            used.add(selector.text)
        if not allowing:
            add_refusal(record, "it is a service domain: %s (name it in allow_service_domains to "
                                "allow it)" % "; ".join(reasons))
    return [selector for selector in allowed if selector.text not in used]
