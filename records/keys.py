"""Series keys and record ids: the naming every layer agrees on.

A series is ``metric{dim=value,...}`` with dims sorted by name; a record id is a hash of what makes the
record unique (series, window, model version), so a replay after a crash produces the same ids and
consumers drop duplicates by id. A series belongs to a *service* (``namespace/service``), or to
``global`` when it has no service dimension: incidents, labels and cardinality caps are per service.
"""

from __future__ import annotations

import hashlib
from typing import Any


def series_key(metric: str, dims: dict[str, str]) -> str:
    """Canonical series key: ``metric{k1=v1,k2=v2}`` with dims sorted by name.

    >>> series_key("requests", {"service": "web", "namespace": "shop"})
    'requests{namespace=shop,service=web}'
    """
    inner = ",".join(f"{k}={dims[k]}" for k in sorted(dims))
    return f"{metric}{{{inner}}}"


def record_id(*parts: Any) -> str:
    """Deterministic id from its parts, so a replay produces the same id."""
    return hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=12).hexdigest()


def service_of(dims: dict[str, str]) -> str:
    """The service a series belongs to: ``namespace/service``, ``service``, or ``global``.

    >>> service_of({"namespace": "shop", "service": "web", "template": "/cart"})
    'shop/web'
    >>> service_of({})
    'global'
    """
    ns, svc = dims.get("namespace"), dims.get("service")
    if svc:
        return f"{ns}/{svc}" if ns else svc
    return "global"
