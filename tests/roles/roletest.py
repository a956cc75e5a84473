# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers for the role tests: simulated dom0s, inventories, ansible-playbook runs.

Every dom0 is a tests/xensim simulator. The collection is made importable as
``xen.suspend`` through a directory holding ``ansible_collections/xen/suspend`` -> this
checkout, so the tests always run the working tree. Each inventory host uses the local
connection with the project venv's Python and reaches its own simulator through per-host
variables only: ``xen_suspend_environment`` (XENSTORED_PATH, LD_LIBRARY_PATH), the ledger
path and the Xen run directory. That is exactly how an operator points the collection's
playbooks at a dom0 with non-default paths.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import yaml

ROLES_TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(ROLES_TESTS))
XENSIM_ROOT = os.path.join(REPO, "tests", "xensim")
SHIM_LIBDIR = os.path.join(XENSIM_ROOT, "build", "lib")
CALLBACKS = os.path.join(ROLES_TESTS, "callback_plugins")
# xen_suspend_simdom0: the local connection under a name ansible.builtin.reboot accepts.
CONNECTIONS = os.path.join(ROLES_TESTS, "connection_plugins")
BIN = os.path.dirname(sys.executable)

if XENSIM_ROOT not in sys.path:
    sys.path.insert(0, XENSIM_ROOT)

from xensim import admin  # noqa: E402  pylint: disable=wrong-import-position

SHUTDOWN_SUSPEND = 2


def build_shims():
    subprocess.run([os.path.join(XENSIM_ROOT, "build-shims.sh"), SHIM_LIBDIR], check=True)


def collections_dir():
    """A temporary directory holding ansible_collections/xen/suspend -> this checkout."""
    root = tempfile.mkdtemp(prefix="xen-suspend-roles-")
    namespace = os.path.join(root, "ansible_collections", "xen")
    os.makedirs(namespace)
    os.symlink(REPO, os.path.join(namespace, "suspend"))
    return root


class Dom0(object):
    """A simulated dom0 (xensim) and the inventory variables that point the roles at it."""

    def __init__(self, name, directory, spec):
        self.name = name
        self.dir = str(directory)
        self.ledger = os.path.join(self.dir, "ledger", "ledger.json")
        spec_path = os.path.join(self.dir, "fleet.json")
        with open(spec_path, "w") as handle:
            json.dump(spec, handle)
        env = dict(os.environ, PYTHONPATH=XENSIM_ROOT)
        proc = subprocess.run([sys.executable, "-m", "xensim", "start", "--spec", spec_path,
                               "--dir", self.dir, "--json"],
                              capture_output=True, text=True, env=env, check=False)
        if proc.returncode:
            raise RuntimeError("xensim start failed: %s%s" % (proc.stdout, proc.stderr))
        self.env = json.loads(proc.stdout)
        self.control = os.path.join(self.dir, "control.sock")

    # -- simulator -------------------------------------------------------------------------

    def admin(self, op, **kwargs):
        reply = admin.call(self.control, op, **kwargs)
        if not reply.get("ok"):
            raise RuntimeError(reply.get("error"))
        return reply

    def domains(self):
        return dict((d["name"], d) for d in self.admin("list")["domains"])

    def domid(self, name):
        return self.domains()[name]["domid"]

    def uuid(self, name):
        return self.domains()[name]["uuid"]

    def suspended(self):
        """Names of the domains the hypervisor holds in shutdown(suspend)."""
        return sorted(name for name, d in self.domains().items() if d.get("shutdown_code") == SHUTDOWN_SUSPEND)

    def running(self):
        """Names of the guests that run (not shut down, not paused, not dying)."""
        return sorted(name for name, d in self.domains().items()
                      if d["domid"] != 0 and d.get("shutdown_code") is None and not d.get("paused")
                      and not d.get("dying"))

    def fault(self, kind, name, **kwargs):
        return self.admin("fault", kind=kind, domid=self.domid(name), **kwargs)

    def xenstore_write(self, path, value):
        from pyxs import Client  # pylint: disable=import-outside-toplevel
        with Client(unix_socket_path=self.env["XENSTORED_PATH"]) as client:
            client.write(path.encode(), value.encode())

    def ledger_entries(self):
        if not os.path.exists(self.ledger):
            return None
        with open(self.ledger) as handle:
            return json.load(handle)["entries"]

    def stop(self):
        env = dict(os.environ, PYTHONPATH=XENSIM_ROOT)
        subprocess.run([sys.executable, "-m", "xensim", "stop", "--dir", self.dir],
                       capture_output=True, env=env, check=False)

    # -- inventory ---------------------------------------------------------------------------

    def host_vars(self):
        return {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "xen_suspend_become": False,
            "xen_suspend_environment": {
                "XENSTORED_PATH": self.env["XENSTORED_PATH"],
                "XENSIM_SOCKET": self.env["XENSIM_SOCKET"],
                "LD_LIBRARY_PATH": self.env["LD_LIBRARY_PATH"],
            },
            # host_maintenance passes these two to both fleet roles ...
            "host_maintenance_ledger_path": self.ledger,
            "host_maintenance_xen_run_dir": self.env["XENSIM_RUN_DIR"],
            # ... the fleet roles on their own (test playbooks, xen.suspend.resume) use these.
            "fleet_suspend_ledger_path": self.ledger,
            "fleet_suspend_xen_run_dir": self.env["XENSIM_RUN_DIR"],
            "fleet_resume_ledger_path": self.ledger,
            "fleet_resume_xen_run_dir": self.env["XENSIM_RUN_DIR"],
            "dom0_prerequisites_ledger_path": self.ledger,
            "dom0_prerequisites_xen_run_dir": self.env["XENSIM_RUN_DIR"],
            # No controller VM unless a test says so (this machine is no Xen guest).
            "fleet_suspend_controller_uuid_file": os.path.join(self.dir, "no-controller-uuid"),
            # The simulator's guests quiesce in ~200 ms; keep failures quick.
            "fleet_suspend_ack_timeout": 5,
            "fleet_suspend_timeout": 10,
        }


class PlaybookRun(object):
    def __init__(self, rc, stdout, stderr, events):
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.events = events

    def __str__(self):
        return "ansible-playbook rc=%d\n--- stdout (tail)\n%s\n--- stderr (tail)\n%s" % (
            self.rc, self.stdout[-8000:], self.stderr[-3000:])

    __repr__ = __str__

    def results(self, host=None, task=None, action=None, role=None, event=None):
        found = []
        for record in self.events:
            if record["event"] == "stats":
                continue
            if host is not None and record["host"] != host:
                continue
            if task is not None and record["task"] != task and not record["task"].endswith(" : " + task):
                continue
            if action is not None and record["action"] != action:
                continue
            if role is not None and record["role"] != role and not (record["role"] or "").endswith("." + role):
                continue
            if event is not None and record["event"] != event:
                continue
            found.append(record)
        return found

    def fact(self, host, name):
        """The last value set_fact gave ``name`` on ``host``."""
        for record in reversed(self.results(host=host, action="ansible.builtin.set_fact", event="ok")):
            facts = record["result"].get("ansible_facts", {})
            if name in facts:
                return facts[name]
        raise AssertionError("no set_fact of %s on %s" % (name, host))

    @property
    def stats(self):
        for record in self.events:
            if record["event"] == "stats":
                return record
        raise AssertionError("no stats event: %s" % self)


class Controller(object):
    """Runs ansible-playbook with the collection from this checkout."""

    def __init__(self, workdir, collections):
        self.workdir = str(workdir)
        self.collections = collections
        self.runs = 0

    def inventory(self, dom0s, group="xen_dom0", extra_host_vars=None):
        hosts = {}
        for dom0 in dom0s:
            host_vars = dom0.host_vars()
            host_vars.update((extra_host_vars or {}).get(dom0.name, {}))
            hosts[dom0.name] = host_vars
        path = os.path.join(self.workdir, "inventory-%d.yml" % (self.runs + 1))
        with open(path, "w") as handle:
            yaml.safe_dump({group: {"hosts": hosts}}, handle)
        return path

    def write(self, name, text):
        path = os.path.join(self.workdir, name)
        with open(path, "w") as handle:
            handle.write(text)
        return path

    def run(self, playbook, inventory, extra_vars=None, check=False, timeout=300):
        self.runs += 1
        events_path = os.path.join(self.workdir, "events-%d.jsonl" % self.runs)
        command = [os.path.join(BIN, "ansible-playbook"), "-i", inventory, playbook]
        if extra_vars:
            command += ["-e", json.dumps(extra_vars)]
        if check:
            command.append("--check")
        env = dict(os.environ,
                   ANSIBLE_COLLECTIONS_PATH=self.collections,
                   ANSIBLE_CALLBACK_PLUGINS=CALLBACKS,
                   ANSIBLE_CONNECTION_PLUGINS=CONNECTIONS,
                   ANSIBLE_CALLBACKS_ENABLED="xen_suspend_events",
                   XEN_SUSPEND_EVENTS_LOG=events_path,
                   ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
                   ANSIBLE_RETRY_FILES_ENABLED="False",
                   ANSIBLE_LOCALHOST_WARNING="False",
                   ANSIBLE_INVENTORY_UNPARSED_WARNING="False",
                   ANSIBLE_HOME=os.path.join(self.workdir, "ansible-home"),
                   PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
        env.pop("ANSIBLE_CONFIG", None)
        # Each host reaches its own simulator through its inventory variables only; nothing a
        # test process happens to have in its environment may point elsewhere.
        for name in list(env):
            if name.startswith(("XENSIM_", "XENSTORED_")):
                del env[name]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=self.workdir, check=False)
        events = []
        if os.path.exists(events_path):
            with open(events_path) as handle:
                events = [json.loads(line) for line in handle if line.strip()]
        return PlaybookRun(proc.returncode, proc.stdout, proc.stderr, events)


class SuspendWatcher(object):
    """Samples which guests each simulator holds suspended, every ``interval`` seconds."""

    def __init__(self, dom0s, interval=0.02):
        self.dom0s = dom0s
        self.interval = interval
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop)
        self._thread.daemon = True

    def _loop(self):
        while not self._stop.is_set():
            sample = {"time": time.time()}
            for dom0 in self.dom0s:
                sample[dom0.name] = dom0.suspended()
            self.samples.append(sample)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join(5)


def remove_tree(path):
    shutil.rmtree(path, ignore_errors=True)
