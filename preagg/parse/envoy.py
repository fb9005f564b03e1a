"""Envoy text access logs (Envoy Gateway, Istio, Contour): declared mappings.

Envoy writes ``%COMMAND%`` placeholders; the table below maps each command to a
canonical field.  Two templates are shipped: Envoy's own default format and
Istio's default (1.8+) text format, which Istio and many Gateway API
deployments use; :func:`compile_envoy_format` compiles any other one.
"""

from __future__ import annotations

import re

from patrol.preagg.errors import ParseError
from patrol.preagg.parse import fields as F
from patrol.preagg.parse.template import FLAGS, URI, TemplateFormat


def _response_flags(v):
    # UF (upstream connect failure), UH (no healthy upstream), NR (no route)...
    # are what an SRE looks for first, so they travel as a flag.
    return () if v in ("-", "") else ("response_flags=" + v,)


#: Envoy command -> (canonical field, converter[, weak]).
ENVOY_OPS: dict[str, tuple] = {
    "START_TIME": ("time", F.any_time),
    "REQ(:METHOD)": ("method", F.text),
    "REQ(X-ENVOY-ORIGINAL-PATH?:PATH)": (URI, F.split_uri),
    "REQ(:PATH)": (URI, F.split_uri),
    "PROTOCOL": ("protocol", F.text),
    "RESPONSE_CODE": ("status", lambda v: F.to_int(v, "response code")),
    "RESPONSE_FLAGS": (FLAGS, _response_flags),
    "BYTES_RECEIVED": ("request_length", lambda v: F.to_int(v, "bytes received")),
    "BYTES_SENT": ("body_bytes_sent", lambda v: F.to_int(v, "bytes sent")),
    "DURATION": ("request_time", lambda v: F.ms_to_s(v, "duration")),
    "RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)": (
        "upstream_response_time", lambda v: F.ms_list(v, "upstream service time")),
    # The first X-Forwarded-For hop is the client; the TCP peer is often a load balancer.
    "REQ(X-FORWARDED-FOR)": ("remote_addr", F.first_forwarded),
    "DOWNSTREAM_REMOTE_ADDRESS": ("remote_addr", F.strip_port, True),
    "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": ("remote_addr", F.text, True),
    "REQ(USER-AGENT)": ("user_agent", F.text),
    "REQ(REFERER)": ("referer", F.text),
    "REQ(X-REQUEST-ID)": ("req_id", F.text),
    "REQ(:AUTHORITY)": ("host", F.text),
    "UPSTREAM_HOST": ("upstream_addr", F.addr_list),
    "UPSTREAM_CLUSTER": (("upstream_name", "namespace", "service", "service_port"), F.split_cluster_name),
    # Istio's newest default logs the raw cluster name under this operator.
    "UPSTREAM_CLUSTER_RAW": (("upstream_name", "namespace", "service", "service_port"), F.split_cluster_name),
}

ENVOY_DEFAULT_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" '
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "
    '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" '
    '"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"'
)

ISTIO_DEFAULT_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" '
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
    '"%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% '
    '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" '
    '"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER% '
    "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% "
    "%REQUESTED_SERVER_NAME% %ROUTE_NAME%"
)

_OP = re.compile(r"%([A-Z_]+(?:\([^)]*\))?(?::\d+)?)%", re.IGNORECASE)


def _normalize(op: str) -> str:
    # %REQ(user-agent):64% and %START_TIME(%s)% name the same data as the table keys.
    op = re.sub(r":\d+$", "", op).upper()
    return "START_TIME" if op.startswith("START_TIME") else op


def compile_envoy_format(fmt: str, name: str = "envoy-custom") -> TemplateFormat:
    """Compile an Envoy access-log format string (``%COMMAND%`` placeholders) into a parser."""
    return TemplateFormat(fmt, _OP, ENVOY_OPS, name, normalize=_normalize)


_default = compile_envoy_format(ENVOY_DEFAULT_FORMAT, "envoy")
_istio = compile_envoy_format(ISTIO_DEFAULT_FORMAT, "istio")


def parse_envoy(line, namespace_hint=None, labels=None) -> dict:
    """Parse an Envoy default-format or Istio default-format text line.

    The two templates share their first fields, so the Istio one (more fields)
    is tried when the plain Envoy one does not match.
    """
    try:
        return _default(line, namespace_hint, labels)
    except ParseError as e:
        try:
            return _istio(line, namespace_hint, labels)
        except ParseError:
            raise e from None
