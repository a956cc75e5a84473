"""Runs schedules of the kill-anywhere campaign on one reused simulator (see campaign.py)."""

import calendar
import glob
import os
import shutil
import statistics
import tempfile
import time

import harness
import save_runs
import schedules
from harness import HarnessError, Sampler, Sim, XlMonitors, run_module

KIND = {"domain_suspended": "suspend", "domain_resumed": "resume", "domain_saved": "save",
        "domain_restored": "restore"}
# (the last two are reported apart, as the ledger's: "files" are .part files or images left)
VIOLATIONS = ("lost", "left_suspended", "pending", "frozen", "hangs", "image_lost", "left_saved",
              "ledger", "files")
SHUTDOWN_SUSPEND = harness.SHUTDOWN_SUSPEND


def available_behaviours():
    from xensim.guests import BEHAVIOURS  # harness put tests/xensim on sys.path
    return set(BEHAVIOURS)


def module_env(sim, coll):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.update(XENSTORED_PATH=sim.env["XENSTORED_PATH"], XENSIM_SOCKET=sim.env["XENSIM_SOCKET"],
               LD_LIBRARY_PATH=sim.env["LD_LIBRARY_PATH"] + (
                   ":" + os.environ["LD_LIBRARY_PATH"] if os.environ.get("LD_LIBRARY_PATH") else ""),
               PYTHONPATH=str(coll), PYTHONDONTWRITEBYTECODE="1",
               # the simulated xl first on PATH, as `xensimctl start` prints it
               PATH=sim.env.get("PATH") or "%s:%s" % (harness.XENSIM_ROOT / "bin",
                                                      os.environ.get("PATH", "")))
    return env


class Worker(object):
    """One simulator and the schedules run on it, one after another.

    ``startup``: {"suspend": s, "resume": s}, a module run's fixed cost before it touches
    anything (measured by calibrate()); ``settle``: whether domain_resumed takes
    ``settle_timeout``; ``monitors``: whether stand-in xl monitors can be used."""

    def __init__(self, coll, settle, monitors, tag="w", startup=None, per_guest=None):
        self.coll = coll
        self.modules = harness.modules_dir(coll)
        self.settle = settle
        self.monitors_enabled = monitors
        # inside the campaign's namespace, xl restore's monitors log where the engine looks
        self.sim = Sim(tag, xl_log_dir=harness.XL_LOG_DIR if monitors else None)
        self.env = module_env(self.sim, coll)
        self.behaviours = available_behaviours()
        self.startup = startup
        self.per_guest = per_guest
        self.base_args = {"xen_run_dir": self.sim.run_dir,
                          "xenstore_timeout": schedules.XENSTORE_TIMEOUT}

    def close(self):
        self.sim.stop()

    # -- calibration ------------------------------------------------------------------------

    def calibrate(self, rounds=3, fleet=8):
        """What a module run typically costs: ``startup`` is the fixed cost of a run that has
        nothing to do (interpreter, imports, backends, inventory), the median of ``rounds``;
        ``per_guest`` the work per guest beyond the guests' own delays, from suspending and
        resuming ``fleet`` quick guests (checked like any schedule: no violation allowed)."""
        workdir = tempfile.mkdtemp(prefix="cal-", dir=self.sim.dir)
        ledger = os.path.join(workdir, "state", "ledger.json")
        out = {}
        try:
            save_dir = os.path.join(workdir, "save")
            for module, args in (
                    ("domain_suspended", dict(self.base_args, ledger=ledger,
                                              domains=["calibration-nothing-*"])),
                    ("domain_resumed", dict(self.base_args, ledger=ledger)),
                    ("domain_saved", dict(self.base_args, ledger=ledger, save_dir=save_dir,
                                          domains=["calibration-nothing-*"])),
                    ("domain_restored", dict(self.base_args, ledger=ledger))):
                times = []
                for i in range(rounds):
                    run = run_module(module, args, self.env, workdir, "cal-%s-%d" % (module, i),
                                     budget=60, modules=self.modules)
                    if run.rc != 0:
                        raise HarnessError("calibration run of %s failed:\n%s"
                                           % (module, run.summary()))
                    times.append(run.seconds)
                out[KIND[module]] = statistics.median(times)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        self.startup = out
        self.per_guest = {"suspend": 0.0, "resume": 0.0}
        schedule = {"seed": "calibration", "k": "cal", "fleet": [
            {"behaviour": "linux-pv", "quiesce_ms": 20, "params": {}}] * fleet,
            "suspend": {"method": "auto", "parallel": 32, "timeout": 5.0, "ack_timeout": 5.0,
                        "continue_on_error": False},
            "resume": {"timeout": schedules.RESUME_TIMEOUT, "continue_on_error": False},
            "kills": ["resume"], "kill_u": [(False, 1e9)], "gaps": [0.0], "signals": ["KILL"]}
        result = self.run(schedule, kill_plans=[("start", 1e6)], keep=True)
        if result["violations_total"] or result["final_rc"] != 0:
            raise HarnessError("the calibration schedule (nothing killed) failed:\n%s"
                               % result["report"])
        # The window in which a run touches something: from its connection to the last change
        # the sampler saw while it ran (the ledger included).
        timeline = self.last_sampler.timeline
        windows = {}
        for run in self.last_runs:
            if run.label not in ("suspend", "resume-1") or run.connected_at is None:
                continue
            begin = run.started - self.last_sampler.t0 + run.connected_at
            end = run.started - self.last_sampler.t0 + run.seconds
            changes = [t for t, who, _what in timeline if who != "harness" and begin <= t <= end]
            if not changes:
                raise HarnessError("the calibration's %s changed nothing:\n%s"
                                   % (run.label, result["report"]))
            windows[run.label] = max(changes) - begin
        self.per_guest = {
            "suspend": max(0.0005, (windows["suspend"] - 0.02) / fleet),
            "resume": max(0.0005, windows["resume-1"] / fleet),
            "save": 0.0, "restore": 0.0}
        self._calibrate_save(fleet)
        return out, self.per_guest

    def _calibrate_save(self, fleet):
        """xl's own cost per guest, saving then restoring ``fleet`` quick guests one at a time
        (a save schedule with nothing killed: no violation allowed)."""
        schedule = {"seed": "calibration", "k": "calsave", "family": "save+restore",
                    "fleet": [{"behaviour": "linux-pv", "quiesce_ms": 20, "params": {}}] * fleet,
                    "memory_mb": [1024] * fleet,
                    "suspend": {}, "resume": {"timeout": schedules.RESUME_TIMEOUT,
                                              "continue_on_error": False},
                    "save": {"parallel": 1, "timeout": 30.0, "verify": "structure",
                             "continue_on_error": False, "space_margin_mb": 0},
                    "restore_opts": {"parallel": 1, "timeout": schedules.RESTORE_TIMEOUT,
                                     "continue_on_error": False},
                    "kills": [], "kill_u": [], "gaps": [], "signals": [], "reboot": False,
                    "fault": None, "damage": None, "restore_fail": None}
        result = self.run(schedule, keep=True)
        if result["violations_total"] or result["final_rc"] != 0:
            raise HarnessError("the save calibration schedule (nothing killed) failed:\n%s"
                               % result["report"])
        for run in self.last_runs:
            kind = {"save": "save", "restore-final": "restore"}.get(run.label)
            if kind is None:
                continue
            spent = run.seconds - (run.connected_at or 0.0)
            if kind == "save":
                spent -= fleet * 0.02   # the guests' own way down
            self.per_guest[kind] = max(0.01, spent / fleet)

    # -- one schedule -------------------------------------------------------------------------

    def run(self, schedule, kill_plans=None, keep=False):
        """Run one schedule; returns a dict (see campaign.py) with ``violations`` and, when
        there are any, a ``report``."""
        t_start = time.monotonic()
        k = schedule["k"]
        workdir = tempfile.mkdtemp(prefix="k%s-" % k, dir=self.sim.dir)
        ledger = os.path.join(workdir, "state", "ledger.json")
        monitors = XlMonitors() if self.monitors_enabled else None
        guests = []
        sampler = None
        runs = []
        try:
            saving = schedules.is_save(schedule)
            for i, g in enumerate(schedule["fleet"], 1):
                name = "c%s-%d-%s" % (k, i, g["behaviour"].replace("_", "-"))
                extra = {"memory_mb": schedule["memory_mb"][i - 1]} if saving else {}
                domid = self.sim.spawn(name, g["behaviour"], params=g["params"],
                                       quiesce_ms=g["quiesce_ms"], jitter_ms=0, **extra)
                guests.append({"name": name, "domid": domid, "behaviour": g["behaviour"]})
            by_domid = dict((d["domid"], d) for d in self.sim.domains())
            for guest in guests:
                guest["uuid"] = by_domid[guest["domid"]]["uuid"]
                if monitors is not None:
                    guest["monitor"] = monitors.start(guest["name"], guest["domid"])
            t0 = time.monotonic()
            self.timing = {"setup": t0 - t_start}
            save_dir = os.path.join(workdir, "save") if saving else None
            self.save_dir = save_dir
            sampler = Sampler(self.sim, ledger, dict((g["uuid"], g["name"]) for g in guests), t0,
                              save_dir=save_dir)
            sampler.start()
            self.last_sampler, self.last_runs = sampler, runs
            if saving:
                result = self._save_steps(schedule, guests, ledger, workdir, sampler, runs,
                                          kill_plans, monitors)
            else:
                result = self._steps(schedule, guests, ledger, workdir, sampler, runs, kill_plans)
            result["seconds"] = time.monotonic() - t_start
            result["timing"] = self.timing
            if result["violations_total"] or keep:
                result["report"] = self._report(schedule, guests, sampler, runs, result)
            return result
        finally:
            t_end = time.monotonic()
            if sampler is not None and sampler.is_alive():
                sampler.stop_event.set()
                sampler.join(5)
            self._teardown(guests, monitors, getattr(self, "save_dir", None))
            self.save_dir = None
            shutil.rmtree(workdir, ignore_errors=True)
            if getattr(self, "timing", None) is not None:
                self.timing["teardown"] = time.monotonic() - t_end

    @staticmethod
    def _still_settling(final, name, entry):
        """An entry the design keeps on purpose: the guest answered a request of ours, may still
        suspend until the entry's settle_by, and the final resume said so (still_suspending)."""
        results = dict((d.get("name"), d) for d in ((final.result or {}).get("domains") or []))
        error = (results.get(name) or {}).get("error") or {}
        if error.get("kind") != "still_suspending" or entry.get("state") != "intent":
            return False
        try:
            # (whole seconds before ledger timestamps had milliseconds; the campaign may run
            # against an older checkout, see --collection)
            stamp = entry.get("settle_by")
            settle_by = calendar.timegm(time.strptime(stamp.split(".")[0].rstrip("Z") + "Z",
                                                      "%Y-%m-%dT%H:%M:%SZ"))
        except (AttributeError, TypeError, ValueError):
            return False
        return settle_by > time.time() - 1

    def _steps(self, schedule, guests, ledger, workdir, sampler, runs, kill_plans):
        startup = self.startup
        kills = list(schedule["kills"])
        kills_given = list(kill_plans or [])
        n = len(schedule["fleet"])
        suspend_args = dict(self.base_args, ledger=ledger, domains=["c%s-*" % schedule["k"]],
                            **schedule["suspend"])
        resume_args = dict(self.base_args, ledger=ledger, **schedule["resume"])
        settle = schedules.settle_timeout(schedule)
        if self.settle:
            resume_args["settle_timeout"] = settle
        per_guest = self.per_guest
        work_s = schedules.suspend_work_seconds(schedule) + 1.2 * n * per_guest["suspend"]
        going_down = schedules.longest_going_down(schedule)
        work_r = 1.2 * n * per_guest["resume"] + (
            min(settle, going_down) if self.settle and kills[0] == "suspend" else 0.0)
        o = schedule["suspend"]
        worst_s = schedules.suspend_work_seconds(dict(schedule, fleet=[
            dict(g, behaviour="ack-no-suspend") for g in schedule["fleet"]],
            suspend=dict(o, timeout=o["ack_timeout"] + o["timeout"] + 0.2)))
        budget_s = 2 * startup["suspend"] + worst_s + schedules.XENSTORE_TIMEOUT + 5
        budget_r = 2 * startup["resume"] + schedules.XENSTORE_TIMEOUT + resume_args["timeout"] + \
            (settle if self.settle else 0.0) + 5
        gaps = list(schedule["gaps"])

        def start_note(run):
            sampler.note("%s started" % run.label)

        def one(module, args, label, killed, work):
            kill = None
            if killed:
                u = schedule["kill_u"][len(runs_killed)]
                kill = kills_given.pop(0) if kills_given else schedules.kill_plan(
                    u, startup[KIND[module]], work)
            sampler.phase = label
            signame = schedule["signals"][len(runs_killed)] if killed else "KILL"
            run = run_module(module, args, self.env, workdir, label, kill=kill,
                             budget=budget_s if module == "domain_suspended" else budget_r,
                             on_start=start_note, modules=self.modules, signame=signame)
            run.kill = kill
            runs.append(run)
            if run.connected_at is not None:
                sampler.timeline.append((run.started - sampler.t0 + run.connected_at, "harness",
                                         "%s connected to the hypervisor" % label))
            sampler.note("%s ended: rc=%s%s" % (label, run.rc, " (killed)" if run.killed else
                                                " (HANG)" if run.hang else ""))
            if killed:
                runs_killed.append(run)
                gap = gaps.pop(0)
                if gap:
                    time.sleep(gap)
            return run

        runs_killed = []
        one("domain_suspended", suspend_args, "suspend", kills[0] == "suspend", work_s)
        if "resume" in kills:
            one("domain_resumed", resume_args, "resume-1", True, work_r)
        final = one("domain_resumed", resume_args, "resume-final", False, 0.0)

        t_runs = time.monotonic()
        self.timing["runs"] = t_runs - sampler.t0
        # Right after the final resume: no request may be left pending in a running guest.
        pending = set(self._pending(guests))
        # Guests that were going down settle (a late suspend shows up as left_suspended).
        deadline = time.monotonic() + schedules.longest_going_down(schedule) + 1.0
        sampler.phase = "settling after the final resume"
        while time.monotonic() < deadline:
            doms = self._ours(self.sim.domains(), guests)
            if not any(d.get("state") == "quiescing" for d in doms.values()):
                break
            time.sleep(0.02)
        pending |= set(self._pending(guests))
        sampler.finish()
        self.timing["settle"] = time.monotonic() - t_runs

        final_doms = self._ours(self.sim.domains(), guests)
        entries, ledger_error = harness.read_ledger(ledger)
        entries = entries or {}
        v = dict((key, []) for key in VIOLATIONS)
        v["lost"] = sorted(sampler.lost)
        v["ledger"] = list(sampler.ledger_errors)
        if ledger_error:
            v["ledger"].append("final: " + ledger_error)
        suspended = set()
        for name, d in final_doms.items():
            if d.get("shutdown_code") == harness.SHUTDOWN_SUSPEND and not d.get("dying"):
                suspended.add(name)
                v["left_suspended"].append(name)
            elif d.get("shutdown_code") is None and not d.get("dying") and d["uuid"] in entries:
                if self._still_settling(final, name, entries[d["uuid"]]):
                    continue
                v["ledger"].append("entry (state %s) left for running guest %s"
                                   % (entries[d["uuid"]].get("state"), name))
        v["pending"] = sorted(pending)
        if self.monitors_enabled:
            for g in guests:
                state = harness.process_state(g["monitor"])
                g["monitor_state"] = state
                if state in ("T", "t") and g["name"] not in suspended:
                    v["frozen"].append(g["name"])
        v["hangs"] = [run.label for run in runs if run.hang]
        counts = dict((key, len(val)) for key, val in v.items())
        return {"k": schedule["k"], "seed": schedule["seed"],
                "kills": sum(1 for run in runs if run.killed),
                "kill_attempts": sum(1 for run in runs if run.kill is not None),
                "violations": v, "counts": counts,
                "violations_total": sum(counts.values()),
                "samples": sampler.samples, "final_rc": final.rc,
                "final_failed": bool((final.result or {}).get("failed")),
                # why: still_suspending (a guest of a killed run still within its settle time
                # when the campaign's short settle_timeout ran out) is the expected one
                "final_error_kinds": sorted(
                    (d.get("error") or {}).get("kind") or "?"
                    for d in (final.result or {}).get("domains") or [] if d.get("error")),
                "final_entries": entries, "final_doms": final_doms,
                "runs": [(run.label, run.seconds, run.kill, run.killed) for run in runs],
                "run_summaries": [run.summary() for run in runs]}

    def _save_steps(self, schedule, guests, ledger, workdir, sampler, runs, kill_plans, monitors):
        return save_runs.run_save_schedule(self, schedule, guests, ledger, workdir, sampler, runs,
                                           kill_plans, monitors)

    @staticmethod
    def violation_keys():
        return VIOLATIONS

    @staticmethod
    def _ours(doms, guests):
        names = dict((g["uuid"], g["name"]) for g in guests)
        return dict((names[d["uuid"]], d) for d in doms if d.get("uuid") in names)

    def _pending(self, guests):
        doms = self._ours(self.sim.domains(), guests)
        running = [(name, d["domid"]) for name, d in doms.items()
                   if d.get("shutdown_code") is None and not d.get("dying")]
        paths = dict(("/local/domain/%d/control/shutdown" % domid, name) for name, domid in running)
        values = self.sim.xs_read_many(sorted(paths))
        return [paths[p] for p, value in values.items() if value == b"suspend"]

    def _teardown(self, guests, monitors, save_dir=None):
        if not self.sim.alive():
            raise HarnessError("the simulator died")
        if save_dir:
            # an xl still at work (a stalled one waits for ever), and faults for the next run
            harness.kill_pids(harness.xl_processes(save_dir))
            for g in guests:
                self.sim.set_xl_faults(g["name"], {})
        # by UUID: a restored guest has a new domid (and after a dom0 reboot the old domids
        # belong to others)
        uuids = set(g["uuid"] for g in guests)
        ids = set(d["domid"] for d in self.sim.domains() if d.get("uuid") in uuids)
        for domid in ids:
            self.sim.destroy(domid)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if not uuids & set(d.get("uuid") for d in self.sim.domains()):
                break
            time.sleep(0.01)
        else:
            raise HarnessError("destroyed guests did not go away: %s" % sorted(ids))
        if monitors is not None:
            monitors.stop_all()
        if save_dir:
            harness.kill_pids(harness.monitor_processes([g["name"] for g in guests]))
        ids |= set(g["domid"] for g in guests)
        for domid in ids:
            for path in glob.glob(os.path.join(self.sim.run_dir, "suspend-evtchn-%d.lock" % domid)):
                try:
                    os.unlink(path)
                except OSError:
                    pass

    # -- the report of a schedule -----------------------------------------------------------

    def _report(self, schedule, guests, sampler, runs, result):
        lines = [schedules.describe(schedule)]
        lines.append("  runs:")
        for run in runs:
            lines.append("    " + run.summary())
        lines.append("  violations: " + (", ".join(
            "%s=%s" % (key, val) for key, val in result["violations"].items() if val) or "none"))
        for name, text in sorted(sampler.lost.items()):
            lines.append("    lost %s: %s" % (name, text))
        for name, text in sorted(sampler.image_lost.items()):
            lines.append("    image_lost %s: %s" % (name, text))
        for text in result.get("notes") or ():
            lines.append("  note: %s" % text)
        lines.append("  final state (guest state, xl flags, shutdown code, monitor, counters):")
        for g in guests:
            d = result["final_doms"].get(g["name"], {})
            lines.append("    %-28s dom%-5s %-10s %s code=%s monitor=%s %s" % (
                g["name"], g["domid"], d.get("state"), d.get("flags"), d.get("shutdown_code"),
                g.get("monitor_state", "n/a"), d.get("counters")))
        entries = result["final_entries"]
        lines.append("  final ledger: %s" % (", ".join(
            "%s(%s,%s)" % (e.get("name"), e.get("state"), e.get("method"))
            for e in sorted(entries.values(), key=lambda e: e.get("name") or "")) or "empty"))
        if "final_files" in result:
            lines.append("  save directory: %s" % (", ".join(
                "%s(%d)" % item for item in sorted(result["final_files"].items())) or "empty"))
        timeline = sorted(sampler.timeline, key=lambda item: item[0])
        lines.append("  timeline (s since the suspend started; %d samples):" % sampler.samples)
        if len(timeline) > 80:
            lines.append("    ... %d earlier lines" % (len(timeline) - 80))
            timeline = timeline[-80:]
        for t, who, what in timeline:
            lines.append("    %7.3f %-28s %s" % (t, who, what))
        kills = ",".join(schedules.format_kill(run.kill) for run in runs if run.kill is not None)
        lines.append("  re-run: make campaign SEED=%s SCHEDULE=%s   (same kill moments: "
                     "tests/campaign/campaign.py --seed %s --schedule %s --kills %s)"
                     % (schedule["seed"], schedule["k"], schedule["seed"], schedule["k"], kills))
        return "\n".join(lines)
