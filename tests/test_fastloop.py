"""The compiled hot loop (``preagg/_fastloop.pyx``) gives exactly what the pure-Python loop gives.

Exactly means: the same rejections (index, code, reason), counters, checkpoints, accumulators
(including dict insertion order, which DDSketch sums and the heavy-hitter sketch depend on) and
byte-identical metric points, on both real log files and on generated traffic with mutated lines
(garbage sizes, escapes, late/future times, truncations, 404s with queries, extra fields).
"""

from __future__ import annotations

import os
import random
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from preagg import aggregate
from preagg.aggregate import Aggregator
from streams.generator import generate_lines

LOGS = Path(__file__).resolve().parents[2] / "shared" / "data" / "logs"
BIG = 10**9


@pytest.fixture(scope="module", autouse=True)
def _compiled_loop_built():
    if aggregate.COMPILED:
        return
    msg = ("preagg._fastloop is not built: `pip install -e .` (or `python setup.py build_ext --inplace`) "
           "needs Cython and a C compiler; without it the stage runs the 2-3x slower pure-Python loop")
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(msg)  # under CI a missing extension is a broken build, never a skip
    pytest.skip(msg)


def _logs(name: str) -> list[bytes]:
    path = LOGS / name
    assert path.is_file(), f"test data missing: {path} (the shared/ folder must sit beside the repo)"
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
    # and with the combined parser (no fast path at all) the flag changes nothing either
    _assert_same(_batches(lines, 2000), window_s=60, lateness_s=BIG, max_future_s=BIG, fmt="combined")


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
    from preagg import _fastloop

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
