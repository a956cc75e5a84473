"""Runs IN a test-bed dom0 (python3 - DOMID < this file): one raw xenstore-protocol suspend
and cooperative resume of a test guest, independent of the collection, to prove the bed is
sound. Prints one JSON object with what it saw and how long each step took.

Suspend: ~/control/shutdown = "suspend", wait for the guest's acknowledgement and for the
hypervisor's shutdown flag with reason suspend. Resume: xc_domain_resume(fast=1) from
libxenguest, then XS_RESUME. The heartbeat the guest writes to ~/data/heartbeat must hold
still while suspended and advance again after the resume.
"""
import json
import sys
import time

import cffi
from pyxs import Client
from pyxs._internal import Op

DOMINF_SHUTDOWN = 1 << 2
SHUTDOWN_SUSPEND = 2

domid = int(sys.argv[1])
home = "/local/domain/%d" % domid
with open("/sys/hypervisor/version/major") as f, open("/sys/hypervisor/version/minor") as g:
    version = "%s.%s" % (f.read().strip(), g.read().strip())

ffi = cffi.FFI()
ffi.cdef("""
typedef struct { uint16_t domain; uint16_t pad1; uint32_t flags; uint64_t tot_pages, max_pages,
  outstanding_pages, shr_pages, paged_pages, shared_info_frame, cpu_time; uint32_t nr_online_vcpus,
  max_vcpu_id, ssidref; uint8_t handle[16]; uint32_t cpupool; } dominfo_prefix_t;
typedef struct xc_interface_core xc_interface;
xc_interface *xc_interface_open(void *logger, void *dombuild_logger, unsigned open_flags);
int xc_domain_getinfolist(xc_interface *xch, uint32_t first_domain, unsigned int max_domains, void *info);
int xc_domain_resume(xc_interface *xch, uint32_t domid, int fast);
""")
xenctrl = ffi.dlopen("libxenctrl.so." + version)
xenguest = ffi.dlopen("libxenguest.so." + version)
xch = xenctrl.xc_interface_open(ffi.NULL, ffi.NULL, 0)
info_buffer = ffi.new("char[]", 512)  # larger than any version's struct: Xen writes its own size


def flags():
    n = xenctrl.xc_domain_getinfolist(xch, domid, 1, info_buffer)
    info = ffi.cast("dominfo_prefix_t *", info_buffer)
    if n != 1 or info.domain != domid:
        raise SystemExit("domain %d is gone" % domid)
    return info.flags


def suspended(f):
    return bool(f & DOMINF_SHUTDOWN) and (f >> 16) & 0xFF == SHUTDOWN_SUSPEND


def heartbeat(client):
    return int(client.read((home + "/data/heartbeat").encode()))


def wait(predicate, what, timeout=30.0, interval=0.002):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for " + what)
        time.sleep(interval)
    return time.monotonic()


with Client() as client:
    result = {"domid": domid, "xen": version, "flags_before": flags()}
    result["heartbeat_before"] = heartbeat(client)
    start = time.monotonic()
    client.write((home + "/control/shutdown").encode(), b"suspend")
    acked = wait(lambda: client.read((home + "/control/shutdown").encode(), b"") != b"suspend", "ack")
    down = wait(lambda: suspended(flags()), "shutdown(suspend)")
    result.update(ack_s=acked - start, suspended_s=down - start, flags_suspended=flags())

    result["heartbeat_suspended"] = heartbeat(client)
    time.sleep(2.0)
    result["heartbeat_suspended_later"] = heartbeat(client)

    start = time.monotonic()
    rc = xenguest.xc_domain_resume(xch, domid, 1)
    result["xc_domain_resume_rc"] = rc
    result["xc_domain_resume_errno"] = ffi.errno if rc else 0
    client.ack(Op.RESUME, str(domid).encode() + b"\x00")
    running = wait(lambda: not flags() & DOMINF_SHUTDOWN, "running again", timeout=10)
    result.update(resume_s=running - start, flags_resumed=flags())
    hb = result["heartbeat_suspended_later"]
    beating = wait(lambda: heartbeat(client) > hb, "heartbeat after resume", timeout=15, interval=0.05)
    result["heartbeat_resumed_s"] = beating - start
    result["heartbeat_after"] = heartbeat(client)
print(json.dumps(result))
