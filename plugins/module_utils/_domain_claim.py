# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: one run at a time per guest saved to disk.

A save or a restore takes seconds to minutes and outlives the guest's domid (the domain is
destroyed, then created again under a new one), so libxl's per-domid suspend lock cannot
guard it, and ``xl save`` takes that lock itself. The claim is keyed by the guest's UUID:
an ``flock`` on ``<ledger directory>/claims/<uuid>.lock``, held by the run that saves or
restores the guest for the whole operation, and tried (never waited for) by every run that
would settle the guest's ledger entry. The lock goes with the process that holds it, so a
killed run never blocks the next one; the files stay (unlinking a lock file another process
is about to lock would let two runs hold "the" lock at once).
"""

import errno
import fcntl
import os
import re

from ansible_collections.xen.suspend.plugins.module_utils._errors import DomainBusy, LedgerError

CLAIMS_DIRECTORY = "claims"
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class DomainClaim(object):
    """A held claim; ``release()`` is idempotent."""

    def __init__(self, uuid, fd):
        self.uuid = uuid
        self.fd = fd

    @property
    def held(self):
        return self.fd is not None

    @property
    def fds(self):
        """For ``pass_fds`` of an xl that must hold the claim as long as it runs (a child holds
        the flock from the fork on, and after this run is killed)."""
        return (self.fd,) if self.fd is not None else ()

    def release(self):
        if self.fd is not None:
            try:
                os.close(self.fd)  # closing the only descriptor drops the flock
            finally:
                self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.release()


class DomainClaims(object):
    """Claims in ``<ledger_directory>/claims`` (0700, like the ledger's directory)."""

    def __init__(self, ledger_directory):
        self.directory = os.path.join(ledger_directory, CLAIMS_DIRECTORY)

    def path(self, uuid):
        if not isinstance(uuid, str) or not _UUID.match(uuid):
            # The UUID comes from the hypervisor or the ledger; never a path from elsewhere.
            raise LedgerError("not a domain UUID: %r" % (uuid,))
        return os.path.join(self.directory, uuid + ".lock")

    def acquire(self, uuid):
        """The claim, or DomainBusy when another live process holds it."""
        path = self.path(uuid)
        self._ensure_directory()
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(path, flags, 0o600)
        except OSError as exc:
            raise LedgerError("cannot open the claim %s: %s" % (path, exc))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (IOError, OSError) as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise DomainBusy("another run of this collection is saving or restoring this "
                                 "guest (%s is held)" % path)
            raise LedgerError("cannot lock the claim %s: %s" % (path, exc))
        return DomainClaim(uuid, fd)

    def _ensure_directory(self):
        try:
            os.mkdir(self.directory, 0o700)
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                raise LedgerError("cannot create %s: %s" % (self.directory, exc))
        if os.path.islink(self.directory) or not os.path.isdir(self.directory):
            raise LedgerError("%s is not a directory" % self.directory)
