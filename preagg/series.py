"""The series set: turn one closed window's accumulators into metric points, and roll points up.

Series set (``dims["scope"]`` tells the level; see ``docs/preagg.md``)
------------------------------------------------------------------------
* ``global``  - everything this partition saw in the window.
* ``service`` - per ``$proxy_upstream_name`` split into ``namespace``/``service``/``port``
  (``-`` for requests rejected before routing).
* ``route``   - per service + ``host`` + ``method`` + URL ``template``, for the
  :data:`ROUTE_TOP_K` busiest routes of each service in the window that have at least
  :data:`ROUTE_MIN_REQUESTS` requests in it (one-off paths never get a series; the template cap
  bounds the candidates: at most ``max_templates_per_host`` + 1 templates per host). Junk requests (request lines that are no HTTP request) have no route; they count
  in their service's ``requests`` and ``junk_requests``.

Status class is not a dimension of its own: it is split into the ``status_Nxx`` metrics, which
keeps the series count at (services + 1) x 27 + services x ROUTE_TOP_K x 4 per window.

``global`` and ``service`` carry :data:`FULL`; ``route`` carries :data:`ROUTE`. Every point carries
``stats["partition"]`` and an id of (series, window, partition): a service's logs share a Kafka
partition so its series are complete per partition, while ``global`` is partial per partition and
is merged downstream with ``rollup(points, merge_partitions=True)``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime, timezone
from typing import Iterable

from patrol.records import MetricPoint, record_id, series_key

from . import sketches as S
from .enrich import DEVICE_CLASSES, country, country_of, device_class

__all__ = ["ADDITIVE", "FULL", "ROUTE", "LATENCY", "ROUTE_TOP_K", "ROUTE_MIN_REQUESTS", "service_dims",
           "build_points", "rollup"]

ADDITIVE = ("requests", "status_2xx", "status_3xx", "status_4xx", "status_5xx", "bytes_in", "bytes_out",
            "upstream_retries", "auth_failures", "junk_requests")
LATENCY = ("request_time", "upstream_time")
_Q = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
FULL = ADDITIVE + ("error_ratio",) + tuple(f"{f}_{q}" for f in LATENCY for q in ("p50", "p90", "p99", "mean")) + (
    "unique_clients", "distinct_404_paths", "top_clients", "device_class", "country")
ROUTE = ("requests", "status_5xx", "error_ratio", "request_time_p99")
#: Route series are emitted for the busiest routes of each service in each window only: with
#: hundreds of routes per service, per-route points would outweigh the raw logs at low rates.
ROUTE_TOP_K = 5
#: ... and only for routes with at least this many requests in the window: a path seen once or
#: twice (a scanner's word list, an id no templating rule recognises) never becomes a series,
#: whatever it looks like, and a ratio or p99 of fewer requests says nothing the service's
#: series do not. A rule on the window's contents alone, so a replay after a crash emits
#: exactly the same route points (selection state kept across windows could not be restored:
#: the checkpoint holds offsets, not history).
ROUTE_MIN_REQUESTS = 5
TOP_N = 5

# Accumulator slots shared with preagg.aggregate (a list per fine key, for speed).
N, BOUT, BIN, RETRY, RT, URT, IPS, UAS, P404 = range(9)


def _utc(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def _s(v) -> str:
    if v is None:
        return "-"
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def service_dims(upstream: str) -> dict[str, str]:
    """Dims of a service from ``$proxy_upstream_name`` (``ns-svc-port``; ``-`` when unknown)."""
    from patrol.preagg.parse.fields import split_upstream_name

    ns, svc, port = split_upstream_name(upstream) if upstream else (None, None, None)
    return {"namespace": ns or "-", "service": svc or "-", "port": port or "-"}


class _Level:
    """Raw per-window accumulator of one output series (merged from fine keys at close)."""

    __slots__ = ("n", "cls", "bout", "bin", "retry", "auth", "junk", "rt", "urt", "ips", "uas", "p404")

    def __init__(self):
        self.n = self.bout = self.bin = self.retry = self.auth = self.junk = 0
        self.cls = [0, 0, 0, 0, 0, 0]  # index = first status digit (0: unknown)
        self.rt: dict = {}
        self.urt: dict = {}
        self.ips: dict = {}
        self.uas: dict = {}
        self.p404: set = set()

    def add(self, status: bytes, acc: list, full: bool) -> None:
        n = acc[N]
        self.n += n
        d = status[:1]
        self.cls[int(d) if d.isdigit() and d != b"0" and int(d) <= 5 else 0] += n
        _merge_counts(self.rt, acc[RT])
        if not full:
            return
        _merge_counts(self.urt, acc[URT])
        self.bout += acc[BOUT]
        self.bin += acc[BIN]
        self.retry += acc[RETRY]
        if status in (b"401", b"403"):
            self.auth += n
        _merge_counts(self.ips, acc[IPS])
        _merge_counts(self.uas, acc[UAS])
        if acc[P404]:
            self.p404 |= acc[P404]


def _merge_counts(dst: dict, src: dict) -> None:
    if not dst:
        dst.update(src)
        return
    get = dst.get
    for k, c in src.items():
        dst[k] = get(k, 0) + c


try:  # the same merge as a C loop (built with the aggregator's hot loop; window close time)
    from ._fastloop import merge_counts as _merge_counts  # noqa: F811
except ImportError:
    pass


def _latency(k):
    """Latency text -> seconds, or None for what the sketch skips (``-``, garbage, <0, inf, nan)."""
    if k is None or k == b"-":
        return None
    try:
        v = float(k)
    except ValueError:  # a latency nginx would not write: ignore the value, keep the request
        return None
    return v if v >= 0 and v != math.inf else None


# latency text -> seconds (or None), kept across windows: latencies have ms resolution, so the
# same few thousand texts come back in every window and series (float() was ~1/3 of _dd)
_LAT: dict = {}


# latency -> (seconds, bin key) or None, kept across windows, for the C loop below
_LATK: dict = {}
_KEY = S.dd_key()
_START = S.dd_start()


def _lat_entry(k):
    v = _latency(k)
    e = _LATK[k] = None if v is None else (v, _KEY(v))
    return e


try:  # the per-distinct-latency loop of _dd + dd_from_counts in C (~1/5 of the close)
    from ._fastloop import dd_accumulate as _dd_acc
except ImportError:
    _dd_acc = None


def _dd(counts: dict):
    if _dd_acc is not None and _KEY is not None:
        if len(_LATK) > 200_000:
            _LATK.clear()
        r = _dd_acc(counts, _LATK, _lat_entry, *_START)
        if r is not None:
            bins, zero, n, total, lo, hi = r
            # n == 0: no latency the sketch takes (what the loop below returns None for)
            return S.dd_from_bins(bins, zero, n, total, lo, hi) if n else None
    if len(_LAT) > 200_000:
        _LAT.clear()
    get = _LAT.get
    vals = []
    for k, c in counts.items():
        v = get(k, _LAT)
        if v is _LAT:
            v = _LAT[k] = _latency(k)
        if v is not None:
            vals.append((v, c))
    return S.dd_from_counts(vals) if vals else None


# client bytes -> (text, country), kept across windows: the same addresses come back in every
# window, and decoding plus the country lookup per distinct client per window was ~1/4 of the close
_CLIENTS: dict = {}
_CLIENTS_MAX = 262_144


def _clients(counts: dict, cache: dict, country) -> tuple[dict, dict] | None:
    """``(text -> count, country -> count)`` of client bytes -> count; ``None`` if a key is not
    UTF-8 bytes (pure version of ``preagg._fastloop.clients``, same results)."""
    ips: dict = {}
    geo: dict = {}
    for k, c in counts.items():
        e = cache.get(k)
        if e is None:
            if type(k) is not bytes:
                return None
            try:
                txt = k.decode("utf-8")
            except UnicodeDecodeError:
                return None
            e = cache[k] = (txt, country(txt))
        ips[e[0]] = c
        geo[e[1]] = geo.get(e[1], 0) + c
    return ips, geo


try:  # the same as a C loop (built with the aggregator's hot loop)
    from ._fastloop import clients as _clients  # noqa: F811
except ImportError:
    pass


class _Summary:
    """Mergeable per-series summary: counts plus sketches; what one bundle of points encodes."""

    def __init__(self):
        self.counts = dict.fromkeys(ADDITIVE, 0)
        self.rt = self.urt = self.hll_ips = self.hll_404 = self.topk = None
        self.dev: dict | None = None
        self.geo: dict | None = None

    @classmethod
    def of_level(cls, lv: _Level, full: bool) -> "_Summary":
        sm = cls()
        c = lv.cls
        sm.counts.update(requests=lv.n, status_2xx=c[2], status_3xx=c[3], status_4xx=c[4], status_5xx=c[5],
                         bytes_in=lv.bin, bytes_out=lv.bout, upstream_retries=lv.retry, auth_failures=lv.auth,
                         junk_requests=lv.junk)
        sm.rt = _dd(lv.rt)
        if not full:
            return sm
        sm.urt = _dd(lv.urt)
        if len(_CLIENTS) > _CLIENTS_MAX:
            _CLIENTS.clear()
        res = _clients(lv.ips, _CLIENTS, country_of)  # _CLIENTS caches: no LRU on top
        if res is None:  # a client that is not UTF-8 bytes: the general path
            ips = {_s(k): c for k, c in lv.ips.items()}
            geo = None
        else:
            ips, geo = res
        sm.hll_ips = S.hll_from([k for k in ips if k != "-"])
        # sorted: a set iterates in hash order, which varies per process (PYTHONHASHSEED); the HLL
        # bytes in list mode follow insertion order, and a replay must send the same record
        sm.hll_404 = S.hll_from(sorted(lv.p404))
        sm.topk = S.topk_from_counts(ips)
        dev = dict.fromkeys(DEVICE_CLASSES, 0)
        for ua, cnt in lv.uas.items():
            dev[device_class(_s(ua) if ua not in (None, b"-") else None)] += cnt
        sm.dev = dev
        if geo is None:
            geo = {}
            get = geo.get
            for cc, cnt in zip(map(country, ips), ips.values()):  # country() cached per address
                geo[cc] = get(cc, 0) + cnt
        sm.geo = geo
        return sm

    @classmethod
    def merge(cls, parts: list["_Summary"]) -> "_Summary":
        """Exact merge: sums, bin-wise DDSketch merge, HLL union, heavy-hitter merge."""
        sm = cls()
        for k in ADDITIVE:
            sm.counts[k] = sum(p.counts[k] for p in parts)
        for attr in ("rt", "urt"):
            sks = [getattr(p, attr) for p in parts if getattr(p, attr) is not None]
            setattr(sm, attr, S.dd_merge(sks) if sks else None)
        for attr in ("hll_ips", "hll_404"):
            sks = [getattr(p, attr) for p in parts if getattr(p, attr) is not None]
            setattr(sm, attr, S.hll_union(sks) if sks else None)
        tks = [p.topk for p in parts if p.topk is not None]
        if tks:
            sm.topk = S.topk_from_sketch(S.topk_to_sketch(tks[0]))  # a copy: merge mutates
            for tk in tks[1:]:
                sm.topk.merge(tk)
        for attr in ("dev", "geo"):
            dists = [getattr(p, attr) for p in parts if getattr(p, attr) is not None]
            if dists:
                tot: dict[str, int] = defaultdict(int)
                for d in dists:
                    for k, v in d.items():
                        tot[k] += v
                setattr(sm, attr, dict(tot))
        return sm

    def values(self, wanted: tuple[str, ...]) -> list[tuple[str, float, dict]]:
        c = self.counts
        out = [(m, float(c[m]), {}) for m in ADDITIVE if m in wanted]
        if "error_ratio" in wanted:
            n, e = c["requests"], c["status_5xx"]
            out.append(("error_ratio", e / n if n else 0.0, {"count": n, "stats": {"numerator": e, "denominator": n}}))
        out += _latency_points("request_time", self.rt, wanted)
        out += _latency_points("upstream_time", self.urt, wanted)
        for m, h in (("unique_clients", self.hll_ips), ("distinct_404_paths", self.hll_404)):
            if m in wanted and h is not None:
                out.append((m, h.get_estimate(), {"sketch": S.hll_to_sketch(h)}))
        if "top_clients" in wanted and self.topk is not None:
            out.append(_topk_value(self.topk))
        if "device_class" in wanted and self.dev is not None:
            out.append(_device_value(self.dev))
        if "country" in wanted and self.geo is not None:
            out.append(_country_value(self.geo))
        return out


def _latency_points(fam: str, sk, wanted: tuple[str, ...]) -> list[tuple[str, float, dict]]:
    out = []
    if sk is None or sk.count == 0:
        return out
    vals = S.dd_quantiles(sk, [q for _, q in _Q])
    for (name, q), v in zip(_Q, vals):
        m = f"{fam}_{name}"
        if m in wanted:
            out.append((m, v, {"sketch": S.dd_to_sketch(sk)} if name == "p99" else {}))
    if f"{fam}_mean" in wanted:
        out.append((f"{fam}_mean", sk.sum / sk.count, {"stats": {"sum": sk.sum, "count": sk.count}}))
    return out


def _topk_value(tk) -> tuple[str, float, dict]:
    top = S.topk_items(tk, TOP_N)
    return ("top_clients", float(top[0][1]) if top else 0.0,
            {"stats": {ip: float(c) for ip, c in top}, "sketch": S.topk_to_sketch(tk)})


def _device_value(dist: dict) -> tuple[str, float, dict]:
    total = sum(dist.values())
    # Value: share of automated traffic, the scalar a detector watches; the mix is in stats.
    return ("device_class", dist["bot"] / total if total else 0.0, {"stats": {k: float(v) for k, v in dist.items()}})


def _country_value(dist: dict) -> tuple[str, float, dict]:
    return ("country", float(sum(1 for k, v in dist.items() if v and k != "--")),
            {"stats": {k: float(v) for k, v in sorted(dist.items())}})


_WIN: dict[int, tuple[datetime, str]] = {}


def _win(t: int) -> tuple[datetime, str]:
    """UTC datetime of a window bound and its ISO text (a window's points share them)."""
    r = _WIN.get(t)
    if r is None:
        if len(_WIN) > 10_000:
            _WIN.clear()
        dt = _utc(t)
        r = _WIN[t] = (dt, dt.isoformat())
    return r


def _point(metric: str, dims: dict, ws: int, we: int, value: float, extra: dict, partition: int | None) -> MetricPoint:
    stats = {k: float(v) for k, v in extra.get("stats", {}).items()}
    if partition is not None:
        stats["partition"] = float(partition)
    (wsd, wsi), (wed, wei) = _win(ws), _win(we)
    key = series_key(metric, dims)
    # Same id as MetricPoint.make; partition-scoped when a partition is given, so two partitions'
    # partial global points do not collide.
    pid = record_id(key, wsi, wei) if partition is None else record_id(key, wsi, wei, f"p{partition}")
    count = extra.get("count")
    # No validation: every field is already of its declared type here (float value and stats,
    # str dims, aware datetimes, a validated Sketch), so validation would only copy them, at
    # ~10 us a point (a 10 s window of a dozen services makes hundreds); what model_construct
    # would build, see sketches.constructor. The wire bytes are the same as MetricPoint.make's
    # (tests compare them).
    return _new_point(pid, key, metric, dict(dims), wsd, wed, float(value),
                      None if count is None else int(count), stats, extra.get("sketch"))


_new_point = S.constructor(MetricPoint, ("id", "series", "metric", "dims", "window_start", "window_end", "value",
                                         "count", "stats", "sketch"))


def build_points(ws: int, we: int, accs: dict, partition: int | None = 0, route_top_k: int = ROUTE_TOP_K,
                 route_min_requests: int = ROUTE_MIN_REQUESTS) -> list[MetricPoint]:
    """Metric points of one closed window.

    Parameters
    ----------
    ws, we : int
        Window start / end, epoch seconds.
    accs : dict
        Fine accumulators ``(b"[upstream]", (host, template), method, status) -> list`` (slots above);
        a template ``None`` marks junk requests (counted in ``junk_requests``, no route).
    partition : int or None
        Kafka partition the window came from (part of the id; ``None`` for a merged view).
    route_top_k : int
        Route series per service: the window's busiest routes (ties broken by key).
    route_min_requests : int
        Requests a route needs in the window to get points (see :data:`ROUTE_MIN_REQUESTS`).
    """
    svcs = defaultdict(_Level)
    # Only the busiest route_top_k routes per service with route_min_requests are emitted: count
    # here, and merge a route's latencies (_Level.add) only if it is emitted, in the same
    # accumulator order as before (so the same DDSketch sums and bytes).
    routes_of: dict = {}
    for (up, (host, tmpl), method, status), acc in accs.items():
        up = up[1:-1]  # "[ns-svc-port]" as written in the line
        lv = svcs[up]
        lv.add(status, acc, True)
        if tmpl is None:
            lv.junk += acc[N]
            continue
        rk = (up, host, method, tmpl)
        r = routes_of.get(rk)
        if r is None:
            routes_of[rk] = [acc[N], [(status, acc)]]
        else:
            r[0] += acc[N]
            r[1].append((status, acc))
    sums = {up: _Summary.of_level(lv, True) for up, lv in svcs.items()}
    out = []
    # global = exact merge of the service summaries (cheaper than re-merging raw counters)
    for metric, value, extra in _Summary.merge(list(sums.values())).values(FULL):
        out.append(_point(metric, {"scope": "global"}, ws, we, value, extra, partition))
    sdims = {up: service_dims(_s(up)) for up in svcs}
    for up, sm in sums.items():
        dims = {"scope": "service", **sdims[up]}
        for metric, value, extra in sm.values(FULL):
            out.append(_point(metric, dims, ws, we, value, extra, partition))
    ranked = sorted(routes_of.items(), key=lambda kv: (-kv[1][0], _s(kv[0][0]), _s(kv[0][1]), _s(kv[0][2]), _s(kv[0][3])))
    per_svc: dict = defaultdict(int)
    for (up, host, method, tmpl), (n, parts) in ranked:
        if n < route_min_requests:
            continue
        per_svc[up] += 1
        if per_svc[up] > route_top_k:
            continue
        lv = _Level()
        for status, acc in parts:
            lv.add(status, acc, False)
        dims = {"scope": "route", **sdims[up], "host": _s(host), "method": _s(method), "template": _s(tmpl)}
        for metric, value, extra in _Summary.of_level(lv, False).values(ROUTE):
            out.append(_point(metric, dims, ws, we, value, extra, partition))
    return out


def rollup(points: Iterable[MetricPoint], window_s: int | None = None, merge_partitions: bool = False) -> list[MetricPoint]:
    """Roll points up to longer windows and/or merge partitions, exactly.

    Parameters
    ----------
    points : iterable of MetricPoint
        Points produced by :func:`build_points` (any windows, any partitions).
    window_s : int, optional
        Target window length (a multiple of the input's); ``None`` keeps each point's window.
    merge_partitions : bool
        Merge points of the same series and window from different partitions (the downstream
        step that completes ``global`` series); output ids are then partition-free.

    Returns
    -------
    list of MetricPoint
        Counts are summed, ratios recomputed from numerator/denominator, DDSketches merged bin-wise
        (quantiles re-read), HLLs unioned, heavy-hitter sketches merged, distributions summed.
    """
    groups: dict[tuple, dict[str, list[MetricPoint]]] = defaultdict(lambda: defaultdict(list))
    for p in points:
        ws = int(p.window_start.timestamp())
        we = int(p.window_end.timestamp())
        if window_s:
            ws -= ws % window_s
            we = ws + window_s
        part = None if merge_partitions else p.stats.get("partition")
        key = (tuple(sorted(p.dims.items())), ws, we, part)
        groups[key][p.metric].append(p)
    out = []
    for (dims_t, ws, we, part), bundle in groups.items():
        dims = dict(dims_t)
        pid = None if part is None else int(part)
        for metric, value, extra in _of_bundle(bundle).values(tuple(bundle)):
            out.append(_point(metric, dims, ws, we, value, extra, pid))
    return out


def _of_bundle(bundle: dict[str, list[MetricPoint]]) -> _Summary:
    """Summary of one window's points of one series (inverse of _Summary.values)."""
    sm = _Summary()
    for m in ADDITIVE:
        if m in bundle:
            sm.counts[m] = sum(p.value for p in bundle[m])
    if "error_ratio" in bundle and "requests" not in bundle:
        sm.counts["requests"] = sum(p.stats["denominator"] for p in bundle["error_ratio"])
        sm.counts["status_5xx"] = sum(p.stats["numerator"] for p in bundle["error_ratio"])
    for fam, attr in (("request_time", "rt"), ("upstream_time", "urt")):
        pts = bundle.get(f"{fam}_p99")
        if pts:
            setattr(sm, attr, S.dd_merge(S.dd_from_sketch(p.sketch) for p in pts))
    for m, attr in (("unique_clients", "hll_ips"), ("distinct_404_paths", "hll_404")):
        if m in bundle:
            setattr(sm, attr, S.hll_union(S.hll_from_sketch(p.sketch) for p in bundle[m]))
    if "top_clients" in bundle:
        for p in bundle["top_clients"]:
            tk = S.topk_from_sketch(p.sketch)
            if sm.topk is None:
                sm.topk = tk
            else:
                sm.topk.merge(tk)
    for m, attr in (("device_class", "dev"), ("country", "geo")):
        if m in bundle:
            dist: dict[str, int] = defaultdict(int)
            for p in bundle[m]:
                for k, v in p.stats.items():
                    if k != "partition":
                        dist[k] += int(v)
            setattr(sm, attr, dict(dist))
    return sm
