"""Interrupting a test-bed run at any point leaves no QEMU process behind, and a QEMU that exits
on its own (dom0 powered off) ends `xenbed up` instead of leaving it waiting on a zombie."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
QEMU_PID = re.compile(r"qemu pid (\d+)")


def qemu_running(pid):
    """True while the process exists and is not a zombie waiting to be reaped."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def start_and_interrupt(command, sig, env=None):
    """Start `command`, wait until it has launched QEMU and the boot is under way, send `sig`;
    return every QEMU pid it reported and its exit code."""
    proc = subprocess.Popen(command, cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, **(env or {})))
    pids, deadline = [], time.monotonic() + 120
    try:
        for line in proc.stderr:
            pids += [int(p) for p in QEMU_PID.findall(line)]
            if "booting with" in line:
                break
            assert time.monotonic() < deadline, "no QEMU started"
        assert pids, "the harness never reported a QEMU pid"
        time.sleep(3)  # mid-boot: Xen and dom0 are running, nothing is ready yet
        assert qemu_running(pids[-1])
        proc.send_signal(sig)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return pids, rc


def assert_all_gone(pids):
    deadline = time.monotonic() + 15
    while any(qemu_running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [p for p in pids if qemu_running(p)] == []


# Only the bookworm image is needed (built or found by the session's image fixture).
pytestmark = pytest.mark.parametrize("testbed_image", ["bookworm"], indirect=True)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_interrupted_launcher_leaves_no_qemu(testbed_image, sig):
    pids, rc = start_and_interrupt([sys.executable, "-m", "xenbed", "up", "bookworm"], sig)
    assert rc != 0
    assert_all_gone(pids)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_interrupted_pytest_session_leaves_no_qemu(testbed_image, sig):
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-s", "-q",
               "test_testbed_smoke.py::test_heartbeat_advances"]
    pids, rc = start_and_interrupt(command, sig, env={"XEN_SUSPEND_FLAVOURS": "bookworm"})
    assert rc != 0
    assert_all_gone(pids)


SSH_HINT = re.compile(r"ssh -i (\S+) -p (\d+) root@127\.0\.0\.1")


def test_launcher_notices_that_qemu_exited(testbed_image):
    """dom0 powers off (its init's poweroff), Xen powers the machine off, QEMU exits: `xenbed
    up` must end with an error, not keep sleeping beside a dead (zombie) QEMU."""
    proc = subprocess.Popen([sys.executable, "-m", "xenbed", "up", "bookworm"], cwd=HERE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    pids, hint, seen = [], None, []
    try:
        deadline = time.monotonic() + 300
        for line in proc.stderr:
            seen.append(line)
            pids += [int(p) for p in QEMU_PID.findall(line)]
            hint = SSH_HINT.search(line)
            if hint or time.monotonic() > deadline:
                break
        assert hint, "the bed never came up:\n" + "".join(seen[-20:])
        key, port = hint.group(1), hint.group(2)
        subprocess.run(["ssh", "-i", key, "-p", port, "-o", "StrictHostKeyChecking=no",
                        "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
                        "-o", "LogLevel=ERROR", "root@127.0.0.1", "poweroff"], timeout=60, check=False)
        rc = proc.wait(timeout=90)
        rest = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 1, rest
    assert "QEMU exited" in rest
    assert_all_gone(pids)
