"""Speed and state-size benchmark of the default detector ensemble.

Run as ``python -m benchmarks.detectors --json FILE``.

Measures, on synthetic ingress-like series (daily cycle, noise, a few spikes):

* ``points_per_s_per_core``: points scored per CPU-second by the batch path
  (``BatchEnsemble(n_series).update(values, t)``, one window's points for all
  series per call) over ``--series`` series (default 10 000). CPU time
  (``time.process_time``) is used so the figure is per core and not skewed by
  other load on the machine.
* ``state_bytes_per_series``: packed state per series (bytes), and the size of
  the JSON checkpoint (``to_state()``) per series.
* peers in the same run: the one-point path (``Ensemble.update``), and river's
  ``anomaly.StandardAbsoluteDeviation`` and ``anomaly.GaussianScorer`` (one point at a
  time, as river is used), with the ratios batch / peer.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np

from patrol import detectors
DAY = 86400.0


def _data(n_series: int, n_steps: int, step: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    t = 1_700_000_000.0 + np.arange(n_steps) * step
    base = rng.uniform(50, 5000, n_series)
    amp = rng.uniform(0.0, 0.6, n_series)
    phase = rng.uniform(0, 2 * np.pi, n_series)
    for i in range(n_steps):
        season = 1 + amp * np.sin(2 * np.pi * t[i] / DAY + phase)
        x = rng.poisson(base * season).astype(np.float64)
        spikes = rng.random(n_series) < 1e-3
        x[spikes] *= 3
        yield t[i], x


def bench_batch(n_series: int, n_steps: int, warm_steps: int, step: float):
    b = detectors.BatchEnsemble(n_series=n_series, metric_kind="count")
    gen = _data(n_series, warm_steps + n_steps, step)
    for _ in range(warm_steps):  # learn a first day untimed (profiles filled)
        t, x = next(gen)
        b.update(x, t)
    batches = [next(gen) for _ in range(n_steps)]
    c0, w0 = time.process_time(), time.perf_counter()
    for t, x in batches:
        b.update(x, t)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    pts = n_series * n_steps
    states = [json.dumps(b.state_of(i)) for i in range(min(n_series, 100))]
    return {"points": pts, "cpu_s": cpu, "wall_s": wall, "points_per_s_per_core": pts / cpu,
            "state_bytes_per_series": b.state_bytes(),
            "checkpoint_json_bytes_per_series": max(len(s.encode()) for s in states)}


def _one_series(n_points: int, step: float):
    rng = np.random.default_rng(1)
    t = 1_700_000_000.0 + np.arange(n_points) * step
    x = rng.poisson(1000 * (1 + 0.3 * np.sin(2 * np.pi * t / DAY))).astype(float)
    return t, x


def bench_one_point(n_points: int, step: float):
    t, x = _one_series(n_points, step)
    det = detectors.default_ensemble(metric_kind="count")
    c0 = time.process_time()
    for ti, xi in zip(t, x):
        det.update(float(xi), float(ti))
    cpu = time.process_time() - c0
    return {"points": n_points, "cpu_s": cpu, "points_per_s_per_core": n_points / cpu}


def bench_river(name: str, n_points: int, step: float):
    from river import anomaly
    t, x = _one_series(n_points, step)
    det = getattr(anomaly, name)()
    c0 = time.process_time()
    for xi in x:  # river's univariate scorers take the value as ``y``
        det.score_one(None, float(xi))
        det.learn_one(None, float(xi))
    cpu = time.process_time() - c0
    return {"points": n_points, "cpu_s": cpu, "points_per_s_per_core": n_points / cpu}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=60, help="timed windows (batch calls)")
    ap.add_argument("--warm-steps", type=int, default=300, help="untimed windows before timing")
    ap.add_argument("--step", type=float, default=300.0, help="seconds between windows")
    ap.add_argument("--peer-points", type=int, default=3000)
    args = ap.parse_args(argv)

    batch = bench_batch(args.series, args.steps, args.warm_steps, args.step)
    one = bench_one_point(args.peer_points, args.step)
    peers = {"one_point_path": one}
    for name in ("StandardAbsoluteDeviation", "GaussianScorer"):
        try:
            peers[f"river.anomaly.{name}"] = bench_river(name, 10 * args.peer_points, args.step)
        except Exception as exc:  # pragma: no cover - river API drift
            peers[f"river.anomaly.{name}"] = {"error": repr(exc)}
    ratios = {k: batch["points_per_s_per_core"] / v["points_per_s_per_core"]
              for k, v in peers.items() if "points_per_s_per_core" in v}
    out = {
        "benchmark": "detectors.default ensemble (metric_kind=count), batch path",
        "n_series": args.series, "timed_windows": args.steps, "warm_windows": args.warm_steps,
        "points_per_s_per_core": batch["points_per_s_per_core"],
        "state_bytes_per_series": batch["state_bytes_per_series"],
        "checkpoint_json_bytes_per_series": batch["checkpoint_json_bytes_per_series"],
        "batch": batch, "peers": peers, "speedup_vs_peer": ratios,
        "target_points_per_s_per_core": 200_000,
        "meets_target": batch["points_per_s_per_core"] >= 200_000,
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
