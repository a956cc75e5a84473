#!/usr/bin/env python3
# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""`make demo`: xen.suspend.maintenance against a simulated Xen dom0 of 55 guests.

`make demo-reboot` (--reboot): the save-to-disk variant against a dom0 of 24 guests
(tests/demo/demo-reboot-fleet.yaml): host_maintenance_mode=save saves every guest to disk, the
maintenance runs, the dom0 is rebooted (the simulator's reboot: every domain gone, the files
kept, a new boot id), the role waits for xenstored and xl, restores exactly what it saved and
prints the per-guest table with image sizes and times.

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
REBOOT_FLEET = os.path.join(HERE, "demo-reboot-fleet.yaml")
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
# The reboot variant: save to disk, reboot, restore (the reboot and boot-id commands, the
# connection and the save directory come from the simulated dom0's inventory).
REBOOT_VARS = {
    "host_maintenance_tasks_file": TASKS,
    "host_maintenance_mode": "save",
    "host_maintenance_reboot": True,
    "fleet_save_parallel": 8,
    "fleet_restore_parallel": 4,
    "fleet_restore_order": ["db-*", "app-*"],
}
MIB = 1048576.0


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


def cell(value, template="%.2f"):
    return "-" if value is None else template % value


def summarize_reboot(save, restore, reboot_seconds, time_sync, boots, leftovers, wall_seconds):
    """The per-guest table of the save/reboot/restore run and a summary; True when every saved
    guest runs again and nothing is left on disk or in the ledger."""
    rows = restore["guests"]
    header = ("guest", "image MiB", "save s", "write MiB/s", "restore s", "restore MiB/s", "restored, or why not")
    saves = dict((row["uuid"], row) for row in save["guests"])
    lines = [header]
    for row in rows:
        saved = saves.get(row["uuid"], {})
        lines.append((row["name"], cell(row.get("image_size") and row["image_size"] / MIB, "%.1f"),
                      cell(row.get("save_seconds")), cell(saved.get("save_mib_per_s"), "%.1f"),
                      cell(row.get("restore_seconds")), cell(row.get("restore_mib_per_s"), "%.1f"), row["outcome"]))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    print()
    for number, line in enumerate(lines):
        cells = [line[0].ljust(widths[0])] + [line[i].rjust(widths[i]) for i in range(1, len(widths))]
        print("  ".join(cells + [line[-1]]).rstrip())
        if number == 0:
            print("  ".join("-" * width for width in widths + [len(header[-1])]))
    print("(write MiB/s: image over xl save plus the flush to disk; restore MiB/s: image over restore s)")
    restored = [row for row in rows if row["state"] == "restored"]
    sizes = [row["image_size"] for row in rows if row.get("image_size")]
    sstats, rstats = save.get("stats") or {}, restore.get("stats") or {}
    print()
    print("saved             %d guests, %.1f MiB of images, %s s wall (parallel %s)" % (
        len(save["saved"]), sum(sizes) / MIB, cell(sstats.get("wall_seconds")), REBOOT_VARS["fleet_save_parallel"]))
    print("dom0 reboot       boot id %s -> %s, %s (ansible.builtin.reboot with the simulator's reboot command)" % (
        boots[0][:8], boots[1][:8], "%.1f s" % reboot_seconds if reboot_seconds is not None else "not timed"))
    print("dom0 clock        %s" % (time_sync or "not reported"))
    print("restored          %d of %d saved, %s s wall (parallel %s, order %s)" % (
        len(restored), len(save["saved"]), cell(rstats.get("wall_seconds")), REBOOT_VARS["fleet_restore_parallel"],
        ", ".join(REBOOT_VARS["fleet_restore_order"])))
    print("left behind       %s" % (", ".join(leftovers) or "nothing (ledger empty, no image left)"))
    print("whole demo        %.1f s" % wall_seconds)
    return len(restored) == len(save["saved"]) and not leftovers and boots[0] != boots[1]


def reboot_task_seconds(events):
    """How long the reboot task ran: from the event just before it to its own (ansible.builtin.reboot's
    `elapsed` counts whole seconds, 0 for the simulator's sub-second reboot)."""
    for before, record in zip(events, events[1:]):
        if record.get("action") == "ansible.builtin.reboot" and record.get("event") == "ok":
            if "time" in before and "time" in record:
                return record["time"] - before["time"]
    return None


def run_reboot(args, started):
    print("== starting a simulated Xen dom0 (tests/xensim, fleet %s)" % os.path.relpath(args.fleet, REPO))
    with SimulatedDom0(args.fleet, keep=args.keep, rebootable=True) as dom0:
        first_boot = dom0.boot_id()
        print("   up in %.1f s: XENSTORED_PATH=%s, boot id %s" % (
            time.monotonic() - started, dom0.env["XENSTORED_PATH"], first_boot[:8]))
        shown = dict(REBOOT_VARS, host_maintenance_tasks_file=os.path.relpath(TASKS, REPO))
        print("== ansible-playbook xen.suspend.maintenance -e '%s'" % json.dumps(shown))
        print("   (the dom0's inventory gives host_maintenance_reboot_command=`xensimctl reboot`, "
              "host_maintenance_boot_time_command=`cat <dir>/boot_id`, xen_suspend_save_dir, and "
              "host_maintenance_wait_time_sync=false: the simulated dom0's clock is this machine's)")
        events_path = os.path.join(dom0.workdir, "events.jsonl")
        rc = dom0.playbook(["xen.suspend.maintenance", "-e", json.dumps(REBOOT_VARS)], env={
            "ANSIBLE_CALLBACK_PLUGINS": CALLBACKS,
            "ANSIBLE_CALLBACKS_ENABLED": "xen_suspend_events",
            "XEN_SUSPEND_EVENTS_LOG": events_path,
            "ANSIBLE_DISPLAY_SKIPPED_HOSTS": "False",
        })
        if rc == 99:
            raise Interrupted("ansible-playbook was interrupted")
        events = read_events(events_path)
        save, restore = last_fact(events, "fleet_save_result"), last_fact(events, "fleet_restore_result")
        reboot_seconds = reboot_task_seconds(events)
        time_sync = last_fact(events, "host_maintenance_time_sync")
        leftovers = sorted(os.listdir(dom0.save_dir)) if os.path.isdir(dom0.save_dir) else []
        if os.path.exists(dom0.ledger):
            with open(dom0.ledger) as handle:
                leftovers += ["ledger entry %s" % uuid for uuid in json.load(handle).get("entries", {})]
        if save is None or restore is None:
            print("!! the roles reported no result (ansible-playbook rc=%d); left behind: %s"
                  % (rc, ", ".join(leftovers) or "nothing"))
            return 1
        print("== the per-guest table of xen.suspend.fleet_restore (fleet_restore_result.guests)")
        complete = summarize_reboot(save, restore, reboot_seconds, time_sync, (first_boot, dom0.boot_id()),
                                    leftovers, time.monotonic() - started)
        if rc:
            print("!! ansible-playbook failed (rc=%d)" % rc)
        return 0 if rc == 0 and complete else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fleet", default=None, help="xensim fleet spec (default: %s, with --reboot %s)" % (
        os.path.relpath(FLEET, REPO), os.path.relpath(REBOOT_FLEET, REPO)))
    parser.add_argument("--reboot", action="store_true",
                        help="the save-to-disk variant: save, reboot the simulated dom0, restore")
    parser.add_argument("--keep", action="store_true", help="keep the state directory (logs, ledger)")
    args = parser.parse_args()
    if args.fleet is None:
        args.fleet = REBOOT_FLEET if args.reboot else FLEET
    if args.reboot:
        started = time.monotonic()
        sys.stdout.reconfigure(line_buffering=True)
        try:
            return run_reboot(args, started)
        except (KeyboardInterrupt, Interrupted) as exc:
            print("\n!! interrupted (%s): the simulator is stopped" % (exc or "Ctrl-C"))
            return 130

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
