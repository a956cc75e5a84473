# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""domain_resumed's failure semantics (issue 11 item 8): every recorded domain is attempted
by default, and a domain that could not be resumed always fails the task."""

import pytest

from ansible_collections.xen.suspend.plugins.modules import domain_resumed, domain_suspended

from module_runner import module_args, run_module
from xen_fakes import FakeLocks, World


args = module_args


def three_suspended(tmp_path, monkeypatch, capsys):
    world = World()
    guests = [world.add_domain(domid, name) for domid, name in ((3, "a"), (4, "b"), (5, "c"))]
    run = run_module(domain_suspended.main, args(tmp_path, domains=["*"]),
                     world.backends(tmp_path), monkeypatch, capsys)
    assert not run.failed and all(guest.suspended for guest in guests)
    return world, guests


def test_by_default_every_domain_is_attempted_and_a_failure_fails_the_task(
        tmp_path, monkeypatch, capsys):
    world, (a, b, c) = three_suspended(tmp_path, monkeypatch, capsys)
    # the first in ledger order is held by another run: it cannot be resumed now
    run = run_module(domain_resumed.main, args(tmp_path), world.backends(tmp_path, locks=FakeLocks(busy={3})),
                     monkeypatch, capsys)
    assert run.failed, "a guest left suspended must never be a green run"
    assert run.result["failed_domains"] == ["a"]
    assert sorted(run.result["resumed"]) == ["b", "c"]
    assert a.suspended and not b.suspended and not c.suspended
    assert "1 of 3 domains could not be resumed" in run.result["msg"]


def test_continue_on_error_true_still_fails_the_task(tmp_path, monkeypatch, capsys):
    world, (a, b, c) = three_suspended(tmp_path, monkeypatch, capsys)
    world.xenctrl.fail["xc_domain_resume"] = 22
    run = run_module(domain_resumed.main, args(tmp_path, continue_on_error=True),
                     world.backends(tmp_path), monkeypatch, capsys)
    assert run.failed
    assert sorted(run.result["failed_domains"]) == ["a", "b", "c"]
    assert all(d["error"]["kind"] == "call_failed" for d in run.result["domains"])
    assert a.suspended and b.suspended and c.suspended


@pytest.mark.parametrize("parallel", [1, 64])
def test_continue_on_error_false_stops_attempting_after_the_first_failure(
        tmp_path, monkeypatch, capsys, parallel):
    world, (a, b, c) = three_suspended(tmp_path, monkeypatch, capsys)
    world.xenctrl.fail["xc_domain_resume"] = 22
    run = run_module(domain_resumed.main,
                     args(tmp_path, continue_on_error=False, parallel=parallel),
                     world.backends(tmp_path), monkeypatch, capsys)
    assert run.failed
    kinds = [d["error"]["kind"] for d in run.result["domains"]]
    assert kinds == ["call_failed", "not_attempted", "not_attempted"]
    assert [domid for domid, _fast in world.xenctrl.resumed] == []
    assert a.suspended and b.suspended and c.suspended


def test_a_clean_resume_is_green_and_reports_downtime(tmp_path, monkeypatch, capsys):
    world, guests = three_suspended(tmp_path, monkeypatch, capsys)
    world.clock.now += 42.5
    run = run_module(domain_resumed.main, args(tmp_path), world.backends(tmp_path),
                     monkeypatch, capsys)
    assert not run.failed and sorted(run.result["resumed"]) == ["a", "b", "c"]
    for item in run.result["domains"]:
        # from the ledger's verified-suspend stamp (real time, ms) to the resume (the fake
        # wall clock, 42.5 s later plus the little fake time the suspend still took)
        assert isinstance(item["downtime_seconds"], float)
        assert 42.0 < item["downtime_seconds"] < 45.0, item


def test_parallel_below_one_is_refused(tmp_path, monkeypatch, capsys):
    world, guests = three_suspended(tmp_path, monkeypatch, capsys)
    run = run_module(domain_resumed.main, args(tmp_path, parallel=0), world.backends(tmp_path),
                     monkeypatch, capsys)
    assert run.failed and "parallel must be >= 1" in run.result["msg"]
    assert all(guest.suspended for guest in guests)
