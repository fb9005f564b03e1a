"""Speed and state size of the context-novelty detector's batch path, against the default ensemble's.

Run as ``python -m benchmarks.novelty_speed --json FILE``.

Both run in the same process on the same synthetic ingress-like count series
as ``benchmarks.detectors`` (daily cycle, Poisson noise, rare spikes):
``--warm-steps`` untimed windows, then ``--steps`` timed windows, each window
one ``update_many`` / ``update`` call over ``--series`` series. CPU time
(``time.process_time``) gives points per second per core; ``ratio`` is
novelty / ensemble (> 1: the novelty detector is faster). The two are timed in
alternating rounds so machine load hits both alike.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np

from patrol import detectors
from benchmarks.detectors import _data
from patrol.detectors.context_novelty import ContextNoveltyDetector


def _timed(update, batches):
    c0 = time.process_time()
    for t, x in batches:
        update(x, t)
    return time.process_time() - c0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=60, help="timed windows")
    ap.add_argument("--warm-steps", type=int, default=300, help="untimed windows first")
    ap.add_argument("--rounds", type=int, default=3, help="alternating timing rounds (steps split among them)")
    ap.add_argument("--step", type=float, default=300.0, help="seconds between windows")
    args = ap.parse_args(argv)

    nov = ContextNoveltyDetector(n_series=args.series)
    ens = detectors.BatchEnsemble(n_series=args.series, metric_kind="count")
    gen = _data(args.series, args.warm_steps + args.steps, args.step)
    for _ in range(args.warm_steps):
        t, x = next(gen)
        nov.update_many(x, t)
        ens.update(x, t)
    batches = [next(gen) for _ in range(args.steps)]
    per = max(1, len(batches) // args.rounds)
    cpu = {"novelty": 0.0, "ensemble": 0.0}
    rounds = []
    for r in range(0, len(batches), per):
        chunk = batches[r:r + per]
        a = _timed(nov.update_many, chunk)
        b = _timed(ens.update, chunk)
        cpu["novelty"] += a
        cpu["ensemble"] += b
        pts = args.series * len(chunk)
        rounds.append({"novelty": pts / a, "ensemble": pts / b, "ratio": b / a})
    pts = args.series * len(batches)
    state = [json.dumps(nov.to_state(i)) for i in range(min(3, args.series))]
    out = {
        "benchmark": "ContextNoveltyDetector batch path vs default ensemble batch path (metric_kind=count)",
        "n_series": args.series, "timed_windows": len(batches), "warm_windows": args.warm_steps,
        "points_per_s_per_core": {k: pts / v for k, v in cpu.items()},
        "ratio_novelty_over_ensemble": cpu["ensemble"] / cpu["novelty"],
        "rounds": rounds,
        "state_bytes_per_series": {"novelty": nov.state_size(), "ensemble": ens.state_bytes()},
        "checkpoint_json_bytes_per_series": {"novelty": max(len(s.encode()) for s in state)},
        "dictionary_entries_used": float(np.mean((nov.s["keys"] != 0).sum(axis=1))),
        "dictionary_entries": nov.n_sets * nov.n_ways,
        "env": {"python": sys.version.split()[0], "numpy": np.__version__, "machine": platform.machine()},
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(text + "\n")
    return out


if __name__ == "__main__":
    main()
