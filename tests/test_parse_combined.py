"""nginx/Apache combined: every line of the real 10k file parses, checked against an
independent regex count, plus specific lines (unterminated quote, \\xXX bytes)."""

import collections
import re
from datetime import datetime, timezone

from patrol.preagg.parse import KEYS, get_parser
from fixture_data import log_path

COMBINED = log_path("apache_combined_10k.log")

# Independent of the parser: a plain regex over the raw bytes.
SIMPLE = re.compile(rb'^(\S+) \S+ \S+ \[([^\]]+)\] "(\S+) (\S+) [^"]*" (\d{3}) (\d+|-) ')

parse = get_parser("combined")


def raw_lines():
    data = COMBINED.read_bytes()
    lines = data.split(b"\n")
    assert lines[-1] == b""   # file ends with a newline, nothing after it
    return lines[:-1]


def test_every_line_parses_and_totals_match_an_independent_regex():
    lines = raw_lines()
    assert len(lines) == 10_000
    want_status, want_method, want_bytes, want_ip = (collections.Counter() for _ in range(4))
    got_status, got_method, got_bytes, got_ip = (collections.Counter() for _ in range(4))
    flagged = {}
    for i, line in enumerate(lines, 1):
        m = SIMPLE.match(line)
        assert m, f"line {i} not matched by the test's own regex"
        want_status[int(m[5])] += 1
        want_method[m[3].decode()] += 1
        want_bytes["sum"] += 0 if m[6] == b"-" else int(m[6])
        want_ip[m[1].decode()] += 1
        rec = parse(line)
        assert tuple(rec) == KEYS
        got_status[rec["status"]] += 1
        got_method[rec["method"]] += 1
        got_bytes["sum"] += rec["body_bytes_sent"] or 0
        got_ip[rec["remote_addr"]] += 1
        assert rec["path"] == m[4].decode().partition("?")[0] or rec["path"] is None
        if rec["flags"]:
            flagged[i] = rec["flags"]
    assert got_status == want_status
    assert got_method == want_method
    assert got_bytes == want_bytes
    assert got_ip == want_ip
    # Known shape of this file (see tests/fixtures/README.md).
    assert got_status[200] == 9126 and got_status[404] == 213 and got_status[500] == 3
    assert got_method == {"GET": 9952, "HEAD": 42, "POST": 5, "OPTIONS": 1}
    # Exactly one odd line: the user agent's closing quote is missing.
    assert flagged == {8899: ("unterminated_quote",)}


def test_times_match_strptime_on_a_sample():
    lines = raw_lines()
    for i in range(0, 10_000, 97):
        stamp = SIMPLE.match(lines[i])[2].decode()
        want = datetime.strptime(stamp, "%d/%b/%Y:%H:%M:%S %z").timestamp()
        assert parse(lines[i])["time"] == want, i


def test_first_line_fields():
    rec = parse(raw_lines()[0])
    assert rec["remote_addr"] == "83.149.9.216"
    assert rec["time"] == datetime(2015, 5, 17, 10, 5, 3, tzinfo=timezone.utc).timestamp() == 1431857103.0
    assert rec["method"] == "GET"
    assert rec["path"] == "/presentations/logstash-monitorama-2013/images/kibana-search.png"
    assert rec["protocol"] == "HTTP/1.1" and rec["status"] == 200 and rec["body_bytes_sent"] == 203023
    assert rec["referer"] == "http://semicomplete.com/presentations/logstash-monitorama-2013/"
    assert rec["user_agent"].startswith("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1)")
    # combined has no upstream or timing fields
    assert rec["upstream_addr"] == [] and rec["request_time"] is None and rec["upstream_name"] is None


def test_unterminated_user_agent_line_8899():
    rec = parse(raw_lines()[8898])
    assert rec["flags"] == ("unterminated_quote",)
    assert rec["status"] == 200 and rec["body_bytes_sent"] == 235
    assert rec["path"] == "/scripts/grok-py-test/configlib.py"
    assert rec["user_agent"] == "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html"


def test_non_utf8_referer_bytes_become_replacement_chars():
    # Lines 5851/5853/5860 carry raw cp1251 bytes in the referer.
    lines = raw_lines()
    for n in (5851, 5853, 5860):
        rec = parse(lines[n - 1])
        assert rec["referer"].startswith("http://") and "\ufffd" in rec["referer"]
        assert rec["path"] == "/files/logstash/" and rec["status"] == 200


def test_auto_detects_combined():
    auto = get_parser("auto")
    for line in raw_lines()[:200]:
        assert auto(line) == parse(line)
