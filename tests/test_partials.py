from datetime import datetime, timedelta, timezone

from models.partials import PartialMerger, is_partial
from preagg.series import build_points, rollup
from records import MetricPoint

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def point(metric, value, w, part, n=None):
    ws = T0 + timedelta(minutes=w)
    p = MetricPoint.make(metric, {"scope": "global"}, ws, ws + timedelta(minutes=1), value, count=n,
                         stats={"partition": float(part)})
    return p


def test_partials_are_held_until_event_time_passes_then_merged():
    m = PartialMerger(hold_windows=2)
    m.add(point("requests", 10, 0, 0), 0, 100)
    m.add(point("requests", 5, 0, 1), 1, 7)
    assert m.release() == []                    # window 0 may still get more partitions
    m.add(point("requests", 4, 1, 0), 0, 101)
    assert m.release() == [] and m.min_offsets() == {0: 100, 1: 7}
    m.add(point("requests", 1, 2, 1), 1, 8)     # event time reached window 2: window 0 is complete
    merged = m.release()
    assert [(p.metric, p.value, p.window_start) for p in merged] == [("requests", 15.0, T0)]
    assert "partition" not in merged[0].stats and is_partial(merged[0])
    assert m.min_offsets() == {0: 101, 1: 8}
    rest = m.release(force=True)
    assert sorted(p.value for p in rest) == [1.0, 4.0] and m.min_offsets() == {}


def test_revoked_partitions_are_forgotten():
    m = PartialMerger()
    m.add(point("requests", 10, 0, 0), 0, 1)
    m.add(point("requests", 5, 0, 1), 1, 1)
    m.drop_partitions({1})
    assert [p.value for p in m.release(force=True)] == [10.0]
