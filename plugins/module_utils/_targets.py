# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: turning ``domains``/``exclude``/``protected`` into targets.

A selector is a domid ("5"), a UUID, a shell pattern on names ("web-*"), or a name; the
prefixes ``name:``, ``domid:`` and ``uuid:`` force one reading. Explicit selectors must match
exactly one domain and must not name dom0, a xenstore domain or a protected domain: that is an
error before anything is touched. Patterns quietly leave such domains out (reported as
skipped). The result keeps the order of the selectors; a pattern's matches are in domid order.
"""

import fnmatch
import re

from ansible_collections.xen.suspend.plugins.module_utils._errors import TargetError

KIND_DOMID = "domid"
KIND_UUID = "uuid"
KIND_NAME = "name"
KIND_PATTERN = "pattern"

_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
_GLOB_CHARS = frozenset("*?[")


class Selector(object):
    __slots__ = ("text", "kind", "value")

    def __init__(self, text, kind, value):
        self.text = text
        self.kind = kind
        self.value = value

    def __repr__(self):
        return "Selector(%s=%r)" % (self.kind, self.value)

    @property
    def explicit(self):
        return self.kind != KIND_PATTERN

    def matches(self, record):
        if self.kind == KIND_DOMID:
            return record.domid == self.value
        if self.kind == KIND_UUID:
            return record.uuid == self.value
        if record.name is None:
            return False
        if self.kind == KIND_NAME:
            return record.name == self.value
        return fnmatch.fnmatchcase(record.name, self.value)


def parse_selector(raw):
    """Classify one user-supplied selector; raises TargetError for an unusable one."""
    text = str(raw).strip() if raw is not None else ""
    if not text:
        raise TargetError("an empty domain selector was given")
    lowered = text.lower()
    for prefix, kind in (("name:", KIND_NAME), ("domid:", KIND_DOMID), ("uuid:", KIND_UUID)):
        if lowered.startswith(prefix):
            rest = text[len(prefix):].strip()
            if not rest:
                raise TargetError("selector %r has nothing after %r" % (text, prefix))
            if kind == KIND_DOMID:
                if not _is_ascii_digits(rest):
                    raise TargetError("selector %r: %r is not a domid" % (text, rest))
                return Selector(text, KIND_DOMID, int(rest))
            if kind == KIND_UUID:
                if not _UUID_RE.match(rest):
                    raise TargetError("selector %r: %r is not a UUID" % (text, rest))
                return Selector(text, KIND_UUID, rest.lower())
            return Selector(text, KIND_NAME, rest)
    if _is_ascii_digits(text):
        return Selector(text, KIND_DOMID, int(text))
    if _UUID_RE.match(text):
        return Selector(text, KIND_UUID, text.lower())
    if _GLOB_CHARS.intersection(text):
        return Selector(text, KIND_PATTERN, text)
    return Selector(text, KIND_NAME, text)


def _is_ascii_digits(text):
    return bool(text) and all("0" <= char <= "9" for char in text)


def parse_selectors(values):
    return [parse_selector(value) for value in (values or [])]


def needs_names(selector_lists):
    """True when some selector can only be resolved with domain names."""
    for selectors in selector_lists:
        for selector in selectors:
            if selector.kind in (KIND_NAME, KIND_PATTERN):
                return True
    return False


def label(record):
    """How messages name a domain: "name (domid N)"."""
    if record.name:
        return "%s (domid %d)" % (record.name, record.domid)
    return "domid %d" % record.domid


class Selection(object):
    """``targets`` in request order; ``skipped`` are pattern matches left alone, with why;
    ``unmatched`` are explicit selectors with no current domain (only when allowed)."""

    def __init__(self, targets, skipped, unmatched, warnings=None):
        self.targets = targets
        self.skipped = skipped
        self.unmatched = unmatched
        self.warnings = warnings if warnings is not None else []


def refusal(record, protected):
    """Why a domain must never be touched, or None."""
    if record.domid == 0:
        return "dom0 (the control domain) is never suspended or resumed"
    if record.xenstore_domain:
        return "it is the xenstore domain"
    # service domains, domains of another toolstack (_service_domains, _toolstack)
    refusals = getattr(record, "refusals", None)
    if refusals:
        return "; ".join(refusals)
    for selector in protected:
        if selector.matches(record):
            return "it is protected (matches %r)" % selector.text
    return None


def select_targets(records, selectors, exclude=(), protected=(), allow_unmatched=False,
                   read_only=False):
    """Resolve selectors against ``records`` (objects with domid, uuid, name, xenstore_domain).

    Every problem is collected and reported at once in a single TargetError. ``read_only``
    selections (reports) may include dom0 and protected domains.
    """
    problems = []
    chosen = []
    seen = set()
    skipped = []
    skipped_seen = set()
    unmatched = []
    by_domid = sorted(records, key=lambda record: record.domid)

    for selector in selectors:
        matches = [record for record in by_domid if selector.matches(record)]
        if selector.explicit:
            if not matches:
                if allow_unmatched:
                    unmatched.append(selector)
                else:
                    problems.append("no domain matches %s %r" % (selector.kind, selector.text))
                continue
            if len(matches) > 1:
                problems.append("%r is ambiguous: it matches %s" % (
                    selector.text, ", ".join(label(record) for record in matches)))
                continue
        for record in matches:
            if any(rule.matches(record) for rule in exclude):
                continue
            reason = None if read_only else refusal(record, protected)
            if reason is not None:
                if selector.explicit:
                    problems.append("refusing %s: %s" % (label(record), reason))
                elif record.domid not in skipped_seen:
                    skipped_seen.add(record.domid)
                    skipped.append({"name": record.name, "domid": record.domid,
                                    "uuid": record.uuid, "reason": reason})
                continue
            if record.domid in seen:
                continue
            seen.add(record.domid)
            chosen.append(record)

    warnings = []
    if not read_only and not allow_unmatched:
        warnings = check_safety_options(by_domid, exclude, protected, problems)
        if selectors and not chosen and not problems:
            warnings.append("the domains selected nothing to act on (%s)"
                            % ", ".join(repr(selector.text) for selector in selectors))
    if problems:
        raise TargetError("invalid targets, nothing was touched: " + "; ".join(problems))
    skipped = [item for item in skipped if item["domid"] not in seen]
    return Selection(chosen, skipped, unmatched, warnings)


def check_safety_options(records, exclude, protected, problems):
    """``exclude`` and ``protected`` exist to keep domains safe: an explicit one that matches
    no domain is a typo that would let the domain it meant be touched (an error, appended to
    ``problems``); a pattern that matches nothing may be a typo too (the warnings returned)."""
    warnings = []
    for option, selectors in (("protected", protected), ("exclude", exclude)):
        idle = []
        for selector in selectors:
            if any(selector.matches(record) for record in records):
                continue
            if selector.explicit:
                problems.append("%s %s %r matches no domain (a typo would leave the domain it "
                                "means unprotected)" % (option, selector.kind, selector.text))
            else:
                idle.append(selector.text)
        if idle:  # one warning per option, not one per pattern: a typo must stand out
            warnings.append("%s pattern%s %s match%s no domain" % (
                option, "s" if len(idle) > 1 else "", ", ".join(repr(text) for text in idle),
                "" if len(idle) > 1 else "es"))
    return warnings
