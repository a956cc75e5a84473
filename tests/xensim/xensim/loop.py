"""A small single-threaded event loop: selectors for fds, a heap for timers.

Everything in the simulator (xenstored, the shim RPC server, the admin socket,
guest timers) runs on one Loop, so there is no locking anywhere and 500 guests
quiescing concurrently cost one heap entry each.
"""

import heapq
import itertools
import logging
import selectors
import time
from collections import deque

log = logging.getLogger("xensim.loop")

# Timers may fire up to this late (seconds); batching wake-ups keeps the
# simulator's idle CPU low with hundreds of heartbeating guests.
TIMER_SLACK = 0.005


class Timer:
    __slots__ = ("when", "seq", "cb", "args", "cancelled")

    def __init__(self, when, seq, cb, args):
        self.when = when
        self.seq = seq
        self.cb = cb
        self.args = args
        self.cancelled = False

    def cancel(self):
        self.cancelled = True


class Handler:
    """Base class for fd handlers registered with Loop.register()."""

    def fileno(self):
        raise NotImplementedError

    def on_readable(self):
        pass

    def on_writable(self):
        pass


class Loop:
    def __init__(self):
        self.sel = selectors.DefaultSelector()
        self._timers = []
        self._soon = deque()
        self._seq = itertools.count()
        self._running = False
        self._masks = {}

    # -- time -------------------------------------------------------------
    @staticmethod
    def now():
        return time.monotonic()

    def call_later(self, delay, cb, *args):
        t = Timer(self.now() + max(0.0, delay), next(self._seq), cb, args)
        # (when, seq, timer) tuples keep heap comparisons in C
        heapq.heappush(self._timers, (t.when, t.seq, t))
        return t

    def call_coarse(self, delay, cb, *args, granularity=0.1):
        """Like call_later, but the deadline is rounded up to a multiple of
        ``granularity`` so that many periodic timers (heartbeats) share one
        wake-up.  Wake-ups, not the work done in them, dominate idle CPU."""
        when = self.now() + max(0.0, delay)
        when = (int(when / granularity) + 1) * granularity
        t = Timer(when, next(self._seq), cb, args)
        heapq.heappush(self._timers, (t.when, t.seq, t))
        return t

    def call_soon(self, cb, *args):
        self._soon.append((cb, args))

    # -- fds --------------------------------------------------------------
    def register(self, handler, read=True, write=False):
        mask = (selectors.EVENT_READ if read else 0) | (selectors.EVENT_WRITE if write else 0)
        self._masks[handler] = mask
        if mask:
            self.sel.register(handler.fileno(), mask, handler)

    def set_events(self, handler, read=True, write=False):
        mask = (selectors.EVENT_READ if read else 0) | (selectors.EVENT_WRITE if write else 0)
        old = self._masks.get(handler)
        if old is None or old == mask:
            return
        self._masks[handler] = mask
        fd = handler.fileno()
        if old and mask:
            self.sel.modify(fd, mask, handler)
        elif mask:
            self.sel.register(fd, mask, handler)
        else:
            self.sel.unregister(fd)

    def unregister(self, handler):
        mask = self._masks.pop(handler, None)
        if mask:
            try:
                self.sel.unregister(handler.fileno())
            except (KeyError, ValueError, OSError):
                pass

    # -- running ----------------------------------------------------------
    def stop(self):
        self._running = False

    def _run_soon(self):
        # Run only what was queued before we started, so callbacks that
        # queue more work cannot starve fds.
        n = len(self._soon)
        for _ in range(n):
            cb, args = self._soon.popleft()
            try:
                cb(*args)
            except Exception:
                log.exception("callback %r failed", cb)

    def _run_timers(self):
        now = self.now()
        timers = self._timers
        while timers and timers[0][0] <= now:
            t = heapq.heappop(timers)[2]
            if t.cancelled:
                continue
            try:
                t.cb(*t.args)
            except Exception:
                log.exception("timer %r failed", t.cb)

    def run_once(self, max_wait=1.0):
        self._run_soon()
        if self._soon:
            timeout = 0
        else:
            while self._timers and self._timers[0][2].cancelled:
                heapq.heappop(self._timers)
            if self._timers:
                # TIMER_SLACK lets timers due close together share a wake-up.
                timeout = max(0.0, min(max_wait, self._timers[0][0] - self.now() + TIMER_SLACK))
            else:
                timeout = max_wait
        for key, events in self.sel.select(timeout):
            h = key.data
            try:
                if events & selectors.EVENT_READ:
                    h.on_readable()
                if events & selectors.EVENT_WRITE and self._masks.get(h, 0) & selectors.EVENT_WRITE:
                    h.on_writable()
            except Exception:
                log.exception("handler %r failed", h)
        self._run_timers()

    def run(self):
        self._running = True
        while self._running:
            self.run_once()
