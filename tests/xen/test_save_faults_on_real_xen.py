"""xen.suspend.domain_saved and xen.suspend.domain_restored on a real Xen dom0 (4.17 and 4.20):
the faults, driven by ansible-playbook over SSH as users drive them. Each is checked for what
must never happen (a guest lost, a partial image left, an image deleted before its guest runs,
a half-created domain left):
  - a paused guest is refused before anything is touched;
  - a guest that never answers: xl gives up after its own 60 s, the guest keeps running, xl's
    stub image is removed, no request stays pending;
  - a save directory too small for the image: the guest keeps running, no partial image;
  - `xl save` SIGKILLed mid-save: the guest ends running, no image is left;
  - a truncated image: the restore is refused, the image and the ledger entry are kept;
  - a restore while the guest already runs (cold-booted meanwhile): refused, nothing touched.
Their guests are destroyed when this module ends, before the round trip across a dom0 reboot
(test_save_restore_on_real_xen.py) starts its own.
"""
import json
import threading
import time
from pathlib import Path

import pytest

from xenbed.ansible_runner import AnsibleRunner
from xenbed.guests import create_guests, store_read
from xenbed.module_calls import call_module
from xenbed.reboot_round_trip import SAVE_GUEST_MIB
from xenbed.saverestore import beats_on_from, facts, ledger_entries, wait_for

HERE = Path(__file__).resolve().parent
XL_SAVE_KILLER = (HERE / "dom0" / "xl_save_killer.py").read_text()
GUEST_MIB = SAVE_GUEST_MIB
# The faults that must leave their guest running share one guest (each test checks it runs
# with the same memory afterwards); the two that consume their guest's image have their own.
LIVE = "sf-live"
FAULT_GUESTS = [LIVE, "sf-trunc", "sf-dup"]
STATE_DIR = "/var/lib/xen-suspend"


# -- helpers ----------------------------------------------------------------------------------

def files_in(dom0, directory):
    result = dom0.ssh("ls -A %s" % directory, check=False)
    return result.stdout.split() if result.rc == 0 else []


def per_domain(result, name):
    matches = [d for d in result.get("domains", []) if d.get("name") == name]
    assert len(matches) == 1, result
    return matches[0]


def assert_failure_names(result, name):
    assert result.get("failed"), result
    assert name in result.get("msg", ""), result.get("msg")


def assert_runs_on(dom0, name, before):
    """The same guest (same domid, same incarnation) runs and beats."""
    state = dom0.ssh("xl list %s" % name).stdout.splitlines()[1].split()[4]
    assert "p" not in state and "s" not in state, state
    after = beats_on_from(dom0, name, facts(dom0, name), timeout=30)
    assert (after.domid, after.incarnation) == (before.domid, before.incarnation)


def xl_names(dom0):
    return sorted(line.split()[0] for line in dom0.ssh("xl list").stdout.splitlines()[1:])


@pytest.fixture(scope="module")
def ansible(dom0, tmp_path_factory):
    return AnsibleRunner(dom0, tmp_path_factory.mktemp("ansible"))


@pytest.fixture(scope="module")
def fault_guests(dom0):
    made = create_guests(dom0, [(name, "xenstore") for name in FAULT_GUESTS], memory_mb=GUEST_MIB)
    yield {g.name: g for g in made}
    dom0.ssh("for g in %s; do xl destroy $g; done 2>/dev/null" % " ".join(FAULT_GUESTS), check=False)


def saved_image(dom0, ansible, name, save_dir, ledger):
    """Save ``name`` with domain_saved (it must succeed); (image path, its size)."""
    saved = call_module(ansible, "domain_saved", domains=[name], save_dir=save_dir, ledger=ledger)
    assert not saved.get("failed"), saved
    image = per_domain(saved, name)["image"]
    return image, int(dom0.ssh("stat -c %%s %s" % image).stdout)


def image_entries(dom0, ledger, uuid):
    """The ledger's saving/saved/restoring entries for ``uuid``."""
    return [e for e in ledger_entries(dom0, ledger, uuid)
            if e.get("state") in ("saving", "saved", "restoring")]


def fault_paths(name):
    return "%s/faults/%s" % (STATE_DIR, name), "%s/faults/%s.json" % (STATE_DIR, name)


# -- faults -----------------------------------------------------------------------------------

def test_paused_guest_is_refused_before_anything_is_touched(dom0, fault_guests, ansible):
    name = LIVE
    save_dir, ledger = fault_paths("sf-paused")
    before = facts(dom0, name)
    dom0.ssh("xl pause %s" % name)
    try:
        result = call_module(ansible, "domain_saved", domains=[name], save_dir=save_dir, ledger=ledger)
        request = store_read(dom0, before.path + "/control/shutdown")
    finally:
        dom0.ssh("xl unpause %s" % name)
    assert_failure_names(result, name)
    assert "paused" in result["msg"], result["msg"]
    assert request == "", "a suspend request was written to a paused guest"
    assert files_in(dom0, save_dir) == []
    assert ledger_entries(dom0, ledger, before.uuid) == []
    # once unpaused it neither suspends on a stale request nor stops
    time.sleep(2)
    assert_runs_on(dom0, name, before)


def test_a_guest_that_never_answers_is_left_running_after_xls_own_timeout(dom0, fault_guests, ansible):
    """xl waits 60 s for a guest to take its suspend request, then takes the request back and
    fails: the guest must end as it was, with xl's stub image gone, no request left in
    ~/control/shutdown and no entry left in the ledger."""
    name = LIVE
    save_dir, ledger = fault_paths("sf-deaf")
    before = facts(dom0, name)
    shutdown_node = before.path + "/control/shutdown"
    # the guest cannot read its own ~/control/shutdown: it never sees xl's request
    dom0.ssh("xenstore-chmod %s n0" % shutdown_node)
    started = time.monotonic()
    try:
        result = call_module(ansible, "domain_saved", domains=[name], save_dir=save_dir, ledger=ledger)
        request = store_read(dom0, shutdown_node)
    finally:
        dom0.ssh("xenstore-chmod %s n%d" % (shutdown_node, before.domid))
    took = time.monotonic() - started
    assert_failure_names(result, name)
    assert took >= 55, "xl gave up after %.0f s, before its own 60 s" % took
    assert request == "", "a suspend request stayed in %s: %r" % (shutdown_node, request)
    assert files_in(dom0, save_dir) == [], "xl's stub image was left"
    assert image_entries(dom0, ledger, before.uuid) == [], "the entry was not settled"
    # with its access back, it neither acts on a stale request nor stops
    time.sleep(3)
    assert_runs_on(dom0, name, before)


def test_full_save_disk_leaves_the_guest_running_and_no_partial_image(dom0, fault_guests, ansible):
    name = LIVE
    _, ledger = fault_paths("sf-full")
    before = facts(dom0, name)
    small = "%s/small-save" % STATE_DIR
    # room for the guest's memory (what a pre-flight may count) but not for the whole image,
    # which is the memory plus ~0.2 %: xl runs out of space at the very end of the save
    dom0.ssh("mkdir -p %s && mount -t tmpfs -o size=%dk,mode=0700 tmpfs %s"
             % (small, GUEST_MIB * 1024 + 128, small))
    try:
        result = call_module(ansible, "domain_saved", domains=[name], save_dir=small, ledger=ledger,
                             space_margin_mb=0)
        left = files_in(dom0, small)
    finally:
        dom0.ssh("umount %s" % small, check=False)
    assert_failure_names(result, name)
    assert left == [], "a partial image was left: %s" % left
    assert_runs_on(dom0, name, before)
    assert image_entries(dom0, ledger, before.uuid) == [], "the entry was not settled"


# Last of the tests on the shared guest: if xl is not caught mid-save, the save completes and
# the guest is gone (saved), which would fail every later test on it for the wrong reason.
def test_sigkill_of_xl_save_mid_save_leaves_the_guest_running(dom0, fault_guests, ansible):
    name = LIVE
    save_dir, ledger = fault_paths("sf-kill")
    before = facts(dom0, name)
    killer, ready = {}, "/run/xl-save-killer.ready"
    dom0.ssh("rm -f %s" % ready)

    def kill_xl_save():
        killer["result"] = dom0.python(XL_SAVE_KILLER, before.uuid, before.domid, 4 * 2**20, 120, ready,
                                       timeout=150, check=False)
    thread = threading.Thread(target=kill_xl_save)
    thread.start()
    try:
        # the killer watches before the save starts: the whole save takes only seconds
        wait_for(lambda: dom0.ssh("test -e %s" % ready, check=False).rc == 0, "the xl save killer watches",
                 timeout=60, interval=0.5)
        result = call_module(ansible, "domain_saved", domains=[name], save_dir=save_dir, ledger=ledger)
    finally:
        thread.join(timeout=160)
    killed = json.loads(killer["result"].stdout or "{}")
    assert killed.get("killed_pid"), "xl save was never caught mid-save: %s %s\nthe module said: %s" % (
        killer["result"].stdout, killer["result"].stderr,
        json.dumps({k: result.get(k) for k in ("failed", "msg", "domains")}, default=str)[:3000])
    assert_failure_names(result, name)
    entry = per_domain(result, name)
    assert entry["error"] and entry["error"].get("phase"), entry
    assert_runs_on(dom0, name, before)
    assert files_in(dom0, save_dir) == [], "a partial image was left"
    assert image_entries(dom0, ledger, before.uuid) == [], "the entry was not settled"
    stray = dom0.ssh("pgrep -af 'xl save|libxl-save-helper'", check=False).stdout
    assert before.uuid not in stray and (" %d " % before.domid) not in stray, stray


def test_truncated_image_is_refused_and_kept(dom0, fault_guests, ansible):
    name = "sf-trunc"
    save_dir, ledger = fault_paths(name)
    before = facts(dom0, name)
    image, size = saved_image(dom0, ansible, name, save_dir, ledger)
    dom0.ssh("truncate -s %d %s" % (size // 2, image))
    domains_before = xl_names(dom0)

    restored = call_module(ansible, "domain_restored", domains=[name], ledger=ledger)
    assert_failure_names(restored, name)
    assert int(dom0.ssh("stat -c %%s %s" % image).stdout) == size // 2, "the image was not kept"
    assert xl_names(dom0) == domains_before, "a half-created domain was left"
    states = [e.get("state") for e in ledger_entries(dom0, ledger, before.uuid)]
    assert "saved" in states, "the ledger entry was not kept: %s" % states


def test_restore_while_the_guest_already_runs_is_refused(dom0, fault_guests, ansible):
    name = "sf-dup"
    save_dir, ledger = fault_paths(name)
    before = facts(dom0, name)
    image, size = saved_image(dom0, ansible, name, save_dir, ledger)
    # someone cold-boots the guest meanwhile: its disks move on, the image is now stale
    dom0.ssh("xl create /etc/xen/%s.cfg" % name)
    running = wait_for(lambda: _beating(dom0, name), "the cold-booted %s beats" % name)
    assert running.incarnation != before.incarnation

    restored = call_module(ansible, "domain_restored", domains=[name], ledger=ledger)
    assert_failure_names(restored, name)
    assert_runs_on(dom0, name, running)
    assert int(dom0.ssh("stat -c %%s %s" % image).stdout) == size, "the image was not kept"
    assert "saved" in [e.get("state") for e in ledger_entries(dom0, ledger, before.uuid)]


def _beating(dom0, name):
    now = facts(dom0, name)
    return now if now and now.heartbeat > 0 else None
