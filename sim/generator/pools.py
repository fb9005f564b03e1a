"""Pre-rendered string pools: request targets, client addresses, upstream pods, referers.

Everything the hot loop needs as text is rendered once here, so per-line work is an index into a
list; that is what makes >= 150k lines/s possible in pure Python + numpy.
"""

from __future__ import annotations

import ipaddress
import re

import numpy as np

from .catalog import (BRUTE_AGENTS, COUNTRY_V4, COUNTRY_V6, REFERERS_EXTERNAL, SCAN_PATHS, SCANNER_AGENTS,
                      USER_AGENTS, WORDS, Endpoint)

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _fill(template: str, rng: np.random.Generator) -> str:
    """Fill one path/query template with ids drawn from ``rng``."""

    def one(m: re.Match) -> str:
        kind = m.group(1)
        if kind == "num":
            # Long-tailed ids: a few products are looked up far more often than the rest.
            return str(int(rng.zipf(1.3)) % 500_000 + 1)
        if kind == "uuid":
            b = bytearray(rng.bytes(16))
            b[6] = (b[6] & 0x0F) | 0x40  # RFC 4122 version 4 + variant bits, as real uuid4s
            b[8] = (b[8] & 0x3F) | 0x80
            h = b.hex()
            return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        if kind == "hex":
            return rng.bytes(int(rng.choice([6, 8, 10, 16]))).hex()
        if kind == "slug":
            k = int(rng.integers(1, 4))
            return "-".join(rng.choice(WORDS, size=k))
        if kind == "prefix":
            w = str(rng.choice(WORDS))
            return w[: int(rng.integers(2, len(w) + 1))]
        if kind == "page":
            return str(int(rng.integers(1, 12)))
        if kind == "year":
            return str(int(rng.integers(2019, 2027)))
        if kind == "month":
            return f"{int(rng.integers(1, 13)):02d}"
        raise ValueError(f"unknown placeholder {{{kind}}}")

    return _PLACEHOLDER.sub(one, template)


def request_targets(ep: Endpoint, size: int, rng: np.random.Generator) -> list[bytes]:
    """``size`` rendered ``METHOD /path?query`` strings for one endpoint.

    Static paths (no placeholder, no query) still get ``size`` identical entries would waste
    memory, so they get one entry; callers scale the draw by the pool length.
    """
    if "{" not in ep.path and not ep.query:
        return [f"{ep.method} {ep.path}".encode()]
    out = []
    for _ in range(size):
        path = _fill(ep.path, rng)
        if ep.query and rng.random() < ep.query_p:
            path += "?" + _fill(str(rng.choice(ep.query)), rng)
        out.append(f"{ep.method} {path}".encode())
    return out


def scan_targets(rng: np.random.Generator, size: int = 400) -> list[bytes]:
    """Paths a vulnerability scanner probes: the well-known list plus generated variants."""
    out = [f"GET {p}".encode() for p in SCAN_PATHS]
    exts = ("php", "bak", "old", "zip", "sql", "tar.gz", "env", "yml", "asp", "jsp")
    while len(out) < size:
        a, b = rng.choice(WORDS, size=2)
        ext = rng.choice(exts)
        shape = int(rng.integers(3))
        p = (f"/{a}.{ext}", f"/{a}/{b}.{ext}", f"/{a}-{b}/admin.{ext}")[shape]
        out.append(f"GET {p}".encode())
    return out


def _blocks(table: dict[str, tuple[float, tuple[str, ...]]]):
    """Flatten a country table into per-block (country, network) lists and draw weights.

    A country's weight is split over its blocks in proportion to block size, so addresses are
    uniform over the country's listed space.
    """
    ccs, nets, w = [], [], []
    for cc, (weight, cidrs) in table.items():
        ns = [ipaddress.ip_network(c) for c in cidrs]
        total = sum(n.num_addresses for n in ns)
        for n in ns:
            ccs.append(cc)
            nets.append(n)
            w.append(weight * n.num_addresses / total)
    w = np.array(w)
    return ccs, nets, w / w.sum()


def client_addresses(n: int, ipv6_share: float, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """``n`` distinct public client addresses and their intended countries."""
    ips: list[str] = []
    countries: list[str] = []
    seen: set[str] = set()
    c4, n4, w4 = _blocks(COUNTRY_V4)
    c6, n6, w6 = _blocks(COUNTRY_V6)
    while len(ips) < n:
        m = n - len(ips) + 16
        is6 = rng.random(m) < ipv6_share
        b4 = rng.choice(len(n4), size=m, p=w4)
        b6 = rng.choice(len(n6), size=m, p=w6)
        u = rng.random(m)
        for k in range(m):
            if is6[k]:
                net, cc = n6[b6[k]], c6[b6[k]]
                # Python ints: an IPv6 block is far larger than int64.
                off = int.from_bytes(rng.bytes(16), "big") % (net.num_addresses - 2) + 1
                ip = str(ipaddress.IPv6Address(int(net.network_address) + off))
            else:
                net, cc = n4[b4[k]], c4[b4[k]]
                a = int(net.network_address) + 1 + int(u[k] * (net.num_addresses - 2))
                if a & 0xFF in (0, 255):  # hosts, not network/broadcast-looking addresses
                    continue
                ip = f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}"
            if ip not in seen and len(ips) < n:
                seen.add(ip)
                ips.append(ip)
                countries.append(cc)
    return ips, countries


def client_agents(n: int, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """A user-agent index per client (from USER_AGENTS) and each client's HTTP protocol."""
    w = np.array([u[1] for u in USER_AGENTS], float)
    idx = rng.choice(len(USER_AGENTS), size=n, p=w / w.sum())
    kinds = [USER_AGENTS[i][2] for i in idx]
    # Browsers negotiate HTTP/2 over TLS most of the time; tools and bots mostly speak HTTP/1.1.
    proto = ["HTTP/2.0" if k in ("browser", "mobile") and rng.random() < 0.6 else "HTTP/1.1" for k in kinds]
    return idx, proto


def attacker_agents(n_scan: int, n_brute: int) -> list[str]:
    """User agents of the incident clients: scanners first, then brute forcers."""
    return ([SCANNER_AGENTS[i % len(SCANNER_AGENTS)] for i in range(n_scan)]
            + [BRUTE_AGENTS[i % len(BRUTE_AGENTS)] for i in range(n_brute)])


def pod_addresses(n: int, port: int, rng: np.random.Generator) -> list[str]:
    """Pod IPs from a typical cluster pod CIDR (10.244.0.0/16, one /24 per node)."""
    return [f"10.244.{int(rng.integers(0, 40))}.{int(rng.integers(2, 254))}:{port}" for _ in range(n)]


def referers(host: str, rng: np.random.Generator, size: int = 12) -> list[bytes]:
    """Referers seen on a host: its own pages mostly, plus search engines and social sites."""
    own = [f"https://{host}/"] + [f"https://{host}/{_fill('{slug}', rng)}" for _ in range(size - 6)]
    return [r.encode() for r in own + list(REFERERS_EXTERNAL)]
