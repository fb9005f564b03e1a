"""Level-shift detector: two-sided CUSUM on robustly standardised residuals.

Page's cumulative sum (Page 1954, "Continuous inspection schemes",
Biometrika 41) accumulates ``g+ = max(0, g+ + z - k)`` and
``g- = max(0, g- - z - k)`` where ``z`` is the residual from a slow robust
baseline in scale units (clipped at ``c`` so one spike cannot trip it). For
Gaussian increments the stationary tail is ``P(g > x) ~ exp(-2 k x)``, which
turns ``g`` into a tail probability; the detector fires at ``g >= h`` and then
re-baselines to the mean since the estimated change point (the last time the
sum was 0), as in Page-Hinkley / CUSUM change-point estimation.

Examples
--------
>>> import numpy as np
>>> from patrol.detectors.changepoint import CusumDetector
>>> rng = np.random.default_rng(0)
>>> det = CusumDetector()
>>> fired = [det.update(x, t=60.0 * i).fired for i, x in
...          enumerate(np.r_[rng.normal(0, 1, 300), rng.normal(3, 1, 50)])]
>>> any(fired[:300]), 300 <= fired.index(True) < 310
(False, True)
"""
from __future__ import annotations

import numpy as np

from .base import Clock, Detector, tail_to_z, clip
from .spike import MAD_TO_SIGMA


class CusumDetector(Detector):
    """Two-sided CUSUM level-shift detector with a slow robust baseline.

    Parameters
    ----------
    alpha : float
        Baseline (level) smoothing rate per point.
    beta : float
        Scale smoothing rate per point.
    k : float
        Reference value (half the shift to detect, in scale units).
    h : float
        Decision interval: fires when ``max(g+, g-) >= h``.
    c : float
        Clip of each standardised increment (spike robustness).
    warmup : int
        Points before scoring starts.
    """

    name = "cusum"

    def __init__(self, alpha=0.01, beta=0.01, k=0.5, h=6.0, c=3.0, warmup=60,
                 rel_floor=1e-3, abs_floor=1e-9, n_series=1):
        self.alpha, self.beta, self.k, self.h, self.c, self.warmup = alpha, beta, k, h, c, warmup
        self.rel_floor, self.abs_floor = rel_floor, abs_floor
        super().__init__(n_series)

    def config(self):
        return dict(alpha=self.alpha, beta=self.beta, k=self.k, h=self.h, c=self.c, warmup=self.warmup,
                    rel_floor=self.rel_floor, abs_floor=self.abs_floor)

    def _shapes(self):
        return {"n": (), "mu": (), "dev": (), "gp": (), "gm": (), "sp": (), "np": (), "sm": (), "nm": (),
                **Clock.fields}

    def _sig(self):
        s = self.s
        return np.maximum(s["dev"] * MAD_TO_SIGMA, self.rel_floor * np.abs(s["mu"]) + self.abs_floor)

    def _sums(self, y):
        s = self.s
        z = clip((y - s["mu"]) / self._sig(), -self.c, self.c)
        gp = np.maximum(0.0, s["gp"] + z - self.k)
        gm = np.maximum(0.0, s["gm"] - z - self.k)
        return z, gp, gm

    def _score(self, y, t):
        s = self.s
        _, gp, gm = self._sums(y)
        g = np.maximum(gp, gm)
        ze = np.maximum(tail_to_z(np.exp(-2.0 * self.k * g)), 0.0) * np.where(gp >= gm, 1.0, -1.0)
        ze = np.where(s["n"] >= self.warmup, ze, 0.0)
        return ze, s["mu"].copy(), (g >= self.h) & (s["n"] >= self.warmup)

    def _learn(self, y, t, z):
        s = self.s
        ok = np.isfinite(y)
        yy = np.where(ok, y, s["mu"])
        n = s["n"]
        warm = n < self.warmup
        zc, gp, gm = self._sums(yy)
        sig = self._sig()
        # a gap breaks the run: restart the sums
        gap = Clock.steps(s, t) > 10.0
        gp = np.where(gap | warm, 0.0, gp)
        gm = np.where(gap | warm, 0.0, gm)
        sp = np.where(gp > 0, s["sp"] + yy, 0.0)
        np_ = np.where(gp > 0, s["np"] + 1.0, 0.0)
        sm = np.where(gm > 0, s["sm"] + yy, 0.0)
        nm = np.where(gm > 0, s["nm"] + 1.0, 0.0)
        w = 1.0 / (n + 1.0)
        mu = np.where(warm, s["mu"] + w * (yy - s["mu"]), s["mu"] + self.alpha * zc * sig)
        dev = np.where(warm, np.where(n > 0, s["dev"] + w * (np.abs(yy - s["mu"]) - s["dev"]), 0.0),
                       s["dev"] + self.beta * (np.abs(zc) * sig - s["dev"]))
        up = gp >= self.h
        dn = (gm >= self.h) & ~up
        mu = np.where(up, sp / np.maximum(np_, 1.0), np.where(dn, sm / np.maximum(nm, 1.0), mu))
        fire = up | dn
        for k, v in (("gp", gp), ("gm", gm), ("sp", sp), ("np", np_), ("sm", sm), ("nm", nm)):
            s[k][:] = np.where(ok, np.where(fire, 0.0, v), s[k])
        s["mu"][:] = np.where(ok, mu, s["mu"])
        s["dev"][:] = np.where(ok, dev, s["dev"])
        s["n"][:] = np.where(ok, n + 1.0, n)
        Clock.tick(s, t, ok)
