"""Calibration half of label feedback: a Bayesian probit model of "this alert is real".

The model is AdPredictor's online probit regression (Graepel et al. 2010, "Web-scale Bayesian
click-through rate prediction", ICML): every weight is a Gaussian ``N(mu, s2)``; a label updates
all of them in closed form by assumed-density filtering, so there is no learning rate to tune and
a weight that has seen many labels moves less. ``P(real | x) = Phi(mu . x / sqrt(beta^2 + sum x^2 s2))``.

Weights are split in two layers, summed: a :class:`MetricPrior` shared by every series of one
metric, a probit regression on all of their labels, and a per-series offset (starts at 0) that
learns only what the shared weights do not already explain (the shared layer is held fixed in
its updates). This is the "shared + specific copy of each feature" trick of hierarchical models:
a metric whose alerts are mostly labeled false gets a higher bar on all its series, and one series
can still differ from its siblings. Because the shared layer learns from labels alone, it can be
rebuilt from its label log: a retracted label is unlearned exactly by replaying the others.

The prior is centred on "alert": with no labels every would-be alert has ``P(real) > 0.5``, so
decisions are unchanged. Slopes on the size of the alert have floors: a larger departure is never
*less* likely to be real, whatever the labels say (otherwise a run of false labels could drive the
size weight to zero and mute everything).
"""

from __future__ import annotations

import math
from typing import Sequence

FEATURES = ("bias", "size", "fold", "excess", "fired", "run", "co")
# Prior means: bias 2 + size >= -2 (log2 of the band multiple, clipped at 1/4 band) keeps the
# prior logit >= 0 for any alert, i.e. "alert" (P(real) >= 0.5) until labels say otherwise.
# The two context inputs (see models.feedback.anomaly_features) start at 0: before labels they
# change nothing, and what they mean for "real" is learned from labels alone.
#   run: log2 of the episode's length so far in windows (1 window -> 0). Its floor is 0: an
#        episode that lasts longer is never *less* likely real (a short blip can be learned to be
#        benign, a long one cannot be learned to be more benign than a short one).
#   co:  share of the same service's other series out of their band in the same window. No
#        floor: errors rising with a requests dip can mean a deploy (benign) or an outage (real);
#        which one, on a service, only labels can say.
PRIOR_MU = (2.0, 1.0, 0.5, 1.0, 0.5, 0.0, 0.0)
FLOORS = (-math.inf, 0.5, 0.0, 0.0, 0.0, 0.0, -math.inf)  # slope floors: bigger / more certain / longer never count against "real"
RUN_CAP = 6.0     # log2 of the longest episode length told apart (64 windows, about an hour at 1 min)
METRIC_S2 = 0.5   # prior variance of the shared (per-metric) weights: they move slowly
SERIES_S2 = 1.0   # prior variance of a series' own offsets
BETA = 1.0        # label noise of the probit link (operators disagree, alerts are ambiguous)
MIN_S2 = 1e-3     # keep some plasticity: a series can change behaviour after many labels
SEEN_IDS = 32     # label ids remembered for idempotence (labels replay after a crash)
PRIOR_LOG = 128   # labels a MetricPrior keeps to unlearn one by replay (older ones stay learned)


def feature_vector(f: dict) -> tuple[float, ...]:
    """Regression inputs from :func:`models.feedback.anomaly_features` output."""
    dev, fold = f.get("deviation"), f.get("fold")
    size = math.log2(max(abs(dev), 0.25)) if dev is not None else 0.0
    fold = math.log2(1.0 + fold) if fold is not None else 0.0  # 1 = doubled (or halved, going down)
    run, co = f.get("run"), f.get("co")
    # unknown context (features from before it was computed) reads as "no context": a 1-window
    # episode on a service with nothing else out of band, where the context weights add nothing
    run = min(math.log2(max(float(run), 1.0)), RUN_CAP) if run is not None else 0.0
    co = min(max(float(co), 0.0), 1.0) if co is not None else 0.0
    return (1.0, min(size, 6.0), min(fold, 6.0), float(f.get("excess", 0.0)),
            min(float(f.get("n_fired", 0)), 3.0) / 3.0, run, co)


def _pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _v(t: float) -> float:
    """phi(t) / Phi(t), stable for very negative t (where it tends to -t)."""
    if t < -30.0:
        return -t
    return _pdf(t) / max(_cdf(t), 1e-300)


class Probit:
    """Diagonal Gaussian weights of a probit model (means ``mu``, variances ``s2``)."""

    def __init__(self, mu: Sequence[float], s2: Sequence[float]):
        self.mu, self.s2 = [float(m) for m in mu], [float(s) for s in s2]

    def to_state(self) -> list:
        return [[round(m, 4) for m in self.mu], [round(s, 5) for s in self.s2]]

    @classmethod
    def from_state(cls, st, default: "Probit") -> "Probit":
        n = len(default.mu)
        if not st or len(st[0]) != len(st[1]) or len(st[0]) > n:
            return cls(default.mu, default.s2)  # none yet, or saved with unknown features: start over
        # Saved before the context inputs were added (5 weights): what it learned stays, and the
        # new inputs start from their prior, as if every earlier label had no context (which is
        # what feature_vector reads for a label without it: run 1, co 0, i.e. inputs 0).
        return cls(list(st[0]) + default.mu[len(st[0]):], list(st[1]) + default.s2[len(st[1]):])


def predict(layers: Sequence[Probit], x: Sequence[float]) -> tuple[float, float]:
    """(mean logit, P(real)) of input ``x`` under the summed ``layers``."""
    m = sum(sum(w * xi for w, xi in zip(layer.mu, x)) for layer in layers)
    var = BETA ** 2 + sum(sum(s * xi * xi for s, xi in zip(layer.s2, x)) for layer in layers)
    return m, _cdf(m / math.sqrt(var))


def update(layers: Sequence[Probit], x: Sequence[float], real: bool, fixed: Probit | None = None) -> None:
    """One assumed-density-filtering step on every layer in ``layers``, then the slope floors.

    ``fixed`` (optional) is a layer summed into the prediction but left unchanged: a series'
    offsets learn the residual of its metric's shared weights without moving them.
    """
    y = 1.0 if real else -1.0
    every = ([fixed] if fixed is not None else []) + list(layers)
    m = sum(sum(w * xi for w, xi in zip(layer.mu, x)) for layer in every)
    var = BETA ** 2 + sum(sum(s * xi * xi for s, xi in zip(layer.s2, x)) for layer in every)
    sd = math.sqrt(var)
    t = y * m / sd
    v = _v(t)
    w = v * (v + t)
    for layer in layers:
        for i, xi in enumerate(x):
            s = layer.s2[i]
            layer.mu[i] += y * xi * s / sd * v
            layer.s2[i] = max(s * (1.0 - xi * xi * s / var * w), MIN_S2)
    # floors on the summed slopes: the first layer alone, then each later one on top of it
    base = every[0]
    for i, floor in enumerate(FLOORS):
        if base.mu[i] < floor and base is not fixed:
            base.mu[i] = floor
        for layer in every[1:]:
            if base.mu[i] + layer.mu[i] < floor:
                layer.mu[i] = floor - base.mu[i]
    for layer in layers:  # keep in memory exactly what a checkpoint keeps: same decisions after a restart
        layer.mu = [round(m, 4) for m in layer.mu]
        layer.s2 = [round(s, 5) for s in layer.s2]


def size_cutoff(layers: Sequence[Probit], x: Sequence[float]) -> float | None:
    """Band multiple at which an alert like ``x`` (same other inputs) becomes P(real) = 0.5."""
    mu = [sum(layer.mu[i] for layer in layers) for i in range(len(FEATURES))]
    rest = sum(m * xi for i, (m, xi) in enumerate(zip(mu, x)) if i != 1)
    if mu[1] <= 0:
        return None
    return 2.0 ** max(-2.0, min(6.0, -rest / mu[1]))


class Seen:
    """Bounded memory of recent label ids, for idempotent replays."""

    def __init__(self, ids: Sequence[str] = ()):
        self.ids = list(ids)[-SEEN_IDS:]

    @staticmethod
    def key(label_id: str) -> str:
        return str(label_id)[:10]  # label ids are hex hashes: 40 bits tell recent ones apart

    def __contains__(self, label_id: str) -> bool:
        return self.key(label_id) in self.ids

    def add(self, label_id: str) -> None:
        self.ids.append(self.key(label_id))
        del self.ids[:-SEEN_IDS]


def as_size(v) -> list | None:
    """A stored size; a bare number (older states) is a band multiple without fold change."""
    if v is None or isinstance(v, (list, tuple)):
        return None if v is None else [float(v[0]), None if v[1] is None else float(v[1])]
    return [float(v), None] if v else None


def merge_size(a, b) -> list:
    """Largest of two alert sizes ``[band multiple, fold or None]``, measure by measure."""
    if a is None:
        return list(b)
    fold = [f for f in (a[1], b[1]) if f is not None]
    return [max(a[0], b[0]), max(fold) if fold else None]


CALIB_FIELDS = 6  # entries of compact(); logs written before the context inputs have the first 4


def vector(obs) -> tuple[float, ...]:
    """:func:`feature_vector` of a logged label ``[dev, fold, excess, n_fired, run, co]`` (see
    :func:`compact`; older logs lack ``run`` and ``co``: no context)."""
    dev, fold, excess, n_fired = obs[:4]
    run, co = (list(obs[4:6]) + [None, None])[:2]
    return feature_vector({"deviation": dev, "fold": fold, "excess": excess, "n_fired": n_fired, "run": run, "co": co})


def compact(f: dict) -> list:
    """What calibration keeps of a labeled alert's features: ``[deviation, fold, excess, n_fired, run, co]``."""
    dev, fold, run, co = f.get("deviation"), f.get("fold"), f.get("run"), f.get("co")
    return [None if dev is None else round(dev, 3), None if fold is None else round(fold, 3),
            round(float(f.get("excess", 0.0)), 3), int(f.get("n_fired", 0)),
            None if run is None else int(run), None if co is None else round(float(co), 3)]


class MetricPrior:
    """Calibration shared by the series of one metric (e.g. every ``error_ratio`` series).

    A probit regression of P(real) on the labels of all of the metric's series (each series adds
    its own offsets on top, see :class:`models.feedback.FeedbackModel`). It keeps its last
    ``PRIOR_LOG`` labels, keyed by anomaly, so a label that changes verdict or is retracted is
    unlearned exactly: the weights are rebuilt by replaying the log without it.

    Keep one per metric name, checkpoint ``to_state()`` next to the series states, and pass it to
    :meth:`models.feedback.FeedbackModel.decide` / ``learn`` of each of that metric's series.

    Examples
    --------
    >>> p = MetricPrior()
    >>> MetricPrior.from_state(p.to_state()).to_state() == p.to_state()
    True
    >>> p.learn("k1", 1, [3.0, 0.5, 0.4, 1], False)
    True
    >>> p.n_labels, p.n_false
    (1, 1)
    >>> p.retract("k1"), p.n_labels, p.probit.mu == MetricPrior().probit.mu
    (True, 0, True)
    """

    def __init__(self, probit: Probit | None = None, log=()):
        self.probit = probit or self.fresh()
        self.log = [list(e) for e in log][-PRIOR_LOG:]  # [key, real, sign, dev, fold, excess, n_fired]
        self._count()

    @staticmethod
    def fresh() -> Probit:
        return Probit(PRIOR_MU, [METRIC_S2] * len(FEATURES))

    def _count(self) -> None:
        self.n_true = sum(1 for e in self.log if e[1])
        self.n_false = len(self.log) - self.n_true

    @property
    def n_labels(self) -> int:
        return self.n_false + self.n_true

    def learn(self, key: str, sign: int, obs: list, real: bool) -> bool:
        """Learn one label on anomaly ``key`` (``obs`` from :func:`compact`); False when nothing changed.

        The same verdict on the same anomaly again changes nothing; another verdict replaces the
        earlier one (unlearned by replay).
        """
        old = next((e for e in self.log if e[0] == key), None)
        if old is not None and bool(old[1]) == bool(real):
            return False
        entry = [key, int(bool(real)), sign, *obs]
        if old is not None:
            self.log.remove(old)
            self.log.append(entry)
            self._replay()
            return True
        self.log.append(entry)
        del self.log[:-PRIOR_LOG]  # older labels stay in the weights, but can no longer be unlearned
        update([self.probit], vector(obs), bool(real))
        self._count()
        return True

    def retract(self, key: str) -> bool:
        """Unlearn the label on anomaly ``key`` (replay the log without it); False when not logged."""
        old = next((e for e in self.log if e[0] == key), None)
        if old is None:
            return False
        self.log.remove(old)
        self._replay()
        return True

    def _replay(self) -> None:
        self.probit = self.fresh()
        for e in self.log:
            update([self.probit], vector(e[3:]), bool(e[1]))
        self._count()

    def snapshots(self) -> dict[str, Probit]:
        """Anomaly key -> the shared weights right after its label, replayed from the log: what a
        series replaying its own labels held fixed when it first learned each of them."""
        probit, out = self.fresh(), {}
        for e in self.log:
            update([probit], vector(e[3:]), bool(e[1]))
            out[e[0]] = Probit(probit.mu, probit.s2)
        return out

    def to_state(self) -> dict:
        return {"v": 2, "w": self.probit.to_state(), "log": self.log}

    @classmethod
    def from_state(cls, d: dict | None) -> "MetricPrior":
        """Inverse of :meth:`to_state`; states of version 1 (no log) keep their weights and counts."""
        if not d:
            return cls()
        p = cls(Probit.from_state(d.get("w"), cls.fresh()), d.get("log", ()))
        if "log" not in d:  # version 1: no log to rebuild from, keep what it knew
            p.n_true, p.n_false = d.get("n", [0, 0])
        return p
