"""The hot loop: raw access-log lines in, per-window fine accumulators out.

Why it looks like this: the target is >= 300k lines/s on one core for the whole stage, i.e.
~3 us per line for Kafka, parse, aggregate and window close. Building the parser's 25-key dict
alone costs ~1 us, so for ingress-nginx's default format the hot loop reads the raw bytes itself
and only does counter updates per line. It exists twice with identical results: compiled
(``preagg/_fastloop.pyx``, Cython, built by ``pip install -e .``; used whenever importable) and
in pure Python (:meth:`Aggregator._loop_py`, the fallback without a compiler and the reference
the compiled one is tested against, ``tests/test_fastloop.py``). Per line:

* key = ``(upstream, host, template, method, status)`` (raw bytes; decoded at close),
* per key: request count, bytes in/out, retries, and *value -> count* dicts for request time,
  upstream time, client IP and user agent (nginx writes times with ms resolution, so these dicts
  stay small and the DDSketch built from them at close is the same as adding every value),
* the timestamp is looked up only when its text changes (lines of one second share it).

The compiled loop keeps these counters in C tables per open window (``WinTab``; ``_open`` makes
one, ``_close`` writes it into the accumulators with ``finish()``), the careful path counts into
the same tables, and the accumulators handed to :mod:`preagg.series` are the same either way.

Everything else (sketches, rollups, device class, country) happens once per window close in
:mod:`preagg.series`. Several upstream attempts (``a:80, b:80 0, 18213 0.016, 0.176 502, 200``)
stay on the fast path when the lists have exactly nginx's shape (:func:`_attempts`): retries and
the summed upstream time as the careful path counts them. Lines the fast path does not fully
understand (odd attempt lists, ``\\x`` escapes, odd quoting, other formats) go to the careful
parser from :mod:`preagg.parse` and are aggregated from its dict, so both paths produce the same
accumulators.

Windows are kept per partition (one :class:`Windows` each) so a window's contents depend only on
that partition's ordered log, which is what makes replays after a crash reproduce the same points.
"""

from __future__ import annotations

import gc
import logging
import math
from collections import _count_elements as _count
from operator import itemgetter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from .errors import ParseError, WindowError
from .parse.fields import KNOWN_METHODS
from .parse.fields import clf_minute as _clf_minute
from .series import BIN, BOUT, IPS, N, P404, RETRY, RT, UAS, URT, build_points

PEND = 9
from .windows import Windows

try:  # the compiled loop (Cython, built by `pip install -e .`); same results, 2-3x faster
    from . import _fastloop
except ImportError:  # no compiler at install time: the pure-Python loop below does the same work
    _fastloop = None

__all__ = ["Aggregator", "ClosedWindow", "Rejected", "COMPILED", "FAST_FORMATS"]

#: True when the compiled hot loop is importable (``Aggregator.compiled`` says what an instance uses)
COMPILED = _fastloop is not None
#: formats the compiled extension reads itself (the others always run the careful parser)
FAST_FORMATS = ("ingress-nginx", "combined", "json", "envoy")
log = logging.getLogger("patrol.preagg")

_BYTES_SENT = itemgetter(slice(5, None))  # b" 200 1234 " -> b"1234 " (int() strips the space)


def _int0(b: bytes) -> int:
    try:
        return int(b)
    except ValueError:
        return 0


def _fold_one(a: list) -> None:
    pend = a[PEND]
    ips, p2s, uas, rls, rts, urts = zip(*pend)
    a[N] += len(pend)
    try:
        bout = sum(map(int, map(_BYTES_SENT, p2s)))
        bin_ = sum(map(int, rls))
    except ValueError:  # a non-numeric size in a line nginx did not write: count it as 0
        # (both sums again: adding bout before bin_ failed would count bytes out twice)
        bout = sum(_int0(x[5:]) for x in p2s)
        bin_ = sum(map(_int0, rls))
    a[BOUT] += bout
    a[BIN] += bin_
    _count(a[RT], rts)
    _count(a[URT], urts)
    # a line whose attempts all lack a time (``-, -``) has no upstream time, like in _slow
    a[URT].pop(None, None)
    _count(a[IPS], ips)
    _count(a[UAS], uas)
    pend.clear()


#: most attempts per request the fast path takes (a bitmask of separators in the compiled loop)
MAX_ATTEMPTS = 64


def _attempts(tail: bytes, tk: list) -> tuple:
    """``(rl, rt, up, upstream time, retries)`` of a tail whose upstream fields are attempt lists.

    ``tail`` is the text after the user agent's closing quote and ``tk`` its ``split()``. Taken
    only in the shape nginx writes: one space before and between fields; ``$upstream_addr``,
    ``_response_length``, ``_response_time`` and ``_status`` each a list of the same length with
    the same separators (``", "`` between attempts, ``" : "`` across an internal redirect),
    items non-empty without commas; lengths and statuses ``-`` or up to 19 digits (what the
    careful parser's ``int`` takes), times ``-`` or ``d.ddd`` with 1-6 integer digits. Anything
    else raises ValueError (the careful path decides, as before). The compiled loop's
    ``_attempts`` accepts exactly the same tails (``tests/test_fastloop.py``).

    Upstream time: the sum of the attempts' times, ``-`` skipped, ``None`` when all are ``-``;
    a float equal to ``_slow``'s ``round(sum(times), 3)`` (one time: that float): summed here
    as integer milliseconds, then divided once, which is the double nearest to the 3-decimal
    sum; with at most 64 times below 1e6 s the float sum ``_slow`` takes is within 5e-7 of it,
    far from a rounding boundary. Retries: addresses other than ``-``, minus one (``_slow``).
    """
    if tail.rstrip() != b" " + b" ".join(tk):  # tabs, double spaces: not nginx's
        raise ValueError
    up, alt = tk[2], tk[3]
    if up[0] != 91 or up.find(b"]") != len(up) - 1 or alt[0] != 91 or alt.find(b"]") != len(alt) - 1:
        raise ValueError
    fields = []
    i = 4
    for _ in range(4):
        items, seps = [], []
        while True:
            tok = tk[i]  # IndexError when the line ends early: careful path
            i += 1
            item, sep = (tok[:-1], 44) if tok[-1] == 44 else (tok, 0)
            if not item or 44 in item or item == b":":
                raise ValueError
            items.append(item)
            if not sep:
                if tk[i] != b":":
                    break
                sep = 58
                i += 1
            seps.append(sep)
        fields.append((items, seps))
    if i != len(tk) - 1 or 44 in tk[i] or tk[i] == b":":  # then the request id, one token
        raise ValueError
    (addrs, s0), (lens, s1), (times, s2), (stats, s3) = fields
    if not s0 == s1 == s2 == s3 or len(addrs) > MAX_ATTEMPTS:
        raise ValueError
    for x in lens + stats:
        if x != b"-" and not (x.isdigit() and len(x) <= 19):
            raise ValueError
    ms = nt = 0
    for x in times:
        if x != b"-":
            d = x[:-4] + x[-3:]
            if not (5 <= len(x) <= 10 and x[-4] == 46 and d.isdigit()):
                raise ValueError
            ms += int(d)
            nt += 1
    return tk[0], tk[1], up, ms / 1000 if nt else None, max(len(addrs) - addrs.count(b"-") - 1, 0)


def _acc() -> list:
    """Accumulator of one fine key: slots from preagg.series plus the pending fast-path lines."""
    return [0, 0, 0, 0, {}, {}, {}, {}, None, []]


def _p404(a: list, uri: bytes) -> None:
    if a[P404] is None:
        a[P404] = set()
    q = uri.find(b"?")
    a[P404].add(uri[:q] if q >= 0 else uri)


if _fastloop is not None:
    # one definition of these for both loops, so they cannot drift apart
    _fastloop.bind(_int0, _p404)

_KNOWN = frozenset(m.encode() for m in KNOWN_METHODS)


@dataclass
class Rejected:
    """A line that was not aggregated: ``index`` in the batch, machine ``code`` and ``reason``."""

    index: int
    code: str
    reason: str


@dataclass
class ClosedWindow:
    """A window that closed: its fine accumulators, ready for :func:`preagg.series.build_points`."""

    partition: int
    start: int
    end: int
    accs: dict
    lines: int

    def points(self):
        # Held off like in feed(): window close builds tens of thousands of acyclic containers
        # (per-series dicts, sketches' inputs, points), and the collections they trigger scan the
        # open windows' accumulators as well: 5-10 % of the close time, nothing freed.
        gc_on = gc.isenabled()
        gc.disable()
        try:
            return build_points(self.start, self.end, self.accs, self.partition)
        finally:
            if gc_on:
                gc.enable()


@dataclass
class _Part:
    pid: int
    windows: Windows
    wins: dict = field(default_factory=dict)        # window start -> {fine key: acc}
    first_offset: dict = field(default_factory=dict)  # window start -> first (= min) offset in it
    next_offset: int | None = None                  # offset after the last line seen
    close_offset: int = -1                          # last offset seen when a window last closed
    caps: dict = field(default_factory=dict)        # window start -> (raw template -> final, per-upstream count)
    tabs: dict = field(default_factory=dict)        # window start -> _fastloop.WinTab (compiled loop only)


def _templater() -> Callable[[str | None, str], str]:
    """(host, path) -> URL template (pure: :func:`preagg.templates.template_path`)."""
    from patrol.preagg.templates import template_path

    return lambda host, path: template_path(path)


class Aggregator:
    """Event-time windowed aggregation of access-log lines, per input partition.

    Parameters
    ----------
    window_s, lateness_s, max_future_s, idle_close_s : see :class:`preagg.windows.Windows`.
    fmt : str
        Log format for the careful parser (:func:`preagg.parse.get_parser`). ``ingress-nginx``
        has the fused fast path (compiled or pure Python); ``combined``, ``json`` and ``envoy``
        have compiled extractors (``preagg/_formats.pxi``, no pure-Python twin: without the
        extension they run the careful parser); other formats run the careful parser.
    max_templates_per_host : int
        Template cap per host (per upstream when the format has no host), per window: the
        first templates seen in a window are kept, later ones fold into ``other``. Per window,
        not per stream, so that a replay after a restart templates exactly as the first run did
        (a stream-long heavy-hitter cap would depend on history lost in the crash); the hot
        routes of a service are, with overwhelming probability, among the first seen.
    templater : callable, optional
        ``(host, path) -> template`` (pure); default :func:`preagg.templates.template_path`.
    default_service : str, optional
        Upstream name for lines of a format that names none (``combined``, ``common``, formats
        without ``$proxy_upstream_name``), e.g. the site the log belongs to; ``None``: ``-``.
        Not for ``ingress-nginx``, where an empty upstream means "rejected before routing".

    Junk requests, request lines that are no HTTP request (TLS handshakes or random bytes sent to
    an HTTP port, a connection closed before a request: the parser's ``bad_request`` flag), are
    counted in their service's ``requests`` and ``junk_requests`` and get no route (template
    ``None`` in the fine key).
    """

    TEMPLATE_CACHE_MAX = 50_000
    #: fold deferred lines at least this often (bounds the memory they hold)
    FOLD_EVERY = 32768

    def __init__(self, window_s: int = 60, lateness_s: float = 30, max_future_s: float = 300,
                 idle_close_s: float = 10.0, fmt: str = "ingress-nginx", max_templates_per_host: int = 200,
                 templater: Callable[[str | None, str], str] | None = None, compiled: bool | None = None,
                 default_service: str | None = None):
        from patrol.preagg.parse import get_parser

        if compiled and _fastloop is None:
            raise RuntimeError("preagg._fastloop is not built (pip install -e . with a C compiler)")
        #: compiled hot loop in use (``compiled=None``: whenever it is built; False: pure Python)
        self.compiled = COMPILED if compiled is None else bool(compiled)

        self.window_s = int(window_s)
        self._wargs = (window_s, lateness_s, max_future_s, idle_close_s)
        self.fmt = fmt
        #: code of the compiled extractor for another format (``combined``, ``json``, ``envoy``:
        #: ``preagg/_formats.pxi``), None for ingress-nginx's own loop or the careful parser
        self.fmt_code = _fastloop.FORMAT_CODES.get(fmt) if self.compiled else None
        if default_service and fmt != "ingress-nginx":
            # the compiled extractors key a line by the upstream it names; a default for lines naming
            # none is applied by the careful parser's path (slower: key logs by upstream instead)
            self.fmt_code = None
        self.fast = fmt == "ingress-nginx" or self.fmt_code is not None
        self.parse = get_parser(fmt)
        self.template = templater or _templater()
        self.max_templates = int(max_templates_per_host)
        # "[name]" for lines naming no upstream (the fast path's format always names one)
        self.default_up = (b"[" + default_service.encode() + b"]"
                           if default_service and not self.fast else b"[]")
        # raw URI bytes (fast path) or (host, path bytes) (slow path) -> (host, template)
        self.tcache: dict = {}
        # request line bytes (fast path) -> (method, (None, template))
        self.rcache: dict = {}
        self.pcache: dict = {}   # path bytes (fast path) -> (None, template)
        # compiled loop: request text -> (method, template) kind id, stream-wide (C table)
        self.rtab = _fastloop.ReqTab() if self.compiled else None
        self.times: dict = {}    # timestamp text -> epoch seconds
        self.parts: dict[int, _Part] = {}
        self.closed: list[ClosedWindow] = []
        self.lines_in = 0
        self.parse_errors = 0
        self.slow_lines = 0
        self.replayed = 0
        self.dirty: list = []    # accumulators with pending fast-path lines
        self.pending = 0

    @property
    def loop_name(self) -> str:
        """Which loop reads the lines: ``compiled ingress-nginx``, ``compiled json``, ...,
        ``pure-python ingress-nginx`` or ``careful parser (FMT)``."""
        if not self.fast:
            return f"careful parser ({self.fmt})"
        return f"{'compiled' if self.compiled else 'pure-python'} {self.fmt}"

    # -- state ---------------------------------------------------------------------------------
    def part(self, p: int) -> _Part:
        st = self.parts.get(p)
        if st is None:
            st = self.parts[p] = _Part(p, Windows(*self._wargs))
        return st

    @property
    def late(self) -> int:
        return sum(s.windows.late for s in self.parts.values())

    @property
    def future(self) -> int:
        return sum(s.windows.future for s in self.parts.values())

    def checkpoint(self, partition: int) -> tuple[int, float, float, int] | None:
        """What a restart needs for ``partition``: ``(offset, closed_before, max_t, close_offset)``.

        ``offset`` is safe to commit (every earlier line is in an emitted window or was rejected);
        ``closed_before``/``close_offset`` say which windows were emitted and up to which offset, and
        ``max_t`` is the newest event time before ``offset`` (to rebuild the same watermark).
        ``None`` when nothing was read.
        """
        st = self.parts.get(partition)
        if st is None or st.next_offset is None:
            return None
        w = st.windows
        if st.first_offset:
            off, mx = min(st.first_offset.values())
        else:
            off, mx = st.next_offset, w.max_t
        return off, w.closed_before, mx, st.close_offset

    def restore(self, partition: int, closed_before: float, max_t: float, close_offset: int) -> None:
        """Resume ``partition`` from a :meth:`checkpoint`: replayed lines of emitted windows (offset
        <= ``close_offset``, time before ``closed_before``) are skipped, not re-counted."""
        st = self.part(partition)
        st.windows.restore(closed_before)
        st.windows.observe(max_t)
        st.close_offset = close_offset

    def drop_partition(self, partition: int) -> None:
        """Forget a revoked partition's open windows: the next owner replays them from the commit."""
        self.parts.pop(partition, None)

    # -- input ---------------------------------------------------------------------------------
    def feed(self, lines: Sequence[bytes | str], partition: int = 0, offsets: Sequence[int] | None = None,
             now: float | None = None) -> list[Rejected]:
        """Aggregate a batch of raw lines from one partition.

        Parameters
        ----------
        lines : sequence of bytes or str
            Raw log lines (no trailing newline needed).
        partition : int
            Source partition (windows and ids are per partition).
        offsets : sequence of int, optional
            Source offsets of ``lines`` (default: consecutive after the last batch).
        now : float, optional
            Wall-clock time, used for the future check and the idle close.

        Returns
        -------
        list of Rejected
            Lines not aggregated (``parse_error``, ``late``, ``future``); closed windows are
            collected in :attr:`closed` (take them with :meth:`drain`).
        """
        st = self.part(partition)
        # The loop allocates millions of short-lived, acyclic objects; letting the cyclic GC
        # scan them costs ~30 % of the time and frees nothing refcounting would not.
        gc_on = gc.isenabled()
        gc.disable()
        try:
            return self._feed(st, lines, partition, offsets, now)
        finally:
            if gc_on:
                gc.enable()

    def _feed(self, st: _Part, lines, partition: int, offsets, now) -> list[Rejected]:
        if offsets is None:
            base = st.next_offset or 0
            offsets = range(base, base + len(lines))
        w = st.windows
        w.set_reference(now)
        if now is not None:
            w.touch(now)
        rejected: list[Rejected] = []
        if lines:
            self._loop(st, lines, offsets, rejected, now)
            st.next_offset = offsets[len(lines) - 1] + 1
        self.lines_in += len(lines)
        return rejected

    def tick(self, now: float) -> None:
        """Close windows of partitions idle for ``idle_close_s`` (call when a poll returns nothing)."""
        for st in self.parts.values():
            self._close(st, st.windows.due(now), (st.next_offset or 0) - 1)

    def close_all(self) -> None:
        """End of input: close every open window (finite runs, tests, benchmarks)."""
        for st in self.parts.values():
            self._close(st, st.windows.close_all(), (st.next_offset or 0) - 1)

    def drain(self) -> list[ClosedWindow]:
        """Closed windows since the last call, oldest first per partition."""
        out, self.closed = self.closed, []
        return out

    # -- internals -----------------------------------------------------------------------------
    def _close(self, st: _Part, starts: list[int], close_offset: int) -> None:
        if not starts:
            return
        self._fold()
        st.close_offset = close_offset
        for ws in starts:
            accs = st.wins.pop(ws, None)
            st.first_offset.pop(ws, None)
            st.caps.pop(ws, None)
            tab = st.tabs.pop(ws, None)
            if tab is not None:
                tab.finish()  # the compiled loop's C counters into the accumulators
            if accs:
                self.closed.append(ClosedWindow(st.pid, ws, ws + self.window_s, accs,
                                                sum(a[0] for a in accs.values())))

    def _open(self, st: _Part, ws: int, offset: int) -> dict:
        cur = st.wins[ws] = {}
        st.caps[ws] = ({}, {})
        if self.compiled:
            # the compiled loop counts in C tables per window; both loops share them so that a
            # line of either kind lands in the same per-value order (see WinTab.finish)
            st.tabs[ws] = _fastloop.WinTab()
        # Remember the newest event time seen before this window opened: if the job restarts from
        # this offset, restoring it reproduces the same watermark (see Aggregator.checkpoint).
        st.first_offset[ws] = (offset, st.windows.max_t)
        st.windows.open.add(ws)
        st.windows._bounds()
        return cur

    def _advance(self, st: _Part, t: float, offset: int) -> None:
        # Closing happens mid-batch so that what closes depends on the data, not on batch sizes.
        st.windows.observe(t)
        self._close(st, st.windows.due(), offset - 1)

    def _reject_time(self, st: _Part, t: float, offset: int, now) -> WindowError | None:
        w = st.windows
        if t < w.lo and offset <= st.close_offset:
            # A replay after restart: this line was already in an emitted window (or already sent
            # to the DLQ before that window closed and was flushed).
            self.replayed += 1
            return None
        try:
            w.check(t, now)
        except WindowError as exc:
            return exc
        raise AssertionError("unreachable: check() accepted an out-of-bounds time")

    def _time(self, ts: bytes) -> int:
        s = ts.decode("ascii")
        if len(s) != 26 or s[17] != ":" or not s[18:20].isdigit():
            raise ValueError(s)
        t = int(_clf_minute(s)) + int(s[18:20])
        if len(self.times) > 100_000:  # bounded on adversarial input
            self.times.clear()
        self.times[ts] = t
        return t

    def _tmpl(self, host: str | None, path: bytes) -> tuple:
        cache = self.tcache
        if len(cache) > self.TEMPLATE_CACHE_MAX:
            cache.clear()
        t = cache[(host, path)] = (host, self.template(host, path.decode("utf-8", "replace")))
        return t

    def _admit(self, st: _Part, ws: int, raw: tuple, up: bytes) -> tuple:
        """Per-window template cap: keep ``raw`` if its host (else upstream) has room, else ``other``."""
        wcap, counts = st.caps[ws]
        owner = raw[0] if raw[0] is not None else up
        n = counts.get(owner, 0)
        if n < self.max_templates:
            counts[owner] = n + 1
            final = raw
        else:
            final = (raw[0], "other")
        if len(wcap) < 20_000:  # past this, decide again each time instead of remembering
            wcap[raw] = final
        return final

    def _place(self, st: _Part, t: float, offset: int, i: int, rejected: list, now) -> dict | None:
        """Window accumulators for event time ``t`` (opening/closing windows), or None if rejected."""
        w = st.windows
        if t < w.lo or t > w.hi:
            err = self._reject_time(st, t, offset, now)
            if err is not None:
                rejected.append(Rejected(i, err.code, err.reason))
            return None
        if t > w.max_t:
            w.observe(t)
            if t >= w.trigger:
                self._advance(st, t, offset)
        ws = w.start_of(t)
        cur = st.wins.get(ws)
        return cur if cur is not None else self._open(st, ws, offset)

    def _request(self, req: bytes) -> tuple:
        """``(method, (None, template))`` of a fast-path request line, cached by its text."""
        cache = self.rcache
        if len(cache) > self.TEMPLATE_CACHE_MAX:
            cache.clear()
        method, uri, proto = req.split(b" ")  # ValueError -> careful path
        if method not in _KNOWN and not (method.isalpha() and len(method) <= 32):
            # not a method word (binary bytes, digits): the parser calls it a junk request
            # (bad_request), so the careful path decides, for both loops alike
            raise ValueError
        q = uri.find(b"?")
        path = uri[:q] if q >= 0 else uri
        # Request lines differ by method, query and protocol far more often than by path (here
        # 20k distinct lines, 9k paths): the template (regexes, ~5 us) is cached per path too.
        pcache = self.pcache
        raw = pcache.get(path)
        if raw is None:
            if len(pcache) > self.TEMPLATE_CACHE_MAX:
                pcache.clear()
            raw = pcache[path] = (None, self.template(None, path.decode("utf-8", "replace")))
        r = cache[req] = (method, raw)
        return r

    _p404 = staticmethod(_p404)

    def _slow(self, st: _Part, line: bytes, i: int, offset: int, rejected: list, now) -> None:
        """Careful parser path: same accumulators from the parser's dict."""
        self.slow_lines += 1
        try:
            r = self.parse(line)
            t = r["time"]
            if t is None:
                raise ParseError("no event time in the line", "no_time")
        except ParseError as exc:
            self.parse_errors += 1
            rejected.append(Rejected(i, "parse_error", f"{exc.code}: {exc.reason}"))
            return
        cur = self._place(st, t, offset, i, rejected, now)
        if cur is None:
            return
        host = r.get("host")
        path = (r.get("path") or "-").encode()
        up = r.get("upstream_name")
        upb = self.default_up if up is None else b"[" + up.encode() + b"]"
        ws = st.windows.start_of(t)
        if "bad_request" in r["flags"]:
            tmpl = (host, None)  # a junk request: no route, no template cap slot
        else:
            raw = self.tcache.get((host, path))
            if raw is None:
                raw = self._tmpl(host, path)
            tmpl = st.caps[ws][0].get(raw)
            if tmpl is None:
                tmpl = self._admit(st, ws, raw, upb)
        status = r.get("status")
        sb = b"-" if status is None else str(status).encode()
        # Same key shape as the fast path: bracketed upstream as written in the line.
        key = (upb, tmpl, (r.get("method") or "-").encode(), sb)
        tab = st.tabs.get(ws) if self.compiled else None
        a = cur.get(key)
        if a is None:
            a = cur[key] = _acc() if tab is None else tab.new_acc()
        a[0] += 1
        a[1] += r.get("body_bytes_sent") or 0
        a[2] += r.get("request_length") or 0
        a[3] += max(0, len(r.get("upstream_addr") or ()) - 1)
        rt = r.get("request_time")
        ut = [x for x in (r.get("upstream_response_time") or ()) if x is not None]
        # Several attempts: the request's upstream time is their sum (what the client waited).
        u = (ut[0] if len(ut) == 1 else round(sum(ut), 3)) if ut else None
        ip = (r.get("remote_addr") or "-").encode()
        ua = (r.get("user_agent") or "-").encode()
        if tab is not None:
            tab.add_slow(a, rt, u, ip, ua)
        else:
            if a[PEND]:
                # Fold first: the order values enter the counters must not depend on when folds
                # happen, or float sums (means) would differ in the last bit between a run and its replay.
                _fold_one(a)
            if rt is not None:
                a[4][rt] = a[4].get(rt, 0) + 1
            if u is not None:
                a[5][u] = a[5].get(u, 0) + 1
            a[6][ip] = a[6].get(ip, 0) + 1
            a[7][ua] = a[7].get(ua, 0) + 1
        if status == 404:
            if a[8] is None:
                a[8] = set()
            a[8].add(path)

    def _loop(self, st: _Part, lines, offsets, rejected: list, now) -> None:
        if not self.fast:
            for i, line in enumerate(lines):
                self._slow(st, line, i, offsets[i], rejected, now)
            return
        if self.compiled:
            if self.fmt_code is not None:
                _fastloop.loop_format(self, st, lines, offsets, rejected, now, self.fmt_code)
            else:
                _fastloop.loop(self, st, lines, offsets, rejected, now)
            return
        self._loop_py(st, lines, offsets, rejected, now)

    def _loop_py(self, st: _Part, lines, offsets, rejected: list, now) -> None:
        """The fast path in pure Python (reference for ``preagg/_fastloop.pyx``, and the fallback)."""
        w = st.windows
        W = self.window_s
        times, rcache, dirty = self.times, self.rcache, self.dirty
        lo, hi, trig, mx = w.lo, w.hi, w.trigger, w.max_t
        last_ts = cur_ws = cur = wcap = None
        i = -1
        for line in lines:
            i += 1
            parts = line.split(b'"')
            try:
                if len(parts) != 7 or b"\\" in line:
                    raise ValueError
                head = parts[0]
                ts = head[-28:-2]
                if ts != last_ts:
                    t = times.get(ts)
                    if t is None:
                        t = self._time(ts)
                    if t < lo or t > hi:
                        raise ValueError  # rare: the slow path rejects it with a reason
                    if t > mx:
                        mx = t
                        w.observe(t)
                        if t >= trig:
                            self._advance(st, t, offsets[i])
                            cur_ws = None
                            trig = w.trigger
                        lo, hi = w.lo, w.hi
                    ws = t - t % W
                    if ws != cur_ws:
                        cur = st.wins.get(ws)
                        if cur is None:
                            cur = self._open(st, ws, offsets[i])
                            trig = w.trigger
                        wcap = st.caps[ws][0]
                        cur_ws = ws
                    last_ts = ts
                # The request line repeats a lot: one lookup gives method and uncapped template.
                rq = rcache.get(parts[1])
                if rq is None:
                    rq = self._request(parts[1])
                method, raw = rq
                p2 = parts[2]
                tk = parts[6].split()
                if len(tk) == 9:
                    rl, rt, up, alt, addr, ulen, urt, ust, rid = tk
                    retries = 0
                else:  # several upstream attempts (or not nginx's shape: ValueError)
                    rl, rt, up, urt, retries = _attempts(parts[6], tk)
                # " 200 1234 ": three-digit status then the byte count (int() runs later, in
                # _fold, which tolerates garbage); odd methods are kept as written, like the parser.
                if p2[4] != 32:
                    raise ValueError
                tmpl = wcap.get(raw)
                if tmpl is None:
                    tmpl = self._admit(st, cur_ws, raw, up)
                sb = p2[1:4]
                key = (up, tmpl, method, sb)
                a = cur.get(key)
                if a is None:
                    a = cur[key] = _acc()
                pend = a[PEND]
                if not pend:
                    dirty.append(a)
                # Defer all counting: one append per line; _fold() counts a batch in C.
                pend.append((head[:head.find(b" ")], p2, parts[5], rl, rt, urt))
                if retries:
                    a[RETRY] += retries
                if sb == b"404":
                    self._p404(a, parts[1].split(b" ")[1])
            except (ValueError, IndexError, ParseError):
                self._slow(st, line, i, offsets[i], rejected, now)
                # The slow path may have opened or closed windows: reload the cached state.
                lo, hi, trig, mx = w.lo, w.hi, w.trigger, w.max_t
                last_ts = cur_ws = cur = None
        self.pending += len(lines)
        if self.pending >= self.FOLD_EVERY:
            self._fold()

    def _fold(self) -> None:
        """Count the deferred fast-path lines of every touched accumulator (C-level loops)."""
        for a in self.dirty:
            if a[PEND]:
                _fold_one(a)
        self.dirty.clear()
        self.pending = 0
