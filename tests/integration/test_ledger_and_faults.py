"""The ledger under failures: continue_on_error=false, a module killed mid-run, xenstored
restarting mid-run, a second maintenance cycle. The invariant checked everywhere: every guest the
simulator shows suspended by this collection is in the ledger, and a later domain_resumed run (a
separate ansible-playbook) brings back exactly the ledger's domains."""

import os
import signal
import stat
import time

from xsim_harness import PYTHON, XENSIM_ROOT, by_name, cmdline, descendants, wait_until


def suspended_names(sim):
    return sorted(n for n, d in sim.domains().items() if d["shutdown_code"] == 2)


def settled(sim):
    """No guest is between its acknowledgement and its suspend any more."""
    return not any(d.get("state") == "quiescing" for d in sim.domains().values())


def assert_ledger_covers_every_suspended_guest(sim):
    assert set(suspended_names(sim)) <= set(sim.ledger_names()), (
        "suspended but not in the ledger: %s" % sorted(set(suspended_names(sim)) - set(sim.ledger_names())))


def resume_everything_recorded(sim, runner):
    """A separate playbook run of domain_resumed (ledger only); returns its result."""
    recorded = sorted(sim.ledger_names())
    play = runner.run([{"xen.suspend.domain_resumed": {"continue_on_error": True}, "register": "resume"}])
    resume = play["resume"]
    assert not resume.get("failed"), play
    assert sorted(resume["resumed"] + resume["unchanged"]) == recorded, resume
    assert suspended_names(sim) == [], "still suspended after the resume: %s" % suspended_names(sim)
    assert sim.ledger_entries() == {}
    return resume


def heartbeats_advance(sim, names, wait=0.35):
    first = sim.heartbeats(names)
    time.sleep(wait)
    later = sim.heartbeats(names)
    return sorted(n for n in names if later[n] <= first[n])


# -- continue_on_error=false ---------------------------------------------------------------------

def test_first_failure_stops_new_suspends_and_resume_is_a_separate_run(make_sim):
    sim, runner = make_sim({
        "quiesce_ms": 150, "jitter_ms": 0, "heartbeat_ms": 100,
        "guests": [
            {"behaviour": "linux-pv", "name": "early", "quiesce_ms": 900},
            {"behaviour": "crash-on-suspend", "name": "crasher"},
            {"behaviour": "linux-pv", "count": 4, "name": "later"},
        ]})
    play = runner.run([{"xen.suspend.domain_suspended": {"domains": ["*"], "parallel": 2},
                        "register": "suspend"}])
    suspend = play["suspend"]
    assert suspend["failed"] is True, suspend
    assert "crasher" in suspend["msg"] and "could not be suspended" in suspend["msg"]
    result = by_name(suspend)
    # already under way when the crash came: finished
    assert result["early"]["changed"] is True and result["early"]["after"] == "suspended"
    assert result["crasher"]["error"]["kind"] == "unexpected_shutdown"
    for name in ("later-1", "later-2", "later-3", "later-4"):
        assert result[name]["error"]["kind"] == "not_attempted", result[name]
        assert sim.domains()[name]["counters"].get("requests", 0) == 0
    assert suspend["suspended"] == ["early"] and suspend["stats"]["attempted"] == 2
    assert sim.ledger_names() == ["early"] and suspended_names(sim) == ["early"]
    assert heartbeats_advance(sim, ["later-1", "later-2", "later-3", "later-4"]) == []

    resume = resume_everything_recorded(sim, runner)
    assert resume["resumed"] == ["early"]
    assert sim.domains()["crasher"]["shutdown_code"] == 3, "a failed guest must not be resumed"


def test_continue_on_error_attempts_everything(make_sim):
    sim, runner = make_sim({
        "quiesce_ms": 150, "jitter_ms": 0,
        "guests": [
            {"behaviour": "crash-on-suspend", "name": "crasher"},
            {"behaviour": "linux-pv", "count": 4, "name": "later"},
        ]})
    play = runner.run([{"xen.suspend.domain_suspended": {"domains": ["*"], "parallel": 1,
                                                         "continue_on_error": True},
                        "register": "suspend"}])
    suspend = play["suspend"]
    assert suspend["failed"] is False and suspend["failed_domains"] == ["crasher"], suspend
    assert sorted(suspend["suspended"]) == ["later-1", "later-2", "later-3", "later-4"]
    assert suspend["stats"]["attempted"] == 5
    assert sim.ledger_names() == sorted(suspend["suspended"])
    resume_everything_recorded(sim, runner)


# -- the ledger file --------------------------------------------------------------------------------

def test_ledger_is_private_and_matches_the_results(make_sim):
    sim, runner = make_sim({"quiesce_ms": 100, "jitter_ms": 20,
                            "guests": [{"behaviour": "linux-pv", "count": 3, "name": "g"},
                                       {"behaviour": "xenlinux", "name": "ev"},
                                       {"behaviour": "hvm-nopv", "name": "hvm"}]})
    play = runner.run([{"xen.suspend.domain_suspended": {"domains": ["*"]}, "register": "suspend"}])
    suspend = play["suspend"]
    assert suspend["changed"] is True and not suspend["failed"], play
    assert stat.S_IMODE(os.stat(sim.ledger).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(sim.ledger)).st_mode) == 0o700
    entries = sim.ledger_entries()
    for domain in suspend["domains"]:
        entry = entries[domain["uuid"]]
        assert entry["state"] == "suspended" and entry["method"] == domain["method"], entry
        assert entry["domid"] == domain["domid"] and entry["name"] == domain["name"]
        assert entry["resume_fast"] is (domain["method"] != "direct")
    # no temporary files left next to it
    leftovers = [f for f in os.listdir(os.path.dirname(sim.ledger))
                 if f not in ("ledger.json", "ledger.json.lock", "ledger.json.bak")]
    assert leftovers == []
    resume_everything_recorded(sim, runner)


def test_every_acknowledgement_is_seen(make_sim):
    sim, runner = make_sim({"quiesce_ms": 200, "jitter_ms": 50,
                            "guests": [{"behaviour": "linux-pv", "count": 24, "name": "g"}]})
    play = runner.run([{"xen.suspend.domain_suspended": {"domains": ["*"]}, "register": "suspend"}])
    suspend = play["suspend"]
    assert sorted(suspend["suspended"]) == sorted("g-%d" % i for i in range(1, 25)), play
    missed = sorted(d["name"] for d in suspend["domains"]
                    if "quiesce" not in d["phases"] or d["phases"]["acknowledge"] > 0.1)
    assert missed == [], "answers not seen (acknowledge phase lasted the whole suspend): %s" % missed
    resume_everything_recorded(sim, runner)


# -- the module killed mid-run ------------------------------------------------------------------

def kill_module(handle, module):
    """SIGKILL the module process of the running ansible-playbook (a process tree we started)."""
    proc = handle[0]
    victims = [pid for pid in descendants(proc.pid)
               if "AnsiballZ_%s" % module in cmdline(pid) and cmdline(pid).startswith(PYTHON)]
    assert victims, "module process not found"
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    return victims


def test_module_killed_mid_run_leaves_every_suspended_guest_in_the_ledger(make_sim):
    sim, runner = make_sim({
        "quiesce_ms": 200, "jitter_ms": 50, "heartbeat_ms": 100,
        "guests": [
            {"behaviour": "slow", "count": 6, "name": "slow", "quiesce_ms": 1200, "jitter_ms": 100,
             "params": {"ack_delay_ms": 200, "ack_jitter_ms": 50}},
            {"behaviour": "xenlinux", "count": 2, "name": "ev"},
            {"behaviour": "linux-pv", "count": 6, "name": "pv"},
        ]})
    handle = runner.start([{"xen.suspend.domain_suspended": {"domains": ["*"], "parallel": 6},
                            "register": "suspend"}], pipelining=False)
    # wait until the first batch has acknowledged and is quiescing, then kill the module
    wait_until(lambda: len(sim.ledger_entries()) >= 6, timeout=30, what="intent entries")
    wait_until(lambda: sum(d.get("state") == "quiescing" for d in sim.domains().values()) >= 4,
               timeout=10, what="guests quiescing")
    kill_module(handle, "domain_suspended")
    play = runner.wait(handle)
    assert "suspend" not in play.results or play.results["suspend"].get("failed"), play
    intents = sim.ledger_names(state="intent")
    assert len(intents) >= 4, sim.ledger_entries()
    wait_until(lambda: settled(sim), timeout=10, what="guests to finish quiescing")
    # the guests that acknowledged suspended after the module died: all of them are recorded
    assert len(suspended_names(sim)) >= 4
    assert_ledger_covers_every_suspended_guest(sim)
    untouched = [n for n, d in sim.domains().items() if d["domid"] and n not in sim.ledger_names()]
    assert untouched and all(sim.domains()[n]["counters"].get("requests", 0) == 0 for n in untouched)

    resume = resume_everything_recorded(sim, runner)
    assert set(resume["resumed"]) <= set(intents)
    assert heartbeats_advance(sim, [n for n in sim.domains() if n != "Domain-0"]) == []


def test_request_left_by_a_killed_run_is_withdrawn_by_resume(make_sim):
    """A domain_suspended killed after writing its request leaves an intent entry and a
    "suspend" the slow guest has not answered yet. Resuming means wanting the guest running:
    domain_resumed withdraws that request, so the guest never suspends later, unrecorded."""
    sim, runner = make_sim({"heartbeat_ms": 100, "guests": [
        {"behaviour": "slow", "name": "tardy", "quiesce_ms": 100, "jitter_ms": 0,
         "params": {"ack_delay_ms": 20000, "ack_jitter_ms": 0}}]})
    # (the slow guest's answer is timed from its boot, when its watch first fires; 8 s was
    # too short on a loaded host: it answered and suspended before domain_resumed ran)
    booted = time.monotonic()
    control = "/local/domain/%d/control/shutdown" % sim.domid("tardy")
    handle = runner.start([{"xen.suspend.domain_suspended": {"domains": ["tardy"], "ack_timeout": 30},
                            "register": "suspend"}], pipelining=False)
    wait_until(lambda: sim.xs_read(control) == b"suspend", timeout=30, what="the request")
    kill_module(handle, "domain_suspended")
    runner.wait(handle)
    assert sim.ledger_names(state="intent") == ["tardy"]
    play = runner.run([{"xen.suspend.domain_resumed": {}, "register": "resume"}])
    assert not play["resume"].get("failed"), play
    assert sim.xs_read(control) == b"", "the pending request was not withdrawn"
    assert sim.ledger_names() == []
    notes = " ".join(play["resume"]["domains"][0]["notes"])
    assert "withdrew" in notes, play["resume"]
    time.sleep(max(0.0, booted + 21 - time.monotonic()))  # past the moment the guest would have answered
    assert sim.domains()["tardy"]["shutdown_code"] is None, "the guest suspended after all"
    assert_ledger_covers_every_suspended_guest(sim)


# -- xenstored restarting ---------------------------------------------------------------------------

def test_xenstored_restart_mid_run(make_sim):
    sim, runner = make_sim({
        "quiesce_ms": 300, "jitter_ms": 100, "heartbeat_ms": 100,
        "guests": [
            {"behaviour": "slow", "count": 8, "name": "slow",
             "params": {"ack_delay_ms": 500, "ack_jitter_ms": 100}, "quiesce_ms": 300, "jitter_ms": 100},
            {"behaviour": "unresponsive", "name": "mute"},
            {"behaviour": "xenlinux", "count": 2, "name": "ev"},
        ]})
    handle = runner.start([{"xen.suspend.domain_suspended": {
        "domains": ["*"], "continue_on_error": True, "parallel": 4, "ack_timeout": 1.5, "timeout": 3},
        "register": "suspend"}])
    wait_until(lambda: len(sim.ledger_entries()) >= 4, timeout=30, what="intent entries")
    time.sleep(0.2)
    sim.fault("restart-xenstored", downtime=0.5)
    play = runner.wait(handle)
    suspend = play["suspend"]
    # the module survives and accounts for every domain, naming what went wrong and where
    assert suspend.get("failed") is False and len(suspend["domains"]) == 11, play
    # the client reconnected (re-registering its watches) instead of failing every later request
    assert suspend["stats"]["xenstore_reconnects"] >= 1, suspend["stats"]
    for domain in suspend["domains"]:
        if domain["error"] and domain["error"]["kind"] == "xenstore_connection_lost":
            # only a request in flight at the drop may fail, and it is never sent twice
            assert domain["error"]["phase"] in ("request", "acknowledge"), domain
    assert len(suspend["suspended"]) >= 8, suspend["domains"]  # slow-* and ev-* came through
    for domain in suspend["domains"]:
        if domain["error"]:
            assert domain["error"]["phase"] in ("request", "acknowledge", "quiesce"), domain
            assert domain["changed"] is False
        else:
            assert domain["after"] == "suspended"
    for name in ("ev-1", "ev-2"):  # the event channel path needs no xenstore after the lookup
        assert by_name(suspend)[name]["after"] == "suspended"
    wait_until(lambda: settled(sim), timeout=10, what="guests to finish quiescing")
    assert_ledger_covers_every_suspended_guest(sim)
    assert sorted(sim.ledger_names(state="suspended")) == sorted(suspend["suspended"])
    # no request is left pending in a guest that the ledger does not know about
    for name, domain in sim.domains().items():
        if domain["domid"] and name not in sim.ledger_names():
            value = sim.xs_read("/local/domain/%d/control/shutdown" % domain["domid"])
            assert value in (b"", None), (name, value)
    # xenstored is back: a new run resumes exactly the ledger
    resume_everything_recorded(sim, runner)
    assert heartbeats_advance(sim, [n for n in sim.domains() if n != "Domain-0"]) == []


def test_xenstored_restart_between_suspend_and_resume(make_sim):
    sim, runner = make_sim({"quiesce_ms": 100, "jitter_ms": 20,
                            "guests": [{"behaviour": "linux-pv", "count": 3, "name": "g"},
                                       {"behaviour": "xenlinux", "name": "ev"}]})
    play = runner.run([
        {"xen.suspend.domain_suspended": {"domains": ["*"]}, "register": "suspend"},
        {"ansible.builtin.command": {"argv": [PYTHON, "-m", "xensim", "fault", "--dir", sim.dir,
                                              "restart-xenstored", "--downtime", "0.3"]},
         "environment": {"PYTHONPATH": str(XENSIM_ROOT)},
         "register": "fault"},
        {"ansible.builtin.pause": {"seconds": 1}},
        {"xen.suspend.domain_resumed": {}, "register": "resume"},
    ])
    assert play["fault"]["rc"] == 0, play
    # a resume goes in the order of the ledger's intents, not by name: compare the sets
    assert sorted(play["resume"]["resumed"]) == sorted(play["suspend"]["suspended"]), play
    assert suspended_names(sim) == [] and sim.ledger_entries() == {}
    # xenstored kept its latches across the restart; XS_RESUME re-armed them: a guest's next
    # suspend is seen again
    again = runner.run([{"xen.suspend.domain_suspended": {"domains": ["g-1"]}, "register": "again"},
                        {"xen.suspend.domain_resumed": {}, "register": "back"}])
    assert again["again"]["suspended"] == ["g-1"] and again["back"]["resumed"] == ["g-1"], again


# -- a second maintenance cycle ---------------------------------------------------------------------

def test_second_cycle(make_sim):
    sim, runner = make_sim({"quiesce_ms": 100, "jitter_ms": 20, "heartbeat_ms": 100,
                            "guests": [{"behaviour": "linux-pv", "name": "linux"},
                                       {"behaviour": "xenlinux", "name": "xenlinux"},
                                       {"behaviour": "windows", "name": "windows"},
                                       {"behaviour": "hvm-nopv", "name": "hvm"}]})
    cycle = [{"xen.suspend.domain_suspended": {"domains": ["*"], "continue_on_error": True,
                                               "ack_timeout": 1.0, "timeout": 2}},
             {"xen.suspend.domain_resumed": {}}]
    tasks = []
    for n in (1, 2):
        tasks.append(dict(cycle[0], register="suspend%d" % n))
        tasks.append(dict(cycle[1], register="resume%d" % n))
    play = runner.run(tasks)
    first, second = by_name(play["suspend1"]), by_name(play["suspend2"])
    assert all(d["after"] == "suspended" for d in first.values()), first
    assert first["xenlinux"]["method"] == second["xenlinux"]["method"] == "event_channel"
    for name in ("linux", "xenlinux", "hvm", "windows"):
        assert second[name]["after"] == "suspended", second[name]
    # Windows PV drivers remove control/shutdown to answer. libxl's next request re-creates the
    # node owned by dom0, read-only to the guest, and goes unanswered; we re-create it as the
    # domain had it (owned by the guest), so every maintenance window works.
    assert any("re-created" in note for note in first["windows"]["notes"]), first["windows"]
    assert not sim.domains()["windows"]["counters"].get("ack_failed")
    assert sim.xs_read("/local/domain/%d/control/shutdown" % sim.domid("windows")) == b""
    assert sorted(play["resume2"]["resumed"]) == ["hvm", "linux", "windows", "xenlinux"]
    assert heartbeats_advance(sim, ["linux", "xenlinux", "windows"]) == []
    assert sim.ledger_entries() == {}
