"""Run ansible-playbook from the host into a test-bed dom0 over SSH, with this checkout
installed as the collection xen.suspend (a symlink, so the tests always run the working tree)."""
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def collections_dir():
    """A directory holding ansible_collections/xen/suspend -> this checkout."""
    root = Path(tempfile.mkdtemp(prefix="xen-suspend-collections-"))
    (root / "ansible_collections" / "xen").mkdir(parents=True)
    (root / "ansible_collections" / "xen" / "suspend").symlink_to(REPO)
    return root


@dataclass
class PlaybookRun:
    rc: int
    stdout: str
    stderr: str
    results: dict  # name -> JSON the playbook saved with save_result (see below)

    def __str__(self):
        return "ansible-playbook rc=%d\n%s\n%s" % (self.rc, self.stdout[-6000:], self.stderr[-3000:])


class AnsibleRunner:
    """Playbooks save what a test wants to inspect with a task like
        - ansible.builtin.copy: {content: "{{ r | to_json }}", dest: "{{ results_dir }}/NAME.json"}
          delegate_to: localhost
    and the run returns those files parsed."""

    def __init__(self, dom0, workdir):
        self.dom0 = dom0
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.control_dir = tempfile.mkdtemp(prefix="xs-cp-")  # short: a socket path has 108 bytes
        self.inventory = dom0.ansible_inventory(self.workdir / "inventory.ini")
        self.collections = collections_dir()

    def run(self, playbook_text, extra_vars=None, check=False, diff=False, timeout=900):
        playbook = Path(tempfile.mkstemp(suffix=".yml", dir=self.workdir)[1])
        playbook.write_text(playbook_text)
        results_dir = Path(tempfile.mkdtemp(prefix="results-", dir=self.workdir))
        variables = dict(extra_vars or {}, results_dir=str(results_dir))
        command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(self.inventory),
                   str(playbook), "-e", json.dumps(variables)]
        if check:
            command.append("--check")
        if diff:
            command.append("--diff")
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(self.collections),
                   ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_PIPELINING="True",
                   ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="False",
                   ANSIBLE_LOCALHOST_WARNING="False", ANSIBLE_INVENTORY_UNPARSED_WARNING="False",
                   # SSH connections shared by this runner only: after a dom0 reboot a new
                   # runner starts clean instead of reusing a master whose dom0 is gone
                   ANSIBLE_SSH_CONTROL_PATH_DIR=self.control_dir)
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
        results = {p.stem: json.loads(p.read_text()) for p in results_dir.glob("*.json")}
        return PlaybookRun(proc.returncode, proc.stdout, proc.stderr, results)
