# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

import pytest

from ansible_collections.xen.suspend.plugins.module_utils._domain_state import (
    DOMINF_BLOCKED, DOMINF_XS_DOMAIN, DomainInfo)
from ansible_collections.xen.suspend.plugins.module_utils._errors import TargetError
from ansible_collections.xen.suspend.plugins.module_utils._inventory import DomainRecord
from ansible_collections.xen.suspend.plugins.module_utils._targets import (
    KIND_DOMID, KIND_NAME, KIND_PATTERN, KIND_UUID, needs_names, parse_selector,
    parse_selectors, select_targets)


def record(domid, name, flags=DOMINF_BLOCKED):
    uuid = "%08x-0000-4000-8000-%012x" % (domid, domid)
    return DomainRecord(DomainInfo(domid, flags, uuid), name)


@pytest.fixture
def records():
    return [record(0, "Domain-0"), record(1, "xenstore", DOMINF_BLOCKED | DOMINF_XS_DOMAIN),
            record(3, "web1"), record(4, "web2"), record(5, "db1"), record(7, "dns1"),
            record(9, None)]


def names(selection):
    return [r.name for r in selection.targets]


@pytest.mark.parametrize("raw,kind,value", [
    ("5", KIND_DOMID, 5),
    (5, KIND_DOMID, 5),
    ("00000003-0000-4000-8000-000000000003", KIND_UUID, "00000003-0000-4000-8000-000000000003"),
    ("ABCDEF01-0000-4000-8000-000000000003", KIND_UUID, "abcdef01-0000-4000-8000-000000000003"),
    ("web-*", KIND_PATTERN, "web-*"),
    ("db[12]", KIND_PATTERN, "db[12]"),
    ("web1", KIND_NAME, "web1"),
    ("name:42", KIND_NAME, "42"),
    ("domid:7", KIND_DOMID, 7),
    ("name:web*", KIND_NAME, "web*"),
])
def test_selector_classification(raw, kind, value):
    selector = parse_selector(raw)
    assert (selector.kind, selector.value) == (kind, value)


@pytest.mark.parametrize("raw", ["", "   ", None, "domid:x", "uuid:nope", "name:"])
def test_bad_selectors(raw):
    with pytest.raises(TargetError):
        parse_selector(raw)


def test_order_follows_request_and_patterns_go_by_domid(records):
    selection = select_targets(records, parse_selectors(["db1", "web*", "3"]))
    assert names(selection) == ["db1", "web1", "web2"]  # "3" is web1 again: no duplicate


def test_star_skips_dom0_xenstore_domain_and_protected(records):
    selection = select_targets(records, parse_selectors(["*"]), protected=parse_selectors(["dns*"]))
    assert names(selection) == ["web1", "web2", "db1"]  # the nameless domain never matches a pattern
    reasons = dict((item["name"], item["reason"]) for item in selection.skipped)
    assert "dom0" in reasons["Domain-0"]
    assert "xenstore domain" in reasons["xenstore"]
    assert "protected" in reasons["dns1"]


def test_exclude_wins(records):
    selection = select_targets(records, parse_selectors(["web1", "web*", "db1"]),
                               exclude=parse_selectors(["web2", "5"]))
    assert names(selection) == ["web1"]


@pytest.mark.parametrize("selector,message", [
    ("0", "refusing Domain-0 (domid 0): dom0"),
    ("Domain-0", "dom0"),
    ("xenstore", "xenstore domain"),
    ("dns1", "protected"),
    ("nosuch", "no domain matches name 'nosuch'"),
    ("42", "no domain matches domid '42'"),
    ("ffffffff-0000-4000-8000-000000000000", "no domain matches uuid"),
])
def test_explicit_refusals_and_unknowns_fail_everything(records, selector, message):
    with pytest.raises(TargetError) as caught:
        select_targets(records, parse_selectors(["web1", selector]), protected=parse_selectors(["dns1"]))
    assert message in str(caught.value)
    assert "nothing was touched" in str(caught.value)


def test_all_problems_are_reported_together(records):
    with pytest.raises(TargetError) as caught:
        select_targets(records, parse_selectors(["0", "nosuch", "web1"]))
    text = str(caught.value)
    assert "dom0" in text and "nosuch" in text


def test_ambiguous_name(records):
    records.append(record(12, "web1"))
    with pytest.raises(TargetError) as caught:
        select_targets(records, parse_selectors(["web1"]))
    assert "ambiguous" in str(caught.value)


def test_unmatched_allowed_for_resume(records):
    selection = select_targets(records, parse_selectors(["web1", "old-vm"]), allow_unmatched=True)
    assert names(selection) == ["web1"]
    assert [s.value for s in selection.unmatched] == ["old-vm"]


def test_read_only_selection_may_include_dom0(records):
    selection = select_targets(records, parse_selectors(["0", "dns1"]),
                               protected=parse_selectors(["dns1"]), read_only=True)
    assert names(selection) == ["Domain-0", "dns1"]


def test_needs_names():
    assert not needs_names([parse_selectors(["3", "00000003-0000-4000-8000-000000000003"])])
    assert needs_names([parse_selectors(["3"]), parse_selectors(["web*"])])
    assert needs_names([parse_selectors(["web1"])])


# -- issue 11, item 1: the options that keep domains safe are checked ---------------------------

def test_an_explicit_protected_name_that_matches_nothing_is_an_error(records):
    with pytest.raises(TargetError) as caught:
        select_targets(records, parse_selectors(["*"]), protected=parse_selectors(["dns"]))
    assert "protected name 'dns' matches no domain" in str(caught.value)
    with pytest.raises(TargetError, match="exclude domid '42' matches no domain"):
        select_targets(records, parse_selectors(["*"]), exclude=parse_selectors(["42"]))


def test_safety_patterns_that_match_nothing_and_an_empty_selection_warn(records):
    selection = select_targets(records, parse_selectors(["web*"]),
                               exclude=parse_selectors(["backup-*"]),
                               protected=parse_selectors(["fw-*"]))
    assert names(selection) == ["web1", "web2"]
    assert selection.warnings == ["protected pattern 'fw-*' matches no domain",
                                  "exclude pattern 'backup-*' matches no domain"]
    several = select_targets(records, parse_selectors(["web*"]),
                             protected=parse_selectors(["fw-*", "*-dm"]))
    assert several.warnings == ["protected patterns 'fw-*', '*-dm' match no domain"]
    empty = select_targets(records, parse_selectors(["mail-*"]))
    assert empty.targets == [] and "selected nothing" in empty.warnings[0]
