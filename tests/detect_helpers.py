"""Helpers for the detection-stage tests: produce metric points, read topics back, run workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from patrol.models.incidents import service_of
from patrol.streams.config import load_settings
from patrol.streams.topics import create_topics


def settings_for(bootstrap: str, redis_url: str | None, suffix: str, **over):
    """Settings with private anomaly/DLQ topics and Redis prefix, so runs can be compared side by side."""
    s = load_settings(overrides={"kafka.bootstrap_servers": bootstrap, "topics.anomalies": f"anomalies-{suffix}",
                                 "topics.dlq": f"dlq-{suffix}", "redis.key_prefix": f"{suffix}:",
                                 "kafka.session_timeout_ms": 6000, "redis.url": redis_url, **over})
    create_topics(s)
    return s


def worker_env(s) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATROL_")}
    env.update({"PATROL_KAFKA__BOOTSTRAP_SERVERS": s.kafka.bootstrap_servers, "PATROL_TOPICS__ANOMALIES": s.topics.anomalies,
                "PATROL_TOPICS__DLQ": s.topics.dlq, "PATROL_TOPICS__METRICS": s.topics.metrics,
                "PATROL_REDIS__KEY_PREFIX": s.redis.key_prefix, "PATROL_KAFKA__SESSION_TIMEOUT_MS": "6000"})
    if s.redis.url is not None:
        env["PATROL_REDIS__URL"] = s.redis.url.get_secret_value()
    return env


def start_worker(s, group: str, *extra: str, log: Path | None = None) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("patrol")
    out = open(log, "ab") if log else subprocess.DEVNULL
    return subprocess.Popen([str(exe), "run", "detect", "--group", group, *extra], env=worker_env(s),
                            stdout=out, stderr=out)


def produce_points(bootstrap: str, topic: str, points, raw: list[bytes] = ()) -> None:
    """Metric points keyed by service, so one service's series share a partition (and an owner)."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for pt in points:
        p.produce(topic, pt.to_bytes(), key=service_of(pt.dims).encode())
    for r in raw:
        p.produce(topic, r, key=b"garbage")
    assert p.flush(30) == 0


def read_topic(bootstrap: str, topic: str, with_meta: bool = False) -> list:
    """Every record of ``topic`` right now: assign every partition from the start and read each to
    its end-of-partition event (not to the ListOffsets end, which Tansu under-reports).
    ``with_meta`` returns ``(partition, key, record)`` tuples."""
    from confluent_kafka import OFFSET_BEGINNING, KafkaError

    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False,
                  "enable.partition.eof": True})
    parts = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in md.topics[topic].partitions]
    c.assign(parts)
    out, pending = [], {p.partition for p in parts}
    deadline = time.monotonic() + 60
    while pending and time.monotonic() < deadline:
        for m in c.consume(1000, 0.5):
            if m.error() is None:
                rec = json.loads(m.value())
                out.append((m.partition(), m.key(), rec) if with_meta else rec)
            elif m.error().code() == KafkaError._PARTITION_EOF:
                pending.discard(m.partition())
    c.close()
    assert not pending, f"could not read {topic} to its end"
    return out


def anomaly_set(records: list[dict]) -> set[tuple]:
    """(id, series, window, observed, expected, score) of every anomaly; floats to 6 significant digits
    because numpy's SIMD exp/log may differ in the last bit with the batch's shape."""
    return {(r["id"], r["series"], r["window_start"], float(f"{r['observed']:.6g}"), float(f"{r['expected']:.6g}"),
             float(f"{r['score']:.6g}")) for r in records if r["kind"] == "anomaly"}
