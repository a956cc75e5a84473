"""Save guests on one flavour's Xen and restore the images on another's (e.g. 4.17 -> 4.20, the
upgrade a dom0 reboot for a new Xen makes), one bed at a time: boot FROM, create the guests, save
them, copy the images (and the module's ledger) to the host, stop; boot TO, copy them in, restore,
and report what happened. Two ways side by side, as in the reboot round trip:
  "xl"       plain `xl save -p` / `xl restore` of an event-channel guest: the platform's answer;
  "modules"  xen.suspend.domain_saved of a xenstore-protocol guest, the ledger and image carried
             over as a dom0 disk is across an upgrade-and-reboot, xen.suspend.domain_restored.
Not part of `make test` (two extra boots); run it with `make cross-version [FROM=.. TO=..]` or
    cd tests/xen && python3 -m xenbed cross-version bookworm trixie
"""
import json
import subprocess
import tempfile
import time
from pathlib import Path

from .ansible_runner import AnsibleRunner
from .dom0 import Dom0
from .guests import create_guests
from .images import ensure_image
from .module_calls import call_module
from .saverestore import facts, image_info, wait_for, xl_save

XL_DIR = "/var/lib/xen-suspend/xl-save"
XL_IMAGE = XL_DIR + "/cross.xlsave"
XL_NAME = "cross-ev"
MODULE_NAME = "cross-xs"
MODULE_DIR = "/var/lib/xen-suspend/save"
MODULE_LEDGER = "/var/lib/xen-suspend/cross-ledger.json"
GUEST_MIB = 96


def run(source_flavour, target_flavour, log):
    report = {"from": source_flavour, "to": target_flavour, "xl": {}, "modules": {}}
    workdir = Path(tempfile.mkdtemp(prefix="xenbed-cross-"))
    carried = {}  # dom0 path -> local copy

    with Dom0(ensure_image(source_flavour), log=log) as vm:
        report["source_xen"] = _xen_version(vm)
        create_guests(vm, [(XL_NAME, "evtchn"), (MODULE_NAME, "xenstore")], memory_mb=GUEST_MIB)
        for name in (XL_NAME, MODULE_NAME):
            wait_for(lambda: _heartbeat(vm, name) >= 6, "%s beats" % name, timeout=120)
        vm.ssh("mkdir -p -m 0700 %s" % XL_DIR)
        for group, name in (("xl", XL_NAME), ("modules", MODULE_NAME)):
            report[group]["before"] = facts(vm, name).__dict__

        save = xl_save(vm, XL_NAME, XL_IMAGE)
        report["xl"]["save"] = save.figures()
        report["xl"]["image"] = image_info(vm, XL_IMAGE)
        carried[XL_IMAGE] = workdir / "xl.xlsave"

        saved = call_module(AnsibleRunner(vm, workdir / "source"), "domain_saved", domains=[MODULE_NAME],
                            save_dir=MODULE_DIR, ledger=MODULE_LEDGER)
        report["modules"]["saved"] = _brief(saved)
        images = [entry["image"] for entry in saved.get("domains", []) if entry.get("image")]
        if saved.get("failed") or not images:
            report["modules"]["error"] = "domain_saved failed on %s: %s" % (source_flavour, saved.get("msg"))
        else:
            carried[images[0]] = workdir / "module.xlsave"
            carried[MODULE_LEDGER] = workdir / "ledger.json"
        for remote, local in carried.items():
            _copy_out(vm, remote, local)

    with Dom0(ensure_image(target_flavour), log=log) as vm:
        report["target_xen"] = _xen_version(vm)
        for remote, local in carried.items():
            _copy_in(vm, local, remote)

        started = time.monotonic()
        restore = vm.ssh("xl restore %s" % XL_IMAGE, check=False, timeout=300)
        report["xl"]["restore"] = {"rc": restore.rc, "seconds": round(time.monotonic() - started, 2),
                                   "xl_output": restore.stderr[-2500:]}
        if restore.rc == 0:
            report["xl"].update(_judge(vm, XL_NAME, report["xl"]["before"]))

        if "error" not in report["modules"]:
            restored = call_module(AnsibleRunner(vm, workdir / "target"), "domain_restored",
                                   domains=[MODULE_NAME], ledger=MODULE_LEDGER)
            report["modules"]["restored"] = _brief(restored)
            if restored.get("failed"):
                report["modules"]["error"] = "domain_restored failed on %s: %s" % (
                    target_flavour, restored.get("msg"))
            else:
                report["modules"].update(_judge(vm, MODULE_NAME, report["modules"]["before"]))
            left = vm.ssh("ls %s" % MODULE_DIR, check=False).stdout.split()
            report["modules"]["images_left"] = left

        report["guest_console_tails"] = {
            name: vm.ssh("tail -n 25 /var/log/xen/console/guest-%s.log" % name, check=False).stdout[-2000:]
            for name in (XL_NAME, MODULE_NAME)}
        report["target_crash_lines"] = vm.crash_lines()
        report["xl_dmesg_tail"] = vm.ssh("xl dmesg | tail -n 30", check=False).stdout[-3000:]
    return report


def _judge(vm, name, before):
    """Did the restored guest go on from where it was saved?"""
    try:
        after = wait_for(lambda: _beating_past(vm, name, before), "%s beats on" % name, timeout=120)
    except TimeoutError as exc:
        now = facts(vm, name)
        return {"after": {"error": str(exc), "facts": now.__dict__ if now else None}, "same_memory": False}
    return {"after": after.__dict__, "same_memory": after.incarnation == before["incarnation"],
            "same_uuid": after.uuid == before["uuid"]}


def _brief(result):
    """The parts of a module result worth a report."""
    keep = ("name", "after", "changed", "image", "image_size", "image_xen", "seconds", "mib_per_s",
            "error", "notes")
    return {"failed": bool(result.get("failed")), "msg": result.get("msg"),
            "domains": [{key: entry.get(key) for key in keep} for entry in result.get("domains", [])]}


def _xen_version(vm):
    return vm.ssh("xl info | awk '/^xen_version/{print $3}'").stdout.strip()


def _heartbeat(vm, name):
    now = facts(vm, name)
    return now.heartbeat if now else -1


def _beating_past(vm, name, before):
    now = facts(vm, name)
    return now if now and now.heartbeat > before["heartbeat"] else None


def _copy_out(vm, remote, local):
    with open(local, "wb") as out:
        subprocess.run(vm._ssh_base() + ["root@127.0.0.1", "cat %s" % remote], stdout=out, check=True,
                       timeout=600)


def _copy_in(vm, local, remote):
    directory = remote.rsplit("/", 1)[0]
    with open(local, "rb") as source:
        subprocess.run(vm._ssh_base() + ["root@127.0.0.1", "mkdir -p -m 0700 %s && umask 077 && cat > %s"
                                         % (directory, remote)], stdin=source, check=True, timeout=600)


def verdict(report):
    """Both ways brought their guest back with the same memory."""
    return all(report[group].get("same_memory") for group in ("xl", "modules"))


def main(source, target, log):
    report = run(source, target, log)
    print(json.dumps(report, indent=2, default=str))
    ok = verdict(report)
    log("%s (Xen %s) -> %s (Xen %s): plain xl %s, modules %s" % (
        source, report.get("source_xen"), target, report.get("target_xen"),
        "OK" if report["xl"].get("same_memory") else "FAILED",
        "OK" if report["modules"].get("same_memory") else "FAILED"))
    return 0 if ok else 1
