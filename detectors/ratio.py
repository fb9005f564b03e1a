"""Ratio detector over the counts behind the ratio (beta-binomial predictive).

An error ratio of 1/3 is not the same evidence as 1000/3000. This detector
keeps exponentially discounted numerator and denominator totals (a conjugate
Beta posterior for the rate, with forgetting) and scores each new
``k`` out of ``n`` by its mid-p tail probability under the Beta-Binomial
posterior predictive (see e.g. Gelman et al., *Bayesian Data Analysis*, ch. 2
and 5). The Beta's concentration is capped at ``max_conc`` so extra-binomial
(over-dispersed) variation between windows widens the band.

Examples
--------
>>> from detectors.ratio import RatioDetector
>>> det = RatioDetector()
>>> for i in range(200):                        # ~1% errors over ~1000 requests
...     _ = det.update(k=10 + i % 3, n=1000, t=60.0 * i)
>>> det.update(k=1, n=3, t=12000.0).fired       # 1 error out of 3: noise
False
>>> det.update(k=200, n=1000, t=12060.0).fired  # 20%: an incident
True
"""
from __future__ import annotations

import numpy as np
from scipy.stats import betabinom

from .base import Clock, Detector, DetectorResult, tail_to_z, clip


class RatioDetector(Detector):
    """Beta-binomial detector for ``k`` events out of ``n`` trials per window.

    Parameters
    ----------
    forget : float
        Per-point discount of past counts (0.99 ~ 100-point memory).
    max_conc : float
        Cap of the Beta concentration (over-dispersion allowance).
    prior_rate : float
        Prior rate (weight of one trial).
    z_alarm : float
        ``|z|`` at or above which the detector fires.
    warmup : int
        Points before scoring starts.
    """

    name = "ratio"

    def __init__(self, forget=0.99, max_conc=300.0, prior_rate=0.01, z_alarm=5.0, warmup=20, n_series=1):
        self.forget, self.max_conc, self.prior_rate = forget, max_conc, prior_rate
        self.z_alarm, self.warmup = z_alarm, warmup
        super().__init__(n_series)

    def config(self):
        return dict(forget=self.forget, max_conc=self.max_conc, prior_rate=self.prior_rate,
                    z_alarm=self.z_alarm, warmup=self.warmup)

    def _shapes(self):
        return {"n": (), "a": (), "b": (), **Clock.fields}

    def rate(self):
        s = self.s
        return (s["a"] + self.prior_rate) / (s["b"] + 1.0)

    def z_of(self, k, n):
        """Signed Gaussian-equivalent z of ``k`` out of ``n`` (mid-p, both tails)."""
        p = self.rate()
        conc = np.minimum(self.s["b"], self.max_conc) + 1.0
        a, b = p * conc, (1.0 - p) * conc
        nn = np.maximum(np.round(n), 0).astype(np.int64)
        kk = clip(np.round(k), 0, nn).astype(np.int64)
        pm = betabinom.pmf(kk, nn, a, b)
        up = betabinom.sf(kk, nn, a, b) + 0.5 * pm        # P(K > k) + P(K = k) / 2
        dn = betabinom.cdf(kk - 1, nn, a, b) + 0.5 * pm   # P(K < k) + P(K = k) / 2
        z = np.where(up < dn, np.maximum(tail_to_z(up), 0.0), np.minimum(-tail_to_z(dn), 0.0))
        return np.where(nn > 0, z, 0.0)

    def update_counts(self, k, n, t):
        """Batch path: score then learn ``k`` out of ``n`` for every series."""
        k = np.asarray(k, dtype=np.float64).reshape(self.n_series)
        n = np.asarray(n, dtype=np.float64).reshape(self.n_series)
        tt = np.broadcast_to(np.asarray(t, dtype=np.float64), (self.n_series,))
        ok = np.isfinite(k) & np.isfinite(n) & (n > 0)
        kk, nn = np.where(ok, k, 0.0), np.where(ok, n, 0.0)
        z = np.where(ok & (self.s["n"] >= self.warmup), self.z_of(kk, nn), 0.0)
        expected = self.rate()
        s = self.s
        s["a"][:] = np.where(ok, self.forget * s["a"] + kk, s["a"])
        s["b"][:] = np.where(ok, self.forget * s["b"] + nn, s["b"])
        s["n"][:] = np.where(ok, s["n"] + 1.0, s["n"])
        Clock.tick(s, tt, ok)
        return z, expected, np.abs(z) >= self.z_alarm

    def update(self, k, n, t) -> DetectorResult:  # type: ignore[override]
        """Score ``k`` events out of ``n`` at time ``t``, then learn them."""
        from scipy.special import ndtr
        self._check_one()
        z, e, f = self.update_counts([k], [n], t)
        return DetectorResult(float(1 - 2 * ndtr(-abs(z[0]))), float(z[0]), float(e[0]), bool(f[0]))

    def score_one(self, x, t, n=None):  # x is the ratio
        from scipy.special import ndtr
        n = 1.0 if n is None else n
        z = self.z_of(np.array([x * n]), np.array([float(n)]))
        return float(1 - 2 * ndtr(-abs(z[0])))

    def learn_one(self, x, t, n=None):
        n = 1.0 if n is None else n
        self.update(x * n, n, t)
        return self
