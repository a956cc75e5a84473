"""After our suspend and resume, the guest's own lifecycle is still handled: xl's per-domain
monitor (started by `xl create`) must still apply on_reboot / on_poweroff. The guest's kernel
initiates the reboot and the poweroff itself (sysrq b / o through ~/control/sysrq)."""
import json
import re
import time
from pathlib import Path

import pytest

from xenbed.ansible_runner import AnsibleRunner
from xenbed.guests import create_guests, store_read
from xenbed.module_calls import call_module

RAW_ROUNDTRIP = (Path(__file__).parent / "dom0" / "raw_suspend_roundtrip.py").read_text()
LEDGER = "/var/lib/xen-suspend/ledger.json"


def xl_exits_on_suspend(dom0):
    """What we observed: xl 4.17's monitor exits on a suspend; from 4.20 ("xl: Keep monitoring
    suspended domain") it keeps waiting."""
    return {"4.17": True, "4.20": False}[dom0.image.xen_minor]


@pytest.fixture(scope="module")
def lifecycle_guests(dom0):
    names = ["lc-raw", "lc-reboot", "lc-off"]
    made = create_guests(dom0, [(name, "xenstore") for name in names])
    yield {g.name: g for g in made}
    dom0.ssh("for g in %s; do xl destroy $g; done" % " ".join(names), check=False)


@pytest.fixture(scope="module")
def ansible(dom0, tmp_path_factory):
    return AnsibleRunner(dom0, tmp_path_factory.mktemp("ansible"))


def monitor_pid(dom0, name):
    """The pid of the xl process monitoring `name`, or None (from xl's log, as an operator would)."""
    log = dom0.ssh("cat /var/log/xen/xl-%s.log" % name, check=False).stdout
    pids = re.findall(r"to die \[pid (\d+)\]", log)
    if not pids:
        return None
    alive = dom0.ssh("test -d /proc/%s && grep -q xl /proc/%s/cmdline" % (pids[-1], pids[-1]), check=False)
    return int(pids[-1]) if alive.rc == 0 else None


def domid_of(dom0, name):
    result = dom0.ssh("xl domid %s" % name, check=False)
    return int(result.stdout) if result.rc == 0 else None


def xl_state(dom0, name):
    out = dom0.ssh("xl list %s" % name, check=False).stdout.splitlines()
    return out[1].split()[4] if len(out) > 1 else None


def sysrq(dom0, guest, key):
    dom0.ssh("xenstore-write %s/control/sysrq %s" % (guest.path, key))


def wait_until(predicate, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting until " + what
        time.sleep(0.5)


def info_of(ansible, name):
    result = call_module(ansible, "domain_info", domains=[name], ledger=LEDGER)
    assert not result.get("failed"), result
    return [d for d in result["domains"] if d["name"] == name][0]


def test_what_xl_alone_does_after_a_suspend_and_resume(dom0, lifecycle_guests):
    """Without the collection: a raw suspend + resume, then a guest reboot. On Xen 4.17 xl's
    monitor exits on the suspend and the rebooting guest stays a dead shut-down domain (the
    hole); on Xen 4.20 xl keeps waiting and restarts it."""
    guest = lifecycle_guests["lc-raw"]
    pid = monitor_pid(dom0, "lc-raw")
    assert pid is not None
    json.loads(dom0.python(RAW_ROUNDTRIP, guest.domid).stdout)
    log = lambda: dom0.ssh("cat /var/log/xen/xl-lc-raw.log").stdout  # noqa: E731
    wait_until(lambda: "Domain has suspended" in log(), "xl noticed the suspend", timeout=20)
    sysrq(dom0, guest, "b")
    if xl_exits_on_suspend(dom0):
        wait_until(lambda: monitor_pid(dom0, "lc-raw") is None, "xl's monitor exited", timeout=20)
        wait_until(lambda: (xl_state(dom0, "lc-raw") or "---")[3] == "s", "the guest shut down to reboot")
        time.sleep(5)
        assert domid_of(dom0, "lc-raw") == guest.domid, "something restarted it after all"
        assert xl_state(dom0, "lc-raw")[3] == "s"
    else:
        assert "Continue waiting for domain %d" % guest.domid in log()
        wait_until(lambda: domid_of(dom0, "lc-raw") not in (None, guest.domid), "xl restarted it")
        assert monitor_pid(dom0, "lc-raw") == pid


def test_after_our_resume_a_guest_reboot_brings_it_back(dom0, lifecycle_guests, ansible):
    guest = lifecycle_guests["lc-reboot"]
    before = info_of(ansible, "lc-reboot")["lifecycle_monitor"]
    assert before and before["toolstack"] == "xl" and before["state"] == "running", before

    suspended = call_module(ansible, "domain_suspended", domains=["lc-reboot"], ledger=LEDGER)
    assert not suspended.get("failed"), suspended
    # frozen only where xl would otherwise give up on the suspended domain
    expected = "frozen" if xl_exits_on_suspend(dom0) else "running"
    assert info_of(ansible, "lc-reboot")["lifecycle_monitor"]["state"] == expected
    resumed = call_module(ansible, "domain_resumed", domains=["lc-reboot"], ledger=LEDGER)
    assert not resumed.get("failed"), resumed

    after = info_of(ansible, "lc-reboot")["lifecycle_monitor"]
    assert after["pid"] == before["pid"] and after["state"] == "running", after
    sysrq(dom0, guest, "b")
    wait_until(lambda: domid_of(dom0, "lc-reboot") not in (None, guest.domid), "restarted under its name")
    wait_until(lambda: (xl_state(dom0, "lc-reboot") or "---s")[3] != "s", "the restarted guest runs")
    new_home = "/local/domain/%d" % domid_of(dom0, "lc-reboot")
    wait_until(lambda: (store_read(dom0, new_home + "/data/heartbeat") or "").isdigit(),
               "the restarted guest beats")


def test_after_our_resume_a_guest_poweroff_destroys_it(dom0, lifecycle_guests, ansible):
    guest = lifecycle_guests["lc-off"]
    assert info_of(ansible, "lc-off")["lifecycle_monitor"]["state"] == "running"
    assert not call_module(ansible, "domain_suspended", domains=["lc-off"], ledger=LEDGER).get("failed")
    assert not call_module(ansible, "domain_resumed", domains=["lc-off"], ledger=LEDGER).get("failed")
    assert info_of(ansible, "lc-off")["lifecycle_monitor"]["state"] == "running"
    sysrq(dom0, guest, "o")
    wait_until(lambda: domid_of(dom0, "lc-off") is None, "the powered-off guest is destroyed")
