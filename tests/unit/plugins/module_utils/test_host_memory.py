# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The host's memory from `xl info`: parsed from xl's real layout, None when xl cannot say."""

import os
import stat

from ansible_collections.xen.suspend.plugins.module_utils._host_memory import host_memory, parse_xl_info

XL_INFO = """host                   : dom0
release                : 6.1.0-28-amd64
total_memory           : 16383
free_memory            : 12010
sharing_freed_memory   : 0
xen_commandline        : placeholder dom0_mem=2048M,max:2048M
"""


def test_xl_info_lines_are_parsed():
    values = parse_xl_info(XL_INFO)
    assert values["total_memory"] == "16383" and values["free_memory"] == "12010"
    assert values["xen_commandline"] == "placeholder dom0_mem=2048M,max:2048M"


def _fake_xl(tmp_path, body):
    xl = tmp_path / "xl"
    xl.write_text("#!/bin/sh\n" + body)
    xl.chmod(xl.stat().st_mode | stat.S_IXUSR)
    return str(tmp_path)


def test_host_memory_from_xl_on_path(tmp_path):
    path = _fake_xl(tmp_path, "cat <<'END'\n%sEND\n" % XL_INFO)
    assert host_memory(path) == (16383, 12010)


def test_no_answer_is_none(tmp_path):
    assert host_memory(_fake_xl(tmp_path, "echo 'libxl: error: cannot init xl context' >&2; exit 1\n")) is None
    assert host_memory(os.path.join(str(tmp_path), "nothing-here")) is None
