"""Residual likelihood, alert-relative damping and the v1 -> v2 state migration (synthetic data)."""
from __future__ import annotations

import base64
import dataclasses

import numpy as np
import pytest

from patrol import detectors
from patrol.detectors import BatchEnsemble, default_ensemble
from patrol.detectors.likelihood import ResidualLikelihood

STEP = 300.0
THR = detectors.DEFAULT_THRESHOLD


def _key(r):
    return tuple(repr(v) for v in dataclasses.astuple(r))


def _lk_run(z, **kw):
    lk = ResidualLikelihood(n_channels=1, **kw)
    return np.array([lk.update_many(np.array([[v]]))[0][0] for v in z])


# -- ResidualLikelihood ------------------------------------------------------------

def test_likelihood_quiet_on_white_and_on_autocorrelated_residuals():
    rng = np.random.default_rng(1)
    white = rng.normal(size=6000)
    ar = np.zeros(6000)  # AR(1), phi 0.9: a model that lags; its own limits must widen
    e = rng.normal(size=6000) * np.sqrt(1 - 0.81)
    for i in range(1, 6000):
        ar[i] = 0.9 * ar[i - 1] + e[i]
    for z in (white, ar):
        s = _lk_run(z)
        assert (s[300:] >= 10 * THR).mean() < 0.005


def test_likelihood_flags_a_sustained_offset_no_single_point_shows():
    rng = np.random.default_rng(2)
    z = rng.normal(size=1500)
    z[1000:1100] += 1.0  # every point only one scale high
    s = _lk_run(z)
    assert s[:1000][300:].max() < 10 * THR
    assert s[1000:1100].max() >= 10 * THR
    assert s[300:].max() == s[1000:1100].max()


def test_likelihood_direction_is_one_sided():
    z = np.r_[np.random.default_rng(3).normal(size=1000), np.full(50, -1.5)]
    lk = ResidualLikelihood(n_channels=1)
    down = [lk.update_many(np.array([[v]]), direction="up")[0][0] for v in z]
    assert max(down[1000:]) == 0.0


def test_likelihood_skips_missing_points():
    lk = ResidualLikelihood(n_channels=2, n_series=2)
    for _ in range(400):
        lk.update_many(np.ones((2, 2)) * 0.1, ok=np.array([True, False]))
    assert lk.s["n"].tolist() == [400.0, 0.0] and not lk.s["m"][1].any()


# -- in the ensemble ------------------------------------------------------------------

def _ensemble_scores(X, likelihood=True, **kw):
    b = BatchEnsemble(n_series=X.shape[1], period=None, **kw)
    if not likelihood:  # the point path alone, for comparison
        b.members["likelihood"].warmup = 10**9
    return np.array([b.update(X[i], i * STEP).score for i in range(len(X))])


def test_ensemble_catches_ramps_the_point_detectors_miss():
    # A ramp of 0.5 sd per point: each point is close to the last one and to the fast level
    # (which follows), so the point detectors mostly stay quiet; the residuals are all on one side.
    n = 1500
    X = 100 + np.random.default_rng(10).normal(0, 1, (n, 8))
    X[1200:] += 0.5 * np.arange(n - 1200)[:, None]
    on, off = _ensemble_scores(X), _ensemble_scores(X, likelihood=False)
    assert (on[400:1200] >= THR).sum() <= 2  # 8 x 800 quiet points: at most 2 alerts
    found_on = (on[1200:1300] >= THR).any(axis=0)
    found_off = (off[1200:1300] >= THR).any(axis=0)
    assert found_on.all() and not found_off.all()


def test_batch_equals_one_point_path_with_likelihood_active():
    rng = np.random.default_rng(5)
    n, m = 700, 3
    X = 50 + rng.normal(0, 2, (n, m))
    X[500:, 1] += np.arange(n - 500)  # ramp: the likelihood decides scores in series 1
    X[100:110, 2] = np.nan
    batch = BatchEnsemble(n_series=m, direction="up", period=None)
    B = [batch.update(X[i], i * STEP) for i in range(n)]
    without = _ensemble_scores(X, likelihood=False, direction="up")
    assert (np.array([B[i].score[1] for i in range(n)]) > without[:, 1]).any()  # the path under test is live
    for j in range(m):
        one = default_ensemble(direction="up", period=None)
        rows = [one.update(float(X[i, j]), i * STEP) for i in range(n)]
        assert [_key(r) for r in rows] == [_key(B[i].row(j)) for i in range(n)]


def test_damping_counts_only_alerted_points():
    from patrol.detectors.calibration import TailCalibrator
    cal = TailCalibrator(alert=3.5)
    ok = np.array([True])
    # building up below the alert level: nothing is subtracted, the 5.0 is reported in full
    out = [float(cal.novelty(np.array([c]), ok)[0]) for c in (2.0, 3.0, 5.0)]
    assert out == [2.0, 3.0, 5.0]
    # once alerted, the same level is damped (decayed peak subtracted) until it decays away
    again = [float(cal.novelty(np.array([5.0]), ok)[0]) for _ in range(5)]
    assert all(a < 3.5 for a in again) and again[0] == pytest.approx(5.0 - 0.95 * 5.0)


def test_alerted_excursion_is_damped_after_the_alert():
    x = 100 + np.random.default_rng(7).normal(0, 1, 600)
    det = default_ensemble(period=None)
    for i, v in enumerate(x):
        det.update(v, i * STEP)
    s = [det.update(140.0 if k < 3 else float(x[k]), (600 + k) * STEP).score for k in range(30)]
    assert s[0] >= THR and sum(v >= THR for v in s[1:]) <= 1


# -- state versions -----------------------------------------------------------------

def test_v1_state_loads_with_a_fresh_likelihood():
    det = default_ensemble()
    x = 100 + np.random.default_rng(8).normal(0, 1, 400)
    for i, v in enumerate(x):
        det.update(v, i * STEP)
    st = det.to_state()
    assert st["v"] == detectors.ensemble.STATE_VERSION == 4
    b = det._b
    v1_raw = b"".join(d._pack(0) for d in b._legacy_parts(1))  # calibrator + detectors, as v1 wrote them
    v1 = {"v": 1, "config": st["config"], "data": base64.b64encode(v1_raw).decode()}
    old = detectors.Ensemble.from_state(v1)
    assert old._b.members["likelihood"].s["n"][0] == 0  # warms up again
    assert b"".join(d._pack(0) for d in old._b._legacy_parts(1)) == v1_raw
    assert np.isfinite(old.update(100.0, 400 * STEP).score)
    with pytest.raises(ValueError):
        detectors.Ensemble.from_state({**st, "v": 5})
    with pytest.raises(ValueError):  # a v4 blob labelled v1 does not silently load
        detectors.Ensemble.from_state({**st, "v": 1})


def test_state_saved_at_another_alert_level_loads_and_other_configs_do_not():
    det = default_ensemble(threshold=0.25)  # e.g. a v1 checkpoint saved at the old default
    for i, v in enumerate(100 + np.random.default_rng(9).normal(0, 1, 300)):
        det.update(v, i * STEP)
    st = det.to_state()
    b = BatchEnsemble(n_series=2)  # today's default threshold
    b.load_state(1, st)
    assert b.state_of(1)["data"] == st["data"] and b.threshold == THR
    with pytest.raises(ValueError):
        BatchEnsemble(n_series=1, n_slots=24).load_state(0, st)


@pytest.mark.parametrize("kind", ["ratio", "count", "latency"])
def test_likelihood_adds_no_false_alarms_on_clean_data(kind):
    rng = np.random.default_rng(11)
    n, m = 1500, 10
    den = rng.integers(1, 500, (n, m)).astype(float)
    X = {"ratio": lambda: rng.binomial(den.astype(int), 0.02) / den,
         "count": lambda: rng.poisson(5, (n, m)).astype(float),
         "latency": lambda: np.exp(rng.normal(0, 0.5, (n, m)))}[kind]()
    alerts = []
    for on in (True, False):
        b = BatchEnsemble(n_series=m, metric_kind=kind, direction="up")
        if not on:
            b.members["likelihood"].warmup = 10**9
        S = np.array([b.update(X[i], i * 60.0, n=den[i] if kind == "ratio" else None).score for i in range(n)])
        alerts.append(int((S[300:] >= THR).sum()))
    assert alerts[0] <= alerts[1] + 1 and alerts[0] / (1200 * m) < 0.001


def test_batch_equals_one_point_path_ratio_with_likelihood_active():
    rng = np.random.default_rng(12)
    n, m = 500, 2
    den = rng.integers(1, 2000, (n, m)).astype(float)
    p = np.where(np.arange(n)[:, None] >= 400, 0.04, 0.02)  # the error rate doubles for good
    K = rng.binomial(den.astype(int), p)
    batch = BatchEnsemble(n_series=m, metric_kind="ratio", direction="up")
    B = [batch.update(K[i] / den[i], i * 60.0, n=den[i]) for i in range(n)]
    assert batch.members["likelihood"].s["n"].min() > batch.members["likelihood"].warmup
    for j in range(m):
        one = default_ensemble(metric_kind="ratio", direction="up")
        rows = [one.update(K[i, j] / den[i, j], i * 60.0, n=den[i, j]) for i in range(n)]
        assert [_key(r) for r in rows] == [_key(B[i].row(j)) for i in range(n)]
