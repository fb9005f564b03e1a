"""Alert policy: which scored points become anomalies, at what severity, and the record they become.

Pure decision logic (no Kafka, no Redis): the detect worker asks :func:`decide` for every point that
scored at or above the service threshold, or whose muted episode label feedback must judge again, and
publishes what it answers. Alert delivery (notify stage) and the console read the same records, so
what makes an alert is decided here once.

Order of the decision:
1. *would-be alert*: ``score >= threshold`` (the service threshold, ``detect.threshold``), or a later
   window of an episode whose first alert feedback muted (``recheck``: the episode's length is part of
   what labels taught);
2. *label feedback*: the series' feedback model judges the alert's features (``models.feedback``); a
   "false alarm" verdict suppresses it (counted, not published);
3. *severity*: :func:`severity_of`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from patrol.records import Anomaly, record_id

from .feedback import anomaly_features
from .pool import Outcome, SeriesPool


@dataclass(frozen=True)
class AlertDecision:
    alert: bool                # publish an anomaly for this point
    suppressed: bool = False   # a would-be alert that label feedback muted
    severity: str | None = None
    features: dict | None = None  # what feedback judged; carried in the record for retraining


NO_ALERT = AlertDecision(alert=False)


def severity_of(severity: str) -> str:
    """Severity of a published anomaly from the ensemble's verdict (``ok``/``warning``/``critical``).

    The ensemble grades its own score against its warning and critical levels. A service threshold set
    *below* the ensemble's warning level publishes points the ensemble calls ``ok``: they go out as
    ``info``, so a receiver can route them apart from real warnings.

    >>> severity_of("critical"), severity_of("warning"), severity_of("ok")
    ('critical', 'warning', 'info')
    """
    return severity if severity in ("warning", "critical") else "info"


def decide(out: Outcome, pool: SeriesPool, threshold: float) -> AlertDecision:
    """Alert or not for one scored point (see the module doc for the order)."""
    if not (out.score >= threshold or out.recheck):
        return NO_ALERT
    series = pool.series[out.point.series]
    features = anomaly_features(out.result, out.point.value, out.t, series.group.kind.kind, threshold,
                                age_s=series.age_s(out.t), run=max(out.run, 1), co=pool.service_context(series, out.t))
    verdict = series.episode.decide(series.feedback, features, pool.prior(out.point.metric), start=out.episode)
    if not verdict.alert:  # labels said alerts like this are false alarms
        # a would-be alert is counted as suppressed; a muted episode's later windows are not alerts at all
        return AlertDecision(alert=False, suppressed=out.score >= threshold)
    return AlertDecision(alert=True, severity=severity_of(out.result.severity), features=features)


def _finite(x: float, default: float) -> float:
    x = float(x)
    return x if math.isfinite(x) else default


def anomaly_record(o: Outcome, severity: str, incident_id: str | None, event: str | None,
                   features: dict | None = None) -> Anomaly:
    """The wire record of an alert. Its id is (series, window, model version): a replay repeats it."""
    p, r = o.point, o.result
    # Before a detector has a band (warm-up) expected/lower/upper can be NaN, which JSON cannot carry.
    exp = _finite(r.expected, p.value)
    return Anomaly(
        id=record_id(p.series, p.window_start.isoformat(), o.model_version), series=p.series, metric=p.metric,
        dims=p.dims, window_start=p.window_start, window_end=p.window_end, observed=p.value,
        expected=exp, lower=_finite(r.lower, min(exp, p.value)), upper=_finite(r.upper, max(exp, p.value)),
        score=min(max(o.score, 0.0), 1.0), severity=severity,
        direction=r.direction or ("up" if p.value >= r.expected else "down"), detectors=list(r.fired),
        model_version=o.model_version, incident_id=incident_id, incident_event=event, context=o.context,
        features=features or {})
