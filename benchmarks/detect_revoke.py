"""Revoke and shutdown of a detect worker holding many series of one service (issue #13).

    python -m benchmarks.detect_revoke [--series 90000] [--old 2500,5000,10000] [--json out.json]

1. revoke, in process (no broker): a :class:`streams.detect_job.DetectWorker` whose pool holds
   ``--series`` series of one service on one metrics partition (plus 50 of another service on a
   second one) drops the first partition through ``_on_revoke``. Peer in the same run: the former
   ``SeriesPool.drop`` (a list per service, ``s in peers`` then ``peers.remove(s)``) on the sizes
   of ``--old``, each timed on the same pool shape; its growth is quadratic, so its time at
   ``--series`` is extrapolated from the largest size (``t * (series / n) ** 2``), not run.
2. shutdown, on the embedded broker and a local redis-server: ``--series`` points of one service
   (one window) are produced, a worker consumes them all (no periodic checkpoint), then SIGTERM's
   ``request_stop``; reported: seconds from the stop request to ``run()`` returning, of which the
   revoke callback (checkpoint of every series to Redis, then the drop) and the drop alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

from confluent_kafka import Producer, TopicPartition

from patrol.models.store import StateStore
from patrol.sim.broker import EmbeddedBroker
from patrol.streams.config import load_settings
from patrol.streams.detect_job import DetectWorker
from patrol.records import MetricPoint
from patrol.sim.redis_server import LocalRedis
from patrol.streams.topics import create_topics, produce_waiting

T0 = datetime(2026, 11, 2, tzinfo=timezone.utc)


def log(msg: str) -> None:
    print(f"[detect-revoke] {msg}", file=sys.stderr, flush=True)


def points(service: str, n: int, w: int = 0) -> list[MetricPoint]:
    ws = T0 + timedelta(minutes=w)
    return [MetricPoint.make("requests", {"scope": "route", "service": service, "template": f"/r/{i}"}, ws,
                             ws + timedelta(minutes=1), 100.0 + i % 13) for i in range(n)]


def loaded_worker(settings, n: int) -> DetectWorker:
    w = DetectWorker(settings, store=StateStore(None))
    big, small = points("big", n), points("small", 50)
    w.pool.ensure(big + small)
    w.pool.process(big + small, ensure=False)
    w.partition_of.update({p.series: 0 for p in big} | {p.series: 1 for p in small})
    return w


def old_drop(pool, keys: set[str]) -> None:
    """``SeriesPool.drop`` as it was: one list per service, searched and shrunk per series."""
    by_service: dict[str, list] = {svc: list(d.values()) for svc, d in pool.by_service.items()}
    rows: dict[int, tuple] = {}
    for k in keys:
        s = pool.series.pop(k, None)
        if s is not None:
            rows.setdefault(id(s.group), (s.group, []))[1].append(s.row)
            peers = by_service.get(s.service, [])
            if s in peers:
                peers.remove(s)
            if not peers:
                by_service.pop(s.service, None)
        pool.dirty.discard(k)
    for g, rs in rows.values():
        g.release_many(rs)


def bench_revoke(n: int, old_sizes: list[int]) -> dict:
    s = load_settings(overrides={"kafka.bootstrap_servers": "127.0.0.1:1"})  # never contacted
    w = loaded_worker(s, n)
    drop = []
    orig_drop = w.pool.drop

    def timed_drop(keys):
        t = time.perf_counter()
        orig_drop(keys)
        drop.append(time.perf_counter() - t)

    w.pool.drop = timed_drop
    t0 = time.perf_counter()
    w._on_revoke(w.consumer, [TopicPartition(s.topics.metrics, 0)])
    new_s = time.perf_counter() - t0
    assert len(w.pool.series) == 50
    w._writer.shutdown()
    old = {}
    for m in old_sizes:
        w = loaded_worker(s, m)
        keys = {k for k, p in w.partition_of.items() if p == 0}
        t0 = time.perf_counter()
        old_drop(w.pool, keys)
        old[m] = round(time.perf_counter() - t0, 3)
        w._writer.shutdown()
        log(f"old drop of {m} series: {old[m]} s")
    big = max(old)
    return {"series": n, "revoke_s": round(new_s, 3), "drop_s": round(drop[0], 3), "old_drop_s": old,
            "old_drop_extrapolated_s": round(old[big] * (n / big) ** 2, 1)}


def bench_shutdown(n: int) -> dict:
    with EmbeddedBroker() as broker, LocalRedis() as rds:
        s = load_settings(overrides={"kafka.bootstrap_servers": broker.bootstrap, "redis.url": rds.url,
                                     "topics.logs": "logs-revoke", "kafka.session_timeout_ms": 6000})
        create_topics(s)
        p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20})
        for pt in points("big", n):
            produce_waiting(p, s.topics.metrics, pt.to_bytes(), key=b"big")
        assert p.flush(60) == 0
        w = DetectWorker(s, checkpoint_s=3600)  # no periodic checkpoint: the stop writes all of them
        revoke, drop, ckpt = [], [], []
        orig_revoke, orig_drop, orig_ckpt = w.on_revoke, w.pool.drop, w.checkpoint

        def timed_ckpt(*a, **k):
            t = time.perf_counter()
            ok = orig_ckpt(*a, **k)
            ckpt.append(time.perf_counter() - t)
            return ok

        def timed_revoke(consumer, parts):
            t = time.perf_counter()
            orig_revoke(consumer, parts)
            revoke.append(time.perf_counter() - t)

        def timed_drop(keys):
            t = time.perf_counter()
            orig_drop(keys)
            drop.append(time.perf_counter() - t)

        w.on_revoke, w.pool.drop, w.checkpoint = timed_revoke, timed_drop, timed_ckpt  # the shell subscribes on_revoke
        th = threading.Thread(target=w.run, daemon=True)
        th.start()
        deadline = time.monotonic() + 600
        while (len(w.pool.series) < n or w.partials.n_held) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(w.pool.series) == n, f"only {len(w.pool.series)} series loaded"
        ckpt.clear()
        t0 = time.perf_counter()
        w.request_stop()
        th.join(600)
        stop_s = time.perf_counter() - t0
        return {"series": n, "stop_to_exit_s": round(stop_s, 2), "checkpoint_s": [round(x, 2) for x in ckpt],
                "revoke_callback_s": [round(x, 2) for x in revoke], "drop_s": [round(x, 3) for x in drop],
                "checkpoints": w.stats.checkpoints}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=90_000)
    ap.add_argument("--old", default="2500,5000,10000", help="sizes the former drop is timed at")
    ap.add_argument("--skip-shutdown", action="store_true", help="only the in-process revoke")
    ap.add_argument("--json", help="also write the result here")
    a = ap.parse_args(argv)
    result = {"revoke": bench_revoke(a.series, [int(x) for x in a.old.split(",") if x])}
    log(json.dumps(result["revoke"]))
    if not a.skip_shutdown:
        result["shutdown"] = bench_shutdown(a.series)
    text = json.dumps(result, indent=2)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text)
    return result


if __name__ == "__main__":
    main()
