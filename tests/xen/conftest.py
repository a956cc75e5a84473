"""Fixtures for the real-Xen test bed: one booted dom0 per flavour (Xen 4.17 on bookworm, Xen
4.20 on trixie). Under pytest-xdist with --dist loadgroup (`make test` runs `-n 3`, `make
test-xen-save` `-n 2`) each flavour's tests form one xdist group, so each flavour's bed boots
once, in its own worker, and the two flavours run side by side, each bed with one dom0 vCPU
(bed_vcpus). Without xdist they run in turn, each bed with two.

Where the bed cannot run (no QEMU, not root and no cached image) the tests are skipped with a
loud summary, except under CI=true, where they must run and an unavailable bed is a failure.
"""
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from xenbed import reboot_round_trip as round_trip
from xenbed.dom0 import Dom0
from xenbed.guests import create_guests
from xenbed.images import FLAVOURS, ImageUnavailable, ensure_image
from xenbed.measurements import clear_figures, collected, note_unavailable, record

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REPORT = Path(os.environ.get("XEN_SUSPEND_TESTBED_REPORT",
                             Path(__file__).resolve().parents[2] / "build" / "testbed-timings.json"))
HERE = Path(__file__).resolve().parent


def pytest_sessionstart(session):
    if not hasattr(session.config, "workerinput"):  # the controller (or a run without xdist)
        clear_figures()


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config, items):
    """The xdist groups (for --dist loadgroup), made before any other implementation of this
    hook runs (a wrapper: xdist's own, which reads the groups, may otherwise come first): one
    per flavour, so its bed boots once in one worker, and one for every other test of the run
    (the simulator's, the units'), which then run one after another as without xdist."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "testbed_image" in params and HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.xdist_group("xenbed-%s" % params["testbed_image"]))
        else:
            item.add_marker(pytest.mark.xdist_group("simulated"))
    # The tests that reboot the dom0 (through reboot_round_trip) come last in their flavour:
    # every guest the other tests created dies with that reboot.
    items.sort(key=lambda item: "reboot_round_trip" in getattr(item, "fixturenames", ()))
    return (yield)


def selected_flavours():
    wanted = os.environ.get("XEN_SUSPEND_FLAVOURS", ",".join(FLAVOURS))
    return [f for f in wanted.split(",") if f]


def log(message):
    sys.stderr.write("\n[xenbed %s] %s\n" % (time.strftime("%H:%M:%S"), message))
    sys.stderr.flush()


def _unavailable(reason):
    if IN_CI:
        pytest.fail("the real Xen test bed must run under CI=true, but: " + reason, pytrace=False)
    note_unavailable(reason)
    pytest.skip("real Xen test bed unavailable: " + reason)


def image_for(flavour):
    """The flavour's image, built now if needed; records what building or finding it cost."""
    if shutil.which("qemu-system-x86_64") is None:
        _unavailable("qemu-system-x86_64 is not installed (as root: make deps)")
    try:
        image = ensure_image(flavour)
    except ImageUnavailable as exc:
        _unavailable(str(exc))
    if image.built_now:
        record(flavour, image_build_cold_s=round(image.seconds, 1),
               image_build_phases_s={k[len("build_seconds_"):]: int(v) for k, v in image.manifest.items()
                                     if k.startswith("build_seconds_")})
    warm = ensure_image(flavour)  # a cache hit now: what every later run pays
    record(flavour, image_ensure_warm_s=round(warm.seconds, 2),
           xen_hypervisor_package=image.manifest.get("xen_hypervisor_version"),
           dom0_kernel=image.manifest.get("linux_kernel"))
    return image


@pytest.fixture(scope="session", params=selected_flavours())
def testbed_image(request):
    return image_for(request.param)


def bed_vcpus():
    """dom0 vCPUs for this process's bed. Beds side by side (xdist workers, more than one
    flavour) get one each: two beds of two MTTCG vCPUs on a 2-core host spin on each other's
    descheduled vCPUs (measured: three times the CPU for the same tests, guests then miss their
    restart deadlines), while two one-vCPU beds ran the same tests in about half the time one
    two-vCPU bed needs per flavour. XEN_SUSPEND_SMP overrides; None: xenbed's default."""
    if os.environ.get("XEN_SUSPEND_SMP"):
        return int(os.environ["XEN_SUSPEND_SMP"])
    if os.environ.get("PYTEST_XDIST_WORKER") and len(selected_flavours()) > 1:
        return 1
    return None


@pytest.fixture(scope="session")
def dom0(testbed_image):
    vm = Dom0(testbed_image, log=log, smp=bed_vcpus())
    vm.boot()
    record(testbed_image.flavour, boot_to_ready_s=round(vm.boot_seconds, 1), accel=vm.accel)
    try:
        yield vm
    finally:
        vm.stop()


@pytest.fixture(scope="session")
def smoke_guests(dom0):
    """One guest per kind, kept for the flavour's whole session."""
    guests = create_guests(dom0, [("smoke-xs", "xenstore"), ("smoke-ev", "evtchn")])
    record(dom0.image.flavour, guest_create_s={g.name: round(g.create_seconds, 1) for g in guests},
           guest_ready_s={g.name: round(g.ready_seconds, 1) for g in guests})
    return {g.kind: g for g in guests}


@pytest.fixture(scope="session")
def reboot_round_trip(request, dom0, tmp_path_factory):
    """Per flavour, guests saved (with the collection's modules, and with plain xl when
    test_xl_save_restore_across_reboot.py runs: `make test-xen-save`), dom0
    rebooted once, the guests restored: see xenbed/reboot_round_trip.py. Shared by
    test_xl_save_restore_across_reboot.py and test_save_restore_on_real_xen.py."""
    with_xl = any(item.fspath.basename == "test_xl_save_restore_across_reboot.py"
                  for item in request.session.items)
    trip = round_trip.run(dom0, tmp_path_factory.mktemp("reboot-round-trip"), with_xl=with_xl)
    record(dom0.image.flavour, **trip.reboot.figures())
    record(dom0.image.flavour, xl_save={n: s.figures() for n, s in trip.xl.saves.items()},
           xl_restore={n: r.figures() for n, r in trip.xl.restores.items()})
    record(dom0.image.flavour, **round_trip.module_figures(trip))
    return trip


def pytest_terminal_summary(terminalreporter):
    timings, unavailable = collected()
    if timings:
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text(json.dumps(timings, indent=2, sort_keys=True) + "\n")
        terminalreporter.section("real Xen test bed: measured")
        for flavour, figures in sorted(timings.items()):
            terminalreporter.write_line("%s: %s" % (flavour, json.dumps(figures, sort_keys=True)))
        terminalreporter.write_line("(also written to %s)" % REPORT)
        _print_save_restore_summary(terminalreporter, timings)
    if unavailable:
        terminalreporter.section("REAL XEN TESTS DID NOT RUN", sep="!", red=True, bold=True)
        for reason in sorted(set(unavailable)):
            terminalreporter.write_line("  " + reason, red=True)
        terminalreporter.write_line(
            "  They need QEMU and, to build the images once, root: run `sudo make test` "
            "(or `make deps` as root, then `make test`).", red=True)


def _print_save_restore_summary(terminalreporter, timings):
    """The save/restore figures the issue asks for, per flavour, in words."""
    lines = []
    for flavour, figures in sorted(timings.items()):
        for key, who in (("save_restore_bench", "plain xl"),
                         ("module_save_restore_bench", "domain_saved/domain_restored")):
            bench = figures.get(key)
            if bench:
                lines.append(_bench_line(flavour, who, bench))
        if "reboot_round_trip_s" in figures:
            lines.append("%s: dom0 reboot -> SSH %.1f s, -> xenstored + xl %.1f s" % (
                flavour, figures["reboot_to_ssh_s"], figures["reboot_round_trip_s"]))
        for name, seconds in sorted(figures.get("guest_reboot_after_restore_s", {}).items()):
            lines.append("%s: %s rebooted itself after the restore: xl's monitor had it running "
                         "and beating again in %s s" % (flavour, name, seconds))
        for kind in ("xl_save", "xl_restore", "module_save", "module_restore"):
            for name, one in sorted(figures.get(kind, {}).items()):
                lines.append("%s: %s %s: %s s, %s MiB/s (%s MiB)" % (
                    flavour, kind, name, one.get("s"), one.get("MiB_per_s"), one.get("MiB")))
    if lines:
        terminalreporter.section("save / restore on real Xen")
        for line in lines:
            terminalreporter.write_line(line)


def _bench_line(flavour, who, bench):
    rounds = bench.get("per_round") or []
    spread = "; per round: save x%s, restore x%s" % (
        "/x".join("%.2f" % one["save_speedup"] for one in rounds),
        "/x".join("%.2f" % one["restore_speedup"] for one in rounds)) if rounds else ""
    return ("%s, %s: %d x %d MiB guests, medians of %d rounds: save all at once %.1f s vs one at a"
            " time (xendomains) %.1f s = x%.2f; %.0f MiB/s = %.2f of the disk's dd+fsync %.0f MiB/s"
            " (one at a time: %.2f); restore all at once %.1f s vs one at a time %.1f s = x%.2f" % (
                flavour, who, bench["guests"], bench["guest_MiB"], bench.get("rounds", 1),
                bench["save_parallel_s"], bench["save_serial_s"], bench["save_parallel_over_serial_speedup"],
                bench["save_parallel_MiB_per_s"], bench["save_parallel_over_disk_bandwidth"],
                bench["disk_dd_fsync_MiB_per_s"], bench["save_serial_over_disk_bandwidth"],
                bench["restore_parallel_s"], bench["restore_serial_s"],
                bench["restore_parallel_over_serial_speedup"])) + spread


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test that used a dom0 carries the serial log tail and the guest consoles, so a
    broken bed is told apart from a broken test without a rerun."""
    report = yield
    vm = item.funcargs.get("dom0") if hasattr(item, "funcargs") else None
    if report.failed and isinstance(vm, Dom0) and vm.proc is not None:
        report.sections.append(("test bed serial log", vm.serial_tail(80)))
        consoles = vm.ssh("tail -n 15 /var/log/xen/console/guest-*.log", check=False, timeout=30)
        report.sections.append(("guest consoles", consoles.stdout + consoles.stderr))
    return report
