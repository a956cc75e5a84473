# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Without cffi and pyxs the modules still import, and fail with what to install."""

import json
import os
import subprocess
import sys

import pytest

from ansible_collections.xen.suspend.plugins.module_utils import _errors

# the directory holding ansible_collections/ on this run's sys.path (set up by the unit conftest;
# not imported from it: several suites' conftests share that module name in one pytest run)
COLLECTIONS_PARENT = os.path.abspath(os.path.join(os.path.dirname(_errors.__file__), *[".."] * 5))

SCRIPT = r"""
import json, sys

class Blocker(object):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError("blocked for the test: " + name)
        return None

BLOCKED = set(sys.argv[2].split(","))
sys.meta_path.insert(0, Blocker())
sys.path.insert(0, sys.argv[1])

from ansible_collections.xen.suspend.plugins.module_utils import _xen_libraries, _xenstore
from ansible.module_utils.testing import patch_module_args
from ansible_collections.xen.suspend.plugins.module_utils import _module_base
from ansible_collections.xen.suspend.plugins.modules import domain_suspended
_module_base.RESPAWN_INTERPRETERS = ()  # no other python to respawn under

print(json.dumps({"cffi": _xen_libraries.HAS_CFFI, "pyxs": _xenstore.HAS_PYXS}))
with patch_module_args({"domains": ["web1"]}):
    try:
        domain_suspended.main()
    except SystemExit:
        pass
"""


@pytest.mark.parametrize("blocked,package", [("cffi", "python3-cffi"), ("pyxs", "python3-pyxs")])
def test_missing_python_library_is_reported(blocked, package):
    output = subprocess.check_output(
        [sys.executable, "-c", SCRIPT, COLLECTIONS_PARENT, blocked],
        universal_newlines=True, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    flags_line, result_line = [line for line in output.splitlines() if line.startswith("{")][:2]
    flags = json.loads(flags_line)
    assert flags[blocked] is False
    result = json.loads(result_line)
    assert result["failed"] is True
    assert "Failed to import the required Python library (%s)" % blocked in result["msg"]
    assert package in result["msg"]
