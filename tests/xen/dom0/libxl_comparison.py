"""Runs IN a test-bed dom0 (python3 THIS_FILE VERB ARGS, with the collection importable as
ansible_collections.xen.suspend through PYTHONPATH). Prints one JSON object. A test helper, not
shipped.

  libxl DOMID            libxenlight's own suspend and resume of one guest, called through cffi
                         (ABI mode): libxl_ctx_alloc, libxl_domain_suspend_only,
                         libxl_domain_resume(ctx, domid, suspend_cancel=1, NULL). Each call is
                         timed around the call alone (the context is allocated before). One
                         process per round: libxl keeps the guest's event channel bound and the
                         suspend lock held until the calling process exits.
  ours-suspend NAME LEDGER   domain_suspended's execute() on one guest, without AnsibleModule:
  ours-resume NAME LEDGER    domain_resumed's; the engine's wall time is what the module reports
                         (stats.wall_seconds), plus per-domain phases and where the rest went
  compare OPTIONS_JSON   alternate ours and libxl N times on each guest, check the heartbeat
                         after every resume; {"guests": [{"name", "domid"}], "rounds", "ledger"}
  fleet OPTIONS_JSON     suspend every guest (ours), then resume them all in one run vs one at
                         a time, `rounds` times each
"""
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.abspath(__file__)


# -- libxl ----------------------------------------------------------------------------------

LIBXL_CDEF = """
typedef struct libxl__ctx libxl_ctx;
typedef struct xentoollog_logger xentoollog_logger;
typedef struct FILE_ FILE;
FILE *fdopen(int fd, const char *mode);
xentoollog_logger *xtl_createlogger_stdiostream(FILE *f, int min_level, unsigned flags);
int libxl_ctx_alloc(libxl_ctx **pctx, int version, unsigned flags, xentoollog_logger *lg);
int libxl_ctx_free(libxl_ctx *ctx);
int libxl_domain_suspend_only(libxl_ctx *ctx, uint32_t domid, const void *ao_how);
int libxl_domain_resume(libxl_ctx *ctx, uint32_t domid, int suspend_cancel, const void *ao_how);
"""
XTL_ERROR = 8      # xentoollog.h: NONE, DEBUG, VERBOSE, DETAIL, PROGRESS, INFO, NOTICE, WARN, ERROR
LIBXL_VERSION = 0  # libxl.h: the only version libxl_ctx_alloc accepts


def xen_minor():
    with open("/sys/hypervisor/version/major") as f, open("/sys/hypervisor/version/minor") as g:
        return "%s.%s" % (f.read().strip(), g.read().strip())


def libxl_round(domid):
    import cffi
    from ansible_collections.xen.suspend.plugins.module_utils._xenctrl import XenCtrl

    ffi = cffi.FFI()
    ffi.cdef(LIBXL_CDEF)
    libc = ffi.dlopen(None)
    toollog = ffi.dlopen("libxentoollog.so.1")
    # libxenlight's soname is the Xen version (its ABI changes with every release)
    libxl = ffi.dlopen("libxenlight.so." + xen_minor())
    logger = toollog.xtl_createlogger_stdiostream(libc.fdopen(2, b"w"), XTL_ERROR, 0)
    pctx = ffi.new("libxl_ctx **")
    rc = libxl.libxl_ctx_alloc(pctx, LIBXL_VERSION, 0, logger)
    if rc != 0:
        return {"error": "libxl_ctx_alloc: %d" % rc}
    ctx = pctx[0]
    xc = XenCtrl.open()
    result = {"domid": domid}
    started = time.monotonic()
    rc = libxl.libxl_domain_suspend_only(ctx, domid, ffi.NULL)
    result["suspend_s"] = time.monotonic() - started
    result["suspend_rc"] = rc
    info = xc.domain_info(domid)
    result["suspended"] = bool(info is not None and info.suspended)
    if rc != 0 and not result["suspended"]:
        return result
    started = time.monotonic()
    rc = libxl.libxl_domain_resume(ctx, domid, 1, ffi.NULL)
    result["resume_s"] = time.monotonic() - started
    result["resume_rc"] = rc
    info = xc.domain_info(domid)
    result["running_after"] = bool(info is not None and not info.shut_down)
    result["total_s"] = result["suspend_s"] + result["resume_s"]
    return result  # the process exits without libxl_ctx_free, as xl's callers do after this


# -- ours -----------------------------------------------------------------------------------

class Profile(object):
    """Inclusive wall time and calls of wrapped functions (nested ones overlap)."""

    def __init__(self):
        self.totals = {}
        self.calls = {}

    def wrap(self, owner, attribute, label=None):
        original = getattr(owner, attribute)
        label = label or attribute
        totals, calls = self.totals, self.calls

        def timed(*args, **kwargs):
            started = time.monotonic()
            try:
                return original(*args, **kwargs)
            finally:
                totals[label] = totals.get(label, 0.0) + time.monotonic() - started
                calls[label] = calls.get(label, 0) + 1
        setattr(owner, attribute, timed)

    def as_dict(self):
        return dict((k, {"s": round(v, 6), "calls": self.calls[k]}) for k, v in self.totals.items())


def instrument(profile):
    from ansible_collections.xen.suspend.plugins.module_utils import _ledger, _suspend_engine
    from ansible_collections.xen.suspend.plugins.module_utils._xenstore import XenstoreClient
    from ansible_collections.xen.suspend.plugins.module_utils._suspend_lock import SuspendLocks
    for name in ("read", "update", "_replace", "_keep_backup", "_fsync_directory", "_lock",
                 "check_usable"):
        profile.wrap(_ledger.Ledger, name, "ledger." + name)
    profile.wrap(_ledger.os, "fsync", "os.fsync")
    for name in ("watch", "unwatch"):
        profile.wrap(XenstoreClient, name, "xenstore." + name)
    profile.wrap(SuspendLocks, "acquire", "locks.acquire")
    engine = _suspend_engine.SuspendEngine
    for name in ("_watch_release", "_unwatch_release", "_settle_unfinished", "_flush_ledger",
                 "_domain_infos", "_prefetch_event_channels", "_plan", "_admit", "_recheck_locked",
                 "_loop"):
        if hasattr(engine, name):
            profile.wrap(engine, name, "engine." + name)


def ours(verb, name, ledger):
    from ansible_collections.xen.suspend.plugins.module_utils._backends import open_backends
    from ansible_collections.xen.suspend.plugins.module_utils._inventory import list_records, read_names
    from ansible_collections.xen.suspend.plugins.module_utils._recovery import recover
    from ansible_collections.xen.suspend.plugins.module_utils._targets import parse_selectors, select_targets
    from ansible_collections.xen.suspend.plugins.module_utils._suspend_engine import SuspendEngine
    from ansible_collections.xen.suspend.plugins.module_utils._resume import ResumeEngine, plan_resume

    profile = Profile()
    instrument(profile)
    names = name.split(",")
    started = time.monotonic()
    backends = open_backends(ledger_path=ledger)
    opened = time.monotonic()
    try:
        if verb == "suspend":
            # domain_suspended's execute(), option defaults as the module has them
            engine = SuspendEngine(backends)
            records = list_records(backends.xenctrl, backends.xenstore, names_for=None)
            selection = select_targets(records, parse_selectors(names), [], [])
            entries = backends.ledger.check_usable(write=True)
            recovery = recover(backends, entries, act=True)
            read_names(backends.xenstore, [r for r in selection.targets if r.name is None])
            before_engine = time.monotonic()
            report = engine.run(selection.targets, selection.skipped)
        else:
            # domain_resumed's execute()
            engine = ResumeEngine(backends)
            entries = backends.ledger.check_usable(write=True)
            records = list_records(backends.xenctrl, backends.xenstore, names_for=None)
            plan = plan_resume(records, entries, parse_selectors(names), [], [], clock=backends.clock)
            recovery = recover(backends, entries, act=True, skip=set(job.uuid for job in plan.jobs))
            before_engine = time.monotonic()
            report = engine.run(plan)
        after_engine = time.monotonic()
    finally:
        backends.close()
    ended = time.monotonic()
    result = report.module_result()
    return {
        "engine_s": result["stats"]["wall_seconds"],
        "stats": result["stats"],
        "domains": [dict((k, d.get(k)) for k in ("name", "method", "before", "after", "phases", "error"))
                    for d in result["domains"]],
        "failed": result["failed_domains"],
        "changed": result["changed"],
        "recovery_changed": recovery.changed,
        "open_s": round(opened - started, 6),
        "before_engine_s": round(before_engine - opened, 6),
        "engine_measured_s": round(after_engine - before_engine, 6),
        "execute_s": round(ended - started, 6),
        "profile": profile.as_dict(),
    }


# -- the comparison -------------------------------------------------------------------------

def child(*args):
    proc = subprocess.run([sys.executable, HERE] + [str(a) for a in args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": "rc=%d stdout=%r stderr=%r" % (proc.returncode, proc.stdout[-2000:],
                                                          proc.stderr[-2000:])}


def heartbeat(client, domid):
    try:
        value = client.read(("/local/domain/%d/data/heartbeat" % domid).encode())
    except Exception:  # pylint: disable=broad-except
        return None
    return int(value) if value.isdigit() else None


def beats_again(client, domid, timeout=20.0):
    """The heartbeat advances twice (the agent writes every 0.5 s): the guest runs again."""
    first = heartbeat(client, domid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = heartbeat(client, domid)
        if now is not None and first is not None and now >= first + 2:
            return True
        time.sleep(0.1)
    return False


def median(values):
    return round(statistics.median(values), 6) if values else None


def compare(options):
    from pyxs import Client
    rounds = int(options.get("rounds", 10))
    ledger = options["ledger"]
    out = {}
    with Client() as client:
        for guest in options["guests"]:
            name, domid = guest["name"], int(guest["domid"])
            ours_rounds, libxl_rounds, problems = [], [], []
            for i in range(rounds):
                # ours first in odd rounds, libxl first in even ones (drift hits both alike)
                order = ("ours", "libxl") if i % 2 == 0 else ("libxl", "ours")
                for who in order:
                    if who == "ours":
                        suspended = child("ours-suspend", name, ledger)
                        resumed = child("ours-resume", name, ledger)
                        ok = (not suspended.get("error") and not suspended.get("failed")
                              and suspended.get("domains") and suspended["domains"][0]["after"] == "suspended"
                              and not resumed.get("error") and not resumed.get("failed")
                              and resumed.get("domains") and resumed["domains"][0]["after"] in ("running", "blocked"))
                        record = {"suspend": suspended, "resume": resumed, "ok": bool(ok)}
                        if ok:
                            record["total_s"] = suspended["engine_s"] + resumed["engine_s"]
                    else:
                        record = child("libxl", domid)
                        record["ok"] = bool(not record.get("error") and record.get("suspend_rc") == 0
                                            and record.get("suspended") and record.get("resume_rc") == 0
                                            and record.get("running_after"))
                    record["heartbeat_after_resume"] = beats_again(client, domid)
                    if not record["ok"] or not record["heartbeat_after_resume"]:
                        problems.append({"round": i, "who": who, "record": record})
                        if not record["heartbeat_after_resume"]:
                            out[name] = {"problems": problems, "aborted": True}
                            return out
                    (ours_rounds if who == "ours" else libxl_rounds).append(record)
            ours_ok = [r for r in ours_rounds if r["ok"]]
            libxl_ok = [r for r in libxl_rounds if r["ok"]]
            summary = {
                "rounds": rounds,
                "ours_ok": len(ours_ok), "libxl_ok": len(libxl_ok),
                "method": ours_ok[0]["suspend"]["domains"][0]["method"] if ours_ok else None,
                "ours_s": median([r["total_s"] for r in ours_ok]),
                "ours_suspend_s": median([r["suspend"]["engine_s"] for r in ours_ok]),
                "ours_resume_s": median([r["resume"]["engine_s"] for r in ours_ok]),
                "ours_module_execute_s": median([r["suspend"]["execute_s"] + r["resume"]["execute_s"]
                                                 for r in ours_ok]),
                "libxl_s": median([r["total_s"] for r in libxl_ok]),
                "libxl_suspend_s": median([r["suspend_s"] for r in libxl_ok]),
                "libxl_resume_s": median([r["resume_s"] for r in libxl_ok]),
                "problems": problems,
            }
            if summary["ours_s"] and summary["libxl_s"]:
                summary["ratio"] = round(summary["ours_s"] / summary["libxl_s"], 2)
            summary["ours_suspend_phases_s"] = median_dicts(
                [r["suspend"]["domains"][0]["phases"] or {} for r in ours_ok])
            summary["ours_resume_phases_s"] = median_dicts(
                [r["resume"]["domains"][0]["phases"] or {} for r in ours_ok])
            summary["ours_suspend_profile_s"] = median_dicts(
                [dict((k, v["s"]) for k, v in r["suspend"]["profile"].items()) for r in ours_ok])
            summary["ours_resume_profile_s"] = median_dicts(
                [dict((k, v["s"]) for k, v in r["resume"]["profile"].items()) for r in ours_ok])
            summary["ours_suspend_fsyncs"] = median(
                [r["suspend"]["profile"].get("os.fsync", {}).get("calls", 0) for r in ours_ok])
            summary["ours_resume_fsyncs"] = median(
                [r["resume"]["profile"].get("os.fsync", {}).get("calls", 0) for r in ours_ok])
            out[name] = summary
    return out


def median_dicts(dicts):
    keys = sorted(set(k for d in dicts for k in d))
    return dict((k, median([d.get(k, 0.0) for d in dicts])) for k in keys)


def fleet(options):
    """All guests suspended by us, then resumed all in one run vs one run per guest."""
    from pyxs import Client
    rounds = int(options.get("rounds", 3))
    ledger = options["ledger"]
    guests = options["guests"]
    names = ",".join(g["name"] for g in guests)
    together, one_by_one, problems = [], [], []
    with Client() as client:
        for i in range(rounds):
            for mode in ("together", "one_by_one"):
                suspended = child("ours-suspend", names, ledger)
                if suspended.get("error") or suspended.get("failed"):
                    problems.append({"round": i, "mode": mode, "suspend": suspended})
                    return {"problems": problems}
                started = time.monotonic()
                if mode == "together":
                    runs = [child("ours-resume", names, ledger)]
                else:
                    runs = [child("ours-resume", g["name"], ledger) for g in guests]
                wall = time.monotonic() - started
                engine = sum(r.get("engine_s", 0.0) for r in runs)
                failed = [r for r in runs if r.get("error") or r.get("failed")]
                beating = all(beats_again(client, int(g["domid"])) for g in guests)
                if failed or not beating:
                    problems.append({"round": i, "mode": mode, "runs": runs, "beating": beating})
                    return {"problems": problems}
                (together if mode == "together" else one_by_one).append(
                    {"engine_s": engine, "processes_s": wall})
    return {
        "guests": len(guests), "rounds": rounds, "problems": problems,
        "all_at_once_engine_s": median([r["engine_s"] for r in together]),
        "one_at_a_time_engine_s": median([r["engine_s"] for r in one_by_one]),
        "all_at_once_processes_s": median([r["processes_s"] for r in together]),
        "one_at_a_time_processes_s": median([r["processes_s"] for r in one_by_one]),
    }


def options_argument(text):
    """JSON, or @PATH of a file holding it."""
    if text.startswith("@"):
        with open(text[1:]) as handle:
            text = handle.read()
    return json.loads(text)


def main(argv):
    verb = argv[1]
    if verb == "libxl":
        result = libxl_round(int(argv[2]))
    elif verb in ("ours-suspend", "ours-resume"):
        result = ours(verb[len("ours-"):], argv[2], argv[3])
    elif verb == "compare":
        result = compare(options_argument(argv[2]))
    elif verb == "fleet":
        result = fleet(options_argument(argv[2]))
    else:
        raise SystemExit("unknown verb %r" % verb)
    sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv)
