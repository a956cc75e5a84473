# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: libxenctrl (and xc_domain_resume) through cffi.

Every failing call raises XenCallError with the call name, the errno read right after the
call and the domid.
"""

from ansible_collections.xen.suspend.plugins.module_utils._domain_state import (
    DOMID_MAX_REAL, XENVER_VERSION, DomainInfo, format_uuid)
from ansible_collections.xen.suspend.plugins.module_utils._errors import (
    DependencyError, XenCallError, XenVersionMismatch)
from ansible_collections.xen.suspend.plugins.module_utils._xen_libraries import (
    DOMINFO_ENTRY_ALLOCATION, DOMINFO_PREFIX_SIZE, SYSFS_VERSION_DIR, load_xen_libraries,
    package_hint, version_from_code, xenctrl_soname)

LIST_CHUNK = 64


def info_from_entry(entry, ffi, uuid_texts=None):
    """DomainInfo from a cdata ``xen_dominfo_prefix_t *``. ``uuid_texts``: a dict the caller
    keeps from handle bytes to their text, as a fleet's poll formats the same 1000 handles
    many times over (a quarter of a listing's cost otherwise)."""
    handle = ffi.buffer(entry.handle, 16)[:]
    if uuid_texts is None:
        uuid = format_uuid(handle)
    else:
        uuid = uuid_texts.get(handle)
        if uuid is None:
            uuid = uuid_texts[handle] = format_uuid(handle)
    return DomainInfo(
        domid=int(entry.domain),
        flags=int(entry.flags),
        uuid=uuid,
        cpu_time=int(entry.cpu_time),
        tot_pages=int(entry.tot_pages),
        max_pages=int(entry.max_pages),
        online_vcpus=int(entry.nr_online_vcpus),
        cpupool=int(entry.cpupool),
    )


class _StrideMismatch(Exception):
    """getinfolist entries read with a guessed entry size did not come out ascending."""


class XenCtrl(object):
    """An open xc_interface.

    ``calls`` counts library calls so callers can report the hypercall cost of an operation.
    """

    def __init__(self, libraries, xch):
        self.libraries = libraries
        self.ffi = libraries.ffi
        self.lib = libraries.xenctrl
        self.xch = xch
        self.version = libraries.version
        self.calls = 0
        self._single = self.ffi.new("char[]", DOMINFO_ENTRY_ALLOCATION)
        self._entry_pointer = self.ffi.typeof("xen_dominfo_prefix_t *")
        self._single_entry = self.ffi.cast(self._entry_pointer, self._single)
        self._uuid_texts = {}
        self._u64 = self.ffi.new("uint64_t *")
        self._stride = None
        self._chunk = None

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def open(cls, sysfs_dir=SYSFS_VERSION_DIR, libraries=None):
        """Load the libraries for the running Xen, open an interface, confirm the version."""
        if libraries is None:
            libraries = load_xen_libraries(sysfs_dir=sysfs_dir)
        handle = cls._open_interface(libraries)
        running = cls._running_version(libraries, handle)
        if running != libraries.version:
            libraries.xenctrl.xc_interface_close(handle)
            if libraries.detected_from != "probe":
                raise XenVersionMismatch(
                    "%s was chosen from %s but the hypervisor reports Xen %d.%d; the Xen tools do "
                    "not match the running hypervisor (reboot into the matching Xen, or install "
                    "its tools)" % (libraries.xenctrl_name, libraries.detected_from,
                                    running[0], running[1]))
            try:
                libraries = libraries.with_version(running)
            except DependencyError:
                raise XenVersionMismatch(
                    "the hypervisor is Xen %d.%d but %s is not installed (only %s was found); "
                    "install %s" % (running[0], running[1], xenctrl_soname(running),
                                    libraries.xenctrl_name, package_hint(running)))
            handle = cls._open_interface(libraries)
            confirmed = cls._running_version(libraries, handle)
            if confirmed != libraries.version:
                libraries.xenctrl.xc_interface_close(handle)
                raise XenVersionMismatch("%s reports Xen %d.%d" % (
                    libraries.xenctrl_name, confirmed[0], confirmed[1]))
        return cls(libraries, handle)

    @staticmethod
    def _open_interface(libraries):
        ffi = libraries.ffi
        handle = libraries.xenctrl.xc_interface_open(ffi.NULL, ffi.NULL, 0)
        if handle == ffi.NULL:
            raise XenCallError("xc_interface_open", errno=ffi.errno,
                               detail="needs root and /dev/xen/privcmd on a Xen dom0")
        return handle

    @staticmethod
    def _running_version(libraries, handle):
        ffi = libraries.ffi
        code = libraries.xenctrl.xc_version(handle, XENVER_VERSION, ffi.NULL)
        if code < 0:
            raise XenCallError("xc_version", errno=ffi.errno)
        return version_from_code(code)

    def clone(self):
        """Another interface to the same libraries (the version is checked already), for a
        thread of its own: calls on one XenCtrl are not made from two threads at once."""
        return XenCtrl(self.libraries, self._open_interface(self.libraries))

    def close(self):
        if self.xch is not None:
            self.lib.xc_interface_close(self.xch)
            self.xch = None

    # -- queries --------------------------------------------------------------------------------

    def xen_version(self):
        self.calls += 1
        return self._running_version(self.libraries, self.xch)

    def domain_info(self, domid):
        """DomainInfo for exactly ``domid``, or None when it does not exist.

        getinfolist(domid, 1) is the one query with the same meaning on 4.14 to 4.22: it
        returns the first domain with an id >= domid, so the echoed id must be checked.
        """
        ffi = self.ffi
        self.calls += 1
        count = self.lib.xc_domain_getinfolist(self.xch, domid, 1, self._single)
        if count < 0:
            raise XenCallError("xc_domain_getinfolist", errno=ffi.errno, domid=domid)
        if count == 0 or self._single_entry.domain != domid:
            return None
        return info_from_entry(self._single_entry, ffi, self._uuid_texts)

    def domain_infos(self, domids):
        """{domid: DomainInfo or None} for several domains in as few calls as possible.

        One getinfolist call returns up to LIST_CHUNK consecutive domains, so domains that
        are close in domid (the ones a run has in flight usually are) cost one call for all.
        """
        wanted = set(domids)
        result = dict.fromkeys(wanted)
        if not wanted:
            return result
        first, last = min(wanted), max(wanted)
        stride = self._entry_stride() if len(wanted) > 1 else 0
        if not stride or last - first + 1 > LIST_CHUNK * len(wanted):
            for domid in wanted:
                result[domid] = self.domain_info(domid)
            return result
        try:
            for entry in self._scan(first, last, stride):
                if entry.domain in wanted:
                    result[entry.domain] = info_from_entry(entry, self.ffi, self._uuid_texts)
        except _StrideMismatch:
            self._stride = 0
            return self.domain_infos(domids)
        return result

    def list_domains(self):
        """Every domain, ascending domid, in chunks when the entry size is known."""
        stride = self._entry_stride()
        if stride:
            domains = self._list_chunked(stride)
            if domains is not None:
                return domains
        return self._list_one_by_one()

    def _list_one_by_one(self):
        ffi = self.ffi
        domains = []
        first = 0
        while first <= DOMID_MAX_REAL:
            self.calls += 1
            count = self.lib.xc_domain_getinfolist(self.xch, first, 1, self._single)
            if count < 0:
                raise XenCallError("xc_domain_getinfolist", errno=ffi.errno, domid=first)
            if count == 0:
                break
            info = info_from_entry(self._single_entry, ffi, self._uuid_texts)
            if info.domid < first:  # cannot happen with a sane library; avoid looping forever
                break
            domains.append(info)
            first = info.domid + 1
        return domains

    def _list_chunked(self, stride):
        try:
            return [info_from_entry(entry, self.ffi, self._uuid_texts)
                    for entry in self._scan(0, DOMID_MAX_REAL, stride)]
        except _StrideMismatch:
            self._stride = 0
            return None

    def _scan(self, first, last, stride):
        """The entries of getinfolist calls of LIST_CHUNK domains each, from ``first`` until
        past ``last`` or the last domain. An entry is only valid until the next one is asked
        for (one buffer serves every call). Raises _StrideMismatch when the entries are not
        ascending: ``stride`` is not the library's entry size."""
        ffi = self.ffi
        if self._chunk is None:
            self._chunk = ffi.new("char[]", DOMINFO_ENTRY_ALLOCATION * LIST_CHUNK)
        buf, pointer = self._chunk, self._entry_pointer
        while first <= last:
            self.calls += 1
            count = self.lib.xc_domain_getinfolist(self.xch, first, LIST_CHUNK, buf)
            if count < 0:
                raise XenCallError("xc_domain_getinfolist", errno=ffi.errno, domid=first)
            if count == 0 or count > LIST_CHUNK:
                return
            previous = first - 1
            for index in range(count):
                entry = ffi.cast(pointer, buf + index * stride)
                if entry.domain <= previous:
                    raise _StrideMismatch()
                previous = entry.domain
                yield entry
            first = previous + 1
            if count < LIST_CHUNK:
                return

    def _entry_stride(self):
        """sizeof(xc_domaininfo_t) of the loaded library, measured rather than assumed.

        libxc bounces max_domains * its own sizeof back to the caller, so two one-entry calls
        into buffers pre-filled with different patterns show exactly where its entry ends.
        0 means unknown: list one domain per call instead.
        """
        if self._stride is not None:
            return self._stride
        ffi = self.ffi
        images = []
        for pattern in (0xAA, 0x55):
            buf = ffi.new("char[]", DOMINFO_ENTRY_ALLOCATION)
            ffi.memmove(buf, bytes(bytearray([pattern])) * DOMINFO_ENTRY_ALLOCATION,
                        DOMINFO_ENTRY_ALLOCATION)
            self.calls += 1
            if self.lib.xc_domain_getinfolist(self.xch, 0, 1, buf) != 1:
                self._stride = 0
                return 0
            images.append(bytearray(ffi.buffer(buf, DOMINFO_ENTRY_ALLOCATION)[:]))
        end = DOMINFO_ENTRY_ALLOCATION
        while end > DOMINFO_PREFIX_SIZE and images[0][end - 1] == 0xAA and images[1][end - 1] == 0x55:
            end -= 1
        end = (end + 7) // 8 * 8
        if end < DOMINFO_PREFIX_SIZE or end >= DOMINFO_ENTRY_ALLOCATION:
            end = 0
        self._stride = end
        return end

    def hvm_param(self, domid, param):
        self.calls += 1
        rc = self.lib.xc_hvm_param_get(self.xch, domid, param, self._u64)
        if rc < 0:
            raise XenCallError("xc_hvm_param_get", errno=self.ffi.errno, domid=domid,
                               detail="param %d" % param)
        return int(self._u64[0])

    # -- actions --------------------------------------------------------------------------------

    def _check(self, call, rc, domid):
        if rc < 0:
            raise XenCallError(call, errno=self.ffi.errno, domid=domid)
        return rc

    def pause(self, domid):
        self.calls += 1
        return self._check("xc_domain_pause", self.lib.xc_domain_pause(self.xch, domid), domid)

    def unpause(self, domid):
        self.calls += 1
        return self._check("xc_domain_unpause", self.lib.xc_domain_unpause(self.xch, domid), domid)

    def shutdown(self, domid, reason):
        self.calls += 1
        return self._check("xc_domain_shutdown",
                           self.lib.xc_domain_shutdown(self.xch, domid, reason), domid)

    def subscribe_for_suspend(self, domid, port):
        self.calls += 1
        return self._check("xc_domain_subscribe_for_suspend",
                           self.lib.xc_domain_subscribe_for_suspend(self.xch, domid, port), domid)

    def resume(self, domid, fast):
        function = self.libraries.resume_function()
        self.calls += 1
        return self._check("xc_domain_resume", function(self.xch, domid, 1 if fast else 0), domid)
