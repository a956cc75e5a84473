# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Test-only callback: one JSON line per task result and one for the final stats.

Enabled by tests/roles through ANSIBLE_CALLBACK_PLUGINS / ANSIBLE_CALLBACKS_ENABLED; writes to
the file named by $XEN_SUSPEND_EVENTS_LOG. Each line carries a wall-clock time and a sequence
number, so tests can tell in which order hosts were handled.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

DOCUMENTATION = r'''
name: xen_suspend_events
type: notification
short_description: Record task results as JSON lines for the role tests
description:
  - Writes one JSON object per task result, and one with the play recap and custom stats, to the
    file named by E(XEN_SUSPEND_EVENTS_LOG).
requirements:
  - enabled in callbacks_enabled
'''

import json
import os
import threading
import time

from ansible.plugins.callback import CallbackBase


def _plain(value):
    return json.loads(json.dumps(value, default=str))


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "xen_suspend_events"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self._path = os.environ.get("XEN_SUSPEND_EVENTS_LOG")
        self._lock = threading.Lock()
        self._seq = 0

    def _write(self, record):
        if not self._path:
            return
        with self._lock:
            self._seq += 1
            record["seq"] = self._seq
            record["time"] = time.time()
            with open(self._path, "a") as handle:
                handle.write(json.dumps(_plain(record), sort_keys=True) + "\n")

    def _result(self, status, result):
        host = getattr(result, "host", None) or result._host  # pylint: disable=protected-access
        task = getattr(result, "task", None) or result._task  # pylint: disable=protected-access
        data = getattr(result, "result", None)
        if data is None:
            data = result._result  # pylint: disable=protected-access
        role = getattr(task, "_role", None)
        self._write({
            "event": status,
            "host": host.get_name(),
            "task": task.get_name(),
            "role": role.get_name() if role is not None else None,
            "action": task.action,
            "result": dict(data),
        })

    def v2_runner_on_ok(self, result):
        self._result("ok", result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result("failed", result)

    def v2_runner_on_skipped(self, result):
        self._result("skipped", result)

    def v2_runner_on_unreachable(self, result):
        self._result("unreachable", result)

    def v2_playbook_on_stats(self, stats):
        hosts = sorted(stats.processed.keys())
        self._write({
            "event": "stats",
            "summary": dict((host, stats.summarize(host)) for host in hosts),
            "custom": getattr(stats, "custom", {}),
        })
