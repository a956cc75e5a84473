"""XenStore wire codec (xen/include/public/io/xs_wire.h).

A message is a 16-byte header ``struct xsd_sockmsg { uint32 type, req_id,
tx_id, len; }`` in host byte order followed by ``len`` (<= 4096) payload bytes.
"""

import errno
import struct

HEADER = struct.Struct("=IIII")
HEADER_SIZE = HEADER.size
PAYLOAD_MAX = 4096
ABS_PATH_MAX = 3072
REL_PATH_MAX = 2048

# enum xsd_sockmsg_type
XS_CONTROL = 0
XS_DIRECTORY = 1
XS_READ = 2
XS_GET_PERMS = 3
XS_WATCH = 4
XS_UNWATCH = 5
XS_TRANSACTION_START = 6
XS_TRANSACTION_END = 7
XS_INTRODUCE = 8
XS_RELEASE = 9
XS_GET_DOMAIN_PATH = 10
XS_WRITE = 11
XS_MKDIR = 12
XS_RM = 13
XS_SET_PERMS = 14
XS_WATCH_EVENT = 15
XS_ERROR = 16
XS_IS_DOMAIN_INTRODUCED = 17
XS_RESUME = 18
XS_SET_TARGET = 19
XS_RESET_WATCHES = 21
XS_DIRECTORY_PART = 22

OP_NAMES = {v: k for k, v in globals().items() if k.startswith("XS_") and isinstance(v, int)}

# xsd_errors[]: the names xenstored puts in ERROR replies.
ERROR_NAMES = (
    "EINVAL", "EACCES", "EEXIST", "EISDIR", "ENOENT", "ENOMEM", "ENOSPC", "EIO",
    "ENOTEMPTY", "ENOSYS", "EROFS", "EBUSY", "EAGAIN", "EISCONN", "E2BIG", "EPERM",
)
_ERRNO_TO_NAME = {getattr(errno, n): n for n in ERROR_NAMES}


def errno_name(code):
    # xenstored maps anything it has no name for to EIO.
    return _ERRNO_TO_NAME.get(code, "EIO")


class XsError(Exception):
    """An error to be reported to the client as an XS_ERROR reply."""

    def __init__(self, code, msg=""):
        super().__init__(code, msg or errno_name(code))
        self.errno = code


def pack(op, req_id, tx_id, payload=b""):
    return HEADER.pack(op, req_id, tx_id, len(payload)) + payload


def pack_error(req_id, tx_id, code):
    return pack(XS_ERROR, req_id, tx_id, errno_name(code).encode() + b"\0")


def split_args(payload):
    """Split a payload of NUL-terminated strings.  Returns a list of bytes;
    a trailing non-terminated string (e.g. a WRITE value) is returned as the
    last element as is."""
    return payload.split(b"\0")


def one_arg(payload):
    """onearg(): the payload must be exactly one NUL-terminated string."""
    if not payload or payload.find(b"\0") != len(payload) - 1:
        raise XsError(errno.EINVAL)
    return payload[:-1]


def n_args(payload, n):
    """get_strings(): exactly ``n`` NUL-terminated strings (extra ones ignored)."""
    parts = payload.split(b"\0")
    if len(parts) < n + 1:
        raise XsError(errno.EINVAL)
    return parts[:n]


class Decoder:
    """Incremental decoder: feed() bytes, iterate complete packets."""

    __slots__ = ("buf",)

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data):
        self.buf += data

    def packets(self):
        """Return the complete packets as a list of (op, req_id, tx_id,
        payload) and drop them from the buffer.  Raises ValueError if a header
        announces a payload larger than PAYLOAD_MAX (xenstored then drops the
        connection)."""
        buf = self.buf
        pos = 0
        n = len(buf)
        out = []
        try:
            while n - pos >= HEADER_SIZE:
                op, req_id, tx_id, ln = HEADER.unpack_from(buf, pos)
                if ln > PAYLOAD_MAX:
                    raise ValueError("payload too large: %d" % ln)
                if n - pos - HEADER_SIZE < ln:
                    break
                start = pos + HEADER_SIZE
                out.append((op, req_id, tx_id, bytes(buf[start:start + ln])))
                pos = start + ln
        finally:
            if pos:
                del buf[:pos]
        return out
