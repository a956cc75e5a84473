#!/usr/bin/env python3
# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""`make demo`: xen.suspend.maintenance against a simulated Xen dom0 of 55 guests.

1. start the simulated dom0 (tests/xensim) with the fleet of tests/demo/demo-fleet.yaml;
2. run the collection's own playbook, `ansible-playbook xen.suspend.maintenance` (this checkout
   installed as the collection by a symlink), with tests/demo/maintenance-tasks.yml as the
   maintenance: the roles suspend the fleet, run the maintenance, resume exactly what the ledger
   records and print their per-guest table;
3. print that table again without Ansible's quoting (the role's fleet_resume_result.guests,
   formatted by the same xen.suspend.guest_table filter) and a summary;
4. check with the simulator itself that no guest is left suspended, and stop it whatever
   happened (also on failure, Ctrl-C or SIGTERM).

Run it with the project's venv python (`make demo` does). No root needed.
"""

import argparse
import importlib.util
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from simdom0 import HOST, REPO, Interrupted, SimulatedDom0  # noqa: E402  pylint: disable=wrong-import-position

FLEET = os.path.join(HERE, "demo-fleet.yaml")
TASKS = os.path.join(HERE, "maintenance-tasks.yml")
CALLBACKS = os.path.join(REPO, "tests", "roles", "callback_plugins")
SHUTDOWN_SUSPEND = 2
# Shorter than the roles' libxl-like 60 s defaults, so that the unresponsive guests of the demo
# fleet do not hold the demo up for minutes; every guest in flight at once.
DEMO_VARS = {
    "host_maintenance_tasks_file": TASKS,
    "fleet_suspend_continue_on_error": True,   # suspend what can be suspended, report the rest
    "fleet_suspend_ack_timeout": 5,
    "fleet_suspend_timeout": 8,
    "fleet_suspend_parallel": 64,
}


def guest_table(rows):
    """The collection's own xen.suspend.guest_table filter."""
    spec = importlib.util.spec_from_file_location(
        "xen_suspend_guest_table", os.path.join(REPO, "plugins", "filter", "guest_table.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.guest_table(rows)


def read_events(path):
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def last_fact(events, name):
    for record in reversed(events):
        if record.get("event") == "ok" and record.get("host") == HOST:
            facts = record["result"].get("ansible_facts") or {}
            if name in facts:
                return facts[name]
    return None


def seconds(value):
    return "-" if value is None else "%.2f" % value


def summarize(suspend, resume, still_suspended, wall_seconds):
    rows = resume["guests"]
    print()
    for line in guest_table(rows):
        print(line)
    by_state = {}
    for row in rows:
        by_state.setdefault(row["state"], []).append(row)
    methods = {}
    for entry in suspend["suspended"]:
        methods[entry["method"]] = methods.get(entry["method"], 0) + 1
    kinds = {}
    for entry in suspend["failed"]:
        kinds[entry["error"]["kind"]] = kinds.get(entry["error"]["kind"], 0) + 1
    downtimes = [row["downtime_seconds"] for row in rows if row.get("downtime_seconds") is not None]
    sstats, rstats = suspend.get("stats") or {}, resume.get("stats") or {}
    print()
    print("guests            %d (protected, never touched: %s)" % (
        len(rows), ", ".join(entry["name"] for entry in suspend["protected"]) or "none"))
    print("suspended         %d  (%s)" % (len(suspend["suspended"]), ", ".join(
        "%s %d" % item for item in sorted(methods.items())) or "-"))
    print("not suspended     %d  (%s)" % (len(suspend["failed"]), ", ".join(
        "%s %d" % item for item in sorted(kinds.items())) or "-"))
    print("resumed           %d of %d suspended" % (len(by_state.get("resumed", [])), len(suspend["suspended"])))
    print("downtime          %s" % ("%.1f s to %.1f s per guest" % (min(downtimes), max(downtimes)) if downtimes
                                    else "- (domain_resumed does not report downtime_seconds yet)"))
    print("suspend run       %s s wall, %.1f ms toolstack CPU, %s xenstore round trips, %s ledger writes" % (
        seconds(sstats.get("wall_seconds")), 1000 * sstats.get("cpu_seconds", 0),
        sstats.get("xenstore_round_trips", "-"), sstats.get("ledger_writes", "-")))
    print("resume run        %s s wall, %.1f ms toolstack CPU" % (
        seconds(rstats.get("wall_seconds")), 1000 * rstats.get("cpu_seconds", 0)))
    print("left suspended    %s (the simulated hypervisor's own view)" % (", ".join(still_suspended) or "none"))
    print("whole demo        %.1f s" % wall_seconds)
    bad = [row["name"] for row in rows if row["state"] not in ("resumed", "failed", "running")]
    if bad:
        print("!! not back: %s" % ", ".join(bad))
    return not bad and not still_suspended and len(by_state.get("resumed", [])) == len(suspend["suspended"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fleet", default=FLEET, help="xensim fleet spec (default: %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep the state directory (logs, ledger)")
    args = parser.parse_args()

    started = time.monotonic()
    sys.stdout.reconfigure(line_buffering=True)   # interleave with ansible-playbook's output
    try:
        print("== starting a simulated Xen dom0 (tests/xensim, fleet %s)" % os.path.relpath(args.fleet, REPO))
        with SimulatedDom0(args.fleet, keep=args.keep) as dom0:
            print("   up in %.1f s: XENSTORED_PATH=%s" % (time.monotonic() - started, dom0.env["XENSTORED_PATH"]))
            shown = dict(DEMO_VARS, host_maintenance_tasks_file=os.path.relpath(TASKS, REPO))
            print("== ansible-playbook xen.suspend.maintenance -e '%s'" % json.dumps(shown))
            print("   (not the defaults: short timeouts and continue_on_error so that the fleet's two "
                  "guests that never suspend are reported and the maintenance still runs; at the "
                  "defaults they would fail the host after 60 s, every guest resumed)")
            events_path = os.path.join(dom0.workdir, "events.jsonl")
            rc = dom0.playbook(["xen.suspend.maintenance", "-e", json.dumps(DEMO_VARS)], env={
                "ANSIBLE_CALLBACK_PLUGINS": CALLBACKS,
                "ANSIBLE_CALLBACKS_ENABLED": "xen_suspend_events",
                "XEN_SUSPEND_EVENTS_LOG": events_path,
                "ANSIBLE_DISPLAY_SKIPPED_HOSTS": "False",
            })
            if rc == 99:   # ansible-playbook: "User interrupted execution"
                raise Interrupted("ansible-playbook was interrupted")
            still_suspended = sorted(name for name, d in dom0.list_domains().items()
                                     if d.get("shutdown_code") == SHUTDOWN_SUSPEND)
            events = read_events(events_path)
            suspend, resume = last_fact(events, "fleet_suspend_result"), last_fact(events, "fleet_resume_result")
            if suspend is None or resume is None:
                print("!! the roles reported no result (ansible-playbook rc=%d); left suspended: %s"
                      % (rc, ", ".join(still_suspended) or "none"))
                return 1
            print("== the per-guest table of xen.suspend.fleet_resume (fleet_resume_result.guests)")
            complete = summarize(suspend, resume, still_suspended, time.monotonic() - started)
            if rc:
                print("!! ansible-playbook failed (rc=%d)" % rc)
            return 0 if rc == 0 and complete else 1
    except (KeyboardInterrupt, Interrupted) as exc:
        print("\n!! interrupted (%s): the simulator is stopped" % (exc or "Ctrl-C"))
        return 130


if __name__ == "__main__":
    sys.exit(main())
