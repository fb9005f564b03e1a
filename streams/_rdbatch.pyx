# cython: language_level=3, boundscheck=False, wraparound=False
"""librdkafka's high-level consumer driven directly: one call returns a batch grouped by partition.

Why: confluent-kafka's ``consume()`` builds one Python ``Message`` per record (0.5-0.7 us each),
and the worker then takes them apart again. :class:`BatchConsumer` returns
``[(partition, values, offsets)]`` (first-seen partition order, message order within one) with
no Python object per record: ``values`` is a :class:`Lines`, a read-only sequence of bytes that
points into librdkafka's own record buffers (the compiled preagg loop reads them in place, so no
bytes object is allocated and copied per line; indexing or iterating makes one on demand), valid
until the next ``consume()`` or ``close()``; ``offsets`` is a ``range`` when the batch's offsets of
a partition are consecutive (the usual case) and an ``array('q')`` otherwise.

Linking: nothing at build time. At import, the librdkafka that ``confluent_kafka`` already loaded
(its wheel bundles one under a hashed name) is found in ``/proc/self/maps`` and its functions are
looked up with ``dlsym``. So the build needs no headers and no confluent_kafka (pip's build
isolation), one librdkafka serves both clients, and a missing symbol is an ImportError the worker
answers by falling back to confluent-kafka. The structs below are librdkafka's public ABI, which
has not changed since 1.0 (``rdkafka.h``: "the struct layout is part of the ABI").
"""

from cpython.array cimport array, clone
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport int32_t, int64_t, uintptr_t
from libc.stdlib cimport free, malloc

import os
from collections.abc import Sequence

cdef extern from "<dlfcn.h>" nogil:
    void* dlopen(const char* filename, int flags)
    void* dlsym(void* handle, const char* symbol)
    char* dlerror()
    int RTLD_NOW
    int RTLD_LOCAL
    int RTLD_NOLOAD

cdef extern from "<sys/types.h>":
    ctypedef long ssize_t


# -- librdkafka ABI (subset of rdkafka.h) ------------------------------------------------------
ctypedef struct rd_kafka_message_t:
    int err
    void* rkt
    int32_t partition
    char* payload
    size_t len
    void* key
    size_t key_len
    int64_t offset
    void* _private

ctypedef struct rd_kafka_topic_partition_t:
    char* topic
    int32_t partition
    int64_t offset
    void* metadata
    size_t metadata_size
    void* opaque
    int err
    void* _private

ctypedef struct rd_kafka_topic_partition_list_t:
    int cnt
    int size
    rd_kafka_topic_partition_t* elems

ctypedef void (*rebalance_cb_t)(void* rk, int err, rd_kafka_topic_partition_list_t* parts, void* opaque) noexcept

cdef enum:
    RD_KAFKA_CONSUMER = 1
    RD_KAFKA_CONF_OK = 0
    ERR_PARTITION_EOF = -191
    ERR_ASSIGN_PARTITIONS = -175
    ERR_REVOKE_PARTITIONS = -174
    DESTROY_F_NO_CONSUMER_CLOSE = 0x8

ctypedef struct Api:
    int (*version)() nogil
    void* (*conf_new)() nogil
    int (*conf_set)(void*, const char*, const char*, char*, size_t) nogil
    void (*conf_destroy)(void*) nogil
    void (*conf_set_opaque)(void*, void*) nogil
    void (*conf_set_rebalance_cb)(void*, rebalance_cb_t) nogil
    void* (*new)(int, void*, char*, size_t) nogil
    void (*destroy_flags)(void*, int) nogil
    int (*poll_set_consumer)(void*) nogil
    void* (*queue_get_consumer)(void*) nogil
    void (*queue_destroy)(void*) nogil
    ssize_t (*consume_batch_queue)(void*, int, rd_kafka_message_t**, size_t) nogil
    void (*message_destroy)(rd_kafka_message_t*) nogil
    rd_kafka_topic_partition_list_t* (*tpl_new)(int) nogil
    rd_kafka_topic_partition_t* (*tpl_add)(rd_kafka_topic_partition_list_t*, const char*, int32_t) nogil
    void (*tpl_destroy)(rd_kafka_topic_partition_list_t*) nogil
    int (*subscribe)(void*, rd_kafka_topic_partition_list_t*) nogil
    int (*assign)(void*, rd_kafka_topic_partition_list_t*) nogil
    void* (*incremental_assign)(void*, rd_kafka_topic_partition_list_t*) nogil
    void* (*incremental_unassign)(void*, rd_kafka_topic_partition_list_t*) nogil
    const char* (*error_string)(void*) nogil
    void (*error_destroy)(void*) nogil
    const char* (*rebalance_protocol)(void*) nogil
    int (*assignment)(void*, rd_kafka_topic_partition_list_t**) nogil
    int (*position)(void*, rd_kafka_topic_partition_list_t*) nogil
    int (*get_watermark_offsets)(void*, const char*, int32_t, int64_t*, int64_t*) nogil
    int (*commit)(void*, rd_kafka_topic_partition_list_t*, int) nogil
    int (*consumer_close)(void*) nogil
    void (*yield_)(void*) nogil
    const char* (*err2str)(int) nogil

cdef Api api


def _librdkafka_path():
    """The librdkafka confluent_kafka runs on (bundled in its wheel, or the system one)."""
    import confluent_kafka.cimpl  # noqa: F401  (loads it)
    try:
        with open("/proc/self/maps") as fh:
            for row in fh:
                path = row.rstrip("\n").rpartition(" ")[2]
                if "librdkafka" in os.path.basename(path):
                    return path
    except OSError:  # no /proc (not Linux): the system's, if any; a failed load is an ImportError
        pass
    return "librdkafka.so.1"


cdef void* _sym(void* lib, const char* name) except NULL:
    cdef void* f = dlsym(lib, name)
    if f == NULL:
        raise ImportError(f"librdkafka has no {name.decode()} (too old?)")
    return f


cdef int _load() except -1:
    path = _librdkafka_path().encode()
    cdef void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD)
    if lib == NULL:
        lib = dlopen(path, RTLD_NOW | RTLD_LOCAL)
    if lib == NULL:
        raise ImportError(f"cannot load librdkafka ({path.decode()}): {dlerror().decode()}")
    api.version = <int (*)() nogil>_sym(lib, b"rd_kafka_version")
    api.conf_new = <void* (*)() nogil>_sym(lib, b"rd_kafka_conf_new")
    api.conf_set = <int (*)(void*, const char*, const char*, char*, size_t) nogil>_sym(lib, b"rd_kafka_conf_set")
    api.conf_destroy = <void (*)(void*) nogil>_sym(lib, b"rd_kafka_conf_destroy")
    api.conf_set_opaque = <void (*)(void*, void*) nogil>_sym(lib, b"rd_kafka_conf_set_opaque")
    api.conf_set_rebalance_cb = <void (*)(void*, rebalance_cb_t) nogil>_sym(lib, b"rd_kafka_conf_set_rebalance_cb")
    api.new = <void* (*)(int, void*, char*, size_t) nogil>_sym(lib, b"rd_kafka_new")
    api.destroy_flags = <void (*)(void*, int) nogil>_sym(lib, b"rd_kafka_destroy_flags")
    api.poll_set_consumer = <int (*)(void*) nogil>_sym(lib, b"rd_kafka_poll_set_consumer")
    api.queue_get_consumer = <void* (*)(void*) nogil>_sym(lib, b"rd_kafka_queue_get_consumer")
    api.queue_destroy = <void (*)(void*) nogil>_sym(lib, b"rd_kafka_queue_destroy")
    api.consume_batch_queue = <ssize_t (*)(void*, int, rd_kafka_message_t**, size_t) nogil>_sym(
        lib, b"rd_kafka_consume_batch_queue")
    api.message_destroy = <void (*)(rd_kafka_message_t*) nogil>_sym(lib, b"rd_kafka_message_destroy")
    api.tpl_new = <rd_kafka_topic_partition_list_t* (*)(int) nogil>_sym(lib, b"rd_kafka_topic_partition_list_new")
    api.tpl_add = <rd_kafka_topic_partition_t* (*)(rd_kafka_topic_partition_list_t*, const char*, int32_t) nogil>_sym(
        lib, b"rd_kafka_topic_partition_list_add")
    api.tpl_destroy = <void (*)(rd_kafka_topic_partition_list_t*) nogil>_sym(lib, b"rd_kafka_topic_partition_list_destroy")
    api.subscribe = <int (*)(void*, rd_kafka_topic_partition_list_t*) nogil>_sym(lib, b"rd_kafka_subscribe")
    api.assign = <int (*)(void*, rd_kafka_topic_partition_list_t*) nogil>_sym(lib, b"rd_kafka_assign")
    api.incremental_assign = <void* (*)(void*, rd_kafka_topic_partition_list_t*) nogil>_sym(
        lib, b"rd_kafka_incremental_assign")
    api.incremental_unassign = <void* (*)(void*, rd_kafka_topic_partition_list_t*) nogil>_sym(
        lib, b"rd_kafka_incremental_unassign")
    api.error_string = <const char* (*)(void*) nogil>_sym(lib, b"rd_kafka_error_string")
    api.error_destroy = <void (*)(void*) nogil>_sym(lib, b"rd_kafka_error_destroy")
    api.rebalance_protocol = <const char* (*)(void*) nogil>_sym(lib, b"rd_kafka_rebalance_protocol")
    api.assignment = <int (*)(void*, rd_kafka_topic_partition_list_t**) nogil>_sym(lib, b"rd_kafka_assignment")
    api.position = <int (*)(void*, rd_kafka_topic_partition_list_t*) nogil>_sym(lib, b"rd_kafka_position")
    api.get_watermark_offsets = <int (*)(void*, const char*, int32_t, int64_t*, int64_t*) nogil>_sym(
        lib, b"rd_kafka_get_watermark_offsets")
    api.commit = <int (*)(void*, rd_kafka_topic_partition_list_t*, int) nogil>_sym(lib, b"rd_kafka_commit")
    api.consumer_close = <int (*)(void*) nogil>_sym(lib, b"rd_kafka_consumer_close")
    api.yield_ = <void (*)(void*) nogil>_sym(lib, b"rd_kafka_yield")
    api.err2str = <const char* (*)(int) nogil>_sym(lib, b"rd_kafka_err2str")
    return 0


_load()
LIBRDKAFKA = _librdkafka_path()
cdef array _OFFSETS = array("q")

from confluent_kafka import KafkaError, KafkaException, TopicPartition  # noqa: E402


def librdkafka_version():
    """librdkafka's version string (the library this module and confluent_kafka share)."""
    cdef int v = api.version()
    return f"{(v >> 24) & 0xff}.{(v >> 16) & 0xff}.{(v >> 8) & 0xff}"


cdef _raise(int err, str what):
    raise KafkaException(KafkaError(err, f"{what}: {api.err2str(err).decode()}"))


cdef str _conf_value(v):
    # confluent-kafka's conversions: booleans as librdkafka spells them, numbers as text
    if v is True or v is False:
        return "true" if v else "false"
    return str(v)


cdef list _tps(rd_kafka_topic_partition_list_t* parts):
    cdef int i
    return [TopicPartition(parts.elems[i].topic.decode(), parts.elems[i].partition, parts.elems[i].offset)
            for i in range(parts.cnt)]


cdef rd_kafka_topic_partition_list_t* _c_list(list tps) except NULL:
    cdef rd_kafka_topic_partition_list_t* out = api.tpl_new(max(1, len(tps)))
    for tp in tps:
        api.tpl_add(out, tp.topic.encode(), tp.partition).offset = tp.offset
    return out


cdef void _rebalance(void* rk, int err, rd_kafka_topic_partition_list_t* parts, void* opaque) noexcept with gil:
    (<BatchConsumer>opaque)._rebalance(err, parts)


cdef class _Held:
    """The records of one ``consume()`` call: kept alive while its :class:`Lines` are read, and
    destroyed by the consumer at its next ``consume()`` or ``close()`` (librdkafka wants every
    record destroyed before the client is)."""

    cdef rd_kafka_message_t** msgs
    cdef ssize_t n

    cdef void release(self) noexcept:
        cdef ssize_t i
        if self.msgs != NULL:
            for i in range(self.n):
                api.message_destroy(self.msgs[i])
            free(self.msgs)
            self.msgs = NULL
            self.n = 0


cdef class Lines:
    """The values of one partition in one batch: a read-only sequence of ``bytes``.

    Each item is made on demand from the record's payload (``b""`` for a tombstone);
    :attr:`buffer_info` gives the C arrays of payload pointers and lengths, so a compiled loop can
    read the lines without one Python object each. Valid until the consumer's next ``consume()``
    or ``close()``; after that any access raises ``RuntimeError``.
    """

    cdef _Held held
    cdef const char** ptr
    cdef Py_ssize_t* size
    cdef readonly Py_ssize_t n

    def __dealloc__(self):
        free(self.ptr)
        free(self.size)

    cdef int _check(self) except -1:
        if self.held.msgs == NULL:
            raise RuntimeError("the values of a batch are valid until the next consume() or close()")
        return 0

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        cdef Py_ssize_t k
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.n))]
        k = i
        if k < 0:
            k += self.n
        if k < 0 or k >= self.n:
            raise IndexError("Lines index out of range")
        self._check()
        if self.ptr[k] == NULL:
            return b""
        return PyBytes_FromStringAndSize(self.ptr[k], self.size[k])

    def __iter__(self):
        cdef Py_ssize_t k
        for k in range(self.n):
            yield self[k]

    def __repr__(self):
        return f"<Lines of {self.n} records>"

    @property
    def buffer_info(self):
        """``(address of const char* [n], address of Py_ssize_t [n], n)``; NULL pointer = tombstone."""
        self._check()
        return <uintptr_t>self.ptr, <uintptr_t>self.size, self.n


Sequence.register(Lines)


cdef class BatchConsumer:
    """A subscribed consumer returning batches grouped by partition (see the module doc).

    Parameters
    ----------
    conf : dict
        librdkafka properties, as for ``confluent_kafka.Consumer`` (``group.id`` required).

    Notes
    -----
    Rebalances behave as confluent-kafka's ``Consumer`` with ``on_assign``/``on_revoke``: the
    Python callback runs first (in the thread calling :meth:`consume` or :meth:`close`), then the
    assignment changes (incremental under the cooperative protocol, whole otherwise), also when
    the callback raised. An exception from a callback is raised by the call that ran it.
    """

    cdef void* rk
    cdef void* queue
    cdef rd_kafka_message_t** msgs
    cdef size_t cap
    cdef object on_assign, on_revoke, exc
    cdef bint closed
    cdef readonly list errors
    cdef readonly long long last_bytes  # payload bytes of the values the last consume() returned
    cdef _Held held  # the last batch's records (its Lines point into them)

    def __cinit__(self, dict conf):
        cdef char errstr[512]
        cdef void* c = api.conf_new()
        for k, v in conf.items():
            if api.conf_set(c, k.encode(), _conf_value(v).encode(), errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK:
                api.conf_destroy(c)
                raise KafkaException(KafkaError(KafkaError._INVALID_ARG, errstr.decode()))
        api.conf_set_opaque(c, <void*>self)
        api.conf_set_rebalance_cb(c, _rebalance)
        self.rk = api.new(RD_KAFKA_CONSUMER, c, errstr, sizeof(errstr))
        if self.rk == NULL:  # on failure rd_kafka_new leaves conf to us
            api.conf_destroy(c)
            raise KafkaException(KafkaError(KafkaError._INVALID_ARG, errstr.decode()))
        api.poll_set_consumer(self.rk)  # rebalance events arrive on the consumer queue
        self.queue = api.queue_get_consumer(self.rk)
        self.errors = []
        self.closed = False

    def __dealloc__(self):
        if self.held is not None:
            self.held.release()
        if self.msgs != NULL:
            free(self.msgs)
        if self.queue != NULL:
            api.queue_destroy(self.queue)
        if self.rk != NULL:  # not closed: leave the group without running Python callbacks
            api.destroy_flags(self.rk, DESTROY_F_NO_CONSUMER_CLOSE)

    cdef _check(self):
        if self.rk == NULL:
            raise RuntimeError("consumer closed")

    cdef _reraise(self):
        exc, self.exc = self.exc, None
        if exc is not None:
            raise exc

    cdef void _rebalance(self, int err, rd_kafka_topic_partition_list_t* parts) noexcept:
        cdef void* error = NULL
        cdef const char* proto = api.rebalance_protocol(self.rk)
        cdef bint coop = proto != NULL and proto[0] == 67  # "COOPERATIVE" (else "EAGER"/"NONE")
        cb = self.on_assign if err == ERR_ASSIGN_PARTITIONS else self.on_revoke
        if cb is not None and self.exc is None:
            try:
                cb(self, _tps(parts))
            except BaseException as e:  # kept for the caller; the assignment still has to change
                self.exc = e
                api.yield_(self.rk)  # end the batch call early so the caller sees it now
        if err == ERR_ASSIGN_PARTITIONS:
            if coop:
                error = api.incremental_assign(self.rk, parts)
            else:
                api.assign(self.rk, parts)
        else:
            if coop:
                error = api.incremental_unassign(self.rk, parts)
            else:
                api.assign(self.rk, NULL)
        if error != NULL:
            if self.exc is None:
                self.exc = KafkaException(KafkaError(KafkaError._STATE, api.error_string(error).decode()))
            api.error_destroy(error)

    def subscribe(self, list topics, on_assign=None, on_revoke=None):
        """Join the group for ``topics``; ``on_assign(consumer, partitions)`` and
        ``on_revoke(consumer, partitions)`` get lists of ``confluent_kafka.TopicPartition``."""
        self._check()
        self.on_assign, self.on_revoke = on_assign, on_revoke
        cdef rd_kafka_topic_partition_list_t* lst = api.tpl_new(len(topics))
        for t in topics:
            api.tpl_add(lst, t.encode(), -1)
        cdef int err = api.subscribe(self.rk, lst)
        api.tpl_destroy(lst)
        if err:
            _raise(err, "subscribe")

    def consume(self, size_t num=10000, double timeout=1.0):
        """Up to ``num`` records, waiting at most ``timeout`` seconds for the first.

        Returns
        -------
        list of (int, Lines, range or array)
            ``(partition, values, offsets)`` per partition in first-seen order; tombstones are
            ``b""``. The values of the previous call are released here (see :class:`Lines`).
            Per-record errors other than partition EOF go to :attr:`errors` as
            ``(partition, offset, code, reason)``; :attr:`last_bytes` is the total length of the
            returned values (counted here, so the caller need not sum them again).
        """
        self._check()
        self._release()
        if self.msgs == NULL or self.cap < num:
            free(self.msgs)
            self.msgs = <rd_kafka_message_t**>malloc(num * sizeof(rd_kafka_message_t*))
            if self.msgs == NULL:
                self.cap = 0
                raise MemoryError()
            self.cap = num
        cdef int tmo = <int>(timeout * 1000)
        cdef ssize_t n
        cdef _Held held
        with nogil:
            n = api.consume_batch_queue(self.queue, tmo, self.msgs, num)
        if n <= 0:
            self.last_bytes = 0
            self._reraise()
            if n < 0:  # bad arguments only (librdkafka reports broker trouble as error records)
                raise KafkaException(KafkaError(KafkaError._FAIL, "rd_kafka_consume_batch_queue failed"))
            return []
        # the records now belong to a _Held (their Lines point into them); the next call gets a new array
        held = _Held()
        held.msgs, held.n = self.msgs, n
        self.msgs, self.cap = NULL, 0
        self.held = held
        try:
            return self._group(held)
        except BaseException:
            self._release()
            raise
        finally:
            self._reraise()

    cdef _release(self):
        if self.held is not None:
            self.held.release()
            self.held = None

    cdef list _group(self, _Held held):
        cdef ssize_t n = held.n
        cdef rd_kafka_message_t** msgs = held.msgs
        cdef rd_kafka_message_t* m
        cdef Lines vals
        cdef ssize_t i, j, k, ngroups = 0
        cdef int g = -1
        # per group: partition, count, first/last offset, consecutive?; per message: its group
        cdef int* gi = <int*>malloc(max(n, 1) * sizeof(int))
        cdef int64_t* info = <int64_t*>malloc(max(n, 1) * 5 * sizeof(int64_t))
        cdef list out = []
        cdef array offs = None
        cdef object offsets
        cdef long long nbytes = 0
        self.last_bytes = 0
        if gi == NULL or info == NULL:
            free(gi)
            free(info)
            raise MemoryError()
        try:
            for i in range(n):
                m = msgs[i]
                if m.err:
                    gi[i] = -1
                    if m.err != ERR_PARTITION_EOF:
                        reason = (PyBytes_FromStringAndSize(m.payload, m.len).decode(errors="replace")
                                  if m.payload != NULL else api.err2str(m.err).decode())
                        self.errors.append((m.partition, m.offset, m.err, reason))
                    continue
                if g < 0 or info[5 * g] != m.partition:
                    g = -1
                    for j in range(ngroups):
                        if info[5 * j] == m.partition:
                            g = <int>j
                            break
                    if g < 0:
                        g = <int>ngroups
                        ngroups += 1
                        info[5 * g] = m.partition
                        info[5 * g + 1] = 0
                        info[5 * g + 2] = m.offset
                        info[5 * g + 3] = m.offset - 1
                        info[5 * g + 4] = 1
                gi[i] = g
                if m.payload != NULL:
                    nbytes += <long long>m.len
                if m.offset != info[5 * g + 3] + 1:
                    info[5 * g + 4] = 0
                info[5 * g + 1] += 1
                info[5 * g + 3] = m.offset
            for j in range(ngroups):
                vals = Lines()
                vals.held = held
                vals.n = info[5 * j + 1]
                vals.ptr = <const char**>malloc(max(vals.n, 1) * sizeof(char*))
                vals.size = <Py_ssize_t*>malloc(max(vals.n, 1) * sizeof(Py_ssize_t))
                if vals.ptr == NULL or vals.size == NULL:
                    raise MemoryError()
                if info[5 * j + 4]:
                    offsets = range(info[5 * j + 2], info[5 * j + 3] + 1)
                else:
                    offs = clone(_OFFSETS, info[5 * j + 1], False)
                    offsets = offs
                k = 0
                for i in range(n):
                    if gi[i] != j:
                        continue
                    m = msgs[i]
                    vals.ptr[k] = m.payload  # NULL: a tombstone (b"")
                    vals.size[k] = <Py_ssize_t>m.len if m.payload != NULL else 0
                    if not info[5 * j + 4]:
                        offs.data.as_longlongs[k] = m.offset
                    k += 1
                out.append((info[5 * j], vals, offsets))
            self.last_bytes = nbytes
        finally:
            free(gi)
            free(info)
        return out

    def commit(self, offsets, asynchronous=False):
        """Commit explicit ``offsets`` (``TopicPartition`` list), synchronously by default."""
        self._check()
        cdef rd_kafka_topic_partition_list_t* lst = _c_list(list(offsets))
        cdef int err
        cdef int asy = 1 if asynchronous else 0
        with nogil:
            err = api.commit(self.rk, lst, asy)
        res = _tps(lst)
        api.tpl_destroy(lst)
        if err:
            _raise(err, "commit")
        return res

    def assignment(self):
        """The partitions currently assigned (``TopicPartition`` list)."""
        self._check()
        cdef rd_kafka_topic_partition_list_t* lst = NULL
        cdef int err = api.assignment(self.rk, &lst)
        if err:
            _raise(err, "assignment")
        res = _tps(lst)
        api.tpl_destroy(lst)
        return res

    def position(self, partitions):
        """Next offset to fetch per partition, as confluent-kafka's ``position``."""
        self._check()
        cdef rd_kafka_topic_partition_list_t* lst = _c_list(list(partitions))
        cdef int err = api.position(self.rk, lst)
        res = _tps(lst)
        api.tpl_destroy(lst)
        if err:
            _raise(err, "position")
        return res

    def get_watermark_offsets(self, tp, timeout=None, cached=True):
        """Cached (low, high) offsets of a partition from the last fetch (``cached=True`` only)."""
        self._check()
        if not cached:
            raise NotImplementedError("only the cached watermarks (use a confluent_kafka.Consumer to query)")
        cdef int64_t lo = -1, hi = -1
        err = api.get_watermark_offsets(self.rk, tp.topic.encode(), tp.partition, &lo, &hi)
        if err:
            _raise(err, "get_watermark_offsets")
        return lo, hi

    def close(self):
        """Leave the group (the revoke callback runs here) and free the client."""
        if self.closed:
            return
        self.closed = True  # the client stays usable until consumer_close returns: on_revoke commits
        self._release()
        with nogil:
            api.consumer_close(self.rk)
        api.queue_destroy(self.queue)
        self.queue = NULL
        api.destroy_flags(self.rk, 0)
        self.rk = NULL
        self._reraise()
