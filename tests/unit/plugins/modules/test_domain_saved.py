# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""domain_saved as Ansible runs it, on fake backends and a fake xl."""

import json
import os

from ansible_collections.xen.suspend.plugins.modules import domain_saved

from module_runner import module_args, run_module
from xen_fakes import World
from xl_fakes import FakeXl, saveable


def setup(monkeypatch, modes=None):
    world = World()
    saveable(world, 3)
    saveable(world, 4)
    xl = FakeXl(world, modes)
    monkeypatch.setattr(domain_saved, "XlCommands", lambda: xl)
    return world, xl


def args(tmp_path, **kwargs):
    kwargs.setdefault("save_dir", str(tmp_path / "save"))
    return module_args(tmp_path, **kwargs)


def test_saves_reports_and_a_second_run_is_unchanged(tmp_path, monkeypatch, capsys):
    world, xl = setup(monkeypatch)
    run = run_module(domain_saved.main, args(tmp_path, domains=["guest*"]),
                     world.backends(tmp_path), monkeypatch, capsys)
    result = run.result
    assert run.rc == 0 and not run.failed, result
    assert result["changed"] and result["saved"] == ["guest3", "guest4"]
    assert result["save_dir"] == str(tmp_path / "save")
    assert result["ledger"] == str(tmp_path / "ledger" / "ledger.json")
    assert [d["after"] for d in result["domains"]] == ["saved", "saved"]
    assert all(os.path.exists(d["image"]) for d in result["domains"])
    json.dumps(result)
    again = run_module(domain_saved.main, args(tmp_path, domains=["guest3", "guest4"]),
                       world.backends(tmp_path), monkeypatch, capsys)
    assert not again.failed and again.result["changed"] is False
    assert again.result["unchanged"] == ["guest3", "guest4"]
    assert [c for c in xl.calls if c[0] == "save"] == [("save", 3, result["domains"][0]["image"] + ".part"),
                                                       ("save", 4, result["domains"][1]["image"] + ".part")]


def test_check_mode_and_diff(tmp_path, monkeypatch, capsys):
    world, xl = setup(monkeypatch)
    run = run_module(domain_saved.main, args(tmp_path, domains=["guest3"], _ansible_check_mode=True,
                                             _ansible_diff=True),
                     world.backends(tmp_path), monkeypatch, capsys)
    assert run.result["changed"] and run.result["saved"] == ["guest3"]
    assert run.result["diff"] == {"before": {"guest3": "blocked"}, "after": {"guest3": "saved"}}
    assert xl.calls == [] and not os.path.exists(str(tmp_path / "save"))


def test_a_failed_save_fails_the_task_naming_domain_and_phase(tmp_path, monkeypatch, capsys):
    world, _xl = setup(monkeypatch, modes={3: "enospc"})
    run = run_module(domain_saved.main, args(tmp_path, domains=["guest3"]),
                     world.backends(tmp_path), monkeypatch, capsys)
    assert run.failed
    assert run.result["msg"].startswith("1 of 1 domains could not be saved: domain guest3 (domid 3), phase save: ")
    assert run.result["failed_domains"] == ["guest3"]


def test_bad_options_and_unknown_targets_touch_nothing(tmp_path, monkeypatch, capsys):
    world, xl = setup(monkeypatch)
    for bad, words in (({"save_dir": "relative/dir"}, "save_dir must be an absolute path"),
                       ({"parallel": -2}, "parallel must be >= 0"),
                       ({"domains": ["nosuch"]}, "no domain or saved guest matches name 'nosuch'"),
                       ({"domains": []}, "domains is empty")):
        options = dict({"domains": ["guest3"]}, **bad)
        run = run_module(domain_saved.main, args(tmp_path, **options), world.backends(tmp_path),
                         monkeypatch, capsys)
        assert run.failed and words in run.result["msg"], (bad, run.result["msg"])
    assert xl.calls == []
    assert not world.domains[3].destroyed


def test_a_protected_or_excluded_typo_fails_before_anything_is_saved(tmp_path, monkeypatch, capsys):
    world, xl = setup(monkeypatch)
    for typo, words in (({"protected": ["guest33"]}, "protected name 'guest33' matches no domain"),
                        ({"exclude": ["domid:44"]}, "exclude domid 'domid:44' matches no domain")):
        run = run_module(domain_saved.main, args(tmp_path, domains=["guest*"], **typo),
                         world.backends(tmp_path), monkeypatch, capsys)
        assert run.failed and words in run.result["msg"], (typo, run.result["msg"])
        assert run.result["msg"].startswith("invalid targets, nothing was touched")
    assert xl.calls == []
    pattern = run_module(domain_saved.main, args(tmp_path, domains=["guest3"], protected=["fw-*"]),
                         world.backends(tmp_path), monkeypatch, capsys)
    assert not pattern.failed and pattern.result["saved"] == ["guest3"]
    assert "protected pattern 'fw-*' matches no domain" in json.dumps(pattern.result["warnings"])


def test_a_protected_name_of_a_guest_already_saved_is_no_typo(tmp_path, monkeypatch, capsys):
    """guest3 saved by a first run is only in the ledger now: naming it still means something."""
    world, xl = setup(monkeypatch)
    first = run_module(domain_saved.main, args(tmp_path, domains=["guest3"]), world.backends(tmp_path),
                       monkeypatch, capsys)
    assert first.result["saved"] == ["guest3"]
    second = run_module(domain_saved.main, args(tmp_path, domains=["guest4"], exclude=["guest3"]),
                        world.backends(tmp_path), monkeypatch, capsys)
    assert not second.failed, second.result["msg"]
    assert second.result["saved"] == ["guest4"]
