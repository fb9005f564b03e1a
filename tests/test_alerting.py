"""The alert policy (models.alerting) on real scored points of a series pool."""

import math

from benchmarks.metric_stream import metric_windows
from patrol.models import alerting
from patrol.models.pool import SeriesPool
from patrol.models.store import StateStore


def _scored(spike: float):
    windows = metric_windows(2, 160, seed=4, spikes={(1, 150): spike})
    pool = SeriesPool(StateStore(None))
    outcomes = pool.process([p for w in windows for p in w])[0]
    at_spike = [o for o in outcomes if o.point.dims["service"] == "svc1" and o.point.metric == "requests"
                and o.point.window_start == windows[150][0].window_start]
    return pool, outcomes, at_spike[0]


def test_a_surprising_point_becomes_an_anomaly_record():
    pool, _, spiked = _scored(8.0)
    assert spiked.score >= 0.35
    decision = alerting.decide(spiked, pool, threshold=0.35)
    assert decision.alert and not decision.suppressed
    assert decision.severity == alerting.severity_of(spiked.result.severity) in ("warning", "critical")
    assert decision.features  # what label feedback will learn from
    rec = alerting.anomaly_record(spiked, decision.severity, "inc-1", "opened", decision.features)
    again = alerting.anomaly_record(spiked, decision.severity, "inc-1", "opened", decision.features)
    assert rec.id == again.id and rec.series == spiked.point.series and rec.observed == spiked.point.value
    assert all(math.isfinite(x) for x in (rec.expected, rec.lower, rec.upper)) and 0 <= rec.score <= 1
    assert rec.direction == "up" and rec.detectors == list(spiked.result.fired)


def test_points_below_the_threshold_are_not_alerts():
    pool, outcomes, _ = _scored(8.0)
    quiet = [o for o in outcomes if o.score < 0.35 and not o.recheck]
    assert quiet
    assert all(alerting.decide(o, pool, threshold=0.35) == alerting.NO_ALERT for o in quiet[:200])


def test_a_lowered_service_threshold_publishes_ensemble_ok_points_as_info():
    pool, outcomes, _ = _scored(8.0)
    low = [o for o in outcomes if 0.05 <= o.score < 0.35 and o.result.severity == "ok"]
    assert low
    decision = alerting.decide(low[0], pool, threshold=0.05)
    assert decision.alert and decision.severity == "info"
