"""Access-log parsing: one line (str or bytes) in, one canonical dict out.

Usage::

    from patrol.preagg.parse import get_parser
    parse = get_parser("ingress-nginx")      # or combined/json/envoy/traefik/auto
    rec = parse(line)                        # dict with the keys in fields.KEYS
                                             # or raises preagg.errors.ParseError

See ``docs/formats.md`` for the formats, field mapping and rejection reasons.
"""

from __future__ import annotations

from typing import Callable

from patrol.preagg.errors import ParseError
from patrol.preagg.parse.envelope import is_envelope, strip_cri, unwrap_envelope
from patrol.preagg.parse.envoy import compile_envoy_format, parse_envoy
from patrol.preagg.parse.fields import KEYS, KNOWN_METHODS, split_cluster_name, split_upstream_name
from patrol.preagg.parse.ingress import _slow as _ingress_careful
from patrol.preagg.parse.ingress import make_fast_parser, parse_ingress_nginx
from patrol.preagg.parse.jsonfmt import load_object, parse_object
from patrol.preagg.parse.nginx import COMBINED_FORMAT, INGRESS_NGINX_FORMAT, compile_log_format
from patrol.preagg.parse.template import decode_line

__all__ = [
    "KEYS", "KNOWN_METHODS", "ParseError", "get_parser", "compile_log_format",
    "compile_envoy_format", "unwrap_envelope", "split_upstream_name", "split_cluster_name",
    "INGRESS_NGINX_FORMAT", "COMBINED_FORMAT", "FORMATS",
]

_combined = compile_log_format(COMBINED_FORMAT, "combined")
_MAX_NESTING = 2   # an envelope inside an envelope happens (Fluent Bit -> Fluentd); more is garbage


def _hint(env_ns, known):
    """Combine the envelope's namespace with the caller's known namespaces."""
    if env_ns is None:
        return known
    return (env_ns,) + (known or ())


def _json_table(table, unwrap=True):
    """JSON parser for ``table`` (None = detect per object); ``unwrap`` envelopes or not."""

    def parse(line, namespace_hint=None, labels=None, _depth=0):
        obj = load_object(line)
        if unwrap and is_envelope(obj):
            if _depth >= _MAX_NESTING:
                raise ParseError("envelopes nested too deep", "bad_envelope")
            inner, lab, ns = unwrap_envelope(obj)
            return parse(inner, _hint(ns, namespace_hint), lab, _depth + 1)
        return parse_object(obj, table, namespace_hint, labels)

    return parse


def _envelope_then(base):
    """Fallback for text formats: a ``{`` line is an envelope around a ``base`` line."""

    def parse(line, namespace_hint=None, labels=None):
        line = decode_line(line)
        if line.lstrip()[:1] != "{":
            return base(line, namespace_hint, labels)
        obj = load_object(line)
        if not is_envelope(obj):
            raise ParseError("JSON object is not a shipper envelope (no 'log' or 'message' string) "
                             "and this parser reads text lines", "bad_envelope")
        inner, lab, ns = unwrap_envelope(obj)
        if inner.lstrip()[:1] == "{":
            raise ParseError("envelope inside an envelope around a text format", "bad_envelope")
        return base(inner, _hint(ns, namespace_hint), lab)

    return parse


def parse_auto(line, namespace_hint=None, labels=None, _depth=0) -> dict:
    """Detect the format of each line: JSON (envelope, Traefik, Envoy, nginx), Envoy
    text (starts with ``[``), CRI-prefixed, ingress-nginx default, or combined."""
    line = decode_line(line).rstrip("\r\n")
    head = line.lstrip()[:1]
    if head == "{":
        obj = load_object(line)
        if is_envelope(obj):
            if _depth >= _MAX_NESTING:
                raise ParseError("envelopes nested too deep", "bad_envelope")
            inner, lab, ns = unwrap_envelope(obj)
            return parse_auto(inner, _hint(ns, namespace_hint), lab, _depth + 1)
        return parse_object(obj, None, namespace_hint, labels)
    if head == "[":
        return parse_envoy(line, namespace_hint, labels)
    # containerd/CRI-O prefix "2024-03-01T10:00:00.1Z stdout F "; the cheap test
    # keeps the regex off the hot path.
    if line[4:5] == "-" and line[10:11] == "T" and _depth < _MAX_NESTING:
        cri = strip_cri(line)
        if cri is not None:
            return parse_auto(cri, namespace_hint, labels, _depth + 1)
    # combined is the default format without the upstream tail; pick by shape so
    # the error reason comes from the format the line was meant to be.
    p = line.split('"')
    if len(p) >= 7 and not p[-1].strip():
        return _combined(line, namespace_hint, labels)
    return parse_ingress_nginx(line, namespace_hint, labels)


_parse_json = _json_table(None)

#: Line parsers by format name; each takes (line, namespace_hint=None, labels=None).
FORMATS: dict[str, Callable] = {
    "ingress-nginx": make_fast_parser(_envelope_then(_ingress_careful)),
    "combined": _envelope_then(_combined),
    "json": _parse_json,
    "envoy": _envelope_then(parse_envoy),
    "traefik": _json_table("traefik"),
    "auto": parse_auto,
}

#: The same parsers with shipper envelopes refused (``envelope=False``).
_BARE: dict[str, Callable] = {
    "ingress-nginx": parse_ingress_nginx,
    "combined": _combined,
    "envoy": parse_envoy,
    "json": _json_table(None, unwrap=False),
    "traefik": _json_table("traefik", unwrap=False),
}


def get_parser(fmt: str = "ingress-nginx", envelope: bool | None = None,
               namespaces=None) -> Callable[[str | bytes], dict]:
    """Return ``parse(line: str | bytes) -> dict`` for a log format.

    Parameters
    ----------
    fmt : str
        A name in :data:`FORMATS` (``ingress-nginx``, ``combined``, ``json``,
        ``envoy``, ``traefik``, ``auto``), an nginx ``log_format`` string (contains
        ``$``) or an Envoy format string (contains ``%...%``).
    envelope : bool or None
        ``None`` (default): a line starting with ``{`` is unwrapped as a shipper
        envelope (checked only when the fast path declines a line, so it is free).
        ``True``: every line must be an envelope.  ``False``: never unwrap.
        ``auto`` always unwraps (that is part of detecting the format).
    namespaces : iterable of str, optional
        Known Kubernetes namespaces; they disambiguate ``$proxy_upstream_name``
        splits when namespaces contain dashes.

    Returns
    -------
    callable
        The parser; it raises :class:`~preagg.errors.ParseError` for bad lines.

    Raises
    ------
    ValueError
        Unknown format name, or a format string that cannot be compiled.
    """
    if fmt in FORMATS:
        base = _BARE.get(fmt, FORMATS[fmt]) if envelope is not None else FORMATS[fmt]
        if envelope is True and fmt in ("json", "traefik"):
            base = FORMATS[fmt]
    elif "$" in fmt:
        base = compile_log_format(fmt)
    elif "%" in fmt:
        base = compile_envoy_format(fmt)
    else:
        raise ValueError(f"unknown log format {fmt!r}; known: {sorted(FORMATS)}, "
                         "or an nginx log_format ($var) / Envoy format (%OP%) string")
    if envelope is None and fmt not in FORMATS:
        base = _envelope_then(base)
    if envelope is True and fmt != "auto":
        base = _require_envelope(base)
    known = tuple(sorted(set(namespaces))) if namespaces else None
    if known is None:
        return base
    return lambda line: base(line, known)


def _require_envelope(base):
    def parse(line, namespace_hint=None, labels=None):
        obj = load_object(line)
        if not is_envelope(obj):
            raise ParseError("expected a shipper envelope (JSON with 'log' or 'message')", "bad_envelope")
        inner, lab, ns = unwrap_envelope(obj)
        return base(inner, _hint(ns, namespace_hint), lab)

    return parse
