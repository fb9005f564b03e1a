"""Seeded synthetic NAB-style corpus for detector development (no real data needed).

Usage::

    from benchmarks import synth
    corpus = synth.corpus(seed=0)          # list of nab_scorer.NabFile, with windows
    profiles = synth.PROFILES              # NAB v1.1 cost matrices

    python -m benchmarks.nab --synthetic 0 --json out.json [--cv]

The corpus mimics what the shared 25 NAB files lack and hidden data is full of:
cloud-server and ad-exchange style gauges and social-media style mention counts at
5-minute steps. One category (a data "subfolder", as in NAB) per generator:

``synBursty``
    Overdispersed counts (negative binomial around a diurnal mean) plus heavy-tailed
    bursts (compound Poisson: bursts arrive at random, Pareto-sized, decaying over a few
    points). Bursts are *normal*; two files in three carry no anomaly at all, the others a
    real incident (a surge that lasts hours, or an outage to near zero).
``synVariance``
    A gauge whose noise level switches between regimes (x1 / x3 / x0.5); the anomaly
    is a level shift of a few *quiet-regime* scales, or none.
``synShift``
    Level shifts up or down (CPU-style gauge with a daily cycle).
``synOutage``
    Request-rate counts (Poisson, diurnal) that drop to near zero for a while.
``synRamp``
    Slow ramps (a leak): the value drifts away over hundreds of points, each point
    within the usual noise.

Windows follow NAB's labelling convention: each anomaly gets a window of
``10 % of the file length / number of anomalies`` rows, centred on its onset.
Everything is drawn from ``numpy.random.default_rng(seed)``: same seed, same corpus.
"""
from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from benchmarks import nab_scorer as ns

__all__ = ["PROFILES", "CATEGORIES", "corpus", "make_file"]

#: NAB v1.1 ``config/profiles.json`` cost matrices (tp, fp, fn weights).
PROFILES = {
    "standard": ns.Profile("standard", 1.0, 0.11, 1.0),
    "reward_low_FP_rate": ns.Profile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    "reward_low_FN_rate": ns.Profile("reward_low_FN_rate", 1.0, 0.11, 2.0),
}

STEP = 300.0            # 5-minute points, as the cloud / social-media NAB files
N_ROWS = 4032           # two weeks
START = datetime(2015, 3, 2)  # a Monday
CATEGORIES = ("synBursty", "synVariance", "synShift", "synOutage", "synRamp")


def _diurnal(n, rng, amp, weekend=0.0):
    """Daily cycle of relative amplitude ``amp``; weekends ``weekend`` lower (ramping in over 3 h)."""
    t = np.arange(n) * STEP
    phase = rng.uniform(0, 2 * np.pi)
    day = t / 86400.0
    ramp = np.clip((day % 7 - 5.0) * 8.0, 0.0, 1.0) * np.clip((7.0 - day % 7) * 8.0, 0.0, 1.0)
    return (1.0 + amp * np.sin(2 * np.pi * day + phase)) * (1.0 - weekend * ramp)


def _bursts(n, rng, rate, scale, alpha=1.5, decay=0.6):
    """Compound Poisson bursts: arrivals ~ Bernoulli(rate), Pareto(alpha) sizes, geometric decay."""
    out = np.zeros(n)
    for i in np.flatnonzero(rng.random(n) < rate):
        size = scale * (rng.pareto(alpha) + 1.0)
        k = np.arange(min(12, n - i))
        out[i:i + k.size] += size * decay ** k
    return out


def _nbinom(rng, mean, dispersion):
    """Negative binomial with mean ``mean`` and variance ``mean + mean^2 / dispersion``."""
    mean = np.maximum(mean, 1e-9)
    return rng.negative_binomial(dispersion, dispersion / (dispersion + mean)).astype(float)


def _window(n, onset, n_anomalies):
    half = int(0.1 * n / n_anomalies) // 2
    return max(onset - half, 0), min(onset + half, n - 1)


def _onsets(rng, n, k):
    """``k`` anomaly onsets after NAB's probation, spaced apart."""
    lo = ns.probationary_length(n) + 200
    slots = np.linspace(lo, n - 300, k + 1).astype(int)
    return [int(rng.integers(a, max(a + 1, b - 150))) for a, b in zip(slots[:-1], slots[1:])]


def _bursty(rng, n, anomaly):
    base = rng.uniform(3, 60)
    mean = base * _diurnal(n, rng, rng.uniform(0.2, 0.7), weekend=0.2)
    mean = mean + _bursts(n, rng, rate=rng.uniform(0.005, 0.03), scale=base * rng.uniform(1, 4))
    x = _nbinom(rng, mean, dispersion=rng.uniform(2, 10))
    onsets = []
    if anomaly:
        (o,) = _onsets(rng, n, 1)
        if rng.random() < 0.5:   # surge: hours at several times the usual level
            length = int(rng.integers(24, 72))
            x[o:o + length] = _nbinom(rng, mean[o:o + length] * rng.uniform(5, 10), 5)
        else:                    # outage: the feed drops to (near) zero
            length = int(rng.integers(12, 48))
            x[o:o + length] = rng.poisson(0.02 * base, length)
        onsets.append(o)
    return x, onsets


def _variance(rng, n, anomaly):
    level = rng.uniform(20, 80)
    sd = rng.uniform(0.5, 3)
    regime = np.ones(n)
    for s in np.sort(rng.integers(0, n, 4)):
        regime[s:] = rng.choice([0.5, 1.0, 3.0])
    x = level + 0.2 * level * (_diurnal(n, rng, 0.3) - 1) + sd * regime * rng.standard_t(5, n)
    onsets = []
    if anomaly:
        (o,) = _onsets(rng, n, 1)
        x[o:] += rng.choice([-1, 1]) * rng.uniform(6, 10) * sd
        onsets.append(o)
    return x, onsets


def _shift(rng, n, anomaly):
    level = rng.uniform(10, 60)
    sd = rng.uniform(0.5, 2.5)
    x = level * _diurnal(n, rng, rng.uniform(0, 0.3)) + sd * rng.normal(size=n)
    onsets = _onsets(rng, n, 2) if anomaly else []
    for o in onsets:
        x[o:] += rng.choice([-1, 1]) * rng.uniform(4, 8) * sd
    return np.maximum(x, 0.0), onsets


def _outage(rng, n, anomaly):
    base = rng.uniform(20, 400)
    x = rng.poisson(base * _diurnal(n, rng, rng.uniform(0.3, 0.8), weekend=0.2)).astype(float)
    onsets = _onsets(rng, n, 2) if anomaly else []
    for o in onsets:
        length = int(rng.integers(6, 36))
        x[o:o + length] = rng.poisson(0.03 * base, length)
    return x, onsets


def _ramp(rng, n, anomaly):
    level = rng.uniform(30, 70)
    sd = rng.uniform(0.5, 2.0)
    x = level * _diurnal(n, rng, rng.uniform(0, 0.2)) + sd * rng.normal(size=n)
    onsets = []
    if anomaly:
        (o,) = _onsets(rng, n, 1)
        length = int(rng.integers(150, 400))
        k = np.arange(n - o)
        x[o:] += rng.choice([-1, 1]) * np.minimum(k / length, 1.0) * rng.uniform(5, 10) * sd
        onsets.append(o)
    return x, onsets


_GENERATORS = {"synBursty": _bursty, "synVariance": _variance, "synShift": _shift, "synOutage": _outage,
               "synRamp": _ramp}


def make_file(category: str, index: int, seed: int, anomaly: bool, n: int = N_ROWS) -> ns.NabFile:
    """One generated file (deterministic in ``category``, ``index``, ``seed``)."""
    rng = np.random.default_rng([seed, CATEGORIES.index(category), index])
    x, onsets = _GENERATORS[category](rng, n, anomaly)
    windows = tuple(_window(n, o, len(onsets)) for o in onsets)
    ts = tuple((START + timedelta(seconds=STEP * i)).strftime("%Y-%m-%d %H:%M:%S") for i in range(n))
    kind = "anomaly" if onsets else "normal"
    return ns.NabFile(name=f"{category}/{category[3:].lower()}_{kind}_{index:02d}.csv", timestamps=ts,
                      values=np.round(x, 3), windows=windows)


def corpus(seed: int = 0, per_category: int = 6, n: int = N_ROWS, categories=CATEGORIES) -> list[ns.NabFile]:
    """``per_category`` files per category, alternately with and without an anomaly
    (bursty counts: two in three files have no anomaly, bursts alone must not alert)."""
    files = []
    for c in categories:
        for i in range(per_category):
            anomaly = (i % 3 == 2) if c == "synBursty" else (i % 2 == 0)
            files.append(make_file(c, i, seed, anomaly, n))
    return sorted(files, key=lambda f: f.name)
