# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

import pytest

from ansible_collections.xen.suspend.plugins.module_utils._errors import DomainOperationError
from ansible_collections.xen.suspend.plugins.module_utils._suspend_method import choose_method


def choose(requested, dtype, port=None, cb=0, s=0):
    asked = []

    def get_type():
        asked.append(True)
        return dtype

    choice = choose_method(requested, dtype != "pv", get_type, port, "absent", cb, s)
    return choice, bool(asked)


# libxl's domain_suspend_callback_common() table
@pytest.mark.parametrize("dtype,port,cb,s,method", [
    ("pv", None, 0, 0, "xenstore"),
    ("pv", 7, 0, 0, "event_channel"),
    ("pvh", None, 0, 0, "xenstore"),
    ("pvh", None, 5, 0, "xenstore"),
    ("pvh", 7, 5, 0, "event_channel"),
    ("hvm", None, 0, 0, "direct"),      # no PV drivers
    ("hvm", None, 5, 0, "xenstore"),    # PV drivers
    ("hvm", None, 5, 3, "direct"),      # in S3
    ("hvm", 7, 5, 3, "direct"),         # S3 wins over the event channel
    ("hvm", 7, 5, 0, "event_channel"),
    ("hvm", 7, 0, 0, "event_channel"),
])
def test_auto_matches_libxl(dtype, port, cb, s, method):
    choice, _asked = choose("auto", dtype, port, cb, s)
    assert choice.method == method
    assert choice.resume_fast is (method != "direct")


def test_type_read_only_when_it_matters():
    _choice, asked = choose("auto", "hvm", None, 5, 0)
    assert not asked  # HVM and PVH both take xenstore: no /libxl/<domid>/type read
    _choice, asked = choose("auto", "hvm", None, 0, 0)
    assert asked
    _choice, asked = choose("auto", "pv", None, 0, 0)
    assert not asked


@pytest.mark.parametrize("requested,dtype,port,cb,s,fragment", [
    ("event_channel", "pv", None, 0, 0, "absent"),
    ("event_channel", "hvm", 7, 5, 3, "ACPI S3"),
    ("xenstore", "hvm", None, 0, 0, "without PV drivers"),
    ("xenstore", "hvm", None, 5, 3, "ACPI S3"),
    ("direct", "pv", None, 0, 0, "HVM guests only"),
    ("direct", "pvh", None, 0, 0, "HVM guests only"),
    ("bogus", "pv", None, 0, 0, "unknown suspend method"),
])
def test_forced_methods_refused_when_unusable(requested, dtype, port, cb, s, fragment):
    with pytest.raises(DomainOperationError) as caught:
        choose(requested, dtype, port, cb, s)
    assert fragment in str(caught.value)
    assert caught.value.kind == "method_unavailable"
    assert caught.value.phase == "lookup"


def test_forced_methods_accepted():
    assert choose("xenstore", "pv", 7)[0].method == "xenstore"
    assert choose("xenstore", "pvh")[0].method == "xenstore"
    direct = choose("direct", "hvm", None, 5, 0)[0]
    assert direct.method == "direct" and direct.resume_fast is False
    assert choose("event_channel", "pv", 9)[0].method == "event_channel"
