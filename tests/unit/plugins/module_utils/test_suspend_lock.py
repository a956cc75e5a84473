# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The libxl-compatible lock file, against a real second process holding a POSIX lock."""

import os
import stat
import subprocess
import sys

import pytest

from ansible_collections.xen.suspend.plugins.module_utils._errors import DomainBusy, XenSuspendError
from ansible_collections.xen.suspend.plugins.module_utils._suspend_lock import (
    SuspendLocks, default_run_dir, lock_path)

# What libxenguest does: F_SETLK write lock on byte 0, length 1.
HOLDER = r"""
import fcntl, os, struct, sys
fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR, 0o600)
fcntl.fcntl(fd, fcntl.F_SETLK, struct.pack("hhqqi", fcntl.F_WRLCK, 0, 0, 1, 0))
sys.stdout.write("locked\n"); sys.stdout.flush()
sys.stdin.read()
"""


@pytest.fixture
def holder(tmp_path):
    path = lock_path(str(tmp_path), 12)
    process = subprocess.Popen([sys.executable, "-c", HOLDER, path], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, universal_newlines=True)
    assert process.stdout.readline().strip() == "locked"
    yield path
    process.stdin.close()
    process.wait(10)


def test_lock_path_is_libxls():
    assert lock_path("/run/xen", 7) == "/run/xen/suspend-evtchn-7.lock"


def test_default_run_dir_prefers_run_xen():
    assert default_run_dir() in ("/run/xen", "/var/run/xen")
    if os.path.isdir("/run/xen"):
        assert default_run_dir() == "/run/xen"


def test_acquire_and_release(tmp_path):
    locks = SuspendLocks(str(tmp_path))
    lock = locks.acquire(5)
    path = lock_path(str(tmp_path), 5)
    assert os.path.exists(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    lock.release()
    assert not os.path.exists(path)  # unlink then close, like xc_suspend_evtchn_release
    lock.release()  # idempotent


def test_lock_held_by_another_process_is_busy(tmp_path, holder):
    locks = SuspendLocks(str(tmp_path))
    with pytest.raises(DomainBusy) as caught:
        locks.acquire(12)
    assert "suspend-evtchn-12.lock" in str(caught.value)
    assert caught.value.kind == "busy"
    assert os.path.exists(holder)  # the other holder's file is left alone


def test_our_lock_excludes_another_process(tmp_path):
    locks = SuspendLocks(str(tmp_path))
    lock = locks.acquire(12)
    probe = (
        "import fcntl, os, struct, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR)\n"
        "try:\n"
        "    fcntl.fcntl(fd, fcntl.F_SETLK, struct.pack('hhqqi', fcntl.F_WRLCK, 0, 0, 1, 0))\n"
        "    print('got it')\n"
        "except OSError:\n"
        "    print('busy')\n")
    output = subprocess.check_output([sys.executable, "-c", probe, lock_path(str(tmp_path), 12)],
                                     universal_newlines=True)
    lock.release()
    assert output.strip() == "busy"


def test_missing_run_dir_is_reported(tmp_path):
    locks = SuspendLocks(str(tmp_path / "nope"))
    with pytest.raises(XenSuspendError) as caught:
        locks.check_run_dir()
    assert "xen_run_dir" in str(caught.value)
