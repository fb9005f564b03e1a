"""The Kafka sink against a real embedded broker: every line arrives, keyed by service."""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

from patrol.sim.generator import generate_lines, write_kafka


def _create(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})  # must outlive the futures
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)


def _consume(bootstrap: str, topic: str, n: int, timeout: float = 40.0) -> list:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex[:8]}",
                  "session.timeout.ms": 6000, "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got, deadline = [], time.monotonic() + timeout
    try:
        while len(got) < n and time.monotonic() < deadline:
            for m in c.consume(2000, 0.5):
                assert m.error() is None, m.error()
                got.append((m.partition(), m.key(), m.value()))
    finally:
        c.close()
    return got


def test_write_kafka_delivers_every_line_keyed_by_service(kafka):
    broker = kafka  # the session's embedded Tansu broker (tests/conftest.py): EmbeddedBroker()
    topic = "gen-" + uuid.uuid4().hex[:8]
    _create(broker.bootstrap, topic, 4)
    sent = list(generate_lines(n=20_000, seed=21, start="2026-01-05T18:00:00Z", n_clients=2000))
    res = write_kafka(broker.bootstrap, topic, sent)
    assert res.errors == 0 and res.sent == 20_000
    got = _consume(broker.bootstrap, topic, 20_000)
    assert len(got) == 20_000
    assert Counter((k, v) for _, k, v in got) == Counter((k, line) for _, k, line in sent)
    parts = defaultdict(set)
    for p, k, _ in got:
        parts[k].add(p)
    assert all(len(ps) == 1 for ps in parts.values()), "one service's lines share a partition"
    assert len({next(iter(ps)) for ps in parts.values()}) > 1, "services spread over partitions"
    for _, k, v in got[:200]:
        assert b" [" + k + b"] [] " in v


def test_write_kafka_counts_delivery_errors():
    # Nothing listens on this port: every message must come back as a counted failure, not vanish.
    res = write_kafka("127.0.0.1:1", "ingress-logs", generate_lines(n=50, seed=1, n_clients=100),
                      config={"message.timeout.ms": 500})
    assert res.sent == 50
    assert res.errors == 50 and res.first_error
