"""Bayesian online changepoint detection (Adams & MacKay 2007).

Adams, R. P. and MacKay, D. J. C., "Bayesian Online Changepoint Detection",
arXiv:0710.3742 (2007). The run length ``r`` (points since the last change)
has a posterior updated by message passing: each run either grows (the point
fits the current segment's Student-t predictive) or resets to 0 with a
constant hazard ``1 / expected_run``. Segments are Gaussian with unknown mean
and variance (Normal-Gamma conjugate prior, set from a short warm-up). The run
length is truncated at ``max_run`` (the last bin absorbs longer runs), so the
state is a few fixed-size arrays.

``update`` reports the point's predictive tail probability (as ``score`` and a
Gaussian-equivalent ``z``) and fires when most of the posterior mass moves to
a short run (``P(r <= short) >= cp_threshold``) after a long stable run: a
change point.

Examples
--------
>>> import numpy as np
>>> from patrol.detectors.experimental.bocpd import BOCPDDetector
>>> rng = np.random.default_rng(2)
>>> x = np.r_[rng.normal(0, 1, 200), rng.normal(4, 1, 100)]
>>> det = BOCPDDetector()
>>> fired = [det.update(v, t=60.0 * i).fired for i, v in enumerate(x)]
>>> any(fired[:200]), 200 <= fired.index(True) < 210
(False, True)
"""
from __future__ import annotations

import numpy as np
from scipy.special import gammaln, logsumexp, stdtr

from ..base import DetectorResult, tail_to_z


class BOCPDDetector:
    """One series, river style (``learn_one`` / ``score_one`` / ``update``).

    Parameters
    ----------
    expected_run : float
        Prior mean segment length (hazard ``1 / expected_run``).
    max_run : int
        Truncation of the run-length distribution.
    warmup : int
        Points used to set the Normal-Gamma prior (mean, variance).
    kappa0, alpha0 : float
        Prior strength of the mean and of the variance.
    short : int
        Run lengths counted as "just changed".
    cp_threshold : float
        Posterior mass on short runs at which the detector fires.
    """

    name = "bocpd"

    def __init__(self, expected_run=250.0, max_run=200, warmup=30, kappa0=0.1, alpha0=2.0, short=3,
                 cp_threshold=0.5):
        self.expected_run, self.max_run, self.warmup = expected_run, int(max_run), int(warmup)
        self.kappa0, self.alpha0, self.short, self.cp_threshold = kappa0, alpha0, int(short), cp_threshold
        self.n = 0
        self.sum = self.sumsq = 0.0
        self.prior = None
        self.logR = self.mu = self.kappa = self.alpha = self.beta = None
        self._was_stable = False

    def _start(self):
        m = self.sum / self.n
        var = max(self.sumsq / self.n - m * m, 1e-12 + (1e-3 * m) ** 2)
        self.prior = (m, self.kappa0, self.alpha0, var * (self.alpha0 - 1.0))
        self.logR = np.array([0.0])
        self.mu, self.kappa, self.alpha, self.beta = (np.array([v], float) for v in self.prior)

    def _pred(self, x):
        df = 2 * self.alpha
        scale = np.sqrt(self.beta * (self.kappa + 1) / (self.alpha * self.kappa))
        tt = (x - self.mu) / scale
        logpdf = (gammaln((df + 1) / 2) - gammaln(df / 2) - 0.5 * np.log(df * np.pi) - np.log(scale)
                  - (df + 1) / 2 * np.log1p(tt * tt / df))
        return logpdf, tt, df

    def score_one(self, x: float, t=None) -> float:
        """``1 - p``, ``p`` the two-sided tail probability under the run-length mixture."""
        if self.logR is None or not np.isfinite(x):
            return 0.0
        _, tt, df = self._pred(x)
        p = float(np.sum(np.exp(self.logR) * 2 * stdtr(df, -np.abs(tt))))
        return 1.0 - min(max(p, 0.0), 1.0)

    def learn_one(self, x: float, t=None) -> "BOCPDDetector":
        if not np.isfinite(x):
            return self
        self.n += 1
        if self.logR is None:
            self.sum += x
            self.sumsq += x * x
            if self.n >= self.warmup:
                self._start()
            return self
        H = 1.0 / self.expected_run
        logpdf, _, _ = self._pred(x)
        grow = self.logR + logpdf + np.log1p(-H)
        cp = logsumexp(self.logR + logpdf + np.log(H))
        newR = np.concatenate([[cp], grow])
        mu = (self.kappa * self.mu + x) / (self.kappa + 1)
        beta = self.beta + self.kappa * (x - self.mu) ** 2 / (2 * (self.kappa + 1))
        m0, k0, a0, b0 = self.prior
        mu, kappa = np.r_[m0, mu], np.r_[k0, self.kappa + 1]
        alpha, beta = np.r_[a0, self.alpha + 0.5], np.r_[b0, beta]
        if len(newR) > self.max_run:  # truncate: the last bin absorbs longer runs
            newR[-2] = np.logaddexp(newR[-2], newR[-1])
            newR, mu, kappa, alpha, beta = newR[:-1], mu[:-1], kappa[:-1], alpha[:-1], beta[:-1]
        self.logR = newR - logsumexp(newR)
        self.mu, self.kappa, self.alpha, self.beta = mu, kappa, alpha, beta
        return self

    def change_probability(self) -> float:
        """Posterior probability that the current run is at most ``short`` points long."""
        if self.logR is None:
            return 0.0
        return float(np.exp(logsumexp(self.logR[: self.short + 1])))

    def update(self, x: float, t=None) -> DetectorResult:
        score = self.score_one(x, t)
        stable = self.logR is not None and self.change_probability() < 0.1
        self.learn_one(x, t)
        cp = self.change_probability()
        fired = bool(self._was_stable and cp >= self.cp_threshold)
        if self.logR is not None:
            self._was_stable = stable or (self._was_stable and cp < self.cp_threshold)
        z = float(tail_to_z(np.array((1.0 - score) / 2))) if score > 0 else 0.0
        mean = float(np.sum(np.exp(self.logR) * self.mu)) if self.logR is not None else float("nan")
        return DetectorResult(score, z, mean, fired)

    def to_state(self) -> dict:
        arr = lambda a: None if a is None else a.tolist()  # noqa: E731
        return {"kind": "BOCPDDetector",
                "config": dict(expected_run=self.expected_run, max_run=self.max_run, warmup=self.warmup,
                               kappa0=self.kappa0, alpha0=self.alpha0, short=self.short,
                               cp_threshold=self.cp_threshold),
                "n": self.n, "sum": self.sum, "sumsq": self.sumsq, "prior": self.prior,
                "logR": arr(self.logR), "mu": arr(self.mu), "kappa": arr(self.kappa), "alpha": arr(self.alpha),
                "beta": arr(self.beta), "was_stable": self._was_stable}

    @classmethod
    def from_state(cls, state: dict) -> "BOCPDDetector":
        det = cls(**state["config"])
        det.n, det.sum, det.sumsq = state["n"], state["sum"], state["sumsq"]
        det.prior = None if state["prior"] is None else tuple(state["prior"])
        for k in ("logR", "mu", "kappa", "alpha", "beta"):
            setattr(det, k, None if state[k] is None else np.asarray(state[k], float))
        det._was_stable = state["was_stable"]
        return det
