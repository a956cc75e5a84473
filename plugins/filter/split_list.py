# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
name: split_list
short_description: A list, or comma- or newline-separated text, as a list of strings
version_added: 0.1.0
author:
  - xen.suspend maintainers (@xen-suspend)
description:
  - Normalises a list option that may come as a YAML list or as text, as AWX surveys send
    them (C(web-*, db-1) or one item per line).
  - Text is split at commas and newlines. Every item is turned into a string and stripped of
    surrounding white space, and empty items are dropped.
  - V(null) and the empty string give the empty list; a number gives a one-item list.
positional: _input
options:
  _input:
    description: A list, or text with items separated by commas or newlines.
    type: raw
    required: true
'''

EXAMPLES = r'''
- name: Text from a survey
  ansible.builtin.debug:
    msg: "{{ 'web-*, db-1\nmonitoring' | xen.suspend.split_list }}"
  # => ["web-*", "db-1", "monitoring"]

- name: A list stays a list, its items stripped and empty ones dropped
  ansible.builtin.debug:
    msg: "{{ [' web-1 ', '', 7] | xen.suspend.split_list }}"
  # => ["web-1", "7"]
'''

RETURN = r'''
_value:
  description: The items, as stripped, non-empty strings, in their order.
  type: list
  elements: str
'''

import re

from ansible.errors import AnsibleFilterError

_SEPARATORS = re.compile(r"[,\r\n]")


def split_list(value):
    """``value`` (a list, or comma- or newline-separated text) as a list of non-empty,
    stripped strings."""
    if value is None:
        return []
    if isinstance(value, str):
        items = _SEPARATORS.split(value)
    elif isinstance(value, (list, tuple)):
        items = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        items = [value]
    else:
        raise AnsibleFilterError(
            "split_list expects a list or comma- or newline-separated text, not %s %r"
            % (type(value).__name__, value))
    result = []
    for item in items:
        if item is None:
            continue
        if not isinstance(item, (str, int, float)) or isinstance(item, bool):
            raise AnsibleFilterError(
                "split_list: each item must be a string or a number, not %s %r" % (type(item).__name__, item))
        text = str(item).strip()
        if text:
            result.append(text)
    return result


class FilterModule(object):

    def filters(self):
        return {"split_list": split_list}
