#!/usr/bin/env python3
"""`make demo`: a maintenance run against a simulated Xen dom0, then a per-guest summary.

1. start the simulated dom0 (tests/xensim) with the fleet of tests/demo/demo-fleet.yaml;
2. run tests/demo/maintenance-demo.yml with ansible-playbook, this checkout installed as the
   collection xen.suspend (a symlink, no copy): discover, suspend the fleet, a maintenance
   stand-in, resume exactly what the ledger records;
3. print a summary built only from the modules' return values, which the play saved to JSON;
4. stop the simulator, whatever happened (also on failure, Ctrl-C or SIGTERM).

Run it with the project's venv python (`make demo` does): that python runs ansible-playbook, the
modules (ansible_python_interpreter) and the simulator. No root needed.

When the collection's fleet roles exist (roles/), only maintenance-demo.yml needs to change; this
driver reads nothing but the results file the play writes (keys discovered, suspended, during,
resumed: the registered results of domain_info, domain_suspended and domain_resumed).
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
XENSIM_ROOT = os.path.join(REPO, "tests", "xensim")
PLAYBOOK = os.path.join(HERE, "maintenance-demo.yml")
FLEET = os.path.join(HERE, "demo-fleet.yaml")
RUNNING = ("running", "blocked")


class Interrupted(Exception):
    pass


def on_signal(signum, _frame):
    raise Interrupted("signal %d" % signum)


def xensim(*args, **kwargs):
    env = dict(os.environ, PYTHONPATH=XENSIM_ROOT)
    return subprocess.run([sys.executable, "-m", "xensim"] + list(args), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def start_simulator(state_dir, fleet):
    started = time.monotonic()
    proc = xensim("start", "--spec", fleet, "--dir", state_dir, "--json", timeout=300)
    if proc.returncode:
        raise SystemExit("could not start the simulated dom0:\n%s%s" % (proc.stdout, proc.stderr))
    env = json.loads(proc.stdout)
    return env, time.monotonic() - started


def stop_simulator(state_dir):
    proc = xensim("stop", "--dir", state_dir, timeout=60)
    if proc.returncode:
        sys.stderr.write("stopping the simulator: %s%s" % (proc.stdout, proc.stderr))


def collections_dir(parent):
    """ansible_collections/xen/suspend -> this checkout."""
    root = os.path.join(parent, "collections")
    os.makedirs(os.path.join(root, "ansible_collections", "xen"))
    os.symlink(REPO, os.path.join(root, "ansible_collections", "xen", "suspend"))
    return root


def run_playbook(workdir, env, results_file, ledger):
    extra = {
        "demo_python": sys.executable,
        "demo_ledger": ledger,
        "demo_results": results_file,
        "xensim_env": env,
    }
    process_env = dict(os.environ,
                       ANSIBLE_COLLECTIONS_PATH=collections_dir(workdir),
                       ANSIBLE_LOCALHOST_WARNING="False",
                       ANSIBLE_INVENTORY_UNPARSED_WARNING="False",
                       ANSIBLE_RETRY_FILES_ENABLED="False",
                       ANSIBLE_PIPELINING="True",
                       ANSIBLE_LOCAL_TEMP=os.path.join(workdir, "ansible-local"),
                       ANSIBLE_REMOTE_TEMP=os.path.join(workdir, "ansible-remote"))
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), PLAYBOOK,
               "-e", json.dumps(extra)]
    # Our own process group: a Ctrl-C reaches ansible-playbook through the terminal anyway, and
    # SIGTERM to this driver is forwarded below.
    proc = subprocess.Popen(command, env=process_env)
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


# -- the summary --------------------------------------------------------------------------------

def seconds(value):
    return "-" if value is None else "%.2f" % value


def short_outcome(entry):
    """Why a guest was not suspended, from its domain_suspended entry."""
    error = entry["error"]
    after = entry.get("after")
    where = "%s in %s" % (error.get("kind"), error.get("phase") or "-")
    if after in RUNNING:
        return "not suspended: %s; still running" % where
    return "not suspended: %s; now %s" % (where, after)


def resume_outcome(entry):
    if entry is None:
        return "LEFT SUSPENDED (domain_resumed did not report it)"
    if entry.get("error"):
        return "resume failed: %s in %s" % (entry["error"].get("kind"), entry["error"].get("phase"))
    if entry.get("changed"):
        return "resumed in %.1f ms" % (1000 * sum(entry.get("phases", {}).values()))
    return "not resumed: %s" % ("; ".join(entry.get("notes") or []) or entry.get("after"))


def summarize(results, wall_seconds):
    discovered = results.get("discovered") or {}
    suspended = results.get("suspended") or {}
    resumed = results.get("resumed") or {}
    types = dict((d["name"], d.get("type")) for d in discovered.get("domains", []))
    resumed_by_name = dict((d["name"], d) for d in resumed.get("domains", []))
    rows = []
    for entry in suspended.get("domains", []):
        name = entry["name"]
        phases = entry.get("phases") or {}
        if entry.get("error"):
            outcome = short_outcome(entry)
        elif entry.get("changed"):
            outcome = resume_outcome(resumed_by_name.get(name))
            if entry.get("notes"):   # e.g. a hostile guest's event channel that was not trusted
                outcome += "; note: " + entry["notes"][0]
        else:
            outcome = "was already suspended: %s" % resume_outcome(resumed_by_name.get(name))
        rows.append((name, types.get(name) or "-", entry.get("method") or "-",
                     seconds(sum(phases.values()) if phases else None), outcome))

    header = ("guest", "type", "method", "suspend s", "resumed, or why not")
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(4)]
    line = "%-*s  %-*s  %-*s  %*s  %s"
    print()
    print(line % (widths[0], header[0], widths[1], header[1], widths[2], header[2], widths[3], header[3], header[4]))
    print(line % (widths[0], "-" * widths[0], widths[1], "-" * widths[1], widths[2], "-" * widths[2],
                  widths[3], "-" * widths[3], "-" * len(header[4])))
    for row in rows:
        print(line % (widths[0], row[0], widths[1], row[1], widths[2], row[2], widths[3], row[3], row[4]))

    by_method = {}
    for entry in suspended.get("domains", []):
        if entry.get("changed"):
            by_method[entry["method"]] = by_method.get(entry["method"], 0) + 1
    failed = suspended.get("failed_domains", [])
    kinds = {}
    for entry in suspended.get("domains", []):
        if entry.get("error"):
            kinds[entry["error"]["kind"]] = kinds.get(entry["error"]["kind"], 0) + 1
    sstats = suspended.get("stats") or {}
    rstats = resumed.get("stats") or {}
    was_suspended = set(suspended.get("suspended", []))
    came_back = set(resumed.get("resumed", []))
    print()
    print("guests            %d (dom0 and protected domains left out: %s)" % (
        len(rows), ", ".join(s["name"] for s in suspended.get("skipped_domains", [])) or "none"))
    print("suspended         %d  (%s)" % (len(was_suspended), ", ".join(
        "%s %d" % item for item in sorted(by_method.items())) or "-"))
    print("not suspended     %d  (%s)" % (len(failed), ", ".join(
        "%s %d" % item for item in sorted(kinds.items())) or "-"))
    print("resumed           %d of %d suspended%s" % (
        len(came_back & was_suspended), len(was_suspended),
        "" if came_back == was_suspended else
        "  !! mismatch: suspended but not resumed %s, resumed but not suspended by this run %s"
        % (sorted(was_suspended - came_back), sorted(came_back - was_suspended))))
    print("suspend run       %s s wall, %s ms toolstack CPU, %s xenstore round trips, %s ledger writes" % (
        seconds(sstats.get("wall_seconds")), "%.1f" % (1000 * sstats.get("cpu_seconds", 0)),
        sstats.get("xenstore_round_trips", "-"), sstats.get("ledger_writes", "-")))
    print("resume run        %s s wall, %s ms toolstack CPU" % (
        seconds(rstats.get("wall_seconds")), "%.1f" % (1000 * rstats.get("cpu_seconds", 0))))
    print("whole demo        %.1f s" % wall_seconds)
    return bool(was_suspended) and came_back == was_suspended and not resumed.get("failed_domains")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fleet", default=FLEET, help="xensim fleet spec (default: %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep the state directory (logs, ledger)")
    args = parser.parse_args()

    started = time.monotonic()
    sys.stdout.reconfigure(line_buffering=True)   # interleave with ansible-playbook's output
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    workdir = tempfile.mkdtemp(prefix="xsdemo-", dir="/tmp")   # Unix socket paths stay short
    state_dir = os.path.join(workdir, "dom0")
    results_file = os.path.join(workdir, "results.json")
    simulator_started = False
    status = 1
    try:
        print("== starting a simulated Xen dom0 (tests/xensim, fleet %s)" % os.path.relpath(args.fleet, REPO))
        simulator_started = True
        env, took = start_simulator(state_dir, args.fleet)
        print("   up in %.1f s: XENSTORED_PATH=%s" % (took, env["XENSTORED_PATH"]))
        print("== ansible-playbook %s" % os.path.relpath(PLAYBOOK, REPO))
        rc = run_playbook(workdir, env, results_file, os.path.join(workdir, "ledger", "ledger.json"))
        if rc == 99:   # ansible-playbook: "User interrupted execution"
            raise Interrupted("ansible-playbook was interrupted")
        if not os.path.exists(results_file):
            print("!! the play saved no results (ansible-playbook rc=%d)" % rc)
            return 1
        with open(results_file) as handle:
            results = json.load(handle)
        print("== summary (from the modules' return values)")
        complete = summarize(results, time.monotonic() - started)
        status = 0 if rc == 0 and complete else 1
        if rc:
            print("!! ansible-playbook failed (rc=%d)" % rc)
        return status
    except (KeyboardInterrupt, Interrupted) as exc:
        print("\n!! interrupted (%s): stopping the simulator" % (exc or "Ctrl-C"))
        return 130
    finally:
        if simulator_started:
            stop_simulator(state_dir)
        if args.keep:
            print("state kept in %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
