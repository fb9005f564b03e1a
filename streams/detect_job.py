"""Detection stage: ``ingress-metrics`` → per-series detectors → ``ingress-anomalies``.

Why confluent-kafka and not Faust here: Faust measured ~14k events/s on one core on this machine
kind, below the 20k points/s/core this stage must sustain; a batch consume loop with the models
in a plain dict keeps the per-point overhead to the detector itself. Faust's missing pieces are
built small: state in Redis (``models.store``), commits after checkpoints, rebalance callbacks.

Shares: every point is held per (series, window) until each pre-aggregation (logs) partition has
closed its window, then the shares are merged and scored once (``models.partials``; when a window
is complete: ``streams.sources`` and :meth:`DetectWorker._read_progress`). A share after its window
was scored is dead-lettered as ``late_partial``. Held points' offsets are not committed.

Delivery: at-least-once. Offsets are committed only after (1) every anomaly produced from the
points before them is acknowledged by the broker and (2) the detector states that learned those
points are checkpointed to Redis. A crash replays from the last commit; replayed windows are
recognised per series and neither learned nor published twice; anomaly ids are deterministic.

Checkpoints without stalling the loop: at checkpoint time T the loop flushes the producer (all
anomalies so far acknowledged), copies the dirty states in bulk (``SeriesPool.snapshot_dirty``),
notes the offsets consumed so far, and hands the copy to one writer thread, which serialises it
and writes it to Redis. Only when the writer reports every record of that copy in Redis does the
loop commit the offsets noted at T. Points consumed after T are in neither the copy nor the
commit: their series are dirty again and go with the next checkpoint. One checkpoint is in flight
at a time; revoke and shutdown wait for it and then checkpoint synchronously before committing.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from operator import attrgetter

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from prometheus_client import Histogram

from patrol.models.incidents import Incident as OpenIncident
from patrol.models.incidents import IncidentTracker
from patrol.models import alerting
from patrol.models.partials import PartialMerger, Ready
from patrol.models.pool import Outcome, SeriesPool, Snapshot
from patrol.models.store import WRITE_CHUNK, SeriesState, StateStore

from .app import App, GcPolicy
from .config import Settings
from .observability import Counter, Gauge, log_event
from .sources import SourceProgress
from patrol.records import DeadLetter, Incident, Label, MetricPoint, RecordError, decode, record_id

log = logging.getLogger("patrol.detect")

POINTS_IN = Counter("patrol_detect_points_total", "Metric points consumed")
ANOMALIES_OUT = Counter("patrol_detect_anomalies_total", "Anomalies published")
INCIDENT_EVENTS = Counter("patrol_detect_incident_events_total", "Incident events published", ["event"])
DUPLICATES = Counter("patrol_detect_duplicates_total", "Replayed points recognised and skipped")
DEAD_LETTERS = Counter("patrol_detect_dead_letters_total", "Points sent to the dead-letter topic", ["code"])
HELD = Gauge("patrol_detect_held_points", "Points held until every pre-aggregation partition closed their window")
CHECKPOINTS = Counter("patrol_detect_checkpoints_total", "Checkpoints written", ["result"])
REDIS_UP = Gauge("patrol_detect_redis_up", "1 while model-state checkpoints reach Redis")
SERIES = Gauge("patrol_detect_series", "Series owned by this worker")
SUPPRESSED = Counter("patrol_detect_suppressed_total", "Would-be anomalies suppressed by label feedback")
LABELS = Counter("patrol_detect_labels_total", "Labels applied", ["result"])
LAG = Gauge("patrol_detect_consumer_lag", "Messages behind the high watermark, summed over owned partitions")

CHECKPOINT_SECONDS = Histogram("patrol_detect_checkpoint_seconds",
                               "Checkpoint time by part. The consume loop is blocked by 'flush' (anomalies acknowledged), "
                               "'copy' (dirty states copied), 'commit' (offsets), 'gc' (a full collection) and 'wait' (revoke/shutdown waiting for "
                               "a write); 'write' = from the copy to the commit, spent on the writer thread",
                               ["part"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
CHECKPOINT_STALL_MAX = Gauge("patrol_detect_checkpoint_stall_max_seconds",
                             "Longest time the consume loop was blocked by a periodic checkpoint")

INCIDENT_KEY = "__incidents__"
# Held points make the worker read the pre-aggregation progress (and fence it) at most this often:
# each point waits about one read plus a fence round trip (~0.1 s on Tansu) before it is scored.
PROGRESS_EVERY_S = 0.05
# Key of the fences a worker writes to its own metrics partitions (see DetectWorker._read_progress);
# every detect worker skips them, whichever group wrote them.
FENCE_KEY = b"\x00patrol-detect-fence"


@dataclass
class _InFlight:
    """A checkpoint whose state copy the writer thread is putting into Redis."""

    future: Future            # -> True when every record reached Redis
    offsets: dict[tuple[str, int], int]   # next offsets consumed before the copy: committable after it
    commit: bool
    started: float
    hurry: threading.Event     # set when the loop waits for this write: the writer stops pacing


@dataclass
class DetectStats:
    points: int = 0
    anomalies: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    checkpoints: int = 0
    checkpoint_stall_max_s: float = 0.0   # longest the consume loop was blocked by a periodic checkpoint
    suppressed: int = 0
    labels_applied: int = 0
    late_partials: int = 0   # shares that came after their window was merged and scored (dead-lettered)
    held_at_end: int = 0     # points of incomplete windows left uncommitted at the end of input
    started: float = field(default_factory=time.monotonic)


class DetectWorker:
    """One member of the detect consumer group: a stage run by the shell :class:`streams.app.App`.

    The shell owns the loop, signals, GC, delivery tracking, lag and closing the consumer and
    producer; this class implements the hooks: ``start`` (assign the label topic), ``on_assign``,
    ``on_revoke``/``on_lost`` (checkpoint, commit, drop the partitions' series and held points),
    ``poll`` (labels, then a batch of points: held, merged, scored), ``on_idle`` (release held
    points; end of input), ``after_turn`` (the periodic checkpoint and its commit), ``finish``
    (score what is complete) and ``close`` (the last checkpoint, labels consumer, progress reader,
    writer thread). Its clients are created here, not in ``start``: tests drive them directly."""

    def __init__(self, settings: Settings, group: str = "patrol-detect", store: StateStore | None = None,
                 checkpoint_s: float | None = None, batch: int = 5000, preagg_group: str | None = None):
        self.s = settings
        self.group = group
        self.batch = batch
        self.checkpoint_s = checkpoint_s if checkpoint_s is not None else settings.detect.checkpoint_interval_s
        url = settings.redis.url.get_secret_value() if settings.redis.url else None
        self.store = store or StateStore(url, settings.redis.key_prefix)
        self.pool = SeriesPool(self.store)
        self.partials = PartialMerger()
        self.position: dict[int, int] = {}   # next offset to read per metrics partition
        self._ready: dict[int, Ready] = {}   # the last progress read, per metrics partition
        self._progress_at = -math.inf
        self._fence_token = uuid.uuid4().hex
        self._fence_seq = 0
        self._fences: dict[int, tuple[bytes, float]] = {}  # metrics partition -> (fence in flight, progress read)
        self.incidents = IncidentTracker(window_s=settings.preagg.window_s)
        self._incidents_loaded: set[str] = set()
        self._incidents_dirty: set[str] = set()  # services whose incident state changed since the last copy
        self.stats = DetectStats()
        self.partition_of: dict[str, int] = {}
        self.pending: dict[tuple[str, int], int] = {}   # next offset to commit per partition
        conf = settings.kafka.client_config()
        # fetch.wait.max.ms: how long a broker may hold a fetch with no new data. On Tansu it shows
        # up as delivery delay (a probe read messages 0.18 s p50 after produce with librdkafka's
        # 500 ms default, 0.06 s with 20 ms), most of the median arrival-to-anomaly latency;
        # kafka.extra can still override it.
        self.consumer = Consumer({"fetch.wait.max.ms": 50, **conf, "group.id": group, "enable.auto.commit": False,
                                  "auto.offset.reset": "earliest", "session.timeout.ms": settings.kafka.session_timeout_ms,
                                  "partition.assignment.strategy": "cooperative-sticky"})
        self.producer = Producer({**conf, "linger.ms": 20, "compression.type": "lz4", "enable.idempotence": False,
                                  "acks": "all"})
        # Labels: every worker reads the whole (compacted) label topic from the start and applies the
        # labels of the series it owns; the feedback model ignores a label it already learned.
        self.labels_consumer = Consumer({**conf, "group.id": f"{group}-labels", "enable.auto.commit": False})
        self.sources = SourceProgress(conf, settings.topics.logs, preagg_group or settings.detect.preagg_group)
        self.pending_labels: dict[str, list[Label]] = {}
        self._last_checkpoint = time.monotonic()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-writer")
        self._inflight: _InFlight | None = None
        self.topics = [settings.topics.metrics]
        self.lag_gauge = LAG
        # GC by hand (streams.app.GcPolicy): a batch's thousands of points were promoted by automatic
        # collections, and full ones ran every second or two, 50-250 ms each (2.4 s of a 15 s,
        # 300k-point run). Freezing the survivors of each full collection keeps the series' long-
        # lived state out of the next scans.
        self.app = App(self, "detect", GcPolicy(young_objects=100_000, freeze=True))

    # -- stage hooks (the loop, signals, GC, delivery and closing live in streams.app) -------------
    def request_stop(self, *_args) -> None:
        self.app.request_stop()

    def run(self, duration: float | None = None, max_idle: float | None = None) -> DetectStats:
        self.app.run(duration, max_idle)
        return self.stats

    def start(self) -> None:
        self._assign_labels()  # the clients exist since __init__ (tests drive them without run)

    def poll(self) -> bool:
        self._poll_labels()
        msgs = self.consumer.consume(self.batch, 0.1)  # short wait: latency, not batch size, rules here
        if msgs:
            self._handle(msgs)
        return bool(msgs)

    def on_idle(self, input_ended: bool) -> bool:
        if input_ended:
            return True
        self._release()  # held points wait for progress upstream, not for more input
        return False

    def after_turn(self) -> None:
        self._finish_checkpoint(wait=False)
        if self._inflight is None and time.monotonic() - self._last_checkpoint >= self.checkpoint_s:
            self.checkpoint(wait=False)

    def finish(self, reason: str) -> None:
        self._end_of_input(10.0 if reason == "signal" else 30.0)
        self.checkpoint()

    def close(self) -> None:
        # After the consumer closed: its revoke (also after an error) checkpointed through the writer.
        self.labels_consumer.close()
        self.sources.close()
        self._writer.shutdown(wait=True)

    def on_full_gc(self, seconds: float) -> None:
        self._observe_stall(seconds, gc=seconds)

    # -- labels ---------------------------------------------------------------------------
    def _assign_labels(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING

        md = self.labels_consumer.list_topics(self.s.topics.labels, timeout=10)
        topic = md.topics.get(self.s.topics.labels)
        if topic is None or topic.error is not None:
            log_event(log, "label topic missing: feedback disabled until restart", logging.WARNING,
                      topic=self.s.topics.labels)
            return
        self.labels_consumer.assign([TopicPartition(self.s.topics.labels, p, OFFSET_BEGINNING) for p in topic.partitions])

    def _poll_labels(self) -> None:
        for msg in self.labels_consumer.consume(1000, 0):
            if msg.error() is not None:
                continue
            try:
                label = decode(msg.value(), expect=Label)
            except RecordError as exc:
                self._dead_letter(msg, exc.reason, exc.code)
                continue
            if not label.series or not label.features:
                LABELS.labels("no_features").inc()  # written by a client that did not copy the anomaly
                continue
            self.pending_labels.setdefault(label.series, []).append(label)
        self._apply_labels()

    def _apply_labels(self) -> None:
        """Apply pending labels to the series this worker has loaded (others wait for their owner)."""
        for series in [k for k in self.pending_labels if k in self.pool.series]:
            for label in self.pending_labels.pop(series):
                change = self.pool.learn_label(series, label.metric or series.split("{", 1)[0], label.features,
                                               label.verdict.value, label.id)
                LABELS.labels("changed" if change else "no_change").inc()
                if change is not None:
                    self.stats.labels_applied += 1
                    log_event(log, "label retrained series", series=series, label=label.id, change=change.text,
                              model_version=self.pool.series[series].model_version)

    def on_assign(self, consumer, partitions) -> None:
        log_event(log, "partitions assigned", partitions=[p.partition for p in partitions])

    def on_revoke(self, consumer, partitions) -> None:
        """Checkpoint before giving partitions away so the next owner resumes their series' state."""
        gone = {p.partition for p in partitions}
        self.checkpoint(commit=True)
        keys = {k for k, part in self.partition_of.items() if part in gone}
        self.pool.drop(keys)
        self.partials.drop_partitions(gone, keys)
        for part in gone:
            self.position.pop(part, None)
            self._ready.pop(part, None)
            self._fences.pop(part, None)
        for k in keys:
            self.partition_of.pop(k, None)
        for tp in list(self.pending):
            if tp[1] in gone:
                del self.pending[tp]
        log_event(log, "partitions revoked", partitions=sorted(gone), series_dropped=len(keys))

    # -- processing -----------------------------------------------------------------------
    def _dead_letter(self, msg, reason: str, code: str) -> None:
        dl = DeadLetter.of(msg.value() or b"", reason, code, msg.topic(), msg.partition(), msg.offset())
        self.producer.produce(self.s.topics.dlq, dl.to_bytes(), key=msg.key(), on_delivery=self.app.delivery)
        DEAD_LETTERS.labels(code).inc()
        self.stats.dead_letters += 1

    _on_revoke = on_lost = on_revoke  # a lost partition is let go the same way

    def _handle(self, msgs) -> None:
        partition_of, pending, topic, partials = self.partition_of, self.pending, self.s.topics.metrics, self.partials
        last: dict[int, int] = {}
        late = []
        n = 0
        for msg in msgs:
            if msg.error() is not None:
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    log_event(log, "consume error", logging.WARNING, error=str(msg.error()))
                continue
            part, off = msg.partition(), msg.offset()
            last[part] = off  # in order within a partition: the last one wins
            if msg.key() == FENCE_KEY:
                self._on_fence(part, off, msg.value())
                continue
            try:
                p = decode(msg.value(), expect=MetricPoint)
            except RecordError as exc:
                self._dead_letter(msg, exc.reason, exc.code)
                continue
            n += 1
            partition_of[p.series] = part
            # Every point may be one pre-aggregation partition's share of its series (global always;
            # services when logs are unkeyed): held until its window is complete, then merged.
            if not partials.add(p, part, off, msg):
                late.append((p, msg))
        for part, off in last.items():  # one subscribed topic: no per-message topic() call
            pending[(topic, part)] = off + 1
            self.position[part] = off + 1
        POINTS_IN.inc(n)
        self.stats.points += n
        if late:
            self._late_partials(late)
        self._release()

    def _late_partials(self, late: list) -> None:
        """Shares that came after their series' window was merged and scored: dead-lettered, logged."""
        for p, msg in late:
            self._dead_letter(msg, f"share of {p.series} for window {p.window_start.isoformat()} from pre-aggregation "
                                   f"partition {p.stats.get('partition')} came after that window was merged and scored "
                                   "(its partition was idle or behind when the window was complete)", "late_partial")
        self.stats.late_partials += len(late)
        p = late[0][0]
        log_event(log, "late shares dead-lettered", logging.WARNING, count=len(late), series=p.series,
                  window=p.window_start.isoformat(), source_partition=p.stats.get("partition"))

    def _read_progress(self) -> None:
        """Read the pre-aggregation progress, and fence it on the metrics partitions with held points.

        The progress covers the shares the broker acknowledged before it was read; a fence this
        worker then produces to the partition lands after all of them, so once the fence is read
        back every such share has been consumed (:meth:`_on_fence`). The partition's end offset
        would say the same without a message, but Tansu's ListOffsets under-reports it."""
        self._progress_at = time.monotonic()
        parts = [m for m, windows in self.partials.held.items() if windows and m not in self._fences]
        if not parts:
            return
        try:
            before = self.sources.closed_before()
        except Exception as exc:  # KafkaException (broker busy, timeout): held points wait for the next try
            log_event(log, "could not read pre-aggregation progress", logging.WARNING, error=str(exc))
            return
        for m in parts:
            self._fence_seq += 1
            fence = f"{self._fence_token}:{self._fence_seq}".encode()
            self.producer.produce(self.s.topics.metrics, fence, key=FENCE_KEY, partition=m, on_delivery=self.app.delivery)
            self._fences[m] = (fence, before)
        self.producer.poll(0)

    def _on_fence(self, part: int, offset: int, value: bytes) -> None:
        f = self._fences.get(part)
        if f is not None and f[0] == value:  # ours (other workers' and old fences are skipped)
            del self._fences[part]
            self._ready[part] = Ready(f[1], offset)

    def _release(self, wait: bool = False) -> None:
        """Score the points whose windows every pre-aggregation partition has closed.

        Progress is read again at most every PROGRESS_EVERY_S while points are held (``wait``:
        now), and applies to a metrics partition once its fence was read back."""
        if not self.partials.n_held:
            HELD.set(0)
            return
        if wait or time.monotonic() - self._progress_at >= PROGRESS_EVERY_S:
            self._read_progress()
        released = self.partials.release(self._ready) if self._ready else []
        dups = self.partials.duplicates
        if dups:
            self.partials.duplicates = 0
            DUPLICATES.inc(dups)
            self.stats.duplicates += dups
        HELD.set(self.partials.n_held)
        if released:
            self._score([p for p, _ in released], [srcs for _, srcs in released])

    def _end_of_input(self, timeout: float) -> None:
        """Before stopping: score what is complete; incomplete windows stay held and uncommitted (a
        pre-aggregation partition left them open: a later run or owner completes and scores them)."""
        self._release(wait=True)
        deadline = time.monotonic() + timeout
        while self._fences and time.monotonic() < deadline:  # read the fences back, and anything before them
            msgs = self.consumer.consume(self.batch, 0.2)
            if msgs:
                self._handle(msgs)
        self._release()
        self.stats.held_at_end = self.partials.n_held
        if self.partials.n_held:
            log_event(log, "end of input: points of windows not complete upstream left uncommitted for a later run",
                      held=self.partials.n_held, windows=sum(len(w) for w in self.partials.held.values()))

    def _score(self, points: list, sources: list | None = None) -> None:
        """Score ``points``; ``sources[i]`` lists the messages ``points[i]`` was merged from."""
        if not points:
            return
        self.pool.ensure(points)
        self._apply_labels()  # labels of series just loaded apply before their next point is scored
        outcomes, dups, rejected = self.pool.process(points, ensure=False)
        if rejected:
            source = {id(p): m for p, m in zip(points, sources or [[]] * len(points))}
        for r in rejected:
            msgs = [m for m in source.get(id(r.point), ()) if m is not None]
            for msg in msgs:  # each share's own bytes and offset, with the reason of the merged point
                self._dead_letter(msg, r.reason if len(msgs) == 1 else f"{r.reason} (merged from {len(msgs)} "
                                  "pre-aggregation partitions; this is one of their shares)", r.code)
            if not msgs:  # not from a message (a caller scoring points directly)
                dl = DeadLetter.of(r.point.to_bytes(), r.reason, r.code, self.s.topics.metrics)
                self.producer.produce(self.s.topics.dlq, dl.to_bytes(), key=r.point.series.encode(),
                                      on_delivery=self.app.delivery)
                DEAD_LETTERS.labels(r.code).inc()
                self.stats.dead_letters += 1
        DUPLICATES.inc(len(dups))
        self.stats.duplicates += len(dups)
        self._ensure_incidents({o.service for o in outcomes})
        threshold = self.s.detect.threshold
        outcomes.sort(key=attrgetter("t"))  # incidents follow event time
        open_incidents = self.incidents.open
        for o in outcomes:
            if o.score >= threshold or o.recheck or o.service in open_incidents:
                self._publish(o, threshold)
            # else: not an alert and no incident to tick for its service: nothing to do
        self.producer.poll(0)
        SERIES.set(len(self.pool.series))

    def _ensure_incidents(self, services: set[str]) -> None:
        """Incident state is checkpointed like a series; load it on first sight of a service."""
        new = [f"{INCIDENT_KEY}{svc}" for svc in services if svc not in self._incidents_loaded]
        if not new:
            return
        for key, st in self.store.load_many(new).items():
            svc = key[len(INCIDENT_KEY):]
            if st.state.get("open"):
                self.incidents.open[svc] = OpenIncident(**st.state["open"])
        self._incidents_loaded.update(key[len(INCIDENT_KEY):] for key in new)

    def _publish(self, out: Outcome, threshold: float) -> None:
        svc, t = out.service, out.t
        decision = alerting.decide(out, self.pool, threshold)
        if decision.suppressed:
            SUPPRESSED.inc()
            self.stats.suppressed += 1
        if decision.alert:
            ev = self.incidents.on_anomaly(svc, out.point.series, t, decision.severity)
            self._incidents_dirty.add(svc)
            inc = self.incidents.current(svc)
            rec = alerting.anomaly_record(out, decision.severity, inc.id if inc else None, ev.event if ev else None,
                                          decision.features)
            self.producer.produce(self.s.topics.anomalies, rec.to_bytes(), key=out.point.series.encode(),
                                  on_delivery=self.app.delivery)
            ANOMALIES_OUT.inc()
            self.stats.anomalies += 1
            if ev is not None:
                self._publish_incident(ev)
        else:
            ev = self.incidents.tick(svc, t)
            if ev is not None:
                self._incidents_dirty.add(svc)
                self._publish_incident(ev)

    def _publish_incident(self, ev) -> None:
        from datetime import datetime, timezone

        inc = ev.incident
        rec = Incident(id=inc.id, event=ev.event, service=inc.service,
                       opened=datetime.fromtimestamp(inc.opened, timezone.utc),
                       last=datetime.fromtimestamp(inc.last, timezone.utc), severity=inc.severity,
                       series=list(inc.series), anomalies=inc.anomalies)
        # The id of an incident *event* is deterministic too: (incident, event, anomalies so far).
        self.producer.produce(self.s.topics.anomalies, rec.to_bytes(), key=inc.service.encode(),
                              headers={"event-id": record_id(inc.id, ev.event, inc.anomalies)}, on_delivery=self.app.delivery)
        INCIDENT_EVENTS.labels(ev.event).inc()

    # -- checkpoint -----------------------------------------------------------------------
    def _incident_states(self) -> list[SeriesState]:
        """States of the services whose incident changed since the last copy (one per service
        with an anomaly or a resolution, not one per service seen)."""
        states = []
        for svc in self._incidents_dirty:
            inc = self.incidents.open.get(svc)
            states.append(SeriesState(f"{INCIDENT_KEY}{svc}", {"open": inc.__dict__ if inc else None}))
        self._incidents_dirty.clear()
        return states

    def checkpoint(self, commit: bool = True, wait: bool = True) -> bool:
        """Flush anomalies, copy dirty states, write them to Redis, then commit the offsets consumed
        before the copy (only if both the flush and the write succeeded).

        ``wait=False`` (the periodic checkpoint) leaves the write to the writer thread and returns
        at once; the commit happens in a later loop turn (:meth:`_finish_checkpoint`). ``wait=True``
        (revoke, shutdown) first completes any checkpoint in flight, then does a whole one."""
        self._finish_checkpoint(wait=True)  # one at a time; a failed one's states wait in the store's backlog
        t0 = time.monotonic()
        self._last_checkpoint = t0
        why = self.app.delivery.flush(self.producer, 30)
        if why:
            log_event(log, "anomalies not acknowledged: offsets not committed", logging.ERROR, why=why)
            self.app.delivery.errors.clear()
            CHECKPOINTS.labels("produce_failed").inc()
            return False
        t1 = time.monotonic()
        snap = self.pool.snapshot_dirty()
        for st in self._incident_states():
            snap.add(st.series, st.to_fields())  # small: serialised here, where the tracker lives
        held = self.partials.min_offsets()  # partial points not yet merged must be replayed after a crash
        offsets = {(t, p): min(o, held.get(p, o)) for (t, p), o in self.pending.items()}
        # A periodic write is paced over up to a quarter of the interval (at most 5 s): the same
        # CPU, spread out, so the loop keeps its share of the GIL and the cores; revoke/shutdown
        # writes at full speed because they block the loop (or the rebalance) anyway.
        chunks = -(-len(snap) // WRITE_CHUNK)
        pause = 0.0 if wait or chunks < 2 else min(self.checkpoint_s / 4, 5.0) / chunks
        hurry = threading.Event()
        self._inflight = _InFlight(self._writer.submit(self._write, snap, pause, hurry), offsets, commit, t0, hurry)
        t2 = time.monotonic()
        self._observe_stall(t2 - t0, flush=t1 - t0, copy=t2 - t1)
        log_event(log, "checkpoint copied", logging.DEBUG, records=len(snap), flush_s=round(t1 - t0, 4),
                  copy_s=round(t2 - t1, 4))
        return self._finish_checkpoint(wait=True) if wait else True

    def _write(self, snap: Snapshot, pause_s: float, hurry: threading.Event) -> bool:
        """Writer thread: serialise the copy and put it (and any backlog) into Redis."""
        return self.store.checkpoint_fields(snap.records(), pause_s, hurry)

    def _observe_stall(self, seconds: float, **parts: float) -> None:
        for part, sec in parts.items():
            CHECKPOINT_SECONDS.labels(part).observe(sec)
        # the maximum is of periodic checkpoints' stalls; a revoke/shutdown waits by design ('wait')
        if "wait" not in parts and seconds > self.stats.checkpoint_stall_max_s:
            self.stats.checkpoint_stall_max_s = seconds
            CHECKPOINT_STALL_MAX.set(seconds)

    def _finish_checkpoint(self, wait: bool) -> bool:
        """Commit the offsets of the checkpoint in flight once its states are in Redis.

        Returns False only when a finished checkpoint failed; True when none is in flight, or one
        is still being written (``wait=False``), or it completed and committed."""
        inf = self._inflight
        if inf is None or (not wait and not inf.future.done()):
            return True
        t0 = time.monotonic()
        inf.hurry.set()
        try:
            stored = inf.future.result()
        except Exception as exc:  # a bug in serialisation must not kill the worker: nothing is committed,
            log_event(log, "checkpoint write failed", logging.ERROR, error=repr(exc))
            self.pool.dirty.update(self.pool.series)  # and the copy is lost: every series goes again next time
            self._incidents_dirty.update(self._incidents_loaded)
            stored = False
        self._inflight = None
        if self.store.server_restarted:  # Redis came back empty (or may have): write every series again
            self.store.server_restarted = False
            self.pool.dirty.update(self.pool.series)
            self._incidents_dirty.update(self._incidents_loaded)
        if wait:
            self._observe_stall(time.monotonic() - t0, wait=time.monotonic() - t0)
        REDIS_UP.set(1 if self.store.healthy else 0)
        if not stored and self.store.url is not None:
            CHECKPOINTS.labels("redis_down").inc()
            return False  # keep offsets uncommitted: a crash now replays onto the last durable state
        if inf.commit and inf.offsets:
            t1 = time.monotonic()
            try:
                self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in inf.offsets.items()],
                                     asynchronous=False)
            except Exception as exc:  # KafkaException: e.g. rebalance in progress; retried next time
                log_event(log, "offset commit failed", logging.WARNING, error=str(exc))
                CHECKPOINTS.labels("commit_failed").inc()
                return False
            finally:
                if not wait:
                    self._observe_stall(time.monotonic() - t1, commit=time.monotonic() - t1)
            for tp, o in inf.offsets.items():  # entries that moved on since the copy stay pending
                if self.pending.get(tp) == o:
                    del self.pending[tp]
        CHECKPOINTS.labels("ok").inc()
        CHECKPOINT_SECONDS.labels("write").observe(time.monotonic() - inf.started)
        log_event(log, "checkpoint committed", logging.DEBUG, since_copy_s=round(time.monotonic() - inf.started, 4),
                  commit_s=round(time.monotonic() - t0, 4))
        self.stats.checkpoints += 1
        self.app.update_lag()
        return True


def run_detect(settings: Settings, group: str = "patrol-detect", duration: float | None = None,
               max_idle: float | None = None, checkpoint_s: float | None = None) -> DetectStats:
    worker = DetectWorker(settings, group=group, checkpoint_s=checkpoint_s)
    return worker.run(duration=duration, max_idle=max_idle)  # SIGTERM/SIGINT stop it: the shell's handlers
