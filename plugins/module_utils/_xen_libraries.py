# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: cffi declarations and the choice of Xen sonames.

cffi runs in ABI mode (``ffi.dlopen``) because nothing compiled can travel through AnsiballZ.
Only exact sonames are opened: the unversioned ``libxenctrl.so`` ships with libxen-dev only,
and libxenctrl must match the running hypervisor (domctl/sysctl are interface-versioned and
Xen answers EACCES to a mismatched library).
"""

import os
import re
import sysconfig

try:
    import cffi
    HAS_CFFI = True
    CFFI_IMPORT_ERROR = None
except ImportError as exc:  # reported by the module base with missing_required_lib()
    cffi = None
    HAS_CFFI = False
    CFFI_IMPORT_ERROR = exc

try:
    # The declarations below, prebuilt (tests/tools/make_xen_ffi.py): no pycparser import and
    # no C parse per module call (25 ms on a fast host, far more in a dom0 under emulation).
    from ansible_collections.xen.suspend.plugins.module_utils._xen_ffi import ffi as PREBUILT_FFI
except ImportError:  # no cffi, or a cffi too old for the prebuilt format: make_ffi parses
    PREBUILT_FFI = None

from ansible_collections.xen.suspend.plugins.module_utils._errors import DependencyError

# Only the 96-byte prefix of xen_domctl_getdomaininfo is stable (4.16 inserted gpaddr_bits
# before arch_config, and arch_config differs per architecture), so nothing past cpupool is
# declared and buffers are over-allocated: libxc and Xen write their own sizeof per entry.
DOMINFO_PREFIX_CDEF = """
typedef struct {
    uint16_t domain;
    uint16_t pad1;
    uint32_t flags;
    uint64_t tot_pages;
    uint64_t max_pages;
    uint64_t outstanding_pages;
    uint64_t shr_pages;
    uint64_t paged_pages;
    uint64_t shared_info_frame;
    uint64_t cpu_time;
    uint32_t nr_online_vcpus;
    uint32_t max_vcpu_id;
    uint32_t ssidref;
    uint8_t handle[16];
    uint32_t cpupool;
} xen_dominfo_prefix_t;
"""

DOMINFO_PREFIX_SIZE = 96
# Bytes reserved per entry: comfortably above every known sizeof (104/112 on x86_64 and the
# larger Arm layouts), since an undersized buffer would be a heap overflow inside libxc.
DOMINFO_ENTRY_ALLOCATION = 256

XENCTRL_CDEF = """
typedef struct xc_interface_core xc_interface;
xc_interface *xc_interface_open(void *logger, void *dombuild_logger, unsigned int open_flags);
int xc_interface_close(xc_interface *xch);
int xc_version(xc_interface *xch, int cmd, void *arg);
int xc_domain_getinfolist(xc_interface *xch, uint32_t first_domain, unsigned int max_domains,
                          void *info);
int xc_domain_pause(xc_interface *xch, uint32_t domid);
int xc_domain_unpause(xc_interface *xch, uint32_t domid);
int xc_domain_shutdown(xc_interface *xch, uint32_t domid, int reason);
int xc_domain_subscribe_for_suspend(xc_interface *xch, uint32_t domid, uint32_t port);
int xc_hvm_param_get(xc_interface *handle, uint32_t dom, uint32_t param, uint64_t *value);
int xc_domain_resume(xc_interface *xch, uint32_t domid, int fast);
"""

XENEVTCHN_CDEF = """
typedef struct xenevtchn_handle xenevtchn_handle;
xenevtchn_handle *xenevtchn_open(void *logger, unsigned int open_flags);
int xenevtchn_close(xenevtchn_handle *xce);
int xenevtchn_fd(xenevtchn_handle *xce);
int xenevtchn_notify(xenevtchn_handle *xce, uint32_t port);
int xenevtchn_bind_interdomain(xenevtchn_handle *xce, uint32_t domid, uint32_t remote_port);
int xenevtchn_unbind(xenevtchn_handle *xce, uint32_t port);
int xenevtchn_pending(xenevtchn_handle *xce);
int xenevtchn_unmask(xenevtchn_handle *xce, uint32_t port);
"""

XENEVTCHN_SONAME = "libxenevtchn.so.1"

# Probed newest first when /sys/hypervisor does not say which Xen is running.
PROBE_VERSIONS = tuple((4, minor) for minor in range(22, 13, -1))

SYSFS_VERSION_DIR = "/sys/hypervisor/version"

# Where the dynamic loader looks besides LD_LIBRARY_PATH and ld.so.conf (Debian installs
# libxenmisc into the multiarch directory).
SYSTEM_LIBRARY_DIRS = ("/lib", "/usr/lib", "/lib64", "/usr/lib64", "/usr/local/lib")
_XENCTRL_FILE_RE = re.compile(r"^libxenctrl\.so\.(\d+)\.(\d+)\Z")

CFFI_INSTALL_HINT = "python3-cffi (Debian/Ubuntu) or 'pip install cffi'"


def make_ffi(prebuilt=True):
    """One FFI holding every declaration, so xc_interface pointers pass between libraries: the
    prebuilt one when cffi can load it, else parsed here from the declarations above."""
    if not HAS_CFFI:
        raise DependencyError("the Python library cffi is not installed", library="cffi",
                              install=CFFI_INSTALL_HINT, python_library=True)
    if prebuilt and PREBUILT_FFI is not None:
        return PREBUILT_FFI
    ffi = cffi.FFI()
    ffi.cdef(DOMINFO_PREFIX_CDEF)
    ffi.cdef(XENCTRL_CDEF)
    ffi.cdef(XENEVTCHN_CDEF)
    return ffi


def xenctrl_soname(version):
    return "libxenctrl.so.%d.%d" % version


def xenguest_soname(version):
    return "libxenguest.so.%d.%d" % version


def package_hint(version):
    """Where the versioned libraries come from on Debian and Ubuntu."""
    return "libxenmisc%d.%d (Debian/Ubuntu; the Xen tools package of the running hypervisor)" % version


def read_hypervisor_version(sysfs_dir=SYSFS_VERSION_DIR):
    """(major, minor) from the Linux xen sysfs, or None when it is not there or unreadable."""
    try:
        with open(os.path.join(sysfs_dir, "major")) as handle:
            major = int(handle.read().strip())
        with open(os.path.join(sysfs_dir, "minor")) as handle:
            minor = int(handle.read().strip())
    except (IOError, OSError, ValueError):
        return None
    if major < 0 or minor < 0:
        return None
    return (major, minor)


def version_code(version):
    """What xc_version(XENVER_version) returns for (major, minor)."""
    return (version[0] << 16) | version[1]


def version_from_code(code):
    return ((code >> 16) & 0xFFFF, code & 0xFFFF)


class XenLibraries(object):
    """The opened cffi libraries; ``version`` is the (major, minor) the sonames belong to."""

    def __init__(self, ffi, xenctrl, version, xenctrl_name, dlopen, detected_from):
        self.ffi = ffi
        self.xenctrl = xenctrl
        self.version = version
        self.xenctrl_name = xenctrl_name
        self.detected_from = detected_from
        self._dlopen = dlopen
        self._xenguest = None
        self._xenguest_error = None
        self._xenevtchn = None

    def _open(self, name):
        return self._dlopen(self.ffi, name)

    @property
    def xenguest(self):
        if self._xenguest is None and self._xenguest_error is None:
            try:
                self._xenguest = self._open(xenguest_soname(self.version))
            except OSError as exc:
                self._xenguest_error = exc
        return self._xenguest

    @property
    def xenevtchn(self):
        if self._xenevtchn is None:
            try:
                self._xenevtchn = self._open(XENEVTCHN_SONAME)
            except OSError as exc:
                raise DependencyError(
                    "cannot load %s: %s" % (XENEVTCHN_SONAME, exc), library=XENEVTCHN_SONAME,
                    install="libxenevtchn1 (Debian/Ubuntu)")
        return self._xenevtchn

    def resume_function(self):
        """xc_domain_resume: in libxenguest since 4.16, in libxenctrl for 4.14 and 4.15."""
        for lib in (self.xenguest, self.xenctrl):
            if lib is None:
                continue
            try:
                return getattr(lib, "xc_domain_resume")
            except (AttributeError, getattr(self.ffi, "error", AttributeError)):
                # (a prebuilt FFI says "symbol not found" with ffi.error, a parsed one with
                # AttributeError)
                continue
        detail = ""
        if self._xenguest_error is not None:
            detail = " (%s)" % self._xenguest_error
        raise DependencyError(
            "xc_domain_resume is in neither %s nor %s%s"
            % (xenguest_soname(self.version), self.xenctrl_name, detail),
            library=xenguest_soname(self.version), install=package_hint(self.version))

    def with_version(self, version):
        """Libraries for another Xen version (used when probing picked the wrong one)."""
        return load_xen_libraries(versions=[version], dlopen=self._dlopen, ffi=self.ffi,
                                  detected_from="xc_version")


def _default_dlopen(ffi, name):
    return ffi.dlopen(name)


def library_search_dirs(environ=None):
    """LD_LIBRARY_PATH's directories, then the multiarch and plain system library directories."""
    environ = os.environ if environ is None else environ
    dirs = [d for d in (environ.get("LD_LIBRARY_PATH") or "").split(":") if d]
    multiarch = sysconfig.get_config_var("MULTIARCH")
    if multiarch:
        dirs += ["/lib/" + multiarch, "/usr/lib/" + multiarch]
    return dirs + list(SYSTEM_LIBRARY_DIRS)


def installed_versions(dirs):
    """Versions whose libxenctrl.so.X.Y is present in ``dirs``, newest first.

    Only an ordering hint for probing: a failed ffi.dlopen() of a bare soname makes cffi fall
    back to ctypes.util.find_library(), which spawns ldconfig and a compiler (tens of ms per
    absent version); dlopen() still decides what actually loads."""
    found = set()
    for directory in dirs:
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            match = _XENCTRL_FILE_RE.match(name)
            if match:
                found.add((int(match.group(1)), int(match.group(2))))
    return sorted(found, reverse=True)


def probe_order(detected, installed):
    """The sysfs version first, then installed ones, then every other supported version."""
    order = [detected] if detected else []
    for version in [v for v in installed if v in PROBE_VERSIONS] + list(PROBE_VERSIONS):
        if version not in order:
            order.append(version)
    return order


def load_xen_libraries(sysfs_dir=SYSFS_VERSION_DIR, versions=None, dlopen=None, ffi=None,
                       detected_from=None, search_dirs=None):
    """Open the libxenctrl matching the hypervisor.

    The version comes from ``versions`` (tests, or a second attempt), else from sysfs, else
    from probing: versions whose library is installed first (probe_order), then 4.22 down to
    4.14. When sysfs names a version whose library cannot be
    opened the others are probed too: /sys/hypervisor also exists inside a Xen guest, where
    it describes the outer hypervisor, not the one these libraries talk to. Either way the
    caller confirms the version with xc_version once an interface is open
    (_xenctrl.XenCtrl.open) and fails on a mismatch.
    """
    if ffi is None:
        ffi = make_ffi()
    if dlopen is None:
        dlopen = _default_dlopen
    detected = None
    if versions is None:
        detected = read_hypervisor_version(sysfs_dir)
        installed = []
        if detected is None:
            installed = installed_versions(library_search_dirs() if search_dirs is None else search_dirs)
        versions = probe_order(detected, installed)
    errors = []
    for version in versions:
        name = xenctrl_soname(version)
        try:
            lib = dlopen(ffi, name)
        except OSError as exc:
            errors.append("%s: %s" % (name, exc))
            continue
        source = detected_from or ("sysfs" if version == detected else "probe")
        return XenLibraries(ffi, lib, tuple(version), name, dlopen, source)
    if detected is not None or len(versions) == 1:
        wanted = detected or versions[0]
        message = ("cannot load %s for the running Xen %d.%d, nor any other libxenctrl (%s)"
                   % (xenctrl_soname(wanted), wanted[0], wanted[1], errors[0]))
        install = package_hint(wanted)
    else:
        message = ("no libxenctrl found: tried %s (is this a Xen dom0 with the Xen tools installed?)"
                   % ", ".join(xenctrl_soname(v) for v in versions))
        install = "the Xen tools libraries for the running hypervisor, e.g. libxenmisc4.17 on Debian 12"
    raise DependencyError(message, library="libxenctrl", install=install)
