# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""domain_suspended's default parallel=0: the whole fleet at once (issue 13 item 2)."""

from ansible_collections.xen.suspend.plugins.modules import domain_suspended

from module_runner import module_args, run_module
from xen_fakes import FakeLocks, World


def args(tmp_path, **kwargs):
    return module_args(tmp_path, **dict({"domains": ["*"]}, **kwargs))


def fleet(count):
    world = World()
    guests = [world.add_domain(domid, "g%03d" % domid) for domid in range(1, count + 1)]
    return world, guests


def test_by_default_every_guest_is_asked_at_once(tmp_path, monkeypatch, capsys):
    world, guests = fleet(100)
    locks = FakeLocks()
    run = run_module(domain_suspended.main, args(tmp_path), world.backends(tmp_path, locks=locks),
                     monkeypatch, capsys)
    assert not run.failed and len(run.result["suspended"]) == 100
    assert locks.max_held == 100  # every one in flight together (was 32)


def test_a_bound_still_bounds(tmp_path, monkeypatch, capsys):
    world, guests = fleet(20)
    locks = FakeLocks()
    run = run_module(domain_suspended.main, args(tmp_path, parallel=5),
                     world.backends(tmp_path, locks=locks), monkeypatch, capsys)
    assert not run.failed and len(run.result["suspended"]) == 20
    assert locks.max_held == 5


def test_negative_parallel_is_refused(tmp_path, monkeypatch, capsys):
    world, guests = fleet(2)
    run = run_module(domain_suspended.main, args(tmp_path, parallel=-1), world.backends(tmp_path),
                     monkeypatch, capsys)
    assert run.failed and "parallel must be >= 1, or 0 for no bound" in run.result["msg"]
    assert not any(guest.suspended for guest in guests)


def test_the_open_file_limit_goes_up_to_the_hard_limit():
    import resource
    from ansible_collections.xen.suspend.plugins.module_utils._module_base import raise_open_file_limit
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = 256 if hard == resource.RLIM_INFINITY or hard > 256 else hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
    try:
        raise_open_file_limit()
        now_soft, now_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        assert now_hard == hard
        assert now_soft == (hard if hard != resource.RLIM_INFINITY else 65536)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
