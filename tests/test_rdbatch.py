"""``streams._rdbatch.BatchConsumer`` against a real (embedded Tansu) broker.

Grouping by partition (first-seen order, message order inside), offsets, tombstones, the rebalance
callbacks (assign on join, revoke when a second member joins, revoke on close), exceptions from a
callback reaching the caller, and a synchronous commit another client can read back.
"""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from patrol.sim.broker import EmbeddedBroker
from patrol.streams.topics import consumer_lag, ensure_topic

try:
    from patrol.streams import _rdbatch
except ImportError as exc:  # the worker falls back to confluent-kafka's Consumer
    _rdbatch, _why = None, str(exc)


@pytest.fixture(scope="module", autouse=True)
def _extension_built():
    if _rdbatch is not None:
        return
    msg = (f"streams._rdbatch is not available ({_why}): `pip install -e .` needs Cython and a C compiler; "
           "without it the preagg worker consumes through confluent-kafka's Message objects (slower)")
    pytest.fail(msg)  # a missing extension is a broken build (make install compiles it), never a skip


@pytest.fixture(scope="module")
def broker():
    with EmbeddedBroker() as b:
        yield b


def _topic(b, parts: int) -> str:
    name = f"rdb-{uuid.uuid4().hex[:8]}"
    ensure_topic({"bootstrap.servers": b.bootstrap}, name, parts)
    return name


def _conf(b, group: str) -> dict:
    return {"bootstrap.servers": b.bootstrap, "group.id": group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "session.timeout.ms": 6000, "enable.partition.eof": False}


def _drain(c, want: int, timeout: float = 30.0) -> list:
    """Batches until ``want`` records, values copied to lists of bytes (a batch's Lines are
    valid only until the next consume)."""
    out, deadline = [], time.monotonic() + timeout
    while sum(len(v) for _, v, _ in out) < want and time.monotonic() < deadline:
        out.extend((q, list(v), o) for q, v, o in c.consume(1000, 0.2))
    return out


def test_batches_grouped_by_partition_with_offsets_and_tombstones(broker):
    topic = _topic(broker, 3)
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    sent = {0: [], 1: [], 2: []}
    for i in range(300):
        part = i % 3
        value = None if i % 50 == 7 else f"line-{i}".encode()
        p.produce(topic, value, partition=part)
        sent[part].append(value or b"")
    assert p.flush(30) == 0
    assigned = []
    c = _rdbatch.BatchConsumer(_conf(broker, f"g-{uuid.uuid4().hex[:6]}"))
    c.subscribe([topic], on_assign=lambda cons, tps: assigned.append(sorted(tp.partition for tp in tps)))
    try:
        batches = _drain(c, 300)
        got = {0: [], 1: [], 2: []}
        offs = {0: [], 1: [], 2: []}
        for part, values, offsets in batches:
            assert len(values) == len(offsets) and all(type(v) is bytes for v in values)
            got[part].extend(values)
            offs[part].extend(offsets)
        # each group of one call is one partition, so a partition appears at most once per call
        assert got == sent
        assert all(offs[q] == list(range(len(sent[q]))) for q in sent)
        assert assigned == [[0, 1, 2]]
        assert c.errors == []
        assert {tp.partition for tp in c.assignment()} == {0, 1, 2}
        assert consumer_lag(c) == 0
    finally:
        c.close()


def test_values_are_lines_read_in_place_and_released_by_the_next_call(broker):
    from collections.abc import Sequence

    topic = _topic(broker, 1)
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    sent = [b"first", None, b"", b"x" * 5000, "caf\u00e9 \\x22".encode()]
    for v in sent:
        p.produce(topic, v, partition=0)
    assert p.flush(30) == 0
    c = _rdbatch.BatchConsumer(_conf(broker, f"g-{uuid.uuid4().hex[:6]}"))
    c.subscribe([topic])
    try:
        deadline = time.monotonic() + 30
        batch = []
        while not batch and time.monotonic() < deadline:
            batch = c.consume(100, 0.5)
        assert len(batch) == 1
        _, values, offsets = batch[0]
        assert isinstance(values, _rdbatch.Lines) and isinstance(values, Sequence)
        want = [v or b"" for v in sent]
        assert len(values) == len(want) == len(offsets)
        assert list(values) == want and values[-1] == want[-1] and values[1:3] == want[1:3]
        with pytest.raises(IndexError):
            values[len(want)]
        assert c.last_bytes == sum(map(len, want))
        # the C view the compiled preagg loop reads: pointer and length per record, NULL for a tombstone
        import ctypes

        ptrs, sizes, n = values.buffer_info
        assert n == len(want)
        pa = (ctypes.c_void_p * n).from_address(ptrs)
        sa = (ctypes.c_ssize_t * n).from_address(sizes)
        assert pa[1] is None and sa[1] == 0
        assert [ctypes.string_at(pa[i], sa[i]) if pa[i] else b"" for i in range(n)] == want
        # the next call releases the records: the old values refuse to be read (never a dangling read)
        c.consume(10, 0.1)
        with pytest.raises(RuntimeError, match="valid until the next consume"):
            values[0]
        with pytest.raises(RuntimeError):
            values.buffer_info
        assert len(values) == len(want)  # the length alone stays known
    finally:
        c.close()


def test_one_group_per_partition_per_call(broker):
    topic = _topic(broker, 4)
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 50})
    for i in range(4000):
        p.produce(topic, b"x%d" % i, partition=i % 4)
    assert p.flush(30) == 0
    c = _rdbatch.BatchConsumer(_conf(broker, f"g-{uuid.uuid4().hex[:6]}"))
    c.subscribe([topic])
    try:
        time.sleep(1.0)  # let the fetcher queue records of several partitions
        seen = 0
        deadline = time.monotonic() + 30
        while seen < 4000 and time.monotonic() < deadline:
            batch = c.consume(10000, 0.5)
            parts = [q for q, _, _ in batch]
            assert len(parts) == len(set(parts))
            for q, values, offsets in batch:
                assert [int(v[1:]) % 4 for v in values] == [q] * len(values)
                assert list(offsets) == sorted(offsets)
                seen += len(values)
        assert seen == 4000
    finally:
        c.close()


def test_commit_is_visible_to_another_client(broker):
    topic = _topic(broker, 2)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(20):
        p.produce(topic, b"v", partition=i % 2)
    assert p.flush(30) == 0
    group = f"g-{uuid.uuid4().hex[:6]}"
    c = _rdbatch.BatchConsumer(_conf(broker, group))
    c.subscribe([topic])
    try:
        _drain(c, 20)
        c.commit([TopicPartition(topic, 0, 7), TopicPartition(topic, 1, 3)], asynchronous=False)
    finally:
        c.close()
    probe = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    try:
        got = probe.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)
    finally:
        probe.close()
    assert [(tp.partition, tp.offset) for tp in got] == [(0, 7), (1, 3)]


def test_rebalance_revokes_then_assigns_and_close_revokes(broker):
    topic = _topic(broker, 4)
    group = f"g-{uuid.uuid4().hex[:6]}"
    events: list[tuple[str, str, list[int]]] = []

    def recorder(name):
        return (lambda cons, tps: events.append((name, "assign", sorted(t.partition for t in tps))),
                lambda cons, tps: events.append((name, "revoke", sorted(t.partition for t in tps))))

    a = _rdbatch.BatchConsumer(_conf(broker, group))
    on_a, off_a = recorder("a")
    a.subscribe([topic], on_assign=on_a, on_revoke=off_a)
    deadline = time.monotonic() + 30
    while ("a", "assign", [0, 1, 2, 3]) not in events and time.monotonic() < deadline:
        a.consume(100, 0.2)
    assert events == [("a", "assign", [0, 1, 2, 3])]
    b = _rdbatch.BatchConsumer(_conf(broker, group))
    on_b, off_b = recorder("b")
    b.subscribe([topic], on_assign=on_b, on_revoke=off_b)
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        a.consume(100, 0.1)
        b.consume(100, 0.1)
        if len(events) >= 4 and {n for n, kind, p in events[-2:] if kind == "assign"} == {"a", "b"}:
            break
    a_parts = [p for n, kind, p in events if n == "a" and kind == "assign"][-1]
    b_parts = [p for n, kind, p in events if n == "b" and kind == "assign"][-1]
    assert ("a", "revoke", [0, 1, 2, 3]) in events  # eager protocol: everything revoked first
    assert sorted(a_parts + b_parts) == [0, 1, 2, 3] and a_parts and b_parts, events
    b.close()
    assert events[-1] == ("b", "revoke", b_parts)
    a.close()


def test_exception_in_callback_is_raised_by_consume(broker):
    topic = _topic(broker, 1)

    def boom(cons, tps):
        raise ValueError("on_assign failed")

    c = _rdbatch.BatchConsumer(_conf(broker, f"g-{uuid.uuid4().hex[:6]}"))
    c.subscribe([topic], on_assign=boom)
    try:
        with pytest.raises(ValueError, match="on_assign failed"):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                c.consume(100, 0.2)
        # the assignment still happened (librdkafka needs it to stay in sync with the group)
        deadline = time.monotonic() + 10
        while not c.assignment() and time.monotonic() < deadline:
            c.consume(100, 0.1)
        assert [tp.partition for tp in c.assignment()] == [0]
    finally:
        c.close()


def test_bad_config_raises():
    from confluent_kafka import KafkaException

    with pytest.raises(KafkaException, match="no.such.property"):
        _rdbatch.BatchConsumer({"group.id": "x", "no.such.property": 1})
