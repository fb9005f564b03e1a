"""Synthetic metric points (what the pre-aggregation stage emits) for detection tests and benchmarks.

Series are requests counts and error ratios of ``n_services`` services with a daily cycle and
noise; ``spikes`` injects anomalies at chosen (service, window) pairs so tests know the truth.
Deterministic for a seed.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np

from patrol.records import MetricPoint

T0 = datetime(2026, 11, 2, 0, 0, tzinfo=timezone.utc)  # a Monday


def service_dims(i: int) -> dict[str, str]:
    return {"namespace": f"ns{i % 3}", "service": f"svc{i}"}


def metric_windows(n_services: int, n_windows: int, window_s: int = 60, seed: int = 0,
                   spikes: dict[tuple[int, int], float] | None = None, metrics: tuple[str, ...] = ("requests", "error_ratio"),
                   start: datetime = T0) -> list[list[MetricPoint]]:
    """Points grouped by window: ``result[w]`` holds every series' point for window ``w``.

    ``spikes[(service, window)] = factor`` multiplies that window's requests by ``factor`` and adds
    ``factor * 1%`` to its error ratio.
    """
    rng = np.random.default_rng(seed)
    spikes = spikes or {}
    base = rng.uniform(50, 500, n_services)
    err_base = rng.uniform(0.001, 0.02, n_services)
    out = []
    for w in range(n_windows):
        ws = start + timedelta(seconds=w * window_s)
        we = ws + timedelta(seconds=window_s)
        hour = (w * window_s / 3600.0) % 24
        season = 1.0 + 0.5 * np.sin(2 * np.pi * (hour - 9) / 24)
        lam = base * season * window_s / 60.0
        req = rng.poisson(lam).astype(float)
        errs = rng.binomial(np.maximum(req, 1).astype(int), err_base).astype(float)
        points = []
        for i in range(n_services):
            r, e = req[i], errs[i]
            f = spikes.get((i, w))
            if f is not None:
                r = r * f
                e = min(r, e + f * 0.01 * r)
            dims = service_dims(i)
            if "requests" in metrics:
                points.append(MetricPoint.make("requests", dims, ws, we, float(r), count=int(r)))
            if "error_ratio" in metrics:
                points.append(MetricPoint.make("error_ratio", dims, ws, we, float(e / r) if r else 0.0, count=int(r),
                                               stats={"numerator": float(e), "denominator": float(r)}))
        out.append(points)
    return out
