"""Static catalog of the simulated estate: services, endpoints, user agents, address ranges.

Kept apart from the traffic model so the numbers that shape realism (weights, latencies, status
mixes) can be read and tuned in one place without touching the vectorised generation code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Status codes the model can emit; status profiles below are probability vectors over this list.
STATUSES: tuple[int, ...] = (200, 201, 204, 301, 302, 304, 400, 401, 403, 404, 409, 422, 429, 499,
                             500, 502, 503, 504)

# Baseline status mixes. Mostly 2xx, some 3xx/4xx, rare 5xx (~0.3 %), as on a healthy ingress.
STATUS_PROFILES: dict[str, dict[int, float]] = {
    "page": {200: 0.925, 301: 0.01, 302: 0.015, 304: 0.02, 404: 0.02, 403: 0.002, 499: 0.004,
             500: 0.0015, 502: 0.001, 503: 0.0005, 504: 0.0005},
    "static": {200: 0.80, 304: 0.18, 404: 0.017, 499: 0.002, 502: 0.0005, 503: 0.0005},
    "api_read": {200: 0.955, 304: 0.005, 400: 0.008, 401: 0.006, 403: 0.003, 404: 0.015, 429: 0.002,
                 499: 0.003, 500: 0.0015, 502: 0.001, 503: 0.0005, 504: 0.0005},
    "api_write": {200: 0.45, 201: 0.44, 204: 0.03, 400: 0.025, 401: 0.01, 403: 0.004, 409: 0.012,
                  422: 0.018, 429: 0.002, 499: 0.002, 500: 0.0015, 502: 0.001, 503: 0.0005},
    "auth": {200: 0.955, 302: 0.005, 400: 0.006, 401: 0.028, 429: 0.002, 499: 0.001, 500: 0.0015,
             502: 0.001, 503: 0.0005},
}


@dataclass(frozen=True)
class Endpoint:
    """One route of a service.

    ``path`` may hold placeholders filled from ID pools: ``{num}`` (numeric id), ``{uuid}``,
    ``{hex}`` (12-32 hex digits), ``{slug}``, ``{year}``/``{month}``. ``query`` templates are
    appended with probability ``query_p``. Latency is log-normal: ``median_ms`` and ``sigma``
    (of the underlying normal). ``body`` is the median response size of a 2xx in bytes.
    """

    method: str
    path: str
    weight: float
    median_ms: float
    sigma: float
    body: int
    profile: str = "api_read"
    query: tuple[str, ...] = ()
    query_p: float = 0.0
    req_body: int = 0
    login: bool = False


@dataclass(frozen=True)
class Service:
    """A Kubernetes Service behind the ingress: ``$proxy_upstream_name`` is ns-name-port."""

    namespace: str
    name: str
    port: int
    host: str
    weight: float
    pods: int
    endpoints: tuple[Endpoint, ...] = field(default_factory=tuple)
    web: bool = False  # browsable pages: a plausible target for 404 scanners

    @property
    def upstream(self) -> str:
        return f"{self.namespace}-{self.name}-{self.port}"


E = Endpoint
SERVICES: tuple[Service, ...] = (
    Service("shop", "storefront", 80, "shop.example.com", 28, 6, web=True, endpoints=(
        E("GET", "/", 10, 45, 0.5, 18_000, "page"),
        E("GET", "/products/{num}", 22, 60, 0.55, 24_000, "page", ("ref=home", "utm_source=newsletter&utm_medium=email", "variant={num}"), 0.15),
        E("GET", "/category/{slug}", 8, 70, 0.5, 21_000, "page", ("page={page}", "sort=price&page={page}"), 0.4),
        E("GET", "/search", 6, 120, 0.6, 16_000, "page", ("q={slug}", "q={slug}&page={page}"), 1.0),
        E("GET", "/static/js/app.{hex}.js", 14, 4, 0.4, 182_000, "static"),
        E("GET", "/static/css/main.{hex}.css", 9, 3, 0.4, 41_000, "static"),
        E("GET", "/favicon.ico", 4, 2, 0.3, 1_150, "static"),
    )),
    Service("shop", "cart-api", 8080, "shop.example.com", 12, 4, endpoints=(
        E("GET", "/api/v1/cart/{uuid}", 10, 18, 0.5, 1_400, "api_read"),
        E("POST", "/api/v1/cart/{uuid}/items", 4, 35, 0.5, 1_600, "api_write", req_body=180),
        E("DELETE", "/api/v1/cart/{uuid}/items/{num}", 1, 30, 0.5, 0, "api_write"),
    )),
    Service("shop", "checkout", 8080, "shop.example.com", 4, 3, endpoints=(
        E("POST", "/api/v1/checkout/{uuid}", 3, 180, 0.45, 2_200, "api_write", req_body=900),
        E("GET", "/api/v1/orders/{num}", 5, 40, 0.5, 3_100, "api_read"),
        E("POST", "/api/v1/payments/{hex}/confirm", 2, 320, 0.5, 700, "api_write", req_body=420),
    )),
    Service("identity", "auth", 9000, "auth.example.com", 7, 3, endpoints=(
        E("POST", "/api/v1/auth/login", 4, 85, 0.35, 950, "auth", req_body=120, login=True),
        E("POST", "/oauth/token", 5, 40, 0.4, 1_300, "auth", req_body=310),
        E("GET", "/.well-known/openid-configuration", 1, 3, 0.3, 2_400, "static"),
        E("GET", "/api/v1/users/{uuid}", 3, 22, 0.5, 860, "api_read"),
    )),
    Service("media", "images", 8080, "img.example.com", 18, 5, endpoints=(
        E("GET", "/img/{hex}.jpg", 10, 14, 0.6, 85_000, "static", ("w=320", "w=640", "w=1280&q=80"), 0.5),
        E("GET", "/img/{hex}.webp", 6, 12, 0.6, 52_000, "static", ("w=320", "w=640"), 0.5),
        E("GET", "/thumbs/{num}/{hex}.png", 4, 9, 0.5, 14_000, "static"),
    )),
    Service("api", "catalog", 3000, "api.example.com", 15, 6, endpoints=(
        E("GET", "/v2/products", 5, 55, 0.5, 12_000, "api_read", ("page={page}&limit=50", "category={slug}&page={page}"), 0.9),
        E("GET", "/v2/products/{num}", 10, 25, 0.5, 2_800, "api_read", ("fields=price,stock",), 0.1),
        E("GET", "/v2/products/{num}/reviews", 3, 48, 0.55, 6_500, "api_read", ("page={page}",), 0.3),
        E("GET", "/v2/inventory/{uuid}", 3, 20, 0.5, 410, "api_read"),
        E("PUT", "/v2/inventory/{uuid}", 1, 45, 0.5, 420, "api_write", req_body=160),
    )),
    Service("api", "search", 8080, "api.example.com", 8, 4, endpoints=(
        E("GET", "/v2/search", 6, 95, 0.6, 9_000, "api_read", ("q={slug}", "q={slug}&page={page}", "q={slug}&sort=relevance"), 1.0),
        E("GET", "/v2/suggest", 4, 15, 0.45, 700, "api_read", ("q={prefix}",), 1.0),
    )),
    Service("blog", "wordpress", 80, "blog.example.com", 4, 2, web=True, endpoints=(
        E("GET", "/{year}/{month}/{slug}/", 6, 150, 0.6, 38_000, "page"),
        E("GET", "/feed/", 1, 90, 0.4, 61_000, "page"),
        E("GET", "/wp-content/uploads/{year}/{month}/{slug}.jpg", 4, 6, 0.5, 120_000, "static"),
    )),
    Service("monitoring", "grafana", 3000, "grafana.example.com", 1, 2, endpoints=(
        E("GET", "/api/dashboards/uid/{hex}", 2, 30, 0.5, 24_000, "api_read"),
        E("POST", "/api/ds/query", 5, 140, 0.7, 18_000, "api_write", req_body=800),
        E("GET", "/api/health", 1, 2, 0.3, 70, "api_read"),
    )),
)

# Paths a 404 scanner probes: well-known leaks and admin panels, never served by the estate.
SCAN_PATHS: tuple[str, ...] = (
    "/.env", "/.git/config", "/.git/HEAD", "/wp-login.php", "/wp-admin/setup-config.php", "/xmlrpc.php",
    "/phpmyadmin/index.php", "/pma/index.php", "/admin.php", "/administrator/", "/config.json",
    "/backup.zip", "/backup.sql", "/db.sql", "/.aws/credentials", "/server-status", "/actuator/env",
    "/actuator/health", "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php", "/cgi-bin/luci",
    "/owa/auth/logon.aspx", "/solr/admin/info/system", "/_ignition/execute-solution", "/.DS_Store",
    "/console/", "/manager/html", "/boaform/admin/formLogin", "/HNAP1/", "/.well-known/security.txt",
    "/api/v1/pods", "/debug/pprof/", "/telescope/requests", "/config.php.bak", "/.svn/entries",
)

# (user agent, weight, kind). Kinds decide protocol (browsers often speak HTTP/2) and realism only.
USER_AGENTS: tuple[tuple[str, float, str], ...] = (
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36", 22, "browser"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36", 9, "browser"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15", 6, "browser"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0", 5, "browser"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0.0.0", 5, "browser"),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0.0.0 Safari/537.36", 2, "browser"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1", 14, "mobile"),
    ("Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.6723.86 Mobile Safari/537.36", 10, "mobile"),
    ("Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0.6668.100 Mobile Safari/537.36", 4, "mobile"),
    ("ShopApp/4.12.0 (iPhone; iOS 18.1; Scale/3.00)", 5, "mobile"),
    ("okhttp/4.12.0", 4, "mobile"),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", 3, "bot"),
    ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", 1.5, "bot"),
    ("Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", 1, "bot"),
    ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", 0.5, "bot"),
    ("curl/8.5.0", 1.5, "tool"),
    ("python-requests/2.32.3", 1.5, "tool"),
    ("Go-http-client/1.1", 1.5, "tool"),
    ("Prometheus/2.54.1", 0.5, "tool"),
)

# User agents of incident clients (scanners, brute forcers): distinct from the normal pool.
SCANNER_AGENTS: tuple[str, ...] = (
    "Mozilla/5.0 zgrab/0.x",
    "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:Port Check)",
    "Mozilla/5.0 (compatible; Nuclei - Open-source project (github.com/projectdiscovery/nuclei))",
)
BRUTE_AGENTS: tuple[str, ...] = ("python-requests/2.31.0", "Mozilla/4.0 (Hydra)", "Go-http-client/1.1")

# Public IPv4 blocks registered to ISPs in each country (RIR delegations), checked against the
# offline geoip2fast database so an offline GeoIP lookup yields this country mix.
COUNTRY_V4: dict[str, tuple[float, tuple[str, ...]]] = {
    "US": (30, ("73.0.0.0/8", "98.192.0.0/10", "71.192.0.0/12", "24.0.0.0/12")),
    "DE": (10, ("84.128.0.0/10", "91.0.0.0/10", "79.192.0.0/10")),
    "GB": (8, ("86.128.0.0/10", "81.96.0.0/12", "31.48.0.0/13")),
    "IN": (9, ("117.192.0.0/10", "106.192.0.0/11", "122.160.0.0/12")),
    "FR": (6, ("86.192.0.0/11",)),
    "BR": (6, ("177.0.0.0/10", "187.0.0.0/11")),
    "JP": (6, ("126.0.0.0/9", "153.128.0.0/9")),
    "CN": (5, ("1.80.0.0/12", "114.80.0.0/12")),
    "AU": (4, ("1.120.0.0/13",)),
    "KR": (3, ("175.192.0.0/10",)),
    "NL": (3, ("77.160.0.0/12", "83.80.0.0/13")),
    "IT": (3, ("79.0.0.0/10", "93.32.0.0/11")),
    "ES": (3, ("83.32.0.0/11", "88.0.0.0/11")),
}
# IPv6 blocks of large access ISPs (RIR delegations): DTAG, Orange, AT&T, NTT, Jio, Telecom China.
COUNTRY_V6: dict[str, tuple[float, tuple[str, ...]]] = {
    "DE": (3, ("2003::/19",)),
    "FR": (2, ("2a01:cb00::/24",)),
    "US": (4, ("2600:1700::/28",)),
    "JP": (1, ("2409:10::/30",)),
    "IN": (2, ("2405:200::/29",)),
    "CN": (1, ("240e::/20",)),
}

REFERERS_EXTERNAL: tuple[str, ...] = ("https://www.google.com/", "https://www.bing.com/", "https://duckduckgo.com/",
                                      "https://t.co/", "https://www.facebook.com/")
WORDS: tuple[str, ...] = (
    "shoes", "running", "jacket", "winter", "coffee", "grinder", "laptop", "stand", "desk", "lamp", "garden",
    "chair", "kids", "toys", "phone", "case", "camera", "lens", "yoga", "mat", "water", "bottle", "backpack",
    "travel", "kitchen", "knife", "headphones", "wireless", "gift", "ideas", "sale", "new", "organic", "tea",
)
