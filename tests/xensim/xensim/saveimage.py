"""The xl save file, written and read by the simulated ``xl`` (``bin/xl``).

Layout (reference xen-save-restore.md section 1.2; xen tools/xl/xl.h, docs/specs/
libxl-migration-stream.pandoc, docs/specs/libxc-migration-stream.pandoc):

* xl header: 32-byte magic, then 4 x u32 in host byte order (byteorder 0x01020304,
  mandatory_flags, optional_flags, optional_data_len), then the optional data: u32 length +
  the domain config as JSON, NUL-terminated.
* libxl stream v2: 16-byte big-endian header (ident ``LibxlFmt``, version 2, options), then
  records ``u32 type, u32 length, body, padding to 8`` (host order); the libxc stream follows
  a zero-length LIBXC_CONTEXT record inline; the stream ends with a libxl END record (8 zero
  bytes).
* libxc stream v3: image header (big-endian: marker, ``XENF``, version 3, options), domain
  header (type, page shift, xen major/minor of the saving host), records (same framing) ending
  with its own END.

What is simulated: the framing is real (Xen's own ``tools/python/scripts/verify-stream-v2 -f xl``
accepts the PV and HVM images, checked by hand against Xen c447b730); the record *contents*
are plausible stand-ins (zero pages, zeroed CPU state).  Memory is
scaled down: ``pages_per_mib`` 4 KiB pages per MiB of guest memory (default 1, i.e. 1/256 of
a real image), so a 1 GiB guest gives a ~4 MiB file.  The first page (pfn 0) carries the
simulated guest's state (behaviour, parameters, heartbeat counter) as JSON: it is what the
simulated guest keeps "in its memory" and gets back on restore.
"""

import json
import struct

XL_MAGIC = b"Xen saved domain, xl format\n \0 \r"
assert len(XL_MAGIC) == 32
BYTEORDER = 0x01020304
XL_MANDATORY_FLAG_JSON = 1 << 0
XL_MANDATORY_FLAG_STREAMv2 = 1 << 1
XL_MANDATORY_FLAG_ALL = XL_MANDATORY_FLAG_JSON | XL_MANDATORY_FLAG_STREAMv2
XL_HDR = struct.Struct("=IIII")

LIBXL_IDENT = 0x4C6962786C466D74   # "LibxlFmt"
LIBXL_HDR = struct.Struct(">QII")
REC_HDR = struct.Struct("=II")
# libxl record types
REC_END = 0
REC_LIBXC_CONTEXT = 1
REC_EMULATOR_XENSTORE_DATA = 2
REC_EMULATOR_CONTEXT = 3

# libxc stream v3
XC_IHDR = struct.Struct(">QIIH6x")
XC_MARKER = 0xFFFFFFFFFFFFFFFF
XC_ID = 0x58454E46                 # "XENF"
XC_DHDR = struct.Struct("=IHHII")
XC_DHDR_TYPE_X86_PV = 1
XC_DHDR_TYPE_X86_HVM = 2
XC_END = 0x00
XC_PAGE_DATA = 0x01
XC_X86_PV_INFO = 0x02
XC_X86_PV_P2M_FRAMES = 0x03
XC_X86_PV_VCPU_BASIC = 0x04
XC_SHARED_INFO = 0x07
XC_X86_TSC_INFO = 0x08
XC_HVM_CONTEXT = 0x09
XC_HVM_PARAMS = 0x0A
XC_STATIC_DATA_END = 0x10
XC_X86_CPUID_POLICY = 0x11
XC_X86_MSR_POLICY = 0x12

XC_KNOWN = frozenset(range(0x00, 0x13))
LIBXL_KNOWN = frozenset(range(0, 6))

PAGE = 4096
PAGES_PER_BATCH = 1024             # libxc's MAX_BATCH_SIZE
STATE_MAGIC = b"XENSIMGS"
XEN_VERSION = (4, 17)


class StreamError(Exception):
    """A libxl/libxc read error; ``args[0]`` is the message libxl/libxc would log."""


class Truncated(StreamError):
    pass


def _pad(n):
    return (8 - n % 8) % 8


def record(rtype, body=b""):
    return REC_HDR.pack(rtype, len(body)) + body + b"\0" * _pad(len(body))


# -- writing -----------------------------------------------------------------------------------

def xl_header(config_json):
    """The xl header and optional data for ``config_json`` (str)."""
    cfg = config_json.encode() + b"\0"
    opt = struct.pack("=I", len(cfg)) + cfg
    flags = XL_MANDATORY_FLAG_STREAMv2 | XL_MANDATORY_FLAG_JSON
    return XL_MAGIC + XL_HDR.pack(BYTEORDER, flags, 0, len(opt)) + opt, flags, len(opt)


def guest_state_page(state):
    blob = json.dumps(state, sort_keys=True).encode()
    if len(blob) > PAGE - 12:
        # keep the essentials; counters are the first thing to go
        state = dict(state, counters={})
        blob = json.dumps(state, sort_keys=True).encode()[:PAGE - 12]
    data = STATE_MAGIC + struct.pack("=I", len(blob)) + blob
    return data + b"\0" * (PAGE - len(data))


def stream_chunks(dtype, memory_mb, vcpus, state, pages_per_mib=1):
    """Yield the libxl v2 stream (with the libxc stream inside) in chunks of at most about
    one PAGE_DATA batch, so that the writer can fail or stop anywhere in between."""
    hvm = dtype != "pv"
    yield LIBXL_HDR.pack(LIBXL_IDENT, 2, 0)
    yield record(REC_LIBXC_CONTEXT)
    yield XC_IHDR.pack(XC_MARKER, XC_ID, 3, 0)
    yield XC_DHDR.pack(XC_DHDR_TYPE_X86_HVM if hvm else XC_DHDR_TYPE_X86_PV, 12, 0, *XEN_VERSION)
    npages = max(1, int(memory_mb * pages_per_mib))
    if not hvm:
        yield record(XC_X86_PV_INFO, struct.pack("=BBHI", 8, 4, 0, 0))
    yield record(XC_X86_CPUID_POLICY, b"\0" * 48)
    yield record(XC_X86_MSR_POLICY, b"\0" * 16)
    yield record(XC_STATIC_DATA_END)
    if not hvm:
        # the p2m list: (start pfn, end pfn) and the frames holding it (512 entries a frame)
        frames = (npages + 511) // 512
        yield record(XC_X86_PV_P2M_FRAMES, struct.pack("=II", 0, npages - 1)
                     + struct.pack("=%dQ" % frames, *range(0x100000, 0x100000 + frames)))
    pfn = 0
    while pfn < npages:
        count = min(PAGES_PER_BATCH, npages - pfn)
        pfns = struct.pack("=%dQ" % count, *range(pfn, pfn + count))
        data = bytearray(count * PAGE)
        if pfn == 0:
            data[:PAGE] = guest_state_page(state)
        yield record(XC_PAGE_DATA, struct.pack("=II", count, 0) + pfns + bytes(data))
        pfn += count
    yield record(XC_X86_TSC_INFO, struct.pack("=IIQII", 0, 2000000, 0, 0, 0))
    if hvm:
        yield record(XC_HVM_CONTEXT, b"\0" * 1024)
        yield record(XC_HVM_PARAMS, struct.pack("=II", 1, 0) + struct.pack("=QQ", 2, 0))
    else:
        yield record(XC_SHARED_INFO, b"\0" * PAGE)
        for v in range(vcpus):
            yield record(XC_X86_PV_VCPU_BASIC, struct.pack("=II", v, 0) + b"\0" * 64)
    yield record(XC_END)
    if hvm:
        # qemu-xen device state (libxl reads it from /var/lib/xen/qemu-save.<domid>)
        yield record(REC_EMULATOR_CONTEXT, struct.pack("=II", 2, 0) + b"QEVM" + b"\0" * 60)
    yield record(REC_END)


def domain_config_json(name, uuid, dtype, memory_mb, vcpus):
    """A libxl_domain_config in libxl's JSON form (the subset that matters here)."""
    kb = int(memory_mb) * 1024
    cfg = {
        "c_info": {"type": dtype, "name": name, "uuid": uuid},
        "b_info": {"max_vcpus": vcpus, "max_memkb": kb, "target_memkb": kb,
                   "type.%s" % dtype: {}},
        "on_poweroff": "destroy", "on_reboot": "restart", "on_crash": "destroy",
    }
    return json.dumps(cfg, indent=4)


# -- reading -----------------------------------------------------------------------------------

class Reader(object):
    """Sequential reads from a file object, like libxl_read_exactly: a short read is
    "truncated", never a hang."""

    def __init__(self, f):
        self.f = f
        self.pos = 0

    def exactly(self, n, what):
        data = self.f.read(n)
        self.pos += len(data)
        if len(data) < n:
            raise Truncated(what)
        return data


def read_xl_header(f, source):
    """Parse the xl header; returns (hdr dict, config bytes or None).  Raises ValueError with
    xl's own message."""
    r = Reader(f)
    try:
        raw = r.exactly(32 + XL_HDR.size, "header")
    except Truncated:
        raise ValueError("libxl: error: libxl_utils.c: file/stream truncated reading header from %s"
                         % source)
    if raw[:32] != XL_MAGIC:
        raise ValueError("File has wrong magic number - corrupt or for a different tool?")
    byteorder, mand, opt, optlen = XL_HDR.unpack(raw[32:])
    if byteorder != BYTEORDER:
        raise ValueError("File has wrong byte order")
    hdr = {"mandatory_flags": mand, "optional_flags": opt, "optional_data_len": optlen,
           "info": "Loading new save file %s (new xl fmt info 0x%x/0x%x/%d)"
                   % (source, mand, opt, optlen)}
    bad = mand & ~XL_MANDATORY_FLAG_ALL
    if bad:
        raise ValueError(hdr["info"] + "\nSavefile has mandatory flag(s) 0x%x which are not "
                         "supported; need newer xl" % bad)
    config = None
    if optlen:
        try:
            optdata = r.exactly(optlen, "optdata")
        except Truncated:
            raise ValueError(hdr["info"] + "\nlibxl: error: libxl_utils.c: file/stream truncated "
                             "reading optdata from %s" % source)
        if len(optdata) < 4:
            raise ValueError(hdr["info"] + "\nSavefile truncated.")
        (clen,) = struct.unpack("=I", optdata[:4])
        if len(optdata) - 4 < clen:
            raise ValueError(hdr["info"] + "\nSavefile truncated.")
        config = optdata[4:4 + clen]
    return hdr, config


def _rec(r, what):
    try:
        rtype, length = REC_HDR.unpack(r.exactly(REC_HDR.size, what + " header"))
    except Truncated:
        raise Truncated("Failed to read Record Header from stream")
    try:
        body = r.exactly(length + _pad(length), what + " body")
    except Truncated:
        raise Truncated("Failed to read Record Data from stream")
    if body[length:].strip(b"\0"):
        raise StreamError("Padding containing non-zero bytes found")
    return rtype, body[:length]


def read_stream(f):
    """Walk the libxl v2 stream (after the xl header) to its END record.  Returns the guest
    state found in pfn 0 (dict or None) and the number of pages.  Raises StreamError."""
    r = Reader(f)
    try:
        ident, version, _options = LIBXL_HDR.unpack(r.exactly(LIBXL_HDR.size, "stream header"))
    except Truncated:
        raise Truncated("Failed to read Stream Header from stream")
    if ident != LIBXL_IDENT:
        raise StreamError("Invalid ident: expected 0x%016x, got 0x%016x" % (LIBXL_IDENT, ident))
    if version != 2:
        raise StreamError("Invalid Version: Expected 2, Got %d" % version)
    state = None
    pages = 0
    while True:
        rtype, body = _rec(r, "libxl record")
        if rtype == REC_END:
            if state is None:
                raise StreamError("xc: error: no guest memory in the stream (nothing to restore)")
            return state, pages
        if rtype not in LIBXL_KNOWN and not rtype & 0x80000000:
            raise StreamError("Unrecognised record 0x%08x" % rtype)
        if rtype != REC_LIBXC_CONTEXT:
            continue
        # the libxc stream, inline
        try:
            marker, ident, version, _o = XC_IHDR.unpack(r.exactly(XC_IHDR.size, "image header"))
            r.exactly(XC_DHDR.size, "domain header")
        except Truncated:
            raise Truncated("xc: error: Failed to read Image Header from stream")
        if marker != XC_MARKER or ident != XC_ID or version != 3:
            raise StreamError("xc: error: Invalid image header")
        while True:
            try:
                xtype, xbody = _rec(r, "libxc record")
            except Truncated as e:
                raise Truncated("xc: error: %s" % e.args[0])
            if xtype not in XC_KNOWN:
                raise StreamError("xc: error: Unrecognised record type 0x%x" % xtype)
            if xtype == XC_END:
                break
            if xtype == XC_PAGE_DATA:
                count = struct.unpack("=I", xbody[:4])[0]
                if pages == 0 and count:
                    first = xbody[8 + 8 * count:8 + 8 * count + PAGE]
                    if first[:8] == STATE_MAGIC:
                        (n,) = struct.unpack("=I", first[8:12])
                        try:
                            state = json.loads(first[12:12 + n].decode())
                        except ValueError:
                            state = None
                pages += count
