# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Test-only connection: the local connection under another name, for a simulated dom0.

ansible.builtin.reboot refuses the connection named ``local`` (it would reboot the controller).
A simulated dom0 (tests/xensim) runs on the controller, and its "reboot" is the command the
role is given (``xensimctl reboot --dir DIR``), so the tests and ``make demo-reboot`` reach it
through this plugin: everything else is the local connection's.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

DOCUMENTATION = r'''
name: xen_suspend_simdom0
short_description: The local connection, for a simulated dom0 that ansible.builtin.reboot may reboot
description:
  - Runs everything on the controller exactly like the C(local) connection; only its name differs,
    so that M(ansible.builtin.reboot) runs its (simulated) reboot command.
author: xen.suspend maintainers (@xen-suspend)
options:
  become_success_timeout:
    type: int
    default: 10
    description: As for the local connection.
    vars:
      - name: ansible_local_become_success_timeout
  become_strip_preamble:
    type: bool
    default: true
    description: As for the local connection.
    vars:
      - name: ansible_local_become_strip_preamble
extends_documentation_fragment:
  - connection_pipelining
'''

from ansible.plugins.connection.local import Connection as LocalConnection


class Connection(LocalConnection):
    """The local connection with a name ansible.builtin.reboot accepts."""

    transport = "xen_suspend_simdom0"
