"""Event-time tumbling windows with a watermark, allowed lateness and idle close.

Pure state, no I/O and no clock reads: the caller passes wall-clock ``now`` where it matters,
so tests are deterministic and the hot loop can inline the cheap checks.

Semantics
---------
* An event at time ``t`` belongs to the window ``[t - t % window_s, ... + window_s)``.
* The watermark is ``max event time seen - allowed_lateness_s``. A window is *closed* (emitted)
  exactly once, when the watermark reaches its end. Windows close in start order.
* An event whose window is already closed, or whose window ends at or before the watermark, is
  **late** (``WindowError(code="late")``); an event
  more than ``max_future_s`` ahead of the reference (wall-clock ``now`` when given, else the
  largest event time seen) is **future** (``WindowError(code="future")``). Both are counted.
* Event time alone decides, with one exception for *live* streams gone quiet: if no input arrived
  for ``idle_close_s`` of wall-clock time and the stream was live (its newest event trailed the
  wall clock by at most ``window_s + lateness_s`` when it arrived), event time is taken to go on
  with the wall clock, and the windows that this extrapolated watermark has passed close. A quiet
  live stream so still publishes its last minute, once the wall clock has passed it by the
  allowed lateness. A replay or backfill (event times far behind the wall clock) is never closed
  by a pause of its producer: its windows wait for event time (or the caller's end of input), so
  a pause between two chunks cannot turn lines into late ones or cut a window short.

The hot path (``preagg.aggregate``) only compares ``t`` against :attr:`Windows.lo`,
:attr:`Windows.hi` and :attr:`Windows.trigger`; everything else happens here, rarely.
"""

from __future__ import annotations

import math

from .errors import WindowError

__all__ = ["Windows"]


class Windows:
    """Window bookkeeping for one event stream (one Kafka partition in the stream job).

    Parameters
    ----------
    window_s : int
        Window length in seconds.
    lateness_s : float
        Allowed lateness: the watermark trails the largest event time by this much.
    max_future_s : float
        Events further than this ahead of the reference time are rejected.
    idle_close_s : float
        Wall-clock seconds without input after which a live stream's windows close as the wall
        clock passes them (see the module notes; never for a stream behind the wall clock).
    """

    def __init__(self, window_s: int = 60, lateness_s: float = 30, max_future_s: float = 300,
                 idle_close_s: float = 10.0):
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.window_s = int(window_s)
        self.lateness_s = float(lateness_s)
        self.max_future_s = float(max_future_s)
        self.idle_close_s = float(idle_close_s)
        self.max_t = -math.inf
        #: end of the last closed window: events before it are late.
        self.closed_before = -math.inf
        #: window starts currently open (data lives with the caller).
        self.open: set[int] = set()
        self.last_input: float | None = None
        self.late = 0
        self.future = 0
        self.emitted = 0
        # Hot-path bounds: accept lo <= t <= hi; call advance() when t >= trigger.
        self.lo = -math.inf
        self.hi = math.inf
        self.trigger = math.inf

    # -- reading -----------------------------------------------------------------------------
    @property
    def watermark(self) -> float:
        """Largest event time seen minus the allowed lateness (``-inf`` before any event)."""
        return self.max_t - self.lateness_s

    def start_of(self, t: float) -> int:
        """Start of the window holding event time ``t``."""
        t = int(t)
        return t - t % self.window_s

    # -- per event (slow path; the aggregator inlines the common case) ------------------------
    def check(self, t: float, now: float | None = None) -> int:
        """Validate ``t`` and return its window start; raise and count if late or future.

        Raises
        ------
        WindowError
            ``code="late"`` if the event's window already closed, ``code="future"`` if it is
            more than ``max_future_s`` ahead of the reference time.
        """
        ref = now if now is not None else self.max_t
        if ref != -math.inf and t > ref + self.max_future_s:
            self.future += 1
            raise WindowError(f"event time {t:.3f} is more than {self.max_future_s:g}s ahead of "
                              f"{'wall clock' if now is not None else 'the newest event'} {ref:.3f}", "future")
        ws = self.start_of(t)
        if t < self.lo:
            self.late += 1
            raise WindowError(f"event time {t:.3f} is late: its window [{ws}, {ws + self.window_s}) closed "
                              f"(watermark {self.watermark:.3f}, allowed lateness {self.lateness_s:g}s)", "late")
        self.open.add(ws)
        self.observe(t)
        return ws

    def observe(self, t: float) -> None:
        """Advance the largest event time (does not close anything; see :meth:`due`)."""
        if t > self.max_t:
            self.max_t = t
            self._bounds()

    def touch(self, now: float) -> None:
        """Record wall-clock time of input (for the idle close)."""
        self.last_input = now

    def set_reference(self, now: float | None) -> None:
        """Fix the reference for the future check for the next events (``None``: newest event)."""
        self._now = now
        self._bounds()

    # -- closing -------------------------------------------------------------------------------
    def due(self, now: float | None = None) -> list[int]:
        """Window starts to emit now, oldest first; each is returned exactly once.

        A window is due when the watermark reaches its end, or when ``now`` is given, the stream
        is live and has been idle for ``idle_close_s``, and the watermark extrapolated with the
        wall clock (:meth:`idle_watermark`) reaches its end.
        """
        wm = self.watermark
        if now is not None:
            wm = max(wm, self.idle_watermark(now))
        out = sorted(ws for ws in self.open if ws + self.window_s <= wm)
        for ws in out:
            self.open.discard(ws)
            self.closed_before = max(self.closed_before, ws + self.window_s)
        if out:
            # Windows close in order: anything older than the newest closed one is closed too.
            stale = [ws for ws in self.open if ws + self.window_s <= self.closed_before]
            for ws in stale:
                self.open.discard(ws)
                out.append(ws)
            out.sort()
        self.emitted += len(out)
        self._bounds()
        return out

    def idle_watermark(self, now: float) -> float:
        """Watermark of a quiet live stream at wall-clock ``now``; ``-inf`` when not idle or not live.

        Live: the newest event trailed the wall clock of its arrival by at most
        ``window_s + lateness_s``. Its event time then advances with the wall clock since the last
        input, less the allowed lateness; a stream behind the wall clock (replay, backfill) keeps
        its event-time watermark however long its producer pauses."""
        last = self.last_input
        if last is None or not self.open or now - last < self.idle_close_s or self.max_t == -math.inf:
            return -math.inf
        if last - self.max_t > self.window_s + self.lateness_s:
            return -math.inf
        return self.max_t + (now - last) - self.lateness_s

    def close_all(self) -> list[int]:
        """End of input: every open window is due now (oldest first), exactly once."""
        out = sorted(self.open)
        self.open.clear()
        if out:
            self.closed_before = max(self.closed_before, out[-1] + self.window_s)
        self.emitted += len(out)
        self._bounds()
        return out

    def restore(self, closed_before: float) -> None:
        """Resume after a restart: windows ending at or before ``closed_before`` were emitted."""
        self.closed_before = max(self.closed_before, closed_before)
        self._bounds()

    _now: float | None = None

    def _bounds(self) -> None:
        # Late: the event's window was emitted, or its end is already behind the watermark.
        wm = self.watermark
        self.lo = max(self.closed_before, self.start_of(wm)) if wm != -math.inf else self.closed_before
        ref = self._now if self._now is not None else self.max_t
        self.hi = ref + self.max_future_s if ref != -math.inf else math.inf
        # Next time a window can become due: end of the oldest open window + lateness.
        self.trigger = (min(self.open) + self.window_s + self.lateness_s) if self.open else -math.inf
