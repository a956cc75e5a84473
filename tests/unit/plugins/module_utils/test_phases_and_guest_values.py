# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

import pytest

from ansible_collections.xen.suspend.plugins.module_utils._guest_values import (
    decode_name, decode_short, parse_event_channel, parse_libxl_type)
from ansible_collections.xen.suspend.plugins.module_utils._phases import PhaseTimer


class Clock(object):
    def __init__(self):
        self.now = 10.0

    def __call__(self):
        return self.now


def test_phases_are_timed_and_accumulate_in_order_of_entry():
    clock = Clock()
    timer = PhaseTimer(clock)
    timer.start("quiesce")
    clock.now += 0.5
    timer.start("lookup")
    clock.now += 0.25
    assert timer.current == "lookup"
    assert timer.elapsed() == pytest.approx(0.25)
    timer.start("quiesce")
    clock.now += 1.0
    timer.stop()
    clock.now += 100.0  # nothing runs now
    assert timer.current is None
    assert timer.elapsed() == 0.0
    assert timer.as_dict() == {"quiesce": 1.5, "lookup": 0.25}
    assert list(timer.as_dict()) == ["quiesce", "lookup"]


def test_a_phase_entered_and_left_at_once_still_shows():
    clock = Clock()
    timer = PhaseTimer(clock)
    timer.start("lock")
    timer.start("request")
    timer.stop()
    assert timer.as_dict() == {"lock": 0.0, "request": 0.0}


@pytest.mark.parametrize("value,port", [
    (b"1", 1), (b"7", 7), (b"2147483647", 2147483647), (b"4096", 4096),
])
def test_valid_event_channels(value, port):
    assert parse_event_channel(value) == (port, "advertised")


@pytest.mark.parametrize("value,reason", [
    (None, "absent"),
    (b"", "empty"),
    (b"0", "not a plain decimal"),
    (b"007", "not a plain decimal"),
    (b"-3", "not a plain decimal"),
    (b"+3", "not a plain decimal"),
    (b" 3", "not a plain decimal"),
    (b"3\n", "not a plain decimal"),
    (b"0x10", "not a plain decimal"),
    (b"1e3", "not a plain decimal"),
    (b"%s%n", "not a plain decimal"),
    (b"\xff\x00", "not a plain decimal"),
    (b"2147483648", "out of range"),
    (b"9999999999", "out of range"),
    (b"12345678901", "too long"),
    (b"1" * 4096, "too long"),
])
def test_hostile_event_channels_are_not_advertised(value, reason):
    port, why = parse_event_channel(value)
    assert port is None
    assert reason in why


def test_messages_never_carry_raw_bytes():
    _port, why = parse_event_channel(b"\x1b[31m{0}\x00")
    assert "\x1b" not in why and "\x00" not in why


def test_names_and_short_values_are_bounded_and_printable():
    assert decode_name(None) is None
    assert decode_name(b"web1") == "web1"
    assert decode_name(b"bad\x00\x1bname") == "bad??name"
    assert len(decode_name(b"x" * 5000)) == 256
    assert decode_short(b"1") == "1"
    assert decode_short(b"y" * 100).endswith("...")
    assert len(decode_short(b"y" * 100)) == 67


def test_libxl_type():
    assert parse_libxl_type(b"pvh") == "pvh"
    assert parse_libxl_type(b"hvm") == "hvm"
    assert parse_libxl_type(None) == "hvm"  # libxl's default for an HVM container
    assert parse_libxl_type(b"garbage") == "hvm"
