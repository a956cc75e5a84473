# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A host or a domain of another toolstack (XAPI, libvirt's libxl driver) is refused before
anything is touched, unless allow_other_toolstack (issue 11, item 4)."""

import json

import pytest

from ansible_collections.xen.suspend.plugins.module_utils import _toolstack
from ansible_collections.xen.suspend.plugins.modules import domain_info, domain_suspended

from module_runner import module_args, run_module
from xen_fakes import World


@pytest.fixture
def host(tmp_path, monkeypatch):
    """An empty dom0 file system: no XAPI inventory, no processes, no libvirt state."""
    root = tmp_path / "host"
    (root / "proc").mkdir(parents=True)
    monkeypatch.setattr(_toolstack, "XAPI_INVENTORY", str(root / "etc" / "xensource-inventory"))
    monkeypatch.setattr(_toolstack, "PROC_DIR", str(root / "proc"))
    monkeypatch.setattr(_toolstack, "LIBVIRT_LIBXL_STATE_DIRS", (str(root / "run" / "libvirt" / "libxl"),))
    return root


def process(root, pid, name):
    (root / "proc" / str(pid)).mkdir()
    (root / "proc" / str(pid) / "comm").write_text(name + "\n")


def libvirt_domain(root, name):
    state = root / "run" / "libvirt" / "libxl"
    state.mkdir(parents=True, exist_ok=True)
    (state / (name + ".xml")).write_text("<domstatus/>")


def xapi_inventory(root):
    (root / "etc").mkdir()
    (root / "etc" / "xensource-inventory").write_text("INSTALLATION_UUID='x'\n")


args = module_args


def world():
    fleet = World()
    fleet.add_domain(3, "web1")
    fleet.add_domain(4, "lv-guest")
    return fleet


def test_a_plain_xl_host_is_xl(host):
    process(host, 1, "systemd")
    process(host, 77, "xenstored")
    found = _toolstack.detect()
    assert found.name == "xl" and found.host_refusal is None and found.others == []


@pytest.mark.parametrize("evidence", ["inventory", "process"])
def test_xapi_host_is_refused_before_anything_is_opened(host, evidence, tmp_path, monkeypatch, capsys):
    if evidence == "inventory":
        xapi_inventory(host)
    else:
        process(host, 1234, "xapi")
    fleet = world()
    run = run_module(domain_suspended.main, args(tmp_path, domains=["web1"]), fleet.backends(tmp_path),
                     monkeypatch, capsys)
    assert run.failed
    assert run.result["error"]["kind"] == "other_toolstack"
    assert "XAPI" in run.result["msg"] and "allow_other_toolstack" in run.result["msg"]
    assert "nothing was touched" in run.result["msg"]
    assert run.factory_calls == []  # not even xenstore or libxenctrl were opened
    assert not fleet.domains[3].suspended


def test_xapi_host_with_the_override_is_acted_on_with_a_warning(host, tmp_path, monkeypatch, capsys):
    xapi_inventory(host)
    fleet = world()
    run = run_module(domain_suspended.main, args(tmp_path, domains=["web1"], allow_other_toolstack=True),
                     fleet.backends(tmp_path), monkeypatch, capsys)
    assert not run.failed, run.result
    assert run.result["suspended"] == ["web1"]
    assert "allow_other_toolstack" in json.dumps(run.result["warnings"])


def test_libvirt_domains_are_refused_per_domain(host, tmp_path, monkeypatch, capsys):
    libvirt_domain(host, "lv-guest")
    process(host, 99, "libvirtd")
    fleet = world()
    run = run_module(domain_suspended.main, args(tmp_path, domains=["domid:4"]), fleet.backends(tmp_path),
                     monkeypatch, capsys)
    assert run.failed and "lv-guest (domid 4)" in run.result["msg"] and "libvirt" in run.result["msg"]
    assert not fleet.domains[4].suspended
    # a pattern leaves it out, the xl guest is suspended
    run = run_module(domain_suspended.main, args(tmp_path, domains=["*"]), fleet.backends(tmp_path),
                     monkeypatch, capsys)
    assert not run.failed, run.result
    assert run.result["suspended"] == ["web1"]
    skipped = dict((item["name"], item["reason"]) for item in run.result["skipped_domains"])
    assert "managed by libvirt" in skipped["lv-guest"]
    assert not fleet.domains[4].suspended
    # domain_info shows it protected
    info = run_module(domain_info.main, args(tmp_path), fleet.backends(tmp_path), monkeypatch, capsys)
    domains = dict((d["name"], d) for d in info.result["domains"])
    assert domains["lv-guest"]["protected"] and "libvirt" in domains["lv-guest"]["protected_reason"]
    assert not domains["web1"]["protected"]


def test_virtxend_without_its_state_directory_refuses_the_host(host, tmp_path, monkeypatch, capsys):
    process(host, 55, "virtxend")
    found = _toolstack.detect()
    assert found.host_refusal and "virtxend" in found.host_refusal
    fleet = world()
    run = run_module(domain_suspended.main, args(tmp_path, domains=["web1"]), fleet.backends(tmp_path),
                     monkeypatch, capsys)
    assert run.failed and run.result["error"]["kind"] == "other_toolstack"


def test_libvirtd_alone_is_not_evidence(host):
    process(host, 99, "libvirtd")  # e.g. for KVM on another host image; no libxl state
    found = _toolstack.detect()
    assert found.others == [] and found.host_refusal is None
