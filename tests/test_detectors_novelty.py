"""ContextNoveltyDetector: novel patterns score high, known ones do not; bounded state; batch == single."""
import doctest
import json

import numpy as np
import pytest

from patrol import detectors
from patrol.detectors import context_novelty
from patrol.detectors.context_novelty import ContextNoveltyDetector

STATE_BUDGET = 16 * 1024


def _pattern(n, rng, noise=0.02):
    """A repeated 12-point shape (a sawtooth with a plateau) with a little noise."""
    shape = np.array([0, 1, 2, 3, 4, 5, 5, 5, 4, 3, 2, 1], dtype=float)
    return shape[np.arange(n) % 12] + rng.normal(0, noise, n)


def _run(det, xs, t0=0.0):
    return np.array([det.update(float(x), t0 + 60.0 * i).score for i, x in enumerate(xs)])


def test_docstring_example():
    res = doctest.testmod(context_novelty, optionflags=doctest.ELLIPSIS)
    assert res.attempted > 0 and res.failed == 0


def test_repeated_pattern_is_not_novel_and_a_new_one_is():
    rng = np.random.default_rng(0)
    det = ContextNoveltyDetector(rest_period=30)
    s = _run(det, _pattern(1200, rng))
    assert s[600:].max() < 0.3                 # the shape, learnt: never near the alarm level
    assert not any(det.update(float(x), 1e6 + i).fired for i, x in enumerate(_pattern(120, rng)))
    # a new shape inside the same range: up and down between the extremes
    novel = np.tile([0.0, 5.0, 0.0, 5.0, 2.5], 4)
    s2 = _run(det, novel, t0=2e6)
    assert s2.max() >= det.base_threshold       # fires on the new pattern ...
    f = int(np.argmax(s2 >= det.base_threshold))
    assert (s2[f + 1:] == 0.0).all()            # ... once, then rests (20 points < rest_period)


def test_novel_pattern_scores_higher_than_the_known_one_without_rest():
    rng = np.random.default_rng(1)
    det = ContextNoveltyDetector(rest_period=1, base_threshold=1.1)   # never rests: raw scores
    known = _run(det, _pattern(1500, rng))[900:]
    novel = _run(det, rng.uniform(0, 5, 200), t0=1e6)
    assert novel.mean() > 0.5 > 0.2 > known.mean()


def test_range_growth_keeps_what_was_learnt():
    """A new extreme re-buckets the dictionary: the old alternation is still known afterwards."""
    det = ContextNoveltyDetector(rest_period=20)
    xs = np.tile([0.0, 1.0], 300)
    _run(det, xs)
    assert det.update(3.0, 1e6).score >= det.base_threshold  # new extreme, never seen: novel
    after = _run(det, np.tile([0.0, 1.0], 40), t0=2e6)
    assert after[20:].max() < 0.2   # after the rest period: the alternation is still a known pattern


def test_bounded_state_and_lru_forgetting():
    rng = np.random.default_rng(2)
    det = ContextNoveltyDetector(rest_period=10, n_sets=8, n_ways=4)
    size0 = det.state_size()
    _run(det, rng.uniform(0, 1, 3000))          # white noise: far more contexts than 32 entries
    assert det.state_size() == size0
    assert (det.s["keys"] != 0).sum() == 32      # full, never more
    # the least recently used entries go first: a pattern repeated now is what the table holds
    s = _run(det, np.tile([0.05, 0.95], 200), t0=1e6)
    assert s[-50:].max() < 0.3


def test_default_state_fits_the_budget():
    det = ContextNoveltyDetector()
    assert det.state_size() <= STATE_BUDGET
    _run(det, np.random.default_rng(3).normal(size=2000))
    assert len(json.dumps(det.to_state()).encode()) <= 1.4 * STATE_BUDGET  # base64 of <= 16 KB


def test_state_round_trip_continues_identically():
    rng = np.random.default_rng(4)
    xs = np.r_[_pattern(700, rng), rng.uniform(-2, 8, 100), _pattern(300, rng)]
    a = ContextNoveltyDetector(rest_period=25)
    _run(a, xs[:500])
    b = ContextNoveltyDetector.from_state(json.loads(json.dumps(a.to_state())))
    assert b.config() == a.config()
    ra, rb = _run(a, xs[500:], 1e6), _run(b, xs[500:], 1e6)
    assert np.array_equal(ra, rb)
    with pytest.raises(ValueError):
        ContextNoveltyDetector(rest_period=25, n_sets=128).load_state(a.to_state())


def test_batch_equals_single_bit_for_bit():
    rng = np.random.default_rng(5)
    n, k = 900, 5
    xs = np.stack([_pattern(n, rng), rng.poisson(20, n).astype(float), np.cumsum(rng.normal(size=n)),
                   rng.uniform(0, 1, n), np.zeros(n)])
    xs[3, 100:120] = np.nan                       # missing points
    xs[4, 500:] = 7.0                             # a flat series that steps once
    batch = ContextNoveltyDetector(rest_period=40, n_series=k)
    singles = [ContextNoveltyDetector(rest_period=40) for _ in range(k)]
    for i in range(n):
        bs, bz, be, bf = batch.update_many(xs[:, i], 60.0 * i)
        for j, d in enumerate(singles):
            r = d.update(float(xs[j, i]), 60.0 * i)
            assert r.score == bs[j] and r.fired == bf[j]
            assert r.z == bz[j] or (np.isnan(r.z) and np.isnan(bz[j]))
            assert r.expected == be[j] or (np.isnan(r.expected) and np.isnan(be[j]))
    for j, d in enumerate(singles):
        assert batch.to_state(j) == d.to_state()


def test_missing_values_score_zero_and_change_nothing():
    det = ContextNoveltyDetector(rest_period=5)
    _run(det, np.tile([1.0, 2.0, 3.0], 30))
    before = {k: v.copy() for k, v in det.s.items()}
    r = det.update(float("nan"), 1e6)
    assert r.score == 0.0 and not r.fired
    assert all(np.array_equal(before[k], det.s[k]) for k in before)


def test_score_one_does_not_learn():
    det = ContextNoveltyDetector(rest_period=5)
    _run(det, np.tile([1.0, 2.0, 3.0], 30))
    s1 = det.score_one(9.0, 1e6)
    assert det.score_one(9.0, 1e6) == s1 and s1 >= det.base_threshold
    assert det.update(9.0, 1e6).score == s1


def test_expected_and_sign():
    det = ContextNoveltyDetector(rest_period=5)
    _run(det, np.tile([0.0, 10.0], 50))           # after 0 comes 10, after 10 comes 0
    r = det.update(0.0, 1e6)                      # previous was 10 -> expects the low bucket
    assert r.expected < 2.0 and r.score < 0.2
    r = det.update(0.0, 1e6 + 60)                 # expected ~10, got 0: novel, below expectation
    assert r.expected > 8.0 and r.z < 0 and r.fired


def test_exported_and_invalid_config_rejected():
    assert detectors.ContextNoveltyDetector is ContextNoveltyDetector
    with pytest.raises(ValueError):
        ContextNoveltyDetector(n_bits=5)
    with pytest.raises(ValueError):
        ContextNoveltyDetector(n_sets=100)
    with pytest.raises(ValueError):
        ContextNoveltyDetector(n_bits=4, max_left=7)
    with pytest.raises(ValueError):
        ContextNoveltyDetector(n_series=2).update(1.0, 0.0)


# -- the agreement benchmark, on a made-up NAB folder (tests never read the reference data beside the repo) ------------------

def _fake_nab(root, n=400):
    """One file: a repeated pattern, then a never-seen shape in rows 300..319 (the window)."""
    import datetime as dt
    from benchmarks import nab_scorer as ns
    rng = np.random.default_rng(7)
    x = _pattern(n, rng)
    x[300:320] = np.tile([0.0, 5.0], 10)
    ts = [(dt.datetime(2020, 1, 1) + dt.timedelta(minutes=5 * i)).strftime("%Y-%m-%d %H:%M:%S") for i in range(n)]
    (root / "data" / "cat").mkdir(parents=True)
    (root / "data" / "cat" / "f.csv").write_text("timestamp,value\n" + "".join(f"{t},{float(v)!r}\n" for t, v in zip(ts, x)))
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps({"cat/f.csv": [[ts[300], ts[339]]]}))
    (root / "config").mkdir()
    cm = {"standard": 0.11, "reward_low_FP_rate": 0.22, "reward_low_FN_rate": 0.11}
    (root / "config" / "profiles.json").write_text(json.dumps({p: {"CostMatrix": {
        "tpWeight": 1.0, "fnWeight": 2.0 if p == "reward_low_FN_rate" else 1.0, "fpWeight": fp, "tnWeight": 1.0}}
        for p, fp in cm.items()}))
    # two made-up "published" outputs: one fires in the window only, one also fires twice outside it
    for name, extra in (("contextOSE", []), ("ARTime", [150, 200])):
        score = np.zeros(n)
        score[305] = 0.9
        score[extra] = 0.95
        path = ns.results_path(root / "results", name, "cat/f.csv")
        path.parent.mkdir(parents=True)
        path.write_text("timestamp,value,anomaly_score,label\n"
                        + "".join(f"{t},{float(v)!r},{float(s)!r},0\n" for t, v, s in zip(ts, x, score)))
    return x


def test_agreement_benchmark_on_a_made_up_corpus(tmp_path, capsys):
    from benchmarks import novelty
    _fake_nab(tmp_path)
    out = novelty.main(["--data", str(tmp_path), "--json", str(tmp_path / "o.json"), "--rest", "fixed"])
    assert json.loads((tmp_path / "o.json").read_text()) == json.loads(capsys.readouterr().out)
    assert out["files"] == 1 and out["rows"] == 400
    cad = out["references"]["contextOSE"]
    f = cad["agreement"]["files"]["cat/f.csv"]
    assert f["windows"] == [[1, 1]]                   # both detect the one window
    assert f["fp_runs"][1] == 0
    art = out["references"]["ARTime"]["agreement"]["files"]["cat/f.csv"]
    assert art["windows"] == [[1, 1]] and art["fp_runs"][1] == 2   # its two alarms outside the window
    assert out["references"]["ARTime"]["agreement"]["total"]["fp_runs_ref"] == 2
    assert 95.0 < cad["scores"]["corpus"]["standard"] < 100.0      # detected 5 rows into the window
    assert out["ours"]["corpus"]["standard"] > 0.0
