"""Ensemble: metric-aware transform, several detectors, calibrated anomaly score.

Per point every detector gives a signed standardised residual ``z``; each is
turned into a surprise ``-log10 p`` (one- or two-sided, following the metric's
bad direction), the largest surprise is taken, and it is *calibrated* against
the series' own history: the running mean of past surprises is compared with
its value under a well-specified model (``log10 e``), so a series whose
residuals are heavier-tailed than its model assumes has its surprises scaled
down (an exponential-tail fit of the surprise distribution, in the spirit of
Numenta's anomaly likelihood, Ahmad et al. 2017, "Unsupervised real-time
anomaly detection for streaming data", Neurocomputing 262). A residual
likelihood (:mod:`detectors.likelihood`: a short EWMA of the spike and seasonal
residuals against its own long-run distribution) catches what no single point
shows (ramps, lasting dips, denser spikes); the larger of the two surprises is
kept, and repeats are damped relative to what was already alerted. The calibrated
tail probability ``p`` is reported, and the score is ``min(1, -log10(p) / 10)``,
the log-likelihood scale NAB's HTM detector reports (0 normally; 0.5 is a one in
100 000 event; 1.0 a one in 10^10).

Examples
--------
>>> import numpy as np
>>> from patrol import detectors
>>> det = detectors.default_ensemble()
>>> rng = np.random.default_rng(1)
>>> rs = [det.update(100 + rng.normal(), t=300.0 * i) for i in range(500)]
>>> max(r.score for r in rs[50:]) < detectors.DEFAULT_THRESHOLD
True
>>> r = det.update(130.0, t=300.0 * 500)
>>> r.score >= detectors.DEFAULT_THRESHOLD, r.direction, "spike" in r.fired
(True, 'up', True)
"""
from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np

from .base import Clock, to_seconds, z_to_surprise, clip
from .calibration import TailCalibrator
from .changepoint import CusumDetector
from .likelihood import ResidualLikelihood
from .ratio import RatioDetector
from .seasonal import SeasonalDetector
from .spike import SpikeDetector

DEFAULT_THRESHOLD = 0.35
"""Score at/above which the service alerts (calibrated, episode-damped surprise of 3.5 decades).

Chosen with the likelihood detector and alert-relative damping by leave-one-category-out
cross-validation on NAB (docs/nab.md); it also sets the calibrator's alert level."""

STATE_VERSION = 2
"""Version of the packed state (v2 added the residual likelihood; v1 states still load)."""

METRIC_KINDS = ("gauge", "count", "ratio", "latency")
DIRECTIONS = ("both", "up", "down")
_LOG10E = float(np.log10(np.e))
_SEVERITIES = ("ok", "warning", "critical")


# -- metric transforms (variance stabilising) ------------------------------
def _fwd(kind, x):
    if kind == "count":      # Anscombe: Poisson -> ~unit variance, zeros fine
        return 2.0 * np.sqrt(np.maximum(x, 0.0) + 0.375)
    if kind == "latency":    # heavy right tail -> log
        return np.log(np.maximum(x, 0.0) + 1e-6)
    return x


def _inv(kind, y):
    if kind == "count":
        return np.maximum((np.maximum(y, 0.0) / 2.0) ** 2 - 0.375, 0.0)
    if kind == "latency":
        return np.maximum(np.exp(y) - 1e-6, 0.0)
    return y


@dataclass
class Result:
    """Ensemble verdict on one point.

    Attributes
    ----------
    score : float
        Calibrated anomaly score in [0, 1] (``-log10(p) / 10``, capped).
    p_value : float
        Calibrated tail probability of the point.
    expected : float
        Expected value (metric units; for ratios the expected ratio).
    lower, upper : float
        Band of normal values (``band_z`` scales around ``expected``).
    direction : str or None
        ``"up"`` or ``"down"``: side of the deviation (None before warm-up).
    fired : tuple of str
        Detectors whose own alarm rule fired on this point.
    severity : str
        ``"ok"``, ``"warning"`` (score >= threshold) or ``"critical"``
        (score >= ``critical`` threshold).
    """

    score: float
    p_value: float
    expected: float
    lower: float
    upper: float
    direction: str | None
    fired: tuple
    severity: str

    @property
    def is_anomaly(self) -> bool:
        return self.severity != "ok"


@dataclass
class BatchResult:
    """Per-series arrays for one batch call (see :class:`Result` for the fields).

    ``direction`` is +1 (up), -1 (down) or 0; ``fired`` is a bit mask over
    ``names``; ``severity`` indexes ``("ok", "warning", "critical")``.
    """

    score: np.ndarray
    p_value: np.ndarray
    expected: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    direction: np.ndarray
    fired: np.ndarray
    severity: np.ndarray
    names: tuple

    def row(self, i: int) -> Result:
        d = int(self.direction[i])
        return Result(float(self.score[i]), float(self.p_value[i]), float(self.expected[i]),
                      float(self.lower[i]), float(self.upper[i]),
                      {1: "up", -1: "down"}.get(d), tuple(n for j, n in enumerate(self.names)
                                                          if int(self.fired[i]) >> j & 1),
                      _SEVERITIES[int(self.severity[i])])


class BatchEnsemble:
    """Default ensemble over ``n_series`` series, updated one window at a time.

    Parameters
    ----------
    n_series : int
        Number of series (one row each).
    metric_kind : str
        ``"gauge"`` (default), ``"count"`` (Poisson-like, zeros), ``"ratio"``
        (pass ``n=`` denominators; beta-binomial on the counts behind), or
        ``"latency"`` (log scale).
    direction : str
        Which deviations matter: ``"both"``, ``"up"`` (e.g. error ratio,
        latency) or ``"down"`` (e.g. request rate).
    threshold, critical : float
        Score for ``warning`` / ``critical`` severity.
    calib_rate : float
        Rate of the running mean of surprises used for calibration.
    band_z : float
        Half-width of the reported band, in scales.
    period : float
        Seasonal period in seconds (default one day); ``None`` disables the
        seasonal detector.
    """

    def __init__(self, n_series=1, metric_kind="gauge", direction="both", threshold=DEFAULT_THRESHOLD,
                 critical=0.8, calib_rate=0.002, band_z=4.0, period=86400.0, n_slots=48, weekly=True,
                 tz_offset=0.0):
        if metric_kind not in METRIC_KINDS:
            raise ValueError(f"metric_kind must be one of {METRIC_KINDS}")
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}")
        self.n_series, self.metric_kind, self.direction = int(n_series), metric_kind, direction
        self.threshold, self.critical, self.calib_rate, self.band_z = threshold, critical, calib_rate, band_z
        self.period, self.n_slots, self.weekly, self.tz_offset = period, n_slots, weekly, tz_offset
        n = self.n_series
        # scale floors: Anscombe-transformed Poisson counts have unit variance; log latencies 1%
        floor = 1.0 if metric_kind == "count" else 1e-9
        rel = 0.0 if metric_kind in ("count", "latency") else 1e-3
        if metric_kind == "latency":
            floor = 0.01
        self.detectors = []
        if metric_kind == "ratio":
            self.detectors.append(RatioDetector(n_series=n))
        else:
            self.detectors.append(SpikeDetector(n_series=n, rel_floor=rel, abs_floor=floor))
            self.detectors.append(CusumDetector(n_series=n, rel_floor=rel, abs_floor=floor))
            if period:
                self.detectors.append(SeasonalDetector(n_series=n, period=period, n_slots=n_slots, weekly=weekly,
                                                       tz_offset=tz_offset, rel_floor=rel, abs_floor=floor))
        # EWMA of the fast models' residuals against its own long-run distribution (drifts, spike
        # density): ~20 points for the spike / ratio residual; ~50 for the seasonal one, whose model
        # (level time constant one period) leaves residuals correlated over longer stretches
        self.likelihood = ResidualLikelihood(n_series=n, n_channels=2, short_rate=(0.05, 0.02))
        self.names = tuple(d.name for d in self.detectors) + (self.likelihood.name,)
        # damping counts only what was alerted, at the service's alert level
        self.calibrator = TailCalibrator(n_series=n, alert=10.0 * threshold)

    def config(self) -> dict:
        return dict(metric_kind=self.metric_kind, direction=self.direction, threshold=self.threshold,
                    critical=self.critical, calib_rate=self.calib_rate, band_z=self.band_z, period=self.period,
                    n_slots=self.n_slots, weekly=self.weekly, tz_offset=self.tz_offset)

    # ------------------------------------------------------------------
    def update(self, values, t, n=None) -> BatchResult:
        """Score then learn one point per series.

        ``values``: array (n_series,), NaN = missing. ``t``: one timestamp or
        an array of per-series timestamps (epoch seconds or datetime64).
        ``n``: denominators (ratio metrics).
        """
        N = self.n_series
        x = np.asarray(values, dtype=np.float64).reshape(N)
        tt = np.broadcast_to(np.asarray(to_seconds(t), dtype=np.float64), (N,)).copy()
        ok = np.isfinite(x)
        zs, fired_mask = [], np.zeros(N, dtype=np.int64)
        if self.metric_kind == "ratio":
            den = np.ones(N) * 1e6 if n is None else np.asarray(n, dtype=np.float64).reshape(N)
            ok = ok & np.isfinite(den) & (den > 0)
            det = self.detectors[0]
            z, expected, fired = det.update_counts(np.where(ok, x * den, np.nan), np.where(ok, den, np.nan), tt)
            zs.append(z)
            fired_mask |= fired.astype(np.int64)
            p = det.rate()
            conc = np.minimum(det.s["b"], det.max_conc) + 1.0
            sd = np.sqrt(p * (1 - p) * (1.0 / np.maximum(den, 1.0) + 1.0 / conc))
            exp_v, lo, hi = expected, clip(expected - self.band_z * sd, 0, 1), clip(expected + self.band_z * sd, 0, 1)
        else:
            y = _fwd(self.metric_kind, x)
            best_sig = np.full(N, np.inf)
            exp_y = np.full(N, np.nan)
            seasonal = [d for d in self.detectors if isinstance(d, SeasonalDetector)]
            # non-seasonal detectors see the deseasonalised value (state before this point)
            comp, psig = seasonal[0].component(tt) if seasonal else (np.zeros(N), None)
            for j, det in enumerate(self.detectors):
                yin = y
                if isinstance(det, SeasonalDetector):
                    e, sig, warm, _ = det._model(tt)
                    sig = np.where(warm, sig, np.inf)
                else:
                    yin = y - comp
                    if isinstance(det, SpikeDetector):
                        det.extra_sigma = psig
                        e = det.s["level"] + comp
                        sig = np.where(det.s["n"] >= det.warmup, det.sigma(), np.inf)
                    else:
                        e, sig = None, None
                score, z, _, fired = det.update_many(yin, tt)
                if isinstance(det, SpikeDetector):
                    det.extra_sigma = None
                zs.append(z)
                fired_mask |= fired.astype(np.int64) << j
                if e is not None:
                    better = sig < best_sig
                    exp_y = np.where(better, e, exp_y)
                    best_sig = np.where(better, sig, best_sig)
                    if j == 0:
                        exp_y = np.where(np.isfinite(exp_y), exp_y, e)
            exp_y = np.where(self.detectors[0].s["n"] > 1, exp_y, np.nan)  # nothing learnt yet
            half = np.where(np.isfinite(best_sig), self.band_z * best_sig, np.nan)
            exp_v = _inv(self.metric_kind, exp_y)
            lo = _inv(self.metric_kind, exp_y - half)
            hi = _inv(self.metric_kind, exp_y + half)
        # residual likelihood on the fast model's residual (spike / ratio) and the seasonal one
        zseas = zs[-1] if (self.metric_kind != "ratio" and self.period) else np.zeros(N)
        lk_s, lk_z, lk_fired = self.likelihood.update_many(np.stack([zs[0], zseas], axis=1), tt, ok, self.direction)
        fired_mask |= lk_fired.astype(np.int64) << len(self.detectors)
        # fuse: largest surprise in the direction that matters
        Z = np.stack(zs)
        self.last_z = Z  # per-detector signed z of the last call (diagnostics)
        S = np.stack([z_to_surprise(z, self.direction) for z in Z])
        jbest = np.argmax(S, axis=0)
        surprise = S[jbest, np.arange(N)]
        zbest = Z[jbest, np.arange(N)]
        # calibration: tail fit of the series' own surprises (score first, then learn)
        surprise = np.where(ok, np.minimum(surprise, 30.0), 0.0)
        cal = np.maximum(np.where(ok, self.calibrator.calibrate(surprise), 0.0), 0.0)
        self.calibrator.learn(surprise, ok)
        # the likelihood is calibrated against the series' own history already: take the larger
        lk_wins = lk_s > cal
        cal = np.maximum(cal, lk_s)
        zbest = np.where(lk_wins, lk_z, zbest)
        surprise = np.where(lk_wins, lk_s, surprise)
        cal = self.calibrator.novelty(cal, ok)
        pval = 10.0 ** (-cal)
        score = np.minimum(cal / 10.0, 1.0)
        direction = np.where(ok & (surprise > 0), np.sign(zbest), 0).astype(np.int8)
        sev = np.where(score >= self.critical, 2, np.where(score >= self.threshold, 1, 0)).astype(np.int8)
        return BatchResult(score, pval, exp_v, lo, hi, direction, np.where(ok, fired_mask, 0), sev, self.names)

    # -- state ---------------------------------------------------------
    def _parts(self, version=STATE_VERSION):
        return [self.calibrator] + self.detectors + ([self.likelihood] if version >= 2 else [])

    def _pack(self, i) -> bytes:
        return b"".join(d._pack(i) for d in self._parts())

    def _unpack(self, i, buf: bytes, version=STATE_VERSION) -> None:
        pos = 0
        for d in self._parts(version):
            pos = d._unpack(i, buf, pos)
        if pos != len(buf):
            raise ValueError("state does not match this ensemble's configuration")
        if version < 2:  # v1 had no likelihood: it starts afresh (warm-up) for this series
            for k, v in self.likelihood.s.items():
                v[i] = 0

    def state_bytes(self) -> int:
        """Bytes of packed state per series (before base64)."""
        return sum(d.state_size() for d in self._parts())

    def state_of(self, i: int) -> dict:
        """JSON-able state of series ``i`` (config + base64 of the packed state)."""
        return {"v": STATE_VERSION, "config": self.config(),
                "data": base64.b64encode(self._pack(i)).decode()}

    def states_of(self, rows) -> list[dict]:
        """:meth:`state_of` for many rows at once (one gather per field instead of one per row and
        field: checkpointing 10k series this way takes milliseconds, not most of a second)."""
        rows = np.asarray(rows, dtype=np.int64)
        m = len(rows)
        if m == 0:
            return []
        blocks = []
        for d in self._parts():
            for k in d._shapes():
                a = d.s[k][rows]
                a = np.ascontiguousarray(a.astype(a.dtype.newbyteorder("<"), copy=False))
                blocks.append(a.reshape(m, -1).view(np.uint8))
        packed = np.concatenate(blocks, axis=1)
        cfg = self.config()
        return [{"v": STATE_VERSION, "config": cfg, "data": base64.b64encode(packed[j].tobytes()).decode()} for j in range(m)]

    def load_state(self, i: int, state: dict) -> None:
        """Load one series' state (from :meth:`state_of` / :meth:`Ensemble.to_state`) into row ``i``.

        The saved configuration must match except for the alert levels (``threshold``,
        ``critical``): they shape no learnt state, so a series checkpointed before the alert level
        changed (e.g. v1 states saved at the old default 0.25) keeps what it has learnt.
        """
        v = int(state.get("v", 1))
        if v > STATE_VERSION:
            raise ValueError(f"state version {v} is newer than this library's ({STATE_VERSION})")
        if not isinstance(state.get("config"), dict) or _model_config(state["config"]) != _model_config(self.config()):
            raise ValueError("state was saved with a different configuration")
        self._unpack(i, base64.b64decode(state["data"]), v)


def _model_config(cfg: dict) -> dict:
    """The configuration that shapes the learnt state (alert levels excluded)."""
    return {k: v for k, v in cfg.items() if k not in ("threshold", "critical")}


class Ensemble:
    """One series, river style: ``update(x, t)`` scores then learns.

    The one-point path is :class:`BatchEnsemble` with one series, so both give
    identical results. See :class:`BatchEnsemble` for the parameters.
    """

    def __init__(self, **kwargs):
        kwargs.pop("n_series", None)
        self._b = BatchEnsemble(n_series=1, **kwargs)

    @property
    def names(self):
        return self._b.names

    def update(self, x: float, t, n: float | None = None) -> Result:
        """Score ``x`` at ``t`` using only earlier data, then learn it."""
        return self._b.update([x], t, None if n is None else [n]).row(0)

    def score_one(self, x: float, t, n: float | None = None) -> float:
        """Score without learning (works on a copy of the state)."""
        tmp = Ensemble.from_state(self.to_state())
        return tmp.update(x, t, n).score

    def learn_one(self, x: float, t, n: float | None = None) -> "Ensemble":
        self._b.update([x], t, None if n is None else [n])
        return self

    def to_state(self) -> dict:
        """JSON-able state (config + base64 float64 vector)."""
        return self._b.state_of(0)

    @classmethod
    def from_state(cls, state: dict) -> "Ensemble":
        det = cls(**state["config"])
        det._b.load_state(0, state)
        return det


def default_ensemble(metric_kind: str = "gauge", direction: str = "both", **kwargs) -> Ensemble:
    """The service's default per-series detector (see :class:`BatchEnsemble`)."""
    return Ensemble(metric_kind=metric_kind, direction=direction, **kwargs)
