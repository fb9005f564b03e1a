"""Nested leave-one-category-out cross-validation of ensemble variants and thresholds.

``python -m benchmarks.nab --data DIR --cv`` (or ``--synthetic SEED --cv``) runs this after
the usual in-sample report. The protocol (docs/nab.md, "Out-of-fold protocol"):

* Candidates are a few ensemble variants (:data:`CANDIDATES`) times a few alert thresholds
  (:data:`THRESHOLDS`).
* For each category ``c`` (a data subfolder), the candidate and threshold with the best summed
  raw NAB ``standard`` score *at that threshold* on the other categories is chosen, and scored on
  ``c`` only (three profiles at the chosen threshold, event precision / recall).
* The out-of-fold detections of the four folds are put together (each file thresholded at its
  own fold's choice) and scored as one corpus: that is the estimate for data the choice never saw.
* The same selection run on all categories gives the shipped default; its in-sample figures are
  printed next to the out-of-fold ones.

Cost: each variant runs once over the corpus as one :class:`detectors.BatchEnsemble` (one row
per file, NaN once a file has ended: identical to feeding each file to its own detector) and its
per-file *undamped* evidence is cached on disk (``--cache``); a threshold only changes the
episode damping (:meth:`detectors.calibration.TailCalibrator.novelty`), which is replayed on the
cached evidence, so the threshold grid costs nothing extra.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from benchmarks import nab_scorer as ns

#: Ensemble variants the protocol can run: name -> keyword arguments of ``detectors.BatchEnsemble``.
VARIANTS: dict[str, dict] = {
    "pooled": dict(calibration="pooled"),
    "per_detector": dict(calibration="per_detector"),
    "pooled+context": dict(calibration="pooled", novelty=True),
    "per_detector+context": dict(calibration="per_detector", novelty=True),
}

#: The candidates of the shipped protocol (few on purpose: every extra candidate is one more chance to
#: fit the training categories, docs/nab.md).
CANDIDATES: dict[str, dict] = {k: VARIANTS[k] for k in ("pooled", "per_detector")}

#: Alert thresholds tried (the service's ``DEFAULT_THRESHOLD`` is one of them).
THRESHOLDS = (0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6)


def _epoch(timestamps: Sequence[str]) -> np.ndarray:
    return np.array([t.strip().replace(" ", "T") for t in timestamps], dtype="datetime64[us]").astype(
        np.int64) / 1e6


def run_evidence(kwargs: Mapping, corpus: Sequence[ns.NabFile]) -> dict[str, np.ndarray]:
    """Run one ensemble variant over ``corpus`` as one batch; per file the undamped evidence
    (``BatchEnsemble.last_evidence``: calibrated surprise before episode damping)."""
    from patrol import detectors
    F = len(corpus)
    L = max(f.n_rows for f in corpus)
    X = np.full((F, L), np.nan)
    T = np.zeros((F, L))
    for i, f in enumerate(corpus):
        X[i, :f.n_rows] = f.values
        t = _epoch(f.timestamps)
        T[i, :f.n_rows] = t
        T[i, f.n_rows:] = t[-1]  # NaN rows are skipped; keep the clock still
    b = detectors.BatchEnsemble(n_series=F, **kwargs)
    ev = np.zeros((F, L))
    for j in range(L):
        b.update(X[:, j], T[:, j])
        ev[:, j] = b.last_evidence
    return {f.name: ev[i, :f.n_rows].copy() for i, f in enumerate(corpus)}


def damp(evidence: Mapping[str, np.ndarray], threshold: float) -> dict[str, np.ndarray]:
    """Scores at alert level ``threshold``: the ensemble's own episode damping replayed on evidence."""
    from patrol.detectors.calibration import TailCalibrator

    names = list(evidence)
    L = max(len(v) for v in evidence.values())
    E = np.zeros((len(names), L))
    ok = np.zeros((len(names), L), bool)
    for i, k in enumerate(names):
        E[i, :len(evidence[k])] = evidence[k]
        ok[i, :len(evidence[k])] = True
    cal = TailCalibrator(n_series=len(names), alert=10.0 * threshold)
    out = np.zeros_like(E)
    for j in range(L):
        out[:, j] = np.minimum(cal.novelty(E[:, j], ok[:, j]) / 10.0, 1.0)
    return {k: out[i, :len(evidence[k])] for i, k in enumerate(names)}


def _key(name: str, kwargs: Mapping, corpus: Sequence[ns.NabFile]) -> str:
    from patrol import detectors
    h = hashlib.sha256(json.dumps([name, dict(kwargs), detectors.STATE_VERSION], sort_keys=True).encode())
    src = Path(detectors.__file__).parent
    for p in sorted(src.glob("*.py")):  # any change to the detectors invalidates the cache
        h.update(p.read_bytes())
    for f in corpus:
        h.update(f.name.encode())
        h.update(np.ascontiguousarray(f.values).tobytes())
    return h.hexdigest()[:20]


def cached_evidence(name, kwargs, corpus, cache: Path | None, log=sys.stderr) -> dict[str, np.ndarray]:
    """:func:`run_evidence`, one batch and one cache file ``cache/<variant>-<hash>.npz`` per category (hash of
    the detectors' code, the files, the variant), so corpora that share categories share the runs."""
    out = {}
    for c in sorted({f.category for f in corpus}):
        out.update(_cached_category(name, kwargs, [f for f in corpus if f.category == c], cache, log))
    return {f.name: out[f.name] for f in corpus}


def _cached_category(name, kwargs, corpus, cache, log):
    path = None
    if cache is not None:
        path = Path(cache) / f"{name}-{_key(name, kwargs, corpus)}.npz"
        if path.exists():
            with np.load(path) as z:
                return {f.name: z[f.name] for f in corpus}
    t0 = time.perf_counter()
    ev = run_evidence(kwargs, corpus)
    print(f"[cv] ran variant {name} over {len(corpus)} files of {corpus[0].category} in "
          f"{time.perf_counter() - t0:.1f}s", file=log, flush=True)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **ev)
    return ev


def _raw(scores, files, profile, thr) -> float:
    return ns.score_corpus(scores, files, profile, thr).raw_score


def select(scored: Mapping[tuple, Mapping[str, np.ndarray]], files, profile) -> tuple:
    """The (variant, threshold) with the best summed raw score on ``files`` (ties: the higher threshold,
    then the earlier variant, as NAB breaks threshold ties upwards)."""
    best, best_key = -np.inf, None
    for key, scores in scored.items():
        raw = _raw(scores, files, profile, key[1])
        if raw > best + 1e-12 or (abs(raw - best) <= 1e-12 and best_key is not None and key[1] > best_key[1]):
            best, best_key = raw, key
    return best_key


def _block(scores, files, profiles, thr) -> dict:
    out = {}
    for p, prof in profiles.items():
        res = ns.score_corpus(scores, files, prof, thr)
        null, perfect = ns.null_raw_score(files, prof), ns.perfect_raw_score(files, prof)
        norm = ns.normalized(res.raw_score, null, perfect)
        out[p] = {"normalized_score": None if np.isnan(norm) else norm, "raw_score": res.raw_score}
    ev = ns.event_metrics(scores, files, thr).as_dict()
    return {"threshold": thr, "scores": out, "events": ev}


def cross_validate(corpus: Sequence[ns.NabFile], profiles: Mapping[str, ns.Profile], candidates=None,
                   thresholds=THRESHOLDS, cache: Path | None = None, log=sys.stderr) -> dict:
    """Nested leave-one-category-out selection; returns folds, pooled out-of-fold and in-sample blocks."""
    candidates = CANDIDATES if candidates is None else candidates
    scored = {}
    for name, kw in candidates.items():
        ev = cached_evidence(name, kw, corpus, cache, log)
        for thr in thresholds:
            scored[(name, thr)] = damp(ev, thr)
    std = profiles["standard"]
    cats = sorted({f.category for f in corpus})
    folds, oof = {}, {}
    for c in cats:
        train = [f for f in corpus if f.category != c]
        test = [f for f in corpus if f.category == c]
        name, thr = select(scored, train, std)
        folds[c] = {"chosen": {"variant": name, "threshold": thr},
                    "held_out": _block(scored[(name, thr)], test, profiles, thr)}
        for f in test:  # binary detections at the fold's own threshold
            oof[f.name] = (scored[(name, thr)][f.name] >= thr).astype(float)
    name, thr = select(scored, corpus, std)
    per_candidate = {f"{k[0]}@{k[1]}": _block(v, corpus, profiles, k[1])["scores"]["standard"]["normalized_score"]
                     for k, v in scored.items()}
    return {
        "protocol": "nested leave-one-category-out: choose variant+threshold on the other categories by summed raw "
                    "standard score at that threshold, score the held-out category; pooled = all folds' held-out "
                    "detections scored as one corpus",
        "candidates": {k: dict(v) for k, v in candidates.items()},
        "thresholds": list(thresholds),
        "folds": folds,
        "out_of_fold": {**_block(oof, corpus, profiles, 0.5), "threshold": "per fold (see folds)"},
        "chosen_on_all": {"variant": name, "threshold": thr},
        "in_sample": _block(scored[(name, thr)], corpus, profiles, thr),
        "in_sample_standard_by_candidate": per_candidate,
    }


def summary(cv: dict) -> str:
    """A short text table: out-of-fold next to in-sample (the JSON holds everything)."""
    def row(label, b):
        sc = b["scores"]
        f = [sc[p]["normalized_score"] for p in ns.PROFILE_NAMES]
        e = b["events"]
        return (f"{label:34s} " + " ".join("   n/a" if v is None else f"{v:6.2f}" for v in f)
                + f"   P {e['precision']:.2f} R {e['recall']:.2f} ({e['tp']} TP, {e['fp']} FP runs, {e['fn']} FN)")
    ch = cv["chosen_on_all"]
    lines = [f"{'':34s} standard low_FP low_FN",
             row(f"in-sample {ch['variant']}@{ch['threshold']}", cv["in_sample"]),
             row("out-of-fold (pooled folds)", cv["out_of_fold"])]
    for c, d in cv["folds"].items():
        lines.append(row(f"  held out {c[:16]} {d['chosen']['variant']}@{d['chosen']['threshold']}", d["held_out"]))
    return "\n".join(lines)


def default_scores(corpus, cache: Path | None = None, log=sys.stderr) -> dict[str, np.ndarray]:
    """Scores of ``detectors.default_ensemble()`` at ``DEFAULT_THRESHOLD`` from the (cached) batch evidence:
    identical to streaming each file through its own detector (tests/test_detectors_calibration.py),
    and shared with the cross-validation's run of the same variant."""
    from patrol import detectors
    cfg = {"calibration": detectors.ensemble.DEFAULT_CALIBRATION}
    if detectors.ensemble.DEFAULT_NOVELTY:
        cfg["novelty"] = True
    name = next((k for k, v in VARIANTS.items() if v == cfg), "default")
    return damp(cached_evidence(name, cfg, corpus, cache, log), detectors.DEFAULT_THRESHOLD)
