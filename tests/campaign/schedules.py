"""Schedules of the kill-anywhere campaign: everything about schedule K of seed S (fleet, module
options, which runs are killed and when, as fractions of their typical duration) comes from
``random.Random("S:K")``, so any schedule can be re-run alone from its seed and number.

Guests get exact delays (jitter 0, drawn here), so the only randomness left at run time is the
operating system's timing.
"""

import heapq
import math
import random

# behaviour -> (weight, protocol, how its delays are drawn). Behaviours the simulator does not
# have (yet) are left out at run time.
GUEST_KINDS = {
    "linux-pv": 3.0,
    "linux-pvh": 0.7,
    "hvm-pv": 0.7,
    "xenlinux": 2.0,               # event channel
    "hvm-nopv": 1.5,               # direct
    "windows": 0.4,
    "slow": 2.0,
    "unresponsive": 0.4,
    "ack-no-suspend": 0.4,
    "late_suspender": 1.5,
    "late_suspender_evtchn": 1.0,
    "ack_if_still_suspend": 1.0,
    "rereads_after_resume": 0.7,
}

KILL_PLANS = (
    (("suspend",), 0.45),
    (("resume",), 0.30),
    (("suspend", "resume"), 0.25),
)

# Resume options that are the same everywhere (and in the budget for hangs).
RESUME_TIMEOUT = 5.0
XENSTORE_TIMEOUT = 2.0


def _guest(rng, behaviour):
    g = {"behaviour": behaviour, "quiesce_ms": int(rng.uniform(20, 400)), "params": {}}
    if behaviour == "slow":
        g["quiesce_ms"] = int(rng.uniform(100, 1500))
        g["params"] = {"ack_delay_ms": int(rng.uniform(30, 900)), "ack_jitter_ms": 0}
    elif behaviour in ("late_suspender", "late_suspender_evtchn"):
        g["params"] = {"suspend_after_ms": int(rng.uniform(300, 2500)), "suspend_jitter_ms": 0}
    elif behaviour == "ack_if_still_suspend":
        g["params"] = {"ack_delay_ms": int(rng.uniform(100, 1500)), "ack_jitter_ms": 0}
    elif behaviour == "ack-no-suspend":
        g["quiesce_ms"] = int(rng.uniform(50, 600))
    return g


def make_schedule(seed, k, behaviours):
    """Schedule ``k`` of ``seed``; ``behaviours``: what the simulator offers."""
    rng = random.Random("%s:%s" % (seed, k))
    kinds = sorted(b for b in GUEST_KINDS if b in behaviours)
    weights = [GUEST_KINDS[b] for b in kinds]
    n = rng.randint(3, 10)
    fleet = [_guest(rng, b) for b in rng.choices(kinds, weights, k=n)]
    suspend = {
        "method": "auto",
        "parallel": rng.choice([1, 2, 3, 4, 32, 32]),
        "timeout": round(rng.choice([rng.uniform(0.3, 1.5), rng.uniform(1.5, 4.0)]), 2),
        "ack_timeout": round(rng.uniform(0.3, 3.0), 2),
        "continue_on_error": rng.random() < 0.6,
    }
    resume = {"timeout": RESUME_TIMEOUT, "continue_on_error": rng.random() < 0.8}
    plans, plan_weights = zip(*KILL_PLANS)
    kills = list(rng.choices(plans, plan_weights)[0])
    # A kill lands uniformly over the part of the run where the module does something (85%),
    # or during its start-up, before it has touched anything (15%); see kill_plan().
    kill_u = [(rng.random() < 0.85, rng.random()) for _ in kills]
    # Pause between a killed run and the next resume: none half the time (a resume that runs
    # while guests are still going down), else up to 0.6 s.
    gaps = [0.0 if rng.random() < 0.5 else round(rng.uniform(0, 0.6), 3) for _ in kills]
    # How the run is stopped: SIGKILL mostly; SIGTERM (an AWX cancel) and SIGINT (Ctrl-C) make
    # the module stop cleanly, which must leave the same guarantees. (Drawn last, so the draws
    # above are those of earlier versions of the campaign for the same seed.)
    signals = [rng.choices(("KILL", "TERM", "INT"), (65, 25, 10))[0] for _ in kills]
    schedule = {"seed": seed, "k": k, "fleet": fleet, "suspend": suspend, "resume": resume,
                "kills": kills, "kill_u": kill_u, "gaps": gaps, "signals": signals,
                "family": "+".join(kills)}
    # Save schedules are drawn from a stream of their own, so that a schedule that stays an
    # in-memory one is the same as in earlier versions of the campaign for the same seed.
    save_rng = random.Random("%s:%s:save" % (seed, k))
    if save_rng.random() < SAVE_SHARE:
        make_save_schedule(save_rng, schedule)
    return schedule


# Save families (issue 12): domain_saved / domain_restored on the same fleets.
#   save          kill domain_saved, then the final domain_restored
#   save+restore  let the save finish or kill it, maybe a dom0 reboot, kill the first
#                 domain_restored, then the final one
#   save+reboot   the save finishes, dom0 reboot, kill the first domain_restored, final one
SAVE_SHARE = 0.45
SAVE_FAMILIES = (("save", 0.35), ("save+restore", 0.40), ("save+reboot", 0.25))
MEMORY_MB = (128, 256, 512, 1024, 2048)
RESTORE_TIMEOUT = 10.0
SAVE_FAULTS = (("enospc_after", 1.0), ("truncate_to", 1.0), ("stall_after", 1.0))


def _image_bytes(memory_mb):
    """About the simulated image's size: one 4 KiB page per MiB (xensim's pages_per_mib 1)."""
    return memory_mb * 4096


def make_save_schedule(rng, schedule):
    """Turns ``schedule`` (its fleet is kept) into a save schedule; see SAVE_FAMILIES."""
    families, weights = zip(*SAVE_FAMILIES)
    family = rng.choices(families, weights)[0]
    fleet = schedule["fleet"]
    n = len(fleet)
    memory = [rng.choice(MEMORY_MB) for _ in fleet]
    save = {
        "parallel": rng.choice([0, 1, 2, 4, 4]),
        # the module's own bound on one xl save (it kills xl past it): below, around and above
        # the simulated xl's own wait for the guest (harness.XL_SUSPEND_TIMEOUT_MS)
        "timeout": round(rng.uniform(0.8, 5.0), 2),
        "verify": rng.choice(["structure", "structure", "sha256"]),
        "continue_on_error": rng.random() < 0.7,
        "space_margin_mb": 0,
    }
    restore = {"parallel": rng.choice([1, 1, 2, 4]), "timeout": RESTORE_TIMEOUT,
               "continue_on_error": True}
    save_killed = family == "save" or (family == "save+restore" and rng.random() < 0.5)
    reboot = family == "save+reboot" or (family == "save+restore" and rng.random() < 0.4)
    kills = (["save"] if save_killed else []) + ([] if family == "save" else ["restore"])
    kill_u = [(rng.random() < 0.85, rng.random()) for _ in kills]
    gaps = [0.0 if rng.random() < 0.5 else round(rng.uniform(0, 0.6), 3) for _ in kills]
    signals = [rng.choices(("KILL", "TERM", "INT"), (70, 20, 10))[0] for _ in kills]
    fault = None
    if rng.random() < 0.25:
        kinds, kind_weights = zip(*SAVE_FAULTS)
        i = rng.randrange(n)
        kind = rng.choices(kinds, kind_weights)[0]
        fault = {"guest": i, "kind": kind,
                 "bytes": int(rng.uniform(0.02, 0.98) * _image_bytes(memory[i])),
                 # stall_after: the harness SIGKILLs the stalled xl itself after this long
                 # (unless the module's timeout did it first)
                 "kill_after": round(rng.uniform(0.0, 0.5), 3)}
    damage = None
    if not save_killed and family != "save" and rng.random() < 0.15:
        # an image damaged on purpose once saved (a lost tail): the guest must stay saved,
        # entry and image kept, and the final restore must fail naming it
        damage = {"guest": rng.randrange(n), "fraction": round(rng.uniform(0.1, 0.9), 3)}
    restore_fail = None
    if family != "save" and rng.random() < 0.1:
        restore_fail = rng.randrange(n)   # xl restore fails for it in the first domain_restored
    schedule.update({
        "family": family, "save": save, "restore_opts": restore, "memory_mb": memory,
        "kills": kills, "kill_u": kill_u, "gaps": gaps, "signals": signals, "reboot": reboot,
        "fault": fault, "damage": damage, "restore_fail": restore_fail})
    return schedule


def is_save(schedule):
    return "save" in schedule.get("family", "")


def save_guest_seconds(g, timeout, xl_timeout, memory_mb):
    """How long one xl save takes on this guest beyond xl's own cost: its way down (capped by
    xl's waits and the module's timeout) plus writing the image."""
    b, p = g["behaviour"], g["params"]
    q = g["quiesce_ms"] / 1000.0
    write = 0.01 * memory_mb / 1024.0
    if b == "hvm-nopv":
        down = 0.0
    elif b == "unresponsive":
        down = xl_timeout
    elif b == "ack-no-suspend":
        down = xl_timeout
    else:
        ack = 0.0
        if b in ("slow", "ack_if_still_suspend"):
            ack = p.get("ack_delay_ms", 0) / 1000.0
        if b in ("late_suspender", "late_suspender_evtchn"):
            q = p.get("suspend_after_ms", 1500) / 1000.0
        down = xl_timeout if ack >= xl_timeout else ack + min(q, xl_timeout)
    return min(down + write, timeout)


def save_work_seconds(schedule, xl_timeout, per_guest):
    """Estimated work time of an unkilled domain_saved run: guests admitted in order into
    ``parallel`` slots (makespan), each costing xl's own time (``per_guest``, measured) plus
    save_guest_seconds()."""
    opts = schedule["save"]
    fleet = schedule["fleet"]
    parallel = opts["parallel"] or len(fleet)
    slots = [0.0] * min(parallel, len(fleet))
    heapq.heapify(slots)
    end = 0.0
    for g, memory in zip(fleet, schedule["memory_mb"]):
        start = heapq.heappop(slots)
        finish = start + per_guest + save_guest_seconds(g, opts["timeout"], xl_timeout, memory)
        end = max(end, finish)
        heapq.heappush(slots, finish)
    return end


def restore_work_seconds(schedule, per_guest):
    n = len(schedule["fleet"])
    parallel = max(1, schedule["restore_opts"]["parallel"])
    return math.ceil(n / float(parallel)) * per_guest


def guest_seconds(g, opts):
    """How long a suspend run spends on this guest (its slot), capped by the run's timeouts."""
    b, p = g["behaviour"], g["params"]
    q = g["quiesce_ms"] / 1000.0
    ack_t, t = opts["ack_timeout"], opts["timeout"]
    if b == "hvm-nopv":
        return 0.0
    if b == "unresponsive":
        return ack_t
    if b == "ack-no-suspend":
        return t
    ack = 0.0
    if b in ("slow", "ack_if_still_suspend"):
        ack = p.get("ack_delay_ms", 0) / 1000.0
        if ack >= ack_t:
            return ack_t
    if b in ("late_suspender", "late_suspender_evtchn"):
        q = p.get("suspend_after_ms", 1500) / 1000.0
    return ack + min(q, t)


def suspend_work_seconds(schedule):
    """Estimated work time of an unkilled suspend run: guests admitted in order into
    ``parallel`` slots (makespan of that list schedule), plus admission coalescing."""
    opts = schedule["suspend"]
    slots = [0.0] * min(opts["parallel"], len(schedule["fleet"]))
    heapq.heapify(slots)
    end = 0.0
    for g in schedule["fleet"]:
        start = heapq.heappop(slots)
        finish = start + guest_seconds(g, opts)
        end = max(end, finish)
        heapq.heappush(slots, finish)
    waves = math.ceil(len(schedule["fleet"]) / float(opts["parallel"]))
    return end + 0.05 * waves


def longest_going_down(schedule):
    """Upper bound of how long a guest may take from a request to its suspend (acknowledge
    delay + quiesce), whatever the module's timeouts: what a resume has to wait for."""
    worst = 0.0
    for g in schedule["fleet"]:
        p = g["params"]
        q = g["quiesce_ms"] / 1000.0
        if g["behaviour"] in ("late_suspender", "late_suspender_evtchn"):
            q = p.get("suspend_after_ms", 1500) / 1000.0
        worst = max(worst, p.get("ack_delay_ms", 0) / 1000.0 + q)
    return worst


def settle_timeout(schedule):
    """The resume's settle_timeout: long enough for every guest that answered to get down."""
    return round(longest_going_down(schedule) + 0.5, 2)


def kill_plan(u, startup, work):
    """When to SIGKILL a run, from the schedule's (in_work, x): ("work", s) is s seconds after
    the module connected to the hypervisor (before that it has touched nothing), uniform over
    its typical work time; ("start", s) is s seconds after its start, during its start-up."""
    in_work, x = u
    if in_work:
        return ("work", round(x * work, 4))
    return ("start", round(x * startup, 4))


def format_kill(kill):
    return "%s%.4f" % (kill[0][0], kill[1])


def parse_kill(text):
    """"w0.05" (after connecting) or "s0.12" / "0.12" (after the start)."""
    text = text.strip()
    if text[:1] in ("w", "s"):
        return ("work" if text[0] == "w" else "start", float(text[1:]))
    return ("start", float(text))


def describe(schedule):
    lines = ["seed %s schedule %s: %skills %s (signals %s), gaps %s" % (
        schedule["seed"], schedule["k"],
        "family %s, " % schedule["family"] if is_save(schedule) else "",
        "+".join(schedule["kills"]) or "none",
        "+".join(schedule.get("signals", ())), schedule["gaps"])]
    if is_save(schedule):
        lines.append("  save options %s" % schedule["save"])
        lines.append("  restore options %s" % schedule["restore_opts"])
        lines.append("  reboot %s, fault %s, damage %s, restore_fail guest %s" % (
            schedule["reboot"], schedule["fault"], schedule["damage"],
            None if schedule["restore_fail"] is None else schedule["restore_fail"] + 1))
    else:
        lines.append("  suspend options %s" % schedule["suspend"])
        lines.append("  resume options %s" % schedule["resume"])
    for i, g in enumerate(schedule["fleet"], 1):
        lines.append("  guest %d: %s quiesce %dms %s%s" % (
            i, g["behaviour"], g["quiesce_ms"], g["params"] or "",
            " %d MiB" % schedule["memory_mb"][i - 1] if is_save(schedule) else ""))
    return "\n".join(lines)
