"""Residual likelihood: is the recent *average* residual unusual for this series?

Point detectors judge one residual at a time, so a slow drift (each point a
little off, always on the same side) or a rise in the density of moderate
spikes never looks surprising. This detector takes the signed standardised
residuals ``z`` of faster models (the spike detector's, the seasonal
detector's), clipped at ``clip`` scales, smooths them with a short EWMA
``m`` (rate ``short_rate``, ~20 points) and asks how unusual ``m`` is against
the long-run distribution of ``m`` in this same series: running mean ``mu`` and
variance ``v`` of ``m`` (rate ``max(1/n, long_rate)``, ~2000 points), tail
probability ``p = 2 Q(|m - mu| / sqrt(v + var_floor))``.

This is Numenta's anomaly likelihood (Ahmad, Lavin, Purdy & Agha 2017,
"Unsupervised real-time anomaly detection for streaming data",
Neurocomputing 262: tail probability of a short-window mean of scores against
a long window's distribution) applied to *signed* residuals, i.e. an EWMA
control chart (Roberts 1959, "Control chart tests based on geometric moving
averages", Technometrics 1) whose control limits are estimated from the series
itself, so autocorrelated residuals (a model that is a bit late after every
change) set their own, wider limits instead of alarming. Being calibrated
against its own history, its surprise ``-log10 p`` is not recalibrated by
:class:`~detectors.calibration.TailCalibrator`; the ensemble takes the larger
of the two.

Each series holds one set of statistics per input channel (``n_channels``).
Nothing is scored before ``warmup`` points (the long-run moments need data).

Examples
--------
>>> import numpy as np
>>> from patrol.detectors.likelihood import ResidualLikelihood
>>> rng = np.random.default_rng(3)
>>> lk = ResidualLikelihood(n_channels=1)
>>> s = [lk.update_many(rng.normal(size=(1, 1)), t=60.0 * i)[0][0] for i in range(2000)]
>>> bool(max(s[500:]) < 3.5)             # white residuals: nothing unusual
True
>>> off = [lk.update_many(np.array([[2.0]]), t=60.0 * (2000 + i))[0][0] for i in range(30)]
>>> bool(max(off) > 5.0)                  # 30 points each 2 scales high (none alarming alone)
True
"""
from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from .base import Detector, clip


class ResidualLikelihood(Detector):
    """Tail probability of a short EWMA of residuals against its long-run distribution.

    Parameters
    ----------
    n_channels : int
        Residual streams per series (each gets its own statistics).
    short_rate : float or sequence of float
        Rate of the short EWMA of residuals (about ``1 / short_rate`` points),
        one for all channels or one per channel.
    long_rate : float
        Slowest rate of the long-run mean / variance of the short EWMA.
    clip : float
        Residuals are clipped at this many scales (one spike moves ``m`` by
        at most ``clip * short_rate``).
    var_floor : float
        Added to the long-run variance (a perfectly predicted series does not
        turn a tiny residual into an alarm).
    warmup : int
        Points before scoring starts.
    u_alarm : float
        Surprise (``-log10 p``) at or above which the detector fires.
    n_series : int
        Number of series scored together (batch path).
    """

    name = "likelihood"

    def __init__(self, n_channels=2, short_rate=0.05, long_rate=1.0 / 2000, clip=4.0, var_floor=0.01, warmup=300,
                 u_alarm=5.0, n_series=1):
        self.n_channels, self.long_rate = int(n_channels), long_rate
        rate = np.broadcast_to(np.asarray(short_rate, dtype=np.float64), (self.n_channels,))
        self.short_rate = float(rate[0]) if np.ndim(short_rate) == 0 else tuple(float(x) for x in rate)
        self._rate = rate.copy()
        self.clip, self.var_floor, self.warmup, self.u_alarm = clip, var_floor, warmup, u_alarm
        super().__init__(n_series)

    def config(self):
        return dict(n_channels=self.n_channels, short_rate=self.short_rate, long_rate=self.long_rate,
                    clip=self.clip, var_floor=self.var_floor, warmup=self.warmup, u_alarm=self.u_alarm)

    def _shapes(self):
        c = (self.n_channels,)
        return {"n": (), "m": c, "mu": c, "var": c}

    def update_many(self, z, t=None, ok=None, direction="both"):
        """Score then learn one residual vector per series.

        Parameters
        ----------
        z : array (n_series, n_channels)
            Signed standardised residuals (0 where a model is not warm yet).
        t : ignored
            Present for the common signature (the statistics are per point).
        ok : bool array (n_series,), optional
            Series with a value this time (others are neither scored nor learnt).
        direction : str
            ``"both"`` (two-sided), ``"up"`` or ``"down"`` (one-sided).

        Returns
        -------
        surprise : array (n_series,)
            ``-log10 p`` of the most unusual channel (0 during warm-up).
        zl : array (n_series,)
            Its signed standardised deviation (sign = direction of the drift).
        fired : bool array (n_series,)
            ``surprise >= u_alarm``.
        """
        s = self.s
        z = np.asarray(z, dtype=np.float64).reshape(self.n_series, self.n_channels)
        ok = np.ones(self.n_series, bool) if ok is None else np.asarray(ok, bool)
        okc = ok[:, None]
        r = clip(np.where(np.isfinite(z), z, 0.0), -self.clip, self.clip)
        m = s["m"] + self._rate * (r - s["m"])
        d = m - s["mu"]
        zl = d / np.sqrt(s["var"] + self.var_floor)
        if direction == "up":
            p = np.where(zl > 0, ndtr(-zl), 1.0)
        elif direction == "down":
            p = np.where(zl < 0, ndtr(zl), 1.0)
        else:
            p = 2.0 * ndtr(-np.abs(zl))
        sur = -np.log10(np.maximum(p, 1e-300))
        sur = np.where(okc & (s["n"] >= self.warmup)[:, None], sur, 0.0)
        j = np.argmax(sur, axis=1)
        rows = np.arange(self.n_series)
        best, zbest = sur[rows, j], zl[rows, j]
        # learn: long-run moments of m (running mean first, then exponential forgetting)
        a = np.maximum(1.0 / (s["n"] + 1.0), self.long_rate)[:, None]
        s["m"][:] = np.where(okc, m, s["m"])
        s["mu"][:] = np.where(okc, s["mu"] + a * d, s["mu"])
        s["var"][:] = np.where(okc, s["var"] + a * (d * d - s["var"]), s["var"])
        s["n"][:] = np.where(ok, s["n"] + 1.0, s["n"])
        return best, zbest, best >= self.u_alarm

    def update(self, z, t=None):  # one series, river style
        """Score then learn one residual vector of a single series; returns the surprise."""
        self._check_one()
        return float(self.update_many(np.reshape(z, (1, self.n_channels)), t)[0][0])

    def learn_one(self, z, t=None) -> "ResidualLikelihood":
        self.update(z, t)
        return self

    def score_one(self, z, t=None) -> float:
        """Surprise of ``z`` without learning it."""
        saved = {k: v.copy() for k, v in self.s.items()}
        try:
            return self.update(z, t)
        finally:
            self.s = saved
