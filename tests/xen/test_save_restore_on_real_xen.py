"""xen.suspend.domain_saved and xen.suspend.domain_restored on a real Xen dom0 (4.17 and 4.20),
driven by ansible-playbook over SSH as users drive them: the round trip across a real dom0
reboot (saved before it, restored after it, in the shared session fixture reboot_round_trip):
the memory came back (heartbeat continues, same incarnation), name and UUID kept, a new domain
under an xl monitor that handles a guest reboot, the image deleted only once the guest runs.
The faults are in test_save_faults_on_real_xen.py.
"""
import pytest

from xenbed.measurements import record
from xenbed.reboot_round_trip import MODULE_GUESTS, MODULE_LEDGER, MODULE_SAVE_DIR, SAVE_GUEST_MIB
from xenbed.saverestore import (beats_on_from, facts, ledger_entries, monitor_pid,
                                reboot_guest_and_wait, wait_for)

GUEST_MIB = SAVE_GUEST_MIB


# -- the round trip across a dom0 reboot ------------------------------------------------------

NAMES = sorted(MODULE_GUESTS)


@pytest.fixture(scope="module")
def modules(reboot_round_trip):
    outcome = reboot_round_trip.modules
    if outcome.error:
        pytest.fail("the modules' round trip did not complete: %s" % outcome.error, pytrace=False)
    return outcome


@pytest.fixture(scope="module")
def restored(dom0, modules):
    return {name: beats_on_from(dom0, name, modules.before[name]) for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_domain_saved_saved_a_complete_image_and_destroyed_the_guest(dom0, modules, name):
    saved = modules.module_results["saved"]
    assert saved["changed"] is True and sorted(saved["saved"]) == NAMES, saved
    entry = modules.saves[name]
    assert entry["error"] is None and entry["after"] == "saved", entry
    assert entry["uuid"] == modules.before[name].uuid
    walked = modules.images_walked[name]
    assert walked["complete"] and walked["trailing_bytes"] == 0, walked
    assert (walked["name"], walked["uuid"]) == (name, modules.before[name].uuid)
    assert walked["size"] == entry["image_size"]
    assert GUEST_MIB * 2**20 <= walked["size"] <= GUEST_MIB * 2**20 * 1.02
    assert modules.after_reboot[name] == walked["size"], "the image did not survive the reboot intact"
    assert entry["image"].startswith(MODULE_SAVE_DIR + "/")


@pytest.mark.parametrize("name", NAMES)
def test_domain_restored_brought_the_same_memory_back(dom0, modules, restored, name):
    result = modules.module_results["restored"]
    assert not result.get("failed") and sorted(result["restored"]) == NAMES, result
    entry, before, after = modules.restores[name], modules.before[name], restored[name]
    assert entry["error"] is None and entry["after"] == "running", entry
    assert entry["domid"] == after.domid and entry["old_domid"] == before.domid
    assert after.uuid == before.uuid == entry["uuid"]
    assert after.incarnation == before.incarnation, "a new incarnation: the guest booted afresh"
    assert after.heartbeat > before.heartbeat
    # the image goes only once the guest runs again, and so does the ledger's saved entry
    assert dom0.ssh("test -e %s" % entry["image"], check=False).rc != 0, "the image was kept"
    assert [e for e in ledger_entries(dom0, MODULE_LEDGER, before.uuid)
            if e.get("state") in ("saving", "saved", "restoring")] == []


def test_restored_evtchn_guest_advertises_its_port_again(dom0, modules, restored):
    name = "rt-mod-ev"
    before = modules.before[name]
    now = wait_for(lambda: _readvertised(dom0, name, before), "%s advertised a new port" % name)
    assert now.evtchn_port.isdigit()


def _readvertised(dom0, name, before):
    now = facts(dom0, name)
    return now if now and now.evtchn_advertised == before.evtchn_advertised + 1 and now.evtchn_port else None


# One guest reboot per flavour: under TCG a guest's reboot takes 0.5-2 min, and xl's monitor
# handles both kinds alike (the xenstore one is the one 4.17 once failed to restart).
@pytest.mark.parametrize("name", ["rt-mod-xs"])
def test_xl_monitors_the_module_restored_guest_and_handles_its_reboot(dom0, restored, name):
    now = facts(dom0, name)
    assert monitor_pid(dom0, name, now.domid) is not None, \
        dom0.ssh("tail -5 /var/log/xen/xl-%s.log" % name, check=False).stdout
    rebooted, seconds = reboot_guest_and_wait(dom0, name, now.domid)
    record(dom0.image.flavour, guest_reboot_after_restore_s={name: seconds})
    assert rebooted.uuid == now.uuid and rebooted.incarnation != now.incarnation
