"""Calibration of raw surprises into tail probabilities (peaks over threshold).

Each detector's residual becomes a surprise ``s = -log10 p`` under its own
model. Real series break model assumptions (heavy tails, routine bursts), so
the ensemble recalibrates ``s`` against the series' own history with an
exponential (GPD shape 0) tail fitted to the excesses over a fixed level ``u``
(peaks over threshold; Pickands 1975, and the streaming form of Siffer et al.
2017, "Anomaly detection in streams with extreme value theory", KDD):

``P(S > s) = r * exp(-(s - u) / beta)`` for ``s > u``,

with ``r`` the running rate of exceedances of ``u`` and ``beta`` the running
mean excess. A well-specified model has ``r = 10**-u`` and
``beta = log10(e)``, and then the calibration is the identity; a series that
bursts routinely gets a larger ``r`` / ``beta`` and lower scores for the same
surprise. Priors (``n0`` points, ``k0`` exceedances at the ideal values) make
the first points behave sensibly; excesses are capped when learning so one
incident does not blind the series to the next.

Episode damping: an ongoing incident should alert at its onset, not on every
point. ``novelty`` subtracts the decayed peak of recent calibrated surprises
(``peak * decay`` per point), so a point scores high only when it brings
evidence beyond what the episode already showed (a constant excursion alerts
once; a worsening one alerts again).

Examples
--------
>>> import numpy as np
>>> from detectors.calibration import TailCalibrator
>>> cal = TailCalibrator()
>>> bool(np.isclose(cal.calibrate(np.array([5.0]))[0], 5.0))   # prior = identity
True
>>> for _ in range(500):                          # surprise 6 is routine here
...     cal.learn(np.array([6.0 if _ % 10 == 0 else 0.3]))
>>> float(cal.calibrate(np.array([6.0]))[0]) < 2.0
True
"""
from __future__ import annotations

import numpy as np

from .base import Detector, clip

LOG10E = float(np.log10(np.e))


class TailCalibrator(Detector):
    """Vectorised peaks-over-threshold calibration of surprises.

    Parameters
    ----------
    u : float
        Threshold surprise (``-log10 p``) above which excesses are modelled.
    n0, k0 : float
        Prior weights (points, exceedances) at the ideal values.
    min_rate : float
        Slowest learning rate of the exceedance rate (long memory).
    beta_rate : float
        Slowest learning rate of the mean excess.
    cap : float
        Excesses are capped at ``cap * beta`` when learning.
    decay : float
        Per-point decay of the episode peak (episode damping; 0 disables).
    """

    name = "calibration"

    def __init__(self, u=2.5, n0=200.0, k0=5.0, min_rate=1.0 / 3000, beta_rate=0.02, cap=4.0, decay=0.9,
                 n_series=1):
        self.u, self.n0, self.k0, self.min_rate, self.beta_rate, self.cap = u, n0, k0, min_rate, beta_rate, cap
        self.decay = decay
        super().__init__(n_series)

    def config(self):
        return dict(u=self.u, n0=self.n0, k0=self.k0, min_rate=self.min_rate, beta_rate=self.beta_rate, cap=self.cap,
                    decay=self.decay)

    def _shapes(self):
        return {"n": (), "k": (), "r": (), "beta": (), "peak": ()}

    def _init(self):
        self.s["r"][:] = 10.0 ** -self.u
        self.s["beta"][:] = LOG10E

    def calibrate(self, S):
        """Calibrated surprise ``-log10 P(S' >= S)`` for the current state."""
        s = self.s
        L = -np.log10(clip(s["r"], 1e-6, 0.5))
        below = S * (L / self.u)
        above = L + (S - self.u) * (LOG10E / s["beta"])
        return np.where(S > self.u, above, below)

    def novelty(self, cal, ok):
        """Bursts: many moderately surprising points close together are themselves an
anomaly (Numenta's likelihood averages raw scores over a short window for the
same reason). ``ks``, an exponentially weighted count of recent exceedances of
``u`` (``burst_decay`` per point, ~10 points), is compared with the long-run
rate: ``P(K >= ks)`` for ``K ~ Poisson(r / (1 - burst_decay))``.

Episode damping: calibrated surprise beyond the decayed recent peak (then update the peak)."""
        prev = self.s["peak"] * self.decay
        eff = np.maximum(cal - prev, 0.0)
        self.s["peak"][:] = np.where(ok, np.maximum(cal, prev), self.s["peak"])
        return eff

    def learn(self, S, ok=None):
        s = self.s
        ok = np.ones(S.shape, bool) if ok is None else ok
        exc = S > self.u
        a_r = np.maximum(1.0 / (s["n"] + self.n0), self.min_rate)
        s["r"][:] = np.where(ok, s["r"] + a_r * (exc - s["r"]), s["r"])
        a_b = np.maximum(1.0 / (s["k"] + self.k0), self.beta_rate)
        x = np.minimum(S - self.u, self.cap * s["beta"])
        upd = ok & exc
        s["beta"][:] = np.where(upd, s["beta"] + a_b * (x - s["beta"]), s["beta"])
        s["k"][:] = np.where(upd, s["k"] + 1.0, s["k"])
        s["n"][:] = np.where(ok, s["n"] + 1.0, s["n"])
