# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled hot loop of :class:`preagg.aggregate.Aggregator` for ingress-nginx's default format.

Why: in pure Python the loop costs ~5-7 us per line (``bytes.split`` twice, a dozen dict probes,
a tuple of six slices per line and a fold later); the stage target is ~3 us per line *including*
Kafka and window close. Here the raw bytes are scanned once in C (quote positions, the
whitespace-separated tail, status, sizes) and the counters go to C tables of the window
(``_tables.pxi``: the request text -> kind, (kind, upstream, status) -> accumulator id, value
ids, (accumulator, field, value) -> count), so a typical line touches no Python object beyond
the line itself; the accumulators' dicts are filled from the tables when the window closes.

Contract: for every line this produces **exactly** the accumulators the pure-Python loop
(``Aggregator._loop_py``) produces (same keys, same values, same dict insertion order, because
the DDSketch sums and the heavy-hitter sketch depend on it) and takes the same decisions in the
same order (window opening/closing, template cap). Anything it does not recognise goes to
``Aggregator._slow`` at the same point the pure loop would; that path counts values through the
same tables, so the order of first occurrences stays the line order. ``tests/test_fastloop.py``
checks both paths give identical accumulators and points.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize, PyBytes_CheckExact
from cpython.dict cimport PyDict_GetItem, PyDict_SetItem, PyDict_Next
from cpython.object cimport PyObject
from cpython.long cimport PyLong_FromLongLong, PyLong_CheckExact
from cpython.float cimport PyFloat_FromDouble
from libc.string cimport memchr, memcmp, memcpy
from libc.stdint cimport uint64_t, uintptr_t
from cpython.list cimport PyList_GET_ITEM as _LIST_ITEM

from patrol.preagg.errors import ParseError

cdef enum:
    NSLOT = 16384  # intern table slots per field (a power of two)

cdef inline bint _isspace(unsigned char c) noexcept nogil:
    # bytes.split() with no argument splits on exactly these (Py_ISSPACE on ASCII)
    return c == 32 or (9 <= c <= 13)


cdef inline uint64_t _hash(const char* s, Py_ssize_t n) noexcept nogil:
    # 8 bytes per step (multiply-xorshift); only picks a slot, equality is checked with memcmp
    cdef uint64_t h = <uint64_t>n * 0x9E3779B97F4A7C15ULL
    cdef uint64_t x
    cdef Py_ssize_t i = 0
    while i + 8 <= n:
        memcpy(&x, s + i, 8)
        h = (h ^ x) * 0xBF58476D1CE4E5B9ULL
        h ^= h >> 29
        i += 8
    if i < n:
        x = 0
        memcpy(&x, s + i, n - i)
        h = (h ^ x) * 0x94D049BB133111EBULL
    h ^= h >> 32
    return h


cdef class _Interner:
    """Bytes values by content without allocating: most fields repeat (user agents, upstreams,
    latencies with ms resolution, request lines), so a direct-mapped table of the last object seen
    per slot saves the allocation *and* the Python hash (cached inside the reused object)."""

    cdef list slots

    def __cinit__(self):
        self.slots = [None] * NSLOT

    cdef inline object get(self, const char* s, Py_ssize_t n):
        cdef Py_ssize_t k = <Py_ssize_t>(_hash(s, n) & (NSLOT - 1))
        cdef object o = self.slots[k]
        if o is not None and PyBytes_GET_SIZE(o) == n and memcmp(PyBytes_AS_STRING(o), s, n) == 0:
            return o
        o = PyBytes_FromStringAndSize(s, n)
        self.slots[k] = o
        return o


cdef inline object _size(const char* s, Py_ssize_t n, bint trailing_space, object int0):
    """int() of a size field; anything but plain digits goes to the same ``_int0`` the pure fold uses."""
    cdef Py_ssize_t m = n - 1 if trailing_space else n
    cdef long long v = 0
    cdef Py_ssize_t i
    cdef unsigned char c
    if m <= 0 or m > 18 or (trailing_space and s[n - 1] != 32):
        return int0(PyBytes_FromStringAndSize(s, n))
    for i in range(m):
        c = <unsigned char>s[i]
        if c < 48 or c > 57:
            return int0(PyBytes_FromStringAndSize(s, n))
        v = v * 10 + (c - 48)
    return PyLong_FromLongLong(v)


cdef _Interner I_UP = _Interner(), I_RQ = _Interner()
cdef list STATUS = [None] * 1000


cdef inline object _status(const char* s):
    cdef unsigned char a = s[0], b = s[1], c = s[2]
    cdef int k
    cdef object o
    if 48 <= a <= 57 and 48 <= b <= 57 and 48 <= c <= 57:
        k = (a - 48) * 100 + (b - 48) * 10 + (c - 48)
        o = STATUS[k]
        if o is None:
            o = STATUS[k] = PyBytes_FromStringAndSize(s, 3)
        return o
    return PyBytes_FromStringAndSize(s, 3)


include "_tables.pxi"


cdef inline int64_t _size_c(const char* s, Py_ssize_t n, bint trailing_space) noexcept:
    """A size field of plain digits (at most 15: sums stay exact in int64), else -1."""
    cdef Py_ssize_t m = n - 1 if trailing_space else n
    cdef int64_t v = 0
    cdef Py_ssize_t i
    cdef unsigned char c
    if m <= 0 or m > 15 or (trailing_space and s[n - 1] != 32):
        return -1
    for i in range(m):
        c = <unsigned char>s[i]
        if c < 48 or c > 57:
            return -1
        v = v * 10 + (c - 48)
    return v


cdef inline int _status_code(const char* s) noexcept:
    cdef unsigned char a = s[0], b = s[1], c = s[2]
    if 48 <= a <= 57 and 48 <= b <= 57 and 48 <= c <= 57:
        return (a - 48) * 100 + (b - 48) * 10 + (c - 48)
    return -1


cdef enum:
    MAX_ATTEMPTS = 64  # aggregate.MAX_ATTEMPTS: separators of a list fit one uint64 bitmask


cdef inline bint _digits(const char* p, Py_ssize_t m) noexcept:
    cdef Py_ssize_t i
    for i in range(m):
        if <unsigned char>p[i] < 48 or <unsigned char>p[i] > 57:
            return False
    return True


cdef bint _attempts(const char* s, Py_ssize_t j, Py_ssize_t n, Py_ssize_t* tok_s, Py_ssize_t* tok_e,
                    Py_ssize_t* retries, int64_t* ms) noexcept:
    """A tail ``s[j:n]`` whose upstream fields are attempt lists, in nginx's shape; else False.

    Accepts exactly what ``aggregate._attempts`` accepts (see there for the rules and why the
    millisecond sum equals the careful path's rounded float sum). Fills ``tok_s/tok_e[0..3]``
    (rl, rt, upstream, alternative), ``retries`` and ``ms``, the summed upstream time in
    milliseconds or -1 when every attempt's time is ``-``.
    """
    cdef Py_ssize_t e = n, k, f, start, m, nitems, n0 = 0, nat = 0, nt = 0
    cdef uint64_t seps, seps0 = 0
    cdef int64_t total = 0, v
    cdef unsigned char c
    while e > j and _isspace(<unsigned char>s[e - 1]):
        e -= 1
    # one space before and between fields, no other whitespace (the pure loop's
    # tail.rstrip() == b" " + b" ".join(tail.split()); s[e - 1] is not a space)
    if j >= e or s[j] != 32:
        return False
    for k in range(j, e):
        c = <unsigned char>s[k]
        if _isspace(c) and (c != 32 or s[k + 1] == 32):
            return False
    j += 1
    for f in range(4):  # rl, rt, [upstream], [alternative]
        start = j
        while j < e and s[j] != 32:
            j += 1
        if j >= e:
            return False
        tok_s[f] = start
        tok_e[f] = j
        j += 1
    for f in range(2, 4):  # "[...]" with no other "]"
        m = tok_e[f] - tok_s[f]
        if s[tok_s[f]] != 91 or s[tok_e[f] - 1] != 93 or memchr(s + tok_s[f], 93, m - 1) != NULL:
            return False
    # addresses, response lengths, response times, statuses
    for f in range(4):
        nitems = 0
        seps = 0
        while True:
            start = j
            while j < e and s[j] != 32 and s[j] != 44:
                j += 1
            m = j - start
            if m == 0 or (m == 1 and s[start] == 58) or nitems == MAX_ATTEMPTS:
                return False
            if f == 0:
                if not (m == 1 and s[start] == 45):
                    nat += 1
            elif not (m == 1 and s[start] == 45):
                if f == 2:  # d.ddd, 1-6 integer digits
                    if m < 5 or m > 10 or s[j - 4] != 46 or not _digits(s + start, m - 4) or not _digits(s + j - 3, 3):
                        return False
                    v = 0
                    for k in range(start, j):
                        if s[k] != 46:
                            v = v * 10 + (s[k] - 48)
                    total += v
                    nt += 1
                elif m > 19 or not _digits(s + start, m):
                    return False
            nitems += 1
            if j < e and s[j] == 44:  # ", "
                if j + 1 >= e or s[j + 1] != 32:
                    return False
                j += 2
            elif j + 2 < e and s[j + 1] == 58 and s[j + 2] == 32:  # " : "
                seps |= (<uint64_t>1) << (nitems - 1)
                j += 3
            else:
                break
        if f == 0:
            n0 = nitems
            seps0 = seps
        elif nitems != n0 or seps != seps0:
            return False
        if j >= e:  # the request id must follow
            return False
        j += 1
    # the request id: one token, no comma, not ":"
    if memchr(s + j, 32, e - j) != NULL or memchr(s + j, 44, e - j) != NULL or (e - j == 1 and s[j] == 58):
        return False
    retries[0] = nat - 1 if nat > 1 else 0
    ms[0] = total if nt else -1
    return True


def loop(agg, st, lines, offsets, list rejected, now):
    """Aggregate ``lines`` of one partition into ``st`` (see ``Aggregator._loop_py``).

    Per line the counters go to the window's :class:`WinTab`; the accumulators' dicts are
    filled when the window closes (``WinTab.finish``).
    """
    w = st.windows
    cdef long long W = agg.window_s
    cdef dict times = agg.times, rcache = agg.rcache, wins = st.wins, caps = st.caps, tabs = st.tabs
    cdef dict cur = None, wcap = None
    cdef WinTab tab = None
    cdef ReqTab rtab = agg.rtab
    cdef Py_ssize_t kind
    cdef uint64_t qh = 0
    cdef object int0 = _int0_ref, p404 = _p404_ref
    cdef object time_of = agg._time, advance = agg._advance, open_ = agg._open, admit = agg._admit
    cdef object request = agg._request, slow = agg._slow
    lo, hi, trig, mx = w.lo, w.hi, w.trigger, w.max_t
    cur_ws = None
    cdef char last_ts[26]
    cdef bint have_ts = False
    cdef Py_ssize_t i, n, j, k, nq, ntok, hs, acc
    cdef Py_ssize_t q[6]
    cdef Py_ssize_t tok_s[9]
    cdef Py_ssize_t tok_e[9]
    cdef const char* s
    cdef const char* p
    cdef object line, ts, t, ws, rq, method, raw, up, tmpl, sb, key
    cdef list a
    cdef PyObject* hit
    cdef bint ok
    cdef int code
    cdef uint64_t rh = 0
    cdef int64_t bout, bin_
    cdef bint multi = False
    cdef Py_ssize_t retries = 0
    cdef int64_t ums = -1
    # Lines from the batch consumer (streams._rdbatch) point into librdkafka's record buffers:
    # read them in place (no bytes object per line); a line becomes bytes only for the slow path.
    cdef const char** lptr = NULL
    cdef Py_ssize_t* lsize = NULL
    cdef Py_ssize_t nl
    cdef list llist = None
    info = getattr(lines, "buffer_info", None)
    if info is not None:
        lptr = <const char**><uintptr_t>info[0]
        lsize = <Py_ssize_t*><uintptr_t>info[1]
        nl = info[2]
    else:
        llist = lines if type(lines) is list else list(lines)
        nl = len(llist)
    line = None
    for i in range(nl):
        ok = False
        try:
            if lptr != NULL:
                s = lptr[i]
                n = lsize[i]
                if s == NULL:  # a tombstone (b""): the slow path rejects it
                    raise ValueError
            else:
                line = <object>_LIST_ITEM(llist, i)
                if not PyBytes_CheckExact(line):
                    raise ValueError
                s = PyBytes_AS_STRING(line)
                n = PyBytes_GET_SIZE(line)
            # quotes: exactly 6 (the pure loop's len(split(b'"')) == 7), no backslash
            nq = 0
            j = 0
            while nq < 7:
                p = <const char*>memchr(s + j, 34, n - j)
                if p == NULL:
                    break
                if nq < 6:
                    q[nq] = p - s
                nq += 1
                j = (p - s) + 1
            if nq != 6 or memchr(s, 92, n) != NULL:
                raise ValueError
            hs = q[0]  # head = line[:q0]
            # ts = head[-28:-2]; shorter heads cannot give a 26-byte timestamp (pure: ValueError)
            if hs < 28:
                raise ValueError
            p = s + hs - 28
            if not have_ts or memcmp(p, last_ts, 26) != 0:
                ts = PyBytes_FromStringAndSize(p, 26)
                hit = PyDict_GetItem(times, ts)
                t = time_of(ts) if hit == NULL else <object>hit
                if t < lo or t > hi:
                    raise ValueError  # rare: the slow path rejects it with a reason
                if t > mx:
                    mx = t
                    w.observe(t)
                    if t >= trig:
                        advance(st, t, offsets[i])
                        cur_ws = None
                        trig = w.trigger
                    lo, hi = w.lo, w.hi
                ws = t - t % W
                if cur_ws is None or ws != cur_ws:
                    hit = PyDict_GetItem(wins, ws)
                    if hit == NULL:
                        cur = open_(st, ws, offsets[i])
                        trig = w.trigger
                    else:
                        cur = <dict>hit
                    wcap = <dict>((<tuple>caps[ws])[0])
                    tab = <WinTab>tabs[ws]
                    cur_ws = ws
                memcpy(last_ts, p, 26)
                have_ts = True
            # tail after the last quote: exactly 9 whitespace-separated fields (else attempt lists below)
            ntok = 0
            j = q[5] + 1
            while j < n:
                while j < n and _isspace(<unsigned char>s[j]):
                    j += 1
                if j >= n:
                    break
                if ntok == 9:
                    ntok = 10
                    break
                tok_s[ntok] = j
                while j < n and not _isspace(<unsigned char>s[j]):
                    j += 1
                tok_e[ntok] = j
                ntok += 1
            # several upstream attempts: lists in nginx's shape, or the careful path
            multi = ntok != 9 and _attempts(s, q[5] + 1, n, tok_s, tok_e, &retries, &ums)
            # p2 = line[q1+1:q2] = b" 200 1234 "; p2[4] must be a space
            if (ntok != 9 and not multi) or q[2] - q[1] - 1 < 5 or s[q[1] + 5] != 32:
                # the pure loop looks the request line up first (bad ones raise there): same
                # outcome, the careful path, but keep its cache fill for the same cache contents
                rq = I_RQ.get(s + q[0] + 1, q[1] - q[0] - 1)
                if rcache.get(rq) is None:
                    request(rq)
                raise ValueError
            # request text -> kind (method, uncapped template): one stream-wide C probe
            kind = rtab.find(s + q[0] + 1, q[1] - q[0] - 1, &qh)
            if kind < 0:
                rq = I_RQ.get(s + q[0] + 1, q[1] - q[0] - 1)
                hit = PyDict_GetItem(rcache, rq)
                rq = request(rq) if hit == NULL else <object>hit  # bad request line: ValueError
                kind = rtab.put(s + q[0] + 1, q[1] - q[0] - 1, qh, <tuple>rq)
            # (kind, upstream, status) -> accumulator: one per-window C probe for what the
            # template cap and the fine-key dict decide
            code = _status_code(s + q[1] + 2)
            tab.rcheck(rtab.gen)
            acc = -1
            if code >= 0:
                acc = tab.rfind(kind, s + tok_s[2], tok_e[2] - tok_s[2], code, &rh)
            if acc < 0:
                rq = <tuple>PyList_GET_ITEM(rtab.info, kind)
                method = (<tuple>rq)[0]
                raw = (<tuple>rq)[1]
                up = I_UP.get(s + tok_s[2], tok_e[2] - tok_s[2])
                hit = PyDict_GetItem(wcap, raw)
                tmpl = admit(st, cur_ws, raw, up) if hit == NULL else <object>hit
                sb = _status(s + q[1] + 2)
                key = (up, tmpl, method, sb)
                hit = PyDict_GetItem(cur, key)
                if hit == NULL:
                    a = tab.new_acc()
                    cur[key] = a
                else:
                    a = <list>hit
                acc = a[9]
                # cacheable only when the cap remembered this template for the window (past its
                # bound the pure loop asks _admit again on every line, which counts)
                if code >= 0 and PyDict_GetItem(wcap, raw) != NULL:
                    tab.rput(kind, s + tok_s[2], tok_e[2] - tok_s[2], code, rh, acc)
            ok = True
        except (ValueError, IndexError, ParseError):
            pass
        if not ok:
            slow(st, line if lptr == NULL else lines[i], i, offsets[i], rejected, now)
            # The slow path may have opened or closed windows: reload the cached state.
            lo, hi, trig, mx = w.lo, w.hi, w.trigger, w.max_t
            cur_ws = None
            have_ts = False
            cur = None
            tab = None
            continue
        # counters (the value -> count entries in line order, as the pure fold counts them)
        tab.n[acc] += 1
        bout = _size_c(s + q[1] + 6, q[2] - q[1] - 6, True)
        bin_ = _size_c(s + tok_s[0], tok_e[0] - tok_s[0], False)
        if bout < 0 or bin_ < 0:  # garbage or huge: the pure fold's int() rules, on the Python ints
            a = <list>PyList_GET_ITEM(tab.accs, acc)
            if bout < 0:
                a[1] = a[1] + _size(s + q[1] + 6, q[2] - q[1] - 6, True, int0)
                bout = 0
            if bin_ < 0:
                a[2] = a[2] + _size(s + tok_s[0], tok_e[0] - tok_s[0], False, int0)
                bin_ = 0
        tab.sizes(acc, bout, bin_)
        tab.inc(acc, 0, tab.vid(s + tok_s[1], tok_e[1] - tok_s[1]))
        if not multi:
            tab.inc(acc, 1, tab.vid(s + tok_s[6], tok_e[6] - tok_s[6]))
        else:
            # _slow's key: a float (the pure loop's ms / 1000, the same double); rare lines
            if ums >= 0:
                tab.inc(acc, 1, tab.obj_vid(PyFloat_FromDouble(<double>ums / 1000.0)))
            if retries:
                a = <list>PyList_GET_ITEM(tab.accs, acc)
                a[3] = a[3] + retries
        # client = head up to its first space (head[:head.find(b" ")]: -1 drops the last byte)
        p = <const char*>memchr(s, 32, hs)
        tab.inc(acc, 2, tab.vid(s, (p - s) if p != NULL else hs - 1))
        tab.inc(acc, 3, tab.vid(s + q[4] + 1, q[5] - q[4] - 1))
        if code == 404:
            # uri = second space-separated part of the request line (validated by _request)
            p = s + q[0] + 1
            k = q[1] - q[0] - 1
            j = 0
            while j < k and p[j] != 32:
                j += 1
            ntok = j + 1
            j = ntok
            while j < k and p[j] != 32:
                j += 1
            p404(<list>PyList_GET_ITEM(tab.accs, acc), PyBytes_FromStringAndSize(p + ntok, j - ntok))


_int0_ref = None
_p404_ref = None


def bind(int0, p404):
    """Python helpers shared with the pure path (so both count garbage sizes the same way)."""
    global _int0_ref, _p404_ref
    _int0_ref, _p404_ref = int0, p404


def by_partition(msgs):
    """Kafka messages -> ``[(partition, values, offsets)]`` in first-seen partition order, each in
    message order (one C loop instead of three ``map`` passes and a regrouping per partition)."""
    cdef dict groups = {}
    cdef list out = []
    cdef list vals, offs
    cdef PyObject* hit
    cdef object p, last_p = None, g
    vals = offs = None
    from confluent_kafka import Message
    # the unbound C methods: a vectorcall each instead of an attribute lookup plus a call
    cdef object partition = Message.partition, value = Message.value, offset = Message.offset
    for m in msgs:
        p = partition(m)
        if last_p is None or p != last_p:
            hit = PyDict_GetItem(groups, p)
            if hit == NULL:
                vals, offs = [], []
                g = (p, vals, offs)
                groups[p] = g
                out.append(g)
            else:
                g = <object>hit
                vals, offs = g[1], g[2]
            last_p = p
        v = value(m)
        vals.append(b"" if v is None else v)  # tombstones: not log lines (an empty line: parse error)
        offs.append(offset(m))
    return out


def merge_counts(dict dst, dict src):
    """``dst[k] += c`` for every ``k, c`` of ``src`` in its order (window close merges the value ->
    count dicts of every fine key into its service: tens of thousands of entries per window)."""
    cdef Py_ssize_t pos = 0
    cdef PyObject* k
    cdef PyObject* v
    cdef PyObject* hit
    if not dst:
        dst.update(src)
        return
    while PyDict_Next(src, &pos, &k, &v):
        hit = PyDict_GetItem(dst, <object>k)
        if hit == NULL:
            PyDict_SetItem(dst, <object>k, <object>v)
        else:
            PyDict_SetItem(dst, <object>k, <object>hit + <object>v)


def clients(dict counts, dict cache, country):
    """``(text -> count, country -> count)`` of a client -> count dict, or ``None``.

    Window close decodes every distinct client and looks its country up; the same addresses come
    back window after window, so ``cache`` keeps ``bytes -> (text, country)`` (the caller bounds
    it). ``None`` when a key is not UTF-8 bytes: the caller's general path handles those.
    """
    cdef dict ips = {}, geo = {}
    cdef Py_ssize_t pos = 0
    cdef PyObject* k
    cdef PyObject* v
    cdef PyObject* hit
    cdef object e, txt, cc
    while PyDict_Next(counts, &pos, &k, &v):
        hit = PyDict_GetItem(cache, <object>k)
        if hit == NULL:
            if not PyBytes_CheckExact(<object>k):
                return None
            try:
                txt = (<bytes>k).decode("utf-8")
            except UnicodeDecodeError:
                return None
            e = (txt, country(txt))
            cache[<object>k] = e
        else:
            e = <object>hit
        txt = (<tuple>e)[0]
        cc = (<tuple>e)[1]
        PyDict_SetItem(ips, txt, <object>v)  # strict UTF-8 is one-to-one: no key merges here
        hit = PyDict_GetItem(geo, cc)
        PyDict_SetItem(geo, cc, <object>v if hit == NULL else <object>hit + <object>v)
    return ips, geo


def dd_accumulate(dict counts, dict cache, entry, double total, double lo, double hi):
    """Bins of a DDSketch from latency -> count (``preagg.series._dd``'s loop, in C).

    ``cache`` maps a latency (text or number) to ``(seconds, bin key)``, key ``None`` for the
    zero bin, or to ``None`` for what the sketch skips; ``entry(k)`` fills a miss. Returns
    ``(bins, zero, n, total, lo, hi)`` with the sums taken in ``counts`` order exactly as
    ``preagg.sketches.dd_from_counts`` takes them, or ``None`` when a count is not a positive
    int (the caller's general path decides then).
    """
    cdef dict bins = {}
    cdef Py_ssize_t pos = 0
    cdef PyObject* k
    cdef PyObject* c
    cdef PyObject* hit
    cdef object e, key
    cdef long long w, zero = 0, n = 0
    cdef double v
    while PyDict_Next(counts, &pos, &k, &c):
        hit = PyDict_GetItem(cache, <object>k)
        e = entry(<object>k) if hit == NULL else <object>hit
        if e is None:
            continue
        if not PyLong_CheckExact(<object>c):
            return None
        try:
            w = <long long>(<object>c)
        except OverflowError:
            return None
        if w <= 0:
            return None
        v = <double>((<tuple>e)[0])
        key = (<tuple>e)[1]
        if key is not None:
            hit = PyDict_GetItem(bins, key)
            PyDict_SetItem(bins, key, PyLong_FromLongLong(w) if hit == NULL else <object>hit + w)
        else:
            zero += w
        n += w
        total += v * <double>w
        if v < lo:
            lo = v
        if v > hi:
            hi = v
    return bins, zero, n, total, lo, hi


# compiled extractors for combined, JSON and Envoy text lines, counting into the same tables
include "_formats.pxi"
