"""Shares of a (series, window) from several pre-aggregation partitions merge into one point,
whatever the order they arrive in; a share after its window was scored is reported, not merged."""

import math
import random
from datetime import datetime, timedelta, timezone

import pytest

from patrol.models.partials import PartialMerger, Ready, is_partial
from patrol.preagg.aggregate import Aggregator
from patrol.sim.generator import generate_lines
from patrol.records import MetricPoint

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def point(metric, value, w, part, dims=None):
    ws = T0 + timedelta(minutes=w)
    return MetricPoint.make(metric, dims or {"scope": "global"}, ws, ws + timedelta(minutes=1), value,
                            stats={"partition": float(part)})


def end_of(w):
    return (T0 + timedelta(minutes=w + 1)).timestamp()


def aggregate(lines_by_partition):
    """Real pre-aggregation: every window of every partition, closed (as ``{partition: points}``)."""
    agg = Aggregator(window_s=60, lateness_s=30, max_future_s=1e12)
    for part, lines in lines_by_partition.items():
        agg.feed(lines, part)
    agg.close_all()
    out = {}
    for cw in agg.drain():
        out.setdefault(cw.partition, []).extend(cw.points())
    return out


@pytest.fixture(scope="module")
def unkeyed():
    """Generated logs spread over 3 partitions without a key (round robin), and the same lines in one."""
    lines = [line for _, _, line in generate_lines(n=6000, seed=5, base_rate=40.0)]
    spread = aggregate({p: lines[p::3] for p in range(3)})
    whole = aggregate({0: lines})[0]
    return spread, whole


def merge_in(order, shares, ready):
    m = PartialMerger()
    for i in order:
        p, part, off = shares[i]
        assert m.add(p, part, off, ("msg", part, off))
    return m.release(ready), m


def test_shares_merge_to_the_single_partition_values_in_any_order(unkeyed):
    spread, whole = unkeyed
    # as the detect worker reads them: every point on metrics partition 0, in some offset order
    shares = [(p, 0, i) for i, p in enumerate(pt for part in sorted(spread) for pt in spread[part])]
    ready = {0: Ready(math.inf, len(shares))}
    rng = random.Random(3)
    runs = []
    for _ in range(3):
        order = list(range(len(shares)))
        rng.shuffle(order)
        out, m = merge_in(order, shares, ready)
        runs.append([(p.series, p.window_start, p.to_bytes()) for p, _ in out])
        assert m.n_held == 0 and m.min_offsets() == {}
    assert runs[0] == runs[1] == runs[2]  # deterministic whatever the arrival order

    got = {(p.series, p.window_start): p for p, _ in merge_in(range(len(shares)), shares, ready)[0]}
    want = {(p.series, p.window_start): p for p in whole}
    for metric in ("requests", "status_5xx", "error_ratio", "bytes_out", "request_time_p99", "unique_clients"):
        keys = [k for k in want if want[k].metric == metric and want[k].dims.get("scope") in ("global", "service")]
        assert keys, metric
        for k in keys:
            assert got[k].value == pytest.approx(want[k].value, rel=1e-9, abs=1e-12), (k, got[k].value, want[k].value)


def test_a_window_waits_until_every_partition_closed_it_and_its_shares_were_read():
    m = PartialMerger()
    m.add(point("requests", 10, 0, 0), 0, 100, "a")
    m.add(point("requests", 4, 1, 0), 0, 101, "b")
    assert m.release({0: Ready(end_of(0) - 1, 200)}) == []   # a pre-aggregation partition has not closed window 0
    assert m.release({0: Ready(end_of(0), 100)}) == []       # closed, but its shares go up to offset 200 > 100
    assert m.min_offsets() == {0: 100}
    m.add(point("requests", 5, 0, 1), 0, 102, "c")           # the other partition's share of window 0
    out = m.release({0: Ready(end_of(0), 103)})
    assert [(p.value, p.window_start, srcs) for p, srcs in out] == [(15.0, T0, ["a", "c"])]
    assert "partition" not in out[0][0].stats and is_partial(out[0][0])
    assert m.min_offsets() == {0: 101} and m.n_held == 1
    # late: window 0 of this series was scored; the share is handed back, not merged or dropped
    assert m.add(point("requests", 7, 0, 2), 0, 104, "d") is False
    assert m.n_held == 1
    assert [p.value for p, _ in m.release({0: Ready(math.inf, 105)})] == [4.0]


def test_a_share_replayed_upstream_is_merged_once():
    m = PartialMerger()
    for off, part in enumerate((0, 1, 1)):   # partition 1's share twice (its worker re-sent it)
        m.add(point("requests", 10 + part, 0, part), 0, off)
    out = m.release({0: Ready(math.inf, 3)})
    assert [p.value for p, _ in out] == [21.0] and m.duplicates == 1


def test_revoked_partitions_are_forgotten():
    m = PartialMerger()
    m.add(point("requests", 10, 0, 0), 0, 1)
    m.add(point("requests", 5, 0, 1, {"scope": "service", "service": "a"}), 1, 1)
    m.release({1: Ready(math.inf, 2)})
    m.drop_partitions({1}, {"requests{scope=service,service=a}"})
    assert m.released == {} and m.min_offsets() == {0: 1}
    assert [p.value for p, _ in m.release({0: Ready(math.inf, 2), 1: Ready(math.inf, 2)})] == [10.0]
