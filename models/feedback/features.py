"""An alert's features: what label feedback learns from (size against the band, fold change, score,
detectors, time of day, episode length, service context) and the keys that name them."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime

from patrol import detectors
from .constants import DAY_MIN, MARGIN

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
    >>> from patrol.detectors import Result
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


def features_of(anomaly, metric_kind: str | None = None) -> dict:
    """:func:`anomaly_features` of a published :class:`records.Anomaly` (labels carry only its id).

    ``p_value`` is recovered from the score (``score = -log10(p) / 10``); ``metric_kind`` defaults to
    :func:`models.metric_kinds.kind_of` of the anomaly's metric.

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> from patrol.records import Anomaly
    >>> a = Anomaly(id="a1", series="requests{service=web}", metric="requests", window_start=datetime(2026, 1, 5, 3,
    ...             tzinfo=timezone.utc), window_end=datetime(2026, 1, 5, 3, 1, tzinfo=timezone.utc), observed=130.0,
    ...             expected=100.0, lower=90.0, upper=110.0, score=0.7, severity="warning", direction="up",
    ...             detectors=["spike"])
    >>> f = features_of(a)
    >>> f["deviation"], f["hour"], f["metric_kind"]
    (3.0, 3, 'count')
    """
    from ..metric_kinds import kind_of

    direction = getattr(anomaly.direction, "value", anomaly.direction)
    r = detectors.Result(anomaly.score, 10.0 ** (-10.0 * anomaly.score), anomaly.expected, anomaly.lower, anomaly.upper,
                         direction if direction in ("up", "down") else None, tuple(anomaly.detectors), "warning")
    return anomaly_features(r, anomaly.observed, anomaly.window_start, metric_kind or kind_of(anomaly.metric).kind)


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
