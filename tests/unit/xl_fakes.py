# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Save images built from the format specs (for _save_image's tests), and a fake ``xl`` that
acts on the xen_fakes World (for the save engine's tests)."""

import json
import os
import struct

from ansible_collections.xen.suspend.plugins.module_utils._domain_state import SHUTDOWN_SUSPEND
from ansible_collections.xen.suspend.plugins.module_utils._xl_commands import XlResult

MAGIC = b"Xen saved domain, xl format\n \0 \r"


def record(rtype, body=b"", order="<", pad_byte=b"\0"):
    return struct.pack(order + "II", rtype, len(body)) + body + pad_byte * ((8 - len(body) % 8) % 8)


def xl_header(name, uuid, flags=3, byteorder=0x01020304, config=None):
    if config is None:
        config = json.dumps({"c_info": {"type": "pv", "name": name, "uuid": uuid},
                             "b_info": {"max_memkb": 65536}}).encode() + b"\0"
    opt = struct.pack("=I", len(config)) + config
    return MAGIC + struct.pack("=IIII", byteorder, flags, 0, len(opt)) + opt


def libxc_stream(pages=3, dtype=1, xen=(4, 17), order="<", big=False, records=None):
    out = struct.pack(">QIIH6x", 0xFFFFFFFFFFFFFFFF, 0x58454E46, 3, 1 if big else 0)
    out += struct.pack(order + "IHHII", dtype, 12, 0, xen[0], xen[1])
    if records is None:
        records = [record(0x11, b"\0" * 48, order), record(0x10, b"", order)]
        for pfn in range(pages):
            records.append(record(0x01, struct.pack(order + "II", 1, 0) + struct.pack(order + "Q", pfn)
                                  + bytes([pfn % 251]) * 4096, order))
        records.append(record(0x08, b"\0" * 20, order))
    return out + b"".join(records) + record(0, b"", order)


def image(name="web1", uuid="5b3c9e2a-1f4d-4c21-9a77-0e8d2b1c6f10", pages=3, xen=(4, 17),
          big_endian=False, dtype=1, extra_libxl=()):
    """A complete xl save image (libxl stream v2 holding a libxc v3 stream)."""
    order = ">" if big_endian else "<"
    out = xl_header(name, uuid)
    out += struct.pack(">QII", 0x4C6962786C466D74, 2, 1 if big_endian else 0)
    out += record(1, b"", order)
    out += libxc_stream(pages, dtype, xen, order, big_endian)
    for rtype, body in extra_libxl:
        out += record(rtype, body, order)
    return out + record(0, b"", order)


class FakeXl(object):
    """``xl`` for the engine: ``save`` suspends the fake guest, writes an image and leaves the
    guest paused after a cancelled suspend, like ``xl save -p``. ``modes`` (domid -> mode)
    scripts failures:

    ok           as above
    fail_early   exits 1 before touching the guest (xl could not get the configuration)
    enospc       a partial image, xl resumes the guest itself, exits 1
    killed       a partial image, the guest left suspended, xl killed at our timeout
    unanswered   the request left in control/shutdown unanswered, xl killed at our timeout
    late         the guest answered but did not suspend within libxl's wait: xl exits 1
    answered_killed  the guest answered, xl killed at our timeout while it had not suspended
    truncate     exits 0, but the image lost its tail
    wrong_uuid   exits 0 with an image of another guest
    """

    def __init__(self, world, modes=None, destroy_fails=()):
        self.world = world
        self.modes = dict(modes or {})
        self.destroy_fails = set(destroy_fails)
        self.calls = []
        self.running = 0
        self.max_running = 0
        self.kept_fds = []
        self.destroy_kept_fds = []

    def _result(self, argv, rc, stderr="", timed_out=False):
        return XlResult(argv, rc, stderr, 0.25, timed_out=timed_out)

    def save(self, domid, path, timeout, keep_fds=()):
        argv = ["/usr/sbin/xl", "save", "-p", str(domid), path]
        self.calls.append(("save", domid, path))
        self.kept_fds.append(tuple(keep_fds))
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            return self._save(argv, domid, path)
        finally:
            self.running -= 1

    def _save(self, argv, domid, path):
        mode = self.modes.get(domid, "ok")
        domain = self.world.domains[domid]
        if mode == "fail_early":
            return self._result(argv, 1, "libxl: error: unable to retrieve domain configuration\n")
        data = image(domain.name, domain.uuid if mode != "wrong_uuid" else
                     "00000000-0000-4000-8000-00000000beef", pages=4)
        with open(path, "wb") as handle:
            handle.write(data[:len(data) // 2] if mode in ("enospc", "killed") else
                         data[:-5] if mode == "truncate" else data)
        if mode == "enospc":
            return self._result(argv, 1, "Saving to %s new xl format\nxc: error: Failed to write page "
                                "data to stream (28 = No space left on device)\nFailed to save domain, "
                                "resuming domain\n" % path)
        if mode == "late":
            self.world.xenstore.nodes[domain.control_path] = b""
            return self._result(argv, 1, "Saving to %s new xl format\nlibxl: error: libxl_dom_suspend.c: "
                                "Domain %d:guest did not suspend, timed out\nFailed to save domain, "
                                "resuming domain\nlibxl: error: xc_domain_resume failed: Invalid argument\n"
                                % (path, domid))
        if mode == "answered_killed":
            self.world.xenstore.nodes[domain.control_path] = b""
            return self._result(argv, None, "Saving to %s\n" % path, timed_out=True)
        if mode == "unanswered":
            self.world.xenstore.nodes[domain.control_path] = b"suspend"
            return self._result(argv, None, "Saving to %s\n" % path, timed_out=True)
        domain.shutdown_code = SHUTDOWN_SUSPEND
        if mode == "killed":
            return self._result(argv, -9, "Saving to %s\n" % path, timed_out=True)
        domain.paused = True
        domain.shutdown_code = None
        domain.resumes.append(True)
        return self._result(argv, 0, "Saving to %s new xl format (info 0x3/0x0/100)\n" % path)

    def destroy(self, domid, timeout=60.0, keep_fds=()):
        self.calls.append(("destroy", domid))
        self.destroy_kept_fds.append(tuple(keep_fds))
        argv = ["/usr/sbin/xl", "destroy", str(domid)]
        if domid in self.destroy_fails:
            return self._result(argv, 1, "libxl: error: libxl_domain.c: destroy failed\n")
        self.world.domains[domid].destroyed = True
        return self._result(argv, 0)

    def unpause(self, domid, timeout=60.0):
        self.calls.append(("unpause", domid))
        self.world.domains[domid].paused = False
        return self._result(["/usr/sbin/xl", "unpause", str(domid)], 0)


def saveable(world, domid, **kwargs):
    """A guest as xl creates it: with /libxl/<domid> in xenstore."""
    domain = world.add_domain(domid, "guest%d" % domid, **kwargs)
    world.xenstore.nodes[b"/libxl/%d/type" % domid] = domain.dtype.encode()
    return domain


def file_mode(path):
    return os.stat(path).st_mode & 0o777
