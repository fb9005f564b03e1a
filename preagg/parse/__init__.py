"""Access-log parsing: one line (str or bytes) in, one canonical dict out.

Usage::

    from preagg.parse import get_parser
    parse = get_parser("ingress-nginx")      # or combined/json/envoy/traefik/auto
    rec = parse(line)                        # dict with the keys in fields.KEYS
                                             # or raises preagg.errors.ParseError

See ``docs/formats.md`` for the formats, field mapping and rejection reasons.
"""

from __future__ import annotations

from typing import Callable

from preagg.errors import ParseError
from preagg.parse.fields import KEYS, KNOWN_METHODS, split_upstream_name
from preagg.parse.ingress import parse_ingress_nginx
from preagg.parse.nginx import COMBINED_FORMAT, INGRESS_NGINX_FORMAT, NginxFormat, compile_log_format

__all__ = [
    "KEYS", "KNOWN_METHODS", "ParseError", "get_parser", "compile_log_format",
    "split_upstream_name", "INGRESS_NGINX_FORMAT", "COMBINED_FORMAT", "FORMATS",
]

_combined = NginxFormat(COMBINED_FORMAT, "combined")

#: Line parsers by format name; each takes (line, namespace_hint=None, labels=None).
FORMATS: dict[str, Callable] = {
    "ingress-nginx": parse_ingress_nginx,
    "combined": _combined,
}


def get_parser(fmt: str = "ingress-nginx", envelope: bool | None = None) -> Callable[[str | bytes], dict]:
    """Return a parser for ``fmt``.

    Parameters
    ----------
    fmt : str
        One of :data:`FORMATS`, or an nginx ``log_format`` string (anything
        containing ``$``), which is compiled with :func:`compile_log_format`.
    envelope : bool or None
        Reserved for shipper envelopes (filled in by a later step).

    Returns
    -------
    callable
        ``parse(line: str | bytes) -> dict``; raises :class:`ParseError`.
    """
    if fmt in FORMATS:
        return FORMATS[fmt]
    if "$" in fmt:
        return compile_log_format(fmt)
    raise ValueError(f"unknown log format {fmt!r}; known: {sorted(FORMATS)} or an nginx log_format string")
