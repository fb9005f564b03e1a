"""Tests of the online detector library (synthetic data; fast)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from patrol import detectors
from patrol.detectors import (BatchEnsemble, CusumDetector, RatioDetector, SeasonalDetector, SpikeDetector,
                       default_ensemble)

DAY = 86400.0
STEP = 600.0  # 10-minute points


def _key(r):
    """Exact, NaN-aware identity of a result (repr of floats round-trips)."""
    return tuple(repr(v) for v in dataclasses.astuple(r))


def _same(rows_a, rows_b):
    return [_key(r) for r in rows_a] == [_key(r) for r in rows_b]


def _noise(n, seed=0, level=100.0, sd=1.0):
    return level + np.random.default_rng(seed).normal(0, sd, n)


def _seasonal(n, seed=0, amp=40.0, sd=2.0, weekly=0.0):
    t = np.arange(n) * STEP
    rng = np.random.default_rng(seed)
    x = 100 + amp * np.sin(2 * np.pi * t / DAY) + sd * rng.normal(size=n)
    if weekly:
        x = x + weekly * (np.floor(t / DAY) % 7 >= 5)
    return t, x


def _run(det, xs, ts=None):
    ts = np.arange(len(xs)) * STEP if ts is None else ts
    return [det.update(float(x), float(t)) for x, t in zip(xs, ts)]


# -- individual detectors -------------------------------------------------------
def test_spike_detector_catches_spike_and_stays_quiet_on_noise():
    x = _noise(600)
    x[400] += 12.0
    rs = _run(SpikeDetector(), x)
    fired = [i for i, r in enumerate(rs) if r.fired]
    assert fired == [400]
    assert rs[400].z > 8


def test_spike_detector_is_robust_to_its_own_outliers():
    x = _noise(600)
    x[300:600:30] += 50.0  # repeated spikes must not drag the baseline
    det = SpikeDetector()
    _run(det, x)
    assert abs(det.s["level"][0] - 100.0) < 1.0


def test_cusum_catches_small_level_shift_that_spike_misses():
    x = _noise(800, seed=3)
    x[500:] += 1.5  # 1.5 sigma: no single point is a spike
    spike = [r.fired for r in _run(SpikeDetector(), x)]
    cusum = [r.fired for r in _run(CusumDetector(), x)]
    assert not any(spike[500:])
    assert not any(cusum[:500])
    assert 500 <= cusum.index(True) < 540


def test_seasonal_detector_learns_cycle_and_flags_missing_peak():
    n = 8 * 144
    t, x = _seasonal(n)
    clean = [r.fired for r in _run(SeasonalDetector(), x, t)]
    assert not any(clean[2 * 144:])
    # day 7: the afternoon peak is missing (values stay at the daily mean)
    y = x.copy()
    peak = slice(7 * 144 + 24, 7 * 144 + 48)
    y[peak] = 100 + np.random.default_rng(1).normal(0, 2, 24)
    fired = [r.fired for r in _run(SeasonalDetector(), y, t)]
    assert any(fired[peak])
    assert not any(fired[2 * 144:7 * 144])


def test_seasonal_detector_without_cycle_uses_level_only():
    t = np.arange(5 * 144) * STEP
    det = SeasonalDetector()
    _run(det, _noise(len(t), seed=5), t)
    u1, _ = det._weights(t[-1:] + STEP, det._parts(t[-1:] + STEP))
    assert u1[0] < 0.5  # no daily cycle in white noise


def test_ratio_detector_small_denominators_do_not_alert():
    det = RatioDetector()
    rng = np.random.default_rng(0)
    for i in range(300):
        n = int(rng.integers(1, 6))  # tiny traffic: 1..5 requests per window
        k = int(rng.random() < 0.02)
        det.update(k=k, n=n, t=60.0 * i)
    assert not det.update(k=1, n=3, t=60.0 * 300).fired  # 1 error out of 3
    big = det.update(k=300, n=1000, t=60.0 * 302)
    assert big.fired and big.z > 0


# -- ensemble -------------------------------------------------------------------
def _scores(det, xs, ts=None, **kw):
    ts = np.arange(len(xs)) * STEP if ts is None else ts
    return np.array([det.update(float(x), float(t), **kw).score for x, t in zip(xs, ts)])


def _batch_scores(X, t, **kw):
    b = BatchEnsemble(n_series=X.shape[1], **kw)
    return np.array([b.update(X[i], t[i]).score for i in range(len(t))])


def test_ensemble_quiet_on_clean_noise_and_seasonality():
    n = 10 * 144
    t = np.arange(n) * STEP
    rng = np.random.default_rng(11)
    cols = [100 + rng.normal(0, 1, n), 100 + rng.standard_t(5, n)]  # Gaussian and heavy-tailed noise
    for seed in (2, 3):
        cols.append(_seasonal(n, seed=seed, weekly=15.0)[1])
    S = _batch_scores(np.stack(cols, axis=1), t)
    assert S.min() >= 0 and S.max() <= 1
    assert (S[300:] >= detectors.DEFAULT_THRESHOLD).mean() < 0.002


def test_ensemble_catches_spike_level_shift_and_seasonal_anomaly():
    thr = detectors.DEFAULT_THRESHOLD
    n = 5 * 144
    t, seas = _seasonal(n, seed=6)
    spike, shift = _noise(n, seed=4), _noise(n, seed=5)
    spike[600] += 15
    shift[600:] += 6
    anomaly = slice(4 * 144 + 30, 4 * 144 + 42)  # flat where the cycle should peak
    seas[anomaly] = 100 + np.random.default_rng(7).normal(0, 2, 12)
    S = _batch_scores(np.stack([spike, shift, seas], axis=1), t)
    assert S[600, 0] >= thr and S[600, 0] == S[300:, 0].max()
    assert S[600:610, 1].max() >= thr
    assert (S[620:, 1] >= thr).sum() <= 2  # the shift is one episode, not an alert per point
    assert S[anomaly, 2].max() >= thr
    assert (S[2 * 144:4 * 144, 2] >= thr).sum() <= 2


def test_result_fields_and_direction():
    det = default_ensemble(direction="up")
    x = _noise(500, seed=8)
    for i, v in enumerate(x):
        det.update(v, i * STEP)
    up = det.update(140.0, 500 * STEP)
    assert up.direction == "up" and up.severity in ("warning", "critical") and up.fired
    assert up.lower < up.expected < up.upper and abs(up.expected - 100) < 2
    assert 0.0 <= up.p_value <= 1.0
    det2 = default_ensemble(direction="up")
    for i, v in enumerate(x):
        det2.update(v, i * STEP)
    down = det2.update(60.0, 500 * STEP)  # requests down does not matter for an "up" metric
    assert down.score < detectors.DEFAULT_THRESHOLD and down.severity == "ok"


def test_requests_down_is_bad_direction_down():
    det = default_ensemble(metric_kind="count", direction="down")
    x = np.random.default_rng(9).poisson(200, 600).astype(float)
    s = _scores(det, x)
    assert (s[100:] >= detectors.DEFAULT_THRESHOLD).sum() <= 1
    assert det.update(20.0, 600 * STEP).score >= detectors.DEFAULT_THRESHOLD


def test_counts_with_zeros_do_not_alert_but_bursts_do():
    x = np.random.default_rng(10).poisson(0.3, 900).astype(float)  # mostly zeros, some 1s and 2s
    det = default_ensemble(metric_kind="count")
    s = _scores(det, x)
    assert (s[200:] >= detectors.DEFAULT_THRESHOLD).sum() <= 2
    assert det.update(25.0, 900 * STEP).score >= detectors.DEFAULT_THRESHOLD


def test_latency_heavy_tail_log_scale():
    rng = np.random.default_rng(12)
    x = np.exp(rng.normal(np.log(0.2), 0.3, 900))  # lognormal latencies (seconds)
    det = default_ensemble(metric_kind="latency", direction="up")
    s = _scores(det, x)
    assert (s[200:] >= detectors.DEFAULT_THRESHOLD).sum() <= 2
    r = det.update(5.0, 900 * STEP)
    assert r.score >= detectors.DEFAULT_THRESHOLD and r.expected == pytest.approx(0.2, rel=0.2)


def test_error_ratio_small_denominator_no_alert():
    det = default_ensemble(metric_kind="ratio", direction="up")
    rng = np.random.default_rng(13)
    for i in range(500):
        n = float(rng.integers(500, 1500))
        det.update(rng.binomial(int(n), 0.01) / n, i * 60.0, n=n)
    assert det.update(1 / 3, 500 * 60.0, n=3).score < detectors.DEFAULT_THRESHOLD  # 1 error in 3 requests
    assert det.update(0.2, 501 * 60.0, n=1000).score >= detectors.DEFAULT_THRESHOLD  # 20% of 1000


# -- online-ness, gaps, state, batch ----------------------------------------------
def test_strictly_online_future_points_do_not_change_past_scores():
    t, x = _seasonal(3 * 144, seed=14)
    a = _scores(default_ensemble(), x, t)
    y = x.copy()
    y[300:] = y[300:] * 3 + 50  # change the future only
    b = _scores(default_ensemble(), y, t)
    assert np.array_equal(a[:300], b[:300])
    assert not np.array_equal(a[300:], b[300:])


def test_gaps_and_irregular_timestamps():
    rng = np.random.default_rng(15)
    t = np.cumsum(rng.uniform(120, 1800, 800))  # irregular spacing
    t[500:] += 3 * DAY  # a three-day gap
    x = 100 + 20 * np.sin(2 * np.pi * t / DAY) + rng.normal(0, 1, len(t))
    x[300:340] = np.nan  # missing values
    det = default_ensemble()
    res = [det.update(float(v), float(ti)) for v, ti in zip(x, t)]
    s = np.array([r.score for r in res])
    assert np.all(np.isfinite(s)) and np.all(s[300:340] == 0)
    assert (s[150:] >= detectors.DEFAULT_THRESHOLD).sum() <= 3


def test_timestamp_types_agree():
    import datetime as dt
    base = dt.datetime(2024, 1, 1)
    a, b = default_ensemble(), default_ensemble()
    for i, v in enumerate(_noise(200, seed=16)):
        ra = a.update(v, base + dt.timedelta(minutes=5 * i))
        rb = b.update(v, (base + dt.timedelta(minutes=5 * i)).replace(tzinfo=dt.timezone.utc).timestamp())
        assert _key(ra) == _key(rb)


def _feed(det, x, t):
    return [det.update(float(v), float(ti)) for v, ti in zip(x, t)]


@pytest.mark.parametrize("kind", ["gauge", "count", "latency"])
def test_state_round_trip_gives_identical_scores(kind):
    t, x = _seasonal(3 * 144, seed=17)
    x = np.abs(x)
    full = default_ensemble(metric_kind=kind)
    ref = _feed(full, x, t)
    first = default_ensemble(metric_kind=kind)
    _feed(first, x[:250], t[:250])
    state = json.loads(json.dumps(first.to_state()))  # through JSON, as into Redis
    restored = detectors.Ensemble.from_state(state)
    assert _same(_feed(restored, x[250:], t[250:]), ref[250:])


def test_state_size_bound():
    t, x = _seasonal(3 * 144, seed=18)
    det = default_ensemble()
    _feed(det, x, t)
    assert len(json.dumps(det.to_state()).encode()) <= 4096
    b = BatchEnsemble(n_series=3)
    assert b.state_bytes() <= 4096 * 3 // 4  # raw bytes before base64


@pytest.mark.parametrize("kind,direction", [("gauge", "both"), ("count", "down"), ("latency", "up")])
def test_batch_equals_one_point_path(kind, direction):
    rng = np.random.default_rng(19)
    n_series, n = 4, 2 * 144
    t = np.arange(n) * STEP
    X = np.abs(100 + 30 * np.sin(2 * np.pi * t / DAY)[:, None] * rng.uniform(0, 1, n_series)
               + rng.normal(0, 3, (n, n_series)))
    X[200, 2] += 80  # a spike in one series
    X[50:60, 3] = np.nan  # a gap in another
    batch = BatchEnsemble(n_series=n_series, metric_kind=kind, direction=direction)
    B = [batch.update(X[i], t[i]) for i in range(n)]
    for j in range(n_series):
        one = default_ensemble(metric_kind=kind, direction=direction)
        rows = [one.update(float(X[i, j]), float(t[i])) for i in range(n)]
        assert _same(rows, [B[i].row(j) for i in range(n)])


def test_batch_equals_one_point_path_ratio():
    rng = np.random.default_rng(20)
    n_series, n = 3, 200
    N = rng.integers(1, 2000, (n, n_series)).astype(float)
    K = rng.binomial(N.astype(int), 0.02)
    batch = BatchEnsemble(n_series=n_series, metric_kind="ratio", direction="up")
    B = [batch.update(K[i] / N[i], i * 60.0, n=N[i]) for i in range(n)]
    for j in range(n_series):
        one = default_ensemble(metric_kind="ratio", direction="up")
        rows = [one.update(K[i, j] / N[i, j], i * 60.0, n=N[i, j]) for i in range(n)]
        assert _same(rows, [B[i].row(j) for i in range(n)])


def test_batch_state_moves_between_batch_and_single():
    t, x = _seasonal(2 * 144 + 60, seed=21)
    batch = BatchEnsemble(n_series=2)
    for i in range(200):
        batch.update([x[i], x[i] * 2], t[i])
    single = detectors.Ensemble.from_state(batch.state_of(1))
    for i in range(200, len(t)):
        rb = batch.update([x[i], x[i] * 2], t[i]).row(1)
        assert _key(single.update(x[i] * 2, t[i])) == _key(rb)


def test_score_one_does_not_learn_and_learn_one_does():
    det = default_ensemble()
    for i, v in enumerate(_noise(300, seed=22)):
        det.learn_one(v, i * STEP)
    before = det.to_state()
    s = det.score_one(150.0, 300 * STEP)
    assert det.to_state() == before and s >= detectors.DEFAULT_THRESHOLD


def test_bad_config_and_mismatched_state_rejected():
    with pytest.raises(ValueError):
        default_ensemble(metric_kind="bogus")
    with pytest.raises(ValueError):
        BatchEnsemble(2).load_state(0, default_ensemble(metric_kind="count").to_state())


def test_out_of_order_and_duplicate_timestamps_are_harmless():
    t, x = _seasonal(2 * 144 + 20, seed=23)
    t = t.copy()
    t[200], t[201] = t[201], t[200]  # swapped
    t[250] = t[249]  # duplicate
    det = default_ensemble()
    res = [det.update(float(v), float(ti)) for v, ti in zip(x, t)]
    assert all(np.isfinite(r.score) and 0 <= r.score <= 1 for r in res)
    assert sum(r.score >= detectors.DEFAULT_THRESHOLD for r in res[160:]) <= 2
