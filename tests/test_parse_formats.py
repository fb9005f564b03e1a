"""Other formats: custom nginx log_format, JSON (ingress-nginx example), Envoy, Istio,
Traefik, shipper envelopes, auto detection."""

import json
from pathlib import Path

import pytest

from patrol.preagg.errors import ParseError
from patrol.preagg.parse import KEYS, compile_envoy_format, compile_log_format, get_parser, unwrap_envelope
from fixture_data import log_path

BEATS = log_path("ingress_nginx_beats_sample.log")

ENVOY_LINE = ('[2016-04-15T20:17:00.310Z] "POST /api/v1/locations?a=1 HTTP/2" 204 - 154 0 226 100 "10.0.35.28" '
              '"nsq2http" "cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2" "locations" "tcp://10.0.2.1:80"')
ISTIO_LINE = ('[2024-06-02T13:35:27.054Z] "GET /realms/x HTTP/2" 404 NR route_not_found - "-" 0 0 0 - '
              '"192.168.0.24, 10.0.0.1" "Mozilla/5.0 (X11)" "0b60ced5" "auth.example.org" "-" '
              'outbound|8080||keycloak.auth.svc.cluster.local - 10.0.0.196:8443 192.168.0.24:41604 '
              'auth.example.org -')
NGINX_JSON = {  # ingress-nginx docs' log-format-escape-json example, as nginx writes it
    "time": "2024-03-01T10:00:00+00:00", "remote_addr": "", "x_forwarded_for": "203.0.113.7, 10.0.0.2",
    "request_id": "f0e1", "remote_user": "", "bytes_sent": 612, "request_time": 0.012, "status": 503,
    "vhost": "shop.example.com", "request_proto": "HTTP/2.0", "path": "/cart/items/77", "request_query": "x=1",
    "request_length": 420, "duration": 0.012, "method": "POST", "http_referrer": "",
    "http_user_agent": "Mozilla/5.0"}
TRAEFIK = {
    "ClientAddr": "10.42.0.1:54321", "ClientHost": "10.42.0.1", "ClientUsername": "-",
    "DownstreamContentSize": 17, "DownstreamStatus": 502, "Duration": 1398834, "OriginContentSize": 17,
    "OriginDuration": 1234567, "OriginStatus": 502, "RequestAddr": "whoami.example.com",
    "RequestContentSize": 0, "RequestHost": "whoami.example.com", "RequestMethod": "GET",
    "RequestPath": "/api/users/42?x=1", "RequestProtocol": "HTTP/1.1", "RetryAttempts": 0,
    "RouterName": "default-whoami@kubernetes", "ServiceAddr": "10.42.0.9:80",
    "ServiceName": "default-whoami-80@kubernetes", "StartUTC": "2024-03-01T10:00:00.5Z",
    "request_User-Agent": "curl/8.5.0", "time": "2024-03-01T10:00:01Z"}


def beats():
    assert BEATS.is_file(), f"missing real-data file {BEATS}"
    return BEATS.read_text().splitlines()


def test_custom_nginx_format_with_iso_time_and_host():
    fmt = ('$remote_addr [$time_iso8601] $host "$request_method $request_uri $server_protocol" $status '
           '$bytes_sent $request_time "$http_user_agent" $upstream_addr $upstream_status')
    p = compile_log_format(fmt)
    rec = p('1.2.3.4 [2024-03-01T10:00:00+01:00] shop.example.com "GET /a/b?c=d HTTP/1.1" 200 99 0.5 '
            '"curl/8" 10.0.0.1:80, 10.0.0.2:80 502, 200')
    assert tuple(rec) == KEYS
    assert rec["time"] == 1709283600.0 and rec["host"] == "shop.example.com"
    assert (rec["method"], rec["path"], rec["query"], rec["protocol"]) == ("GET", "/a/b", "c=d", "HTTP/1.1")
    assert rec["body_bytes_sent"] == 99 and rec["request_time"] == 0.5
    assert rec["upstream_addr"] == ["10.0.0.1:80", "10.0.0.2:80"] and rec["upstream_status"] == [502, 200]
    with pytest.raises(ParseError) as e:
        p('1.2.3.4 [2024-03-01T10:00:00+01:00] shop "GET / HTTP/1.1" 200')
    assert e.value.code == "format_mismatch" and "expected" in e.value.reason
    # get_parser accepts the format string directly
    assert get_parser(fmt)('1.2.3.4 [2024-03-01T10:00:00Z] h "GET / HTTP/1.1" 200 1 0.1 "-" - -')["status"] == 200


def test_compiled_default_format_equals_builtin_on_real_lines():
    from patrol.preagg.parse import INGRESS_NGINX_FORMAT
    p = compile_log_format(INGRESS_NGINX_FORMAT)
    fast = get_parser()
    for line in beats():
        assert p(line) == fast(line)


def test_format_without_time_is_refused():
    with pytest.raises(ValueError):
        compile_log_format('$remote_addr "$request" $status')
    with pytest.raises(ValueError):
        get_parser("nonsense")


def test_json_ingress_nginx_example():
    rec = get_parser("json")(json.dumps(NGINX_JSON))
    assert tuple(rec) == KEYS
    assert rec["time"] == 1709287200.0 and rec["status"] == 503
    assert rec["remote_addr"] == "203.0.113.7"      # "" remote_addr -> first X-Forwarded-For hop
    assert rec["remote_user"] is None and rec["referer"] is None
    assert (rec["method"], rec["path"], rec["query"], rec["protocol"]) == ("POST", "/cart/items/77", "x=1", "HTTP/2.0")
    assert rec["host"] == "shop.example.com" and rec["body_bytes_sent"] == 612
    assert rec["request_time"] == 0.012 and rec["request_length"] == 420 and rec["req_id"] == "f0e1"


def test_json_with_nginx_variable_names_and_upstream_lists():
    obj = {"time_local": "07/Feb/2020:11:48:51 +0000", "request": "GET /x HTTP/1.1", "status": "200",
           "proxy_upstream_name": "default-web-8080", "upstream_addr": "a:80, b:80",
           "upstream_status": "502, 200", "upstream_response_time": "0.1, 0.2"}
    rec = get_parser("json")(json.dumps(obj).encode())
    assert rec["time"] == 1581076131.0 and rec["service"] == "web" and rec["upstream_status"] == [502, 200]
    assert rec["upstream_response_time"] == [0.1, 0.2]


def test_envoy_default_format():
    rec = get_parser("envoy")(ENVOY_LINE)
    assert tuple(rec) == KEYS
    assert rec["time"] == pytest.approx(1460751420.310)
    assert (rec["method"], rec["path"], rec["query"], rec["protocol"]) == ("POST", "/api/v1/locations", "a=1", "HTTP/2")
    assert rec["status"] == 204 and rec["request_length"] == 154 and rec["body_bytes_sent"] == 0
    assert rec["request_time"] == 0.226 and rec["upstream_response_time"] == [0.1]
    assert rec["remote_addr"] == "10.0.35.28" and rec["user_agent"] == "nsq2http"
    assert rec["host"] == "locations" and rec["upstream_addr"] == ["tcp://10.0.2.1:80"]
    assert rec["flags"] == ()


def test_istio_default_format_and_cluster_split():
    rec = get_parser("envoy")(ISTIO_LINE)
    assert rec["status"] == 404 and rec["flags"] == ("response_flags=NR",)
    assert rec["remote_addr"] == "192.168.0.24"     # first X-Forwarded-For hop
    assert rec["upstream_addr"] == [] and rec["upstream_response_time"] == []
    assert rec["upstream_name"] == "outbound|8080||keycloak.auth.svc.cluster.local"
    assert (rec["namespace"], rec["service"], rec["service_port"]) == ("auth", "keycloak", "8080")


def test_envoy_custom_format_and_contour_cluster():
    p = compile_envoy_format('%START_TIME(%s)% %REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %UPSTREAM_CLUSTER%')
    rec = p("1709287200 GET /x 200 default/web/80/da39a3ee5e")
    assert rec["time"] == 1709287200.0 and rec["status"] == 200
    assert (rec["namespace"], rec["service"], rec["service_port"]) == ("default", "web", "80")
    assert get_parser('%START_TIME% %RESPONSE_CODE%')("2024-03-01T10:00:00Z 500")["status"] == 500


def test_envoy_json_as_envoy_gateway_writes_it():
    # Envoy Gateway's default format: JSON-shaped text, every value a string, "-" when unset.
    obj = {"start_time": "2024-03-01T10:00:00.000Z", "method": "GET", "x-envoy-origin-path": "/p/1",
           "protocol": "HTTP/1.1", "response_code": "503", "response_flags": "UH",
           "response_code_details": "no_healthy_upstream", "connection_termination_details": "-",
           "upstream_transport_failure_reason": "-", "bytes_received": "0",
           "bytes_sent": "19", "duration": "3", "x-envoy-upstream-service-time": "-",
           "x-forwarded-for": "198.51.100.9", "user-agent": "k6", "x-request-id": "r1",
           ":authority": "api.example.com", "upstream_host": "-",
           "upstream_cluster": "httproute/team-a/checkout/rule/0", "upstream_local_address": "-",
           "downstream_local_address": "10.0.0.5:10080", "downstream_remote_address": "10.0.0.9:51000",
           "requested_server_name": "-", "route_name": "httproute/team-a/checkout/rule/0/match/0/*"}
    rec = get_parser("json")(json.dumps(obj))
    assert rec["upstream_response_time"] == [] and rec["body_bytes_sent"] == 19
    assert rec["status"] == 503 and rec["request_time"] == 0.003 and rec["flags"] == ("response_flags=UH",)
    assert (rec["namespace"], rec["service"]) == ("team-a", "checkout") and rec["host"] == "api.example.com"
    assert rec["upstream_addr"] == [] and rec["remote_addr"] == "198.51.100.9"


def test_traefik_json():
    rec = get_parser("traefik")(json.dumps(TRAEFIK))
    assert tuple(rec) == KEYS
    assert rec["time"] == 1709287200.5 and rec["status"] == 502 and rec["remote_addr"] == "10.42.0.1"
    assert rec["remote_user"] is None and rec["request_time"] == pytest.approx(0.001398834)
    assert (rec["method"], rec["path"], rec["query"]) == ("GET", "/api/users/42", "x=1")
    assert rec["upstream_name"] == "default-whoami-80@kubernetes"
    assert (rec["namespace"], rec["service"], rec["service_port"]) == ("default", "whoami", "80")
    assert rec["upstream_addr"] == ["10.42.0.9:80"] and rec["upstream_status"] == [502]
    assert rec["upstream_response_time"] == [pytest.approx(0.001234567)]
    assert rec["user_agent"] == "curl/8.5.0" and rec["host"] == "whoami.example.com"
    assert get_parser("json")(json.dumps(TRAEFIK)) == rec       # detected by its keys


ENVELOPES = {
    "fluent-bit": lambda line: {"log": line + "\n", "stream": "stdout", "time": "2020-02-07T11:48:51Z",
                                "kubernetes": {"pod_name": "ingress-nginx-controller-7d", "namespace_name":
                                               "ingress-nginx", "labels": {"app": "ingress-nginx"},
                                               "host": "node-1", "container_name": "controller"}},
    "filebeat": lambda line: {"message": line, "kubernetes": {
        "namespace": "ingress-nginx", "pod": {"name": "ingress-nginx-controller-7d"},
        "container": {"name": "controller"}, "node": {"name": "node-1"}, "labels": {"app": "ingress-nginx"}}},
    "vector": lambda line: {"message": line, "kubernetes": {
        "pod_namespace": "ingress-nginx", "pod_name": "ingress-nginx-controller-7d",
        "container_name": "controller", "pod_node_name": "node-1", "pod_labels": {"app": "ingress-nginx"}}},
}
WANT_LABELS = {"namespace": "ingress-nginx", "pod": "ingress-nginx-controller-7d", "container": "controller",
               "node": "node-1", "label.app": "ingress-nginx"}


@pytest.mark.parametrize("shipper", sorted(ENVELOPES))
def test_envelopes_are_unwrapped_with_labels(shipper):
    line = beats()[22]
    env = json.dumps(ENVELOPES[shipper](line))
    inner, labels, ns = unwrap_envelope(json.loads(env))
    assert inner == line and labels == WANT_LABELS and ns == "ingress-nginx"
    assert unwrap_envelope(env) == unwrap_envelope(env.encode()) == (inner, labels, ns)
    plain = get_parser()(line)
    for p in (get_parser(), get_parser(envelope=True), get_parser("auto")):
        rec = p(env)
        assert rec["labels"] == WANT_LABELS
        assert {k: v for k, v in rec.items() if k != "labels"} == {k: v for k, v in plain.items() if k != "labels"}
    with pytest.raises(ParseError):
        get_parser(envelope=False)(env)
    with pytest.raises(ParseError) as e:
        get_parser(envelope=True)(line)
    assert e.value.code == "bad_json"


def test_envelope_namespace_disambiguates_upstream_name():
    line = beats()[0].replace("[default-web-8080]", "[ingress-nginx-admission-443]")
    env = json.dumps(ENVELOPES["fluent-bit"](line))
    rec = get_parser()(env)
    assert (rec["namespace"], rec["service"], rec["service_port"]) == ("ingress-nginx", "admission", "443")
    rec = get_parser()(line)    # no metadata: the documented heuristic
    assert (rec["namespace"], rec["service"], rec["service_port"]) == ("ingress", "nginx-admission", "443")


def test_envelope_around_json_access_log():
    env = json.dumps({"log": json.dumps(TRAEFIK), "kubernetes": {"namespace_name": "traefik"}})
    rec = get_parser("auto")(env)
    assert rec["status"] == 502 and rec["labels"] == {"namespace": "traefik"}
    assert get_parser("traefik")(env)["status"] == 502


def test_auto_detects_every_format():
    auto = get_parser("auto")
    for line in beats():
        assert auto(line) == get_parser()(line)
    assert auto(ENVOY_LINE) == get_parser("envoy")(ENVOY_LINE)
    assert auto(ISTIO_LINE) == get_parser("envoy")(ISTIO_LINE)
    assert auto(json.dumps(NGINX_JSON)) == get_parser("json")(json.dumps(NGINX_JSON))
    cri = "2024-03-01T10:00:00.123456789Z stdout F " + beats()[0]
    assert auto(cri) == get_parser()(beats()[0])


@pytest.mark.parametrize("line,code", [
    ("{not json", "bad_json"),
    ("[1, 2]", "bad_json"),
    ('{"foo": 1}', "bad_time"),
    ('{"time": "2024-03-01T10:00:00Z", "foo": 1}', "not_access_log"),
    ('{"time": "yesterday", "status": 200}', "bad_time"),
    ('{"time": "2024-03-01T10:00:00Z", "status": {"a": 1}}', "bad_number"),
    ('{"time": "2024-03-01T10:00:00Z", "status": 200, "method": ["GET"]}', "bad_field"),
])
def test_json_rejections(line, code):
    with pytest.raises(ParseError) as e:
        get_parser("json")(line)
    assert e.value.code == code, e.value.reason


def test_unknown_method_is_flagged_in_every_format():
    line = ENVOY_LINE.replace('"POST ', '"FOO ')
    rec = get_parser("envoy")(line)
    assert rec["method"] == "FOO" and rec["flags"] == ("bad_method",)
    obj = dict(NGINX_JSON, method="geti")
    assert get_parser("json")(json.dumps(obj))["flags"] == ("bad_method",)
