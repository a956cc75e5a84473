# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The save directory: created private, refused when it is a link, someone else's or writable
by others; free space; private files and flushing."""

import os

import pytest

from ansible_collections.xen.suspend.plugins.module_utils import _save_dir
from ansible_collections.xen.suspend.plugins.module_utils._save_dir import (
    SaveDirError, check_free_space, create_private_file, fsync_directory, fsync_file, image_paths,
    prepare_save_dir, private_umask)


def mode(path):
    return os.stat(str(path)).st_mode & 0o777


def test_created_0700_with_its_parents(tmp_path):
    target = tmp_path / "a" / "b" / "save"
    old = os.umask(0)
    try:
        assert prepare_save_dir(str(target)) == str(target)
    finally:
        os.umask(old)
    assert mode(target) == 0o700
    assert mode(target.parent) == 0o755


def test_an_existing_private_directory_is_used_as_it_is(tmp_path):
    target = tmp_path / "save"
    target.mkdir(0o700)
    (target / "keep").write_text("x")
    prepare_save_dir(str(target))
    assert (target / "keep").exists()


def test_missing_and_not_created(tmp_path):
    with pytest.raises(SaveDirError, match="does not exist"):
        prepare_save_dir(str(tmp_path / "nope"), create=False)
    assert not (tmp_path / "nope").exists()


def test_relative_path_refused():
    with pytest.raises(SaveDirError, match="absolute"):
        prepare_save_dir("save")


def test_a_symbolic_link_is_refused_even_to_a_good_directory(tmp_path):
    real = tmp_path / "real"
    real.mkdir(0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(SaveDirError, match="symbolic link"):
        prepare_save_dir(str(link))


@pytest.mark.parametrize("bits, who", [(0o770, "its group"), (0o707, "others"), (0o777, "group and others")])
def test_group_or_world_writable_is_refused_not_repaired(tmp_path, bits, who):
    target = tmp_path / "save"
    target.mkdir()
    os.chmod(str(target), bits)
    with pytest.raises(SaveDirError) as caught:
        prepare_save_dir(str(target))
    assert "writable by %s" % who in str(caught.value)
    assert mode(target) == bits


def test_someone_elses_directory_is_refused(tmp_path):
    target = tmp_path / "save"
    target.mkdir(0o700)
    with pytest.raises(SaveDirError, match="owned by uid"):
        prepare_save_dir(str(target), owner=os.geteuid() + 1)


def test_a_file_is_not_a_directory(tmp_path):
    target = tmp_path / "save"
    target.write_text("x")
    with pytest.raises(SaveDirError, match="not a directory"):
        prepare_save_dir(str(target))


def test_free_space_needs_the_memory_plus_the_margin(tmp_path, monkeypatch):
    monkeypatch.setattr(_save_dir, "free_bytes", lambda path: 1000 * 1024 * 1024)
    assert check_free_space(str(tmp_path), 700 * 1024 * 1024, 256 * 1024 * 1024) == 1000 * 1024 * 1024
    with pytest.raises(SaveDirError) as caught:
        check_free_space(str(tmp_path), 800 * 1024 * 1024, 256 * 1024 * 1024)
    assert "1000 MiB free, 1056 MiB needed" in str(caught.value)
    assert "nothing was touched" in str(caught.value)


def test_free_bytes_is_what_statvfs_leaves_to_users(tmp_path):
    vfs = os.statvfs(str(tmp_path))
    assert abs(_save_dir.free_bytes(str(tmp_path)) - vfs.f_bavail * vfs.f_frsize) < 64 * 1024 * 1024


def test_files_made_under_the_private_umask_are_0600(tmp_path):
    old = os.umask(0)
    try:
        with private_umask():
            fd = os.open(str(tmp_path / "like-xl"), os.O_WRONLY | os.O_CREAT, 0o644)  # as xl does
            os.close(fd)
        assert os.umask(0) == 0  # restored
    finally:
        os.umask(old)
    assert mode(tmp_path / "like-xl") == 0o600


def test_a_private_file_is_0600_and_xl_truncating_it_keeps_that(tmp_path):
    path = tmp_path / "x.part"
    path.write_bytes(b"old content")
    os.chmod(str(path), 0o644)
    old = os.umask(0)
    try:
        create_private_file(str(path))
        fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, b"new")
        os.close(fd)
    finally:
        os.umask(old)
    assert mode(path) == 0o600
    assert path.read_bytes() == b"new"


def test_a_private_file_never_follows_a_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    link = tmp_path / "x.part"
    link.symlink_to(victim)
    with pytest.raises(OSError):
        create_private_file(str(link))
    assert victim.read_text() == "keep"


def test_fsync_helpers(tmp_path):
    path = tmp_path / "img"
    path.write_bytes(b"x" * 100)
    os.chmod(str(path), 0o644)
    assert fsync_file(str(path)) == 100
    assert mode(path) == 0o600
    fsync_directory(str(tmp_path))


def test_images_are_named_by_uuid(tmp_path):
    final, part = image_paths("/srv/save", "5b3c9e2a-1f4d-4c21-9a77-0e8d2b1c6f10")
    assert final == "/srv/save/5b3c9e2a-1f4d-4c21-9a77-0e8d2b1c6f10.xlsave"
    assert part == final + ".part"
