"""Never lose a guest: a guest that answered a suspend request is ours until it is running again,
whatever happens to the run that asked (it gives up, it is killed, another run resumes
meanwhile), and a suspend that somebody else did is never recorded as ours.

Each test drives the modules through ansible-playbook against a simulated dom0 (tests/xensim)
with guests that are late on purpose:

* ``late_suspender`` / ``late_suspender_evtchn`` answer at once but reach SCHEDOP_shutdown(suspend)
  only ``suspend_after_ms`` later;
* ``ack_if_still_suspend`` looks at its request only ``ack_delay_ms`` after it was written, and
  answers only if it is still there;
* the simulator's ``external_suspend`` admin op is another toolstack (``xl save`` on the xenstore
  or direct path, which takes no lock) suspending a domain.

The invariant everywhere: every guest the simulator shows suspended by us is in the ledger, and
whoever resumes the ledger brings back exactly those guests, once they have finished going down.
"""

import json
import os
import signal
import time

import pytest

from xsim_harness import PYTHON, by_name, cmdline, descendants, wait_until

SHUTDOWN_SUSPEND = 2


# -- helpers --------------------------------------------------------------------------------------

def show(value):
    """Assertion messages in full (pytest would abbreviate a dict)."""
    return json.dumps(value, indent=1, sort_keys=True, default=str)


def suspended_names(sim):
    return sorted(n for n, d in sim.domains().items() if d["shutdown_code"] == SHUTDOWN_SUSPEND)


def guests(sim):
    return dict((n, d) for n, d in sim.domains().items() if d["domid"] != 0)


def control(sim, name):
    return sim.xs_read("/local/domain/%d/control/shutdown" % sim.domid(name))


def entry_of(sim, name):
    """The ledger entry of the guest called ``name`` (None when it has none)."""
    found = [e for e in sim.ledger_entries().values() if e.get("name") == name]
    assert len(found) <= 1, found
    return found[0] if found else None


def names_of(items):
    """A result list of names, or of dicts with a name, as sorted names."""
    return sorted(item if isinstance(item, str) else item.get("name") for item in items or [])


def kill_module(handle, module, required=True):
    """SIGKILL the module process of the running ansible-playbook (a process tree we started)."""
    proc = handle[0]
    victims = [pid for pid in descendants(proc.pid)
               if "AnsiballZ_%s" % module in cmdline(pid) and cmdline(pid).startswith(PYTHON)]
    assert victims or not required, "module process not found"
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    return victims


def heartbeats_advance(sim, names, wait=0.35):
    """Names of the guests whose heartbeat did NOT advance (i.e. not running)."""
    first = sim.heartbeats(names)
    time.sleep(wait)
    later = sim.heartbeats(names)
    return sorted(n for n in names if later[n] <= first[n])


# -- case 1: a guest that answered but suspends after the module gave up ----------------------------

@pytest.mark.parametrize("behaviour,method", [("late_suspender", "xenstore"),
                                              ("late_suspender_evtchn", "event_channel")])
def test_late_suspend_after_timeout_stays_in_the_ledger_and_is_resumed(make_sim, behaviour, method):
    sim, runner = make_sim({
        "heartbeat_ms": 100,
        "guests": [{"behaviour": behaviour, "name": "late", "params": {"suspend_after_ms": 3000}}]})
    play = runner.run([{"xen.suspend.domain_suspended": {
        "domains": ["late"], "timeout": 1, "continue_on_error": True}, "register": "suspend"}])
    suspend = play["suspend"]
    result = by_name(suspend)["late"]
    assert result["method"] == method, show(result)
    assert result["error"] is not None and result["error"]["kind"] == "timeout", show(result)
    assert result["changed"] is False, show(result)
    assert suspend["failed_domains"] == ["late"], show(suspend)
    # The guest answered: it will suspend on its own. Its entry must stay, or it is lost.
    entry = entry_of(sim, "late")
    assert entry is not None, (
        "the ledger lost a guest that answered and is still going down: %s; %s"
        % (sim.ledger_entries(), result))
    assert entry["state"] == "intent", show(entry)

    wait_until(lambda: suspended_names(sim) == ["late"], timeout=15, what="the late suspend")
    entry = entry_of(sim, "late")
    assert entry is not None, "suspended now, but not in the ledger: %s" % sim.ledger_entries()

    play = runner.run([{"xen.suspend.domain_resumed": {}, "register": "resume"}])
    resume = play["resume"]
    assert not resume.get("failed"), show(resume)
    assert resume["resumed"] == ["late"], show(resume)
    assert suspended_names(sim) == [] and guests(sim)["late"]["shutdown_code"] is None
    assert heartbeats_advance(sim, ["late"]) == []
    assert sim.ledger_entries() == {}


# -- case 2: the suspend run is killed while guests are on their way down ---------------------------

def test_resume_right_after_a_killed_suspend_waits_for_answered_guests(make_sim):
    answered = ["late-1", "late-2", "late-3", "late-4", "reread"]
    unanswered = ["tardy-1", "tardy-2"]
    sim, runner = make_sim({
        "quiesce_ms": 200, "jitter_ms": 50, "heartbeat_ms": 100,
        "guests": [
            # answer at once, reach the suspend hypercall 8-9 s later
            {"behaviour": "late_suspender", "count": 4, "name": "late",
             "params": {"suspend_after_ms": 8000, "suspend_jitter_ms": 500}},
            # same, slow to quiesce, and re-reads control/shutdown after any resume: a "suspend"
            # left there by anybody would make it go down again
            {"behaviour": "rereads_after_resume", "name": "reread", "quiesce_ms": 8000,
             "jitter_ms": 500},
            # look at the request only 30 s after it was written, if it is still there
            {"behaviour": "ack_if_still_suspend", "count": 2, "name": "tardy",
             "params": {"ack_delay_ms": 30000}},
        ]})
    handle = runner.start([{"xen.suspend.domain_suspended": {
        "domains": ["*"], "ack_timeout": 60, "timeout": 60, "continue_on_error": True},
        "register": "suspend"}], pipelining=False)
    try:
        wait_until(lambda: len(sim.ledger_entries()) == 7, timeout=60, what="every intent entry")
        wait_until(lambda: all(guests(sim)[n].get("state") == "quiescing" for n in answered),
                   timeout=15, what="the answered guests going down")
        wait_until(lambda: all(control(sim, n) == b"suspend" for n in unanswered),
                   timeout=15, what="the unanswered requests")
        kill_module(handle, "domain_suspended")
    finally:
        kill_module(handle, "domain_suspended", required=False)
        runner.wait(handle)
    assert suspended_names(sim) == [], "too slow a start: guests already suspended at the kill"
    assert sorted(sim.ledger_names()) == sorted(answered + unanswered), show(sim.ledger_entries())

    play = runner.run([{"xen.suspend.domain_resumed": {"settle_timeout": 30}, "register": "resume"}])
    resume = play["resume"]
    assert not resume.get("failed"), show(resume)
    result = by_name(resume)
    for name in answered:
        # never "already running" while it is still on its way down
        assert name in resume["resumed"], show([name, result.get(name), resume["resumed"]])
        assert result[name]["changed"] is True and result[name]["error"] is None, show(result[name])
    assert names_of(resume.get("withdrawn")) == sorted(unanswered), show(resume)
    assert not set(unanswered) & set(resume["resumed"]), show(resume["resumed"])
    assert sorted(resume["resumed"]) == sorted(answered), show(resume["resumed"])
    assert suspended_names(sim) == [], "still suspended after the resume: %s" % suspended_names(sim)

    time.sleep(3)  # nothing goes down afterwards: no request left behind anywhere
    assert suspended_names(sim) == [], "suspended after the resume: %s" % suspended_names(sim)
    assert sim.ledger_entries() == {}
    for name in answered + unanswered:
        assert control(sim, name) in (b"", None), (name, control(sim, name))
    assert heartbeats_advance(sim, answered + unanswered) == []


# -- case 3: a resume run while a suspend run is live -----------------------------------------------

def start_suspend_of_a_slow_answerer(make_sim, name):
    """A dom0 with one guest that looks at a request 8 s after it was written, and a
    domain_suspended run (in the background) waiting for it."""
    sim, runner = make_sim({
        "quiesce_ms": 200, "jitter_ms": 0, "heartbeat_ms": 100,
        "guests": [{"behaviour": "ack_if_still_suspend", "name": name,
                    "params": {"ack_delay_ms": 8000}}]})
    handle = runner.start([{"xen.suspend.domain_suspended": {
        "domains": [name], "ack_timeout": 30, "timeout": 10}, "register": "suspend"}])
    return sim, runner, handle


def test_resume_leaves_a_domain_alone_while_a_live_suspend_holds_it(make_sim):
    sim, runner, handle = start_suspend_of_a_slow_answerer(make_sim, "pondering")
    try:
        wait_until(lambda: control(sim, "pondering") == b"suspend", timeout=60, what="the request")
        resume_play = runner.run([{"xen.suspend.domain_resumed": {}, "register": "resume"}])
        counters_after_resume = dict(guests(sim)["pondering"]["counters"])
    finally:
        suspend_play = runner.wait(handle)
    resume = resume_play["resume"]
    result = by_name(resume).get("pondering")
    assert result is not None, show(resume)
    assert result["error"] is not None and result["error"]["kind"] == "busy", show(result)
    assert result["changed"] is False, show(result)
    assert "pondering" not in resume["resumed"], show(resume)
    assert "pondering" not in names_of(resume.get("withdrawn")), show(resume)
    assert not counters_after_resume.get("requests_gone"), (
        "the resume withdrew the live run's request: %s" % counters_after_resume)

    suspend = suspend_play["suspend"]
    live = by_name(suspend)["pondering"]
    assert live["error"] is None and live["changed"] is True, show(live)
    assert live["after"] == "suspended" and suspend["suspended"] == ["pondering"], show(suspend)
    assert suspended_names(sim) == ["pondering"]
    assert entry_of(sim, "pondering")["state"] == "suspended", show(sim.ledger_entries())


# -- case 4: somebody else suspends the domain while our request waits ------------------------------

def test_suspend_by_another_toolstack_is_not_recorded_as_ours(make_sim):
    sim, runner, handle = start_suspend_of_a_slow_answerer(make_sim, "shared")
    try:
        wait_until(lambda: control(sim, "shared") == b"suspend" and entry_of(sim, "shared"),
                   timeout=60, what="our request")
        time.sleep(0.3)
        sim.admin("external_suspend", domid=sim.domid("shared"))  # xl save: no lock, no request
    finally:
        play = runner.wait(handle)
    suspend = play["suspend"]
    result = by_name(suspend)["shared"]
    assert result["error"] is not None and result["error"]["kind"] == "suspended_by_other", show(result)
    assert result["changed"] is False, show(result)
    assert suspend["suspended"] == [] and suspend["failed_domains"] == ["shared"], show(suspend)
    assert entry_of(sim, "shared") is None, (
        "another tool's suspend recorded as ours: %s" % sim.ledger_entries())
    assert control(sim, "shared") in (b"", None), "our request was left pending"
    # not ours to resume either: the other toolstack is still working on it
    assert suspended_names(sim) == ["shared"]
    assert guests(sim)["shared"]["counters"].get("external_suspends") == 1


# -- case 6: SIGTERM (an AWX cancel), SIGHUP (a closed SSH session) end a run cleanly ----------

@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_ends_the_suspend_cleanly(make_sim, signum):
    answered = ["late-1", "late-2"]
    unanswered = ["tardy-1", "tardy-2"]
    sim, runner = make_sim({
        "quiesce_ms": 200, "jitter_ms": 50, "heartbeat_ms": 100,
        "guests": [
            {"behaviour": "late_suspender", "count": 2, "name": "late",
             "params": {"suspend_after_ms": 4000}},
            {"behaviour": "ack_if_still_suspend", "count": 2, "name": "tardy",
             "params": {"ack_delay_ms": 30000}},
        ]})
    handle = runner.start([{"xen.suspend.domain_suspended": {
        "domains": ["*"], "ack_timeout": 60, "timeout": 60, "continue_on_error": True},
        "register": "suspend"}], pipelining=False)
    try:
        wait_until(lambda: all(control(sim, n) == b"suspend" for n in unanswered)
                   and all(guests(sim)[n].get("state") == "quiescing" for n in answered),
                   timeout=30, what="requests out, two of them answered")
        proc = handle[0]
        victims = [pid for pid in descendants(proc.pid)
                   if "AnsiballZ_domain_suspended" in cmdline(pid) and cmdline(pid).startswith(PYTHON)]
        assert victims, "module process not found"
        started = time.monotonic()
        for pid in victims:
            os.kill(pid, signum)
        play = runner.wait(handle)
        took = time.monotonic() - started
    finally:
        kill_module(handle, "domain_suspended", required=False)
    suspend = play["suspend"]
    assert suspend.get("failed") is True and suspend["interrupted"] == signal.Signals(signum).name, \
        show(suspend)
    assert took < 10, took  # not the 60 s timeouts
    result = by_name(suspend)
    for name in answered + unanswered:
        assert result[name]["error"]["kind"] == "interrupted", show(result[name])
    # unanswered: withdrawn and forgotten; answered: still recorded, they will suspend
    for name in unanswered:
        assert control(sim, name) in (b"", None) and entry_of(sim, name) is None, name
    for name in answered:
        assert entry_of(sim, name)["state"] == "intent", show(sim.ledger_entries())
    wait_until(lambda: suspended_names(sim) == answered, timeout=15, what="the late suspends")
    play = runner.run([{"xen.suspend.domain_resumed": {}, "register": "resume"}])
    assert sorted(play["resume"]["resumed"]) == answered, show(play["resume"])
    assert suspended_names(sim) == [] and sim.ledger_entries() == {}
    assert heartbeats_advance(sim, answered + unanswered) == []


# -- concurrency: runs on overlapping targets -------------------------------------------------

def test_overlapping_runs_never_disturb_each_other(make_sim):
    """Two suspends on overlapping targets, then two resumes at once: every guest is suspended
    once and resumed once; the run that finds a domain busy (or already done) leaves it alone."""
    sim, runner = make_sim({
        "quiesce_ms": 300, "jitter_ms": 100, "heartbeat_ms": 100,
        "guests": [
            {"behaviour": "slow", "count": 6, "name": "slow",
             "params": {"ack_delay_ms": 700, "ack_jitter_ms": 200}},
            {"behaviour": "xenlinux", "count": 2, "name": "ev"},
        ]})
    everyone = sorted(guests(sim))
    first = runner.start([{"xen.suspend.domain_suspended": {
        "domains": ["*"], "continue_on_error": True}, "register": "suspend"}])
    second = runner.start([{"xen.suspend.domain_suspended": {
        "domains": ["slow-1", "slow-2", "slow-3", "ev-1"], "continue_on_error": True},
        "register": "suspend"}])
    results = [runner.wait(first)["suspend"], runner.wait(second)["suspend"]]
    suspended_by = [name for result in results for name in result["suspended"]]
    assert sorted(suspended_by) == everyone, show(results)  # each one exactly once
    for result in results:
        for item in result["domains"]:
            if item["error"] is not None:
                assert item["error"]["kind"] == "busy", show(item)
    assert suspended_names(sim) == everyone
    assert sorted(sim.ledger_names(state="suspended")) == everyone, show(sim.ledger_entries())

    one = runner.start([{"xen.suspend.domain_resumed": {"continue_on_error": True},
                         "register": "resume"}])
    other = runner.start([{"xen.suspend.domain_resumed": {"continue_on_error": True},
                           "register": "resume"}])
    results = [runner.wait(one)["resume"], runner.wait(other)["resume"]]
    resumed_by = [name for result in results for name in result["resumed"]]
    assert sorted(resumed_by) == everyone, show(results)  # each one exactly once
    for result in results:
        for item in result["domains"]:
            assert item["error"] is None or item["error"]["kind"] == "busy", show(item)
    assert suspended_names(sim) == [] and sim.ledger_entries() == {}
    assert heartbeats_advance(sim, everyone) == []
