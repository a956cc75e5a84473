# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: running ``xl`` (save, destroy, unpause, restore).

Saving and restoring are left to ``xl`` itself (reference xen-save-restore.md, 2.2): it
embeds the domain's configuration, resumes the guest when its own save fails, and leaves the
per-domain monitor behind a restore. What xl gives back is only an exit status (0 or 1) and
its messages on stderr, so every call here captures stderr (into a temporary file, not a pipe:
a process xl leaves behind, such as the restore's monitor, may keep an inherited pipe open
for days) and summarises it for the error a user sees.

Every xl runs in its own session and process group:

* a Ctrl-C or SIGHUP meant for the module does not reach an ``xl save`` half-way through a
  guest's memory (killing it there leaves the guest suspended);
* on timeout the whole group gets SIGKILL -- xl and the ``libxl-save-helper`` it forked.

``xl restore`` must outlive the Ansible task and its SSH session, because the monitor it
leaves applies the guest's on_poweroff/on_reboot/on_crash from then on. Where PID 1 is
systemd it runs in a transient scope (``systemd-run --scope --collect``): a cgroup of its
own, outside the SSH session's, which logind may kill at logout; the scope ends when the
monitor exits. Elsewhere a new session (setsid) keeps it from the session's SIGHUP.

``xl`` is found on PATH only, at the moment of the call, as an operator's shell would.
"""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid as uuid_module

from ansible_collections.xen.suspend.plugins.module_utils._errors import (
    DependencyError, DomainOperationError)

XL = "xl"
SYSTEMD_RUN = "systemd-run"
# sd_booted(): this directory exists only when PID 1 is systemd.
SYSTEMD_RUNTIME_DIR = "/run/systemd/system"
XL_INSTALL_HINT = "the Xen toolstack (Debian package xen-utils-common and xen-utils-4.<minor>)"

# What is kept of xl's stderr: its tail, a few lines, each bounded (xl prints one
# "Saving to ..." line per save, libxl one line per error; a guest name is in some of them).
STDERR_TAIL_BYTES = 64 * 1024
SUMMARY_LINES = 4
SUMMARY_LINE_CHARS = 300
# xl destroy / xl unpause take well under a second; a stuck one is not waited for forever.
SHORT_TIMEOUT = 60.0
# Seconds given to a killed xl's process group to be reaped before we stop waiting for it.
REAP_TIMEOUT = 5.0

_NON_PRINTABLE = re.compile(r"[^\x20-\x7e]")
_ERROR_WORDS = re.compile(r"error|fail|cannot|can't|unable|refus|invalid|truncat|timed out",
                          re.IGNORECASE)

# How an xl run ended (XlResult.outcome).
OK = "ok"
FAILED = "failed"        # exited non-zero
TIMED_OUT = "timed_out"  # killed by us (SIGKILL to its process group) after the timeout
KILLED = "killed"        # ended by a signal we did not send


class XlResult(object):
    """One finished ``xl`` run."""

    def __init__(self, argv, returncode, stderr, seconds, timed_out=False):
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        self.seconds = seconds
        self.timed_out = timed_out

    @property
    def outcome(self):
        if self.timed_out:
            return TIMED_OUT
        if self.returncode == 0:
            return OK
        if self.returncode is not None and self.returncode < 0:
            return KILLED
        return FAILED

    @property
    def ok(self):
        return self.outcome == OK

    def summary(self):
        """A few of xl's lines, the error lines first: what a user needs to see."""
        return summarise_stderr(self.stderr)

    def describe(self):
        """``xl save -p 5 /x`` exited 1: <summary>"""
        command = xl_command_text(self.argv)
        if self.outcome == TIMED_OUT:
            what = "was killed after its timeout (%.0f s)" % self.seconds
        elif self.outcome == KILLED:
            what = "was killed by signal %d" % -self.returncode
        else:
            what = "exited %s" % self.returncode
        text = "`%s` %s" % (command, what)
        summary = self.summary()
        return text + (": " + summary if summary else "")

    def error(self, phase, domain=None, kind=None):
        """A DomainOperationError naming the domain and phase, kind ``xl_timeout`` or
        ``xl_failed`` unless given."""
        if kind is None:
            kind = "xl_timeout" if self.outcome == TIMED_OUT else "xl_failed"
        return DomainOperationError(self.describe(), kind=kind, domain=domain, phase=phase)


def xl_command_text(argv):
    """``xl save -p 5 /x``: the xl part of ``argv`` (a systemd-run wrapper and the directory
    xl was found in left out)."""
    for index, arg in enumerate(argv):
        if os.path.basename(arg) == XL:
            return " ".join([XL] + list(argv[index + 1:]))
    return " ".join(argv)


def summarise_stderr(text, lines=SUMMARY_LINES, width=SUMMARY_LINE_CHARS):
    """Up to ``lines`` printable lines of ``text``: those that look like errors (the last
    ones), else the last lines. Each is cut to ``width`` characters."""
    if not text:
        return ""
    candidates = [_NON_PRINTABLE.sub("?", line.strip()) for line in text.splitlines()]
    candidates = [line for line in candidates if line]
    errors = [line for line in candidates if _ERROR_WORDS.search(line)]
    chosen = (errors or candidates)[-lines:]
    return "; ".join(line if len(line) <= width else line[:width] + "..." for line in chosen)


def find_xl(path=None):
    """The ``xl`` on PATH, or DependencyError."""
    found = shutil.which(XL, path=path)
    if found is None:
        raise DependencyError("xl (the Xen toolstack's command) is not on PATH (%s)"
                              % (path if path is not None else os.environ.get("PATH", "")),
                              library="xl", install=XL_INSTALL_HINT)
    return found


def systemd_is_init(runtime_dir=None):
    """True when PID 1 is systemd (sd_booted)."""
    return os.path.isdir(SYSTEMD_RUNTIME_DIR if runtime_dir is None else runtime_dir)


def _read_tail(handle, limit=STDERR_TAIL_BYTES):
    handle.flush()
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    handle.seek(max(0, size - limit))
    return handle.read().decode("utf-8", "replace")


def _kill_group(process):
    """SIGKILL to the process group the child leads (it was started in a new session)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except OSError:
        try:
            process.kill()
        except OSError:
            pass


class XlCommands(object):
    """Runs xl. ``path``: the PATH to look xl up on (default: the process's); ``clock`` for
    the durations."""

    def __init__(self, path=None, clock=time.monotonic, systemd_runtime_dir=None):
        self.path = path
        self.clock = clock
        self.systemd_runtime_dir = systemd_runtime_dir

    def xl(self):
        return find_xl(self.path)

    # -- the commands ------------------------------------------------------------------------

    def save(self, domid, image_path, timeout, keep_fds=()):
        """``xl save -p <domid> <image_path>``: on success the guest is paused, its memory in
        the file. ``keep_fds`` are passed to xl (a claim lock that must last as long as xl)."""
        return self.run([self.xl(), "save", "-p", str(int(domid)), image_path], timeout,
                        keep_fds=keep_fds)

    def destroy(self, domid, timeout=SHORT_TIMEOUT, keep_fds=()):
        """``xl destroy <domid>``; ``keep_fds`` as for save (an xl destroy that outlives a killed
        run keeps the guest's claim, so that no other run unpauses the guest under it)."""
        return self.run([self.xl(), "destroy", str(int(domid))], timeout, keep_fds=keep_fds)

    def unpause(self, domid, timeout=SHORT_TIMEOUT):
        return self.run([self.xl(), "unpause", str(int(domid))], timeout)

    def restore(self, image_path, timeout, paused=True, unit_name=None):
        """``xl restore [-p] <image_path>``, detached from this process's session so that the
        monitor xl leaves outlives the task (see the module docstring). ``unit_name`` names the
        transient systemd scope (default: xen-suspend-restore-<random>)."""
        argv = [self.xl(), "restore"] + (["-p"] if paused else []) + [image_path]
        if systemd_is_init(self.systemd_runtime_dir) and shutil.which(SYSTEMD_RUN, path=self.path):
            argv = self.detached_argv(argv, unit_name)
        return self.run(argv, timeout)

    def detached_argv(self, argv, unit_name=None):
        """``systemd-run --scope`` around ``argv``: xl runs in a transient scope unit of its
        own (the monitor stays in it), collected once empty, even when xl failed."""
        unit = unit_name or "xen-suspend-restore-%s" % uuid_module.uuid4().hex[:12]
        return [shutil.which(SYSTEMD_RUN, path=self.path), "--scope", "--quiet", "--collect",
                "--unit=%s" % unit, "--description=xen.suspend: xl restore"] + list(argv)

    # -- running -----------------------------------------------------------------------------

    def run(self, argv, timeout, keep_fds=()):
        """Run ``argv`` in a new session, stdin and stdout on /dev/null, stderr captured;
        SIGKILL to its process group after ``timeout`` seconds. An XlResult."""
        started = self.clock()
        with tempfile.TemporaryFile(prefix="xen-suspend-xl-") as errors:
            with open(os.devnull, "rb") as devnull_in, open(os.devnull, "wb") as devnull_out:
                try:
                    process = subprocess.Popen(
                        argv, stdin=devnull_in, stdout=devnull_out, stderr=errors,
                        start_new_session=True, close_fds=True, pass_fds=tuple(keep_fds))
                except OSError as exc:
                    raise DomainOperationError("cannot run %s: %s" % (argv[0], exc),
                                               kind="xl_failed", errno=exc.errno)
            timed_out = False
            try:
                returncode = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(process)
                try:
                    returncode = process.wait(timeout=REAP_TIMEOUT)
                except subprocess.TimeoutExpired:  # in uninterruptible I/O: reaped later by init
                    returncode = None
            except BaseException:
                # our own run is going down (a bug, KeyboardInterrupt): xl must not be left
                # half-way with nobody to look at the guest afterwards
                _kill_group(process)
                raise
            return XlResult(argv, returncode, _read_tail(errors), self.clock() - started,
                            timed_out=timed_out)
