"""Series volume of the pre-aggregation stage on id-heavy URL paths: ``python -m benchmarks.preagg_paths``.

What it answers: does pre-aggregation still cut the volume (points and bytes out per line in) when
the paths are full of ids the project's own generator does not write (numeric ids as file names,
ids glued to slugs, dates, handles, short random tokens, a long tail of plain words)? And does the
number of route series per service stay bounded over a long stream?

In memory (no Kafka): lines -> :class:`preagg.aggregate.Aggregator` (the stage's hot loop and
window close) -> points, at ``--window`` s windows. ``--paths numeric-ids`` uses
:func:`numeric_id_lines` (ingress-nginx default format, ``--services`` services at ``--rate``
requests/s each); ``--paths default`` uses the project's generator at the same total rate. Prints
JSON: lines, points, bytes in/out, reduction, points per line, distinct templates seen in the fine
accumulators, distinct route series and distinct series over the run, route series per service.
"""

from __future__ import annotations

import argparse
import json
import random
import string
import time
from collections import defaultdict
from datetime import datetime, timezone

from benchmarks import GEN_START

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
       "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
       "curl/8.5.0")
_B62 = string.ascii_letters + string.digits
_B32 = string.ascii_uppercase + "234567"


def _clf(t: float) -> str:
    d = datetime.fromtimestamp(int(t), tz=timezone.utc)
    return f"{d.day:02d}/{_MONTHS[d.month - 1]}/{d.year}:{d.hour:02d}:{d.minute:02d}:{d.second:02d} +0000"


def _word(rnd: random.Random, k: int = 7) -> str:
    return "".join(rnd.choice(string.ascii_lowercase) for _ in range(k))


def _path_makers(rnd: random.Random):
    """Per service: (upstream, [(weight, method, path maker)]). Ids of many shapes, in any position."""
    uuid = lambda: "%08x-%04x-4%03x-a%03x-%012x" % (rnd.getrandbits(32), rnd.getrandbits(16), rnd.getrandbits(12),  # noqa: E731
                                                    rnd.getrandbits(12), rnd.getrandbits(48))
    n = lambda: rnd.randint(1, 2_000_000)  # noqa: E731
    day = lambda: f"2026-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}"  # noqa: E731
    tags = [_word(rnd) for _ in range(3000)]   # plain words no rule can tell from a route word
    handles = [_word(rnd, rnd.randint(4, 10)) for _ in range(5000)]
    return [
        ("media-images-8080", [
            (40, "GET", lambda: f"/img/thumb/{n()}.jpg"),
            (20, "GET", lambda: f"/img/full/{n()}_b.jpg"),
            (10, "GET", lambda: f"/avatars/{n()}.png"),
            (10, "GET", lambda: f"/img/thumb.{n()}.webp"),
            (5, "GET", lambda: f"/resize/{rnd.choice((64, 128, 300))}x{rnd.choice((64, 200))}/{n()}.jpg"),
            (5, "GET", lambda: f"/media/IMG_2026{rnd.randint(1, 12):02d}{rnd.randint(1, 28):02d}_{rnd.randint(0, 235959):06d}.jpg"),
            (10, "GET", lambda: "/healthz"),
        ]),
        ("shop-api-8080", [
            (30, "GET", lambda: f"/api/v1/products/{n()}"),
            (15, "GET", lambda: f"/api/v1/users/{n()}/orders.json"),
            (10, "POST", lambda: f"/api/v1/orders/{uuid()}/pay"),
            (10, "GET", lambda: f"/api/v1/item/B0{''.join(rnd.choice(string.ascii_uppercase + string.digits) for _ in range(8))}"),
            (10, "GET", lambda: f"/api/v1/search?q={_word(rnd)}"),
            (10, "GET", lambda: f"/api/v1/catalog/item{rnd.randint(10000, 99999)}"),
            (5, "GET", lambda: f"/api/v1/sku/{n()}-{rnd.choice(('red', 'blue', 'xl'))}"),
        ]),
        ("blog-web-80", [
            (30, "GET", lambda: f"/p/{n()}-{_word(rnd)}-{_word(rnd)}"),
            (15, "GET", lambda: f"/archive/2026/{rnd.randint(1, 12):02d}/{rnd.randint(1, 28):02d}/"),
            (15, "GET", lambda: f"/@{rnd.choice(handles)}"),
            (10, "GET", lambda: f"/tag/{rnd.choice(tags)}"),
            (10, "GET", lambda: f"/feed/{day()}.xml"),
            (10, "GET", lambda: f"/post/{_word(rnd)}-{_word(rnd)}-{rnd.getrandbits(48):012x}"),
            (10, "GET", lambda: "/"),
        ]),
        ("cdn-static-80", [
            (30, "GET", lambda: f"/static/js/main.{rnd.getrandbits(32):08x}.chunk.js"),
            (20, "GET", lambda: f"/files/report-{day()}.pdf"),
            (20, "GET", lambda: f"/dl/app-{rnd.randint(1, 9)}.{rnd.randint(0, 30)}.{rnd.randint(0, 99)}.tar.gz"),
            (20, "GET", lambda: f"/files/{n()}/{n()}.mp4"),
            (10, "GET", lambda: "/favicon.ico"),
        ]),
        ("auth-api-8080", [
            (30, "POST", lambda: "/oauth/token"),
            (20, "GET", lambda: f"/session/{''.join(rnd.choice(_B62) for _ in range(24))}"),
            (15, "GET", lambda: f"/verify/{_word(rnd)}.{_word(rnd, 5)}@example.com"),
            (15, "GET", lambda: f"/reset/{''.join(rnd.choice(_B32) for _ in range(16))}"),
            (10, "GET", lambda: f"/v/{''.join(rnd.choice(_B62) for _ in range(11))}"),
            (10, "GET", lambda: f"/login/{day()}T{rnd.randint(0, 23):02d}:00:00Z"),
        ]),
    ]


def numeric_id_lines(n: int, services: int = 5, rate: float = 6.0, seed: int = 1, start: str = GEN_START):
    """``n`` ingress-nginx default-format lines (bytes), ``services`` services at ``rate`` req/s each.

    Paths carry ids the way real APIs and static sites do (see :func:`_path_makers`); statuses are
    mostly 200 with some 404/500; latencies and sizes vary. Deterministic for a seed.
    """
    rnd = random.Random(seed)
    makers = _path_makers(rnd)[:services]
    if services > len(makers):
        raise ValueError(f"at most {len(makers)} services")
    step = 1.0 / (rate * services)
    t0 = datetime.fromisoformat(start).timestamp()
    out = []
    for i in range(n):
        t = t0 + i * step
        up, routes = makers[rnd.randrange(services)]
        _, method, mk = rnd.choices(routes, [w for w, _, _ in routes])[0]
        status = rnd.choices((200, 404, 500), (95, 4, 1))[0]
        size = rnd.randint(200, 60000)
        rt = rnd.randint(1, 400) / 1000
        ip = f"{rnd.randint(1, 223)}.{rnd.randint(0, 255)}.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}"
        rid = "%032x" % rnd.getrandbits(128)
        out.append((f'{ip} - - [{_clf(t)}] "{method} {mk()} HTTP/1.1" {status} {size} "-" "{rnd.choice(_UA)}" '
                    f'{rnd.randint(200, 900)} {rt:.3f} [{up}] [] 10.244.1.{rnd.randint(2, 250)}:8080 {size} '
                    f'{rt:.3f} {status} {rid}').encode())
    return out


def default_lines(n: int, rate: float, seed: int = 1) -> list[bytes]:
    from patrol.sim.generator import generate_lines

    return [line for _, _, line in generate_lines(n=n, seed=seed, base_rate=rate, start=GEN_START)]


def measure(lines: list[bytes], window: int = 60, batch: int = 5000) -> dict:
    """Feed ``lines`` through an Aggregator; volume and series counts of what comes out."""
    from patrol.preagg.aggregate import Aggregator

    agg = Aggregator(window_s=window, lateness_s=window, max_future_s=10**9)
    points = bytes_out = 0
    templates, series, routes, route_keys = set(), set(), set(), set()
    route_per_svc: dict = defaultdict(set)
    t0 = time.process_time()

    def take():
        nonlocal points, bytes_out
        for cw in agg.drain():
            for key in cw.accs:
                templates.add((key[0], key[1]))
            for p in cw.points():
                points += 1
                bytes_out += len(p.to_bytes())
                series.add(p.series)
                if p.dims["scope"] == "route":
                    routes.add(p.series)
                    route_keys.add((p.dims["namespace"], p.dims["service"], p.dims["host"], p.dims["method"],
                                    p.dims["template"]))
                    route_per_svc[p.dims["namespace"] + "/" + p.dims["service"]].add(
                        (p.dims["host"], p.dims["method"], p.dims["template"]))

    for i in range(0, len(lines), batch):
        agg.feed(lines[i:i + batch])
        take()
    agg.close_all()
    take()
    cpu = time.process_time() - t0
    bytes_in = sum(len(x) for x in lines)
    return {"window_s": window, "lines": len(lines), "points": points, "points_per_line": round(points / len(lines), 4),
            "bytes_in": bytes_in, "bytes_out": bytes_out, "reduction": round(bytes_in / max(1, bytes_out), 2),
            "templates": len(templates), "series": len(series), "route_series": len(routes), "routes": len(route_keys),
            "route_series_per_service": {k: len(v) for k, v in sorted(route_per_svc.items())},
            "cpu_s": round(cpu, 2)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--paths", choices=("numeric-ids", "default", "both"), default="both")
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--services", type=int, default=5)
    ap.add_argument("--rate", type=float, default=6.0, help="requests/s per service")
    ap.add_argument("--window", type=int, default=60)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    out = {"services": a.services, "rate_per_service": a.rate}
    if a.paths in ("numeric-ids", "both"):
        out["numeric_ids"] = measure(numeric_id_lines(a.lines, a.services, a.rate, a.seed), a.window)
    if a.paths in ("default", "both"):
        out["default"] = measure(default_lines(a.lines, a.rate * a.services, a.seed), a.window)
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
