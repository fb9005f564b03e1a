"""Compact per-series history for an anomaly's context: the same hour yesterday and last week.

Keeping raw weeks of minute points would cost ~80 KB per series; a ring of hourly means over
8 days (192 float32 means + 192 uint16 counts + the newest hour, ~1.5 KB in base64) answers
"what did this look like yesterday / last week at this time".
"""

from __future__ import annotations

import base64
import math
import struct

import numpy as np

HOUR = 3600.0
SLOTS = 24 * 8


class HourlyHistory:
    """Ring of hourly means; slot ``h % SLOTS`` holds hour ``h`` while ``newest - h < SLOTS``.

    Examples
    --------
    >>> h = HourlyHistory()
    >>> for m in range(60):
    ...     h.add(3600 * 10 + 60 * m, 5.0)
    >>> h.context(3600 * 34 + 120)["yesterday"]
    5.0
    """

    def __init__(self) -> None:
        # plain lists: this is updated once per point, where numpy scalar access costs ~1 us a touch
        self.means = [0.0] * SLOTS
        self.counts = [0] * SLOTS
        self.newest = -1  # newest absolute hour seen

    def _advance(self, h: int) -> None:
        if self.newest < 0 or h - self.newest >= SLOTS:
            self.counts = [0] * SLOTS
        else:
            for hh in range(self.newest + 1, h + 1):  # clear the slots the ring wraps onto
                self.counts[hh % SLOTS] = 0
        self.newest = h

    def add(self, t: float, value: float) -> None:
        if not math.isfinite(value):
            return
        h = int(t // HOUR)
        if h > self.newest:
            self._advance(h)
        elif self.newest - h >= SLOTS:
            return  # older than the ring
        i = h % SLOTS
        n = self.counts[i]
        if n < 65535:
            self.means[i] += (value - self.means[i]) / (n + 1)
            self.counts[i] = n + 1

    def mean_at(self, t: float) -> float | None:
        h = int(t // HOUR)
        if h > self.newest or self.newest - h >= SLOTS:
            return None
        i = h % SLOTS
        return float(np.float32(self.means[i])) if self.counts[i] else None  # the stored precision

    def context(self, t: float) -> dict[str, float | None]:
        return {"yesterday": self.mean_at(t - 24 * HOUR), "last_week": self.mean_at(t - 7 * 24 * HOUR)}

    def to_state(self) -> str:
        return self.encode(self.copy_raw())

    def copy_raw(self) -> tuple[int, list[float], list[int]]:
        """A copy of the ring, cheap enough for the consume loop (~1 us); :meth:`encode` turns it
        into the stored form later, on the checkpoint writer's thread."""
        return self.newest, self.means.copy(), self.counts.copy()

    @staticmethod
    def encode(raw_copy: tuple[int, list[float], list[int]]) -> str:
        newest, means, counts = raw_copy
        raw = (struct.pack("<q", newest) + np.asarray(means, dtype="<f4").tobytes()
               + np.asarray(counts, dtype="<u2").tobytes())
        return base64.b64encode(raw).decode()

    @classmethod
    def from_state(cls, state: str | None) -> "HourlyHistory":
        h = cls()
        if state:
            raw = base64.b64decode(state)
            h.newest = struct.unpack("<q", raw[:8])[0]
            h.means = np.frombuffer(raw[8:8 + 4 * SLOTS], dtype="<f4").astype(float).tolist()
            h.counts = np.frombuffer(raw[8 + 4 * SLOTS:8 + 6 * SLOTS], dtype="<u2").astype(int).tolist()
        return h
