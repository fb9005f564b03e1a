"""Fuzz: random and mutated lines never raise anything but ParseError out of any parser,
and whatever parses has the canonical keys and types.  For the default format the
fast path and the careful path must agree exactly (same dict, or both reject)."""

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patrol.preagg.errors import ParseError
from patrol.preagg.parse import FORMATS, KEYS, compile_log_format, get_parser
from patrol.preagg.parse.ingress import _slow
from fixture_data import log_path



def _samples():
    beats = log_path("ingress_nginx_beats_sample.log")
    combined = log_path("apache_combined_10k.log")
    lines = beats.read_text().splitlines()
    lines += combined.read_text(errors="replace").splitlines()[::500]
    lines += [
        '[2016-04-15T20:17:00.310Z] "POST /api/v1/locations HTTP/2" 204 - 154 0 226 100 "10.0.35.28" '
        '"nsq2http" "cc21d9b0" "locations" "tcp://10.0.2.1:80"',
        json.dumps({"time": "2024-03-01T10:00:00+00:00", "status": 200, "path": "/a", "method": "GET"}),
        json.dumps({"log": lines[0], "kubernetes": {"namespace_name": "x", "labels": {"a": "b"}}}),
    ]
    return lines


SAMPLES = _samples()
PARSERS = dict(FORMATS)
PARSERS["custom"] = compile_log_format('$remote_addr [$time_local] "$request" $status $upstream_addr $request_time')
PARSERS["strict-envelope"] = get_parser("ingress-nginx", envelope=True)
PARSERS["namespaces"] = get_parser("ingress-nginx", namespaces=["kube-system"])

ALPHABET = st.sampled_from(list(' "[]\\{}:,-./?=0123456789aAxXe_+\t\n\x00\x1cé✓٣') + [
    "\\x22", "\\xC3\\xA9", ", ", " : ", "1e999", "nan", "-", "  "])


def check_record(rec):
    """Canonical keys, in order, with the documented types."""
    assert isinstance(rec, dict) and tuple(rec) == KEYS
    assert isinstance(rec["time"], float) and math.isfinite(rec["time"])
    for k in ("status", "body_bytes_sent", "request_length"):
        assert rec[k] is None or (type(rec[k]) is int and rec[k] >= 0), k
    assert rec["request_time"] is None or (isinstance(rec["request_time"], float) and rec["request_time"] >= 0)
    for k in ("remote_addr", "remote_user", "method", "path", "query", "protocol", "referer", "user_agent",
              "host", "upstream_name", "namespace", "service", "service_port", "req_id"):
        assert rec[k] is None or isinstance(rec[k], str), k
    assert all(isinstance(a, str) for a in rec["upstream_addr"])
    assert all(x is None or type(x) is int for x in rec["upstream_status"] + rec["upstream_response_length"])
    assert all(x is None or isinstance(x, float) for x in rec["upstream_response_time"])
    assert isinstance(rec["labels"], dict) and all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in rec["labels"].items())
    assert isinstance(rec["flags"], tuple)


def run_all(line):
    for name, p in PARSERS.items():
        try:
            rec = p(line)
        except ParseError as e:
            assert isinstance(e.reason, str) and e.reason and isinstance(e.code, str), name
        else:
            check_record(rec)


@st.composite
def mutated(draw):
    line = draw(st.sampled_from(SAMPLES))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(line)))
        op = draw(st.sampled_from(["insert", "delete", "replace", "truncate", "dup"]))
        if op == "insert":
            line = line[:i] + draw(ALPHABET) + line[i:]
        elif op == "delete":
            line = line[:i] + line[i + draw(st.integers(1, 8)):]
        elif op == "replace":
            line = line[:i] + draw(ALPHABET) + line[i + 1:]
        elif op == "truncate":
            line = line[:i]
        else:
            j = draw(st.integers(i, min(len(line), i + 20)))
            line = line[:j] + line[i:j] + line[j:]
    return line


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.text(max_size=300))
def test_random_text_only_parse_errors(line):
    run_all(line)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_only_parse_errors(line):
    run_all(line)


@FUZZ
@given(mutated())
def test_mutated_real_lines_only_parse_errors(line):
    run_all(line)
    run_all(line.encode("utf-8", "surrogatepass"))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_fast_path_agrees_with_careful_path(line):
    fast = get_parser("ingress-nginx", envelope=False)
    try:
        got = fast(line)
    except ParseError as e:
        got = ("error", e.code)
    try:
        want = _slow(line)
    except ParseError as e:
        want = ("error", e.code)
    assert got == want


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3), max_leaves=8)
JSON_KEYS = st.sampled_from(["time", "status", "path", "method", "request", "upstream_status", "upstream_addr",
                             "StartUTC", "DownstreamStatus", "Duration", "RequestPath", "start_time",
                             "response_code", "duration", "log", "message", "kubernetes", "x_forwarded_for",
                             "upstream_cluster", "ServiceName", "bytes_sent", "request_time"])


@FUZZ
@given(st.dictionaries(JSON_KEYS, JSON_VALUES, max_size=8))
def test_random_json_objects_only_parse_errors(obj):
    try:
        line = json.dumps(obj)
    except ValueError:
        return
    run_all(line)


BIG = "9" * 5000   # beyond Python's 4300-digit int() limit, which raises a plain ValueError


@pytest.mark.parametrize("line", [
    '1.1.1.1 - - [07/Feb/2020:11:48:51 +0000] "GET / HTTP/1.1" %s 5 "-" "-" 1 0.1 [a-b-1] [] x:1 1 0.1 200 r' % BIG,
    '1.1.1.1 - - [07/Feb/2020:11:48:51 +0000] "GET / HTTP/1.1" 200 5 "-" "-" 1 0.1 [a-b-1] [] x:1 1 0.1 %s r' % BIG,
    '1.1.1.1 - - [07/Feb/2020:11:48:51 +0000] "GET / HTTP/1.1" 200 5 "-" "-" 1 1e999 [a-b-1] [] x:1 1 0.1 2 r',
    json.dumps({"time": 10**400, "status": 200}),
    json.dumps({"time": "2024-01-01T00:00:00Z", "status": 200, "request_time": 10**400}),
    json.dumps({"time": "9999-12-31T23:59:59-23:59", "status": 200}),
    json.dumps({"time": "2024-01-01T00:00:00Z", "status": 200, "upstream_status": BIG}),
    json.dumps({"time": "2024-01-01T00:00:00Z", "status": 10**20}),
    '[%s] "GET / HTTP/1.1" 200 - 1 1 1 1 "-" "-" "-" "-" "-"' % BIG,
])
def test_huge_numbers_are_parse_errors(line):
    hits = 0
    for name, p in PARSERS.items():
        try:
            check_record(p(line))
        except ParseError as e:
            hits += 1
            assert e.code in ("bad_number", "bad_time", "format_mismatch", "bad_json", "bad_envelope",
                              "not_access_log"), (name, e.code)
    assert hits >= 1
