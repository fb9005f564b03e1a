"""Issue #13 B: junk request lines (TLS handshakes on an HTTP port, random bytes, no request at
all) are counted as their own signal, ``junk_requests`` per service, and make no route series;
combined logs (no upstream field) can be given a service name."""

import pytest

from patrol.preagg import aggregate
from patrol.preagg.aggregate import Aggregator
from fixture_data import log_path

FIXTURE = log_path("apache_combined_10k.log")
TS = "23/Nov/2026:00:00:{:02d} +0000"
# What nginx writes for bytes that are not an HTTP request line: each byte as \xXX.
TLS = r"\x16\x03\x01\x02\x00\x01\x00\x01\xFC\x03\x03\xA8\x1B"
JUNK_REQUESTS = [TLS, r"\x00\x0E8\xA1\xC4\x7F", "-", "1234 /x HTTP/1.1", "\x7fELF\x02 / HTTP/1.1"]


def _ingress(sec: int, request: str, up: str, status: int = 200) -> bytes:
    return (f'198.51.100.{sec % 200 + 1} - - [{TS.format(sec)}] "{request}" {status} 150 "-" "-" 0 0.001 '
            f'[{up}] [] {"-" if not up else "10.244.0.5:8080"} 0 0.001 {status if up else "-"} rid{sec}').encode()


def _lines():
    out = []
    for s in range(40):
        out.append(_ingress(s, f"GET /api/v1/orders/{1000 + s} HTTP/1.1", "shop-api-8080"))
    for s, req in enumerate(JUNK_REQUESTS):
        out.append(_ingress(41 + s, req, "", 400))                 # rejected before routing
    out.append(_ingress(50, "\x16\x03\x01 /x HTTP/1.1", "shop-api-8080", 400))   # junk reaching a service
    return out


def _points(agg: Aggregator, lines):
    rej = agg.feed(lines)
    agg.close_all()
    return rej, [p for cw in agg.drain() for p in cw.points()]


def _by(points, metric, scope):
    return {(p.dims.get("namespace"), p.dims.get("service")): p.value for p in points
            if p.metric == metric and p.dims["scope"] == scope}


@pytest.mark.parametrize("compiled", [False] + ([True] if aggregate.COMPILED else []))
def test_junk_requests_are_their_own_signal_and_no_route(compiled):
    rej, pts = _points(Aggregator(window_s=60, lateness_s=10**6, max_future_s=10**9, compiled=compiled), _lines())
    assert rej == []                                               # counted, not dropped
    junk = _by(pts, "junk_requests", "service")
    assert junk[("-", "-")] == len(JUNK_REQUESTS)
    assert junk[("shop", "api")] == 1
    assert _by(pts, "junk_requests", "global")[(None, None)] == len(JUNK_REQUESTS) + 1
    assert _by(pts, "requests", "service")[("shop", "api")] == 41  # still requests nginx answered
    routes = {(p.dims["service"], p.dims["template"]) for p in pts if p.dims["scope"] == "route"}
    assert routes == {("api", "/api/v1/orders/:id")}               # no "-" route made of junk


def test_compiled_and_pure_loops_agree_on_junk():
    if not aggregate.COMPILED:
        pytest.skip("compiled loop not built")
    runs = []
    for compiled in (False, True):
        _, pts = _points(Aggregator(window_s=60, lateness_s=10**6, max_future_s=10**9, compiled=compiled), _lines())
        runs.append([p.to_bytes() for p in pts])
    assert runs[0] == runs[1] and runs[0]


def test_combined_log_junk_and_default_service():
    lines = FIXTURE.read_bytes().splitlines()[:200]
    junk = [f'203.0.113.9 - - [17/May/2015:10:05:40 +0000] "{r}" 400 166 "-" "-"'.encode()
            for r in (TLS, "-", r"\x00\x0E8\xA1")]
    agg = Aggregator(window_s=3600, lateness_s=10**6, max_future_s=10**9, fmt="combined", default_service="blog")
    rej, pts = _points(agg, lines + junk)
    assert rej == []
    services = {(p.dims["namespace"], p.dims["service"]) for p in pts if p.dims["scope"] == "service"}
    assert services == {("-", "blog")}                            # not "-" for everything
    assert sum(p.value for p in pts if p.metric == "junk_requests" and p.dims["scope"] == "service") == 3
    assert sum(p.value for p in pts if p.metric == "requests" and p.dims["scope"] == "service") == 203
    assert all(p.dims["template"] != "-" for p in pts if p.dims["scope"] == "route")


def test_default_service_is_a_setting():
    from patrol.streams.config import load_settings

    assert load_settings(overrides={"preagg.default_service": "blog"}).preagg.default_service == "blog"
    assert load_settings().preagg.default_service is None
