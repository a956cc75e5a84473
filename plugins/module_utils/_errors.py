# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: the one exception hierarchy every layer raises.

Everything a user can see ends up as a XenSuspendError so the modules need a single ``except``
and can always say which domain and which phase went wrong.
"""

import errno as _errno
import os


def errno_name(number):
    """Symbolic name of an errno value ("EINVAL"), or the number as text when unknown."""
    if number is None:
        return None
    return _errno.errorcode.get(number, str(number))


def _errno_text(number):
    if not number:
        return ""
    try:
        return "%s (%s)" % (errno_name(number), os.strerror(number))
    except (ValueError, OverflowError):
        return str(number)


class XenSuspendError(Exception):
    """Base class. ``domain`` is a human label ("web1 (domid 5)"), ``phase`` a phase name."""

    kind = "error"

    def __init__(self, message, domain=None, phase=None, kind=None, domid=None, errno=None):
        super(XenSuspendError, self).__init__(message)
        self.message = message
        self.domain = domain
        self.phase = phase
        self.domid = domid
        self.errno = errno
        if kind is not None:
            self.kind = kind

    def __str__(self):
        parts = []
        if self.domain is not None:
            parts.append("domain %s" % self.domain)
        if self.phase is not None:
            parts.append("phase %s" % self.phase)
        prefix = (", ".join(parts) + ": ") if parts else ""
        return prefix + self.message

    def with_context(self, domain=None, phase=None):
        """Fill in the domain and phase where the raiser could not know them; returns self."""
        if self.domain is None and domain is not None:
            self.domain = domain
        if self.phase is None and phase is not None:
            self.phase = phase
        return self

    def to_dict(self):
        result = {"kind": self.kind, "message": str(self), "phase": self.phase}
        if self.errno:
            result["errno"] = errno_name(self.errno)
        return result


class DependencyError(XenSuspendError):
    """A Python package or a Xen library is missing on the dom0.

    ``library`` is what failed to load, ``install`` says what to install, ``python_library``
    is true when the module should report it in ``missing_required_lib`` style.
    """

    kind = "missing_dependency"

    def __init__(self, message, library=None, install=None, python_library=False):
        super(DependencyError, self).__init__(message)
        self.library = library
        self.install = install
        self.python_library = python_library


class XenCallError(XenSuspendError):
    """A libxenctrl / libxenguest / libxenevtchn call failed."""

    kind = "call_failed"

    def __init__(self, call, errno=None, domid=None, detail=None):
        self.call = call
        text = "%s failed" % call
        if domid is not None:
            text = "%s(domid %d) failed" % (call, domid)
        if errno:
            text += ": " + _errno_text(errno)
        if detail:
            text += " (%s)" % detail
        super(XenCallError, self).__init__(text, domid=domid, errno=errno)


class XenVersionMismatch(XenSuspendError):
    kind = "version_mismatch"


class XenstoreError(XenSuspendError):
    """A xenstore request failed; ``op`` and ``path`` say which."""

    kind = "xenstore_error"

    def __init__(self, message, op=None, path=None, errno=None, error_name=None):
        self.op = op
        self.path = path
        self.error_name = error_name
        text = message
        if op:
            text = "xenstore %s%s: %s" % (op, (" " + path) if path else "", message)
        super(XenstoreError, self).__init__(text, errno=errno)


class XenstoreTimeout(XenstoreError):
    kind = "xenstore_timeout"


class XenstoreConnectionLost(XenstoreError):
    kind = "xenstore_connection_lost"


class LedgerError(XenSuspendError):
    """The ledger cannot be read or written; never silently repaired."""

    kind = "ledger_error"


class TargetError(XenSuspendError):
    """Target selection or validation refused the request; nothing was touched."""

    kind = "invalid_target"


class OptionError(TargetError):
    """A bad option value (a TargetError too, so existing handlers keep working)."""

    kind = "invalid_option"


class DomainBusy(XenSuspendError):
    """Another process holds the domain's suspend lock (xl save / migrate, or us)."""

    kind = "busy"


class DomainOperationError(XenSuspendError):
    """A suspend or resume step failed for one domain; ``kind`` is the stable reason code."""

    def __init__(self, message, kind, domain=None, phase=None, domid=None, errno=None):
        super(DomainOperationError, self).__init__(
            message, domain=domain, phase=phase, kind=kind, domid=domid, errno=errno)


class XenstoreUnavailable(XenstoreConnectionLost):
    """A xenstore request refused at once, never sent: the connection to xenstored was judged
    dead earlier and no reconnect has succeeded since. ``endpoint`` names the socket or device,
    ``reason`` says why it was judged dead. A XenstoreConnectionLost (same ``kind``), so callers
    that handle a lost connection handle this too."""

    def __init__(self, message, op=None, path=None, endpoint=None, reason=None):
        self.endpoint = endpoint
        self.reason = reason
        super(XenstoreUnavailable, self).__init__(message, op=op, path=path)
