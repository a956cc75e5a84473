# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: parsing xenstore values a guest can write.

A guest owns ~/device/suspend/event-channel and ~/control/*; whatever it wrote is treated
as hostile: length-bounded, matched against a strict grammar, never evaluated and never
passed to a format string. Anything that does not parse is "not advertised", with a reason.
"""

import re

EVENT_CHANNEL_MAX_LEN = 10      # "2147483647"
EVENT_CHANNEL_MAX = (1 << 31) - 1
NAME_MAX_LEN = 256
SHORT_VALUE_MAX_LEN = 64

_DECIMAL_RE = re.compile(br"^[1-9][0-9]*\Z")
_PRINTABLE_RE = re.compile(br"[^\x20-\x7e]")


def _preview(value, limit=16):
    """A safe, short, printable rendering of a hostile value for messages."""
    text = _PRINTABLE_RE.sub(b"?", value[:limit]).decode("ascii")
    if len(value) > limit:
        text += "..."
    return repr(text)


def parse_event_channel(value):
    """(port, reason): port is an int in 1..2^31-1, or None with the reason it is unusable.

    libxl uses atoi(), which turns garbage into 0 and accepts signs, spaces and suffixes;
    here only a plain decimal integer without leading zeros counts as advertised.
    """
    if value is None:
        return None, "absent"
    if value == b"":
        return None, "empty (not advertised)"
    if len(value) > EVENT_CHANNEL_MAX_LEN:
        return None, "invalid: %d bytes is too long for a port number" % len(value)
    if not _DECIMAL_RE.match(value):
        return None, "invalid: %s is not a plain decimal port number" % _preview(value)
    port = int(value)
    if port > EVENT_CHANNEL_MAX:
        return None, "invalid: %d is out of range 1..%d" % (port, EVENT_CHANNEL_MAX)
    return port, "advertised"


def decode_name(value):
    """Domain name as text; None when absent. Non-printable bytes become '?'."""
    if value is None:
        return None
    return _PRINTABLE_RE.sub(b"?", value[:NAME_MAX_LEN]).decode("ascii")


def decode_short(value):
    """A short status value (feature flags, control/shutdown) as bounded printable text."""
    if value is None:
        return None
    if len(value) > SHORT_VALUE_MAX_LEN:
        return _PRINTABLE_RE.sub(b"?", value[:SHORT_VALUE_MAX_LEN]).decode("ascii") + "..."
    return _PRINTABLE_RE.sub(b"?", value).decode("ascii")


def parse_libxl_type(value):
    """/libxl/<domid>/type as libxl reads it for a domain flagged hvm_guest: pvh, else hvm."""
    if value == b"pvh":
        return "pvh"
    return "hvm"
