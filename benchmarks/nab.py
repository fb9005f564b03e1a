"""Run a streaming detector over the NAB corpus and score it with NAB v1.1 rules.

Usage::

    python -m benchmarks.nab --data ../shared/nab --json nab.json \\
        [--results-dir OUT] [--detector ensemble|windowed_gaussian] [--files a.csv b.csv] [--jobs N]
        [--cv [--cache DIR]] [--synthetic SEED [--synthetic-rows N]]

Each file gets a fresh detector, fed one row at a time (``update(value, t)``),
so the scores are what the detector would have said live.  The report holds
NAB's normalized scores at the corpus-optimized threshold of every profile,
the same scores at the detector's own default threshold, event-level
precision/recall/F1, and a per-category breakdown.  ``--cv`` adds the nested
leave-one-category-out selection of the ensemble variant and alert threshold
(:mod:`benchmarks.nab_cv`): out-of-fold scores next to in-sample ones.
``--synthetic SEED`` runs on the generated corpus of :mod:`benchmarks.synth`
instead of NAB files.  See ``docs/nab.md``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np

from benchmarks import nab_scorer as ns

__all__ = [
    "DetectorSpec",
    "REGISTRY",
    "WindowedGaussian",
    "run_file",
    "run_corpus",
    "write_results",
    "evaluate",
    "main",
]


class StreamingDetector(Protocol):
    """What the harness needs: score a point, then learn it."""

    def update(self, value: float, t: datetime) -> Any:  # pragma: no cover - protocol
        ...


@dataclass(frozen=True)
class DetectorSpec:
    """A detector the benchmark can run.

    Parameters
    ----------
    name
        Registry key; also the detector name in NAB results paths.
    make
        Builds a fresh detector (one per file).
    default_threshold
        Returns the detector's own alert threshold on its score.
    description
        One line for ``--help``.

    """

    name: str
    make: Callable[[], StreamingDetector]
    default_threshold: Callable[[], float]
    description: str


# --------------------------------------------------------------------------
# Built-in baseline: NAB's windowedGaussian
# --------------------------------------------------------------------------

#: 1 - Q(3): fire when a point is more than 3 standard deviations out.
WINDOWED_GAUSSIAN_THRESHOLD = 1.0 - 0.5 * math.erfc(3.0 / math.sqrt(2.0))


class WindowedGaussian:
    """NAB's ``windowedGaussian`` detector.

    The score is ``1 - Q(|x - mean| / std)`` under a Gaussian fitted to a
    window of past values (``Q`` is the upper-tail probability), 0 for the
    first point.  The window grows to ``window_size`` values, then slides by
    ``step_size`` values at a time; the fit only changes when it slides.  The
    defaults are those behind NAB's published ``windowedGaussian`` results,
    which this class reproduces to ~1e-12.

    Parameters
    ----------
    window_size
        Maximum number of past values in the window.
    step_size
        Once the window is full, values are buffered and the window slides
        when this many have arrived.

    Examples
    --------
    >>> det = WindowedGaussian()
    >>> [round(det.update(v), 3) for v in (1.0, 2.0, 1.5, 9.0)]
    [0.0, 1.0, 0.5, 1.0]

    """

    def __init__(self, window_size: int = 6400, step_size: int = 100):
        self.window_size = window_size
        self.step_size = step_size
        self.window = np.empty(0)
        self.pending: list[float] = []
        self.mean = 0.0
        self.std = 1.0

    def update(self, value: float, t: Any = None) -> float:
        """Score ``value`` against the current fit, then learn it."""
        score = 0.0
        if self.window.size:
            z = abs(value - self.mean) / self.std
            score = 1.0 - 0.5 * math.erfc(z / math.sqrt(2.0))
        if self.window.size < self.window_size:
            self.window = np.append(self.window, value)
            self._refit()
        else:
            self.pending.append(value)
            if len(self.pending) == self.step_size:
                self.window = np.concatenate((self.window[self.step_size :], self.pending))
                self.pending = []
                self._refit()
        return score

    def _refit(self) -> None:
        self.mean = float(np.mean(self.window))
        # NAB's guard: a constant window would make every change infinitely unlikely.
        self.std = float(np.std(self.window)) or 0.000001


# --------------------------------------------------------------------------
# Adapter for the project's detector library
# --------------------------------------------------------------------------


def _detectors_module():
    # Imported lazily: the baseline must run even if `detectors` is broken.
    return importlib.import_module("patrol.detectors")


def _make_ensemble() -> StreamingDetector:
    mod = _detectors_module()
    factory = getattr(mod, "default_ensemble", None)
    if factory is None:
        raise RuntimeError(
            "detectors.default_ensemble() does not exist; "
            "use --detector windowed_gaussian or add the factory"
        )
    return factory()


def _ensemble_threshold() -> float:
    mod = _detectors_module()
    for name in ("DEFAULT_THRESHOLD", "DEFAULT_ALERT_THRESHOLD"):
        if hasattr(mod, name):
            return float(getattr(mod, name))
    raise RuntimeError("detectors has no DEFAULT_THRESHOLD")


REGISTRY: dict[str, DetectorSpec] = {
    spec.name: spec
    for spec in (
        DetectorSpec(
            "ensemble",
            _make_ensemble,
            _ensemble_threshold,
            "detectors.default_ensemble(), thresholded at detectors.DEFAULT_THRESHOLD",
        ),
        DetectorSpec(
            "windowed_gaussian",
            WindowedGaussian,
            lambda: WINDOWED_GAUSSIAN_THRESHOLD,
            "NAB's windowedGaussian baseline (window 6400, step 100, 3-sigma default threshold)",
        ),
    )
}

DEFAULT_DETECTOR = "ensemble"


# --------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------


def _as_score(result: Any) -> float:
    # Detectors return either a bare float or a result object with .score.
    return float(getattr(result, "score", result))


def run_file(spec: DetectorSpec, f: ns.NabFile) -> np.ndarray:
    """Stream one file through a fresh detector.

    Returns
    -------
    numpy.ndarray
        Anomaly score per row.

    """
    det = spec.make()
    out = np.empty(f.n_rows)
    for i, (ts, value) in enumerate(zip(f.timestamps, f.values)):
        out[i] = _as_score(det.update(float(value), datetime.fromisoformat(ts)))
    if np.isnan(out).any():
        raise ValueError(f"{spec.name} produced NaN scores on {f.name}")
    return out


def _run_named(name: str, f: ns.NabFile) -> tuple[str, np.ndarray, float]:
    start = time.perf_counter()
    return f.name, run_file(REGISTRY[name], f), time.perf_counter() - start


def run_corpus(
    name: str, corpus: Sequence[ns.NabFile], jobs: int = 1, log=sys.stderr
) -> dict[str, np.ndarray]:
    """Run registry detector ``name`` over every file, reporting progress on ``log``.

    Parameters
    ----------
    name
        Key of :data:`REGISTRY`.
    corpus
        Files to run.
    jobs
        Worker processes; files are independent, so they parallelise.
    log
        Stream for progress lines (``[done/total] file rows seconds``).

    Returns
    -------
    dict
        File name to anomaly scores.

    """
    done: dict[str, np.ndarray] = {}

    def report(fname, scores, secs):
        done[fname] = scores
        print(f"[{len(done)}/{len(corpus)}] {fname} ({scores.size} rows, {secs:.1f}s)", file=log, flush=True)

    if jobs <= 1:
        for f in corpus:
            report(*_run_named(name, f))
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(_run_named, name, f) for f in corpus]
            for fut in as_completed(futures):
                report(*fut.result())
    return {f.name: done[f.name] for f in corpus}


def write_results(
    results_dir: str | Path,
    detector: str,
    corpus: Sequence[ns.NabFile],
    scores_by_file: Mapping[str, np.ndarray],
) -> list[Path]:
    """Write NAB results files: ``<detector>/<category>/<detector>_<file>.csv``.

    Columns are ``timestamp,value,anomaly_score,label``; scores are written
    with ``repr`` so reading them back gives the same doubles.
    """
    paths = []
    for f in corpus:
        path = ns.results_path(results_dir, detector, f.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = ["timestamp,value,anomaly_score,label"]
        for ts, v, s, lab in zip(f.timestamps, f.values, scores_by_file[f.name], f.labels()):
            lines.append(f"{ts},{float(v)!r},{float(s)!r},{lab}")
        path.write_text("\n".join(lines) + "\n")
        paths.append(path)
    return paths


# --------------------------------------------------------------------------
# Scoring report
# --------------------------------------------------------------------------


def _finite(x: float) -> float | None:
    # JSON has no NaN; a category without windows has no normalized score.
    return None if math.isnan(x) else x


def _profile_block(scores, corpus, profile, threshold) -> dict:
    res = ns.score_corpus(scores, corpus, profile, threshold)
    null = ns.null_raw_score(corpus, profile)
    perfect = ns.perfect_raw_score(corpus, profile)
    return {
        "threshold": res.threshold,
        "normalized_score": _finite(ns.normalized(res.raw_score, null, perfect)),
        "raw_score": res.raw_score,
        "null_raw_score": null,
        "perfect_raw_score": perfect,
        "tp_rows": res.tp_rows,
        "fp_rows": res.fp_rows,
        "fn_rows": res.fn_rows,
        "tn_rows": res.tn_rows,
    }


def _events(scores, corpus, threshold) -> dict:
    return {"threshold": threshold, **ns.event_metrics(scores, corpus, threshold).as_dict()}


def _section(scores, corpus, profiles, optimized, default) -> dict:
    return {
        "files": len(corpus),
        "windows": sum(f.scored_windows for f in corpus),
        "scores": {p: _profile_block(scores, corpus, profiles[p], optimized[p]) for p in profiles},
        "default_threshold_scores": {p: _profile_block(scores, corpus, profiles[p], default) for p in profiles},
        "event_f1": {
            "default_threshold": _events(scores, corpus, default),
            "standard_optimized": _events(scores, corpus, optimized["standard"]),
        },
    }


def evaluate(
    scores_by_file: Mapping[str, np.ndarray],
    corpus: Sequence[ns.NabFile],
    profiles: Mapping[str, ns.Profile],
    default_threshold: float,
) -> dict:
    """Score a detector's outputs: the whole corpus, then each category.

    Thresholds are optimized once on the whole corpus (as NAB does) and the
    categories are scored at those same thresholds, normalized against their
    own null and perfect scores.

    Returns
    -------
    dict
        ``scores``, ``default_threshold_scores``, ``event_f1``, ``categories``
        and the corpus size (see ``docs/nab.md``).

    """
    optimized = {p: ns.optimize_threshold(scores_by_file, corpus, profiles[p])[0] for p in profiles}
    report = {"default_threshold": default_threshold}
    report.update(_section(scores_by_file, corpus, profiles, optimized, default_threshold))
    report["rows"] = sum(f.n_rows for f in corpus)
    categories = sorted({f.category for f in corpus})
    report["categories"] = {
        c: _section(scores_by_file, [f for f in corpus if f.category == c], profiles, optimized, default_threshold)
        for c in categories
    }
    return report


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.nab", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ns.DEFAULT_NAB_DIR, help="NAB root (data/, labels/, config/)")
    p.add_argument("--json", type=Path, help="write the report here as well as to stdout")
    p.add_argument("--results-dir", type=Path, help="write per-row NAB results files under this folder")
    p.add_argument(
        "--detector",
        choices=sorted(REGISTRY),
        default=DEFAULT_DETECTOR,
        help="; ".join(f"{s.name}: {s.description}" for s in REGISTRY.values()),
    )
    p.add_argument("--files", nargs="+", help="only these files (category/name.csv or name.csv)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--cv", action="store_true",
                   help="also run the nested leave-one-category-out selection of ensemble variant and threshold "
                        "(benchmarks.nab_cv) and report out-of-fold next to in-sample scores")
    p.add_argument("--cache", type=Path, default=Path(".cache/nab_cv"),
                   help="--cv: per-variant, per-file evidence cache (default .cache/nab_cv)")
    p.add_argument("--synthetic", type=int, metavar="SEED",
                   help="use the generated corpus of benchmarks.synth (this seed) instead of --data")
    p.add_argument("--cv-candidates", nargs="+", metavar="VARIANT",
                   help="--cv: candidate variants (names in benchmarks.nab_cv.VARIANTS; default nab_cv.CANDIDATES)")
    p.add_argument("--cv-synthetic", type=int, metavar="SEED",
                   help="--cv: add the generated categories of benchmarks.synth (this seed) to the folds")
    p.add_argument("--synthetic-rows", type=int, default=None, help="--synthetic: rows per file (default two weeks)")
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    """Entry point of ``python -m benchmarks.nab``; returns the report."""
    args = _parser().parse_args(argv)
    spec = REGISTRY[args.detector]
    if args.synthetic is not None:
        from benchmarks import synth

        corpus = synth.corpus(seed=args.synthetic, n=args.synthetic_rows or synth.N_ROWS)
        if args.files:
            corpus = [f for f in corpus if f.name in args.files or f.name.split("/")[-1] in args.files]
        profiles = dict(synth.PROFILES)
    else:
        corpus = ns.load_corpus(args.data, args.files)
        all_profiles = ns.load_profiles(args.data)
        profiles = {p: all_profiles[p] for p in ns.PROFILE_NAMES}
    default_threshold = spec.default_threshold()
    start = time.perf_counter()
    if args.cv and spec.name == "ensemble":  # same scores, from the batch run the cross-validation caches
        from benchmarks import nab_cv

        scores = nab_cv.default_scores(corpus, args.cache)
    else:
        scores = run_corpus(spec.name, corpus, jobs=args.jobs)
    run_secs = time.perf_counter() - start
    if args.results_dir:
        write_results(args.results_dir, spec.name, corpus, scores)
    data = f"synthetic:{args.synthetic}" if args.synthetic is not None else str(args.data)
    report = {"detector": spec.name, "data": data, "run_seconds": run_secs}
    report.update(evaluate(scores, corpus, profiles, default_threshold))
    if args.cv:
        from benchmarks import nab_cv

        cv_corpus = list(corpus)
        if args.cv_synthetic is not None:
            from benchmarks import synth

            cv_corpus += synth.corpus(seed=args.cv_synthetic, n=args.synthetic_rows or synth.N_ROWS)
        cands = None if not args.cv_candidates else {k: nab_cv.VARIANTS[k] for k in args.cv_candidates}
        report["cv"] = nab_cv.cross_validate(cv_corpus, profiles, cands, cache=args.cache)
        print(nab_cv.summary(report["cv"]), file=sys.stderr)
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    print(text)
    return report


if __name__ == "__main__":
    main()
