"""Agreement of the context-novelty detector with the published CAD OSE / ARTime outputs on NAB.

Usage::

    python -m benchmarks.novelty --data ../shared/nab --json out.json [--files ...]
        [--reference contextOSE ARTime] [--rest nab|fixed]

Streams every file through a fresh :class:`detectors.ContextNoveltyDetector`
(score first, then learn; the batch path with a batch of one), scores the
outputs with NAB v1.1 rules (``benchmarks.nab_scorer``, via
``benchmarks.nab.evaluate``: thresholds optimised on the corpus, as NAB does),
and reads the published per-row outputs of the reference detectors from
``<data>/results/<name>/`` and scores them the same way.

Agreement, per file, at each detector's own standard-optimised threshold:
which label windows each detects (``windows``: one ``[ours, reference]`` pair
of 0/1 per scored window), ``same_windows`` (count of windows where both
agree), and the false-positive alert runs of each (``fp_runs``). Summed over
the corpus under ``agreement``.

``--rest nab`` (default) sets the rest period to a fifth of NAB's
probationary period, ``min(150, 3 % of the file)``, as CAD OSE is run in NAB;
``--rest fixed`` keeps the detector's streaming default (150).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from benchmarks import nab_scorer as ns
from benchmarks.nab import evaluate
from patrol.detectors.context_novelty import ContextNoveltyDetector

REFERENCES = ("contextOSE", "ARTime")


def rest_period_for(f: ns.NabFile, mode: str) -> int:
    """CAD OSE's rest period in NAB: a fifth of the probationary period (``fixed``: the default)."""
    if mode == "fixed":
        return ContextNoveltyDetector().rest_period
    return max(1, int(round(f.probation / 5.0)))


def run_file(f: ns.NabFile, mode: str = "nab", **kw) -> np.ndarray:
    """Anomaly score per row of one file (fresh detector, one point at a time)."""
    det = ContextNoveltyDetector(rest_period=rest_period_for(f, mode), **kw)
    t = np.array(f.timestamps, dtype="datetime64[s]").astype(np.int64).astype(float)
    out = np.empty(f.n_rows)
    for i in range(f.n_rows):
        out[i] = det.update_many(f.values[i:i + 1], t[i])[0][0]
    return out


def _window_hits(detected: np.ndarray, f: ns.NabFile) -> list[int]:
    det = detected.copy()
    det[: f.probation] = False
    return [int(det[a:b + 1].any()) for a, b in f.windows if b >= f.probation]


def agreement(ours, ref, corpus, thr_ours, thr_ref) -> dict:
    """Per-file and total window agreement and false-positive runs at the given thresholds."""
    files, tot = {}, {"windows": 0, "same_windows": 0, "both": 0, "ours_only": 0, "ref_only": 0, "neither": 0,
                      "fp_runs_ours": 0, "fp_runs_ref": 0}
    for f in corpus:
        d_o, d_r = ours[f.name] >= thr_ours, ref[f.name] >= thr_ref
        w_o, w_r = _window_hits(d_o, f), _window_hits(d_r, f)
        e_o, e_r = ns.file_events(d_o, f), ns.file_events(d_r, f)
        pairs = list(zip(w_o, w_r))
        files[f.name] = {"windows": [list(p) for p in pairs], "same_windows": sum(a == b for a, b in pairs),
                         "fp_runs": [e_o.fp, e_r.fp]}
        tot["windows"] += len(pairs)
        tot["same_windows"] += sum(a == b for a, b in pairs)
        tot["both"] += sum(a and b for a, b in pairs)
        tot["ours_only"] += sum(a and not b for a, b in pairs)
        tot["ref_only"] += sum(b and not a for a, b in pairs)
        tot["neither"] += sum(not a and not b for a, b in pairs)
        tot["fp_runs_ours"] += e_o.fp
        tot["fp_runs_ref"] += e_r.fp
    return {"thresholds": [thr_ours, thr_ref], "total": tot, "files": files}


def _scores(report: dict) -> dict:
    out = {p: round(b["normalized_score"], 2) for p, b in report["scores"].items()}
    cats = {c: {p: (None if b["normalized_score"] is None else round(b["normalized_score"], 2))
                for p, b in sec["scores"].items()} for c, sec in report["categories"].items()}
    return {"corpus": out, "thresholds": {p: b["threshold"] for p, b in report["scores"].items()},
            "categories": cats, "event_f1_standard": report["event_f1"]["standard_optimized"]}


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.novelty", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ns.DEFAULT_NAB_DIR)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--files", nargs="+")
    ap.add_argument("--reference", nargs="+", default=list(REFERENCES), choices=REFERENCES)
    ap.add_argument("--rest", choices=("nab", "fixed"), default="nab")
    args = ap.parse_args(argv)

    corpus = ns.load_corpus(args.data, args.files)
    allp = ns.load_profiles(args.data)
    profiles = {p: allp[p] for p in ns.PROFILE_NAMES}
    start = time.process_time()
    ours = {f.name: run_file(f, args.rest) for f in corpus}
    cpu = time.process_time() - start
    det = ContextNoveltyDetector()
    rep_o = evaluate(ours, corpus, profiles, det.base_threshold)
    out = {"detector": "ContextNoveltyDetector", "config": det.config(), "rest": args.rest,
           "data": str(args.data), "files": len(corpus), "rows": rep_o["rows"], "cpu_seconds": cpu,
           "ours": _scores(rep_o), "references": {}}
    for name in args.reference:
        ref = ns.read_results(args.data / "results", name, corpus)
        rep_r = evaluate(ref, corpus, profiles, 0.5)
        out["references"][name] = {
            "scores": _scores(rep_r),
            "difference_standard": round(out["ours"]["corpus"]["standard"] - _scores(rep_r)["corpus"]["standard"], 2),
            "agreement": agreement(ours, ref, corpus, rep_o["scores"]["standard"]["threshold"],
                                   rep_r["scores"]["standard"]["threshold"]),
        }
    text = json.dumps(out, indent=1)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    print(text)
    return out


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
