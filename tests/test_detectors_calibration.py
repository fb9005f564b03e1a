"""Per-detector tail calibration, attributed alerts, state v3, and the out-of-fold NAB protocol.

Generated data only (benchmarks.synth and inline generators); nothing here reads the reference data beside the repo.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from patrol import detectors
from benchmarks import nab_cv, synth
from benchmarks import nab_scorer as ns
from patrol.detectors import BatchEnsemble, default_ensemble
from patrol.detectors.calibration import TailBank

STEP = 300.0
THR = detectors.DEFAULT_THRESHOLD
REPO = Path(__file__).resolve().parents[1]


def _key(r):
    """Exact, NaN-aware identity of a result."""
    return tuple(repr(v) for v in dataclasses.astuple(r))


# -- TailBank ---------------------------------------------------------------------------

def test_tail_bank_stays_near_identity_for_a_well_specified_model():
    # surprises of Gaussian residuals: the calibrated value of a large surprise is about itself
    rng = np.random.default_rng(0)
    bank = TailBank(n_tails=1)
    z = rng.normal(size=20000)
    S = detectors.base.z_to_surprise(z)
    for s in S:
        bank.learn(np.array([[s]]))
    assert bank.shape()[0, 0] < 0.1
    c = bank.calibrate(np.array([[4.0], [8.0]]))[:, 0]
    assert abs(c[0] - 4.0) < 0.6 and abs(c[1] - 8.0) < 1.5


def test_tail_bank_learns_heavy_tails_per_column():
    rng = np.random.default_rng(1)
    bank = TailBank(n_tails=2)
    for _ in range(4000):  # column 0: Pareto-sized excesses 5 % of the time; column 1: Gaussian-like
        s0 = 2.5 + rng.pareto(1.5) * 2.0 if rng.random() < 0.05 else 0.3
        s1 = detectors.base.z_to_surprise(rng.normal())
        bank.learn(np.array([[s0, s1]]))
    xi = bank.shape()[0]
    assert xi[0] > 0.2 and xi[1] < 0.1
    c = bank.calibrate(np.array([[20.0, 20.0]]))[0]
    assert c[0] < 10 * THR < c[1]


# -- the ensemble on bursty counts ------------------------------------------------------

def _bursty(n, seed, outage_at=None, dispersion=10):
    rng = np.random.default_rng(seed)
    t = np.arange(n) * STEP
    mean = 30 * (1 + 0.5 * np.sin(2 * np.pi * t / 86400.0))
    for i in np.flatnonzero(rng.random(n) < 0.02):  # Pareto bursts decaying over a few points
        k = np.arange(min(10, n - i))
        mean[i:i + k.size] += 60 * (rng.pareto(1.5) + 1) * 0.6 ** k
    x = rng.negative_binomial(dispersion, dispersion / (dispersion + mean)).astype(float)
    if outage_at is not None:
        x[outage_at:outage_at + 24] = 0.0
    return t, x


@pytest.mark.parametrize("kind", ["gauge", "count"])
def test_bursty_series_learns_its_bursts_without_muting_an_outage(kind):
    n, m = 4000, 6
    T, X = zip(*[_bursty(n, s, outage_at=3500 if s % 2 else None) for s in range(m)])
    X = np.array(X).T
    scores = {}
    for cal in ("pooled", "per_detector"):
        b = BatchEnsemble(n_series=m, metric_kind=kind, calibration=cal)
        scores[cal] = np.array([b.update(X[i], T[0][i]).score for i in range(n)])
    quiet = slice(1500, 3500)
    old = (scores["pooled"][quiet] >= THR).sum()
    new = (scores["per_detector"][quiet] >= THR).sum()
    assert new <= old / 2 and new / (2000 * m) < 0.002  # bursts are normal here
    outage = slice(3500, 3524)
    peak_new = scores["per_detector"][outage, 1::2].max(axis=0)
    peak_old = scores["pooled"][outage, 1::2].max(axis=0)
    assert (peak_new >= peak_old).all()  # the downward side is not dulled by the upward bursts
    if kind == "count":  # Anscombe residuals: the outage alerts within two hours on every series
        assert (peak_new >= THR).all()


# -- attributed alerts ------------------------------------------------------------------

def _alerts(corpus, **kw):
    F, L = len(corpus), max(f.n_rows for f in corpus)
    b = BatchEnsemble(n_series=F, **kw)
    out = []
    for j in range(L):
        x = np.array([f.values[j] if j < f.n_rows else np.nan for f in corpus])
        r = b.update(x, 1.5e9 + j * STEP)
        for i in np.flatnonzero(r.severity > 0):
            out.append((r.row(i), x[i]))
    return out


@pytest.mark.parametrize("calibration", ["per_detector", "pooled"])
def test_every_alert_names_a_detector_and_inside_band_alerts_name_a_sustained_change_detector(calibration):
    corpus = synth.corpus(seed=3, per_category=2, n=2500)
    alerts = _alerts(corpus, calibration=calibration)
    assert len(alerts) > 20
    assert all(r.fired for r, _ in alerts)
    inside = [r for r, x in alerts if r.lower <= x <= r.upper]
    assert inside, "the corpus must produce inside-band alerts for this test to mean anything"
    assert all(set(r.fired) <= {"cusum", "likelihood"} for r in inside)


@pytest.mark.parametrize("slope", [0.1, 0.5])
def test_inside_band_drift_is_attributed_to_a_sustained_change_detector(slope):
    rng = np.random.default_rng(4)
    x = 100 + rng.normal(0, 1, 1600)
    x[1200:1400] += slope * np.arange(200)  # a ramp: every point close to the one before, inside the band
    det = default_ensemble(period=None)
    rs = [det.update(float(v), i * STEP) for i, v in enumerate(x)]
    hits = [(r, v) for r, v in zip(rs[1200:1400], x[1200:1400]) if r.severity != "ok"]
    assert hits
    assert all(r.lower <= v <= r.upper and r.fired and set(r.fired) <= {"cusum", "likelihood"} for r, v in hits)
    assert all(r.severity == "ok" for r in rs[400:1200])
    assert rs[1400].severity != "ok" and rs[1400].fired == ("spike",)  # the drop back: outside, a point anomaly


@pytest.mark.parametrize("calibration", ["per_detector", "pooled"])
def test_one_point_path_equals_batch_path(calibration):
    f = synth.make_file("synBursty", 1, 0, True, n=900)
    t = 1.5e9 + np.arange(f.n_rows) * STEP
    b = BatchEnsemble(n_series=1, calibration=calibration, novelty=calibration == "pooled")
    one = default_ensemble(calibration=calibration, novelty=calibration == "pooled")
    for ti, v in zip(t, f.values):
        assert _key(one.update(float(v), ti)) == _key(b.update([v], ti).row(0))


# -- state v3 ---------------------------------------------------------------------------

def test_state_round_trip_and_v2_state_loads_with_fresh_tails():
    det = default_ensemble(metric_kind="count", calibration="per_detector")
    _, x = _bursty(600, 7)
    for i, v in enumerate(x):
        det.update(float(v), i * STEP)
    st = det.to_state()
    assert st["v"] == 4 and st["config"]["calibration"] == "per_detector"
    assert st["config"]["novelty"] is False
    again = detectors.Ensemble.from_state(json.loads(json.dumps(st)))
    assert again.to_state() == st
    assert _key(again.update(50.0, 600 * STEP)) == _key(det.update(50.0, 600 * STEP))
    # a v2 checkpoint: no calibration / novelty in its config, no tails in its bytes
    b = det._b
    cfg = {k: v for k, v in st["config"].items() if k not in ("calibration", "novelty")}
    data = base64.b64encode(b"".join(d._pack(0) for d in b._legacy_parts(2))).decode()
    d2 = detectors.Ensemble.from_state({"v": 2, "config": cfg, "data": data})  # into today's default
    assert d2._b.calibration == "pooled" and d2._b.members["spike"].s["level"][0] == b.members["spike"].s["level"][0]
    pd = BatchEnsemble(n_series=1, metric_kind="count", calibration="per_detector")
    assert pd.load_state(0, {"v": 2, "config": {**cfg, "calibration": "per_detector"}, "data": data}) == ["tails"]
    fresh = TailBank(n_tails=b.tails.n_tails)
    assert all(np.array_equal(pd.tails.s[k], fresh.s[k]) for k in fresh.s)  # the tails start from the prior
    assert pd.members["cusum"].s["mu"][0] == b.members["cusum"].s["mu"][0]
    assert len(base64.b64decode(pd.state_of(0)["data"])) == b.state_bytes() <= 16 * 1024


def test_state_of_another_fusion_is_rejected_and_novelty_state_fits_the_budget():
    st = default_ensemble().to_state()
    with pytest.raises(ValueError):
        BatchEnsemble(n_series=1, calibration="per_detector").load_state(0, st)
    with pytest.raises(ValueError):
        BatchEnsemble(n_series=1, novelty=True).load_state(0, st)
    b = BatchEnsemble(n_series=1, novelty=True)
    assert b.state_bytes() <= 16 * 1024 and "context" in b.names


# -- the NAB out-of-fold protocol -------------------------------------------------------

def test_damping_replay_reproduces_the_ensemble_scores():
    corpus = synth.corpus(seed=2, per_category=1, n=1200)
    ev = nab_cv.run_evidence({}, corpus)
    for thr in (0.3, THR):
        replay = nab_cv.damp(ev, thr)
        for f in corpus[:3]:
            det = default_ensemble(threshold=thr)
            t = nab_cv._epoch(f.timestamps)
            live = np.array([det.update(float(v), ti).score for v, ti in zip(f.values, t)])
            assert np.array_equal(live, replay[f.name])


def _file(name, n, windows):
    return ns.NabFile(name=name, timestamps=tuple(str(i) for i in range(n)), values=np.zeros(n), windows=windows)


def test_selection_never_sees_the_held_out_category():
    # variant "a" is perfect on category A and useless on B; "b" the other way round
    A = [_file("A/f.csv", 1000, ((500, 520),))]
    B = [_file("B/g.csv", 1000, ((600, 620),))]
    hit = lambda f: np.where(np.arange(1000) == f.windows[0][0], 1.0, 0.0)  # noqa: E731
    scored = {("a", 0.5): {"A/f.csv": hit(A[0]), "B/g.csv": np.zeros(1000)},
              ("b", 0.5): {"A/f.csv": np.zeros(1000), "B/g.csv": hit(B[0])}}
    std = synth.PROFILES["standard"]
    assert nab_cv.select(scored, A, std) == ("a", 0.5)
    assert nab_cv.select(scored, B, std) == ("b", 0.5)


def test_cross_validation_on_a_generated_corpus(tmp_path):
    corpus = synth.corpus(seed=5, per_category=2, n=1500, categories=("synBursty", "synShift", "synOutage"))
    cands = {"v2": dict(calibration="pooled"), "attributed": dict(calibration="per_detector")}
    cv = nab_cv.cross_validate(corpus, synth.PROFILES, cands, thresholds=(0.35, 0.5), cache=tmp_path)
    assert set(cv["folds"]) == {"synBursty", "synShift", "synOutage"}
    for c, d in cv["folds"].items():
        assert d["chosen"]["variant"] in cands and d["chosen"]["threshold"] in (0.35, 0.5)
        n_win = sum(f.scored_windows for f in corpus if f.category == c)
        ev = d["held_out"]["events"]
        assert ev["tp"] + ev["fn"] == n_win
    oof = cv["out_of_fold"]["events"]
    assert oof["tp"] + oof["fn"] == sum(f.scored_windows for f in corpus)
    assert oof["tp"] == sum(d["held_out"]["events"]["tp"] for d in cv["folds"].values())
    assert len(list(tmp_path.glob("*.npz"))) == 2 * 3  # one evidence cache per variant and category
    again = nab_cv.cross_validate(corpus, synth.PROFILES, cands, thresholds=(0.35, 0.5), cache=tmp_path)
    assert again == cv


def test_nab_cli_cv_on_the_synthetic_corpus(tmp_path):
    out = tmp_path / "r.json"
    files = ["shift_normal_01.csv", "shift_anomaly_00.csv", "ramp_normal_01.csv", "ramp_anomaly_00.csv"]
    cmd = [sys.executable, "-m", "benchmarks.nab", "--synthetic", "1", "--synthetic-rows", "1500", "--files", *files,
           "--cv", "--cache", str(tmp_path / "cache"), "--json", str(out)]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr
    rep = json.loads(out.read_text())
    assert rep["files"] == 4 and set(rep["categories"]) == {"synRamp", "synShift"}
    assert set(rep["cv"]["folds"]) == {"synRamp", "synShift"}
    assert "out-of-fold" in res.stderr and rep["default_threshold"] == THR
