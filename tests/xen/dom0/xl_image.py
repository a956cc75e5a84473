"""Runs IN a test-bed dom0 (python3 - IMAGE < this file): walk an `xl save` image the way the
formats are specified, independent of the collection, and print one JSON object:

  {"complete": bool, "error": str|null, "size": bytes, "name": .., "uuid": .., "xen": "4.17",
   "domain_type": "pv"|"hvm"|.., "libxl_records": [type, ...], "libxc_records": n, "page_bytes": n}

Layers (xen docs/specs/libxl-migration-stream.pandoc and libxc-migration-stream.pandoc, and
tools/xl/xl.h for the xl header):
  xl header   32-byte magic, then u32 byteorder / mandatory / optional flags / optional data
              length (host order), then the optional data (u32 length + JSON config)
  libxl v2    16-byte big-endian header "LibxlFmt", version, options; then records
              (u32 type, u32 length, body padded to 8) up to END (type 0). The LIBXC_CONTEXT
              record (type 1) is followed inline by the libxc stream:
  libxc v3    24-byte big-endian image header (marker, "XENF", version, options), a 16-byte
              domain header (type, page shift, Xen major/minor of the saving host), records as
              above up to END (type 0)
A truncated image ends before the libxl END record: "complete" is false and "error" says where.
"""
import json
import os
import struct
import sys

XL_MAGIC = b"Xen saved domain, xl format\n \0 \r"
LIBXL_IDENT = b"LibxlFmt"
LIBXC_ID = 0x58454E46  # "XENF"
LIBXL_END, LIBXL_LIBXC_CONTEXT = 0, 1
LIBXC_END, LIBXC_PAGE_DATA = 0, 1
DOMAIN_TYPES = {1: "pv", 2: "hvm", 3: "pvh", 4: "arm"}  # libxc domain header types


class Truncated(Exception):
    pass


def read_exact(f, n, what):
    data = f.read(n)
    if len(data) != n:
        raise Truncated("%s: wanted %d bytes at offset %d, got %d" % (what, n, f.tell() - len(data), len(data)))
    return data


def skip(f, n, size, what):
    if f.tell() + n > size:
        raise Truncated("%s: %d bytes at offset %d run past the end (%d)" % (what, n, f.tell(), size))
    f.seek(n, os.SEEK_CUR)


def padded(n):
    return (n + 7) & ~7


def walk_libxc(f, size, out):
    marker, ident, version, options = struct.unpack(">QIIH6x", read_exact(f, 24, "libxc image header"))
    if marker != 0xFFFFFFFFFFFFFFFF or ident != LIBXC_ID:
        raise ValueError("libxc image header: bad marker or id")
    out["libxc_version"] = version
    dtype, page_shift, xen_major, xen_minor = struct.unpack("<IH2xII", read_exact(f, 16, "libxc domain header"))
    out["domain_type"] = DOMAIN_TYPES.get(dtype, "type-%d" % dtype)
    out["xen"] = "%d.%d" % (xen_major, xen_minor)
    count = 0
    while True:
        rtype, length = struct.unpack("<II", read_exact(f, 8, "libxc record header"))
        count += 1
        if rtype == LIBXC_PAGE_DATA:
            out["page_bytes"] += length
        skip(f, padded(length), size, "libxc record %#x" % rtype)
        if rtype == LIBXC_END:
            out["libxc_records"] = count
            return


def walk(path):
    size = os.path.getsize(path)
    out = {"complete": False, "error": None, "size": size, "name": None, "uuid": None, "xen": None,
           "domain_type": None, "libxl_records": [], "libxc_records": 0, "page_bytes": 0}
    try:
        with open(path, "rb") as f:
            if read_exact(f, 32, "xl header magic") != XL_MAGIC:
                raise ValueError("not an xl save image (bad magic)")
            byteorder, mandatory, optional, optional_len = struct.unpack("=IIII", read_exact(f, 16, "xl header"))
            if byteorder != 0x01020304:
                raise ValueError("xl header: foreign byte order")
            out["xl_mandatory_flags"] = mandatory
            optional_data = read_exact(f, optional_len, "xl optional data")
            if mandatory & 1 and optional_len >= 4:
                (config_len,) = struct.unpack("=I", optional_data[:4])
                config = json.loads(optional_data[4:4 + config_len].rstrip(b"\0").decode())
                c_info = config.get("c_info", {})
                out["name"], out["uuid"] = c_info.get("name"), c_info.get("uuid")
            ident, version, _options = struct.unpack(">8sII", read_exact(f, 16, "libxl header"))
            if ident != LIBXL_IDENT:
                raise ValueError("libxl header: bad ident")
            out["libxl_version"] = version
            while True:
                rtype, length = struct.unpack("<II", read_exact(f, 8, "libxl record header"))
                out["libxl_records"].append(rtype)
                skip(f, padded(length), size, "libxl record %#x" % rtype)
                if rtype == LIBXL_LIBXC_CONTEXT:
                    walk_libxc(f, size, out)
                elif rtype == LIBXL_END:
                    out["complete"] = True
                    out["trailing_bytes"] = size - f.tell()
                    return out
    except (Truncated, ValueError, struct.error) as exc:
        out["error"] = str(exc)
    return out


if __name__ == "__main__":
    print(json.dumps(walk(sys.argv[1])))
