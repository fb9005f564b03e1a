"""Rows released in bulk (revoke of many series) are indistinguishable from new series' rows."""

from benchmarks.metric_stream import metric_windows
from patrol.models.pool import SeriesPool
from patrol.models.store import StateStore


def test_dropped_rows_are_reset_to_a_new_series_state():
    pool = SeriesPool(StateStore(None))
    windows = metric_windows(40, 30, seed=3)
    for w in windows:
        pool.process(w)
    gone = {p.series for p in windows[0][:50]}
    rows = {k: (pool.series[k].group, pool.series[k].row) for k in gone}
    kept = {k: s.group.ens.state_of(s.row) for k, s in pool.series.items() if k not in gone}
    pool.drop(gone)
    for g, row in rows.values():
        assert g.ens.state_of(row) == g.fresh and row in g.free
    assert {k: s.group.ens.state_of(s.row) for k, s in pool.series.items()} == kept  # the others untouched
    # a series created on a recycled row scores like one on a brand-new pool
    again = pool.process(metric_windows(40, 31, seed=3)[30])[0]
    fresh = SeriesPool(StateStore(None)).process(metric_windows(40, 31, seed=3)[30])[0]
    score = lambda outs: sorted((o.point.series, o.score) for o in outs if o.point.series in gone)
    assert score(again) == score(fresh)
