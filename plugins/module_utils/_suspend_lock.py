# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: libxl's per-domain suspend lock file.

The same file and the same POSIX record lock as libxenguest's xc_suspend_evtchn_init_*
(XEN_RUN_DIR/suspend-evtchn-<domid>.lock, write lock on byte 0, length 1, F_SETLK), so
``xl save``/``xl migrate`` and this collection exclude each other. POSIX locks vanish with
the process, so a leftover file never blocks anybody.
"""

import errno
import fcntl
import os

from ansible_collections.xen.suspend.plugins.module_utils._errors import (
    DomainBusy, XenSuspendError)

RUN_DIR_CANDIDATES = ("/run/xen", "/var/run/xen")
_MAX_ATTEMPTS = 16


def default_run_dir():
    """XEN_RUN_DIR: /run/xen where it exists (Debian), else the upstream /var/run/xen."""
    for candidate in RUN_DIR_CANDIDATES:
        if os.path.isdir(candidate):
            return candidate
    return RUN_DIR_CANDIDATES[-1]


def lock_path(run_dir, domid):
    return os.path.join(run_dir, "suspend-evtchn-%d.lock" % int(domid))


class SuspendLock(object):
    """A held lock; ``release()`` unlinks then closes, as xc_suspend_evtchn_release does."""

    def __init__(self, path, fd, domid):
        self.path = path
        self.fd = fd
        self.domid = domid

    @property
    def held(self):
        return self.fd is not None

    def release(self):
        if self.fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        try:
            os.close(self.fd)
        finally:
            self.fd = None


class SuspendLocks(object):
    """Takes per-domain suspend locks in one run directory."""

    def __init__(self, run_dir=None):
        self.run_dir = run_dir or default_run_dir()

    def check_run_dir(self):
        if not os.path.isdir(self.run_dir):
            raise XenSuspendError(
                "the Xen run directory %s does not exist (is the Xen toolstack installed? set "
                "xen_run_dir)" % self.run_dir, kind="missing_run_dir")

    def acquire(self, domid):
        """Take the lock without blocking; raise DomainBusy when another process holds it."""
        path = lock_path(self.run_dir, domid)
        for _attempt in range(_MAX_ATTEMPTS):
            try:
                fd = os.open(path, os.O_CREAT | os.O_RDWR | getattr(os, "O_CLOEXEC", 0), 0o600)
            except OSError as exc:
                raise XenSuspendError("cannot open the suspend lock %s: %s" % (path, exc),
                                      domid=domid, errno=exc.errno, kind="lock_failed")
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0, os.SEEK_SET)
            except (IOError, OSError) as exc:
                os.close(fd)
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    raise DomainBusy(
                        "another process holds %s (an xl save or migrate, or another run of this "
                        "module, is working on this domain)" % path, domid=domid)
                raise XenSuspendError("cannot lock %s: %s" % (path, exc), domid=domid,
                                      errno=exc.errno, kind="lock_failed")
            # Someone may have unlinked (released) the file between our open and our lock:
            # then we hold a lock on an orphan inode and must start again.
            try:
                held = os.fstat(fd)
                current = os.stat(path)
            except OSError:
                os.close(fd)
                continue
            if (held.st_dev, held.st_ino) != (current.st_dev, current.st_ino):
                os.close(fd)
                continue
            return SuspendLock(path, fd, domid)
        raise DomainBusy("the suspend lock %s kept being replaced while locking" % path,
                         domid=domid)
