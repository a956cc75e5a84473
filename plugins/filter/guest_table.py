# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
name: guest_table
short_description: The per-guest rows of a maintenance window as the lines of a text table
version_added: 0.1.0
author:
  - xen.suspend maintainers (@xen-suspend)
description:
  - Formats the rows of P(xen.suspend.guest_rows#filter) as aligned text lines - guest, suspend
    method, time to suspend, time spent suspended (downtime), and what became of the guest -
    for an M(ansible.builtin.debug) C(msg), where a list of lines reads as a table.
  - Unknown values are shown as C(-).
positional: _input
options:
  _input:
    description: Rows as P(xen.suspend.guest_rows#filter) returns them.
    type: list
    elements: dict
    required: true
'''

EXAMPLES = r'''
- name: Show the guests
  ansible.builtin.debug:
    msg: "{{ fleet_resume_result.guests | xen.suspend.guest_table }}"
  # guest   method         suspend s  downtime s  resumed, or why not
  # ------  -------------  ---------  ----------  ---------------------
  # web-1   xenstore            0.21        4.32  resumed
  # stuck   xenstore               -           -  not suspended: not_acknowledged in acknowledge; still running
'''

RETURN = r'''
_value:
  description: The header, a rule, and one line per row.
  type: list
  elements: str
'''

from ansible.errors import AnsibleFilterError

HEADER = ("guest", "method", "suspend s", "downtime s", "resumed, or why not")


def _seconds(value):
    if value is None or value == "":
        return "-"
    try:
        return "%.2f" % float(value)
    except (TypeError, ValueError):
        return "-"


def guest_table(rows):
    """Lines of an aligned text table of ``rows``."""
    if not isinstance(rows, (list, tuple)):
        raise AnsibleFilterError("guest_table expects the list xen.suspend.guest_rows returns, not %s"
                                 % type(rows).__name__)
    cells = []
    for row in rows:
        if not isinstance(row, dict):
            raise AnsibleFilterError("guest_table: each row must be a dict, not %r" % (row,))
        cells.append((str(row.get("name") or row.get("uuid") or "-"), str(row.get("method") or "-"),
                      _seconds(row.get("suspend_seconds")), _seconds(row.get("downtime_seconds")),
                      str(row.get("outcome") or "-")))
    widths = [max(len(line[i]) for line in cells + [HEADER]) for i in range(4)]

    def line(values):
        return ("%-*s  %-*s  %*s  %*s  %s" % (
            widths[0], values[0], widths[1], values[1], widths[2], values[2], widths[3], values[3],
            values[4])).rstrip()

    lines = [line(HEADER), line(tuple("-" * w for w in widths) + ("-" * len(HEADER[4]),))]
    lines.extend(line(values) for values in cells)
    return lines


class FilterModule(object):

    def filters(self):
        return {"guest_table": guest_table}
