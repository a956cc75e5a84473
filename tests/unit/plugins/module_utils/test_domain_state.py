# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

import pytest

from ansible_collections.xen.suspend.plugins.module_utils._domain_state import (
    DOMINF_BLOCKED, DOMINF_DYING, DOMINF_HVM_GUEST, DOMINF_PAUSED, DOMINF_RUNNING,
    DOMINF_SHUTDOWN, DOMINF_XS_DOMAIN, DomainInfo, format_uuid, is_suspended, reason_name,
    shutdown_reason, state_name)


def shut(code):
    return DOMINF_SHUTDOWN | (code << 16)


@pytest.mark.parametrize("flags,state", [
    (DOMINF_RUNNING, "running"),
    (0, "running"),  # runnable, waiting for a CPU
    (DOMINF_BLOCKED, "blocked"),
    (DOMINF_BLOCKED | DOMINF_RUNNING, "running"),
    (DOMINF_PAUSED | DOMINF_BLOCKED, "paused"),
    (shut(2) | DOMINF_BLOCKED, "suspended"),
    (shut(2) | DOMINF_PAUSED, "suspended"),
    (shut(0), "shutdown(poweroff)"),
    (shut(1), "shutdown(reboot)"),
    (shut(3), "shutdown(crash)"),
    (shut(4), "shutdown(watchdog)"),
    (shut(5), "shutdown(soft_reset)"),
    (shut(77), "shutdown(code 77)"),
    (shut(2) | DOMINF_DYING, "dying"),
    (DOMINF_DYING, "dying"),
])
def test_state_names(flags, state):
    assert state_name(flags) == state


def test_latched_code_without_shutdown_flag_means_nothing():
    # SCHEDOP_shutdown_code latches a code before the shutdown; 255 means none latched
    assert shutdown_reason(2 << 16) is None
    assert not is_suspended(2 << 16)
    assert shutdown_reason(0xFF << 16) is None
    assert state_name((2 << 16) | DOMINF_BLOCKED) == "blocked"


def test_suspend_requires_flag_and_reason():
    assert is_suspended(shut(2))
    assert not is_suspended(shut(3))
    assert shutdown_reason(shut(2) | DOMINF_HVM_GUEST | DOMINF_PAUSED) == 2
    assert reason_name(None) is None


def test_domain_info_properties():
    info = DomainInfo(5, shut(2) | DOMINF_HVM_GUEST | DOMINF_XS_DOMAIN, "u")
    assert info.suspended and info.shut_down and info.hvm_guest and info.xenstore_domain
    assert not info.paused and not info.dying
    assert info.state == "suspended"


def test_uuid_from_handle():
    handle = bytes(bytearray(range(16)))
    assert format_uuid(handle) == "00010203-0405-0607-0809-0a0b0c0d0e0f"
