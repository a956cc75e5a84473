"""A domain_suspended run SIGKILLed on the dom0 (its own python process, found as the holder of
libxl's suspend locks of its domains: tests/xen/dom0/module_killer.py) must not cost any guest its
lifecycle: the next domain_resumed brings the guest back or leaves it running, xl's per-domain
monitor is not left stopped, and the guest's next reboot is handled (xl restarts it).

Where xl's monitor exits on a suspend (Xen 4.17) the collection stops it (SIGSTOP, /proc state
T) before the suspend request and continues it after the resume; a run killed in between leaves
it stopped. On Xen 4.20 xl keeps monitoring and the monitor is never stopped: there these tests
check that the guest comes back and that no monitor is stopped.

Two killed runs per flavour, each over several guests, then one domain_resumed over them (a
module-scoped fixture each); every test then judges one guest:
  1. killed after the guests suspended: the module saw them suspend but had not recorded it
     (the killer holds the ledger's writer lock, so it waits there and dies waiting);
  2. killed after the monitors were stopped and the requests sent, before any guest suspended
     (no guest can read, or its agent write, its ~/control/shutdown, so none can act on the
     request); then one guest answers late and suspends, one answers and keeps running (as a
     guest whose suspend fails does), one was notified on its event channel and keeps running,
     one never answers;
  3. as 2, and the guest reboots itself before anything runs again.
"""
import json
import re
import threading
import time
from pathlib import Path

import pytest

from xenbed.ansible_runner import AnsibleRunner
from xenbed.guests import create_guests, heartbeat, store_read
from xenbed.measurements import TIMINGS, record
from xenbed.module_calls import call_module

HERE = Path(__file__).resolve().parent
KILLER = (HERE / "dom0" / "module_killer.py").read_text()
REPO = HERE.parents[1]
# Our own ledger: nothing another test module leaves behind is resumed or recovered here.
LEDGER = "/var/lib/xen-suspend/kill-and-recover.json"
# domain_resumed waits this long for guests that answered a request to finish suspending
# (passed only when the module has the option, see resume_args)
SETTLE_TIMEOUT = 10
RESTART_TIMEOUT = 90   # a rebooting guest's kernel boots again under TCG, in dom0, in QEMU
RESTART_PROMPTLY = 30  # "within a few seconds" of domain_resumed, with room for a loaded host

AFTER_SUSPEND = {"kr-susp-xs": "xenstore", "kr-susp-ev": "evtchn"}
BEFORE_SUSPEND = {
    "kr-req-pending": "xenstore",   # never answers
    "kr-req-late": "xenstore",      # answers after the kill, and suspends
    "kr-req-answered": "xenstore",  # answers after the kill, and keeps running
    "kr-req-ev": "evtchn",          # was notified, keeps running
    "kr-reboot": "xenstore",        # reboots itself after the kill
}
ALL_GUESTS = dict(AFTER_SUSPEND, **BEFORE_SUSPEND)


def xl_stops_monitors(dom0):
    """Whether the collection stops xl's monitor across a suspend: xl < 4.20 exits on a suspend."""
    return {"4.17": True, "4.20": False}[dom0.image.xen_minor]


# -- helpers ----------------------------------------------------------------------------------

def wait_until(predicate, what, timeout=60, interval=0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out after %d s waiting until %s" % (timeout, what)
        time.sleep(interval)


def domid_of(dom0, name):
    result = dom0.ssh("xl domid %s" % name, check=False)
    return int(result.stdout) if result.rc == 0 else None


def xl_state(dom0, domid):
    """`xl list` state letters (r b p s c d) of the domain, or None when it is gone."""
    out = dom0.ssh("xl list %d" % domid, check=False).stdout.splitlines()
    return out[1].split()[4] if len(out) > 1 else None


def is_shut_down(state):
    return state is not None and state[3] == "s"


def monitor(dom0, name, domid):
    """{pid, state} of xl's monitor of the domain (state is the /proc letter, T = stopped)."""
    return json.loads(dom0.python(KILLER, "monitor", name, domid).stdout)


def snapshot(dom0, guests):
    """{name: {monitor, domain_state, domid_now}} of `guests`, in one round trip."""
    return json.loads(dom0.python(KILLER, "snapshot", *["%s:%d" % (g.name, g.domid) for g in guests]).stdout)


def is_stopped(found):
    return (found or {}).get("state") in ("T", "t")


def xl_log(dom0, name):
    return dom0.ssh("tail -n 30 /var/log/xen/xl-%s.log" % name, check=False).stdout


def let_guest_use_control_shutdown(dom0, guest, allowed):
    """Take away (or give back) the guest's access to its own ~/control/shutdown: without it the
    guest's kernel never sees a request there (xenstore method) and its agent cannot write the
    "suspend" that would make its kernel suspend (event-channel method)."""
    dom0.ssh("xenstore-chmod %s/control/shutdown %s" % (guest.path, "n%d" % guest.domid if allowed else "n0"))


def resume_args():
    """domain_resumed's settle_timeout, once the module has it (older code rejects it)."""
    text = (REPO / "plugins" / "modules" / "domain_resumed.py").read_text()
    return {"settle_timeout": SETTLE_TIMEOUT} if re.search(r"\bsettle_timeout\b", text) else {}


def resume(ansible, names, figures):
    started = time.monotonic()
    result = call_module(ansible, "domain_resumed", domains=list(names), ledger=LEDGER,
                         continue_on_error=True, **resume_args())
    figures["domain_resumed_s"] = round(time.monotonic() - started, 1)
    result.pop("_playbook_stdout", None)
    return result


def per_domain(result, name):
    found = [d for d in result.get("domains", []) if d.get("name") == name]
    return found[0] if found else None


def suspend_and_kill(dom0, ansible, guests, mode, figures, baselines=None):
    """Run domain_suspended on `guests` through ansible-playbook while the killer waits in dom0
    for the moment `mode` (see module_killer.py) and SIGKILLs the module's process there."""
    ready = "/tmp/kill-and-recover-%s.ready" % mode
    dom0.ssh("rm -f %s" % ready)
    options = {"mode": mode, "ledger": LEDGER, "ready": ready, "timeout": 150, "domains": [
        {"domid": g.domid, "name": g.name, "kind": g.kind, "baseline": (baselines or {}).get(g.name)}
        for g in guests]}
    done = {}

    def killer():
        done["run"] = dom0.python(KILLER, "kill", json.dumps(options), timeout=200, check=False)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    wait_until(lambda: dom0.ssh("test -e %s" % ready, check=False).rc == 0, "the killer watches",
               timeout=60, interval=0.2)
    started = time.monotonic()
    suspended = call_module(ansible, "domain_suspended", domains=[g.name for g in guests], ledger=LEDGER)
    figures["killed_run_s"] = round(time.monotonic() - started, 1)
    thread.join(220)
    run = done.get("run")
    assert run is not None and run.stdout.strip(), "the killer did not report: %r" % (run,)
    report = json.loads(run.stdout.strip().splitlines()[-1])
    figures["killer_events_s"] = report.get("events")
    playbook = suspended.pop("_playbook_stdout", "")
    assert report["killed"], "the killer missed its moment: %s\nmodule result: %s\n%s" % (
        json.dumps(report, indent=1), json.dumps(suspended, indent=1)[-3000:], playbook[-2000:])
    assert suspended.get("failed"), "the killed module reported success: %s" % suspended
    report["module_result"] = {k: suspended.get(k) for k in ("failed", "msg", "rc")}
    return report


def assert_runs_and_beats(dom0, name, domid):
    home = "/local/domain/%d" % domid
    state = xl_state(dom0, domid)
    assert state is not None and not is_shut_down(state), "%s is %r, not running" % (name, state)
    first = store_read(dom0, home + "/data/heartbeat")
    time.sleep(2)
    later = store_read(dom0, home + "/data/heartbeat")
    assert first and later and int(later) > int(first), \
        "%s's heartbeat did not advance (%r -> %r)" % (name, first, later)


def assert_monitor_running(dom0, name, domid, context=""):
    found = monitor(dom0, name, domid)
    assert found is not None, "no xl monitor for %s (domid %d)%s\n%s" % (name, domid, context, xl_log(dom0, name))
    assert not is_stopped(found), "xl's monitor of %s (pid %d) is left stopped (state %s)%s" % (
        name, found["pid"], found["state"], context)
    return found


def assert_reboot_handled(dom0, name, domid, figures):
    """The guest reboots itself (sysrq b through ~/control/sysrq); xl restarts it under its name."""
    dom0.ssh("xenstore-write /local/domain/%d/control/sysrq b" % domid)
    started = time.monotonic()
    new = wait_until(lambda: (domid_of(dom0, name) or domid) != domid and domid_of(dom0, name),
                     "xl restarted %s after its reboot" % name,
                     timeout=RESTART_TIMEOUT)
    figures["restart_after_reboot_s"] = round(time.monotonic() - started, 1)
    wait_until(lambda: (store_read(dom0, "/local/domain/%d/data/heartbeat" % new) or "").isdigit(),
               "the restarted %s beats" % name, timeout=RESTART_TIMEOUT)
    assert_monitor_running(dom0, name, new, " after the restart")
    return new


def assert_killed_while(dom0, report, name, suspended):
    """The kill came at the moment the scenario needs, for this guest: suspended or not, xl's
    monitor stopped where the collection stops it, and the module's entry not (yet) recording
    a suspend."""
    at_kill = report["at_kill"][name]
    assert is_shut_down(at_kill["domain_state"]) == suspended, at_kill
    assert is_stopped(at_kill["monitor"]) == xl_stops_monitors(dom0), "xl's monitor at the kill: %s" % at_kill
    assert at_kill["ledger_entry"] and at_kill["ledger_entry"].get("state") != "suspended", at_kill


def remember(dom0, request, figures):
    """Figures of one test, kept under kill_and_recover in the run's timing report."""
    flavour = dom0.image.flavour
    merged = dict(TIMINGS.get(flavour, {}).get("kill_and_recover", {}))
    merged[request.node.name] = figures
    record(flavour, kill_and_recover=merged)


# -- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ansible(dom0, tmp_path_factory):
    return AnsibleRunner(dom0, tmp_path_factory.mktemp("ansible"))


@pytest.fixture(scope="module")
def kr_guests(dom0):
    started = time.monotonic()
    made = create_guests(dom0, list(ALL_GUESTS.items()))
    record(dom0.image.flavour, kill_and_recover_guests_ready_s=round(time.monotonic() - started, 1))
    yield {g.name: g for g in made}
    # Destroy first, then continue whatever monitor a failing test left stopped: it then sees
    # its domain gone and exits, as it would have.
    names = " ".join(ALL_GUESTS)
    dom0.ssh("for g in %s; do xl destroy $g 2>/dev/null; done; "
             "for g in %s; do for p in $(sed -n 's/.*to die \\[pid \\([0-9]*\\)\\].*/\\1/p' "
             "/var/log/xen/xl-$g.log 2>/dev/null); do grep -qs xl /proc/$p/cmdline && kill -CONT $p; "
             "done; done; rm -f %s %s.lock" % (names, names, LEDGER, LEDGER), check=False, timeout=120)


@pytest.fixture(scope="module")
def killed_after_suspend(dom0, kr_guests, ansible):
    """Scenario 1: the killed run, then one domain_resumed over its guests."""
    figures = {}
    guests = [kr_guests[name] for name in AFTER_SUSPEND]
    report = suspend_and_kill(dom0, ansible, guests, "after_verify", figures)
    beats = {g.name: heartbeat(dom0, g) for g in guests}
    time.sleep(1.5)
    report["held_still"] = {g.name: heartbeat(dom0, g) == beats[g.name] for g in guests}
    resumed = resume(ansible, AFTER_SUSPEND, figures)
    record(dom0.image.flavour, kill_and_recover_after_suspend=figures)
    return report, resumed


@pytest.fixture(scope="module")
def killed_before_suspend(dom0, kr_guests, ansible):
    """Scenarios 2 and 3: the killed run, what each guest does then, one domain_resumed over
    them all, and a snapshot of the monitors right after it."""
    figures = {}
    guests = [kr_guests[name] for name in BEFORE_SUSPEND]
    baselines = {g.name: int(store_read(dom0, g.path + "/data/evtchn-notifications") or 0)
                 for g in guests if g.kind == "evtchn"}
    for guest in guests:
        let_guest_use_control_shutdown(dom0, guest, False)
    report = suspend_and_kill(dom0, ansible, guests, "on_request", figures, baselines)
    late, answered, notified, rebooting = (kr_guests[n] for n in
                                          ("kr-req-late", "kr-req-answered", "kr-req-ev", "kr-reboot"))
    # 3: the guest reboots itself while (on 4.17) nobody but its stopped monitor could handle it
    dom0.ssh("xenstore-write %s/control/sysrq b" % rebooting.path)
    rebooted_at = time.monotonic()
    # what a guest whose suspend fails after it answered leaves behind: an answer, no suspend
    dom0.ssh("xenstore-write %s/control/shutdown ''" % answered.path)
    for guest in (answered, notified, late):
        let_guest_use_control_shutdown(dom0, guest, True)
    # the late one now sees the request the dead run left pending, answers it and suspends
    wait_until(lambda: is_shut_down(xl_state(dom0, late.domid)), "kr-req-late suspended on the request "
               "it answered late", timeout=60)
    if xl_stops_monitors(dom0):
        wait_until(lambda: is_shut_down(xl_state(dom0, rebooting.domid)), "kr-reboot shut down to reboot")
        time.sleep(max(0.0, 3 - (time.monotonic() - rebooted_at)))
        report["reboot_held_by_stopped_monitor"] = (domid_of(dom0, rebooting.name) == rebooting.domid and
                                                    is_shut_down(xl_state(dom0, rebooting.domid)))
    else:
        wait_until(lambda: domid_of(dom0, rebooting.name) not in (None, rebooting.domid),
                   "xl restarted kr-reboot", timeout=RESTART_TIMEOUT)
    resumed = resume(ansible, BEFORE_SUSPEND, figures)
    resumed_at = time.monotonic()
    report["after_resume"] = snapshot(dom0, guests)
    kr_pending = kr_guests["kr-req-pending"]
    report["pending_request_after_resume"] = store_read(dom0, kr_pending.path + "/control/shutdown")
    # 3 is judged on how soon after domain_resumed xl restarted the rebooting guest
    report["restarted_after_resume_s"] = None
    while time.monotonic() - resumed_at < RESTART_PROMPTLY:
        if report["after_resume"]["kr-reboot"]["domid_now"] not in (None, rebooting.domid) or \
                domid_of(dom0, rebooting.name) not in (None, rebooting.domid):
            report["restarted_after_resume_s"] = round(time.monotonic() - resumed_at, 1)
            break
        time.sleep(0.5)
    let_guest_use_control_shutdown(dom0, kr_pending, True)
    record(dom0.image.flavour, kill_and_recover_before_suspend=figures)
    return report, resumed, resumed_at


# -- 1. killed after the guests suspended -----------------------------------------------------

@pytest.mark.parametrize("name", list(AFTER_SUSPEND), ids=list(AFTER_SUSPEND.values()))
def test_killed_after_the_guest_suspended(dom0, kr_guests, killed_after_suspend, request, name):
    report, resumed = killed_after_suspend
    figures = {}
    guest = kr_guests[name]
    assert_killed_while(dom0, report, name, suspended=True)
    assert report["held_still"][name], "heartbeat moved while suspended"
    mine = per_domain(resumed, name)
    assert mine and not mine.get("error") and name in resumed.get("resumed", []), \
        "domain_resumed did not resume %s: %s" % (name, json.dumps(resumed, indent=1)[-4000:])
    assert_runs_and_beats(dom0, name, guest.domid)
    assert_monitor_running(dom0, name, guest.domid, " after domain_resumed")
    assert_reboot_handled(dom0, name, guest.domid, figures)
    remember(dom0, request, figures)


# -- 2. killed after the monitors were stopped, before the guests suspended -------------------

@pytest.mark.parametrize("name", ["kr-req-pending", "kr-req-late", "kr-req-answered", "kr-req-ev"],
                         ids=["never-answers", "answers-and-suspends", "answers-and-keeps-running",
                              "evtchn-notified-keeps-running"])
def test_killed_before_the_guest_suspended(dom0, kr_guests, killed_before_suspend, request, name):
    report, resumed, _resumed_at = killed_before_suspend
    figures = {}
    guest = kr_guests[name]
    assert_killed_while(dom0, report, name, suspended=False)
    mine = per_domain(resumed, name)
    context = " after domain_resumed:\n%s" % json.dumps(mine, indent=1)
    figures["domain_resumed_error"] = (mine or {}).get("error")
    if name in ("kr-req-pending", "kr-req-late"):
        assert mine and not mine.get("error"), "domain_resumed failed on %s%s" % (name, context)
    right_after = report["after_resume"][name]
    assert not is_stopped(right_after["monitor"]), "xl's monitor of %s was left stopped: %s%s" % (
        name, right_after["monitor"], context)
    if name == "kr-req-pending":
        assert report["pending_request_after_resume"] != "suspend", "the dead run's request is still pending"
    assert_runs_and_beats(dom0, name, guest.domid)
    time.sleep(1)
    assert not is_shut_down(xl_state(dom0, guest.domid)), "%s suspended after domain_resumed" % name
    assert_monitor_running(dom0, name, guest.domid, context)
    assert_reboot_handled(dom0, name, guest.domid, figures)
    remember(dom0, request, figures)


# -- 3. the guest reboots while the killed run's monitor is stopped ---------------------------

def test_guest_reboot_while_the_killed_runs_monitor_is_stopped(dom0, kr_guests, killed_before_suspend, request):
    report, resumed, _resumed_at = killed_before_suspend
    name = "kr-reboot"
    guest = kr_guests[name]
    figures = {"domain_resumed_error": (per_domain(resumed, name) or {}).get("error")}
    assert_killed_while(dom0, report, name, suspended=False)
    if xl_stops_monitors(dom0):
        assert report["reboot_held_by_stopped_monitor"], \
            "the guest was restarted while its monitor was stopped: the scenario did not happen"
    figures["restarted_after_resume_s"] = report["restarted_after_resume_s"]
    new = domid_of(dom0, name)
    assert report["restarted_after_resume_s"] is not None and new not in (None, guest.domid), (
        "xl did not restart the rebooting guest within %d s of domain_resumed: it is %r, its monitor %s\n"
        "domain_resumed: %s\n%s" % (RESTART_PROMPTLY, xl_state(dom0, guest.domid), monitor(dom0, name, guest.domid),
                                    json.dumps(per_domain(resumed, name), indent=1),
                                    xl_log(dom0, name)))
    wait_until(lambda: (store_read(dom0, "/local/domain/%d/data/heartbeat" % new) or "").isdigit(),
               "the restarted guest beats", timeout=RESTART_TIMEOUT)
    assert_monitor_running(dom0, name, new, " after the restart")
    remember(dom0, request, figures)
