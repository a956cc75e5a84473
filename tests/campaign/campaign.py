#!/usr/bin/env python3
"""The kill-anywhere campaign (issues 10 and 12): "never lose a guest", however a run dies.

Each schedule starts a mixed fleet on a simulated dom0 (tests/xensim), runs domain_suspended as
its own process and SIGKILLs it at a random moment (or lets it finish and SIGKILLs the first
domain_resumed; or kills both), then runs domain_resumed to completion and checks the invariants
listed in harness.py: lost, left_suspended, pending, frozen, hangs (and ledger). Save schedules
(save_runs.py) do the same with domain_saved and domain_restored, xl faults and dom0 reboots, and
add image_lost and left_saved (and files).

    tests/campaign/campaign.py [--schedules N] [--seed S] [--jobs J]
    tests/campaign/campaign.py --seed S --schedule K [--repeat R] [--kills w0.031,s0.12]

Everything about schedule K comes from (S, K); a failing schedule is re-run alone with
``--seed S --schedule K`` (timing still varies; ``--repeat`` and ``--kills`` help).

As root it re-executes itself in a private mount namespace (``unshare -m``) with a tmpfs on
/var/log (so /var/log/xen is private and the machine's is never touched), and starts one
stand-in xl monitor process per guest; otherwise ``frozen`` is n/a. The last line is:

    campaign schedules=N kills=K lost=0 left_suspended=0 pending=0 frozen=0 hangs=0 image_lost=0 left_saved=0

and the exit status is non-zero if anything was violated (1) or the harness failed (2).
"""

import argparse
import json
import os
import selectors
import shutil
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402
import runner  # noqa: E402
import schedules  # noqa: E402
from harness import HarnessError  # noqa: E402

NS_MARK = "XS_CAMPAIGN_NS"


# -- the private mount namespace ---------------------------------------------------------------

def enter_namespace(argv):
    """Re-execute under ``unshare -m`` when we can (root, unshare present); returns False when
    the campaign must run without stand-in xl monitors."""
    if os.environ.get(NS_MARK) is not None:
        return True
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"],
                           capture_output=True)
    if probe.returncode:
        return False
    env = dict(os.environ)
    env[NS_MARK] = "pending"
    os.execvpe("unshare", ["unshare", "-m", "--propagation", "private",
                           sys.executable, os.path.abspath(__file__)] + argv, env)
    return True  # not reached


def prepare_namespace():
    """In the new namespace: a tmpfs over /var/log/xen (or over /var/log when the machine has
    no /var/log/xen, so as not to create it); True when it worked."""
    if os.environ.get(NS_MARK) != "pending":
        return os.environ.get(NS_MARK) == "1"
    target = "/var/log/xen" if os.path.isdir("/var/log/xen") else "/var/log"
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=16m", "xs-campaign",
                           target], capture_output=True, text=True)
    if proc.returncode:
        print("campaign: cannot mount a tmpfs on %s (%s): frozen=n/a"
              % (target, proc.stderr.strip()), file=sys.stderr)
        os.environ[NS_MARK] = "0"
        return False
    os.makedirs("/var/log/xen", exist_ok=True)
    os.environ[NS_MARK] = "1"   # inherited by the workers
    return True


# -- workers -----------------------------------------------------------------------------------

def worker_main(args):
    """--worker: schedule numbers on stdin, one JSON result per line on stdout."""
    config = json.loads(args.worker)
    worker = runner.Worker(config["coll"], config["settle"], config["monitors"],
                           tag="w%d" % config["id"], startup=config["startup"],
                           per_guest=config["per_guest"])
    try:
        for line in sys.stdin:
            k = int(line)
            schedule = schedules.make_schedule(config["seed"], k, worker.behaviours)
            try:
                result = worker.run(schedule)
            except HarnessError as exc:
                result = {"k": k, "harness_error": str(exc)}
            except Exception:  # a harness bug: report it, never count it as an engine finding
                result = {"k": k, "harness_error": traceback.format_exc()}
            result.pop("final_doms", None)
            result.pop("final_entries", None)
            result.pop("final_files", None)
            sys.stdout.write(json.dumps(result) + "\n")
            sys.stdout.flush()
    finally:
        worker.close()
    return 0


class Pool(object):
    def __init__(self, jobs, config):
        self.procs = []
        for i in range(jobs):
            cfg = dict(config, id=i)
            proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker",
                                     json.dumps(cfg)], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True, bufsize=1)
            self.procs.append(proc)

    def run(self, ks, on_result):
        todo = list(ks)
        sel = selectors.DefaultSelector()
        busy = 0
        for proc in self.procs:
            sel.register(proc.stdout, selectors.EVENT_READ, proc)
            if todo:
                proc.stdin.write("%d\n" % todo.pop(0))
                proc.stdin.flush()
                busy += 1
        while busy:
            for key, _mask in sel.select():
                proc = key.data
                line = proc.stdout.readline()
                if not line:
                    raise HarnessError("a campaign worker died (rc %s)" % proc.wait())
                busy -= 1
                on_result(json.loads(line))
                if todo:
                    proc.stdin.write("%d\n" % todo.pop(0))
                    proc.stdin.flush()
                    busy += 1

    def close(self):
        for proc in self.procs:
            try:
                proc.stdin.close()
            except OSError:
                pass
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


# -- the campaign ------------------------------------------------------------------------------

class Totals(object):
    def __init__(self):
        self.schedules = 0
        self.kills = 0
        self.kill_attempts = 0
        self.counts = dict((key, 0) for key in runner.VIOLATIONS)
        self.failing = []       # (k, counts)
        self.harness_errors = []
        self.final_failed = 0
        self.final_error_kinds = {}
        self.samples = 0
        self.by_plan = {}
        self.timing = {}

    def add(self, result, plan):
        self.schedules += 1
        if "harness_error" in result:
            self.harness_errors.append((result["k"], result["harness_error"]))
            return
        self.kills += result["kills"]
        self.kill_attempts += result["kill_attempts"]
        self.samples += result["samples"]
        for key, secs in (result.get("timing") or {}).items():
            self.timing[key] = self.timing.get(key, 0.0) + secs
        self.final_failed += bool(result["final_failed"])
        for kind in result.get("final_error_kinds") or []:
            self.final_error_kinds[kind] = self.final_error_kinds.get(kind, 0) + 1
        stats = self.by_plan.setdefault(plan, [0, 0])
        stats[0] += 1
        for key, n in result["counts"].items():
            self.counts[key] += n
        if result["violations_total"]:
            stats[1] += 1
            self.failing.append((result["k"], dict((k, v) for k, v in result["counts"].items() if v)))

    def last_line(self, monitors):
        c = self.counts
        return ("campaign schedules=%d kills=%d lost=%d left_suspended=%d pending=%d frozen=%s "
                "hangs=%d image_lost=%d left_saved=%d"
                % (self.schedules, self.kills, c["lost"], c["left_suspended"], c["pending"],
                   c["frozen"] if monitors else "n/a", c["hangs"], c["image_lost"],
                   c["left_saved"]))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--schedules", type=int, default=1000)
    p.add_argument("--seed", default=None, help="default: from the clock (printed)")
    p.add_argument("--schedule", type=int, default=None, help="run only this schedule, with a report")
    p.add_argument("--only", default=None,
                   help="run these schedules (K1,K2,...) instead of 0..N-1, reports as a campaign")
    p.add_argument("--repeat", type=int, default=1, help="with --schedule: run it this many times")
    p.add_argument("--kills", default=None,
                   help="with --schedule: when to kill each killed run, wS = S seconds after it "
                        "connected to the hypervisor, sS = S seconds after its start")
    p.add_argument("--jobs", type=int, default=3, help="simulators (and schedules) in parallel")
    p.add_argument("--reports", type=int, default=3, help="full reports of the first N failures")
    p.add_argument("--report-dir", default=None,
                   help="also write every failing schedule's full report to DIR/SEED-K.txt")
    p.add_argument("--collection", default=None,
                   help="the collection checkout to test (default: this one), e.g. a commit "
                        "exported with git archive")
    p.add_argument("--no-namespace", action="store_true",
                   help="do not enter a mount namespace (frozen=n/a)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker is not None:
        return worker_main(args)

    if not args.no_namespace:
        enter_namespace(argv)
    monitors = (not args.no_namespace) and prepare_namespace() and harness.monitors_available()
    seed = args.seed if args.seed is not None else str(int(time.time()) % 1000000)
    print("campaign: seed %s; xl monitors %s" % (
        seed, "stand-ins in a private /var/log/xen" if monitors else
        "n/a (needs root and unshare: frozen=n/a)"), flush=True)

    coll = harness.collections_dir(args.collection or harness.REPO)
    if args.collection:
        print("campaign: testing the collection in %s" % os.path.abspath(args.collection))
    try:
        options = harness.module_options(coll, "domain_resumed")
        settle = "settle_timeout" in options
        print("campaign: domain_resumed %s settle_timeout"
              % ("takes" if settle else "has no option"), flush=True)
        return run_campaign(args, seed, coll, settle, monitors)
    except HarnessError as exc:
        print("campaign: HARNESS ERROR: %s" % exc, flush=True)
        return 2
    finally:
        shutil.rmtree(str(coll), ignore_errors=True)


def run_campaign(args, seed, coll, settle, monitors):
    first = runner.Worker(str(coll), settle, monitors, tag="w0")
    try:
        startup, per_guest = first.calibrate()
        print("campaign: typical module runs (measured): fixed cost domain_suspended %.3fs, "
              "domain_resumed %.3fs, domain_saved %.3fs, domain_restored %.3fs; per guest %.4fs, "
              "%.4fs, %.4fs and %.4fs (plus the guests' own delays)"
              % (startup["suspend"], startup["resume"], startup["save"], startup["restore"],
                 per_guest["suspend"], per_guest["resume"], per_guest["save"],
                 per_guest["restore"]), flush=True)
        if args.schedule is not None:
            return single(args, seed, first)
    finally:
        if args.schedule is not None or args.jobs > 1:
            first.close()

    totals = Totals()
    started = time.monotonic()
    reports = []
    behaviours = runner.available_behaviours()
    plans = {}

    def on_result(result):
        k = result["k"]
        totals.add(result, plans[k])
        if "harness_error" in result:
            print("schedule %s: HARNESS ERROR %s" % (k, result["harness_error"]), flush=True)
        elif result["violations_total"]:
            kills = ",".join(schedules.format_kill(kill) for _label, _secs, kill, _killed
                             in result["runs"] if kill is not None)
            print("schedule %s FAILED: %s   (same kill moments: --seed %s --schedule %s%s)" % (
                k, ", ".join("%s=%s" % (key, val) for key, val in result["violations"].items()
                             if val), seed, k, " --kills " + kills if kills else ""), flush=True)
            if len(reports) < args.reports and result.get("report"):
                reports.append(result["report"])
            if args.report_dir and result.get("report"):
                os.makedirs(args.report_dir, exist_ok=True)
                name = os.path.join(args.report_dir, "%s-%s.txt" % (seed, k))
                suffix = 1
                while os.path.exists(name):   # the same schedule again (--only K,K)
                    suffix += 1
                    name = os.path.join(args.report_dir, "%s-%s.%d.txt" % (seed, k, suffix))
                with open(name, "w") as handle:
                    handle.write(result["report"] + "\n")
        if totals.schedules % 50 == 0:
            elapsed = time.monotonic() - started
            print("campaign: %d/%d schedules, %.2f schedules/s, kills %d, failing %d"
                  % (totals.schedules, args.schedules, totals.schedules / elapsed, totals.kills,
                     len(totals.failing)), flush=True)

    ks = list(range(args.schedules))
    if args.only:
        ks = [int(x) for x in args.only.split(",") if x.strip()]
        args.schedules = len(ks)
    for k in ks:
        plans[k] = schedules.make_schedule(seed, k, behaviours)["family"]
    config = {"coll": str(coll), "settle": settle, "monitors": monitors, "seed": seed,
              "startup": startup, "per_guest": per_guest}
    if args.jobs > 1:
        pool = Pool(args.jobs, config)
        try:
            pool.run(ks, on_result)
        finally:
            pool.close()
    else:
        try:
            for k in ks:
                try:
                    result = first.run(schedules.make_schedule(seed, k, first.behaviours))
                except HarnessError as exc:
                    result = {"k": k, "harness_error": str(exc)}
                on_result(result)
        finally:
            first.close()
    elapsed = time.monotonic() - started

    for report in reports:
        print("\n" + report, flush=True)
    print("", flush=True)
    print("campaign: seed %s, %d schedules in %.1fs: %.2f schedules/s with %d job(s); "
          "%d of %d kills landed while the module ran; %d invariant samples"
          % (seed, totals.schedules, elapsed, totals.schedules / max(elapsed, 1e-9), args.jobs,
             totals.kills, totals.kill_attempts, totals.samples))
    if totals.timing:
        n = float(max(1, totals.schedules - len(totals.harness_errors)))
        print("campaign: a schedule's wall time on average: %s" % ", ".join(
            "%s %.2fs" % (key, totals.timing[key] / n)
            for key in ("setup", "runs", "settle", "teardown") if key in totals.timing))
    for plan, (n, bad) in sorted(totals.by_plan.items()):
        print("campaign: kill plan %-15s %4d schedules, %4d failing" % (plan, n, bad))
    if totals.counts["ledger"]:
        print("campaign: ledger violations (invalid ledger, or entries left for running guests): %d"
              % totals.counts["ledger"])
    if totals.counts["files"]:
        print("campaign: files left (partial images, images of running guests): %d"
              % totals.counts["files"])
    if totals.final_failed:
        print("campaign: the final domain_resumed (domain_restored for save schedules) reported "
              "failure in %d schedules (domains by "
              "error kind: %s)" % (totals.final_failed, ", ".join(
                  "%s %d" % item for item in sorted(totals.final_error_kinds.items())) or "none"))
    if totals.failing:
        failing = sorted(totals.failing)
        print("campaign: failing schedules (seed %s): %s%s" % (seed, " ".join(
            "%d(%s)" % (k, ",".join("%s=%d" % kv for kv in sorted(c.items())))
            for k, c in failing[:60]), " and %d more" % (len(failing) - 60) if len(failing) > 60 else ""))
        for key in runner.VIOLATIONS:
            ks = [k for k, c in failing if c.get(key)]
            if ks:
                print("campaign:   %-14s in %3d schedules, e.g. %s"
                      % (key, len(ks), " ".join(str(k) for k in ks[:8])))
        print("campaign: re-run one with: make campaign SEED=%s SCHEDULE=K" % seed)
    if totals.harness_errors:
        print("campaign: %d harness errors (not findings about the engine)" % len(totals.harness_errors))
    print(totals.last_line(monitors), flush=True)
    if totals.harness_errors:
        return 2
    return 1 if sum(totals.counts.values()) else 0


def single(args, seed, worker):
    plans = [schedules.parse_kill(x) for x in args.kills.split(",")] if args.kills else None
    schedule = schedules.make_schedule(seed, args.schedule, worker.behaviours)
    totals = Totals()
    for i in range(args.repeat):
        result = worker.run(schedule, kill_plans=plans, keep=True)
        totals.add(result, schedule["family"])
        print("\n--- seed %s schedule %s, run %d of %d\n%s" % (seed, args.schedule, i + 1,
                                                               args.repeat, result["report"]))
    print(totals.last_line(worker.monitors_enabled), flush=True)
    return 1 if sum(totals.counts.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
