# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""`make rehearse` (tests/demo/rehearse.py): an operator's own playbook or maintenance tasks
file against a simulated dom0 with the operator's own fleet spec (issue 11, item 15)."""

import os
import re
import subprocess
import sys

import pytest

from roletest import REPO

FLEET = """\
quiesce_ms: 100
jitter_ms: 20
heartbeat_ms: 200
guests:
  - {behaviour: linux-pv, count: 2, name: web}
  - {behaviour: hvm-nopv, name: appliance}
"""

# Written as for a real dom0: `become: true`, no `environment:`; the ledger and run directory
# come from the variables the rehearsal's inventory sets (on a real dom0: the defaults).
PLAYBOOK = """\
- name: My maintenance
  hosts: xen_dom0
  become: true
  gather_facts: false
  tasks:
    - name: Suspend every guest
      xen.suspend.domain_suspended:
        domains: ["*"]
        ledger: "{{ xen_suspend_ledger_path | default(omit) }}"
        xen_run_dir: "{{ xen_suspend_xen_run_dir | default(omit) }}"
      register: my_suspend
    - name: Patch
      ansible.builtin.debug:
        msg: "patching while {{ my_suspend.suspended | join(',') }} are suspended"
    - name: A role of my project (found through the ansible.cfg next to this playbook)
      ansible.builtin.include_role:
        name: my_checks
%s
"""
RESUME = """\
    - name: Resume them
      xen.suspend.domain_resumed:
        ledger: "{{ xen_suspend_ledger_path | default(omit) }}"
        xen_run_dir: "{{ xen_suspend_xen_run_dir | default(omit) }}"
"""
FAIL = """\
    - name: A maintenance step that fails
      ansible.builtin.fail:
        msg: patching failed
"""
TASKS = """\
- name: My dom0 maintenance
  ansible.builtin.command: "true"
  changed_when: false
"""


@pytest.fixture
def files(tmp_path):
    def write(name, text):
        path = tmp_path / name
        path.write_text(text)
        return str(path)
    return write


def rehearse(*args, cwd=None):
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tests", "demo", "rehearse.py")] + list(args),
                          capture_output=True, text=True, timeout=300, cwd=cwd, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def test_rehearse_runs_my_playbook_on_my_fleet(files, tmp_path):
    fleet = files("fleet.yaml", FLEET)
    files("ansible.cfg", "[defaults]\nroles_path = ./my-roles\n")
    (tmp_path / "my-roles" / "my_checks" / "tasks").mkdir(parents=True)
    files("my-roles/my_checks/tasks/main.yml", "- name: My check\n  ansible.builtin.debug:\n    msg: my project's role ran\n")
    good = files("site.yml", PLAYBOOK % RESUME)
    rc, out = rehearse("--fleet", fleet, "--playbook", good)
    assert rc == 0, out
    assert "patching while web-1,web-2,appliance are suspended" in out, out
    assert "my project's role ran" in out, out
    assert "3 guests running, left suspended: none" in out, out
    inventory = re.search(r"inventory (\S+/inventory\.yml)", out).group(1)
    assert not os.path.exists(os.path.dirname(inventory)), "temporary directory left behind"

    # A playbook that forgets the resume is not a green rehearsal.
    forgetful = files("forgetful.yml", PLAYBOOK % "")
    rc, out = rehearse("--fleet", fleet, "--playbook", forgetful, "--args", "-e unused=1")
    assert rc == 3, out
    assert "left suspended: appliance, web-1, web-2" in out, out
    assert "!! the playbook succeeded but left guests suspended" in out

    # A playbook that fails and leaves guests suspended says both, with exit status 3 too.
    failing = files("failing.yml", PLAYBOOK % FAIL)
    rc, out = rehearse("--fleet", fleet, "--playbook", failing)
    assert rc == 3, out
    assert "left suspended: appliance, web-1, web-2" in out, out
    assert "!! ansible-playbook failed (rc=2) and left guests suspended (exit status 3)" in out, out


def test_make_rehearse_runs_my_tasks_file_with_the_maintenance_playbook(files):
    fleet = files("fleet.yaml", FLEET)
    tasks = files("patch-dom0.yml", TASKS)
    venv = sys.prefix
    # -o: use this venv as it is (make would otherwise refresh it from requirements-dev.txt).
    proc = subprocess.run(["make", "-s", "-C", REPO, "-o", os.path.join(venv, ".installed"), "rehearse",
                           "VENV=%s" % venv, "FLEET=%s" % fleet, "TASKS=%s" % tasks, "ARGS=-e fleet_resume_timeout=5"],
                          capture_output=True, text=True, timeout=300, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "TASK [xen.suspend.host_maintenance : My dom0 maintenance]" in out, out
    assert "downtime s" in out and "3 resumed" in out, out
    assert "3 guests running, left suspended: none" in out, out


def test_make_rehearse_without_a_fleet_says_how():
    proc = subprocess.run(["make", "-s", "-C", REPO, "-o", os.path.join(sys.prefix, ".installed"), "rehearse",
                           "VENV=%s" % sys.prefix, "PLAYBOOK=site.yml"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode != 0
    assert "usage: make rehearse FLEET=" in proc.stderr


def test_make_rehearse_reboot_saves_reboots_and_restores_my_fleet(files):
    fleet = files("fleet.yaml", FLEET)
    tasks = files("upgrade-xen.yml", TASKS)
    proc = subprocess.run(["make", "-s", "-C", REPO, "-o", os.path.join(sys.prefix, ".installed"), "rehearse",
                           "VENV=%s" % sys.prefix, "FLEET=%s" % fleet, "TASKS=%s" % tasks, "REBOOT=1"],
                          capture_output=True, text=True, timeout=300, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "TASK [xen.suspend.host_maintenance : My dom0 maintenance]" in out, out
    assert re.search(r"TASK \[xen.suspend.host_maintenance : Reboot the dom0\] \*+\nchanged: \[dom0-sim\]", out), out
    assert "3 saved (" in out and "3 restored, 0 already running, 0 failed" in out, out
    assert "3 guests running, left suspended: none" in out, out
    assert "left on disk in the save directory: none" in out, out
    # The simulated dom0's clock is this machine's: the restore does not wait for it.
    assert "host_maintenance_wait_time_sync=false" in out, out
    assert "dom0 clock not waited for (host_maintenance_wait_time_sync=false)" in out, out
