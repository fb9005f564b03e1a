# Included by _fastloop.pyx (setup.py builds one extension; an include keeps the modules short).
# C tables of one open window: accumulator counters and value -> count maps without Python objects.
#
# Why: with Python dicts the loop paid, per line, a dozen dict probes (the fine key's tuple hash,
# the request cache, four value -> count dicts) and a PyLong per count past 256. Here a line costs
# a few open-addressing probes in C; the Python dicts of the accumulators are filled once, at close,
# from tables that keep first-insertion order, so they come out exactly as the pure loop's.

from libc.stdlib cimport free, realloc
from libc.string cimport memset
from libc.stdint cimport int32_t, int64_t, uint32_t
from cpython.list cimport PyList_GET_ITEM

cdef enum:
    VID_BITS = 30           # (acc, field, value id) packs into 64 bits: acc << 32 | field << 30 | vid
    RQ_CACHE_MAX = 20000    # request-cache entries per window (like the template cap's wcap bound)
    REQ_MAX = 65536         # request texts remembered stream-wide (like rcache's bound)

# the bounds in force (tests lower them to exercise the full-table paths)
cdef Py_ssize_t _req_max = REQ_MAX, _win_rq_max = RQ_CACHE_MAX


def limits(req_max=None, win_cache_max=None):
    """Set the request tables' bounds (``None``: keep); returns the previous ``(req_max, win_cache_max)``."""
    global _req_max, _win_rq_max
    old = (_req_max, _win_rq_max)
    if req_max is not None:
        _req_max = max(1, int(req_max))
    if win_cache_max is not None:
        _win_rq_max = max(0, int(win_cache_max))
    return old


cdef int64_t SUM_FLUSH = 1LL << 62   # byte sums move to the Python int before int64 could overflow
cdef uint64_t VID_MASK = (1ULL << VID_BITS) - 1


cdef inline uint64_t _mix(uint64_t x) noexcept nogil:
    # splitmix64 finaliser: a fixed function (no seed), so nothing depends on the process
    x ^= x >> 30
    x *= 0xBF58476D1CE4E5B9ULL
    x ^= x >> 27
    x *= 0x94D049BB133111EBULL
    x ^= x >> 31
    return x


cdef void* _grow(void* p, Py_ssize_t n, size_t size) except NULL:
    cdef void* q = realloc(p, <size_t>n * size)
    if q == NULL:
        raise MemoryError()
    return q


cdef uint32_t* _index(uint32_t* old, Py_ssize_t slots) except NULL:
    """A fresh open-addressing index (entry number + 1 per slot; 0 = empty)."""
    cdef uint32_t* idx = <uint32_t*>_grow(old, slots, sizeof(uint32_t))
    memset(idx, 0, <size_t>slots * sizeof(uint32_t))
    return idx


cdef class WinTab:
    """Counters of one open window's accumulators, addressed by small integer ids.

    * accumulators: the Python lists of the window's fine keys (``accs[id]``; the id sits in
      the list's last slot), with request / bytes counts as int64 beside them;
    * values: byte strings interned by content (kept once in an arena) -> value id; non-bytes
      values of the careful parser (float latencies) by equality, as a dict key;
    * counts: ``(acc, field, value id) -> count`` in first-insertion order, field 0-3 = request
      time, upstream time, client, user agent (accumulator slots 4-7);
    * request cache: ``(request kind, upstream, status) -> acc``, i.e. what the template cap and
      the fine-key probe decide, remembered only when the cap remembered it too (a kind is a
      ``(method, uncapped template)`` of :class:`ReqTab`).

    :meth:`finish` writes everything into the accumulators' dicts and frees the tables.
    """

    cdef public list accs
    # (request time, upstream time) converters, or None: the other formats' loop counts
    # latencies as their text and the careful parser's float is made here, once per value
    cdef public object conv
    cdef int64_t* n
    cdef int64_t* bout
    cdef int64_t* bin
    cdef Py_ssize_t nacc, cacc
    # value interner
    cdef char* arena
    cdef Py_ssize_t alen, acap
    cdef Py_ssize_t* voff
    cdef Py_ssize_t* vlen   # -1: a non-bytes value, in vobj
    cdef uint64_t* vhash
    cdef Py_ssize_t nval, cval
    cdef uint32_t* vidx
    cdef Py_ssize_t vmask
    cdef dict objs, vobj
    # (acc, field, vid) -> count
    cdef uint64_t* ekey
    cdef int64_t* ecnt
    cdef Py_ssize_t ne, ce
    cdef uint32_t* eidx
    cdef Py_ssize_t emask
    # request cache
    cdef char* rarena
    cdef Py_ssize_t rlen, rcap
    cdef Py_ssize_t* roff
    cdef int32_t* rl1       # request kind id (ReqTab)
    cdef int32_t* rl2
    cdef int32_t* rst
    cdef int32_t* racc
    cdef uint64_t* rhash
    cdef Py_ssize_t nr, cr
    cdef uint32_t* ridx
    cdef Py_ssize_t rmask, rgen

    def __cinit__(self):
        self.accs = []
        self.objs = {}
        self.vobj = {}
        self.vmask = self.emask = self.rmask = 1023
        self.vidx = _index(NULL, 1024)
        self.eidx = _index(NULL, 1024)
        self.ridx = _index(NULL, 1024)

    def __dealloc__(self):
        self._free()

    cdef void _free(self) noexcept:
        free(self.n); free(self.bout); free(self.bin)
        free(self.arena); free(self.voff); free(self.vlen); free(self.vhash); free(self.vidx)
        free(self.ekey); free(self.ecnt); free(self.eidx)
        free(self.rarena); free(self.roff); free(self.rl1); free(self.rl2); free(self.rst)
        free(self.racc); free(self.rhash); free(self.ridx)
        self.n = self.bout = self.bin = self.ecnt = NULL
        self.arena = self.rarena = NULL
        self.voff = self.vlen = self.roff = NULL
        self.vhash = self.ekey = self.rhash = NULL
        self.vidx = self.eidx = self.ridx = NULL
        self.rl1 = self.rl2 = self.rst = self.racc = NULL
        self.nacc = self.cacc = self.nval = self.cval = self.ne = self.ce = self.nr = self.cr = 0
        self.alen = self.acap = self.rlen = self.rcap = 0

    # -- accumulators ----------------------------------------------------------------------
    def new_acc(self):
        """A new accumulator list (slots of ``preagg.series``; the last one holds its id)."""
        cdef Py_ssize_t k = self.nacc
        if k >= (1 << 31) - 1:
            raise OverflowError("too many accumulators in one window")
        if k == self.cacc:
            self.cacc = 2 * self.cacc + 64
            self.n = <int64_t*>_grow(self.n, self.cacc, sizeof(int64_t))
            self.bout = <int64_t*>_grow(self.bout, self.cacc, sizeof(int64_t))
            self.bin = <int64_t*>_grow(self.bin, self.cacc, sizeof(int64_t))
        self.n[k] = self.bout[k] = self.bin[k] = 0
        a = [0, 0, 0, 0, {}, {}, {}, {}, None, k]
        self.accs.append(a)
        self.nacc = k + 1
        return a

    cdef inline void sizes(self, Py_ssize_t k, int64_t bout, int64_t bin_) except *:
        # each size is < 1e15 (the loop's C parse takes 15 digits at most): no overflow below 2^62
        self.bout[k] += bout
        self.bin[k] += bin_
        if self.bout[k] > SUM_FLUSH or self.bin[k] > SUM_FLUSH:
            a = <list>PyList_GET_ITEM(self.accs, k)
            a[1] = a[1] + self.bout[k]
            a[2] = a[2] + self.bin[k]
            self.bout[k] = self.bin[k] = 0

    # -- values ----------------------------------------------------------------------------
    cdef Py_ssize_t _new_vid(self) except -1:
        cdef Py_ssize_t v = self.nval
        if v >= <Py_ssize_t>VID_MASK:
            raise OverflowError("too many distinct values in one window")
        if v == self.cval:
            self.cval = 2 * self.cval + 256
            self.voff = <Py_ssize_t*>_grow(self.voff, self.cval, sizeof(Py_ssize_t))
            self.vlen = <Py_ssize_t*>_grow(self.vlen, self.cval, sizeof(Py_ssize_t))
            self.vhash = <uint64_t*>_grow(self.vhash, self.cval, sizeof(uint64_t))
        self.nval = v + 1
        return v

    cdef inline Py_ssize_t vid(self, const char* s, Py_ssize_t n) except -1:
        """Id of the byte string ``s[:n]`` in this window (interned on first sight)."""
        cdef uint64_t h = _hash(s, n)
        cdef Py_ssize_t i = <Py_ssize_t>(h & <uint64_t>self.vmask)
        cdef Py_ssize_t e
        cdef uint32_t slot
        while True:
            slot = self.vidx[i]
            if slot == 0:
                break
            e = slot - 1
            if self.vhash[e] == h and self.vlen[e] == n and memcmp(self.arena + self.voff[e], s, n) == 0:
                return e
            i = (i + 1) & self.vmask
        e = self._new_vid()
        if self.alen + n > self.acap:
            self.acap = 2 * self.acap + n + 4096
            self.arena = <char*>_grow(self.arena, self.acap, 1)
        memcpy(self.arena + self.alen, s, n)
        self.voff[e] = self.alen
        self.vlen[e] = n
        self.vhash[e] = h
        self.alen += n
        self.vidx[i] = <uint32_t>(e + 1)
        if 2 * self.nval > self.vmask:
            self._reindex_values()
        return e

    cdef int _reindex_values(self) except -1:
        cdef Py_ssize_t slots = 2 * (self.vmask + 1), e, i
        self.vidx = _index(self.vidx, slots)
        self.vmask = slots - 1
        for e in range(self.nval):
            if self.vlen[e] >= 0:
                i = <Py_ssize_t>(self.vhash[e] & <uint64_t>self.vmask)
                while self.vidx[i] != 0:
                    i = (i + 1) & self.vmask
                self.vidx[i] = <uint32_t>(e + 1)
        return 0

    cdef Py_ssize_t obj_vid(self, object o) except -1:
        """Id of a value from the careful parser (bytes by content, anything else by equality)."""
        if PyBytes_CheckExact(o):
            return self.vid(PyBytes_AS_STRING(o), PyBytes_GET_SIZE(o))
        k = o  # dict equality, as the accumulator dicts would merge them (1 == 1.0)
        hit = self.objs.get(k)
        if hit is not None:
            return hit
        e = self._new_vid()
        self.vlen[e] = -1
        self.vhash[e] = 0
        self.objs[k] = e
        self.vobj[e] = o
        return e

    # -- counts ----------------------------------------------------------------------------
    cdef inline int inc(self, Py_ssize_t acc, uint64_t field, Py_ssize_t v) except -1:
        """``accs[acc][4 + field][value v] += 1`` (in the table)."""
        cdef uint64_t key = (<uint64_t>acc << 32) | (field << VID_BITS) | <uint64_t>v
        cdef Py_ssize_t i = <Py_ssize_t>(_mix(key) & <uint64_t>self.emask)
        cdef uint32_t slot
        cdef Py_ssize_t e
        while True:
            slot = self.eidx[i]
            if slot == 0:
                break
            if self.ekey[slot - 1] == key:
                self.ecnt[slot - 1] += 1
                return 0
            i = (i + 1) & self.emask
        e = self.ne
        if e >= 0xFFFFFFF0:
            raise OverflowError("too many counters in one window")
        if e == self.ce:
            self.ce = 2 * self.ce + 1024
            self.ekey = <uint64_t*>_grow(self.ekey, self.ce, sizeof(uint64_t))
            self.ecnt = <int64_t*>_grow(self.ecnt, self.ce, sizeof(int64_t))
        self.ekey[e] = key
        self.ecnt[e] = 1
        self.eidx[i] = <uint32_t>(e + 1)
        self.ne = e + 1
        if 2 * self.ne > self.emask:
            self._reindex_counts()
        return 0

    cdef int _reindex_counts(self) except -1:
        cdef Py_ssize_t slots = 2 * (self.emask + 1), e, i
        self.eidx = _index(self.eidx, slots)
        self.emask = slots - 1
        for e in range(self.ne):
            i = <Py_ssize_t>(_mix(self.ekey[e]) & <uint64_t>self.emask)
            while self.eidx[i] != 0:
                i = (i + 1) & self.emask
            self.eidx[i] = <uint32_t>(e + 1)
        return 0

    def add_slow(self, list a, rt, ut, ip, ua):
        """The careful path's value updates of accumulator ``a`` (``None`` latencies skipped)."""
        cdef Py_ssize_t k = a[9]
        if rt is not None:
            self.inc(k, 0, self.obj_vid(rt))
        if ut is not None:
            self.inc(k, 1, self.obj_vid(ut))
        self.inc(k, 2, self.obj_vid(ip))
        self.inc(k, 3, self.obj_vid(ua))

    # -- request cache ---------------------------------------------------------------------
    cdef inline Py_ssize_t rfind(self, Py_ssize_t kind, const char* up, Py_ssize_t n2, int status,
                                 uint64_t* hout) noexcept:
        cdef uint64_t h = _mix(_hash(up, n2) ^ (<uint64_t>kind << 12) ^ <uint64_t>status)
        cdef Py_ssize_t i = <Py_ssize_t>(h & <uint64_t>self.rmask)
        cdef uint32_t slot
        cdef Py_ssize_t e
        hout[0] = h
        while True:
            slot = self.ridx[i]
            if slot == 0:
                return -1
            e = slot - 1
            if (self.rhash[e] == h and self.rst[e] == status and self.rl1[e] == kind and self.rl2[e] == n2
                    and memcmp(self.rarena + self.roff[e], up, n2) == 0):
                return self.racc[e]
            i = (i + 1) & self.rmask

    cdef inline void rcheck(self, Py_ssize_t gen) noexcept:
        """Forget the request cache when the stream-wide request ids were renumbered."""
        if gen != self.rgen:
            self.rgen = gen
            self.nr = self.rlen = 0
            memset(self.ridx, 0, <size_t>(self.rmask + 1) * sizeof(uint32_t))

    cdef int rput(self, Py_ssize_t kind, const char* up, Py_ssize_t n2, int status, uint64_t h,
                  Py_ssize_t acc) except -1:
        cdef Py_ssize_t e = self.nr, i
        if e >= _win_rq_max or kind > 0x7FFFFFFF or n2 > 0x7FFFFFFF:
            return 0  # full: later lines take the Python path (memory stays bounded per window)
        if e == self.cr:
            self.cr = 2 * self.cr + 256
            self.roff = <Py_ssize_t*>_grow(self.roff, self.cr, sizeof(Py_ssize_t))
            self.rl1 = <int32_t*>_grow(self.rl1, self.cr, sizeof(int32_t))
            self.rl2 = <int32_t*>_grow(self.rl2, self.cr, sizeof(int32_t))
            self.rst = <int32_t*>_grow(self.rst, self.cr, sizeof(int32_t))
            self.racc = <int32_t*>_grow(self.racc, self.cr, sizeof(int32_t))
            self.rhash = <uint64_t*>_grow(self.rhash, self.cr, sizeof(uint64_t))
        if self.rlen + n2 > self.rcap:
            self.rcap = 2 * self.rcap + n2 + 4096
            self.rarena = <char*>_grow(self.rarena, self.rcap, 1)
        memcpy(self.rarena + self.rlen, up, n2)
        self.roff[e] = self.rlen
        self.rlen += n2
        self.rl1[e] = <int32_t>kind
        self.rl2[e] = <int32_t>n2
        self.rst[e] = status
        self.racc[e] = <int32_t>acc
        self.rhash[e] = h
        self.nr = e + 1
        if 2 * self.nr > self.rmask:
            self.ridx = _index(self.ridx, 2 * (self.rmask + 1))
            self.rmask = 2 * (self.rmask + 1) - 1
            for e in range(self.nr):
                i = <Py_ssize_t>(self.rhash[e] & <uint64_t>self.rmask)
                while self.ridx[i] != 0:
                    i = (i + 1) & self.rmask
                self.ridx[i] = <uint32_t>(e + 1)
        else:
            i = <Py_ssize_t>(h & <uint64_t>self.rmask)
            while self.ridx[i] != 0:
                i = (i + 1) & self.rmask
            self.ridx[i] = <uint32_t>(e + 1)
        return 0

    # -- close -----------------------------------------------------------------------------
    def finish(self):
        """Write the counters into the accumulator lists and dicts, then free the tables.

        Each ``(acc, field, value)`` was appended when first seen, so walking the entries in
        order inserts every dict's keys in first-occurrence order: the pure loop's order.
        """
        cdef Py_ssize_t e, k, f, v
        cdef uint64_t key
        cdef list vals = [None] * self.nval
        cdef list accs = self.accs
        cdef object o
        cdef list a
        cdef list cvals = None
        cdef dict d
        cdef PyObject* hit
        if self.conv is not None:
            cvals = [[None] * self.nval, [None] * self.nval]
        for e in range(self.ne):
            key = self.ekey[e]
            k = <Py_ssize_t>(key >> 32)
            f = <Py_ssize_t>((key >> VID_BITS) & 3)
            v = <Py_ssize_t>(key & VID_MASK)
            if cvals is not None and f < 2:
                # a latency text -> the careful parser's float; two texts of one value, or a
                # text and the careful path's float, merge into one key at its first position
                o = <object>PyList_GET_ITEM(<list>cvals[f], v)
                if o is None:
                    if self.vlen[v] >= 0:
                        o = self.conv[f](PyBytes_FromStringAndSize(self.arena + self.voff[v], self.vlen[v]))
                    else:
                        o = self.vobj[v]
                    (<list>cvals[f])[v] = o
                d = <dict>(<list>PyList_GET_ITEM(accs, k))[4 + f]
                hit = PyDict_GetItem(d, o)
                PyDict_SetItem(d, o, PyLong_FromLongLong(self.ecnt[e]) if hit == NULL
                               else <object>hit + self.ecnt[e])
                continue
            o = <object>PyList_GET_ITEM(vals, v)
            if o is None:
                if self.vlen[v] >= 0:
                    o = PyBytes_FromStringAndSize(self.arena + self.voff[v], self.vlen[v])
                else:
                    o = self.vobj[v]
                vals[v] = o
            a = <list>PyList_GET_ITEM(accs, k)
            PyDict_SetItem(<dict>a[4 + f], o, PyLong_FromLongLong(self.ecnt[e]))
        for k in range(self.nacc):
            a = <list>PyList_GET_ITEM(accs, k)
            if self.n[k]:
                a[0] = a[0] + self.n[k]
            if self.bout[k]:
                a[1] = a[1] + self.bout[k]
            if self.bin[k]:
                a[2] = a[2] + self.bin[k]
        self._free()
        # empty but usable again (nothing should count into a closed window; if it did, it
        # would land in fresh tables instead of freed memory)
        self.vidx = _index(NULL, 1024)
        self.eidx = _index(NULL, 1024)
        self.ridx = _index(NULL, 1024)
        self.vmask = self.emask = self.rmask = 1023
        self.objs = {}
        self.vobj = {}


cdef class ReqTab:
    """Request line text -> kind id, stream-wide; a kind is one ``(method, uncapped template)``.

    Why: request lines carry ids and query strings (a quarter of a window's lines have a text not
    seen before in that window), while their kinds are few; this table turns the text into the
    kind with one C probe, so the per-window cache is keyed by kind. Bounded: past ``REQ_MAX`` texts
    everything is forgotten and renumbered (``gen`` tells the windows to forget their caches).
    """

    cdef char* arena
    cdef Py_ssize_t alen, acap
    cdef Py_ssize_t* off
    cdef Py_ssize_t* ln
    cdef uint64_t* hs
    cdef int32_t* kid
    cdef Py_ssize_t n, cap
    cdef uint32_t* idx
    cdef Py_ssize_t mask
    cdef public Py_ssize_t gen
    cdef public dict kinds     # (method, raw) -> kind id
    cdef public list info      # kind id -> (method, raw)

    def __cinit__(self):
        self.mask = 4095
        self.idx = _index(NULL, 4096)
        self.kinds = {}
        self.info = []

    def __dealloc__(self):
        free(self.arena); free(self.off); free(self.ln); free(self.hs); free(self.kid); free(self.idx)

    cdef inline Py_ssize_t find(self, const char* s, Py_ssize_t n, uint64_t* hout) noexcept:
        cdef uint64_t h = _hash(s, n)
        cdef Py_ssize_t i = <Py_ssize_t>(h & <uint64_t>self.mask)
        cdef uint32_t slot
        cdef Py_ssize_t e
        hout[0] = h
        while True:
            slot = self.idx[i]
            if slot == 0:
                return -1
            e = slot - 1
            if self.hs[e] == h and self.ln[e] == n and memcmp(self.arena + self.off[e], s, n) == 0:
                return self.kid[e]
            i = (i + 1) & self.mask

    cdef Py_ssize_t put(self, const char* s, Py_ssize_t n, uint64_t h, tuple rq) except -1:
        """Remember text ``s[:n]`` (hash ``h``) as request ``rq = (method, raw)``; its kind id."""
        cdef Py_ssize_t e, i, k
        if self.n >= _req_max:
            self.n = self.alen = 0
            memset(self.idx, 0, <size_t>(self.mask + 1) * sizeof(uint32_t))
            self.kinds = {}
            self.info = []
            self.gen += 1
        hit = self.kinds.get(rq)
        if hit is None:
            k = len(self.info)
            self.kinds[rq] = k
            self.info.append(rq)
        else:
            k = hit
        e = self.n
        if e == self.cap:
            self.cap = 2 * self.cap + 1024
            self.off = <Py_ssize_t*>_grow(self.off, self.cap, sizeof(Py_ssize_t))
            self.ln = <Py_ssize_t*>_grow(self.ln, self.cap, sizeof(Py_ssize_t))
            self.hs = <uint64_t*>_grow(self.hs, self.cap, sizeof(uint64_t))
            self.kid = <int32_t*>_grow(self.kid, self.cap, sizeof(int32_t))
        if self.alen + n > self.acap:
            self.acap = 2 * self.acap + n + 65536
            self.arena = <char*>_grow(self.arena, self.acap, 1)
        memcpy(self.arena + self.alen, s, n)
        self.off[e] = self.alen
        self.ln[e] = n
        self.hs[e] = h
        self.kid[e] = <int32_t>k
        self.alen += n
        self.n = e + 1
        if 2 * self.n > self.mask:
            self.mask = 2 * (self.mask + 1) - 1
            self.idx = _index(self.idx, self.mask + 1)
            for e in range(self.n):
                i = <Py_ssize_t>(self.hs[e] & <uint64_t>self.mask)
                while self.idx[i] != 0:
                    i = (i + 1) & self.mask
                self.idx[i] = <uint32_t>(e + 1)
        else:
            i = <Py_ssize_t>(h & <uint64_t>self.mask)
            while self.idx[i] != 0:
                i = (i + 1) & self.mask
            self.idx[i] = <uint32_t>(e + 1)
        return k
