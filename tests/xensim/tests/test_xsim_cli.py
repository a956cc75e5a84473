"""The CLI: start / list / spawn / fault / stop, and that nothing is left
behind.  Also the 500-guest scale check."""

import errno
import fcntl
import json
import os
import signal
import time

import pytest

from xensim_testlib import RawXs, Sim, Xc, ctl, wait_until
from xensim import xswire as w


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def sim_processes(dirpath):
    found = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % p, "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if b"xensim" in cmd and str(dirpath).encode() in cmd and pid_alive(int(p)):
            found.append(int(p))
    return found


def assert_clean(dirpath):
    left = sorted(n for n in os.listdir(dirpath)
                  if n.endswith(".sock") or n in ("xensim.pid", "env.sh", "env.json"))
    assert left == []
    assert sim_processes(dirpath) == []
    assert os.listdir(os.path.join(dirpath, "run", "xen")) == []


def test_start_list_fault_stop(tmp_path_factory):
    d = tmp_path_factory.mktemp("c")
    spec = d / "fleet.yaml"
    spec.write_text("quiesce_ms: 50\njitter_ms: 0\nheartbeat_ms: 50\n"
                    "guests:\n  - behaviour: linux-pv\n    count: 3\n    name: web\n"
                    "  - {behaviour: xenlinux, name: legacy}\n")
    r = ctl("start", "--spec", str(spec), "--dir", str(d))
    exports = dict(l[len("export "):].split("=", 1) for l in r.stdout.splitlines())
    assert exports["XENSTORED_PATH"] == str(d / "xenstored.sock")
    assert exports["XENSIM_SOCKET"] == str(d / "hypervisor.sock")
    assert "build/lib" in exports["LD_LIBRARY_PATH"]
    pid = int((d / "xensim.pid").read_text())
    assert pid_alive(pid)
    # a second start in the same dir is refused
    assert ctl("start", "--spec", str(spec), "--dir", str(d), check=False).returncode != 0

    out = ctl("list", "--dir", str(d)).stdout
    for name in ("Domain-0", "web-1", "web-2", "web-3", "legacy"):
        assert name in out
    doms = json.loads(ctl("list", "--dir", str(d), "--json").stdout)
    assert [x["domid"] for x in doms] == [0, 1, 2, 3, 4]

    new = ctl("spawn", "--dir", str(d), "--behaviour", "hvm-pv", "--count", "2").stdout.split()
    assert new == ["5", "6"]

    sim = Sim.__new__(Sim)
    sim.dir, sim.control = str(d), str(d / "control.sock")
    sim.env = json.loads((d / "env.json").read_text())
    xc = Xc(sim)

    # crash and destroy
    ctl("fault", "--dir", str(d), "crash", "2")
    assert xc.info(2)["shutdown"] and xc.info(2)["reason"] == 3
    ctl("fault", "--dir", str(d), "destroy", "3")
    wait_until(lambda: xc.info(3) is None, timeout=3)

    # holding libxl's suspend lock: a POSIX lock on byte 0 of the file
    path = ctl("fault", "--dir", str(d), "lock", "1").stdout.strip()
    assert path == str(d / "run" / "xen" / "suspend-evtchn-1.lock")
    fd = os.open(path, os.O_RDWR)
    with pytest.raises(OSError) as ei:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
    assert ei.value.errno in (errno.EAGAIN, errno.EACCES)
    os.close(fd)
    ctl("fault", "--dir", str(d), "unlock", "1")
    assert not os.path.exists(path)
    ctl("fault", "--dir", str(d), "lock", "4")      # left held: stop must clean it

    # xenstored restart: clients are dropped, the socket is briefly absent,
    # the contents survive
    c = RawXs(str(d / "xenstored.sock"))
    c.write(b"/cli/keep", b"1")
    c.watch(b"/cli", b"t")
    ctl("fault", "--dir", str(d), "restart-xenstored", "--downtime", "0.6")
    with pytest.raises((ConnectionError, OSError)):
        c.read(b"/cli/keep")
    c.close()
    assert not (d / "xenstored.sock").exists()
    wait_until(lambda: (d / "xenstored.sock").exists(), timeout=3)
    c = RawXs(str(d / "xenstored.sock"))
    assert c.read(b"/cli/keep") == b"1"
    c.close()

    stats = json.loads(ctl("stats", "--dir", str(d)).stdout)
    assert stats["xenstored_restarts"] == 1 and len(stats["locks"]) == 1
    xc.close()

    ctl("stop", "--dir", str(d))
    assert not pid_alive(pid)
    assert_clean(d)
    # stopping again is harmless
    ctl("stop", "--dir", str(d))


def test_sigterm_cleans_up(tmp_path_factory):
    d = tmp_path_factory.mktemp("t")
    s = Sim(d, {"guests": {"linux-pv": 2}})
    s.fault("lock", 1)
    os.kill(s.pid, signal.SIGTERM)
    wait_until(lambda: not pid_alive(s.pid), timeout=5)
    assert_clean(d)


def test_bad_spec_is_reported(tmp_path_factory):
    d = tmp_path_factory.mktemp("b")
    spec = d / "bad.yaml"
    spec.write_text("guests:\n  - behaviour: no-such-thing\n")
    r = ctl("start", "--spec", str(spec), "--dir", str(d), check=False)
    assert r.returncode != 0 and "unknown behaviour" in r.stderr
    assert not (d / "xensim.pid").exists() and sim_processes(d) == []


def test_500_guests_start_fast_and_suspend_concurrently(tmp_path_factory):
    d = tmp_path_factory.mktemp("big")
    t0 = time.monotonic()
    s = Sim(d, {"quiesce_ms": 200, "jitter_ms": 50, "guests": {"linux-pv": 500}})
    started = time.monotonic() - t0
    try:
        assert started < 5.0, started
        assert len(s.domains()) == 501
        xc = Xc(s)
        c = RawXs(s.xs_path)
        t1 = time.monotonic()
        for domid in range(1, 501):
            c.send_raw(w.pack(w.XS_WRITE, domid, 0, b"/local/domain/%d/control/shutdown\0suspend" % domid))
        buf = xc.ffi.new("char[]", 112 * 600)

        def all_suspended():
            n = xc.ctrl.xc_domain_getinfolist(xc.xch, 1, 600, buf)
            infos = [xc.ffi.cast("dominfo_prefix_t *", buf + 112 * i) for i in range(n)]
            return n == 500 and all(e.flags & 4 and (e.flags >> 16) & 0xFF == 2 for e in infos)

        wait_until(all_suspended, timeout=10, interval=0.02)
        elapsed = time.monotonic() - t1
        # 500 guests x 200 +- 50 ms quiesce, done concurrently
        assert elapsed < 2.0, elapsed
        for domid in range(1, 501):
            xc.resume(domid, 1)
        c.close()
        xc.close()
        # the simulator itself stays cheap
        with open("/proc/%d/stat" % s.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        assert cpu < 5.0, cpu
    finally:
        s.stop()
    assert_clean(d)


@pytest.mark.parametrize("name", ["benchmark-500.yaml", "all-behaviours.yaml"])
def test_sample_fleets_parse(name):
    pytest.importorskip("yaml")
    from xensim import fleet
    from xensim_testlib import XENSIM_ROOT
    spec = fleet.load(os.path.join(XENSIM_ROOT, "fleets", name))
    assert sum(g["count"] for g in spec["groups"]) in (500, 17)
