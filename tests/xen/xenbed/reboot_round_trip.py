"""Save guests to dom0's disk, reboot dom0, restore them: one dom0 reboot per flavour, shared by
every guest that has to survive one (a reboot under TCG costs 30-45 s).

Two groups of guests ride the same reboot:
  "xl"      saved and restored with plain `xl save -p` / `xl destroy` / `xl restore`: the bed's
            own proof that a round trip across a real dom0 reboot works at all;
  "modules" saved with xen.suspend.domain_saved and restored with xen.suspend.domain_restored.
Each group's steps are recorded, and a group's failure is kept (not raised) so the other group
is still judged; the tests then assert on what was recorded.
"""
import traceback
from dataclasses import dataclass, field

from .ansible_runner import AnsibleRunner
from .guests import create_guests
from .module_calls import call_module
from .saverestore import beats_on_from, facts, image_info, wait_for, xl_restore, xl_save

XL_GUESTS = {"rt-xl-xs": "xenstore", "rt-xl-ev": "evtchn"}
MODULE_GUESTS = {"rt-mod-xs": "xenstore", "rt-mod-ev": "evtchn"}
XL_SAVE_DIR = "/var/lib/xen-suspend/xl-save"
MODULE_SAVE_DIR = "/var/lib/xen-suspend/save"
MODULE_LEDGER = "/var/lib/xen-suspend/reboot-round-trip.json"
MIN_BEATS = 6  # a counter this far along cannot be mistaken for a fresh boot's
# The memory of every guest the real-Xen save/restore tests write to disk: little, as every MiB
# costs about 0.1 s to save and again to restore under TCG, but enough for the domain builder
# (64 MiB fails: "segment kernel too large (0x3a00 > 0x4000 - 0x1000 pages)").
SAVE_GUEST_MIB = 96


@dataclass
class GroupOutcome:
    before: dict = field(default_factory=dict)      # name -> GuestFacts before the save
    saves: dict = field(default_factory=dict)       # name -> Transfer (xl) or per-domain result (modules)
    images: dict = field(default_factory=dict)      # name -> image path
    images_walked: dict = field(default_factory=dict)  # name -> xl_image.py's JSON, before the reboot
    after_reboot: dict = field(default_factory=dict)   # name -> image size seen after the reboot
    restores: dict = field(default_factory=dict)    # name -> Transfer (xl) or per-domain result
    first_after: dict = field(default_factory=dict)  # name -> GuestFacts at its first beat after the restore
    module_results: dict = field(default_factory=dict)  # "saved" / "restored" -> whole result
    error: str = None                               # the first step that failed, with its traceback


@dataclass
class RoundTrip:
    flavour: str
    xl: GroupOutcome
    modules: GroupOutcome
    reboot: object  # RebootTiming
    domains_after_reboot: list
    ansible_after: AnsibleRunner


def _failed(outcome, step):
    outcome.error = "%s failed:\n%s" % (step, traceback.format_exc())


def run(dom0, workdir, with_xl=True):
    """Run the whole round trip on a booted bed; returns a RoundTrip. ``with_xl``: also the
    plain-xl group (left out when no test of it runs: it costs minutes under TCG)."""
    xl, modules = GroupOutcome(), GroupOutcome()
    xl_guests = XL_GUESTS if with_xl else {}
    dom0.ssh("mkdir -p -m 0700 %s" % XL_SAVE_DIR)
    create_guests(dom0, list(xl_guests.items()) + list(MODULE_GUESTS.items()), memory_mb=SAVE_GUEST_MIB)
    for name in list(xl_guests) + list(MODULE_GUESTS):
        wait_for(lambda: _beats(dom0, name) >= MIN_BEATS, "%s has beaten %d times" % (name, MIN_BEATS))

    # -- save, before the reboot
    for name in xl_guests:
        xl.before[name] = facts(dom0, name)
        image = "%s/%s.xlsave" % (XL_SAVE_DIR, name)
        xl.saves[name] = xl_save(dom0, name, image)
        xl.images[name] = image
        xl.images_walked[name] = image_info(dom0, image)
        dom0.ssh("xl destroy %s" % name)

    ansible = AnsibleRunner(dom0, workdir / "before-reboot")
    try:
        for name in MODULE_GUESTS:
            modules.before[name] = facts(dom0, name)
        saved = call_module(ansible, "domain_saved", domains=sorted(MODULE_GUESTS),
                            save_dir=MODULE_SAVE_DIR, ledger=MODULE_LEDGER)
        modules.module_results["saved"] = saved
        if saved.get("failed"):
            modules.error = "domain_saved failed: %s" % saved.get("msg")
        for entry in saved.get("domains", []):
            modules.saves[entry["name"]] = entry
            if entry.get("image"):
                modules.images[entry["name"]] = entry["image"]
                modules.images_walked[entry["name"]] = image_info(dom0, entry["image"])
    except Exception:  # noqa: BLE001 - recorded for the module tests, the xl group goes on
        _failed(modules, "domain_saved")

    # -- the reboot
    reboot = dom0.reboot_dom0()
    listing = dom0.ssh("xl list").stdout.splitlines()[1:]
    domains_after_reboot = [line.split()[0] for line in listing]
    for group in (xl, modules):
        for name, image in group.images.items():
            size = dom0.ssh("stat -c %%s %s" % image, check=False)
            group.after_reboot[name] = int(size.stdout) if size.rc == 0 else None

    # -- restore, after the reboot (a new Ansible connection: the old one died with dom0)
    for name in xl_guests:
        xl.restores[name] = xl_restore(dom0, xl.images[name])
        xl.first_after[name] = beats_on_from(dom0, name, xl.before[name], timeout=120)
    ansible_after = AnsibleRunner(dom0, workdir / "after-reboot")
    if modules.error is None:
        try:
            restored = call_module(ansible_after, "domain_restored", domains=sorted(MODULE_GUESTS),
                                   ledger=MODULE_LEDGER)
            modules.module_results["restored"] = restored
            for entry in restored.get("domains", []):
                modules.restores[entry["name"]] = entry
        except Exception:  # noqa: BLE001
            _failed(modules, "domain_restored")
    return RoundTrip(dom0.image.flavour, xl, modules, reboot, domains_after_reboot, ansible_after)


def _beats(dom0, name):
    now = facts(dom0, name)
    return now.heartbeat if now else -1


def module_figures(trip):
    """The modules' own per-guest figures (seconds, MiB/s), for the timings summary."""
    def pick(entry):
        return {"s": entry.get("seconds"), "MiB_per_s": entry.get("mib_per_s"),
                "MiB": round((entry.get("image_size") or 0) / 2**20, 1)}
    figures = {}
    if trip.modules.saves:
        figures["module_save"] = {n: pick(e) for n, e in trip.modules.saves.items()}
    if trip.modules.restores:
        figures["module_restore"] = {n: pick(e) for n, e in trip.modules.restores.items()}
    return figures
