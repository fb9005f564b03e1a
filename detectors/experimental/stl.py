"""Optional seasonal detector refitted with statsmodels STL on a schedule.

Keeps a bounded history (``history`` points), finds the period from the data
(autocorrelation peak) unless configured, refits STL (Cleveland et al. 1990,
"STL: A seasonal-trend decomposition procedure based on loess", J. Official
Statistics 6) every ``refit_every`` points, and between refits scores each new
point online against ``trend + seasonal[phase]`` with the robust scale of the
fit's residuals (in-sample residuals understate the forecast error, so the
scale is the larger of that and a running mean absolute out-of-sample error).
This is the heavier, more flexible sibling of
:mod:`detectors.seasonal` (whose state is a small profile); its state includes
the raw history, so it is not part of the default ensemble.

Examples
--------
>>> import numpy as np
>>> from patrol.detectors.experimental.stl import STLDetector
>>> det = STLDetector(history=300, refit_every=50)
>>> x = 10 + 5 * np.sin(2 * np.pi * np.arange(400) / 24) + np.random.default_rng(0).normal(0, .3, 400)
>>> fired = [det.update(v, t=3600.0 * i).fired for i, v in enumerate(x)]
>>> det.period, any(fired[150:])
(24, False)
>>> det.update(x[400 - 24] + 5, t=3600.0 * 400).fired
True
"""
from __future__ import annotations

import numpy as np

from ..base import DetectorResult, tail_to_z  # noqa: F401  (tail_to_z re-exported for symmetry)
from ..spike import MAD_TO_SIGMA


def find_period(x: np.ndarray, min_period: int = 4, max_period: int | None = None) -> int | None:
    """Period (in points) with the highest autocorrelation peak, or None if there is no clear cycle."""
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    n = len(x)
    max_period = max_period or n // 2
    if n < 2 * min_period + 2:
        return None
    x = x - x.mean()
    f = np.fft.rfft(x, 2 * n)
    ac = np.fft.irfft(f * np.conj(f))[:n]
    ac = ac / ac[0] if ac[0] > 0 else ac
    lags = np.arange(min_period, min(max_period, n - 1))
    if len(lags) < 3:
        return None
    a = ac[lags]
    peaks = [i for i in range(1, len(a) - 1) if a[i] >= a[i - 1] and a[i] >= a[i + 1]]
    if not peaks:
        return None
    best = max(peaks, key=lambda i: a[i])
    return int(lags[best]) if a[best] > 0.3 else None


class STLDetector:
    """One series; ``learn_one`` / ``score_one`` / ``update`` with a scheduled STL refit.

    Parameters
    ----------
    period : int or None
        Season length in points; ``None`` finds it from the data at each refit.
    history : int
        Bounded history kept for refits (points).
    refit_every : int
        Points between refits.
    z_alarm : float
        ``|z|`` at or above which the detector fires.
    robust : bool
        Robust STL (iterative down-weighting of outliers).
    """

    name = "stl"

    def __init__(self, period=None, history=2016, refit_every=288, z_alarm=5.0, robust=True):
        self.cfg_period, self.history, self.refit_every = period, int(history), int(refit_every)
        self.z_alarm, self.robust = z_alarm, robust
        self.buf: list[float] = []
        self.n = 0
        self.since = 0
        self.period = None
        self.seasonal = None   # one season of the last fit, indexed by phase
        self.trend = None      # last trend value and slope
        self.slope = 0.0
        self.scale = None
        self.phase0 = 0        # point index of phase 0
        self.err = None        # running mean absolute forecast error

    def _refit(self):
        from statsmodels.tsa.seasonal import STL
        x = np.asarray(self.buf, float)
        per = self.cfg_period or find_period(x)
        self.period = per
        start = self.n - len(x)
        if not per or len(x) < 2 * per + 1:
            med = np.median(x)
            self.seasonal, self.trend, self.slope = None, med, 0.0
            self.scale = max(np.median(np.abs(x - med)) * 1.4826, 1e-9)
            if self.err is None:
                self.err = self.scale / MAD_TO_SIGMA
            return
        res = STL(x, period=per, robust=self.robust).fit()
        self.seasonal = np.asarray(res.seasonal[-per:])
        self.phase0 = self.n - per
        tr = np.asarray(res.trend)
        self.trend, self.slope = tr[-1], (tr[-1] - tr[-min(per, len(tr) - 1) - 1]) / min(per, len(tr) - 1)
        resid = np.asarray(res.resid)
        self.scale = max(np.median(np.abs(resid - np.median(resid))) * 1.4826, 1e-9 + 1e-3 * abs(self.trend))
        del start
        if self.err is None:
            self.err = 2.0 * self.scale / MAD_TO_SIGMA

    def _expect(self):
        if self.scale is None:
            return None, None
        ahead = self.n - (self.phase0 + (self.period or 0)) + 1 if self.seasonal is not None else 0
        e = self.trend + self.slope * ahead
        if self.seasonal is not None:
            e = e + self.seasonal[(self.n - self.phase0) % self.period]
        return e, max(self.scale, (self.err or 0.0) * MAD_TO_SIGMA)

    def score_one(self, x: float, t=None) -> float:
        """``1 - p`` of ``x`` under the last fit (0 before the first fit)."""
        from scipy.special import ndtr
        e, s = self._expect()
        if e is None or not np.isfinite(x):
            return 0.0
        return float(1 - 2 * ndtr(-abs((x - e) / s)))

    def learn_one(self, x: float, t=None) -> "STLDetector":
        if np.isfinite(x):
            self.buf.append(float(x))
            if len(self.buf) > self.history:
                del self.buf[: len(self.buf) - self.history]
        self.n += 1
        self.since += 1
        if self.scale is None and len(self.buf) >= min(self.history, 2 * self.refit_every) or \
                self.scale is not None and self.since >= self.refit_every:
            self.since = 0
            self._refit()
        return self

    def update(self, x: float, t=None) -> DetectorResult:
        e, s = self._expect()
        z = 0.0 if e is None or not np.isfinite(x) else (x - e) / s
        score = self.score_one(x, t)
        if e is not None and np.isfinite(x):  # Huber-clipped, so one outlier barely moves it
            self.err += 0.05 * (min(abs(x - e), 3.0 * s) - self.err)
        self.learn_one(x, t)
        return DetectorResult(score, float(z), float("nan") if e is None else float(e), bool(abs(z) >= self.z_alarm))

    def to_state(self) -> dict:
        return {"kind": "STLDetector", "config": dict(period=self.cfg_period, history=self.history,
                                                      refit_every=self.refit_every, z_alarm=self.z_alarm,
                                                      robust=self.robust),
                "buf": list(self.buf), "n": self.n, "since": self.since, "period": self.period,
                "seasonal": None if self.seasonal is None else self.seasonal.tolist(),
                "trend": self.trend, "slope": self.slope, "scale": self.scale, "phase0": self.phase0,
                "err": self.err}

    @classmethod
    def from_state(cls, state: dict) -> "STLDetector":
        det = cls(**state["config"])
        for k in ("buf", "n", "since", "period", "trend", "slope", "scale", "phase0", "err"):
            setattr(det, k, state[k])
        det.seasonal = None if state["seasonal"] is None else np.asarray(state["seasonal"])
        return det
