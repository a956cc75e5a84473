# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

import json

from ansible_collections.xen.suspend.plugins.module_utils import _module_base
from ansible_collections.xen.suspend.plugins.module_utils._errors import DependencyError
from ansible_collections.xen.suspend.plugins.modules import domain_suspended

from module_runner import module_args, run_module
from xen_fakes import World


def ledger_path(tmp_path):
    return str(tmp_path / "ledger" / "ledger.json")


args = module_args


def world_with_guests():
    world = World()
    web = world.add_domain(3, "web1")
    db = world.add_domain(4, "db1", evtchn_port=8)
    return world, web, db


def test_suspends_and_reports(tmp_path, monkeypatch, capsys):
    world, web, db = world_with_guests()
    run = run_module(domain_suspended.main, args(tmp_path, domains=["*"]),
                     world.backends(tmp_path), monkeypatch, capsys)
    result = run.result
    assert run.rc == 0 and not run.failed
    assert result["changed"] is True
    assert result["suspended"] == ["web1", "db1"]
    assert result["unchanged"] == [] and result["failed_domains"] == []
    assert [d["method"] for d in result["domains"]] == ["xenstore", "event_channel"]
    assert result["skipped_domains"][0]["domid"] == 0
    assert "skipped" not in result  # Ansible would call the whole task skipped
    assert result["stats"]["domains"] == 2 and result["stats"]["attempted"] == 2
    assert web.suspended and db.suspended
    assert run.factory_calls == [{"ledger_path": ledger_path(tmp_path),
                                  "xen_run_dir": str(tmp_path / "run-xen"),
                                  "xenstore_timeout": 10.0}]
    json.dumps(result)


def test_second_run_is_unchanged(tmp_path, monkeypatch, capsys):
    world, _web, _db = world_with_guests()
    run_module(domain_suspended.main, args(tmp_path, domains=["web1"]),
               world.backends(tmp_path), monkeypatch, capsys)
    again = run_module(domain_suspended.main, args(tmp_path, domains=["web1"]),
                       world.backends(tmp_path), monkeypatch, capsys)
    assert again.result["changed"] is False
    assert again.result["unchanged"] == ["web1"]


def test_check_mode_and_diff(tmp_path, monkeypatch, capsys):
    world, web, _db = world_with_guests()
    run = run_module(domain_suspended.main,
                     args(tmp_path, domains=["web1"], _ansible_check_mode=True, _ansible_diff=True),
                     world.backends(tmp_path), monkeypatch, capsys)
    assert run.result["changed"] is True
    assert run.result["diff"] == {"before": {"web1": "blocked"}, "after": {"web1": "suspended"}}
    assert not web.suspended and web.requests == 0
    assert not (tmp_path / "ledger").exists()


def test_invalid_options_fail_before_opening_anything(tmp_path, monkeypatch, capsys):
    world, web, _db = world_with_guests()
    run = run_module(domain_suspended.main, args(tmp_path, domains=["web1"], timeout=-5),
                     world.backends(tmp_path), monkeypatch, capsys)
    assert run.failed
    assert "timeout" in run.result["msg"] and "nothing was touched" in run.result["msg"]
    assert run.factory_calls == []
    assert web.requests == 0


def test_empty_domains_is_refused(tmp_path, monkeypatch, capsys):
    world, _web, _db = world_with_guests()
    run = run_module(domain_suspended.main, args(tmp_path, domains=[]),
                     world.backends(tmp_path), monkeypatch, capsys)
    assert run.failed and "domains is empty" in run.result["msg"]


def test_dom0_and_protected_are_refused_and_nothing_touched(tmp_path, monkeypatch, capsys):
    world, web, db = world_with_guests()
    run = run_module(domain_suspended.main,
                     args(tmp_path, domains=["web1", "Domain-0", "db1"], protected=["db*"]),
                     world.backends(tmp_path), monkeypatch, capsys)
    assert run.failed
    assert "dom0" in run.result["msg"] and "db1 (domid 4)" in run.result["msg"]
    assert run.result["error"]["kind"] == "invalid_target"
    assert web.requests == 0 and db.notifications == 0


def test_failure_names_domain_and_phase(tmp_path, monkeypatch, capsys):
    world = World()
    world.add_domain(3, "mute", behaviour="ignore")
    run = run_module(domain_suspended.main, args(tmp_path, domains=["mute"], ack_timeout=0.5),
                     world.backends(tmp_path), monkeypatch, capsys)
    assert run.failed
    assert "mute (domid 3), phase acknowledge" in run.result["msg"]
    assert run.result["failed_domains"] == ["mute"]
    assert run.result["domains"][0]["error"]["kind"] == "not_acknowledged"


def test_continue_on_error_reports_without_failing(tmp_path, monkeypatch, capsys):
    world = World()
    world.add_domain(3, "mute", behaviour="ignore")
    fine = world.add_domain(4, "fine")
    run = run_module(domain_suspended.main,
                     args(tmp_path, domains=["mute", "fine"], ack_timeout=0.5, continue_on_error=True),
                     world.backends(tmp_path), monkeypatch, capsys)
    assert not run.failed
    assert run.result["failed_domains"] == ["mute"] and run.result["suspended"] == ["fine"]
    assert "could not be suspended" in json.dumps(run.result.get("warnings"))
    assert fine.suspended


def test_domains_a_stopped_run_never_asked_are_not_counted_as_failed(tmp_path, monkeypatch, capsys):
    world = World()
    world.add_domain(3, "mute", behaviour="ignore")
    later = [world.add_domain(4, "later1"), world.add_domain(5, "later2")]
    run = run_module(domain_suspended.main,
                     args(tmp_path, domains=["mute", "later1", "later2"], ack_timeout=0.5, parallel=1),
                     world.backends(tmp_path), monkeypatch, capsys)
    assert run.failed
    assert run.result["msg"].startswith("1 of 3 domains could not be suspended, 2 not attempted: ")
    assert not any(guest.suspended for guest in later)


def test_missing_cffi_is_reported_like_ansible_does(tmp_path, monkeypatch, capsys):
    world, _web, _db = world_with_guests()
    monkeypatch.setattr(_module_base, "HAS_CFFI", False)
    run = run_module(domain_suspended.main, args(tmp_path, domains=["web1"]),
                     world.backends(tmp_path), monkeypatch, capsys)
    assert run.failed
    assert "Failed to import the required Python library (cffi)" in run.result["msg"]
    assert "python3-cffi" in run.result["msg"]


def test_missing_xen_library_names_the_package(tmp_path, monkeypatch, capsys):
    error = DependencyError("cannot load libxenctrl.so.4.17 for the running Xen 4.17",
                            library="libxenctrl", install="libxenmisc4.17 (Debian/Ubuntu)")
    run = run_module(domain_suspended.main, args(tmp_path, domains=["web1"]), error,
                     monkeypatch, capsys)
    assert run.failed
    assert "libxenctrl.so.4.17" in run.result["msg"] and "libxenmisc4.17" in run.result["msg"]
