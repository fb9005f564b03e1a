"""Parser-only benchmark: lines/s of the default-format ingress-nginx parser.

Run ``python -m benchmarks.parse --json out.json [--lines N]``.  In the same run it
times a plain ``re`` + ``groupdict`` parser (with the same int/float conversions)
as the reference the fast path must beat, and the other formats for context.
Single process, single core; the best of ``--repeat`` runs is reported because
the minimum is the least noisy estimate of the cost.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import re
import sys
import time

from preagg.parse import get_parser

_PATHS = ["/", "/api/v1/users/{n}", "/api/v1/orders/{n}/items", "/static/app.{h}.js",
          "/products/{n}", "/login", "/healthz", "/search?q=shoes&page={n}"]
_UAS = ["Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_6) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/79.0.3945.130 Safari/537.36", "curl/7.54.0", "python-requests/2.22.0",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"]
_SERVICES = ["default-web-8080", "shop-checkout-api-80", "payments-ledger-9000", "default-web2-8080"]
_METHODS = ["GET"] * 8 + ["POST", "PUT", "DELETE"]
_STATUS = [200] * 20 + [201, 204, 301, 304, 400, 401, 403, 404, 500, 502, 503]


def make_lines(n: int, seed: int = 1) -> list[str]:
    """Generate ``n`` realistic default-format lines, time advancing ~1k lines/s."""
    rnd = random.Random(seed)
    t0 = 1_700_000_000
    out = []
    for i in range(n):
        t = time.gmtime(t0 + i // 1000)
        ts = time.strftime("%d/%b/%Y:%H:%M:%S +0000", t)
        path = rnd.choice(_PATHS).format(n=rnd.randrange(10_000), h=f"{rnd.getrandbits(32):08x}")
        st = rnd.choice(_STATUS)
        svc = rnd.choice(_SERVICES)
        if rnd.random() < 0.05:   # a retry: two upstream attempts
            ups = "10.0.0.1:8080, 10.0.0.2:8080 0, 512 0.100, 0.004 502, %d" % st
        else:
            ups = f"10.0.{rnd.randrange(4)}.{rnd.randrange(250)}:8080 512 0.00{rnd.randrange(10)} {st}"
        out.append(
            f'10.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(256)} - - [{ts}] '
            f'"{rnd.choice(_METHODS)} {path} HTTP/1.1" {st} {rnd.randrange(20000)} "-" "{rnd.choice(_UAS)}" '
            f'{rnd.randrange(100, 900)} 0.0{rnd.randrange(10)}{rnd.randrange(10)} [{svc}] [] {ups} '
            f'{rnd.getrandbits(128):032x}')
    return out


_REF = re.compile(
    r'(?P<remote_addr>\S+) - (?P<remote_user>\S+) \[(?P<time_local>[^\]]+)\] "(?P<request>[^"]*)" '
    r'(?P<status>\d+) (?P<body_bytes_sent>\S+) "(?P<http_referer>[^"]*)" "(?P<http_user_agent>[^"]*)" '
    r'(?P<request_length>\S+) (?P<request_time>\S+) \[(?P<proxy_upstream_name>[^\]]*)\] '
    r'\[(?P<alt>[^\]]*)\] (?P<upstream_addr>.+?) (?P<upstream_response_length>[\d\-, ]+?) '
    r'(?P<upstream_response_time>[\d\.\-, ]+?) (?P<upstream_status>[\d\-, ]+?) (?P<req_id>\S+)$')


def reference_parse(line: str) -> dict:
    """Plain regex + groupdict parser with the scalar conversions (the baseline)."""
    d = _REF.match(line).groupdict()
    d["status"] = int(d["status"])
    d["body_bytes_sent"] = int(d["body_bytes_sent"])
    d["request_length"] = int(d["request_length"])
    d["request_time"] = float(d["request_time"])
    method, path, proto = d["request"].split(" ")
    d["method"], d["path"], d["protocol"] = method, path.partition("?")[0], proto
    return d


def _rate(fn, lines, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for line in lines:
            fn(line)
        best = min(best, time.perf_counter() - t)
    return len(lines) / best


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON here")
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args(argv)
    lines = make_lines(a.lines)
    fast = get_parser("ingress-nginx")
    slow = get_parser("ingress-nginx").__globals__["_slow"]
    res = {
        "lines": a.lines,
        "python": platform.python_version(),
        "ingress_nginx_lines_per_s": _rate(fast, lines, a.repeat),
        "ingress_nginx_bytes_input_lines_per_s": _rate(fast, [s.encode() for s in lines], a.repeat),
        "regex_groupdict_lines_per_s": _rate(reference_parse, lines, a.repeat),
        "compiled_log_format_lines_per_s": _rate(slow, lines[: a.lines // 4], 1),
    }
    res["ratio_vs_regex_groupdict"] = res["ingress_nginx_lines_per_s"] / res["regex_groupdict_lines_per_s"]
    res["mb_per_s"] = res["ingress_nginx_lines_per_s"] * (sum(map(len, lines)) / len(lines)) / 1e6
    out = json.dumps(res, indent=2)
    print(out)
    if a.json:
        with open(a.json, "w") as f:
            f.write(out + "\n")
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
