# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Ledger timestamps: milliseconds now, whole seconds in ledgers written before; both read."""

import pytest

from ansible_collections.xen.suspend.plugins.module_utils._ledger import make_entry, utc_timestamp
from ansible_collections.xen.suspend.plugins.module_utils._ledger_transitions import (
    parse_timestamp, settle_deadline_passed)

T = 1735725600.0  # 2025-01-01T10:00:00Z


def test_stamps_have_milliseconds():
    assert utc_timestamp(T) == "2025-01-01T10:00:00.000Z"
    assert utc_timestamp(T + 0.25) == "2025-01-01T10:00:00.250Z"
    assert utc_timestamp(T + 59.9996) == "2025-01-01T10:01:00.000Z"  # rounds, carries over
    assert utc_timestamp(T + 1.0004) == "2025-01-01T10:00:01.000Z"


@pytest.mark.parametrize("stamp, seconds", [
    ("2025-01-01T10:00:00Z", T),                # as older versions wrote them
    ("2025-01-01T10:00:00.250Z", T + 0.25),
    ("2025-01-01T10:00:07.005Z", T + 7.005),
    ("2025-01-01T10:00:07.5Z", T + 7.5),
])
def test_both_forms_parse(stamp, seconds):
    assert parse_timestamp(stamp) == pytest.approx(seconds, abs=1e-6)


@pytest.mark.parametrize("stamp", [None, "", "yesterday", "2025-01-01T10:00:00", "2025-01-01T10:00:00.Z",
                                   "2025-01-01T10:00:00.2a0Z", "2025-01-01T10:00:00.250", 42])
def test_malformed_stamps_are_none(stamp):
    assert parse_timestamp(stamp) is None


def test_round_trip_keeps_the_millisecond():
    for fraction in (0.001, 0.123, 0.5, 0.999):
        assert parse_timestamp(utc_timestamp(T + fraction)) == pytest.approx(T + fraction, abs=1e-6)


def test_entries_and_settle_deadlines_use_them():
    entry = make_entry("u", 3, "web", "xenstore", now=T + 0.75, settle_by=T + 90.5)
    assert entry["intent_at"] == "2025-01-01T10:00:00.750Z"
    assert entry["settle_by"] == "2025-01-01T10:01:30.500Z"
    assert not settle_deadline_passed(entry, now=T + 90.4)
    assert settle_deadline_passed(entry, now=T + 90.5)
    old = {"settle_by": "2025-01-01T10:01:30Z"}
    assert not settle_deadline_passed(old, now=T + 89.9) and settle_deadline_passed(old, now=T + 90)
