"""Compact per-series history for an anomaly's context: the same hour yesterday and last week.

Keeping raw weeks of minute points would cost ~80 KB per series; a ring of hourly means over
8 days (192 float32 means + 192 uint16 counts + the newest hour, ~1.5 KB in base64) answers
"what did this look like yesterday / last week at this time".
"""

from __future__ import annotations

import base64
import math
import struct
from array import array

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
        # array.array, not numpy (updated once per point, where numpy scalar access costs ~1 us a
        # touch) and not lists: a checkpoint copies 10k rings, and copying a list of 192 float
        # objects touches every object (~12 us a ring, 0.1 s per checkpoint), an array is a memcpy
        self.means = array("d", _ZEROS_D)
        self.counts = array("H", _ZEROS_H)  # uint16: counts stop at 65535
        self.newest = -1  # newest absolute hour seen

    def _advance(self, h: int) -> None:
        if self.newest < 0 or h - self.newest >= SLOTS:
            self.counts = array("H", _ZEROS_H)
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

    def copy_raw(self) -> tuple[int, array, array]:
        """A copy of the ring, cheap enough for the consume loop (two memcpy); :meth:`encode` turns
        it into the stored form later, on the checkpoint writer's thread."""
        return self.newest, self.means[:], self.counts[:]

    @staticmethod
    def encode(raw_copy: tuple[int, array, array]) -> str:
        newest, means, counts = raw_copy
        raw = (struct.pack("<q", newest) + np.frombuffer(means, dtype=np.float64).astype("<f4").tobytes()
               + np.frombuffer(counts, dtype=np.uint16).astype("<u2").tobytes())
        return base64.b64encode(raw).decode()

    @classmethod
    def from_state(cls, state: str | None) -> "HourlyHistory":
        h = cls()
        if state:
            raw = base64.b64decode(state)
            h.newest = struct.unpack("<q", raw[:8])[0]
            h.means = array("d", np.frombuffer(raw[8:8 + 4 * SLOTS], dtype="<f4").astype(np.float64).tobytes())
            h.counts = array("H", np.frombuffer(raw[8 + 4 * SLOTS:8 + 6 * SLOTS], dtype="<u2").astype(np.uint16).tobytes())
        return h


_ZEROS_D = array("d", [0.0] * SLOTS)
_ZEROS_H = array("H", [0] * SLOTS)
