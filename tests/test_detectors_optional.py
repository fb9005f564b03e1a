"""Optional single-series detectors: BOCPD and the scheduled STL refit."""
from __future__ import annotations

import json

import numpy as np

from patrol.detectors.experimental import BOCPDDetector, STLDetector


def test_bocpd_finds_change_not_noise_and_round_trips():
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(10, 1, 300), rng.normal(13, 1, 150)]
    det = BOCPDDetector()
    fired = [det.update(v).fired for v in x[:320]]
    assert not any(fired[:300])
    assert any(fired[300:320])
    clone = BOCPDDetector.from_state(json.loads(json.dumps(det.to_state())))
    assert [det.update(v) for v in x[320:]] == [clone.update(v) for v in x[320:]]


def test_stl_learns_period_flags_seasonal_anomaly_and_round_trips():
    rng = np.random.default_rng(1)
    n = 24 * 20
    x = 50 + 10 * np.sin(2 * np.pi * np.arange(n) / 24) + rng.normal(0, 0.5, n)
    det = STLDetector(history=24 * 10, refit_every=24)
    fired = [det.update(v).fired for v in x[:400]]
    assert det.period == 24
    assert not any(fired[24 * 8:400])
    clone = STLDetector.from_state(json.loads(json.dumps(det.to_state())))
    y = x[400:].copy()
    y[30] -= 12  # a dip at the daily peak
    a = [det.update(v) for v in y]
    b = [clone.update(v) for v in y]
    assert a == b and a[30].fired
