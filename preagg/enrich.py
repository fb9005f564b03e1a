"""Offline enrichment at window close: device class from the user agent, country from the IP.

Both run once per *distinct* UA / IP per window (never per line) and are cached, because
ua-parser costs ~0.3 ms per string and the hot loop budget is ~3 us per line.

* Device class: ``ua-parser`` (regexes shipped in ``ua-parser-builtins``) -> ``desktop``,
  ``mobile`` (phones and tablets), ``bot`` (crawlers, monitors, scripted clients) or ``other``.
* Country: ``geoip2fast`` (ISO country database shipped inside the PyPI wheel, IPv4 + IPv6; no
  network). Private, loopback and unknown addresses map to ``--``.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["DEVICE_CLASSES", "device_class", "country", "warm"]

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
    global _geo
    if _geo is None:
        from geoip2fast import GeoIP2Fast

        # The IPv6 data file holds IPv4 ranges too; loading it once costs ~0.3 s.
        _geo = GeoIP2Fast(geoip2fast_data_file="geoip2fast-ipv6.dat.gz")
    return _geo


@lru_cache(maxsize=262144)
def country(ip: str | None) -> str:
    """ISO 3166 alpha-2 country of ``ip`` (``--`` for private/unknown/invalid), cached per address."""
    if not ip or ip == "-":
        return "--"
    try:
        cc = _geoip().lookup(ip).country_code
    except Exception:  # invalid address text: the library raises its own error types
        return "--"
    return cc if cc and len(cc) == 2 and cc.isalpha() else "--"


def warm() -> None:
    """Load both databases now (GeoIP ~0.3 s, ua-parser's regexes ~0.3 s of CPU).

    A worker calls this at start-up, so the first window close does not stall on the loads. The
    caches above are left untouched (the library calls go around them).
    """
    from ua_parser import parse

    parse("Mozilla/5.0")  # builds the default resolver on first use
    _geoip()
