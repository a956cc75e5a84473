# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: the structural check of an ``xl save`` file.

Nothing in a save file carries a checksum, and ``xl`` never fsyncs it, so before a guest is
destroyed its image is walked from its first byte to its last (reference
xen-save-restore.md, 1.2; Xen's docs/specs/libxl-migration-stream.pandoc and
libxc-migration-stream.pandoc, tools/xl/xl.h):

* the xl header: 32-byte magic, byte order mark, mandatory flags (JSON config and stream
  version 2; any other bit is one this code does not know), optional data holding the
  domain's configuration as JSON, whose ``c_info`` gives the name and UUID;
* the libxl stream (version 2): its header, then records (u32 type, u32 length, body padded
  to 8 bytes with zeros) up to the END record; LIBXC_CONTEXT announces the libxc stream
  (version 2 or 3), which follows inline: image header, domain header (its type and the Xen
  version of the saving host), records up to its own END; then libxl records go on;
* nothing after the libxl END record.

A short file, a record running past the end, non-zero padding, a second libxc stream,
trailing bytes: each is an ImageError saying where. Page contents are not looked at.

Guest memory fills most of the file and the configuration is the toolstack's: both are read
as hostile. Every length is checked against what is left of the file before it is used, the
configuration is bounded (MAX_CONFIG_BYTES), record bodies are skipped (seeked over, or read
in bounded chunks when hashing): nothing allocates by a length read from the file.
``sha256=True`` hashes the whole file in the same single pass.
"""

import errno
import hashlib
import json
import os
import re
import stat
import struct

from ansible_collections.xen.suspend.plugins.module_utils._errors import XenSuspendError

XL_MAGIC = b"Xen saved domain, xl format\n \0 \r"
XL_BYTEORDER = 0x01020304
XL_FLAG_JSON = 1 << 0
XL_FLAG_STREAM_V2 = 1 << 1
XL_FLAGS_KNOWN = XL_FLAG_JSON | XL_FLAG_STREAM_V2

LIBXL_IDENT = 0x4C6962786C466D74  # "LibxlFmt"
LIBXL_VERSION = 2
LIBXL_OPT_BIG_ENDIAN = 1 << 0
LIBXL_END = 0
LIBXL_LIBXC_CONTEXT = 1

LIBXC_MARKER = 0xFFFFFFFFFFFFFFFF
LIBXC_ID = 0x58454E46  # "XENF"
LIBXC_VERSIONS = (2, 3)
LIBXC_OPT_BIG_ENDIAN = 1 << 0
LIBXC_END = 0
DOMAIN_TYPES = {1: "x86_pv", 2: "x86_hvm", 3: "x86_pvh", 4: "arm"}

# A libxl configuration of a guest with many disks and NICs is a few tens of KiB.
MAX_CONFIG_BYTES = 4 * 1024 * 1024
CHUNK = 1024 * 1024
NAME_MAX_CHARS = 256
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_NON_PRINTABLE = re.compile(r"[^\x20-\x7e]")


class ImageError(XenSuspendError):
    """The file is not a complete, well-formed xl save image."""

    kind = "bad_image"


class ImageInfo(object):
    """What the check found: ``uuid``, ``name`` (from the embedded configuration),
    ``domain_type``, ``xen_major``/``xen_minor`` (of the saving host), ``size`` (bytes),
    ``sha256`` (hex, or None), ``records`` (libxl + libxc records walked)."""

    def __init__(self, uuid, name, domain_type, xen_major, xen_minor, size, sha256, records):
        self.uuid = uuid
        self.name = name
        self.domain_type = domain_type
        self.xen_major = xen_major
        self.xen_minor = xen_minor
        self.size = size
        self.sha256 = sha256
        self.records = records

    @property
    def xen_version(self):
        return "%d.%d" % (self.xen_major, self.xen_minor)

    def as_dict(self):
        return {"uuid": self.uuid, "name": self.name, "domain_type": self.domain_type,
                "xen": self.xen_version, "size": self.size, "sha256": self.sha256,
                "records": self.records}


class _Reader(object):
    """Sequential reads of an open file of known ``size``, hashing what passes when asked."""

    def __init__(self, fd, size, path, hasher=None):
        self.fd = fd
        self.size = size
        self.path = path
        self.hasher = hasher
        self.offset = 0

    @property
    def left(self):
        return self.size - self.offset

    def fail(self, message, offset=None):
        raise ImageError("%s is not a complete xl save image: %s (at byte %d of %d)"
                         % (self.path, message, self.offset if offset is None else offset, self.size))

    def exactly(self, count, what):
        """``count`` bytes (a bounded structure: the caller checked ``count``)."""
        if count > self.left:
            self.fail("the file ends inside the %s (%d bytes needed, %d left)"
                      % (what, count, self.left))
        parts = []
        wanted = count
        while wanted:
            try:
                data = os.read(self.fd, min(wanted, CHUNK))
            except OSError as exc:
                raise ImageError("cannot read %s: %s" % (self.path, exc), errno=exc.errno)
            if not data:
                self.fail("the file shrank while it was read")
            parts.append(data)
            wanted -= len(data)
        data = b"".join(parts)
        self.offset += count
        if self.hasher is not None:
            self.hasher.update(data)
        return data

    def skip(self, count, what):
        """Go past ``count`` bytes: seeked over, or read in chunks when hashing."""
        if count > self.left:
            self.fail("the %s runs past the end of the file (%d bytes, %d left)"
                      % (what, count, self.left))
        if self.hasher is None:
            os.lseek(self.fd, count, os.SEEK_CUR)
            self.offset += count
            return
        while count:
            step = min(count, CHUNK)
            self.exactly(step, what)
            count -= step

    def padding(self, length, what):
        pad = (8 - length % 8) % 8
        if pad and self.exactly(pad, what + " padding").strip(b"\0"):
            self.fail("non-zero padding after the %s" % what, self.offset - pad)


def _text(value, limit=NAME_MAX_CHARS):
    return _NON_PRINTABLE.sub("?", value[:limit])


def _parse_config(raw, reader, start):
    """(uuid, name) from the embedded libxl JSON configuration."""
    raw = raw.rstrip(b"\0")
    try:
        config = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        reader.fail("the embedded domain configuration is not JSON (%s)" % _text(str(exc), 120), start)
    c_info = config.get("c_info") if isinstance(config, dict) else None
    if not isinstance(c_info, dict):
        reader.fail("the embedded domain configuration has no c_info", start)
    uuid, name = c_info.get("uuid"), c_info.get("name")
    if not isinstance(uuid, str) or not _UUID_RE.match(uuid.lower()):
        reader.fail("the embedded domain configuration has no valid c_info.uuid", start)
    if not isinstance(name, str) or not name:
        reader.fail("the embedded domain configuration has no c_info.name", start)
    return uuid.lower(), _text(name)


def _xl_header(reader):
    magic = reader.exactly(len(XL_MAGIC), "xl header")
    if magic != XL_MAGIC:
        reader.fail("wrong magic (not an xl save file)", 0)
    fields = reader.exactly(16, "xl header")
    byteorder, mandatory, _optional, optlen = struct.unpack("=IIII", fields)
    if byteorder != XL_BYTEORDER:
        reader.fail("byte order mark 0x%08x: saved on a host of the other byte order" % byteorder,
                    len(XL_MAGIC))
    if mandatory & ~XL_FLAGS_KNOWN:
        reader.fail("unknown mandatory flags 0x%x (written by a newer xl)" % (mandatory & ~XL_FLAGS_KNOWN),
                    len(XL_MAGIC) + 4)
    if not mandatory & XL_FLAG_STREAM_V2 or not mandatory & XL_FLAG_JSON:
        reader.fail("mandatory flags 0x%x: not a stream-v2 image with a JSON configuration"
                    % mandatory, len(XL_MAGIC) + 4)
    if optlen < 4 or optlen > MAX_CONFIG_BYTES + 4:
        reader.fail("optional data of %d bytes (expected the configuration, at most %d bytes)"
                    % (optlen, MAX_CONFIG_BYTES), len(XL_MAGIC) + 12)
    start = reader.offset
    optdata = reader.exactly(optlen, "xl optional data")
    (config_len,) = struct.unpack("=I", optdata[:4])
    if config_len == 0 or config_len > optlen - 4:
        reader.fail("configuration length %d does not fit the %d bytes of optional data"
                    % (config_len, optlen), start)
    return _parse_config(optdata[4:4 + config_len], reader, start + 4)


def _libxl_records(reader):
    """Walk the libxl stream to its END; returns (domain type, xen major, xen minor, records)."""
    ident, version, options = struct.unpack(">QII", reader.exactly(16, "libxl stream header"))
    if ident != LIBXL_IDENT:
        reader.fail("no libxl stream header (ident 0x%016x)" % ident, reader.offset - 16)
    if version != LIBXL_VERSION:
        reader.fail("libxl stream version %d (only %d is known)" % (version, LIBXL_VERSION),
                    reader.offset - 8)
    order = ">" if options & LIBXL_OPT_BIG_ENDIAN else "<"
    libxc = None
    records = 0
    while True:
        start = reader.offset
        rtype, length = struct.unpack(order + "II", reader.exactly(8, "libxl record header"))
        records += 1
        if rtype == LIBXL_END:
            if length:
                reader.fail("libxl END record with a body of %d bytes" % length, start)
            if libxc is None:
                reader.fail("libxl END before any libxc stream (no guest memory)", start)
            return libxc + (records,)
        reader.skip(length, "libxl record 0x%x" % rtype)
        reader.padding(length, "libxl record 0x%x" % rtype)
        if rtype == LIBXL_LIBXC_CONTEXT:
            if libxc is not None:
                reader.fail("a second libxc stream (a checkpointed stream, not a save image)", start)
            domain_type, major, minor, inner = _libxc_stream(reader)
            libxc = (domain_type, major, minor)
            records += inner


def _libxc_stream(reader):
    start = reader.offset
    marker, ident, version, options = struct.unpack(">QIIH6x", reader.exactly(24, "libxc image header"))
    if marker != LIBXC_MARKER or ident != LIBXC_ID:
        reader.fail("no libxc image header after LIBXC_CONTEXT", start)
    if version not in LIBXC_VERSIONS:
        reader.fail("libxc stream version %d (known: %s)" % (version, ", ".join(map(str, LIBXC_VERSIONS))),
                    start + 12)
    order = ">" if options & LIBXC_OPT_BIG_ENDIAN else "<"
    dtype, page_shift, _reserved, major, minor = struct.unpack(
        order + "IHHII", reader.exactly(16, "libxc domain header"))
    if dtype not in DOMAIN_TYPES:
        reader.fail("unknown domain type %d in the libxc domain header" % dtype, start + 24)
    if page_shift != 12:
        reader.fail("page shift %d (only 4 KiB pages exist on x86 and Arm)" % page_shift, start + 28)
    if major > 0xFFFF or minor > 0xFFFF:
        reader.fail("implausible Xen version %d.%d in the libxc domain header" % (major, minor), start + 32)
    records = 0
    while True:
        rstart = reader.offset
        rtype, length = struct.unpack(order + "II", reader.exactly(8, "libxc record header"))
        records += 1
        if rtype == LIBXC_END:
            if length:
                reader.fail("libxc END record with a body of %d bytes" % length, rstart)
            return DOMAIN_TYPES[dtype], major, minor, records
        reader.skip(length, "libxc record 0x%x" % rtype)
        reader.padding(length, "libxc record 0x%x" % rtype)


def check_image(path, sha256=False):
    """Walk the save file at ``path``; an ImageInfo, or ImageError saying what is wrong.
    A symbolic link or anything but a regular file is refused."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | os.O_NONBLOCK
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImageError("%s is a symbolic link, not a save image" % path)
        raise ImageError("cannot open the save image %s: %s" % (path, exc), errno=exc.errno)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ImageError("%s is not a regular file" % path)
        reader = _Reader(fd, st.st_size, path, hashlib.sha256() if sha256 else None)
        uuid, name = _xl_header(reader)
        domain_type, major, minor, records = _libxl_records(reader)
        if reader.left:
            reader.fail("%d bytes after the libxl END record" % reader.left)
        digest = reader.hasher.hexdigest() if reader.hasher is not None else None
        return ImageInfo(uuid, name, domain_type, major, minor, st.st_size, digest, records)
    finally:
        os.close(fd)
