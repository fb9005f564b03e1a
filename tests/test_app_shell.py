"""The stage shell (streams.app.App) through a trivial copy stage on the real broker: how it stops
(end of input, request_stop from another thread, SIGTERM), that signal handlers are restored, and
that offsets are committed only after the producer acknowledged everything before them."""

from __future__ import annotations

import signal
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client import CollectorRegistry, Gauge

from patrol.streams.app import App, DeliveryFailed
from patrol.streams.topics import ensure_topic


class CopyStage:
    """Copies every record of ``src`` to ``dst`` and commits after each batch. A record ``b"bad"``
    goes to a topic that does not exist, which the producer reports as a delivery error (timed out)."""

    def __init__(self, bootstrap: str, src: str, dst: str, group: str, on_input=None):
        self.conf = {"bootstrap.servers": bootstrap}
        self.topics, self.dst, self.group = [src], dst, group
        self.lag_gauge = Gauge("shell_test_lag", "lag", registry=CollectorRegistry())
        self.app = App(self, "copy")
        self.consumer = self.producer = None
        self.on_input = on_input
        self.copied, self.pending, self.closed, self.finished = 0, {}, False, ""

    def start(self):
        self.consumer = Consumer({**self.conf, "group.id": self.group, "enable.auto.commit": False,
                                  "auto.offset.reset": "earliest"})
        self.producer = Producer({**self.conf, "message.timeout.ms": 3000, "allow.auto.create.topics": False})

    def on_assign(self, consumer, partitions):
        pass

    def on_revoke(self, consumer, partitions):
        pass

    def poll(self) -> bool:
        msgs = [m for m in self.consumer.consume(100, 0.1) if m.error() is None]
        for m in msgs:
            dst = f"{self.dst}-missing" if m.value() == b"bad" else self.dst
            self.producer.produce(dst, m.value(), on_delivery=self.app.delivery)
            self.pending[(m.topic(), m.partition())] = m.offset() + 1
            self.copied += 1
        if msgs and self.on_input:
            self.on_input(self)
        return bool(msgs)

    def on_idle(self, input_ended: bool) -> bool:
        return input_ended and self.copied > 0  # the group join takes longer than max_idle on Tansu

    def after_turn(self):
        if self.pending:
            offsets = [TopicPartition(t, p, o) for (t, p), o in self.pending.items()]
            self.app.commit_after_flush(lambda: self.consumer.commit(offsets=offsets, asynchronous=False))
            self.pending.clear()

    def finish(self, reason: str):
        self.finished = reason
        self.after_turn()

    def close(self):
        self.closed = True


def topics(kafka, n: int, values=None) -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    src, dst = f"shell-in-{tag}", f"shell-out-{tag}"
    conf = {"bootstrap.servers": kafka.bootstrap}
    ensure_topic(conf, src, 1)
    ensure_topic(conf, dst, 1)
    p = Producer(conf)
    for v in values or [f"r{i}".encode() for i in range(n)]:
        p.produce(src, v)
    assert p.flush(30) == 0
    return src, dst


def committed(kafka, group: str, topic: str) -> int:
    c = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": group})
    try:
        return c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
    finally:
        c.close()


def read_all(kafka, topic: str, n: int, timeout: float = 30) -> list[bytes]:
    c = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    out, deadline = [], time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        out += [m.value() for m in c.consume(100, 0.5) if m.error() is None]
    c.close()
    return out


def test_end_of_input_after_max_idle_commits_what_was_copied(kafka):
    src, dst = topics(kafka, 50)
    st = CopyStage(kafka.bootstrap, src, dst, f"g-{uuid.uuid4().hex[:6]}")
    assert st.app.run(max_idle=1.0) == "idle"
    assert (st.copied, st.finished, st.closed) == (50, "idle", True)
    assert committed(kafka, st.group, src) == 50
    assert sorted(read_all(kafka, dst, 50)) == sorted(f"r{i}".encode() for i in range(50))
    assert st.app.wall_s > 0 and st.app.cpu_s > 0


def test_request_stop_from_another_thread(kafka):
    src, dst = topics(kafka, 10)
    st = CopyStage(kafka.bootstrap, src, dst, f"g-{uuid.uuid4().hex[:6]}")
    before = signal.getsignal(signal.SIGTERM)
    reasons = []
    t = threading.Thread(target=lambda: reasons.append(st.app.run()))  # no duration, no max_idle
    t.start()
    deadline = time.monotonic() + 60
    while st.copied < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    st.app.request_stop()
    t.join(60)
    assert not t.is_alive() and reasons == ["signal"]
    assert signal.getsignal(signal.SIGTERM) is before  # off the main thread, handlers are not touched
    assert committed(kafka, st.group, src) == 10


def test_sigterm_stops_and_handlers_are_restored(kafka):
    src, dst = topics(kafka, 5)
    st = CopyStage(kafka.bootstrap, src, dst, f"g-{uuid.uuid4().hex[:6]}",
                   on_input=lambda s: signal.raise_signal(signal.SIGTERM))
    before = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))
    assert st.app.run() == "signal"
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    assert committed(kafka, st.group, src) == 5  # the stop flushed and committed


def test_no_commit_when_a_record_was_not_acknowledged(kafka):
    src, dst = topics(kafka, 0, values=[b"ok", b"bad", b"ok2"])
    st = CopyStage(kafka.bootstrap, src, dst, f"g-{uuid.uuid4().hex[:6]}")
    with pytest.raises(DeliveryFailed):
        st.app.run(max_idle=5.0)
    assert st.app.delivery.errors  # the missing topic, reported by the delivery callback
    assert committed(kafka, st.group, src) <= 1  # never past the unacknowledged record: a restart replays it
    assert st.closed
