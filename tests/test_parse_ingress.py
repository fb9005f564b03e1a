"""ingress-nginx default format: real beats sample lines, hard cases, fast == careful path."""

from pathlib import Path

import pytest

from preagg.errors import ParseError
from preagg.parse import KEYS, get_parser
from preagg.parse.ingress import _slow

LOGS = Path(__file__).resolve().parents[2] / "shared" / "data" / "logs"
BEATS = LOGS / "ingress_nginx_beats_sample.log"


def beats_lines():
    # Fail loudly (never skip): the real sample is the point of these tests.
    assert BEATS.is_file(), f"missing real-data file {BEATS} (clone the repo next to shared/)"
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
