"""The C shim libraries: sonames and ABI, loaded exactly as production code
loads them (cffi ABI mode, ``ffi.dlopen("libxenctrl.so.4.17")``, found
through LD_LIBRARY_PATH in a fresh process)."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid

import pytest

from xensim_testlib import CDEF, LIBDIR

FLEET = {"quiesce_ms": 50, "jitter_ms": 0, "heartbeat_ms": 0,
         "guests": [{"behaviour": "linux-pv", "count": 2},   # 1, 2
                    {"behaviour": "xenlinux"},                # 3
                    {"behaviour": "hvm-pv", "vcpus": 2},      # 4
                    {"behaviour": "linux-pv"}]}               # 5


OPEN = """
ctrl = ffi.dlopen("libxenctrl.so.4.17")
guest = ffi.dlopen("libxenguest.so.4.17")
ev = ffi.dlopen("libxenevtchn.so.1")
xch = ctrl.xc_interface_open(ffi.NULL, ffi.NULL, 0)
assert xch != ffi.NULL
buf = ffi.new("char[]", 256 * 64)
out = {}
def info(domid):
    n = ctrl.xc_domain_getinfolist(xch, domid, 1, buf)
    e = ffi.cast("dominfo_prefix_t *", buf)
    if n != 1 or e.domain != domid:
        return None
    return {"flags": e.flags, "shutdown": bool(e.flags & 4), "reason": (e.flags >> 16) & 255}
def call(rc):
    return [rc, ffi.errno if rc < 0 else 0]
"""


def run_script(sim, body, env_extra=None, clear_sim_env=False, prelude=True):
    script = "import cffi, json, os, select, sys\nffi = cffi.FFI()\nffi.cdef(%r)\n" % CDEF
    if prelude:
        script += OPEN
    script += textwrap.dedent(body)
    env = sim.subprocess_env()
    env["LD_LIBRARY_PATH"] = sim.env["LD_LIBRARY_PATH"]
    if clear_sim_env:
        for k in ("XENSIM_SOCKET", "XENSTORED_PATH"):
            env.pop(k, None)
    env.update(env_extra or {})
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1]), r.stderr




@pytest.mark.skipif(shutil.which("readelf") is None, reason="readelf not installed")
def test_sonames_and_needed():
    def dyn(name):
        return subprocess.run(["readelf", "-d", os.path.join(LIBDIR, name)],
                              capture_output=True, text=True, check=True).stdout
    assert "Library soname: [libxenctrl.so.4.17]" in dyn("libxenctrl.so.4.17")
    assert "Library soname: [libxenevtchn.so.1]" in dyn("libxenevtchn.so.1")
    g = dyn("libxenguest.so.4.17")
    assert "Library soname: [libxenguest.so.4.17]" in g
    assert "Shared library: [libxenctrl.so.4.17]" in g
    assert "Shared library: [libxenevtchn.so.1]" in g
    # only the 4.17 sonames exist, so a 4.22 -> 4.14 probe finds exactly one
    names = os.listdir(LIBDIR)
    assert sorted(n for n in names if n.startswith("libxenctrl.so.4.")) == \
        ["libxenctrl.so.4.17", "libxenctrl.so.4.17.0"]
    syms = subprocess.run(["readelf", "--dyn-syms", "-W", os.path.join(LIBDIR, "libxenguest.so.4.17")],
                          capture_output=True, text=True, check=True).stdout
    assert "xc_domain_resume@@VERS_4.17.0" in syms
    assert "xc_domain_getinfo_single" not in subprocess.run(
        ["readelf", "--dyn-syms", "-W", os.path.join(LIBDIR, "libxenctrl.so.4.17")],
        capture_output=True, text=True, check=True).stdout


def test_version_probe_and_getinfolist_layout(module_sim):
    res, _ = run_script(module_sim, """
    for minor in range(22, 13, -1):
        try:
            ffi.dlopen("libxenctrl.so.4.%d" % minor)
            out["found"] = minor
            break
        except OSError:
            pass
    out["version"] = ctrl.xc_version(xch, 0, ffi.NULL)
    ev_buf = ffi.new("char[16]")
    out["extraversion"] = [ctrl.xc_version(xch, 1, ev_buf), ffi.string(ev_buf).decode()]
    out["bad_cmd"] = call(ctrl.xc_version(xch, 77, ffi.NULL))
    # fill the buffer with a canary to check the per-entry size (112 bytes)
    big = ffi.new("char[]", 112 * 8 + 16)
    ffi.memmove(big, b"\\xaa" * (112 * 8 + 16), 112 * 8 + 16)
    n = ctrl.xc_domain_getinfolist(xch, 0, 3, big)
    raw = bytes(ffi.buffer(big))
    out["n3"] = n
    out["canary"] = raw[112 * 3:112 * 3 + 16].hex()
    out["entries"] = []
    for i in range(n):
        e = raw[112 * i:112 * (i + 1)]
        out["entries"].append(e.hex())
    out["all"] = ctrl.xc_domain_getinfolist(xch, 0, 1000, buf)
    out["from4"] = [ffi.cast("dominfo_prefix_t *", buf).domain, ctrl.xc_domain_getinfolist(xch, 4, 1, buf)]
    out["past_end"] = ctrl.xc_domain_getinfolist(xch, 1000, 4, buf)
    print(json.dumps(out))
    """)
    assert res["found"] == 17
    assert res["version"] == 0x40011
    assert res["extraversion"][0] == 0 and res["extraversion"][1].startswith(".")
    assert res["bad_cmd"][0] == -1 and res["bad_cmd"][1] != 0
    assert res["n3"] == 3
    assert res["canary"] == "aa" * 16          # nothing written past 3 * 112 bytes
    import struct
    doms = {d["domid"]: d for d in module_sim.domains()}
    for hexe in res["entries"]:
        e = bytes.fromhex(hexe)
        domid, pad1, flags = struct.unpack_from("=HHI", e, 0)
        cpu_time, = struct.unpack_from("=Q", e, 56)
        vcpus, max_vcpu_id = struct.unpack_from("=II", e, 64)
        handle = e[76:92]
        emu, = struct.unpack_from("=I", e, 104)
        assert pad1 == 0
        assert uuid.UUID(bytes=handle) == uuid.UUID(doms[domid]["uuid"])
        assert flags == doms[domid]["dominf_flags"] or domid == 0
        assert max_vcpu_id == vcpus - 1
        if domid:
            assert (flags >> 16) & 0xFF == 255 and not flags & 4
    assert res["all"] == len(doms)
    assert res["from4"][1] == 1
    assert res["past_end"] == 0


def test_domain_control_calls(module_sim):
    res, stderr = run_script(module_sim, """
    out["hvm4"] = ffi.cast("dominfo_prefix_t *", buf).flags if ctrl.xc_domain_getinfolist(xch, 4, 1, buf) else 0
    v = ffi.new("uint64_t *")
    out["cb_pv"] = call(ctrl.xc_hvm_param_get(xch, 1, 0, v))
    out["cb_hvm"] = [ctrl.xc_hvm_param_get(xch, 4, 0, v), v[0]]
    out["s_state"] = [ctrl.xc_hvm_param_get(xch, 4, 14, v), v[0]]
    out["param_range"] = call(ctrl.xc_hvm_param_get(xch, 4, 1000, v))
    out["nosuch"] = call(ctrl.xc_domain_pause(xch, 999))
    out["pause_dom0"] = call(ctrl.xc_domain_pause(xch, 0))
    out["pause"] = call(ctrl.xc_domain_pause(xch, 5))
    out["paused_flag"] = bool(info(5)["flags"] & 8)
    out["unpause"] = call(ctrl.xc_domain_unpause(xch, 5))
    out["unpause_again"] = call(ctrl.xc_domain_unpause(xch, 5))
    out["resume_running"] = call(guest.xc_domain_resume(xch, 5, 1))
    out["bad_reason"] = call(ctrl.xc_domain_shutdown(xch, 5, 9))
    out["shutdown"] = call(ctrl.xc_domain_shutdown(xch, 5, 2))
    out["after_shutdown"] = info(5)
    out["second_code"] = [ctrl.xc_domain_shutdown(xch, 5, 0), info(5)["reason"]]  # first wins
    out["resume"] = call(guest.xc_domain_resume(xch, 5, 1))
    out["after_resume"] = info(5)
    out["resume_nosuch"] = call(guest.xc_domain_resume(xch, 999, 1))
    out["close"] = ctrl.xc_interface_close(xch)
    print(json.dumps(out))
    """)
    import errno
    assert res["hvm4"] & 2
    assert res["cb_pv"] == [-1, errno.EINVAL]
    assert res["cb_hvm"][0] == 0 and res["cb_hvm"][1] != 0
    assert res["s_state"] == [0, 0]
    assert res["param_range"] == [-1, errno.EINVAL]
    assert res["nosuch"] == [-1, errno.ESRCH]
    assert res["pause_dom0"] == [-1, errno.EINVAL]
    assert res["pause"] == [0, 0] and res["paused_flag"]
    assert res["unpause"] == [0, 0]
    assert res["unpause_again"] == [-1, errno.EINVAL]
    assert res["resume_running"] == [-1, errno.EINVAL]
    assert "Dom 5 not suspended" in stderr
    assert res["bad_reason"] == [-1, errno.EINVAL]
    assert res["shutdown"] == [0, 0]
    assert res["after_shutdown"]["shutdown"] and res["after_shutdown"]["reason"] == 2
    assert res["second_code"] == [0, 2]
    assert res["resume"] == [0, 0]
    assert not res["after_resume"]["shutdown"] and res["after_resume"]["reason"] == 255
    assert res["resume_nosuch"] == [-1, errno.ESRCH]
    assert res["close"] == 0


def test_evtchn_bind_notify_poll(module_sim):
    port = int(module_sim.dom(3)["guest_port"])
    res, _ = run_script(module_sim, """
    port = %d
    x = ev.xenevtchn_open(ffi.NULL, 0)
    fd = ev.xenevtchn_fd(x)
    out["fd_ok"] = fd >= 0
    out["idle_readable"] = bool(select.select([fd], [], [], 0.05)[0])
    out["bad_bind"] = call(ev.xenevtchn_bind_interdomain(x, 3, 4000))
    out["nosuch_dom"] = call(ev.xenevtchn_bind_interdomain(x, 999, port))
    local = ev.xenevtchn_bind_interdomain(x, 3, port)
    out["local"] = local
    out["again"] = call(ev.xenevtchn_bind_interdomain(x, 3, port))   # no longer unbound
    # the new local port is pending straight away
    out["initial_readable"] = bool(select.select([fd], [], [], 1)[0])
    out["initial_pending"] = ev.xenevtchn_pending(x)
    ev.xenevtchn_unmask(x, local)
    out["sub"] = ctrl.xc_domain_subscribe_for_suspend(xch, 3, port)
    out["foreign_notify"] = call(ev.xenevtchn_notify(x, local + 100))
    out["notify"] = ev.xenevtchn_notify(x, local)
    out["suspend_readable"] = bool(select.select([fd], [], [], 3)[0])
    out["suspend_pending"] = ev.xenevtchn_pending(x)
    out["dominfo"] = info(3)
    # non-blocking fd: nothing pending -> EAGAIN
    import fcntl
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
    out["nonblock"] = call(ev.xenevtchn_pending(x))
    ev.xenevtchn_unmask(x, local)
    out["unsub"] = ctrl.xc_domain_subscribe_for_suspend(xch, 3, 0)
    out["resume"] = guest.xc_domain_resume(xch, 3, 1)
    out["unbind"] = ev.xenevtchn_unbind(x, local)
    out["unbind_again"] = call(ev.xenevtchn_unbind(x, local))
    out["rebind"] = ev.xenevtchn_bind_interdomain(x, 3, port) > 0   # unbound again after unbind
    unb = ev.xenevtchn_bind_unbound_port(x, 3)
    out["unbound"] = unb > 0
    ev.xenevtchn_close(x)
    print(json.dumps(out))
    """ % port)
    import errno
    assert res["fd_ok"] and not res["idle_readable"]
    assert res["bad_bind"] == [-1, errno.EINVAL]
    assert res["nosuch_dom"] == [-1, errno.ESRCH]
    assert res["again"] == [-1, errno.EINVAL]
    assert res["initial_readable"] and res["initial_pending"] == res["local"]
    assert res["sub"] == 0
    assert res["foreign_notify"] == [-1, errno.ENOTCONN]
    assert res["notify"] == 0
    assert res["suspend_readable"] and res["suspend_pending"] == res["local"]
    assert res["dominfo"]["shutdown"] and res["dominfo"]["reason"] == 2
    assert res["nonblock"] == [-1, errno.EAGAIN]
    assert res["unsub"] == 0 and res["resume"] == 0
    assert res["unbind"] == 0 and res["unbind_again"] == [-1, errno.ENOTCONN]
    assert res["rebind"] and res["unbound"]
    d = module_sim.dom(3)
    assert d["state"] == "running" and d["last_resume"] == "cancelled"
    assert d["suspend_evtchn"] == 0


def test_libxenguest_suspend_evtchn_helpers_and_lock(module_sim):
    port = int(module_sim.dom(3)["guest_port"])
    body = """
    port = %d
    x = ev.xenevtchn_open(ffi.NULL, 0)
    lockfd = ffi.new("int *", -1)
    local = guest.xc_suspend_evtchn_init_exclusive(xch, x, 3, port, lockfd)
    out["init"] = [local, ffi.errno if local < 0 else 0, lockfd[0]]
    out["lockfile"] = os.path.exists(os.path.join(os.environ["XENSIM_RUN_DIR"], "suspend-evtchn-3.lock"))
    if local > 0:
        out["drained"] = not select.select([ev.xenevtchn_fd(x)], [], [], 0.1)[0]
        out["release"] = guest.xc_suspend_evtchn_release(xch, x, 3, local, lockfd)
        out["lock_gone"] = not os.path.exists(os.path.join(os.environ["XENSIM_RUN_DIR"], "suspend-evtchn-3.lock"))
        ctrl.xc_domain_subscribe_for_suspend(xch, 3, 0)
    print(json.dumps(out))
    """ % port
    import errno
    path = module_sim.fault("lock", 3)["path"]
    assert path.endswith("/suspend-evtchn-3.lock")
    res, _ = run_script(module_sim, body)
    assert res["init"][0] == -1 and res["init"][1] == errno.EINVAL and res["lockfile"]
    module_sim.fault("unlock", 3)
    res, _ = run_script(module_sim, body)
    assert res["init"][0] > 0 and res["init"][2] >= 0
    assert res["drained"]
    assert res["release"] == -1          # xg_suspend.c quirk: -1 when a lock fd was held
    assert res["lock_gone"]


def test_open_without_simulator(module_sim):
    res, stderr = run_script(module_sim, """
    ctrl = ffi.dlopen("libxenctrl.so.4.17")
    ev = ffi.dlopen("libxenevtchn.so.1")
    out = {}
    x = ctrl.xc_interface_open(ffi.NULL, ffi.NULL, 0)
    out["xc"] = [x == ffi.NULL, ffi.errno]
    e = ev.xenevtchn_open(ffi.NULL, 0)
    out["ev"] = [e == ffi.NULL, ffi.errno]
    print(json.dumps(out))
    """, clear_sim_env=True, prelude=False)
    import errno
    assert res["xc"] == [True, errno.ENOENT]
    assert res["ev"] == [True, errno.ENOENT]
    assert "Could not obtain handle on privileged command interface" in stderr


def test_socket_derived_from_xenstored_path(module_sim):
    """Without XENSIM_SOCKET the shims use $(dirname $XENSTORED_PATH)/hypervisor.sock."""
    env = {"XENSIM_SOCKET": ""}
    res, _ = run_script(module_sim, """
    out["version"] = ctrl.xc_version(xch, 0, ffi.NULL)
    print(json.dumps(out))
    """, env_extra=env)
    assert res["version"] == 0x40011
