#!/usr/bin/env python3
# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""`make rehearse`: your own maintenance playbook or tasks file against a simulated dom0 with
your own fleet.

    make rehearse FLEET=my-fleet.yaml TASKS=maintenance/patch-dom0.yml
    make rehearse FLEET=my-fleet.yaml PLAYBOOK=site.yml [GROUP=hypervisors] [ARGS='-e foo=bar --check']

1. start a simulated dom0 (tests/xensim) with the fleet spec FLEET (the format of
   tests/xensim/fleets/*.yaml);
2. write an inventory with one host, dom0-sim, in the group GROUP (default xen_dom0), whose
   variables point the collection at the simulator: the local connection with this Python, no
   become (a play's `become: true` is overridden), the ledger (xen_suspend_ledger_path) and Xen
   run directory (xen_suspend_xen_run_dir and each role's *_xen_run_dir) in a temporary
   directory;
3. run `ansible-playbook -i THAT_INVENTORY PLAYBOOK ARGS` in the playbook's directory (its
   ansible.cfg applies, as in an AWX project) - or, with TASKS, `ansible-playbook
   xen.suspend.maintenance -e host_maintenance_tasks_file=TASKS ARGS` - with this checkout as
   the collection xen.suspend (ahead of the caller's collections path), the caller's other
   ANSIBLE_* settings, and the simulator's XENSTORED_PATH and LD_LIBRARY_PATH in its
   environment, which the modules inherit;
4. report which guests the simulated hypervisor still holds suspended, stop the simulator and
   remove the temporary directory (--keep keeps it).

With --reboot (make rehearse REBOOT=1) the simulated dom0 can be saved to disk and rebooted: the
simulator's xl is on the modules' PATH, xen_suspend_save_dir is in the temporary directory,
host_maintenance_reboot_command / host_maintenance_boot_time_command are the simulator's reboot
and boot id, and TASKS runs with host_maintenance_mode=save and host_maintenance_reboot=true.
The inventory sets host_maintenance_wait_time_sync=false: the simulated dom0 runs on this
machine, whose clock (chrony on a laptop, often unsynchronised) is not the dom0's, and the wait
would hold the restore for up to 300 s (-e host_maintenance_wait_time_sync=true rehearses it).

Exit status: 3 when guests are left suspended (or, with --reboot, saved images are left on disk),
whether ansible-playbook succeeded or failed (its status is printed); else ansible-playbook's.
No root.
"""

import argparse
import glob
import os
import shlex
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from simdom0 import Interrupted, SimulatedDom0  # noqa: E402  pylint: disable=wrong-import-position

SHUTDOWN_SUSPEND = 2


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fleet", required=True, help="xensim fleet spec (tests/xensim/README.md)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--playbook", help="your playbook")
    what.add_argument("--tasks", help="your maintenance tasks file, run by xen.suspend.maintenance")
    parser.add_argument("--group", default="xen_dom0", help="inventory group of the simulated dom0 (default: %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (inventory, ledger, simulator log)")
    parser.add_argument("--reboot", action="store_true",
                        help="a dom0 that can be saved to disk and rebooted (TASKS: save mode with a reboot)")
    parser.add_argument("--args", default="", help="more ansible-playbook arguments, as one shell-quoted string")
    parser.add_argument("extra", nargs="*", help="more ansible-playbook arguments")
    args = parser.parse_args(argv)

    extra = shlex.split(args.args) + list(args.extra)
    if args.tasks:
        tasks = os.path.abspath(args.tasks)
        if not os.path.isfile(tasks):
            parser.error("no tasks file at %s" % tasks)
        command = ["xen.suspend.maintenance", "-e", "host_maintenance_tasks_file=%s" % tasks]
        if args.reboot:
            command += ["-e", "host_maintenance_mode=save", "-e", "host_maintenance_reboot=true"]
        if args.group != "xen_dom0":
            command += ["-e", "xen_suspend_hosts=%s" % args.group]
    else:
        playbook = os.path.abspath(args.playbook)
        if not os.path.isfile(playbook):
            parser.error("no playbook at %s" % playbook)
        command = [playbook]
    cwd = os.path.dirname(os.path.abspath(args.playbook)) if args.playbook else os.getcwd()
    sys.stdout.reconfigure(line_buffering=True)
    try:
        with SimulatedDom0(args.fleet, group=args.group, keep=args.keep, isolate=False, rebootable=args.reboot) as dom0:
            print("== simulated dom0 up: fleet %s, %d guests; inventory %s (host dom0-sim, group %s)" % (
                args.fleet, len(dom0.list_domains()) - 1, dom0.inventory, args.group))
            print("== ansible-playbook -i %s %s" % (dom0.inventory, " ".join(shlex.quote(a) for a in command + extra)))
            if args.reboot:
                print("   (the inventory sets host_maintenance_wait_time_sync=false: the simulated dom0's clock is "
                      "this machine's; -e host_maintenance_wait_time_sync=true rehearses the wait)")
            rc = dom0.playbook(command + extra, cwd=cwd)
            domains = dom0.list_domains()
            left = sorted(name for name, d in domains.items() if d.get("shutdown_code") == SHUTDOWN_SUSPEND)
            running = sorted(name for name, d in domains.items()
                             if d["domid"] != 0 and d.get("shutdown_code") is None and not d.get("paused"))
            print("== after the run: %d guests running, left suspended: %s" % (len(running), ", ".join(left) or "none"))
            on_disk = sorted(os.path.basename(path) for path in glob.glob(os.path.join(dom0.save_dir, "*")))
            if args.reboot:
                print("== left on disk in the save directory: %s" % (", ".join(on_disk) or "none"))
            if left or on_disk:
                # Exit 3 either way: guests left behind matter more than whether the play was green.
                what = " and ".join(part for part in (
                    "suspended" if left else "", "saved on disk" if on_disk else "") if part)
                if rc == 0:
                    print("!! the playbook succeeded but left guests %s (exit status 3)" % what)
                else:
                    print("!! ansible-playbook failed (rc=%d) and left guests %s (exit status 3); "
                          "xen.suspend.resume brings them back" % (rc, what))
                return 3
            return rc
    except (KeyboardInterrupt, Interrupted) as exc:
        print("\n!! interrupted (%s): the simulator is stopped" % (exc or "Ctrl-C"))
        return 130


if __name__ == "__main__":
    sys.exit(main())
