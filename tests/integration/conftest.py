"""Fixtures of the integration tests: simulated dom0s (stopped however a test ends) and an
ansible-playbook runner with this checkout installed as the collection xen.suspend."""

import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from xsim_harness import Runner, Simulator, collections_dir  # noqa: E402


@pytest.fixture(scope="session")
def collections():
    root = collections_dir()
    yield root
    shutil.rmtree(str(root), ignore_errors=True)


class _Sims(object):
    def __init__(self, collections):
        self.collections = collections
        self.started = []

    def __call__(self, spec):
        sim = Simulator(spec)
        self.started.append(sim)
        return sim, Runner(sim, self.collections)

    def stop_all(self):
        for sim in self.started:
            sim.stop()


@pytest.fixture
def make_sim(collections):
    """``sim, runner = make_sim(spec)``; every simulator is stopped at the end of the test."""
    sims = _Sims(collections)
    yield sims
    sims.stop_all()


@pytest.fixture(scope="module")
def make_module_sim(collections):
    """Same, for simulators shared by the tests of one module."""
    sims = _Sims(collections)
    yield sims
    sims.stop_all()
