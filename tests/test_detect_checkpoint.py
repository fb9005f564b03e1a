"""The periodic checkpoint writes on a background thread; offsets may be committed only once the
whole state copy is in Redis, and only up to the points the copy covers."""

import threading
import time

import redis
from confluent_kafka import TopicPartition

from benchmarks.metric_stream import metric_windows
from detect_helpers import produce_points, settings_for
from patrol.models.store import StateStore
from patrol.streams.detect_job import DetectWorker


class GatedStore(StateStore):
    """A store whose writes wait for the test to open the gate."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.entered = threading.Event()
        self.gate = threading.Event()

    def checkpoint_fields(self, records, pause_s=0.0, hurry=None):
        self.entered.set()
        assert self.gate.wait(60), "the test never opened the gate"
        return super().checkpoint_fields(records, pause_s, hurry)


def _consume(w: DetectWorker, until_points: int, timeout: float = 60) -> None:
    """Consume and score ``until_points`` points (scored once every pre-aggregation partition closed
    their window: here, no logs, once the worker read back the fence it wrote after them)."""
    deadline = time.monotonic() + timeout
    while (w.stats.points < until_points or w.partials.n_held) and time.monotonic() < deadline:
        msgs = w.consumer.consume(500, 0.2)
        if msgs:
            w._handle(msgs)
        else:
            w._release()
    assert w.stats.points == until_points and not w.partials.n_held


def _committed(w: DetectWorker, topic: str) -> int:
    parts = [TopicPartition(topic, p) for p in range(6)]
    return sum(max(tp.offset, 0) for tp in w.consumer.committed(parts, timeout=10))


def _series_keys(url: str, prefix: str) -> set[bytes]:
    return {k for k in redis.Redis.from_url(url).smembers(f"{prefix}series") if not k.startswith(b"__")}


def test_commit_waits_for_the_state_copy_and_covers_only_its_points(kafka, redis_server):
    s = settings_for(kafka.bootstrap, redis_server.url, "inflight", **{"topics.metrics": "metrics-inflight"})
    windows = metric_windows(3, 40, seed=4)
    first = [p for w in windows[:20] for p in w]
    later = [p for w in windows[20:] for p in w]
    produce_points(kafka.bootstrap, s.topics.metrics, first)
    store = GatedStore(redis_server.url, s.redis.key_prefix)
    w = DetectWorker(s, group="inflight", store=store, checkpoint_s=3600)
    try:
        w.consumer.subscribe([s.topics.metrics])
        _consume(w, len(first))
        consumed = sum(w.position.values())  # the points, and the fences the worker read back
        assert w.checkpoint(wait=False)  # copy taken, write handed to the writer thread
        assert store.entered.wait(10)
        assert not w.pool.dirty, "the copy takes the dirty set"
        # points consumed while the write is in flight belong to the next checkpoint
        produce_points(kafka.bootstrap, s.topics.metrics, later)
        _consume(w, len(first) + len(later))
        assert w._finish_checkpoint(wait=False)  # still writing: returns at once ...
        assert w._inflight is not None
        assert _committed(w, s.topics.metrics) == 0  # ... and nothing is committed
        assert not _series_keys(redis_server.url, s.redis.key_prefix)
        store.gate.set()
        assert w._finish_checkpoint(wait=True)
        assert _committed(w, s.topics.metrics) == consumed  # the offsets noted at the copy, not later
        assert len(_series_keys(redis_server.url, s.redis.key_prefix)) == 6
        assert w.pool.dirty, "series that learned after the copy wait for the next checkpoint"
        assert w.checkpoint()  # a synchronous one covers the rest
        assert _committed(w, s.topics.metrics) == sum(w.position.values()) > consumed
    finally:
        store.gate.set()
        w.consumer.close()
        w.labels_consumer.close()
        w._writer.shutdown(wait=True)


def test_a_redis_restart_writes_every_series_again(kafka):
    """Checkpoints write the series that changed. After Redis restarts empty, the others would be
    missing from Redis for good (a later owner starts them cold): the worker notices the restart (a new
    run_id) and writes every series it owns again."""
    from patrol.sim.redis_server import LocalRedis

    with LocalRedis() as first:
        s = settings_for(kafka.bootstrap, first.url, "restart", **{"topics.metrics": "metrics-restart"})
        windows = metric_windows(3, 30, seed=6)
        points = [p for w in windows for p in w]
        produce_points(kafka.bootstrap, s.topics.metrics, points)
        store = StateStore(first.url, s.redis.key_prefix)
        w = DetectWorker(s, group="restart", store=store, checkpoint_s=3600)
        try:
            w.consumer.subscribe([s.topics.metrics])
            _consume(w, len(points))
            assert w.checkpoint()
            assert len(_series_keys(first.url, s.redis.key_prefix)) == 6
            port = first.port
            first.stop()
            with LocalRedis(port=port) as second:  # the same address, a new empty server
                assert not _series_keys(second.url, s.redis.key_prefix)
                assert not w.pool.dirty  # nothing changed since the last checkpoint ...
                assert w.checkpoint()  # ... so this one writes nothing, but sees the new run_id
                assert w.checkpoint()  # and the next writes every series again
                assert len(_series_keys(second.url, s.redis.key_prefix)) == 6
        finally:
            w.consumer.close()
            w.labels_consumer.close()
            w._writer.shutdown(wait=True)
