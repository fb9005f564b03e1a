"""Seasonal detector: daily profile + weekly correction learned online.

A robust additive Holt-Winters model (Holt 1957; Winters 1960; robust variant
after Gelper, Fried & Croux 2010) with two seasonal components in the spirit of
MSTL (Bandara, Hyndman & Bergmeir 2021): a time-of-day profile ``S`` and an
hour-of-week correction ``W``, both indexed by the wall-clock *phase* of each
point rather than a point counter, so gaps and irregular timestamps land in the
right slot: ``expected = level + u1 * S[phase] + u2 * W[phase of week]``
(profiles linearly interpolated between slots, or stepwise). Each daily slot
also keeps a robust scale, so quiet nights and busy afternoons get their own
band. The state is the profiles (float32), not raw weeks of points.

Whether a cycle exists is decided from the data: the model keeps running
absolute errors of the level-only, daily (interpolated and stepwise) and
daily+weekly forecasts, and the weights ``u1``, ``u2`` grow with how much a
component improves the forecast, so a series without a daily (or weekly) cycle
is not forced into one. The period is configurable (``period``, ``weekly``);
a statsmodels STL refit of the profile on a bounded history is available in
:mod:`detectors.experimental.stl`.

Examples
--------
>>> import numpy as np
>>> from patrol.detectors.seasonal import SeasonalDetector
>>> det = SeasonalDetector()
>>> t = np.arange(0, 5 * 86400, 600.0)            # 5 days, 10-minute points
>>> x = 100 + 50 * np.sin(2 * np.pi * t / 86400)
>>> fired = [det.update(v, ti).fired for v, ti in zip(x, t)]
>>> any(fired[2 * 144:])                          # clean cycle: quiet after warm-up
False
>>> det.update(100 + 50 * np.sin(2 * np.pi * 0.25) - 60, 5 * 86400 + 0.25 * 86400).fired
True
"""
from __future__ import annotations

import numpy as np

from .base import Clock, Detector, clip, Forecast
from .spike import MAD_TO_SIGMA

DAY = 86400.0
WEEK = 7 * DAY


class SeasonalDetector(Detector):
    """Online seasonal-profile (robust Holt-Winters, daily + weekly) detector.

    Parameters
    ----------
    period : float
        Main period in seconds (default one day).
    n_slots : int
        Profile buckets per period.
    weekly : bool
        Also learn an hour-of-week correction (used only once it helps).
    week_slots : int
        Buckets of the weekly correction (168 = hourly).
    level_tau : float
        Time constant of the level, in periods.
    slot_rate : float
        Daily-profile learning rate per visit of a slot.
    week_rate : float
        Weekly-correction learning rate per visit of a slot.
    c : float
        Huber clipping in scale units.
    z_alarm : float
        ``|z|`` at or above which the detector fires.
    reset_after : int
        Consecutive same-side outliers after which the level re-baselines.
    tz_offset : float
        Seconds added to timestamps before taking the phase (local time).
    """

    name = "seasonal"

    def __init__(self, period=DAY, n_slots=48, weekly=True, week_slots=168, level_tau=1.0, slot_rate=0.3,
                 week_rate=0.5, c=3.0, z_alarm=5.0, reset_after=12, tz_offset=0.0, rel_floor=1e-3,
                 abs_floor=1e-9, n_series=1):
        self.period, self.n_slots, self.weekly, self.week_slots = float(period), int(n_slots), bool(weekly), int(week_slots)
        self.level_tau, self.slot_rate, self.week_rate = level_tau, slot_rate, week_rate
        self.c, self.z_alarm, self.reset_after, self.tz_offset = c, z_alarm, reset_after, tz_offset
        self.rel_floor, self.abs_floor = rel_floor, abs_floor
        super().__init__(n_series)
        self._rows = np.arange(self.n_series)

    def config(self):
        return dict(period=self.period, n_slots=self.n_slots, weekly=self.weekly, week_slots=self.week_slots,
                    level_tau=self.level_tau, slot_rate=self.slot_rate, week_rate=self.week_rate, c=self.c,
                    z_alarm=self.z_alarm, reset_after=self.reset_after, tz_offset=self.tz_offset,
                    rel_floor=self.rel_floor, abs_floor=self.abs_floor)

    def _shapes(self):
        return {"n": (), "t0": (), "level": (), "gdev": (), "run": (), "e0": (), "e1": (), "e2": (), "e3": (),
                **Clock.fields, "S": (self.n_slots,), "D": (self.n_slots,), "C": (self.n_slots,),
                "W": (self.week_slots if self.weekly else 0,)}

    def _dtypes(self):
        return {"S": np.float32, "D": np.float32, "C": np.float32, "W": np.float32}

    # -- helpers -------------------------------------------------------
    @staticmethod
    def _slots(t, period, k):
        ph = np.mod(t, period) / period * k - 0.5
        f = np.floor(ph)
        i0 = np.mod(f, k).astype(np.intp)
        i1 = np.mod(i0 + 1, k)
        w1 = ph - f
        return i0, i1, w1, np.where(w1 >= 0.5, i1, i0)  # last: the slot containing t

    def _parts(self, t):
        s, r = self.s, self._rows
        tl = t + self.tz_offset
        k0, k1, w1, kc = self._slots(tl, self.period, self.n_slots)
        S, D, C = s["S"], s["D"], s["C"]
        seas_i = (1 - w1) * S[r, k0] + w1 * S[r, k1]
        seas_s = S[r, kc].astype(np.float64)
        # interpolated (smooth cycles) or stepwise (square cycles): whichever forecasts better
        step = s["e3"] < s["e1"]
        k0, k1 = np.where(step, kc, k0), np.where(step, kc, k1)
        w1 = np.where(step, 0.0, w1)
        seas = np.where(step, seas_s, seas_i)
        dev = (1 - w1) * D[r, k0] + w1 * D[r, k1]
        cnt = np.minimum(C[r, k0], C[r, k1])
        if self.weekly:
            j0, j1, v1, jc = self._slots(tl, WEEK, self.week_slots)
            j0, j1 = np.where(step, jc, j0), np.where(step, jc, j1)
            v1 = np.where(step, 0.0, v1)
            wk = (1 - v1) * s["W"][r, j0] + v1 * s["W"][r, j1]
        else:
            j0 = j1 = v1 = None
            wk = np.zeros_like(seas)
        return dict(k0=k0, k1=k1, w1=w1, j0=j0, j1=j1, v1=v1, seas=seas, seas_i=seas_i, seas_s=seas_s,
                    dev=dev, cnt=cnt, wk=wk)

    def _weights(self, t, p):
        """Model-selection weights of the daily (u1) and weekly (u2) components."""
        s = self.s
        eb = np.minimum(s["e1"], s["e3"])
        age = t - s["t0"]
        u1 = clip((s["e0"] / np.maximum(eb, 1e-300) - 1.0) / 0.5, 0.0, 1.0)
        u1 = u1 * clip(age / self.period - 1.0, 0.0, 1.0) * (p["cnt"] > 0) * (s["n"] > 0)
        if self.weekly:
            u2 = clip((eb / np.maximum(s["e2"], 1e-300) - 1.0) / 0.3, 0.0, 1.0)
            u2 = u2 * clip((age - WEEK) / DAY, 0.0, 1.0) * u1
        else:
            u2 = np.zeros_like(u1)
        return u1, u2

    def _model(self, t):
        """Expected value, scale, warm flag and the pieces used for learning.

        Pure given the state; memoised per timestamp array until the next learn.
        """
        memo = getattr(self, "_memo", None)
        if memo is not None and memo[0].shape == t.shape and np.array_equal(memo[0], t):
            return memo[1]
        out = self._model_calc(t)
        self._memo = (np.array(t, copy=True), out)
        return out

    def _model_calc(self, t):
        s = self.s
        p = self._parts(t)
        u1, u2 = self._weights(t, p)
        lvl = s["level"]
        exp = lvl + u1 * p["seas"] + u2 * p["wk"]
        gd = s["gdev"]
        sdev = u1 * 0.5 * (p["dev"] + gd) + (1 - u1) * gd
        sig = np.maximum(sdev * MAD_TO_SIGMA, self.rel_floor * np.abs(exp) + self.abs_floor)
        warm = (s["n"] > 0) & (t - s["t0"] >= self.period) & (p["cnt"] > 0)
        p.update(u1=u1, u2=u2, lvl=lvl)
        return exp, sig, warm, p

    def component(self, t):
        """Seasonal component to remove before non-seasonal detectors, and the
        profile's noise scale at this phase (both 0 when there is no cycle)."""
        p = self._model(t)[3]
        return p["u1"] * p["seas"] + p["u2"] * p["wk"], p["u1"] * p["dev"] * MAD_TO_SIGMA

    def observe(self, values, t, *, n=None, noise=None) -> Forecast:
        """Score then learn; ``sigma`` is the profile's scale once a full period is learnt (else inf)."""
        _, tt = self._prep(values, t)
        _, sig, warm, _ = self._model(tt)
        sigma = np.where(warm, sig, np.inf)
        _, z, expected, fired = self.update_many(values, t)
        return Forecast(z, expected, sigma, fired)

    def _score(self, y, t):
        exp, sig, warm, _ = self._model(t)
        z = np.where(warm, (y - exp) / sig, 0.0)
        return z, np.where(self.s["n"] > 0, exp, np.nan), warm & (np.abs(z) >= self.z_alarm)

    def _learn(self, y, t, z):
        s, r = self.s, self._rows
        ok = np.isfinite(y)
        exp, sig, warm, p = self._model(t)
        lvl, seas, wk, u2 = p["lvl"], p["seas"], p["wk"], p["u2"]
        yy = np.where(ok, y, exp)
        first = s["n"] == 0
        upd = ok & ~first
        in_first = (t - s["t0"]) < self.period
        dt = np.minimum(np.where(first, 0.0, np.maximum(t - s["last_t"], 0.0)), 3.0 * np.maximum(s["dt"], 1e-9))
        dt = np.where(s["dt"] > 0, dt, np.minimum(dt, self.period / self.n_slots))
        zr = (yy - exp) / sig
        rc = np.where(warm, clip(zr, -self.c, self.c), zr) * sig
        def hclip(v):  # Huber clip once warm
            return np.where(warm, clip(v, -self.c * sig, self.c * sig), v)
        # learning rates from elapsed time (irregular sampling)
        a_l = 1.0 - np.exp(-dt / (self.level_tau * self.period))
        a_s = 1.0 - np.exp(dt / (self.period / self.n_slots) * np.log1p(-self.slot_rate))
        a_e = 1.0 - np.exp(-dt / (4 * self.period))
        # forecast errors of the candidate models (model selection)
        base = yy - lvl
        for key, err in (("e0", base), ("e1", base - p["seas_i"]), ("e3", base - p["seas_s"]),
                         ("e2", base - seas - wk)):
            s[key][:] = np.where(upd, s[key] + a_e * (np.minimum(np.abs(err), 2 * self.c * sig) - s[key]), s[key])
        # level: robust exponential smoothing of the deseasonalised value (fixed in the first period)
        new_lvl = np.where(first, yy, np.where(in_first, lvl, lvl + a_l * hclip(yy - lvl - seas - u2 * wk)))
        # daily profile: the residual is split between the two neighbouring slots
        ps = hclip(yy - lvl - seas - u2 * wk)
        d_obs = np.abs(rc)
        C = s["C"]
        for k, w in ((p["k0"], 1 - p["w1"]), (p["k1"], p["w1"])):
            rate = np.where(upd, np.maximum(a_s, 1.0 / (C[r, k] + 1.0)) * w, 0.0)
            s["S"][r, k] += rate * ps
            Dk = s["D"][r, k]
            rate_d = np.where(in_first | ~upd, 0.0, np.where(Dk > 0, rate, w))
            s["D"][r, k] = Dk + rate_d * (d_obs - Dk)
            C[r, k] += np.where(upd, w, 0.0)
        m = np.where(in_first, 0.0, s["S"].mean(axis=1))
        s["S"] -= m[:, None]
        new_lvl = new_lvl + np.where(first, 0.0, m)
        # weekly correction: learns what the daily profile misses
        if self.weekly:
            a_w = np.where(upd & ~in_first,
                           1.0 - np.exp(dt / (WEEK / self.week_slots) * np.log1p(-self.week_rate)), 0.0)
            pw = hclip(yy - lvl - seas - wk)
            for j, w in ((p["j0"], 1 - p["v1"]), (p["j1"], p["v1"])):
                s["W"][r, j] += a_w * w * pw
            s["W"] -= s["W"].mean(axis=1)[:, None]
        s["gdev"][:] = np.where(upd, s["gdev"] + np.maximum(a_e * 4, 0.01) * (d_obs - s["gdev"]), s["gdev"])
        # re-baseline after a sustained shift
        out = warm & (np.abs(zr) > self.c)
        sgn = np.sign(zr)
        run = np.where(out, np.where(sgn * s["run"] > 0, s["run"] + sgn, sgn), 0.0)
        reset = np.abs(run) >= self.reset_after
        new_lvl = np.where(reset, new_lvl + (yy - exp), new_lvl)
        s["run"][:] = np.where(ok, np.where(reset, 0.0, run), s["run"])
        s["level"][:] = np.where(ok, new_lvl, s["level"])
        s["t0"][:] = np.where(ok & first, t, s["t0"])
        s["n"][:] = np.where(ok, s["n"] + 1.0, s["n"])
        Clock.tick(s, t, ok)
        self._memo = None
