"""xl's monitor is frozen only once the intent (naming it) is in the ledger, continued at once
when the domain did not suspend, and left frozen while it is suspended until domain_resumed
continues it."""
import json

from ansible_collections.xen.suspend.plugins.module_utils._inventory import list_records
from ansible_collections.xen.suspend.plugins.module_utils._resume import ResumeEngine, plan_resume
from ansible_collections.xen.suspend.plugins.module_utils._suspend_engine import SuspendEngine
from ansible_collections.xen.suspend.plugins.module_utils._targets import (
    parse_selectors, select_targets)

from xen_fakes import World


class FakeMonitors(object):
    """Records every signal, and what the ledger held at the moment of freezing."""

    def __init__(self, ledger_path):
        self.ledger_path = ledger_path
        self.events = []
        self.ledger_when_frozen = None

    def find(self, domid, name):
        return {"toolstack": "xl", "pid": 1000 + domid, "start_time": 7, "state": "running"}

    def freeze(self, monitor):
        with open(self.ledger_path) as f:
            self.ledger_when_frozen = json.load(f)["entries"]
        self.events.append(("freeze", monitor["pid"]))
        return True

    def thaw(self, monitor):
        self.events.append(("thaw", monitor["pid"]))
        return True

    def state(self, monitor):
        frozen = [event for event in self.events if event[1] == monitor["pid"]][-1:]
        return "frozen" if frozen and frozen[0][0] == "freeze" else "running"


def backends_with_monitors(world, tmp_path):
    backends = world.backends(tmp_path)
    backends.monitors = FakeMonitors(str(tmp_path / "ledger" / "ledger.json"))
    return backends


def suspend(world, backends, **options):
    records = list_records(world.xenctrl, world.xenstore)
    targets = select_targets(records, parse_selectors(["*"])).targets
    return SuspendEngine(backends, **options).run(targets)


def test_frozen_after_the_intent_is_durable_and_thawed_by_resume(tmp_path):
    world = World()
    world.add_domain(3, "web1")
    backends = backends_with_monitors(world, tmp_path)
    report = suspend(world, backends)
    assert report.results[0]["error"] is None
    monitors = backends.monitors
    assert monitors.events == [("freeze", 1003)]
    entry = list(monitors.ledger_when_frozen.values())[0]
    assert entry["lifecycle_monitor"]["pid"] == 1003  # a crash now still leaves a way back
    assert report.results[0]["lifecycle_monitor"]["state"] == "frozen"

    records = list_records(world.xenctrl, world.xenstore)
    plan = plan_resume(records, backends.ledger.read(), parse_selectors([]))
    resumed = ResumeEngine(backends).run(plan)
    assert resumed.results[0]["error"] is None
    assert monitors.events == [("freeze", 1003), ("thaw", 1003)]
    assert resumed.results[0]["lifecycle_monitor"]["state"] == "running"


def test_thawed_at_once_when_the_guest_never_acknowledges(tmp_path):
    world = World()
    world.add_domain(4, "mute", behaviour="ignore")
    backends = backends_with_monitors(world, tmp_path)
    report = suspend(world, backends, ack_timeout=1, timeout=1)
    assert report.results[0]["error"]["phase"] == "acknowledge"
    assert backends.monitors.events == [("freeze", 1004), ("thaw", 1004)]


def test_check_mode_never_signals_the_monitor(tmp_path):
    world = World()
    world.add_domain(5, "web2")
    backends = backends_with_monitors(world, tmp_path)
    suspend(world, backends, check_mode=True)
    assert backends.monitors.events == []
