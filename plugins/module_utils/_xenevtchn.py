# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: libxenevtchn (libxenevtchn.so.1) through cffi.

One handle serves every domain: the engine multiplexes all suspend ports over its single fd,
as libxl does with its per-context handle.
"""

import errno
import fcntl
import os
import select

from ansible_collections.xen.suspend.plugins.module_utils._errors import XenCallError


def _fd_readable(fd):
    """Non-blocking readiness check; xenevtchn.h warns a read may block even in O_NONBLOCK."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    readable, _w, _x = select.select([fd], [], [], 0)
    return bool(readable)


class XenEvtchn(object):
    """An open xenevtchn handle with a non-blocking fd."""

    def __init__(self, libraries):
        self.ffi = libraries.ffi
        self.lib = libraries.xenevtchn
        self.calls = 0
        handle = self.lib.xenevtchn_open(self.ffi.NULL, 0)
        if handle == self.ffi.NULL:
            raise XenCallError("xenevtchn_open", errno=self.ffi.errno,
                               detail="needs root and /dev/xen/evtchn")
        self.handle = handle
        fd = self.lib.xenevtchn_fd(handle)
        if fd < 0:
            err = self.ffi.errno
            self.close()
            raise XenCallError("xenevtchn_fd", errno=err)
        self.fd = fd
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)

    def fileno(self):
        return self.fd

    def close(self):
        if self.handle is not None:
            self.lib.xenevtchn_close(self.handle)
            self.handle = None

    def bind_interdomain(self, domid, remote_port):
        """Bind the guest's port; the new local port is returned already pending (Xen does that)."""
        self.calls += 1
        port = self.lib.xenevtchn_bind_interdomain(self.handle, domid, remote_port)
        if port < 0:
            raise XenCallError("xenevtchn_bind_interdomain", errno=self.ffi.errno, domid=domid,
                               detail="guest port %d" % remote_port)
        return int(port)

    def notify(self, port, domid=None):
        self.calls += 1
        if self.lib.xenevtchn_notify(self.handle, port) < 0:
            raise XenCallError("xenevtchn_notify", errno=self.ffi.errno, domid=domid,
                               detail="local port %d" % port)

    def unmask(self, port, domid=None):
        self.calls += 1
        if self.lib.xenevtchn_unmask(self.handle, port) < 0:
            raise XenCallError("xenevtchn_unmask", errno=self.ffi.errno, domid=domid,
                               detail="local port %d" % port)

    def unbind(self, port, domid=None):
        self.calls += 1
        if self.lib.xenevtchn_unbind(self.handle, port) < 0:
            raise XenCallError("xenevtchn_unbind", errno=self.ffi.errno, domid=domid,
                               detail="local port %d" % port)

    def pending(self):
        """The next pending local port (left masked), or None when nothing is pending."""
        if not _fd_readable(self.fd):
            return None
        self.calls += 1
        port = self.lib.xenevtchn_pending(self.handle)
        if port < 0:
            err = self.ffi.errno
            if err in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                return None
            raise XenCallError("xenevtchn_pending", errno=err)
        return int(port)
