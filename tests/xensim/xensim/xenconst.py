"""Constants and binary layouts from Xen's public headers (Xen 4.17, x86_64).

Sources: xen/include/public/{sched.h,domctl.h,hvm/params.h,version.h,xen.h}.
"""

import struct

XEN_VERSION = (4, 17)
XEN_EXTRAVERSION = ".7-xensim"
XEN_CAPABILITIES = "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64"

# XENVER_* (public/version.h)
XENVER_version = 0
XENVER_extraversion = 1
XENVER_capabilities = 3

# SHUTDOWN_* (public/sched.h)
SHUTDOWN_poweroff = 0
SHUTDOWN_reboot = 1
SHUTDOWN_suspend = 2
SHUTDOWN_crash = 3
SHUTDOWN_watchdog = 4
SHUTDOWN_soft_reset = 5
SHUTDOWN_MAX = 5
SHUTDOWN_CODE_INVALID = None  # ~0u in Xen; reported as 255 in the flags byte

SHUTDOWN_NAMES = {
    SHUTDOWN_poweroff: "poweroff",
    SHUTDOWN_reboot: "reboot",
    SHUTDOWN_suspend: "suspend",
    SHUTDOWN_crash: "crash",
    SHUTDOWN_watchdog: "watchdog",
    SHUTDOWN_soft_reset: "soft_reset",
}

# XEN_DOMINF_* bits (public/domctl.h)
XEN_DOMINF_dying = 1 << 0
XEN_DOMINF_hvm_guest = 1 << 1
XEN_DOMINF_shutdown = 1 << 2
XEN_DOMINF_paused = 1 << 3
XEN_DOMINF_blocked = 1 << 4
XEN_DOMINF_running = 1 << 5
XEN_DOMINF_debugged = 1 << 6
XEN_DOMINF_xs_domain = 1 << 7
XEN_DOMINF_hap = 1 << 8
XEN_DOMINF_shutdownshift = 16
XEN_DOMINF_shutdownmask = 255

# HVM params (public/hvm/params.h)
HVM_PARAM_CALLBACK_IRQ = 0
HVM_PARAM_STORE_PFN = 1
HVM_PARAM_STORE_EVTCHN = 2
HVM_PARAM_ACPI_S_STATE = 14
HVM_NR_PARAMS = 39

# x86 arch_config.emulation_flags as libxl sets them (libxl_x86.c@4.17)
EMU_FLAGS = {"pv": 0x0, "pvh": 0x1, "hvm": 0x3FF}

# VIRQs (public/xen.h)
VIRQ_DOM_EXC = 3

DOMID_FIRST_RESERVED = 0x7FF0

# 2-level event channel ABI on 64-bit: 64 * 64 ports.
EVTCHN_2L_NR_CHANNELS = 4096

# struct xen_domctl_getdomaininfo, Xen 4.16..4.22 on x86_64: 112 bytes.
#   0 domain u16, 2 pad1 u16, 4 flags u32,
#   8 tot_pages, max_pages, outstanding_pages, shr_pages, paged_pages,
#     shared_info_frame, cpu_time (7 x u64),
#  64 nr_online_vcpus u32, 68 max_vcpu_id u32, 72 ssidref u32,
#  76 handle u8[16], 92 cpupool u32, 96 gpaddr_bits u8, 97 pad2[7],
# 104 arch_config { u32 emulation_flags; u32 misc_flags; }
DOMAININFO = struct.Struct("=HHI7QIII16sIB7xII")
assert DOMAININFO.size == 112


def pack_domaininfo(domid, flags, tot_pages, max_pages, shared_info_frame, cpu_time,
                    nr_online_vcpus, max_vcpu_id, handle, emulation_flags, gpaddr_bits=52):
    return DOMAININFO.pack(
        domid, 0, flags,
        tot_pages, max_pages, 0, 0, 0, shared_info_frame, cpu_time,
        nr_online_vcpus, max_vcpu_id, 0, handle, 0, gpaddr_bits,
        emulation_flags, 0)


def unpack_domaininfo(buf, offset=0):
    f = DOMAININFO.unpack_from(buf, offset)
    return {
        "domain": f[0], "flags": f[2], "tot_pages": f[3], "max_pages": f[4],
        "shared_info_frame": f[8], "cpu_time": f[9], "nr_online_vcpus": f[10],
        "max_vcpu_id": f[11], "ssidref": f[12], "handle": f[13], "cpupool": f[14],
        "gpaddr_bits": f[15], "emulation_flags": f[16], "misc_flags": f[17],
    }
