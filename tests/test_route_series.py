"""Issue #13 A: route series per service stay bounded over a stream, whatever the paths look like.

Route series are what the detect stage keeps state for (Redis keys per series): a set that
changes every window grows without bound even when each window emits only a few routes. A route
gets points only among its service's ROUTE_TOP_K busiest with ROUTE_MIN_REQUESTS requests in the
window, so paths seen once or twice never make a series.
"""

import random
import string

from benchmarks.preagg_paths import numeric_id_lines
from patrol.preagg.aggregate import Aggregator
from patrol.preagg.series import ROUTE_TOP_K

T0 = 1_795_392_000  # a window boundary (multiple of 60)


def _line(t: float, path: str, up: str = "shop-api-8080", status: int = 200) -> bytes:
    import time as _t
    ts = _t.strftime("%d/%b/%Y:%H:%M:%S +0000", _t.gmtime(int(t)))
    return (f'10.0.0.{int(t * 7) % 250 + 1} - - [{ts}] "GET {path} HTTP/1.1" {status} 512 "-" "curl/8" 300 0.010 '
            f'[{up}] [] 10.244.0.5:8080 512 0.010 {status} abcdef').encode()


def _routes_per_window(lines, window_s=60):
    agg = Aggregator(window_s=window_s, lateness_s=window_s, max_future_s=10**9)
    per_window = []
    for i in range(0, len(lines), 2000):
        agg.feed(lines[i:i + 2000])
    agg.close_all()
    for cw in agg.drain():
        per_window.append({(p.dims["namespace"] + "/" + p.dims["service"], p.dims["template"]) for p in cw.points()
                           if p.dims["scope"] == "route" and p.metric == "requests"})
    return per_window


def _word_traffic(windows: int, seed: int = 3, heavy_from: int = 0):
    """Per window: two busy routes plus 200 one-off paths made of plain words (no rule can tell
    them from route words, e.g. a scanner's word list); from ``heavy_from`` on a third busy route."""
    rnd = random.Random(seed)
    lines = []
    for w in range(windows):
        paths = ["/api/orders"] * 120 + ["/healthz"] * 60
        paths += ["/" + "".join(rnd.choice(string.ascii_lowercase) for _ in range(9)) for _ in range(200)]
        if w >= heavy_from > 0:
            paths += ["/api/refunds"] * 90
        rnd.shuffle(paths)
        lines += [_line(T0 + w * 60 + 59 * k / len(paths), p) for k, p in enumerate(paths)]
    return lines


def test_one_off_paths_do_not_make_new_route_series_every_window():
    per_window = _routes_per_window(_word_traffic(30))
    assert len(per_window) == 30
    for routes in per_window:  # the busy routes are there in every window
        assert {("shop/api", "/api/orders"), ("shop/api", "/healthz")} <= routes
    seen = set().union(*per_window)
    # before: the top-K of each window took 3 new one-off paths per window (92 series in 30 windows)
    assert len(seen) <= ROUTE_TOP_K, sorted(seen)


def test_a_route_that_becomes_busy_gets_its_series():
    per_window = _routes_per_window(_word_traffic(20, heavy_from=8))
    first = next(i for i, r in enumerate(per_window) if ("shop/api", "/api/refunds") in r)
    assert 8 <= first <= 10                               # admitted within a few windows
    assert all(("shop/api", "/api/refunds") in r for r in per_window[first:])   # and kept
    assert len(set().union(*per_window)) <= ROUTE_TOP_K + 1


def test_numeric_id_traffic_route_series_stay_bounded():
    lines = numeric_id_lines(40 * 60 * 30, seed=2)       # 40 windows, 5 services at 6 req/s
    per_window = _routes_per_window(lines)
    assert len(per_window) >= 40
    per_svc: dict = {}
    for routes in per_window:
        for svc, t in routes:
            per_svc.setdefault(svc, set()).add(t)
    for svc, ts in per_svc.items():
        assert len(ts) <= ROUTE_TOP_K + 2, (svc, sorted(ts))
