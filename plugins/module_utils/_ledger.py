# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: the dom0 ledger of domains this collection suspended.

The ledger is what lets a later resume bring back exactly the guests a maintenance run
stopped, and nothing else. Rules:

* an ``intent`` entry is written before a suspend request is sent, and becomes
  ``suspended`` once the suspend is verified; entries go away after a verified resume;
* every write replaces the file atomically (temporary file in the same directory, rename over
  the ledger), so a crash leaves the old or the new ledger, never a mix: the new file's data
  is on disk before its rename can be (see ``_replace``);
* a durable write (the default) returns only once the new ledger is on disk: one flush of the
  directory where the file system orders a replacing rename after the new file's data (ext4),
  else an fsync of the file, then of the directory. A write whose loss leaves an entry that
  the next run settles anyway (a confirmation, a removal: see _ledger_transitions) may be
  ``durable=False``: atomic all the same, on disk at the file system's next commit;
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
import threading
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
# A guest saved to disk (domain_saved / domain_restored, method METHOD_XL_SAVE): "saving" is
# durable before `xl save` runs and the guest is never destroyed in it; "saved" is durable once
# the image is complete, checked and renamed into place, and only then is the guest destroyed;
# "restoring" is durable before `xl restore` runs. The image is deleted only after the restored
# guest runs, and then the entry goes.
STATE_SAVING = "saving"
STATE_SAVED = "saved"
STATE_RESTORING = "restoring"
IMAGE_STATES = (STATE_SAVING, STATE_SAVED, STATE_RESTORING)
METHOD_XL_SAVE = "xl_save"
ENTRY_STATES = (STATE_INTENT, STATE_SUSPENDED, STATE_RESUMING) + IMAGE_STATES
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


def is_image_entry(entry):
    """An entry of a guest saved (or being saved, or restored) to disk: domain_suspended and
    domain_resumed leave it to domain_saved / domain_restored."""
    return entry is not None and entry.get("state") in IMAGE_STATES


def make_save_entry(uuid, domid, name, image, intent_id, boot_id=None, xen_version=None,
                    memory_kib=None, now=None):
    """The "saving" entry written (durably) before ``xl save`` runs. ``image`` is the final
    path; the save writes ``image + ".part"`` first."""
    entry = {
        "uuid": uuid,
        "domid": int(domid),
        "name": name,
        "method": METHOD_XL_SAVE,
        "state": STATE_SAVING,
        "intent_id": intent_id,
        "intent_at": utc_timestamp(now),
        "image": image,
        "image_part": image + ".part",
    }
    for key, value in (("boot_id", boot_id), ("xen_version", xen_version), ("memory_kib", memory_kib)):
        if value is not None:
            entry[key] = value
    return entry


class Ledger(object):
    """The ledger file at ``path``; ``writes`` counts atomic replacements done by us."""

    def __init__(self, path=DEFAULT_LEDGER_PATH, lock_timeout=30.0):
        self.path = os.path.abspath(path)
        self.directory = os.path.dirname(self.path)
        self.lock_path = self.path + ".lock"
        self.lock_timeout = lock_timeout
        self.writes = 0
        # The file lock is a POSIX record lock: it excludes other processes, not our own
        # threads (save and restore run guests in threads), and closing any descriptor of the
        # lock file drops it for the whole process. Threads take this first.
        self._thread_lock = threading.RLock()

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
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise LedgerError("the ledger %s is not a regular file" % self.path)
            # Sized by the file, not by the limit: read(64 MiB) allocates (and, in a PV dom0,
            # maps) a buffer of that size, ~20 ms under TCG, for a file of a few hundred bytes.
            data = handle.read(min(st.st_size, MAX_LEDGER_BYTES) + 1)
            if len(data) > st.st_size:  # it grew meanwhile (it should not: replaced by rename)
                data += handle.read(MAX_LEDGER_BYTES + 1 - len(data))
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
        with self._thread_lock:
            self._check_writable()
        return entries

    def _check_writable(self):
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

    def update(self, mutate, durable=True):
        """Apply ``mutate(entries)`` (in place) under the writer lock and persist atomically.

        Returns the entries as written. Nothing is written when ``mutate`` changed nothing.
        ``durable``: return only once the new ledger is on disk (see the module's docstring).
        """
        with self._thread_lock:
            return self._update_locked(mutate, durable)

    def _update_locked(self, mutate, durable):
        self._ensure_directory()
        lock_fd = self._lock()
        try:
            entries = self.read()
            # Entries are flat dicts: a per-entry copy is enough to notice in-place changes.
            before = dict((key, dict(entry)) for key, entry in entries.items())
            mutate(entries)
            if entries != before:
                self._replace(entries, durable)
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

    def _replace(self, entries, durable=True):
        """The new ledger under a temporary name, renamed over the old one.

        A crash must never find the rename on disk without the new file's data (an empty or
        torn ledger). Where the file system guarantees that a rename replacing a file is
        committed after that file's data (ext4's auto_da_alloc with data=ordered, its default:
        ``ordered_replace``), nothing more is needed, and a durable write flushes once: the
        directory, which commits the rename with the data before it. Elsewhere (and for the
        first ledger, which replaces nothing) the file is fsynced before the rename, and a
        durable write then flushes the directory too. The old ledger's hard link (.bak) is a
        name in the same directory, made durable by the same flush.
        """
        data = self.serialize(entries)
        replacing = os.path.isfile(self.path)
        ordered = replacing and ordered_replace(self.directory)
        # (mkstemp creates the file 0600, FILE_MODE, whatever the umask)
        fd, temp_path = tempfile.mkstemp(prefix=".ledger-", suffix=".tmp", dir=self.directory)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if not ordered:
                os.fsync(fd)
        except BaseException as exc:
            os.close(fd)
            _unlink_quietly(temp_path)
            if isinstance(exc, OSError):
                raise LedgerError("cannot write the ledger %s: %s" % (self.path, exc))
            raise
        os.close(fd)
        if replacing:
            self._keep_backup()
        try:
            os.rename(temp_path, self.path)
        except OSError as exc:
            _unlink_quietly(temp_path)
            raise LedgerError("cannot replace the ledger %s: %s" % (self.path, exc))
        self.writes += 1
        if durable:
            self._fsync_directory()

    def _keep_backup(self):
        """The ledger being replaced stays as ``<ledger>.bak``: a hard link (no copy, no fsync),
        renamed over the previous backup so that it too is replaced atomically."""
        link = "%s.bak.%d" % (self.path, os.getpid())
        try:
            try:
                os.link(self.path, link)
            except OSError as exc:
                if exc.errno != errno.EEXIST:  # left by a killed run of a process with our pid
                    raise
                os.unlink(link)
                os.link(self.path, link)
            os.rename(link, self.path + ".bak")
        except OSError:  # a file system without hard links: no backup, the write goes on
            _unlink_quietly(link)

    def _fsync_directory(self):
        try:
            dir_fd = os.open(self.directory, os.O_RDONLY)
        except OSError as exc:
            raise LedgerError("cannot open the ledger's directory %s to flush it: %s"
                              % (self.directory, exc))
        try:
            os.fsync(dir_fd)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EROFS, errno.ENOTSUP, errno.EBADF):
                # e.g. EIO: the rename is done, but nobody knows whether it reached the disk
                raise LedgerError("cannot flush the ledger's directory %s: %s"
                                  % (self.directory, exc))
            # some file systems refuse fsync on directories: they have nothing to flush there
        finally:
            os.close(dir_fd)


# File systems whose commit of a rename that replaces a file comes after that file's data,
# unless mounted otherwise: ext4 (Documentation/admin-guide/ext4.rst, auto_da_alloc: "the data
# blocks of the new file are forced to disk before the rename() operation is committed", in the
# default data=ordered mode; data=journal journals the data itself).
_ORDERED_REPLACE_FS = {"ext4": ("data=writeback", "noauto_da_alloc")}
_ordered_replace_cache = {}


def ordered_replace(directory, mountinfo="/proc/self/mountinfo"):
    """True when a rename replacing a file in ``directory`` is committed only after the new
    file's data (see Ledger._replace); False when unsure. Looked up once per file system."""
    try:
        device = os.stat(directory).st_dev
    except OSError:
        return False
    if device in _ordered_replace_cache:
        return _ordered_replace_cache[device]
    answer = False
    wanted = "%d:%d" % (os.major(device), os.minor(device))
    try:
        with open(mountinfo) as handle:
            lines = handle.read().splitlines()
    except (IOError, OSError):
        lines = []
    for line in lines:
        # id parent major:minor root mountpoint options [optional...] - fstype source superoptions
        fields = line.split(" ")
        if len(fields) < 7 or fields[2] != wanted or "-" not in fields[6:]:
            continue
        tail = fields[fields.index("-", 6) + 1:]
        if len(tail) < 3:
            continue
        options = set(fields[5].split(",")) | set(tail[2].split(","))
        refusing = _ORDERED_REPLACE_FS.get(tail[0])
        answer = refusing is not None and not options.intersection(refusing)
        break
    _ordered_replace_cache[device] = answer
    return answer


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
