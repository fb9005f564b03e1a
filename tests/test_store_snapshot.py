"""Checkpoint snapshots: the bulk copy taken on the consume loop and written later (possibly from
another thread) must store exactly what the per-series path stores, as of the snapshot."""

import threading

import numpy as np

from benchmarks.metric_stream import metric_windows
from patrol.models.feedback import anomaly_features
from patrol.models.pool import SeriesPool
from patrol.models.store import SeriesState, StateStore
from patrol.records import MetricPoint

FIELDS = ("format", "state", "last_window", "model_version", "extra")  # "updated" is the write time


def flat(ws):
    return [p for w in ws for p in w]


def _all_kinds(n_services, n_windows, seed):
    """requests (count), error_ratio (ratio) from the shared generator, plus latency and gauge series."""
    rng = np.random.default_rng(seed)
    out = []
    for w in metric_windows(n_services, n_windows, seed=seed, spikes={(1, n_windows - 5): 9.0}):
        extra = [MetricPoint.make(m, {"namespace": p.dims["namespace"], "service": p.dims["service"]}, p.window_start,
                                  p.window_end, float(rng.gamma(4.0, scale)))
                 for p in w if p.metric == "requests" for m, scale in (("request_time_p99", 0.05), ("cpu_usage", 10.0))]
        out.append(w + extra)
    return out


def _pool_with_label(windows):
    pool = SeriesPool(StateStore(None))
    outcomes = pool.process(flat(windows))[0]
    o = max(outcomes, key=lambda o: o.score)  # give one series feedback state (calibration, prior)
    s = pool.series[o.point.series]
    feats = anomaly_features(o.result, o.point.value, o.point.window_start.timestamp(), s.group.kind.kind, 0.5)
    pool.learn_label(o.point.series, o.point.metric, feats, "false", "label-1")
    return pool


def test_snapshot_records_equal_per_series_fields_for_every_kind():
    windows = _all_kinds(5, 70, seed=7)
    a, b = _pool_with_label(windows[:50]), _pool_with_label(windows[:50])
    assert {s.group.kind.kind for s in a.series.values()} == {"count", "ratio", "latency", "gauge"}, "the test should cover several detector kinds"
    assert any(s.calibration or s._feedback for s in a.series.values())
    a.process(flat(windows[:60]))
    b.process(flat(windows[:60]))
    snap = a.snapshot_dirty()
    expected = {st.series: st.to_fields() for st in b.take_dirty()}
    assert not a.dirty and not a.dirty_priors
    # learning after the snapshot must not leak into it (the writer serialises it later)
    a.process(flat(windows[60:]))
    got = dict(snap.records())
    assert set(got) == set(expected) and len(snap) == len(expected)
    for key, fields in expected.items():
        assert {f: got[key][f] for f in FIELDS} == {f: fields[f] for f in FIELDS}, key


def test_snapshot_records_load_back_into_a_pool(redis_server):
    windows = metric_windows(3, 80, seed=5)
    store = StateStore(redis_server.url, prefix="t-snap:")
    a = SeriesPool(store)
    a.process(flat(windows[:50]))
    snap = a.snapshot_dirty()
    done = []
    t = threading.Thread(target=lambda: done.append(store.checkpoint_fields(snap.records())))
    t.start()
    t.join()
    assert done == [True]
    b = SeriesPool(StateStore(redis_server.url, prefix="t-snap:"))
    key = lambda o: (o.point.series, o.point.window_start)
    rest_a = sorted(a.process(flat(windows[50:]))[0], key=key)
    rest_b = sorted(b.process(flat(windows[50:]))[0], key=key)
    assert [(key(o), o.score) for o in rest_a] == [(key(o), o.score) for o in rest_b]



def test_first_window_survives_checkpoints_and_old_states_stay_unknown():
    """The pool keeps when each model started (feedback ignores labels from the warm-up day),
    through both checkpoint paths; a state saved before this was kept loads as 'unknown'."""
    windows = _all_kinds(2, 30, seed=3)
    store = StateStore(None)
    pool = SeriesPool(store)
    pool.process(flat(windows[:20]))
    t0 = windows[0][0].window_start.timestamp()
    s = next(iter(pool.series.values()))
    assert s.first_window == t0 and s.age_s(t0 + 3600.0) == 3600.0
    store.checkpoint(pool.take_dirty())
    again = SeriesPool(store)
    again.process(flat(windows[20:25]))
    assert {k: v.first_window for k, v in again.series.items()} == {k: t0 for k in pool.series}
    snap = again.snapshot_dirty()
    legacy = {}
    for key, fields in snap.records():
        st = SeriesState.from_fields(key, fields)
        assert st.extra["first_window"] == t0
        st.extra.pop("first_window")  # as written before the pool kept it
        legacy[key] = st
    old = StateStore(None)
    old.checkpoint(list(legacy.values()))
    later = SeriesPool(old)
    later.process(flat(windows[25:]))
    assert all(v.age_s(t0 + 86400.0) is None for v in later.series.values())
