"""The pre-aggregation stream worker: raw logs (Kafka) -> windowed metric points (Kafka).

Delivery (at-least-once, idempotent by id)
-----------------------------------------
* Offsets are committed only after the points of every window that used them were acknowledged
  by the broker: per partition the commit is the first offset of the oldest still-open window
  (or the next offset when none is open), and it is committed after ``producer.flush()``
  returned with no delivery error.
* A restart replays from that offset. To rebuild exactly the same windows it also needs what was
  already emitted: per partition ``(closed_before, max_event_time, close_offset)`` is committed
  *before* the offset, as offsets of two side consumer groups (``<group>.state-t`` and
  ``<group>.state-o``) on the same topic/partition (Tansu drops commit metadata, an int64 offset
  it keeps). Replayed lines of emitted windows are skipped, so no window is re-emitted partially.
* Progress for the detect stage: per partition, the start of the oldest open window (or
  ``OPEN_NONE``) is committed as the offset of a third side group, ``<group>.state-open``, in the
  same step (after the flush, before the offsets). Windows before it are published; the detect
  worker merges a window's shares from all partitions once every one has passed it
  (``streams.sources``).
* Every point's id is ``(series, window, partition)``: a replay re-sends identical records and
  downstream drops duplicates by id.
* SIGTERM, and the end of input of a finite run (``max_idle``): stop consuming, flush, commit,
  exit 0. Open windows (not yet passed by event time) are *not* emitted: they would be partial,
  a fake drop downstream; the next run or owner replays them from the committed offset, so a
  backfill fed in chunks gives the windows of one uninterrupted run.

Scale-out: workers in one consumer group share the partitions; windows are per partition. Logs
are keyed by upstream name, so a service's series are complete in one partition; ``global`` points
are partial per partition and are merged downstream with ``preagg.series.rollup(points,
merge_partitions=True)`` (group by series + window, sum/merge).

Consumer: ``streams._rdbatch.BatchConsumer`` (librdkafka's batch API, records grouped by partition
with one bytes object each) when the extension is built, else confluent-kafka's ``Consumer``; both
run the same rebalance callbacks and commits. ``PATROL_PREAGG_CONSUMER=confluent-kafka`` forces the
fallback (benchmarks compare the two).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge

from patrol.models.incidents import service_of
from patrol.preagg import enrich
from patrol.preagg.aggregate import FAST_FORMATS, Aggregator, _fastloop
from patrol.streams.config import Settings
from patrol.streams.app import App, GcPolicy
from patrol.streams.topics import produce_waiting
from patrol.records import DeadLetter
from patrol.streams.topics import ensure_topic

try:
    from patrol.streams import _rdbatch
except ImportError as _exc:  # not built (no C compiler) or librdkafka too old: confluent-kafka's Consumer
    _rdbatch, _RDBATCH_MISSING = None, str(_exc)

log = logging.getLogger("patrol.preagg")

# The group moved on while this member committed (a kill, a stall longer than the session timeout):
# the commit is refused, the partition belongs to another member, which replays from the last
# accepted commit. Nothing is lost (the windows were flushed and their state committed first, so the
# replay skips what was published), so the worker goes on instead of exiting.
GROUP_MOVED_ON = {KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID, KafkaError.REBALANCE_IN_PROGRESS,
                  KafkaError._ASSIGNMENT_LOST}

CONSUMERS = ("rdkafka-batch", "confluent-kafka")

_BIAS = 1 << 31


def encode_state(closed_before: float, max_t: float) -> int:
    """Pack (closed_before, max event time) into one non-negative int64 offset."""
    cb = 0 if closed_before == -math.inf else int(closed_before)
    mt = cb if max_t == -math.inf else int(max_t)
    return (cb << 32) | max(0, min((1 << 32) - 1, mt - cb + _BIAS))


def decode_state(value: int) -> tuple[float, float]:
    cb, d = value >> 32, value & 0xFFFFFFFF
    return (-math.inf if cb == 0 else float(cb)), float(cb + d - _BIAS) if cb else -math.inf



OPEN_NONE = 1 << 62  # state-open offset of a partition with no window open


def service_key(dims: dict[str, str]) -> bytes:
    """Metric points are keyed by service (``namespace/service``, or ``global``): all series of a
    service, and so its incidents, land on one metrics partition and one detect worker."""
    return service_of(dims).encode()


class JobMetrics:
    """Prometheus counters of one worker (own registry, so several jobs can live in one process)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        c = lambda name, doc: Counter(f"patrol_preagg_{name}", doc, registry=self.registry)  # noqa: E731
        self.lines = c("lines", "Log lines consumed")
        self.parse_errors = c("parse_errors", "Lines rejected by the parser")
        self.late = c("late", "Lines later than the allowed lateness")
        self.future = c("future", "Lines too far in the future")
        self.windows = c("windows_emitted", "Windows closed and published")
        self.points = c("points_out", "Metric points produced")
        self.commits = c("commits", "Offset commits after acknowledged windows")
        self.lag = Gauge("patrol_preagg_consumer_lag", "Messages behind the high watermark over owned partitions",
                         registry=self.registry)


@dataclass
class JobResult:
    lines: int = 0
    points: int = 0
    dead_letters: int = 0
    windows: int = 0
    commits: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    reason: str = ""
    cpu_s: float = 0.0
    wall_s: float = 0.0
    extra: dict = field(default_factory=dict)


class PreaggJob:
    """One pre-aggregation worker: a stage run by the shell :class:`streams.app.App`.

    The shell owns the loop, signals, GC, delivery tracking, lag and closing the clients; this class
    implements the hooks: ``start`` (clients), ``on_assign`` (restore window state), ``on_revoke``
    (commit, drop the partition's windows), ``poll`` (a batch into the aggregator, bad lines to the
    DLQ), ``on_idle`` (close windows by idle time; end of input), ``after_turn`` (publish closed
    windows, commit), ``finish`` (end of input or stop) and ``close`` (the side-group consumers).

    Parameters
    ----------
    settings : Settings
        Kafka, topics and ``preagg`` settings (window, lateness, future bound, idle close, format).
    group : str
        Consumer group; workers with the same group share the partitions.
    duration : float, optional
        Stop after this many wall-clock seconds (graceful: flush + commit).
    max_idle : float, optional
        End of input: after this many seconds without lines, publish the windows event time has
        closed, commit and stop (finite runs: tests, benchmarks, backfills). Windows still open
        stay uncommitted for the next run (see :meth:`_end_of_input`).
    metrics_port : int, optional
        Serve Prometheus metrics on this port.
    """

    def __init__(self, settings: Settings, group: str = "patrol-preagg", duration: float | None = None,
                 max_idle: float | None = None, metrics_port: int | None = None, batch: int = 10000,
                 consumer: str | None = None):
        self.s = settings
        self.group = group
        self.duration = duration
        self.max_idle = max_idle
        self.batch = batch
        self.metrics = JobMetrics()
        self.metrics_port = metrics_port
        p = settings.preagg
        self.agg = Aggregator(window_s=p.window_s, lateness_s=p.allowed_lateness_s, max_future_s=p.max_future_s,
                              idle_close_s=p.idle_close_s, fmt=p.log_format,
                              max_templates_per_host=p.max_templates_per_host, default_service=p.default_service)
        if not self.agg.compiled and p.log_format in FAST_FORMATS:
            log.warning("preagg._fastloop is not built: running the %s loop (2-10x slower); "
                        "reinstall with a C compiler (pip install -e .)", self.agg.loop_name)
        else:
            log.info("hot loop: %s", self.agg.loop_name)
        # Start-up, not per window: otherwise the first window close pays ~0.6 s of CPU loading
        # the GeoIP and ua-parser databases while lines queue up behind it.
        enrich.warm()
        self.topic = settings.topics.logs
        self.topics = [self.topic]
        self.lag_gauge = self.metrics.lag
        self._batch_bytes = 0
        self._consume_s = 0.0
        self.consumer = self.producer = None  # created by start(), when the shell runs the stage
        # GC by hand (streams.app.GcPolicy): the confluent-kafka fallback returns thousands of tracked
        # Message objects a batch; automatic collections then ran full passes over the open windows'
        # accumulators (~12 % of process CPU in perf at 60 s windows). The batch consumer makes none.
        self.app = App(self, "preagg", GcPolicy(young_objects=100_000), metrics_port, self.metrics.registry)
        self.consumer_kind = self._pick_consumer(consumer or os.environ.get("PATROL_PREAGG_CONSUMER"))
        self.result = JobResult(extra={"compiled_loop": self.agg.compiled, "hot_loop": self.agg.loop_name,
                                       "consumer": self.consumer_kind})

    @staticmethod
    def _pick_consumer(wanted: str | None) -> str:
        if wanted not in (None, "", "auto", *CONSUMERS):
            raise ValueError(f"unknown consumer {wanted!r}: one of {', '.join(CONSUMERS)} or auto")
        if wanted == "confluent-kafka":
            log.info("consumer: confluent-kafka (requested)")
            return wanted
        if _rdbatch is None:
            if wanted == "rdkafka-batch":
                raise RuntimeError(f"streams._rdbatch is not available: {_RDBATCH_MISSING}")
            log.warning("streams._rdbatch is not available (%s): consuming through confluent-kafka's Message "
                        "objects (slower); reinstall with a C compiler (pip install -e .)", _RDBATCH_MISSING)
            return "confluent-kafka"
        log.info("consumer: rdkafka-batch (streams._rdbatch on librdkafka %s)", _rdbatch.librdkafka_version())
        return "rdkafka-batch"

    # -- setup -----------------------------------------------------------------------------------
    def _clients(self) -> None:
        conf = self.s.kafka.client_config()
        t = self.s.topics
        for role, name in (("logs", t.logs), ("metrics", t.metrics), ("dlq", t.dlq)):
            ensure_topic(conf, name, t.partitions.get(role, 1), {"retention.ms": str(t.retention_ms.get(role, 604800000))})
        cons = {**conf, "enable.auto.commit": False, "auto.offset.reset": "earliest",
                "session.timeout.ms": self.s.kafka.session_timeout_ms, "enable.partition.eof": False}
        # Large fetches and a deep local queue: measured ~1.5x fewer CPU-seconds per message.
        main = {**cons, "group.id": self.group, "fetch.max.bytes": 100 * 2**20,
                "max.partition.fetch.bytes": 25 * 2**20, "queued.min.messages": 1_000_000, "fetch.wait.max.ms": 50}
        self.consumer = _rdbatch.BatchConsumer(main) if self.consumer_kind == "rdkafka-batch" else Consumer(main)
        # Side groups holding the window state per partition (never subscribe, only commit).
        self.state_t = Consumer({**cons, "group.id": f"{self.group}.state-t"})
        self.state_o = Consumer({**cons, "group.id": f"{self.group}.state-o"})
        self.state_open = Consumer({**cons, "group.id": f"{self.group}.state-open"})
        self.producer = Producer({**conf, "linger.ms": 20, "batch.num.messages": 10000,
                                  "queue.buffering.max.messages": 1000000})

    def on_assign(self, consumer, partitions) -> None:
        tps = [TopicPartition(self.topic, p.partition) for p in partitions]
        st = self.state_t.committed(tps, timeout=10)
        so = self.state_o.committed(tps, timeout=10)
        for a, b in zip(st, so):
            if a.offset >= 0 and b.offset >= 0:
                cb, mt = decode_state(a.offset)
                self.agg.restore(a.partition, cb, mt, b.offset - 1)
                log.info("partition %d: resumed (windows before %s emitted up to offset %d)", a.partition, cb, b.offset - 1)
        log.info("assigned %s", [p.partition for p in partitions])

    def on_revoke(self, consumer, partitions) -> None:
        self._commit([p.partition for p in partitions])
        for p in partitions:
            self.agg.drop_partition(p.partition)
        log.info("revoked %s", [p.partition for p in partitions])

    # -- stage hooks (the loop, signals, GC, delivery and closing live in streams.app) -------------
    def run(self) -> JobResult:
        """Consume until SIGTERM, ``duration`` or ``max_idle``; returns counters."""
        self.app.run(self.duration, self.max_idle)
        self.result.reason = self.app.reason
        self.result.cpu_s, self.result.wall_s = self.app.cpu_s, self.app.wall_s
        self.result.extra.update(consume_call_s=self._consume_s, worker_thread_s=self.app.thread_s)
        return self.result

    def request_stop(self, *_args) -> None:
        self.app.request_stop()

    _request_stop = request_stop  # the signal-handler name it had

    @property
    def stop_requested(self) -> bool:
        return self.app.stop_requested

    def start(self) -> None:
        self._clients()

    def poll(self) -> bool:
        tc = time.thread_time()
        groups = self._consume()
        self._consume_s += time.thread_time() - tc  # this thread's CPU inside consume (benchmarks split by it)
        if not groups:
            return False
        now_m, ex = time.monotonic(), self.result.extra
        wall0, cpu0 = self.app.started_wall, self.app.started_cpu
        if "first_msg_wall" not in ex:  # busy-period timing, for benchmarks
            ex["first_msg_wall"], ex["first_msg_cpu"] = now_m - wall0, time.process_time() - cpu0
        self._process(groups, time.time())
        ex["last_msg_wall"], ex["last_msg_cpu"] = time.monotonic() - wall0, time.process_time() - cpu0
        return True

    def on_idle(self, input_ended: bool) -> bool:
        self.agg.tick(time.time())
        # end of input only once something was read: a run started before its input waits for it
        return input_ended and bool(self.agg.parts)

    def after_turn(self) -> None:
        if self.agg.closed:
            self._publish()
            self._commit(list(self.agg.parts))

    def finish(self, reason: str) -> None:
        if reason == "idle":
            self._end_of_input()
        else:
            self._commit(list(self.agg.parts))

    def close(self) -> None:
        for c in (getattr(self, n, None) for n in ("state_t", "state_o", "state_open")):
            if c is not None:
                c.close()

    def _end_of_input(self) -> None:
        """``max_idle`` reached: publish what event time closed, commit, and leave the rest open.

        A window the watermark has not passed may still get lines (the next chunk of a backfill,
        late lines within the allowed lateness), and the window holding the newest line is cut
        short: publishing it would show a fake drop downstream, and would make the next run's
        lines for it late. So open windows are neither published nor committed: the next run
        resumes them from the committed offset, exactly as one uninterrupted run would have."""
        if self.agg.closed:
            self._publish()
        self._commit(list(self.agg.parts))
        left = {p: sorted(st.windows.open) for p, st in self.agg.parts.items() if st.windows.open}
        self.result.extra["left_open"] = {str(p): ws for p, ws in left.items()}
        if left:
            log.info("end of input: windows not passed by event time left open and uncommitted (a later run "
                     "resumes them): %s", {p: [f"{ws}+{self.agg.window_s}s" for ws in w] for p, w in left.items()})

    def _consume(self) -> list[tuple[int, list[bytes], object]]:
        """One batch as ``[(partition, values, offsets)]``, partitions in first-seen order; its
        payload bytes in ``self._batch_bytes``."""
        if self.consumer_kind == "rdkafka-batch":
            groups = self.consumer.consume(self.batch, 0.2)
            self._batch_bytes = self.consumer.last_bytes  # counted in C while grouping
            errors = self.consumer.errors
            if errors:  # per-record errors (partition EOF is already left out)
                for p, off, code, reason in errors:
                    log.warning("consume error: partition %d offset %d: %s (%d)", p, off, reason, code)
                errors.clear()
            return groups
        groups = self._groups(self.consumer.consume(self.batch, 0.2))
        self._batch_bytes = sum(sum(map(len, vals)) for _, vals, _ in groups)
        return groups

    @staticmethod
    def _groups(msgs) -> list[tuple[int, list[bytes], list[int]]]:
        """confluent-kafka's Messages -> ``[(partition, values, offsets)]`` (tombstones as ``b""``)."""
        # map() over the C accessors: ~50 ns per message instead of a Python loop body.
        if any(map(Message.error, msgs)):
            for m in msgs:
                if m.error() is not None and m.error().code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error: %s", m.error())
            msgs = [m for m in msgs if m.error() is None]
        if _fastloop is not None:
            groups = _fastloop.by_partition(msgs)  # same grouping in one C loop
        else:
            ps = list(map(Message.partition, msgs))
            values = list(map(Message.value, msgs))
            offsets = list(map(Message.offset, msgs))
            if ps and ps.count(ps[0]) == len(ps):
                groups = [(ps[0], values, offsets)]
            else:
                groups = []
                for p in dict.fromkeys(ps):
                    idx = [i for i, x in enumerate(ps) if x == p]
                    groups.append((p, [values[i] for i in idx], [offsets[i] for i in idx]))
            if any(v is None for _, vals, _ in groups for v in vals):  # tombstones: not log lines
                groups = [(p, [v or b"" for v in vals], offs) for p, vals, offs in groups]
        return groups

    def _process(self, groups, now: float) -> None:
        # Per batch, not per partition: the counters, the byte count (from the consumer) and one
        # producer poll (delivery callbacks; the DLQ and points are produced asynchronously).
        lines = 0
        for p, vals, offs in groups:
            rejected = self.agg.feed(vals, p, offs, now)
            lines += len(vals)
            if rejected:
                self._dead_letters(rejected, p, vals, offs)
        self.result.lines += lines
        self.result.bytes_in += self._batch_bytes
        self.metrics.lines.inc(lines)
        self.producer.poll(0)

    def _dead_letters(self, rejected, p: int, vals, offs) -> None:
        for r in rejected:
            dl = DeadLetter.of(vals[r.index], r.reason, r.code, self.topic, p, offs[r.index])
            produce_waiting(self.producer, self.s.topics.dlq, dl.to_bytes(), key=str(p).encode(),
                            on_delivery=self.app.delivery)  # a flood of bad lines waits, never raises
            self.result.dead_letters += 1
            {"late": self.metrics.late, "future": self.metrics.future}.get(r.code, self.metrics.parse_errors).inc()

    def _publish(self) -> None:
        topic = self.s.topics.metrics
        for cw in self.agg.drain():
            pts = cw.points()
            for pt in pts:
                raw = pt.to_bytes()
                self.result.bytes_out += len(raw)
                produce_waiting(self.producer, topic, raw, key=service_key(pt.dims), on_delivery=self.app.delivery)
            self.result.points += len(pts)
            self.result.windows += 1
            self.metrics.points.inc(len(pts))
            self.metrics.windows.inc()
        self.producer.poll(0)

    def _commit(self, partitions: list[int]) -> None:
        """Flush, then commit window state and offsets for ``partitions`` (state first: see module doc)."""
        if partitions:
            self.app.commit_after_flush(lambda: self._commit_flushed(partitions))

    def _commit_flushed(self, partitions: list[int]) -> None:
        offs, st, so, sn = [], [], [], []
        for p in partitions:
            cp = self.agg.checkpoint(p)
            if cp is None:
                continue
            off, cb, mt, co = cp
            offs.append(TopicPartition(self.topic, p, off))
            st.append(TopicPartition(self.topic, p, encode_state(cb, mt)))
            so.append(TopicPartition(self.topic, p, co + 1))
            is_open = self.agg.parts[p].windows.open
            sn.append(TopicPartition(self.topic, p, min(is_open) if is_open else OPEN_NONE))
        if not offs:
            return
        self.state_t.commit(offsets=st, asynchronous=False)
        self.state_o.commit(offsets=so, asynchronous=False)
        self.state_open.commit(offsets=sn, asynchronous=False)
        try:
            self.consumer.commit(offsets=offs, asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() not in GROUP_MOVED_ON:
                raise
            log.warning("offset commit refused (%s): the group rebalanced; the partitions' next owner replays "
                        "from the last accepted commit", exc.args[0].str())
            self.result.extra["commits_refused"] = self.result.extra.get("commits_refused", 0) + 1
            return
        self.result.commits += 1
        self.metrics.commits.inc()
