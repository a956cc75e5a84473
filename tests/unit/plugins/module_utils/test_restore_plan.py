# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Which saved guests a restore takes, and in what order."""

import pytest

from ansible_collections.xen.suspend.plugins.module_utils._errors import XenSuspendError
from ansible_collections.xen.suspend.plugins.module_utils._ledger import (
    STATE_INTENT, STATE_RESTORING, STATE_SAVED, STATE_SAVING)
from ansible_collections.xen.suspend.plugins.module_utils._restore import plan_restore
from ansible_collections.xen.suspend.plugins.module_utils._targets import parse_selectors


def _entries(*items):
    entries = {}
    for index, (name, state) in enumerate(items):
        uuid = "00000000-0000-4000-8000-%012d" % index
        entries[uuid] = {"uuid": uuid, "name": name, "domid": index + 1, "state": state,
                         "image": "/save/%s.xlsave" % uuid}
    return entries


def _names(plan):
    return [job.name for job in plan.jobs]


def test_saved_guests_in_priority_order_then_natural_name_order():
    entries = _entries(("web-10", STATE_SAVED), ("web-2", STATE_SAVED), ("db-1", STATE_RESTORING),
                       ("app-1", STATE_SAVED), ("mem", STATE_INTENT), ("half", STATE_SAVING))
    plan = plan_restore(entries, [], order=parse_selectors(["db-*", "app-*"]))
    assert _names(plan) == ["db-1", "app-1", "web-2", "web-10"]


def test_selectors_exclude_and_protected():
    entries = _entries(("web-1", STATE_SAVED), ("web-2", STATE_SAVED), ("db-1", STATE_SAVED))
    plan = plan_restore(entries, parse_selectors(["web-*", "db-1"]), exclude=parse_selectors(["web-2"]),
                        protected=parse_selectors(["db-*"]))
    assert _names(plan) == ["web-1"] and [item["name"] for item in plan.skipped] == ["db-1"]


def test_a_name_that_matches_nothing_touches_nothing():
    with pytest.raises(XenSuspendError) as failure:
        plan_restore(_entries(("web-1", STATE_SAVED)), parse_selectors(["web-1", "nosuch"]))
    assert "nosuch" in str(failure.value) and "nothing was touched" in str(failure.value)
