"""domain_saved SIGKILLed in the middle of a guest's save, on the simulator: the guest is left
suspended under a live ``xl save`` with a ``saving`` entry. While that xl lives, no run judges the
guest (its claim goes on with xl, which inherited it); once xl is gone, the next run's recovery
gives the guest back running and removes the partial image and the entry."""

import os
import signal

from xsim_harness import PYTHON, cmdline, descendants, wait_until

SPEC = {
    "quiesce_ms": 60, "jitter_ms": 20, "heartbeat_ms": 100, "memory_mb": 64,
    "guests": [
        {"behaviour": "linux-pv", "name": "stall2", "xl_faults": {"stall_after": 100000}},
        {"behaviour": "linux-pv", "name": "other"},
    ],
}


def xl_pids_on(path):
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        argv = cmdline(int(entry)).split(" ")
        if any(os.path.basename(arg) == "xl" for arg in argv) and path in argv:
            pids.append(int(entry))
    return pids


def test_a_save_killed_mid_image_is_settled_once_its_xl_is_gone(make_sim):
    sim, runner = make_sim(SPEC)
    save_dir = os.path.join(sim.dir, "save")
    defaults = runner.defaults(save_dir=save_dir)
    handle = runner.start([{"xen.suspend.domain_saved": {"domains": ["stall2"], "timeout": 600},
                            "register": "killed"}], module_defaults=defaults, pipelining=False)
    wait_until(lambda: (sim.domains()["stall2"].get("xl_save") or {}).get("stage") == "stalled",
               timeout=60, what="xl stalled mid-save")
    victims = [pid for pid in descendants(handle[0].pid)
               if "AnsiballZ_domain_saved" in cmdline(pid) and cmdline(pid).startswith(PYTHON)]
    assert victims, "module process not found"
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    runner.wait(handle)

    (entry,) = sim.ledger_entries().values()
    assert (entry["name"], entry["state"]) == ("stall2", "saving")
    part = entry["image_part"]
    assert os.path.exists(part)
    assert sim.domains()["stall2"]["shutdown_code"] == 2  # suspended, xl still at it
    xl_pids = xl_pids_on(part)
    assert xl_pids, "the stalled xl save is gone"

    # While xl lives nobody judges the guest: recovery leaves it, a new save is refused.
    run = runner.run([{"xen.suspend.domain_saved": {"domains": ["stall2"]}, "register": "busy"}],
                     module_defaults=defaults)
    busy = run["busy"]
    assert busy["failed"]
    assert [a["action"] for a in busy["recovery"]["actions"]] == ["busy"]
    (item,) = busy["domains"]
    assert (item["error"]["kind"], item["error"]["phase"]) == ("busy", "lock")
    assert sim.ledger_entries()[entry["uuid"]]["state"] == "saving"
    assert sim.domains()["stall2"]["shutdown_code"] == 2

    for pid in xl_pids:  # the xl our killed run started
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not xl_pids_on(part), timeout=10, what="the killed xl to go")

    run = runner.run([{"xen.suspend.domain_saved": {"domains": ["other"]}, "register": "next"}],
                     module_defaults=defaults)
    following = run["next"]
    assert not following.get("failed"), run
    actions = dict((a["name"], a) for a in following["recovery"]["actions"])
    assert actions["stall2"]["action"] == "settled" and actions["stall2"]["reason"] == "save_abandoned"
    assert following["saved"] == ["other"]
    domain = sim.domains()["stall2"]
    assert domain["shutdown_code"] is None and domain["paused"] == 0
    first = domain["heartbeat"]
    wait_until(lambda: sim.domains()["stall2"]["heartbeat"] > first + 2, timeout=15,
               what="stall2's heartbeat to go on")
    assert entry["uuid"] not in sim.ledger_entries()
    assert not os.path.exists(part) and not os.path.exists(entry["image"])
