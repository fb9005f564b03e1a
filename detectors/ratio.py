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
>>> from patrol.detectors.ratio import RatioDetector
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
from scipy.special import betainc, betaln, gammaln

from .base import Clock, Detector, DetectorResult, tail_to_z, clip, Forecast


EXACT_MAX_K = 256  # counts up to this are scored with exact beta-binomial sums


def _exact_mid_p(k, n, a, b):
    """Exact mid-p tails of Beta-Binomial(n, a, b) at ``k``, summing the pmf over ``0..k`` only.

    ``P(K < k) + P(K = k)/2`` needs the terms up to ``k``, whatever ``n`` is; the upper tail is its
    complement (accurate to ~1e-13, i.e. far beyond any alert threshold). One vectorised grid.
    """
    j = np.arange(int(k.max()) + 1, dtype=np.float64)[None, :]
    n_, k_, a_, b_ = n[:, None], k[:, None], a[:, None], b[:, None]
    valid = j <= k_
    jj = np.where(valid, j, 0.0)
    logpmf = (gammaln(n_ + 1) - gammaln(jj + 1) - gammaln(n_ - jj + 1)
              + betaln(jj + a_, n_ - jj + b_) - betaln(a_, b_))
    pmf = np.where(valid, np.exp(logpmf), 0.0)
    rows, kidx = np.arange(len(k)), k.astype(np.int64)
    at = pmf[rows, kidx]
    # cumsum adds left to right, so the result does not depend on the grid width (the batch's
    # largest k): the batch path stays bit-identical to the one-point path
    below = np.cumsum(pmf, axis=1)[rows, kidx] - at
    dn = below + 0.5 * at
    return np.maximum(1.0 - dn, 0.0), dn


def _approx_mid_p(k, n, a, b):
    """Mid-p tails for large ``n``: K/n moment-matched to a Beta distribution.

    Var(K/n) of the Beta-Binomial is p(1-p)/n * (n + c)/(1 + c) with c = a + b; the Beta with the
    same mean and variance has concentration c' = n(1 + c)/(n + c) - 1. Its regularised incomplete
    beta (a vectorised ufunc) replaces scipy's per-element summation, which cost ~60 us a point.
    """
    c = a + b
    p = a / c
    cc = np.maximum(n * (1.0 + c) / (n + c) - 1.0, 1e-3)
    a2, b2 = p * cc, (1.0 - p) * cc
    x_up = np.minimum(k, n - 0.5) / n     # mid-p: half of P(K = k) on each side
    x_dn = np.maximum(k, 0.5) / n
    return betainc(b2, a2, 1.0 - x_up), betainc(a2, b2, x_dn)


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
        nn = np.maximum(np.round(n), 0).astype(np.float64)
        kk = clip(np.round(k), 0, nn).astype(np.float64)
        a, b = np.broadcast_to(a, nn.shape).astype(np.float64), np.broadcast_to(b, nn.shape).astype(np.float64)
        up, dn = np.ones_like(nn), np.ones_like(nn)   # P(K > k) + P(K = k)/2 and P(K < k) + P(K = k)/2
        small = (nn > 0) & (kk <= EXACT_MAX_K)
        if small.any():
            up[small], dn[small] = _exact_mid_p(kk[small], nn[small], a[small], b[small])
        large = (nn > 0) & (kk > EXACT_MAX_K)   # many events: discreteness no longer matters
        if large.any():
            up[large], dn[large] = _approx_mid_p(kk[large], nn[large], a[large], b[large])
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

    def observe(self, values, t, *, n=None, noise=None) -> Forecast:
        """Score then learn ratios ``values`` of ``n`` trials (NaN or ``n <= 0``: missing). ``expected`` is
        the rate before this point; ``sigma`` the standard deviation of a ratio out of ``n`` under the
        learnt (over-dispersed) rate, this point included."""
        x = np.asarray(values, dtype=np.float64).reshape(self.n_series)
        den = np.asarray(n, dtype=np.float64).reshape(self.n_series)
        ok = np.isfinite(x) & np.isfinite(den) & (den > 0)
        z, expected, fired = self.update_counts(np.where(ok, x * den, np.nan), np.where(ok, den, np.nan), t)
        p = self.rate()
        conc = np.minimum(self.s["b"], self.max_conc) + 1.0
        sd = np.sqrt(p * (1 - p) * (1.0 / np.maximum(den, 1.0) + 1.0 / conc))
        return Forecast(z, expected, sd, fired)

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
