"""Save a guest on one flavour's Xen and restore the image on another's (e.g. 4.17 -> 4.20, the
upgrade a dom0 reboot for a new Xen makes), one bed at a time: boot FROM, create a guest, `xl
save` it, copy the image to the host, stop; boot TO, copy the image in, `xl restore` it, and
report what happened. Not part of `make test` (two extra boots); run it with
    python3 -m xenbed cross-version bookworm trixie
"""
import json
import subprocess
import tempfile
import time
from pathlib import Path

from .dom0 import Dom0
from .guests import create_guests
from .images import ensure_image
from .saverestore import facts, image_info, wait_for, xl_save

IMAGE = "/var/lib/xen-suspend/xl-save/cross.xlsave"
NAME = "cross-ev"


def run(source_flavour, target_flavour, log):
    report = {"from": source_flavour, "to": target_flavour}
    workdir = Path(tempfile.mkdtemp(prefix="xenbed-cross-"))
    local_image = workdir / "cross.xlsave"

    with Dom0(ensure_image(source_flavour), log=log) as vm:
        create_guests(vm, [(NAME, "evtchn")])
        wait_for(lambda: (facts(vm, NAME) or facts_none()).heartbeat >= 6, "the guest beats", timeout=120)
        before = facts(vm, NAME)
        vm.ssh("mkdir -p -m 0700 %s" % IMAGE.rsplit("/", 1)[0])
        save = xl_save(vm, NAME, IMAGE)
        report["source_xen"] = vm.ssh("xl info | awk '/^xen_version/{print $3}'").stdout.strip()
        report["save"] = save.figures()
        report["image"] = image_info(vm, IMAGE)
        report["before"] = before.__dict__
        with open(local_image, "wb") as out:
            subprocess.run(vm._ssh_base() + ["root@127.0.0.1", "cat %s" % IMAGE], stdout=out, check=True,
                           timeout=600)

    with Dom0(ensure_image(target_flavour), log=log) as vm:
        vm.ssh("mkdir -p -m 0700 %s" % IMAGE.rsplit("/", 1)[0])
        with open(local_image, "rb") as source:
            subprocess.run(vm._ssh_base() + ["root@127.0.0.1", "cat > %s" % IMAGE], stdin=source, check=True,
                           timeout=600)
        report["target_xen"] = vm.ssh("xl info | awk '/^xen_version/{print $3}'").stdout.strip()
        started = time.monotonic()
        restore = vm.ssh("xl restore %s" % IMAGE, check=False, timeout=300)
        report["restore"] = {"rc": restore.rc, "seconds": round(time.monotonic() - started, 2),
                             "xl_output": restore.stderr[-2500:]}
        if restore.rc == 0:
            try:
                after = wait_for(lambda: _beating_past(vm, before), "the restored guest beats on", timeout=120)
                report["after"] = after.__dict__
                report["same_memory"] = after.incarnation == before.incarnation
            except TimeoutError as exc:
                report["after"] = {"error": str(exc), "facts": (facts(vm, NAME) or facts_none()).__dict__}
            console = vm.ssh("tail -n 40 /var/log/xen/console/guest-%s.log" % NAME, check=False)
            report["guest_console_tail"] = console.stdout[-3000:]
        report["target_crash_lines"] = vm.crash_lines()
        report["xl_dmesg_tail"] = vm.ssh("xl dmesg | tail -n 30", check=False).stdout[-3000:]
    return report


class _NoFacts:
    heartbeat = -1
    incarnation = None


def facts_none():
    return _NoFacts()


def _beating_past(vm, before):
    now = facts(vm, NAME)
    return now if now and now.heartbeat > before.heartbeat else None


def main(source, target, log):
    report = run(source, target, log)
    print(json.dumps(report, indent=2, default=str))
    return 0 if report.get("restore", {}).get("rc") == 0 and report.get("same_memory") else 1
