"""domain_suspended / domain_resumed / domain_info on a real Xen dom0, driven by ansible-playbook
over SSH as users drive them, on Xen 4.17 and Xen 4.20."""
import time

import pytest

from xenbed.ansible_runner import AnsibleRunner
from xenbed.guests import create_guests, heartbeat, store_read
from xenbed.measurements import record
from xenbed.module_calls import call_module

LEDGER = "/var/lib/xen-suspend/ledger.json"


@pytest.fixture(scope="module")
def guests(dom0):
    made = create_guests(dom0, [("mod-xs", "xenstore"), ("mod-ev", "evtchn"), ("mod-mute", "xenstore")])
    yield {g.name: g for g in made}
    dom0.ssh("for g in mod-xs mod-ev mod-mute; do xl destroy $g; done", check=False)


@pytest.fixture(scope="module")
def ansible(dom0, tmp_path_factory):
    return AnsibleRunner(dom0, tmp_path_factory.mktemp("ansible"))


def per_domain(result, name):
    matches = [d for d in result["domains"] if d["name"] == name]
    assert len(matches) == 1, result
    return matches[0]


def xl_state(dom0, name):
    line = dom0.ssh("xl list %s" % name).stdout.splitlines()[1]
    return line.split()[4]


def assert_frozen_then_beating(dom0, guest, frozen):
    first = heartbeat(dom0, guest)
    time.sleep(2)
    later = heartbeat(dom0, guest)
    if frozen:
        assert later == first, "heartbeat moved while suspended"
    else:
        assert later > first, "heartbeat did not advance"


@pytest.mark.parametrize("name,method", [("mod-xs", "xenstore"), ("mod-ev", "event_channel")])
def test_suspend_then_resume_round_trip(dom0, guests, ansible, name, method):
    guest = guests[name]
    flavour = dom0.image.flavour

    # check mode: reports the change, touches nothing
    checked = call_module(ansible, "domain_suspended", check=True, diff=True, domains=[name])
    assert not checked.get("failed"), checked
    assert checked["changed"] is True
    assert "s" not in xl_state(dom0, name)[3]
    assert_frozen_then_beating(dom0, guest, frozen=False)

    suspended = call_module(ansible, "domain_suspended", diff=True, domains=[name], ledger=LEDGER)
    assert not suspended.get("failed"), suspended
    assert suspended["changed"] is True
    entry = per_domain(suspended, name)
    assert entry["method"] == method
    assert entry["after"] == "suspended"
    assert suspended["diff"], "diff mode shows before/after"
    assert xl_state(dom0, name)[3] == "s"
    assert_frozen_then_beating(dom0, guest, frozen=True)

    again = call_module(ansible, "domain_suspended", domains=[name], ledger=LEDGER)
    assert not again.get("failed") and again["changed"] is False, again
    assert name in again["unchanged"]

    info = call_module(ansible, "domain_info", domains=[name], ledger=LEDGER)
    assert per_domain(info, name)["state"] == "suspended"
    assert per_domain(info, name)["ledger"], "the ledger entry is shown"

    resumed = call_module(ansible, "domain_resumed", diff=True, ledger=LEDGER)
    assert not resumed.get("failed"), resumed
    assert resumed["changed"] is True
    assert per_domain(resumed, name)["after"] in ("running", "blocked")
    assert_frozen_then_beating(dom0, guest, frozen=False)

    record(flavour, **{"module_%s" % method: {
        "suspend_phases_s": entry.get("phases"), "resume_phases_s": per_domain(resumed, name).get("phases"),
        "xenstore_round_trips": entry.get("xenstore_round_trips")}})


def test_guest_that_never_acknowledges_is_cancelled_and_never_suspends(dom0, guests, ansible):
    guest = guests["mod-mute"]
    node = guest.path + "/control/shutdown"
    # The guest's kernel can no longer read its own control/shutdown, so it never sees, let
    # alone answers, the request: to the toolstack it is a guest that does not respond.
    dom0.ssh("xenstore-chmod %s n0" % node)
    try:
        result = call_module(ansible, "domain_suspended", domains=["mod-mute"], ack_timeout=3,
                             timeout=3, ledger=LEDGER)
        assert store_read(dom0, node) == "", "the request was not withdrawn"
    finally:
        dom0.ssh("xenstore-chmod %s n%d" % (node, guest.domid))
    assert result.get("failed"), result
    entry = per_domain(result, "mod-mute")
    assert entry["error"]["phase"] == "acknowledge", entry
    assert "mod-mute" in result["msg"] and "acknowledge" in result["msg"]
    time.sleep(3)
    assert xl_state(dom0, "mod-mute")[3] != "s", "the guest suspended late"
    assert_frozen_then_beating(dom0, guest, frozen=False)
    info = call_module(ansible, "domain_info", domains=["mod-mute"], ledger=LEDGER)
    assert not per_domain(info, "mod-mute")["ledger"], "a guest that never suspended stays out of the ledger"


def test_paused_domain_is_refused_before_anything_is_written(dom0, guests, ansible):
    dom0.ssh("xl pause mod-mute")
    try:
        result = call_module(ansible, "domain_suspended", domains=["mod-mute"], ledger=LEDGER)
        assert store_read(dom0, guests["mod-mute"].path + "/control/shutdown") == ""
    finally:
        dom0.ssh("xl unpause mod-mute")
    assert result.get("failed"), result
    assert per_domain(result, "mod-mute")["error"]["phase"] == "lookup"
    assert "paused" in result["msg"]


@pytest.mark.parametrize("args,words", [
    ({"domains": ["no-such-domain"]}, ["no-such-domain"]),
    ({"domains": ["Domain-0"]}, ["Domain-0"]),
    ({"domains": ["0"]}, ["0"]),
    ({"domains": ["mod-xs"], "method": "telepathy"}, ["method"]),
    ({"domains": ["mod-xs"], "timeout": -1}, ["timeout"]),
    ({"domains": ["mod-xs", "no-such-domain"]}, ["no-such-domain"]),
], ids=["unknown", "dom0-by-name", "dom0-by-id", "bad-method", "negative-timeout", "one-bad-of-two"])
def test_bad_input_is_refused_and_nothing_is_touched(dom0, guests, ansible, args, words):
    result = call_module(ansible, "domain_suspended", ledger=LEDGER, **args)
    assert result.get("failed"), result
    for word in words:
        assert word in result["msg"], result["msg"]
    assert "s" != xl_state(dom0, "mod-xs")[3]
    assert_frozen_then_beating(dom0, guests["mod-xs"], frozen=False)
