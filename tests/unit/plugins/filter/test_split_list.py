# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""xen.suspend.split_list: the roles' list options given as lists or as survey text."""

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.xen.suspend.plugins.filter.split_list import FilterModule, split_list


@pytest.mark.parametrize("value, expected", [
    ("web-*, db-1", ["web-*", "db-1"]),
    ("web-*\ndb-1\r\nmonitoring\n", ["web-*", "db-1", "monitoring"]),
    ("web-*,\n db-1 ,, ", ["web-*", "db-1"]),
    ("*", ["*"]),
    ("", []),
    ("  ,\n", []),
    (None, []),
    ([], []),
    ([" web-1 ", "", "uuid:5b3c9e2a-1f4d-4c21-9a77-0e8d2b1c6f10", None], ["web-1", "uuid:5b3c9e2a-1f4d-4c21-9a77-0e8d2b1c6f10"]),
    ([7, "8"], ["7", "8"]),
    (("a", "b"), ["a", "b"]),
    (5, ["5"]),
])
def test_lists_and_text_become_lists_of_strings(value, expected):
    assert split_list(value) == expected


def test_list_items_are_not_split_again():
    # Only text is split: a list item keeps its comma (the module then reports the selector).
    assert split_list(["web-1,web-2"]) == ["web-1,web-2"]


@pytest.mark.parametrize("value", [True, {"web": 1}, ["web", {"a": 1}], ["web", ["nested"]], [False]])
def test_anything_else_is_an_error(value):
    with pytest.raises(AnsibleFilterError, match="split_list"):
        split_list(value)


def test_registered_under_its_name():
    assert FilterModule().filters() == {"split_list": split_list}
