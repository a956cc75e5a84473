# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Stub domains and driver domains: found in xenstore, refused by the modules themselves unless
named in allow_service_domains (issue 11, item 2)."""

import json

import pytest

from ansible_collections.xen.suspend.plugins.module_utils._inventory import list_records
from ansible_collections.xen.suspend.plugins.module_utils._service_domains import (
    find_service_domains, parse_domid)
from ansible_collections.xen.suspend.plugins.modules import domain_info, domain_suspended

from module_runner import module_args, run_module
from xen_fakes import World


args = module_args


def service_world():
    """web (3) is an HVM guest whose device model runs in web-dm (4) (~/target and
    ~/image/device-model-domid), ioemu (6) is named only by app's device-model-domid, netback (5)
    runs backends, plain (7) is a guest."""
    world = World()
    world.add_domain(3, "web", hvm=True, callback_irq=5)
    world.add_domain(4, "web-dm")
    world.add_domain(5, "netback")
    world.add_domain(6, "ioemu")
    world.add_domain(7, "plain")
    world.add_domain(8, "app", hvm=True, callback_irq=5)
    nodes = world.xenstore.nodes
    nodes[b"/local/domain/4/target"] = b"3"
    nodes[b"/local/domain/3/image/device-model-domid"] = b"4"
    nodes[b"/local/domain/8/image/device-model-domid"] = b"6"
    nodes[b"/local/domain/5/backend/vif/7/0/state"] = b"4"
    nodes[b"/local/domain/5/backend/vbd/7/51712/state"] = b"4"
    return world


@pytest.mark.parametrize("value,expected", [
    (b"3", 3), (b"32751", 32751), (b"32752", None), (b"-1", None), (b"3 ", 3), (b"", None),
    (b"0x3", None), (b"123456", None), (b"\xd9\xa3", None), (None, None), (b"3\x00", 3)])
def test_parse_domid_is_hostile_safe(value, expected):
    assert parse_domid(value) == expected


def test_detection_finds_each_kind_with_one_listing_per_domain():
    world = service_world()
    records = list_records(world.xenctrl, world.xenstore, names_for=set())
    before = world.xenstore.round_trips
    found = find_service_domains(world.xenstore, records)
    assert sorted(found.reasons) == [4, 5, 6]
    assert "stub domain of domid 3 (xenstore ~/target)" in " ".join(found.get(4))
    assert "its ~/image/device-model-domid" in " ".join(found.get(4))
    assert "stub domain of domid 8" in found.get(6)[0]
    assert found.get(5) == ["driver domain serving vbd, vif backends (xenstore ~/backend)"]
    # dom0 is not listed; one listing per domain, one more for each target/image/backend node
    trips = world.xenstore.round_trips - before
    assert trips == 6 + 4
    assert dict((r.domid, r.xs_trips) for r in records)[7] == 1


def test_a_guest_cannot_name_dom0_or_itself_and_odd_values_do_not_crash():
    world = World()
    world.add_domain(3, "sly")
    world.xenstore.nodes[b"/local/domain/3/image/device-model-domid"] = b"0"
    world.add_domain(4, "odd")
    world.xenstore.nodes[b"/local/domain/4/image/device-model-domid"] = b"4"
    world.add_domain(5, "garbage-stub")
    world.xenstore.nodes[b"/local/domain/5/target"] = b"\x01junk"
    records = list_records(world.xenctrl, world.xenstore, names_for=set())
    found = find_service_domains(world.xenstore, records)
    assert sorted(found.reasons) == [5]
    assert "unreadable value" in found.get(5)[0]


def test_suspend_refuses_service_domains_named_explicitly(tmp_path, monkeypatch, capsys):
    world = service_world()
    for name in ("web-dm", "netback", "ioemu"):
        run = run_module(domain_suspended.main, args(tmp_path, domains=["plain", name]),
                         world.backends(tmp_path), monkeypatch, capsys)
        assert run.failed, name
        assert run.result["error"]["kind"] == "invalid_target"
        assert "nothing was touched" in run.result["msg"] and name in run.result["msg"]
        assert "service domain" in run.result["msg"] and "allow_service_domains" in run.result["msg"]
        assert not any(d.suspended for d in world.domains.values())
        assert not any(op == "write" for op, _path in world.xenstore.ops)


def test_suspend_pattern_skips_service_domains_with_the_reason(tmp_path, monkeypatch, capsys):
    world = service_world()
    run = run_module(domain_suspended.main, args(tmp_path, domains=["*"]),
                     world.backends(tmp_path), monkeypatch, capsys)
    assert not run.failed, run.result
    assert sorted(run.result["suspended"]) == ["app", "plain", "web"]
    skipped = dict((item["name"], item["reason"]) for item in run.result["skipped_domains"])
    assert sorted(skipped) == ["Domain-0", "ioemu", "netback", "web-dm"]
    assert "~/target" in skipped["web-dm"] and "driver domain" in skipped["netback"]
    assert not world.domains[4].suspended and not world.domains[5].suspended


def test_allow_service_domains_overrides_and_warns_about_idle_selectors(tmp_path, monkeypatch, capsys):
    world = service_world()
    run = run_module(domain_suspended.main,
                     args(tmp_path, domains=["netback"], allow_service_domains=["netback", "nosuch-*"]),
                     world.backends(tmp_path), monkeypatch, capsys)
    assert not run.failed, run.result
    assert run.result["suspended"] == ["netback"]
    assert "'nosuch-*' matches no service domain" in json.dumps(run.result.get("warnings"))


def test_bad_allow_selector_fails_before_anything_is_opened(tmp_path, monkeypatch, capsys):
    world = service_world()
    run = run_module(domain_suspended.main, args(tmp_path, domains=["plain"], allow_service_domains=["domid:x"]),
                     world.backends(tmp_path), monkeypatch, capsys)
    assert run.failed and "domid:x" in run.result["msg"]
    assert run.factory_calls == []


def test_domain_info_flags_service_domains_and_gathers_them(tmp_path, monkeypatch, capsys):
    world = service_world()
    run = run_module(domain_info.main, args(tmp_path, gather=["domains", "service_domains"]),
                     world.backends(tmp_path), monkeypatch, capsys)
    assert not run.failed, run.result
    domains = dict((d["name"], d) for d in run.result["domains"])
    assert domains["web-dm"]["protected"] is True and "service domain" in domains["web-dm"]["protected_reason"]
    assert domains["web-dm"]["service_domain"]
    assert domains["plain"]["protected"] is False and domains["plain"]["service_domain"] is None
    assert [(d["domid"], d["name"]) for d in run.result["service_domains"]] == [
        (4, "web-dm"), (5, "netback"), (6, "ioemu")]
    allowed = run_module(domain_info.main, args(tmp_path, allow_service_domains=["web-*"]),
                         world.backends(tmp_path), monkeypatch, capsys)
    domains = dict((d["name"], d) for d in allowed.result["domains"])
    assert domains["web-dm"]["protected"] is False and domains["web-dm"]["service_domain"]


def test_allow_by_name_works_when_the_targets_need_no_names(tmp_path, monkeypatch, capsys):
    world = service_world()
    run = run_module(domain_suspended.main,
                     args(tmp_path, domains=["domid:5"], allow_service_domains=["netback"]),
                     world.backends(tmp_path), monkeypatch, capsys)
    assert not run.failed, run.result
    assert run.result["suspended"] == ["netback"]
