# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""cffi declarations, soname choice and the libxenctrl/libxenevtchn wrappers over fake libraries.

The fake libraries are Python objects that behave like the C functions: they write into the
caller's cffi buffers with the entry size of a given Xen version and set ffi.errno on failure.
"""

import errno
import os

import pytest

from ansible_collections.xen.suspend.plugins.module_utils._errors import (
    DependencyError, XenCallError, XenVersionMismatch)
from ansible_collections.xen.suspend.plugins.module_utils._xen_libraries import (
    XENEVTCHN_SONAME, library_search_dirs, load_xen_libraries, make_ffi, read_hypervisor_version, version_code)
from ansible_collections.xen.suspend.plugins.module_utils._xenctrl import XenCtrl
from ansible_collections.xen.suspend.plugins.module_utils._xenevtchn import XenEvtchn

FFI = make_ffi()


# -- cdefs ---------------------------------------------------------------------------------------

def test_prefix_struct_layout_matches_xen_abi():
    assert FFI.sizeof("xen_dominfo_prefix_t") == 96
    assert FFI.offsetof("xen_dominfo_prefix_t", "domain") == 0
    assert FFI.offsetof("xen_dominfo_prefix_t", "flags") == 4
    assert FFI.offsetof("xen_dominfo_prefix_t", "tot_pages") == 8
    assert FFI.offsetof("xen_dominfo_prefix_t", "cpu_time") == 56
    assert FFI.offsetof("xen_dominfo_prefix_t", "nr_online_vcpus") == 64
    assert FFI.offsetof("xen_dominfo_prefix_t", "handle") == 76
    assert FFI.offsetof("xen_dominfo_prefix_t", "cpupool") == 92


BOTH_FFIS = pytest.mark.parametrize("ffi", [FFI, make_ffi(prebuilt=False)], ids=["prebuilt", "parsed"])
FUNCTIONS = [
    "xc_interface_open", "xc_interface_close", "xc_version", "xc_domain_getinfolist",
    "xc_domain_pause", "xc_domain_unpause", "xc_domain_shutdown",
    "xc_domain_subscribe_for_suspend", "xc_hvm_param_get", "xc_domain_resume",
    "xenevtchn_open", "xenevtchn_close", "xenevtchn_fd", "xenevtchn_notify",
    "xenevtchn_bind_interdomain", "xenevtchn_unbind", "xenevtchn_pending", "xenevtchn_unmask",
]


def missing_symbol_errors(ffi):
    """What looking up a declared function the library lacks raises: AttributeError from a
    parsed FFI, ffi.error from a prebuilt one."""
    return (AttributeError, getattr(ffi, "error", AttributeError))


@BOTH_FFIS
@pytest.mark.parametrize("name", FUNCTIONS)
def test_every_function_is_declared(ffi, name):
    # libc has none of them: a declared function is "not found", an undeclared one unknown.
    libc = ffi.dlopen(None)
    with pytest.raises(missing_symbol_errors(ffi)) as caught:
        getattr(libc, name)
    assert "not found in library" in str(caught.value)


@BOTH_FFIS
def test_an_undeclared_function_is_unknown(ffi):
    libc = ffi.dlopen(None)
    with pytest.raises(AttributeError) as caught:
        getattr(libc, "xc_domain_getinfo")  # deliberately not declared: gone in 4.18
    assert "not found in library" not in str(caught.value)


@BOTH_FFIS
def test_resume_skips_a_real_library_without_it(tmp_path, ffi):
    """libxenguest opened for real (libc here) without xc_domain_resume: the 4.14/4.15 layout,
    whatever cffi raises for the missing symbol."""
    ctrl = FakeXenctrlLib(ffi, hypervisor=(4, 15), with_resume=True)

    def dlopen(ffi_, name):
        if name.startswith("libxenguest"):
            return ffi_.dlopen(None)
        return FakeLoader({"libxenctrl.so.4.15": ctrl})(ffi_, name)
    libraries = load_xen_libraries(sysfs_dir=sysfs(tmp_path, 4, 15), dlopen=dlopen, ffi=ffi)
    XenCtrl.open(libraries=libraries).resume(7, True)
    assert ctrl.resumed == [(7, 1)]


# -- fake libraries ------------------------------------------------------------------------------

class FakeDomain(object):
    def __init__(self, domid, flags, handle_byte):
        self.domid = domid
        self.flags = flags
        self.handle = bytes(bytearray([handle_byte] * 16))


class FakeXenctrlLib(object):
    """libxenctrl of one Xen version; ``stride`` is its sizeof(xc_domaininfo_t)."""

    def __init__(self, ffi, hypervisor=(4, 17), stride=112, domains=None, with_resume=False):
        self.ffi = ffi
        self.hypervisor = hypervisor
        self.stride = stride
        self.domains = domains if domains is not None else [FakeDomain(0, 1 << 5, 0)]
        self.getinfolist_calls = []
        self.fail_open = None
        self.resumed = []
        self.hvm = {}
        if with_resume:
            self.xc_domain_resume = self._resume

    def xc_interface_open(self, logger, dombuild_logger, flags):
        if self.fail_open:
            self.ffi.errno = self.fail_open
            return self.ffi.NULL
        return self.ffi.cast("xc_interface *", 0x1000)

    def xc_interface_close(self, xch):
        return 0

    def xc_version(self, xch, cmd, arg):
        assert cmd == 0 and arg == self.ffi.NULL
        return version_code(self.hypervisor)

    def xc_domain_getinfolist(self, xch, first, max_domains, buf):
        self.getinfolist_calls.append((first, max_domains))
        chosen = [d for d in self.domains if d.domid >= first][:max_domains]
        # like libxc's bounce buffer: max_domains * sizeof bytes come back, filled or not
        self.ffi.memmove(buf, b"\x00" * (max_domains * self.stride), max_domains * self.stride)
        for index, domain in enumerate(chosen):
            entry = self.ffi.cast("xen_dominfo_prefix_t *", buf + index * self.stride)
            entry.domain = domain.domid
            entry.flags = domain.flags
            entry.cpu_time = 5 * 10 ** 9
            entry.tot_pages = 256
            self.ffi.memmove(entry.handle, domain.handle, 16)
        return len(chosen)

    def xc_hvm_param_get(self, xch, domid, param, value):
        if domid not in self.hvm:
            self.ffi.errno = errno.EINVAL
            return -1
        value[0] = self.hvm[domid].get(param, 0)
        return 0

    def xc_domain_shutdown(self, xch, domid, reason):
        self.ffi.errno = errno.ESRCH
        return -1

    def xc_domain_subscribe_for_suspend(self, xch, domid, port):
        return 0

    def _resume(self, xch, domid, fast):
        self.resumed.append((domid, fast))
        return 0


class FakeXenguestLib(object):
    def __init__(self, with_resume=True):
        self.resumed = []
        if with_resume:
            self.xc_domain_resume = self._resume

    def _resume(self, xch, domid, fast):
        self.resumed.append((domid, fast))
        return 0


class FakeLoader(object):
    """dlopen replacement recording every name asked for."""

    def __init__(self, available):
        self.available = available
        self.asked = []

    def __call__(self, ffi, name):
        self.asked.append(name)
        assert name.split(".so")[1], "an unversioned soname was requested: %s" % name
        if name not in self.available:
            raise OSError("%s: cannot open shared object file: No such file or directory" % name)
        return self.available[name]


def sysfs(tmp_path, major, minor):
    directory = tmp_path / "version"
    directory.mkdir()
    (directory / "major").write_text("%s\n" % major)
    (directory / "minor").write_text("%s\n" % minor)
    return str(directory)


# -- soname choice -------------------------------------------------------------------------------

def test_sysfs_version_is_read(tmp_path):
    assert read_hypervisor_version(sysfs(tmp_path, 4, 17)) == (4, 17)
    assert read_hypervisor_version(str(tmp_path / "absent")) is None


def test_exact_soname_from_sysfs(tmp_path):
    lib = FakeXenctrlLib(FFI)
    loader = FakeLoader({"libxenctrl.so.4.17": lib, "libxenctrl.so.4.20": FakeXenctrlLib(FFI)})
    libraries = load_xen_libraries(sysfs_dir=sysfs(tmp_path, 4, 17), dlopen=loader, ffi=FFI)
    assert loader.asked == ["libxenctrl.so.4.17"]
    assert libraries.version == (4, 17) and libraries.detected_from == "sysfs"


def test_sysfs_version_without_its_library_falls_back_to_probing(tmp_path):
    # /sys/hypervisor inside a Xen guest describes the outer hypervisor: not conclusive
    other = FakeXenctrlLib(FFI, hypervisor=(4, 20))
    loader = FakeLoader({"libxenctrl.so.4.20": other})
    libraries = load_xen_libraries(sysfs_dir=sysfs(tmp_path, 4, 11), dlopen=loader, ffi=FFI)
    assert loader.asked[:3] == ["libxenctrl.so.4.11", "libxenctrl.so.4.22", "libxenctrl.so.4.21"]
    assert libraries.version == (4, 20) and libraries.detected_from == "probe"
    assert XenCtrl.open(libraries=libraries).version == (4, 20)  # confirmed by xc_version


def test_missing_library_for_running_xen_is_a_clear_mismatch(tmp_path):
    loader = FakeLoader({"libxenctrl.so.4.20": FakeXenctrlLib(FFI, hypervisor=(4, 17))})
    libraries = load_xen_libraries(sysfs_dir=sysfs(tmp_path, 4, 17), dlopen=loader, ffi=FFI)
    with pytest.raises(XenVersionMismatch) as caught:
        XenCtrl.open(libraries=libraries)
    assert "Xen 4.17" in str(caught.value) and "libxenctrl.so.4.17 is not installed" in str(caught.value)


def test_no_library_at_all_names_the_package_of_the_running_xen(tmp_path):
    with pytest.raises(DependencyError) as caught:
        load_xen_libraries(sysfs_dir=sysfs(tmp_path, 4, 17), dlopen=FakeLoader({}), ffi=FFI)
    assert "libxenctrl.so.4.17" in str(caught.value)
    assert "libxenmisc4.17" in caught.value.install


def test_probe_goes_from_newest_to_oldest(tmp_path):
    loader = FakeLoader({"libxenctrl.so.4.16": FakeXenctrlLib(FFI)})
    libraries = load_xen_libraries(sysfs_dir=str(tmp_path / "none"), dlopen=loader, ffi=FFI, search_dirs=[])
    assert loader.asked == ["libxenctrl.so.4.%d" % minor for minor in range(22, 15, -1)]
    assert libraries.version == (4, 16) and libraries.detected_from == "probe"


def test_probe_tries_installed_libraries_first(tmp_path):
    # Every absent soname costs cffi a find_library() (ldconfig, gcc): try what is there first.
    first, second = tmp_path / "lib1", tmp_path / "lib2"
    first.mkdir()
    second.mkdir()
    (first / "libxenctrl.so.4.16").write_text("")
    (second / "libxenctrl.so.4.19").write_text("")
    (second / "libxenctrl.so.4.9").write_text("")      # not a supported version: ignored
    (second / "libxenctrl.so.4.16.0").write_text("")   # the real file behind the soname link
    loader = FakeLoader({"libxenctrl.so.4.16": FakeXenctrlLib(FFI)})
    libraries = load_xen_libraries(sysfs_dir=str(tmp_path / "none"), dlopen=loader, ffi=FFI,
                                   search_dirs=[str(first), str(tmp_path / "absent"), str(second)])
    assert loader.asked == ["libxenctrl.so.4.19", "libxenctrl.so.4.16"]
    assert libraries.version == (4, 16) and libraries.detected_from == "probe"


def test_library_search_dirs_start_with_ld_library_path():
    dirs = library_search_dirs({"LD_LIBRARY_PATH": "/opt/a::/opt/b"})
    assert dirs[:2] == ["/opt/a", "/opt/b"] and "/usr/lib" in dirs


def test_nothing_found_is_a_dependency_error(tmp_path):
    loader = FakeLoader({})
    with pytest.raises(DependencyError) as caught:
        load_xen_libraries(sysfs_dir=str(tmp_path / "none"), dlopen=loader, ffi=FFI, search_dirs=[])
    assert "libxenctrl.so.4.14" in str(caught.value) and "libxenctrl.so.4.22" in str(caught.value)
    assert len(loader.asked) == 9


def test_open_confirms_version(tmp_path):
    loader = FakeLoader({"libxenctrl.so.4.17": FakeXenctrlLib(FFI, hypervisor=(4, 17))})
    libraries = load_xen_libraries(sysfs_dir=sysfs(tmp_path, 4, 17), dlopen=loader, ffi=FFI)
    xc = XenCtrl.open(libraries=libraries)
    assert xc.version == (4, 17)
    assert xc.xen_version() == (4, 17)


def test_version_mismatch_is_a_clear_error(tmp_path):
    loader = FakeLoader({"libxenctrl.so.4.17": FakeXenctrlLib(FFI, hypervisor=(4, 20))})
    libraries = load_xen_libraries(sysfs_dir=sysfs(tmp_path, 4, 17), dlopen=loader, ffi=FFI)
    with pytest.raises(XenVersionMismatch) as caught:
        XenCtrl.open(libraries=libraries)
    assert "4.20" in str(caught.value) and "libxenctrl.so.4.17" in str(caught.value)


def test_probe_switches_to_the_library_of_the_running_xen(tmp_path):
    newest = FakeXenctrlLib(FFI, hypervisor=(4, 17))
    matching = FakeXenctrlLib(FFI, hypervisor=(4, 17))
    loader = FakeLoader({"libxenctrl.so.4.22": newest, "libxenctrl.so.4.17": matching})
    libraries = load_xen_libraries(sysfs_dir=str(tmp_path / "none"), dlopen=loader, ffi=FFI, search_dirs=[])
    xc = XenCtrl.open(libraries=libraries)
    assert xc.version == (4, 17) and xc.lib is matching


def test_probe_without_matching_library_fails(tmp_path):
    loader = FakeLoader({"libxenctrl.so.4.22": FakeXenctrlLib(FFI, hypervisor=(4, 17))})
    libraries = load_xen_libraries(sysfs_dir=str(tmp_path / "none"), dlopen=loader, ffi=FFI, search_dirs=[])
    with pytest.raises(XenVersionMismatch) as caught:
        XenCtrl.open(libraries=libraries)
    assert "Xen 4.17" in str(caught.value) and "libxenctrl.so.4.17" in str(caught.value)


def test_interface_open_failure_carries_errno(tmp_path):
    lib = FakeXenctrlLib(FFI)
    lib.fail_open = errno.ENOENT
    libraries = load_xen_libraries(sysfs_dir=sysfs(tmp_path, 4, 17),
                                   dlopen=FakeLoader({"libxenctrl.so.4.17": lib}), ffi=FFI)
    with pytest.raises(XenCallError) as caught:
        XenCtrl.open(libraries=libraries)
    assert caught.value.call == "xc_interface_open"
    assert caught.value.errno == errno.ENOENT
    assert "ENOENT" in str(caught.value)


@pytest.mark.parametrize("version,guest_has_it,where", [
    ((4, 17), True, "xenguest"), ((4, 15), False, "xenctrl"), ((4, 14), False, "xenctrl"),
])
def test_resume_looked_up_in_libxenguest_first(tmp_path, version, guest_has_it, where):
    ctrl = FakeXenctrlLib(FFI, hypervisor=version, with_resume=not guest_has_it)
    guest = FakeXenguestLib(with_resume=guest_has_it)
    loader = FakeLoader({"libxenctrl.so.%d.%d" % version: ctrl,
                         "libxenguest.so.%d.%d" % version: guest})
    libraries = load_xen_libraries(sysfs_dir=sysfs(tmp_path, *version), dlopen=loader, ffi=FFI)
    xc = XenCtrl.open(libraries=libraries)
    xc.resume(7, True)
    assert (guest.resumed if where == "xenguest" else ctrl.resumed) == [(7, 1)]
    assert "libxenguest.so.%d.%d" % version in loader.asked


def test_resume_missing_everywhere(tmp_path):
    loader = FakeLoader({"libxenctrl.so.4.17": FakeXenctrlLib(FFI)})
    libraries = load_xen_libraries(sysfs_dir=sysfs(tmp_path, 4, 17), dlopen=loader, ffi=FFI)
    xc = XenCtrl.open(libraries=libraries)
    with pytest.raises(DependencyError) as caught:
        xc.resume(7, True)
    assert "xc_domain_resume" in str(caught.value)


# -- xenctrl queries -----------------------------------------------------------------------------

def open_ctrl(tmp_path, **kwargs):
    lib = FakeXenctrlLib(FFI, **kwargs)
    libraries = load_xen_libraries(sysfs_dir=sysfs(tmp_path, 4, 17),
                                   dlopen=FakeLoader({"libxenctrl.so.4.17": lib}), ffi=FFI)
    return XenCtrl.open(libraries=libraries), lib


def domains(count, start=0):
    return [FakeDomain(domid, (1 << 4) | (0xFF << 16), domid & 0xFF) for domid in range(start, start + count)]


def test_single_domain_query_checks_the_echoed_domid(tmp_path):
    doms = [FakeDomain(0, 0, 0), FakeDomain(5, (1 << 2) | (2 << 16), 0xAB)]
    xc, lib = open_ctrl(tmp_path, domains=doms)
    info = xc.domain_info(5)
    assert info.domid == 5 and info.suspended
    assert info.uuid == "abababab-abab-abab-abab-abababababab"
    assert info.cpu_time == 5 * 10 ** 9 and info.tot_pages == 256
    # <= 4.17 semantics: asking for 3 returns domain 5, which must not be taken for 3
    assert xc.domain_info(3) is None
    assert xc.domain_info(9) is None
    assert all(call[1] == 1 for call in lib.getinfolist_calls)


@pytest.mark.parametrize("stride", [104, 112, 136])
def test_listing_in_chunks_measures_the_entry_size(tmp_path, stride):
    doms = domains(150) + domains(3, start=400)
    xc, lib = open_ctrl(tmp_path, domains=doms, stride=stride)
    listed = xc.list_domains()
    assert [info.domid for info in listed] == [d.domid for d in doms]
    assert xc._entry_stride() == stride
    chunked = [call for call in lib.getinfolist_calls if call[1] > 1]
    assert len(chunked) == 3  # 64 + 64 + 25 entries
    assert chunked[0] == (0, 64) and chunked[1] == (64, 64)


def test_several_domains_in_one_call(tmp_path):
    doms = domains(40) + domains(2, start=300)
    doms[7].flags = (1 << 2) | (2 << 16)
    xc, lib = open_ctrl(tmp_path, domains=doms, stride=112)
    xc._entry_stride()
    lib.getinfolist_calls[:] = []
    infos = xc.domain_infos([7, 9, 30, 12])
    assert sorted(infos) == [7, 9, 12, 30]
    assert infos[7].suspended and not infos[9].suspended and infos[30].domid == 30
    assert lib.getinfolist_calls == [(7, 64)]
    # a gone domain is None; a far-away one is asked for on its own
    lib.getinfolist_calls[:] = []
    infos = xc.domain_infos([5, 301, 999])
    assert infos[999] is None and infos[301].domid == 301
    assert all(call[1] == 1 for call in lib.getinfolist_calls)


@pytest.mark.parametrize("wrong", [104, 136])
def test_a_wrong_entry_size_is_noticed_and_dropped(tmp_path, wrong):
    # Entries read with the wrong size do not come out ascending: list one by one instead.
    doms = domains(10)
    xc, lib = open_ctrl(tmp_path, domains=doms, stride=112)
    xc._stride = wrong
    assert [info.domid for info in xc.list_domains()] == list(range(10))
    assert xc._stride == 0
    xc._stride = wrong
    infos = xc.domain_infos([2, 3, 8])
    assert [infos[d].domid for d in (2, 3, 8)] == [2, 3, 8] and xc._stride == 0
    assert all(call[1] == 1 for call in lib.getinfolist_calls[-3:])


def test_listing_falls_back_to_one_by_one_when_size_unknown(tmp_path):
    doms = domains(5)
    xc, lib = open_ctrl(tmp_path, domains=doms, stride=256)  # fills our whole allocation
    assert [info.domid for info in xc.list_domains()] == [0, 1, 2, 3, 4]
    assert xc._entry_stride() == 0
    assert all(call[1] == 1 for call in lib.getinfolist_calls)


def test_hvm_param_and_failing_calls_carry_errno_and_domid(tmp_path):
    xc, lib = open_ctrl(tmp_path)
    lib.hvm[3] = {0: 24, 14: 0}
    assert xc.hvm_param(3, 0) == 24
    with pytest.raises(XenCallError) as caught:
        xc.hvm_param(4, 0)
    assert caught.value.errno == errno.EINVAL and caught.value.domid == 4
    with pytest.raises(XenCallError) as caught:
        xc.shutdown(4, 2)
    assert caught.value.call == "xc_domain_shutdown" and caught.value.errno == errno.ESRCH
    assert "xc_domain_shutdown(domid 4) failed: ESRCH" in str(caught.value)


# -- xenevtchn -----------------------------------------------------------------------------------

class FakeEvtchnLib(object):
    def __init__(self, ffi):
        self.ffi = ffi
        self.read_fd, self.write_fd = os.pipe()
        self.queue = []
        self.pending_calls = 0

    def xenevtchn_open(self, logger, flags):
        return self.ffi.cast("xenevtchn_handle *", 0x2000)

    def xenevtchn_fd(self, handle):
        return self.read_fd

    def xenevtchn_close(self, handle):
        os.close(self.read_fd)
        os.close(self.write_fd)
        return 0

    def xenevtchn_bind_interdomain(self, handle, domid, remote):
        if remote != 7:
            self.ffi.errno = errno.EINVAL
            return -1
        self.fire(41)
        return 41

    def fire(self, port):
        self.queue.append(port)
        os.write(self.write_fd, b"p")

    def xenevtchn_pending(self, handle):
        self.pending_calls += 1
        os.read(self.read_fd, 1)
        return self.queue.pop(0)

    def xenevtchn_unmask(self, handle, port):
        return 0

    def xenevtchn_notify(self, handle, port):
        self.ffi.errno = errno.EBADF
        return -1

    def xenevtchn_unbind(self, handle, port):
        return 0


class EvtchnLibraries(object):
    def __init__(self, lib):
        self.ffi = FFI
        self.xenevtchn = lib


def test_evtchn_wrapper_is_nonblocking_and_polls_before_reading():
    lib = FakeEvtchnLib(FFI)
    evtchn = XenEvtchn(EvtchnLibraries(lib))
    try:
        import fcntl
        assert fcntl.fcntl(evtchn.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK
        assert evtchn.pending() is None
        assert lib.pending_calls == 0  # never read without the fd being readable
        assert evtchn.bind_interdomain(3, 7) == 41
        assert evtchn.pending() == 41
        assert evtchn.pending() is None
        with pytest.raises(XenCallError) as caught:
            evtchn.bind_interdomain(3, 99)
        assert caught.value.errno == errno.EINVAL and caught.value.domid == 3
        assert "guest port 99" in str(caught.value)
        with pytest.raises(XenCallError) as caught:
            evtchn.notify(41, domid=3)
        assert caught.value.call == "xenevtchn_notify" and caught.value.errno == errno.EBADF
    finally:
        evtchn.close()


def test_evtchn_soname_is_versioned():
    assert XENEVTCHN_SONAME == "libxenevtchn.so.1"
