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

from . import sections
from .base import clip, to_seconds, z_to_surprise
from .calibration import TailBank, TailCalibrator
from .members import default_specs

DEFAULT_THRESHOLD = 0.35
"""Score at/above which the service alerts (calibrated, episode-damped ``p <= 10**-3.5``).

Chosen with the default fusion by the nested leave-one-category-out protocol (docs/nab.md, "Out-of-fold
protocol"); it also sets the calibrator's alert level and the level at which ``fired`` names a detector."""

DEFAULT_CRITICAL = 0.8
"""Score at/above which an alert is ``critical`` (a calibrated p of 1e-8)."""

CALIBRATIONS = ("pooled", "per_detector")
DEFAULT_CALIBRATION = "pooled"
"""``"pooled"``: the largest surprise of the detectors, calibrated by one tail model per series;
``"per_detector"``: each detector's surprise calibrated on its own, per side (:class:`TailBank`, a
generalised Pareto tail), with the spike detector's burst-decay rule (``between_is_normal``). Both
name the detectors behind every alert and ignore point detectors inside the band. The default was
chosen by the out-of-fold protocol of docs/nab.md: ``per_detector`` cuts false alerts on bursty
generated counts by ~4x but lost held-out NAB recall (realTraffic)."""

DEFAULT_NOVELTY = False
"""Whether the default ensemble adds :class:`~detectors.context_novelty.ContextNoveltyDetector`
(chosen by the out-of-fold protocol of docs/nab.md)."""

STATE_VERSION = 4
"""Version of the packed state's layout: since v4 each part is a tagged section
(:mod:`detectors.sections`), so adding a member needs no new version. v1-v3 states (untagged parts
one after the other) still load; parts they lack start afresh."""

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
    if kind == "ratio":
        return clip(y, 0.0, 1.0)
    return y


@dataclass
class Result:
    """Ensemble verdict on one point.

    Attributes
    ----------
    score : float
        Log-scale surprise in [0, 1], **not a probability**: ``min(1, -log10(p) / 10)`` with ``p`` the
        ``p_value`` below. 0.1 per decade: 0.35 means ``p = 10**-3.5`` (about 3e-4), 0.5 means 1e-5,
        0.8 means 1e-8, 1.0 means ``p <= 1e-10``. Ordinary points score near 0. After an alert, the
        rest of the same episode scores only its evidence beyond what was already alerted (episode
        damping), so a lasting excursion scores high once, at its onset.
    p_value : float
        Calibrated, episode-damped tail probability of the point: how often this series produces
        evidence this strong (per point), after calibration against its own history.
    expected : float
        Expected value (metric units; for ratios the expected ratio).
    lower, upper : float
        Band of normal values (``band_z`` scales around ``expected``). A value inside the band is
        never a point anomaly: it can alert only through a sustained-change detector (``cusum``,
        ``likelihood``) or the pattern detector (``context``), and ``fired`` then names it.
    direction : str or None
        ``"up"`` or ``"down"``: side of the deviation (None before warm-up).
    fired : tuple of str
        Detectors whose own calibrated evidence on this point (before episode damping) reaches the
        alert level ``10 * threshold``. Whenever ``severity != "ok"`` at least one is named.
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

    The members are a list of :class:`~detectors.members.DetectorSpec` (``default_specs``): the
    ensemble transforms the value for the metric kind, removes the seasonal component for the members
    that want it, asks every member for its :class:`~detectors.base.Forecast`, and fuses what they
    return; it never reads a member's state.

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
                 critical=DEFAULT_CRITICAL, calib_rate=0.002, band_z=4.0, period=86400.0, n_slots=48, weekly=True,
                 tz_offset=0.0, calibration=DEFAULT_CALIBRATION, novelty=DEFAULT_NOVELTY):
        if calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {CALIBRATIONS}")
        self.calibration, self.novelty = calibration, bool(novelty)
        if metric_kind not in METRIC_KINDS:
            raise ValueError(f"metric_kind must be one of {METRIC_KINDS}")
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}")
        self.n_series, self.metric_kind, self.direction = int(n_series), metric_kind, direction
        self.threshold, self.critical, self.calib_rate, self.band_z = threshold, critical, calib_rate, band_z
        self.period, self.n_slots, self.weekly, self.tz_offset = period, n_slots, weekly, tz_offset
        n = self.n_series
        self.specs = default_specs(metric_kind, period=period, n_slots=n_slots, weekly=weekly, tz_offset=tz_offset,
                                   calibration=calibration, novelty=self.novelty)
        self.members = {sp.tag: sp.build(n) for sp in self.specs}
        self._residual = [sp for sp in self.specs if sp.role in ("point", "sustained")]
        self._seasonal = next((sp.tag for sp in self._residual if sp.seasonal), None)
        self.names = tuple(sp.tag for sp in self._residual) + tuple(
            sp.tag for sp in self.specs if sp.role == "residuals") + tuple(
            sp.tag for sp in self.specs if sp.role == "pattern")
        # damping counts only what was alerted, at the service's alert level
        self.calibrator = TailCalibrator(n_series=n, alert=10.0 * threshold)
        # per residual detector and side: an upward and a downward tail model each (see TailBank)
        self.tails = (TailBank(n_series=n, n_tails=2 * len(self._residual))
                      if calibration == "per_detector" else None)
        # pattern members' novelty, each against this series' own rate of such novelty
        self.pattern_tails = {sp.tag: TailBank(n_series=n, n_tails=1) for sp in self.specs if sp.role == "pattern"}
        self.last_evidence = np.zeros(n)

    def config(self) -> dict:
        return dict(metric_kind=self.metric_kind, direction=self.direction, threshold=self.threshold,
                    critical=self.critical, calib_rate=self.calib_rate, band_z=self.band_z, period=self.period,
                    n_slots=self.n_slots, weekly=self.weekly, tz_offset=self.tz_offset, calibration=self.calibration,
                    novelty=self.novelty)

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
        den = None
        if self.metric_kind == "ratio":
            den = np.ones(N) * 1e6 if n is None else np.asarray(n, dtype=np.float64).reshape(N)
            ok = ok & np.isfinite(den) & (den > 0)
        y = _fwd(self.metric_kind, x)
        # deseasonalising members see the value minus the seasonal component (state before this point)
        comp, noise = np.zeros(N), None
        if self._seasonal is not None:
            comp, noise = self.members[self._seasonal].component(tt)
        zs, fired_mask = {}, np.zeros(N, dtype=np.int64)
        exp_y, best_sig = np.full(N, np.nan), np.full(N, np.inf)
        first_band = True
        for j, sp in enumerate(self._residual):
            shift = comp if sp.deseasonalised else 0.0
            f = self.members[sp.tag].observe(y - shift, tt, n=den, noise=noise if sp.deseasonalised else None)
            zs[sp.tag] = f.z
            fired_mask |= f.fired.astype(np.int64) << j
            if sp.band:  # the warm forecast with the smallest scale; before any is warm, the first one's
                e = f.expected + shift
                better = f.sigma < best_sig
                exp_y = np.where(better, e, exp_y)
                best_sig = np.where(better, f.sigma, best_sig)
                if first_band:
                    exp_y = np.where(np.isfinite(exp_y), exp_y, e)
                    first_band = False
        half = np.where(np.isfinite(best_sig), self.band_z * best_sig, np.nan)
        exp_v = _inv(self.metric_kind, exp_y)
        lo = _inv(self.metric_kind, exp_y - half)
        hi = _inv(self.metric_kind, exp_y + half)
        extras, k = [], len(self._residual)
        for sp in self.specs:
            if sp.role == "residuals":
                chans = np.stack([zs.get(tag, np.zeros(N)) for tag in sp.reads], axis=1)
                e, z, fired = self.members[sp.tag].update_many(chans, tt, ok, self.direction)
            elif sp.role == "pattern":
                e, z, fired = self._pattern_evidence(sp.tag, y, tt, ok)
            else:
                continue
            extras.append((e, z))
            fired_mask |= fired.astype(np.int64) << k
            k += 1
        Z = np.stack([zs[sp.tag] for sp in self._residual])
        self.last_z = Z  # per-detector signed z of the last call (diagnostics)
        if self.tails is None:
            cal, zbest, surprise, fired_mask = self._fuse_pooled(Z, ok, x, lo, hi, extras)
        else:
            cal, zbest, surprise, fired_mask = self._fuse_attributed(Z, ok, x, lo, hi, extras)
        self.last_evidence = cal  # calibrated surprise before episode damping (benchmarks replay the damping)
        cal = self.calibrator.novelty(cal, ok)
        pval = 10.0 ** (-cal)
        score = np.minimum(cal / 10.0, 1.0)
        direction = np.where(ok & (surprise > 0), np.sign(zbest), 0).astype(np.int8)
        sev = np.where(score >= self.critical, 2, np.where(score >= self.threshold, 1, 0)).astype(np.int8)
        return BatchResult(score, pval, exp_v, lo, hi, direction, np.where(ok, fired_mask, 0), sev, self.names)

    def _point_inside(self, x, lo, hi):
        """(n_series, n_residual_members) mask: a point detector looking at a value inside the published
        band. Such a value is never a point anomaly; only a sustained change (CUSUM, residual likelihood)
        can make it one, and then ``fired`` says which."""
        inside = (x >= lo) & (x <= hi)
        point = np.array([sp.role == "point" for sp in self._residual])
        return inside[:, None] & point[None, :]

    def _pattern_evidence(self, tag, y, tt, ok):
        """Calibrated surprise of a pattern member: ``-log10(1 - novelty)`` (a fully novel pattern is 4),
        against this series' own rate of such novelty (one tail model). Returns (surprise, z, fired)."""
        nov, z, _, fired = self.members[tag].update_many(np.where(ok, y, np.nan), tt)
        tails = self.pattern_tails[tag]
        S = np.where(ok, -np.log10(np.maximum(1.0 - nov, 1e-4)), 0.0)[:, None]
        C = tails.calibrate(S)[:, 0]
        tails.learn(S, ok)
        if self.direction != "both":  # one-sided metrics: only novelty on the bad side counts
            C = np.where(np.sign(z) == (1 if self.direction == "up" else -1), C, 0.0)
        return np.where(ok, np.maximum(C, 0.0), 0.0), z, np.zeros(self.n_series, bool)

    def _fuse_pooled(self, Z, ok, x, lo, hi, extras):
        """The largest surprise, calibrated by one tail model per series; ``fired`` names every detector
        whose surprise, calibrated the same way, reaches the alert level.

        Returns ``(evidence, z of the winner, its raw surprise, fired bit mask)``.
        """
        N, D = self.n_series, len(self._residual)
        S = np.minimum(np.stack([z_to_surprise(z, self.direction) for z in Z], axis=1), 30.0)  # (N, D)
        S = np.where(self._point_inside(x, lo, hi) | ~ok[:, None], 0.0, S)
        jbest = np.argmax(S, axis=1)
        rows = np.arange(N)
        surprise = S[rows, jbest]
        Cj = np.maximum(self.calibrator.calibrate(S.T), 0.0).T  # monotone: the winner is the largest
        self.calibrator.learn(surprise, ok)
        return self._attribute(np.where(ok[:, None], Cj, 0.0), Z, S, extras)

    def _attribute(self, C, Z, S, extras):
        """Evidence = the largest of the detectors' calibrated surprises ``C`` and the already calibrated
        ``extras`` (likelihood, context novelty: ``(surprise, z)`` pairs), in the order of ``names``;
        ``fired`` has the bits of all at the alert level."""
        N = self.n_series
        rows = np.arange(N)
        E = np.concatenate([C] + [e[:, None] for e, _ in extras], axis=1)
        jbest = np.argmax(E, axis=1)
        Zall = np.concatenate([Z.T] + [z[:, None] for _, z in extras], axis=1)
        Sall = np.concatenate([S] + [e[:, None] for e, _ in extras], axis=1)
        bits = (E >= 10.0 * self.threshold).astype(np.int64) << np.arange(E.shape[1])
        return E[rows, jbest], Zall[rows, jbest], Sall[rows, jbest], bits.sum(axis=1)

    def _fuse_attributed(self, Z, ok, x, lo, hi, extras):
        """Each detector's surprise calibrated on its own per side; point detectors count only outside
        the band; the evidence is the largest, and ``fired`` names every detector at the alert level.

        Returns ``(evidence, z of the winner, its raw surprise, fired bit mask)``.
        """
        N, D = self.n_series, len(self._residual)
        S = np.minimum(np.stack([z_to_surprise(z, self.direction) for z in Z], axis=1), 30.0)  # (N, D)
        up = Z.T > 0
        Sides = np.zeros((N, 2 * D))
        Sides[:, 0::2] = np.where(up, S, 0.0)
        Sides[:, 1::2] = np.where(up, 0.0, S)
        Sides = np.where(ok[:, None], Sides, 0.0)
        C = self.tails.calibrate(Sides)
        self.tails.learn(Sides, ok)
        C = np.maximum(C[:, 0::2], C[:, 1::2])  # the observed side (the other has surprise 0)
        C = np.where(self._point_inside(x, lo, hi), 0.0, C)
        return self._attribute(np.where(ok[:, None], np.maximum(C, 0.0), 0.0), Z, S, extras)

    # -- state ---------------------------------------------------------
    def _sections(self) -> list[tuple[str, object]]:
        """``(tag, part)`` of every part that holds per-series state, in packing order."""
        out = [("calibration", self.calibrator)]
        out += [(sp.tag, self.members[sp.tag]) for sp in self.specs if sp.role != "pattern"]
        if self.tails is not None:
            out.append(("tails", self.tails))
        for sp in self.specs:
            if sp.role == "pattern":
                out += [(sp.tag, self.members[sp.tag]), (sp.tag + ".tails", self.pattern_tails[sp.tag])]
        return out

    def state_arrays(self) -> list[np.ndarray]:
        """Every per-series state array (first axis = series), in packing order: what a pool copies,
        gathers or resets row by row."""
        return [part.s[k] for _, part in self._sections() for k in part._shapes()]

    def _headers(self) -> list[bytes]:
        return [sections.header(tag, part.state_size()) for tag, part in self._sections()]

    def _pack(self, i) -> bytes:
        return sections.pack([(tag, part._pack(i)) for tag, part in self._sections()])

    def _unpack(self, i, buf: bytes) -> list[str]:
        """Load row ``i`` from tagged sections; parts without a section of the right size start afresh.
        Returns the tags started afresh."""
        found, fresh = sections.unpack(buf), []
        for tag, part in self._sections():
            data = found.get(tag)
            if data is not None and len(data) == part.state_size():
                part._unpack(i, data)
            else:
                part.reset([i])
                fresh.append(tag)
        return fresh

    def _legacy_parts(self, version: int) -> list:
        """The parts states of versions 1-3 packed one after the other, without tags: v1 the calibrator
        and the residual detectors, v2 also the residual likelihood, v3 also the per-detector tails and
        the context detector with its tails."""
        parts = [self.calibrator] + [self.members[sp.tag] for sp in self._residual]
        if version >= 2:
            parts += [self.members[sp.tag] for sp in self.specs if sp.role == "residuals"]
        if version >= 3:
            parts += [self.tails] if self.tails is not None else []
            for sp in self.specs:
                if sp.role == "pattern":
                    parts += [self.members[sp.tag], self.pattern_tails[sp.tag]]
        return parts

    def _unpack_legacy(self, i, buf: bytes, version: int) -> list[str]:
        parts = self._legacy_parts(version)
        pos = 0
        for d in parts:
            pos = d._unpack(i, buf, pos)
        if pos != len(buf):
            raise ValueError("state does not match this ensemble's configuration")
        fresh = []
        for tag, part in self._sections():
            if not any(part is d for d in parts):
                part.reset([i])
                fresh.append(tag)
        return fresh

    def state_bytes(self) -> int:
        """Bytes of packed state per series (before base64), section headers included."""
        return sum(len(h) + part.state_size() for h, (_, part) in zip(self._headers(), self._sections()))

    def state_of(self, i: int) -> dict:
        """JSON-able state of series ``i`` (config + base64 of the tagged sections)."""
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
        for head, (_, part) in zip(self._headers(), self._sections()):
            blocks.append(np.broadcast_to(np.frombuffer(head, dtype=np.uint8), (m, len(head))))
            for k in part._shapes():
                a = part.s[k][rows]
                a = np.ascontiguousarray(a.astype(a.dtype.newbyteorder("<"), copy=False))
                blocks.append(a.reshape(m, -1).view(np.uint8))
        packed = np.concatenate(blocks, axis=1)
        cfg = self.config()
        return [{"v": STATE_VERSION, "config": cfg, "data": base64.b64encode(packed[j].tobytes()).decode()} for j in range(m)]

    def load_state(self, i: int, state: dict) -> list[str]:
        """Load one series' state (from :meth:`state_of` / :meth:`Ensemble.to_state`) into row ``i``.

        The saved configuration must match except for the alert levels (``threshold``,
        ``critical``): they shape no learnt state, so a series checkpointed before the alert level
        changed (e.g. v1 states saved at the old default 0.25) keeps what it has learnt. Returns the
        tags of the parts the state had nothing for (a member added since): they start afresh.
        """
        v = int(state.get("v", 1))
        if v > STATE_VERSION:
            raise ValueError(f"state version {v} is newer than this library's ({STATE_VERSION})")
        if not isinstance(state.get("config"), dict) or _model_config(state["config"]) != _model_config(self.config()):
            raise ValueError("state was saved with a different configuration")
        buf = base64.b64decode(state["data"])
        return self._unpack(i, buf) if v >= 4 else self._unpack_legacy(i, buf, v)


def _model_config(cfg: dict) -> dict:
    """The configuration that shapes the learnt state (alert levels excluded; keys added after a
    state was written take their defaults, e.g. ``calibration`` for v2 states)."""
    cfg = {"calibration": DEFAULT_CALIBRATION, "novelty": False, **cfg}
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
