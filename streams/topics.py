"""Topic layout and idempotent creation with explicit configs."""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from .config import Settings


@dataclass(frozen=True)
class TopicSpec:
    role: str
    name: str
    partitions: int
    config: dict[str, str]


# Why these cleanup policies: labels are keyed by anomaly id and the latest verdict wins, so
# compaction keeps the full training set small; everything else is an append-only stream.
CLEANUP = {"logs": "delete", "metrics": "delete", "anomalies": "delete", "labels": "compact", "dlq": "delete"}


def produce_waiting(producer, topic: str, value: bytes, **kwargs) -> None:
    """``producer.produce`` that waits while librdkafka's local queue is full (serving delivery
    reports so it drains) instead of raising ``BufferError``: bulk writers outrun the broker."""
    while True:
        try:
            producer.produce(topic, value, **kwargs)
            return
        except BufferError:
            producer.poll(0.05)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    t = settings.topics
    specs = []
    for role, name in t.roles().items():
        specs.append(TopicSpec(
            role=role, name=name, partitions=t.partitions.get(role, 1),
            config={"retention.ms": str(t.retention_ms.get(role, 7 * 24 * 3600 * 1000)),
                    "cleanup.policy": CLEANUP[role]},
        ))
    return specs


@dataclass
class TopicResult:
    name: str
    status: str  # "created" | "exists" | "error"
    detail: str = ""


def create_topics(settings: Settings, timeout: float = 15.0) -> list[TopicResult]:
    """Create every topic; existing ones are reported as ``exists`` (idempotent)."""
    admin = AdminClient(settings.kafka.client_config())
    specs = topic_specs(settings)
    new = [NewTopic(s.name, num_partitions=s.partitions, replication_factor=settings.topics.replication_factor,
                    config=s.config) for s in specs]
    futures = admin.create_topics(new, request_timeout=timeout, operation_timeout=timeout)
    results = []
    for s in specs:
        try:
            futures[s.name].result(timeout)
            results.append(TopicResult(s.name, "created", f"{s.partitions} partitions, {s.config}"))
        except KafkaException as exc:
            err = exc.args[0]
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                results.append(TopicResult(s.name, "exists"))
            else:
                results.append(TopicResult(s.name, "error", str(err)))
        except TimeoutError:  # concurrent.futures.TimeoutError is TimeoutError on 3.11
            results.append(TopicResult(s.name, "error", f"no answer from {settings.kafka.bootstrap_servers} within {timeout:g}s"))
    return results


def ensure_topic(bootstrap_conf: dict, name: str, partitions: int, config: dict[str, str] | None = None,
                 timeout: float = 15.0) -> None:
    """Create one topic if missing (used by benchmarks and tests with private topic names)."""
    admin = AdminClient(bootstrap_conf)
    fut = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
                              request_timeout=timeout)[name]
    try:
        fut.result(timeout)
    except KafkaException as exc:
        err = exc.args[0]
        if not (isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS):
            raise


@dataclass
class TopicRow:
    role: str
    name: str
    partitions: int  # 0 when the topic does not exist
    messages: int


def watermarks(conf: dict, partitions: list[tuple[str, int]], timeout: float = 10.0) -> dict[tuple[str, int], tuple[int, int]]:
    """True (low, high) offsets per partition.

    Tansu answers ListOffsets with the base offset of the partition's last *batch* + 1, so a
    partition holding one batch of 10 records reports a high watermark of 1. Fetch responses carry
    the right one: read from just before the reported end to the end (at most one batch per
    partition) and take the high watermark the fetch returned. On Apache Kafka the reported end is
    already right and this reads at most one record per partition.
    """
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    c = Consumer({**conf, "group.id": "patrol-watermarks", "enable.auto.commit": False, "enable.partition.eof": True})
    out: dict[tuple[str, int], tuple[int, int]] = {}
    try:
        assign = []
        for topic, p in partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            out[(topic, p)] = (lo, hi)
            if hi > lo:
                assign.append(TopicPartition(topic, p, max(lo, hi - 1)))
        if assign:
            c.assign(assign)
            pending = {(tp.topic, tp.partition) for tp in assign}
            deadline = time.monotonic() + timeout
            while pending and time.monotonic() < deadline:
                for m in c.consume(10000, 0.2):
                    if m.error() is not None and m.error().code() == KafkaError._PARTITION_EOF:
                        pending.discard((m.topic(), m.partition()))
            for tp in assign:
                lo, hi = out[(tp.topic, tp.partition)]
                out[(tp.topic, tp.partition)] = (lo, max(hi, c.get_watermark_offsets(tp, cached=True)[1]))
    finally:
        c.close()
    return out


def describe_topics(settings: Settings, timeout: float = 10.0) -> list[TopicRow]:
    """Partitions and message counts (sum of high - low watermarks) of the project's topics."""
    conf = settings.kafka.client_config()
    md = AdminClient(conf).list_topics(timeout=timeout)
    present = {role: (name, md.topics.get(name)) for role, name in settings.topics.roles().items()}
    parts = [(name, p) for name, meta in present.values() if meta is not None and meta.error is None
             for p in meta.partitions]
    marks = watermarks(conf, parts, timeout)
    rows = []
    for role, (name, meta) in present.items():
        if meta is None or meta.error is not None:
            rows.append(TopicRow(role, name, 0, 0))
            continue
        total = sum(max(0, hi - lo) for (t, _p), (lo, hi) in marks.items() if t == name)
        rows.append(TopicRow(role, name, len(meta.partitions), total))
    return rows


def consumer_lag(consumer) -> int:
    """Messages behind the end, summed over the consumer's assigned partitions.

    The ends come from fetch responses (``cached=True``): Tansu's ListOffsets under-reports them.
    """
    lag = 0
    for tp in consumer.position(consumer.assignment()):
        hi = consumer.get_watermark_offsets(tp, cached=True)[1]
        if tp.offset >= 0 and hi >= 0:
            lag += max(0, hi - tp.offset)
    return lag
