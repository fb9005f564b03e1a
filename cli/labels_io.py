"""Kafka reading and writing for ``patrol label``: anomalies, labels and a series' metric points.

The CLI reads a topic as a bounded snapshot: it assigns every partition (no consumer group, so no
slow group join and no committed offsets left behind), captures where each partition ends, and
stops there, so a command never hangs on an idle topic nor runs forever on a busy one.

Where a partition ends: the high watermark from ListOffsets at start, raised to the high watermark
carried by the first fetch response of that partition. Why both: a real Kafka gives the right
value from ListOffsets, but Tansu (the embedded broker) answers ListOffsets with the base offset of
the last record batch + 1, which under-counts when that batch holds several records; the fetch
response's watermark is right on both. A partition-EOF event ends a partition as well.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Iterator

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from patrol.records import Anomaly, Incident, Label, MetricPoint, Record, RecordError, decode

BATCH = 1000
# Reads at least this big get a progress bar on stderr; small ones stay silent.
PROGRESS_MIN = 5000


class LabelIOError(RuntimeError):
    """A topic could not be read (missing topic, broker unreachable, stalled read)."""


@dataclass
class ReadStats:
    """What a read saw: records kept, records that did not decode (skipped, counted)."""

    topic: str
    read: int = 0
    bad: int = 0
    first_bad: str | None = None


def _consumer(conf: dict) -> Consumer:
    # group.id is required by librdkafka even with assign(); a unique one so nothing is shared.
    return Consumer({**conf, "group.id": f"patrol-label-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
                     "enable.partition.eof": True, "auto.offset.reset": "earliest",
                     # Short fetch waits: an idle partition answers (EOF) in ~0.1 s instead of 0.5 s.
                     "fetch.wait.max.ms": 100})


def _partitions(consumer: Consumer, topic: str, timeout: float) -> list[int]:
    try:
        md = consumer.list_topics(topic, timeout=timeout)
    except KafkaException as exc:
        raise LabelIOError(f"cannot reach the Kafka broker to read {topic!r}: {exc.args[0]}") from None
    meta = md.topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        reason = f" ({meta.error.str()})" if meta is not None and meta.error is not None else ""
        raise LabelIOError(f"topic {topic!r} does not exist{reason}; create it with `patrol topics create`")
    return sorted(meta.partitions)


def read_messages(conf: dict, topic: str, *, start_ms: int | None = None,
                  stop: Callable[[Message], bool] | None = None, timeout: float = 10.0, idle_timeout: float = 20.0,
                  console: Console | None = None, what: str | None = None) -> Iterator[Message]:
    """Yield the messages of every partition of ``topic`` up to where each partition ended at start.

    Parameters
    ----------
    conf : dict
        librdkafka client properties (``settings.kafka.client_config()``).
    topic : str
        Topic to read.
    start_ms : int, optional
        Start each partition at the first message with a timestamp at or after this (epoch ms);
        from the beginning when omitted or when the broker cannot answer.
    stop : callable, optional
        ``stop(msg)`` true ends that partition early (e.g. past a time range); the message is dropped.
    idle_timeout : float
        Seconds without any event from the broker after which the read fails instead of hanging.
    console : rich Console, optional
        Where the progress bar goes (stderr); shown for large reads only.
    """
    consumer = _consumer(conf)
    try:
        parts = _partitions(consumer, topic, timeout)
        starts: dict[int, int] = {}
        ends: dict[int, int] = {}
        for p in parts:
            lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            starts[p], ends[p] = lo, hi
        if start_ms is not None:
            try:
                found = consumer.offsets_for_times([TopicPartition(topic, p, start_ms) for p in parts], timeout=timeout)
                for tp in found:
                    # -1: no message at/after the time in this partition -> nothing to read there
                    starts[tp.partition] = ends[tp.partition] if tp.offset < 0 else max(starts[tp.partition], tp.offset)
            except KafkaException:
                pass  # read from the beginning: slower, never wrong
        pending = set(parts)
        consumer.assign([TopicPartition(topic, p, starts[p]) for p in parts])
        confirmed: set[int] = set()
        total = sum(max(0, ends[p] - starts[p]) for p in parts)
        label = what or topic
        progress = Progress(TextColumn("reading {task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=console or Console(stderr=True), transient=True,
                            disable=total < PROGRESS_MIN)
        last_event = time.monotonic()
        with progress:
            task = progress.add_task(label, total=total)
            while pending:
                msgs = consumer.consume(BATCH, 0.1)  # returns early only when BATCH arrived
                if not msgs:
                    if time.monotonic() - last_event > idle_timeout:
                        raise LabelIOError(f"reading {topic!r} stalled: no data from the broker for {idle_timeout:.0f} s "
                                             f"(partitions still open: {sorted(pending)})")
                    continue
                last_event = time.monotonic()
                for m in msgs:
                    p = m.partition()
                    if p not in pending:
                        continue
                    if m.error() is not None:
                        if m.error().code() == KafkaError._PARTITION_EOF:
                            pending.discard(p)
                            continue
                        raise LabelIOError(f"reading {topic!r} partition {p}: {m.error().str()}")
                    if p not in confirmed:
                        # The fetch response's watermark fixes an under-counting ListOffsets (see module doc).
                        _, cached_hi = consumer.get_watermark_offsets(TopicPartition(topic, p), cached=True)
                        if cached_hi > ends[p]:
                            progress.update(task, total=total + cached_hi - ends[p])
                            total += cached_hi - ends[p]
                            ends[p] = cached_hi
                        confirmed.add(p)
                    off = m.offset()
                    if off >= ends[p] or (stop is not None and stop(m)):
                        pending.discard(p)
                        continue
                    progress.advance(task)
                    yield m
                    if off >= ends[p] - 1:
                        pending.discard(p)
    finally:
        consumer.close()


def read_records(conf: dict, topic: str, kinds: tuple[type[Record], ...], stats: ReadStats | None = None,
                 **kw) -> list:
    """Decoded records of the given kinds from ``topic``, in read order (offset order per partition).

    Records that do not decode, or are of another kind, are counted in ``stats`` and skipped.
    """
    stats = stats if stats is not None else ReadStats(topic)
    out = []
    for m in read_messages(conf, topic, **kw):
        try:
            rec = decode(m.value())
            if not isinstance(rec, kinds):
                raise RecordError(f"unexpected {rec.KIND} record on this topic", "wrong_kind")
            out.append(rec)
            stats.read += 1
        except RecordError as exc:
            stats.bad += 1
            stats.first_bad = stats.first_bad or f"partition {m.partition()} offset {m.offset()}: {exc.reason}"
    return out


def read_anomalies(conf: dict, topic: str, stats: ReadStats | None = None,
                   **kw) -> tuple[dict[str, Anomaly], dict[str, Incident]]:
    """Anomalies and incidents (both live on the anomaly topic), each by id, the last record winning:
    a replayed detector republishes an anomaly under the same id, and an incident's later events
    (updated, resolved) supersede its earlier ones (same key, so same partition, in order)."""
    anomalies: dict[str, Anomaly] = {}
    incidents: dict[str, Incident] = {}
    for rec in read_records(conf, topic, (Anomaly, Incident), stats, what=f"anomalies ({topic})", **kw):
        (anomalies if isinstance(rec, Anomaly) else incidents)[rec.id] = rec
    return anomalies, incidents


def read_labels(conf: dict, topic: str, stats: ReadStats | None = None, **kw) -> list[Label]:
    """Labels in topic order: partition by partition, offsets ascending (a label's anomaly is its key,
    so all labels of one anomaly are in one partition and keep their order)."""
    msgs = list(read_messages(conf, topic, what=f"labels ({topic})", **kw))
    msgs.sort(key=lambda m: (m.partition(), m.offset()))
    stats = stats if stats is not None else ReadStats(topic)
    out = []
    for m in msgs:
        try:
            out.append(decode(m.value(), expect=Label))
            stats.read += 1
        except RecordError as exc:
            stats.bad += 1
            stats.first_bad = stats.first_bad or f"partition {m.partition()} offset {m.offset()}: {exc.reason}"
    return out


# Metric points are produced a little after their window closes; events may be up to
# preagg.max_future_s ahead. A generous slack on the timestamp seek keeps both cases inside the read.
SEEK_SLACK = timedelta(minutes=15)


def read_series(conf: dict, topic: str, series: str, start: datetime, end: datetime,
                stats: ReadStats | None = None, **kw) -> list[MetricPoint]:
    """Metric points of one series with ``start <= window_start <= end``, sorted by time.

    Seeks by message timestamp to ``start`` minus a slack (a backfill's messages are newer than their
    windows, so the seek only lands earlier: safe), and ends a partition at the first point *of this
    series* whose window starts after ``end`` plus the slack: one series' points go to one partition
    in window order, so the rest of a week-long metrics topic is not read for one chart.
    """
    # Not filtered by message key: producers key metric points by series or by service (so one
    # service's series share a partition). A byte search for the series as it appears in the JSON
    # skips other series' points without decoding them; the decoded record is then checked exactly.
    needle = json.dumps(series, ensure_ascii=False)[1:-1].encode()
    stop_at = end + SEEK_SLACK
    stats = stats if stats is not None else ReadStats(topic)
    decoded: dict[tuple[int, int], MetricPoint] = {}

    def mine(m: Message) -> MetricPoint | None:
        if needle not in (m.value() or b""):
            return None
        try:
            rec = decode(m.value(), expect=MetricPoint)
        except RecordError:
            stats.bad += 1
            return None
        return rec if rec.series == series else None

    def past_end(m: Message) -> bool:
        rec = mine(m)
        if rec is None:
            return False
        if rec.window_start > stop_at:
            return True
        decoded[(m.partition(), m.offset())] = rec  # keep it: the loop below takes it without decoding again
        return False

    points: dict[str, MetricPoint] = {}
    for m in read_messages(conf, topic, start_ms=int((start - SEEK_SLACK).timestamp() * 1000), stop=past_end,
                           what=f"metrics ({topic})", **kw):
        rec = decoded.pop((m.partition(), m.offset()), None)
        if rec is None:
            continue
        stats.read += 1
        if start <= rec.window_start <= end:
            points[rec.id] = rec
    return sorted(points.values(), key=lambda p: p.window_start)


def publish_labels(conf: dict, topic: str, labels: list[Label], timeout: float = 30.0) -> None:
    """Produce labels keyed by anomaly id (the compaction key) and wait for every delivery.

    Raises
    ------
    LabelIOError
        When any label was not acknowledged by the broker (the message says how many and why).
    """
    producer = Producer({**conf, "enable.idempotence": False, "acks": "all"})
    errors: list[str] = []

    def delivered(err, msg):
        if err is not None:
            errors.append(err.str())

    for label in labels:
        producer.produce(topic, key=label.anomaly_id.encode(), value=label.to_bytes(), on_delivery=delivered)
        producer.poll(0)
    left = producer.flush(timeout)
    if left:
        raise LabelIOError(f"{left} of {len(labels)} labels not delivered to {topic!r} within {timeout:.0f} s")
    if errors:
        raise LabelIOError(f"{len(errors)} of {len(labels)} labels rejected by the broker on {topic!r}: {errors[0]}")
