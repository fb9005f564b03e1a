# Included by _fastloop.pyx: compiled extractors for the other log formats (issue #13 item 9).
#
# Why: for ``combined``, ``json`` (ingress-nginx ``log-format-escape-json``) and ``envoy`` (Envoy's
# default text format) every line used to go through the careful parser (``preagg.parse``: a regex
# or ``json.loads`` plus a 25-key dict, ~7-14 us a line). Here one C extractor per format reads
# the fields the aggregator needs out of the line in place and one shared loop counts them into
# the same C tables as the default format's loop (``_tables.pxi``: ReqTab, WinTab).
#
# Contract: for every line this produces exactly the accumulators the careful path
# (``Aggregator._slow``) produces for it: same keys, values and dict insertion order (latencies
# are counted as their text here and turned into the careful parser's float at window close,
# ``WinTab.conv``). An extractor takes a line only when it is sure the careful parser would read
# it the same way; anything unusual (a backslash or a byte outside printable ASCII anywhere in
# the line, a structure other than the format's, a status that is not three digits, numbers
# other than plain digits / ``d.ddd``, attempt lists, duplicate or unhandled JSON keys, JSON
# literals, nested values, times other than the shapes below) goes to ``Aggregator._slow`` at the
# same point, which decides and counts through the same tables. ``tests/test_fastformats.py``
# compares both on generated and mutated lines.

from patrol.preagg.parse.fields import clf_time as _clf_time
from patrol.preagg.parse.times import iso_time as _iso_time

cdef enum:
    FMT_COMBINED = 1
    FMT_JSON = 2
    FMT_ENVOY = 3
    KBUF = 4096          # kind text bound (method, path, host); longer lines take the careful path
    TIME_CLF = 0
    TIME_ISO = 1

#: format name -> code of :func:`loop_format`
FORMAT_CODES = {"combined": FMT_COMBINED, "json": FMT_JSON, "envoy": FMT_ENVOY}


cdef struct Rec:
    const char* ts      # time text (CLF: 26 bytes; ISO: see _iso_split)
    Py_ssize_t tn
    int tkind
    const char* kt      # request kind text (combined: the request line; else built in a buffer)
    Py_ssize_t kn
    const char* up      # upstream name without brackets ("" when unknown)
    Py_ssize_t un
    int code            # status, 100-999
    int64_t bout
    int64_t bin
    const char* rt      # request time text (rtn < 0: none)
    Py_ssize_t rtn
    const char* ut      # upstream time text (utn < 0: none)
    Py_ssize_t utn
    const char* ip
    Py_ssize_t ipn
    const char* ua
    Py_ssize_t uan
    const char* pa      # path as the careful parser gives it (for distinct_404_paths)
    Py_ssize_t pan


cdef const char* DASH = b"-"


cdef uint64_t ONES = 0x0101010101010101ULL
cdef uint64_t HIGHS = 0x8080808080808080ULL


cdef inline bint _printable(const char* s, Py_ssize_t n) noexcept:
    """Only bytes 0x20-0x7e and no backslash: escapes, control bytes and UTF-8 go to the careful path.

    Eight bytes a step (the classic exact "has a byte less than / more than / equal to" word
    tests), since this reads every byte of every line."""
    cdef Py_ssize_t i = 0
    cdef uint64_t x, y
    cdef unsigned char c
    while i + 8 <= n:
        memcpy(&x, s + i, 8)
        y = x ^ (ONES * 92)
        if (((x - ONES * 32) & ~x)                 # a byte < 0x20
                | ((x + ONES * 1) | x)                 # a byte > 0x7e
                | ((y - ONES) & ~y)) & HIGHS:          # a backslash
            return False
        i += 8
    while i < n:
        c = <unsigned char>s[i]
        if c < 32 or c > 126 or c == 92:
            return False
        i += 1
    return True


cdef inline int64_t _size_dash(const char* s, Py_ssize_t n) noexcept:
    """A size field: ``-``/empty -> 0 (the careful path's ``None or 0``), 1-15 digits -> value, else -1."""
    cdef int64_t v = 0
    cdef Py_ssize_t i
    if n == 0 or (n == 1 and s[0] == 45):
        return 0
    if n > 15:
        return -1
    for i in range(n):
        if <unsigned char>s[i] < 48 or <unsigned char>s[i] > 57:
            return -1
        v = v * 10 + (s[i] - 48)
    return v


cdef inline int _status3(const char* s, Py_ssize_t n) noexcept:
    """Exactly three digits, the first not 0 (``str(int(x)) == x``); else -1."""
    if n != 3 or s[0] < 49 or s[0] > 57 or s[1] < 48 or s[1] > 57 or s[2] < 48 or s[2] > 57:
        return -1
    return (s[0] - 48) * 100 + (s[1] - 48) * 10 + (s[2] - 48)


cdef inline bint _decimal(const char* s, Py_ssize_t n, bint json_bare) noexcept:
    """``\\d+(\\.\\d+)?`` of at most 20 bytes (what ``float()`` reads the same as the parsers do);
    a bare JSON number also may not have a leading zero before more digits."""
    cdef Py_ssize_t i = 0, d = 0
    if n == 0 or n > 20:
        return False
    while i < n and 48 <= <unsigned char>s[i] <= 57:
        i += 1
    d = i
    if d == 0 or (json_bare and d > 1 and s[0] == 48):
        return False
    if i == n:
        return True
    if s[i] != 46 or i + 1 == n:
        return False
    i += 1
    while i < n:
        if <unsigned char>s[i] < 48 or <unsigned char>s[i] > 57:
            return False
        i += 1
    return True


cdef inline bint _none_text(const char* s, Py_ssize_t n) noexcept:
    # F.text: "-" and "" are "not known"
    return n == 0 or (n == 1 and s[0] == 45)


cdef inline bint _is_list(const char* s, Py_ssize_t n) noexcept:
    """An nginx list (``a, b`` or ``a : b``): the careful parser splits it; rare, careful path."""
    cdef Py_ssize_t i
    for i in range(n):
        if s[i] == 44 or (s[i] == 58 and i > 0 and s[i - 1] == 32):
            return True
    return False


cdef inline bint _iso_split(const char* s, Py_ssize_t n, Py_ssize_t* frac_at, int* us) noexcept:
    """``YYYY-MM-DDTHH:MM:SS[.fff|.ffffff](Z|+HH:MM|-HH:MM)``: where the fraction starts (or the
    zone, when there is none) and its microseconds. Other shapes: False (careful path)."""
    cdef Py_ssize_t i = 19, k, z
    cdef int v = 0
    if n < 20 or s[4] != 45 or s[7] != 45 or s[10] != 84 or s[13] != 58 or s[16] != 58:
        return False
    for k in (0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18):
        if <unsigned char>s[k] < 48 or <unsigned char>s[k] > 57:
            return False
    frac_at[0] = 19
    if s[19] == 46:
        i = 20
        while i < n and 48 <= <unsigned char>s[i] <= 57:
            v = v * 10 + (s[i] - 48)
            i += 1
        if i - 20 == 3:
            v *= 1000
        elif i - 20 != 6:
            return False
    us[0] = v
    z = n - i
    if z == 1:
        return s[i] == 90
    if z == 6 and (s[i] == 43 or s[i] == 45) and s[i + 3] == 58:
        for k in (1, 2, 4, 5):
            if <unsigned char>s[i + k] < 48 or <unsigned char>s[i + k] > 57:
                return False
        return True
    return False


cdef inline Py_ssize_t _kind_text(char* buf, const char* m, Py_ssize_t mn, const char* p, Py_ssize_t pn,
                                  const char* h, Py_ssize_t hn) noexcept:
    """``method \\0 path \\0 host`` in ``buf`` (a host of None as ``\\1``); -1 when too long."""
    cdef Py_ssize_t k = 0
    if mn + pn + hn + 3 > KBUF:
        return -1
    memcpy(buf, m, mn)
    k = mn
    buf[k] = 0
    memcpy(buf + k + 1, p, pn)
    k += pn + 1
    buf[k] = 0
    k += 1
    if h == NULL:
        buf[k] = 1
        return k + 1
    memcpy(buf + k, h, hn)
    return k + hn


cdef inline void _uri_path(const char* u, Py_ssize_t un, const char** p, Py_ssize_t* pn) noexcept:
    """F.split_uri's path: before ``?``; ``-``/empty (or nothing before ``?``) -> ``-``."""
    cdef const char* q
    if _none_text(u, un):
        p[0] = DASH
        pn[0] = 1
        return
    q = <const char*>memchr(u, 63, un)
    if q != NULL:
        un = q - u
    if un == 0:
        p[0] = DASH
        pn[0] = 1
    else:
        p[0] = u
        pn[0] = un


cdef inline void _text_or_dash(const char* v, Py_ssize_t n, const char** o, Py_ssize_t* on) noexcept:
    """F.text then ``or "-"``: ``-``/empty -> ``-``, else as written."""
    if n == 0:
        o[0] = DASH
        on[0] = 1
    else:
        o[0] = v
        on[0] = n


cdef inline void _first_hop(const char* v, Py_ssize_t n, const char** ip, Py_ssize_t* ipn) noexcept:
    """F.first_forwarded: ``-``/empty -> ``-``; else the text before the first comma, stripped."""
    cdef const char* c
    if _none_text(v, n):
        ip[0] = DASH
        ipn[0] = 1
        return
    c = <const char*>memchr(v, 44, n)
    if c != NULL:
        n = c - v
    while n > 0 and v[0] == 32:
        v += 1
        n -= 1
    while n > 0 and v[n - 1] == 32:
        n -= 1
    if n == 0:
        ip[0] = DASH
        ipn[0] = 1
    else:
        ip[0] = v
        ipn[0] = n


# -- combined ----------------------------------------------------------------------------------
cdef bint _x_combined(const char* s, Py_ssize_t n, Rec* r) noexcept:
    """``$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
    "$http_referer" "$http_user_agent"``, exactly (six quotes, single spaces, nothing after)."""
    cdef Py_ssize_t q[6]
    cdef Py_ssize_t nq = 0, j = 0, a, b, k, sp1, sp2
    cdef const char* p
    cdef unsigned char c
    while nq < 7:
        p = <const char*>memchr(s + j, 34, n - j)
        if p == NULL:
            break
        if nq < 6:
            q[nq] = p - s
        nq += 1
        j = (p - s) + 1
    if nq != 6 or q[5] != n - 1:
        return False
    # head "IP - USER [dd/Mon/yyyy:HH:MM:SS +zzzz] "
    p = <const char*>memchr(s, 32, q[0])
    if p == NULL:
        return False
    sp1 = p - s
    if sp1 + 3 > q[0] or s[sp1 + 1] != 45 or s[sp1 + 2] != 32:
        return False
    p = <const char*>memchr(s + sp1 + 3, 32, q[0] - sp1 - 3)
    if p == NULL:
        return False
    sp2 = p - s
    if q[0] != sp2 + 30 or s[sp2 + 1] != 91 or s[sp2 + 28] != 93 or s[sp2 + 29] != 32:
        return False
    r.ts = s + sp2 + 2
    r.tn = 26
    r.tkind = TIME_CLF
    if sp1 == 0:
        r.ip = DASH
        r.ipn = 1
    else:
        r.ip = s
        r.ipn = sp1
    # request "METHOD URI PROTO": three non-empty parts, the method a word (F.split_request)
    a = q[0] + 1
    b = q[1]
    r.kt = s + a
    r.kn = b - a
    j = a
    while j < b and s[j] != 32:
        c = <unsigned char>s[j]
        if not ((65 <= c <= 90) or (97 <= c <= 122)):
            return False
        j += 1
    if j == a or j - a > 32 or j >= b:
        return False
    k = j + 1
    p = <const char*>memchr(s + k, 32, b - k)
    if p == NULL or p - s == k:
        return False
    j = p - s
    if j + 1 >= b or memchr(s + j + 1, 32, b - j - 1) != NULL:
        return False
    _uri_path(s + k, j - k, &r.pa, &r.pan)
    if r.pa == DASH:
        return False  # no path: the careful parser's ``-``; rare, let it decide
    # ' 200 1234 ' between the request and the referer
    if q[2] - q[1] < 8 or s[q[1] + 1] != 32 or s[q[1] + 5] != 32 or s[q[2] - 1] != 32:
        return False
    r.code = _status3(s + q[1] + 2, 3)
    if r.code < 0 or memchr(s + q[1] + 6, 32, q[2] - q[1] - 7) != NULL:
        return False
    r.bout = _size_dash(s + q[1] + 6, q[2] - q[1] - 7)
    if r.bout < 0 or q[4] != q[3] + 2 or s[q[3] + 1] != 32:
        return False
    r.bin = 0
    _text_or_dash(s + q[4] + 1, q[5] - q[4] - 1, &r.ua, &r.uan)
    r.up = s
    r.un = 0
    r.rtn = -1
    r.utn = -1
    return True


# -- envoy -------------------------------------------------------------------------------------
cdef bint _x_envoy(const char* s, Py_ssize_t n, Rec* r, char* kbuf) noexcept:
    """Envoy's default format (``preagg.parse.envoy.ENVOY_DEFAULT_FORMAT``), exactly:
    ``[START] "METHOD PATH PROTO" CODE FLAGS RECEIVED SENT DURATION UPSTREAM_MS "XFF" "UA" "ID"
    "AUTHORITY" "UPSTREAM_HOST"`` with single spaces and nothing after."""
    cdef Py_ssize_t q[12]
    cdef Py_ssize_t tk_s[6]
    cdef Py_ssize_t tk_e[6]
    cdef Py_ssize_t nq = 0, j, e1, k, a, b, m1, m2
    cdef const char* p
    cdef const char* pp
    cdef Py_ssize_t ppn
    if n < 2 or s[0] != 91:
        return False
    p = <const char*>memchr(s, 93, n)
    if p == NULL:
        return False
    e1 = p - s
    j = e1 + 1
    while nq < 13:
        p = <const char*>memchr(s + j, 34, n - j)
        if p == NULL:
            break
        if nq < 12:
            q[nq] = p - s
        nq += 1
        j = (p - s) + 1
    if nq != 12 or q[11] != n - 1 or q[0] != e1 + 2 or s[e1 + 1] != 32:
        return False
    r.ts = s + 1
    r.tn = e1 - 1
    r.tkind = TIME_ISO
    # "METHOD PATH PROTO": three non-empty space-free tokens
    a = q[0] + 1
    b = q[1]
    p = <const char*>memchr(s + a, 32, b - a)
    if p == NULL or p - s == a:
        return False
    m1 = p - s
    p = <const char*>memchr(s + m1 + 1, 32, b - m1 - 1)
    if p == NULL or p - s == m1 + 1 or p - s + 1 >= b or memchr(p + 1, 32, b - (p - s) - 1) != NULL:
        return False
    m2 = p - s
    # six tokens: " t0 t1 t2 t3 t4 t5 " between the request's quote and the next one
    if s[q[1] + 1] != 32 or s[q[2] - 1] != 32:
        return False
    j = q[1] + 2
    for k in range(6):
        tk_s[k] = j
        while j < q[2] - 1 and s[j] != 32:
            j += 1
        tk_e[k] = j
        if tk_e[k] == tk_s[k]:
            return False
        j += 1
    if j != q[2]:
        return False
    # the quoted fields follow one another with one space between them
    for k in (3, 5, 7, 9):
        if q[k + 1] != q[k] + 2 or s[q[k] + 1] != 32:
            return False
    r.code = _status3(s + tk_s[0], tk_e[0] - tk_s[0])
    r.bin = _size_dash(s + tk_s[2], tk_e[2] - tk_s[2])
    r.bout = _size_dash(s + tk_s[3], tk_e[3] - tk_s[3])
    if r.code < 0 or r.bin < 0 or r.bout < 0:
        return False
    # DURATION (ms), RESP(X-ENVOY-UPSTREAM-SERVICE-TIME) (ms; one value, else careful path)
    r.rt = s + tk_s[4]
    r.rtn = tk_e[4] - tk_s[4]
    if r.rtn == 1 and r.rt[0] == 45:
        r.rtn = -1
    elif not _decimal(r.rt, r.rtn, False):
        return False
    r.ut = s + tk_s[5]
    r.utn = tk_e[5] - tk_s[5]
    if r.utn == 1 and r.ut[0] == 45:
        r.utn = -1
    elif not _decimal(r.ut, r.utn, False):
        return False
    # client: the first X-Forwarded-For hop (F.first_forwarded)
    _first_hop(s + q[2] + 1, q[3] - q[2] - 1, &r.ip, &r.ipn)
    _text_or_dash(s + q[4] + 1, q[5] - q[4] - 1, &r.ua, &r.uan)
    # UPSTREAM_HOST: one address (a list counts retries: careful path)
    if _is_list(s + q[10] + 1, q[11] - q[10] - 1):
        return False
    r.up = s
    r.un = 0
    _uri_path(s + m1 + 1, m2 - m1 - 1, &pp, &ppn)
    r.pa = pp
    r.pan = ppn
    # kind: method ("-" stays "-"), path, authority (host)
    a = q[0] + 1
    k = q[8] + 1
    r.kn = _kind_text(kbuf, s + a, m1 - a, pp, ppn,
                      NULL if _none_text(s + k, q[9] - k) else s + k, q[9] - k)
    r.kt = kbuf
    return r.kn >= 0


# -- json --------------------------------------------------------------------------------------
cdef enum:
    K_IGNORE = 0     # a text field the aggregator does not use (string or number: cannot fail)
    K_DEFER          # a key the careful parser maps in a way not handled here: careful path
    K_TIME           # time, timestamp, time_iso8601 (ISO-8601 strings)
    K_REMOTE
    K_XFF            # weak remote_addr
    K_BODY
    K_BSENT          # weak body_bytes_sent
    K_REQLEN
    K_RT
    K_DUR            # weak request_time
    K_STATUS
    K_HOST           # vhost, host, http_host
    K_URI            # path, request_uri (split at ?)
    K_PLAIN          # uri, document_uri (the path as written)
    K_METHOD         # method, request_method
    K_UA             # http_user_agent, user_agent
    K_UP             # proxy_upstream_name
    K_UPW            # weak upstream_name
    K_UADDR
    K_URT
    K_ILIST          # upstream_status, upstream_response_length: validated, unused
    K_N


cdef inline int _slot(int cls) noexcept:
    """Keys of one canonical field share a slot: two of them in one object -> careful path
    (``uri`` and ``path`` both fill the path; a repeated key: ``json.loads`` keeps the last)."""
    if cls < K_TIME or cls == K_ILIST:
        return -1
    if cls <= K_URI:
        return cls - K_TIME
    return cls - K_TIME - 1

#: JSON key -> class for the keys handled here; every other key of ``NGINX_JSON`` is either a
#: text field the aggregator does not read (ignored, like unknown keys) or sends the line to the
#: careful path (``_json_keys`` builds the table; ``tests/test_fastformats.py`` checks it).
JSON_KEYS = {
    "time": K_TIME, "timestamp": K_TIME, "time_iso8601": K_TIME,
    "remote_addr": K_REMOTE, "x_forwarded_for": K_XFF,
    "body_bytes_sent": K_BODY, "bytes_sent": K_BSENT, "request_length": K_REQLEN,
    "request_time": K_RT, "duration": K_DUR, "status": K_STATUS,
    "vhost": K_HOST, "host": K_HOST, "http_host": K_HOST,
    "path": K_URI, "request_uri": K_URI, "uri": K_PLAIN, "document_uri": K_PLAIN,
    "method": K_METHOD, "request_method": K_METHOD,
    "http_user_agent": K_UA, "user_agent": K_UA,
    "proxy_upstream_name": K_UP, "upstream_name": K_UPW,
    "upstream_addr": K_UADDR, "upstream_response_time": K_URT,
    "upstream_status": K_ILIST, "upstream_response_length": K_ILIST,
}


def json_key_classes():
    """``key -> class name`` of every key the JSON extractor knows (for tests and docs)."""
    names = {K_IGNORE: "ignore", K_DEFER: "defer"}
    out = {}
    for k, c in _json_keys().items():
        out[k] = names.get(c, "handled")
    return out


def _json_keys():
    from patrol.preagg.errors import ParseError as _PE
    from patrol.preagg.parse import fields as _F
    from patrol.preagg.parse.jsonfmt import NGINX_JSON

    table = {}
    for k, spec in NGINX_JSON.items():
        if k in JSON_KEYS:
            table[k] = JSON_KEYS[k]
        elif spec[1] is _F.text and spec[0] not in ("time", "remote_addr", "body_bytes_sent", "request_length",
                                                    "request_time", "status", "host", "path", "method",
                                                    "user_agent", "upstream_name", "upstream_addr",
                                                    "upstream_response_time"):
            table[k] = K_IGNORE   # remote_user, referer, protocol, query, req_id, namespace, ...
        else:
            table[k] = K_DEFER    # request, time_local, msec, @timestamp, server_name, ...
    # keys that pick another table (preagg.parse.jsonfmt.json_table_for): careful path
    for k in ("DownstreamStatus", "StartUTC", "RouterName", "response_code", "start_time"):
        table[k] = K_DEFER
    return table


cdef enum:
    KT_SLOTS = 512

cdef list _KT_KEYS = [None] * KT_SLOTS
cdef int _KT_CLS[KT_SLOTS]


cdef void _kt_build() except *:
    cdef bytes kb
    cdef Py_ssize_t i
    for k, c in _json_keys().items():
        kb = k.encode()
        i = <Py_ssize_t>(_hash(kb, len(kb)) & (KT_SLOTS - 1))
        while _KT_KEYS[i] is not None:
            i = (i + 1) & (KT_SLOTS - 1)
        _KT_KEYS[i] = kb
        _KT_CLS[i] = c


_kt_build()


cdef inline int _kt_class(const char* s, Py_ssize_t n) noexcept:
    cdef Py_ssize_t i = <Py_ssize_t>(_hash(s, n) & (KT_SLOTS - 1))
    cdef object o
    while True:
        o = <object>PyList_GET_ITEM(_KT_KEYS, i)
        if o is None:
            return K_IGNORE  # a key no table maps: the careful parser drops it too
        if PyBytes_GET_SIZE(o) == n and memcmp(PyBytes_AS_STRING(o), s, n) == 0:
            return _KT_CLS[i]
        i = (i + 1) & (KT_SLOTS - 1)


# the previous object's keys by position: lines of one source repeat their key order, so most keys
# are classified by one short memcmp instead of a hash probe
cdef enum:
    KC_POS = 48
    KC_LEN = 32
cdef char _kc_buf[KC_POS][KC_LEN]
cdef Py_ssize_t _kc_len[KC_POS]
cdef int _kc_cls[KC_POS]
for _i in range(KC_POS):
    _kc_len[_i] = -1


cdef inline int _key_class(int pos, const char* s, Py_ssize_t n) noexcept:
    cdef int c
    if pos < KC_POS and n <= KC_LEN:
        if _kc_len[pos] == n and memcmp(_kc_buf[pos], s, n) == 0:
            return _kc_cls[pos]
        c = _kt_class(s, n)
        memcpy(_kc_buf[pos], s, n)
        _kc_len[pos] = n
        _kc_cls[pos] = c
        return c
    return _kt_class(s, n)


cdef inline Py_ssize_t _ws(const char* s, Py_ssize_t j, Py_ssize_t n) noexcept:
    while j < n and s[j] == 32:
        j += 1
    return j


cdef inline Py_ssize_t _json_number(const char* s, Py_ssize_t j, Py_ssize_t n) noexcept:
    """End of a JSON number starting at ``j`` (at most 64 bytes), or -1."""
    cdef Py_ssize_t i = j
    if i < n and s[i] == 45:
        i += 1
    if i >= n or <unsigned char>s[i] < 48 or <unsigned char>s[i] > 57:
        return -1
    if s[i] == 48:
        i += 1
    else:
        while i < n and 48 <= <unsigned char>s[i] <= 57:
            i += 1
    if i < n and s[i] == 46:
        i += 1
        if i >= n or <unsigned char>s[i] < 48 or <unsigned char>s[i] > 57:
            return -1
        while i < n and 48 <= <unsigned char>s[i] <= 57:
            i += 1
    if i < n and (s[i] == 101 or s[i] == 69):
        i += 1
        if i < n and (s[i] == 43 or s[i] == 45):
            i += 1
        if i >= n or <unsigned char>s[i] < 48 or <unsigned char>s[i] > 57:
            return -1
        while i < n and 48 <= <unsigned char>s[i] <= 57:
            i += 1
    if i - j > 64:
        return -1
    return i


cdef bint _x_json(const char* s, Py_ssize_t n, Rec* r, char* kbuf) noexcept:
    """One flat JSON object of strings and numbers (no escapes: the line is printable ASCII without
    a backslash), keys classified by ``_json_keys``; fills ``r`` as ``parse_object`` +
    ``Aggregator._slow`` would read it, or returns False."""
    cdef const char* vs[K_N]
    cdef Py_ssize_t vn[K_N]
    cdef bint vstr[K_N]
    cdef int seen = 0, slot, cls, pos = 0
    cdef Py_ssize_t j, ks, kn, e, a
    cdef const char* v
    cdef Py_ssize_t m
    cdef bint isstr
    cdef const char* pp
    cdef Py_ssize_t ppn
    for cls in range(K_N):
        vs[cls] = NULL
        vn[cls] = 0
    j = _ws(s, 0, n)
    if j >= n or s[j] != 123:
        return False
    j = _ws(s, j + 1, n)
    while True:
        if j >= n or s[j] != 34:
            return False
        ks = j + 1
        v = <const char*>memchr(s + ks, 34, n - ks)
        if v == NULL:
            return False
        kn = (v - s) - ks
        j = _ws(s, ks + kn + 1, n)
        if j >= n or s[j] != 58:
            return False
        j = _ws(s, j + 1, n)
        if j >= n:
            return False
        if s[j] == 34:
            v = <const char*>memchr(s + j + 1, 34, n - j - 1)
            if v == NULL:
                return False
            e = v - s
            isstr = True
            v = s + j + 1
            m = e - j - 1
            j = e + 1
        else:
            e = _json_number(s, j, n)
            if e < 0:
                return False  # true/false/null/objects/arrays/NaN: careful path
            isstr = False
            v = s + j
            m = e - j
            j = e
        cls = _key_class(pos, s + ks, kn)
        pos += 1
        if cls == K_DEFER:
            return False
        if cls == K_ILIST and not _int_item(v, m, isstr):
            return False
        if cls != K_IGNORE:
            slot = _slot(cls)
            if slot >= 0:
                if seen & (1 << slot):
                    return False  # duplicate key, or two keys for one field
                seen |= 1 << slot
            vs[cls] = v
            vn[cls] = m
            vstr[cls] = isstr
        j = _ws(s, j, n)
        if j < n and s[j] == 44:
            j = _ws(s, j + 1, n)
            continue
        if j < n and s[j] == 125:
            j += 1
            break
        return False
    if _ws(s, j, n) != n:
        return False
    # time: an ISO-8601 string
    if vs[K_TIME] == NULL or not vstr[K_TIME]:
        return False
    r.ts = vs[K_TIME]
    r.tn = vn[K_TIME]
    r.tkind = TIME_ISO
    # status: three digits, bare or quoted
    if vs[K_STATUS] == NULL:
        return False
    r.code = _status3(vs[K_STATUS], vn[K_STATUS])
    if r.code < 0:
        return False
    # sizes (``bytes_sent`` fills body_bytes_sent only when that is absent or unset, but is
    # converted either way, so both are validated)
    r.bout = 0
    if vs[K_BODY] != NULL:
        r.bout = _json_size(vs[K_BODY], vn[K_BODY], vstr[K_BODY])
        if r.bout < 0:
            return False
    if vs[K_BSENT] != NULL:
        a = _json_size(vs[K_BSENT], vn[K_BSENT], vstr[K_BSENT])
        if a < 0:
            return False
        if vs[K_BODY] == NULL or (vstr[K_BODY] and _none_text(vs[K_BODY], vn[K_BODY])):
            r.bout = a
    r.bin = 0
    if vs[K_REQLEN] != NULL:
        r.bin = _json_size(vs[K_REQLEN], vn[K_REQLEN], vstr[K_REQLEN])
        if r.bin < 0:
            return False
    # request time (``duration`` weak), upstream time (one value)
    if not _json_float(vs[K_RT], vn[K_RT], vstr[K_RT], &r.rt, &r.rtn):
        return False
    if not _json_float(vs[K_DUR], vn[K_DUR], vstr[K_DUR], &pp, &ppn):
        return False
    if r.rtn < 0:
        r.rt = pp
        r.rtn = ppn
    if vs[K_URT] != NULL and vstr[K_URT] and _is_list(vs[K_URT], vn[K_URT]):
        return False
    if not _json_float(vs[K_URT], vn[K_URT], vstr[K_URT], &r.ut, &r.utn):
        return False
    # upstream lists: one address (retries come from several), statuses/lengths valid ints
    if vs[K_UADDR] != NULL and (not vstr[K_UADDR] or _is_list(vs[K_UADDR], vn[K_UADDR])):
        return False
    # text fields: strings only
    for cls in (K_REMOTE, K_XFF, K_HOST, K_URI, K_PLAIN, K_METHOD, K_UA, K_UP, K_UPW):
        if vs[cls] != NULL and not vstr[cls]:
            return False
    # client: remote_addr, else the first X-Forwarded-For hop
    if vs[K_REMOTE] != NULL and not _none_text(vs[K_REMOTE], vn[K_REMOTE]):
        r.ip = vs[K_REMOTE]
        r.ipn = vn[K_REMOTE]
    elif vs[K_XFF] != NULL:
        _first_hop(vs[K_XFF], vn[K_XFF], &r.ip, &r.ipn)
    else:
        r.ip = DASH
        r.ipn = 1
    if vs[K_UA] != NULL and not _none_text(vs[K_UA], vn[K_UA]):
        r.ua = vs[K_UA]
        r.uan = vn[K_UA]
    else:
        r.ua = DASH
        r.uan = 1
    # upstream name ("" for none)
    r.up = s
    r.un = 0
    if vs[K_UP] != NULL and not _none_text(vs[K_UP], vn[K_UP]):
        r.up = vs[K_UP]
        r.un = vn[K_UP]
    elif vs[K_UPW] != NULL and not _none_text(vs[K_UPW], vn[K_UPW]):
        r.up = vs[K_UPW]
        r.un = vn[K_UPW]
    # path
    if vs[K_URI] != NULL:
        _uri_path(vs[K_URI], vn[K_URI], &pp, &ppn)
    elif vs[K_PLAIN] != NULL and not _none_text(vs[K_PLAIN], vn[K_PLAIN]):
        pp = vs[K_PLAIN]
        ppn = vn[K_PLAIN]
    else:
        pp = DASH
        ppn = 1
    r.pa = pp
    r.pan = ppn
    v = vs[K_METHOD]
    m = vn[K_METHOD]
    if v == NULL or _none_text(v, m):
        v = DASH
        m = 1
    r.kn = _kind_text(kbuf, v, m, pp, ppn,
                      NULL if vs[K_HOST] == NULL or _none_text(vs[K_HOST], vn[K_HOST]) else vs[K_HOST],
                      vn[K_HOST])
    r.kt = kbuf
    return r.kn >= 0


cdef inline int64_t _json_size(const char* v, Py_ssize_t m, bint isstr) noexcept:
    """F.to_int of a size: quoted digits / ``-`` / empty, or a bare integer; -1 otherwise."""
    if not isstr and (m == 0 or v[0] == 45):
        return -1
    return _size_dash(v, m)


cdef inline bint _int_item(const char* v, Py_ssize_t m, bint isstr) noexcept:
    """F.int_list of one item (``$upstream_status``): ``-``/empty, or 1-19 digits (bare: a JSON
    integer); lists and anything else: careful path."""
    cdef Py_ssize_t i
    if isstr and _none_text(v, m):
        return True
    if m == 0 or m > 19:
        return False
    for i in range(m):
        if <unsigned char>v[i] < 48 or <unsigned char>v[i] > 57:
            return False
    return True


cdef inline bint _json_float(const char* v, Py_ssize_t m, bint isstr, const char** out, Py_ssize_t* outn) noexcept:
    """F.to_float of a latency: absent / ``-`` / empty -> none (outn = -1), ``d+(.d+)?`` -> its text."""
    outn[0] = -1
    if v == NULL:
        return True
    if isstr and _none_text(v, m):
        return True
    if not _decimal(v, m, not isstr):
        return False
    out[0] = v
    outn[0] = m
    return True


# -- the loop ----------------------------------------------------------------------------------
_ISO_SECONDS = {}   # "YYYY-MM-DDTHH:MM:SS" + zone -> epoch seconds (float), bounded
_CLF_SECONDS = {}   # "dd/Mon/yyyy:HH:MM:SS +zzzz" -> epoch seconds (float), bounded


cdef object _iso_base(const char* s, Py_ssize_t fa, Py_ssize_t n, Py_ssize_t zs):
    """Epoch seconds of the stamp without its fraction (``iso_time`` decides; cached)."""
    cdef bytes key = PyBytes_FromStringAndSize(s, 19) + PyBytes_FromStringAndSize(s + zs, n - zs)
    hit = _ISO_SECONDS.get(key)
    if hit is None:
        hit = _iso_time(key.decode("ascii"))  # ParseError: careful path
        if len(_ISO_SECONDS) > 100_000:
            _ISO_SECONDS.clear()
        _ISO_SECONDS[key] = hit
    return hit


cdef object _clf_base(const char* s):
    cdef bytes key = PyBytes_FromStringAndSize(s, 26)
    hit = _CLF_SECONDS.get(key)
    if hit is None:
        hit = _clf_time(key.decode("ascii"))
        if len(_CLF_SECONDS) > 100_000:
            _CLF_SECONDS.clear()
        _CLF_SECONDS[key] = hit
    return hit


cdef inline object _status_obj(int code):
    o = STATUS[code]
    if o is None:
        o = STATUS[code] = b"%d" % code
    return o


def _fmt_kind(agg, bytes text, int fmt):
    """``(method, (host, template))`` of a request kind text, as ``Aggregator._slow`` keys it."""
    cdef Py_ssize_t i, j
    if fmt == FMT_COMBINED:
        method, uri, _ = text.split(b" ")
        path = uri.partition(b"?")[0]
        host = None
    else:
        i = text.index(b"\0")
        j = text.index(b"\0", i + 1)
        method = text[:i]
        path = text[i + 1:j]
        h = text[j + 1:]
        host = None if h == b"\x01" else h.decode("ascii")
    raw = agg.tcache.get((host, path))
    if raw is None:
        raw = agg._tmpl(host, path)
    return method, raw


def _conv_float(o):
    return float(o)


def _conv_ms(o):
    return float(o) / 1000.0


def loop_format(agg, st, lines, offsets, list rejected, now, int fmt):
    """Aggregate ``lines`` of one partition in format ``fmt`` (:data:`FORMAT_CODES`) into ``st``.

    Same window decisions as ``Aggregator._slow`` line by line (``_place``): bounds, then the
    newest time, then the window; what the extractor declines goes to ``_slow`` itself.
    """
    w = st.windows
    cdef long long W = agg.window_s
    cdef dict wins = st.wins, caps = st.caps, tabs = st.tabs
    cdef dict cur = None, wcap = None
    cdef WinTab tab = None
    cdef ReqTab rtab = agg.rtab
    cdef object advance = agg._advance, open_ = agg._open, admit = agg._admit, slow = agg._slow
    cdef object observe = w.observe
    cdef object conv = (_conv_ms, _conv_ms) if fmt == FMT_ENVOY else (_conv_float, _conv_float)
    cdef double late = w.lateness_s
    cdef double lo, hi, trig, mx, mx_obs, t
    cdef long long wm_key, cur_ws = 0, tsec
    cdef bint have_ws = False, pending = False
    cdef Rec r
    cdef char kbuf[KBUF]
    cdef char last_tkey[40]
    cdef Py_ssize_t last_tkn = -1
    cdef double last_base = 0
    cdef Py_ssize_t i, n, kind, acc, fa, zs
    cdef int us
    cdef uint64_t qh = 0, rh = 0
    cdef const char* s
    cdef object line = None, base, rq, method, raw, upb, tmpl, key, ws_obj
    cdef PyObject* hit
    cdef list a
    cdef bint ok
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
    lo, hi, trig, mx = float(w.lo), float(w.hi), float(w.trigger), float(w.max_t)
    mx_obs = mx
    wm_key = <long long>(mx - late) if mx - late > -1e18 else -(1LL << 62)
    try:
        for i in range(nl):
            ok = False
            try:
                if lptr != NULL:
                    s = lptr[i]
                    n = lsize[i]
                    if s == NULL:
                        raise ValueError
                else:
                    line = <object>_LIST_ITEM(llist, i)
                    if not PyBytes_CheckExact(line):
                        raise ValueError
                    s = PyBytes_AS_STRING(line)
                    n = PyBytes_GET_SIZE(line)
                if not _printable(s, n):
                    raise ValueError
                if fmt == FMT_JSON:
                    ok = _x_json(s, n, &r, kbuf)
                elif fmt == FMT_ENVOY:
                    ok = _x_envoy(s, n, &r, kbuf)
                else:
                    ok = _x_combined(s, n, &r)
                if not ok:
                    raise ValueError
                ok = False
                # event time: seconds cached by their text (fraction and zone split off in C)
                if r.tkind == TIME_CLF:
                    if last_tkn != 26 or memcmp(last_tkey, r.ts, 26) != 0:
                        last_base = _clf_base(r.ts)
                        memcpy(last_tkey, r.ts, 26)
                        last_tkn = 26
                    t = last_base
                else:
                    if not _iso_split(r.ts, r.tn, &fa, &us):
                        raise ValueError
                    # the zone ("Z" or "+hh:mm") ends the stamp; the fraction, if any, is before it
                    zs = r.tn - (1 if r.ts[r.tn - 1] == 90 else 6)
                    if 19 + (r.tn - zs) > 40:
                        raise ValueError
                    if (last_tkn != 19 + r.tn - zs or memcmp(last_tkey, r.ts, 19) != 0
                            or memcmp(last_tkey + 19, r.ts + zs, r.tn - zs) != 0):
                        last_base = _iso_base(r.ts, fa, r.tn, zs)
                        memcpy(last_tkey, r.ts, 19)
                        memcpy(last_tkey + 19, r.ts + zs, r.tn - zs)
                        last_tkn = 19 + r.tn - zs
                    # datetime.timestamp(): total microseconds / 10**6, correctly rounded
                    t = last_base if us == 0 else <double>(<int64_t>last_base * 1000000 + us) / 1e6
                # _place: bounds (exact lo; a stale hi only sends a line to the check below)
                if t < lo or t > hi:
                    if pending:
                        observe(PyFloat_FromDouble(mx))
                        pending = False
                        mx_obs = mx
                        lo, hi = float(w.lo), float(w.hi)
                    if t < lo or t > hi:
                        raise ValueError  # late or future: the careful path rejects it with a reason
                if t > mx:
                    mx = t
                    pending = True
                    # the watermark's second moves lo: observe now (otherwise later, in a batch)
                    if t >= trig or <long long>(t - late) != wm_key:
                        observe(PyFloat_FromDouble(t))
                        pending = False
                        mx_obs = t
                        wm_key = <long long>(t - late)
                        if t >= trig:
                            advance(st, PyFloat_FromDouble(t), offsets[i])
                            have_ws = False
                        lo, hi, trig = float(w.lo), float(w.hi), float(w.trigger)
                tsec = <long long>t
                if not have_ws or tsec - tsec % W != cur_ws:
                    cur_ws = tsec - tsec % W
                    ws_obj = cur_ws
                    hit = PyDict_GetItem(wins, ws_obj)
                    if hit == NULL:
                        if pending:
                            observe(PyFloat_FromDouble(mx))
                            pending = False
                            mx_obs = mx
                        cur = open_(st, ws_obj, offsets[i])
                        lo, hi, trig = float(w.lo), float(w.hi), float(w.trigger)
                    else:
                        cur = <dict>hit
                    wcap = <dict>((<tuple>caps[ws_obj])[0])
                    tab = <WinTab>tabs[ws_obj]
                    if tab.conv is None:
                        tab.conv = conv
                    have_ws = True
                # request kind -> (method, (host, template))
                kind = rtab.find(r.kt, r.kn, &qh)
                if kind < 0:
                    rq = _fmt_kind(agg, PyBytes_FromStringAndSize(r.kt, r.kn), fmt)
                    kind = rtab.put(r.kt, r.kn, qh, <tuple>rq)
                tab.rcheck(rtab.gen)
                acc = tab.rfind(kind, r.up, r.un, r.code, &rh)
                if acc < 0:
                    rq = <tuple>PyList_GET_ITEM(rtab.info, kind)
                    method = (<tuple>rq)[0]
                    raw = (<tuple>rq)[1]
                    upb = b"[" + PyBytes_FromStringAndSize(r.up, r.un) + b"]"
                    hit = PyDict_GetItem(wcap, raw)
                    tmpl = admit(st, ws_obj, raw, upb) if hit == NULL else <object>hit
                    key = (upb, tmpl, method, _status_obj(r.code))
                    hit = PyDict_GetItem(cur, key)
                    if hit == NULL:
                        a = tab.new_acc()
                        cur[key] = a
                    else:
                        a = <list>hit
                    acc = a[9]
                    if PyDict_GetItem(wcap, raw) != NULL:
                        tab.rput(kind, r.up, r.un, r.code, rh, acc)
                ok = True
            except (ValueError, IndexError, ParseError):
                pass
            if not ok:
                if pending:
                    observe(PyFloat_FromDouble(mx))
                    pending = False
                slow(st, line if lptr == NULL else lines[i], i, offsets[i], rejected, now)
                lo, hi, trig, mx = float(w.lo), float(w.hi), float(w.trigger), float(w.max_t)
                mx_obs = mx
                wm_key = <long long>(mx - late) if mx - late > -1e18 else -(1LL << 62)
                have_ws = False
                cur = None
                tab = None
                continue
            tab.n[acc] += 1
            tab.sizes(acc, r.bout, r.bin)
            if r.rtn >= 0:
                tab.inc(acc, 0, tab.vid(r.rt, r.rtn))
            if r.utn >= 0:
                tab.inc(acc, 1, tab.vid(r.ut, r.utn))
            tab.inc(acc, 2, tab.vid(r.ip, r.ipn))
            tab.inc(acc, 3, tab.vid(r.ua, r.uan))
            if r.code == 404:
                a = <list>PyList_GET_ITEM(tab.accs, acc)
                if a[8] is None:
                    a[8] = set()
                (<set>a[8]).add(PyBytes_FromStringAndSize(r.pa, r.pan))
    finally:
        if pending:
            observe(PyFloat_FromDouble(mx))
