"""Compile any nginx ``log_format`` string into a parser.

The format is a declared mapping: :data:`NGINX_VARS` says, for each nginx
variable, which canonical field it fills and with which converter.  The
generic compiler in ``template.py`` turns the format into one regex and the
mapping into steps.  This is the general, careful path; ``ingress.py`` adds a
faster split-based path for the default ingress-nginx format and falls back to
this one.
"""

from __future__ import annotations

import re

from patrol.preagg.parse import fields as F
from patrol.preagg.parse.template import REQUEST, URI, TemplateFormat

#: nginx variable -> (canonical field, converter).  Variables not listed are
#: matched (so the line still parses) and dropped.
NGINX_VARS: dict[str, tuple] = {
    "remote_addr": ("remote_addr", F.text),
    "remote_user": ("remote_user", F.text),
    "time_local": ("time", F.clf_time),
    "time_iso8601": ("time", F.iso_time),
    "msec": ("time", F.epoch_time),
    "request": (REQUEST, F.split_request),
    "request_method": ("method", F.text),
    "request_uri": (URI, F.split_uri),
    "uri": ("path", F.text),
    "document_uri": ("path", F.text),
    "args": ("query", F.text),
    "query_string": ("query", F.text),
    "server_protocol": ("protocol", F.text),
    "status": ("status", lambda v: F.to_int(v, "status")),
    "body_bytes_sent": ("body_bytes_sent", lambda v: F.to_int(v, "body_bytes_sent")),
    # $bytes_sent includes headers; used only when $body_bytes_sent is not logged.
    "bytes_sent": ("body_bytes_sent", lambda v: F.to_int(v, "bytes_sent"), True),
    "request_length": ("request_length", lambda v: F.to_int(v, "request_length")),
    "request_time": ("request_time", lambda v: F.to_float(v, "request_time")),
    "http_referer": ("referer", F.text),
    "http_user_agent": ("user_agent", F.text),
    "host": ("host", F.text),
    "http_host": ("host", F.text),
    "server_name": ("host", F.text, True),
    "proxy_upstream_name": ("upstream_name", F.text),
    # ingress-nginx also exposes the split parts directly; when logged they win.
    "namespace": ("namespace", F.text),
    "service_name": ("service", F.text),
    "service_port": ("service_port", F.text),
    "upstream_addr": ("upstream_addr", F.addr_list),
    "upstream_status": ("upstream_status", lambda v: F.int_list(v, "upstream_status")),
    "upstream_response_time": ("upstream_response_time", lambda v: F.float_list(v, "upstream_response_time")),
    "upstream_response_length": ("upstream_response_length", lambda v: F.int_list(v, "upstream_response_length")),
    "req_id": ("req_id", F.text),
    "request_id": ("req_id", F.text),
}

# Written unquoted as "a, b : c" lists by nginx.
LIST_VARS = frozenset({
    "upstream_addr", "upstream_status", "upstream_response_time", "upstream_response_length",
    "upstream_connect_time", "upstream_header_time", "upstream_bytes_received",
    "upstream_bytes_sent", "upstream_cache_status"})
_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def compile_log_format(log_format: str, name: str = "custom") -> TemplateFormat:
    """Compile an nginx ``log_format`` string into a parser.

    Parameters
    ----------
    log_format : str
        The ``log_format`` body (the part after the format name), quotes included
        as nginx writes them, e.g. ``'$remote_addr - [$time_local] "$request" $status'``.
    name : str
        Name used in error messages.

    Returns
    -------
    TemplateFormat
        ``parser(line, namespace_hint=None, labels=None) -> dict``.

    Raises
    ------
    ValueError
        If the format has no variables or logs no time.
    """
    return TemplateFormat(log_format, _VAR, NGINX_VARS, name, LIST_VARS)


#: ingress-nginx's default ``log-format-upstream``.
INGRESS_NGINX_FORMAT = (
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
    '"$http_referer" "$http_user_agent" $request_length $request_time [$proxy_upstream_name] '
    "[$proxy_alternative_upstream_name] $upstream_addr $upstream_response_length "
    "$upstream_response_time $upstream_status $req_id"
)

#: nginx's built-in ``combined`` format.
COMBINED_FORMAT = (
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
    '"$http_referer" "$http_user_agent"'
)
