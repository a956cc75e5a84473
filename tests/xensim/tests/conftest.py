import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from xensim_testlib import LIBDIR, XENSIM_ROOT, Sim  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def shims():
    """Build the shim libraries once per session (no-op when up to date)."""
    subprocess.run([os.path.join(XENSIM_ROOT, "build-shims.sh"), LIBDIR], check=True)
    return LIBDIR


@pytest.fixture
def make_sim(tmp_path_factory):
    """Start simulators with a given fleet spec; all stopped at teardown.
    (tmp_path_factory dirs are short enough for 108-byte socket paths.)"""
    sims = []

    def make(spec):
        s = Sim(tmp_path_factory.mktemp("s"), spec)
        sims.append(s)
        return s

    yield make
    for s in sims:
        s.stop()


@pytest.fixture(scope="module")
def module_sim(tmp_path_factory, request):
    """One simulator per test module; the module sets FLEET."""
    spec = getattr(request.module, "FLEET", {"guests": {"linux-pv": 2}})
    d = tmp_path_factory.mktemp("m")
    s = Sim(d, spec)
    yield s
    s.stop()
