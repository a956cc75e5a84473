"""xl's per-domain monitor: found from xl's own log, confirmed in /proc, frozen and continued
only when it is the very same process."""
import os
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.xen.suspend.plugins.module_utils._xl_monitor import XlMonitors


def fake_process(proc, pid, argv0="/usr/lib/xen-4.17/bin/xl", state="S", start_time=4242):
    base = proc / str(pid)
    base.mkdir(parents=True)
    rest = [state] + ["0"] * 18 + [str(start_time)] + ["0"] * 10
    (base / "stat").write_text("%d (xl (weird) name) %s\n" % (pid, " ".join(rest)))
    (base / "cmdline").write_bytes(argv0.encode() + b"\0create\0/etc/xen/g1.cfg\0")


def xl_log(logs, name, *lines):
    logs.mkdir(exist_ok=True)
    (logs / ("xl-%s.log" % name)).write_text("\n".join(lines) + "\n")


@pytest.fixture
def dirs(tmp_path):
    return tmp_path / "proc", tmp_path / "log"


def test_finds_the_monitor_of_the_current_domid(dirs):
    proc, logs = dirs
    xl_log(logs, "g1", "Waiting for domain g1 (domid 2) to die [pid 284]",
           "Action for shutdown reason code 1 is restart",
           "Waiting for domain g1 (domid 3) to die [pid 284]")
    fake_process(proc, 284)
    found = XlMonitors(str(logs), str(proc)).find(3, "g1")
    assert found == {"toolstack": "xl", "pid": 284, "start_time": 4242, "state": "running"}
    assert XlMonitors(str(logs), str(proc)).find(2, "g1")["pid"] == 284  # old domid line still there
    assert XlMonitors(str(logs), str(proc)).find(4, "g1") is None


@pytest.mark.parametrize("name", ["", "../etc/passwd", ".hidden", "a/b"])
def test_names_that_could_leave_the_log_directory_are_not_looked_up(dirs, name):
    proc, logs = dirs
    assert XlMonitors(str(logs), str(proc)).find(1, name) is None


def test_exited_monitor_or_foreign_process_is_no_monitor(dirs):
    proc, logs = dirs
    xl_log(logs, "g1", "Waiting for domain g1 (domid 1) to die [pid 300]")
    monitors = XlMonitors(str(logs), str(proc))
    assert monitors.find(1, "g1") is None  # no such process
    fake_process(proc, 300, argv0="/usr/bin/python3")
    assert monitors.find(1, "g1") is None  # the pid now belongs to something else


def test_no_xl_log_means_another_toolstack_and_nothing_is_done(dirs):
    proc, logs = dirs
    assert XlMonitors(str(logs), str(proc)).find(1, "g1") is None


def test_stopped_monitor_reports_frozen_and_a_recycled_pid_is_gone(dirs):
    proc, logs = dirs
    xl_log(logs, "g1", "Waiting for domain g1 (domid 1) to die [pid 301]")
    fake_process(proc, 301, state="T")
    monitors = XlMonitors(str(logs), str(proc))
    monitor = monitors.find(1, "g1")
    assert monitor["state"] == "frozen"
    assert monitors.state(monitor) == "frozen"
    assert monitors.state(dict(monitor, start_time=1)) == "gone"
    assert monitors.thaw(dict(monitor, start_time=1)) is False


def test_freeze_and_thaw_signal_the_real_process(tmp_path):
    # a stand-in monitor: a process whose argv[0] is "xl"
    child = subprocess.Popen(["xl", "-c", "import time; time.sleep(60)"], executable=sys.executable)
    try:
        logs = tmp_path / "log"
        xl_log(logs, "g1", "Waiting for domain g1 (domid 7) to die [pid %d]" % child.pid)
        monitors = XlMonitors(str(logs), "/proc")
        deadline = time.monotonic() + 10
        monitor = None
        while monitor is None and time.monotonic() < deadline:
            monitor = monitors.find(7, "g1")
        assert monitor is not None and monitor["state"] == "running"
        assert monitors.freeze(monitor) is True
        deadline = time.monotonic() + 5
        while monitors.state(monitor) != "frozen" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert monitors.state(monitor) == "frozen"
        assert monitors.thaw(monitor) is True
        deadline = time.monotonic() + 5
        while monitors.state(monitor) != "running" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert monitors.state(monitor) == "running"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()


@pytest.mark.parametrize("version,freezes", [((4, 14), True), ((4, 17), True), ((4, 19), True),
                                             ((4, 20), False), ((4, 22), False)])
def test_only_xl_that_gives_up_on_a_suspended_domain_is_frozen(dirs, version, freezes):
    proc, logs = dirs
    monitors = XlMonitors.for_xen(version)
    assert monitors.exits_on_suspend is freezes
    if not freezes:
        xl_log(logs, "g1", "Waiting for domain g1 (domid 1) to die [pid %d]" % os.getpid())
        # never signalled, whatever it is
        assert monitors.freeze({"pid": os.getpid(), "start_time": 0}) is False
