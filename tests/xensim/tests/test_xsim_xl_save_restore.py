"""The simulated ``xl`` (tests/xensim/bin/xl): save / restore / destroy / unpause / list, its
faults, and the simulated dom0 reboot.  Every ``xl`` here is found by name through the PATH
that ``xensim start`` prints, as production code would find it."""

import importlib.util
import json
import os
import shutil
import signal
import struct
import subprocess

import pytest

from xensim_testlib import XENSIM_ROOT, RawXs, ctl, wait_until
from xensim import saveimage as si
from xensim import xswire as w

REPO = os.path.dirname(os.path.dirname(XENSIM_ROOT))

BASE = {"heartbeat_ms": 20, "memory_mb": 16, "quiesce_ms": 20, "jitter_ms": 5, "dying_ms": 5}


def spec(*groups, **top):
    s = dict(BASE, guests=list(groups))
    s.update(top)
    return s


def xl(sim, *args, check=None, **kw):
    env = sim.subprocess_env()
    r = subprocess.run(["xl"] + [str(a) for a in args], capture_output=True, text=True, env=env,
                       timeout=120, **kw)
    if check is not None:
        assert r.returncode == check, (args, r.returncode, r.stdout, r.stderr)
    return r


def by_name(sim, name):
    doms = [d for d in sim.domains() if d["name"] == name and not d["dying"]]
    assert len(doms) <= 1, doms
    return doms[0] if doms else None


def beats_past(sim, name, n):
    """Wait until the guest's heartbeat reaches n; its domain record then."""
    def pred():
        d = by_name(sim, name)
        return d if d is not None and d.get("heartbeat", -1) >= n else None
    return wait_until(pred, timeout=20, msg="%s heartbeat >= %d" % (name, n))


def live_names(sim):
    return sorted(d["name"] for d in sim.domains() if not d["dying"])


def xs_read(sim, path):
    c = RawXs(sim.xs_path)
    try:
        rop, p = c.request(w.XS_READ, path.encode() + b"\0")
        return None if rop == w.XS_ERROR else p.decode()
    finally:
        c.close()


def xs_dir(sim, path):
    c = RawXs(sim.xs_path)
    try:
        return sorted(x.decode() for x in c.ok(w.XS_DIRECTORY, path.encode() + b"\0").split(b"\0") if x)
    finally:
        c.close()


def image_state(path):
    with open(path, "rb") as f:
        hdr, config = si.read_xl_header(f, path)
        state, pages = si.read_stream(f)
        assert f.read() == b"", "bytes after the libxl END record"
    return hdr, json.loads(config.rstrip(b"\0").decode()), state, pages


def proc_argv0(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().split(b"\0")[0].decode()
    except OSError:
        return None


def proc_gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def load_engine_monitors():
    """The collection's own monitor finder, to check that it finds the simulated monitor."""
    path = os.path.join(REPO, "plugins", "module_utils", "_xl_monitor.py")
    spec_ = importlib.util.spec_from_file_location("xsim_xl_monitor_under_test", path)
    mod = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(mod)
    return mod


# -- PATH ------------------------------------------------------------------------------------------

def test_start_puts_the_simulated_xl_first_on_path(make_sim):
    sim = make_sim(spec())
    assert sim.env["PATH"].split(os.pathsep)[0] == os.path.join(XENSIM_ROOT, "bin")
    assert shutil.which("xl", path=sim.env["PATH"]) == os.path.join(XENSIM_ROOT, "bin", "xl")
    with open(os.path.join(sim.dir, "env.sh")) as f:
        assert 'export PATH="%s${PATH:+:$PATH}"' % os.path.join(XENSIM_ROOT, "bin") in f.read()
    with open(os.path.join(sim.dir, "env.json")) as f:
        assert json.load(f)["PATH"] == sim.env["PATH"]
    r = xl(sim, "list", check=0)
    assert r.stdout.splitlines()[1].split()[:2] == ["Domain-0", "0"]


def test_xl_without_a_simulator_fails_like_xl_without_xen(tmp_path):
    env = dict(os.environ, XENSTORED_PATH=str(tmp_path / "nothing" / "socket"))
    r = subprocess.run([os.path.join(XENSIM_ROOT, "bin", "xl"), "list"], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 1
    assert "cannot init xl context" in r.stderr


# -- round trip --------------------------------------------------------------------------------------

@pytest.mark.parametrize("behaviour", ["linux-pv", "xenlinux", "hvm-nopv", "windows"])
def test_save_restore_round_trip_keeps_name_uuid_and_heartbeat(make_sim, tmp_path, behaviour):
    sim = make_sim(spec({"behaviour": behaviour, "name": "web"}, {"behaviour": "linux-pv", "name": "other"}))
    before = beats_past(sim, "web", 3)
    path = tmp_path / "web.save"

    r = xl(sim, "save", "web", path, check=0)
    assert "Saving to %s new xl format (info 0x3/0x0/" % path in r.stderr
    wait_until(lambda: by_name(sim, "web") is None, msg="saved domain destroyed")
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    hdr, cfg, state, pages = image_state(path)
    assert hdr["mandatory_flags"] == si.XL_MANDATORY_FLAG_JSON | si.XL_MANDATORY_FLAG_STREAMv2
    assert cfg["c_info"]["name"] == "web" and cfg["c_info"]["uuid"] == before["uuid"]
    assert cfg["b_info"]["max_memkb"] == 16 * 1024
    assert pages == 16                              # 1 page per MiB (scaled down)
    assert os.path.getsize(path) > 16 * 4096
    assert state["behaviour"] == behaviour
    saved_beat = state["heartbeat"]
    assert saved_beat >= before["heartbeat"] >= 3

    r = xl(sim, "restore", "-p", path, check=0)
    assert "Loading new save file %s (new xl fmt info 0x3/0x0/" % path in r.stderr
    after = by_name(sim, "web")
    assert after["domid"] != before["domid"]
    assert after["uuid"] == before["uuid"]
    assert after["type"] == before["type"]
    assert "p" in after["flags"]
    assert after["heartbeat"] == saved_beat         # paused: the guest has not run yet
    assert after["counters"].get("restores") == 1
    assert xs_read(sim, "/local/domain/%d/name" % after["domid"]) == "web"
    assert xs_read(sim, "/vm/%s/name" % after["uuid"]) == "web"

    xl(sim, "unpause", "web", check=0)
    beats_past(sim, "web", saved_beat + 2)        # continues from where it stopped
    assert "p" not in by_name(sim, "web")["flags"]
    assert by_name(sim, "other")["heartbeat"] > 0


def test_restored_domain_has_a_monitor_the_engine_finds_and_it_exits_with_the_domain(make_sim, tmp_path):
    sim = make_sim(spec({"behaviour": "linux-pv", "name": "web"}))
    beats_past(sim, "web", 1)
    xl(sim, "save", "web", tmp_path / "f", check=0)
    xl(sim, "restore", tmp_path / "f", check=0)
    dom = by_name(sim, "web")
    log_dir = os.path.join(sim.dir, "log", "xen")
    found = load_engine_monitors().XlMonitors(log_dir=log_dir).find(dom["domid"], "web")
    assert found is not None and found["state"] == "running"
    pid = found["pid"]
    assert proc_argv0(pid) == "xl"

    xl(sim, "destroy", "web", check=0)
    wait_until(lambda: proc_gone(pid), msg="monitor exit")
    with open(os.path.join(log_dir, "xl-web.log")) as f:
        assert "Domain %d has been destroyed." % dom["domid"] in f.read()


def test_restore_refuses_a_name_that_exists(make_sim, tmp_path):
    sim = make_sim(spec({"behaviour": "linux-pv", "name": "web"}))
    beats_past(sim, "web", 1)
    xl(sim, "save", "web", tmp_path / "f", check=0)
    xl(sim, "restore", "-e", tmp_path / "f", check=0)
    r = xl(sim, "restore", "-e", tmp_path / "f", check=1)
    assert "Domain with name web already exists" in r.stderr
    assert live_names(sim) == ["Domain-0", "web"]


def test_save_p_leaves_it_paused_with_a_cancelled_suspend_then_unpause_runs_it(make_sim, tmp_path):
    sim = make_sim(spec({"behaviour": "linux-pv", "name": "web"}))
    before = beats_past(sim, "web", 2)
    xl(sim, "save", "-p", "web", tmp_path / "f", check=0)
    d = by_name(sim, "web")
    assert d["domid"] == before["domid"]
    assert d["flags"][2] == "p" and d["flags"][3] == "-"   # paused, no longer shut down
    assert d["shutdown_code"] is None
    assert d["last_resume"] == "cancelled"
    _, _, state, _ = image_state(tmp_path / "f")
    assert state["heartbeat"] >= 2
    frozen = d["heartbeat"]
    assert by_name(sim, "web")["heartbeat"] == frozen

    xl(sim, "unpause", "web", check=0)
    beats_past(sim, "web", frozen + 2)
    r = xl(sim, "unpause", "web", check=0)            # xl ignores libxl's error
    assert "Unpausing domain" in r.stderr


# -- failures -----------------------------------------------------------------------------------------

def test_guest_that_never_answers_fails_the_save_after_the_timeout(make_sim, tmp_path):
    sim = make_sim(spec({"behaviour": "unresponsive", "name": "stuck"}, xl={"suspend_timeout_ms": 300}))
    before = beats_past(sim, "stuck", 1)
    r = xl(sim, "save", "stuck", tmp_path / "f", check=1)
    assert "guest didn't acknowledge suspend, cancelling request" in r.stderr
    assert "Failed to save domain, resuming domain" in r.stderr
    d = by_name(sim, "stuck")
    assert d["domid"] == before["domid"] and d["shutdown_code"] is None
    assert xs_read(sim, "/local/domain/%d/control/shutdown" % d["domid"]) == ""   # withdrawn
    assert os.path.exists(tmp_path / "f")                 # the partial file stays
    with open(tmp_path / "f", "rb") as f:
        assert f.read(32) == si.XL_MAGIC


def test_enospc_fails_the_save_resumes_the_guest_and_leaves_the_partial_file(make_sim, tmp_path):
    sim = make_sim(spec({"behaviour": "linux-pv", "name": "web", "xl_faults": {"enospc_after": 30000}}))
    beats_past(sim, "web", 2)
    r = xl(sim, "save", "web", tmp_path / "f", check=1)
    assert "No space left on device" in r.stderr
    assert "Failed to save domain, resuming domain" in r.stderr
    assert os.path.getsize(tmp_path / "f") == 30000
    d = by_name(sim, "web")
    assert d["shutdown_code"] is None and d["last_resume"] == "cancelled"
    beats_past(sim, "web", d["heartbeat"] + 2)           # running again

    xl(sim, "destroy", "web", check=0)
    wait_until(lambda: by_name(sim, "web") is None)
    r = xl(sim, "restore", tmp_path / "f", check=1)
    assert "Failed to read Record" in r.stderr
    wait_until(lambda: live_names(sim) == ["Domain-0"], msg="half-built domain destroyed")


@pytest.mark.parametrize("behaviour", ["linux-pv", "xenlinux"])
def test_xl_killed_mid_save_leaves_the_guest_suspended_and_the_partial_file(make_sim, tmp_path, behaviour):
    sim = make_sim(spec({"behaviour": behaviour, "name": "web"}))
    beats_past(sim, "web", 1)
    assert sim.admin("xl_fault", name="web", faults={"stall_after": 50000})["faults"] == {"stall_after": 50000}
    proc = subprocess.Popen(["xl", "save", "web", str(tmp_path / "f")], env=sim.subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: (by_name(sim, "web").get("xl_save") or {}).get("stage") == "stalled",
                   timeout=30, msg="xl stalled mid-save")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    wait_until(lambda: by_name(sim, "web")["xl_save"]["stage"] == "abandoned", msg="xl's connection gone")
    d = by_name(sim, "web")
    assert d["shutdown_code"] == 2 and d["flags"][3] == "s"   # suspended, nobody resumes it
    assert os.path.getsize(tmp_path / "f") == 50000
    assert sim.admin("stats")["locks"] == []                # the suspend lock died with xl
    assert not os.listdir(sim.env["XENSIM_RUN_DIR"])


@pytest.mark.parametrize("cut,message", [
    (20, "file/stream truncated reading header"),
    (60, "truncated reading optdata"),
    ("stream", "Failed to read"),
    ("end", "Failed to read Record Header from stream"),
])
def test_truncated_image_is_refused_and_nothing_half_built_stays(make_sim, tmp_path, cut, message):
    sim = make_sim(spec({"behaviour": "linux-pv", "name": "web"}))
    beats_past(sim, "web", 1)
    xl(sim, "save", "web", tmp_path / "full", check=0)
    data = (tmp_path / "full").read_bytes()
    hdr_len = 32 + 16 + struct.unpack_from("=I", data, 44)[0]
    n = {"stream": hdr_len + 2000, "end": len(data) - 8}.get(cut, cut)
    (tmp_path / "cut").write_bytes(data[:n])
    wait_until(lambda: by_name(sim, "web") is None)
    r = xl(sim, "restore", tmp_path / "cut", check=1)
    assert message in r.stderr
    wait_until(lambda: live_names(sim) == ["Domain-0"], msg="half-built domain destroyed")
    xl(sim, "restore", tmp_path / "full", check=0)   # the intact image still restores


def test_bad_magic_is_refused(make_sim, tmp_path):
    sim = make_sim(spec())
    (tmp_path / "junk").write_bytes(b"\0" * 4096)
    r = xl(sim, "restore", tmp_path / "junk", check=1)
    assert "File has wrong magic number - corrupt or for a different tool?" in r.stderr


def test_truncate_fault_gives_a_short_file_from_a_successful_save(make_sim, tmp_path):
    sim = make_sim(spec({"behaviour": "linux-pv", "name": "web", "xl_faults": {"truncate_to": 9000}}))
    beats_past(sim, "web", 1)
    xl(sim, "save", "web", tmp_path / "f", check=0)
    wait_until(lambda: by_name(sim, "web") is None)
    assert os.path.getsize(tmp_path / "f") == 9000
    r = xl(sim, "restore", tmp_path / "f", check=1)
    assert "Failed to read" in r.stderr
    wait_until(lambda: live_names(sim) == ["Domain-0"])


def test_restore_failing_after_domain_creation_destroys_the_half_built_domain(make_sim, tmp_path):
    sim = make_sim(spec({"behaviour": "linux-pv", "name": "web", "xl_faults": {"restore_fail": True}}))
    beats_past(sim, "web", 1)
    xl(sim, "save", "web", tmp_path / "f", check=0)
    wait_until(lambda: by_name(sim, "web") is None)
    r = xl(sim, "restore", tmp_path / "f", check=1)
    assert "cannot (re-)build domain" in r.stderr
    wait_until(lambda: live_names(sim) == ["Domain-0"], msg="half-built domain destroyed")
    assert os.path.getsize(tmp_path / "f") > 16 * 4096            # the file is left alone
    sim.admin("xl_fault", name="web", faults={})
    xl(sim, "restore", tmp_path / "f", check=0)
    assert by_name(sim, "web") is not None


def test_unknown_domain_and_dom0(make_sim, tmp_path):
    sim = make_sim(spec())
    r = xl(sim, "save", "nosuch", tmp_path / "f", check=1)
    assert "nosuch is an invalid domain identifier (rc=-6)" in r.stderr
    assert not os.path.exists(tmp_path / "f")
    r = xl(sim, "destroy", "0", check=1)
    assert "Not destroying domain 0" in r.stderr
    r = xl(sim, "destroy", "42", check=1)
    assert "destroy failed" in r.stderr


# -- dom0 reboot ---------------------------------------------------------------------------------------

def test_reboot_drops_domains_and_store_keeps_files_then_restore_works(make_sim, tmp_path):
    sim = make_sim(spec({"behaviour": "linux-pv", "name": "web"}, {"behaviour": "xenlinux", "name": "db"}))
    beats_past(sim, "web", 2)
    xl(sim, "save", "web", tmp_path / "web.save", check=0)
    saved = (tmp_path / "web.save").read_bytes()
    ledger = tmp_path / "ledger.json"
    ledger.write_text('{"entries": []}')
    with open(os.path.join(sim.dir, "env.json")) as f:
        env_before = f.read()
    boot_before = sim.admin("ping")["boot_id"]
    sim.admin("fault", kind="lock", domid=by_name(sim, "db")["domid"])

    r = ctl("reboot", "--dir", sim.dir)
    assert r.stdout.strip() != boot_before
    ping = sim.admin("ping")
    assert ping["boot_id"] == r.stdout.strip() and ping["boots"] == 2
    with open(os.path.join(sim.dir, "boot_id")) as f:
        assert f.read().strip() == ping["boot_id"]
    assert live_names(sim) == ["Domain-0"]
    assert xs_dir(sim, "/local/domain") == ["0"]
    assert xs_read(sim, "/vm/%s/name" % "00000000-0000-0000-0000-000000000000") == "Domain-0"
    assert xs_dir(sim, "/") == ["local", "tool", "vm"]
    assert (tmp_path / "web.save").read_bytes() == saved
    assert ledger.read_text() == '{"entries": []}'
    with open(os.path.join(sim.dir, "env.json")) as f:
        assert f.read() == env_before
    assert sim.admin("stats")["locks"] == [] and not os.listdir(sim.env["XENSIM_RUN_DIR"])

    xl(sim, "restore", tmp_path / "web.save", check=0)
    d = by_name(sim, "web")
    assert d["domid"] == 1                                      # a fresh hypervisor
    _, _, state, _ = image_state(tmp_path / "web.save")
    assert d["heartbeat"] >= state["heartbeat"]
    beats_past(sim, "web", state["heartbeat"] + 2)


def test_reboot_ends_monitors_and_in_flight_xl(make_sim, tmp_path):
    sim = make_sim(spec({"behaviour": "linux-pv", "name": "web"}, {"behaviour": "linux-pv", "name": "db"}))
    beats_past(sim, "web", 1)
    xl(sim, "save", "web", tmp_path / "f", check=0)
    xl(sim, "restore", tmp_path / "f", check=0)
    mon = load_engine_monitors().XlMonitors(log_dir=os.path.join(sim.dir, "log", "xen"))
    pid = mon.find(by_name(sim, "web")["domid"], "web")["pid"]
    sim.admin("xl_fault", name="db", faults={"stall_after": 20000})
    proc = subprocess.Popen(["xl", "save", "db", str(tmp_path / "db")], env=sim.subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: (by_name(sim, "db").get("xl_save") or {}).get("stage") == "stalled", timeout=30)
        ctl("reboot", "--dir", sim.dir)
        wait_until(lambda: proc_gone(pid), msg="monitor gone with the reboot")
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert os.path.getsize(tmp_path / "db") == 20000
    assert live_names(sim) == ["Domain-0"]


def test_spec_rejects_unknown_xl_fault(tmp_path):
    from xensim import fleet
    with pytest.raises(fleet.SpecError):
        fleet.normalise({"guests": [{"behaviour": "linux-pv", "xl_faults": {"explode": 1}}]})
    with pytest.raises(fleet.SpecError):
        fleet.normalise({"xl": {"nonsense": 1}})


def test_suspend_timeout_comes_from_the_simulators_environment(make_sim, monkeypatch):
    monkeypatch.setenv("XENSIM_XL_SUSPEND_TIMEOUT_MS", "250")
    sim = make_sim(spec({"behaviour": "unresponsive", "name": "stuck"}))
    assert sim.admin("xl", action="config")["suspend_timeout_ms"] == 250
    r = xl(sim, "save", "stuck", os.path.join(sim.dir, "f"), check=1)
    assert "guest didn't acknowledge suspend" in r.stderr
    monkeypatch.delenv("XENSIM_XL_SUSPEND_TIMEOUT_MS")
    assert make_sim(spec()).admin("xl", action="config")["suspend_timeout_ms"] == 60000


def test_save_to_an_unwritable_path_fails_before_touching_the_guest(make_sim, tmp_path):
    sim = make_sim(spec({"behaviour": "linux-pv", "name": "web"}))
    before = beats_past(sim, "web", 1)
    r = xl(sim, "save", "web", tmp_path / "no" / "such" / "dir", check=1)
    assert "Failed to open temp file %s for writing" % (tmp_path / "no" / "such" / "dir") in r.stderr
    d = by_name(sim, "web")
    assert d["domid"] == before["domid"] and d["counters"].get("requests") is None


def test_evtchn_save_fails_while_someone_else_holds_the_suspend_lock(make_sim, tmp_path):
    import fcntl
    sim = make_sim(spec({"behaviour": "xenlinux", "name": "old"}, {"behaviour": "hostile", "name": "bad"}))
    d = beats_past(sim, "old", 1)
    path = os.path.join(sim.env["XENSIM_RUN_DIR"], "suspend-evtchn-%d.lock" % d["domid"])
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)   # e.g. the collection's own suspend
        r = xl(sim, "save", "old", tmp_path / "f", check=1)
        assert "Suspend event channel initialization failed" in r.stderr
        assert by_name(sim, "old")["shutdown_code"] is None
    finally:
        os.unlink(path)
        os.close(fd)
    xl(sim, "save", "old", tmp_path / "f", check=0)
    # a guest advertising a port that is not one (hostile "12abc\x01") cannot be saved
    r = xl(sim, "save", "bad", tmp_path / "g", check=1)
    assert "Suspend event channel initialization failed" in r.stderr
    assert by_name(sim, "bad")["shutdown_code"] is None


@pytest.mark.parametrize("behaviour", ["linux-pv", "xenlinux"])
def test_a_restored_guest_can_be_saved_and_restored_again(make_sim, tmp_path, behaviour):
    sim = make_sim(spec({"behaviour": behaviour, "name": "web"}))
    beats_past(sim, "web", 2)
    xl(sim, "save", "web", tmp_path / "one", check=0)
    xl(sim, "restore", "-e", tmp_path / "one", check=0)
    first = image_state(tmp_path / "one")[2]["heartbeat"]
    beats_past(sim, "web", first + 2)
    xl(sim, "save", "web", tmp_path / "two", check=0)
    second = image_state(tmp_path / "two")[2]
    assert second["heartbeat"] >= first + 2
    assert second["counters"]["restores"] == 1 and second["counters"]["suspends"] == 2
    xl(sim, "restore", "-e", tmp_path / "two", check=0)
    assert by_name(sim, "web")["counters"]["restores"] == 2
    beats_past(sim, "web", second["heartbeat"] + 2)


def test_image_without_guest_memory_is_refused(make_sim, tmp_path):
    sim = make_sim(spec())
    header, _, _ = si.xl_header(si.domain_config_json("ghost", "6b2c7d9e-0000-4000-8000-000000000001",
                                                      "pv", 16, 1))
    stream = si.LIBXL_HDR.pack(si.LIBXL_IDENT, 2, 0) + si.record(si.REC_END)
    (tmp_path / "empty").write_bytes(header + stream)
    r = xl(sim, "restore", tmp_path / "empty", check=1)
    assert "no guest memory in the stream" in r.stderr
    wait_until(lambda: live_names(sim) == ["Domain-0"], msg="half-built domain destroyed")


def test_xl_killed_before_the_guest_answered_leaves_the_request_and_the_guest_suspends(make_sim, tmp_path):
    sim = make_sim(spec({"behaviour": "slow", "name": "web", "quiesce_ms": 20, "jitter_ms": 0,
                         "params": {"ack_delay_ms": 3000, "ack_jitter_ms": 0}}))
    d = beats_past(sim, "web", 1)
    node = "/local/domain/%d/control/shutdown" % d["domid"]
    proc = subprocess.Popen(["xl", "save", "web", str(tmp_path / "f")], env=sim.subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: xs_read(sim, node) == "suspend", timeout=30, msg="suspend request written")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    # nobody withdraws the request: the guest answers it later and suspends, and stays so
    wait_until(lambda: by_name(sim, "web")["shutdown_code"] == 2, timeout=30, msg="guest suspended")
    assert xs_read(sim, node) == ""
    assert os.path.getsize(tmp_path / "f") < 4096            # only the xl header was written
