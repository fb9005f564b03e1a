"""The chaos benchmark's pure parts: comparison with the reference, summaries, fault schedule, bursts."""

from __future__ import annotations

import pytest

from benchmarks.chaos import (INFRA, INPUT, Fault, Traffic, _retime, build_schedule, burst_messages, compare,
                              caught_up, dead_letter_summary, flush_lines, incident_spec, recovery,
                              worker_names)
from patrol.preagg.aggregate import Aggregator


def test_compare_counts_lost_duplicates_differing_and_extra():
    ref = [{"id": "a", "value": 1.0, "count": 3}, {"id": "b", "value": 2.0, "count": 1},
           {"id": "c", "value": 3.0, "count": 1}, {"id": "d", "value": 4.0, "count": 2}]
    got = [{"id": "a", "value": 1.0, "count": 3}, {"id": "a", "value": 1.0, "count": 3},   # one duplicate
           {"id": "c", "value": 3.25, "count": 1},                                        # value differs
           {"id": "d", "value": 4.0, "count": 5},                                         # count differs
           {"id": "e", "value": 0.0, "count": 0}, {"id": "e", "value": 0.0, "count": 0}]  # extra, twice
    r = compare(ref, got, ("value", "count"))
    assert (r["reference"], r["got"]) == (4, 4)
    assert r["lost"] == 1 and r["lost_sample"] == ["b"]
    assert r["duplicates"] == 2  # the second "a" and the second "e"
    assert r["differ"] == 2
    assert {d["id"]: d["field"] for d in r["differ_sample"]} == {"c": "value", "d": "count"}
    assert r["extra"] == 1 and r["extra_sample"] == ["e"]


def test_compare_identical_runs_and_repeats_the_reference_also_has():
    ref = [{"id": "a", "value": 0.1 + 0.2}, {"id": "a", "value": 0.3}, {"id": "b", "value": float("nan")}]
    got = [{"id": "b", "value": float("nan")}, {"id": "a", "value": 0.3}, {"id": "a", "value": 0.30000000000000004}]
    r = compare(ref, got, ("value",))
    assert (r["lost"], r["duplicates"], r["differ"], r["extra"]) == (0, 0, 0, 0)


def test_compare_sees_a_second_distinct_value_for_one_id():
    ref = [{"id": "a", "value": 1.0}]
    got = [{"id": "a", "value": 1.0}, {"id": "a", "value": 0.5}]  # a partial re-emission
    r = compare(ref, got, ("value",))
    assert r["duplicates"] == 1 and r["differ"] == 1 and r["lost"] == 0


def test_dead_letter_summary_groups_codes_and_blanks_numbers():
    dls = [{"code": "late", "reason": "event time 1762041600.000 is late: window [1762041540, 1762041600) closed",
            "source_topic": "ingress-logs"},
           {"code": "late", "reason": "event time 1762045200.000 is late: window [1762045140, 1762045200) closed",
            "source_topic": "ingress-logs"},
           {"code": "parse_error", "reason": "not an access log", "source_topic": "ingress-logs"}]
    s = dead_letter_summary(dls)
    assert s["total"] == 3 and s["by_code"] == {"late": 2, "parse_error": 1}
    assert s["by_reason"]["event time # is late: window [#, #) closed"] == 2
    assert s["by_source_topic"] == {"ingress-logs": 3}


def test_caught_up_waits_for_the_fault_to_end_and_every_partition():
    samples = [{"t": 0, "c": {0: 10, 1: 10}}, {"t": 10, "c": None}, {"t": 15, "c": {0: 100, 1: 20}},
               {"t": 25, "c": {0: 100, 1: 60}}, {"t": 30, "c": {0: 120, 1: 80}}]
    target = {0: 100, 1: 50}
    assert caught_up(samples, start=8, end=12, field="c", target=target) == 17   # partition 1 at t=25
    assert caught_up(samples, start=8, end=26, field="c", target=target) == 22   # not before the fault ended
    assert caught_up(samples, start=8, end=12, field="c", target={0: 100, 1: 81}) is None
    assert caught_up(samples, start=8, end=12, field="c", target={2: 1}) is None  # a partition never committed


def test_recovery_chains_the_stages():
    """detect has caught up when it committed every point that existed when preagg had caught up."""
    samples = [
        {"t": 0, "produced": {0: 50}, "preagg_committed": {0: 40}, "metrics_end": {0: 10}, "detect_committed": {0: 10}},
        {"t": 5, "produced": {0: 100}, "preagg_committed": {0: 40}, "metrics_end": {0: 10}, "detect_committed": {0: 10}},
        {"t": 9, "produced": {0: 150}, "preagg_committed": {0: 100}, "metrics_end": {0: 30}, "detect_committed": {0: 10}},
        {"t": 14, "produced": {0: 200}, "preagg_committed": {0: 180}, "metrics_end": {0: 50}, "detect_committed": {0: 40}},
        {"t": 20, "produced": {0: 200}, "preagg_committed": {0: 200}, "metrics_end": {0: 60}, "detect_committed": {0: 50}},
    ]
    assert recovery(samples, start=2, end=6) == {"preagg_caught_up_s": 7, "detect_caught_up_s": 12}
    assert recovery(samples, start=2, end=15) == {"preagg_caught_up_s": 18, "detect_caught_up_s": None}


def test_flush_lines_are_valid_and_close_the_last_window():
    tr = _traffic()
    agg = Aggregator(window_s=60, lateness_s=30, max_future_s=300, idle_close_s=1e9)
    now = 1764979200.0
    agg.feed([ln for _t, _k, ln in tr.lines], 0, None, now)
    agg.drain()
    flush = flush_lines(tr, 6)
    assert [p for p, _ in flush] == list(range(6))
    assert agg.feed([flush[0][1]], 0, None, now) == []
    closed = agg.drain()
    assert closed and max(c.end for c in closed) >= tr.sim_end  # the traffic's last window closed


@pytest.mark.parametrize("traffic_s,kill_every", [(240, 25), (80, 15), (600, 40)])
def test_schedule_has_every_fault_and_kills_do_not_overlap_others(traffic_s, kill_every):
    workers = worker_names()
    s = build_schedule(traffic_s, seed=3, workers=workers, kill_every_s=kill_every, stall_s=30, rolling_s=50,
                       guard_s=6)
    kinds = [f.kind for f in s]
    for k in ("broker_stall", "redis_restart_empty", "redis_restart_with_data", "rolling_restart", *INPUT):
        assert kinds.count(k) == 1, k
    kills = [f for f in s if f.kind == "kill"]
    assert kills and all(f.target in workers and 0 < f.at < traffic_s for f in kills)
    others = [f for f in s if f.kind in INFRA and f.kind != "kill"]
    for k in kills:
        for o in others:  # a kill and its restart stay clear of the other faults' guarded spans
            assert k.at + k.duration < o.at - 6 or k.at > o.at + o.duration + 6 - 1e-9, (k, o)
    gaps = [b.at - a.at for a, b in zip(kills, kills[1:])]
    assert all(g >= kill_every - 1e-9 for g in gaps)
    assert all(0 < f.at < 1 for f in s if f.kind in INPUT)  # input faults are placed by line fraction


def test_schedule_is_deterministic_by_seed():
    a = build_schedule(300, seed=1, workers=worker_names(), kill_every_s=20)
    b = build_schedule(300, seed=1, workers=worker_names(), kill_every_s=20)
    c = build_schedule(300, seed=2, workers=worker_names(), kill_every_s=20)
    assert a == b
    assert [f.target for f in a if f.kind == "kill"] != [f.target for f in c if f.kind == "kill"]


LINE = (b'79.195.86.206 - - [02/Nov/2026:01:00:00 +0000] "GET /products/26 HTTP/1.1" 200 29345 '
        b'"https://shop.example.com/x" "okhttp/4.12.0" 303 0.097 [shop3-storefront-80] [] 10.244.14.85:80 29345 '
        b'0.097 200 3e529fc8c3d5dfcf567b5702c7679e9f')


def _traffic(n=50):
    t0 = 1762045200.0  # 2025-11-02T01:00:00Z
    return Traffic([(t0 + i, b"shop3-storefront-80", _retime(LINE, t0 + i)) for i in range(n)], [], t0, t0 + n, 1)


def test_bursts_are_rejected_by_the_aggregator_with_the_right_code():
    """The burst lines really are what they claim: garbage, future and late lines are dead letters
    with those codes for an aggregator that has seen the stream; unkeyed lines are valid."""
    tr = _traffic()
    agg = Aggregator(window_s=60, lateness_s=30, max_future_s=300, idle_close_s=1e9)
    now = 1764979200.0  # 2025-12-06: after the traffic, long before 2030 (the future check is by wall clock)
    assert agg.feed([ln for _t, _k, ln in tr.lines], 0, None, now) == []
    for kind, codes in (("garbage", {"parse_error"}), ("future", {"future"}), ("late", {"late"})):
        msgs = burst_messages(Fault(0.5, kind, count=12), tr, 40, seed=1, partitions=6)
        assert len(msgs) == 12 and all(k == b"shop3-storefront-80" and p is None for k, p, _v in msgs)
        rejected = agg.feed([v for _k, _p, v in msgs], 0, None, now)
        assert len(rejected) == 12, kind
        assert {r.code for r in rejected} <= codes | ({"parse_error"} if kind == "garbage" else set()), kind
    unkeyed = burst_messages(Fault(0.9, "unkeyed", count=20), tr, 49, seed=1, partitions=6)
    assert all(k is None and 0 <= p < 6 for k, p, _v in unkeyed)
    assert agg.feed([v for _k, _p, v in unkeyed], 1, None, now) == []


def test_bursts_are_the_same_bytes_in_both_runs():
    tr = _traffic()
    f = Fault(0.5, "garbage", count=30)
    assert burst_messages(f, tr, 40, seed=5, partitions=6) == burst_messages(f, tr, 40, seed=5, partitions=6)
    assert burst_messages(f, tr, 40, seed=5, partitions=6) != burst_messages(f, tr, 40, seed=6, partitions=6)


def test_incident_spec_puts_incidents_in_the_second_half():
    from patrol.sim.generator.incidents import _SPEC, parse_duration

    for hours in (1, 2, 6):
        spec = incident_spec(hours)
        parts = [_SPEC.match(p) for p in spec.split(",")]
        assert len(parts) == 3 and all(parts), spec
        for m in parts:
            start, dur = parse_duration(m["start"]), parse_duration(m["dur"])
            assert hours * 3600 / 2 <= start and start + dur <= hours * 3600, spec


def test_retime_keeps_the_line_and_moves_only_its_time():
    moved = _retime(LINE, 1893456000.0)
    assert moved != LINE
    assert moved.replace(b"01/Jan/2030:00:00:00", b"02/Nov/2026:01:00:00") == LINE
