"""Aggregation against independent computations on real and generated logs; rollups are exact."""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

import pytest

from patrol.preagg.aggregate import Aggregator
from patrol.preagg.parse import get_parser
from patrol.preagg.series import FULL, rollup
from patrol.sim.generator import generate_lines
from fixture_data import log_path

BIG = 10**9  # lateness/future bounds that accept every line of an old file


def _logs(name: str) -> list[bytes]:
    path = log_path(name)
    return path.read_bytes().splitlines()


def _run(lines, partition=0, **kw) -> tuple[Aggregator, list, list]:
    agg = Aggregator(**kw)
    rejected = []
    for i in range(0, len(lines), 5000):
        rejected += agg.feed(lines[i:i + 5000], partition=partition)
    agg.close_all()
    points = [p for cw in agg.drain() for p in cw.points()]
    return agg, rejected, points


def _by(points, scope):
    return {(p.series, p.window_start): p for p in points if p.dims["scope"] == scope}


def _ts(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=timezone.utc)


def _gen(n=20_000, seed=5, rate=300.0):
    return [line for _, _, line in generate_lines(n=n, seed=seed, base_rate=rate)]


def test_real_ingress_sample_matches_parser_ground_truth():
    lines = _logs("ingress_nginx_beats_sample.log")
    agg, rejected, points = _run(lines, window_s=60, lateness_s=BIG, max_future_s=BIG)
    parse = get_parser("ingress-nginx")
    truth = defaultdict(Counter)
    bad = 0
    for raw in lines:
        try:
            r = parse(raw)
        except Exception:
            bad += 1
            continue
        ws = int(r["time"]) - int(r["time"]) % 60
        svc = r["service"] or "-"
        for key in (("global", ws), (svc, ws)):
            truth[key]["requests"] += 1
            truth[key][f"status_{r['status'] // 100}xx"] += 1 if r["status"] else 0
            truth[key]["bytes_out"] += r["body_bytes_sent"] or 0
            truth[key]["bytes_in"] += r["request_length"] or 0
            truth[key]["retries"] += max(0, len(r["upstream_addr"]) - 1)
    assert [x.code for x in rejected] == ["parse_error"] * bad
    assert agg.parse_errors == bad
    assert sum(c["requests"] for k, c in truth.items() if k[0] == "global") == len(lines) - bad
    glob = _by(points, "global")
    svc_pts = [p for p in points if p.dims["scope"] == "service"]
    checked = 0
    for (name, ws), want in truth.items():
        if name == "global":
            got = {p.metric: p.value for (s, w), p in glob.items() if w == _ts(ws)}
        else:
            got = {p.metric: p.value for p in svc_pts if p.dims["service"] == name and p.window_start == _ts(ws)}
        assert got["requests"] == want["requests"], (name, ws)
        for cls in ("2xx", "3xx", "4xx", "5xx"):
            assert got[f"status_{cls}"] == want[f"status_{cls}"], (name, ws, cls)
        assert got["bytes_out"] == want["bytes_out"]
        assert got["bytes_in"] == want["bytes_in"]
        assert got["upstream_retries"] == want["retries"]
        checked += 1
    assert checked >= 10


def test_real_ingress_sample_routes_late_and_future_lines_to_rejections():
    lines = _logs("ingress_nginx_beats_sample.log")
    agg, rejected, _ = _run(lines, window_s=60, lateness_s=30, max_future_s=300)
    codes = Counter(r.code for r in rejected)
    # The sample ends with lines from 2022 (far ahead of the 2020 stream) and one straggler.
    assert codes["future"] >= 1 and codes["late"] >= 1, codes
    assert agg.late == codes["late"] and agg.future == codes["future"]
    assert all(r.reason for r in rejected)


def test_real_combined_log_counts_match_an_independent_regex():
    lines = _logs("apache_combined_10k.log")
    rx = re.compile(rb'^\S+ \S+ \S+ \[([^\]]+)\] "[^"]*" (\d{3}) (\d+|-)')
    truth = defaultdict(Counter)
    for raw in lines:
        m = rx.match(raw)
        assert m, raw
        t = datetime.strptime(m.group(1).decode(), "%d/%b/%Y:%H:%M:%S %z").timestamp()
        ws = int(t) - int(t) % 60
        truth[ws]["requests"] += 1
        truth[ws][f"status_{m.group(2)[:1].decode()}xx"] += 1
        truth[ws]["bytes_out"] += 0 if m.group(3) == b"-" else int(m.group(3))
    agg, rejected, points = _run(lines, window_s=60, lateness_s=BIG, max_future_s=BIG, fmt="combined")
    rejected_ws = Counter()
    for r in rejected:
        m = rx.match(lines[r.index])
        t = datetime.strptime(m.group(1).decode(), "%d/%b/%Y:%H:%M:%S %z").timestamp()
        rejected_ws[int(t) - int(t) % 60] += 1
    assert len(rejected) < 50, Counter(r.reason for r in rejected).most_common(3)
    glob = defaultdict(dict)
    for p in points:
        if p.dims["scope"] == "global":
            glob[int(p.window_start.timestamp())][p.metric] = p.value
    assert set(glob) <= set(truth)
    for ws, want in truth.items():
        if rejected_ws[ws]:
            assert glob.get(ws, {}).get("requests", 0) == want["requests"] - rejected_ws[ws]
            continue
        got = glob[ws]
        assert got["requests"] == want["requests"]
        for cls in ("2xx", "3xx", "4xx", "5xx"):
            assert got[f"status_{cls}"] == want[f"status_{cls}"]
        assert got["bytes_out"] == want["bytes_out"]


def _exact_q(values, q):
    v = sorted(values)
    return v[int(q * (len(v) - 1))]


def test_generated_traffic_against_independent_computation():
    lines = _gen()
    agg, rejected, points = _run(lines, window_s=60, lateness_s=30)
    assert rejected == []
    parse = get_parser("ingress-nginx")
    reqs, clients, rts, e5 = Counter(), defaultdict(set), defaultdict(list), Counter()
    for raw in lines:
        r = parse(raw)
        ws = int(r["time"]) - int(r["time"]) % 60
        key = (r["upstream_name"], ws)
        reqs[key] += 1
        clients[key].add(r["remote_addr"])
        rts[key].append(r["request_time"])
        e5[key] += 1 if r["status"] >= 500 else 0
    svc = defaultdict(dict)
    for p in points:
        if p.dims["scope"] == "service":
            up = f"{p.dims['namespace']}-{p.dims['service']}-{p.dims['port']}"
            svc[(up, int(p.window_start.timestamp()))][p.metric] = p
    assert set(svc) == set(reqs)
    for key, n in reqs.items():
        got = svc[key]
        assert got["requests"].value == n
        assert got["status_5xx"].value == e5[key]
        assert got["error_ratio"].value == pytest.approx(e5[key] / n)
        assert got["error_ratio"].stats["denominator"] == n
        exact = len(clients[key])
        assert abs(got["unique_clients"].value - exact) <= max(2, 0.03 * exact), key
        if n >= 100:
            p99 = _exact_q(rts[key], 0.99)
            assert abs(got["request_time_p99"].value - p99) <= 0.01 * p99, key
        assert got["request_time_mean"].value == pytest.approx(sum(rts[key]) / n, rel=1e-9)
        assert sum(got["device_class"].stats[k] for k in ("desktop", "mobile", "bot", "other")) == n
        assert sum(v for k, v in got["country"].stats.items() if k != "partition") == n
    assert {p.metric for p in points if p.dims["scope"] == "global"} == set(FULL)


def _values(points):
    return {(p.series, p.window_start, p.window_end): p for p in points}


@pytest.mark.parametrize("scope", ["global", "service"])
def test_rollup_of_six_10s_windows_equals_direct_60s(scope):
    lines = _gen(n=15_000, seed=11, rate=200.0)
    _, _, p10 = _run(lines, window_s=10, lateness_s=30)
    _, _, p60 = _run(lines, window_s=60, lateness_s=30)
    rolled = _values(p for p in rollup(p10, window_s=60) if p.dims["scope"] == scope)
    direct = _values(p for p in p60 if p.dims["scope"] == scope)
    assert rolled.keys() == direct.keys()
    for k, d in direct.items():
        r = rolled[k]
        assert r.id == d.id
        if d.metric == "top_clients":
            continue  # heavy hitters are approximate by design (covered in test_sketches)
        if d.metric.endswith("_mean"):
            assert r.value == pytest.approx(d.value, rel=1e-12), k
        else:
            assert r.value == d.value, k  # counts, HLL union, DDSketch merge: exact
        if d.metric in ("device_class", "country", "error_ratio"):
            assert r.stats == d.stats


def test_partitions_merge_downstream_to_the_single_worker_result():
    gen = list(generate_lines(n=12_000, seed=3, base_rate=200.0))
    parts = defaultdict(list)
    for _, key, line in gen:
        parts[zlib.crc32(key) % 2].append(line)
    assert len(parts) == 2
    points = []
    for p, lines in parts.items():
        points += _run(lines, partition=p, window_s=60, lateness_s=30)[2]
    _, _, single = _run([line for _, _, line in gen], window_s=60, lateness_s=30)
    # Service series are complete per partition: same values as one worker seeing everything.
    want = {(p.series, p.window_start): p.value for p in single if p.dims["scope"] == "service"}
    got = {(p.series, p.window_start): p.value for p in points if p.dims["scope"] == "service"}
    assert got == want
    # Global series are partial per partition (distinct ids) and merge exactly downstream.
    glob = [p for p in points if p.dims["scope"] == "global"]
    assert len({p.id for p in glob}) == len(glob)
    merged = {(p.series, p.window_start): p.value for p in rollup(glob, merge_partitions=True)
              if p.metric not in ("top_clients",) and not p.metric.endswith("_mean")}
    direct = {(p.series, p.window_start): p.value for p in single if p.dims["scope"] == "global"
              and p.metric not in ("top_clients",) and not p.metric.endswith("_mean")}
    assert merged == direct


def _line(t: int, path: str, status: int = 200, ip: str = "203.0.113.9", up: str = "shop-web-80") -> bytes:
    ts = datetime.fromtimestamp(t, tz=timezone.utc).strftime("%d/%b/%Y:%H:%M:%S +0000")
    return (f'{ip} - - [{ts}] "GET {path} HTTP/1.1" {status} 12 "-" "curl/8.0" 80 0.010 [{up}] [] '
            f"10.0.0.1:80 12 0.009 {status} abc").encode()


def test_template_cap_bounds_series_with_many_distinct_urls():
    t0 = 1_790_000_000
    words = ["".join(chr(97 + (i // 26**k) % 26) for k in range(4)) for i in range(3000)]
    lines = [_line(t0 + i // 100, f"/w/{w}/x") for i, w in enumerate(words)]
    agg = Aggregator(window_s=60, lateness_s=5, max_templates_per_host=20)
    agg.feed(lines)
    keys = {k for st in agg.parts.values() for win in st.wins.values() for k in win}
    agg.close_all()
    keys |= {k for cw in agg.drain() for k in cw.accs}
    templates = {k[1][1] for k in keys}
    assert len(templates) <= 21 and "other" in templates


def test_garbage_and_late_lines_are_rejected_with_reasons():
    t0 = 1_790_000_000
    lines = [_line(t0, "/a"), b"\x00garbage \xff not a log line", _line(t0 + 120, "/a"), _line(t0 + 1, "/a")]
    agg = Aggregator(window_s=60, lateness_s=30)
    rej = agg.feed(lines)
    assert [(r.index, r.code) for r in rej] == [(1, "parse_error"), (3, "late")]
    assert agg.late == 1 and agg.parse_errors == 1
    agg.close_all()
    (first, second) = agg.drain()
    assert (first.lines, second.lines) == (1, 1)
    assert math.isclose(first.start, t0 - t0 % 60)


def test_points_are_what_validated_records_would_be():
    # build_points skips pydantic validation (model_construct) for speed: every point must be
    # byte-identical to one built through MetricPoint.make and round-trip through decode.
    from patrol.records import MetricPoint, decode, record_id

    _, _, points = _run(_gen(8000, seed=9), partition=2, window_s=10)
    assert points
    for pt in points:
        ref = MetricPoint.make(pt.metric, pt.dims, pt.window_start, pt.window_end, pt.value, count=pt.count,
                               stats=pt.stats, sketch=pt.sketch)
        ref.id = record_id(ref.series, ref.window_start.isoformat(), ref.window_end.isoformat(), "p2")
        raw = pt.to_bytes()
        assert raw == ref.to_bytes()
        assert decode(raw, MetricPoint) == pt
    # rollups take the same path, without a partition
    for pt in rollup(points, window_s=60, merge_partitions=True):
        ref = MetricPoint.make(pt.metric, pt.dims, pt.window_start, pt.window_end, pt.value, count=pt.count,
                               stats=pt.stats, sketch=pt.sketch)
        assert pt.to_bytes() == ref.to_bytes()


def test_point_bytes_do_not_depend_on_the_process_hash_seed():
    # A replay after a crash runs in another process: its records must be byte-identical, not just
    # equal in id and value (sets of 404 paths iterate in hash order, which varies per process).
    import hashlib
    import os
    import subprocess
    import sys

    code = ("import hashlib\nfrom preagg.aggregate import Aggregator\nfrom sim.generator import generate_lines\n"
            "lines = [l for _, _, l in generate_lines(n=20000, seed=4, base_rate=400.0)]\n"
            "agg = Aggregator(window_s=60); agg.feed(lines); agg.close_all()\n"
            "print(hashlib.sha256(b''.join(p.to_bytes() for cw in agg.drain() for p in cw.points())).hexdigest())\n")
    root = Path(__file__).resolve().parents[1]
    out = {subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout.strip() for seed in (1, 2, 3)}
    assert len(out) == 1, out
