"""The test bed itself is sound: Xen, dom0, both kinds of guest, and a raw suspend/resume.
These prove the bed before the collection is tested on it."""
import json
from pathlib import Path

from xenbed.ansible_runner import AnsibleRunner
from xenbed.guests import heartbeat, store_read
from xenbed.measurements import record

RAW_ROUNDTRIP = (Path(__file__).parent / "dom0" / "raw_suspend_roundtrip.py").read_text()


def test_hypervisor_version_matches_flavour(dom0):
    version = dom0.ssh("cat /sys/hypervisor/version/major /sys/hypervisor/version/minor").stdout.split()
    assert ".".join(version) == dom0.image.xen_minor


def test_xl_list_shows_dom0_and_guests(dom0, smoke_guests):
    lines = dom0.ssh("xl list").stdout.splitlines()
    names = {line.split()[0]: int(line.split()[1]) for line in lines[1:]}
    assert names["Domain-0"] == 0
    for guest in smoke_guests.values():
        assert names[guest.name] == guest.domid


def test_guests_have_control_nodes(dom0, smoke_guests):
    for guest in smoke_guests.values():
        children = dom0.ssh("xenstore-list %s/control" % guest.path).stdout.split()
        assert "shutdown" in children
        assert store_read(dom0, guest.path + "/control/feature-suspend") == "1"


def test_evtchn_guest_advertises_a_port_and_plain_guest_does_not(dom0, smoke_guests):
    port = store_read(dom0, smoke_guests["evtchn"].path + "/device/suspend/event-channel")
    assert port.isdigit() and int(port) > 0
    # upstream Linux leaves the node libxl created empty
    assert store_read(dom0, smoke_guests["xenstore"].path + "/device/suspend/event-channel") == ""


def test_heartbeat_advances(dom0, smoke_guests):
    guest = smoke_guests["xenstore"]
    first = heartbeat(dom0, guest)
    dom0.ssh("sleep 2")
    assert heartbeat(dom0, guest) > first


def test_raw_xenstore_suspend_and_resume_round_trip(dom0, smoke_guests):
    guest = smoke_guests["xenstore"]
    out = json.loads(dom0.python(RAW_ROUNDTRIP, guest.domid).stdout)
    # shutdown flag with reason suspend (2), and running again afterwards
    assert out["flags_suspended"] & (1 << 2) and (out["flags_suspended"] >> 16) & 0xFF == 2
    assert out["xc_domain_resume_rc"] == 0
    assert not out["flags_resumed"] & (1 << 2)
    # frozen while suspended, beating again after the resume
    assert out["heartbeat_suspended_later"] == out["heartbeat_suspended"]
    assert out["heartbeat_after"] > out["heartbeat_suspended_later"]
    record(dom0.image.flavour, raw_roundtrip={
        "ack_ms": round(out["ack_s"] * 1000, 1), "suspended_ms": round(out["suspended_s"] * 1000, 1),
        "resume_ms": round(out["resume_s"] * 1000, 1),
        "heartbeat_back_ms": round(out["heartbeat_resumed_s"] * 1000, 1)})


def test_ansible_playbook_reaches_dom0_over_ssh(dom0, tmp_path):
    run = AnsibleRunner(dom0, tmp_path).run(
        "- hosts: xen_dom0\n  gather_facts: false\n  tasks:\n"
        "    - name: List domains\n      ansible.builtin.command: xl list\n"
        "      register: xl\n      changed_when: false\n"
        "    - name: Save the listing\n      ansible.builtin.copy:\n"
        "        content: \"{{ xl | to_json }}\"\n        dest: \"{{ results_dir }}/xl.json\"\n"
        "        mode: '0600'\n      delegate_to: localhost\n")
    assert run.rc == 0, run
    assert run.results["xl"]["stdout"].splitlines()[1].split()[:2] == ["Domain-0", "0"]


def test_no_crash_in_dom0_or_xen(dom0, smoke_guests):
    assert dom0.crash_lines() == []
