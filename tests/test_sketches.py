"""Sketch codecs: wire round trips, DDSketch p99 within 1 %, exact merges."""

import numpy as np

from patrol.preagg import sketches as S
from patrol.records import MetricPoint, Sketch, decode


def _exact(values, q):
    v = sorted(values)
    return v[int(q * (len(v) - 1))]  # DDSketch's rank convention: q * (n - 1)


def test_ddsketch_p99_within_one_percent_on_heavy_tailed_latencies():
    rng = np.random.default_rng(7)
    vals = np.round(rng.lognormal(mean=-3.0, sigma=1.2, size=50_000), 3)  # ms resolution, like nginx
    vals = vals[vals > 0]
    counts = {}
    for v in vals.tolist():
        counts[v] = counts.get(v, 0) + 1
    sk = S.dd_from_counts(counts.items())
    for q in (0.5, 0.9, 0.99):
        exact = _exact(vals.tolist(), q)
        assert abs(sk.get_quantile_value(q) - exact) <= 0.01 * exact, q


def test_ddsketch_wire_round_trip_preserves_quantiles_sum_and_zeroes():
    sk = S.dd_from_counts([(0.0, 5), (0.001, 3), (0.25, 10), (12.5, 1)])
    wire = S.dd_to_sketch(sk)
    back = S.dd_from_sketch(Sketch.model_validate_json(wire.model_dump_json()))
    assert back.count == sk.count == 19
    assert back.sum == sk.sum
    for q in (0.0, 0.2, 0.5, 0.9, 1.0):
        assert back.get_quantile_value(q) == sk.get_quantile_value(q)


def test_ddsketch_merge_equals_sketch_of_union():
    a = [(0.01 * i, 1) for i in range(1, 200)]
    b = [(0.5 + 0.02 * i, 2) for i in range(100)]
    merged = S.dd_merge([S.dd_from_sketch(S.dd_to_sketch(S.dd_from_counts(a))),
                         S.dd_from_sketch(S.dd_to_sketch(S.dd_from_counts(b)))])
    direct = S.dd_from_counts(a + b)
    for q in (0.1, 0.5, 0.9, 0.99):
        assert merged.get_quantile_value(q) == direct.get_quantile_value(q)


def test_hll_union_equals_direct_and_travels_in_a_metric_point():
    items = [f"10.0.{i // 256}.{i % 256}" for i in range(20_000)]
    direct = S.hll_from(items)
    union = S.hll_union([S.hll_from(items[:7000]), S.hll_from(items[5000:])])
    assert union.get_estimate() == direct.get_estimate()
    assert abs(direct.get_estimate() - 20_000) < 0.03 * 20_000
    pt = MetricPoint.make("unique_clients", {"scope": "global"}, __import__("datetime").datetime(2026, 1, 1),
                          __import__("datetime").datetime(2026, 1, 1, 0, 1), direct.get_estimate(),
                          sketch=S.hll_to_sketch(direct))
    back = decode(pt.to_bytes())
    assert S.hll_from_sketch(back.sketch).get_estimate() == direct.get_estimate()


def test_topk_keeps_heavy_hitters():
    counts = [(f"ip{i}", 1) for i in range(500)] + [("attacker", 900), ("crawler", 400)]
    tk = S.topk_from_sketch(S.topk_to_sketch(S.topk_from_counts(counts)))
    top = S.topk_items(tk, 2)
    assert [t[0] for t in top] == ["attacker", "crawler"]


def test_dd_from_counts_and_quantiles_match_the_library_exactly():
    # The fast builder stores each bin once and the quantiles use one cumulative pass: both must
    # give exactly what DDSketch.add / get_quantile_value give (window close relies on it).
    import random

    from ddsketch import DDSketch

    rng = random.Random(3)
    for trial in range(30):
        counts = {round(rng.lognormvariate(-3, 1.5), 3): rng.randint(1, 50) for _ in range(rng.randint(1, 400))}
        if trial % 3 == 0:
            counts[0.0] = rng.randint(1, 30)  # zero latencies go to the zero count
        ref = DDSketch(relative_accuracy=S.DD_ACCURACY)
        for v, w in counts.items():
            ref.add(v, w)
        sk = S.dd_from_counts(counts.items())
        assert (sk.count, sk.sum, sk._min, sk._max, sk._zero_count) == (ref.count, ref.sum, ref._min, ref._max, ref._zero_count)
        assert S.dd_to_sketch(sk) == S.dd_to_sketch(ref)
        qs = [0.0, 0.01, 0.5, 0.9, 0.99, 1.0]
        assert S.dd_quantiles(sk, qs) == [ref.get_quantile_value(q) for q in qs]


def test_wire_sketches_equal_validated_ones():
    # dd/hll/topk_to_sketch build Sketch without validation (model_construct): each must equal,
    # field for field and in its JSON bytes, what Sketch.from_bytes (validated) makes.
    hll = S.hll_from(["10.0.0.1", "10.0.0.2"])
    tk = S.topk_from_counts([("10.0.0.1", 3), ("10.0.0.2", 1)])
    dd = S.dd_from_counts([(0.0, 1), (0.012, 4), (1.5, 2)])
    for fast in (S.dd_to_sketch(dd), S.hll_to_sketch(hll), S.topk_to_sketch(tk)):
        ref = Sketch.from_bytes(fast.type, fast.raw(), **fast.params)
        assert fast == ref
        assert fast.model_dump_json() == ref.model_dump_json()
        assert {k: type(v) for k, v in fast.params.items()} == {k: type(v) for k, v in ref.params.items()}


def test_window_close_ddsketch_from_c_equals_the_python_build():
    # preagg.series._dd takes the C loop (preagg._fastloop.dd_accumulate) when it is built: same
    # bins, zero count, count, sum (same order), min and max as the Python loop, for latency texts
    # as the fast path keeps them, numbers from the careful parser, zeroes and skipped garbage.
    import random

    import pytest

    from patrol.preagg import series

    if series._dd_acc is None:
        pytest.fail("preagg._fastloop is not built (make install compiles it)")
    rng = random.Random(4)
    texts = [f"{rng.lognormvariate(-3, 1.5):.3f}".encode() for _ in range(3000)]
    keys = texts + [b"0.000", b"-", b"abc", b"inf", b"-1.0", b"1_0.5", 0.0, 0.25, 1e-12, 3.5]
    counts = {k: rng.choice([1, 1, 2, 7, 300, 10**12]) for k in keys}
    fast = series._dd(counts)
    series._dd_acc, saved = None, series._dd_acc
    try:
        slow = series._dd(counts)
    finally:
        series._dd_acc = saved
    assert S.dd_to_sketch(fast).data == S.dd_to_sketch(slow).data
    assert (fast.count, fast.sum, fast._zero_count, fast._min, fast._max) == (
        slow.count, slow.sum, slow._zero_count, slow._min, slow._max)
    qs = [0.0, 0.5, 0.9, 0.99, 1.0]
    assert S.dd_quantiles(fast, qs) == S.dd_quantiles(slow, qs)
    assert series._dd({b"-": 3, b"x": 1}) is None  # nothing the sketch takes: no sketch


def test_constructor_builds_what_model_construct_builds():
    # sketches.constructor replaces model_construct at window close: same __dict__ (order too),
    # fields set, extra and private state, for the point and the sketch models.
    from datetime import datetime, timezone

    from patrol.records import MetricPoint

    t = datetime(2026, 11, 27, tzinfo=timezone.utc)
    sk = S.dd_to_sketch(S.dd_from_counts([(0.012, 4)]))
    cases = [
        (Sketch, ("type", "data", "params"), ("hll", "AAAA", {"lg_k": 12})),
        (MetricPoint, ("id", "series", "metric", "dims", "window_start", "window_end", "value", "count", "stats",
                       "sketch"), ("i", "s{}", "requests", {"scope": "global"}, t, t, 1.0, None, {"p": 1.0}, sk)),
    ]
    for cls, names, values in cases:
        fast = S.constructor(cls, names)(*values)
        ref = cls.model_construct(**dict(zip(names, values)))
        assert type(fast) is cls
        assert list(fast.__dict__.items()) == list(ref.__dict__.items())
        assert fast.__pydantic_fields_set__ == ref.__pydantic_fields_set__
        assert (fast.__pydantic_extra__, fast.__pydantic_private__) == (ref.__pydantic_extra__, ref.__pydantic_private__)
        assert fast.model_dump_json() == ref.model_dump_json()


def test_dd_merge_equals_the_library_merge():
    # dd_merge adds dense bins with one map() instead of the library's loop: same store layout,
    # bins, counts, sum (same order), min and max, for overlapping, disjoint, empty and zero-only
    # inputs in several orders.
    import random

    from ddsketch import DDSketch

    rng = random.Random(6)

    def sketch(lo, hi, n, zeros=0):
        return S.dd_from_counts([(rng.uniform(lo, hi), rng.randint(1, 5)) for _ in range(n)] + [(0.0, 1)] * zeros)

    sks = [sketch(0.001, 0.01, 50), sketch(0.5, 30.0, 80), DDSketch(S.DD_ACCURACY), sketch(0.005, 2.0, 200, 3),
           S.dd_from_counts([(0.0, 4)]), sketch(100.0, 500.0, 10)]
    for order in (sks, sks[::-1], [sks[2], sks[4], sks[0], sks[3]], sks[1:2], [sks[2]]):
        fast = S.dd_merge(order)
        ref = DDSketch(relative_accuracy=order[0]._relative_accuracy)
        for sk in order:
            ref.merge(sk)
        fs, rs = fast._store, ref._store
        assert (fs.bins, fs.offset, fs.min_key, fs.max_key, fs.count) == (rs.bins, rs.offset, rs.min_key, rs.max_key, rs.count)
        assert (fast._count, fast._sum, fast._zero_count, fast._min, fast._max) == (
            ref._count, ref._sum, ref._zero_count, ref._min, ref._max)
