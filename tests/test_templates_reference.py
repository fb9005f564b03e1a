"""The fast templating (segment cache, cheapest-first rules) gives exactly what the plain rules give.

``_ref_template_path`` is the templating as it was before the speed-up, kept verbatim (minus the
caches, with the module's own patterns) as the reference; the property test compares it with :func:`template_path` on random
paths built from real-looking segments, and on every path of the real logs.
"""

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patrol.preagg import templates as T
from patrol.preagg.templates import (_DATE, _EMAIL, _HEX, _JWT, _NUMERIC, _SLUG_ID, _TOKEN, _UUID, MAX_WORD, is_id,
                              template_path)
from fixture_data import log_path

# --- reference: the rules before the speed-up --------------------------------------------------
# The patterns are the module's own: what this file pins is the order and the shortcuts the fast
# path takes around them, so a later change to a rule needs no second copy here.


def _ref_core_id(seg):
    """The rules before the shape rules, in the order the docstring lists them."""
    if not seg:
        return False
    if len(seg) > MAX_WORD:
        return True
    c = seg[0]
    if c.isdigit() or c in "+-":
        if _NUMERIC.match(seg) or _DATE.match(seg):
            return True
    if _UUID.match(seg):
        return True
    if len(seg) >= 8 and _HEX.match(seg):
        return len(seg) >= 16 or any(ch.isdigit() for ch in seg)
    if ("@" in seg or "%40" in seg) and _EMAIL.match(seg):
        return True
    if c == "@" and T._HANDLE.match(seg):
        return True
    if "-" in seg or "_" in seg:
        if _SLUG_ID.match(seg):
            return True
    if len(seg) >= 16:
        if _TOKEN.match(seg):
            digits = sum(ch.isdigit() for ch in seg)
            if 0 < digits < len(seg) and (
                    (not seg.islower() and not seg.isupper()) or digits * 4 >= len(seg)):
                return True
            if T._ALNUM.match(seg) and (seg.isupper() or (
                    T._DIGIT.search(seg) is None and T._random_letters(seg, len(seg)))):
                return True
        elif seg.startswith("eyJ") and _JWT.match(seg):
            return True
    return False


def _ref_is_id(seg):
    if _ref_core_id(seg):
        return True
    if not seg or T._DIGIT.search(seg) is None:
        return False
    if T._ID_SLUG.match(seg) or (("-" in seg or "_" in seg) and T._slug_hex(seg)):
        return True
    return T._shape_id(seg, len(seg))


def _ref_segment(seg):
    if "." not in seg:
        return ":id" if _ref_is_id(seg) else seg
    if _ref_core_id(seg):
        return ":id"
    parts = seg.split(".")
    out = [":id" if len(p) >= 3 and _ref_is_id(p) else p for p in parts]
    if out != parts:
        return ".".join(out)
    k = len(parts)
    while (k > 1 and T._EXT.match(parts[k - 1]) and len(T._DIGIT.findall(parts[k - 1])) <= 1
           and not _ref_is_id(parts[k - 1])):
        k -= 1
    stem = ".".join(parts[:k])
    if stem and _ref_is_id(stem):
        return ".".join([":id"] + parts[k:])
    return seg


def _ref_template_path(path, max_depth=8, max_len=200):
    if path is None:
        return None
    q = path.find("?")
    if q >= 0:
        path = path[:q]
    segs = path.split("/")
    if len(segs) > max_depth + 1:
        segs = segs[: max_depth + 1] + ["*"]
    out = "/".join(_ref_segment(s) for s in segs)
    return out if len(out) <= max_len else out[:max_len] + "*"


# --- segments that look like real ones, and near misses -----------------------------------------
_HEXC = "0123456789abcdefABCDEF"
_CHARS = "abcdefxyzXYZ0123456789-_.+=~@%:,TZ é✓٣²"   # incl. non-ASCII digits (٣ is \d, ² only isdigit)


def _hexs(lo, hi, alphabet=_HEXC):
    return st.text(alphabet, min_size=lo, max_size=hi)


WORDS = st.sampled_from(["api", "v1", "v2", "users", "items", "orders", "static", "js", "app", "main",
                         "index.html", "favicon.ico", "deadbeef", "facade", "cafebabe", "eyJ", "login",
                         "A%20Beka", "jquery-1.10.2.min.js", "logstash-monitorama-2013", "CamelCaseLongWordName",
                         "order-12345", "user_1001", "65752.jpg", "1839382_b.jpg", "thumb.65752.webp",
                         "IMG_20260501_123456.jpg", "report-2026-01-31.pdf", "1.10.2.tar.gz", "12345-my-post",
                         "post-61de56ebaf76", "item12345", "B07XJ8C8F5", "dQw4w9WgXcQ", "iPhone12",
                         "JBSWY3DPEHPK3PXP", "ABCDEFGHIJKLMNOPQ", "CPheTzaFYPVSQAViJaVAHbfz", "getHTTPResponseCode", "300x200", "@alice", "@john.doe", "v1.2", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc", "0x", "*",
                         "%40", "a@b.co", "john.doe%40example.com", "2024-01-31", "2024-01-31T10:00:00Z",
                         "20240131", "-3.5", "+7", "1,5", "٣٣", "²²²", "caf\u00e9", "日本語"])
NUMBERS = st.integers(-10**12, 10**20).map(str)
UUIDS = st.uuids().map(str) | st.uuids().map(lambda u: u.hex) | st.uuids().map(lambda u: str(u).upper())
HEXES = _hexs(6, 40) | _hexs(6, 20, "abcdef") | _hexs(6, 18).map(lambda h: "0x" + h)
HASHES = st.binary(min_size=16, max_size=32).map(bytes.hex)
EMAILS = st.builds(lambda u, sep, d, tld: f"{u}{sep}{d}.{tld}", st.text("abc.xyz09_", min_size=1, max_size=8),
                   st.sampled_from(["@", "%40"]), st.text("abcxyz-", min_size=1, max_size=6),
                   st.text("abcXYZ1", min_size=1, max_size=4))
PCT = st.lists(st.sampled_from(["%20", "%2F", "%40", "%C3%A9", "%", "%zz"]) | st.text("aZ1", max_size=3),
               max_size=5).map("".join)
ASSETS = st.builds(lambda a, h, e: f"{a}.{h}.{e}", st.sampled_from(["app", "main", "x", "2", "eyJ"]),
                   HEXES | HASHES | NUMBERS, st.sampled_from(["js", "css", "png", "min.js", ""]))
DOTTED_ID = st.builds(lambda h, e: f"{h}.{e}", HEXES | HASHES | UUIDS | NUMBERS,
                      st.sampled_from(["png", "jpg", "webp", "5", "json"]))
SLUGS = st.builds(lambda w, s, n: f"{w}{s}{n}", st.text("abcXY_", min_size=1, max_size=8),
                  st.sampled_from(["-", "_", ""]), st.integers(0, 10**6).map(str))
TOKENS = st.text("abcXYZ0189_-+=~", min_size=14, max_size=40)
LONG = st.text("ab1-", min_size=95, max_size=110)
JWTS = st.builds(lambda a, b, c: f"eyJ{a}.{b}.{c}", *(st.text("abXY_-" + d, max_size=12) for d in ("", "", "09")))
RANDOM = st.text(_CHARS, max_size=24) | st.text(max_size=12)
SEGMENT = (WORDS | NUMBERS | UUIDS | HEXES | HASHES | EMAILS | PCT | ASSETS | DOTTED_ID | SLUGS | TOKENS | JWTS
           | LONG | RANDOM | st.just(""))


@st.composite
def paths(draw):
    segs = draw(st.lists(SEGMENT, max_size=12))
    p = draw(st.sampled_from(["/", ""])) + "/".join(segs)
    if draw(st.booleans()):
        p += "/"
    if draw(st.booleans()):
        p += "?" + draw(st.text(_CHARS + "/?&", max_size=10))
    return p


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(paths(), st.lists(SEGMENT, max_size=4))
def test_template_path_matches_the_reference(path, segs):
    want = _ref_template_path(path)
    assert template_path(path) == want
    assert template_path(path) == want                       # again, from the caches
    assert T._template.__wrapped__(path.split("?")[0], 8, 200) == want   # segment cache only
    assert template_path(path, 3, 20) == _ref_template_path(path, 3, 20)
    for s in segs:
        assert is_id(s) == _ref_is_id(s), s


def test_real_log_paths_match_the_reference():
    files = [log_path("apache_combined_10k.log"), log_path("ingress_nginx_beats_sample.log")]
    request = re.compile(rb'"[A-Z]+ (\S+)')
    seen = set()
    for f in files:
        for line in f.read_bytes().splitlines():
            m = request.search(line)
            if m:
                seen.add(m.group(1).decode("utf-8", "replace"))
    assert len(seen) > 150
    for p in sorted(seen):
        assert template_path(p) == _ref_template_path(p), p
        for s in p.split("?")[0].split("/"):
            assert is_id(s) == _ref_is_id(s), s


def test_generated_paths_match_the_reference():
    import itertools

    from patrol.sim.generator import generate_lines
    request = re.compile(rb'"[A-Z]+ (\S+)')
    n = 0
    for _, _, line in itertools.islice(generate_lines(30_000, seed=3), 30_000):
        p = request.search(line).group(1).decode()
        assert template_path(p) == _ref_template_path(p), p
        n += 1
    assert n == 30_000


def test_segment_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(T, "_SEGS_MAX", 100)
    T._SEGS.clear()
    for i in range(1000):
        assert T._template.__wrapped__(f"/w{i}x/item{i % 7}", 8, 200) == f"/w{i}x/item{i % 7}"
        assert len(T._SEGS) <= 100
    long = "x" * (T._SEG_LEN_MAX + 1)   # a word, not hex
    assert template_path("/" + long) == "/" + long and long not in T._SEGS
