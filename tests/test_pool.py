"""The detect worker's series pool: batch scoring equals the one-point path, replays, state."""

import math

import numpy as np
import pytest

from benchmarks.metric_stream import metric_windows
from patrol.detectors import default_ensemble
from patrol.models.history import HourlyHistory
from patrol.models.metric_kinds import kind_of
from patrol.models.pool import SeriesPool
from patrol.models.store import StateStore


def flat(windows):
    return [p for w in windows for p in w]


def test_pool_scores_equal_one_point_path_with_gaps():
    windows = metric_windows(6, 120, seed=3, spikes={(2, 100): 6.0})
    rng = np.random.default_rng(0)
    points = [p for p in flat(windows) if rng.random() > 0.2]  # irregular presence per series
    pool = SeriesPool(StateStore(None))
    outcomes = []
    for i in range(0, len(points), 97):  # batches cutting across windows
        outcomes += pool.process(points[i:i + 97])[0]
    by_series = {}
    for o in outcomes:
        by_series.setdefault(o.point.series, []).append(o)
    assert len(outcomes) == len(points)
    for key, outs in by_series.items():
        k = kind_of(outs[0].point.metric)
        det = default_ensemble(metric_kind=k.kind, direction=k.direction)
        for o in sorted(outs, key=lambda o: o.point.window_start):
            n = o.point.count if k.kind == "ratio" else None
            r = det.update(o.point.value, o.point.window_start.timestamp(), n)
            assert o.score == pytest.approx(r.score, abs=1e-12), key
            assert o.result.expected == pytest.approx(r.expected, rel=1e-9, abs=1e-12, nan_ok=True)
    spiked = [o for o in outcomes if o.point.dims["service"] == "svc2" and o.point.metric == "requests"
              and o.point.window_start == windows[100][0].window_start]
    assert spiked and spiked[0].score >= 0.5 and spiked[0].result.direction == "up"


def test_replays_are_skipped_and_old_unseen_windows_rejected():
    windows = metric_windows(2, 40, seed=1)
    pool = SeriesPool(StateStore(None))
    out, dups, rej = pool.process(flat(windows[:30]))
    assert len(out) == 2 * 2 * 30 and not dups and not rej
    out, dups, rej = pool.process(flat(windows[25:35]))  # replay of 25..29 after a crash, then new
    assert len(dups) == 4 * 5 and len(out) == 4 * 5 and not rej
    old = windows[3][0].model_copy(update={"window_start": windows[3][0].window_start.replace(second=30)})
    out, dups, rej = pool.process([old])
    assert not out and not dups and rej[0].code == "out_of_order" and "older than the last learned" in rej[0].reason
    nan = windows[36][0].model_copy(update={"value": math.nan})
    assert pool.process([nan])[2][0].code == "bad_value"


def test_state_survives_a_store_round_trip(redis_server):
    windows = metric_windows(3, 80, seed=5)
    store = StateStore(redis_server.url, prefix="t-pool:")
    a = SeriesPool(store)
    a.process(flat(windows[:50]))
    assert store.checkpoint(a.take_dirty())
    b = SeriesPool(StateStore(redis_server.url, prefix="t-pool:"))  # a restarted worker
    rest_a = a.process(flat(windows[50:]))[0]
    rest_b = b.process(flat(windows[50:]))[0]
    key = lambda o: (o.point.series, o.point.window_start)
    assert [(key(o), o.score) for o in sorted(rest_a, key=key)] == [(key(o), o.score) for o in sorted(rest_b, key=key)]
    fresh = SeriesPool(StateStore(None)).process(flat(windows[50:]))[0]
    assert [o.score for o in sorted(fresh, key=key)] != [o.score for o in sorted(rest_b, key=key)]  # state mattered


def test_rows_are_recycled_and_groups_grow():
    pool = SeriesPool(StateStore(None))
    windows = metric_windows(100, 3, seed=2, metrics=("requests",))
    pool.process(flat(windows))
    g = next(iter(pool.groups.values()))
    assert g.ens.n_series >= 100 and len({s.row for s in pool.series.values()}) == 100
    pool.drop({p.series for p in windows[0][:10]})
    assert len(pool.series) == 90 and len(g.free) >= 10


def test_hourly_history_context_survives_state():
    h = HourlyHistory()
    for m in range(0, 9 * 24 * 60, 10):
        h.add(m * 60.0, float(m // 60))  # value = hour index
    t = (9 * 24 * 60 - 5) * 60.0
    h2 = HourlyHistory.from_state(h.to_state())
    assert h2.context(t) == h.context(t)
    assert h.context(t)["yesterday"] == pytest.approx(int(t // 3600) - 24)
    assert h.context(t)["last_week"] == pytest.approx(int(t // 3600) - 168)
    assert h.mean_at(0.0) is None  # older than the ring


@pytest.mark.parametrize("kind", ["count", "ratio", "latency"])
def test_growing_a_group_keeps_every_row_exactly(kind):
    from patrol.models.metric_kinds import MetricKind
    from patrol.models.pool import Group

    g = Group(MetricKind(kind, "up"), capacity=8)
    rng = np.random.default_rng(4)
    for i in range(30):
        vals = rng.poisson(50, 8).astype(float)
        g.ens.update(vals if kind != "ratio" else vals / 100, 60.0 * i, np.full(8, 100.0) if kind == "ratio" else None)
    before = [g.ens.state_of(i) for i in range(8)]
    rows = [g.alloc() for _ in range(9)]  # 8 used + 1 more forces a grow
    assert g.ens.n_series == 16 and len(set(rows)) == 9
    assert [g.ens.state_of(i) for i in range(8)] == before


def test_small_batches_use_a_gathered_ensemble_with_the_same_results():
    windows = metric_windows(40, 60, seed=9, metrics=("requests",))
    big, small = SeriesPool(StateStore(None)), SeriesPool(StateStore(None))
    a = big.process(flat(windows))[0]                      # whole windows: the full-width path
    b = []
    for w in windows:                                      # a few series at a time: the gathered path
        for i in range(0, len(w), 3):
            b += small.process(w[i:i + 3])[0]
    key = lambda o: (o.point.series, o.point.window_start)
    assert [key(o) for o in sorted(a, key=key)] == [key(o) for o in sorted(b, key=key)]
    for x, y in zip(sorted(a, key=key), sorted(b, key=key)):
        assert x.score == pytest.approx(y.score, abs=1e-12)
