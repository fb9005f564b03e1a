"""The ``python -m benchmarks.nab`` command on a small slice of the NAB corpus.

Uses the small NAB tree vendored in ``tests/fixtures/nab.tar.xz`` (three files, NAB's published outputs).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from benchmarks import nab
from benchmarks import nab_scorer as ns
from fixture_data import nab_dir as vendored_nab_dir

REPO = Path(__file__).resolve().parents[1]
# Small files from three categories, one with no windows at all.
FILES = [
    "realTraffic/speed_7578.csv",
    "realKnownCause/rogue_agent_key_hold.csv",
    "artificialNoAnomaly/art_daily_no_noise.csv",
]
DETECTOR = "windowed_gaussian"


@pytest.fixture(scope="module")
def nab_dir() -> Path:
    return vendored_nab_dir()


@pytest.fixture(scope="module")
def corpus(nab_dir):
    return ns.load_corpus(nab_dir, FILES)


@pytest.fixture(scope="module")
def profiles(nab_dir):
    return ns.load_profiles(nab_dir)


@pytest.fixture(scope="module")
def cli_run(nab_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("nab")
    cmd = [
        sys.executable, "-m", "benchmarks.nab",
        "--data", str(nab_dir),
        "--json", str(out / "report.json"),
        "--results-dir", str(out / "results"),
        "--detector", DETECTOR,
        "--files", *FILES,
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc, json.loads((out / "report.json").read_text()), out / "results"


def test_stdout_is_the_same_report(cli_run):
    proc, report, _ = cli_run
    assert json.loads(proc.stdout) == report


def test_progress_on_stderr(cli_run):
    proc, _, _ = cli_run
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("[")]
    assert [ln.split("]")[0] for ln in lines] == ["[1/3", "[2/3", "[3/3"]


def _check_block(block, windows, threshold=None):
    assert set(block) == set(ns.PROFILE_NAMES)
    for p in ns.PROFILE_NAMES:
        e = block[p]
        if threshold is not None:
            assert e["threshold"] == threshold
        assert e["perfect_raw_score"] == windows  # tpWeight is 1 in every profile
        assert e["null_raw_score"] < 0 and e["raw_score"] <= e["perfect_raw_score"]
        span = e["perfect_raw_score"] - e["null_raw_score"]
        assert e["normalized_score"] == pytest.approx(100 * (e["raw_score"] - e["null_raw_score"]) / span)


def test_report_shape_and_ranges(cli_run, corpus):
    _, report, _ = cli_run
    assert report["detector"] == DETECTOR
    assert report["files"] == 3 and report["rows"] == sum(f.n_rows for f in corpus)
    assert report["windows"] == sum(len(f.windows) for f in corpus) == 6
    _check_block(report["scores"], 6)
    _check_block(report["default_threshold_scores"], 6, report["default_threshold"])
    # Optimizing can only help, profile by profile.
    for p in ns.PROFILE_NAMES:
        opt, dflt = report["scores"][p], report["default_threshold_scores"][p]
        assert opt["raw_score"] >= dflt["raw_score"]
        assert opt["normalized_score"] <= 100.0
    for key in ("default_threshold", "standard_optimized"):
        ev = report["event_f1"][key]
        assert 0.0 <= min(ev["precision"], ev["recall"], ev["f1"]) <= max(ev["precision"], ev["recall"], ev["f1"]) <= 1.0
        assert ev["tp"] + ev["fn"] == 6
    assert report["event_f1"]["standard_optimized"]["threshold"] == report["scores"]["standard"]["threshold"]


def test_categories_add_up(cli_run):
    _, report, _ = cli_run
    cats = report["categories"]
    assert set(cats) == {"realTraffic", "realKnownCause", "artificialNoAnomaly"}
    for p in ns.PROFILE_NAMES:
        total = sum(c["scores"][p]["raw_score"] for c in cats.values())
        assert total == pytest.approx(report["scores"][p]["raw_score"], abs=1e-12)
        assert {c["scores"][p]["threshold"] for c in cats.values()} == {report["scores"][p]["threshold"]}
    # No windows: nothing to normalize against.
    assert cats["artificialNoAnomaly"]["windows"] == 0
    assert cats["artificialNoAnomaly"]["scores"]["standard"]["normalized_score"] is None
    assert sum(c["event_f1"]["default_threshold"]["fp"] for c in cats.values()) == report["event_f1"]["default_threshold"]["fp"]


def test_results_files_parse_back_and_rescore(cli_run, corpus, profiles):
    _, report, results = cli_run
    for f in corpus:
        path = ns.results_path(results, DETECTOR, f.name)
        header = path.read_text().splitlines()[0]
        assert header == "timestamp,value,anomaly_score,label"
        labels = np.loadtxt(path, delimiter=",", skiprows=1, usecols=3, dtype=int)
        np.testing.assert_array_equal(labels, f.labels())
    scores = ns.read_results(results, DETECTOR, corpus)
    again = nab.evaluate(scores, corpus, {p: profiles[p] for p in ns.PROFILE_NAMES}, report["default_threshold"])
    for key in ("scores", "default_threshold_scores", "event_f1", "categories"):
        assert again[key] == report[key], key


def test_baseline_reproduces_nab_published_scores(nab_dir):
    # The longest file, so the window fills and slides (6400 rows, step 100).
    (f,) = ns.load_corpus(nab_dir, ["realKnownCause/rogue_agent_key_hold.csv"])
    published = ns.read_results(nab_dir / "results", "windowedGaussian", [f])[f.name]
    ours = nab.run_file(nab.REGISTRY[DETECTOR], f)
    # The published CSV rounds to 12 significant digits.
    np.testing.assert_allclose(ours, published, rtol=0, atol=1e-9)


def test_ensemble_adapter_uses_detectors_contract(monkeypatch, corpus):
    calls = []

    class Result:
        def __init__(self, score):
            self.score = score

    class Fake:
        def update(self, value, t):
            calls.append(t)
            return Result(0.9 if value > 80 else 0.1)

    fake = types.ModuleType("detectors")
    fake.default_ensemble = Fake
    fake.DEFAULT_THRESHOLD = 0.42
    monkeypatch.setitem(sys.modules, "patrol.detectors", fake)
    spec = nab.REGISTRY["ensemble"]
    f = corpus[0]
    scores = nab.run_file(spec, f)
    assert spec.default_threshold() == 0.42
    np.testing.assert_array_equal(scores, np.where(f.values > 80, 0.9, 0.1))
    assert len(calls) == f.n_rows and calls[0].isoformat(sep=" ") == f.timestamps[0]


def test_ensemble_adapter_explains_missing_factory(monkeypatch, corpus):
    monkeypatch.setitem(sys.modules, "patrol.detectors", types.ModuleType("patrol.detectors"))
    with pytest.raises(RuntimeError, match="default_ensemble"):
        nab.run_file(nab.REGISTRY["ensemble"], corpus[0])


def test_nan_scores_are_an_error(corpus):
    spec = nab.DetectorSpec("nan", lambda: types.SimpleNamespace(update=lambda v, t: math.nan), lambda: 0.5, "")
    with pytest.raises(ValueError, match="NaN"):
        nab.run_file(spec, corpus[0])
