"""URL templating: ``/api/users/42/orders?x=1`` -> ``/api/users/:id/orders``.

Two parts, both pure and bounded:

* :func:`template_path` turns a raw path into a template: the query string is
  dropped and path segments that look like identifiers become ``:id``
  (numbers, UUIDs, hex >= 8 chars with a digit, long hashes, base64-ish tokens,
  e-mail addresses, dates).  Deep paths are cut at ``max_depth`` segments and
  long ones at ``max_len`` characters so a template's size is bounded too.
  Results for hot paths are kept in a bounded LRU cache.
* :class:`TemplateCap` keeps at most ``max_per_host`` distinct templates per host:
  the heavy hitters (counted with a Space-Saving style frequent-items sketch)
  are kept, the rest fold into ``other``, so series cardinality and memory stay
  bounded even with millions of distinct URLs.
"""

from __future__ import annotations

import re
from functools import lru_cache

from datasketches import frequent_strings_sketch

ID = ":id"
OTHER = "other"
MAX_WORD = 100   # a longer path segment is always an id

_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}\Z")
_HEX = re.compile(r"(?:0x)?[0-9a-fA-F]{8,}\Z")
_DATE = re.compile(r"\d{4}-?\d{2}-?\d{2}(?:[T_ ]?\d{2}:?\d{2}(?::?\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\Z")
_EMAIL = re.compile(r"[^@/\s]+(?:@|%40)[^@/\s]+\.[A-Za-z]{2,}\Z")
_TOKEN = re.compile(r"[A-Za-z0-9_\-+=~]{16,}\Z")
_JWT = re.compile(r"eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*\Z")
_NUMERIC = re.compile(r"[-+]?\d+(?:[.,]\d+)?\Z")
_SLUG_ID = re.compile(r"[A-Za-z][A-Za-z_]*[-_]\d{3,}\Z")   # order-12345, user_1001
_DIGIT = re.compile(r"\d")   # what the rules' \d match (any Unicode decimal digit)


def is_id(seg: str) -> bool:
    """True when a path segment looks like an identifier rather than a route word.

    Rules (the first that matches wins): longer than :data:`MAX_WORD`; a number; a UUID (with or without
    dashes); hex of >= 8 chars that contains a digit (so words such as
    ``deadbeef`` or ``facade`` survive... unless >= 16 chars, which is a hash);
    a date or timestamp; an e-mail address; a word ending in ``-<3+ digits>``;
    a token of >= 16 URL-safe/base64 chars with a digit and a letter that
    mixes upper and lower case or is >= 25% digits (session ids, base64 keys);
    a JWT.  Inside a dotted segment a hex part of >= 8 chars with a digit
    becomes ``:id`` (``app.3f2a9b1c.js`` -> ``app.:id.js``).
    """
    if not seg:
        return False
    n = len(seg)
    if n > MAX_WORD:
        # No route word is this long; it is a blob or token.  The cap also bounds the
        # regex work per segment (the e-mail pattern is quadratic on crafted input).
        return True
    # The rules are tried cheapest-first, not in the order listed above: only the hex rule can
    # say "not an id" early, and when it applies every rule that could say "id" before it
    # (number, date, UUID) implies a digit, so the answer is the same in any order.
    if n >= 8 and _HEX.match(seg):
        # Only ASCII hex (and "0x") here: a digit is present unless it is all letters.
        return n >= 16 or not seg.isalpha()
    if n >= 32 and _UUID.match(seg):
        return True
    if _DIGIT.search(seg) is None:
        # Without a digit only an e-mail ("%40" has digits) or a JWT can still be an id:
        # number, date, slug-id and token all need one; hex and UUID are done above.
        if "@" in seg:
            return _EMAIL.match(seg) is not None
        return seg.startswith("eyJ") and n >= 16 and _JWT.match(seg) is not None
    c = seg[0]
    if c.isdigit() or c in "+-":
        if seg.isdecimal() or _NUMERIC.match(seg) or _DATE.match(seg):
            return True
    if ("@" in seg or "%40" in seg) and _EMAIL.match(seg):
        return True
    if "-" in seg or "_" in seg:
        if _SLUG_ID.match(seg):
            return True
    if n >= 16:
        if _TOKEN.match(seg):
            # Random tokens mix cases or are digit-heavy; slugs such as
            # "logstash-monitorama-2013" are neither.  (ASCII here: digits are 0-9.)
            digits = n - len(seg.encode().translate(None, b"0123456789"))
            if 0 < digits < n and (
                    (not seg.islower() and not seg.isupper()) or digits * 4 >= n):
                return True
        elif seg.startswith("eyJ") and _JWT.match(seg):
            return True
    return False


def _segment(seg: str) -> str:
    if "." not in seg:
        return ID if is_id(seg) else seg
    # A dot rules out the UUID, hex, slug and token rules: a dotted segment can only be an id
    # when too long, a number or date (starts with a digit or sign), an e-mail or a JWT.
    c = seg[0]
    if (len(seg) > MAX_WORD or c.isdigit() or c in "+-" or "@" in seg or "%40" in seg
            or seg.startswith("eyJ")) and is_id(seg):
        return ID
    if len(seg) > 9:
        # Fingerprinted assets: app.3f2a9b1c.js -> app.:id.js (hex part >= 8 with a digit).
        # Joining unchanged parts gives back seg.
        return ".".join([ID if len(p) >= 8 and _HEX.match(p) and not p.isalpha() else p
                         for p in seg.split(".")])
    return seg


_CACHE_PATH_MAX = 256   # longest path kept in the LRU (bounds it to ~25 MB)

# Segment -> its template, for segments up to _SEG_LEN_MAX chars; cleared when full (<= ~3 MB).
# A new path is mostly route words seen before ("api", "v1", "items") plus one or two ids:
# the words then cost a dict lookup instead of the regex passes of is_id (~0.6 us each).
_SEGS: dict[str, str] = {}
_SEGS_MAX = 1 << 14
_SEG_LEN_MAX = 64


@lru_cache(maxsize=1 << 16)
def _template(path: str, max_depth: int, max_len: int) -> str:
    segs = path.split("/")
    # segs[0] is "" for absolute paths; keep empty segments so "/a/" stays "/a/".
    if len(segs) > max_depth + 1:
        segs = segs[: max_depth + 1] + ["*"]
    cache = _SEGS
    out = list(map(cache.get, segs))
    if None in out:
        for i, t in enumerate(out):
            if t is None:
                s = segs[i]
                t = out[i] = _segment(s)
                if len(s) <= _SEG_LEN_MAX:
                    if len(cache) >= _SEGS_MAX:
                        cache.clear()
                    cache[s] = t
    out = "/".join(out)
    return out if len(out) <= max_len else out[:max_len] + "*"


def template_path(path, max_depth: int = 8, max_len: int = 200):
    """Template a URL path.

    Parameters
    ----------
    path : str or None
        Raw request path (a query string, if present, is dropped).
    max_depth : int
        Segments kept; deeper paths end in ``/*``.
    max_len : int
        Characters kept; longer templates are cut and end in ``*``.

    Returns
    -------
    str or None
        The template, or None when ``path`` is None (the request had no path).
    """
    if path is None:
        return None
    q = path.find("?")
    if q >= 0:
        path = path[:q]
    if len(path) > _CACHE_PATH_MAX:
        # Long paths are rare and would make the cache's memory depend on input
        # sizes (65,536 x 8 KB paths = 512 MB): compute them uncached.
        return _template.__wrapped__(path, max_depth, max_len)
    return _template(path, max_depth, max_len)


class _HostCap:
    """Heavy-hitter admission for one host (see :class:`TemplateCap`)."""

    __slots__ = ("kept", "sketch", "floor")

    def __init__(self, lg_k: int):
        self.kept: dict[str, int] = {}      # admitted template -> count since admitted (+ estimate)
        self.sketch = frequent_strings_sketch(lg_k)
        self.floor = 0                      # a lower bound of min(kept.values())


class TemplateCap:
    """Cap the number of distinct templates per host, keeping the heavy hitters.

    Each host keeps up to ``max_per_host`` admitted templates with exact counts.
    Other templates are counted in a bounded frequent-items sketch (Apache
    DataSketches' Misra-Gries/Space-Saving ``frequent_strings_sketch``); one is
    admitted when there is room, or when its guaranteed count (sketch lower
    bound) beats the smallest admitted count, which is then demoted.  Until
    admitted a template maps to ``other``.  Memory is O(hosts x max_per_host):
    the sketch never holds more than ``0.75 * 2**lg_k`` items.

    Parameters
    ----------
    max_per_host : int
        Distinct templates kept per host (``other`` not included).
    max_hosts : int
        Hosts tracked; templates of further hosts all map to ``other``.
    lg_k : int, optional
        log2 of the sketch size; default fits ~4x ``max_per_host`` candidates.
    displace_ratio : float
        A candidate displaces the smallest admitted template only when its
        guaranteed count exceeds ``displace_ratio`` times that template's count.
        The admitted set is always <= ``max_per_host``, but each displacement adds
        one more distinct template to the current window; the hysteresis keeps
        such churn rare when the traffic mix is stable.
    """

    def __init__(self, max_per_host: int = 200, max_hosts: int = 10_000, lg_k: int | None = None,
                 displace_ratio: float = 2.0):
        if max_per_host < 1:
            raise ValueError("max_per_host must be >= 1")
        self.max_per_host = max_per_host
        self.max_hosts = max_hosts
        self.displace_ratio = displace_ratio
        self.lg_k = lg_k or max(3, (4 * max_per_host - 1).bit_length())
        self._hosts: dict = {}

    def add(self, host, template: str) -> str:
        """Count one request for ``template`` on ``host``; return the template or ``other``.

        A ``None`` template (request without a path) is returned as ``None`` uncounted.
        """
        if template is None:
            return None
        hc = self._hosts.get(host)
        if hc is None:
            if len(self._hosts) >= self.max_hosts:
                return OTHER
            hc = self._hosts[host] = _HostCap(self.lg_k)
        kept = hc.kept
        n = kept.get(template)
        if n is not None:
            kept[template] = n + 1
            return template
        if len(kept) < self.max_per_host:
            kept[template] = 1
            return template
        sk = hc.sketch
        sk.update(template)
        lb = sk.get_lower_bound(template)
        ratio = self.displace_ratio
        if lb <= hc.floor * ratio:
            return OTHER
        # The cached floor may be stale (admitted counts only grow): recompute.
        low = min(kept, key=kept.__getitem__)
        hc.floor = kept[low]
        if lb <= hc.floor * ratio:
            return OTHER
        del kept[low]
        kept[template] = lb
        hc.floor = min(kept.values())
        return template

    def kept(self, host) -> dict[str, int]:
        """Admitted templates of ``host`` with their counts (a copy)."""
        hc = self._hosts.get(host)
        return dict(hc.kept) if hc else {}

    def tracked(self) -> int:
        """Templates currently held in memory, over all hosts (admitted + sketch)."""
        return sum(len(h.kept) + h.sketch.num_active_items for h in self._hosts.values())

    def decay(self, factor: float = 0.5) -> None:
        """Scale counts down (call per window or hour) so yesterday's heavy hitters
        can be displaced by today's; the sketches restart empty."""
        for hc in self._hosts.values():
            for t in hc.kept:
                hc.kept[t] = int(hc.kept[t] * factor)
            hc.floor = min(hc.kept.values(), default=0)
            hc.sketch = frequent_strings_sketch(self.lg_k)
