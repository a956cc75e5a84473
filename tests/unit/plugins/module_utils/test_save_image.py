# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The structural check of xl save images: complete images pass, and every kind of damage is
refused with where it is, without allocating by lengths read from the file."""

import hashlib
import json
import os
import struct

import pytest

from ansible_collections.xen.suspend.plugins.module_utils import _save_image
from ansible_collections.xen.suspend.plugins.module_utils._save_image import ImageError, check_image

import xl_fakes
from xl_fakes import image, record, xl_header

UUID = "5b3c9e2a-1f4d-4c21-9a77-0e8d2b1c6f10"


def write(tmp_path, data, name="img.xlsave"):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_a_complete_image_gives_its_identity_size_and_xen_version(tmp_path):
    data = image("web1", UUID, pages=5, xen=(4, 20))
    info = check_image(write(tmp_path, data))
    assert (info.uuid, info.name, info.domain_type) == (UUID, "web1", "x86_pv")
    assert info.xen_version == "4.20"
    assert info.size == len(data)
    assert info.sha256 is None
    assert info.records > 5


def test_sha256_is_the_digest_of_the_whole_file(tmp_path):
    data = image(pages=7)
    info = check_image(write(tmp_path, data), sha256=True)
    assert info.sha256 == hashlib.sha256(data).hexdigest()


def test_hvm_image_with_libxl_records_after_the_libxc_stream(tmp_path):
    data = image(dtype=2, extra_libxl=[(3, b"QEVM" + b"\0" * 30), (0x80000001, b"x" * 3)])
    info = check_image(write(tmp_path, data))
    assert info.domain_type == "x86_hvm"


def test_a_big_endian_stream_is_read_in_its_own_byte_order(tmp_path):
    info = check_image(write(tmp_path, image(big_endian=True, xen=(4, 17))))
    assert info.xen_version == "4.17"


def test_every_truncation_is_refused(tmp_path):
    data = image(pages=2)
    # every cut inside the header and the stream's structures, and many inside page data
    cuts = list(range(0, 600)) + list(range(600, len(data), 97)) + [len(data) - 1]
    path = str(tmp_path / "cut")
    for cut in cuts:
        with open(path, "wb") as handle:
            handle.write(data[:cut])
        with pytest.raises(ImageError) as caught:
            check_image(path)
        assert "at byte" in str(caught.value), cut


@pytest.mark.parametrize("damage, words", [
    (lambda d: b"Y" + d[1:], "wrong magic"),
    (lambda d: d + b"\0" * 8, "after the libxl END"),
    (lambda d: d + b"junk", "after the libxl END"),
])
def test_damaged_images(tmp_path, damage, words):
    with pytest.raises(ImageError) as caught:
        check_image(write(tmp_path, damage(image())))
    assert words in str(caught.value)
    assert caught.value.kind == "bad_image"


def test_unknown_mandatory_flags_and_other_byte_order_are_refused(tmp_path):
    body = image()[len(xl_header("web1", UUID)):]
    with pytest.raises(ImageError, match="unknown mandatory flags"):
        check_image(write(tmp_path, xl_header("web1", UUID, flags=3 | 8) + body))
    with pytest.raises(ImageError, match="byte order"):
        check_image(write(tmp_path, xl_header("web1", UUID, byteorder=0x04030201) + body))
    with pytest.raises(ImageError, match="JSON configuration"):
        check_image(write(tmp_path, xl_header("web1", UUID, flags=2) + body))


@pytest.mark.parametrize("config, words", [
    (b"{not json\0", "not JSON"),
    (json.dumps({"b_info": {}}).encode() + b"\0", "no c_info"),
    (json.dumps({"c_info": {"name": "a", "uuid": "nope"}}).encode(), "c_info.uuid"),
    (json.dumps({"c_info": {"name": "", "uuid": UUID}}).encode(), "c_info.name"),
    (b"[" * 100000 + b"]" * 100000, "not JSON"),  # deep nesting: RecursionError, not a crash
])
def test_a_bad_embedded_configuration_is_refused(tmp_path, config, words):
    body = image()[len(xl_header("web1", UUID)):]
    with pytest.raises(ImageError, match=words):
        check_image(write(tmp_path, xl_header("web1", UUID, config=config) + body))


def test_hostile_name_is_made_printable(tmp_path):
    config = json.dumps({"c_info": {"name": "evil\x1b[31m\n" + "x" * 1000, "uuid": UUID}}).encode()
    body = image()[len(xl_header("web1", UUID)):]
    info = check_image(write(tmp_path, xl_header("web1", UUID, config=config) + body))
    assert info.name.startswith("evil?[31m?")
    assert len(info.name) <= 256


def test_an_optional_data_length_beyond_the_bound_is_refused_before_reading(tmp_path, monkeypatch):
    data = bytearray(image())
    struct.pack_into("=I", data, 44, 0xFFFFFFF0)  # optional_data_len
    with pytest.raises(ImageError, match="optional data of"):
        check_image(write(tmp_path, bytes(data)))


def test_a_record_length_past_the_end_is_refused_without_allocating(tmp_path, monkeypatch):
    """A record claims 4 GiB: refused from the file size, never read into memory."""
    head = xl_header("web1", UUID) + struct.pack(">QII", 0x4C6962786C466D74, 2, 0)
    data = head + struct.pack("<II", 0x80000005, 0xFFFFFFF8) + b"\0" * 64
    reads = []
    real_read = os.read

    def counting_read(fd, count):
        reads.append(count)
        return real_read(fd, count)

    monkeypatch.setattr(_save_image.os, "read", counting_read)
    with pytest.raises(ImageError, match="runs past the end"):
        check_image(write(tmp_path, data), sha256=True)
    assert max(reads) <= _save_image.CHUNK


def test_non_zero_padding_is_refused(tmp_path):
    order = "<"
    data = (xl_header("web1", UUID) + struct.pack(">QII", 0x4C6962786C466D74, 2, 0)
            + record(0x80000002, b"abc", order, pad_byte=b"\x01") + record(1) + xl_fakes.libxc_stream()
            + record(0))
    with pytest.raises(ImageError, match="non-zero padding"):
        check_image(write(tmp_path, data))


def test_streams_that_are_not_a_save_of_one_guest_are_refused(tmp_path):
    head = xl_header("web1", UUID) + struct.pack(">QII", 0x4C6962786C466D74, 2, 0)
    with pytest.raises(ImageError, match="no guest memory"):
        check_image(write(tmp_path, head + record(0)))
    twice = head + record(1) + xl_fakes.libxc_stream() + record(1) + xl_fakes.libxc_stream() + record(0)
    with pytest.raises(ImageError, match="second libxc stream"):
        check_image(write(tmp_path, twice))
    with pytest.raises(ImageError, match="no libxc image header"):
        check_image(write(tmp_path, head + record(1) + b"\0" * 64 + record(0)))
    wrong_version = head[:-8] + struct.pack(">II", 3, 0) + record(1) + xl_fakes.libxc_stream() + record(0)
    with pytest.raises(ImageError, match="libxl stream version 3"):
        check_image(write(tmp_path, wrong_version))


def test_a_link_or_a_fifo_is_not_an_image(tmp_path):
    target = write(tmp_path, image())
    link = tmp_path / "link.xlsave"
    link.symlink_to(target)
    with pytest.raises(ImageError, match="symbolic link"):
        check_image(str(link))
    fifo = tmp_path / "fifo"
    os.mkfifo(str(fifo))
    with pytest.raises(ImageError, match="not a regular file"):
        check_image(str(fifo))
    with pytest.raises(ImageError, match="cannot open"):
        check_image(str(tmp_path / "missing"))
