"""The traffic model: services, endpoints, seasonality, clients, and vectorised line rendering.

Generation works in chunks of simulated seconds. Per chunk, numpy draws every random quantity
for all lines at once (arrival times, route, client, status); incidents (``incidents.py``) then
add lines (scanners, level shifts) and modify drawn columns; ``render.py`` turns the columns into
text from the pools pre-rendered here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import pools
from .catalog import SERVICES, STATUS_PROFILES, STATUSES, USER_AGENTS, Service

CODES = np.array(STATUSES, dtype=np.int64)
SIDX = {c: i for i, c in enumerate(STATUSES)}


@dataclass
class Batch:
    """Columns of one chunk of requests before rendering.

    ``status`` is an index into ``STATUSES`` or -1 while undecided; ``forced`` marks lines whose
    status an incident fixed (a scanner's 404s must not be re-drawn). ``lat_mult`` scales the
    drawn latency; ``keep`` is False for lines an incident removed (traffic drop).
    """

    t: np.ndarray
    route: np.ndarray
    client: np.ndarray
    path: np.ndarray
    status: np.ndarray
    forced: np.ndarray
    lat_mult: np.ndarray
    keep: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.keep is None:
            self.keep = np.ones(len(self.t), dtype=bool)

    def __len__(self) -> int:
        return len(self.t)

    @classmethod
    def concat(cls, parts: list["Batch"]) -> "Batch":
        """Join batches and order them by event time (extras interleave with base traffic)."""
        if len(parts) == 1:
            return parts[0]
        cols = {k: np.concatenate([getattr(p, k) for p in parts]) for k in
                ("t", "route", "client", "path", "status", "forced", "lat_mult", "keep")}
        order = np.argsort(cols["t"], kind="stable")
        return cls(**{k: v[order] for k, v in cols.items()})

    def select(self, mask: np.ndarray) -> "Batch":
        return Batch(**{k: getattr(self, k)[mask] for k in
                        ("t", "route", "client", "path", "status", "forced", "lat_mult", "keep")})


@dataclass
class Chunk:
    """Rendered output: event epoch seconds, Kafka keys ($proxy_upstream_name), log lines."""

    times: np.ndarray
    keys: list[bytes]
    lines: list[bytes]

    def __len__(self) -> int:
        return len(self.lines)


class TrafficModel:
    """Seasonal, multi-service ingress traffic with pre-rendered string pools.

    Parameters
    ----------
    seed : int
        Seeds the estate (IDs, client pool, pods); draws use a separate stream.
    base_rate : float
        Mean requests per simulated second over a week (seasonality averages to 1).
    n_clients : int
        Size of the normal client pool; requests per client follow a Zipf law.
    ipv6_share : float
        Fraction of clients with an IPv6 address.
    zipf_s : float
        Zipf exponent of requests per client (1.0 = classic Zipf).
    peak_hour : float
        UTC hour of the diurnal peak.
    trough_ratio : float
        Rate at the nightly trough divided by the rate at the daily peak (weekday).
    weekend_factor : float
        Saturday/Sunday rate relative to the weekly mean of weekdays.
    retry_p : float
        Probability that a successful request needed an upstream retry.
    services : tuple of Service
        The estate; defaults to ``catalog.SERVICES``.
    """

    N_SCAN_CLIENTS = 8
    N_BRUTE_CLIENTS = 8

    def __init__(self, seed: int = 0, base_rate: float = 50.0, n_clients: int = 20_000, ipv6_share: float = 0.1,
                 zipf_s: float = 1.0, peak_hour: float = 15.0, trough_ratio: float = 0.25,
                 weekend_factor: float = 0.75, retry_p: float = 0.003, pool_size: int = 512,
                 services: tuple[Service, ...] = SERVICES):
        if base_rate <= 0:
            raise ValueError("base_rate must be > 0")
        self.seed, self.base_rate, self.retry_p = seed, float(base_rate), retry_p
        self.services = services
        rng = np.random.default_rng([seed, 0])
        self._build_routes(rng, pool_size)
        self._build_clients(rng, n_clients, ipv6_share, zipf_s)
        # Diurnal: first harmonic sets peak/trough ratio, a small second harmonic adds the
        # evening shoulder; weekly: weekdays a bit above the mean, weekends below.
        self._a1 = (1 - trough_ratio) / (1 + trough_ratio)
        self._peak = peak_hour
        wd = (7 - 2 * weekend_factor) / 5
        self._weekly = np.array([wd] * 5 + [weekend_factor] * 2)  # Mon..Sun
        self._ts_cache: dict[int, bytes] = {}

    # -- estate -------------------------------------------------------------------------------
    def _build_routes(self, rng: np.random.Generator, pool_size: int) -> None:
        svc_w = np.array([s.weight for s in self.services], float)
        self.svc_share = svc_w / svc_w.sum()
        self.svc_upstream = [s.upstream.encode() for s in self.services]
        r_svc, r_p, r_mu, r_sig, r_body, r_req, r_prof, r_ref = [], [], [], [], [], [], [], []
        targets: list[bytes] = []
        off, size = [], []
        self.login_route: dict[int, int] = {}
        self.svc_routes: list[np.ndarray] = []
        self.svc_route_cum: list[np.ndarray] = []
        for si, svc in enumerate(self.services):
            ew = np.array([e.weight for e in svc.endpoints], float)
            ids = []
            for ep, w in zip(svc.endpoints, ew / ew.sum()):
                ri = len(r_svc)
                ids.append(ri)
                if ep.login:
                    self.login_route[si] = ri
                r_svc.append(si)
                r_p.append(self.svc_share[si] * w)
                r_mu.append(math.log(ep.median_ms / 1000.0))
                r_sig.append(ep.sigma)
                r_body.append(ep.body)
                r_req.append(ep.req_body)
                prof = STATUS_PROFILES[ep.profile]
                p = np.array([prof.get(c, 0.0) for c in STATUSES])
                r_prof.append(np.cumsum(p / p.sum()))
                # Browsers send a Referer for assets and navigation; API calls less often.
                r_ref.append({"static": 0.8, "page": 0.45}.get(ep.profile, 0.25))
                pool = pools.request_targets(ep, pool_size, rng)
                off.append(len(targets))
                size.append(len(pool))
                targets.extend(pool)
            self.svc_routes.append(np.array(ids))
            self.svc_route_cum.append(np.cumsum(ew / ew.sum()))
        self.route_svc = np.array(r_svc)
        self.route_cum = np.cumsum(r_p)
        self.route_cum[-1] = 1.0
        self.route_mu, self.route_sigma = np.array(r_mu), np.array(r_sig)
        self.route_body_mu = np.log(np.maximum(np.array(r_body, float), 1.0))
        self.route_has_body = np.array(r_body) > 0
        self.route_req_body = np.array(r_req)
        self.route_status_cum = np.array(r_prof)
        self.route_status_cum[:, -1] = 1.0
        self.route_ref_p = np.array(r_ref)
        self.route_pool_off, self.route_pool_n = np.array(off), np.array(size)
        self.scan_off = len(targets)
        scan = pools.scan_targets(rng)
        self.scan_n = len(scan)
        targets.extend(scan)
        self.targets = np.array(targets, dtype=object)
        self.targets_q = np.array([b'"' + x for x in targets], dtype=object)
        self.target_len = np.array([len(x) for x in targets])
        # Pods: "[ns-svc-port] [] ip:port" so one pool index renders three log fields.
        pod_txt, pod_addr, p_off, p_n = [], [], [], []
        for svc in self.services:
            addrs = pools.pod_addresses(svc.pods, svc.port, rng)
            p_off.append(len(pod_txt))
            p_n.append(len(addrs))
            pod_addr.extend(a.encode() for a in addrs)
            pod_txt.extend(f"[{svc.upstream}] [] {a}".encode() for a in addrs)
        self.pod_txt, self.pod_addr = np.array(pod_txt, dtype=object), pod_addr
        self.svc_pod_off, self.svc_pod_n = np.array(p_off), np.array(p_n)
        self._svc_keys = np.array(self.svc_upstream, dtype=object)
        refs: list[bytes] = [b"-"]
        r_off, r_n = [], []
        for svc in self.services:
            rs = pools.referers(svc.host, rng)
            r_off.append(len(refs))
            r_n.append(len(rs))
            refs.extend(rs)
        self.referers = np.array(refs, dtype=object)
        self.referers_q = np.array([b'"%s"' % x for x in refs], dtype=object)
        self.svc_ref_off, self.svc_ref_n = np.array(r_off), np.array(r_n)

    def _build_clients(self, rng: np.random.Generator, n: int, ipv6_share: float, zipf_s: float) -> None:
        n_att = self.N_SCAN_CLIENTS + self.N_BRUTE_CLIENTS
        ips, countries = pools.client_addresses(n + n_att, ipv6_share, rng)
        ua_idx, proto = pools.client_agents(n, rng)
        uas = [USER_AGENTS[i][0] for i in ua_idx] + pools.attacker_agents(self.N_SCAN_CLIENTS, self.N_BRUTE_CLIENTS)
        proto += ["HTTP/1.1"] * n_att
        self.client_ip = np.array([i.encode() for i in ips], dtype=object)
        self.client_country = countries
        self.client_ua = np.array([u.encode() for u in uas], dtype=object)
        self.client_ua_len = np.array([len(u) for u in uas])
        self.client_proto = np.array([p.encode() for p in proto], dtype=object)
        # Join-ready fields: each carries its own quotes/dashes (see render()).
        self.client_prefix = np.array([b"%s - -" % i for i in self.client_ip], dtype=object)
        self.client_proto_q = np.array([b'%s"' % p for p in self.client_proto], dtype=object)
        self.client_ua_q = np.array([b'"%s"' % u for u in self.client_ua], dtype=object)
        # Zipf over ranks; ranks are assigned in random address order so heavy hitters come
        # from any country. Attack clients get weight 0: they appear only through incidents.
        w = 1.0 / np.arange(1, n + 1) ** zipf_s
        self.client_cum = np.cumsum(w / w.sum())
        self.client_cum[-1] = 1.0
        self.scan_clients = list(range(n, n + self.N_SCAN_CLIENTS))
        self.brute_clients = list(range(n + self.N_SCAN_CLIENTS, n + n_att))
        self.n_clients = n

    def service_index(self, name: str) -> int:
        """Index of a service by ``$proxy_upstream_name`` or ``namespace/name`` or ``name``."""
        for i, s in enumerate(self.services):
            if name in (s.upstream, f"{s.namespace}/{s.name}", s.name):
                return i
        raise ValueError(f"unknown service {name!r}; known: {', '.join(s.upstream for s in self.services)}")

    # -- seasonality --------------------------------------------------------------------------
    def season(self, t: np.ndarray | float) -> np.ndarray:
        """Multiplicative rate factor at epoch seconds ``t`` (weekly mean 1)."""
        t = np.asarray(t, dtype=float)
        hour = (t % 86400.0) / 3600.0
        ph = 2 * np.pi * (hour - self._peak) / 24.0
        diurnal = 1.0 + self._a1 * np.cos(ph) + 0.08 * np.cos(2 * ph + 1.0)
        dow = ((t // 86400.0).astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday (Mon=0)
        return diurnal * self._weekly[dow]

    def rate(self, t: np.ndarray | float) -> np.ndarray:
        """Expected requests per simulated second at epoch seconds ``t``."""
        return self.base_rate * self.season(t)

    # -- drawing ------------------------------------------------------------------------------
    def draw_paths(self, route: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        u = rng.random(len(route))
        # u**2 skews towards low pool slots: some ids (products, carts) are much hotter.
        return self.route_pool_off[route] + (u * u * self.route_pool_n[route]).astype(np.int64)

    def arrivals(self, secs: np.ndarray, lam: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Poisson arrivals: ``lam[i]`` expected events in second ``secs[i]``; sorted times."""
        counts = rng.poisson(lam)
        t = np.repeat(secs.astype(float), counts) + rng.random(int(counts.sum()))
        t.sort()
        return t

    def batch(self, t: np.ndarray, route: np.ndarray, rng: np.random.Generator, client: np.ndarray | None = None,
              path: np.ndarray | None = None) -> Batch:
        """Requests at times ``t`` on ``route``; clients/paths drawn unless given."""
        n = len(t)
        if client is None:
            client = np.searchsorted(self.client_cum, rng.random(n), side="right")
        if path is None:
            path = self.draw_paths(route, rng)
        return Batch(t=t, route=route, client=client, path=path, status=np.full(n, -1, np.int64),
                     forced=np.zeros(n, bool), lat_mult=np.ones(n))

    def base_batch(self, secs: np.ndarray, rng: np.random.Generator) -> Batch:
        """Normal traffic of all services in the simulated seconds ``secs``."""
        t = self.arrivals(secs, self.rate(secs + 0.5), rng)
        route = np.searchsorted(self.route_cum, rng.random(len(t)), side="right")
        return self.batch(t, route, rng)

    def service_routes(self, svc: int, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` routes of one service, by endpoint weight."""
        return self.svc_routes[svc][np.searchsorted(self.svc_route_cum[svc], rng.random(n), side="right")
                                    .clip(max=len(self.svc_routes[svc]) - 1)]

    def decide_status(self, b: Batch, rng: np.random.Generator) -> None:
        """Draw statuses for undecided lines from each route's status mix."""
        todo = b.status < 0
        if todo.any():
            u = rng.random(int(todo.sum()))
            cum = self.route_status_cum[b.route[todo]]
            b.status[todo] = (u[:, None] > cum).sum(axis=1)

    def render(self, b: Batch, rng: np.random.Generator) -> Chunk:
        """Draw per-line details and format the lines (see ``render.py``)."""
        from .render import render

        return render(self, b, rng)
