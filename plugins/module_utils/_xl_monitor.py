# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: xl's per-domain monitor across our suspend and resume.

``xl create`` leaves one small xl process per domain that waits for the domain's shutdown and
applies its on_poweroff / on_reboot / on_crash actions. When that process sees the domain shut
down with reason *suspend* it logs "Domain has suspended." and exits, so after a resume nobody
would handle the guest's next reboot or poweroff: the guest would stay a dead shut-down domain.
(``xl save -c`` leaves the same hole.)

Upstream xl keeps monitoring a suspended domain from Xen 4.20 on ("xl: Keep monitoring suspended
domain"; it logs "Continue waiting for domain N"). For older xl (4.14 to 4.19, e.g. Debian
bookworm's 4.17) we stop the monitor (SIGSTOP) before the suspend request and continue it
(SIGCONT) after the resume. It never observes the transient suspend; the watch events queued meanwhile make it
re-read the domain, which is running again, so it goes on handling the domain exactly per the
domain's own configuration, as if nothing had happened. If the suspend fails the monitor is
continued at once; if the domain is destroyed meanwhile, continuing it lets it see that and
exit as it normally would.

Hosts without xl (XAPI, libvirt) have no such process: nothing is found and nothing is done.

The monitor is found from what xl itself logs, "Waiting for domain NAME (domid N) to die
[pid P]" in ``/var/log/xen/xl-NAME.log``, confirmed against /proc (an ``xl`` process). It is
identified by pid *and* start time, so a pid reused by another process is never signalled.
"""

import os
import re
import signal

XL_LOG_DIR = "/var/log/xen"
# xl rewrites its log on every create of that name; the line we need is near the end.
_LOG_TAIL_BYTES = 65536
_WAITING = re.compile(r"Waiting for domain (?P<name>\S+) \(domid (?P<domid>\d+)\) to die \[pid (?P<pid>\d+)\]")

RUNNING = "running"
FROZEN = "frozen"
GONE = "gone"
# The first xl that keeps waiting after a suspend (xl is always the running Xen's version).
XL_KEEPS_MONITORING = (4, 20)


class XlMonitors(object):
    """``exits_on_suspend``: whether this host's xl monitor gives up on a suspended domain and so
    must be kept from seeing it; False leaves every monitor alone (they are still reported)."""

    def __init__(self, log_dir=XL_LOG_DIR, proc_dir="/proc", exits_on_suspend=True):
        self.log_dir = log_dir
        self.proc_dir = proc_dir
        self.exits_on_suspend = exits_on_suspend

    @classmethod
    def for_xen(cls, version):
        return cls(exits_on_suspend=tuple(version) < XL_KEEPS_MONITORING)

    def find(self, domid, name):
        """The monitor watching this domain as a dict {pid, start_time, state}, or None."""
        if not name or "/" in name or name.startswith(".") or "\0" in name:
            return None
        path = os.path.join(self.log_dir, "xl-%s.log" % name)
        try:
            with open(path, "rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - _LOG_TAIL_BYTES))
                text = log.read().decode("utf-8", "replace")
        except (IOError, OSError):
            return None
        matches = [m for m in _WAITING.finditer(text)
                   if m.group("name") == name and int(m.group("domid")) == domid]
        if not matches:
            return None
        pid = int(matches[-1].group("pid"))
        status = self._process(pid)
        if status is None or not status["is_xl"]:
            return None
        return {"toolstack": "xl", "pid": pid, "start_time": status["start_time"],
                "state": FROZEN if status["stopped"] else RUNNING}

    def state(self, monitor):
        """running, frozen or gone (exited, or the pid now belongs to another process)."""
        status = self._same_process(monitor)
        if status is None:
            return GONE
        return FROZEN if status["stopped"] else RUNNING

    def freeze(self, monitor):
        if not self.exits_on_suspend:
            return False
        return self._signal(monitor, signal.SIGSTOP)

    def thaw(self, monitor):
        return self._signal(monitor, signal.SIGCONT)

    def _signal(self, monitor, signum):
        """True when the signal reached the very process recorded in ``monitor``."""
        if not monitor or self._same_process(monitor) is None:
            return False
        try:
            os.kill(int(monitor["pid"]), signum)
        except OSError:
            return False
        return True

    def _same_process(self, monitor):
        try:
            pid, start_time = int(monitor["pid"]), int(monitor["start_time"])
        except (KeyError, TypeError, ValueError):
            return None
        status = self._process(pid)
        if status is None or status["start_time"] != start_time or not status["is_xl"]:
            return None
        return status

    def _process(self, pid):
        base = os.path.join(self.proc_dir, str(pid))
        try:
            with open(os.path.join(base, "stat"), "rb") as f:
                stat = f.read().decode("ascii", "replace")
            with open(os.path.join(base, "cmdline"), "rb") as f:
                argv0 = f.read().split(b"\0")[0].decode("utf-8", "replace")
        except (IOError, OSError):
            return None
        # the command name may contain spaces and parentheses: fields start after the last ')'
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) < 20:
            return None
        return {"stopped": fields[0] in ("T", "t"), "start_time": int(fields[19]),
                "is_xl": os.path.basename(argv0) == "xl"}
