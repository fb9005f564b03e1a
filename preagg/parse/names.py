"""Upstream / cluster names -> (namespace, service, port); bounded caches."""

from __future__ import annotations

SPLIT_CACHE: dict = {}
# Same results keyed by the bare name when there is no hint (the common case),
# so the hot path avoids building a tuple key per line.
SPLIT_CACHE_NOHINT: dict = {}
_SPLIT_CACHE_MAX = 65536


def split_upstream_name(name, namespace_hint=None):
    """Split ingress-nginx ``$proxy_upstream_name`` into (namespace, service, port).

    ingress-nginx names upstreams ``<namespace>-<service>-<port>``; namespaces and
    services may contain dashes, so the split is ambiguous.  Rule:

    1. If ``namespace_hint`` (a namespace, or a tuple of known namespaces, from the
       Kubernetes envelope metadata or the caller) prefixes the name as
       ``hint + "-"`` with at least ``svc-port`` left, the longest such hint is the
       namespace and the last dash-part the port.
    2. Otherwise the first dash-part is the namespace, the last is the port and
       everything between is the service (``esmon-esmon-es-http-9200`` ->
       ``esmon``, ``esmon-es-http``, ``9200``).
    3. Two parts: ``(None, first, last)``; one part, or ingress-nginx's own
       ``upstream-default-backend``: ``(None, name, None)``.
    """
    if not name:
        return None, None, None
    if isinstance(namespace_hint, (list, set, frozenset)):
        namespace_hint = tuple(sorted(namespace_hint))
    key = (name, namespace_hint)
    hit = SPLIT_CACHE.get(key)
    if hit is not None:
        return hit
    if isinstance(namespace_hint, str):
        namespace_hint = (namespace_hint,)
    # The longest known namespace that prefixes the name wins ("kube-system-dns-53"
    # with known {"kube", "kube-system"} -> kube-system).
    hint = None
    for cand in namespace_hint or ():
        if (cand and name.startswith(cand + "-") and "-" in name[len(cand) + 1:]
                and (hint is None or len(cand) > len(hint))):
            hint = cand
    if name == "upstream-default-backend":
        res = (None, name, None)
    elif hint is not None:
        svc, _, port = name[len(hint) + 1:].rpartition("-")
        res = (hint, svc, port)
    else:
        parts = name.split("-")
        if len(parts) >= 3:
            res = (parts[0], "-".join(parts[1:-1]), parts[-1])
        elif len(parts) == 2:
            res = (None, parts[0], parts[1])
        else:
            res = (None, name, None)
    if len(name) > 256:
        return res   # not cached: keeps the cache's memory independent of input sizes
    if len(SPLIT_CACHE) >= _SPLIT_CACHE_MAX:
        SPLIT_CACHE.clear()
        SPLIT_CACHE_NOHINT.clear()
    SPLIT_CACHE[key] = res
    if namespace_hint is None:
        SPLIT_CACHE_NOHINT[name] = res
    return res


def split_cluster_name(name):
    """Split an Envoy cluster name into (upstream_name, namespace, service, port).

    Recognised shapes (others give ``(name, None, name, None)``):

    * Istio ``outbound|80||reviews.default.svc.cluster.local`` -> ``default``, ``reviews``, ``80``
    * Contour ``default/web/80/da39a3ee5e`` -> ``default``, ``web``, ``80``
    * Envoy Gateway ``httproute/default/backend/rule/0`` -> ``default``, ``backend`` (the
      route's name: Envoy Gateway clusters are per route rule), port None
    """
    if name is None or name == "-" or name == "":
        return None, None, None, None
    if not isinstance(name, str):
        name = str(name)
    if "|" in name:
        parts = name.split("|")
        if len(parts) == 4:
            host = parts[3].split(".")
            ns = host[1] if len(host) > 2 and host[2] == "svc" else None
            return name, ns, host[0] or None, parts[1] or None
    parts = name.split("/")
    if len(parts) == 4 and parts[2].isdigit():
        return name, parts[0], parts[1], parts[2]
    if len(parts) >= 3 and parts[0] in ("httproute", "grpcroute", "tlsroute", "tcproute", "udproute"):
        return name, parts[1], parts[2], None
    return name, None, name, None
