# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A simulated dom0 (tests/xensim) that ansible-playbook can be pointed at, for `make demo`
and `make rehearse`.

``SimulatedDom0`` starts the simulator with a fleet spec, writes an inventory with one host
(connection local, this Python) whose variables point the collection's roles and playbooks at
the simulator, makes this checkout importable as the collection xen.suspend, runs
ansible-playbook and stops the simulator whatever happens (also on Ctrl-C and SIGTERM). No
root: the ledger, the Xen run directory and Ansible's temporary files all live in a
temporary directory.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
XENSIM_ROOT = os.path.join(REPO, "tests", "xensim")
XENSIMCTL = os.path.join(XENSIM_ROOT, "xensimctl")
# xen_suspend_simdom0: the local connection under a name ansible.builtin.reboot accepts.
CONNECTIONS = os.path.join(REPO, "tests", "roles", "connection_plugins")
BIN = os.path.dirname(sys.executable)
HOST = "dom0-sim"


class Interrupted(Exception):
    pass


def _on_signal(signum, _frame):
    raise Interrupted("signal %d" % signum)


def _writable(path):
    """Whether Ansible could use (or create) the directory ``path``."""
    if os.path.exists(path):
        return os.access(path, os.W_OK)
    return os.access(os.path.dirname(path.rstrip("/")) or "/", os.W_OK)


def xensim(*args, **kwargs):
    env = dict(os.environ, PYTHONPATH=XENSIM_ROOT)
    return subprocess.run([sys.executable, "-m", "xensim"] + list(args), env=env, check=False,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


class SimulatedDom0(object):
    """``with SimulatedDom0(fleet) as dom0: dom0.playbook([...])``."""

    def __init__(self, fleet, group="xen_dom0", keep=False, isolate=True, rebootable=False):
        self.fleet = os.path.abspath(fleet)
        # rebootable: the save/restore variant. The modules find the simulator's xl on PATH, the
        # images go to a save directory under the temporary directory, and
        # ansible.builtin.reboot "reboots" the dom0 with `xensimctl reboot` (through the
        # xen_suspend_simdom0 connection: it refuses the one named local).
        self.rebootable = rebootable
        self.group = group
        self.keep = keep
        # isolate: ignore the caller's ANSIBLE_* settings (the demo). A rehearsal keeps them (a
        # vault password file, callbacks, more collections ...) and only adds what it needs.
        self.isolate = isolate
        self.env = None
        # Short: the simulator's Unix socket paths must stay under 108 bytes.
        self.workdir = tempfile.mkdtemp(prefix="xssim-", dir="/tmp")
        self.state_dir = os.path.join(self.workdir, "dom0")
        self.ledger = os.path.join(self.workdir, "ledger", "ledger.json")
        self.save_dir = os.path.join(self.workdir, "save")
        self.inventory = os.path.join(self.workdir, "inventory.yml")
        self._handlers = {}

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self):
        for signum in (signal.SIGTERM, signal.SIGHUP):
            self._handlers[signum] = signal.signal(signum, _on_signal)
        try:
            self.start()
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, *exc_info):
        self.stop()
        for signum, handler in self._handlers.items():
            signal.signal(signum, handler)
        if self.keep:
            sys.stdout.write("state kept in %s\n" % self.workdir)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def start(self):
        if not os.path.isfile(self.fleet):
            raise SystemExit("no fleet spec at %s (see tests/xensim/README.md, 'Fleet spec')" % self.fleet)
        proc = xensim("start", "--spec", self.fleet, "--dir", self.state_dir, "--json", timeout=300)
        if proc.returncode:
            raise SystemExit("could not start the simulated dom0 with %s:\n%s%s" % (self.fleet, proc.stdout, proc.stderr))
        self.env = json.loads(proc.stdout)
        self._write_inventory()
        self._collections = os.path.join(self.workdir, "collections")
        os.makedirs(os.path.join(self._collections, "ansible_collections", "xen"))
        os.symlink(REPO, os.path.join(self._collections, "ansible_collections", "xen", "suspend"))

    def stop(self):
        if self.env is None and not os.path.exists(os.path.join(self.state_dir, "xensim.pid")):
            return
        proc = xensim("stop", "--dir", self.state_dir, timeout=60)
        if proc.returncode:
            sys.stderr.write("stopping the simulator: %s%s" % (proc.stdout, proc.stderr))
        self.env = None

    # -- what a playbook sees ----------------------------------------------------------------

    def host_vars(self):
        run_dir = self.env["XENSIM_RUN_DIR"]
        host_vars = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            # No root: a play's `become: true` is overridden by this connection variable.
            "ansible_become": False,
            "xen_suspend_become": False,
            "xen_suspend_environment": self.module_env(),
            # The one ledger variable every role and playbook reads.
            "xen_suspend_ledger_path": self.ledger,
            # Xen's run directory (the suspend lock files) for every role; playbooks that call the
            # modules directly can pass it as xen_run_dir.
            "xen_suspend_xen_run_dir": run_dir,
            "host_maintenance_xen_run_dir": run_dir,
            "fleet_suspend_xen_run_dir": run_dir,
            "fleet_resume_xen_run_dir": run_dir,
            "dom0_prerequisites_xen_run_dir": run_dir,
            # This machine is not a guest of the simulated dom0.
            "fleet_suspend_controller_uuid_file": os.path.join(self.workdir, "no-controller-uuid"),
            "fleet_save_controller_uuid_file": os.path.join(self.workdir, "no-controller-uuid"),
        }
        if self.rebootable:
            host_vars.update({
                "ansible_connection": "xen_suspend_simdom0",
                "xen_suspend_save_dir": self.save_dir,
                "host_maintenance_reboot_command": "/usr/bin/env PYTHON=%s %s reboot --dir %s" % (
                    sys.executable, XENSIMCTL, self.state_dir),
                "host_maintenance_boot_time_command": "cat %s" % self.boot_id_path,
                # The "dom0" is this machine (local connection): its clock is the controller's,
                # and a laptop whose chrony is not synchronised would hold every restore for
                # host_maintenance_time_sync_timeout (300 s). The simulator has no clock to wait
                # for; -e host_maintenance_wait_time_sync=true rehearses the wait anyway.
                "host_maintenance_wait_time_sync": False,
            })
        return host_vars

    @property
    def boot_id_path(self):
        return os.path.join(self.state_dir, "boot_id")

    def boot_id(self):
        with open(self.boot_id_path) as handle:
            return handle.read().strip()

    def module_env(self):
        """What the modules need to find the simulated xenstored and hypervisor (and its xl, for
        the save/restore variant: first on PATH, as the real one is on a dom0)."""
        env = dict((name, self.env[name]) for name in ("XENSTORED_PATH", "XENSIM_SOCKET", "LD_LIBRARY_PATH"))
        if self.rebootable:
            env["PATH"] = self.env["PATH"]
        return env

    def _write_inventory(self):
        with open(self.inventory, "w") as handle:
            yaml.safe_dump({self.group: {"hosts": {HOST: self.host_vars()}}}, handle, default_flow_style=False)

    def ansible_env(self, extra=None):
        env = dict(os.environ)
        for name in list(env):   # nothing from the caller's shell may point elsewhere
            if (name.startswith(("XENSIM_", "XENSTORED_")) or name == "LD_LIBRARY_PATH"
                    or (self.isolate and name.startswith("ANSIBLE_"))):
                del env[name]
        home = env.get("ANSIBLE_HOME") or os.path.expanduser("~/.ansible")
        if self.isolate or not _writable(home):
            home = env["ANSIBLE_HOME"] = os.path.join(self.workdir, "ansible-home")
        # This checkout first, then the collections the caller would otherwise see.
        collections = [self._collections]
        if not self.isolate:
            collections.append(env.get("ANSIBLE_COLLECTIONS_PATH")
                               or os.pathsep.join([os.path.join(home, "collections"), "/usr/share/ansible/collections"]))
        env.update(
            # With the local connection the modules inherit this environment: a playbook without
            # `environment:` reaches the simulator too.
            self.module_env(),
            PATH=os.pathsep.join([BIN, self.env["PATH"] if self.rebootable else os.environ.get("PATH", "")]),
            ANSIBLE_COLLECTIONS_PATH=os.pathsep.join(collections),
            ANSIBLE_LOCAL_TEMP=os.path.join(self.workdir, "ansible-local"),
            ANSIBLE_REMOTE_TEMP=os.path.join(self.workdir, "ansible-remote"),
            ANSIBLE_LOCALHOST_WARNING="False",
            ANSIBLE_INVENTORY_UNPARSED_WARNING="False",
            ANSIBLE_RETRY_FILES_ENABLED="False",
            ANSIBLE_PIPELINING="True",
        )
        if self.rebootable:
            env["ANSIBLE_CONNECTION_PLUGINS"] = os.pathsep.join(
                [CONNECTIONS] + ([env["ANSIBLE_CONNECTION_PLUGINS"]] if env.get("ANSIBLE_CONNECTION_PLUGINS") else []))
        env.update(extra or {})
        return env

    def playbook(self, args, env=None, cwd=None):
        """Run ansible-playbook -i <the inventory> ARGS; returns its exit status."""
        command = [os.path.join(BIN, "ansible-playbook"), "-i", self.inventory] + list(args)
        proc = subprocess.Popen(command, env=self.ansible_env(env), cwd=cwd)
        try:
            return proc.wait()
        except BaseException:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            raise

    def list_domains(self):
        """The simulator's view: name -> domain record."""
        proc = xensim("list", "--dir", self.state_dir, "--json", timeout=60)
        if proc.returncode:
            raise RuntimeError("xensim list: %s%s" % (proc.stdout, proc.stderr))
        data = json.loads(proc.stdout)
        domains = data["domains"] if isinstance(data, dict) else data
        return dict((d["name"], d) for d in domains)
