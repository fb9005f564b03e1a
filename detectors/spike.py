"""Spike detector: robust EWMA level and scale with outlier-damped (Huber) updates.

The level is an exponentially weighted M-estimate of location and the scale an
exponentially weighted mean absolute deviation; a point's residual is clipped
at ``c`` scales before it updates either, so a spike barely moves the baseline
(Huber 1964; the robust EWMA of e.g. Gelper, Fried & Croux, "Robust forecasting
with exponential and Holt-Winters smoothing", J. Forecasting 2010). After
``reset_after`` consecutive outliers on the same side, the level re-baselines to
the new values (a level shift is not a spike).

A point must also be surprising as a *step* from the previous value (a
random-walk forecast with its own robust scale of first differences): the
detector reports the less surprising of the two residuals. So after a jump the
next points at the new level are not alarms again, and neither is the return
to normal after a spike; isolated spikes and the onset of shifts still are.
A value *between* the level and the previous value (the two residuals of
opposite signs: the decay of a burst) gets ``z = 0`` when ``between_is_normal``
(the default): neither forecast finds it surprising in a consistent direction,
and reporting the step residual would give the falling edge of every upward
burst a large *downward* surprise.

Examples
--------
>>> from patrol.detectors.spike import SpikeDetector
>>> det = SpikeDetector()
>>> for i in range(100):
...     _ = det.update(10.0 + 0.1 * (i % 5), t=60.0 * i)
>>> r = det.update(30.0, t=6000.0)
>>> r.fired, r.z > 10
(True, True)
>>> det.update(10.2, t=6060.0).fired
False
"""
from __future__ import annotations

import numpy as np

from .base import Clock, Detector, Forecast, clip

MAD_TO_SIGMA = 1.0 / 0.7978845608  # E|N(0, s)| = 0.798 s


class SpikeDetector(Detector):
    """Robust EWMA / mean-absolute-deviation spike detector.

    Parameters
    ----------
    alpha : float
        Level smoothing rate (per point).
    beta : float
        Scale smoothing rate (per point).
    c : float
        Huber clipping of residuals in scale units (outlier damping).
    z_alarm : float
        ``|z|`` at or above which the detector fires.
    warmup : int
        Points before scoring starts (running mean/MAD during warm-up).
    reset_after : int
        Consecutive same-side outliers after which the level re-baselines.
    rel_floor, abs_floor : float
        Scale floor ``rel_floor * |level| + abs_floor`` (flat series).
    between_is_normal : bool
        Score 0 for a value between the level and the previous value.
    n_series : int
        Number of series scored together (batch path).
    """

    name = "spike"

    def __init__(self, alpha=0.2, beta=0.02, c=3.0, z_alarm=5.0, warmup=20, reset_after=6,
                 rel_floor=1e-3, abs_floor=1e-9, between_is_normal=True, n_series=1):
        self.alpha, self.beta, self.c, self.z_alarm = alpha, beta, c, z_alarm
        self.between_is_normal = bool(between_is_normal)
        self.warmup, self.reset_after = warmup, reset_after
        self.rel_floor, self.abs_floor = rel_floor, abs_floor
        super().__init__(n_series)
        self.extra_sigma = None  # per-point scale floor during one observe() (e.g. seasonal phase noise)

    def config(self):
        return dict(alpha=self.alpha, beta=self.beta, c=self.c, z_alarm=self.z_alarm, warmup=self.warmup,
                    reset_after=self.reset_after, rel_floor=self.rel_floor, abs_floor=self.abs_floor,
                    between_is_normal=self.between_is_normal)

    def observe(self, values, t, *, n=None, noise=None) -> Forecast:
        """Score then learn; the forecast is the level (``sigma``: its scale once warm). ``noise`` floors
        the scale for this point (an ensemble passes the seasonal profile's noise at this phase)."""
        s = self.s
        self.extra_sigma = noise
        try:
            level, seen = s["level"].copy(), s["n"] >= 1
            sigma = np.where(s["n"] >= self.warmup, self.sigma(), np.inf)
            _, z, _, fired = self.update_many(values, t)
        finally:
            self.extra_sigma = None
        return Forecast(z, np.where(seen, level, np.nan), sigma, fired)

    def _shapes(self):
        return {"n": (), "level": (), "dev": (), "run": (), "prev": (), "ddev": (), **Clock.fields}

    def sigma(self):
        s = self.s
        sig = np.maximum(s["dev"] * MAD_TO_SIGMA, self.rel_floor * np.abs(s["level"]) + self.abs_floor)
        return sig if self.extra_sigma is None else np.maximum(sig, self.extra_sigma)

    def dsigma(self):
        s = self.s
        sig = np.maximum(s["ddev"] * MAD_TO_SIGMA, self.rel_floor * np.abs(s["level"]) + self.abs_floor)
        return sig if self.extra_sigma is None else np.maximum(sig, self.extra_sigma)

    def _raw(self, y, t):
        s = self.s
        # predictive scale grows after a gap (level is a random walk between points)
        steps = Clock.steps(s, t)
        gap = clip(steps - 1.0, 0.0, 100.0)
        sig = self.sigma() * np.sqrt(1.0 + self.alpha * gap)
        return (y - s["level"]) / sig

    def _step_z(self, y, t):
        s = self.s
        steps = clip(Clock.steps(s, t), 1.0, 100.0)
        return (y - s["prev"]) / (self.dsigma() * np.sqrt(steps))

    def _score(self, y, t):
        s = self.s
        zl = self._raw(y, t)
        zd = self._step_z(y, t)
        z = np.where(np.abs(zd) < np.abs(zl), zd, zl)
        if self.between_is_normal:
            z = np.where(zd * zl < 0, 0.0, z)
        z = np.where(s["n"] >= self.warmup, z, 0.0)
        expected = np.where(s["n"] > 0, s["level"], np.nan)
        return z, expected, np.abs(z) >= self.z_alarm

    def _learn(self, y, t, z):
        s = self.s
        ok = np.isfinite(y)
        yy = np.where(ok, y, s["level"])
        n = s["n"]
        zr = self._raw(yy, t)
        sig = self.sigma()
        warm = n < self.warmup
        # warm-up: running mean / mean absolute deviation
        w = 1.0 / (n + 1.0)
        lvl_w = s["level"] + w * (yy - s["level"])
        dev_w = np.where(n > 0, s["dev"] + w * (np.abs(yy - s["level"]) - s["dev"]), 0.0)
        # steady state: Huber-clipped EWMA
        zc = clip(zr, -self.c, self.c)
        lvl = s["level"] + self.alpha * zc * sig
        dev = s["dev"] + self.beta * (np.abs(zc) * sig - s["dev"])
        out = np.abs(zr) > self.c
        sgn = np.sign(zr)
        run = np.where(out & ~warm, np.where(sgn * s["run"] > 0, s["run"] + sgn, sgn), 0.0)
        reset = np.abs(run) >= self.reset_after
        lvl = np.where(reset, yy, lvl)
        run = np.where(reset, 0.0, run)
        # scale of first differences (random-walk forecast), Huber-damped
        steps = clip(Clock.steps(s, t), 1.0, 100.0)
        d = (yy - s["prev"]) / np.sqrt(steps)
        dsig = self.dsigma()
        dd_w = np.where(n > 1, s["ddev"] + (np.abs(d) - s["ddev"]) / np.maximum(n, 1.0), 0.0)
        dd = s["ddev"] + self.beta * (np.minimum(np.abs(d), self.c * dsig) - s["ddev"])
        s["ddev"][:] = np.where(ok & (n > 0), np.where(warm, dd_w, dd), s["ddev"])
        s["prev"][:] = np.where(ok, yy, s["prev"])
        s["level"][:] = np.where(ok, np.where(warm, lvl_w, lvl), s["level"])
        s["dev"][:] = np.where(ok, np.where(warm, dev_w, dev), s["dev"])
        s["run"][:] = np.where(ok, run, s["run"])
        s["n"][:] = np.where(ok, n + 1.0, n)
        Clock.tick(s, t, ok)
