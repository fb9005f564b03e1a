"""URL templating: ``/api/users/42/orders?x=1`` -> ``/api/users/:id/orders``.

Two parts, both pure and bounded:

* :func:`template_path` turns a raw path into a template: the query string is
  dropped and path segments that look like identifiers become ``:id``
  (numbers, UUIDs, hex >= 8 chars with a digit, long hashes, base64-ish tokens,
  e-mail addresses, dates, handles, and ids glued into names: ``65752.jpg``,
  ``12345-my-post``, ``item12345``, ``IMG_20260501_123456.jpg``; see :func:`is_id`).  Deep paths are cut at ``max_depth`` segments and
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
# Shape rules (ids glued to words, in file names, short random codes); see is_id.
_ID_SLUG = re.compile(r"\d{3,}-[A-Za-z]")                  # 12345-my-first-post (a prefix match)
_WORD_NUM = re.compile(r"[A-Za-z]+\d{4,}\Z")               # item12345, DSC01234
_ALNUM = re.compile(r"[A-Za-z0-9]+\Z")
_HANDLE = re.compile(r"@[\w.\-]+\Z")                       # @alice (profile pages)
_PCT = re.compile(r"%[0-9A-Fa-f]{2}")                       # a %XX escape is no digit of the name
_EXT = re.compile(r"[A-Za-z][A-Za-z0-9]{0,9}\Z")            # a file extension: jpg, tar, gz, mp4, webp


def is_id(seg: str) -> bool:
    """True when a path segment looks like an identifier rather than a route word.

    Rules (any that matches makes an id): longer than :data:`MAX_WORD`; a number; a UUID (with or without
    dashes); hex of >= 8 chars that contains a digit (so words such as
    ``deadbeef`` or ``facade`` survive... unless >= 16 chars, which is a hash);
    a date or timestamp; an e-mail address; a word ending in ``-<3+ digits>``;
    a token of >= 16 URL-safe/base64 chars with a digit and a letter that
    mixes upper and lower case or is >= 25% digits (session ids, base64 keys);
    a JWT; a ``@handle``.  Shape rules, for ids written inside names:
    *digit-heavy* (>= 4 digits that are at least half of the letters and digits, ``%XX`` escapes
    not counted: ``1839382_b``, ``IMG_20260501_123456``, ``2026-05``, ``300x200``); an *id-slug*
    (``12345-my-first-post``); a word ending in >= 4 digits (``item12345``); a *slug ending in a
    hex id* of >= 8 chars with a digit (``my-post-61de56ebaf76``); a *random code* of >= 8 letters
    and digits with a digit whose character class (upper, lower, digit) changes at >= half of the
    steps, or at >= 35 % with capital pairs at >= 2 places (``dQw4w9WgXcQ``, ``B07XJ8C8F5``,
    ``0gpRPsbRODQ``; words such as ``iPhone12``, ``OAuth2Callback`` or ``PostgreSQL14`` do not),
    or capitals with >= 2 digits and >= 3 class changes (``B003B1DBGE``, not ``COVID19DATA``); >= 16 capitals and digits without a separator (base32); >= 16 letters
    of random case (see :func:`_random_letters`).
    Dotted segments (file names) are handled by :func:`template_path`: the stem before the
    extensions is judged as a whole (``65752.jpg`` -> ``:id.jpg``) and each dotted part of >= 3
    chars on its own (``app.3f2a9b1c.js`` -> ``app.:id.js``).
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
        # Without a digit only an e-mail ("%40" has digits), a handle, base32 or a JWT can still be
        # an id: number, date, slug-id, token and the shape rules need one; hex and UUID are done.
        if "@" in seg:
            return _EMAIL.match(seg) is not None or (seg[0] == "@" and _HANDLE.match(seg) is not None)
        if n >= 16 and _ALNUM.match(seg):
            if seg.isupper() or _random_letters(seg, n):
                return True   # base32 (no word is 16+ capitals in a row), a base62 token
        return seg.startswith("eyJ") and n >= 16 and _JWT.match(seg) is not None
    c = seg[0]
    if c.isdigit() or c in "+-":
        if seg.isdecimal() or _NUMERIC.match(seg) or _DATE.match(seg):
            return True
        if _ID_SLUG.match(seg):
            return True
    if "@" in seg or "%40" in seg:
        if _EMAIL.match(seg) or (c == "@" and _HANDLE.match(seg)):
            return True
    if "-" in seg or "_" in seg:
        if _SLUG_ID.match(seg) or _slug_hex(seg):
            return True
    if n >= 16:
        if _TOKEN.match(seg):
            # Random tokens mix cases or are digit-heavy; slugs such as
            # "logstash-monitorama-2013" are neither.  (ASCII here: digits are 0-9.)
            digits = n - len(seg.encode().translate(None, b"0123456789"))
            if 0 < digits < n and (
                    (not seg.islower() and not seg.isupper()) or digits * 4 >= n):
                return True
            if seg.isupper() and _ALNUM.match(seg):
                return True   # base32 (no word is 16+ capitals in a row)
        elif seg.startswith("eyJ") and _JWT.match(seg):
            return True
    return _shape_id(seg, n)


def _digit_heavy(seg: str) -> bool:
    if "%" in seg:
        seg = _PCT.sub("", seg)
    digits = len(_DIGIT.findall(seg))
    return digits >= 4 and 2 * digits >= sum(ch.isalnum() for ch in seg)


def _slug_hex(seg: str) -> bool:
    """``words-<hex id>``: the last ``-``/``_`` part is hex of >= 8 chars with a digit."""
    i = max(seg.rfind("-"), seg.rfind("_"))
    tail = seg[i + 1:]
    return i > 0 and len(tail) >= 8 and _HEX.match(tail) is not None and not tail.isalpha()


def _random_code(seg: str, n: int) -> bool:
    """A short random code of letters and digits (see the shape rules of :func:`is_id`)."""
    if n < 8 or not seg.isascii() or _ALNUM.match(seg) is None or seg.isdigit():
        return False
    cls = [0 if ch.isdigit() else 1 if ch.isupper() else 2 for ch in seg]
    switches = sum(a != b for a, b in zip(cls, cls[1:]))
    if 2 * switches >= n - 1:
        return True
    if 2 not in cls:
        # capitals and digits: digits interleaved at >= 3 places (B003B1DBGE), not a word with a
        # number (COVID19DATA)
        return switches >= 3 and cls.count(0) >= 2
    # fewer changes, but capitals side by side at >= 2 places among lower case (0gpRPsbRODQ);
    # CamelCase has none, and an acronym alone changes class rarely (PostgreSQL14, OAuth2Callback)
    pairs = sum(a == b == 1 for a, b in zip(cls, cls[1:]))
    return 20 * switches >= 7 * (n - 1) and pairs >= 2 and 2 in cls


def _random_letters(seg: str, n: int) -> bool:
    """Mixed-case letters whose case changes at >= 30 % of the steps with capitals side by side at
    >= 3 places (a random token); CamelCase words have no capital pairs, words with an acronym
    (getHTTPResponseCode, XMLHttpRequestEventTarget) change case rarely."""
    if seg.islower() or seg.isupper():
        return False
    up = [ch.isupper() for ch in seg]
    switches = sum(a != b for a, b in zip(up, up[1:]))
    pairs = sum(a and b for a, b in zip(up, up[1:]))
    return 10 * switches >= 3 * (n - 1) and pairs >= 3


def _shape_id(seg: str, n: int) -> bool:
    """The shape rules of :func:`is_id` (the segment has a digit)."""
    if n >= 4 and _digit_heavy(seg):
        return True
    if _WORD_NUM.match(seg):
        return True
    return _random_code(seg, n)


def _whole_dotted_id(seg: str) -> bool:
    """A dotted segment that is an id as a whole: too long, a number or date, an e-mail, a handle
    or a JWT (the other rules of :func:`is_id` cannot match a dot)."""
    if len(seg) > MAX_WORD:
        return True
    c = seg[0]
    if c.isdigit() or c in "+-":
        if _NUMERIC.match(seg) or _DATE.match(seg):
            return True
    if ("@" in seg or "%40" in seg) and _EMAIL.match(seg):
        return True
    if c == "@" and _HANDLE.match(seg):
        return True   # @john.doe
    return seg.startswith("eyJ") and len(seg) >= 16 and _JWT.match(seg) is not None


def _is_ext(part: str) -> bool:
    # at most one digit (mp4, woff2, m4a): a part with more is rather a version or an id
    return _EXT.match(part) is not None and len(_DIGIT.findall(part)) <= 1 and not is_id(part)


def _segment(seg: str) -> str:
    if "." not in seg:
        return ID if is_id(seg) else seg
    if _whole_dotted_id(seg):
        return ID
    if len(seg) < 16 and _DIGIT.search(seg) is None and "@" not in seg:
        # Every id rule a short dotted part could meet needs a digit or an "@" (all-letter hex,
        # UUIDs and base32 need 16+ chars): words with extensions (index.html, bootstrap.min.css).
        return seg
    # A file name: parts of >= 3 chars that are ids on their own (app.3f2a9b1c.js, thumb.65752.jpg,
    # xdotool-2.20100524.html); else the stem before the extensions as a whole (65752.jpg,
    # IMG_20260501_123456.jpg, report-2026-01-31.pdf, 1.10.2.tar.gz). Short numeric parts alone
    # stay: versions such as jquery-3.6.0.min.js and v1.2 are route words.
    parts = seg.split(".")
    out = [ID if len(p) >= 3 and is_id(p) else p for p in parts]
    if out != parts:
        return ".".join(out)
    k = len(parts)
    while k > 1 and _is_ext(parts[k - 1]):
        k -= 1
    stem = ".".join(parts[:k])
    if stem and is_id(stem):
        return ".".join([ID] + parts[k:])
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
