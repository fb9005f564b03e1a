"""Seasonal detector: time-of-day profile (+ day-of-week offsets) learned online.

A robust additive Holt-Winters model (Holt 1957; Winters 1960; robust variant
after Gelper, Fried & Croux 2010) whose seasonal component is indexed by the
wall-clock *phase* of each point rather than by a point counter, so gaps and
irregular timestamps fall into the right slot:
``expected = level + S[phase] (+ W[day of week])`` with ``S`` linearly
interpolated between ``n_slots`` bucket means. Each slot also keeps a robust
scale, so quiet nights and busy afternoons get their own band. The state is the
profile (``n_slots`` means, scales and counts), not raw weeks of points.

Whether a cycle exists is decided from the data: the model keeps the running
absolute error of the level-only forecast, the daily-profile forecast and the
daily+weekly forecast and predicts with the best of them, so a series without a
daily (or weekly) cycle is not forced into one. The period is configurable
(``period`` seconds, ``weekly``); a statsmodels STL/MSTL refit of the period
and profile on a bounded history is available in :mod:`detectors.stl`.

Examples
--------
>>> import numpy as np
>>> from detectors.seasonal import SeasonalDetector
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

from .base import Clock, Detector
from .spike import MAD_TO_SIGMA

DAY = 86400.0
WEEK = 7 * DAY


class SeasonalDetector(Detector):
    """Online seasonal-profile (robust Holt-Winters) detector.

    Parameters
    ----------
    period : float
        Main period in seconds (default one day).
    n_slots : int
        Profile buckets per period (interpolated).
    weekly : bool
        Also learn day-of-week offsets (used only once they help).
    level_tau : float
        Time constant of the level, in periods.
    slot_rate : float
        Profile learning rate per visit of a slot (per period).
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

    def __init__(self, period=DAY, n_slots=48, weekly=True, level_tau=1.0, slot_rate=0.3, c=3.0,
                 z_alarm=5.0, reset_after=12, tz_offset=0.0, rel_floor=1e-3, abs_floor=1e-9, n_series=1):
        self.period, self.n_slots, self.weekly = float(period), int(n_slots), bool(weekly)
        self.level_tau, self.slot_rate, self.c, self.z_alarm = level_tau, slot_rate, c, z_alarm
        self.reset_after, self.tz_offset = reset_after, tz_offset
        self.rel_floor, self.abs_floor = rel_floor, abs_floor
        super().__init__(n_series)
        self._rows = np.arange(self.n_series)

    def config(self):
        return dict(period=self.period, n_slots=self.n_slots, weekly=self.weekly, level_tau=self.level_tau,
                    slot_rate=self.slot_rate, c=self.c, z_alarm=self.z_alarm, reset_after=self.reset_after,
                    tz_offset=self.tz_offset, rel_floor=self.rel_floor, abs_floor=self.abs_floor)

    def _shapes(self):
        k = self.n_slots
        return {"n": (), "t0": (), "level": (), "gdev": (), "run": (), "e0": (), "e1": (), "e2": (), "e3": (),
                "S": (k,), "D": (k,), "C": (k,), "W": (7,), **Clock.fields}

    # -- helpers -------------------------------------------------------
    def _phase(self, t):
        ph = np.mod(t + self.tz_offset, self.period) / self.period * self.n_slots - 0.5
        f = np.floor(ph)
        k0 = np.mod(f, self.n_slots).astype(np.intp)
        k1 = np.mod(k0 + 1, self.n_slots)
        w1 = ph - f
        kc = np.where(w1 >= 0.5, k1, k0)  # the slot containing t
        dow = np.mod(np.floor((t + self.tz_offset) / DAY) + 3, 7).astype(np.intp)  # 1970-01-01 = Thursday
        return k0, k1, w1, kc, dow

    def _parts(self, t):
        s, r = self.s, self._rows
        k0, k1, w1, kc, dow = self._phase(t)
        S, D, C = s["S"], s["D"], s["C"]
        # interpolated (smooth cycles) or stepwise (square cycles) profile: whichever forecasts better
        seas_i = (1 - w1) * S[r, k0] + w1 * S[r, k1]
        seas_s = S[r, kc]
        step = s["e3"] < s["e1"]
        k0 = np.where(step, kc, k0)
        k1 = np.where(step, kc, k1)
        w1 = np.where(step, 0.0, w1)
        self._alt = (seas_i, seas_s)
        seas = np.where(step, seas_s, seas_i)
        dev = (1 - w1) * D[r, k0] + w1 * D[r, k1]
        cnt = np.minimum(C[r, k0], C[r, k1])
        wk = s["W"][r, dow]
        return k0, k1, w1, dow, seas, dev, cnt, wk

    def _model(self, t):
        """Expected value, scale, and whether the seasonal model is warm."""
        s = self.s
        k0, k1, w1, dow, seas, dev, cnt, wk = self._parts(t)
        lvl = s["level"]
        use1 = np.minimum(s["e1"], s["e3"]) < 0.9 * s["e0"]
        use2 = use1 & self.weekly & (s["e2"] < 0.9 * np.minimum(s["e1"], s["e3"])) & (t - s["t0"] >= WEEK + DAY)
        exp = lvl + np.where(use1, seas, 0.0) + np.where(use2, wk, 0.0)
        gd = s["gdev"]
        sdev = np.where(use1 & (cnt > 0), 0.5 * (dev + gd), gd)
        sig = np.maximum(sdev * MAD_TO_SIGMA, self.rel_floor * np.abs(exp) + self.abs_floor)
        warm = (s["n"] > 0) & (t - s["t0"] >= self.period) & (cnt > 0)
        return exp, sig, warm, (k0, k1, w1, dow, seas, wk, lvl)

    def component(self, t):
        """Seasonal component to remove before non-seasonal detectors (0 when no cycle),
        and the profile's scale at this phase (0 when no cycle).

        Weighted by how much better the profile forecasts than the level alone,
        and ramped in over the second period, so switching it on is smooth.
        """
        s = self.s
        _, _, _, _, seas, dev, cnt, wk = self._parts(t)
        u = np.clip((s["e0"] / np.maximum(np.minimum(s["e1"], s["e3"]), 1e-300) - 1.0) / 0.5, 0.0, 1.0)
        u = u * np.clip((t - s["t0"]) / self.period - 1.0, 0.0, 1.0) * (cnt > 0) * (s["n"] > 0)
        use2 = self.weekly & (s["e2"] < 0.9 * np.minimum(s["e1"], s["e3"])) & (t - s["t0"] >= WEEK + DAY)
        return u * (seas + np.where(use2, wk, 0.0)), u * dev * MAD_TO_SIGMA

    def _score(self, y, t):
        exp, sig, warm, _ = self._model(t)
        z = np.where(warm, (y - exp) / sig, 0.0)
        return z, np.where(self.s["n"] > 0, exp, np.nan), warm & (np.abs(z) >= self.z_alarm)

    def _learn(self, y, t, z):
        s, r = self.s, self._rows
        ok = np.isfinite(y)
        exp, sig, warm, (k0, k1, w1, dow, seas, wk, lvl) = self._model(t)
        yy = np.where(ok, y, exp)
        first = s["n"] == 0
        dt = np.minimum(np.where(first, 0.0, t - s["last_t"]), 3.0 * np.maximum(s["dt"], 1e-9))
        dt = np.where(s["dt"] > 0, dt, np.minimum(dt, self.period / self.n_slots))
        zr = (yy - exp) / sig
        zc = np.where(warm, np.clip(zr, -self.c, self.c), zr)
        rc = zc * sig
        # learning rates from elapsed time (irregular sampling)
        a_l = 1.0 - np.exp(-dt / (self.level_tau * self.period))
        slot_w = self.period / self.n_slots
        a_s = 1.0 - np.exp(-dt / slot_w * -np.log1p(-self.slot_rate))
        a_d = 1.0 - np.exp(-dt / (4 * self.period))
        # forecast errors of the three candidate models (model selection)
        base = yy - lvl
        seas_i, seas_s = self._alt
        for key, err in (("e0", base), ("e1", base - seas_i), ("e2", base - seas - wk), ("e3", base - seas_s)):
            s[key][:] = np.where(ok & ~first, s[key] + a_d * (np.minimum(np.abs(err), self.c * 2 * sig) - s[key]), s[key])
        # level: robust exponential smoothing of the deseasonalised value
        ds = np.clip(yy - lvl - seas - np.where(self.weekly, wk, 0.0), -self.c * sig, self.c * sig)
        ds = np.where(warm, ds, yy - lvl - seas)
        in_first = (t - s["t0"]) < self.period
        new_lvl = np.where(first, yy, np.where(in_first, lvl, lvl + a_l * ds))
        # profile: split the residual between the two neighbouring slots
        ps = np.where(warm, np.clip(yy - lvl - seas - wk, -self.c * sig, self.c * sig), yy - lvl - seas - wk)
        C = s["C"]
        for k, w in ((k0, 1 - w1), (k1, w1)):
            rate = np.maximum(a_s, 1.0 / (C[r, k] + 1.0)) * w
            rate = np.where(ok & ~first, rate, 0.0)
            s["S"][r, k] += rate * ps
            d_obs = np.abs(np.where(warm, rc, yy - lvl - seas - wk))
            rate_d = np.where(in_first, 0.0, np.where(s["D"][r, k] > 0, rate, np.where(ok, w, 0.0)))
            s["D"][r, k] += rate_d * (d_obs - s["D"][r, k])
            C[r, k] += np.where(ok & ~first, w, 0.0)
        # day-of-week offsets
        a_w = np.where(ok & ~first & ~in_first, a_l * 0.5, 0.0)
        s["W"][r, dow] += a_w * np.clip(yy - lvl - seas - wk, -self.c * sig, self.c * sig)
        # keep the profile zero-mean (mean goes to the level)
        m = np.where(in_first, 0.0, s["S"].mean(axis=1))
        s["S"] -= m[:, None]
        mw = s["W"].mean(axis=1)
        s["W"] -= mw[:, None]
        new_lvl = new_lvl + np.where(first | in_first, 0.0, m + mw)
        s["gdev"][:] = np.where(ok & ~first, s["gdev"] + np.maximum(a_d * 4, 0.01) * (np.abs(rc) - s["gdev"]), s["gdev"])
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
