"""Shared helpers for the generator tests: an independent parser of the ingress-nginx default format.

Written from the ingress-nginx documentation of ``log-format-upstream``, not from the generator's
code, so a formatting bug in the generator shows up as a mismatch here.
"""

from __future__ import annotations

import re
from calendar import timegm
from dataclasses import dataclass
from time import strptime

import numpy as np
from fixture_data import log_path

_NUM_LIST = r"(?:\d+|-)(?:, (?:\d+|-))*"
LINE_RE = re.compile(
    r'^(?P<addr>\S+) - (?P<user>\S+) \[(?P<time>\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] '
    r'"(?P<method>[A-Z]+) (?P<target>\S+) (?P<proto>HTTP/[12]\.[01])" (?P<status>\d{3}) (?P<bytes>\d+) '
    r'"(?P<referer>[^"]*)" "(?P<ua>[^"]*)" (?P<reqlen>\d+) (?P<rt>\d+\.\d{3}) '
    r'\[(?P<upstream>[a-z0-9]+(?:-[a-z0-9]+)*-\d+)\] \[(?P<alt>[^\]]*)\] '
    r'(?P<uaddr>\S+(?:, \S+)*) (?P<ulen>' + _NUM_LIST + r') '
    r'(?P<utime>(?:\d+\.\d{3}|-)(?:, (?:\d+\.\d{3}|-))*) (?P<ustatus>(?:\d{3}|-)(?:, (?:\d{3}|-))*) '
    r'(?P<reqid>[0-9a-f]{32})$'
)

REAL_SAMPLE = log_path("ingress_nginx_beats_sample.log")


@dataclass
class Parsed:
    """Columns parsed from log lines (one entry per line)."""

    t: np.ndarray          # epoch seconds (whole seconds, from $time_local)
    upstream: np.ndarray   # $proxy_upstream_name
    status: np.ndarray
    utime: np.ndarray      # last $upstream_response_time (nan when '-')
    addr: np.ndarray
    target: np.ndarray     # request target (path + query)

    def __len__(self) -> int:
        return len(self.t)


def parse(lines: list[bytes]) -> Parsed:
    """Parse lines with LINE_RE; raises AssertionError naming the first line that does not match."""
    cache: dict[str, float] = {}
    t, ups, st, ut, ad, tg = [], [], [], [], [], []
    for raw in lines:
        s = raw.decode()
        m = LINE_RE.match(s)
        assert m, f"line does not match the ingress-nginx default format:\n{s}"
        ts = m["time"]
        if ts not in cache:
            assert ts.endswith(" +0000")
            cache[ts] = float(timegm(strptime(ts[:-6], "%d/%b/%Y:%H:%M:%S")))
        t.append(cache[ts])
        ups.append(m["upstream"])
        st.append(int(m["status"]))
        last = m["utime"].split(", ")[-1]
        ut.append(float("nan") if last == "-" else float(last))
        ad.append(m["addr"])
        tg.append(m["target"])
    return Parsed(np.array(t), np.array(ups), np.array(st), np.array(ut), np.array(ad), np.array(tg))
