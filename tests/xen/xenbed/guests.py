"""Test guests inside a test-bed dom0: Linux PV domUs booted from the image's kernel and a
busybox initramfs whose agent keeps a heartbeat in ~/data/heartbeat (see tests/xen/guest)."""
import json
import time
from dataclasses import dataclass

# kind -> extra guest kernel arguments
GUEST_KINDS = {
    "xenstore": "",                 # upstream Linux: answers ~/control/shutdown itself
    "evtchn": "testbed.evtchn=1",   # also advertises ~/device/suspend/event-channel
}

CONFIG = """\
type = "pv"
name = "{name}"
kernel = "/srv/testbed/vmlinuz"
ramdisk = "/srv/testbed/guest-initrd.cpio.gz"
extra = "console=hvc0 quiet {extra}"
memory = {memory}
vcpus = 1
on_poweroff = "destroy"
on_reboot = "restart"
on_crash = "preserve"
"""


@dataclass
class Guest:
    name: str
    kind: str
    domid: int
    create_seconds: float
    ready_seconds: float

    @property
    def path(self):
        return "/local/domain/%d" % self.domid


def create_guests(dom0, specs, memory_mb=128, timeout=180):
    """Create guests [(name, kind), ...] with `xl create` and wait until each one's kernel
    answers xenstore (feature-suspend), its agent beats, and an evtchn guest has published
    its port."""
    guests = []
    for name, kind in specs:
        config = CONFIG.format(name=name, extra=GUEST_KINDS[kind], memory=memory_mb)
        started = time.monotonic()
        dom0.ssh("cat > /etc/xen/%s.cfg && xl create /etc/xen/%s.cfg" % (name, name),
                 input=config, timeout=timeout)
        created = time.monotonic() - started
        domid = int(dom0.ssh("xl domid %s" % name).stdout.strip())
        guests.append(Guest(name, kind, domid, created, 0.0))
    for guest in guests:
        started = time.monotonic()
        wait_for_store(dom0, guest, "control/feature-suspend", lambda v: v == "1", timeout)
        wait_for_store(dom0, guest, "data/heartbeat", lambda v: v.isdigit(), timeout)
        if guest.kind == "evtchn":
            wait_for_store(dom0, guest, "device/suspend/event-channel", lambda v: v.isdigit(), timeout)
        guest.ready_seconds = guest.create_seconds + time.monotonic() - started
    return guests


def store_read(dom0, path):
    """A xenstore value, or None when the node does not exist."""
    result = dom0.ssh("xenstore-read %s" % path, check=False, timeout=30)
    return result.stdout.rstrip("\n") if result.rc == 0 else None


def wait_for_store(dom0, guest, relpath, predicate, timeout):
    path = "%s/%s" % (guest.path, relpath)
    deadline = time.monotonic() + timeout
    while True:
        value = store_read(dom0, path)
        if value is not None and predicate(value):
            return value
        if time.monotonic() > deadline:
            console = dom0.ssh("tail -20 /var/log/xen/console/guest-%s.log" % guest.name, check=False)
            raise TimeoutError("guest %s: %s is %r after %d s\n--- guest console\n%s"
                               % (guest.name, path, value, timeout, console.stdout))
        time.sleep(0.3)


def heartbeat(dom0, guest):
    value = store_read(dom0, guest.path + "/data/heartbeat")
    return int(value) if value is not None and value.isdigit() else None


def domain_state(dom0, domid):
    """Domain flags of one domain as the hypervisor reports them (via xl list -l is too slow
    and version-dependent; this reads `xl list` state letters)."""
    out = dom0.ssh("xl list %d" % domid, check=False).stdout.splitlines()
    if len(out) < 2:
        return None
    return out[1].split()[4]
