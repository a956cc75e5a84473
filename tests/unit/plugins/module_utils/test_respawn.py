# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Without cffi or pyxs, a module respawns under the dom0's python3 that has them (a venv as
ansible_python_interpreter), once, never looping (issue 11, item 18)."""

import sys

import pytest

from ansible_collections.xen.suspend.plugins.module_utils import _module_base
from ansible_collections.xen.suspend.plugins.modules import domain_suspended

from module_runner import run_module
from xen_fakes import World


class Respawned(Exception):
    pass


class FakeRespawn(object):
    def __init__(self, capable, respawned=False):
        self.capable = capable  # interpreter -> modules it can import
        self.respawned = respawned
        self.probes = []
        self.respawns = []

    def has_respawned(self):
        return self.respawned

    def probe(self, paths, module):
        self.probes.append((tuple(paths), module))
        for path in paths:
            if module in self.capable.get(path, ()):
                return path
        return None

    def respawn(self, path):
        self.respawns.append(path)
        raise Respawned(path)  # respawn_module never returns


@pytest.fixture
def interpreters(tmp_path):
    paths = {}
    for name in ("venv-python", "platform-python", "python3"):
        path = tmp_path / "bin" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text("")
        paths[name] = str(path)
    return paths


def fake_functions(fake):
    return {"has_respawned": fake.has_respawned, "probe": fake.probe, "respawn": fake.respawn}


def install(monkeypatch, fake, candidates, missing=("cffi",)):
    monkeypatch.setattr(_module_base, "RESPAWN", fake_functions(fake))
    for name in missing:
        monkeypatch.setattr(_module_base, "HAS_CFFI" if name == "cffi" else "HAS_PYXS", False)
    monkeypatch.setattr(_module_base, "RESPAWN_INTERPRETERS", tuple(candidates))


def test_the_first_interpreter_with_both_libraries_is_chosen(interpreters):
    fake = FakeRespawn({interpreters["platform-python"]: ["cffi"],
                        interpreters["python3"]: ["cffi", "pyxs"]})
    chosen = _module_base.respawn_interpreter(
        ["cffi", "pyxs"], candidates=["/nonexistent/python3", interpreters["platform-python"],
                                      interpreters["python3"]], probe=fake.probe)
    assert chosen == interpreters["python3"]


def test_the_running_interpreter_is_never_a_candidate(interpreters):
    fake = FakeRespawn({interpreters["venv-python"]: ["cffi", "pyxs"]})
    assert _module_base.respawn_interpreter(["cffi"], candidates=[interpreters["venv-python"]],
                                            probe=fake.probe, executable=interpreters["venv-python"]) is None
    assert fake.probes == []


def test_module_respawns_when_cffi_is_missing(interpreters, tmp_path, monkeypatch):
    fake = FakeRespawn({interpreters["python3"]: ["cffi", "pyxs"]})
    install(monkeypatch, fake, [interpreters["platform-python"], interpreters["python3"]])
    world = World()
    world.add_domain(3, "web1")
    with pytest.raises(Respawned):
        run_module_no_reset(domain_suspended.main, {"domains": ["web1"],
                                                    "ledger": str(tmp_path / "ledger.json")},
                            world.backends(tmp_path), monkeypatch)
    assert fake.respawns == [interpreters["python3"]]
    assert not world.domains[3].suspended


def test_no_respawn_after_a_respawn_fails_with_the_install_hint(interpreters, tmp_path, monkeypatch, capsys):
    fake = FakeRespawn({interpreters["python3"]: ["cffi", "pyxs"]}, respawned=True)
    world = World()
    world.add_domain(3, "web1")
    monkeypatch.setattr(_module_base, "RESPAWN", fake_functions(fake))
    monkeypatch.setattr(_module_base, "HAS_PYXS", False)
    run = run_module(domain_suspended.main, {"domains": ["web1"], "ledger": str(tmp_path / "l.json")},
                     world.backends(tmp_path), monkeypatch, capsys)
    assert run.failed and "python3-pyxs" in run.result["msg"]
    assert fake.respawns == [] and fake.probes == []


def test_no_capable_interpreter_fails_with_the_install_hint(interpreters, tmp_path, monkeypatch, capsys):
    fake = FakeRespawn({interpreters["python3"]: ["pyxs"]})
    world = World()
    world.add_domain(3, "web1")
    monkeypatch.setattr(_module_base, "RESPAWN", fake_functions(fake))
    monkeypatch.setattr(_module_base, "HAS_CFFI", False)
    # run_module empties RESPAWN_INTERPRETERS; call the check directly with candidates instead
    assert _module_base.respawn_interpreter(["cffi"], candidates=[interpreters["python3"]],
                                            probe=fake.probe) is None
    run = run_module(domain_suspended.main, {"domains": ["web1"], "ledger": str(tmp_path / "l.json")},
                     world.backends(tmp_path), monkeypatch, capsys)
    assert run.failed and "python3-cffi" in run.result["msg"] and fake.respawns == []


def run_module_no_reset(main, module_args, backends, monkeypatch):
    """run_module without its guard against respawning (this test wants the respawn)."""
    from ansible.module_utils import _internal as module_internal
    from ansible.module_utils.testing import patch_module_args
    monkeypatch.setattr(_module_base, "BACKENDS_FACTORY", lambda **kwargs: backends)
    monkeypatch.setattr(module_internal, "is_controller", False)
    with patch_module_args(module_args):
        main()


def test_probing_uses_ansible_core_probe_by_default():
    from ansible.module_utils.common.respawn import probe_interpreters_for_module, respawn_module
    assert _module_base.RESPAWN["probe"] is probe_interpreters_for_module
    assert _module_base.RESPAWN["respawn"] is respawn_module
    assert "/usr/bin/python3" in _module_base.RESPAWN_INTERPRETERS
    assert sys.executable  # the running interpreter is skipped by realpath
