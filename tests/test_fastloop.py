"""The compiled hot loop (``preagg/_fastloop.pyx``) gives exactly what the pure-Python loop gives.

Exactly means: the same rejections (index, code, reason), counters, checkpoints, accumulators
(including dict insertion order, which DDSketch sums and the heavy-hitter sketch depend on) and
byte-identical metric points, on both real log files and on generated traffic with mutated lines
(garbage sizes, escapes, late/future times, truncations, 404s with queries, extra fields).
"""

from __future__ import annotations

import random
import re
from datetime import datetime, timedelta, timezone

import pytest

from patrol.preagg import aggregate
from patrol.preagg.aggregate import Aggregator
from patrol.sim.generator import generate_lines
from fixture_data import log_path

BIG = 10**9


@pytest.fixture(scope="module", autouse=True)
def _compiled_loop_built():
    if aggregate.COMPILED:
        return
    msg = ("preagg._fastloop is not built: `pip install -e .` (or `python setup.py build_ext --inplace`) "
           "needs Cython and a C compiler; without it the stage runs the 2-3x slower pure-Python loop")
    pytest.fail(msg)  # a missing extension is a broken build (make install compiles it), never a skip


def _logs(name: str) -> list[bytes]:
    path = log_path(name)
    return path.read_bytes().splitlines()


def _acc_view(accs: dict) -> list:
    # ordered view: insertion order of keys and of every value -> count dict matters
    return [(k, a[:4], [list(a[i].items()) for i in range(4, 8)], sorted(a[8]) if a[8] else a[8])
            for k, a in accs.items()]


def _run(compiled: bool, batches, **kw) -> dict:
    """Feed ``batches`` of ``(partition, lines, now)``; everything observable, for comparison."""
    agg = Aggregator(compiled=compiled, **kw)
    assert agg.compiled is compiled
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
        "counters": (agg.lines_in, agg.parse_errors, agg.slow_lines, agg.replayed, agg.late, agg.future),
        "windows": [(cw.partition, cw.start, cw.end, cw.lines) for cw in windows],
        "accs": [_acc_view(cw.accs) for cw in windows],
        "points": [pt.to_bytes() for cw in windows for pt in cw.points()],
    }


def _assert_same(batches, **kw) -> dict:
    pure = _run(False, batches, **kw)
    fast = _run(True, batches, **kw)
    for field in ("rejected", "checkpoints", "counters", "windows", "accs", "points"):
        assert fast[field] == pure[field], f"compiled and pure loops differ in {field}"
    assert pure["points"], "nothing was aggregated: the comparison would be empty"
    return pure


def _batches(lines, size=3000, partitions=1, now=None):
    return [(i // size % partitions, lines[i:i + size], now) for i in range(0, len(lines), size)]


def test_real_ingress_sample_identical():
    lines = _logs("ingress_nginx_beats_sample.log")
    res = _assert_same(_batches(lines, 500), window_s=60, lateness_s=BIG, max_future_s=BIG)
    assert res["counters"][0] == len(lines)


def test_real_ingress_sample_identical_with_late_and_future_rejections():
    # The file shuffled in blocks, small lateness and future bounds: lines go late and future.
    lines = _logs("ingress_nginx_beats_sample.log")
    rng = random.Random(7)
    blocks = [lines[i:i + 40] for i in range(0, len(lines), 40)]
    for b in blocks:
        rng.shuffle(b)
    lines = [x for b in blocks for x in b]
    res = _assert_same(_batches(lines, 200), window_s=10, lateness_s=2, max_future_s=30)
    codes = {r[2] for r in res["rejected"]}
    assert {"late", "future"} <= codes, codes


def test_real_combined_file_identical_through_the_ingress_aggregator():
    # Apache combined lines are not ingress-nginx lines: every one must take the careful path
    # (and be rejected) in both loops, in the same way.
    lines = _logs("apache_combined_10k.log")
    pure = _run(False, _batches(lines, 2000), window_s=60, lateness_s=BIG, max_future_s=BIG)
    fast = _run(True, _batches(lines, 2000), window_s=60, lateness_s=BIG, max_future_s=BIG)
    assert fast == pure
    assert pure["counters"][2] == len(lines)  # all slow
    # with fmt="combined" the compiled run reads them with its extractor (preagg/_formats.pxi, see
    # tests/test_fastformats.py), the pure install with the careful parser: same results
    kw = dict(window_s=60, lateness_s=BIG, max_future_s=BIG, fmt="combined")
    careful = _run(False, _batches(lines, 2000), **kw)
    fast = _run(True, _batches(lines, 2000), **kw)
    slow = fast["counters"][2]
    for res in (careful, fast):
        res["counters"] = res["counters"][:2] + res["counters"][3:]
    assert fast == careful
    assert careful["points"] and slow < 0.01 * len(lines), slow  # odd lines only (escapes, cp1251 bytes)


_TS = re.compile(rb"\[(\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d) \+0000\]")


def _shift(line: bytes, seconds: int) -> bytes:
    m = _TS.search(line)
    t = datetime.strptime(m.group(1).decode(), "%d/%b/%Y:%H:%M:%S").replace(tzinfo=timezone.utc)
    new = (t + timedelta(seconds=seconds)).strftime("%d/%b/%Y:%H:%M:%S").encode()
    return line[:m.start(1)] + new + line[m.end(1):]


def _mutate(line: bytes, rng: random.Random) -> bytes:
    q = line.split(b'"')
    kind = rng.randrange(14)
    if kind == 0:  # garbage response size
        return b'"'.join([q[0], q[1], q[2].replace(q[2].split()[1], rng.choice([b"-", b"12x", b"1_000", b"+5"])), *q[3:]])
    if kind == 1:  # garbage request length / times
        tail = q[6].split(b" ")
        tail[1] = rng.choice([b"-", b"abc", b"0099"])
        tail[2] = rng.choice([b"-", b"0.x", b"1e3"])
        return b'"'.join([*q[:6], b" ".join(tail)])
    if kind == 2:  # escape
        return line.replace(b"HTTP/", b"\\x22HTTP/", 1)
    if kind == 3:  # late
        return _shift(line, -rng.choice([40, 120, 3600]))
    if kind == 4:  # future
        return _shift(line, rng.choice([400, 10**5]))
    if kind == 5:  # truncated
        return line[:rng.randrange(1, len(line))]
    if kind == 6:  # 404 with a query string
        return b'"'.join([q[0], q[1].replace(b" HTTP", b"?x=1 HTTP", 1), b" 404" + q[2][4:], *q[3:]])
    if kind == 7:  # an extra field in the tail / a missing one
        return line + b" extra" if rng.random() < 0.5 else line.rsplit(b" ", 1)[0]
    if kind == 8:  # tabs between tail fields (bytes.split() splits on them too)
        return b'"'.join([*q[:6], q[6].replace(b" ", b"\t", 2)])
    if kind == 9:  # odd status text
        return b'"'.join([q[0], q[1], b" -   0 ", *q[3:]])
    if kind == 10:  # broken request line
        return b'"'.join([q[0], rng.choice([b"GET", b"", b"GET /a b c"]), *q[2:]])
    if kind == 11:  # bad timestamp text
        return line.replace(b"/20", b"/2x", 1)
    if kind == 12:  # an extra quote
        return line.replace(b'" ', b'"" ', 1)
    return b"not a log line at all \xff"


@pytest.mark.parametrize("window_s,partitions", [(60, 1), (10, 3)])
def test_generated_lines_with_mutations_identical(window_s, partitions):
    rng = random.Random(window_s)
    lines = [line for _, _, line in generate_lines(n=40_000, seed=11, base_rate=400.0)]
    lines = [_mutate(x, rng) if rng.random() < 0.06 else x for x in lines]
    res = _assert_same(_batches(lines, 2500, partitions), window_s=window_s, lateness_s=30, max_future_s=300)
    codes = {r[2] for r in res["rejected"]}
    assert {"late", "future", "parse_error"} <= codes, codes


def test_generated_lines_with_wall_clock_now_identical():
    lines = [line for _, _, line in generate_lines(n=20_000, seed=3, base_rate=300.0)]
    m = _TS.search(lines[len(lines) // 2])
    t = datetime.strptime(m.group(1).decode(), "%d/%b/%Y:%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    # "now" in the middle of the ~70 s stream: the later lines are future against it
    res = _assert_same(_batches(lines, 2000, 2, now=t), window_s=60, lateness_s=30, max_future_s=5)
    assert any(r[2] == "future" for r in res["rejected"])


def test_full_request_tables_identical():
    # Tiny bounds: the stream-wide request table renumbers every 50 texts (windows must forget
    # their caches) and the per-window cache stops remembering after 20 entries.
    from patrol.preagg import _fastloop

    lines = [line for _, _, line in generate_lines(n=20_000, seed=5, base_rate=300.0)]
    old = _fastloop.limits(50, 20)
    try:
        _assert_same(_batches(lines, 1500, 2), window_s=10, lateness_s=30, max_future_s=300)
    finally:
        _fastloop.limits(*old)


def test_distinct_urls_past_the_template_memory_identical():
    # More distinct templates in one window than the cap remembers (20k): past that bound the
    # pure loop asks the cap again on every line, so the compiled loop must not cache them.
    t0 = datetime(2026, 11, 27, 12, 0, 0, tzinfo=timezone.utc)
    lines = []
    for i in range(24_000):
        w = "".join(chr(97 + (i // 26**k) % 26) for k in range(4))  # letters only: not an id
        ts = (t0 + timedelta(seconds=i // 1000)).strftime("%d/%b/%Y:%H:%M:%S +0000")
        up = f"shop-svc{i % 3}-8080"
        lines.append(f'203.0.113.{i % 250} - - [{ts}] "GET /p/{w}/x HTTP/1.1" {200 + (i % 7 == 0) * 204} 512 "-" '
                     f'"Mozilla/5.0" 300 0.0{i % 40:02d} [{up}] [] 10.0.0.1:8080 512 0.011 200 r{i}'.encode())
    lines += lines[:3000]  # the same texts again, in the same window
    _assert_same(_batches(lines, 5000), window_s=60, lateness_s=BIG, max_future_s=BIG, max_templates_per_host=7)


def test_huge_sizes_identical():
    # Sizes of 15-18 digits: the C counters take up to 15 digits and move their sums to the
    # Python ints before int64 could overflow; longer ones take the Python int() route.
    rng = random.Random(3)
    lines = []
    for line in (x for _, _, x in generate_lines(n=6_000, seed=8, base_rate=300.0)):
        q = line.split(b'"')
        big = str(rng.choice([10**14 + 7, 10**15 - 1, 10**15, 9 * 10**17 + 3, 10**18 - 1])).encode()
        tail = q[6].split(b" ")
        tail[1] = big if rng.random() < 0.5 else tail[1]
        lines.append(b'"'.join([q[0], q[1], q[2].replace(q[2].split()[1], big), *q[3:6], b" ".join(tail)]))
    res = _assert_same(_batches(lines, 1000), window_s=60, lateness_s=BIG, max_future_s=BIG)
    assert res["points"]


class _InPlace:
    """Lines seen through ``buffer_info`` (pointer + length per record, NULL for a tombstone), as the
    batch consumer (``streams._rdbatch.Lines``) hands them to the compiled loop; items on demand."""

    def __init__(self, lines):
        import ctypes

        self._lines = [line or b"" for line in lines]
        self._bufs = [ctypes.create_string_buffer(line, len(line)) if line else None for line in lines]
        self._ptrs = (ctypes.c_void_p * len(lines))(*[ctypes.addressof(b) if b is not None else None for b in self._bufs])
        self._sizes = (ctypes.c_ssize_t * len(lines))(*[len(b) if b is not None else 0 for b in self._bufs])

    @property
    def buffer_info(self):
        import ctypes

        return ctypes.addressof(self._ptrs), ctypes.addressof(self._sizes), len(self._lines)

    def __len__(self):
        return len(self._lines)

    def __getitem__(self, i):
        return self._lines[i]

    def __iter__(self):
        return iter(self._lines)


def test_lines_read_in_place_identical():
    # generated lines with mutations (slow path, rejections) and tombstones (None): the compiled loop
    # reading pointers must take every decision the list path takes, and hand the slow path the same bytes
    rng = random.Random(11)
    lines = [line for _, _, line in generate_lines(n=6000, seed=5)]
    lines = [_mutate(x, rng) if rng.random() < 0.05 else x for x in lines]
    for i in range(0, len(lines), 997):
        lines[i] = None
    batches = _batches([x or b"" for x in lines], 1500, partitions=2)
    want = _run(True, batches, window_s=10, lateness_s=BIG, max_future_s=BIG)
    pure = _run(False, batches, window_s=10, lateness_s=BIG, max_future_s=BIG)
    got = _run(True, [(p, _InPlace([x or None for x in ls]), now) for p, ls, now in batches],
               window_s=10, lateness_s=BIG, max_future_s=BIG)
    assert got == want == pure
    assert any(r[2] == "parse_error" for r in got["rejected"])


# -- several upstream attempts -------------------------------------------------------------------
# nginx writes one item per attempt in $upstream_addr, _response_length, _response_time and
# _status, ", " between attempts and " : " across an internal redirect. Such lines stay on the fast
# path when the lists have exactly that shape; anything else goes to the careful path, as before.

def _is_list_tail(line: bytes) -> bool:
    q = line.split(b'"')
    return len(q) == 7 and len(q[6].split()) != 9


def _list_line(line: bytes, addrs, lens, times, stats, seps=None) -> bytes:
    """``line`` (a generated single-attempt line) with its upstream fields replaced by lists."""
    q = line.split(b'"')
    tk = q[6].split()
    seps = seps or [b", "] * (len(addrs) - 1)

    def join(items):
        out = items[0]
        for sep, x in zip(seps, items[1:]):
            out += sep + x
        return out

    tail = b" ".join([*tk[:4], join(addrs), join(lens), join(times), join(stats), tk[-1]])
    return b'"'.join([*q[:6], b" " + tail])


def _gen_list_lines(n: int, seed: int) -> list[bytes]:
    """Lines of generated traffic with attempt lists of every valid shape: 2-5 attempts, either
    separator, ``-`` items, IPv6 and ``unix:`` upstreams, times with up to 6 integer digits."""
    rng = random.Random(seed)
    return [_to_list(line, rng) for _, _, line in generate_lines(n=n, seed=seed, base_rate=300.0)]


def _to_list(line: bytes, rng: random.Random) -> bytes:
    k = rng.choice([2, 2, 2, 3, 4, 5])
    addrs = [rng.choice([b"10.244.%d.%d:8080" % (rng.randrange(256), rng.randrange(256)),
                         b"[2a02:cf40::%x]:5000" % rng.randrange(4096), b"unix:/run/php-fpm.sock", b"-"])
             for _ in range(k)]
    times = [rng.choice([b"-", b"0.%03d" % rng.randrange(1000), b"%d.%03d" % (rng.randrange(100), rng.randrange(1000)),
                         b"%d.%03d" % (rng.randrange(10**6), rng.randrange(1000))]) for _ in range(k)]
    lens = [rng.choice([b"-", b"0", b"%d" % rng.randrange(10**6)]) for _ in range(k)]
    stats = [rng.choice([b"-", b"200", b"502", b"504"]) for _ in range(k)]
    seps = [rng.choice([b", ", b", ", b" : "]) for _ in range(k - 1)]
    return _list_line(line, addrs, lens, times, stats, seps)


def _careful(batches, **kw) -> dict:
    """What the careful path alone gives (``Aggregator.fast`` off: every line through ``_slow``)."""
    agg = Aggregator(**kw)
    agg.fast = False
    rejected, windows = [], []
    for p, lines, now in batches:
        rejected += [(p, r.index, r.code, r.reason) for r in agg.feed(lines, partition=p, now=now)]
    agg.close_all()
    windows = agg.drain()
    return {"rejected": rejected, "slow": agg.slow_lines, "parse_errors": agg.parse_errors,
            "accs": [_acc_view(cw.accs) for cw in windows],
            "points": [pt for cw in windows for pt in cw.points()]}


def _point_map(points) -> dict:
    return {(p.series, p.window_start): p for p in points}


LIST_METRICS = ("requests", "upstream_retries", "bytes_in", "bytes_out", "upstream_time_p50",
                "upstream_time_p90", "upstream_time_p99", "upstream_time_mean")


def test_real_attempt_lists_identical_and_on_the_fast_path():
    lines = [x for x in _logs("ingress_nginx_beats_sample.log") if _is_list_tail(x)]
    # four balanced lists (IPv4, IPv6) and one nginx did not write in full (one length for two
    # attempts), which the careful path must keep deciding
    assert len(lines) == 5
    res = _assert_same(_batches(lines, 2), window_s=60, lateness_s=BIG, max_future_s=BIG)
    assert res["counters"][2] == 1  # slow lines
    assert res["rejected"] == []


@pytest.mark.parametrize("compiled", [True, False])
def test_attempt_lists_count_what_the_careful_path_counts(compiled):
    lines = _gen_list_lines(6_000, seed=21)
    lines += [x for x in _logs("ingress_nginx_beats_sample.log") if _is_list_tail(x)]
    batches = _batches(lines, 1000)
    kw = dict(window_s=60, lateness_s=BIG, max_future_s=BIG)
    agg = Aggregator(compiled=compiled, **kw)
    for p, chunk, now in batches:
        assert agg.feed(chunk, partition=p, now=now) == []
    agg.close_all()
    fast = [pt for cw in agg.drain() for pt in cw.points()]
    assert agg.slow_lines == 1  # the sample's unbalanced line
    careful = _careful(batches, **kw)
    assert careful["slow"] == len(lines) and careful["rejected"] == []
    got, want = _point_map(fast), _point_map(careful["points"])
    assert set(got) == set(want)
    checked = 0
    for key, p in want.items():
        if p.metric in LIST_METRICS:
            # value, sketch bins and stats alike: same floats in the same order as _slow's
            assert got[key].to_bytes() == p.to_bytes(), key
            checked += 1
    assert checked > 100
    # the retries are the attempts beyond the first (addresses other than "-")
    total = sum(p.value for p in fast if p.metric == "upstream_retries" and p.dims["scope"] == "global")
    assert total > len(lines)


def test_attempt_lists_mixed_into_generated_traffic_identical():
    # the generator's own retries (0.3 % of lines) plus the shapes above, between single lines
    rng = random.Random(4)
    lines = [line for _, _, line in generate_lines(n=40_000, seed=13, base_rate=400.0)]
    lines = [_to_list(x, rng) if rng.random() < 0.05 else x for x in lines]
    assert sum(map(_is_list_tail, lines)) > 2000
    batches = _batches(lines, 2500, 2)
    kw = dict(window_s=10, lateness_s=30, max_future_s=300)
    res = _assert_same(batches, **kw)
    assert res["counters"][2] == 0
    # and read in place from the consumer's buffers (not NUL-terminated): the same
    assert _run(True, [(p, _InPlace(ls), now) for p, ls, now in batches], **kw) == res


def _bad_tails(line: bytes) -> list[bytes]:
    """Attempt lists nginx would not write (each must take the careful path)."""
    two = dict(addrs=[b"10.0.0.1:80", b"10.0.0.2:80"], lens=[b"0", b"512"], times=[b"0.003", b"0.020"],
               stats=[b"502", b"200"])

    def mk(**kw):
        return _list_line(line, **{**two, **kw})

    ok = mk()
    q = ok.split(b'"')
    tail = q[6]

    def tail_as(t: bytes) -> bytes:
        return b'"'.join([*q[:6], t])

    return [
        tail_as(tail.replace(b"0, 512", b"512")),             # unbalanced counts
        tail_as(tail.replace(b"0.003, 0.020", b"0.003, 0.020, 0.001")),
        tail_as(tail.replace(b"0.003, 0.020", b"0.003 : 0.020")),  # separators differ
        tail_as(tail.replace(b"0, 512", b"0,512")),            # stray commas, empty items
        tail_as(tail.replace(b"0, 512", b"0 ,512")),
        tail_as(tail.replace(b"0, 512", b"0, , 512")),
        tail_as(tail.replace(b"0, 512", b"0,, 512")),
        tail_as(tail.replace(b"0, 512", b", 512")),
        tail_as(tail.replace(b"502, 200", b"502, 200,")),
        tail_as(tail.replace(b"502, 200", b"502, 200 :")),
        tail_as(tail.replace(b"502, 200", b"502 : : 200")),
        tail_as(tail.replace(b"10.0.0.2:80", b"10.0.0.2:80,")),
        tail_as(tail.replace(b", ", b",  ")),                  # double space, tab
        tail_as(tail.replace(b"0, 512", b"0,\t512")),
        tail_as(tail.replace(b" 0, 512", b"\t0, 512")),
        tail_as(b" " + tail),                                  # two spaces after the quote
        tail_as(tail.replace(b"0.020", b"0.02")),              # times not d.ddd
        tail_as(tail.replace(b"0.020", b"0.0200")),
        tail_as(tail.replace(b"0.020", b"1e3")),
        tail_as(tail.replace(b"0.020", b"1234567.020")),
        tail_as(tail.replace(b"0.020", b".020")),
        tail_as(tail.replace(b"0.020", b"0.0x0")),
        tail_as(tail.replace(b"502, 200", b"502, 2OO")),       # a status, a length not numeric
        tail_as(tail.replace(b"0, 512", b"0, " + b"9" * 20)),
        tail_as(tail.replace(b"0, 512", b"0, +5")),
        mk(addrs=[b"10.0.0.1:80", b":"]),                      # ":" as an item
        tail_as(tail.replace(b"[]", b"[", 1)),                 # brackets
        tail_as(tail.replace(b"] [", b"] x", 1)),
        tail_as(tail + b" extra"),                             # a field too many / too few
        tail_as(tail.rsplit(b" ", 1)[0]),
        tail_as(tail.rsplit(b" ", 1)[0] + b" a,b"),
        mk(**{k: v * 33 for k, v in two.items()}),             # 66 attempts (64 at most)
    ]


def test_malformed_attempt_lists_take_the_careful_path_as_before():
    base = [line for _, _, line in generate_lines(n=400, seed=6, base_rate=50.0)]
    lines = [bad for line in base[::10] for bad in _bad_tails(line)]
    batches = _batches(lines, 300)
    kw = dict(window_s=60, lateness_s=BIG, max_future_s=BIG)
    pure = _assert_same(batches, **kw)
    assert pure["counters"][2] == len(lines)  # every one through _slow ...
    careful = _careful(batches, **kw)
    # ... so the outcome is the careful path's, rejections included (what it did before)
    assert [(p, i, c, r) for p, i, c, r in pure["rejected"]] == careful["rejected"]
    assert pure["accs"] == careful["accs"]
    assert pure["points"] == [pt.to_bytes() for pt in careful["points"]]
    assert careful["parse_errors"] > 0 and careful["parse_errors"] < len(lines)


def test_attempt_list_shapes_nginx_writes_stay_fast():
    base = [line for _, _, line in generate_lines(n=200, seed=9, base_rate=50.0)]
    shapes = [
        dict(addrs=[b"10.0.0.1:80", b"10.0.0.2:80"], lens=[b"0", b"18213"], times=[b"0.016", b"0.176"],
             stats=[b"502", b"200"]),
        dict(addrs=[b"10.0.0.1:80", b"10.0.0.2:80", b"10.0.0.3:80"], lens=[b"0", b"0", b"5"],
             times=[b"0.001", b"0.002", b"0.003"], stats=[b"502", b"504", b"200"], seps=[b", ", b" : "]),
        dict(addrs=[b"[::1]:80", b"unix:/tmp/a.sock"], lens=[b"-", b"7"], times=[b"-", b"0.100"],
             stats=[b"-", b"200"], seps=[b" : "]),
        dict(addrs=[b"-", b"10.0.0.2:80"], lens=[b"-", b"-"], times=[b"-", b"-"], stats=[b"-", b"-"]),
        dict(addrs=[b"10.0.0.%d:80" % i for i in range(64)], lens=[b"0"] * 64, times=[b"999999.999"] * 64,
             stats=[b"502"] * 64),
    ]
    lines = [_list_line(line, **shapes[i % len(shapes)]) for i, line in enumerate(base)]
    batches = _batches(lines, 50)
    kw = dict(window_s=60, lateness_s=BIG, max_future_s=BIG)
    res = _assert_same(batches, **kw)
    assert res["counters"][2] == 0 and res["rejected"] == []
    careful = _careful(batches, **kw)
    got, want = _point_map(_run_points(batches, **kw)), _point_map(careful["points"])
    for key, p in want.items():
        if p.metric in LIST_METRICS:
            assert got[key].to_bytes() == p.to_bytes(), key


def _run_points(batches, **kw) -> list:
    agg = Aggregator(**kw)
    for p, lines, now in batches:
        agg.feed(lines, partition=p, now=now)
    agg.close_all()
    return [pt for cw in agg.drain() for pt in cw.points()]


_TAIL_NOISE = [b" ", b",", b", ", b" : ", b":", b"-", b".", b"\t", b"0", b"9", b"[", b"]", b"a", b"", b"  "]


def test_mutated_attempt_lists_identical():
    # Random edits of list tails: the compiled loop must accept exactly the tails the pure loop
    # accepts (same slow-line counts) and count them alike.
    rng = random.Random(17)
    lines = []
    for line in _gen_list_lines(12_000, seed=17):
        if rng.random() < 0.7:
            q = line.split(b'"')
            t = q[6]
            for _ in range(rng.choice([1, 1, 2, 3])):
                k = rng.randrange(len(t) + 1)
                t = t[:k] + rng.choice(_TAIL_NOISE) + t[k + rng.choice([0, 0, 1, 2]):]
            line = b'"'.join([*q[:6], t])
        lines.append(line)
    res = _assert_same(_batches(lines, 2000, 2), window_s=60, lateness_s=30, max_future_s=300)
    slow = res["counters"][2]
    assert 0.2 * len(lines) < slow < 0.8 * len(lines), slow  # both kinds well represented


def test_garbage_outside_the_lists_counts_like_a_single_attempt_line():
    # The lists are the only new thing: the other fields follow the single-line rules (a garbage
    # size counts 0, a "-" request time is kept as text and skipped at close), where the careful
    # path rejects such a line. A list line and its single-value twin count the same bytes/requests.
    line = next(x for _, _, x in generate_lines(n=5, seed=6, base_rate=50.0))
    q = line.split(b'"')
    bad = b'"'.join([q[0], q[1], q[2].replace(q[2].split()[1], b"12x"), *q[3:]])
    multi = _list_line(bad, [b"a:80", b"b:80"], [b"0", b"5"], [b"0.001", b"0.002"], [b"502", b"200"])
    kw = dict(window_s=60, lateness_s=BIG, max_future_s=BIG)
    for compiled in (True, False):
        got = {}
        for name, x in (("single", bad), ("multi", multi)):
            agg = Aggregator(compiled=compiled, **kw)
            assert agg.feed([x]) == [] and agg.slow_lines == 0
            agg.close_all()
            pts = [p for cw in agg.drain() for p in cw.points() if p.dims["scope"] == "global"]
            got[name] = {p.metric: p.value for p in pts}
        assert got["multi"]["bytes_out"] == got["single"]["bytes_out"] == 0
        assert got["multi"]["requests"] == got["single"]["requests"] == 1
        assert (got["multi"]["upstream_retries"], got["multi"]["upstream_time_mean"]) == (1, 0.003)
    careful = _careful([(0, [multi], None)], **kw)
    assert [r[2] for r in careful["rejected"]] == ["parse_error"]
