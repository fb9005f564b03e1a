"""The stream job against a real (embedded Tansu) broker: end to end, DLQ, kill -9 and restart, two
workers sharing the partitions. Workers started as processes use the default consumer (the batch
extension when built); ``PATROL_PREAGG_CONSUMER=confluent-kafka`` runs them on the fallback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from patrol.preagg.series import rollup
from patrol.sim.broker import EmbeddedBroker
from patrol.streams.config import load_settings
from patrol.streams import preagg_job
from patrol.sim.generator import generate_lines
from patrol.streams.preagg_job import PreaggJob, decode_state, encode_state
from patrol.records import DeadLetter, MetricPoint, decode
from patrol.streams.topics import ensure_topic

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def broker():
    with EmbeddedBroker() as b:
        yield b


def _topics(b, parts=2):
    tag = uuid.uuid4().hex[:8]
    names = {"logs": f"logs-{tag}", "metrics": f"metrics-{tag}", "dlq": f"dlq-{tag}"}
    conf = {"bootstrap.servers": b.bootstrap}
    ensure_topic(conf, names["logs"], parts)
    ensure_topic(conf, names["metrics"], 1)
    ensure_topic(conf, names["dlq"], 1)
    return names


def _env(b, names, window=10, lateness=5):
    return {"PATROL_KAFKA__BOOTSTRAP_SERVERS": b.bootstrap, "PATROL_KAFKA__SESSION_TIMEOUT_MS": "6000",
            "PATROL_TOPICS__LOGS": names["logs"], "PATROL_TOPICS__METRICS": names["metrics"],
            "PATROL_TOPICS__DLQ": names["dlq"], "PATROL_PREAGG__WINDOW_S": str(window),
            "PATROL_PREAGG__ALLOWED_LATENESS_S": str(lateness),
            # Windows close by event time only (the run ends with --max-idle): wall-clock idle
            # closes would make the two runs of the crash test cut windows differently.
            "PATROL_PREAGG__IDLE_CLOSE_S": "1000", "PATROL_PREAGG__MAX_FUTURE_S": "1000000000"}


def _produce(b, topic, items):
    p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 20})
    for key, line in items:
        p.produce(topic, line, key=key)
        p.poll(0)
    assert p.flush(30) == 0


def _read(b, topic) -> list[bytes]:
    """Everything in ``topic``: read until the stream has been quiet for a while (Tansu's high
    watermark counts record batches, not records, so it cannot say when we are done)."""
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": f"reader-{uuid.uuid4().hex}",
                  "enable.auto.commit": False})
    meta = c.list_topics(topic, timeout=10).topics[topic]
    c.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
    out, quiet = [], time.monotonic()
    while time.monotonic() - quiet < 1.0:
        msgs = c.consume(10000, 0.3)
        for m in msgs:
            if m.error() is None:
                out.append(m.value())
        if msgs:
            quiet = time.monotonic()
    c.close()
    return out


def _line(t: int, path: str = "/api/v1/orders/42", status: int = 200, up: str = "shop-cart-api-8080") -> bytes:
    ts = datetime.fromtimestamp(t, tz=timezone.utc).strftime("%d/%b/%Y:%H:%M:%S +0000")
    return (f'198.51.100.7 - - [{ts}] "GET {path} HTTP/1.1" {status} 120 "-" "Mozilla/5.0 (X11; Linux x86_64)" '
            f"300 0.020 [{up}] [] 10.0.0.9:8080 120 0.019 {status} rid").encode()


def test_state_encoding_round_trips():
    assert decode_state(encode_state(1_790_000_060, 1_790_000_095)) == (1_790_000_060, 1_790_000_095)
    assert decode_state(encode_state(1_790_000_060, 1_790_000_000)) == (1_790_000_060, 1_790_000_000)
    assert decode_state(encode_state(float("-inf"), float("-inf")))[0] == float("-inf")


@pytest.mark.parametrize("consumer", ["rdkafka-batch", "confluent-kafka"])
def test_end_to_end_metrics_and_dead_letters(broker, consumer):
    if consumer == "rdkafka-batch" and preagg_job._rdbatch is None:
        pytest.fail("streams._rdbatch is not built (make install compiles it)")
    names = _topics(broker, parts=1)
    t0 = 1_790_000_000 - 1_790_000_000 % 60
    lines = [_line(t0 + i % 50, status=500 if i % 10 == 0 else 200) for i in range(200)]
    lines += [_line(t0 + 70), _line(t0 + 100)]  # window 2; the second moves the watermark past window 1
    lines += [b"this is not an access log line", _line(t0 + 5)]  # garbage, then a late line
    _produce(broker, names["logs"], [(b"shop-cart-api-8080", x) for x in lines])
    os.environ.update(_env(broker, names, window=60, lateness=10))
    try:
        s = load_settings()
    finally:
        for k in _env(broker, names):
            os.environ.pop(k, None)
    job = PreaggJob(s, group=f"g-{uuid.uuid4().hex[:6]}", max_idle=2.0, consumer=consumer)
    res = job.run()
    assert res.reason == "idle" and res.lines == len(lines) and res.extra["consumer"] == consumer
    with pytest.raises(RuntimeError, match="closed"):  # its client is freed once everything was delivered
        job.producer.poll(0)
    pts = [decode(v, MetricPoint) for v in _read(broker, names["metrics"])]
    svc = {(p.metric, int(p.window_start.timestamp())): p for p in pts if p.dims["scope"] == "service"}
    assert svc[("requests", t0)].value == 200
    assert svc[("status_5xx", t0)].value == 20
    assert svc[("error_ratio", t0)].value == pytest.approx(0.1)
    # the window of the newest line is cut by the end of the input: left open and uncommitted, for a
    # later run (publishing it would show a fake drop; its next lines would go late)
    assert ("requests", t0 + 60) not in svc and res.extra["left_open"] == {"0": [t0 + 60]}
    assert svc[("requests", t0)].dims == {"scope": "service", "namespace": "shop", "service": "cart-api", "port": "8080"}
    route = [p for p in pts if p.dims["scope"] == "route" and p.metric == "requests"]
    assert {p.dims["template"] for p in route} == {"/api/v1/orders/:id"}
    assert len({p.id for p in pts}) == len(pts)
    dlq = [decode(v, DeadLetter) for v in _read(broker, names["dlq"])]
    assert sorted(d.code for d in dlq) == ["late", "parse_error"]
    by_code = {d.code: d for d in dlq}
    assert by_code["parse_error"].raw_bytes() == b"this is not an access log line"
    assert by_code["late"].raw_bytes() == _line(t0 + 5)
    assert by_code["late"].source_offset == len(lines) - 1 and "late" in by_code["late"].reason


def _worker(broker, names, group, max_idle=3.0):
    env = {**os.environ, **_env(broker, names), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "patrol.cli.app", "run", "preagg", "--group", group, "--max-idle", str(max_idle)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def _finish(proc, timeout=60) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err.decode()[-3000:]
    return json.loads(out.decode().strip().splitlines()[-1])


def _id_values(raw: list[bytes]) -> dict[str, float]:
    """Dedupe by id; a replay must have produced the same value under the same id."""
    seen: dict[str, float] = {}
    for v in raw:
        p = decode(v, MetricPoint)
        assert seen.setdefault(p.id, p.value) == p.value, f"id {p.id} ({p.series}) has two values"
    return seen


def test_kill_9_mid_stream_then_restart_gives_the_same_metrics(broker):
    gen = list(generate_lines(n=12_000, seed=21, base_rate=150.0))
    items = [(k, line) for _, k, line in gen]
    cut = int(len(items) * 0.6)

    ref = _topics(broker)
    _produce(broker, ref["logs"], items)
    ref_out = _finish(_worker(broker, ref, f"ref-{uuid.uuid4().hex[:6]}"))
    want = _id_values(_read(broker, ref["metrics"]))
    assert ref_out["lines"] == len(items) and len(want) > 100

    crash = _topics(broker)
    _produce(broker, crash["logs"], items[:cut])
    group = f"crash-{uuid.uuid4().hex[:6]}"
    proc = _worker(broker, crash, group, max_idle=30.0)
    # Kill once the worker has published windows *and* committed past some of them, while the
    # newest windows are still open (its --max-idle is far away): a real mid-stream crash.
    probe = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    tps = [TopicPartition(crash["logs"], p) for p in (0, 1)]
    deadline = time.monotonic() + 40
    def progressed(tps_now):
        return bool(tps_now) and all(tp.offset > 0 for tp in tps_now)

    committed = []
    while time.monotonic() < deadline and not progressed(committed):
        time.sleep(0.1)
        committed = probe.committed(tps, timeout=5)
    probe.close()
    assert progressed(committed), f"nothing committed before the kill: {committed}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    _produce(broker, crash["logs"], items[cut:])
    out = _finish(_worker(broker, crash, group))
    raw = _read(broker, crash["metrics"])
    got = _id_values(raw)
    if got != want:
        series = {}
        for v in raw + _read(broker, ref["metrics"]):
            p = decode(v, MetricPoint)
            series[p.id] = (p.series, p.window_start.isoformat(), p.stats.get("partition"))
        missing = [series[i] for i in want if i not in got]
        extra = [series[i] for i in got if i not in want]
        diff = [(series[i], got[i], want[i]) for i in want if i in got and got[i] != want[i]]
        raise AssertionError(f"missing {len(missing)} {sorted(missing)[:5]} extra {len(extra)} {sorted(extra)[:5]} "
                             f"differ {len(diff)} {diff[:5]}")
    assert out["lines"] < len(items)  # it resumed from committed offsets, not from the start

    # Downstream view: merging partitions gives one global series per window.
    pts = {decode(v, MetricPoint).id: decode(v, MetricPoint) for v in raw}
    merged = rollup([p for p in pts.values() if p.dims["scope"] == "global"], merge_partitions=True)
    windows = Counter(p.window_start for p in merged if p.metric == "requests")
    assert windows and set(windows.values()) == {1}
    total = sum(p.value for p in merged if p.metric == "requests")
    assert total <= len(items)  # the windows the end of input cut are left open (uncommitted)
    # every window event time closed on both partitions holds all of its lines (10 s windows, 5 s
    # lateness; at 150 lines/s both partitions' newest lines are within seconds of the end)
    t_end = max(t for t, _, _ in gen)
    want_n = Counter(int(t) - int(t) % 10 for t, _, _ in gen)
    got_n = {int(p.window_start.timestamp()): p.value for p in merged if p.metric == "requests"}
    closed = [w for w in want_n if w + 10 <= t_end - 20]
    assert closed and all(got_n.get(w) == want_n[w] for w in closed)


def test_two_workers_in_one_group_share_partitions_with_a_rebalance(broker):
    """A second worker joins mid-stream: the first revokes (commits its emitted windows), both are
    assigned a share and resume from the side groups; the metrics equal a single worker's run."""
    gen = list(generate_lines(n=12_000, seed=23, base_rate=150.0))
    items = [(k, line) for _, k, line in gen]
    cut = int(len(items) * 0.5)

    ref = _topics(broker, parts=4)
    _produce(broker, ref["logs"], items)
    _finish(_worker(broker, ref, f"ref-{uuid.uuid4().hex[:6]}"))
    want = _id_values(_read(broker, ref["metrics"]))

    shared = _topics(broker, parts=4)
    group = f"pair-{uuid.uuid4().hex[:6]}"
    _produce(broker, shared["logs"], items[:cut])
    first = _worker(broker, shared, group, max_idle=12.0)
    # the first worker owns every partition and has published windows of the first half (a condition,
    # not a clock: a slow machine only waits longer)
    deadline = time.monotonic() + 120
    while not _read(broker, shared["metrics"]):
        assert time.monotonic() < deadline and first.poll() is None, "the first worker published nothing"
    second = _worker(broker, shared, group, max_idle=12.0)
    rest = items[cut:]
    for i in range(8):  # the rest arrives while the group rebalances (Tansu delays a join ~3 s)
        _produce(broker, shared["logs"], rest[i * len(rest) // 8:(i + 1) * len(rest) // 8])
        time.sleep(1.0)
    out_a, out_b = _finish(first, timeout=120), _finish(second, timeout=120)
    assert out_a["lines"] > 0 and out_b["lines"] > 0, (out_a, out_b)
    assert out_a["lines"] + out_b["lines"] >= len(items)
    assert _id_values(_read(broker, shared["metrics"])) == want


def test_backfill_in_chunks_with_pauses_equals_one_run(broker):
    """Issue #13: a backfill fed file by file. The wall-clock idle close (and the end-of-input
    close of a finite run) cut the open window between two files: the next file's lines of that
    window went to the DLQ as late, and the cut window looked like a traffic drop. Event time now
    decides: two runs over two chunks, with a pause longer than the idle close, publish exactly
    the points of one run over the whole input, and nothing is dead-lettered."""
    t0 = 1_790_000_000 - 1_790_000_000 % 60
    times = list(range(t0, t0 + 95)) + list(range(t0 + 88, t0 + 171))  # the 2nd file starts 7 s back
    lines = [_line(t, path=f"/api/v1/orders/{t % 7}", status=500 if t % 13 == 0 else 200) for t in times]
    cut = 95
    env = {**_env(broker, _topics(broker, parts=1), window=60, lateness=10), "PATROL_PREAGG__IDLE_CLOSE_S": "1"}

    def settings(names):
        os.environ.update({**env, "PATROL_TOPICS__LOGS": names["logs"], "PATROL_TOPICS__METRICS": names["metrics"],
                           "PATROL_TOPICS__DLQ": names["dlq"]})
        try:
            return load_settings()
        finally:
            for k in env:
                os.environ.pop(k, None)

    one = _topics(broker, parts=1)
    _produce(broker, one["logs"], [(b"k", x) for x in lines])
    r1 = PreaggJob(settings(one), group=f"one-{uuid.uuid4().hex[:6]}", max_idle=2.0).run()

    chunked = _topics(broker, parts=1)
    group = f"chunks-{uuid.uuid4().hex[:6]}"
    _produce(broker, chunked["logs"], [(b"k", x) for x in lines[:cut]])
    first = PreaggJob(settings(chunked), group=group, max_idle=2.5).run()  # idles past the 1 s idle close
    _produce(broker, chunked["logs"], [(b"k", x) for x in lines[cut:]])
    second = PreaggJob(settings(chunked), group=group, max_idle=2.0).run()

    assert r1.dead_letters == first.dead_letters == second.dead_letters == 0
    assert not _read(broker, chunked["dlq"])
    want, got = _id_values(_read(broker, one["metrics"])), _id_values(_read(broker, chunked["metrics"]))
    assert want and got == want
    svc = {p.window_start.timestamp(): p.value for p in map(lambda v: decode(v, MetricPoint), _read(broker, chunked["metrics"]))
           if p.metric == "requests" and p.dims["scope"] == "service"}
    assert svc == {t0: 60, t0 + 60: 35 + 32}  # whole minutes; the cut minute [t0+120, t0+180) waits for more input
    assert first.extra.get("left_open") == {"0": [t0 + 60]} and second.extra.get("left_open") == {"0": [t0 + 120]}


class _CommitRefusedOnce:
    """The worker's real consumer, except that its first offset commit is refused as a commit after the
    group moved on is (what the chaos benchmark's kills and broker stall caused)."""

    def __init__(self, real):
        self._real, self.refused = real, 0

    def commit(self, *args, **kwargs):
        if not self.refused:
            self.refused += 1
            raise KafkaException(KafkaError(KafkaError.ILLEGAL_GENERATION))
        return self._real.commit(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._real, name)


def test_a_refused_commit_does_not_stop_the_worker_and_loses_nothing(broker):
    """A commit refused because the group rebalanced used to make the worker exit 1; it goes on, and the
    points it publishes equal an undisturbed run's."""
    t0 = 1_790_000_000 - 1_790_000_000 % 60
    lines = [(b"shop-cart-api-8080", _line(t, status=500 if t % 11 == 0 else 200)) for t in range(t0, t0 + 240, 2)]

    def run(job_class):
        names = _topics(broker, parts=1)
        _produce(broker, names["logs"], lines)
        os.environ.update(_env(broker, names, window=60, lateness=5))
        try:
            s = load_settings()
        finally:
            for k in _env(broker, names):
                os.environ.pop(k, None)
        job = job_class(s, group=f"g-{uuid.uuid4().hex[:6]}", max_idle=2.0)
        return job, job.run(), _id_values(_read(broker, names["metrics"]))

    class Refusing(preagg_job.PreaggJob):
        def start(self):
            super().start()
            self.consumer = _CommitRefusedOnce(self.consumer)

    _, ref, want = run(preagg_job.PreaggJob)
    job, res, got = run(Refusing)
    assert job.consumer.refused == 1 and res.extra.get("commits_refused") == 1
    assert res.reason == "idle" and res.lines == ref.lines and want and got == want
