# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run a module's main() in-process with fake backends (ansible-core 2.19 patch_module_args)."""

import json

import pytest
from ansible.module_utils import _internal as module_internal
from ansible.module_utils.testing import patch_module_args

from ansible_collections.xen.suspend.plugins.module_utils import _module_base


class ModuleRun(object):
    def __init__(self, rc, result, factory_calls):
        self.rc = rc
        self.result = result
        self.factory_calls = factory_calls

    @property
    def failed(self):
        return bool(self.result.get("failed"))


def module_args(tmp_path, **kwargs):
    """A module's arguments with the ledger and Xen run directory under ``tmp_path``."""
    base = {"ledger": str(tmp_path / "ledger" / "ledger.json"),
            "xen_run_dir": str(tmp_path / "run-xen")}
    base.update(kwargs)
    return base


def run_module(main, args, backends, monkeypatch, capsys):
    calls = []

    def factory(**kwargs):
        calls.append(kwargs)
        if isinstance(backends, Exception):
            raise backends
        return backends

    monkeypatch.setattr(_module_base, "BACKENDS_FACTORY", factory)
    # No respawn under another python of this machine (the tests for it use fakes).
    monkeypatch.setattr(_module_base, "RESPAWN_INTERPRETERS", ())
    # A controller import earlier in the same process (a filter plugin's test) switches
    # ansible-core to controller mode, where module warnings go to Display, not the result.
    monkeypatch.setattr(module_internal, "is_controller", False)
    with patch_module_args(args):
        with pytest.raises(SystemExit) as caught:
            main()
    output = capsys.readouterr().out
    return ModuleRun(caught.value.code, json.loads(output), calls)
