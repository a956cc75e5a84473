# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: the directory that holds save images, and flushing.

A save image is a guest's whole memory: passwords, keys, whatever the guest had. ``xl save``
creates it world-readable (mode 0644), so the images live in a directory only root can enter
(0700, owned by the user we run as, which is root on a dom0), are written under a umask that
makes them 0600, and are chmod'ed 0600 again after xl closed them. A directory that is a
symbolic link, not ours, or writable by group or others is refused rather than repaired: a
link could point the images somewhere readable, and someone else able to write there could
swap an image before it is restored.

Before any guest is touched the file system must have room for every selected guest's memory
plus a margin: a save that runs out of space half-way has cost a guest a cancelled suspend
for nothing.

``xl`` never fsyncs; an image is only trusted once its data (fsync_file) and its final name
(fsync_directory after the rename) are on disk.
"""

import contextlib
import errno
import os
import stat

from ansible_collections.xen.suspend.plugins.module_utils._errors import XenSuspendError

DEFAULT_SAVE_DIR = "/var/lib/xen-suspend/save"
DIR_MODE = 0o700
IMAGE_MODE = 0o600
IMAGE_SUFFIX = ".xlsave"
PART_SUFFIX = ".part"
MIB = 1024 * 1024


class SaveDirError(XenSuspendError):
    """The save directory cannot be used (nothing was touched)."""

    kind = "save_dir"


def image_paths(save_dir, uuid):
    """(final path, temporary path) of a guest's image: ``<uuid>.xlsave`` and ``.xlsave.part``.
    Named by UUID: a name may hold anything, and is not unique over time."""
    final = os.path.join(save_dir, uuid + IMAGE_SUFFIX)
    return final, final + PART_SUFFIX


def prepare_save_dir(path, create=True, owner=None):
    """Check (and, with ``create``, make) the save directory; its real path. SaveDirError when
    it is a link, not a directory, not owned by ``owner`` (default: our effective uid), or
    writable by group or others. A directory we create is 0700; missing parents are created
    0755 (as mkdir -p would)."""
    if not os.path.isabs(path):
        raise SaveDirError("save_dir must be an absolute path on the dom0, not %r" % (path,))
    owner = os.geteuid() if owner is None else owner
    try:
        st = os.lstat(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise SaveDirError("cannot use the save directory %s: %s" % (path, exc), errno=exc.errno)
        if not create:
            raise SaveDirError("the save directory %s does not exist" % path)
        parent = os.path.dirname(path.rstrip(os.sep)) or os.sep
        try:
            if not os.path.isdir(parent):
                os.makedirs(parent, 0o755)
            os.mkdir(path, DIR_MODE)
            os.chmod(path, DIR_MODE)  # whatever the umask
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                raise SaveDirError("cannot create the save directory %s: %s" % (path, exc),
                                   errno=exc.errno)
        st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise SaveDirError("the save directory %s is a symbolic link; give the real directory "
                           "(a link could lead the guests' memory images elsewhere)" % path)
    if not stat.S_ISDIR(st.st_mode):
        raise SaveDirError("the save directory %s is not a directory" % path)
    if st.st_uid != owner:
        raise SaveDirError("the save directory %s is owned by uid %d, not by uid %d (root): "
                           "guests' memory images must not be where others can reach them"
                           % (path, st.st_uid, owner))
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise SaveDirError("the save directory %s is writable by %s (mode %04o): someone else "
                           "could replace an image before it is restored; make it 0700"
                           % (path, "group and others" if st.st_mode & stat.S_IWGRP and
                              st.st_mode & stat.S_IWOTH else
                              "its group" if st.st_mode & stat.S_IWGRP else "others",
                              stat.S_IMODE(st.st_mode)))
    return path


def free_bytes(path):
    """Free bytes under ``path``, without the blocks reserved for root (f_bavail): the modules
    run as root and could use them, but that reserve is what keeps a full dom0 working."""
    vfs = os.statvfs(path)
    return vfs.f_bavail * vfs.f_frsize


def check_free_space(path, needed, margin):
    """SaveDirError unless ``needed`` + ``margin`` bytes are free under ``path``; returns the
    free bytes."""
    free = free_bytes(path)
    if free < needed + margin:
        raise SaveDirError(
            "not enough free space in %s for the images: %.0f MiB free, %.0f MiB needed (the "
            "selected guests' memory, %.0f MiB, plus space_margin_mb %.0f MiB); nothing was "
            "touched" % (path, free / float(MIB), (needed + margin) / float(MIB),
                         needed / float(MIB), margin / float(MIB)))
    return free


@contextlib.contextmanager
def private_umask():
    """Files created meanwhile -- by us, and by the xl processes we start -- get no group or
    other permissions (xl creates its file 0644). The umask is per process: this is for a
    module's whole run."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def create_private_file(path):
    """Create (or truncate) ``path`` 0600, not following a symbolic link; xl then opens it
    with O_TRUNC, which keeps the mode."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, IMAGE_MODE)
    try:
        os.fchmod(fd, IMAGE_MODE)
    finally:
        os.close(fd)


def fsync_file(path, mode=IMAGE_MODE):
    """Flush ``path``'s data to disk (and set its mode); its size. Not following a link."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        os.fsync(fd)
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def fsync_directory(path):
    """Flush a directory (a rename or unlink in it); file systems that refuse fsync on a
    directory have nothing to flush there."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EROFS, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def remove_quietly(path):
    """Unlink ``path``; True when it existed."""
    try:
        os.unlink(path)
        return True
    except OSError:
        return False
