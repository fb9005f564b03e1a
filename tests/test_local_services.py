"""The embedded broker and the local redis-server start, serve, and stop."""

import redis
from confluent_kafka import Consumer, Producer

from patrol.sim.broker import EmbeddedBroker
from patrol.sim.redis_server import LocalRedis
from patrol.streams.topics import ensure_topic


def test_local_redis_serves_and_stops():
    with LocalRedis() as r:
        client = redis.Redis.from_url(r.url)
        client.set("k", "v")
        assert client.get("k") == b"v"
        proc = r._proc
    assert proc.poll() is not None  # stopped


def test_redis_fixture(redis_server):
    assert redis.Redis.from_url(redis_server.url).ping()


def test_embedded_broker_round_trip_with_consumer_group():
    with EmbeddedBroker() as b:
        conf = {"bootstrap.servers": b.bootstrap}
        ensure_topic(conf, "rt", 2, {"retention.ms": "60000"})
        ensure_topic(conf, "rt", 2)  # idempotent
        p = Producer(conf)
        for i in range(1000):
            p.produce("rt", key=str(i % 7), value=str(i).encode())
        assert p.flush(10) == 0
        c = Consumer({**conf, "group.id": "g", "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
        c.subscribe(["rt"])
        seen = set()
        for _ in range(100):
            for m in c.consume(1000, 0.5):
                assert m.error() is None
                seen.add(int(m.value()))
            if len(seen) == 1000:
                break
        c.close()
        assert seen == set(range(1000))
        proc = b._proc
    assert proc.poll() is not None and not b.alive()
