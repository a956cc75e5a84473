"""On the simulated dom0: the modules themselves refuse device-model stub domains and driver
domains (found in xenstore as libxl leaves them), allow_service_domains overrides; domain_info
gathers them, checks the prerequisites, and flags a guest whose ~/control/shutdown it may no
longer write (issue 11, items 2, 5 and 19). One simulator, one playbook."""

import json

import pytest

from xsim_harness import by_name

SPEC = {
    "quiesce_ms": 100, "jitter_ms": 20, "heartbeat_ms": 1000,
    "guests": [
        {"behaviour": "hvm-pv", "name": "app-hvm"},
        {"behaviour": "linux-pv", "name": "web-1"},
        {"behaviour": "linux-pv", "name": "web-1-dm"},   # ~/target: stub domain of web-1
        {"behaviour": "linux-pv", "name": "ioemu"},      # named by app-hvm's image/device-model-domid
        {"behaviour": "linux-pv", "name": "netback"},    # ~/backend: a driver domain
        {"behaviour": "linux-pv", "name": "stuck"},      # control/shutdown made dom0's
        {"behaviour": "windows", "name": "win-1"},       # answers by removing control/shutdown
    ],
}


def xs_as_dom0(sim):
    from pyxs import Client  # the venv has it
    return Client(unix_socket_path=sim.env["XENSTORED_PATH"])


@pytest.fixture(scope="module")
def safety(make_module_sim):
    sim, runner = make_module_sim(SPEC)
    ids = dict((name, sim.domid(name)) for name in [g["name"] for g in SPEC["guests"]])
    with xs_as_dom0(sim) as client:
        client.write(b"/local/domain/%d/target" % ids["web-1-dm"], b"%d" % ids["web-1"])
        client.write(b"/local/domain/%d/image/device-model-domid" % ids["app-hvm"], b"%d" % ids["ioemu"])
        client.write(b"/local/domain/%d/backend/vif/%d/0/state" % (ids["netback"], ids["web-1"]), b"4")
        # what a plain re-create under ~/control leaves: dom0's, read-only to the guest
        client.set_perms(b"/local/domain/%d/control/shutdown" % ids["stuck"], [b"n0", b"r%d" % ids["stuck"]])
    tasks = [
        {"xen.suspend.domain_info": {"gather": ["domains", "service_domains", "prerequisites"]},
         "register": "info_before"},
        {"xen.suspend.domain_suspended": {"domains": ["web-1", "web-1-dm"]}, "register": "explicit_stub"},
        {"xen.suspend.domain_suspended": {"domains": ["netback"]}, "register": "explicit_driver"},
        {"xen.suspend.domain_suspended": {"domains": ["ioemu"]}, "register": "explicit_ioemu"},
        {"xen.suspend.domain_suspended": {"domains": ["*"], "exclude": ["stuck"]},
         "check_mode": True, "register": "pattern_check"},
        {"xen.suspend.domain_suspended": {"domains": ["win-1", "netback"], "allow_service_domains": ["netback"]},
         "register": "allowed"},
        {"xen.suspend.domain_info": {"domains": ["win-1", "netback"]}, "register": "info_suspended"},
        {"xen.suspend.domain_resumed": {}, "register": "resume"},
        {"xen.suspend.domain_info": {"domains": ["win-1"]}, "register": "info_after"},
    ]
    play = runner.run(tasks)
    return sim, ids, play


def test_domain_info_gathers_service_domains(safety):
    _sim, ids, play = safety
    info = play["info_before"]
    assert not info.get("failed"), info
    found = dict((d["name"], " ".join(d["reasons"])) for d in info["service_domains"])
    assert sorted(found) == ["ioemu", "netback", "web-1-dm"]
    assert "stub domain of domid %d (xenstore ~/target)" % ids["web-1"] in found["web-1-dm"]
    assert "its ~/image/device-model-domid" in found["ioemu"]
    assert "driver domain serving vif backends" in found["netback"]
    domains = by_name(info)
    assert domains["web-1-dm"]["protected"] is True and domains["web-1-dm"]["service_domain"]
    assert domains["web-1"]["protected"] is False and domains["web-1"]["service_domain"] is None


def test_domain_info_flags_the_control_node_the_guest_cannot_write(safety):
    _sim, ids, play = safety
    domains = by_name(play["info_before"])
    assert domains["stuck"]["control_shutdown_guest_writable"] is False
    assert domains["stuck"]["control_shutdown_permissions"] == "n0,r%d" % ids["stuck"]
    assert domains["web-1"]["control_shutdown_guest_writable"] is True
    warnings = json.dumps(play["info_before"].get("warnings"))
    assert "stuck (domid %d) cannot answer a suspend request" % ids["stuck"] in warnings


def test_windows_node_recreated_by_the_module_stays_answerable(safety):
    _sim, _ids, play = safety
    assert play["allowed"]["suspended"] == ["win-1", "netback"], play["allowed"]
    assert by_name(play["info_suspended"])["win-1"]["control_shutdown_guest_writable"] is True
    assert by_name(play["info_after"])["win-1"]["control_shutdown_guest_writable"] is True


def test_domain_info_checks_the_prerequisites_like_the_modules(safety):
    _sim, _ids, play = safety
    report = play["info_before"]["prerequisites"]
    assert report["cffi"]["ok"] and report["pyxs"]["ok"]
    assert report["libraries"]["version"] == "4.17" and report["libraries"]["version_source"] == "probe"
    assert all(lib["ok"] for lib in report["libraries"]["checked"])
    assert report["xenstored"]["ok"] and report["xenstored"]["domains"] == len(SPEC["guests"]) + 1
    assert report["toolstack"]["toolstack"] == "xl"


@pytest.mark.parametrize("register,name", [("explicit_stub", "web-1-dm"), ("explicit_driver", "netback"),
                                           ("explicit_ioemu", "ioemu")])
def test_suspend_refuses_a_named_service_domain_and_touches_nothing(safety, register, name):
    _sim, ids, play = safety
    result = play[register]
    assert result.get("failed") is True, result
    assert "nothing was touched" in result["msg"]
    assert "refusing %s (domid %d): it is a service domain" % (name, ids[name]) in result["msg"]
    assert result["error"]["kind"] == "invalid_target"


def test_suspend_pattern_leaves_service_domains_out(safety):
    _sim, _ids, play = safety
    result = play["pattern_check"]
    assert not result.get("failed"), result
    assert sorted(result["suspended"]) == ["app-hvm", "web-1", "win-1"]
    skipped = dict((item["name"], item["reason"]) for item in result["skipped_domains"])
    assert sorted(skipped) == ["Domain-0", "ioemu", "netback", "web-1-dm"]


def test_nothing_but_the_allowed_run_touched_a_guest(safety):
    sim, _ids, play = safety
    counters = dict((name, d.get("counters", {})) for name, d in sim.domains().items())
    for name in ("web-1", "web-1-dm", "ioemu", "app-hvm", "stuck"):
        assert not counters[name].get("requests"), (name, counters[name])
    assert sorted(play["resume"]["resumed"]) == ["netback", "win-1"]
    assert sim.ledger_entries() == {}
