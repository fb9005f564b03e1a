"""Per-line CPU cost of the pre-aggregation loop and of the window close, in memory.

``python -m benchmarks.preagg_parts [--lines N] [--window S] [--reps R]`` generates default-format
lines (seed 2, ``base_rate`` 2000, as ``benchmarks.preagg``), then repeats: ``Aggregator.feed`` in
10k batches + ``close_all`` ("loop": includes filling the accumulators from the compiled loop's
tables and templating new request kinds) and ``points()`` + ``to_bytes()`` of every closed window
("close"). The first repetition warms the caches a running worker has warm (templates, UA, GeoIP)
and is not counted; the best of the others is printed as JSON with a hash of all point bytes, so
two builds can be compared for speed *and* identical output::

    python -m benchmarks.preagg_parts --window 10
    cd /tmp/old && PYTHONPATH=/path/to/repo python -m benchmarks.preagg_parts --window 10  # another preagg/

Rates are process CPU time; run the two builds alternately on a shared machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time

from benchmarks import GEN_START


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=300_000)
    ap.add_argument("--window", type=int, default=60)
    ap.add_argument("--reps", type=int, default=3, help="counted repetitions (after one warm-up)")
    a = ap.parse_args(argv)

    import patrol.preagg.aggregate as A
    from patrol.preagg.enrich import warm
    from patrol.sim.generator import generate_lines

    lines = [line for _, _, line in generate_lines(n=a.lines, seed=2, base_rate=2000.0, start=GEN_START)]
    warm()
    best_loop = best_close = float("inf")
    caches = None
    for rep in range(a.reps + 1):
        agg = A.Aggregator(window_s=a.window)
        if caches:  # a running worker's template caches are warm
            agg.rcache, agg.pcache, agg.tcache, agg.times = caches
        t0 = time.process_time()
        for i in range(0, len(lines), 10_000):
            agg.feed(lines[i:i + 10_000])
        agg.close_all()
        windows = agg.drain()
        t1 = time.process_time()
        raw = [p.to_bytes() for cw in windows for p in cw.points()]
        t2 = time.process_time()
        caches = agg.rcache, agg.pcache, agg.tcache, agg.times
        if rep:
            best_loop, best_close = min(best_loop, t1 - t0), min(best_close, t2 - t1)
    out = {"preagg": A.__file__, "compiled_loop": A.Aggregator().compiled, "window_s": a.window,
           "lines": len(lines), "loop_us_per_line": round(best_loop / len(lines) * 1e6, 3),
           "close_us_per_line": round(best_close / len(lines) * 1e6, 3), "points": len(raw),
           "points_sha1": hashlib.sha1(b"".join(raw)).hexdigest()}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
