"""Each incident type measurably moves its target metric inside its window, and only there.

Metrics are computed by the test from the generated log lines (parsed with the test's own
regex), never from generator internals; the ground-truth file is checked against the spec.
"""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone

import numpy as np
import pytest

from patrol.preagg.aggregate import Aggregator
from patrol.sim.generator import INCIDENT_TYPES, Schedule, TrafficModel, generate_chunks, resolve_start
from test_generator_helpers import parse

START = resolve_start("2026-01-05T13:00:00Z")  # Monday; the 15:00 daily peak lies inside the run
SPEC = ("error_spike@20m:15m@api-catalog-3000,latency_spike@20m:15m@media-images-8080,"
        "traffic_drop@1h:15m@shop-storefront-80,scan_404@1h20m:10m,brute_force_401@1h40m:10m,"
        "level_shift@2h:1h@api-catalog-3000,slow_drift@2h:1h30m@media-images-8080")
M = 60.0


@pytest.fixture(scope="module")
def run():
    gt = io.StringIO()
    lines = [l for c in generate_chunks(seed=9, start=START, incidents=SPEC, duration="3h40m", base_rate=5.0,
                                        ground_truth=gt, n_clients=3000) for l in c.lines]
    records = [json.loads(x) for x in gt.getvalue().splitlines()]
    return parse(lines), {r["type"]: r for r in records}, records, lines


def _win(p, a: float, b: float, svc: str | None = None) -> np.ndarray:
    m = (p.t >= START + a) & (p.t < START + b)
    return m & (p.upstream == svc) if svc else m


def test_error_spike_raises_5xx_ratio(run):
    p, _, _, _ = run
    svc = "api-catalog-3000"
    def ratio(a, b):
        m = _win(p, a, b, svc)
        return (p.status[m] >= 500).mean()
    inside, before, after = ratio(20 * M, 35 * M), ratio(0, 20 * M), ratio(35 * M, 55 * M)
    assert inside > 0.15, inside
    assert before < 0.02 and after < 0.02, (before, after)
    other = _win(p, 20 * M, 35 * M) & (p.upstream != svc)
    assert (p.status[other] >= 500).mean() < 0.02, "only the target's error ratio moves"


def test_latency_spike_raises_target_latency(run):
    p, _, _, _ = run
    svc = "media-images-8080"
    med = lambda a, b: np.nanmedian(p.utime[_win(p, a, b, svc)])
    assert med(20 * M, 35 * M) > 3 * med(0, 20 * M)
    assert med(20 * M, 35 * M) > 3 * med(35 * M, 55 * M)
    other = lambda a, b: np.nanmedian(p.utime[_win(p, a, b, "api-catalog-3000")])
    assert other(20 * M, 35 * M) < 1.5 * other(0, 20 * M)


def test_traffic_drop_reduces_target_volume(run):
    p, _, _, _ = run
    svc = "shop-storefront-80"
    inside = _win(p, 60 * M, 75 * M, svc).sum()
    around = (_win(p, 45 * M, 60 * M, svc).sum() + _win(p, 75 * M, 90 * M, svc).sum()) / 2
    assert inside < 0.35 * around, (inside, around)


def test_level_shift_raises_target_volume_persistently(run):
    p, _, _, _ = run
    svc = "api-catalog-3000"
    # Windows symmetric around the 15:00 peak, so seasonality alone would give a ratio near 1.
    before, inside = _win(p, 60 * M, 120 * M, svc).sum(), _win(p, 120 * M, 180 * M, svc).sum()
    assert inside > 1.35 * before, (inside, before)
    late = _win(p, 150 * M, 180 * M, svc).sum() * 2
    assert late > 1.35 * before, "the shift persists to the end of its window"
    others_b = (_win(p, 60 * M, 120 * M) & (p.upstream == "media-images-8080")).sum()
    others_i = (_win(p, 120 * M, 180 * M) & (p.upstream == "media-images-8080")).sum()
    assert others_i < 1.15 * others_b


def test_slow_drift_ramps_latency(run):
    p, _, _, _ = run
    svc = "media-images-8080"
    med = lambda a, b: np.nanmedian(p.utime[_win(p, a, b, svc)])
    base = med(105 * M, 120 * M)
    first, last = med(120 * M, 135 * M), med(195 * M, 210 * M)
    assert last > 2.0 * base, (base, last)
    assert first < 1.5 * base, "a drift starts small (unlike a spike)"
    assert med(165 * M, 180 * M) > first, "and grows"


def test_scan_404_from_one_client(run):
    p, gt, _, _ = run
    rec = gt["scan_404"]
    client, svc = rec["target"]["client"], rec["target"]["service"]
    inside = _win(p, 80 * M, 90 * M, svc)
    before = _win(p, 95 * M, 105 * M, svc)
    n404_in, n404_before = (p.status[inside] == 404).sum(), (p.status[before] == 404).sum()
    assert n404_in > 5 * max(n404_before, 1), (n404_in, n404_before)
    scanner = p.addr[inside & (p.status == 404)]
    values, counts = np.unique(scanner, return_counts=True)
    assert values[counts.argmax()] == client, "ground truth names the scanning client"
    assert len(set(p.target[inside & (p.addr == client)])) > 100, "a scanner probes many paths"
    assert not (p.addr[~_win(p, 80 * M, 90 * M)] == client).any(), "the scanner exists only in its window"


def test_brute_force_401_from_one_client(run):
    p, gt, _, _ = run
    rec = gt["brute_force_401"]
    client, svc = rec["target"]["client"], rec["target"]["service"]
    assert svc == "identity-auth-9000"
    n401 = lambda a, b: (p.status[_win(p, a, b, svc)] == 401).sum()
    assert n401(100 * M, 110 * M) > 10 * max(n401(85 * M, 95 * M), 1)
    mine = _win(p, 100 * M, 110 * M, svc) & (p.addr == client)
    assert mine.sum() > 200 and (p.status[mine] == 401).mean() > 0.95
    assert set(p.target[mine]) == {"/api/v1/auth/login"}


def test_ground_truth_records_match_spec(run):
    _, gt, records, _ = run
    assert len(records) == 7 and set(gt) == set(INCIDENT_TYPES)
    expect = {"error_spike": (20, 15, "api-catalog-3000"), "latency_spike": (20, 15, "media-images-8080"),
              "traffic_drop": (60, 15, "shop-storefront-80"), "scan_404": (80, 10, None),
              "brute_force_401": (100, 10, "identity-auth-9000"), "level_shift": (120, 60, "api-catalog-3000"),
              "slow_drift": (120, 90, "media-images-8080")}
    for kind, (off, dur, svc) in expect.items():
        r = gt[kind]
        assert r["start_epoch"] == START + off * M and r["end_epoch"] == START + (off + dur) * M
        assert datetime.fromisoformat(r["start"].replace("Z", "+00:00")) == datetime.fromtimestamp(r["start_epoch"], timezone.utc)
        assert r["end"].endswith("Z")
        if svc:
            assert r["target"]["service"] == svc
        assert r["target"]["host"].endswith("example.com") and r["target"]["namespace"]
        assert r["metrics"] and all(m["direction"] in ("up", "down") for m in r["metrics"])
        assert r["id"].startswith("inc-")
    assert gt["traffic_drop"]["metrics"][0] == {"metric": "requests", "direction": "down", "dims": {
        "scope": "service", "namespace": "shop", "service": "storefront", "port": "80"}}
    assert gt["scan_404"]["target"]["client"] and gt["brute_force_401"]["target"]["client"]
    assert gt["error_spike"]["target"]["client"] is None
    assert len({r["id"] for r in records}) == 7


def test_default_mix_covers_every_type_and_is_seeded():
    model = TrafficModel(seed=4, n_clients=200)
    a = Schedule(model, START, "default", seed=4).all_until(START + 86400)
    b = Schedule(model, START, "default", seed=4).all_until(START + 86400)
    assert {i.type for i in a} == set(INCIDENT_TYPES)
    assert [(i.id, i.start, i.service) for i in a] == [(i.id, i.start, i.service) for i in b]
    assert all(START <= i.start < START + 86400 for i in a)
    second_day = Schedule(model, START, "default", seed=4).all_until(START + 2 * 86400)
    assert len(second_day) == 2 * len(a), "the mix repeats every simulated day"


def test_ground_truth_lists_only_incidents_reached():
    gt = io.StringIO()
    list(generate_chunks(seed=1, start=START, duration="30m", incidents="default", base_rate=2, ground_truth=gt,
                         n_clients=200))
    recs = [json.loads(x) for x in gt.getvalue().splitlines()]
    assert [r["type"] for r in recs] == ["error_spike"]  # default mix: first incident at 20 minutes
    none = io.StringIO()
    list(generate_chunks(seed=1, start=START, duration="30m", incidents="none", base_rate=2, ground_truth=none,
                         n_clients=200))
    assert none.getvalue() == ""


@pytest.mark.parametrize("spec, msg", [
    ("meteor@1h:5m", "unknown incident type"),
    ("error_spike@1h", "bad incident spec"),
    ("error_spike@1x:5m", "bad incident spec"),
    ("error_spike@1h:5m@no-such-svc-1", "unknown service"),
    ("brute_force_401@1h:5m@media-images-8080", "login endpoint"),
    ("traffic_drop@1h:5m*1.5", "makes no traffic_drop"),
    ("latency_spike@1h:5m*0.5", "makes no latency_spike"),
    ("error_spike@1h:5m*2", "makes no error_spike"),
])
def test_bad_specs_are_clear_errors(spec, msg):
    with pytest.raises(ValueError, match=msg):
        Schedule(TrafficModel(seed=0, n_clients=100), START, spec)


def test_level_shift_down_is_recorded_as_down():
    model = TrafficModel(seed=0, n_clients=100)
    (inc,) = Schedule(model, START, "level_shift@1h:2h@api-catalog-3000*0.5").all_until(START + 86400)
    assert inc.ground_truth(model)["metrics"][0]["direction"] == "down"


def test_ground_truth_names_series_the_pipeline_emits(run):
    """Every (metric, dims) a ground-truth record lists is a series pre-aggregation really publishes,
    and it moves the way the record says during the incident."""
    _, gt, records, lines = run
    agg = Aggregator(window_s=60)
    agg.feed(lines)
    agg.close_all()
    values: dict[tuple, dict[float, float]] = {}
    for cw in agg.drain():
        for pt in cw.points():
            values.setdefault((pt.metric, tuple(sorted(pt.dims.items()))), {})[pt.window_start.timestamp()] = pt.value
    for rec in records:
        for m in rec["metrics"]:
            series = values.get((m["metric"], tuple(sorted(m["dims"].items()))))
            assert series, f"{rec['type']}: the pipeline emits no series {m}"
            during = [v for t, v in series.items() if rec["start_epoch"] <= t < rec["end_epoch"]]
            before = [v for t, v in series.items() if rec["start_epoch"] - 3600 <= t < rec["start_epoch"]]
            if rec["type"] in ("slow_drift", "level_shift"):
                continue  # a ramp or a long shift: its mean against the hour before says little at the start
            assert during and before, (rec["type"], m)
            moved = np.mean(during) - np.mean(before)
            assert (moved > 0) if m["direction"] == "up" else (moved < 0), (rec["type"], m, moved)
