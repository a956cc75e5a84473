# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The prebuilt FFI (_xen_ffi.py, cffi's out-of-line ABI mode) is what make_ffi hands out, is
what cffi makes of today's declarations, and lays out every type as parsing them does."""

import os
import sys

from ansible_collections.xen.suspend.plugins.module_utils import _xen_libraries
from ansible_collections.xen.suspend.plugins.module_utils._xen_libraries import (
    DOMINFO_PREFIX_SIZE, PREBUILT_FFI, make_ffi)

TOOLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "tools")
sys.path.insert(0, os.path.abspath(TOOLS))
import make_xen_ffi  # noqa: E402  pylint: disable=wrong-import-position

DOMINFO_FIELDS = ("domain", "pad1", "flags", "tot_pages", "max_pages", "outstanding_pages", "shr_pages",
                  "paged_pages", "shared_info_frame", "cpu_time", "nr_online_vcpus", "max_vcpu_id",
                  "ssidref", "handle", "cpupool")


def test_make_ffi_hands_out_the_prebuilt_ffi():
    assert PREBUILT_FFI is not None
    assert make_ffi() is PREBUILT_FFI


def test_the_prebuilt_file_is_what_cffi_makes_of_the_declarations():
    with open(make_xen_ffi.TARGET) as handle:
        assert handle.read() == make_xen_ffi.render(), "run make xen-ffi"


def test_a_changed_declaration_is_noticed(monkeypatch):
    monkeypatch.setattr(make_xen_ffi, "declarations",
                        lambda: _xen_libraries.DOMINFO_PREFIX_CDEF + _xen_libraries.XENCTRL_CDEF)
    with open(make_xen_ffi.TARGET) as handle:
        assert handle.read() != make_xen_ffi.render()


def test_prebuilt_and_parsed_lay_out_the_same_types():
    parsed = make_ffi(prebuilt=False)
    assert parsed is not PREBUILT_FFI
    assert PREBUILT_FFI.list_types() == parsed.list_types()
    for ffi in (PREBUILT_FFI, parsed):
        assert ffi.sizeof("xen_dominfo_prefix_t") == DOMINFO_PREFIX_SIZE
    for field in DOMINFO_FIELDS:
        assert PREBUILT_FFI.offsetof("xen_dominfo_prefix_t", field) == \
            parsed.offsetof("xen_dominfo_prefix_t", field), field
    for name in ("xc_interface *", "xenevtchn_handle *", "uint8_t[16]"):
        assert PREBUILT_FFI.sizeof(name) == parsed.sizeof(name)
