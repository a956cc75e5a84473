"""The kill-anywhere campaign (tests/campaign/campaign.py): its detectors on purpose-made
violations (so that a clean campaign means something), the absence of false positives while
the ledger and the guests change as fast as they can, and a fixed-seed sample of schedules that
must pass every invariant."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402
import runner  # noqa: E402

SAMPLE_SEED = "20250611"
SAMPLE_SCHEDULES = 30
LAST_LINE = re.compile(r"^campaign schedules=(\d+) kills=(\d+) lost=(\d+) left_suspended=(\d+) "
                       r"pending=(\d+) frozen=(\d+|n/a) hangs=(\d+)$")


@pytest.fixture
def sim():
    s = harness.Sim("t")
    yield s
    s.stop()


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def write_ledger(path, entries):
    """As the engine does: a complete new file renamed over the old one."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    doc = {"format": "xen.suspend.ledger", "version": 1, "entries": entries}
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(doc, handle)
    os.rename(tmp, path)


def entry(uuid, name, state="intent"):
    return {"uuid": uuid, "domid": 0, "name": name, "state": state}


def test_lost_is_detected_and_a_recorded_suspend_is_not_lost(sim, tmp_path):
    ids = [sim.spawn("t-rec", "hvm-nopv"), sim.spawn("t-unrec", "hvm-nopv")]
    doms = dict((d["domid"], d) for d in sim.domains())
    rec, unrec = (doms[i]["uuid"] for i in ids)
    ledger = str(tmp_path / "state" / "ledger.json")
    write_ledger(ledger, {rec: entry(rec, "t-rec")})
    sampler = harness.Sampler(sim, ledger, {rec: "t-rec", unrec: "t-unrec"}, time.monotonic(),
                              interval=0.001)
    sampler.start()
    try:
        for domid in ids:  # shut down with reason suspend, behind the engine's back
            sim.admin.call("fault", kind="shutdown", domid=domid, reason="suspend")
        assert wait_for(lambda: "t-unrec" in sampler.lost)
    finally:
        sampler.finish()
    assert sorted(sampler.lost) == ["t-unrec"], sampler.lost
    assert sampler.samples > 0


def test_no_false_lost_while_ledger_and_guests_change_fast(sim, tmp_path):
    """The engine's order, as fast as possible: entry, then suspend; resume, then no entry.
    At no instant is a guest suspended without its entry, so nothing may be reported."""
    if "external_resume" not in open(os.path.join(harness.XENSIM_ROOT, "xensim", "sim.py")).read():
        pytest.skip("the simulator has no external_resume admin op")
    domid = sim.spawn("t-flip", "hvm-nopv")
    uuid = dict((d["domid"], d) for d in sim.domains())[domid]["uuid"]
    ledger = str(tmp_path / "state" / "ledger.json")
    sampler = harness.Sampler(sim, ledger, {uuid: "t-flip"}, time.monotonic(), interval=0.0)
    sampler.start()
    conn = harness.AdminConn(sim.control)
    try:
        for _ in range(150):
            write_ledger(ledger, {uuid: entry(uuid, "t-flip")})
            conn.call("fault", kind="shutdown", domid=domid, reason="suspend")
            conn.call("external_resume", domid=domid, fast=False)
            write_ledger(ledger, {})
    finally:
        conn.close()
        sampler.finish()
    assert sampler.lost == {}
    assert sampler.samples > 50
    suspended_seen = [what for _t, who, what in sampler.timeline if who == "t-flip" and "code=2" in what]
    assert suspended_seen, "the sampler never saw the guest suspended: the test proves nothing"


def test_pending_request_in_a_running_guest_is_detected(sim):
    ids = [sim.spawn("t-mute", "unresponsive"), sim.spawn("t-fine", "unresponsive")]
    doms = dict((d["domid"], d) for d in sim.domains())
    guests = [{"name": n, "domid": i, "uuid": doms[i]["uuid"]} for n, i in zip(("t-mute", "t-fine"), ids)]
    sim.xs_write("/local/domain/%d/control/shutdown" % ids[0], b"suspend")
    worker = runner.Worker.__new__(runner.Worker)   # only its detectors, on this simulator
    worker.sim = sim
    assert worker._pending(guests) == ["t-mute"]


def test_frozen_monitor_is_detected(tmp_path):
    monitors = harness.XlMonitors(str(tmp_path))
    pid = monitors.start("t-guest", 7)
    try:
        with open(str(tmp_path / "xl-t-guest.log")) as handle:
            assert "Waiting for domain t-guest (domid 7) to die [pid %d]" % pid in handle.read()
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            assert handle.read().split(b"\0")[0] == b"xl"
        assert harness.process_state(pid) not in (None, "T", "t")
        os.kill(pid, signal.SIGSTOP)
        assert wait_for(lambda: harness.process_state(pid) in ("T", "t"))
    finally:
        monitors.stop_all()
    assert not os.path.exists(str(tmp_path / "xl-t-guest.log"))


def test_fixed_seed_sample_keeps_every_guest():
    """SAMPLE_SCHEDULES schedules of a fixed seed: every invariant holds (on an engine with the
    known bugs, this fails and prints what was violated and how to re-run each schedule)."""
    cmd = [sys.executable, os.path.join(HERE, "campaign.py"), "--seed", SAMPLE_SEED,
           "--schedules", str(SAMPLE_SCHEDULES), "--reports", "3"]
    if shutil.which("unshare") is None or os.geteuid() != 0:
        cmd.append("--no-namespace")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr
    match = LAST_LINE.match(lines[-1])
    assert match, "unexpected last line %r\n%s\n%s" % (lines[-1], proc.stdout[-6000:], proc.stderr[-3000:])
    assert int(match.group(1)) == SAMPLE_SCHEDULES
    assert int(match.group(2)) > 0, "no kill landed: the sample proves nothing"
    assert proc.returncode == 0, "violations:\n%s\n%s" % (proc.stdout[-12000:], proc.stderr[-3000:])
