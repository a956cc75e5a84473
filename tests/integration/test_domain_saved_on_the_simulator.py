"""xen.suspend.domain_saved against the simulated dom0, reaching the simulated ``xl`` through PATH
as it would reach the real one: a parallel round trip (valid images, guests gone, ledger
saved), idempotence, check mode, the faults (a full disk, an xl that stalls and is killed at the
timeout, an image whose tail was lost) after each of which the guest runs on with no image and
no entry, and the refusals (dom0, protected, a paused guest) that touch nothing."""

import os
import stat
import sys
import time

import pytest

from xsim_harness import REPO, XENSIM_ROOT, by_name, wait_until

sys.path.insert(0, str(XENSIM_ROOT))
from xensim import saveimage  # noqa: E402  (the simulator's own reader: independent of ours)

ROUND_TRIP = ["web-1", "web-2", "web-3", "xl1", "pvh1", "hvm1"]
SPEC = {
    "quiesce_ms": 60, "jitter_ms": 20, "heartbeat_ms": 100, "memory_mb": 64, "dying_ms": 20,
    "guests": [
        {"behaviour": "linux-pv", "name": "web", "count": 3},
        {"behaviour": "xenlinux", "name": "xl1"},
        {"behaviour": "linux-pvh", "name": "pvh1"},
        {"behaviour": "hvm-pv", "name": "hvm1"},
        {"behaviour": "linux-pv", "name": "db-1"},
        {"behaviour": "linux-pv", "name": "paused"},
        {"behaviour": "linux-pv", "name": "full", "xl_faults": {"enospc_after": 100000}},
        {"behaviour": "linux-pv", "name": "stall", "xl_faults": {"stall_after": 100000}},
        {"behaviour": "linux-pv", "name": "trunc", "xl_faults": {"truncate_to": 150000}},
    ],
}


def saved(register, domains, **args):
    return {"xen.suspend.domain_saved": dict(args, domains=domains), "register": register}


@pytest.fixture(scope="module")
def sim_runner(make_module_sim):
    sim, runner = make_module_sim(SPEC)
    sim.fault("pause", "paused")
    save_dir = os.path.join(sim.dir, "save")
    runner.save_dir = save_dir
    defaults = runner.defaults(save_dir=save_dir)
    runner.module_defaults = defaults
    return sim, runner


def heartbeat_goes_on(sim, name):
    first = sim.domains()[name]["heartbeat"]
    wait_until(lambda: sim.domains()[name]["heartbeat"] > first + 2, timeout=15,
               what="%s's heartbeat to go on" % name)
    assert sim.domains()[name]["paused"] == 0
    assert sim.domains()[name]["shutdown_code"] is None


def image_files(save_dir):
    return sorted(os.listdir(save_dir)) if os.path.isdir(save_dir) else []


def test_check_mode_touches_nothing(sim_runner):
    sim, runner = sim_runner
    run = runner.run([saved("check", ["web-*", "xl1"])], check=True,
                     module_defaults=runner.module_defaults)
    result = run["check"]
    assert not result.get("failed"), run
    assert result["changed"] and sorted(result["saved"]) == ["web-1", "web-2", "web-3", "xl1"]
    assert all(d["image"].startswith(runner.save_dir + "/") for d in result["domains"])
    assert not os.path.exists(runner.save_dir)
    assert sim.ledger_entries() == {}
    assert all(name in sim.domains() for name in ("web-1", "web-2", "web-3", "xl1"))


def test_refusals_touch_nothing(sim_runner):
    sim, runner = sim_runner
    run = runner.run([
        saved("dom0", ["Domain-0"]),
        saved("dom0_domid", ["0"]),
        saved("protected", ["db-1"], protected=["db-*"]),
        saved("paused_among_good", ["web-1", "paused", "web-2"]),
        saved("unknown", ["nosuch"]),
    ], module_defaults=runner.module_defaults)
    for register in ("dom0", "dom0_domid", "protected", "unknown"):
        result = run[register]
        assert result["failed"], register
        assert result["error"]["kind"] == "invalid_target", (register, result)
        assert "nothing was touched" in result["msg"]
    assert "dom0 (the control domain)" in run["dom0"]["msg"]
    assert "protected" in run["protected"]["msg"]
    paused = run["paused_among_good"]
    assert paused["failed"] and not paused["changed"]
    domains = by_name(paused)
    assert (domains["paused"]["error"]["kind"], domains["paused"]["error"]["phase"]) == (
        "cannot_save", "preflight")
    assert "it is paused" in domains["paused"]["error"]["message"]
    assert domains["web-1"]["error"]["kind"] == "not_attempted"
    assert paused["stats"]["attempted"] == 0
    assert sim.ledger_entries() == {}
    assert image_files(runner.save_dir) == []
    for name in ("web-1", "web-2", "paused", "db-1"):
        assert name in sim.domains()
    assert sim.domains()["paused"]["paused"] == 1


def test_round_trip_in_parallel_then_idempotent(sim_runner):
    sim, runner = sim_runner
    run = runner.run([
        saved("first", ["web-*", "xl1", "pvh1", "hvm1"], parallel=4, verify="sha256"),
        saved("again", ROUND_TRIP),
        saved("pattern_again", ["web-*"]),
    ], module_defaults=runner.module_defaults, timeout=180)
    first = run["first"]
    assert not first.get("failed"), run
    assert first["changed"] and sorted(first["saved"]) == sorted(ROUND_TRIP)
    assert first["stats"]["attempted"] == len(ROUND_TRIP)
    live = sim.domains()
    entries = sim.ledger_entries()
    assert os.stat(runner.save_dir).st_mode & 0o777 == 0o700
    for item in first["domains"]:
        name = item["name"]
        assert name not in live, name  # destroyed
        assert item["after"] == "saved" and item["error"] is None
        path = item["image"]
        assert path == os.path.join(runner.save_dir, item["uuid"] + ".xlsave")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert item["image_size"] == os.path.getsize(path) and item["mib_per_s"] > 0
        with open(path, "rb") as handle:  # the simulator's own reader accepts it
            _hdr, config = saveimage.read_xl_header(handle, path)
            state, pages = saveimage.read_stream(handle)
        assert b'"%s"' % item["uuid"].encode() in config and pages == 64 and state
        entry = entries[item["uuid"]]
        assert (entry["state"], entry["name"], entry["image"], entry["image_size"]) == (
            "saved", name, path, item["image_size"])
        assert entry["image_sha256"] == item["sha256"] and len(item["sha256"]) == 64
    assert not [name for name in image_files(runner.save_dir) if name.endswith(".part")]
    for register in ("again", "pattern_again"):
        result = run[register]
        assert not result.get("failed") and not result["changed"], (register, result)
        assert result["saved"] == []
    assert sorted(run["again"]["unchanged"]) == sorted(ROUND_TRIP)
    assert sorted(run["pattern_again"]["unchanged"]) == ["web-1", "web-2", "web-3"]


def test_a_full_disk_leaves_the_guest_running_and_no_image(sim_runner):
    sim, runner = sim_runner
    run = runner.run([saved("full", ["full"])], module_defaults=runner.module_defaults)
    result = run["full"]
    assert result["failed"] and not result["changed"]
    (item,) = result["domains"]
    assert (item["error"]["kind"], item["error"]["phase"]) == ("xl_failed", "save")
    assert "No space left on device" in item["error"]["message"]
    assert item["after"] in ("running", "blocked")
    heartbeat_goes_on(sim, "full")
    assert item["uuid"] not in sim.ledger_entries()
    assert not [name for name in image_files(runner.save_dir) if name.startswith(item["uuid"])]


def test_an_xl_that_stalls_is_killed_at_the_timeout_and_the_guest_runs_on(sim_runner):
    sim, runner = sim_runner
    started = time.monotonic()
    run = runner.run([saved("stall", ["stall"], timeout=3)], module_defaults=runner.module_defaults)
    result = run["stall"]
    assert result["failed"]
    (item,) = result["domains"]
    assert (item["error"]["kind"], item["error"]["phase"]) == ("xl_timeout", "save")
    assert "killed after its timeout" in item["error"]["message"]
    assert any("resumed (cancelled suspend)" in note for note in item["notes"]), item
    assert time.monotonic() - started < 60
    heartbeat_goes_on(sim, "stall")
    assert item["uuid"] not in sim.ledger_entries()
    assert not [name for name in image_files(runner.save_dir) if name.startswith(item["uuid"])]
    # no xl of ours is left behind
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit() and _is_our_xl(pid, item["uuid"])]


def _is_our_xl(pid, uuid):
    try:
        with open("/proc/%s/cmdline" % pid, "rb") as handle:
            argv = handle.read().split(b"\0")
    except OSError:
        return False
    return any(os.path.basename(arg) == b"xl" for arg in argv) and any(uuid.encode() in arg for arg in argv)


def test_a_truncated_image_is_refused_and_the_guest_unpaused(sim_runner):
    sim, runner = sim_runner
    run = runner.run([saved("trunc", ["trunc"])], module_defaults=runner.module_defaults)
    result = run["trunc"]
    assert result["failed"]
    (item,) = result["domains"]
    assert (item["error"]["kind"], item["error"]["phase"]) == ("bad_image", "check")
    heartbeat_goes_on(sim, "trunc")
    assert item["uuid"] not in sim.ledger_entries()
    assert not [name for name in image_files(runner.save_dir) if name.startswith(item["uuid"])]


def test_xl_is_the_simulated_one_found_on_path(sim_runner):
    sim, _runner = sim_runner
    first = sim.env["PATH"].split(os.pathsep)[0]
    assert os.path.realpath(first) == os.path.realpath(os.path.join(str(REPO), "tests", "xensim", "bin"))
