"""Canonical record fields and the small converters every format shares.

Every parser returns a plain ``dict`` with exactly the keys in :data:`KEYS`.
Converters take the raw text nginx/Envoy/Traefik wrote and return the canonical
value; ``-`` and the empty string mean "not known" and become ``None`` (or ``[]``
for the upstream lists).  Nothing here does I/O.
"""

from __future__ import annotations

import calendar
import re
from datetime import datetime

from preagg.errors import ParseError

#: Canonical keys, in order.  ``flags`` is a tuple of strings naming what was odd
#: about a line that still parsed (see ``docs/formats.md``); usually ``()``.
KEYS = (
    "time", "remote_addr", "remote_user", "method", "path", "query", "protocol",
    "status", "body_bytes_sent", "request_length", "request_time", "referer",
    "user_agent", "host", "upstream_name", "namespace", "service", "service_port",
    "upstream_addr", "upstream_status", "upstream_response_time",
    "upstream_response_length", "req_id", "labels", "flags",
)

#: Methods an SRE expects; anything else that still looks like a word is kept
#: as given and flagged ``bad_method`` (nginx answers 400 but the request counts).
KNOWN_METHODS = frozenset((
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "PRI",
))

_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}

# Minute-prefix cache: "07/Feb/2020:11:48" + "+0000" -> epoch of that minute.
# Lines arrive roughly in time order, so a few entries serve millions of lines;
# it is cleared when full to stay bounded on adversarial input.
TIME_CACHE: dict[str, float] = {}
# Per-second cache: full validated stamp -> epoch; lets the hot path do one
# dict lookup and no slicing.  Same bound and clearing rule.
SECOND_CACHE: dict[str, float] = {}
_TIME_CACHE_MAX = 4096


def empty_record() -> dict:
    """Return a record with every canonical key set to its "unknown" value."""
    return {
        "time": None, "remote_addr": None, "remote_user": None, "method": None,
        "path": None, "query": None, "protocol": None, "status": None,
        "body_bytes_sent": None, "request_length": None, "request_time": None,
        "referer": None, "user_agent": None, "host": None, "upstream_name": None,
        "namespace": None, "service": None, "service_port": None,
        "upstream_addr": [], "upstream_status": [], "upstream_response_time": [],
        "upstream_response_length": [], "req_id": None, "labels": {}, "flags": (),
    }


# ---------------------------------------------------------------- time
def clf_minute(ts: str) -> float:
    """Epoch of the minute of a ``07/Feb/2020:11:48:51 +0000`` stamp, cached.

    Raises
    ------
    ParseError
        ``bad_time`` when the stamp is not ``dd/Mon/yyyy:HH:MM:SS +hhmm``.
    """
    key = ts[:17] + ts[20:]
    base = TIME_CACHE.get(key)
    if base is not None:
        return base
    if (len(ts) != 26 or ts[2] != "/" or ts[6] != "/" or ts[11] != ":" or ts[14] != ":"
            or ts[17] != ":" or ts[20] != " " or ts[21] not in "+-"
            or not (ts[0:2] + ts[7:11] + ts[12:14] + ts[15:17] + ts[22:26]).isdigit()
            or not ts.isascii()):
        raise ParseError(f"timestamp {ts!r} is not dd/Mon/yyyy:HH:MM:SS +hhmm", "bad_time")
    try:
        mon = _MONTHS[ts[3:6]]
        # datetime() validates day-of-month, hour and minute ranges for us.
        dt = datetime(int(ts[7:11]), mon, int(ts[0:2]), int(ts[12:14]), int(ts[15:17]))
        off = int(ts[22:24]) * 3600 + int(ts[24:26]) * 60
    except (KeyError, ValueError):
        raise ParseError(f"timestamp {ts!r} has an invalid date, time or zone", "bad_time") from None
    base = float(calendar.timegm(dt.timetuple())) - (off if ts[21] == "+" else -off)
    if len(TIME_CACHE) >= _TIME_CACHE_MAX:
        TIME_CACHE.clear()
    TIME_CACHE[key] = base
    return base


def clf_time(ts: str) -> float:
    """Parse an nginx ``$time_local`` stamp to float epoch seconds (UTC), cached per second."""
    t = SECOND_CACHE.get(ts)
    if t is not None:
        return t
    base = clf_minute(ts)
    sec = ts[18:20]
    if not (sec.isascii() and sec.isdigit()) or int(sec) > 60:
        raise ParseError(f"timestamp {ts!r} has invalid seconds", "bad_time")
    t = base + int(sec)
    if len(SECOND_CACHE) >= _TIME_CACHE_MAX:
        SECOND_CACHE.clear()
    SECOND_CACHE[ts] = t
    return t


def iso_time(ts) -> float:
    """Parse an ISO-8601 stamp (``2020-02-07T11:48:51.123Z``, ``+00:00``) to epoch seconds."""
    if not isinstance(ts, str):
        raise ParseError(f"timestamp {ts!r} is not a string", "bad_time")
    s = ts.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
        if dt.tzinfo is None:
            # A stamp without a zone is taken as UTC (documented); guessing local time
            # on the collector would silently shift every window.
            return calendar.timegm(dt.timetuple()) + dt.microsecond / 1e6
        return dt.timestamp()
    except (ValueError, OverflowError):
        raise ParseError(f"timestamp {ts[:40]!r} is not ISO-8601 or out of range", "bad_time") from None


def epoch_time(v) -> float:
    """Parse ``$msec``-style epoch seconds (``1581076131.123``)."""
    try:
        t = float(v)
    except (TypeError, ValueError, OverflowError):
        raise ParseError(f"epoch timestamp {str(v)[:40]!r} is not a number", "bad_time") from None
    if t != t or t in (float("inf"), float("-inf")):
        raise ParseError(f"epoch timestamp {str(v)[:40]!r} is not finite", "bad_time")
    return t


def any_time(v) -> float:
    """Parse a timestamp of any supported shape (number, ISO-8601, nginx CLF)."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return epoch_time(v)
    if isinstance(v, str):
        s = v.strip()
        if s[:1].isdigit() and len(s) >= 3 and s[2] == "/":
            return clf_time(s)
        if s.replace(".", "", 1).isdigit():
            return epoch_time(s)
        return iso_time(s)
    raise ParseError(f"timestamp {v!r} has an unsupported type", "bad_time")


# ---------------------------------------------------------------- scalars
def text(v):
    """``-``/empty/None -> None; other values as str (escapes decoded)."""
    if v is None:
        return None
    if not isinstance(v, str):
        if isinstance(v, (dict, list)):
            raise ParseError(f"expected text, found a JSON {type(v).__name__}", "bad_field")
        v = str(v)
    if v == "-" or v == "":
        return None
    return unescape(v) if "\\x" in v else v


def to_int(v, name: str = "value"):
    """``-``/empty/None -> None; else a non-negative int or ParseError(``bad_number``)."""
    if v is None or v == "-" or v == "":
        return None
    if isinstance(v, bool):
        raise ParseError(f"{name} {v!r} is not an integer", "bad_number")
    # 19 digits is beyond any byte count or status; longer strings would also hit
    # Python's 4300-digit int() limit (a ValueError that is not a ParseError).
    if isinstance(v, int):
        if 0 <= v < 10**19:
            return v
    elif isinstance(v, float):
        if v.is_integer() and 0 <= v < 1e19:
            return int(v)
    elif isinstance(v, str) and v.isdigit() and v.isascii() and len(v) <= 19:
        return int(v)
    raise ParseError(f"{name} {str(v)[:40]!r} is not a non-negative integer below 10**19", "bad_number")


def to_float(v, name: str = "value"):
    """``-``/empty/None -> None; else a finite non-negative float or ParseError."""
    if v is None or v == "-" or v == "":
        return None
    if isinstance(v, bool):
        raise ParseError(f"{name} {v!r} is not a number", "bad_number")
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        raise ParseError(f"{name} {str(v)[:40]!r} is not a number", "bad_number") from None
    if not (0.0 <= f < float("inf")):
        raise ParseError(f"{name} {str(v)[:40]!r} is negative, infinite or NaN", "bad_number")
    return f


def ms_to_s(v, name: str = "duration"):
    """Milliseconds (Envoy ``%DURATION%``) -> seconds."""
    f = to_float(v, name)
    return None if f is None else f / 1000.0


def ns_to_s(v, name: str = "duration"):
    """Nanoseconds (Traefik ``Duration``) -> seconds."""
    f = to_float(v, name)
    return None if f is None else f / 1e9


# ---------------------------------------------------------------- escapes
_XESC = re.compile(r"(?:\\x[0-9A-Fa-f]{2})+")


def _xrepl(m: re.Match) -> str:
    # nginx escapes each byte; runs of them are one UTF-8 sequence, so decode the run.
    return bytes.fromhex(m.group(0).replace("\\x", "")).decode("utf-8", "replace")


def unescape(s: str) -> str:
    """Decode nginx ``\\xXX`` byte escapes (UTF-8; invalid bytes become U+FFFD)."""
    return _XESC.sub(_xrepl, s) if "\\x" in s else s


# ---------------------------------------------------------------- lists
def _split_list(v) -> list:
    # nginx joins attempts with ", " and upstream groups of an internal redirect
    # with " : "; both mean "another attempt", so both split the list.
    if isinstance(v, list):
        return v
    v = v.strip()
    if v == "-" or v == "":
        return []
    if "," not in v and ":" not in v:
        return [v]
    out = []
    for grp in v.split(" : "):
        out.extend(p.strip() for p in grp.split(","))
    return out


def addr_list(v) -> list:
    """``$upstream_addr`` -> list of addresses as written (IPv6 ``[..]:p`` and ``unix:`` kept)."""
    if v is None:
        return []
    if isinstance(v, list):
        return [str(x) for x in v if x not in (None, "", "-")]
    return [p for p in _split_list(str(v)) if p not in ("", "-")]


def int_list(v, name: str = "upstream value") -> list:
    """``200, 502`` -> ``[200, 502]``; ``-`` inside the list -> None; whole ``-`` -> []."""
    if v is None:
        return []
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return [to_int(v, name)]
    return [to_int(p, name) for p in _split_list(v)]


def float_list(v, name: str = "upstream time") -> list:
    """``0.100, 0.004`` -> ``[0.1, 0.004]``; ``-`` inside the list -> None; whole ``-`` -> []."""
    if v is None:
        return []
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return [to_float(v, name)]
    return [to_float(p, name) for p in _split_list(v)]


def ms_list(v, name: str = "upstream time") -> list:
    """Like :func:`float_list` but the values are milliseconds."""
    return [None if f is None else f / 1000.0 for f in float_list(v, name)]


# ---------------------------------------------------------------- request line
def split_request(req):
    """Split ``$request`` into (method, path, query, protocol, flags).

    An SRE still wants the request counted when the line is odd, so this never
    raises: a method outside :data:`KNOWN_METHODS` that is still a word is kept
    and flagged ``bad_method``; anything else (TLS bytes on a plain port, an
    empty request) gives method/path None and the flag ``bad_request``.
    """
    if req is None or req == "" or req == "-":
        return None, None, None, None, ("bad_request",)
    parts = req.split(" ")
    if len(parts) == 3 or len(parts) == 2:
        method, uri = parts[0], parts[1]
        proto = parts[2] if len(parts) == 3 else None
        if method in KNOWN_METHODS:
            flags = ()
        elif method.isascii() and method.isalpha() and len(method) <= 32:
            flags = ("bad_method",)
        else:
            return None, None, None, None, ("bad_request",)
        if proto is not None and not proto.startswith("HTTP/"):
            flags = flags + ("bad_protocol",)
        path, sep, query = uri.partition("?")
        if "\\x" in path:
            path = unescape(path)
        return method, path or None, (query if sep else None), proto, flags
    return None, None, None, None, ("bad_request",)


def split_uri(uri):
    """``/a?b=1`` -> (``/a``, ``b=1``); ``-`` -> (None, None)."""
    if uri is None or uri == "-" or uri == "":
        return None, None
    path, sep, query = uri.partition("?")
    return unescape(path) or None, (query if sep else None)


# ---------------------------------------------------------------- upstream name
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


def strip_port(addr):
    """``1.2.3.4:80`` -> ``1.2.3.4``; ``[::1]:80`` -> ``::1``; ``-`` -> None."""
    addr = text(addr)
    if addr is None:
        return None
    if addr.startswith("["):
        return addr[1:addr.find("]")] if "]" in addr else addr
    if addr.count(":") == 1:
        return addr.split(":")[0]
    return addr


def first_forwarded(v):
    """First address of an ``X-Forwarded-For`` list (the original client)."""
    v = text(v)
    if v is None:
        return None
    return v.split(",")[0].strip() or None
