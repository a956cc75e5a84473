"""The collection's maintenance playbook (roles host_maintenance, fleet_suspend, fleet_resume) on
a real dom0: a mixed fleet is suspended while the maintenance tasks run, a maintenance task fails
on purpose, the guests are resumed all the same and the play fails."""
import json

import pytest

from xenbed.ansible_runner import AnsibleRunner
from xenbed.guests import create_guests, heartbeat

MAINTENANCE_TASKS = """\
- name: See the domains while the guests are suspended
  ansible.builtin.command: xl list
  register: during
  changed_when: false

- name: Keep that for the test
  ansible.builtin.copy:
    content: "{{ during | to_json }}"
    dest: "{{ results_dir }}/during.json"
    mode: "0600"
  delegate_to: localhost

- name: Fail the maintenance on purpose
  ansible.builtin.fail:
    msg: maintenance failed on purpose
"""


@pytest.fixture(scope="module")
def fleet(dom0):
    made = create_guests(dom0, [("role-xs", "xenstore"), ("role-ev", "evtchn")])
    yield {g.name: g for g in made}
    dom0.ssh("xl destroy role-xs; xl destroy role-ev", check=False)


def test_failed_maintenance_resumes_the_fleet_and_fails_the_play(dom0, fleet, tmp_path):
    tasks = tmp_path / "maintenance.yml"
    tasks.write_text(MAINTENANCE_TASKS)
    run = AnsibleRunner(dom0, tmp_path).run(
        "- name: The collection's rolling maintenance\n"
        "  ansible.builtin.import_playbook: xen.suspend.maintenance\n",
        extra_vars={"host_maintenance_tasks_file": str(tasks)})
    assert run.rc != 0, run
    assert "maintenance failed on purpose" in run.stdout, run

    # while the maintenance ran, both guests were shut down with reason suspend ('s' in xl's state)
    during = {line.split()[0]: line.split()[4] for line in run.results["during"]["stdout"].splitlines()[1:]}
    for name in fleet:
        assert during[name][3] == "s", during

    # afterwards they run again, beat again, and the ledger holds nothing
    for guest in fleet.values():
        first = heartbeat(dom0, guest)
        dom0.ssh("sleep 2")
        assert heartbeat(dom0, guest) > first, guest.name
    ledger = dom0.ssh("cat /var/lib/xen-suspend/ledger.json", check=False).stdout
    assert not ledger or json.loads(ledger).get("entries") == {}, ledger
