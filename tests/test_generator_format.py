"""Generated lines are valid ingress-nginx default-format lines with realistic fields."""

from __future__ import annotations

import ipaddress
from collections import Counter

import numpy as np
import pytest

from patrol.sim.generator import TrafficModel, generate_chunks, generate_lines
from test_generator_helpers import LINE_RE, REAL_SAMPLE, parse

START = "2026-01-05T12:00:00Z"


@pytest.fixture(scope="module")
def sample():
    """50k lines around midday with the default incident mix (which starts 20 minutes in)."""
    return list(generate_lines(n=50_000, seed=11, start=START, incidents="default", base_rate=40))


def test_reference_regex_accepts_real_ingress_lines():
    # The test's regex is only a fair judge if it accepts real ingress-nginx lines.
    real = REAL_SAMPLE.read_text().splitlines()
    good = [real[0], real[6], real[22]]  # plain, curl/wget UA, retry with two upstreams
    for line in good:
        assert LINE_RE.match(line), line


def test_every_line_matches_default_format(sample):
    bad = [line for _, _, line in sample if not LINE_RE.match(line.decode())]
    assert not bad, f"{len(bad)} lines do not match, first: {bad[0]!r}"


def test_fields_are_consistent(sample):
    statuses = Counter()
    retries = 0
    for t, key, raw in sample:
        m = LINE_RE.match(raw.decode())
        ipaddress.ip_address(m["addr"])  # raises on a malformed address
        assert m["upstream"].encode() == key, "Kafka key must be $proxy_upstream_name"
        addrs = m["uaddr"].split(", ")
        # All four upstream columns list one entry per upstream tried.
        for col in ("ulen", "utime", "ustatus"):
            assert len(m[col].split(", ")) == len(addrs), raw
        for a in addrs:
            host, port = a.rsplit(":", 1)
            ipaddress.ip_address(host)
            assert 0 < int(port) < 65536
        if len(addrs) == 2:
            retries += 1
            assert m["ustatus"].split(", ")[0] == "502"
            assert m["ustatus"].split(", ")[1] == m["status"]
        elif m["status"] != "499":
            assert m["ustatus"] == m["status"]
        assert float(m["rt"]) + 0.0015 >= sum(float(x) for x in m["utime"].split(", ") if x != "-")
        assert int(m["reqlen"]) > len(m["target"]) + len(m["ua"])
        assert abs(int(t) - _epoch(m["time"])) == 0, "event time must equal $time_local (to the second)"
        statuses[int(m["status"]) // 100] += 1
    n = len(sample)
    assert statuses[2] / n > 0.8
    assert 0.01 < statuses[3] / n < 0.15
    assert 0.01 < statuses[4] / n < 0.15
    assert 0 < statuses[5] / n < 0.05
    assert 0.0005 < retries / n < 0.02


def test_event_times_non_decreasing(sample):
    ts = np.array([t for t, _, _ in sample])
    assert np.all(np.diff(ts) >= 0)


def test_realistic_variety(sample):
    p = parse([line for _, _, line in sample])
    assert len(set(p.upstream)) >= 8, "several services"
    namespaces = {u.split("-")[0] for u in p.upstream}
    assert len(namespaces) >= 5
    assert any("?" in x for x in p.target), "query strings sometimes"
    assert any(c.isdigit() for x in p.target for c in x.split("/")[-1]), "numeric ids"
    uuid_like = sum(1 for x in p.target if len(x.split("/")[-1].split("?")[0]) == 36 and x.count("-") >= 4)
    assert uuid_like > 100, "uuid ids"
    v6 = sum(1 for a in set(p.addr) if ":" in a)
    assert 0.03 < v6 / len(set(p.addr)) < 0.25, "some IPv6 clients"
    for a in set(p.addr):
        ip = ipaddress.ip_address(a)
        assert ip.is_global, f"client {a} is not a public address"
    uas = Counter(LINE_RE.match(line.decode())["ua"] for _, _, line in sample[:5000])
    kinds = {"bot": any("bot" in u.lower() for u in uas), "curl": any(u.startswith("curl/") for u in uas),
             "mobile": any("Mobile" in u for u in uas), "browser": any("Windows NT" in u for u in uas)}
    assert all(kinds.values()), kinds


def test_requests_per_client_are_heavy_tailed(sample):
    p = parse([line for _, _, line in sample])
    counts = np.sort(np.array(list(Counter(p.addr).values())))[::-1]
    top = counts[: max(1, len(counts) // 100)].sum() / counts.sum()
    assert top > 0.2, f"top 1% of clients should send a large share, got {top:.2f}"
    assert np.median(counts) <= 3


def test_clients_geolocate_to_a_country_mix():
    import geoip2fast  # a dependency of the project (offline database in the wheel)
    g = geoip2fast.GeoIP2Fast()
    model = TrafficModel(seed=3)
    intended = {ip.decode(): cc for ip, cc in zip(model.client_ip, model.client_country)}
    chunk = next(generate_chunks(n=20_000, seed=3, start=START, incidents="none"))
    addrs = {line.split(b" ", 1)[0].decode() for line in chunk.lines}
    v4 = [a for a in addrs if ":" not in a]  # the bundled database covers IPv4 only
    found = {a: g.lookup(a).country_code for a in v4}
    cc = Counter(found.values())
    assert cc["US"] / len(v4) > 0.15
    assert len([c for c, k in cc.items() if k / len(v4) > 0.02]) >= 8, cc
    wrong = [a for a in v4 if found[a] != intended[a]]
    # Registries reassign small blocks over time; a handful of strays is fine, a wrong range is not.
    assert len(wrong) / len(v4) < 0.005, wrong[:10]


def _epoch(ts: str) -> int:
    from calendar import timegm
    from time import strptime

    return timegm(strptime(ts[:-6], "%d/%b/%Y:%H:%M:%S"))
