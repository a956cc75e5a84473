"""The kill-anywhere campaign's machinery: one simulated dom0 reused for many schedules, stand-in
xl monitors, the modules run as their own processes (and SIGKILLed), and the invariant sampler.

Nothing here knows about schedules (see schedules.py) or the command line (campaign.py).

Invariants (the names are the counters of the campaign's last line):

* ``lost``: a guest suspended while the ledger has no entry for it. The engine writes a guest's
  entry *before* sending its request and removes it only *after* the resume is verified, so this
  is a violation at any instant. Sampled every few ms: the ledger file is opened (and kept open),
  then the simulator lists its domains (one atomic snapshot of its event loop), then the ledger
  path is stat'ed again. The ledger is only ever replaced by rename, so an unchanged inode (the
  old one cannot be reused while we hold it open) means the entries read were the ledger's
  content at the very instant of the snapshot; otherwise the sample is taken again.
* ``left_suspended``: a guest still suspended once the final resume finished and every guest
  that was going down has settled.
* ``pending``: ``suspend`` left in a running guest's ~/control/shutdown (read as dom0) once the
  final resume finished: the guest could still act on it, unrecorded.
* ``frozen``: an xl monitor left stopped (state T) for a guest that is not suspended.
* ``hangs``: a module run the harness judged stuck (past its timeouts + 5 s) and killed.
* ``ledger``: the ledger not valid JSON (at any sample), or entries left for running guests.

Save schedules (domain_saved / domain_restored, images in a save directory) add, sampled the same
way (the save directory is listed between the ledger's read and the domain list, inside the
same consistent window):

* ``lost`` also: a guest absent from the domain list (or dying) without an image entry saying
  where it is, or still "saving" (xl save -p never destroys the guest: a saving guest that is
  gone was lost).
* ``image_lost``: a guest absent from the domain list whose entry is "saved" or "restoring"
  while its image is missing or not the size recorded; or an image that disappears while its
  guest is not running (images go only once their guest runs again).
"""

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
XENSIM_ROOT = REPO / "tests" / "xensim"
MODULES = REPO / "plugins" / "modules"
PYTHON = sys.executable
SLEEP = shutil.which("sleep") or "/bin/sleep"
XL_LOG_DIR = "/var/log/xen"
SHUTDOWN_SUSPEND = 2

if str(XENSIM_ROOT) not in sys.path:
    sys.path.insert(0, str(XENSIM_ROOT))


class HarnessError(Exception):
    """The harness itself (or the simulator) failed: not a finding about the engine."""


# -- the collection on PYTHONPATH ---------------------------------------------------------------

def collections_dir(source=REPO):
    """A temporary directory holding ansible_collections/xen/suspend -> ``source`` (this
    checkout, or e.g. an exported commit to compare with)."""
    root = Path(tempfile.mkdtemp(prefix="xsc-coll-"))
    (root / "ansible_collections" / "xen").mkdir(parents=True)
    (root / "ansible_collections" / "xen" / "suspend").symlink_to(Path(source).resolve())
    return root


def modules_dir(coll):
    return Path(coll) / "ansible_collections" / "xen" / "suspend" / "plugins" / "modules"


def module_options(coll, module):
    """The option names of a module's argument_spec (module-specific and common), read in a
    subprocess so that a half-edited engine cannot break the harness process."""
    code = ("import json\n"
            "from ansible_collections.xen.suspend.plugins.modules.%s import argument_spec\n"
            "from ansible_collections.xen.suspend.plugins.module_utils._argument_spec import "
            "common_argument_spec\n"
            "spec = common_argument_spec(); spec.update(argument_spec())\n"
            "print(json.dumps(sorted(spec)))\n" % module)
    proc = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(coll)))
    if proc.returncode:
        raise HarnessError("cannot read the options of %s:\n%s" % (module, proc.stderr[-2000:]))
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


# -- the simulator --------------------------------------------------------------------------------

class AdminConn(object):
    """A persistent connection to the simulator's admin socket (one JSON object per line)."""

    def __init__(self, path, timeout=10.0):
        self.path = path
        self.timeout = timeout
        self.sock = None
        self.buf = b""

    def _connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        self.sock, self.buf = sock, b""

    def call(self, op, **args):
        line = json.dumps(dict(args, op=op)).encode() + b"\n"
        for attempt in (1, 2):
            try:
                if self.sock is None:
                    self._connect()
                self.sock.sendall(line)
                while b"\n" not in self.buf:
                    chunk = self.sock.recv(1 << 20)
                    if not chunk:
                        raise ConnectionError("the simulator closed the admin connection")
                    self.buf += chunk
                reply, self.buf = self.buf.split(b"\n", 1)
                break
            except (OSError, ConnectionError) as exc:
                self.close()
                if attempt == 2:
                    raise HarnessError("simulator admin %s: %s" % (op, exc))
        reply = json.loads(reply)
        if not reply.get("ok"):
            raise HarnessError("simulator admin %s: %s" % (op, reply.get("error")))
        return reply

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock, self.buf = None, b""


def xensim_cli(*args, timeout=120):
    env = dict(os.environ, PYTHONPATH=str(XENSIM_ROOT))
    proc = subprocess.run([PYTHON, "-m", "xensim"] + [str(a) for a in args], capture_output=True,
                          text=True, env=env, timeout=timeout)
    if proc.returncode:
        raise HarnessError("xensim %s failed (rc %d):\n%s%s"
                           % (" ".join(map(str, args)), proc.returncode, proc.stdout, proc.stderr))
    return proc


# The simulated xl's wait for a guest to acknowledge, then to suspend (xl's own 60 s, shortened:
# the campaign's guests answer within 0.03-2.5 s, so some saves succeed and some time out).
XL_SUSPEND_TIMEOUT_MS = 1500


class Sim(object):
    """One simulator with no guests at start; schedules spawn and destroy their own.
    ``xl_log_dir``: where the simulated ``xl restore`` leaves its monitors' logs."""

    def __init__(self, tag="w", xl_log_dir=None):
        self.dir = tempfile.mkdtemp(prefix="xsc-%s-" % tag, dir="/tmp")
        xl = {"suspend_timeout_ms": XL_SUSPEND_TIMEOUT_MS}
        if xl_log_dir:
            xl["log_dir"] = xl_log_dir
        spec = {"heartbeat_ms": 0, "dying_ms": 5, "seed": 1, "guests": [], "xl": xl}
        spec_path = os.path.join(self.dir, "fleet.json")
        with open(spec_path, "w") as handle:
            json.dump(spec, handle)
        self.env = json.loads(xensim_cli("start", "--spec", spec_path, "--dir", self.dir,
                                         "--json").stdout)
        self.control = os.path.join(self.dir, "control.sock")
        self.run_dir = self.env["XENSIM_RUN_DIR"]
        self.admin = AdminConn(self.control)
        self.pid = self.admin.call("ping")["pid"]
        self.stopped = False

    def alive(self):
        try:
            os.kill(self.pid, 0)
        except OSError:
            return False
        return True

    def domains(self, conn=None):
        return (conn or self.admin).call("list")["domains"]

    def spawn(self, name, behaviour, params=None, **overrides):
        reply = self.admin.call("spawn", behaviour=behaviour, count=1, name=name,
                                params=params or {}, **overrides)
        return reply["domids"][0]

    def destroy(self, domid):
        try:
            self.admin.call("fault", kind="destroy", domid=domid)
        except HarnessError:
            pass  # already gone

    def reboot(self):
        """A simulated dom0 reboot: every guest gone, files kept (see tests/xensim/README.md)."""
        return self.admin.call("reboot")

    def set_xl_faults(self, name, faults):
        self.admin.call("xl_fault", name=name, faults=faults or {})

    def xs_read_many(self, paths):
        """{path: bytes or None}, read as dom0 over the xenstore socket."""
        from pyxs import Client, PyXSError
        out = {}
        with Client(unix_socket_path=self.env["XENSTORED_PATH"]) as client:
            for path in paths:
                try:
                    out[path] = client.read(path.encode())
                except PyXSError as exc:
                    if exc.args and exc.args[0] == errno.ENOENT:
                        out[path] = None
                    else:
                        raise
        return out

    def xs_write(self, path, value):
        from pyxs import Client
        with Client(unix_socket_path=self.env["XENSTORED_PATH"]) as client:
            client.write(path.encode(), value)

    def stop(self):
        if self.stopped:
            return
        self.stopped = True
        self.admin.close()
        try:
            xensim_cli("stop", "--dir", self.dir, timeout=30)
        except (HarnessError, subprocess.TimeoutExpired):
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


# -- stand-in xl monitors ------------------------------------------------------------------------

def monitors_available(log_dir=XL_LOG_DIR):
    """Only inside the campaign's private mount namespace, with a tmpfs on /var/log(/xen): the
    real /var/log/xen of the machine is never written."""
    return os.environ.get("XS_CAMPAIGN_NS") == "1" and os.path.isdir(log_dir) and \
        os.access(log_dir, os.W_OK)


def process_state(pid):
    """The state letter of /proc/PID/stat, None when the process is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            stat = handle.read().decode("ascii", "replace")
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[0]


class XlMonitors(object):
    """One process per guest whose argv0 is ``xl`` (a ``sleep`` underneath) and the line xl
    logs in /var/log/xen/xl-NAME.log, which is how the engine finds a domain's monitor."""

    def __init__(self, log_dir=XL_LOG_DIR):
        self.log_dir = log_dir
        self.procs = {}   # name -> Popen

    def start(self, name, domid):
        # (a bounded sleep: one orphaned by a crashed harness goes away by itself)
        proc = subprocess.Popen(["xl", "7200"], executable=SLEEP, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                close_fds=True)
        self.procs[name] = proc
        # Popen may return while the kernel is still setting up the new program (vfork), when
        # /proc/PID/cmdline is still empty: wait until it reads "xl", as the engine needs.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                with open("/proc/%d/cmdline" % proc.pid, "rb") as handle:
                    if handle.read().split(b"\0")[0] == b"xl":
                        break
            except OSError:
                pass
            time.sleep(0.0005)
        else:
            raise HarnessError("the stand-in xl monitor %d did not start" % proc.pid)
        path = os.path.join(self.log_dir, "xl-%s.log" % name)
        with open(path, "w") as handle:
            handle.write("Parsing config from /etc/xen/%s.cfg\n"
                         "Waiting for domain %s (domid %d) to die [pid %d]\n"
                         % (name, name, domid, proc.pid))
        return proc.pid

    def states(self):
        return dict((name, process_state(proc.pid)) for name, proc in self.procs.items())

    def stop_all(self):
        for name, proc in self.procs.items():
            try:
                proc.kill()
            except OSError:
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.unlink(os.path.join(self.log_dir, "xl-%s.log" % name))
            except OSError:
                pass
        self.procs = {}


# -- the modules as processes --------------------------------------------------------------------

class ModuleRun(object):
    def __init__(self, module, label):
        self.module = module
        self.label = label
        self.rc = None
        self.started = None
        self.seconds = None
        self.kill_at = None
        self.connected_at = None
        self.killed = False     # our SIGKILL landed while it ran
        self.hang = False       # judged stuck and killed
        self.budget = None
        self.result = None
        self.stderr = ""

    def summary(self):
        res = self.result or {}
        doms = []
        for d in res.get("domains") or []:
            err = d.get("error") or {}
            doms.append("%s:%s%s%s" % (d.get("name"), d.get("after"),
                                       "!" + err.get("kind") if err else "",
                                       " [%s]" % "; ".join(d.get("notes")) if d.get("notes") else ""))
        text = "%s rc=%s %.3fs" % (self.label, self.rc, self.seconds or 0)
        if self.kill_at is not None:
            text += " kill_at=%.3fs%s %s" % (
                self.kill_at, "" if self.connected_at is None else
                " (connected at %.3fs)" % self.connected_at,
                "KILLED" if self.killed else "(had exited)")
        if self.hang:
            text += " HANG (budget %.1fs)" % self.budget
        if res.get("msg"):
            text += " msg=%r" % res["msg"][:300]
        if doms:
            text += "\n      " + "\n      ".join(doms)
        if self.rc not in (0, -signal.SIGKILL) and not res and self.stderr:
            text += "\n      stderr: " + self.stderr[-600:].replace("\n", "\n      ")
        return text


def has_socket(pid):
    """Whether the process has a socket open: the modules open none before connecting to the
    hypervisor (libxenctrl) and xenstored, which they do before touching anything."""
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:"):
                return True
        except OSError:
            continue
    return False


def run_module(module, args, env, workdir, label, kill=None, budget=60.0, on_start=None,
               modules=MODULES, signame="KILL"):
    """Run plugins/modules/MODULE.py ARGS.json as its own process and wait for it.

    ``kill``: None, or ("start", s): SIGKILL it s seconds after it started, or ("work", s):
    SIGKILL it s seconds after it connected to the (simulated) hypervisor, i.e. once it can
    touch something. ``signame`` TERM or INT sends that signal instead, after which the module
    must end by itself, cleanly, within its budget (else: a hang). Without a kill it gets
    ``budget`` seconds, after which it is judged stuck, killed and called a hang."""
    run = ModuleRun(module, label)
    path = os.path.join(workdir, "%s.json" % label)
    with open(path, "w") as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": args}, handle)
    run.budget = budget
    started = time.monotonic()
    proc = subprocess.Popen([PYTHON, str(Path(modules) / ("%s.py" % module)), path],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=workdir, close_fds=True)
    run.started = started
    if on_start is not None:
        on_start(run)
    # Until it connects it has touched nothing: note when it does (every run, for the reports
    # and the calibration), unless a start-up kill comes first.
    watch_until = budget if kill is None or kill[0] == "work" else kill[1]
    while proc.poll() is None and time.monotonic() - started < watch_until:
        if has_socket(proc.pid):
            run.connected_at = time.monotonic() - started
            break
        time.sleep(0.001)
    limit = budget
    if kill is not None:
        how, seconds = kill
        if how == "work":
            limit = (run.connected_at if run.connected_at is not None else
                     time.monotonic() - started) + seconds
        else:
            limit = seconds
        run.kill_at = limit
    deadline = min(limit, budget)
    try:
        out, err = proc.communicate(timeout=max(0.0, deadline - (time.monotonic() - started)))
    except subprocess.TimeoutExpired:
        if kill is not None and limit <= budget and signame != "KILL":
            proc.send_signal(getattr(signal, "SIG" + signame))  # stop cleanly, by itself
            run.killed = True
            try:
                out, err = proc.communicate(timeout=max(1.0, budget - (time.monotonic() - started)))
            except subprocess.TimeoutExpired:
                proc.kill()
                run.killed = False
                run.hang = True
                out, err = proc.communicate()
        else:
            proc.kill()   # SIGKILL, the module's own process
            if kill is not None and limit <= budget:
                run.killed = True
            else:
                run.hang = True
            out, err = proc.communicate()
    run.seconds = time.monotonic() - started
    run.rc = proc.returncode
    if run.killed and signame == "KILL" and run.rc != -signal.SIGKILL:
        run.killed = False   # it had exited just before
    run.stderr = err.decode("utf-8", "replace")
    text = out.decode("utf-8", "replace").strip()
    if text:
        try:
            run.result = json.loads(text.splitlines()[-1])
        except ValueError:
            run.stderr += "\n[stdout] " + text[-1000:]
    return run


# -- xl processes and the save directory -----------------------------------------------------

def _cmdline(pid):
    try:
        with open("/proc/%s/cmdline" % pid, "rb") as handle:
            raw = handle.read(65536)
    except OSError:
        return None
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def xl_processes(save_dir):
    """{pid: argv} of live ``xl save`` / ``xl restore`` processes naming a file of ``save_dir``
    (the simulated xl is ``python3 .../bin/xl save ...``)."""
    found = {}
    prefix = save_dir.rstrip("/") + "/"
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        argv = _cmdline(name)
        if not argv:
            continue
        for index, arg in enumerate(argv[:3]):
            if os.path.basename(arg) == "xl":
                rest = argv[index + 1:]
                if ("save" in rest or "restore" in rest) and any(a.startswith(prefix) for a in rest):
                    found[int(name)] = argv
                break
    return found


def monitor_processes(names):
    """PIDs of the simulated xl's restore monitors (``xl ... --xensim-monitor NAME``) of ``names``."""
    pids = []
    names = set(names)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        argv = _cmdline(pid)
        if argv and "--xensim-monitor" in argv:
            rest = argv[argv.index("--xensim-monitor") + 1:]
            if rest and rest[0] in names:
                pids.append(int(pid))
    return pids


def kill_pids(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def list_save_dir(save_dir):
    """{file name: size} of ``save_dir`` (empty when it does not exist)."""
    out = {}
    try:
        names = os.listdir(save_dir)
    except FileNotFoundError:
        return out
    for name in names:
        try:
            out[name] = os.stat(os.path.join(save_dir, name)).st_size
        except FileNotFoundError:
            continue
    return out


def restored_monitor_pid(log_dir, name, domid):
    """The pid in the last "Waiting for domain NAME (domid D) to die [pid P]" line of
    ``log_dir``/xl-NAME.log, None when there is none."""
    try:
        with open(os.path.join(log_dir, "xl-%s.log" % name)) as handle:
            text = handle.read()
    except OSError:
        return None
    pid = None
    marker = "Waiting for domain %s (domid %d) to die [pid " % (name, domid)
    for line in text.splitlines():
        if line.startswith(marker):
            try:
                pid = int(line[len(marker):].rstrip("]"))
            except ValueError:
                continue
    return pid


# -- the ledger --------------------------------------------------------------------------------

def read_ledger(path):
    """(entries dict or None when absent, error text or None)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return None, None
    return parse_ledger(data)


def parse_ledger(data):
    try:
        doc = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        return None, "not valid JSON (%s): %r" % (exc, data[:200])
    if not isinstance(doc, dict) or not isinstance(doc.get("entries"), dict):
        return None, "no entries table: %r" % data[:200]
    return doc["entries"], None


class Sampler(threading.Thread):
    """Samples the simulator and the ledger every ``interval`` s (see the module docstring for
    why a sample is a consistent snapshot), records ``lost`` guests, invalid ledgers and a
    timeline of every guest's state changes."""

    IMAGE_STATES = ("saved", "restoring")

    def __init__(self, sim, ledger_path, uuids, t0, interval=0.004, save_dir=None):
        threading.Thread.__init__(self, name="sampler", daemon=True)
        self.sim = sim
        self.conn = AdminConn(sim.control)
        self.ledger_path = ledger_path
        self.save_dir = save_dir          # a save schedule: the images are checked too
        self.image_lost = {}              # name -> description of the first sighting
        self.excluded = set()             # names of guests a simulated reboot powered off
        self.damaged = set()              # names whose image the harness damaged on purpose
        self.held = False                 # no judgement while the harness reboots the dom0
        self.sample_lock = threading.Lock()
        self.images_seen = {}             # uuid -> image size at the last sample
        self.uuids = dict(uuids)          # uuid -> name (this schedule's guests)
        self.t0 = t0
        self.interval = interval
        self.phase = "start"
        self.stop_event = threading.Event()
        self.samples = 0
        self.retries = 0
        self.lost = {}                    # name -> description of the first sighting
        self.ledger_errors = []
        self.timeline = []
        self.last_doms = None
        self.last_entries = {}
        self._state = {}
        self.error = None

    def note(self, text):
        self.timeline.append((time.monotonic() - self.t0, "harness", text))

    def run(self):
        try:
            while not self.stop_event.is_set():
                with self.sample_lock:
                    if not self.held:
                        self.sample()
                self.stop_event.wait(self.interval)
            with self.sample_lock:
                self.sample()
        except Exception as exc:  # reported by the schedule, never silently
            self.error = "%s: %s" % (type(exc).__name__, exc)
        finally:
            self.conn.close()

    def hold(self):
        """Stop judging (the next samples are skipped) until release(); returns once no sample
        is under way."""
        with self.sample_lock:
            self.held = True

    def release(self, excluded=()):
        with self.sample_lock:
            self.excluded |= set(excluded)
            self.images_seen = {}
            self.held = False

    def finish(self):
        self.stop_event.set()
        self.join(30)
        if self.is_alive():
            raise HarnessError("the sampler did not stop")
        if self.error:
            raise HarnessError("sampler: " + self.error)

    def sample(self):
        for _attempt in range(50):
            try:
                fd = os.open(self.ledger_path, os.O_RDONLY)
            except FileNotFoundError:
                fd = None
            try:
                data = None
                if fd is not None:
                    chunks = []
                    while True:
                        chunk = os.read(fd, 1 << 20)
                        if not chunk:
                            break
                        chunks.append(chunk)
                    data = b"".join(chunks)
                # Between the ledger's read and the domain list: an image that an entry saved
                # or restoring throughout the window points to must be there at this instant.
                files = list_save_dir(self.save_dir) if self.save_dir else None
                doms = self.conn.call("list")["domains"]
                now = time.monotonic() - self.t0
                try:
                    after = os.stat(self.ledger_path)
                except FileNotFoundError:
                    after = None
                if fd is None:
                    consistent = after is None
                else:
                    before = os.fstat(fd)
                    consistent = after is not None and (after.st_ino, after.st_dev) == \
                        (before.st_ino, before.st_dev)
            finally:
                if fd is not None:
                    os.close(fd)
            if consistent:
                break
            self.retries += 1
        else:
            return  # the ledger changed under every attempt: no judgement this time
        self.samples += 1
        entries = {}
        if data is not None:
            entries, err = parse_ledger(data)
            if err is not None:
                if len(self.ledger_errors) < 5:
                    self.ledger_errors.append("%.3fs (%s): %s" % (now, self.phase, err))
                entries = {}
        self.last_doms, self.last_entries = doms, entries
        for d in doms:
            name = self.uuids.get(d.get("uuid"))
            if name is None:
                continue
            suspended = d.get("shutdown_code") == SHUTDOWN_SUSPEND and not d.get("dying")
            entry = entries.get(d["uuid"])
            state = (d.get("flags"), d.get("shutdown_code"), d.get("state"),
                     entry.get("state") if entry else None)
            if self._state.get(name) != state:
                self._state[name] = state
                self.timeline.append((now, name, "xl=%s code=%s guest=%s ledger=%s" % state))
            if suspended and entry is None and name not in self.lost and name not in self.excluded:
                self.lost[name] = ("%.3fs into the schedule, during %s: suspended (flags %s), "
                                   "no ledger entry (ledger holds %s)"
                                   % (now, self.phase, d.get("flags"),
                                      sorted(e.get("name") for e in entries.values()) or "nothing"))
        if files is not None:
            self._check_images(doms, entries, files, now)

    def _check_images(self, doms, entries, files, now):
        live = dict((d.get("uuid"), d) for d in doms if not d.get("dying"))
        for uuid, name in self.uuids.items():
            if name in self.excluded:
                continue
            d = live.get(uuid)
            entry = entries.get(uuid)
            image = "%s.xlsave" % uuid
            size = files.get(image)
            running = d is not None and d.get("shutdown_code") is None and not d.get("paused")
            seen = self.images_seen.get(uuid)
            if size is None and seen is not None and not running and name not in self.image_lost:
                self.image_lost[name] = (
                    "%.3fs into the schedule, during %s: its image (%d bytes) was removed while "
                    "the guest does not run (%s; ledger %s)"
                    % (now, self.phase, seen, "absent" if d is None else "flags %s" % d.get("flags"),
                       entry.get("state") if entry else "no entry"))
            if size is None:
                self.images_seen.pop(uuid, None)
            else:
                self.images_seen[uuid] = size
            if d is not None:
                continue
            state = entry.get("state") if entry else None
            if state not in self.IMAGE_STATES:
                if name not in self.lost:
                    self.lost[name] = ("%.3fs into the schedule, during %s: no domain, and the "
                                       "ledger %s" % (now, self.phase, "has no entry" if entry is None
                                                      else "entry is %r" % state))
                continue
            wrong_size = size != entry.get("image_size") and name not in self.damaged
            if (size is None or wrong_size) and name not in self.image_lost:
                self.image_lost[name] = (
                    "%.3fs into the schedule, during %s: no domain, ledger %s (image_size %s), "
                    "image %s" % (now, self.phase, state, entry.get("image_size"),
                                  "missing" if size is None else "of %d bytes" % size))
