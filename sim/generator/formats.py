"""The generated ingress-nginx lines in other access-log formats: ``combined``, ``json``, ``envoy``.

Why: the pre-aggregation stage reads other formats too (``preagg.parse``; compiled extractors
for these three), and their benchmark should feed the *same* traffic in each shape, so a
format's rate can be set against the default format's on identical requests. The traffic model
renders the default format (``render.py``); :func:`reformat` rewrites one such line:

* ``combined``: nginx's ``combined`` (the default format without the upstream tail);
* ``json``: ingress-nginx ``log-format-escape-json`` with the keys of its documentation example
  (``time``, ``remote_addr``, ``x_forwarded_for``, ``request_id``, ``remote_user``,
  ``bytes_sent``, ``request_time``, ``status``, ``vhost``, ``request_proto``, ``path``,
  ``request_query``, ``request_length``, ``duration``, ``method``, ``http_referrer``,
  ``http_user_agent``) plus the upstream fields under their nginx variable names
  (``proxy_upstream_name``, ``upstream_addr``, ``upstream_response_time``,
  ``upstream_status``); ``vhost`` is ``<namespace>.example.com`` of the upstream (the default
  format logs no host), unset values are ``""`` as nginx writes them with ``escape=json``;
* ``envoy``: Envoy's default text format (``preagg.parse.envoy.ENVOY_DEFAULT_FORMAT``), the
  start time with milliseconds from the event time, durations in ms, ``UF`` for 502/503.

Retried requests keep their attempt lists (``a:80, b:80``) where the format has them.
"""

from __future__ import annotations

import json
import time

FORMATS = ("ingress-nginx", "combined", "json", "envoy")

_MON = {m.encode(): i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_ISO: dict = {}


def _iso(clf: bytes) -> str:
    """``07/Feb/2020:12:02:42 +0000`` -> ``2020-02-07T12:02:42+00:00`` (cached per second)."""
    s = _ISO.get(clf)
    if s is None:
        if len(_ISO) > 100_000:
            _ISO.clear()
        z = clf[21:26].decode()
        s = _ISO[clf] = "%s-%02d-%sT%s%s:%s" % (clf[7:11].decode(), _MON[clf[3:6]], clf[0:2].decode(),
                                                 clf[12:20].decode(), z[:3], z[3:])
    return s


def _ms(v: bytes) -> bytes:
    """nginx seconds ``0.042`` -> Envoy milliseconds ``42``; ``-`` stays."""
    if v == b"-":
        return v
    return b"%d" % round(float(v) * 1000)


def _opt(v: bytes) -> str:
    return "" if v == b"-" else v.decode()


def reformat(line: bytes, fmt: str, t: float | None = None) -> bytes:
    """One generated ingress-nginx line in ``fmt`` (``t``: its event time, for Envoy's ms)."""
    if fmt == "ingress-nginx":
        return line
    p = line.split(b'"')
    if fmt == "combined":
        return b'"'.join(p[:6]) + b'"'
    head, req, mid, ref, ua, tail = p[0], p[1], p[2], p[3], p[5], p[6]
    ip = head[:head.index(b" ")]
    user = head.split(b" ")[2]
    ts = head[head.index(b"[") + 1:head.index(b"]")]
    status, body = mid.split()
    method, uri, proto = req.split(b" ")
    path, _, query = uri.partition(b"?")
    tk = tail.split()
    rl, rt, up = tk[0], tk[1], tk[2][1:-1]
    # the four upstream lists, each possibly "a, b" (retries): rejoin their items
    rest = b" ".join(tk[4:-1]).replace(b", ", b",").split(b" ")
    addr, ulen, urt, ust = (x.replace(b",", b", ") for x in rest)
    rid = tk[-1]
    if fmt == "json":
        host = up.split(b"-")[0].decode() + ".example.com" if up else ""
        obj = {"time": _iso(ts), "remote_addr": ip.decode(), "x_forwarded_for": ip.decode(),
               "request_id": rid.decode(), "remote_user": _opt(user), "bytes_sent": int(body),
               "request_time": float(rt), "status": int(status), "vhost": host,
               "request_proto": proto.decode(), "path": path.decode(), "request_query": query.decode(),
               "request_length": int(rl), "duration": float(rt), "method": method.decode(),
               "http_referrer": _opt(ref), "http_user_agent": _opt(ua), "proxy_upstream_name": up.decode(),
               "upstream_addr": _opt(addr), "upstream_response_time": _opt(urt), "upstream_status": _opt(ust)}
        return json.dumps(obj, separators=(", ", ": ")).encode()
    if fmt == "envoy":
        if t is None:
            t = float(time.mktime(time.strptime(ts.decode()[:20], "%d/%b/%Y:%H:%M:%S")))
        ms = int(round(t * 1000)) % 1000
        stamp = _iso(ts)[:19].encode() + b".%03dZ" % ms
        flags = b"UF" if status in (b"502", b"503") else b"-"
        host = up.split(b"-")[0] + b".example.com" if up else b"-"
        ust_ms = _ms(urt) if b"," not in urt else b"-"
        return (b'[%s] "%s %s %s" %s %s %s %s %s %s "%s" "%s" "%s" "%s" "%s"' % (
            stamp, method, uri, proto, status, flags, rl, body, _ms(rt), ust_ms, ip, ua, rid, host,
            addr.split(b", ")[-1]))
    raise ValueError(f"unknown format {fmt!r}; known: {FORMATS}")
