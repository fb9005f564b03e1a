"""Event-time windows: watermark, lateness, idle close, future rejection, exactly-once emission."""

import pytest

from patrol.preagg.errors import WindowError
from patrol.preagg.windows import Windows


def test_window_closes_when_watermark_passes_its_end_and_only_once():
    w = Windows(window_s=10, lateness_s=5, max_future_s=1000)
    assert w.check(3) == 0
    assert w.check(14) == 10
    assert w.watermark == 9
    assert w.due() == []              # watermark 9 < end 10
    w.check(15)                        # watermark 10 == end of [0, 10)
    assert w.due() == [0]
    assert w.due() == []               # exactly once
    w.check(40)
    assert w.due() == [10]
    assert w.emitted == 2


def test_event_within_lateness_is_accepted_beyond_it_is_late_and_counted():
    w = Windows(window_s=10, lateness_s=5, max_future_s=1000)
    w.check(3)
    w.check(14)
    assert w.check(8) == 0             # behind the newest event but its window is still open
    w.check(15)
    assert w.due() == [0]
    with pytest.raises(WindowError) as exc:
        w.check(9)
    assert exc.value.code == "late"
    assert "closed" in exc.value.reason
    assert w.late == 1
    assert w.check(10) == 10           # the next window is fine


def test_future_events_are_rejected_against_newest_event_or_wall_clock():
    w = Windows(window_s=10, lateness_s=5, max_future_s=100)
    w.check(1000)
    with pytest.raises(WindowError) as exc:
        w.check(1101)
    assert exc.value.code == "future"
    assert w.check(1100) == 1100
    # With a wall clock the reference is "now", so a stream that jumps forward is fine.
    assert w.check(5000, now=5050) == 5000
    with pytest.raises(WindowError):
        w.check(5200, now=5050)
    assert w.future == 2


def test_quiet_live_stream_closes_windows_as_the_wall_clock_passes_them_by_the_lateness():
    w = Windows(window_s=60, lateness_s=30, idle_close_s=10)
    w.touch(1000.0)
    w.check(930)
    w.check(985)                       # live: the newest event trails the wall clock by 15 s
    assert w.due(now=1005.0) == []     # not idle yet (watermark 955)
    assert w.due(now=1010.0) == [900]  # idle: event time goes on with the clock, 985 + 10 - 30 >= 960
    assert w.due(now=1060.0) == []     # [960, 1020) is still within the lateness: 985 + 60 - 30 < 1020
    assert w.due(now=1070.0) == [960]
    with pytest.raises(WindowError) as exc:
        w.check(1000)                  # its window was emitted by the idle close
    assert exc.value.code == "late"


def test_producer_pause_in_a_backfill_closes_nothing_and_loses_nothing():
    """Issue #13: a backfill in chunks (event times days behind the wall clock) paused between two
    files; the wall-clock idle close cut the open window and the next file's lines went late."""
    w = Windows(window_s=60, lateness_s=30, idle_close_s=10)
    day = 86_400
    w.touch(10 * day)
    for t in (5, 41, 80):
        w.check(t)
    assert w.due() == []               # watermark 50: nothing passed by the lateness
    for pause in (10, 60, 3600, 5 * day):
        assert w.due(now=10 * day + pause) == []
    w.touch(15 * day)                  # the next chunk: lines of the still-open windows are accepted
    assert w.check(50) == 0 and w.check(119) == 60
    w.check(200)                       # event time closes them, in order
    assert w.due(now=15 * day + 30) == [0, 60]


def test_close_all_and_restore():
    w = Windows(window_s=10, lateness_s=0)
    w.check(1)
    w.check(25)
    assert w.close_all() == [0, 20]
    r = Windows(window_s=10, lateness_s=0)
    r.restore(30)
    with pytest.raises(WindowError):
        r.check(29)
    assert r.check(30) == 30


def test_hot_path_bounds_agree_with_check():
    w = Windows(window_s=10, lateness_s=5, max_future_s=50)
    w.set_reference(None)
    for t in (3, 14, 15, 40):
        w.check(t)
    w.due()
    assert w.closed_before == 20
    # watermark 35: an event before 30 would land in a window that ends behind it -> late
    assert w.lo == 30
    with pytest.raises(WindowError):
        w.check(29)
    assert w.hi == 40 + 50
    assert w.trigger == 40 + 10 + 5   # oldest open window [40, 50) closes at max event 55
