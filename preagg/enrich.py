"""Offline enrichment at window close: device class from the user agent, country from the IP.

Both run once per *distinct* UA / IP per window (never per line) and are cached, because
ua-parser costs ~0.3 ms per string and the hot loop budget is ~3 us per line.

* Device class: ``ua-parser`` (regexes shipped in ``ua-parser-builtins``) -> ``desktop``,
  ``mobile`` (phones and tablets), ``bot`` (crawlers, monitors, scripted clients) or ``other``.
* Country: ``geoip2fast`` (ISO country database shipped inside the PyPI wheel, IPv4 + IPv6; no
  network), searched in flat copies of its tables (same answers as its ``lookup()``, ~7x cheaper
  for IPv4). Private, loopback and unknown addresses map to ``--``.
"""

from __future__ import annotations

import re
import socket
from array import array
from bisect import bisect_left, bisect_right
from functools import lru_cache
from itertools import islice
from operator import lt

__all__ = ["DEVICE_CLASSES", "device_class", "country", "country_of", "warm"]

DEVICE_CLASSES = ("desktop", "mobile", "bot", "other")

_MOBILE_OS = frozenset(("iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS", "Symbian OS", "Tizen",
                        "iPadOS", "HarmonyOS", "Firefox OS", "webOS"))
_DESKTOP_OS = frozenset(("Windows", "Mac OS X", "Linux", "Ubuntu", "Fedora", "Debian", "Chrome OS", "FreeBSD",
                         "OpenBSD", "NetBSD", "Solaris", "macOS", "Red Hat", "SUSE", "Mint", "Arch Linux",
                         "CentOS"))
# Scripted clients and monitors are automated traffic for security signals even though
# ua-parser does not call them spiders.
_BOT_RE = re.compile(r"bot|crawl|spider|slurp|scan|curl|wget|python|go-http|java/|okhttp|libwww|httpclient|"
                     r"monitor|probe|headless|phantom|axios|node-fetch|kube-probe|prometheus|uptime", re.I)


@lru_cache(maxsize=65536)
def device_class(ua: str | None) -> str:
    """Classify a user-agent string into one of :data:`DEVICE_CLASSES` (cached per string)."""
    if not ua or ua == "-":
        return "other"
    from ua_parser import parse

    r = parse(ua)
    if (r.device is not None and r.device.family == "Spider") or _BOT_RE.search(ua):
        return "bot"
    osf = r.os.family if r.os is not None else None
    dev = r.device.family if r.device is not None else ""
    if osf in _MOBILE_OS or dev in ("iPhone", "iPad") or "Mobile" in ua:
        return "mobile"
    if osf in _DESKTOP_OS:
        return "desktop"
    return "other"


_geo = None


def _geoip():
    global _geo, _fast
    if _geo is None:
        from geoip2fast import GeoIP2Fast

        # The IPv6 data file holds IPv4 ranges too; loading it once costs ~0.3 s.
        _geo = GeoIP2Fast(geoip2fast_data_file="geoip2fast-ipv6.dat.gz")
        # Right after the load: the library keeps its tables in module globals, which the next
        # GeoIP2Fast() of any other data file in this process replaces.
        _fast = _fast_lookup(_geo)
    return _geo


# geoip2fast's lookup() costs ~5 us (it builds a result object with a CIDR text and a timing
# string per call) and bisects lists of ~0.8M scattered ints; the country needs only the range
# search. _fast_lookup() copies the library's loaded tables once into flat arrays.
_fast = None


def _fast_lookup(geo):
    """A function: non-empty address text -> what :func:`country` returns, reading geoip2fast's
    loaded country tables copied into flat arrays; ``None`` (lookups then go through
    ``GeoIP2Fast.lookup``) when the tables are not in the shape this mirrors. Relies on library
    internals, so ``tests/test_enrich.py`` compares the two address by address. ~0.2 s and ~15 MB
    once, at load."""
    import geoip2fast.geoip2fast as g
    import numpy as np

    try:
        if not geo.country or geo.city or geo.asn or g.MAX_IPv4 != 1 << 32:
            return None
        index, first, ids, nets, names = (g.mainIndex, g.mainListFirstIP, g.mainListIDCountryCodes,
                                          g.mainListNetlength, g.mainListNamesCountry)
        if not len(index) == len(first) == len(ids) == len(nets) or any(
                not c or c[0] != i or len(c) != len(d) or len(c) != len(n)
                for i, c, d, n in zip(index, first, ids, nets)):
            return None
        starts: list = []
        cids: list = []
        netlen = bytearray()  # ValueError outside 0..255: caught below
        for c, d, n in zip(first, ids, nets):
            starts.extend(c)
            cids.extend(d)
            netlen.extend(n)
        # strictly increasing from 0: the library's two-level bisect_right (chunk, then within)
        # is then one bisect_right over all starts, and never lands before the first range
        if starts[0] != 0 or starts[-1] >= 1 << 128 or not all(map(lt, starts, islice(starts, 1, None))):
            return None
        if min(cids) < 0 or max(cids) >= len(names):
            return None
        results = tuple(_result_of(names, i, geo.error_code_private_networks) for i in range(len(names)))
        # lookup() sizes a range by the *queried* number (<= 2**32: IPv4 sizes); an index past
        # the library's lists raises there, which ends as "--": size 0 does the same here
        n4s = tuple(g.numIPsv4) + (0,) * (256 - len(g.numIPsv4))
        n6s = tuple(g.numIPsv6) + (0,) * (256 - len(g.numIPsv6))
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    # A bisect over ~0.8M entries is ~1 us of interpreter work. Most IPv4 numbers are answered
    # by one index: blk[n >> 12] is the result of the whole 4096-address block when one range
    # (or one gap) covers it, else MIXED. The rest bisect only among the starts in their /16:
    # bisect_right(v4, n) == bisect_right(v4, n, lo4[n >> 16], lo4[(n >> 16) + 1]) with
    # lo4[p] = first index whose start >= p << 16. Numbers > 2**32 bisect the other starts as
    # (high 64 bits, low 64 bits) pairs, bounded the same way by their top 16 bits.
    n4 = bisect_right(starts, 1 << 32)
    m64 = (1 << 64) - 1
    v4 = np.array(starts[:n4], dtype=np.uint64)
    hi = np.array([s >> 64 for s in starts[n4:]], dtype=np.uint64)
    lw = np.array([s & m64 for s in starts[n4:]], dtype=np.uint64)
    top = np.arange(65538, dtype=np.uint64)
    lo4 = np.searchsorted(v4, top << np.uint64(16), "left").astype(np.uint64)
    lo6 = np.searchsorted(hi >> np.uint64(48), top, "left").astype(np.uint64)
    nl4 = np.frombuffer(bytes(netlen[:n4]), dtype=np.uint8)
    end4 = v4.astype(np.int64) + np.array(n4s, dtype=np.int64)[nl4] - 1  # < start: empty range
    cid4 = np.array(cids[:n4], dtype=np.int64)
    first_n = np.arange(1 << 20, dtype=np.uint64) << np.uint64(12)
    i = np.searchsorted(v4, first_n, "right") - 1  # >= 0: starts[0] == 0
    alone = np.searchsorted(v4, first_n + np.uint64(4095), "right") - 1 == i  # no start inside
    gap_res = len(results)
    mixed = 65535
    blk = np.full((1 << 20) + 1, mixed, dtype=np.uint16)  # n == 2**32: the last, MIXED
    inside = alone & (end4[i] >= (first_n + np.uint64(4095)).astype(np.int64))
    blk[:-1][inside] = cid4[i][inside]
    blk[:-1][alone & (end4[i] < first_n.astype(np.int64))] = gap_res
    results = results + ("--",)  # gap_res: not found
    v4, hi, lw, lo4, lo6 = (array("Q", x.tobytes()) for x in (v4, hi, lw, lo4, lo6))
    blk = array("H", blk.tobytes())
    netlen = bytes(netlen)
    cids = array("H", cids)

    def lookup(ip, _aton=socket.inet_aton, _pton=socket.inet_pton, _v6=socket.AF_INET6,
               _int=int.from_bytes, _br=bisect_right, _bl=bisect_left):
        # The library tries inet_aton ("10.1", "0x7f.1" ... too), then IPv6. A text inet_pton
        # takes as IPv6 has a ":" before any blank, which inet_aton refuses, so trying IPv6
        # first for texts with a ":" gives the same numbers without a failed inet_aton.
        try:
            n = _int(_pton(_v6, ip) if ":" in ip else _aton(ip), "big")
        except Exception:
            try:
                n = _int(_aton(ip) if ":" in ip else _pton(_v6, ip), "big")
            except Exception:
                return "--"  # invalid
        if n <= 4294967296:
            t = blk[n >> 12]
            if t != mixed:
                return results[t]
            p = n >> 16
            i = _br(v4, n, lo4[p], lo4[p + 1]) - 1
            if n > v4[i] + n4s[netlen[i]] - 1:
                return "--"  # in a gap between ranges: not found
            return results[cids[i]]
        h = n >> 64
        p = n >> 112
        a = lo6[p]
        b = lo6[p + 1]
        j = _bl(hi, h, a, b)
        k = _br(hi, h, j, b)
        if j < k:  # starts with the same high half: order by the low half
            j = _br(lw, n & m64, j, k)
        # j = number of IPv6-part starts <= n; none means the last IPv4 range (sized as IPv6)
        if j:
            start = (hi[j - 1] << 64) | lw[j - 1]
        else:
            start = v4[n4 - 1]
        i = n4 + j - 1
        if n > start + n6s[netlen[i]] - 1:
            return "--"
        return results[cids[i]]

    return lookup


def _result_of(names, i, private) -> str:
    """What ``country()`` makes of ``lookup().country_code`` for country id ``i``."""
    try:
        cc, _name = names[i].split(":")
    except (AttributeError, ValueError):
        return "--"  # the library's internal-error code, ""
    if i < 16:  # the library's reserved/private entries
        cc = private
    return cc if cc and len(cc) == 2 and cc.isalpha() else "--"


def country_of(ip: str | None) -> str:
    """:func:`country` without its LRU cache, for callers that keep their own (window close)."""
    if not ip or ip == "-":
        return "--"
    if _geo is None:
        _geoip()
    if _fast is not None:
        return _fast(ip)
    try:
        cc = _geo.lookup(ip).country_code
    except Exception:  # invalid address text: the library raises its own error types
        return "--"
    return cc if cc and len(cc) == 2 and cc.isalpha() else "--"


@lru_cache(maxsize=262144)
def country(ip: str | None) -> str:
    """ISO 3166 alpha-2 country of ``ip`` (``--`` for private/unknown/invalid), cached per address."""
    return country_of(ip)


def warm() -> None:
    """Load both databases now (GeoIP ~0.3 s + ~0.25 s for the flat tables, ua-parser's regexes
    ~0.3 s of CPU).

    A worker calls this at start-up, so the first window close does not stall on the loads. The
    caches above are left untouched (the library calls go around them).
    """
    from ua_parser import parse

    parse("Mozilla/5.0")  # builds the default resolver on first use
    _geoip()
