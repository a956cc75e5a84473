"""What the modules refuse, and that a refusal touches nothing: dom0, protected domains, unknown
targets, paused, shut down, busy (libxl's suspend lock held), suspended by another tool, bad
options, methods forced onto guests that cannot use them. Then the forced methods that do work,
and force_unrecorded. One simulator, one playbook."""

import json
import os

import pytest

from xsim_harness import PYTHON, XENSIM_ROOT, by_name

SPEC = {
    "quiesce_ms": 150, "jitter_ms": 50, "heartbeat_ms": 1000,
    "guests": [
        {"behaviour": "linux-pv", "name": "web-a"},
        {"behaviour": "linux-pv", "name": "web-b"},
        {"behaviour": "linux-pv", "name": "db-1"},
        {"behaviour": "linux-pv", "name": "paused"},
        {"behaviour": "linux-pv", "name": "crashed"},
        {"behaviour": "linux-pv", "name": "locked"},
        {"behaviour": "linux-pv", "name": "saving"},
        {"behaviour": "linux-pvh", "name": "pvh"},
        {"behaviour": "hvm-nopv", "name": "hvm-nopv"},
        {"behaviour": "hvm-pv", "name": "hvm-pv"},
        {"behaviour": "xenlinux", "name": "xenlinux"},
    ],
}

BAD = "00000000-0000-4000-8000-000000000999"

# register -> (module, args); each must fail and touch nothing
REFUSED = {
    "dom0_name": ("domain_suspended", {"domains": ["Domain-0"]}),
    "dom0_domid": ("domain_suspended", {"domains": ["0"]}),
    "dom0_prefixed": ("domain_suspended", {"domains": ["domid:0"]}),
    "protected_explicit": ("domain_suspended", {"domains": ["db-1"], "protected": ["db-*"]}),
    "unknown_name": ("domain_suspended", {"domains": ["nosuch"]}),
    "unknown_domid": ("domain_suspended", {"domains": ["999"]}),
    "unknown_uuid": ("domain_suspended", {"domains": [BAD]}),
    "unknown_among_good": ("domain_suspended", {"domains": ["web-a", "nosuch"]}),
    "paused_among_good": ("domain_suspended", {"domains": ["web-a", "paused", "web-b"]}),
    "shut_down": ("domain_suspended", {"domains": ["crashed"]}),
    "busy": ("domain_suspended", {"domains": ["locked"]}),
    "unrecorded": ("domain_suspended", {"domains": ["saving"]}),
    "bad_parallel": ("domain_suspended", {"domains": ["web-a"], "parallel": -1}),
    "bad_timeout": ("domain_suspended", {"domains": ["web-a"], "ack_timeout": -1}),
    "bad_method": ("domain_suspended", {"domains": ["web-a"], "method": "bogus"}),
    "empty_domains": ("domain_suspended", {"domains": []}),
    "direct_on_pv": ("domain_suspended", {"domains": ["web-a"], "method": "direct"}),
    "direct_on_pvh": ("domain_suspended", {"domains": ["pvh"], "method": "direct"}),
    "evtchn_without_channel": ("domain_suspended", {"domains": ["web-a"], "method": "event_channel"}),
    "xenstore_without_pv_drivers": ("domain_suspended", {"domains": ["hvm-nopv"], "method": "xenstore"}),
    "resume_unrecorded": ("domain_resumed", {"domains": ["saving"]}),
    "resume_dom0": ("domain_resumed", {"domains": ["Domain-0"]}),
    "resume_unknown": ("domain_resumed", {"domains": ["nosuch"]}),
    "resume_bad_timeout": ("domain_resumed", {"timeout": 0}),
    "corrupt_ledger_suspend": ("domain_suspended", {"domains": ["web-a"], "ledger": "{{ corrupt_ledger }}"}),
    "corrupt_ledger_resume": ("domain_resumed", {"ledger": "{{ corrupt_ledger }}"}),
}
CORRUPT = '{"format": "xen.suspend.ledger", "version": 1, "entries": {"abc'   # truncated

# register -> (error kind, phase) for refusals that name a domain and a phase
PER_DOMAIN = {
    "paused_among_good": ("paused", "lookup", "paused"),
    "shut_down": ("not_running", "lookup", "crashed"),
    "busy": ("busy", "lock", "locked"),
    "unrecorded": ("unrecorded_suspend", "lookup", "saving"),
    "direct_on_pv": ("method_unavailable", "lookup", "web-a"),
    "direct_on_pvh": ("method_unavailable", "lookup", "pvh"),
    "evtchn_without_channel": ("method_unavailable", "lookup", "web-a"),
    "xenstore_without_pv_drivers": ("method_unavailable", "lookup", "hvm-nopv"),
}


def snapshot(sim, register):
    return {"ansible.builtin.command": {"argv": [PYTHON, "-m", "xensim", "list", "--dir", sim.dir, "--json"]},
            "environment": {"PYTHONPATH": str(XENSIM_ROOT)}, "changed_when": False, "register": register}


@pytest.fixture(scope="module")
def refusals(make_module_sim):
    sim, runner = make_module_sim(SPEC)
    sim.fault("pause", "paused")
    sim.fault("crash", "crashed")
    sim.fault("lock", "locked")
    sim.fault("shutdown", "saving", reason="suspend")
    before = sim.domains()
    corrupt = os.path.join(sim.dir, "corrupt", "ledger.json")
    os.makedirs(os.path.dirname(corrupt), mode=0o700)
    with open(corrupt, "w") as handle:
        handle.write(CORRUPT)
    tasks = [{"xen.suspend.%s" % module: args, "register": name, "vars": {"corrupt_ledger": corrupt}}
             for name, (module, args) in sorted(REFUSED.items())]
    tasks += [
        {"xen.suspend.domain_suspended": {"domains": ["db-*", "web-a"], "protected": ["db-*"]},
         "check_mode": True, "register": "protected_pattern"},
        {"xen.suspend.domain_resumed": {}, "register": "resume_empty_ledger"},
        {"xen.suspend.domain_suspended": {"domains": ["*"], "exclude": ["web-*", "domid:%d" % before["pvh"]["domid"]]},
         "check_mode": True, "register": "exclude_check"},
        snapshot(sim, "after_refusals"),
        {"ansible.builtin.stat": {"path": sim.ledger}, "register": "ledger_after_refusals"},
        # forced methods that can work
        {"xen.suspend.domain_suspended": {"domains": ["xenlinux"], "method": "xenstore"},
         "register": "xenstore_on_xenlinux"},
        {"xen.suspend.domain_suspended": {"domains": ["hvm-pv"], "method": "direct"},
         "register": "direct_on_hvm_pv"},
        # a recorded domain that is protected at resume time is left alone
        {"xen.suspend.domain_resumed": {"protected": ["xenlinux"]}, "register": "resume_protected"},
        {"xen.suspend.domain_resumed": {"domains": ["saving"], "force_unrecorded": True},
         "register": "resume_forced"},
        {"xen.suspend.domain_resumed": {}, "register": "resume_rest"},
        snapshot(sim, "after_all"),
    ]
    play = runner.run(tasks)
    return sim, before, play


def states(play, key):
    return dict((d["name"], d) for d in json.loads(play[key]["stdout"]))


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_and_nothing_touched(refusals, name):
    sim, before, play = refusals
    result = play[name]
    assert result.get("failed") is True, (name, result)
    message = result["msg"]
    if name not in PER_DOMAIN and name not in ("bad_method", "empty_domains") and "corrupt" not in name:
        assert "nothing was touched" in message, (name, message)
    after = states(play, "after_refusals")
    for guest, old in before.items():
        assert after[guest]["flags"] == old["flags"], (name, guest)
        assert not after[guest].get("counters", {}).get("requests"), (name, guest)
    assert play["ledger_after_refusals"]["stat"]["exists"] is False


@pytest.mark.parametrize("name,words", [
    ("dom0_name", "dom0"), ("dom0_domid", "dom0"), ("dom0_prefixed", "dom0"),
    ("protected_explicit", "protected"), ("unknown_name", "nosuch"), ("unknown_domid", "999"),
    ("unknown_uuid", BAD), ("unknown_among_good", "nosuch"), ("bad_parallel", "parallel"),
    ("bad_timeout", "ack_timeout"), ("bad_method", "bogus"), ("empty_domains", "domains"),
    ("resume_unrecorded", "force_unrecorded"), ("resume_dom0", "dom0"), ("resume_unknown", "nosuch"),
    ("resume_bad_timeout", "timeout"), ("corrupt_ledger_suspend", "ledger"),
    ("corrupt_ledger_resume", "ledger"),
])
def test_refusal_says_why(refusals, name, words):
    assert words in refusals[2][name]["msg"], refusals[2][name]["msg"]


@pytest.mark.parametrize("name", sorted(PER_DOMAIN))
def test_per_domain_refusal_names_kind_and_phase(refusals, name):
    kind, phase, guest = PER_DOMAIN[name]
    result = refusals[2][name]
    entry = by_name(result)[guest]
    assert entry["error"]["kind"] == kind and entry["error"]["phase"] == phase, entry
    assert entry["changed"] is False
    assert result["failed_domains"][:1] == [guest] or guest in result["failed_domains"]


def test_one_refusal_stops_the_others_without_continue_on_error(refusals):
    result = refusals[2]["paused_among_good"]
    for guest in ("web-a", "web-b"):
        entry = by_name(result)[guest]
        assert entry["error"]["kind"] == "not_attempted" and entry["changed"] is False, entry
    assert result["suspended"] == []
    assert result["stats"]["attempted"] == 0


def test_pattern_leaves_protected_domains_out(refusals):
    result = refusals[2]["protected_pattern"]
    assert not result.get("failed"), result
    assert result["suspended"] == ["web-a"]
    assert [s["name"] for s in result["skipped_domains"]] == ["db-1"]
    assert "protected" in result["skipped_domains"][0]["reason"]


def test_resume_with_empty_ledger_changes_nothing(refusals):
    result = refusals[2]["resume_empty_ledger"]
    assert not result.get("failed") and result["changed"] is False and result["domains"] == []


def test_forced_methods_that_work(refusals):
    play = refusals[2]
    xenlinux = by_name(play["xenstore_on_xenlinux"])["xenlinux"]
    assert xenlinux["method"] == "xenstore" and xenlinux["after"] == "suspended", xenlinux
    hvm = by_name(play["direct_on_hvm_pv"])["hvm-pv"]
    assert hvm["method"] == "direct" and hvm["after"] == "suspended", hvm


def test_resume_leaves_protected_recorded_domains_alone(refusals):
    play = refusals[2]
    result = play["resume_protected"]
    assert result["resumed"] == ["hvm-pv"], result
    assert [s["name"] for s in result["skipped_domains"]] == ["xenlinux"]
    assert play["resume_rest"]["resumed"] == ["xenlinux"]


def test_force_unrecorded_resumes_a_suspend_it_did_not_make(refusals):
    play = refusals[2]
    entry = by_name(play["resume_forced"])["saving"]
    assert entry["changed"] is True and entry["recorded"] is False, entry
    after = states(play, "after_all")
    # the hypervisor suspended it (xensim fault shutdown ... suspend): nothing to cancel in the guest
    assert after["saving"]["shutdown_code"] is None and after["saving"]["counters"]["resumes_unnoticed"] == 1
    # the refused ones are as the faults left them
    assert after["paused"]["paused"] == 1 and after["crashed"]["shutdown_code"] == 3
    for guest in ("web-a", "web-b", "db-1", "xenlinux", "hvm-pv", "pvh", "hvm-nopv", "locked"):
        assert after[guest]["shutdown_code"] is None, guest


def test_protected_skip_is_not_reported_as_a_skipped_task(refusals):
    """A truthy ``skipped`` key would make Ansible show the task as skipped: the resume did
    resume hvm-pv, and the protected domain is reported under ``skipped_domains``."""
    result = refusals[2]["resume_protected"]
    assert not result.get("skipped"), result.get("skipped")
    assert result["changed"] is True


def test_a_damaged_ledger_is_never_replaced(refusals):
    sim = refusals[0]
    with open(os.path.join(sim.dir, "corrupt", "ledger.json")) as handle:
        assert handle.read() == CORRUPT


def test_exclude_leaves_domains_out(refusals):
    result = refusals[2]["exclude_check"]
    selected = set(d["name"] for d in result["domains"])
    assert not selected & {"web-a", "web-b", "pvh"}, selected
    assert {"db-1", "xenlinux", "hvm-pv", "hvm-nopv"} <= selected
