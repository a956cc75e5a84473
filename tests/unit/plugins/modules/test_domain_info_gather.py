# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""domain_info: the control/shutdown permission flag (issue 11, item 5) and ``gather``, which
replaced the roles' own scripts (item 19)."""

import json
import os

import pytest

from ansible_collections.xen.suspend.plugins.module_utils import _module_base, _prerequisites, _toolstack
from ansible_collections.xen.suspend.plugins.module_utils._errors import XenstoreError
from ansible_collections.xen.suspend.plugins.module_utils._xenstore import may_write, parse_perms
from ansible_collections.xen.suspend.plugins.modules import domain_info

from module_runner import module_args, run_module
from xen_fakes import World


args = module_args


@pytest.mark.parametrize("payload,domid,writable", [
    (b"n5\x00", 5, True),            # libxl: the guest owns it
    (b"n0\x00r5\x00", 5, False),     # dom0's, read-only to the guest (a plain re-create under ~/control)
    (b"n0\x00b5\x00", 5, True),      # dom0's, the guest listed with read/write
    (b"w0\x00", 5, True),            # everyone may write
    (b"b0\x00r5\x00", 5, False),     # everyone but this guest
    (b"n7\x00", 5, False),           # another domain's
])
def test_may_write_decides_like_xenstored(payload, domid, writable):
    assert may_write(parse_perms(payload), domid) is writable


@pytest.mark.parametrize("payload", [b"", b"x5\x00", b"n\x00", b"n123456\x00", b"n5 \x00", b"n5\x00junk\x00"])
def test_odd_permission_replies_are_errors(payload):
    with pytest.raises(XenstoreError):
        parse_perms(payload)


def test_info_flags_a_control_node_the_guest_cannot_write(tmp_path, monkeypatch, capsys):
    world = World()
    world.add_domain(3, "win-ok", hvm=True, callback_irq=5)
    world.add_domain(4, "win-stuck", hvm=True, callback_irq=5)
    world.add_domain(5, "gone-node")
    world.xenstore.perms[b"/local/domain/4/control/shutdown"] = [b"n0", b"r4"]
    del world.xenstore.nodes[b"/local/domain/5/control/shutdown"]
    run = run_module(domain_info.main, args(tmp_path), world.backends(tmp_path), monkeypatch, capsys)
    assert not run.failed, run.result
    domains = dict((d["name"], d) for d in run.result["domains"])
    assert domains["win-ok"]["control_shutdown_guest_writable"] is True
    assert domains["win-ok"]["control_shutdown_permissions"] == "n3"
    assert domains["win-stuck"]["control_shutdown_guest_writable"] is False
    assert domains["win-stuck"]["control_shutdown_permissions"] == "n0,r4"
    assert domains["gone-node"]["control_shutdown_guest_writable"] is None
    assert domains["Domain-0"]["control_shutdown_guest_writable"] is None
    warnings = json.dumps(run.result["warnings"])
    assert "win-stuck (domid 4) cannot answer a suspend request" in warnings
    assert "win-ok" not in warnings
    # one pipelined GET_PERMS per guest
    assert sum(1 for op, _path in world.xenstore.ops if op == "get_perms") == 3


def write_sysfs(base, major, minor):
    os.makedirs(os.path.join(base, "version"))
    for path, value in (("type", "xen"), ("version/major", major), ("version/minor", minor),
                        ("version/extra", ".3")):
        with open(os.path.join(base, path), "w") as handle:
            handle.write("%s\n" % value)
    return base


def test_gather_prerequisites_alone_opens_no_backend_and_works_without_pyxs(tmp_path, monkeypatch, capsys):
    sysfs = write_sysfs(str(tmp_path / "sys"), 4, 17)
    monkeypatch.setattr(_module_base, "HAS_PYXS", False)
    monkeypatch.setattr(_prerequisites, "HAS_PYXS", False)
    monkeypatch.setattr(_toolstack, "XAPI_INVENTORY", str(tmp_path / "no-inventory"))
    monkeypatch.setattr(_toolstack, "PROC_DIR", str(tmp_path / "no-proc"))
    loads = []

    def load(name):
        loads.append(name)
        return {"name": name, "ok": name != "libxenguest.so.4.17", "error": None if name != "libxenguest.so.4.17" else "nope"}

    monkeypatch.setattr(_prerequisites, "load", load)
    run = run_module(domain_info.main, args(tmp_path, gather=["prerequisites"], sysfs_dir=sysfs),
                     RuntimeError("no backends may be opened"), monkeypatch, capsys)
    assert not run.failed, run.result
    assert run.factory_calls == []
    report = run.result["prerequisites"]
    assert report["hypervisor"]["version"] == "4.17" and report["libraries"]["version_source"] == "sysfs"
    assert loads == ["libxenctrl.so.4.17", "libxenguest.so.4.17", "libxenevtchn.so.1"]
    assert report["pyxs"]["ok"] is False and report["xenstored"]["ok"] is False
    assert report["ok"] is False
    problems = " | ".join(report["problems"])
    assert "pyxs cannot be imported" in problems and "python3-pyxs" in problems
    assert "libxenguest.so.4.17 cannot be loaded (nope)" in problems and "libxenmisc4.17" in problems
    assert report["toolstack"]["toolstack"] == "xl"


def test_gather_prerequisites_reports_another_toolstack(tmp_path, monkeypatch):
    inventory = tmp_path / "xensource-inventory"
    inventory.write_text("x")
    monkeypatch.setattr(_toolstack, "XAPI_INVENTORY", str(inventory))
    monkeypatch.setattr(_toolstack, "PROC_DIR", str(tmp_path / "no-proc"))
    monkeypatch.setattr(_prerequisites, "load", lambda name: {"name": name, "ok": True, "error": None})
    report = _prerequisites.check(str(tmp_path / "no-sysfs"), 1.0)
    assert report["toolstack"]["toolstack"] == "xapi"
    assert any("XAPI" in problem for problem in report["problems"])


def _executable(path):
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return str(path)


def test_save_restore_tools_says_what_saving_to_disk_would_miss(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    empty = tmp_path / "empty"
    empty.mkdir()
    systemd = tmp_path / "run-systemd-system"
    systemd.mkdir()

    # no xl: a note (suspend to memory does not run it), never one of the problems
    found = _prerequisites.save_restore_tools(path=str(empty), systemd_runtime_dir=str(systemd))
    assert found["ok"] is False and found["xl"] is None
    assert len(found["notes"]) == 1 and "xl is not on PATH (%s)" % empty in found["notes"][0]
    assert "xen-utils" in found["notes"][0]

    # xl, systemd is init, but no systemd-run: the monitor of a restored guest is at risk
    xl = _executable(bin_dir / "xl")
    found = _prerequisites.save_restore_tools(path=str(bin_dir), systemd_runtime_dir=str(systemd))
    assert found["ok"] is True and found["xl"] == xl and found["systemd_init"] is True
    assert found["systemd_run"] is None and "systemd-run is not on PATH" in found["notes"][0]

    # not systemd: nothing to say about systemd-run
    found = _prerequisites.save_restore_tools(path=str(bin_dir), systemd_runtime_dir=str(tmp_path / "none"))
    assert found["ok"] is True and found["notes"] == []

    systemd_run = _executable(bin_dir / "systemd-run")
    found = _prerequisites.save_restore_tools(path=str(bin_dir), systemd_runtime_dir=str(systemd))
    assert found == {"ok": True, "xl": xl, "systemd_init": True, "systemd_run": systemd_run, "notes": []}


def test_gather_prerequisites_a_missing_xl_is_no_problem(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(_toolstack, "XAPI_INVENTORY", str(tmp_path / "no-inventory"))
    monkeypatch.setattr(_toolstack, "PROC_DIR", str(tmp_path / "no-proc"))
    monkeypatch.setattr(_prerequisites, "load", lambda name: {"name": name, "ok": True, "error": None})
    report = _prerequisites.check(str(tmp_path / "no-sysfs"), 1.0)
    assert report["save_restore"]["xl"] is None and report["save_restore"]["notes"]
    assert not any("xl is not on PATH" in problem for problem in report["problems"])
