"""Save and restore test guests with plain `xl` (no collection code), and read back what a
round trip must preserve: the guest's memory (its agent's heartbeat continues and its
incarnation token is unchanged), its name and UUID; and what it must change: the domid."""
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from .guests import store_read

DOM0_SCRIPTS = Path(__file__).resolve().parent.parent / "dom0"
XL_IMAGE = (DOM0_SCRIPTS / "xl_image.py").read_text()
MIB = 1024 * 1024


@dataclass
class GuestFacts:
    """What identifies a test guest and how far its memory has got."""
    name: str
    domid: int
    uuid: str
    heartbeat: int
    incarnation: str
    evtchn_port: str  # "" when the guest does not speak the event-channel protocol
    evtchn_advertised: int

    @property
    def path(self):
        return "/local/domain/%d" % self.domid


@dataclass
class Transfer:
    """One `xl save` or `xl restore`: wall time, image size and the resulting throughput."""
    seconds: float
    size: int
    extra: dict = field(default_factory=dict)

    @property
    def mib_per_s(self):
        return self.size / MIB / self.seconds if self.seconds > 0 else None

    def figures(self):
        return {"s": round(self.seconds, 2), "MiB": round(self.size / MIB, 1),
                "MiB_per_s": round(self.mib_per_s, 1)}


def domid_of(dom0, name):
    result = dom0.ssh("xl domid %s" % name, check=False)
    return int(result.stdout) if result.rc == 0 else None


def facts(dom0, name):
    """The guest's identity and counters, read in one round trip (None when it does not run)."""
    script = r"""
set -e
domid=$(xl domid "$1")
home=/local/domain/$domid
uuid=$(xenstore-read /local/domain/$domid/vm | sed 's|^/vm/||')
r() { xenstore-read "$home/$1" 2>/dev/null || true; }
printf '%s\n%s\n%s\n%s\n%s\n%s\n' "$domid" "$uuid" "$(r data/heartbeat)" "$(r data/incarnation)" \
  "$(r device/suspend/event-channel)" "$(r data/evtchn-advertised)"
"""
    result = dom0.ssh("sh -s %s" % name, input=script, check=False, timeout=30)
    if result.rc != 0:
        return None
    domid, uuid, beat, incarnation, port, advertised = (result.stdout.split("\n") + [""] * 6)[:6]
    return GuestFacts(name, int(domid), uuid, int(beat) if beat.isdigit() else -1, incarnation, port,
                      int(advertised) if advertised.isdigit() else 0)


def wait_for(predicate, what, timeout=120, interval=0.3):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("timed out after %d s waiting until %s" % (timeout, what))
        time.sleep(interval)


def timed(dom0, command, timeout=180):
    """Run `command` in dom0 and time it there (no SSH round trip in the figure); returns
    (CommandResult, seconds). Fails like dom0.ssh(check=True) when the command fails."""
    wrapped = ('s=$(date +%%s%%N); ( %s ); rc=$?; e=$(date +%%s%%N); '
               'echo "elapsed_ns=$((e - s))"; exit $rc' % command)
    result = dom0.ssh(wrapped, timeout=timeout)
    elapsed = re.findall(r"^elapsed_ns=(\d+)$", result.stdout, re.M)
    return result, int(elapsed[-1]) / 1e9


def xl_save(dom0, name, image, timeout=180):
    """`xl save -p NAME IMAGE` (the guest is left paused, suspended-and-cancelled, on success),
    then fsync the image: the figure is what a durable save costs."""
    _, seconds = timed(dom0, "xl save -p %s %s && sync %s" % (name, image, image), timeout)
    size = int(dom0.ssh("stat -c %%s %s" % image).stdout)
    return Transfer(seconds, size)


def xl_restore(dom0, image, timeout=180):
    """`xl restore IMAGE` (unpaused, with xl's monitor daemonised as after `xl create`)."""
    result, seconds = timed(dom0, "xl restore %s" % image, timeout)
    size = int(dom0.ssh("stat -c %%s %s" % image).stdout)
    return Transfer(seconds, size, {"xl_output": result.stderr[-500:]})


def image_info(dom0, image):
    """The image walked record by record in dom0 (tests/xen/dom0/xl_image.py)."""
    return json.loads(dom0.python(XL_IMAGE, image, timeout=120).stdout)


def monitor_pid(dom0, name, domid):
    """The pid of the running xl process that monitors domain `domid` named `name`, from xl's
    own log line "Waiting for domain NAME (domid N) to die [pid P]", or None."""
    log = dom0.ssh("cat /var/log/xen/xl-%s.log" % name, check=False).stdout
    pids = re.findall(r"Waiting for domain %s \(domid %d\) to die \[pid (\d+)\]" % (re.escape(name), domid), log)
    if not pids:
        return None
    alive = dom0.ssh("grep -q xl /proc/%s/cmdline && ! grep -q '^State:.*[ZT]' /proc/%s/status"
                     % (pids[-1], pids[-1]), check=False)
    return int(pids[-1]) if alive.rc == 0 else None


def beats_on_from(dom0, name, before, timeout=120):
    """Wait until the restored guest beats again; return its facts once the heartbeat is past
    `before`'s (same incarnation: it is the same memory, not a new boot)."""
    def advanced():
        now = facts(dom0, name)
        return now if now and now.incarnation and now.heartbeat > before.heartbeat else None
    return wait_for(advanced, "%s beats past %d" % (name, before.heartbeat), timeout)


def reboot_guest_and_wait(dom0, name, domid, timeout=300, interval=3):
    """Make the guest's kernel reboot itself (sysrq b), and wait until xl's monitor has started
    it again under its name (new domid) and its agent beats. Returns (the new facts, seconds).

    Under TCG a restored guest's reboot is slow, and slower the busier the host: xl builds the
    new domain in a dom0 of one virtual CPU (decompressing the guest's kernel there) and the
    guest boots again. Seen: 34-94 s with two beds side by side, over 120 s once in a full
    `make test` (the simulator's tests beside them). So the deadline is generous and the polling
    sparse: every poll is an SSH session that costs the same dom0 CPU."""
    dom0.ssh("xenstore-write /local/domain/%d/control/sysrq b" % domid)
    started = time.monotonic()

    def restarted():
        now = facts(dom0, name)
        return now if now and now.domid != domid and now.heartbeat > 0 else None
    try:
        now = wait_for(restarted, "%s restarted after its reboot and beats" % name, timeout, interval=interval)
    except TimeoutError as exc:
        # what a broken restart leaves to look at: the domains, every xl process with its
        # state (a stopped monitor shows T) and where each of its threads waits in the kernel,
        # the monitor's own log and the hypervisor's
        seen = dom0.ssh(
            "xl list; ps -eLo pid,tid,stat,wchan:32,args | grep '[x]l '; "
            "tail -n 20 /var/log/xen/xl-%s.log; xl dmesg | tail -n 20; cat /proc/loadavg"
            % name, check=False, timeout=60)
        raise TimeoutError("%s\n%s" % (exc, seen.stdout + seen.stderr)) from None
    return now, round(time.monotonic() - started, 1)


def disk_write_bandwidth(dom0, directory, mib, timeout=600):
    """dom0's sequential write bandwidth to `directory` (MiB/s): dd of `mib` MiB with
    conv=fsync, so the figure includes reaching the disk, as a durable save does."""
    target = "%s/dd-bandwidth.tmp" % directory
    _, seconds = timed(dom0, "dd if=/dev/zero of=%s bs=1M count=%d conv=fsync status=none"
                       % (target, mib), timeout)
    dom0.ssh("rm -f %s" % target)
    return mib / seconds, seconds


def store_value(dom0, domid, relpath):
    return store_read(dom0, "/local/domain/%d/%s" % (domid, relpath))


def ledger_entries(dom0, ledger, uuid):
    """Every entry (a dict with this uuid) anywhere in the ledger file; [] when there is none
    or no ledger at all."""
    text = dom0.ssh("cat %s" % ledger, check=False).stdout
    if not text.strip():
        return []
    found = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("uuid") == uuid:
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(json.loads(text))
    return found
