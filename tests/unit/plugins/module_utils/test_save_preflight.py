# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Which guests may be saved, and the xendomains warnings."""

import json

import pytest

from ansible_collections.xen.suspend.plugins.module_utils._inventory import DomainRecord
from ansible_collections.xen.suspend.plugins.module_utils._save_preflight import (
    auto_start_names, read_xendomains_settings, refusals, userdata_path, xendomains_warnings)

from xen_fakes import World
from xl_fakes import saveable


@pytest.fixture
def world():
    return World()


def reasons_for(world, domid, entry=None, userdata_dir="/nonexistent"):
    domain = world.domains[domid]
    return refusals(world.xenstore, DomainRecord(domain.info(), domain.name), entry, userdata_dir)


def test_a_running_xl_guest_can_be_saved(world):
    saveable(world, 3)
    assert reasons_for(world, 3) == []


def test_paused(world):
    saveable(world, 3, paused=True)
    (reason,) = reasons_for(world, 3)
    assert reason.startswith("it is paused") and "unpause it first" in reason


def test_not_running(world):
    domain = saveable(world, 3)
    domain.shutdown_code = 3
    assert reasons_for(world, 3) == ["it is not running (shutdown(crash))"]


def test_not_created_by_xl(world):
    world.add_domain(4, "foreign")
    assert reasons_for(world, 4) == [
        "it was not created by xl/libxl (no /libxl/4 in xenstore), so xl cannot save it"]


def test_pci_backend(world):
    saveable(world, 3)
    world.xenstore.nodes[b"/local/domain/0/backend/pci/3/0/num_devs"] = b"1"
    assert reasons_for(world, 3) == ["it has PCI devices passed through, which Xen cannot save"]


def test_libxl_configuration_with_vnuma_or_pci(world, tmp_path):
    domain = saveable(world, 3)
    path = userdata_path(3, domain.uuid, str(tmp_path))
    with open(path, "w") as handle:
        json.dump({"b_info": {"vnuma_nodes": [{"memkb": 1024}]}, "pcidevs": [{"bus": 1}]}, handle)
    reasons = reasons_for(world, 3, userdata_dir=str(tmp_path))
    assert any("vnuma" in reason for reason in reasons)
    assert any("PCI" in reason for reason in reasons)


def test_unreadable_libxl_configuration_is_no_refusal(world, tmp_path):
    domain = saveable(world, 3)
    with open(userdata_path(3, domain.uuid, str(tmp_path)), "w") as handle:
        handle.write("{not json")
    assert reasons_for(world, 3, userdata_dir=str(tmp_path)) == []


def test_the_guests_own_cant_suspend_reason_is_shown_bounded_and_printable(world):
    saveable(world, 3)
    world.xenstore.nodes[b"/local/domain/3/data/cant_suspend_reason"] = b"\x1b[2Jupdating" + b"!" * 5000
    (reason,) = reasons_for(world, 3)
    assert "data/cant_suspend_reason" in reason
    assert "\x1b" not in reason and "?[2Jupdating" in reason
    assert len(reason) < 200


def test_an_empty_cant_suspend_reason_says_nothing(world):
    saveable(world, 3)
    world.xenstore.nodes[b"/local/domain/3/data/cant_suspend_reason"] = b""
    assert reasons_for(world, 3) == []


@pytest.mark.parametrize("state, words", [
    ("suspended", "resume it with xen.suspend.domain_resumed first"),
    ("intent", "being suspended"),
    ("resuming", "resume it"),
    ("saving", "state saving"),
])
def test_a_guest_the_ledger_holds(world, state, words):
    domain = saveable(world, 3)
    (reason,) = reasons_for(world, 3, {"uuid": domain.uuid, "state": state, "domid": 3})
    assert words in reason


def test_every_reason_is_given_at_once(world):
    world.add_domain(5, "all-wrong", paused=True)
    world.xenstore.nodes[b"/local/domain/5/data/cant_suspend_reason"] = b"busy"
    assert len(reasons_for(world, 5)) == 3


# -- xendomains ------------------------------------------------------------------------------

def settings_file(tmp_path, text, name="xendomains"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_settings_are_read_from_the_first_file_found(tmp_path):
    path = settings_file(tmp_path, "# comment\nXENDOMAINS_SAVE=/var/lib/xen/save\n"
                                   "XENDOMAINS_RESTORE=true  # yes\nexport XENDOMAINS_AUTO='/etc/xen/auto'\n"
                                   "OTHER=1\n")
    settings = read_xendomains_settings([str(tmp_path / "missing"), path])
    assert settings == {"path": path, "XENDOMAINS_SAVE": "/var/lib/xen/save",
                        "XENDOMAINS_RESTORE": "true", "XENDOMAINS_AUTO": "/etc/xen/auto"}
    assert read_xendomains_settings([str(tmp_path / "missing")]) is None


def test_no_warning_when_xendomains_saves_elsewhere(tmp_path):
    path = settings_file(tmp_path, "XENDOMAINS_SAVE=/var/lib/xen/save\nXENDOMAINS_RESTORE=true\n"
                                   "XENDOMAINS_AUTO=%s\n" % (tmp_path / "no-auto"))
    assert xendomains_warnings(["web1"], str(tmp_path / "save"), paths=[path]) == []


def test_warning_when_xendomains_would_restore_our_images(tmp_path):
    save = tmp_path / "save"
    save.mkdir()
    path = settings_file(tmp_path, 'XENDOMAINS_SAVE="%s/"\nXENDOMAINS_RESTORE=true\n'
                                   'XENDOMAINS_AUTO=%s\n' % (save, tmp_path / "no-auto"))
    (message,) = xendomains_warnings(["web1"], str(save), paths=[path])
    assert "would restore these images itself" in message
    path = settings_file(tmp_path, 'XENDOMAINS_SAVE="%s"\nXENDOMAINS_RESTORE=false\n'
                                   'XENDOMAINS_AUTO=%s\n' % (save, tmp_path / "no-auto"))
    assert xendomains_warnings(["web1"], str(save), paths=[path]) == []


def test_warning_for_guests_started_at_boot(tmp_path):
    auto = tmp_path / "auto"
    auto.mkdir()
    (auto / "web1.cfg").write_text('name = "web1"\nmemory = 512\n')
    (auto / "db").write_text("name='database'\n")
    (auto / "other.cfg").write_text("memory = 1\n")
    assert auto_start_names(str(auto)) == {"web1", "database", "other"}
    path = settings_file(tmp_path, "XENDOMAINS_AUTO=%s\n" % auto)
    (message,) = xendomains_warnings(["web1", "database", "app"], str(tmp_path / "save"), paths=[path])
    assert "starts database, web1 at boot" in message
