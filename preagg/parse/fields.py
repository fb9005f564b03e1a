"""Canonical record fields and the small converters every format shares.

Every parser returns a plain ``dict`` with exactly the keys in :data:`KEYS`.
Converters take the raw text nginx/Envoy/Traefik wrote and return the canonical
value; ``-`` and the empty string mean "not known" and become ``None`` (or ``[]``
for the upstream lists).  Nothing here does I/O.
"""

from __future__ import annotations

import re

from patrol.preagg.errors import ParseError

# Re-exported: callers (the aggregator) import these from here.
from patrol.preagg.parse.names import (  # noqa: F401
    SPLIT_CACHE, SPLIT_CACHE_NOHINT, split_cluster_name, split_upstream_name)
from patrol.preagg.parse.times import (  # noqa: F401
    SECOND_CACHE, TIME_CACHE, any_time, clf_minute, clf_time, epoch_time, iso_time)

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
