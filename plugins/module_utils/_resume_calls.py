# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE to the xen.suspend collection: xc_domain_resume calls in threads for the resume
engine (_resume), each thread with its own libxenctrl handle."""

import queue
import threading
import time

from ansible_collections.xen.suspend.plugins.module_utils._errors import (
    DomainOperationError, XenSuspendError)

# Once a call has returned, how long the others that return meanwhile are waited for, so
# that one XS_RESUME batch and one domain-info scan serve them all.
RETURN_COALESCE = 0.005
# What wait() hands back for a call that was not made because the run stopped first.
NOT_STARTED = object()


class ResumeCalls(object):
    """xc_domain_resume calls, up to ``threads`` at once: each thread has its own libxenctrl
    handle (XenCtrl.clone; cffi releases the GIL while the call waits). One thread, or a
    backend that cannot clone, calls in the caller's thread: the call's return is in
    ``wait()`` at once. ``wait()`` hands back (job, exception or None) for the calls that have
    returned.

    The threads start each other, two each, on the first call (a thread's start costs its
    starter a wake-up of the new thread: a hundred of them in a row would hold the first
    calls back), and each opens its own handle; the first handle is opened here, so that
    calls come here instead when not even one can be opened, and go on here should every
    thread be gone."""

    def __init__(self, xc, threads):
        self.xc = xc
        self.threads = max(1, int(threads))
        self.inline = self.threads == 1 or not hasattr(xc, "clone")
        self.todo = queue.Queue()
        self.done = queue.Queue()
        self.started = False
        self.stopped = False  # set: the calls not started yet are not made (NOT_STARTED)
        self.pending = 0
        self.handle_calls = 0
        self.thread_names = set()
        self._ended = 0  # threads that ended, or will never start
        self._cond = threading.Condition()

    def prestart(self):
        """Start the threads (and open their handles) now, while the domains are still being
        locked and looked at."""
        if not self.inline and not self.started:
            self._start_workers()

    def submit(self, job, fast):
        self.pending += 1
        if not self.inline and not self.started:
            self._start_workers()
        if self.inline:
            self.done.put((job, self._call(self.xc, job.record.domid, fast)))
        else:
            self.todo.put((job, fast))

    def _start_workers(self):
        try:
            handle = self.xc.clone()
        except XenSuspendError:
            self.inline = True  # no handle at all: one call after the other, here
            return
        self.started = True
        self._spawn(0, handle)

    def _spawn(self, index, handle=None):
        try:
            worker = threading.Thread(target=self._work, args=(index, handle),
                                      name="xc-resume-%d" % index)
            worker.daemon = True
            worker.start()
        except Exception:  # pylint: disable=broad-except  # (no more threads): the others call
            if handle is not None:
                handle.close()
            self._end(self._subtree(index))

    def _subtree(self, index):
        """How many threads ``index`` and those it starts (and so on) are."""
        count, level = 0, [index]
        while level:
            level = [i for i in level if i < self.threads]
            count += len(level)
            level = [child for i in level for child in (2 * i + 1, 2 * i + 2)]
        return count

    def _end(self, count):
        with self._cond:
            self._ended += count
            self._cond.notify_all()

    def _work(self, index, handle):
        try:
            for child in (2 * index + 1, 2 * index + 2):
                if child < self.threads:
                    self._spawn(child)
            if handle is None:
                try:
                    handle = self.xc.clone()
                except Exception:  # pylint: disable=broad-except  # the others do the calls
                    return
            while True:
                item = self.todo.get()
                if item is None:
                    return
                job, fast = item
                if self.stopped:  # a signal, or a failure with continue_on_error false
                    self.done.put((job, NOT_STARTED))
                    continue
                self.done.put((job, self._call(handle, job.record.domid, fast)))
        finally:
            if handle is not None:
                with self._cond:
                    self.handle_calls += getattr(handle, "calls", 0)
                    self.thread_names.add(threading.current_thread().name)
                try:
                    handle.close()
                except Exception:  # pylint: disable=broad-except  # closing never hides a result
                    pass
            self._end(1)

    @staticmethod
    def _call(handle, domid, fast):
        try:
            handle.resume(domid, fast)
        except XenSuspendError as exc:
            return exc
        except Exception as exc:  # pylint: disable=broad-except  # reported for its domain
            return DomainOperationError("xc_domain_resume failed: %s" % exc, kind="error")
        return None

    def _all_ended(self):
        with self._cond:
            return self._ended >= self.threads

    def wait(self, timeout):
        """The calls that have returned, waiting up to ``timeout`` for the first one."""
        returned = []
        if not self.pending:
            return returned
        if self.started and self._all_ended():
            self._call_here()
        try:
            returned.append(self.done.get(timeout=max(0.0, timeout)) if timeout > 0
                            else self.done.get_nowait())
        except queue.Empty:
            return returned
        until = time.monotonic() + (0.0 if self.inline else RETURN_COALESCE)
        while len(returned) < self.pending:
            left = until - time.monotonic()
            try:
                returned.append(self.done.get(timeout=left) if left > 0 else self.done.get_nowait())
            except queue.Empty:
                break
        self.pending -= len(returned)
        return returned

    def _call_here(self):
        """Every thread is gone (none could open a handle or start): the rest is called here."""
        while True:
            try:
                item = self.todo.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                job, fast = item
                self.done.put((job, NOT_STARTED if self.stopped else
                               self._call(self.xc, job.record.domid, fast)))

    def close(self):
        """Every call submitted has returned (they are waited for: a resume in flight is never
        left behind); the threads end and their handles close."""
        if not self.started:
            return
        for _index in range(self.threads):  # (every thread there is or is still to come)
            self.todo.put(None)
        with self._cond:
            while self._ended < self.threads:
                self._cond.wait(1.0)
        self.xc.calls += self.handle_calls
        self.started = False
