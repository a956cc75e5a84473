# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures for the role tests: simulated dom0s and a controller running ansible-playbook."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import roletest  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture(scope="session", autouse=True)
def shims():
    """Build the simulator's shim libraries once (a no-op when they are up to date)."""
    roletest.build_shims()


@pytest.fixture(scope="session")
def collections():
    path = roletest.collections_dir()
    yield path
    roletest.remove_tree(path)


@pytest.fixture
def make_dom0(tmp_path_factory):
    """make_dom0(name, spec) starts a simulated dom0; all are stopped at teardown.
    (tmp_path_factory directories are short enough for the 108-byte socket limit.)"""
    started = []

    def make(name, spec):
        dom0 = roletest.Dom0(name, tmp_path_factory.mktemp("d"), spec)
        started.append(dom0)
        return dom0

    yield make
    for dom0 in started:
        dom0.stop()


@pytest.fixture
def controller(tmp_path, collections):
    return roletest.Controller(tmp_path, collections)
