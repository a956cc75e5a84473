# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

import json

from ansible_collections.xen.suspend.plugins.modules import (
    domain_info, domain_resumed, domain_suspended)

from module_runner import module_args, run_module
from xen_fakes import World


args = module_args


def test_resume_what_the_ledger_holds(tmp_path, monkeypatch, capsys):
    world = World()
    web = world.add_domain(3, "web1")
    other = world.add_domain(4, "other")
    run_module(domain_suspended.main, args(tmp_path, domains=["web1"]),
               world.backends(tmp_path), monkeypatch, capsys)
    other.shutdown_code = 2
    run = run_module(domain_resumed.main, args(tmp_path, _ansible_diff=True),
                     world.backends(tmp_path), monkeypatch, capsys)
    assert not run.failed and run.result["changed"]
    assert run.result["resumed"] == ["web1"]
    assert run.result["diff"]["before"] == {"web1": "suspended"}
    assert not web.suspended and other.suspended
    again = run_module(domain_resumed.main, args(tmp_path), world.backends(tmp_path),
                       monkeypatch, capsys)
    assert again.result["changed"] is False and again.result["domains"] == []


def test_resume_unrecorded_needs_force(tmp_path, monkeypatch, capsys):
    world = World()
    guest = world.add_domain(3, "saved")
    guest.shutdown_code = 2
    run = run_module(domain_resumed.main, args(tmp_path, domains=["saved"]),
                     world.backends(tmp_path), monkeypatch, capsys)
    assert run.failed and "force_unrecorded" in run.result["msg"]
    assert guest.suspended
    run = run_module(domain_resumed.main, args(tmp_path, domains=["saved"], force_unrecorded=True),
                     world.backends(tmp_path), monkeypatch, capsys)
    assert not run.failed and run.result["resumed"] == ["saved"]
    assert not guest.suspended


def test_resume_check_mode(tmp_path, monkeypatch, capsys):
    world = World()
    web = world.add_domain(3, "web1")
    run_module(domain_suspended.main, args(tmp_path, domains=["web1"]),
               world.backends(tmp_path), monkeypatch, capsys)
    run = run_module(domain_resumed.main, args(tmp_path, _ansible_check_mode=True),
                     world.backends(tmp_path), monkeypatch, capsys)
    assert run.result["changed"] and run.result["resumed"] == ["web1"]
    assert web.suspended


def test_info_reports_every_domain(tmp_path, monkeypatch, capsys):
    world = World()
    world.add_domain(3, "web1")
    world.add_domain(4, "legacy", evtchn_value=b"12x")
    world.add_domain(5, "win", hvm=True, callback_irq=0)
    world.add_domain(6, "pvh", hvm=True, dtype="pvh", callback_irq=28)
    run_module(domain_suspended.main, args(tmp_path, domains=["web1"]),
               world.backends(tmp_path), monkeypatch, capsys)
    run = run_module(domain_info.main, args(tmp_path, protected=["win"], _ansible_check_mode=True),
                     world.backends(tmp_path), monkeypatch, capsys)
    assert not run.failed and run.result["changed"] is False
    domains = dict((d["name"], d) for d in run.result["domains"])
    assert list(domains) == ["Domain-0", "web1", "legacy", "win", "pvh"]
    assert domains["Domain-0"]["protected"] is True
    assert domains["web1"]["state"] == "suspended"
    assert domains["web1"]["ledger"]["state"] == "suspended"
    assert domains["legacy"]["suspend_event_channel"]["valid"] is False
    assert "not a plain decimal" in domains["legacy"]["suspend_event_channel"]["status"]
    assert domains["legacy"]["suspend_method"] == "xenstore"
    assert (domains["win"]["type"], domains["win"]["pv_drivers"]) == ("hvm", False)
    assert domains["win"]["suspend_method"] == "direct" and domains["win"]["protected"]
    assert (domains["pvh"]["type"], domains["pvh"]["suspend_method"]) == ("pvh", "xenstore")
    assert domains["web1"]["type"] == "pv" and domains["web1"]["pv_drivers"] is True
    assert run.result["xen_version"] == "4.17"
    assert run.result["vanished"] == []


def test_info_filters_and_lists_vanished(tmp_path, monkeypatch, capsys):
    world = World()
    gone = world.add_domain(3, "gone")
    world.add_domain(4, "web1")
    run_module(domain_suspended.main, args(tmp_path, domains=["gone"]),
               world.backends(tmp_path), monkeypatch, capsys)
    gone.destroyed = True
    run = run_module(domain_info.main, args(tmp_path, domains=["web*", "0"]),
                     world.backends(tmp_path), monkeypatch, capsys)
    assert [d["name"] for d in run.result["domains"]] == ["web1", "Domain-0"]
    assert [v["name"] for v in run.result["vanished"]] == ["gone"]


# -- issue 11: honest results ----------------------------------------------------------------

def test_resume_with_no_ledger_names_the_suspended_domains_it_leaves(tmp_path, monkeypatch, capsys):
    world = World()
    guest = world.add_domain(3, "orphan")
    guest.shutdown_code = 2  # suspended, and the ledger file is missing
    run = run_module(domain_resumed.main, args(tmp_path), world.backends(tmp_path),
                     monkeypatch, capsys)
    assert not run.failed and run.result["resumed"] == []
    warnings = json.dumps(run.result.get("warnings", []))
    assert "not recorded in the ledger" in warnings and "orphan (domid 3)" in warnings


def test_a_vanished_guest_is_a_warning_and_pruning_it_is_a_change(tmp_path, monkeypatch, capsys):
    world = World()
    guest = world.add_domain(3, "gone")
    run_module(domain_suspended.main, args(tmp_path, domains=["gone"]), world.backends(tmp_path),
               monkeypatch, capsys)
    guest.destroyed = True
    run = run_module(domain_resumed.main, args(tmp_path), world.backends(tmp_path),
                     monkeypatch, capsys)
    assert "no longer exists" in json.dumps(run.result.get("warnings", []))
    assert run.result["changed"] is False
    for check in (True, False):
        run = run_module(domain_resumed.main, args(tmp_path, prune_vanished=True,
                                                   _ansible_check_mode=check),
                         world.backends(tmp_path), monkeypatch, capsys)
        assert run.result["changed"] is True, (check, run.result)


def test_info_lists_the_domains_when_the_ledger_is_corrupt(tmp_path, monkeypatch, capsys):
    world = World()
    world.add_domain(3, "web1").shutdown_code = 2
    ledger = tmp_path / "ledger" / "ledger.json"
    ledger.parent.mkdir()
    ledger.write_text('{"format": "xen.suspend.ledger", "entr')
    run = run_module(domain_info.main, args(tmp_path), world.backends(tmp_path),
                     monkeypatch, capsys)
    assert not run.failed
    assert "corrupt" in run.result["ledger_error"] and "domain_info" in run.result["ledger_error"]
    assert [d["name"] for d in run.result["domains"]] == ["Domain-0", "web1"]


def test_suspend_refuses_a_protected_typo_before_anything(tmp_path, monkeypatch, capsys):
    world = World()
    firewall = world.add_domain(3, "firewall")
    run = run_module(domain_suspended.main, args(tmp_path, domains=["*"], protected=["firewal"]),
                     world.backends(tmp_path), monkeypatch, capsys)
    assert run.failed and "protected name 'firewal' matches no domain" in run.result["msg"]
    assert not firewall.suspended and firewall.requests == 0


def test_an_unusable_ledger_stops_suspend_before_any_guest(tmp_path, monkeypatch, capsys):
    world = World()
    guest = world.add_domain(3, "web1")
    (tmp_path / "ledger").write_text("a file where the ledger's directory should be")
    run = run_module(domain_suspended.main, args(tmp_path, domains=["*"], continue_on_error=True),
                     world.backends(tmp_path), monkeypatch, capsys)
    assert run.failed and run.result["error"]["kind"] == "ledger_error", run.result
    assert guest.requests == 0 and not guest.suspended
