"""The runs of one save schedule (issue 12): domain_saved, maybe a dom0 reboot, domain_restored,
each killed or not as the schedule says, then a final domain_restored and a final domain_resumed,
and the end-state checks. The invariants sampled during the runs are harness.Sampler's.

End state, once xl has finished (or a stalled one was killed) and the final runs are done:

* every guest of the fleet runs, except one whose image the harness damaged on purpose (it must
  still be saved: entry and image kept, and the final domain_restored must fail naming it) and
  the guests a simulated reboot powered off while they were not saved (nothing could keep them);
  a guest absent or paused counts in ``left_saved``, a suspended one in ``left_suspended``;
* no ``.part`` file and no image of a running guest is left (``files``);
* no ledger entry is left but those of damaged or powered-off guests (``ledger``).
"""

import os
import threading
import time

import harness
import schedules

RESTORE_LABELS = ("restore-1", "restore-final")
# After the last killed run: how long the xl processes it left may still work (xl's waits for
# the guest, the image's writing) before the final runs; past it they are called a hang.
XL_DRAIN_SECONDS = 2 * harness.XL_SUSPEND_TIMEOUT_MS / 1000.0 + 10.0
# The module's own waits in a give-back (late suspend watch, resume) and its recovery's resume.
GIVE_BACK_SECONDS = 16.0


class StallKiller(threading.Thread):
    """A ``stall_after`` fault blocks xl mid-image: once the simulator shows the save stalled,
    SIGKILL that xl ``kill_after`` seconds later (unless the module's timeout did it first), as
    an operator or the OOM killer would."""

    def __init__(self, sim, save_dir, uuid, kill_after, note):
        threading.Thread.__init__(self, name="stall-killer", daemon=True)
        self.conn = harness.AdminConn(sim.control)
        self.part = os.path.join(save_dir, "%s.xlsave.part" % uuid)
        self.uuid = uuid
        self.kill_after = kill_after
        self.note = note
        self.stop_event = threading.Event()
        self.killed = []

    def run(self):
        try:
            while not self.stop_event.is_set():
                if self._stalled():
                    self.stop_event.wait(self.kill_after)
                    pids = [pid for pid, argv in harness.xl_processes(
                        os.path.dirname(self.part)).items() if self.part in argv]
                    harness.kill_pids(pids)
                    if pids:
                        self.killed.extend(pids)
                        self.note("harness: SIGKILL of the stalled xl save (pid %s)"
                                  % ",".join(map(str, pids)))
                self.stop_event.wait(0.02)
        except harness.HarnessError:
            pass  # the simulator went away (reboot: the connection is re-made on the next call)
        finally:
            self.conn.close()

    def _stalled(self):
        for d in self.conn.call("list")["domains"]:
            if d.get("uuid") == self.uuid and (d.get("xl_save") or {}).get("stage") == "stalled":
                return True
        return False

    def stop(self):
        self.stop_event.set()
        self.join(10)


def run_save_schedule(worker, schedule, guests, ledger, workdir, sampler, runs, kill_plans,
                      monitors):
    k = schedule["k"]
    sim = worker.sim
    save_dir = os.path.join(workdir, "save")
    startup, per_guest = worker.startup, worker.per_guest
    n = len(guests)
    kills = list(schedule["kills"])
    kills_given = list(kill_plans or [])
    gaps = list(schedule["gaps"])
    base = dict(worker.base_args, ledger=ledger)
    save_args = dict(base, save_dir=save_dir, domains=["c%s-*" % k], **schedule["save"])
    restore_args = dict(base, **schedule["restore_opts"])   # the images are in the ledger
    resume_args = dict(worker.base_args, ledger=ledger, **schedule["resume"])
    if worker.settle:
        resume_args["settle_timeout"] = schedules.settle_timeout(schedule)
        # A guest that took xl's request and did not suspend keeps its entry this long (as a
        # suspend's intent): as short as the fleet's ways down allow, so that the final resume's
        # settle_timeout sees it settled.
        save_args["late_suspend_timeout"] = schedules.settle_timeout(schedule)
    xl_timeout = harness.XL_SUSPEND_TIMEOUT_MS / 1000.0
    work = {"save": schedules.save_work_seconds(schedule, xl_timeout, per_guest["save"]),
            "restore": schedules.restore_work_seconds(schedule, per_guest["restore"])}
    o = schedule["save"]
    waves = -(-n // (o["parallel"] or n))
    budgets = {
        "save": 2 * startup["save"] + waves * (o["timeout"] + 2 * per_guest["save"] +
                                               GIVE_BACK_SECONDS) + 10,
        "restore": 2 * startup["restore"] + n * (3 * per_guest["restore"] + 2) +
        GIVE_BACK_SECONDS + 10,
        "resume": 2 * startup["resume"] + schedules.XENSTORE_TIMEOUT +
        schedules.RESUME_TIMEOUT + resume_args.get("settle_timeout", 0.0) + 5,
    }
    by_index = dict(enumerate(guests))
    notes = []
    killed_runs = []

    def note(text):
        sampler.note(text)
        notes.append(text)

    def one(module, args, label, killed):
        kind = worker_kind(module)
        kill = None
        signame = "KILL"
        if killed:
            i = len(killed_runs)
            kill = kills_given.pop(0) if kills_given else schedules.kill_plan(
                schedule["kill_u"][i], startup[kind], work[kind] if kind in work else 0.0)
            signame = schedule["signals"][i]
        sampler.phase = label
        run = harness.run_module(module, args, worker.env, workdir, label, kill=kill,
                                 budget=budgets[kind], on_start=lambda r: sampler.note(
                                     "%s started" % r.label),
                                 modules=worker.modules, signame=signame)
        run.kill = kill
        runs.append(run)
        if run.connected_at is not None:
            sampler.timeline.append((run.started - sampler.t0 + run.connected_at, "harness",
                                     "%s connected to the hypervisor" % label))
        sampler.note("%s ended: rc=%s%s" % (label, run.rc, " (killed)" if run.killed else
                                            " (HANG)" if run.hang else ""))
        if killed:
            killed_runs.append(run)
            gap = gaps.pop(0)
            if gap:
                time.sleep(gap)
        return run

    fault = schedule.get("fault")
    stall = None
    if fault is not None:
        g = by_index[fault["guest"]]
        sim.set_xl_faults(g["name"], {fault["kind"]: fault["bytes"]})
        if fault["kind"] == "stall_after":
            stall = StallKiller(sim, save_dir, g["uuid"], fault["kill_after"], note)
            stall.start()
    excluded = set()
    damaged = None
    restore_fail = None
    xl_hangs = []
    try:
        one("domain_saved", save_args, "save", "save" in kills)
        if schedule.get("damage") is not None:
            damaged = damage_image(schedule["damage"], by_index, save_dir, ledger, sampler, note)
        if schedule.get("reboot"):
            excluded = reboot(sim, save_dir, ledger, guests, sampler, monitors, note)
        if schedule.get("restore_fail") is not None:
            restore_fail = by_index[schedule["restore_fail"]]
            sim.set_xl_faults(restore_fail["name"], {"restore_fail": True})
        if "restore" in kills:
            one("domain_restored", restore_args, "restore-1", True)
        # Before the final runs: no fault left, every xl the killed runs left has ended.
        for g in guests:
            sim.set_xl_faults(g["name"], {})
        xl_hangs = drain_xl(save_dir, note)
        final = one("domain_restored", restore_args, "restore-final", False)
        final_resume = one("domain_resumed", resume_args, "resume-final", False)
    finally:
        if stall is not None:
            stall.stop()

    t_runs = time.monotonic()
    worker.timing["runs"] = t_runs - sampler.t0
    pending = set(worker._pending(guests))
    deadline = time.monotonic() + schedules.longest_going_down(schedule) + 1.0
    sampler.phase = "settling after the final runs"
    while time.monotonic() < deadline:
        doms = worker._ours(sim.domains(), guests)
        if not any(d.get("state") == "quiescing" for d in doms.values()):
            break
        time.sleep(0.02)
    pending |= set(worker._pending(guests))
    sampler.finish()
    worker.timing["settle"] = time.monotonic() - t_runs

    final_doms = worker._ours(sim.domains(), guests)
    entries, ledger_error = harness.read_ledger(ledger)
    entries = entries or {}
    files = harness.list_save_dir(save_dir)
    v = dict((key, []) for key in worker.violation_keys())
    # (a guest powered off by the reboot is no longer judged from then on, but one lost before
    # it stays lost: the sampler stops judging it only after the reboot)
    v["lost"] = sorted(sampler.lost)
    v["image_lost"] = sorted(sampler.image_lost)
    v["ledger"] = list(sampler.ledger_errors)
    if ledger_error:
        v["ledger"].append("final: " + ledger_error)
    v["pending"] = sorted(pending)
    v["hangs"] = [run.label for run in runs if run.hang] + xl_hangs
    failed_names = set(d.get("name") for d in (final.result or {}).get("domains") or []
                       if d.get("error"))
    for g in guests:
        name, uuid = g["name"], g["uuid"]
        if name in excluded:
            continue
        d = final_doms.get(name)
        entry = entries.get(uuid)
        if damaged is not None and name == damaged["name"]:
            if d is not None and d.get("shutdown_code") is None and not d.get("dying"):
                v["ledger"].append("%s runs, restored from the image damaged on purpose" % name)
            elif entry is None or entry.get("state") != "saved" or "%s.xlsave" % uuid not in files:
                if name not in v["image_lost"]:
                    v["image_lost"].append(name)
            if name not in failed_names:
                v["ledger"].append("the final domain_restored did not report the failed restore "
                                   "of %s (damaged image)" % name)
            continue
        if d is None or d.get("dying"):
            v["left_saved"].append(name)
            continue
        if d.get("shutdown_code") == harness.SHUTDOWN_SUSPEND:
            v["left_suspended"].append(name)
            continue
        if d.get("shutdown_code") is not None or d.get("paused"):
            v["left_saved"].append(name)
            continue
        if entry is not None and not worker._still_settling(final_resume, name, entry):
            v["ledger"].append("entry (state %s) left for running guest %s"
                               % (entry.get("state"), name))
        if "%s.xlsave" % uuid in files:
            v["files"].append("the image of running guest %s is left" % name)
        if monitors is not None:
            state = frozen_state(g, d)
            g["monitor_state"] = state
            if state in ("T", "t"):
                v["frozen"].append(name)
    excluded_uuids = set(g["uuid"] for g in guests if g["name"] in excluded)
    for fname in sorted(files):
        if fname.endswith(".part") and fname.split(".")[0] not in excluded_uuids:
            v["files"].append("partial image %s left" % fname)
    counts = dict((key, len(val)) for key, val in v.items())
    return {"k": k, "seed": schedule["seed"],
            "kills": sum(1 for run in runs if run.killed),
            "kill_attempts": sum(1 for run in runs if run.kill is not None),
            "violations": v, "counts": counts, "violations_total": sum(counts.values()),
            "samples": sampler.samples, "final_rc": final.rc,
            "final_failed": bool((final.result or {}).get("failed")) and damaged is None,
            "final_error_kinds": sorted(
                (d.get("error") or {}).get("kind") or "?"
                for d in (final.result or {}).get("domains") or [] if d.get("error")),
            "final_entries": entries, "final_doms": final_doms, "final_files": files,
            "powered_off": sorted(excluded), "damaged": damaged and damaged["name"],
            "runs": [(run.label, run.seconds, run.kill, run.killed) for run in runs],
            "run_summaries": [run.summary() for run in runs], "notes": notes}


def worker_kind(module):
    return {"domain_saved": "save", "domain_restored": "restore",
            "domain_resumed": "resume", "domain_suspended": "suspend"}[module]


def damage_image(damage, by_index, save_dir, ledger, sampler, note):
    """Truncate a saved guest's image (its lost tail): it must stay saved, never be restored."""
    g = by_index[damage["guest"]]
    entries, _err = harness.read_ledger(ledger)
    entry = (entries or {}).get(g["uuid"])
    path = os.path.join(save_dir, "%s.xlsave" % g["uuid"])
    if entry is None or entry.get("state") != "saved" or not os.path.exists(path):
        note("harness: no damage: %s is not saved (%s)" % (g["name"], (entry or {}).get("state")))
        return None
    size = os.path.getsize(path)
    sampler.damaged.add(g["name"])
    with open(path, "r+b") as handle:
        handle.truncate(int(size * damage["fraction"]))
    note("harness: damaged the image of %s on purpose (%d of %d bytes kept)"
         % (g["name"], int(size * damage["fraction"]), size))
    return g


def reboot(sim, save_dir, ledger, guests, sampler, monitors, note):
    """A dom0 reboot: every process dies (the xl at work too), every guest is gone. Guests that
    were not saved (entry saved, image complete) are powered off by it: nothing could keep them,
    and they are left out of the checks from then on. Returns their names."""
    powered_off = set()
    sampler.hold()
    try:
        harness.kill_pids(harness.xl_processes(save_dir))
        deadline = time.monotonic() + 5
        while harness.xl_processes(save_dir) and time.monotonic() < deadline:
            time.sleep(0.01)
        entries, _err = harness.read_ledger(ledger)
        entries = entries or {}
        files = harness.list_save_dir(save_dir)
        for g in guests:
            entry = entries.get(g["uuid"])
            size = files.get("%s.xlsave" % g["uuid"])
            if not (entry and entry.get("state") == "saved" and size is not None and
                    (size == entry.get("image_size") or g["name"] in sampler.damaged)):
                powered_off.add(g["name"])
        sim.reboot()
        if monitors is not None:
            monitors.stop_all()   # they were processes of the old boot
        for g in guests:
            g["monitor"] = None
        note("harness: dom0 rebooted; powered off (not saved): %s"
             % (", ".join(sorted(powered_off)) or "none"))
    finally:
        sampler.release(powered_off)
    return powered_off


# A killed run's xl child may still be between fork and exec (its command line is then the
# module's): no xl is believed gone before none was seen for this long.
XL_QUIET_SECONDS = 0.3


def drain_xl(save_dir, note):
    """Wait until no xl works on an image of this schedule; one still there after
    XL_DRAIN_SECONDS is killed and reported as a hang."""
    deadline = time.monotonic() + XL_DRAIN_SECONDS
    procs = harness.xl_processes(save_dir)
    if procs:
        note("harness: waiting for %d xl process(es) left at work" % len(procs))
    quiet_since = None if procs else time.monotonic()
    while time.monotonic() < deadline:
        if not procs:
            if quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= XL_QUIET_SECONDS:
                break
        else:
            quiet_since = None
        time.sleep(0.02)
        procs = harness.xl_processes(save_dir)
    if procs:
        harness.kill_pids(procs)
        note("harness: xl still at work after %.0fs, killed: %s" % (
            XL_DRAIN_SECONDS, "; ".join(" ".join(argv[-3:]) for argv in procs.values())))
        return ["xl %s" % " ".join(argv[-2:]) for argv in procs.values()]
    return []


def frozen_state(g, d):
    """The state letter of the guest's lifecycle monitor now: the stand-in for the domain it
    started as, xl restore's own for a restored one (None when there is none)."""
    if d["domid"] == g["domid"] and g.get("monitor"):
        return harness.process_state(g["monitor"])
    pid = harness.restored_monitor_pid(harness.XL_LOG_DIR, g["name"], d["domid"])
    return harness.process_state(pid) if pid else None
