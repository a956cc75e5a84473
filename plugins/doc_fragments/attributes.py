# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later


class ModuleDocFragment(object):

    # The check_mode and diff_mode attributes every module of the collection has. A module
    # extends xen.suspend.attributes and states only its support (and, in details, what it
    # reports); a module that changes nothing uses xen.suspend.attributes.info_module instead.
    DOCUMENTATION = r'''
options: {}
attributes:
  check_mode:
    description: Can run in check mode and reports what it would change without touching any domain or the ledger.
  diff_mode:
    description: Returns details on what has changed (or would change in check mode) in diff mode.
'''

    INFO_MODULE = r'''
options: {}
attributes:
  check_mode:
    description: Can run in check mode and reports what it would change without touching any domain or the ledger.
    support: full
    details:
      - The module changes nothing, so it runs the same in check mode.
  diff_mode:
    description: Returns details on what has changed (or would change in check mode) in diff mode.
    support: N/A
    details:
      - The module changes nothing, so there is no diff.
'''
