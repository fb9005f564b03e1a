"""ingress-nginx default format: real beats sample lines, hard cases, fast == careful path."""


import pytest

from patrol.preagg.errors import ParseError
from patrol.preagg.parse import KEYS, get_parser
from patrol.preagg.parse.ingress import _slow
from fixture_data import log_path

BEATS = log_path("ingress_nginx_beats_sample.log")


def beats_lines():
    # Fail loudly (never skip): the real sample is the point of these tests.
    return BEATS.read_text().splitlines()


parse = get_parser("ingress-nginx")


def test_beats_file_has_29_lines_all_parse_and_fast_equals_slow():
    lines = beats_lines()
    assert len(lines) == 29
    for i, line in enumerate(lines, 1):
        rec = parse(line)
        assert tuple(rec) == KEYS, i
        assert rec == _slow(line), f"fast and careful paths disagree on line {i}"


def test_first_line_all_fields():
    rec = parse(beats_lines()[0])
    assert rec == {
        "time": 1581076131.0, "remote_addr": "192.168.64.1", "remote_user": None,
        "method": "POST", "path": "/products", "query": None, "protocol": "HTTP/1.1",
        "status": 200, "body_bytes_sent": 59, "request_length": 89, "request_time": 0.001,
        "referer": None, "user_agent": "curl/7.54.0", "host": None,
        "upstream_name": "default-web-8080", "namespace": "default", "service": "web",
        "service_port": "8080", "upstream_addr": ["172.17.0.5:8080"], "upstream_status": [200],
        "upstream_response_time": [0.0], "upstream_response_length": [59],
        "req_id": "529a007902362a5f51385a5fa7049884", "labels": {}, "flags": (),
    }


def test_multi_upstream_line_23():
    rec = parse(beats_lines()[22])
    assert rec["upstream_addr"] == ["172.17.0.6:8080", "172.17.0.7:8080"]
    assert rec["upstream_response_length"] == [61, 100]
    assert rec["upstream_response_time"] == [0.100, 0.004]
    assert rec["upstream_status"] == [200, 203]
    assert rec["remote_addr"] == "192.168.64.14"


def test_rejected_before_routing_and_bad_method():
    lines = beats_lines()
    for idx, method in ((4, "PATCHp"), (5, "geti")):
        rec = parse(lines[idx])
        assert rec["method"] == method and rec["flags"] == ("bad_method",)
        assert rec["status"] == 400 and rec["path"] == "/products/42"
        assert rec["upstream_name"] is None and rec["service"] is None
        assert rec["upstream_addr"] == [] and rec["upstream_status"] == []
        assert rec["user_agent"] is None and rec["request_length"] == 0


def test_ipv6_client_and_upstreams():
    lines = beats_lines()
    rec = parse(lines[24])
    assert rec["remote_addr"] == "2a02:cf40::" and rec["remote_user"] == "remote_monitoring_user"
    assert (rec["namespace"], rec["service"], rec["service_port"]) == ("esmon", "esmon-es-http", "9200")
    assert rec["upstream_addr"] == ["[2a02:cf40::]:9200"]
    rec = parse(lines[25])
    assert rec["upstream_addr"] == ["[2a02:cf40::7]:5000", "[2a02:cf40::4e36]:5000"]
    assert rec["upstream_status"] == [502, 502] and rec["status"] == 502
    assert (rec["namespace"], rec["service"], rec["service_port"]) == (None, "localhost", "8080")


def test_unix_socket_upstream():
    rec = parse(beats_lines()[27])
    assert rec["upstream_addr"] == ["unix:/var/run/php-fpm.sock"]
    assert rec["upstream_status"] == [200]


def test_dash_inside_upstream_lists():
    rec = parse(beats_lines()[28])
    assert rec["upstream_addr"] == ["172.17.0.6:8080", "172.17.0.7:8080"]
    assert rec["upstream_response_length"] == []          # whole field "-"
    assert rec["upstream_response_time"] == [0.1, None]   # "0.100, -"
    assert rec["upstream_status"] == [200, None]


def test_bytes_input_equals_str_input():
    line = beats_lines()[22]
    assert parse(line.encode()) == parse(line)


def test_garbage_is_parse_error_with_reason():
    with pytest.raises(ParseError) as e:
        parse("hello world")
    assert "ingress-nginx" in e.value.reason and e.value.code == "format_mismatch"


# ---------------------------------------------------------------- constructed hard cases
HEAD = '10.1.2.3 - - [07/Feb/2020:11:48:51 +0000] '
TAIL_OK = ' 91 0.004 [shop-cart-api-8080] [] 10.0.0.9:8080 59 0.003 200 abc123'


def both(line):
    """Parse with the public parser and check the careful path agrees."""
    rec = parse(line)
    assert rec == _slow(line)
    return rec


def test_internal_redirect_groups_are_attempts():
    line = (HEAD + '"GET /a HTTP/1.1" 200 59 "-" "curl/8" 91 0.004 [shop-cart-api-8080] [] '
            '10.0.0.1:80 : 10.0.0.2:80 0 : 59 0.001 : 0.002 404 : 200 abc123')
    rec = both(line)
    assert rec["upstream_addr"] == ["10.0.0.1:80", "10.0.0.2:80"]
    assert rec["upstream_status"] == [404, 200]
    assert rec["upstream_response_time"] == [0.001, 0.002]
    assert rec["upstream_response_length"] == [0, 59]
    assert (rec["namespace"], rec["service"], rec["service_port"]) == ("shop", "cart-api", "8080")


def test_three_attempts_mixed_separators():
    line = (HEAD + '"GET /a HTTP/1.1" 502 59 "-" "curl/8" 91 0.004 [ns-svc-80] [] '
            'a:80, b:80 : c:80 0, 0 : 59 0.100, 0.004 : 0.002 502, 502 : 200 abc123')
    rec = both(line)
    assert rec["upstream_addr"] == ["a:80", "b:80", "c:80"]
    assert rec["upstream_status"] == [502, 502, 200]


def test_escaped_bytes_are_decoded_in_path_and_user_agent():
    line = HEAD + r'"GET /caf\xC3\xA9/x?q=\x22 HTTP/1.1" 200 59 "-" "curl \x22quoted\x22 \xE2\x9C\x93"' + TAIL_OK
    rec = both(line)
    assert rec["path"] == "/café/x"
    assert rec["query"] == r"q=\x22"   # the query is kept raw (it is dropped by templating anyway)
    assert rec["user_agent"] == 'curl "quoted" ✓'


def test_tls_handshake_on_plain_port_is_counted_without_path():
    line = HEAD + r'"\x16\x03\x01\x00\xF0\x01\x00\x00\xEC\x03\x03" 400 157 "-" "-" 0 0.001 [] [] - - - - rid1'
    rec = both(line)
    assert rec["status"] == 400 and rec["method"] is None and rec["path"] is None
    assert rec["protocol"] is None and rec["flags"] == ("bad_request",)
    assert rec["upstream_status"] == [] and rec["req_id"] == "rid1"


def test_empty_request_and_dashes_everywhere():
    line = '- - - [07/Feb/2020:11:48:51 +0000] "" 400 0 "-" "-" - - [] [] - - - - -'
    rec = both(line)
    assert rec["remote_addr"] is None and rec["request_length"] is None and rec["request_time"] is None
    assert rec["method"] is None and rec["flags"] == ("bad_request",)
    assert rec["req_id"] is None and rec["status"] == 400 and rec["body_bytes_sent"] == 0


def test_http09_request_without_protocol():
    rec = both(HEAD + '"GET /" 200 5 "-" "-"' + TAIL_OK)
    assert (rec["method"], rec["path"], rec["protocol"]) == ("GET", "/", None)


def test_timezone_offset_is_applied():
    base = parse(HEAD + '"GET / HTTP/1.1" 200 5 "-" "-"' + TAIL_OK)["time"]
    east = parse(HEAD.replace("+0000", "+0530") + '"GET / HTTP/1.1" 200 5 "-" "-"' + TAIL_OK)["time"]
    west = parse(HEAD.replace("+0000", "-0800") + '"GET / HTTP/1.1" 200 5 "-" "-"' + TAIL_OK)["time"]
    assert base - east == 5.5 * 3600 and west - base == 8 * 3600


def test_default_backend_and_upstream_name_rules():
    line = HEAD + '"GET / HTTP/1.1" 404 5 "-" "-" 91 0.004 [upstream-default-backend] [] 127.0.0.1:8181 5 0.001 404 r'
    rec = both(line)
    assert (rec["namespace"], rec["service"], rec["service_port"]) == (None, "upstream-default-backend", None)
    ns = get_parser("ingress-nginx", namespaces=["kube-system", "kube"])
    line2 = line.replace("upstream-default-backend", "kube-system-kube-dns-53")
    rec = ns(line2)
    assert (rec["namespace"], rec["service"], rec["service_port"]) == ("kube-system", "kube-dns", "53")
    # Without the hint: the documented heuristic (first part = namespace).
    rec = parse(line2)
    assert (rec["namespace"], rec["service"], rec["service_port"]) == ("kube", "system-kube-dns", "53")


def test_rejections_say_why():
    cases = {
        "": "empty",
        HEAD.replace("07/Feb", "31/Feb") + '"GET / HTTP/1.1" 200 5 "-" "-"' + TAIL_OK: "bad_time",
        HEAD.replace("Feb", "Foo") + '"GET / HTTP/1.1" 200 5 "-" "-"' + TAIL_OK: "bad_time",
        HEAD.replace("+0000", "+9999") + '"GET / HTTP/1.1" 200 5 "-" "-"' + TAIL_OK: "bad_time",
        HEAD.replace(":48:51", ":48:61") + '"GET / HTTP/1.1" 200 5 "-" "-"' + TAIL_OK: "bad_time",
        HEAD + '"GET / HTTP/1.1" abc 5 "-" "-"' + TAIL_OK: "bad_number",
        HEAD + '"GET / HTTP/1.1" 200 5 "-" "-" 91 0.004 [x-y-80] [] a:80 5 nan 200 r': "bad_number",
        HEAD + '"GET / HTTP/1.1" 200 5 "-" "-" 91 1e999 [x-y-80] [] a:80 5 0.1 200 r': "bad_number",
        HEAD + '"GET / HTTP/1.1" 200 5 "-" "-" 91 0.1 [x-y-80] [] a:80 5 1e999 200 r': "bad_number",
        HEAD + '"GET / HTTP/1.1" 200 5 "-" "curl': "format_mismatch",
        HEAD + '"GET / HTTP/1.1" 200 5 "-" "-"': "format_mismatch",
    }
    for line, code in cases.items():
        with pytest.raises(ParseError) as e:
            parse(line)
        assert e.value.code == code, (line, e.value.reason)
        assert len(e.value.reason) >= 10
    with pytest.raises(ParseError) as e:
        parse(12345)
    assert e.value.code == "bad_type"


def test_time_cache_stays_bounded():
    from patrol.preagg.parse import fields
    for day in range(1, 29):
        for hour in range(24):
            parse(f'1.1.1.1 - - [{day:02d}/Feb/2020:{hour:02d}:00:{day:02d} +0000] "GET / HTTP/1.1" 200 5 "-" "-"'
                  + TAIL_OK)
    assert len(fields.TIME_CACHE) <= 4096 and len(fields.SECOND_CACHE) <= 4096


def test_beats_totals_match_an_independent_regex():
    import collections
    import re
    simple = re.compile(r'^(\S+) - (\S+) \[[^\]]+\] "(\S*)[^"]*" (\d{3}) (\d+) .* \[([^\]]*)\] \[\] (.+) (\S+)$')
    want, got = collections.Counter(), collections.Counter()
    for line in beats_lines():
        m = simple.match(line)
        assert m, line
        want[("status", int(m[4]))] += 1
        want[("method", m[3])] += 1
        want[("upstream", m[6] or None)] += 1
        want[("req_id", m[8])] += 1
        rec = parse(line)
        got[("status", rec["status"])] += 1
        got[("method", rec["method"])] += 1
        got[("upstream", rec["upstream_name"])] += 1
        got[("req_id", rec["req_id"])] += 1
    assert got == want
    assert got[("status", 502)] == 2 and got[("status", 400)] == 2 and got[("method", "GET")] == 23


def test_malformed_upstream_address_is_kept_as_written():
    # Line 27 of the beats sample: a garbled IPv6 upstream; the request still counts.
    rec = parse(beats_lines()[26])
    assert rec["upstream_addr"] == ["[2a02:cf40::7]:5000", "[2a02:cf40::::::::4e36]:500000000"]
    assert rec["upstream_status"] == [502, 502] and rec["status"] == 502 and rec["flags"] == ()
