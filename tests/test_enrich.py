"""``preagg.enrich.country``: the flat-table lookup answers exactly what geoip2fast's own
``GeoIP2Fast.lookup`` answers (through ``country()``'s result rule), address by address.

The flat table copies geoip2fast's internal lists (module globals of ``geoip2fast.geoip2fast``),
so these tests are what makes a library update that changes those internals fail loudly.
"""

from __future__ import annotations

import ipaddress
import random

import pytest

from patrol.preagg import enrich


def _rule(cc) -> str:  # country()'s rule on the library's country_code
    return cc if cc and len(cc) == 2 and cc.isalpha() else "--"


@pytest.fixture(scope="module")
def ref():
    """``country()`` as it was: ``GeoIP2Fast.lookup`` per address, through the result rule."""
    from geoip2fast import GeoIP2Fast

    enrich.warm()
    # A fresh instance: the library's tables are module globals, and another GeoIP2Fast() in this
    # process (other tests load the IPv4-only file) replaces them for every instance.
    geo = GeoIP2Fast(geoip2fast_data_file="geoip2fast-ipv6.dat.gz")

    def country(ip):
        if not ip or ip == "-":
            return "--"
        try:
            return _rule(geo.lookup(ip).country_code)
        except Exception:
            return "--"

    return country


@pytest.fixture(scope="module")
def ranges(ref):
    """``(start, netlen)`` of every range in the library's loaded tables (the reference's)."""
    import geoip2fast.geoip2fast as g

    return [(s, n) for c, m in zip(g.mainListFirstIP, g.mainListNetlength) for s, n in zip(c, m)]


def _text(n: int) -> str:
    return str(ipaddress.IPv4Address(n) if n < 1 << 32 else ipaddress.IPv6Address(n))


def _assert_same(ref, addrs):
    addrs = list(addrs)
    bad = [(a, enrich.country_of(a), ref(a)) for a in addrs if enrich.country_of(a) != ref(a)]
    assert not bad, (len(bad), len(addrs), bad[:10])


def test_the_flat_table_is_in_use():
    # None would mean the library's tables no longer have the shape the copy relies on: lookups
    # still give the right answers (through GeoIP2Fast.lookup) but ~5x slower
    enrich.warm()
    assert enrich._fast is not None


def test_random_ipv4_across_the_whole_space(ref):
    r = random.Random(11)
    addrs = [_text(r.getrandbits(32)) for _ in range(40_000)]
    _assert_same(ref, addrs)
    assert len({enrich.country_of(a) for a in addrs}) > 150  # real answers, not all "--"


def test_every_4096_block_edge_of_a_sample(ref):
    # the IPv4 path answers whole 4096-address blocks from one table: probe block edges
    r = random.Random(12)
    blocks = r.sample(range(1 << 20), 20_000)
    addrs = [_text(n) for b in blocks for n in ((b << 12) - 1, b << 12, (b << 12) + 4095) if 0 <= n < 1 << 32]
    _assert_same(ref, addrs + ["255.255.255.255", "0.0.0.0"])


def test_range_boundaries_plus_minus_one(ref, ranges):
    r = random.Random(13)
    v4 = [x for x in ranges if x[0] < 1 << 32]
    v6 = [x for x in ranges if x[0] >= 1 << 32]
    addrs = []
    for s, n in r.sample(v4, 5000) + v4[:50] + v4[-50:]:
        end = s + (1 << (32 - n)) - 1
        addrs += [_text(x) for x in (s - 1, s, s + 1, end - 1, end, end + 1) if 0 <= x < 1 << 32]
    for s, n in r.sample(v6, 5000) + v6[:50] + v6[-50:]:
        end = s + (1 << (128 - n)) - 1
        addrs += [_text(x) for x in (s - 1, s, s + 1, end - 1, end, end + 1) if 1 << 32 < x < 1 << 128]
    _assert_same(ref, addrs)


def test_ipv6_random_and_inside_ranges(ref, ranges):
    r = random.Random(14)
    addrs = [_text(r.getrandbits(128)) for _ in range(5000)]
    addrs += [_text(r.randrange(0x2000 << 112, 0x4000 << 112)) for _ in range(10_000)]  # global unicast
    v6 = [x for x in ranges if x[0] >= 1 << 32]
    addrs += [_text(s + r.randrange(1 << (128 - n))) for s, n in r.sample(v6, 10_000)]
    # numbers just above 2**32 (IPv4 sizing stops there) up to the first IPv6 range
    addrs += [_text((1 << 32) + d) for d in (0, 1, 2, 4095, 1 << 20)] + [_text(v6[0][0] + d) for d in (-1, 0, 1)]
    _assert_same(ref, addrs)
    assert len({enrich.country_of(a) for a in addrs}) > 50


def test_private_loopback_and_invalid_texts(ref):
    addrs = [None, "", "-", "10.0.0.1", "127.0.0.1", "192.168.1.1", "172.16.5.4", "100.64.0.1", "169.254.1.1",
             "224.0.0.1", "240.0.0.1", "::1", "::", "fe80::1", "fc00::1", "ff02::1", "2001:db8::1",
             "::ffff:8.8.8.8", "::8.8.8.8", "::1:0:0", "::ffff:ffff", "64:ff9b::808:808", "2002:808:808::1",
             "8.8.8.8", "2001:4860:4860::8888",
             # inet_aton's liberal forms, which the library accepts as IPv4
             "10.1", "127.1", "8.8", "134744072", "0x8.0x8.0x8.0x8", "010.010.010.010", "1.2.3.4 x",
             "8.8.8.8 :", "8.8.8.8\n", "8.8.8.8\t:1",
             # invalid
             "abc", "1.2.3", "256.1.1.1", "1.2.3.4.5", " 1.2.3.4", "1.2.3.4:80", "[::1]", "::1 ", "1::2::3",
             "2001:db8::g", "8.8.8.8\x00", "ä.b.c.d", "::ffff:1.2.3.4.5", ":", "1.2.3.-4", "0x", "."]
    _assert_same(ref, addrs)


def test_country_is_country_of_cached():
    enrich.country.cache_clear()
    assert enrich.country("8.8.8.8") == enrich.country_of("8.8.8.8") == "US"
    assert enrich.country("8.8.8.8") == "US"
    assert enrich.country.cache_info().hits == 1
    assert enrich.country("10.0.0.1") == "--" and enrich.country(None) == "--"
