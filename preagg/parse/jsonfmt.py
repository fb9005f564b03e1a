"""JSON access logs: ingress-nginx ``escape=json``, Envoy/Istio JSON, Traefik JSON.

Each is a declared table ``JSON key -> (canonical field, converter[, weak])``
run by the same step engine as the text formats.  A JSON line is told apart by
its keys (:func:`json_table_for`), so one ``json`` parser reads all three.
"""

from __future__ import annotations

import json

from patrol.preagg.errors import ParseError
from patrol.preagg.parse import fields as F
from patrol.preagg.parse.nginx import NGINX_VARS
from patrol.preagg.parse.template import FLAGS, URI, apply_steps, decode_line, finish, method_flags

_int = F.to_int


def _i(name):
    return lambda v: _int(v, name)


#: ingress-nginx's ``log-format-escape-json`` documentation example, plus every
#: nginx variable name used as its own key (the other common convention).
NGINX_JSON: dict[str, tuple] = {
    **{k: v for k, v in NGINX_VARS.items()},
    "time": ("time", F.any_time),
    "timestamp": ("time", F.any_time),
    "@timestamp": ("time", F.any_time, True),
    "x_forwarded_for": ("remote_addr", F.first_forwarded, True),
    "bytes_sent": ("body_bytes_sent", _i("bytes_sent"), True),
    "vhost": ("host", F.text),
    "request_proto": ("protocol", F.text),
    "path": (URI, F.split_uri),
    "request_query": ("query", F.text),
    "duration": ("request_time", lambda v: F.to_float(v, "duration"), True),
    "method": ("method", F.text),
    "http_referrer": ("referer", F.text),
    "referer": ("referer", F.text),
    "user_agent": ("user_agent", F.text),
    "upstream_name": ("upstream_name", F.text, True),
}

#: Envoy ``json_format`` as Istio ships it, and Envoy Gateway's default (a JSON-shaped
#: text format: every value is a string, ``"-"`` when unset).
ENVOY_JSON: dict[str, tuple] = {
    "start_time": ("time", F.any_time),
    "method": ("method", F.text),
    "path": (URI, F.split_uri),
    "x-envoy-origin-path": (URI, F.split_uri),
    "protocol": ("protocol", F.text),
    "response_code": ("status", _i("response_code")),
    "response_flags": (FLAGS, lambda v: () if v in ("-", "", None) else ("response_flags=" + str(v),)),
    "bytes_received": ("request_length", _i("bytes_received")),
    "bytes_sent": ("body_bytes_sent", _i("bytes_sent")),
    "duration": ("request_time", lambda v: F.ms_to_s(v, "duration")),
    "upstream_service_time": ("upstream_response_time", F.ms_list),
    "x-envoy-upstream-service-time": ("upstream_response_time", F.ms_list),
    "x_forwarded_for": ("remote_addr", F.first_forwarded),
    "x-forwarded-for": ("remote_addr", F.first_forwarded),
    "forwarded_for": ("remote_addr", F.first_forwarded),
    "downstream_remote_address": ("remote_addr", F.strip_port, True),
    "user_agent": ("user_agent", F.text),
    "user-agent": ("user_agent", F.text),
    "referer": ("referer", F.text),
    "request_id": ("req_id", F.text),
    "x-request-id": ("req_id", F.text),
    "authority": ("host", F.text),
    ":authority": ("host", F.text),
    "upstream_host": ("upstream_addr", F.addr_list),
    "upstream_cluster": (("upstream_name", "namespace", "service", "service_port"), F.split_cluster_name),
}


def _traefik_service(v):
    # "default-whoami-80@kubernetes": the part before "@provider" is ns-svc-port,
    # built like ingress-nginx's upstream names, so the same split rule applies.
    name = F.text(v)
    if name is None:
        return None, None, None, None
    ns, svc, port = F.split_upstream_name(name.split("@")[0])
    return name, ns, svc, port


#: Traefik JSON access log (``accessLog.format: json``); durations are nanoseconds.
TRAEFIK_JSON: dict[str, tuple] = {
    "StartUTC": ("time", F.any_time),
    "StartLocal": ("time", F.any_time, True),
    "time": ("time", F.any_time, True),
    "ClientHost": ("remote_addr", F.text),
    "ClientAddr": ("remote_addr", F.strip_port, True),
    "ClientUsername": ("remote_user", F.text),
    "RequestMethod": ("method", F.text),
    "RequestPath": (URI, F.split_uri),
    "RequestProtocol": ("protocol", F.text),
    "DownstreamStatus": ("status", _i("DownstreamStatus")),
    "DownstreamContentSize": ("body_bytes_sent", _i("DownstreamContentSize")),
    "RequestContentSize": ("request_length", _i("RequestContentSize")),
    "Duration": ("request_time", lambda v: F.ns_to_s(v, "Duration")),
    "RequestHost": ("host", F.text),
    "RequestAddr": ("host", F.text, True),
    "request_Referer": ("referer", F.text),
    "request_User-Agent": ("user_agent", F.text),
    "request_X-Request-Id": ("req_id", F.text),
    "ServiceName": (("upstream_name", "namespace", "service", "service_port"), _traefik_service),
    "ServiceAddr": ("upstream_addr", F.addr_list),
    "OriginStatus": ("upstream_status", F.int_list),
    "OriginDuration": ("upstream_response_time", lambda v: [F.ns_to_s(v, "OriginDuration")]),
    "OriginContentSize": ("upstream_response_length", F.int_list),
}


def _compile(table: dict):
    # Weak keys last, so they only fill what strong ones left empty.
    items = sorted(((k,) + (v + (False,))[:3] for k, v in table.items()), key=lambda t: t[3])
    return [k for k, *_ in items], [tuple(s) for _, *s in items]


_TABLES = {name: _compile(t) for name, t in
           (("nginx", NGINX_JSON), ("envoy", ENVOY_JSON), ("traefik", TRAEFIK_JSON))}


def json_table_for(obj: dict) -> str:
    """Which declared table fits this object: ``traefik``, ``envoy`` or ``nginx``."""
    if "DownstreamStatus" in obj or "StartUTC" in obj or "RouterName" in obj:
        return "traefik"
    if "response_code" in obj or "start_time" in obj:
        return "envoy"
    return "nginx"


def load_object(line):
    """``json.loads`` a line into a dict, or raise ParseError(``bad_json``)."""
    line = decode_line(line)
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as e:
        raise ParseError(f"not valid JSON: {e}", "bad_json") from None
    if not isinstance(obj, dict):
        raise ParseError(f"JSON line is a {type(obj).__name__}, not an object", "bad_json")
    return obj


def parse_object(obj: dict, table: str | None = None, namespace_hint=None, labels=None) -> dict:
    """Map an already-decoded JSON access-log object to a canonical record."""
    keys, steps = _TABLES[table or json_table_for(obj)]
    rec = F.empty_record()
    try:
        flags = apply_steps(rec, steps, [obj.get(k) for k in keys])
    except (TypeError, AttributeError):
        # A field of the wrong JSON type (an object where text was expected).
        raise ParseError("a JSON field has an unexpected type (object or list)", "bad_field") from None
    if rec["time"] is None:
        raise ParseError("JSON access log has no time field (time, start_time, StartUTC, ...)", "bad_time")
    if rec["status"] is None and rec["method"] is None and rec["path"] is None:
        raise ParseError("JSON object has none of the access-log fields (status, method, path)", "not_access_log")
    rec["flags"] = method_flags(rec, flags)
    if labels:
        rec["labels"] = labels
    return finish(rec, namespace_hint)


def make_json_parser(table: str | None = None):
    """A parser for JSON lines; ``table`` forces ``nginx``/``envoy``/``traefik``."""

    def parse_json(line, namespace_hint=None, labels=None) -> dict:
        return parse_object(load_object(line), table, namespace_hint, labels)

    parse_json.__doc__ = f"Parse one JSON access-log line ({table or 'table detected per line'})."
    return parse_json
