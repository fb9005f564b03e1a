"""Shared machinery: vectorised per-series state, time handling, serialisation.

Every detector keeps its state as numpy arrays with one row per series, so the
same code scores one series (``n_series=1``, the river-style ``learn_one`` /
``score_one`` / ``update`` path) or many series at once (``update_many``).
The one-point path is the batch path with a batch of one, which is what makes
their results identical.
"""
from __future__ import annotations

import base64
import datetime as _dt
from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtr, ndtri

__all__ = ["Detector", "DetectorResult", "Forecast", "to_seconds", "z_to_surprise", "tail_to_z"]

_LOG10E = np.log10(np.e)


def clip(x, lo, hi):
    """``np.clip`` without its per-call overhead (this is hot on the one-point path)."""
    return np.minimum(np.maximum(x, lo), hi)


def to_seconds(t) -> np.ndarray | float:
    """Convert a timestamp (epoch seconds, ``datetime``, ``np.datetime64``, ISO str) to epoch seconds."""
    if isinstance(t, np.ndarray):
        if np.issubdtype(t.dtype, np.datetime64):
            return t.astype("datetime64[us]").astype(np.int64) / 1e6
        return t.astype(np.float64)
    if isinstance(t, (int, float, np.integer, np.floating)):
        return float(t)
    if isinstance(t, _dt.datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=_dt.timezone.utc)
        return t.timestamp()
    if isinstance(t, np.datetime64):
        return float(t.astype("datetime64[us]").astype(np.int64)) / 1e6
    if isinstance(t, str):
        return to_seconds(np.datetime64(t))
    if t is None:
        raise ValueError("a timestamp is required")
    return float(t)


def z_to_surprise(z: np.ndarray, direction: str = "both") -> np.ndarray:
    """Surprise ``-log10 p`` of a standardised residual ``z`` (Gaussian tail).

    ``direction`` is ``"both"`` (two-sided), ``"up"`` or ``"down"`` (one-sided: the
    other side gives surprise 0).
    """
    z = np.asarray(z, dtype=np.float64)
    if direction == "up":
        p = ndtr(-z)
        p = np.where(z > 0, p, 1.0)
    elif direction == "down":
        p = ndtr(z)
        p = np.where(z < 0, p, 1.0)
    else:
        p = 2.0 * ndtr(-np.abs(z))
    return -np.log10(clip(p, 1e-300, 1.0))


def tail_to_z(p: np.ndarray) -> np.ndarray:
    """Upper-tail probability -> Gaussian-equivalent z (``P(Z > z) = p``)."""
    return -ndtri(clip(p, 1e-300, 1.0))


@dataclass
class DetectorResult:
    """What one detector says about one point.

    Attributes
    ----------
    score : float
        ``1 - p`` where ``p`` is the tail probability of the point under the
        detector's model (0 = ordinary, close to 1 = very unusual).
    z : float
        Signed standardised residual (Gaussian-equivalent units).
    expected : float
        The value the detector expected (in the metric's units).
    fired : bool
        Whether the detector's own alarm rule fired.
    """

    score: float
    z: float
    expected: float
    fired: bool


@dataclass
class Forecast:
    """What a detector said about one batch of points (arrays, one entry per series), as an ensemble uses it.

    Attributes
    ----------
    z : ndarray
        Signed standardised residual of the point (0: no opinion, e.g. warm-up or a missing value).
    expected : ndarray
        The detector's forecast of the point, made before learning it, in the units it was given
        (NaN: nothing learnt yet).
    sigma : ndarray
        Scale of that forecast (``inf``: not yet good enough to draw a band from).
    fired : ndarray of bool
        Whether the detector's own alarm rule fired.
    """

    z: np.ndarray
    expected: np.ndarray
    sigma: np.ndarray
    fired: np.ndarray


class Detector:
    """Base class: vectorised state arrays + river-style one-point methods.

    Subclasses define ``_shapes()`` (field name -> per-series shape), ``_init()``,
    ``_score(y, t)`` (pure: returns signed z, expected, fired arrays) and
    ``_learn(y, t, z)`` (mutates state). Missing values (NaN) are skipped: no
    learning, score 0.
    """

    name = "detector"

    def __init__(self, n_series: int = 1):
        self.n_series = int(n_series)
        self.s: dict[str, np.ndarray] = {}
        dts = self._dtypes()
        for k, shp in self._shapes().items():
            self.s[k] = np.zeros((self.n_series, *shp), dtype=dts.get(k, np.float64))
        self._init()

    # -- to implement --------------------------------------------------
    def _shapes(self) -> dict[str, tuple]:
        raise NotImplementedError

    def _init(self) -> None:
        pass

    def _dtypes(self) -> dict:
        """Fields stored in a narrower dtype (e.g. float32 profiles); default float64."""
        return {}

    def _score(self, y, t):
        raise NotImplementedError

    def _learn(self, y, t, z) -> None:
        raise NotImplementedError

    def config(self) -> dict:
        return {}

    # -- batch path ----------------------------------------------------
    def _prep(self, values, t):
        y = np.asarray(values, dtype=np.float64).reshape(self.n_series)
        tt = np.broadcast_to(np.asarray(to_seconds(t), dtype=np.float64), (self.n_series,))
        return y, tt

    def update_many(self, values, t):
        """Score then learn one point for every series. Returns ``(score, z, expected, fired)`` arrays."""
        y, tt = self._prep(values, t)
        z, expected, fired = self._score(y, tt)
        ok = np.isfinite(y)
        z = np.where(ok, z, 0.0)
        self._learn(y, tt, z)
        score = 1.0 - 2.0 * ndtr(-np.abs(z))
        return score, z, expected, fired & ok

    def observe(self, values, t, *, n=None, noise=None) -> Forecast:
        """Score then learn one point per series, returning the full :class:`Forecast`.

        ``n`` (denominators, for count-ratio detectors) and ``noise`` (an extra per-series scale floor an
        ensemble may know, e.g. the noise of a seasonal profile at this phase) are ignored unless a
        detector uses them. The default has no band (``sigma = inf``)."""
        _, z, expected, fired = self.update_many(values, t)
        return Forecast(z, expected, np.full(self.n_series, np.inf), fired)

    # -- one-point path (river style) ----------------------------------
    def _check_one(self):
        if self.n_series != 1:
            raise ValueError("one-point methods need n_series == 1; use update_many")

    def score_one(self, x: float, t) -> float:
        """Score ``x`` at time ``t`` without learning from it."""
        self._check_one()
        y, tt = self._prep([x], t)
        z, _, _ = self._score(y, tt)
        z = np.where(np.isfinite(y), z, 0.0)
        return float(1.0 - 2.0 * ndtr(-abs(z[0])))

    def learn_one(self, x: float, t) -> "Detector":
        """Learn from ``x`` at time ``t``."""
        self._check_one()
        y, tt = self._prep([x], t)
        z, _, _ = self._score(y, tt)
        self._learn(y, tt, np.where(np.isfinite(y), z, 0.0))
        return self

    def update(self, x: float, t) -> DetectorResult:
        """Score ``x`` (using only data before ``t``), then learn it."""
        self._check_one()
        score, z, expected, fired = self.update_many([x], t)
        return DetectorResult(float(score[0]), float(z[0]), float(expected[0]), bool(fired[0]))

    # -- state ---------------------------------------------------------
    def _pack(self, i: int) -> bytes:
        """Series ``i``'s state as little-endian bytes (fields in declaration order)."""
        return b"".join(self.s[k][i].astype(self.s[k].dtype.newbyteorder("<")).tobytes() for k in self._shapes())

    def _unpack(self, i: int, buf: bytes, pos: int = 0) -> int:
        """Load series ``i`` from ``buf`` at ``pos``; returns the position after this detector."""
        for k, shp in self._shapes().items():
            dt = self.s[k].dtype.newbyteorder("<")
            size = (int(np.prod(shp)) if shp else 1)
            nb = size * dt.itemsize
            if pos + nb > len(buf):
                raise ValueError("state is too short for this configuration")
            self.s[k][i] = np.frombuffer(buf, dtype=dt, count=size, offset=pos).reshape(shp)
            pos += nb
        self._memo = None
        return pos

    def reset(self, rows) -> None:
        """Put ``rows`` back to a new series' state (same configuration)."""
        fresh = type(self)(n_series=1, **self.config())
        for k, v in self.s.items():
            v[rows] = fresh.s[k][0]
        self._memo = None

    def state_size(self) -> int:
        """Bytes of state per series."""
        return sum((int(np.prod(shp)) if shp else 1) * self.s[k].dtype.itemsize for k, shp in self._shapes().items())

    def to_state(self, i: int = 0) -> dict:
        """JSON-able state of series ``i``: kind, config and the packed bytes (base64)."""
        return {"kind": type(self).__name__, "config": self.config(),
                "data": base64.b64encode(self._pack(i)).decode()}

    def load_state(self, state: dict, i: int = 0) -> "Detector":
        buf = base64.b64decode(state["data"])
        if self._unpack(i, buf) != len(buf):
            raise ValueError("state does not match this configuration")
        return self

    @classmethod
    def from_state(cls, state: dict) -> "Detector":
        det = cls(**state.get("config", {}))
        return det.load_state(state)


class Clock:
    """Per-series clock fields: last timestamp and typical spacing (for gaps / irregular time).

    ``steps(t)`` returns the elapsed time in units of the typical spacing
    (1.0 for a regular stream, > 1 after a gap), without mutating state.
    """

    fields = {"last_t": (), "dt": ()}

    @staticmethod
    def steps(s, t):
        dt = t - s["last_t"][:, 0] if s["last_t"].ndim == 2 else t - s["last_t"]
        typ = s["dt"]
        st = np.where((typ > 0) & np.isfinite(dt), dt / np.where(typ > 0, typ, 1.0), 1.0)
        return clip(st, 0.0, 1e6)

    @staticmethod
    def tick(s, t, ok):
        """Advance the clock for series with a valid value (``ok``)."""
        last = s["last_t"]
        seen = last != 0
        dt = np.where(seen, t - last, 0.0)
        typ = s["dt"]
        pos = ok & seen & (dt > 0)
        # robust running typical spacing: log-domain EWMA, outliers (gaps) clipped
        new = np.where(typ > 0, np.exp(np.log(np.where(typ > 0, typ, 1.0))
                                       + 0.05 * clip(np.log(np.where(dt > 0, dt, 1.0) / np.where(typ > 0, typ, 1.0)), -1.0, 1.0)),
                       dt)
        s["dt"][:] = np.where(pos, new, typ)
        s["last_t"][:] = np.where(ok, t, last)
