"""Label feedback: per-series models that learn from operators' verdicts which alerts to keep.

The detectors are left alone (they keep learning what "normal" is); this model sits after them and
decides, for each would-be alert (``score >= detectors.DEFAULT_THRESHOLD``), whether to raise it.
Two mechanisms, both learned from labels:

1. **Calibration** (:mod:`models.feedback_calib`): a Bayesian probit estimate of P(real) from the
   alert's size (band multiple, fold change), score and number of detectors that fired, with a
   per-metric layer (:class:`MetricPrior`, learned from the labels of all the metric's series) and
   a per-series layer (what the metric layer does not explain). Its prior says "alert", so with no
   labels nothing changes; false labels raise the bar, true labels lower it. It mutes an alert
   only below P(real) ``SUPPRESS_BELOW`` *and* when two false alarms labeled on the series were at
   least half its size (``GUARD_SUPPORT``, ``MARGIN``).
2. **Suppression of a labeled-false pattern**: false labels of the same direction at the same time
   of day (within 1 h), on two different days, form a pattern (e.g. a nightly batch job); later
   alerts of that direction, at that time, no larger than ``MARGIN`` times the largest labeled one
   are suppressed. When all its labeled days fall on one weekday (a Sunday backup) the pattern is
   weekly and covers that weekday only.

Both use context the detect stage has and a point does not (:class:`Episode`,
:func:`service_context`): how long the series' departure from its band has lasted (``run``; a
label learns how long its episode lasted in the end, :meth:`FeedbackModel.note_episode`) and how
many of the service's other series are out of band in the same window (``co``). A muted episode is
decided again at each later window, so "a dip with a few 502s for a minute or two" can be learned
to be benign while the same dip lasting alerts, a few windows late. Calibration *waits* (P(real)
below ``CONFIRM_BELOW``) only while the episode is no longer than two of the series' false alarms
of its size lasted, and only where the episode will be decided again (not for an alert inside the
band, which has no episode, nor for a later alert of an episode that already alerted: for those a
wait would be a verdict), and mutes (below ``SUPPRESS_BELOW``) only until it has lasted ``MARGIN`` x
as long as they did.

Neither may mute a real incident: alerts more than ``MARGIN`` x the false-labeled sizes around them,
or whose episode lasted more than ``MARGIN`` x as long, always alert, as do alerts in the other
direction or at another time of day or weekday (for patterns). A true label inside a pattern's
reach removes the pattern.

The model is a function of its label log, one verdict per anomaly (the latest wins): a label that
changes an anomaly's verdict, or the ``ignore`` that ``patrol label undo`` publishes to retract a
first label, rebuilds the series model and its metric's prior by replaying their logs without the
old verdict, so an undone label is unlearned, not merely ignored.

Caller's protocol (detect worker): keep ``FeedbackModel.from_state(series.calibration)`` per series
and one :class:`MetricPrior` per metric; on a would-be alert call :meth:`FeedbackModel.decide`; on a
label call :meth:`FeedbackModel.learn` and, when it returns a :class:`Change`, bump the series'
``model_version`` and store ``model.to_state()`` in ``series.calibration`` (it holds ``changes``,
the explanation ``patrol models show`` prints).

Examples
--------
>>> from detectors import Result
>>> from models.feedback import FeedbackModel, MetricPrior, anomaly_features
>>> night = 3 * 3600.0                                     # 03:00 UTC, day 0
>>> def alert(value, t):                                    # expected 100, band +-10
...     r = Result(0.7, 1e-7, 100.0, 90.0, 110.0, "up", ("spike",), "warning")
...     return anomaly_features(r, value, t, "count")
>>> m, prior = FeedbackModel(), MetricPrior()
>>> m.decide(alert(130, night), prior).alert                # no labels: unchanged
True
>>> print(m.learn(alert(130, night), "false", "a1b2c3d4e5", prior).text)
suppress up alerts <= 6.0x band, <= 1.6x expected at 02:00-04:00 from day 2 (now 1) (label a1b2c3d4 false); P(real) like it 0.95 -> 0.74
>>> print(m.learn(alert(126, night + 86400 + 600), "false", "f00dfeed42", prior).text)   # the next night
suppress up alerts <= 5.2x band, <= 1.5x expected at 02:00-04:10 (label f00dfeed false); P(real) like it 0.74 -> 0.56
>>> m.decide(alert(128, night + 2 * 86400), prior).reason  # a recurring pattern now: suppressed
'labeled false alarm pattern: up alerts <= 5.2x band, <= 1.5x expected at 02:00-04:10 (label f00dfeed)'
>>> m.decide(alert(180, night + 2 * 86400), prior).alert   # much larger: a real incident
True
>>> m.decide(alert(130, night + 12 * 3600), prior).alert   # other time of day
True
>>> m.learn(alert(130, night), "false", "a1b2c3d4e5", prior) is None   # replayed label
True
>>> print(m.learn(alert(126, night + 86400 + 600), "ignore", "0dd0dd0dd0", prior).text)  # undo the 2nd label
unlearned label f00dfeed (false; replayed 1 labels) (label 0dd0dd0d ignore)
>>> m.decide(alert(128, night + 2 * 86400), prior).alert   # one night again: no longer a recurring pattern
True
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import datetime

import detectors

from .feedback_calib import (FEATURES, RUN_CAP, SERIES_S2, MetricPrior, Probit, Seen, as_size, compact, feature_vector,
                             merge_size, predict, size_cutoff, update, vector)

__all__ = ["Change", "Decision", "Episode", "FeedbackModel", "MetricPrior", "anomaly_features", "band_side",
           "features_of", "service_context"]

MARGIN = 2.0        # alerts > MARGIN x the largest labeled-false deviation are never muted
SLACK_MIN = 60      # a pattern covers its labeled times of day +- this many minutes
MAX_SPAN_MIN = 120  # labels further apart than this start a new pattern (no all-day patterns)
MAX_PATTERNS = 4    # per series; the weakest is dropped beyond this (bounded state)
MAX_CHANGES = 4     # explanations kept for `patrol models show`
# Calibration suppresses only when P(real) is below this: the Bayes decision when a missed incident
# costs about 4 false alarms (suppress iff P(real) < c_fa / (c_fa + c_miss) = 1 / 5).
SUPPRESS_BELOW = 0.2
# While an episode is no longer than two false alarms of its size lasted, it is held below this:
# more likely false than real were it to end now. A hold is a wait (the episode is decided again at
# each later window), so what a wrong one costs is bounded by how long the labeled false alarms lasted.
CONFIRM_BELOW = 0.5
PATTERN_ALPHA = 0.05  # a pattern suppresses when its labeled days are unlikely to be coincidence (see _recurring)
PATTERN_SIZES = 8   # labeled sizes a pattern keeps (its reach is twice the second largest)
MIN_PATTERN_DAYS = 2  # a pattern is recurring: false labels on 2 different days before it suppresses
DAY_MIN = 1440
# The detectors' longest warm-up is the seasonal model's one period (a day): alerts raised before
# it describe a detector still learning the series, not the series, so their labels do not retrain.
WARMUP_S = 86400.0
GUARD_SUPPORT = 2  # labeled false alarms of an alert's size needed before calibration may mute it
SERIES_LOG = 32     # labels a series keeps to unlearn one by replay (bounded state)
# Episode lengths are told apart up to 2 ** feedback_calib.RUN_CAP windows; an episode that long is
# measured then (its labels need not wait for its end). An episode remembers the keys of its first
# few raised alerts (the detectors re-alert only when it worsens), a model the lengths of its last
# SERIES_LOG measured alerts (as many as labels it keeps).
EPISODE_MAX = 2 ** int(RUN_CAP)
EPISODE_KEYS = 4


@dataclass(frozen=True)
class Decision:
    """Adjusted verdict on a would-be alert.

    Attributes
    ----------
    alert : bool
        Raise it (True) or suppress it.
    score : float
        Estimated probability that the alert is real (calibration model).
    reason : str or None
        Why it was suppressed (None when it alerts).
    """

    alert: bool
    score: float
    reason: str | None = None


@dataclass(frozen=True)
class Change:
    """What one label changed in a series' model (bump ``model_version`` when you get one)."""

    label_id: str
    verdict: str
    text: str

    def as_dict(self) -> dict:
        # a 12-character prefix names the label for `patrol label show` and keeps the state small
        return {"label": self.label_id[:12], "verdict": self.verdict, "change": self.text}


def _epoch(t) -> float:
    if isinstance(t, datetime):
        return t.timestamp()
    return float(t)


def anomaly_features(result, value: float, t, metric_kind: str, threshold: float = detectors.DEFAULT_THRESHOLD,
                     age_s: float | None = None, run: int | None = None, co: float | None = None) -> dict:
    """JSON-able description of a would-be alert, the input of :class:`FeedbackModel`.

    Parameters
    ----------
    result : detectors.Result
        The ensemble verdict on the point.
    value : float
        Observed value.
    t : float or datetime
        Window start (epoch seconds or aware datetime); time of day is taken in UTC.
    metric_kind : str
        ``count``, ``ratio``, ``latency`` or ``gauge``.
    threshold : float
        Alert threshold on the score (``excess`` is the score's position above it, in [0, 1]).
    age_s : float, optional
        Seconds since the series' first point, when the caller knows it: a label on an alert raised
        before the detectors saw one full day (``WARMUP_S``) is not learned from (see
        :meth:`FeedbackModel.learn`). Omitted: ``age_h`` is None and the label counts.
    run : int, optional
        Context from the detect stage (:class:`Episode`): windows this series has been out of its
        band in this direction, this one included (1 = the episode starts now). None when unknown.
    co : float, optional
        Context from the detect stage: share (0..1) of the same service's *other* series that are
        out of their band in the same window (:func:`service_context`). None when unknown (0 for a
        series alone on its service).

    Returns
    -------
    dict
        ``score``, ``p_value``, ``fired`` (detector names), ``n_fired``, ``direction`` (up/down),
        ``deviation`` (signed band multiple: ``(value - expected) / (upper - expected)`` above,
        ``/ (expected - lower)`` below; None without a band), ``rel_change`` (vs expected; None at 0),
        ``fold`` (fold change in the alert's direction, minus 1: ``value / expected - 1`` up,
        ``expected / value - 1`` down; None without a positive expected value),
        ``magnitude`` (``|value - expected|``), ``excess``, ``t`` (window start, epoch seconds),
        ``minute`` (of the UTC day), ``hour``, ``day`` (since the epoch), ``dow`` (0 = Monday), ``metric_kind``,
        ``age_h`` (hours since the series' first point, None when unknown), ``run`` and ``co``
        (the context above, None when unknown).

    Examples
    --------
    >>> from detectors import Result
    >>> r = Result(0.6, 1e-6, 100.0, 90.0, 110.0, "up", ("spike", "cusum"), "warning")
    >>> f = anomaly_features(r, 125.0, 3 * 3600 + 1800, "count")
    >>> f["deviation"], f["rel_change"], f["hour"], f["dow"], f["n_fired"]
    (2.5, 0.25, 3, 3, 2)
    """
    ts = _epoch(t)
    exp, diff = float(result.expected), float(value) - float(result.expected)
    half = (float(result.upper) - exp) if diff >= 0 else (exp - float(result.lower))
    dev = diff / half if math.isfinite(half) and half > 0 and math.isfinite(diff) else None
    direction = result.direction or ("up" if diff >= 0 else "down")
    minute = int(ts // 60) % DAY_MIN
    score = float(result.score)
    # Fold change, symmetric: 2x up and halving down are both 1.0; a drop to zero is huge. None
    # when there is no positive expected value to compare with (gauges around zero).
    v = float(value)
    fold = None
    if exp > 0 and math.isfinite(v):
        fold = (v / exp - 1.0) if direction == "up" else (exp / v - 1.0 if v > 0 else 1e6)
        fold = round(min(max(fold, 0.0), 1e6), 4)
    return {
        "score": round(score, 4), "p_value": float(result.p_value), "fired": list(result.fired),
        "n_fired": len(result.fired), "direction": direction,
        "deviation": None if dev is None else round(dev, 4),
        "rel_change": round(diff / abs(exp), 4) if exp and math.isfinite(diff) else None, "fold": fold,
        "magnitude": abs(diff) if math.isfinite(diff) else None,
        "excess": round(min(max((score - threshold) / (1.0 - threshold), 0.0), 1.0), 4),
        "t": int(ts), "minute": minute, "hour": minute // 60, "day": int(ts // 86400),
        "dow": (int(ts // 86400) + 3) % 7,  # 1970-01-01 was a Thursday
        "metric_kind": metric_kind, "age_h": None if age_s is None else round(float(age_s) / 3600.0, 2),
        "run": None if run is None else int(run), "co": None if co is None else round(float(co), 3),
    }


def band_side(value: float, lower: float, upper: float) -> int:
    """+1 above the band, -1 below it, 0 inside it (or without a band yet)."""
    if value > upper:
        return 1
    if value < lower:
        return -1
    return 0  # also NaN bounds (warm-up): comparisons are False


class Episode:
    """A series' current departure from normal, seen point by point by the detect stage.

    An episode starts at a window outside the detectors' band and lasts while the series stays
    on that side of the band *as it was when the episode started* (``ref``): the detectors adapt
    their band to a level that persists (an outage's band widens within minutes), which says
    nothing about whether the departure from what was normal before goes on. ``sign`` is its side
    (+1 above, -1 below, 0 no episode), ``run`` its length in windows so far (this one included),
    ``t`` the last window stepped. ``held``: an alert of this episode was muted by feedback and
    none was raised yet, so later windows of the episode are decided again as it grows
    (:meth:`recheck`): "a dip with a few 502s for a minute or two" can be learned to be benign
    while the same dip lasting is not. ``raised``: an alert of this episode was raised (its later
    windows are not re-decided). Only an alert that can be held this way may be *waited* on
    (:meth:`decide` tells the model): an alert inside the band (no episode) or a later alert of a
    raised episode is decided for good.

    A missing window (more than 1.5 periods since the last point) ends the episode: with no point
    we do not know where the series was. An episode is measured at ``EPISODE_MAX`` windows at most
    (longer ones read the same); then the next window starts afresh against the band of the time.

    Examples
    --------
    >>> e = Episode()            # (t, value, band lower, band upper): the band widens during the drop
    >>> [e.step(t, v, lo, hi, 60) for t, v, lo, hi in [(0, 120, 90, 110), (60, 130, 90, 110), (120, 80, 90, 110),
    ...                                                  (180, 20, 80, 115), (240, 20, 10, 150), (300, 100, 10, 150)]]
    [1, 2, 1, 2, 3, 0]
    >>> e.sign, e.recheck()
    (0, False)
    """

    __slots__ = ("sign", "run", "t", "held", "raised", "excess", "keys", "closed", "ref", "start")

    def __init__(self, sign: int = 0, run: int = 0, t: float = -math.inf, held: bool = False, raised: bool = False,
                 excess: float = 0.0, keys=(), ref=None, start: float | None = None):
        self.sign, self.run, self.t, self.held, self.raised = int(sign), int(run), float(t), bool(held), bool(raised)
        self.excess = float(excess)  # the muted alert's score excess (later windows are damped by the detectors)
        self.keys = list(keys)       # anomaly_key of the alerts raised in this episode (for their labels)
        self.ref = tuple(ref) if ref else None  # (lower, upper) when the episode started
        self.start = -math.inf if start is None else float(start)  # its first window
        self.closed: tuple[list, int] | None = None  # set by step: (keys, length) of an episode just measured

    def step(self, t: float, value: float, lower: float, upper: float, period: float) -> int:
        """Advance to window ``t`` (``value`` and the detectors' band there); the episode's length.

        When this ends an episode that raised alerts, or its length reaches ``EPISODE_MAX``,
        ``closed`` is ``(their anomaly keys, its length)`` for :meth:`FeedbackModel.note_episode`
        (their labels then learn how long it lasted); else None.
        """
        if not self.sign and self.closed is None and not value > upper and not value < lower:
            self.t = t  # the common case, kept cheap (the detect stage steps every point)
            return 0
        self.closed = None
        if self.sign and self.run < EPISODE_MAX and t - self.t <= 1.5 * period \
                and band_side(value, *self.ref) == self.sign:
            self.run += 1
            if self.run == EPISODE_MAX and self.keys:
                self.closed, self.keys = (self.keys, self.run), []
        else:
            if self.keys:
                self.closed = (self.keys, self.run)
            side = band_side(value, lower, upper)
            self.sign, self.run, self.held, self.raised, self.excess = side, 1 if side else 0, False, False, 0.0
            self.keys, self.ref = [], ((float(lower), float(upper)) if side else None)
            self.start = t if side else -math.inf
        self.t = t
        return self.run

    def recheck(self) -> bool:
        """Decide this window again: an alert of this episode was muted, none raised, and it goes on."""
        return self.held and self.sign != 0

    def decide(self, model: "FeedbackModel", features: dict, prior: "MetricPrior | None" = None,
               start: float | None = None) -> "Decision":
        """:meth:`FeedbackModel.decide` on a would-be alert of this episode (or a :meth:`recheck`),
        holding the episode when it is muted. ``features`` must carry this episode's ``run``; on a
        recheck their ``excess`` is raised to the muted alert's: the detectors damp an ongoing
        episode's later scores, which is no evidence that it is less real.

        ``start``: the episode start the caller saw when it stepped this window; when the episode
        has moved on since (a batch held several windows of the series), the decision is made
        without touching this episode's state."""
        if start is not None and start != self.start:
            return model.decide(features, prior, wait=False)  # nothing to hold: no wait
        sign = 1 if features.get("direction") == "up" else -1
        if self.held:
            features = {**features, "excess": max(float(features.get("excess", 0.0)), self.excess)}
        # a hold is a wait only when this episode will be decided again: an episode on the alert's
        # side that raised nothing yet; an alert inside the band (no episode) is decided for good
        d = model.decide(features, prior, wait=not self.raised and sign == self.sign)
        if d.alert:
            self.held, self.raised = False, True
            if self.sign and len(self.keys) < EPISODE_KEYS:
                self.keys.append(anomaly_key(features))
        elif not self.raised and sign == self.sign:
            self.held, self.excess = True, max(self.excess, float(features.get("excess", 0.0)))
        return d

    def to_state(self) -> list:
        return [self.sign, self.run, self.t if math.isfinite(self.t) else None, int(self.held), int(self.raised),
                round(self.excess, 4), self.keys, list(self.ref) if self.ref else None,
                self.start if math.isfinite(self.start) else None]

    @classmethod
    def from_state(cls, st) -> "Episode":
        """Inverse of :meth:`to_state`; None (states saved before episodes were kept) gives a fresh one."""
        if not st:
            return cls()
        sign, run, t, held, raised, excess, keys, ref, start = st
        return cls(sign, run, -math.inf if t is None else t, held, raised, excess, keys, ref, start)


def service_context(others: list[int]) -> float:
    """``co`` of :func:`anomaly_features`: the share of the service's other series out of band
    (``others``: their :func:`band_side` in the same window); 0 for a series alone on its service."""
    return sum(1 for x in others if x) / len(others) if others else 0.0


def features_of(anomaly, metric_kind: str | None = None) -> dict:
    """:func:`anomaly_features` of a published :class:`records.Anomaly` (labels carry only its id).

    ``p_value`` is recovered from the score (``score = -log10(p) / 10``); ``metric_kind`` defaults to
    :func:`models.metric_kinds.kind_of` of the anomaly's metric.

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> from records import Anomaly
    >>> a = Anomaly(id="a1", series="requests{service=web}", metric="requests", window_start=datetime(2026, 1, 5, 3,
    ...             tzinfo=timezone.utc), window_end=datetime(2026, 1, 5, 3, 1, tzinfo=timezone.utc), observed=130.0,
    ...             expected=100.0, lower=90.0, upper=110.0, score=0.7, severity="warning", direction="up",
    ...             detectors=["spike"])
    >>> f = features_of(a)
    >>> f["deviation"], f["hour"], f["metric_kind"]
    (3.0, 3, 'count')
    """
    from .metric_kinds import kind_of

    direction = getattr(anomaly.direction, "value", anomaly.direction)
    r = detectors.Result(anomaly.score, 10.0 ** (-10.0 * anomaly.score), anomaly.expected, anomaly.lower, anomaly.upper,
                         direction if direction in ("up", "down") else None, tuple(anomaly.detectors), "warning")
    return anomaly_features(r, anomaly.observed, anomaly.window_start, metric_kind or kind_of(anomaly.metric).kind)


def _short(label_id: str) -> str:
    return str(label_id)[:8]  # label ids are hex hashes; `patrol label` accepts 8-character prefixes


def _hhmm(minute: int) -> str:
    return f"{minute % DAY_MIN // 60:02d}:{minute % 60:02d}"


def _size(features: dict) -> list | None:
    """Alert size ``[band multiple, fold or None]`` (rounded as stored), None without a band."""
    dev, fold = features.get("deviation"), features.get("fold")
    if dev is None:
        return None
    return [round(abs(dev), 3), None if fold is None else round(fold, 3)]


def _within(size: list, top: list | None) -> bool:
    """``size`` is at most ``MARGIN`` x ``top`` on every measure both have (None ``top``: nothing labeled)."""
    if top is None or size[0] > MARGIN * top[0]:
        return False
    return size[1] is None or top[1] is None or size[1] <= MARGIN * top[1]


def anomaly_key(features: dict) -> str:
    """Identity of the labeled anomaly within its series, from its features.

    Every label on one anomaly (a mark, a later change of mind, an undo) carries the same copied
    features, so this key tells "the same anomaly again" from a new one without its id: the window
    (``t``, or day and minute in records older than ``t``), direction, size and score.
    """
    when = features.get("t", (features.get("day", 0), features.get("minute")))
    ident = [when, features.get("direction"), features.get("deviation"), features.get("fold"), features.get("score"),
             features.get("metric_kind")]
    return hashlib.blake2b(json.dumps(ident, default=str).encode(), digest_size=6).hexdigest()


_DOW = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class Pattern:
    """Labeled-false alerts of one direction around one time of day (every day, or weekly).

    Covers minutes ``start .. start + width`` of the UTC day (+- ``SLACK_MIN``), sizes up to
    ``MARGIN`` x ``top``: the *second* largest band multiple and fold change among its last
    ``PATTERN_SIZES`` labeled sizes (the largest when it has one), so a single outsized false alarm
    (a night the weekly backup ran during the job, an early night the seasonal model had not learned)
    cannot stretch it over a real incident twice its usual size. ``label`` is the short id of the label that last widened it. ``mask`` holds the weekdays its false labels fell on: when
    they fell on one weekday only, on different days (so at least a week apart), the cause is weekly
    (a Sunday backup) and the pattern covers that weekday only.
    """

    __slots__ = ("sign", "start", "width", "sizes", "n", "label", "day", "mask")

    def __init__(self, sign: int, start: int, width: int, sizes: list, n: int, label: str, day: int = -1, mask: int = 0):
        self.sign, self.start, self.width, self.n, self.label = sign, start, width, n, label
        if not isinstance(sizes, (list, tuple)) or (sizes and not isinstance(sizes[0], (list, tuple))):
            sizes = [sizes]  # a state older than size lists: its top only (a bare band multiple before fold)
        self.sizes = [as_size(z) for z in sizes][-PATTERN_SIZES:]
        self.day = day    # anchor day of the last label counted in n (n counts distinct days)
        self.mask = mask  # weekdays (bit 0 = Monday) of the days counted; 0 in states older than this field

    @property
    def active(self) -> bool:
        return self.n >= MIN_PATTERN_DAYS

    @property
    def top(self) -> list:
        """Second largest labeled size, measure by measure (the largest with one label)."""
        def second(vals):
            vals = sorted(v for v in vals if v is not None)
            return None if not vals else vals[-2] if len(vals) > 1 else vals[-1]
        return [second(z[0] for z in self.sizes), second(z[1] for z in self.sizes)]

    def add(self, size: list) -> None:
        self.sizes = (self.sizes + [list(size)])[-PATTERN_SIZES:]

    @property
    def weekly(self) -> bool:
        return self.active and self.mask != 0 and self.mask & (self.mask - 1) == 0  # one weekday only

    def count(self, day: int) -> None:
        if day != self.day:
            self.n, self.day = self.n + 1, day
            self.mask |= 1 << ((day + 3) % 7)  # 1970-01-01 was a Thursday

    def offset(self, minute: int) -> int:
        return (minute - self.start) % DAY_MIN

    def near(self, minute: int) -> bool:
        d = self.offset(minute)
        return d <= self.width + SLACK_MIN or d >= DAY_MIN - SLACK_MIN

    def anchor(self, day: int, minute: int) -> int:
        """The day whose occurrence of the pattern's hours holds ``minute`` of ``day`` (for a
        pattern around midnight, 00:20 belongs to the previous evening's occurrence)."""
        d = self.offset(minute)
        if d > self.width + SLACK_MIN:   # before the start: part of that day's occurrence, unless it wrapped
            return day if minute >= self.start - SLACK_MIN else day + 1
        return day if minute >= self.start else day - 1

    def reaches(self, sign: int, minute: int, size: list, day: int | None = None) -> bool:
        if sign != self.sign or not self.near(minute) or not _within(size, self.top):
            return False
        return not self.weekly or day is None or self.mask >> ((self.anchor(day, minute) + 3) % 7) & 1 == 1

    def covers(self, sign: int, minute: int, size: list, day: int | None = None) -> bool:
        """Would suppress: within reach (weekday included), and seen on enough days to be a recurring pattern."""
        return self.active and self.reaches(sign, minute, size, day)

    def widened(self, minute: int) -> tuple[int, int] | None:
        """(start, width) once ``minute`` is included, or None when that would exceed ``MAX_SPAN_MIN``."""
        d = self.offset(minute)
        if d <= self.width:
            return self.start, self.width
        fwd, back = d, self.width + DAY_MIN - d  # extend the end, or move the start back
        start, width = (self.start, fwd) if fwd <= back else (minute, back)
        return (start, width) if width <= MAX_SPAN_MIN else None

    def describe(self) -> str:
        word = "up" if self.sign > 0 else "down"
        lo, hi = self.start - SLACK_MIN, self.start + self.width + SLACK_MIN
        size = f"<= {MARGIN * self.top[0]:.1f}x band"
        if self.top[1] is not None:
            f = 1.0 + MARGIN * self.top[1]
            size += f", {'<=' if self.sign > 0 else '>='} {f if self.sign > 0 else 1.0 / f:.2g}x expected"
        what = f"{word} alerts {size} at {_hhmm(lo)}-{_hhmm(hi)}"
        if self.weekly:
            what += " on " + "/".join(d for i, d in enumerate(_DOW) if self.mask >> i & 1) + "s"
        return what if self.active else f"{what} from day {MIN_PATTERN_DAYS} (now {self.n})"

    def to_state(self) -> list:
        return [self.sign, self.start, self.width, self.sizes, self.n, self.label, self.day, self.mask]


@dataclass
class _Obs:
    """One logged label: what learning needs of it, compact enough to keep ``SERIES_LOG`` of them."""

    key: str
    real: bool
    sign: int
    minute: int
    day: int
    calib: list        # :func:`models.feedback_calib.compact`
    short: str

    @property
    def size(self) -> list | None:
        return _size({"deviation": self.calib[0], "fold": self.calib[1]})

    def to_state(self) -> list:
        return [self.key, int(self.real), self.sign, self.minute, self.day, *self.calib, self.short]

    @property
    def run(self) -> int | None:
        """Episode length (windows) when the labeled alert was raised; None in logs from before it was kept."""
        return self.calib[4] if len(self.calib) > 4 else None

    @classmethod
    def from_state(cls, e) -> "_Obs":
        # calib has 4 entries in logs written before the context inputs, 6 since (CALIB_FIELDS)
        return cls(e[0], bool(e[1]), e[2], e[3], e[4], list(e[5:-1]), e[-1])


class FeedbackModel:
    """One series' label feedback (calibration offsets, false-alarm patterns, explanations).

    The model is a function of its label log: the last ``SERIES_LOG`` labels, one per anomaly
    (the latest verdict wins). A label that changes an anomaly's verdict, or an undo that retracts
    it (``ignore`` on an anomaly already labeled), rebuilds the model by replaying the log without
    the old verdict, so it is truly unlearned (labels older than the log stay learned until then and
    are forgotten by a rebuild). State is small and bounded (``to_state()`` is JSON, a few kB at
    most, whatever the number of labels). See the module docstring for the protocol and an example.
    """

    def __init__(self):
        self.seen = Seen()
        self.changes: list[dict] = []
        self.log: list[_Obs] = []
        self.lengths: dict[str, int] = {}  # anomaly_key -> length of its episode (note_episode), last SERIES_LOG
        self._reset()

    def _reset(self) -> None:
        """Everything learned from labels, as before any label (``seen``, ``changes`` and ``log`` stay)."""
        self.layer = Probit([0.0] * len(FEATURES), [SERIES_S2] * len(FEATURES))
        self.patterns: list[Pattern] = []
        self.max_false: dict[int, list | None] = {1: None, -1: None}  # largest labeled-false size per direction
        self.n_true = self.n_false = 0

    # -- decisions -------------------------------------------------------------------------
    def decide(self, features: dict, prior: MetricPrior | None = None, wait: bool = True) -> Decision:
        """Should this would-be alert (detector score >= threshold) be raised?

        Parameters
        ----------
        features : dict
            From :func:`anomaly_features`.
        prior : MetricPrior, optional
            The series' metric calibration (a fresh one when omitted).
        wait : bool
            A muted alert will be decided again at its episode's next window (what
            :meth:`Episode.decide` tells; it passes False when there is no episode to re-decide,
            e.g. for an alert inside the band): only then may calibration *hold* below
            ``CONFIRM_BELOW``; without a re-decision a hold would be a mute, so the bar is
            ``SUPPRESS_BELOW``.
        """
        prior = prior or MetricPrior()
        x = feature_vector(features)
        _, p = predict([prior.probit, self.layer], x)
        if self.n_true + self.n_false + prior.n_labels == 0:
            return Decision(True, p)
        sign = 1 if features.get("direction") == "up" else -1
        size = _size(features)
        if size is None:  # no band yet: nothing to compare sizes with
            return Decision(True, p)
        day = features.get("day")
        run = features.get("run")
        for pat in self.patterns:
            if pat.covers(sign, features["minute"], size, day) and self._recurring(pat) \
                    and self._lasted(sign, run, MARGIN):
                return Decision(False, p, f"labeled false alarm pattern: {pat.describe()} (label {pat.label})")
        # P(real) below CONFIRM_BELOW while the episode is no longer than two false alarms of its
        # size lasted: wait (a muted episode is decided again next window); past that, or with no
        # re-decision to come (``wait`` False: the wait would be a verdict), mute only below
        # SUPPRESS_BELOW and while it has lasted at most MARGIN x as long as they did
        bar = CONFIRM_BELOW if wait and self._vouched(sign, size, run, 1.0) else SUPPRESS_BELOW
        if p < bar and self._vouched(sign, size, run):
            cut = size_cutoff([prior.probit, self.layer], x)
            need = f"; alerts like it need >= {cut:.1f}x band" if cut else ""
            lasted = "" if run is None else f" ({run} window{'s' if run != 1 else ''} out of band so far)"
            if not wait:  # inside the band, or its episode already alerted: decided for good
                lasted = " (not decided again: no held episode)"
            return Decision(False, p, f"calibrated on labels: P(real) {p:.2f} < {bar}{lasted}{need}")
        return Decision(True, p)

    def _lasted(self, sign: int, run: int | None, margin: float) -> bool:
        """At least ``GUARD_SUPPORT`` logged false labels in this direction lasted ``run / margin``
        windows or more (or their length is unknown: labels from before it was kept). Any episode
        passes when ``run`` is unknown, and a state without a label log (version 1) passes."""
        if run is None or not self.log:
            return True
        n = sum(1 for o in self.log if not o.real and o.sign == sign and (o.run is None or run <= margin * o.run))
        return n >= GUARD_SUPPORT

    def _recurring(self, pat: Pattern) -> bool:
        """The pattern's labeled days are more than chance would put in its hours.

        Under "false alarms come at any time of day", each of the series' false labels in this
        direction falls in the pattern's window (its hours +- slack) with probability window / day;
        the pattern suppresses only when seeing ``pat.n`` or more there has probability below
        ``PATTERN_ALPHA``: two crawler bursts that happened to hit 13:00 on two days out of ten
        false alarms are not a recurring cause, two nights of a batch job out of two alarms are.
        """
        if not self.log:  # a state from before the label log: trust its patterns as they were
            return True
        # at least its own days: labels that counted for it may have left the bounded log since
        n_all = max(pat.n, sum(1 for o in self.log if not o.real and o.sign == pat.sign))
        w = min(1.0, (pat.width + 2 * SLACK_MIN) / DAY_MIN)
        tail = sum(math.comb(n_all, j) * w ** j * (1 - w) ** (n_all - j) for j in range(pat.n, n_all + 1))
        return tail < PATTERN_ALPHA

    def _vouched(self, sign: int, size: list, run: int | None = None, run_margin: float = MARGIN) -> bool:
        """Calibration may mute only what false alarms on this series were seen to be: at least
        ``GUARD_SUPPORT`` of its logged false labels in this direction are each at least 1 / ``MARGIN``
        of ``size`` (on both measures) and, when both are known, lasted at least 1 / ``MARGIN`` of
        ``run`` (episode length in windows: a departure that has lasted more than twice as long as
        the labeled false alarms is not what they were, whatever its size). Two, not one: a single
        outsized false alarm (a detector still warming up) must not vouch for muting everything
        below twice its size."""
        if not self.log:  # a state from before the label log: only the largest false size is known
            return _within(size, self.max_false[sign])
        n = sum(1 for o in self.log if not o.real and o.sign == sign and o.size is not None and _within(size, o.size)
                and (run is None or o.run is None or run <= run_margin * o.run))
        return n >= GUARD_SUPPORT

    def note_episode(self, keys, length: int) -> None:
        """The episode of the alerts ``keys`` (:func:`anomaly_key`) lasted ``length`` windows
        (:attr:`Episode.closed`, from the detect stage). Their labels, when they come, learn that
        length as ``run`` instead of the length when they were raised: an operator judges the whole
        episode, and "a dip for a minute or two" versus "a drop that lasts" is what calibration can
        then learn. A label learned before its episode ended keeps the length it had then."""
        for k in keys:
            self.lengths.pop(k, None)
            self.lengths[k] = int(length)
        while len(self.lengths) > SERIES_LOG:
            del self.lengths[next(iter(self.lengths))]

    # -- learning --------------------------------------------------------------------------
    def learn(self, features: dict, verdict: str, label_id: str, prior: MetricPrior | None = None) -> Change | None:
        """Learn one label; returns what changed, or None when nothing did.

        The latest label on an anomaly is the one in effect: another verdict on an anomaly already
        labeled replaces the earlier one, and ``ignore`` on it (what ``patrol label undo`` publishes
        when it retracts a first label) unlearns it; both rebuild the model by replaying its label
        log. Nothing changes for ``ignore`` on an unlabeled anomaly, for a label id already learned,
        for the same verdict on the same anomaly again, for a false label that an existing pattern
        already covers in time and size, for a label on an alert raised while the detectors were
        still warming up (``age_h`` under ``WARMUP_S``), and for a label without features.

        Parameters
        ----------
        features : dict
            :func:`anomaly_features` of the labeled anomaly (as it was when raised).
        verdict : str
            ``"true"``, ``"false"`` or ``"ignore"``.
        label_id : str
            The label's id: a replayed label (same id) changes nothing.
        prior : MetricPrior, optional
            The metric's shared calibration, updated too (checkpoint it).
        """
        verdict = getattr(verdict, "value", verdict)
        if verdict not in ("true", "false", "ignore"):
            raise ValueError(f"verdict must be true, false or ignore, not {verdict!r}")
        if label_id in self.seen:
            return None
        if not all(k in features for k in ("score", "direction", "minute")):
            return None  # a label without the anomaly's features (older records): nothing to learn from
        prior = prior if prior is not None else MetricPrior()
        key, short = anomaly_key(features), _short(label_id)
        old = next((o for o in self.log if o.key == key), None)
        if verdict == "ignore" and old is None:
            return None
        self.seen.add(label_id)
        real = verdict == "true"
        if old is not None and (verdict == "ignore" or old.real != real):
            self.log.remove(old)
            prior.retract(key)
            self._replay(prior)
            undone = f"unlearned label {old.short} ({'true' if old.real else 'false'}; replayed {len(self.log)} labels)"
            if verdict == "ignore":
                return self._log(Change(str(label_id), verdict, f"{undone} (label {short} ignore)"))
            text = self._apply(self._obs(features, key, real, short), prior)
            return self._log(Change(str(label_id), verdict, f"{undone}; {text}"))
        if old is not None:  # same verdict on the same anomaly again
            return None
        age = features.get("age_h")
        if age is not None and age * 3600.0 < WARMUP_S:
            return None  # raised while the detectors were still warming up: says nothing about later alerts
        if key in self.lengths:  # how long its episode lasted (note_episode)
            features = {**features, "run": max(self.lengths[key], int(features.get("run") or 1))}
        text = self._apply(self._obs(features, key, real, short), prior)
        return None if text is None else self._log(Change(str(label_id), verdict, text))

    @staticmethod
    def _obs(features: dict, key: str, real: bool, short: str) -> _Obs:
        return _Obs(key, real, 1 if features.get("direction") == "up" else -1, int(features["minute"]),
                    int(features.get("day", -1)), compact(features), short)

    def _apply(self, o: _Obs, prior: MetricPrior, fixed: Probit | None = None) -> str | None:
        """Learn ``o``; the explanation, or None when nothing changed.

        Online (``fixed`` None) ``o`` is logged and the metric's prior learns it too; in a replay
        ``fixed`` is the prior's weights as they were right after ``o`` (the prior has its own log).
        """
        replay = fixed is not None
        if not replay:
            self.log = (self.log + [o])[-SERIES_LOG:]
        size, short = o.size, o.short
        if not o.real and size is not None:
            pat = next((p for p in self.patterns if p.covers(o.sign, o.minute, size, o.day) and self._recurring(p)), None)
            if pat is not None:
                # Explained away: one recurring cause, already suppressed. Training calibration on
                # every repeat would teach it that *all* alerts of this size are false.
                self.n_false += 1
                span, top = pat.widened(o.minute) or (pat.start, pat.width), pat.top
                day = pat.anchor(o.day, o.minute)
                pat.add(size)
                if top == pat.top and span == (pat.start, pat.width) and day == pat.day:
                    return None
                (pat.start, pat.width), pat.label = span, short
                pat.count(day)
                return f"suppress {pat.describe()} (label {short} false)"
        x = vector(o.calib)
        before = predict([prior.probit, self.layer], x)[1]
        if not replay:
            prior.learn(o.key, o.sign, o.calib, o.real)
        # the series learns what its metric does not explain
        update([self.layer], x, o.real, fixed=fixed if replay else prior.probit)
        after = predict([prior.probit, self.layer], x)[1]
        calib = f"P(real) like it{self._context_text(o)} {before:.2f} -> {after:.2f}"
        if o.real:
            self.n_true += 1
            lifted = self._lift(o.sign, o.minute, size, o.day) if size is not None else []
            return "; ".join([f"true incident (label {short} true)"] + lifted + [calib])
        self.n_false += 1
        if size is None:
            return f"false alarm (label {short} false); {calib}"
        self.max_false[o.sign] = merge_size(self.max_false[o.sign], size)
        return f"{self._suppress(o.sign, o.minute, size, short, o.day)} (label {short} false); {calib}"

    @staticmethod
    def _context_text(o: _Obs) -> str:
        """The labeled alert's episode context, for explanations (empty for labels without it)."""
        if o.run is None:
            return ""
        co = o.calib[5] if len(o.calib) > 5 else None
        other = f", {co:.0%} of the service's other series out of band" if co else ""
        return f" ({o.run} window{'s' if o.run != 1 else ''} out of band{other})"

    def _replay(self, prior: MetricPrior) -> None:
        """Rebuild everything learned from the log (the metric's prior is already rebuilt by its own log)."""
        self._reset()
        snaps = prior.snapshots()
        for o in self.log:
            self._apply(o, prior, fixed=snaps.get(o.key, prior.probit))  # older than the prior's log: today's

    def _log(self, change: Change) -> Change:
        self.changes = (self.changes + [change.as_dict()])[-MAX_CHANGES:]
        return change

    def _suppress(self, sign: int, minute: int, size: list, short: str, day: int) -> str:
        for pat in self.patterns:
            if pat.sign == sign and pat.near(minute):
                span = pat.widened(minute)
                if span is not None:
                    pat.start, pat.width = span
                    pat.label = short
                    pat.add(size)
                    pat.count(pat.anchor(day, minute))
                    return f"suppress {pat.describe()}"
        if len(self.patterns) >= MAX_PATTERNS:  # drop the least supported (oldest on ties)
            self.patterns.remove(min(self.patterns, key=lambda p: p.n))
        pat = Pattern(sign, minute, 0, [size], 0, short)
        pat.count(day)
        self.patterns.append(pat)
        return f"suppress {pat.describe()}"

    def _lift(self, sign: int, minute: int, size: list, day: int) -> list[str]:
        gone = [p for p in self.patterns if p.reaches(sign, minute, size, day)]
        self.patterns = [p for p in self.patterns if p not in gone]
        return [f"lift suppression of {p.describe()} (set by label {p.label})" for p in gone]

    # -- state -----------------------------------------------------------------------------
    def to_state(self) -> dict:
        """JSON-able, bounded state (store it in ``Series.calibration``)."""
        return {"v": 3, "w": self.layer.to_state(), "pat": [p.to_state() for p in self.patterns],
                "maxf": [self.max_false[1], self.max_false[-1]],
                "n": [self.n_true, self.n_false], "seen": self.seen.ids, "changes": self.changes,
                "log": [o.to_state() for o in self.log], "len": [[k, n] for k, n in self.lengths.items()]}

    @classmethod
    def from_state(cls, d: dict | None) -> "FeedbackModel":
        """Inverse of :meth:`to_state`; an empty or missing state gives a fresh model."""
        m = cls()
        if not d:
            return m
        m.layer = Probit.from_state(d.get("w"), m.layer)
        m.patterns = [Pattern(*p) for p in d.get("pat", [])]
        up, down = d.get("maxf", [None, None])
        m.max_false = {1: as_size(up), -1: as_size(down)}
        m.n_true, m.n_false = d.get("n", [0, 0])
        m.seen = Seen(d.get("seen", ()))
        m.changes = list(d.get("changes", []))
        m.log = [_Obs.from_state(e) for e in d.get("log", [])]  # none in version 1: nothing to unlearn by replay
        m.lengths = {k: int(n) for k, n in d.get("len", [])}   # none before version 3
        return m
