"""Command line: ``python3 -m xensim <command>`` (run from tests/xensim, or
with tests/xensim on PYTHONPATH; ``tests/xensim/xensimctl`` does that).

    start  --spec FLEET --dir DIR [--json]   start in the background, print env
    run    --spec FLEET --dir DIR            run in the foreground
    list   --dir DIR [--json] [--domid N]
    stats  --dir DIR
    env    --dir DIR [--json]
    spawn  --dir DIR --behaviour B [--count N] [--params JSON]
    fault  --dir DIR restart-xenstored [--downtime S]
    fault  --dir DIR destroy|crash|pause|unpause DOMID
    fault  --dir DIR lock|unlock DOMID [--lock-dir D]
    fault  --dir DIR shutdown DOMID REASON
    reboot --dir DIR
    xl-fault --dir DIR NAME [--enospc-after B] [--stall-after B] [--truncate-to B] [--restore-fail]
    stop   --dir DIR
    build  [--libdir D]
"""

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time

from . import admin, fleet
from .sim import Simulator, env_sh, state_paths

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_LIBDIR = os.environ.get("XENSIM_LIBDIR") or os.path.join(HERE, "build", "lib")


def build_shims(libdir):
    r = subprocess.run([os.path.join(HERE, "build-shims.sh"), libdir],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode:
        raise SystemExit("building the shim libraries failed:\n" + r.stdout)
    return libdir


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # "pid (comm) S ..." -- a zombie has exited.
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def read_pid(paths):
    try:
        with open(paths["pid"]) as f:
            return int(f.read().strip())
    except (FileNotFoundError, ValueError):
        return None


def running_pid(paths):
    pid = read_pid(paths)
    if pid is None or not pid_alive(pid):
        return None
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            if b"xensim" not in f.read():
                return None
    except OSError:
        return None
    return pid


LEFTOVERS = ("xenstored", "hypervisor", "control", "pid", "env_sh", "env_json", "boot_id")


def cleanup_files(paths):
    for key in LEFTOVERS:
        try:
            os.unlink(paths[key])
        except FileNotFoundError:
            pass


def _print_env(env, as_json):
    if as_json:
        print(json.dumps(env))
    else:
        sys.stdout.write(env_sh(env))


def cmd_build(args):
    print(build_shims(os.path.abspath(args.libdir)))
    return 0


def cmd_start(args):
    paths = state_paths(args.dir)
    os.makedirs(paths["dir"], exist_ok=True)
    if running_pid(paths):
        print("xensim already running in %s (pid %d)" % (paths["dir"], running_pid(paths)), file=sys.stderr)
        return 1
    cleanup_files(paths)
    spec_path = os.path.abspath(args.spec)
    fleet.load(spec_path)  # validate before daemonising
    libdir = os.path.abspath(args.libdir)
    if not args.no_build:
        build_shims(libdir)
    env = dict(os.environ)
    env["PYTHONPATH"] = HERE + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", "xensim", "run", "--spec", spec_path, "--dir", paths["dir"],
           "--libdir", libdir, "--log-level", args.log_level]
    with open(paths["log"], "ab") as logf:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                cwd="/", env=env, start_new_session=True)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            with open(paths["log"], errors="replace") as f:
                tail = f.read()[-3000:]
            print("xensim failed to start (exit %s); log tail:\n%s" % (proc.returncode, tail), file=sys.stderr)
            return 1
        if os.path.exists(paths["env_json"]):
            try:
                if admin.call(paths["control"], "ping", timeout=5).get("ok"):
                    break
            except OSError:
                pass
        time.sleep(0.02)
    else:
        print("xensim did not become ready within %ss" % args.timeout, file=sys.stderr)
        os.kill(proc.pid, signal.SIGTERM)
        return 1
    with open(paths["env_json"]) as f:
        _print_env(json.load(f), args.json)
    return 0


def cmd_run(args):
    paths = state_paths(args.dir)
    os.makedirs(paths["dir"], exist_ok=True)
    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if running_pid(paths) not in (None, os.getpid()):
        print("xensim already running in %s" % paths["dir"], file=sys.stderr)
        return 1
    spec = fleet.load(args.spec) if args.spec else fleet.normalise({})
    t0 = time.monotonic()
    sim = Simulator(paths["dir"], spec, os.path.abspath(args.libdir))
    with open(paths["pid"] + ".tmp", "w") as f:
        f.write("%d\n" % os.getpid())
    os.replace(paths["pid"] + ".tmp", paths["pid"])
    try:
        sim.setup()
        logging.getLogger("xensim").info("started %d guests in %.2fs", len(sim.guests), time.monotonic() - t0)
        sim.run()
    finally:
        sim.shutdown()
        if read_pid(paths) == os.getpid():
            os.unlink(paths["pid"])
    return 0


def _admin(args, op, **kw):
    paths = state_paths(args.dir)
    try:
        r = admin.call(paths["control"], op, **kw)
    except OSError as e:
        raise SystemExit("cannot reach xensim in %s: %s" % (paths["dir"], e))
    if not r.get("ok"):
        raise SystemExit("xensim: %s" % r.get("error"))
    return r


def cmd_list(args):
    r = _admin(args, "list", domid=args.domid)
    if args.json:
        print(json.dumps(r["domains"], indent=1))
        return 0
    fmt = "%5s %-24s %-4s %-20s %-10s %-6s %5s %6s %4s %s"
    print(fmt % ("ID", "Name", "Type", "Behaviour", "State", "Flags", "Code", "Beat", "Sub", "Counters"))
    for d in r["domains"]:
        print(fmt % (d["domid"], d["name"][:24], d["type"], d.get("behaviour", "-"), d.get("state", "-"),
                     d["flags"], "-" if d["shutdown_code"] is None else d["shutdown_code"],
                     d.get("heartbeat", "-"), d["suspend_evtchn"] or "-",
                     " ".join("%s=%s" % kv for kv in sorted(d.get("counters", {}).items()))))
    return 0


def cmd_stats(args):
    r = _admin(args, "stats")
    r.pop("ok", None)
    print(json.dumps(r, indent=1))
    return 0


def cmd_env(args):
    paths = state_paths(args.dir)
    with open(paths["env_json"]) as f:
        _print_env(json.load(f), args.json)
    return 0


def cmd_spawn(args):
    params = json.loads(args.params) if args.params else {}
    r = _admin(args, "spawn", behaviour=args.behaviour, count=args.count, params=params,
               **({"name": args.name} if args.name else {}))
    print(" ".join(str(d) for d in r["domids"]))
    return 0


def cmd_fault(args):
    kw = {"kind": args.kind}
    if args.domid is not None:
        kw["domid"] = args.domid
    if args.kind == "restart-xenstored":
        kw["downtime"] = args.downtime
    if args.lock_dir:
        kw["lock_dir"] = os.path.abspath(args.lock_dir)
    if args.reason is not None:
        kw["reason"] = args.reason
    r = _admin(args, "fault", **kw)
    if r.get("path"):
        print(r["path"])
    return 0


def cmd_reboot(args):
    r = _admin(args, "reboot")
    print(r["boot_id"])
    return 0


def cmd_xl_fault(args):
    faults = {}
    for key in ("enospc_after", "stall_after", "truncate_to"):
        v = getattr(args, key)
        if v is not None:
            faults[key] = v
    if args.restore_fail:
        faults["restore_fail"] = True
    r = _admin(args, "xl_fault", name=args.name, faults=faults)
    print(json.dumps(r["faults"]))
    return 0


def cmd_stop(args):
    paths = state_paths(args.dir)
    pid = running_pid(paths)
    if pid is not None:
        try:
            admin.call(paths["control"], "stop", timeout=5)
        except OSError:
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + args.timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            time.sleep(1)
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
    cleanup_files(paths)
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(prog="xensim", description="simulated Xen dom0")
    sub = p.add_subparsers(dest="command", required=True)

    def with_dir(sp):
        sp.add_argument("--dir", required=True, help="state directory (sockets, pidfile, log)")
        return sp

    sp = with_dir(sub.add_parser("start", help="start in the background and print the environment"))
    sp.add_argument("--spec", required=True)
    sp.add_argument("--libdir", default=DEFAULT_LIBDIR)
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--timeout", type=float, default=30.0)
    sp.add_argument("--no-build", action="store_true")
    sp.add_argument("--log-level", default="info")
    sp.set_defaults(fn=cmd_start)

    sp = with_dir(sub.add_parser("run", help="run in the foreground"))
    sp.add_argument("--spec")
    sp.add_argument("--libdir", default=DEFAULT_LIBDIR)
    sp.add_argument("--log-level", default="info")
    sp.set_defaults(fn=cmd_run)

    sp = with_dir(sub.add_parser("list", help="list domains"))
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--domid", type=int)
    sp.set_defaults(fn=cmd_list)

    with_dir(sub.add_parser("stats", help="simulator counters")).set_defaults(fn=cmd_stats)

    sp = with_dir(sub.add_parser("env", help="print the environment again"))
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_env)

    sp = with_dir(sub.add_parser("spawn", help="boot more guests"))
    sp.add_argument("--behaviour", "--behavior", required=True)
    sp.add_argument("--count", type=int, default=1)
    sp.add_argument("--name")
    sp.add_argument("--params", help="JSON object of behaviour parameters")
    sp.set_defaults(fn=cmd_spawn)

    sp = with_dir(sub.add_parser("fault", help="inject a fault"))
    sp.add_argument("kind", choices=["restart-xenstored", "destroy", "crash", "lock", "unlock",
                                     "pause", "unpause", "shutdown"])
    sp.add_argument("domid", nargs="?", type=int)
    sp.add_argument("reason", nargs="?", help="for shutdown: poweroff|reboot|suspend|crash|N")
    sp.add_argument("--downtime", type=float, default=0.5)
    sp.add_argument("--lock-dir")
    sp.set_defaults(fn=cmd_fault)

    sp = with_dir(sub.add_parser("reboot", help="simulated dom0 reboot: guests and store vanish, files stay"))
    sp.set_defaults(fn=cmd_reboot)

    sp = with_dir(sub.add_parser("xl-fault", help="set (replace) the simulated xl's faults for a domain name"))
    sp.add_argument("name")
    sp.add_argument("--enospc-after", type=int, metavar="BYTES")
    sp.add_argument("--stall-after", type=int, metavar="BYTES")
    sp.add_argument("--truncate-to", type=int, metavar="BYTES")
    sp.add_argument("--restore-fail", action="store_true")
    sp.set_defaults(fn=cmd_xl_fault)

    sp = with_dir(sub.add_parser("stop", help="stop the simulator and remove its sockets"))
    sp.add_argument("--timeout", type=float, default=10.0)
    sp.set_defaults(fn=cmd_stop)

    sp = sub.add_parser("build", help="build the shim libraries")
    sp.add_argument("--libdir", default=DEFAULT_LIBDIR)
    sp.set_defaults(fn=cmd_build)

    args = p.parse_args(argv)
    return args.fn(args)
