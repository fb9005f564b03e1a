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


class TailBank(Detector):
    """Per-detector, per-side tail calibration with an adaptive (generalised Pareto) tail.

    One tail model per input column (the ensemble uses two per detector: surprises
    of upward and of downward residuals), so a series whose upward bursts are routine
    learns that *they* are normal while its downward side stays as sharp as its model
    says (a burst-prone count series still alerts on an outage), and a detector that
    is routinely surprised (the spike detector on bursty data) does not dilute the
    evidence of another (the CUSUM's on a lasting drop).

    Each column is a peaks-over-threshold model as in :class:`TailCalibrator` (rate
    ``r`` of surprises above ``u``), but the excesses follow a generalised Pareto
    distribution (Pickands 1975) whose shape ``xi`` is fitted online by the method of
    moments (Hosking & Wallis 1987, "Parameter and quantile estimation for the
    generalized Pareto distribution", Technometrics 29) from the running mean ``beta``
    and mean square ``m2`` of the excesses: ``xi = (1 - beta^2 / var) / 2`` clipped to
    ``[0, max_shape]``, ``sigma = beta (1 - xi)``. With ``xi = 0`` this is the
    exponential tail of :class:`TailCalibrator` (the identity for a well-specified
    model); a heavy-tailed series (Pareto bursts give surprises with a power-law tail)
    gets ``xi > 0``, and its largest bursts are judged against a power law rather than
    an exponential that they would overshoot. The shape is never negative: a short
    tail never makes a series *more* alarm-prone than its model. SPOT (Siffer et al.
    2017, KDD) uses the same GPD tail, fitted by maximum likelihood in batches.

    Parameters
    ----------
    n_tails : int
        Tail models (columns) per series.
    u, n0, k0, min_rate, beta_rate : float
        As in :class:`TailCalibrator` (threshold surprise, prior weights, slowest rates).
    cap : float
        Excesses are capped at ``cap * beta`` when learning (generous: a tight cap hides the heavy
        tail the shape is fitted from; 20 was chosen on the generated corpus of
        :mod:`benchmarks.synth`, where 4 doubled the false alerts on bursty counts).
    max_shape : float
        Largest shape ``xi`` (the moment estimate cannot exceed 0.5 anyway).
    n_series : int
        Number of series.

    Examples
    --------
    >>> import numpy as np
    >>> from patrol.detectors.calibration import TailBank
    >>> bank = TailBank(n_tails=2)
    >>> rng = np.random.default_rng(0)
    >>> for _ in range(3000):        # column 0: routine heavy-tailed bursts; column 1: quiet
    ...     s0 = 2.5 + 3.0 * rng.pareto(2.0) if rng.random() < 0.05 else 0.2
    ...     bank.learn(np.array([[s0, 0.2]]))
    >>> c = bank.calibrate(np.array([[12.0, 12.0]]))[0]
    >>> bool(c[0] < 3.5 < c[1])      # the same surprise is routine on one side only
    True
    """

    name = "tails"

    def __init__(self, n_tails=2, u=2.5, n0=200.0, k0=5.0, min_rate=1.0 / 3000, beta_rate=0.02, cap=20.0,
                 max_shape=0.5, n_series=1):
        self.n_tails, self.u, self.n0, self.k0 = int(n_tails), u, n0, k0
        self.min_rate, self.beta_rate, self.cap, self.max_shape = min_rate, beta_rate, cap, max_shape
        super().__init__(n_series)

    def config(self):
        return dict(n_tails=self.n_tails, u=self.u, n0=self.n0, k0=self.k0, min_rate=self.min_rate,
                    beta_rate=self.beta_rate, cap=self.cap, max_shape=self.max_shape)

    def _shapes(self):
        c = (self.n_tails,)
        return {"n": (), "k": c, "r": c, "beta": c, "m2": c}

    def _init(self):
        self.s["r"][:] = 10.0 ** -self.u
        self.s["beta"][:] = LOG10E
        self.s["m2"][:] = 2.0 * LOG10E ** 2   # prior: exponential excesses (E[x^2] = 2 beta^2)

    def shape(self):
        """Fitted GPD shape ``xi`` per series and column."""
        b = self.s["beta"]
        var = np.maximum(self.s["m2"] - b * b, 1e-12)
        return clip(0.5 * (1.0 - b * b / var), 0.0, self.max_shape)

    def calibrate(self, S):
        """Calibrated surprise ``-log10 P(S' >= S)`` per column; ``S`` is (n_series, n_tails)."""
        s = self.s
        L = -np.log10(clip(s["r"], 1e-6, 0.5))
        xi = self.shape()
        sig = s["beta"] * (1.0 - xi)
        x = np.maximum(S - self.u, 0.0) / sig
        tail = np.where(xi > 1e-6, np.log1p(xi * x) / np.maximum(xi, 1e-6), x) * LOG10E
        return np.where(S > self.u, L + tail, S * (L / self.u))

    def learn(self, S, ok=None):
        s = self.s
        S = np.asarray(S, dtype=np.float64).reshape(self.n_series, self.n_tails)
        ok = np.ones(self.n_series, bool) if ok is None else np.asarray(ok, bool)
        okc = ok[:, None]
        exc = S > self.u
        a_r = np.maximum(1.0 / (s["n"] + self.n0), self.min_rate)[:, None]
        s["r"][:] = np.where(okc, s["r"] + a_r * (exc - s["r"]), s["r"])
        # excesses capped (relative to the current mean) so one incident cannot blind the series
        x = np.minimum(S - self.u, self.cap * s["beta"])
        a_b = np.maximum(1.0 / (s["k"] + self.k0), self.beta_rate)
        upd = okc & exc
        s["beta"][:] = np.where(upd, s["beta"] + a_b * (x - s["beta"]), s["beta"])
        s["m2"][:] = np.where(upd, s["m2"] + a_b * (x * x - s["m2"]), s["m2"])
        s["k"][:] = np.where(upd, s["k"] + 1.0, s["k"])
        s["n"][:] = np.where(ok, s["n"] + 1.0, s["n"])
