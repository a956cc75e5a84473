"""Helpers for the integration tests: a simulated dom0 (tests/xensim) started through its CLI,
and ansible-playbook runs against it with this checkout installed as xen.suspend.

Everything reaches the simulator the way production code reaches Xen: XENSTORED_PATH and
LD_LIBRARY_PATH in the environment of ansible-playbook (inherited by the local connection), and
the simulator's run directory passed as ``xen_run_dir``.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
XENSIM_ROOT = REPO / "tests" / "xensim"
PYTHON = sys.executable
ANSIBLE_PLAYBOOK = str(Path(PYTHON).parent / "ansible-playbook")


def wait_until(predicate, timeout=10.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %gs waiting for %s" % (timeout, what))
        time.sleep(interval)


def collections_dir():
    """A temporary directory holding ansible_collections/xen/suspend -> this checkout."""
    root = Path(tempfile.mkdtemp(prefix="xs-coll-"))
    (root / "ansible_collections" / "xen").mkdir(parents=True)
    (root / "ansible_collections" / "xen" / "suspend").symlink_to(REPO)
    return root


def xensim_cli(*args, check=True, timeout=60):
    env = dict(os.environ, PYTHONPATH=str(XENSIM_ROOT))
    proc = subprocess.run([PYTHON, "-m", "xensim"] + [str(a) for a in args], capture_output=True,
                          text=True, env=env, timeout=timeout)
    if check and proc.returncode:
        raise AssertionError("xensim %s failed (rc %d):\n%s%s"
                             % (" ".join(map(str, args)), proc.returncode, proc.stdout, proc.stderr))
    return proc


class Simulator(object):
    """One simulated dom0, started with ``xensim start`` in a short /tmp directory (Unix socket
    paths are limited to 108 bytes)."""

    def __init__(self, spec):
        self.dir = tempfile.mkdtemp(prefix="xsi-", dir="/tmp")
        self.spec_path = os.path.join(self.dir, "fleet.json")
        with open(self.spec_path, "w") as handle:
            json.dump(spec, handle)
        out = xensim_cli("start", "--spec", self.spec_path, "--dir", self.dir, "--json").stdout
        self.env = json.loads(out)
        self.control = os.path.join(self.dir, "control.sock")
        self.run_dir = self.env["XENSIM_RUN_DIR"]
        self.ledger = os.path.join(self.dir, "state", "ledger.json")
        self.stopped = False

    # -- admin socket ---------------------------------------------------------------------------

    def admin(self, op, **args):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        try:
            sock.connect(self.control)
            sock.sendall(json.dumps(dict(args, op=op)).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(1 << 20)
                if not chunk:
                    raise ConnectionError("the simulator closed the admin connection")
                data += chunk
        finally:
            sock.close()
        reply = json.loads(data)
        if not reply.get("ok"):
            raise RuntimeError("xensim %s: %s" % (op, reply.get("error")))
        return reply

    def domains(self):
        """name -> the simulator's own description (state, flags, shutdown code, counters, ...)."""
        return {d["name"]: d for d in self.admin("list")["domains"]}

    def domid(self, name):
        return self.domains()[name]["domid"]

    def fault(self, kind, name=None, **args):
        domid = None if name is None else (name if isinstance(name, int) else self.domid(name))
        return self.admin("fault", kind=kind, domid=domid, **args)

    def heartbeats(self, names):
        doms = self.domains()
        return dict((n, doms[n]["heartbeat"]) for n in names)

    # -- xenstore, read as dom0 ------------------------------------------------------------------

    def xs_read(self, path):
        """The node's value as bytes, None when it does not exist."""
        import errno
        from pyxs import Client, PyXSError  # the venv has it
        with Client(unix_socket_path=self.env["XENSTORED_PATH"]) as client:
            try:
                return client.read(path.encode() if isinstance(path, str) else path)
            except PyXSError as exc:
                if exc.args and exc.args[0] == errno.ENOENT:
                    return None
                raise

    # -- ledger ---------------------------------------------------------------------------------

    def ledger_entries(self):
        """uuid -> entry, {} when there is no ledger file."""
        try:
            with open(self.ledger) as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return {}
        entries = data.get("entries", data)
        if isinstance(entries, list):
            entries = dict((e["uuid"], e) for e in entries)
        return entries

    def ledger_names(self, state=None):
        return sorted(e.get("name") for e in self.ledger_entries().values()
                      if state is None or e.get("state") == state)

    def stop(self):
        if self.stopped:
            return
        self.stopped = True
        try:
            xensim_cli("stop", "--dir", self.dir, check=False)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def as_yaml(value):
    """JSON is YAML: no quoting surprises with Jinja or odd guest names."""
    return json.dumps(value, indent=1)


class PlaybookRun(object):
    def __init__(self, rc, stdout, stderr, results, seconds):
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.results = results
        self.seconds = seconds

    def __getitem__(self, name):
        if name not in self.results or self.results[name] is None:
            raise AssertionError("the playbook saved no result %r\n%s" % (name, self))
        return self.results[name]

    def __str__(self):
        return "ansible-playbook rc=%d (%.1fs)\n--- stdout\n%s\n--- stderr\n%s" % (
            self.rc, self.seconds, self.stdout[-8000:], self.stderr[-4000:])


class Runner(object):
    """Builds one play on localhost (connection local, the venv's python) from a list of task
    dicts, runs it with ansible-playbook and returns every registered variable, saved to JSON by
    an ``always:`` section so a failing task still leaves its result behind."""

    def __init__(self, sim, collections):
        self.sim = sim
        self.collections = collections

    def defaults(self, **extra):
        values = {"ledger": self.sim.ledger, "xen_run_dir": self.sim.run_dir, "xenstore_timeout": 5}
        values.update(extra)
        return values

    def play(self, tasks, module_defaults=None, keep_going=True):
        registered = []
        prepared = []
        for task in tasks:
            task = dict(task)
            if "register" in task:
                registered.append(task["register"])
            if keep_going:
                task.setdefault("ignore_errors", True)
            prepared.append(task)
        save = "{{ %s | to_json }}" % (
            "{" + ", ".join("%s: lookup('vars', %s, default=None)" % (json.dumps(n), json.dumps(n))
                            for n in registered) + "}")
        return [{
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars": {"ansible_python_interpreter": PYTHON},
            "module_defaults": {"group/xen.suspend.suspend": module_defaults or self.defaults()},
            "tasks": [{
                "block": prepared,
                "always": [{
                    "name": "Save every registered result",
                    "ansible.builtin.copy": {"content": save, "dest": "{{ results_file }}",
                                             "mode": "0600"},
                    "check_mode": False,
                    "diff": False,
                }],
            }],
        }]

    def command(self, playbook_text, check=False, diff=False):
        workdir = tempfile.mkdtemp(prefix="play-", dir=self.sim.dir)
        path = os.path.join(workdir, "play.yml")
        with open(path, "w") as handle:
            handle.write(playbook_text)
        results_file = os.path.join(workdir, "results.json")
        argv = [ANSIBLE_PLAYBOOK, path, "-e", json.dumps({"results_file": results_file})]
        if check:
            argv.append("--check")
        if diff:
            argv.append("--diff")
        return argv, results_file

    def environment(self, pipelining=True):
        env = dict(os.environ)
        env.update(self.sim.env)
        env.update(ANSIBLE_COLLECTIONS_PATH=str(self.collections), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_PIPELINING="True" if pipelining else "False",
                   ANSIBLE_RETRY_FILES_ENABLED="False", ANSIBLE_LOCALHOST_WARNING="False",
                   ANSIBLE_INVENTORY_UNPARSED_WARNING="False", ANSIBLE_DEPRECATION_WARNINGS="False",
                   ANSIBLE_LOCAL_TEMP=os.path.join(self.sim.dir, "ansible-local"),
                   ANSIBLE_REMOTE_TEMP=os.path.join(self.sim.dir, "ansible-remote"),
                   ANSIBLE_FORKS="1")
        return env

    def start(self, tasks, check=False, diff=False, module_defaults=None, keep_going=True,
              pipelining=True):
        """Start the play in the background; finish with ``wait(handle)``."""
        text = as_yaml(self.play(tasks, module_defaults, keep_going))
        argv, results_file = self.command(text, check=check, diff=diff)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.environment(pipelining), start_new_session=True)
        return (proc, results_file, time.monotonic())

    def wait(self, handle, timeout=120):
        proc, results_file, started = handle
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            raise AssertionError("ansible-playbook did not finish within %ss\n%s\n%s"
                                 % (timeout, stdout[-4000:], stderr[-4000:]))
        results = {}
        if os.path.exists(results_file):
            with open(results_file) as handle_:
                results = json.load(handle_)
        return PlaybookRun(proc.returncode, stdout, stderr, results, time.monotonic() - started)

    def run(self, tasks, **kwargs):
        timeout = kwargs.pop("timeout", 120)
        return self.wait(self.start(tasks, **kwargs), timeout=timeout)


def descendants(pid):
    """Every process below ``pid`` (ours: ansible-playbook we started and its children)."""
    found = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir("/proc/%d/task" % parent)
        except OSError:
            continue
        for tid in tasks:
            try:
                with open("/proc/%d/task/%s/children" % (parent, tid)) as handle:
                    children = [int(c) for c in handle.read().split()]
            except OSError:
                continue
            found.extend(children)
            todo.extend(children)
    return found


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def by_name(result):
    """A module result's per-domain list as name -> entry."""
    return dict((d["name"], d) for d in result["domains"])
