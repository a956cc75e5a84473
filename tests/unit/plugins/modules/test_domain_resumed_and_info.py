# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from ansible_collections.xen.suspend.plugins.modules import (
    domain_info, domain_resumed, domain_suspended)

from module_runner import run_module
from xen_fakes import World


def args(tmp_path, **kwargs):
    base = {"ledger": str(tmp_path / "ledger" / "ledger.json"),
            "xen_run_dir": str(tmp_path / "run-xen")}
    base.update(kwargs)
    return base


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
