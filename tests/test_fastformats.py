"""The compiled extractors for ``combined``, ``json`` and ``envoy`` give what the careful parser gives.

``Aggregator(fmt=F)`` reads these formats with ``preagg/_formats.pxi`` (C extractors feeding the
default loop's C tables); ``Aggregator.fast = False`` is the careful parser alone
(``preagg.parse`` + ``Aggregator._slow``), which is what these formats ran before. Both must give
the same rejections, checkpoints, counters, accumulators (dict insertion order included) and
point bytes, on generated traffic, on mutated lines (which the extractors must either read
exactly as the careful parser does or hand to it) and on hypothesis-made JSON objects.
"""

from __future__ import annotations

import functools
import json
import os
import random
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patrol.preagg import aggregate
from patrol.preagg.aggregate import Aggregator
from patrol.sim.generator import generate_lines
from patrol.sim.generator.formats import reformat

BIG = 10**9
FORMATS = ("combined", "json", "envoy")


@pytest.fixture(scope="module", autouse=True)
def _compiled_loop_built():
    if aggregate.COMPILED:
        return
    msg = "preagg._fastloop is not built: the other formats' compiled extractors cannot be tested"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(msg)
    pytest.skip(msg)


def _acc_view(accs: dict) -> list:
    return [(k, a[:4], [list(a[i].items()) for i in range(4, 8)], sorted(a[8]) if a[8] else a[8])
            for k, a in accs.items()]


def _run(fmt: str, fast: bool, batches, compiled=True, **kw) -> dict:
    agg = Aggregator(fmt=fmt, compiled=compiled, **kw)
    if not fast:  # the careful parser alone (what these formats ran before the extractors)
        agg.fast = False
    rejected, checkpoints, windows = [], [], []
    for p, lines, now in batches:
        rejected += [(p, r.index, r.code, r.reason) for r in agg.feed(lines, partition=p, now=now)]
        checkpoints.append({q: agg.checkpoint(q) for q in sorted(agg.parts)})
        windows += agg.drain()
    agg.close_all()
    windows += agg.drain()
    return {
        "rejected": rejected,
        "checkpoints": checkpoints,
        # slow_lines differs by design (the careful-only run sends every line there)
        "counters": (agg.lines_in, agg.parse_errors, agg.replayed, agg.late, agg.future),
        "windows": [(cw.partition, cw.start, cw.end, cw.lines) for cw in windows],
        "accs": [_acc_view(cw.accs) for cw in windows],
        "points": [pt.to_bytes() for cw in windows for pt in cw.points()],
        "slow_lines": agg.slow_lines,
        "loop": agg.loop_name,
    }


_FIELDS = ("rejected", "checkpoints", "counters", "windows", "accs", "points")


def _assert_same(fmt, batches, **kw) -> tuple[dict, dict]:
    """Compiled extractor vs careful parser (in the compiled tables, and the pure install's)."""
    fast = _run(fmt, True, batches, **kw)
    careful = _run(fmt, False, batches, **kw)
    pure = _run(fmt, True, batches, compiled=False, **kw)
    assert fast["loop"] == f"compiled {fmt}"
    assert careful["loop"] == pure["loop"] == f"careful parser ({fmt})"
    for field in _FIELDS:
        assert fast[field] == careful[field], f"{fmt}: compiled extractor and careful parser differ in {field}"
        assert pure[field] == careful[field], f"{fmt}: careful parser differs with and without C tables in {field}"
    assert careful["points"], "nothing was aggregated: the comparison would be empty"
    return fast, careful


def _batches(lines, size=2000, partitions=1, now=None):
    return [(i // size % partitions, lines[i:i + size], now) for i in range(0, len(lines), size)]


@functools.lru_cache(maxsize=16)
def _gen_cached(fmt: str, n: int, seed: int, rate: float) -> tuple:
    return tuple(reformat(line, fmt, t) for t, _, line in generate_lines(n=n, seed=seed, base_rate=rate,
                                                                       start="2026-01-05T12:00:00Z"))


def _gen(fmt: str, n: int, seed: int, rate: float = 400.0) -> list[bytes]:
    return list(_gen_cached(fmt, n, seed, rate))


@pytest.mark.parametrize("fmt", FORMATS)
def test_generated_lines_identical_and_fast(fmt):
    lines = _gen(fmt, 20_000, seed=4)
    fast, careful = _assert_same(fmt, _batches(lines, 2500, partitions=2), window_s=60, lateness_s=30,
                                 max_future_s=BIG)
    assert careful["slow_lines"] == len(lines)
    assert careful["rejected"] == [], careful["rejected"][:3]  # every generated line is a good one
    # retried requests (attempt lists) are the only lines the extractors leave to the careful path
    assert fast["slow_lines"] < 0.01 * len(lines), fast["slow_lines"]


# -- mutations -------------------------------------------------------------------------------------
def _shift_iso(s: str, seconds: int) -> str:
    t = datetime.fromisoformat(s.replace("Z", "+00:00")) + timedelta(seconds=seconds)
    return t.isoformat().replace("+00:00", "Z" if s.endswith("Z") else "+00:00")


def _shift_clf(line: bytes, seconds: int) -> bytes:
    i = line.index(b"[") + 1
    t = datetime.strptime(line[i:i + 20].decode(), "%d/%b/%Y:%H:%M:%S") + timedelta(seconds=seconds)
    return line[:i] + t.strftime("%d/%b/%Y:%H:%M:%S").encode() + line[i + 20:]


_TEXTS = ["", "-", " ", "a\"b", "a\\b", "caf\u00e9", "x\ty", "1.2.3.4, 5.6.7.8", " 9.9.9.9 ,1.1.1.1", ",", "a : b",
          "/p?q=1", "?", "/a\\x22b", "0.1, 0.2", "HTTP/1.1"]
_NUMS = [0, 7, 200, 404, 599, 99, 1000, -1, 1.5, 0.0, 200.0, 1e3, 12345678901234567890, "200", "0200", "abc", "-",
         "", "0.012", "1e-3", ".5", "5.", "007", " 5", None, True, [], {}, [1], {"a": 1}]


def _mutate_json(line: bytes, rng: random.Random) -> bytes:
    obj = json.loads(line)
    keys = list(obj)
    kind = rng.randrange(16)
    if kind == 0:
        rng.shuffle(keys)
        obj = {k: obj[k] for k in keys}
    elif kind == 1:  # a key removed
        obj.pop(rng.choice(keys))
    elif kind == 2:  # an odd value for a known or new key
        obj[rng.choice(keys + ["x_custom", "uri", "request", "@timestamp", "server_name", "host",
                               "upstream_name", "body_bytes_sent", "namespace", "log", "message",
                               "start_time", "time_local", "msec", "user_agent"])] = rng.choice(_NUMS + _TEXTS)
    elif kind == 3:  # a text with escapes, quotes, non-ASCII or lists
        obj[rng.choice(["http_user_agent", "path", "remote_addr", "x_forwarded_for", "vhost", "method",
                        "proxy_upstream_name", "upstream_addr", "upstream_response_time", "request_id"])] = rng.choice(_TEXTS)
    elif kind == 4:  # late / future / other time shapes
        t = obj["time"]
        obj["time"] = rng.choice([_shift_iso(t, -rng.choice([40, 3600])), _shift_iso(t, 10**5),
                                  t.replace("+00:00", "Z"), t.replace("+00:00", ".123Z"),
                                  t.replace("+00:00", ".123456+00:00"), t.replace("+00:00", ".1Z"),
                                  t.replace("+00:00", "+02:00"), t.replace("+00:00", ""), t[:10] + "X" + t[11:],
                                  t.replace("-", "/", 1), "2026-02-30T10:00:00Z", 1767614400, "07/Jan/2026:12:00:00 +0000"])
    elif kind == 5:  # raw text surgery on the line
        return rng.choice([line.replace(b", ", b",").replace(b": ", b":"), line.replace(b", ", b" ,  ", 3),
                           line + b" ", line + b"x", line[:rng.randrange(1, len(line))], b" " + line,
                           line.replace(b", ", b",\t", 1), line.replace(b"}", b', "status": 200}'),
                           line.replace(b"}", b', "x": 1}'), b"[" + line + b"]", b"", line.replace(b'"', b"'", 2)])
    elif kind == 6:  # an envelope around the line
        return json.dumps({"log": line.decode(), "kubernetes": {"namespace_name": "shop"}}).encode()
    elif kind == 7:  # 404 with a query string
        obj["status"] = 404
        obj["path"] = obj["path"] + "?x=1"
    elif kind == 8:  # sizes and latencies as strings or unset
        obj[rng.choice(["bytes_sent", "request_length", "request_time", "duration", "upstream_response_time",
                        "status"])] = rng.choice(["612", "-", "", "0.012", "1", 0, 1])
    elif kind == 9:  # the weak keys alone
        obj.pop("remote_addr")
        obj.pop(rng.choice(["request_time", "bytes_sent", "proxy_upstream_name"]))
    elif kind == 10:  # both keys of one field
        obj[rng.choice(["host", "uri", "request_method", "user_agent", "timestamp"])] = "x"
    else:
        return line
    return json.dumps(obj).encode()


def _mutate_text(line: bytes, rng: random.Random, fmt: str) -> bytes:
    kind = rng.randrange(14)
    if kind == 0:  # escapes / bytes outside printable ASCII
        return line.replace(b"HTTP/", rng.choice([b"\\x22HTTP/", b"\\\"HTTP/", b"\xc3\xa9HTTP/", b"\tHTTP/"]), 1)
    if kind == 1:  # truncated
        return line[:rng.randrange(1, len(line))]
    if kind == 2:  # extra or missing text at the end
        return rng.choice([line + b" ", line + b" extra", line.rsplit(b" ", 1)[0], line + b"\r"])
    if kind == 3:  # odd request lines
        q = line.split(b'"')
        q[1] = rng.choice([b"GET /", b"get /a HTTP/1.1", b"G3T /a HTTP/1.1", b"GET  /a HTTP/1.1", b"GET ?x HTTP/1.1",
                           b"GET /a HTTP/1.1 x", b"-", b"", b"PATCHp /a HTTP/1.1", b"GET - HTTP/1.1",
                           q[1].replace(b" HTTP", b"?a=1&b HTTP", 1)])
        return b'"'.join(q)
    if kind == 4:  # odd statuses and sizes
        q = line.split(b'"')
        i = 2
        toks = q[i].split(b" ")
        j = 1 if fmt == "combined" else rng.choice([1, 3, 4, 5, 6])
        toks[j] = rng.choice([b"-", b"0200", b"20", b"2000", b"12x", b"", b"0", b"1.5", b"007", b"99999999999999999"])
        q[i] = b" ".join(toks)
        return b'"'.join(q)
    if kind == 5:  # 404 with a query
        q = line.split(b'"')
        q[1] = q[1].replace(b" HTTP", b"?x=1 HTTP", 1)
        toks = q[2].split(b" ")
        toks[1] = b"404"
        q[2] = b" ".join(toks)
        return b'"'.join(q)
    if kind == 6:  # an extra quote
        return line.replace(b'" ', b'"" ', 1)
    if kind == 7:  # quoted fields emptied or odd
        q = line.split(b'"')
        i = rng.choice([3, 5] if fmt == "combined" else [3, 5, 7, 9, 11])
        q[i] = rng.choice([b"", b"-", b" ", b"a, b", b" 1.1.1.1 , 2.2.2.2", b"10.0.0.1:80, 10.0.0.2:80", b"x : y"])
        return b'"'.join(q)
    if fmt == "combined":
        if kind == 8:
            return rng.choice([b"-" + line[line.index(b" "):], line[line.index(b" "):],
                               line.replace(b" - - ", b" - u s ", 1), line.replace(b" - - ", b" x - ", 1)])
        if kind == 9:
            return rng.choice([_shift_clf(line, -3600), _shift_clf(line, 10**5), _shift_clf(line, -40),
                               line.replace(b"+0000", b"+0100", 1), line.replace(b"/20", b"/2x", 1),
                               line.replace(b"+0000]", b"+000]", 1), line.replace(b":", b"-", 1)])
        return line
    # envoy
    if kind == 8:  # time shapes
        e = line.index(b"]")
        ts = line[1:e].decode()
        ts = rng.choice([ts[:19] + "Z", ts[:19] + ".123456Z", ts.replace("Z", "+00:00"), ts[:-1], ts[:19] + ".1Z",
                         ts.replace("Z", "-03:30"), "2026-02-30T10:00:00.000Z", _shift_iso(ts, -3600),
                         _shift_iso(ts, 10**5), "1767614400"])
        return b"[" + ts.encode() + line[e:]
    if kind == 9:  # response flags, upstream service time lists
        q = line.split(b'"')
        toks = q[2].split(b" ")
        toks[2] = rng.choice([b"UF,URX", b"NR", b"-"])
        toks[6] = rng.choice([b"12,13", b"-", b"1.5"])
        q[2] = b" ".join(toks)
        return b'"'.join(q)
    return line


@pytest.mark.parametrize("fmt,window_s,partitions", [("combined", 60, 1), ("combined", 10, 3), ("json", 60, 1),
                                                     ("json", 10, 3), ("envoy", 60, 1), ("envoy", 10, 3)])
def test_mutated_lines_identical(fmt, window_s, partitions):
    rng = random.Random(window_s * 7 + len(fmt))
    lines = _gen(fmt, 12_000, seed=11)
    mut = (lambda x: _mutate_json(x, rng)) if fmt == "json" else (lambda x: _mutate_text(x, rng, fmt))
    lines = [mut(x) if rng.random() < 0.25 else x for x in lines]
    fast, careful = _assert_same(fmt, _batches(lines, 1500, partitions), window_s=window_s, lateness_s=30,
                                 max_future_s=300)
    codes = {r[2] for r in careful["rejected"]}
    assert {"late", "future", "parse_error"} <= codes, codes
    # the mutated lines the extractor cannot vouch for went to the careful path, the rest did not
    assert 0.03 * len(lines) < fast["slow_lines"] < 0.3 * len(lines), fast["slow_lines"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_wall_clock_now_and_lines_in_place_identical(fmt):
    from test_fastloop import _InPlace

    rng = random.Random(5)
    lines = _gen(fmt, 6000, seed=3)
    mut = (lambda x: _mutate_json(x, rng)) if fmt == "json" else (lambda x: _mutate_text(x, rng, fmt))
    lines = [mut(x) if rng.random() < 0.1 else x for x in lines]
    for i in range(0, len(lines), 997):
        lines[i] = b""
    t0 = datetime(2026, 1, 5, 12, 0, 8, tzinfo=timezone.utc).timestamp()
    batches = _batches(lines, 1500, partitions=2, now=t0)
    fast, careful = _assert_same(fmt, batches, window_s=10, lateness_s=5, max_future_s=5)
    assert any(r[2] == "future" for r in careful["rejected"])
    inplace = _run(fmt, True, [(p, _InPlace([x or None for x in ls]), now) for p, ls, now in batches],
                   window_s=10, lateness_s=5, max_future_s=5)
    for field in _FIELDS + ("slow_lines",):
        assert inplace[field] == fast[field], field


def test_request_tables_at_tiny_bounds_identical():
    from patrol.preagg import _fastloop

    old = _fastloop.limits(req_max=50, win_cache_max=20)
    try:
        for fmt in FORMATS:
            _assert_same(fmt, _batches(_gen(fmt, 5000, seed=8), 1000), window_s=10, lateness_s=BIG,
                         max_future_s=BIG, max_templates_per_host=5)
    finally:
        _fastloop.limits(*old)


# -- hypothesis: JSON objects of any keys and values --------------------------------------------
_KEYS = sorted(set(json.loads(_gen("json", 1, seed=1)[0])) | {
    "uri", "request_uri", "host", "http_host", "user_agent", "request_method", "upstream_name", "body_bytes_sent",
    "upstream_status", "upstream_response_length", "timestamp", "time_iso8601", "x_custom", "namespace", "log"})
_scalar = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**20), st.floats(allow_nan=False, width=32),
                    st.text(alphabet='-0123456789.,:? /"\\aZé\t', max_size=12),
                    st.sampled_from(["-", "", "200", "0.012", "10.0.0.1:80", "2026-01-05T12:00:30Z"]))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.integers(0, 199), st.sampled_from(_KEYS), _scalar | st.just("<drop>")),
                      max_size=12),
       compact=st.booleans())
def test_json_hypothesis_identical(edits, compact):
    lines = _gen("json", 200, seed=6, rate=50.0)
    objs = [json.loads(x) for x in lines]
    for i, k, v in edits:
        if v == "<drop>":
            objs[i].pop(k, None)
        else:
            objs[i][k] = v
    sep = (",", ":") if compact else (", ", ": ")
    lines = [json.dumps(o, separators=sep).encode() for o in objs]
    batches = _batches(lines, 70)
    fast = _run("json", True, batches, window_s=10, lateness_s=BIG, max_future_s=BIG)
    careful = _run("json", False, batches, window_s=10, lateness_s=BIG, max_future_s=BIG)
    for field in _FIELDS:
        assert fast[field] == careful[field], field
    # An edited event time (e.g. 0, decades before the others) can send every later line of the batch to
    # the careful path, which still gives identical results (checked above); otherwise the unedited lines
    # must take the extractor.
    if not any(k in ("time", "timestamp", "time_iso8601", "time_local", "msec") for _, k, _ in edits):
        assert fast["slow_lines"] < len(lines) - len(edits), "the unedited lines must take the extractor"


def test_json_key_table_covers_every_nginx_json_key():
    # Every key the careful parser maps is either read by the extractor, ignored because its
    # field is text the aggregator never reads, or sends the line to the careful path; the keys the
    # aggregator reads are never ignored.
    from patrol.preagg import _fastloop
    from patrol.preagg.parse.jsonfmt import NGINX_JSON

    classes = _fastloop.json_key_classes()
    assert set(NGINX_JSON) <= set(classes)
    read = {"time", "remote_addr", "body_bytes_sent", "request_length", "request_time", "status", "host", "path",
            "method", "user_agent", "upstream_name", "upstream_addr", "upstream_response_time", "<uri>", "<request>"}
    for k, spec in NGINX_JSON.items():
        if spec[0] in read:
            assert classes[k] != "ignore", k
    for k in ("start_time", "response_code", "StartUTC", "DownstreamStatus", "RouterName"):
        assert classes[k] == "defer", k


@pytest.mark.parametrize("fmt", FORMATS)
def test_generator_renderings_carry_the_default_lines_fields(fmt):
    # the benchmark's pairing is fair only if each rendering is the same request: the careful
    # parsers read the same fields out of both lines
    from patrol.preagg.parse import get_parser

    base = get_parser("ingress-nginx")
    other = get_parser(fmt)
    gen = list(generate_lines(n=3000, seed=9, base_rate=200.0, start="2026-01-05T12:00:00Z"))
    same = ["method", "path", "query", "status", "remote_addr", "user_agent"]
    if fmt != "combined":
        same += ["request_time"]
    if fmt == "json":
        same += ["upstream_name", "request_length", "upstream_addr", "upstream_response_time"]
    elif fmt == "envoy":
        same += ["request_length"]
    for t, _, line in gen:
        a, b = base(line), other(reformat(line, fmt, t))
        assert int(a["time"]) == int(b["time"]) == int(t)
        assert a["body_bytes_sent"] == b["body_bytes_sent"]
        for k in same:
            assert a[k] == b[k], (k, line)
