# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Running xl: found on PATH only, stderr captured and summarised, the whole process group
killed on timeout, restore detached (systemd-run scope or a new session)."""

import os
import signal
import stat
import time

import pytest

from ansible_collections.xen.suspend.plugins.module_utils._domain_claim import DomainClaims
from ansible_collections.xen.suspend.plugins.module_utils._errors import DependencyError, DomainBusy
from ansible_collections.xen.suspend.plugins.module_utils._xl_commands import (
    FAILED, KILLED, OK, TIMED_OUT, XlCommands, XlResult, summarise_stderr)


def executable(path, text):
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.fixture
def bindir(tmp_path):
    directory = tmp_path / "bin"
    directory.mkdir()
    return directory


def commands(bindir, tmp_path, systemd=False):
    runtime = tmp_path / "run-systemd"
    if systemd:
        runtime.mkdir(exist_ok=True)
    return XlCommands(path="%s:/usr/bin:/bin" % bindir, systemd_runtime_dir=str(runtime))


def test_xl_missing_from_path_is_a_dependency_error(bindir, tmp_path):
    with pytest.raises(DependencyError) as caught:
        commands(bindir, tmp_path).save(5, "/x", 10)
    assert "not on PATH" in str(caught.value)
    assert "xen-utils" in caught.value.install


def test_save_runs_xl_save_p_with_the_arguments_and_captures_stderr(bindir, tmp_path):
    record = tmp_path / "argv"
    executable(bindir / "xl", 'echo "$@" > %s\necho "Saving to $4 new xl format" >&2\nexit 0\n' % record)
    result = commands(bindir, tmp_path).save(5, "/srv/a.part", 10)
    assert result.ok and result.outcome == OK
    assert record.read_text().split() == ["save", "-p", "5", "/srv/a.part"]
    assert "Saving to /srv/a.part" in result.stderr


def test_a_failure_is_summarised_with_its_error_lines(bindir, tmp_path):
    executable(bindir / "xl", "\n".join([
        'echo "Saving to $4 new xl format (info 0x3/0x0/1000)" >&2',
        'echo "xc: error: Failed to write page data to stream (28 = No space left on device)" >&2',
        'printf "libxl: error: \\033[31mcolour\\n" >&2',
        'echo "Failed to save domain, resuming domain" >&2',
        'exit 1', '']))
    result = commands(bindir, tmp_path).save(7, "/srv/b.part", 10)
    assert result.outcome == FAILED and result.returncode == 1
    summary = result.summary()
    assert "No space left on device" in summary and "Failed to save domain" in summary
    assert "Saving to" not in summary
    assert "\033" not in summary
    error = result.error("save", domain="web1 (domid 7)")
    assert error.kind == "xl_failed" and error.phase == "save"
    assert str(error).startswith("domain web1 (domid 7), phase save: `xl save -p 7 /srv/b.part` exited 1: ")
    assert str(bindir) not in str(error)


def test_a_timeout_kills_xl_and_what_it_forked(bindir, tmp_path):
    pidfile = tmp_path / "child.pid"
    # xl forks a helper (as libxl-save-helper) and both hang
    executable(bindir / "xl", "sleep 300 &\necho $! > %s\necho started >&2\nwait\n" % pidfile)
    started = time.monotonic()
    result = commands(bindir, tmp_path).save(5, "/x", 0.5)
    assert time.monotonic() - started < 10
    assert result.outcome == TIMED_OUT and result.timed_out
    assert result.error("save").kind == "xl_timeout"
    assert "was killed after its timeout" in result.describe()
    child = int(pidfile.read_text())
    for _attempt in range(100):
        try:
            os.kill(child, 0)
        except OSError:
            break
        with open("/proc/%d/stat" % child) as handle:
            if handle.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.05)
    else:
        os.kill(child, signal.SIGKILL)
        raise AssertionError("the helper xl forked survived the timeout")


def test_xl_runs_in_its_own_session_with_no_stdin(bindir, tmp_path):
    out = tmp_path / "ids"
    executable(bindir / "xl", "ps -o sid= -o pgid= -p $$ > %s\ncat > /dev/null\nexit 0\n" % out)
    result = commands(bindir, tmp_path).destroy(9)
    assert result.ok
    sid, pgid = out.read_text().split()
    assert int(sid) != os.getsid(0) and sid == pgid


def test_a_kept_descriptor_is_passed_to_xl(bindir, tmp_path):
    executable(bindir / "xl", 'ls -l /proc/$$/fd > %s\nexit 0\n' % (tmp_path / "fds"))
    fd = os.open(str(tmp_path / "claim"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        commands(bindir, tmp_path).save(1, "/x", 10, keep_fds=(fd,))
    finally:
        os.close(fd)
    assert str(tmp_path / "claim") in (tmp_path / "fds").read_text()


def test_killed_by_a_signal_is_not_a_timeout():
    result = XlResult(["/usr/sbin/xl", "unpause", "3"], -9, "", 0.1)
    assert result.outcome == KILLED
    assert result.describe() == "`xl unpause 3` was killed by signal 9"


def test_restore_without_systemd_runs_xl_directly(bindir, tmp_path):
    record = tmp_path / "argv"
    executable(bindir / "xl", 'echo "$@" > %s\n' % record)
    executable(bindir / "systemd-run", 'echo "systemd-run must not run" > %s\nexit 1\n' % record)
    assert commands(bindir, tmp_path, systemd=False).restore("/srv/a.xlsave", 10).ok
    assert record.read_text().split() == ["restore", "-p", "/srv/a.xlsave"]


def test_restore_under_systemd_runs_in_a_collected_transient_scope(bindir, tmp_path):
    record = tmp_path / "argv"
    executable(bindir / "xl", 'echo "xl $@" >> %s\n' % record)
    # systemd-run --scope execs the command once the scope exists
    executable(bindir / "systemd-run", 'echo "systemd-run $@" >> %s\nwhile [ "${1#-}" != "$1" ]; do shift; done\nexec "$@"\n' % record)
    result = commands(bindir, tmp_path, systemd=True).restore("/srv/a.xlsave", 10, unit_name="xs-test")
    assert result.ok
    lines = record.read_text().splitlines()
    wrapper = lines[0].split()
    assert wrapper[:5] == ["systemd-run", "--scope", "--quiet", "--collect", "--unit=xs-test"]
    assert lines[1] == "xl restore -p /srv/a.xlsave"
    assert result.describe() == "`xl restore -p /srv/a.xlsave` exited 0"


def test_stderr_summary_is_bounded():
    text = "\n".join("libxl: error: line %d %s" % (n, "y" * 1000) for n in range(50))
    summary = summarise_stderr(text)
    assert summary.count("; ") == 3
    assert "line 49" in summary and "line 45" not in summary
    assert len(summary) < 4 * 310
    assert summarise_stderr("") == ""
    assert summarise_stderr("just\ninfo") == "just; info"


def test_an_xl_destroy_that_outlives_its_killed_run_keeps_the_guests_claim(bindir, tmp_path):
    """domain_saved SIGKILLed while its xl destroy runs: that xl (in a session of its own) goes
    on, and holds the guest's claim until it exits, so the next run's recovery cannot take the
    guest and unpause it under the destroy."""
    started, release = tmp_path / "started", tmp_path / "release"
    executable(bindir / "xl", 'echo $$ > %s.tmp && mv %s.tmp %s\n'
                              'while [ ! -e %s ]; do sleep 0.02; done\nexit 0\n'
               % (started, started, started, release))
    (tmp_path / "ledger-dir").mkdir()
    claims = DomainClaims(str(tmp_path / "ledger-dir"))
    uuid = "5c1e0a3a-0000-4000-8000-00000000c1a1"
    run = os.fork()
    if run == 0:  # the domain_saved run
        try:
            claim = claims.acquire(uuid)
            commands(bindir, tmp_path).destroy(7, 30, keep_fds=(claim.fd,))
        except BaseException as exc:  # pylint: disable=broad-except
            (tmp_path / "run-error").write_text(repr(exc))
        finally:
            os._exit(0)
    xl_pid = None
    try:
        deadline = time.monotonic() + 10
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert started.exists(), (tmp_path / "run-error").read_text()
        xl_pid = int(started.read_text())
        os.kill(run, signal.SIGKILL)
        os.waitpid(run, 0)
        with pytest.raises(DomainBusy):
            claims.acquire(uuid)
        release.write_text("")
        deadline = time.monotonic() + 10
        while os.path.exists("/proc/%d" % xl_pid) and time.monotonic() < deadline:
            time.sleep(0.01)  # reaped by init (its parent is gone)
        claims.acquire(uuid).release()
    finally:
        release.write_text("")
        try:
            os.kill(run, signal.SIGKILL)
            os.waitpid(run, 0)
        except (OSError, ChildProcessError):
            pass
