# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: the dom0 ledger of domains this collection suspended.

The ledger is what lets a later resume bring back exactly the guests a maintenance run
stopped, and nothing else. Rules:

* an ``intent`` entry is written before a suspend request is sent, and becomes
  ``suspended`` once the suspend is verified; entries go away after a verified resume;
* every write replaces the file atomically (temporary file in the same directory, fsync,
  rename, fsync of the directory), so a crash leaves the old or the new ledger, never a mix;
* writers serialise on a POSIX lock on a sidecar file, and re-read under that lock, so
  concurrent runs on different domains do not lose each other's entries;
* a truncated or corrupt ledger is an error: it is never silently replaced.
"""

import errno
import fcntl
import json
import os
import stat
import struct
import tempfile
import time

from ansible_collections.xen.suspend.plugins.module_utils._errors import LedgerError

DEFAULT_LEDGER_PATH = "/var/lib/xen-suspend/ledger.json"
LEDGER_FORMAT = "xen.suspend.ledger"
LEDGER_VERSION = 1
STATE_INTENT = "intent"
STATE_SUSPENDED = "suspended"
# Written just before xc_domain_resume: a resume killed after the hypercall but before its
# ledger write leaves this, and "resuming" on a running domain is the evidence that it was us.
STATE_RESUMING = "resuming"
ENTRY_STATES = (STATE_INTENT, STATE_SUSPENDED, STATE_RESUMING)
DIR_MODE = 0o700
FILE_MODE = 0o600
MAX_LEDGER_BYTES = 64 * 1024 * 1024


def utc_timestamp(now=None):
    """``2025-01-01T10:00:00.250Z``: UTC with milliseconds (rounded down). Ledgers written
    before had whole seconds (``2025-01-01T10:00:00Z``); readers take both
    (_ledger_transitions.parse_timestamp)."""
    if now is None:
        now = time.time()
    millis = int(round(now * 1000.0))
    seconds, millis = divmod(millis, 1000)
    return "%s.%03dZ" % (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)), millis)


def make_entry(uuid, domid, name, method, state=STATE_INTENT, resume_fast=True, now=None,
               intent_id=None, settle_by=None):
    """``intent_id`` names this suspend attempt (see _ledger_transitions); ``settle_by`` is the
    time until which a later run must expect the guest may still suspend because of it."""
    stamp = utc_timestamp(now)
    entry = {
        "uuid": uuid,
        "domid": int(domid),
        "name": name,
        "method": method,
        "state": state,
        "resume_fast": bool(resume_fast),
        "intent_at": stamp,
        "suspended_at": stamp if state == STATE_SUSPENDED else None,
    }
    if intent_id is not None:
        entry["intent_id"] = intent_id
    if settle_by is not None:
        entry["settle_by"] = utc_timestamp(settle_by)
    return entry


class Ledger(object):
    """The ledger file at ``path``; ``writes`` counts atomic replacements done by us."""

    def __init__(self, path=DEFAULT_LEDGER_PATH, lock_timeout=30.0):
        self.path = os.path.abspath(path)
        self.directory = os.path.dirname(self.path)
        self.lock_path = self.path + ".lock"
        self.lock_timeout = lock_timeout
        self.writes = 0

    # -- reading -------------------------------------------------------------------------------

    def read(self):
        """The entries (uuid -> dict). A missing file is an empty ledger; damage is an error.

        Readers need no lock: the file is only ever replaced by rename.
        """
        try:
            # O_NONBLOCK: a FIFO (or a device) at the ledger's path must not hang us.
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return {}
            raise LedgerError("cannot read the ledger %s: %s" % (self.path, exc))
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise LedgerError("the ledger %s is not a regular file" % self.path)
            data = handle.read(MAX_LEDGER_BYTES + 1)
        return self._parse(data)

    def check_usable(self, write=True):
        """Raise LedgerError unless the ledger can be read and, with ``write``, replaced: run
        before any guest is touched, so a bad path is a configuration error, not a failure
        half-way through a fleet. Returns the entries it read."""
        try:
            st = os.stat(self.path)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise LedgerError("cannot use the ledger %s: %s" % (self.path, exc))
        else:
            if not stat.S_ISREG(st.st_mode):
                raise LedgerError("the ledger %s is not a regular file; give the path of a file "
                                  "(it is created when missing)" % self.path)
        entries = self.read()
        if not write:
            return entries
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise LedgerError("the ledger's directory %s is not a directory" % self.directory)
        self._ensure_directory()
        lock_fd = self._lock()
        try:
            # What every write does: a temporary file beside the ledger, renamed over it. A
            # read-only or immutable directory fails here rather than after guests were touched.
            try:
                fd, temp_path = tempfile.mkstemp(prefix=".ledger-", suffix=".check", dir=self.directory)
            except OSError as exc:
                raise LedgerError("cannot write in the ledger's directory %s: %s"
                                  % (self.directory, exc))
            os.close(fd)
            _unlink_quietly(temp_path)
            if os.path.exists(self.path):
                _check_replaceable(self.path)
        finally:
            os.close(lock_fd)
        return entries

    def _parse(self, data):
        if not data:
            raise LedgerError(
                "the ledger %s is empty (truncated?); it is not replaced automatically. %s"
                % (self.path, self.recovery_hint()))
        if len(data) > MAX_LEDGER_BYTES:
            raise LedgerError("the ledger %s is larger than %d bytes" % (self.path, MAX_LEDGER_BYTES))
        try:
            document = json.loads(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise LedgerError(
                "the ledger %s is corrupt or truncated (%s); it is not replaced automatically. %s"
                % (self.path, exc, self.recovery_hint()))
        if not isinstance(document, dict) or document.get("format") != LEDGER_FORMAT:
            raise LedgerError("%s is not a xen.suspend ledger" % self.path)
        version = document.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version > LEDGER_VERSION:
            raise LedgerError("the ledger %s has unsupported version %r" % (self.path, version))
        entries = document.get("entries")
        if not isinstance(entries, dict):
            raise LedgerError("the ledger %s has no entries table" % self.path)
        for key, entry in entries.items():
            if (not isinstance(entry, dict) or entry.get("uuid") != key
                    or entry.get("state") not in ENTRY_STATES
                    or not isinstance(entry.get("domid"), int)):
                raise LedgerError("the ledger %s has a malformed entry %r" % (self.path, key[:64]))
        return entries

    def recovery_hint(self):
        return ("To recover: xen.suspend.domain_info still lists every domain and which are "
                "suspended; the previous ledger is kept as %s.bak (copy it back if it is good); "
                "otherwise move the damaged file aside and resume your suspended guests by name "
                "with domain_resumed force_unrecorded=true" % self.path)

    # -- writing -------------------------------------------------------------------------------

    def update(self, mutate):
        """Apply ``mutate(entries)`` (in place) under the writer lock and persist atomically.

        Returns the entries as written. Nothing is written when ``mutate`` changed nothing.
        """
        self._ensure_directory()
        lock_fd = self._lock()
        try:
            entries = self.read()
            # Entries are flat dicts: a per-entry copy is enough to notice in-place changes.
            before = dict((key, dict(entry)) for key, entry in entries.items())
            mutate(entries)
            if entries != before:
                self._replace(entries)
            return entries
        finally:
            os.close(lock_fd)

    def _ensure_directory(self):
        if os.path.isdir(self.directory):
            return
        try:
            os.makedirs(self.directory, DIR_MODE)
            os.chmod(self.directory, DIR_MODE)
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                raise LedgerError("cannot create the ledger directory %s: %s"
                                  % (self.directory, exc))

    def _lock(self):
        try:
            fd = os.open(self.lock_path, os.O_CREAT | os.O_RDWR | getattr(os, "O_CLOEXEC", 0),
                         FILE_MODE)
        except OSError as exc:
            raise LedgerError("cannot open the ledger lock %s: %s" % (self.lock_path, exc))
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except (IOError, OSError) as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise LedgerError("cannot lock %s: %s" % (self.lock_path, exc))
            if time.monotonic() >= deadline:
                os.close(fd)
                raise LedgerError("the ledger %s stayed locked by another process for %.0f s"
                                  % (self.path, self.lock_timeout))
            time.sleep(0.05)

    @staticmethod
    def serialize(entries):
        """The file's bytes. Compact on purpose: json's C encoder is used only without
        ``indent``, and the ledger is rewritten many times during a large run."""
        document = {"format": LEDGER_FORMAT, "version": LEDGER_VERSION, "entries": entries}
        return json.dumps(document, sort_keys=True).encode("utf-8") + b"\n"

    def _replace(self, entries):
        data = self.serialize(entries)
        fd, temp_path = tempfile.mkstemp(prefix=".ledger-", suffix=".tmp", dir=self.directory)
        try:
            os.fchmod(fd, FILE_MODE)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        except BaseException as exc:
            os.close(fd)
            _unlink_quietly(temp_path)
            if isinstance(exc, OSError):
                raise LedgerError("cannot write the ledger %s: %s" % (self.path, exc))
            raise
        os.close(fd)
        self._keep_backup()
        try:
            os.rename(temp_path, self.path)
        except OSError as exc:
            _unlink_quietly(temp_path)
            raise LedgerError("cannot replace the ledger %s: %s" % (self.path, exc))
        self._fsync_directory()
        self.writes += 1

    def _keep_backup(self):
        """The ledger being replaced stays as ``<ledger>.bak``: a hard link (no copy, no fsync),
        renamed over the previous backup so that it too is replaced atomically."""
        if not os.path.exists(self.path):
            return
        link = "%s.bak.%d" % (self.path, os.getpid())
        try:
            _unlink_quietly(link)
            os.link(self.path, link)
            os.rename(link, self.path + ".bak")
        except OSError:  # a file system without hard links: no backup, the write goes on
            _unlink_quietly(link)

    def _fsync_directory(self):
        try:
            dir_fd = os.open(self.directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(dir_fd)
        except OSError:  # some filesystems refuse fsync on directories; the rename is done
            pass
        finally:
            os.close(dir_fd)


# linux/fs.h: FS_IOC_GETFLAGS and the attributes that make rename() over a file fail (EPERM)
# even for root: chattr +i / +a.
_FS_IOC_GETFLAGS = 0x80086601
_FS_IMMUTABLE_FL = 0x10
_FS_APPEND_FL = 0x20


def _check_replaceable(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise LedgerError("cannot use the ledger %s: %s" % (path, exc))
    try:
        flags = struct.unpack("l", fcntl.ioctl(fd, _FS_IOC_GETFLAGS, struct.pack("l", 0)))[0]
    except (IOError, OSError):
        flags = 0  # a file system without attributes: nothing can forbid the rename
    finally:
        os.close(fd)
    if flags & (_FS_IMMUTABLE_FL | _FS_APPEND_FL):
        raise LedgerError("the ledger %s is immutable or append-only (chattr): it cannot be "
                          "replaced; remove the attribute (chattr -i -a)" % path)
    if not os.access(path, os.W_OK):
        raise LedgerError("the ledger %s is not writable" % path)


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass
