"""The NAB scorer against NAB v1.1's official scores and hand-built cases.

The reference is a small NAB tree vendored in ``tests/fixtures/nab.tar.xz`` (see tests/fixtures/README.md):
three files, NAB's published ``numenta`` (HTM) and ``windowedGaussian`` outputs for them, and NAB v1.1's
official per-file results at each detector's optimised threshold (from a run of NAB itself on a
25-file corpus). Per-file figures depend only on the threshold, so scoring these files at that
threshold must reproduce NAB's numbers exactly. The corpus-wide threshold optimisation is checked
against a row-by-row reference on synthetic data below. ``python -m benchmarks.nab --data DIR`` scores
a full corpus.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks import nab_scorer as ns
from fixture_data import nab_dir as vendored_nab_dir

SCORE_TOL = 1e-9
DETECTORS = ("numenta", "windowedGaussian")


@pytest.fixture(scope="module")
def nab_dir() -> Path:
    return vendored_nab_dir()


@pytest.fixture(scope="module")
def expected(nab_dir):
    return json.loads((nab_dir / "results" / "expected_per_file.json").read_text())


@pytest.fixture(scope="module")
def corpus(nab_dir):
    return ns.load_corpus(nab_dir)


@pytest.fixture(scope="module")
def profiles(nab_dir):
    return ns.load_profiles(nab_dir)


@pytest.fixture(scope="module")
def published(nab_dir, corpus):
    return {d: ns.read_results(nab_dir / "results", d, corpus) for d in DETECTORS}


def _check_per_file(result, expected_files):
    assert set(result.per_file) == set(expected_files)
    for name, want in expected_files.items():
        got = result.per_file[name]
        assert got.raw_score == pytest.approx(want["raw_score"], abs=SCORE_TOL), name
        for key in ("tp_rows", "tn_rows", "fp_rows", "fn_rows", "scored_rows", "windows"):
            assert getattr(got, key) == want[key], (name, key)


@pytest.mark.parametrize("profile_name", ns.PROFILE_NAMES)
@pytest.mark.parametrize("detector", DETECTORS)
def test_published_detector_matches_nab(detector, profile_name, published, corpus, profiles, expected):
    exp = expected["detectors"][detector][profile_name]
    result = ns.score_corpus(published[detector], corpus, profiles[profile_name], exp["threshold"])
    _check_per_file(result, exp["per_file"])
    assert result.raw_score == pytest.approx(sum(f["raw_score"] for f in exp["per_file"].values()), abs=SCORE_TOL)


@pytest.mark.parametrize("profile_name", ns.PROFILE_NAMES)
def test_normalization_constants(profile_name, corpus, profiles):
    """perfect = tpWeight per window; null (0.5 everywhere, best threshold 1.1) = -fnWeight per window."""
    profile = profiles[profile_name]
    windows = sum(len(f.windows) for f in corpus)
    assert windows > 0
    assert ns.perfect_raw_score(corpus, profile) == windows * profile.tp_weight
    assert ns.null_raw_score(corpus, profile) == pytest.approx(-windows * profile.fn_weight, abs=SCORE_TOL)


def test_corpus_shape(corpus, expected):
    per_file = expected["detectors"]["numenta"]["standard"]["per_file"]
    assert sorted(f.name for f in corpus) == sorted(per_file)
    for f in corpus:
        assert f.n_rows - f.probation == per_file[f.name]["scored_rows"], f.name
        assert f.scored_windows == per_file[f.name]["windows"], f.name


def test_profiles_match_expected_cost_matrices(profiles, expected):
    for name, matrix in expected["scoring"]["profiles"].items():
        p = profiles[name]
        assert (p.tp_weight, p.fp_weight, p.fn_weight) == (
            matrix["tpWeight"],
            matrix["fpWeight"],
            matrix["fnWeight"],
        )


def test_published_labels_match_windows(nab_dir, corpus):
    # The results files carry NAB's own label column: our window rows must agree.
    for f in corpus:
        path = ns.results_path(nab_dir / "results", "numenta", f.name)
        labels = np.loadtxt(path, delimiter=",", skiprows=1, usecols=4, dtype=int)
        np.testing.assert_array_equal(labels, f.labels())


# --------------------------------------------------------------------------
# Small, hand-checkable cases
# --------------------------------------------------------------------------


def _file(n, windows, name="synthetic/x.csv"):
    return ns.NabFile(
        name=name,
        timestamps=tuple(f"t{i}" for i in range(n)),
        values=np.zeros(n),
        windows=tuple(windows),
    )


STANDARD = ns.Profile("standard", tp_weight=1.0, fp_weight=0.11, fn_weight=1.0)
LOW_FN = ns.Profile("reward_low_FN_rate", tp_weight=1.0, fp_weight=0.11, fn_weight=2.0)


def _sigmoid_ref(x):
    return -1.0 if x > 3.0 else 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


def _reference_score(scores, f, profile, threshold):
    """Row-by-row transliteration of NAB's rules, independent of the module."""
    probation = min(int(0.15 * f.n_rows), 750)
    owner = {i: k for k, (a, b) in enumerate(f.windows) for i in range(a, b + 1)}
    max_tp = _sigmoid_ref(-1.0)
    fp_total, best, prev = 0.0, {}, None
    for i in range(f.n_rows):
        k = owner.get(i)
        if k is not None:
            first, last = f.windows[k]
            width = last - first + 1
            weight = _sigmoid_ref(-(last - i + 1) / width) * profile.tp_weight / max_tp
        elif prev is None:
            weight = -profile.fp_weight
        else:
            weight = _sigmoid_ref(abs(prev[1] - i) / (prev[1] - prev[0])) * profile.fp_weight
        if k is not None and i == f.windows[k][1]:
            prev = f.windows[k]
        if i < probation:
            continue
        if k is not None:
            best.setdefault(k, -profile.fn_weight)
            if scores[i] >= threshold:
                best[k] = max(best[k], weight)
        elif scores[i] >= threshold:
            fp_total += weight
    return fp_total + sum(best.values())


@pytest.fixture
def synthetic():
    rng = np.random.default_rng(7)
    # Window 0 starts inside probation (15 rows), window 1 is mid-file.
    files = [_file(100, [(10, 24), (60, 69)], "a/one.csv"), _file(60, [(40, 44)], "b/two.csv")]
    # Rounded scores create ties, the case where threshold handling matters.
    scores = {f.name: np.round(rng.random(f.n_rows), 2) for f in files}
    return files, scores


@pytest.mark.parametrize("profile", [STANDARD, LOW_FN])
def test_sweep_matches_row_by_row_reference(synthetic, profile):
    files, scores = synthetic
    table = ns.sweep(scores, files, profile)
    assert table.thresholds[0] == ns.NULL_THRESHOLD
    assert np.all(np.diff(table.thresholds) < 0)
    for thr, score in zip(table.thresholds, table.scores):
        want = sum(_reference_score(scores[f.name], f, profile, thr) for f in files)
        assert score == pytest.approx(want, abs=1e-12)
        assert ns.score_corpus(scores, files, profile, thr).raw_score == pytest.approx(want, abs=1e-12)


def test_sweep_row_counts(synthetic):
    files, scores = synthetic
    table = ns.sweep(scores, files, STANDARD)
    k = len(table.thresholds) // 2
    thr = table.thresholds[k]
    in_win = np.concatenate([f.labels()[f.probation :] for f in files]).astype(bool)
    det = np.concatenate([scores[f.name][f.probation :] for f in files]) >= thr
    assert table.tp_rows[k] == np.sum(det & in_win)
    assert table.fp_rows[k] == np.sum(det & ~in_win)
    assert table.fn_rows[k] == np.sum(~det & in_win)
    assert table.tn_rows[k] == np.sum(~det & ~in_win)


def test_window_weights_follow_position():
    f = _file(100, [(40, 49)])
    w, win = ns.row_weights(f, STANDARD)
    # The left edge earns the full tpWeight, later detections less.
    assert w[40] == pytest.approx(1.0)
    assert np.all(np.diff(w[40:50]) < 0)
    assert w[49] > 0
    assert np.all(win[40:50] == 0) and np.all(win[:40] == -1) and np.all(win[50:] == -1)
    # Before any window: full FP cost; right after one: nearly free.
    assert np.all(w[:40] == -0.11)
    assert -0.11 < w[50] < 0
    assert w[52] == pytest.approx(0.11 * (2 / (1 + math.exp(5 * 3 / 9)) - 1))
    assert w[99] == -0.11  # more than 3 window widths past the window


def test_only_earliest_detection_counts():
    f = _file(100, [(40, 49)])
    early = np.zeros(100)
    early[[41, 45, 48]] = 1.0
    late = np.zeros(100)
    late[48] = 1.0
    s_early = ns.score_file(early, f, STANDARD, 0.5).raw_score
    s_late = ns.score_file(late, f, STANDARD, 0.5).raw_score
    assert s_early == pytest.approx(ns.row_weights(f, STANDARD)[0][41])
    assert s_early > s_late > 0
    missed = ns.score_file(np.zeros(100), f, LOW_FN, 0.5)
    assert missed.raw_score == -2.0 and missed.fn_rows == 10


def test_probationary_rows_are_ignored():
    f = _file(100, [(40, 49)])
    scores = np.zeros(100)
    scores[:15] = 1.0  # all within probation: 15 rows
    result = ns.score_file(scores, f, STANDARD, 0.5)
    assert result.fp_rows == 0 and result.scored_rows == 85
    assert result.raw_score == -1.0


@pytest.mark.parametrize(("n", "want"), [(1882, 282), (4999, 749), (5000, 750), (22695, 750), (10, 1)])
def test_probationary_length(n, want):
    assert ns.probationary_length(n) == want


def test_scaled_sigmoid_landmarks():
    assert ns.scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert ns.scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert ns.scaled_sigmoid(0.0) == 0.0
    assert ns.scaled_sigmoid(3.0) > -1.0
    assert ns.scaled_sigmoid(3.0001) == -1.0


def test_ties_keep_highest_threshold():
    f = _file(100, [(40, 49)])
    scores = np.zeros(100)
    # Detecting row 40 alone or rows 40 and 45 scores the same.
    scores[40], scores[45] = 0.9, 0.8
    threshold, best = ns.optimize_threshold({f.name: scores}, [f], STANDARD)
    assert threshold == 0.9
    assert best == pytest.approx(1.0)


def test_optimizer_prefers_null_when_everything_is_noise():
    f = _file(100, [])
    scores = np.linspace(0, 1, 100)
    threshold, best = ns.optimize_threshold({f.name: scores}, [f], STANDARD)
    assert (threshold, best) == (ns.NULL_THRESHOLD, 0.0)


def test_normalized_endpoints():
    assert ns.normalized(-39.0, -39.0, 39.0) == 0.0
    assert ns.normalized(39.0, -39.0, 39.0) == 100.0
    assert ns.normalized(0.0, -78.0, 39.0) == pytest.approx(100 * 78 / 117)
    assert math.isnan(ns.normalized(0.0, 0.0, 0.0))


def test_bad_inputs_are_rejected():
    f = _file(20, [(5, 8)])
    with pytest.raises(ValueError, match="rows"):
        ns.score_file(np.zeros(19), f, STANDARD, 0.5)
    with pytest.raises(ValueError, match="NaN"):
        ns.score_file(np.full(20, np.nan), f, STANDARD, 0.5)


def test_missing_data_dir_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="NAB data not found"):
        ns.load_corpus(tmp_path)


def test_window_boundary_must_be_a_row(tmp_path):
    (tmp_path / "data" / "c").mkdir(parents=True)
    (tmp_path / "labels").mkdir()
    (tmp_path / "data" / "c" / "f.csv").write_text(
        "timestamp,value\n2020-01-01 00:00:00,1\n2020-01-01 00:05:00,2\n"
    )
    windows = {"c/f.csv": [["2020-01-01 00:00:00.000000", "2020-01-01 00:04:00.000000"]]}
    (tmp_path / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    with pytest.raises(ValueError, match="not a row timestamp"):
        ns.load_corpus(tmp_path)
    windows["c/f.csv"][0][1] = "2020-01-01 00:05:00.000000"
    (tmp_path / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    (loaded,) = ns.load_corpus(tmp_path)
    assert loaded.windows == ((0, 1),) and loaded.category == "c"


# --------------------------------------------------------------------------
# Event-level precision / recall / F1
# --------------------------------------------------------------------------


def _detections(n, rows):
    det = np.zeros(n, dtype=bool)
    det[list(rows)] = True
    return det


def test_event_counts_by_hand():
    f = _file(100, [(40, 49), (70, 79)])  # probation = 15 rows
    det = _detections(100, [5, 20, 21, 22, 30, 38, 39, 40, 41, 90, 92])
    ev = ns.file_events(det, f)
    # Row 5 is probationary; 20-22 and 30 are two FP runs; 38-41 runs into
    # window 0 so it is its TP, not an FP; 90 and 92 are separate runs.
    assert (ev.tp, ev.fp, ev.fn) == (1, 4, 1)
    assert ev.precision == pytest.approx(1 / 5)
    assert ev.recall == pytest.approx(1 / 2)
    assert ev.f1 == pytest.approx(2 * 0.2 * 0.5 / 0.7)


def test_event_run_crossing_two_windows_is_not_fp():
    f = _file(100, [(40, 49), (60, 69)])
    ev = ns.file_events(_detections(100, range(45, 65)), f)
    assert (ev.tp, ev.fp, ev.fn) == (2, 0, 0)
    assert ev.f1 == 1.0


def test_event_window_inside_probation_is_not_counted():
    f = _file(100, [(2, 6), (50, 59)])
    ev = ns.file_events(_detections(100, [3, 55]), f)
    assert (ev.tp, ev.fp, ev.fn) == (1, 0, 0)


def test_event_no_detections():
    f = _file(100, [(50, 59)])
    ev = ns.file_events(np.zeros(100, dtype=bool), f)
    assert (ev.tp, ev.fp, ev.fn) == (0, 0, 1)
    assert (ev.precision, ev.recall, ev.f1) == (0.0, 0.0, 0.0)


def test_event_metrics_sum_files_and_use_threshold():
    a, b = _file(100, [(50, 59)], "c/a.csv"), _file(100, [], "c/b.csv")
    sa, sb = np.zeros(100), np.zeros(100)
    sa[52], sa[80] = 0.9, 0.6
    sb[30] = 0.7
    both = {a.name: sa, b.name: sb}
    high = ns.event_metrics(both, [a, b], 0.8)
    low = ns.event_metrics(both, [a, b], 0.6)
    assert (high.tp, high.fp, high.fn) == (1, 0, 0)
    assert (low.tp, low.fp, low.fn) == (1, 2, 0)
    assert low.as_dict()["precision"] == pytest.approx(1 / 3)


def test_file_selection(nab_dir):
    picked = ns.load_corpus(nab_dir, ["rogue_agent_key_hold.csv", "realTraffic/speed_7578.csv"])
    assert [f.name for f in picked] == ["realKnownCause/rogue_agent_key_hold.csv", "realTraffic/speed_7578.csv"]
    with pytest.raises(ValueError, match="unknown NAB file"):
        ns.load_corpus(nab_dir, ["no_such_file.csv"])


def test_perfect_score_counts_windows_hidden_in_probation():
    """NAB's perfect score is tpWeight per window of the labels file, probation or not."""
    hidden, visible = _file(100, [(2, 6), (50, 59)], "a/x.csv"), _file(100, [(50, 59)], "b/y.csv")
    assert hidden.scored_windows == 1 and len(hidden.windows) == 2
    assert ns.perfect_raw_score([hidden, visible], STANDARD) == pytest.approx(3 * STANDARD.tp_weight)
    # a detector that catches every window it can still scores below 100 when one window is unreachable
    scores = {f.name: np.zeros(f.n_rows) for f in (hidden, visible)}
    for f in (hidden, visible):
        scores[f.name][50] = 1.0
    raw = ns.score_corpus(scores, [hidden, visible], STANDARD, 0.5).raw_score
    norm = ns.normalized(raw, ns.null_raw_score([hidden, visible], STANDARD),
                         ns.perfect_raw_score([hidden, visible], STANDARD))
    assert 0 < norm < 100
