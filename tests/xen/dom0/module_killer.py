"""Runs IN a test-bed dom0 (python3 - VERB ARGS < this file); stdlib only. Prints one JSON object.

  monitor NAME DOMID   xl's monitor of that domain, found as the collection finds it (the last
                       "Waiting for domain NAME (domid N) to die [pid P]" in /var/log/xen/xl-NAME.log,
                       confirmed to be an xl process), with its /proc state letter (T: stopped),
                       or null
  snapshot NAME:DOMID...  for each: that monitor, the domain's `xl list` state letters, and the
                       domid its name has now (in one go: every ssh round trip costs under TCG)
  kill OPTIONS_JSON    SIGKILL the process running domain_suspended on some domains at a chosen
                       moment and report what things looked like at that moment

The process to kill is the holder of libxl's suspend locks of the domains
(XEN_RUN_DIR/suspend-evtchn-DOMID.lock, POSIX locks, so /proc/locks names the pid): under
Ansible's pipelining that is the python3 process running the module itself, not ansible-playbook
and not the shell around it. OPTIONS_JSON:

  domains [{domid, name, kind (xenstore|evtchn), baseline}], ledger (path), ready (a file
  created once we watch), timeout (s), mode:
    after_verify  every guest suspended, and the module has not recorded it: we take the
                  ledger's writer lock just after the module wrote its intents, so it cannot
                  write again; it verifies each suspend it sees (giving that domain's suspend
                  lock back) and then waits for the ledger lock; it is killed once every domain
                  shows as suspended and it verified them all (or 2 s later, wherever it is)
    on_request    every suspend request is out but no guest can act on it (the test took their
                  access to ~/control/shutdown away): xenstore, the module's "suspend" is in
                  ~/control/shutdown; evtchn, the guest's agent counted a notification past
                  `baseline` (it cannot write the "suspend" that would make its kernel suspend).
                  Where xl's monitor is stopped (4.17), it is stopped by then.
"""
import errno
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time

WAITING = re.compile(r"Waiting for domain (?P<name>\S+) \(domid (?P<domid>\d+)\) to die \[pid (?P<pid>\d+)\]")
STARTED = time.monotonic()


class Missed(Exception):
    """The moment to kill at never came (the module ended, failed, or took too long)."""


def elapsed():
    return round(time.monotonic() - STARTED, 3)


def proc_state(pid):
    """The /proc state letter of pid, or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[0]


def alive(pid):
    return proc_state(pid) not in (None, "Z", "X")


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return None


def monitor(name, domid):
    try:
        with open("/var/log/xen/xl-%s.log" % name, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    pids = [int(m.group("pid")) for m in WAITING.finditer(text)
            if m.group("name") == name and int(m.group("domid")) == int(domid)]
    if not pids:
        return None
    pid = pids[-1]
    argv = cmdline(pid)
    if not argv or os.path.basename(argv.split()[0]) != "xl":
        return None
    return {"pid": pid, "state": proc_state(pid)}


def xl_state(domid):
    """The state letters `xl list` shows (r b p s c d), or None when the domain is gone."""
    out = subprocess.run(["xl", "list", str(domid)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         universal_newlines=True).stdout.splitlines()
    return out[1].split()[4] if len(out) > 1 else None


def store_read(path):
    proc = subprocess.run(["xenstore-read", path], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          universal_newlines=True)
    return proc.stdout.rstrip("\n") if proc.returncode == 0 else None


def run_dir():
    return "/run/xen" if os.path.isdir("/run/xen") else "/var/run/xen"


def lock_holder(path):
    """The pid holding a POSIX lock on the file at path now, or None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    wanted = "%02x:%02x:%d" % (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    with open("/proc/locks") as f:
        for line in f:
            fields = line.split()
            # "1: POSIX  ADVISORY  WRITE 2542 00:1a:1234 0 0"; waiters have "->" in field 1
            if len(fields) >= 6 and fields[1] == "POSIX" and fields[5] == wanted:
                return int(fields[4])
    return None


def ledger_entry(path, domid, name):
    try:
        with open(path) as f:
            entries = json.load(f).get("entries", {})
    except (OSError, ValueError):
        return None
    for entry in entries.values():
        if entry.get("domid") == domid and entry.get("name") == name:
            return entry
    return None


def wait(what, predicate, deadline, pid=None, interval=0.001):
    while True:
        value = predicate()
        if value:
            return value
        if pid is not None and not alive(pid):
            raise Missed("the module's process ended while waiting until " + what)
        if time.monotonic() > deadline:
            raise Missed("timed out waiting until " + what)
        time.sleep(interval)


def stop(pid, deadline):
    os.kill(pid, signal.SIGSTOP)
    wait("the module is stopped", lambda: proc_state(pid) in ("T", "t"), deadline, pid)


def kill(options):
    """Kill the one domain_suspended process working on every domain of options["domains"]."""
    domains = [dict(d, domid=int(d["domid"]), home="/local/domain/%d" % int(d["domid"]),
                    lock_file=os.path.join(run_dir(), "suspend-evtchn-%d.lock" % int(d["domid"])))
               for d in options["domains"]]
    mode, ledger = options["mode"], options["ledger"]
    deadline = time.monotonic() + float(options.get("timeout", 90))
    report = {"mode": mode, "events": {}}
    events = report["events"]
    ledger_fd = None
    stopped_by_us = False
    pid = None

    def the_holder():
        found = set(lock_holder(d["lock_file"]) for d in domains)
        return found.pop() if len(found) == 1 else None

    with open(options["ready"], "w"):
        pass
    try:
        pid = wait("one process holds the suspend lock of every domain",
                   the_holder, deadline)
        events["module_found"] = elapsed()
        report["pid"] = pid
        report["cmdline"] = cmdline(pid)
        if "python" not in (report["cmdline"] or ""):
            raise Missed("the lock holder %d is not python: %r" % (pid, report["cmdline"]))

        if mode == "after_verify":
            wait("the module wrote its intents",
                 lambda: all(ledger_entry(ledger, d["domid"], d["name"]) for d in domains), deadline, pid)
            events["intents_seen"] = elapsed()
            ledger_fd = os.open(ledger + ".lock", os.O_CREAT | os.O_RDWR, 0o600)
            while True:  # take the writer lock while the module is stopped outside its own hold
                stop(pid, deadline)
                stopped_by_us = True
                try:
                    fcntl.lockf(ledger_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                os.kill(pid, signal.SIGCONT)
                stopped_by_us = False
                time.sleep(0.002)
            events["ledger_locked"] = elapsed()
            report["ledger_states_when_locked"] = dict(
                (d["name"], (ledger_entry(ledger, d["domid"], d["name"]) or {}).get("state")) for d in domains)
            os.kill(pid, signal.SIGCONT)
            stopped_by_us = False
            wait("every domain shows as suspended",
                 lambda: all((xl_state(d["domid"]) or "").find("s") == 3 for d in domains),
                 deadline, pid, interval=0.02)
            events["suspended_seen"] = elapsed()
            # The module verifies each suspend (and gives that domain's suspend lock back) as it
            # sees it; a verified one's record waits for the ledger lock we hold, which can keep
            # it from looking at the others: give it a moment, then kill it wherever it is.
            try:
                wait("the module verified every suspend",
                     lambda: all(lock_holder(d["lock_file"]) != pid for d in domains),
                     min(deadline, time.monotonic() + 2), pid, interval=0.02)
                events["all_verified"] = elapsed()
            except Missed:
                if not alive(pid):
                    raise
        elif mode == "on_request":
            def requested(d):
                if d["kind"] == "xenstore":
                    return store_read(d["home"] + "/control/shutdown") == "suspend"
                return int(store_read(d["home"] + "/data/evtchn-notifications") or 0) > int(d.get("baseline") or 0)
            wait("every domain's suspend request is out (xenstore: the module's \"suspend\" is in "
                 "~/control/shutdown; evtchn: the agent was notified)",
                 lambda: all(requested(d) for d in domains), deadline, pid, 0.005)
            events["requests_seen"] = elapsed()
        else:
            raise ValueError("unknown mode %r" % mode)

        report["module_state_at_kill"] = proc_state(pid)
        report["at_kill"] = dict((d["name"], {
            "domain_state": xl_state(d["domid"]),
            "monitor": monitor(d["name"], d["domid"]),
            "ledger_entry": ledger_entry(ledger, d["domid"], d["name"]),
            "control_shutdown": store_read(d["home"] + "/control/shutdown"),
            "suspend_lock_held": lock_holder(d["lock_file"]) == pid,
        }) for d in domains)
        os.kill(pid, signal.SIGKILL)
        events["killed"] = elapsed()
        wait("the killed module is gone", lambda: not alive(pid), deadline)
        report["killed"] = True
    except Missed as exc:
        report["killed"] = False
        report["missed"] = str(exc)
        report["module_alive"] = pid is not None and alive(pid)
    finally:
        if stopped_by_us and pid is not None:
            try:
                os.kill(pid, signal.SIGCONT)
            except OSError:
                pass
        if ledger_fd is not None:
            os.close(ledger_fd)  # drops our writer lock
    return report


def main(argv):
    if argv[0] == "monitor":
        result = monitor(argv[1], int(argv[2]))
    elif argv[0] == "snapshot":
        result = {}
        for item in argv[1:]:
            name, domid = item.rsplit(":", 1)
            now = subprocess.run(["xl", "domid", name], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 universal_newlines=True)
            result[name] = {"monitor": monitor(name, int(domid)), "domain_state": xl_state(int(domid)),
                            "domid_now": int(now.stdout) if now.returncode == 0 else None}
    elif argv[0] == "kill":
        result = kill(json.loads(argv[1]))
    else:
        raise SystemExit("usage: monitor NAME DOMID | snapshot NAME:DOMID... | kill OPTIONS_JSON")
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1:])
