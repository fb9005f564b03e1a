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

Episode damping (alert suppression): an ongoing incident should alert at its
onset, not on every point. ``novelty`` subtracts the decayed peak of the
calibrated surprises *that were alerted* (``peak * decay`` per point; a point
is alerted when its damped surprise reaches ``alert``), so after an alert a
point scores high again only when it brings evidence beyond what was already
reported (a constant excursion alerts once; a worsening one alerts again).
Surprises below the alert level do not damp what follows: an incident that
builds up over a few points (each a little more surprising) reaches its full
score instead of being charged for its own early, unreported points. NAB
rewards the earliest detection in a window and charges every further alert
outside it, which is the same trade-off an operator has.

Examples
--------
>>> import numpy as np
>>> from patrol.detectors.calibration import TailCalibrator
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
    alert : float
        Damped surprise at or above which a point counts as alerted (the
        ensemble passes ``10 * threshold``); only alerted points raise the peak.
    """

    name = "calibration"

    def __init__(self, u=2.5, n0=200.0, k0=5.0, min_rate=1.0 / 3000, beta_rate=0.02, cap=4.0, decay=0.95,
                 alert=3.5, n_series=1):
        self.u, self.n0, self.k0, self.min_rate, self.beta_rate, self.cap = u, n0, k0, min_rate, beta_rate, cap
        self.decay, self.alert = decay, alert
        super().__init__(n_series)

    def config(self):
        return dict(u=self.u, n0=self.n0, k0=self.k0, min_rate=self.min_rate, beta_rate=self.beta_rate, cap=self.cap,
                    decay=self.decay, alert=self.alert)

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
        """Episode damping: calibrated surprise beyond the decayed peak of alerted points.

        The peak is raised only by points whose damped surprise reaches ``alert``
        (what was reported); otherwise it just decays.
        """
        prev = self.s["peak"] * self.decay
        eff = np.maximum(cal - prev, 0.0)
        alerted = eff >= self.alert
        self.s["peak"][:] = np.where(ok, np.where(alerted, np.maximum(cal, prev), prev), self.s["peak"])
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
