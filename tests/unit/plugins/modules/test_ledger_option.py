# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ledger option: an absolute path, and every result says which ledger the run used."""

import pytest

from ansible_collections.xen.suspend.plugins.modules import (
    domain_info, domain_resumed, domain_suspended)

from module_runner import run_module
from xen_fakes import World

MODULES = [domain_suspended.main, domain_resumed.main, domain_info.main]


@pytest.mark.parametrize("main", MODULES)
def test_a_relative_ledger_path_is_refused_before_anything_is_touched(
        tmp_path, monkeypatch, capsys, main):
    world = World()
    guest = world.add_domain(3, "web1")
    monkeypatch.chdir(tmp_path)
    run = run_module(main, {"ledger": "ledger.json", "domains": ["web1"],
                            "xen_run_dir": str(tmp_path / "run-xen")},
                     world.backends(tmp_path), monkeypatch, capsys)
    assert run.failed
    assert run.result["error"]["kind"] == "invalid_option"
    assert "ledger must be an absolute path" in run.result["msg"]
    assert not guest.suspended and guest.requests == 0
    assert not (tmp_path / "ledger.json").exists()


@pytest.mark.parametrize("main", MODULES)
def test_every_result_names_its_ledger(tmp_path, monkeypatch, capsys, main):
    world = World()
    world.add_domain(3, "web1")
    ledger = str(tmp_path / "state" / "ledger.json")
    run = run_module(main, {"ledger": ledger, "domains": ["web1"],
                            "xen_run_dir": str(tmp_path / "run-xen")},
                     world.backends(tmp_path), monkeypatch, capsys)
    assert not run.failed, run.result
    assert run.result["ledger"] == ledger
