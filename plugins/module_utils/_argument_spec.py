# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: options every module of the collection takes.

Documented one-to-one by the doc fragment ``xen.suspend.common``
(plugins/doc_fragments/common.py); keep both in step.
"""

from ansible_collections.xen.suspend.plugins.module_utils._ledger import DEFAULT_LEDGER_PATH
from ansible_collections.xen.suspend.plugins.module_utils._save_dir import DEFAULT_SAVE_DIR
from ansible_collections.xen.suspend.plugins.module_utils._xenstore import DEFAULT_TIMEOUT


def common_argument_spec():
    """A fresh copy of the shared options, for merging into a module's own spec."""
    return dict(
        ledger=dict(type="path", default=DEFAULT_LEDGER_PATH),
        xen_run_dir=dict(type="path"),
        xenstore_timeout=dict(type="float", default=DEFAULT_TIMEOUT),
        protected=dict(type="list", elements="str", default=[]),
    )


def service_domains_argument_spec():
    """``allow_service_domains``, documented by ``xen.suspend.common.service_domains``."""
    return dict(allow_service_domains=dict(type="list", elements="str", default=[]))


def toolstack_argument_spec():
    """``allow_other_toolstack``, documented by ``xen.suspend.common.toolstack``."""
    return dict(allow_other_toolstack=dict(type="bool", default=False))


def save_dir_argument_spec():
    """``save_dir``, documented by ``xen.suspend.common.save_dir`` (domain_saved, domain_restored)."""
    return dict(save_dir=dict(type="path", default=DEFAULT_SAVE_DIR))
