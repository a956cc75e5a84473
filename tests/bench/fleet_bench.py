#!/usr/bin/env python3
"""`make bench`: suspending and resuming a fleet at once versus one domain at a time.

For 10, 100, 500 and 1000 simulated upstream-Linux PV guests (tests/xensim, quiesce delay
200 +- 50 ms), in the same run and against the same simulated dom0:

* fleet: ONE domain_suspended call for the whole fleet at the module's default options
  (parallel=0: no bound; parallel=32 is measured too), then ONE domain_resumed call;
* sequential, the way libxl's xendomains works (one domain suspended and waited for before the
  next starts):
  - "one call, parallel=1": the same single call with parallel=1. This is the sequential figure
    reported for 500 and 1000 (sequential_s): it charges the sequential approach nothing but the
    waiting, so the ratio printed is a lower bound;
  - "one call per domain" (10 and 100 only; ~0.5 s per domain): one domain_suspended call per
    domain by name, then one domain_resumed call per domain, as xendomains runs one `xl save
    <name>` per domain. Each call pays opening the Xen libraries and xenstore and a name lookup
    over every domain (libxl_name_to_domid does the same).

Then resume500: 500 guests suspended at once, then resumed by ONE domain_resumed call at its
defaults (resume calls in up to 128 threads) and, on the same dom0, by one call with parallel=1
(one domain after the other), on a simulated dom0 whose resumes cost what the real bed measured
(RESUME_COST: xc_domain_resume 12-58 ms for its caller, overlapping between callers, Xen's
domctl lock 50 us of it, serialised; the guest's own resume 70-700 ms, see tests/xensim/README.md).

Every call runs a module's real code (its main(), real backends: the shim libxenctrl through
cffi, pyxs to the simulated xenstored, the ledger on disk) in a worker process started with the
simulator's environment, without Ansible's per-task process start-up; the module path through
ansible-playbook is measured too (500 as one task; 10 as one task and as one task per domain).
Per call the worker measures wall time, process CPU time (all threads: pyxs's router thread and
the resume threads too) and every xenstore request sent (inventory included); then the simulator
is asked whether every guest really is suspended (then running again, each back from its own
resume), or the bench fails.

The last lines are machine-readable, all measured in the same run:
fleet500 parallel_s=... sequential_s=... slowest_guest_s=... cpu_ms_per_domain=... xs_round_trips_per_domain=...
fleet1000 parallel_s=... sequential_s=... slowest_guest_s=... cpu_ms_per_domain=... xs_round_trips_per_domain=...
resume500 parallel_s=... sequential_s=... cpu_ms_per_domain=...

fleetN: parallel_s is the wall time of the whole domain_suspended call (open libraries and
xenstore, inventory, suspend, verify, ledger) for N guests at the default options; sequential_s
the same call with parallel=1; cpu_ms_per_domain and xs_round_trips_per_domain are for the
default call, everything included. slowest_guest_s is the slowest delay a guest of this fleet can
have, quiesce_ms + jitter_ms = 0.25 s (with 500 uniform draws the real maximum is within a
fraction of a millisecond of it; the simulator does not report the delays it drew).
resume500: parallel_s and sequential_s are the wall times of the whole domain_resumed calls (at
its defaults, and with parallel=1), cpu_ms_per_domain is for the default call.
"""

import argparse
import atexit
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
XENSIM_ROOT = os.path.join(REPO, "tests", "xensim")
QUIESCE_MS = 200
JITTER_MS = 50
SLOWEST_GUEST_S = (QUIESCE_MS + JITTER_MS) / 1000.0
# resume500: what a resume costs on the real bed (tests/xen, Xen in QEMU): the module's resume
# phase (xc_domain_resume, then XS_RESUME) 12-58 ms, all of it charged to the hypercall here;
# the guest's own resume until its heartbeat is back 70-700 ms. Xen's domctl lock: 50 us.
RESUME_COUNT = 500
RESUME_COST = {"resume_hypercall_ms": 35, "resume_hypercall_jitter_ms": 23, "domctl_lock_us": 50,
               "resume_ms": 385, "resume_jitter_ms": 315}


# == the worker: runs in a process started with the simulator's environment ======================

def collection_on_path():
    """ansible_collections/xen/suspend -> this checkout, on sys.path (as tests/unit/conftest.py)."""
    base = tempfile.mkdtemp(prefix="xs-bench-coll-")
    atexit.register(shutil.rmtree, base, True)
    os.makedirs(os.path.join(base, "ansible_collections", "xen"))
    os.symlink(REPO, os.path.join(base, "ansible_collections", "xen", "suspend"))
    sys.path.insert(0, base)
    return base


class ModuleCaller(object):
    """Calls a module's main() in this process, with real backends, counting what each call costs."""

    def __init__(self):
        from ansible_collections.xen.suspend.plugins.module_utils import _backends, _module_base
        self._module_base = _module_base
        self._open = _backends.open_backends
        self.opened = []
        _module_base.BACKENDS_FACTORY = self._factory   # the module base's documented harness hook

    def _factory(self, **kwargs):
        started = time.monotonic()
        backends = self._open(**kwargs)
        self.open_s += time.monotonic() - started
        self.opened.append(backends)
        return backends

    def call(self, main, args, profiler=None):
        from ansible.module_utils.testing import patch_module_args
        self.opened = []
        self.open_s = 0.0
        out = io.StringIO()
        wall0, cpu0 = time.monotonic(), time.process_time()
        with patch_module_args(args), contextlib.redirect_stdout(out):
            try:
                if profiler is not None:
                    profiler.runcall(main)
                else:
                    main()
            except SystemExit:
                pass
        wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
        result = json.loads(out.getvalue())
        trips = sum(b.xenstore.round_trips for b in self.opened)
        return result, wall, cpu, trips


def worker(spec):
    collection_on_path()
    from ansible_collections.xen.suspend.plugins.modules import domain_resumed, domain_suspended
    caller = ModuleCaller()
    common = {"ledger": spec["ledger"], "xen_run_dir": spec["run_dir"]}
    report = {"calls": 0, "suspend": {}, "resume": {}, "domains": []}

    def run(kind, main, args, profiler=None):
        result, wall, cpu, trips = caller.call(main, dict(common, **args), profiler)
        if result.get("failed"):
            raise SystemExit("%s failed: %s" % (kind, result.get("msg")))
        part = report[kind]
        part["wall_s"] = part.get("wall_s", 0.0) + wall
        part["cpu_s"] = part.get("cpu_s", 0.0) + cpu
        part["xs_round_trips"] = part.get("xs_round_trips", 0) + trips
        part["module_wall_s"] = part.get("module_wall_s", 0.0) + result["stats"]["wall_seconds"]
        part["module_cpu_s"] = part.get("module_cpu_s", 0.0) + result["stats"]["cpu_seconds"]
        part["open_s"] = part.get("open_s", 0.0) + caller.open_s
        part["changed"] = part.get("changed", 0) + len(result.get("suspended", result.get("resumed", [])))
        report["calls"] += 1
        return result

    suspend_args = {"ack_timeout": 30, "timeout": 30}
    if spec["mode"] == "resume":  # the fleet suspended at once, then ONE resume call measured
        run("suspend", domain_suspended.main, dict(suspend_args, domains=["*"]))
        report["verified"] = spec["check"]("suspended")
        resume_args = {} if spec["parallel"] is None else {"parallel": spec["parallel"]}
        result = run("resume", domain_resumed.main, resume_args)
        report["resume_stats"] = result["stats"]
        report["resume_phases"] = [d["phases"] for d in result["domains"]]
        report["resumed_verified"] = spec["check"]("running")
        return report
    if spec["mode"] == "fleet":   # one call for the fleet, ``parallel`` in flight (None: the default)
        profiler = None
        if spec.get("profile"):
            import cProfile
            profiler = cProfile.Profile()
        fleet_args = dict(suspend_args, domains=["*"])
        if spec["parallel"] is not None:
            fleet_args["parallel"] = spec["parallel"]
        result = run("suspend", domain_suspended.main, fleet_args, profiler)
        if profiler is not None:
            import pstats
            stream = io.StringIO()
            pstats.Stats(profiler, stream=stream).sort_stats(os.environ.get("BENCH_PROFILE_SORT", "tottime")).print_stats(int(os.environ.get("BENCH_PROFILE_LINES", "15")))
            report["profile"] = stream.getvalue()
        report["domains"] = result["domains"]
        report["suspended_at_once"] = result["stats"]
        report["verified"] = spec["check"]("suspended")
        run("resume", domain_resumed.main, {})
    else:                         # one call per domain, in sequence
        for name in spec["names"]:
            result = run("suspend", domain_suspended.main, dict(suspend_args, domains=[name]))
            report["domains"].extend(result["domains"])
        report["verified"] = spec["check"]("suspended")
        for name in spec["names"]:
            run("resume", domain_resumed.main, {"domains": [name]})
    report["resumed_verified"] = spec["check"]("running")
    return report


def simulator_check(control, count):
    """A function telling whether all ``count`` guests are in ``state`` per the simulator."""
    sys.path.insert(0, XENSIM_ROOT)
    from xensim import admin

    def check(state):
        # (running: each guest back from its own resume, which may take the simulator's
        # resume_ms after the module is done; waited for, up to 10 s)
        deadline = time.monotonic() + (10.0 if state == "running" else 0.0)
        while True:
            domains = [d for d in admin.call(control, "list")["domains"] if d["domid"] != 0]
            if state == "suspended":
                good = [d for d in domains if d["shutdown_code"] == 2]
            else:
                good = [d for d in domains if d["shutdown_code"] is None and d.get("state") == "running"]
            if len(domains) == count and len(good) == count or time.monotonic() >= deadline:
                return len(domains) == count and len(good) == count
            time.sleep(0.05)
    return check


def worker_main(argv):
    spec = json.loads(argv[0])
    spec["check"] = simulator_check(spec["control"], spec["count"])
    sys.stdout.write(json.dumps(worker(spec)) + "\n")


# == the driver ===================================================================================

def xensim(*args):
    env = dict(os.environ, PYTHONPATH=XENSIM_ROOT)
    proc = subprocess.run([sys.executable, "-m", "xensim"] + list(args), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    if proc.returncode:
        raise SystemExit("xensim %s failed:\n%s%s" % (" ".join(args), proc.stdout, proc.stderr))
    return proc.stdout


class Dom0(object):
    """A simulated dom0 with ``count`` guests of one behaviour."""

    def __init__(self, count, behaviour="linux-pv", **spec_extra):
        self.count = count
        # The simulator's state, and with it the run directory holding libxl's suspend lock files,
        # on tmpfs when there is one, as /run/xen is on a dom0. The ledger stays on disk, as
        # /var/lib/xen-suspend would be.
        shm = "/dev/shm"
        base = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else "/tmp"
        self.dir = tempfile.mkdtemp(prefix="xsb-", dir=base)
        self.ledger_dir = tempfile.mkdtemp(prefix="xsb-ledger-", dir="/tmp")
        spec = dict({"quiesce_ms": QUIESCE_MS, "jitter_ms": JITTER_MS, "heartbeat_ms": 5000, "seed": count,
                     "guests": [{"behaviour": behaviour, "count": count, "name": "g"}]}, **spec_extra)
        path = os.path.join(self.dir, "fleet.json")
        with open(path, "w") as handle:
            json.dump(spec, handle)
        self.env = json.loads(xensim("start", "--spec", path, "--dir", self.dir, "--json"))
        self.names = ["g-%d" % i for i in range(1, count + 1)]
        self.ledger = os.path.join(self.ledger_dir, "ledger", "ledger.json")

    def measure(self, mode, parallel=None, profile=False):
        """``parallel`` None: the module's default."""
        spec = {"mode": mode, "parallel": parallel, "names": self.names, "count": self.count,
                "ledger": self.ledger, "run_dir": self.env["XENSIM_RUN_DIR"],
                "control": os.path.join(self.dir, "control.sock"), "profile": profile}
        env = dict(os.environ, **self.env)
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              timeout=900)
        if proc.returncode:
            raise SystemExit("bench worker failed (%s, %s):\n%s%s" % (mode, parallel, proc.stdout[-3000:],
                                                                    proc.stderr[-3000:]))
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        if not report["verified"] or not report["resumed_verified"]:
            raise SystemExit("%s run of %d guests: the simulator does not show them all %s"
                             % (mode, self.count, "suspended" if not report["verified"] else "running again"))
        return report

    def stop(self):
        try:
            xensim("stop", "--dir", self.dir)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            shutil.rmtree(self.ledger_dir, ignore_errors=True)


def per_domain_trips(report):
    """max xenstore round trips attributed to one domain, per method."""
    worst = {}
    for domain in report["domains"]:
        method = domain.get("method")
        worst[method] = max(worst.get(method, 0), domain.get("xenstore_round_trips") or 0)
    return worst


def line(label, report, count):
    s, r = report["suspend"], report["resume"]
    return ("  %-29s suspend %7.3f s (engine %.3f, opening libraries+xenstore %.3f)  resume %6.3f s  "
            "CPU %5.2f ms/domain  xenstore %4.2f round trips/domain (max per domain: %s)  calls %d" % (
                label, s["wall_s"], s["module_wall_s"], s["open_s"], r["wall_s"], 1000.0 * s["cpu_s"] / count,
                float(s["xs_round_trips"]) / count,
                ", ".join("%s %d" % kv for kv in sorted(per_domain_trips(report).items())), report["calls"]))


def ansible_path(count, names_per_task):
    """The module path through ansible-playbook: the fleet in one task, or one task per domain."""
    dom0 = Dom0(count)
    work = tempfile.mkdtemp(prefix="xsb-play-", dir="/tmp")
    try:
        coll = os.path.join(work, "coll", "ansible_collections", "xen")
        os.makedirs(coll)
        os.symlink(REPO, os.path.join(coll, "suspend"))
        results = os.path.join(work, "results.json")
        if names_per_task:
            suspend = {"name": "one domain per task", "xen.suspend.domain_suspended": {"domains": ["{{ item }}"]},
                       "loop": dom0.names, "register": "suspend"}
            resume = {"xen.suspend.domain_resumed": {"domains": ["{{ item }}"]}, "loop": dom0.names,
                      "register": "resume"}
        else:
            suspend = {"xen.suspend.domain_suspended": {"domains": ["*"], "parallel": count}, "register": "suspend"}
            resume = {"xen.suspend.domain_resumed": {}, "register": "resume"}
        play = [{"hosts": "localhost", "connection": "local", "gather_facts": False,
                 "vars": {"ansible_python_interpreter": sys.executable},
                 "module_defaults": {"group/xen.suspend.suspend": {"ledger": dom0.ledger,
                                                                  "xen_run_dir": dom0.env["XENSIM_RUN_DIR"]}},
                 "tasks": [
                     {"set_fact": {"t0": "{{ now(utc=true).timestamp() }}"}},
                     suspend,
                     {"set_fact": {"t1": "{{ now(utc=true).timestamp() }}"}},
                     resume,
                     {"set_fact": {"t2": "{{ now(utc=true).timestamp() }}"}},
                     {"copy": {"dest": results, "content": "{{ {'t0': t0, 't1': t1, 't2': t2, "
                               "'suspend': suspend, 'resume': resume} | to_json }}"}}]}]
        path = os.path.join(work, "play.yml")
        with open(path, "w") as handle:
            json.dump(play, handle)
        env = dict(os.environ, **dom0.env)
        env.update(ANSIBLE_COLLECTIONS_PATH=os.path.join(work, "coll"), ANSIBLE_LOCALHOST_WARNING="False",
                   ANSIBLE_INVENTORY_UNPARSED_WARNING="False", ANSIBLE_PIPELINING="True",
                   ANSIBLE_LOCAL_TEMP=os.path.join(work, "tmp"), ANSIBLE_REMOTE_TEMP=os.path.join(work, "tmp"))
        proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), path],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=900)
        if proc.returncode or not os.path.exists(results):
            raise SystemExit("ansible-playbook failed:\n%s%s" % (proc.stdout[-3000:], proc.stderr[-3000:]))
        with open(results) as handle:
            data = json.load(handle)
        tasks = data["suspend"]["results"] if names_per_task else [data["suspend"]]
        module_wall = sum(t["stats"]["wall_seconds"] for t in tasks)
        module_cpu = sum(t["stats"]["cpu_seconds"] for t in tasks)
        suspended = sum(len(t["suspended"]) for t in tasks)
        if suspended != count:
            raise SystemExit("ansible-playbook suspended %d of %d" % (suspended, count))
        return {"task_s": float(data["t1"]) - float(data["t0"]), "resume_task_s": float(data["t2"]) - float(data["t1"]),
                "module_wall_s": module_wall, "module_cpu_s": module_cpu, "tasks": len(tasks)}
    finally:
        dom0.stop()
        shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description="fleet suspend/resume benchmark on the simulated dom0")
    parser.add_argument("--sizes", default="10,100,500,1000")
    parser.add_argument("--no-ansible", action="store_true", help="skip the ansible-playbook measurements")
    parser.add_argument("--no-resume", action="store_true", help="skip the resume500 measurements")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the largest fleet call (done anyway when it misses the target)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    started = time.monotonic()
    print("fleet bench: linux-pv guests, quiesce %d +- %d ms (slowest possible guest %.3f s); "
          "module main() in-process with real backends" % (QUIESCE_MS, JITTER_MS, SLOWEST_GUEST_S), flush=True)
    final = {}
    for count in sizes:
        dom0 = Dom0(count)
        try:
            print("%d guests" % count, flush=True)
            fleet = dom0.measure("fleet")
            print(line("fleet, default options", fleet, count), flush=True)
            if count > 32:
                bounded = dom0.measure("fleet", parallel=32)
                print(line("fleet, parallel=32", bounded, count), flush=True)
            sequential = dom0.measure("fleet", parallel=1)
            print(line("one call, parallel=1", sequential, count), flush=True)
            if count <= 100:
                per_call = dom0.measure("per-call")
                print(line("one call per domain", per_call, count), flush=True)
            ratio = sequential["suspend"]["wall_s"] / fleet["suspend"]["wall_s"]
            if count >= 1000:
                target, how = 1.1 * SLOWEST_GUEST_S + 0.3, "1.1 x slowest guest + 0.3"
            else:
                target, how = 1.25 * SLOWEST_GUEST_S + 0.5, "1.25 x slowest guest + 0.5"
            cpu_ms = 1000.0 * fleet["suspend"]["cpu_s"] / count
            if count >= 500:   # the CPU target is per domain of a large fleet
                cpu_verdict = "CPU <= 2 ms/domain: %s" % ("met" if cpu_ms <= 2.0 else "MISSED")
            else:
                cpu_verdict = ("CPU %.2f ms/domain (the call's fixed cost, about 30 ms of it importing "
                               "pycparser for cffi's cdef, spread over %d domains)" % (cpu_ms, count))
            print("  sequential (parallel=1) / fleet: %.1fx; within %.3f s (%s): whole "
                  "call %s, suspend run (engine) %s; %s" % (
                      ratio, target, how, "met" if fleet["suspend"]["wall_s"] <= target else "MISSED",
                      "met" if fleet["suspend"]["module_wall_s"] <= target else "MISSED", cpu_verdict), flush=True)
            if count == max(sizes) and (args.profile or fleet["suspend"]["wall_s"] > target):
                profiled = dom0.measure("fleet", profile=True)
                print("  where the fleet call's time goes: an extra run under cProfile (%.3f s with the "
                      "profiler), by own time:" % profiled["suspend"]["wall_s"])
                print("\n".join("    " + l for l in profiled["profile"].strip().splitlines()[3:30]))
            final[count] = (fleet, sequential)
        finally:
            dom0.stop()
    evtchn = Dom0(100, behaviour="xenlinux")
    try:
        report = evtchn.measure("fleet", parallel=100)
        print("100 XenLinux guests (event channel)")
        print(line("fleet (parallel=100)", report, 100), flush=True)
    finally:
        evtchn.stop()
    resume = None if args.no_resume else resume_500()
    if not args.no_ansible:
        print("through ansible-playbook (module process per task, AnsiballZ)", flush=True)
        if 500 in sizes:
            fleet = ansible_path(500, names_per_task=False)
            print("  500 guests, one task:        suspend task %.2f s (module: %.3f s wall, %.2f ms CPU/domain), "
                  "resume task %.2f s" % (fleet["task_s"], fleet["module_wall_s"],
                                          1000.0 * fleet["module_cpu_s"] / 500, fleet["resume_task_s"]), flush=True)
        one = ansible_path(10, names_per_task=False)
        each = ansible_path(10, names_per_task=True)
        print("  10 guests, one task:         suspend task %.2f s (module %.3f s)" % (one["task_s"], one["module_wall_s"]))
        print("  10 guests, one task/domain:  suspend tasks %.2f s (modules %.3f s); ratio %.1fx"
              % (each["task_s"], each["module_wall_s"], each["task_s"] / one["task_s"]), flush=True)
    print("bench took %.0f s" % (time.monotonic() - started))
    for count in (500, 1000):
        if count in final:
            fleet, sequential = final[count]
            print("fleet%d parallel_s=%.3f sequential_s=%.3f slowest_guest_s=%.3f cpu_ms_per_domain=%.3f "
                  "xs_round_trips_per_domain=%.3f" % (
                      count, fleet["suspend"]["wall_s"], sequential["suspend"]["wall_s"], SLOWEST_GUEST_S,
                      1000.0 * fleet["suspend"]["cpu_s"] / count,
                      float(fleet["suspend"]["xs_round_trips"]) / count))
    if resume is not None:
        parallel, sequential = resume
        print("resume500 parallel_s=%.3f sequential_s=%.3f cpu_ms_per_domain=%.3f" % (
            parallel["resume"]["wall_s"], sequential["resume"]["wall_s"],
            1000.0 * parallel["resume"]["cpu_s"] / RESUME_COUNT))


def resume_500():
    """RESUME_COUNT suspended guests resumed by ONE domain_resumed call at its defaults, and by
    one call with parallel=1 (one domain after the other), on a simulated dom0 whose resumes
    cost what the real bed measured (RESUME_COST)."""
    dom0 = Dom0(RESUME_COUNT, **RESUME_COST)
    try:
        print("resume of %d suspended guests: xc_domain_resume %d +- %d ms for its caller (overlapping; "
              "Xen's domctl lock %d us of it, serialised), the guest's own resume %d +- %d ms"
              % (RESUME_COUNT, RESUME_COST["resume_hypercall_ms"], RESUME_COST["resume_hypercall_jitter_ms"],
                 RESUME_COST["domctl_lock_us"], RESUME_COST["resume_ms"], RESUME_COST["resume_jitter_ms"]),
              flush=True)
        parallel = dom0.measure("resume")
        print(resume_line("one call, default options", parallel), flush=True)
        sequential = dom0.measure("resume", parallel=1)
        print(resume_line("one call, parallel=1", sequential), flush=True)
    finally:
        dom0.stop()
    wall, one_by_one = parallel["resume"]["wall_s"], sequential["resume"]["wall_s"]
    cpu_ms = 1000.0 * parallel["resume"]["cpu_s"] / RESUME_COUNT
    print("  one at a time / at once: %.1fx (target >= 20x: %s); at once %.3f s (target <= 0.5 s: %s); "
          "CPU <= 2 ms/domain: %s" % (one_by_one / wall, "met" if one_by_one >= 20 * wall else "MISSED",
                                      wall, "met" if wall <= 0.5 else "MISSED",
                                      "met" if cpu_ms <= 2.0 else "MISSED"), flush=True)
    return parallel, sequential


def resume_line(label, report):
    r, stats = report["resume"], report["resume_stats"]
    phases = report["resume_phases"]
    slowest_call = max(p.get("resume", 0.0) for p in phases)
    return ("  %-29s resume %7.3f s (engine %.3f, opening libraries+xenstore %.3f)  CPU %5.2f ms/domain  "
            "xenstore %4.2f round trips/domain  xenctrl calls %d  ledger writes %d  slowest resume phase %.3f s" % (
                label, r["wall_s"], r["module_wall_s"], r["open_s"], 1000.0 * r["cpu_s"] / RESUME_COUNT,
                float(r["xs_round_trips"]) / RESUME_COUNT, stats["xenctrl_calls"], stats["ledger_writes"],
                slowest_call))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker_main(sys.argv[2:])
    else:
        main()
