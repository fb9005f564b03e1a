"""Detection stage end to end on the embedded broker and a local redis-server.

    python -m benchmarks.detect --json out/detect.json [--series 10000] [--windows 30] [--rate 10000]

Phases:

1. throughput: ``--windows`` windows of points for ``--series`` series are produced up front; one
   in-process :class:`streams.detect_job.DetectWorker` with the shipped consume batch (5000) and a
   checkpoint every 5 s consumes them all. Reports points/s of wall time
   and per core (points / process CPU seconds), and, as the peer in the same run, the same points
   scored by the one-point path (one ``Ensemble.update`` per point, as a per-event framework would).
2. latency: points are produced at ``--rate`` points/s for ``--latency-s`` seconds with a spike in 1% of
   them while a ``patrol run detect`` worker runs; latency = time the benchmark's consumer sees the
   anomaly minus the produce time of the point that caused it (so it includes both broker hops and
   the reader's own fetch; the reader asks the broker not to hold fetches, ``fetch.wait.max.ms``
   10, so its polling adds little). Reports p50/p90/p99/max, the rate actually offered, the
   worker's checkpoint stalls (how long its consume loop was blocked, from its metrics endpoint)
   and the machine's load average.
3. state: Redis ``MEMORY USAGE`` of the series' hashes after the run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import numpy as np
from confluent_kafka import Consumer, Producer

from patrol.models.incidents import service_of
from patrol.sim.broker import EmbeddedBroker, free_port
from patrol.streams.config import load_settings
from patrol.records import MetricPoint
from patrol.sim.redis_server import LocalRedis
from patrol.streams.topics import create_topics, produce_waiting

T0 = datetime(2026, 11, 2, tzinfo=timezone.utc)


def log(msg: str) -> None:
    print(f"[detect-bench] {msg}", file=sys.stderr, flush=True)


def make_window(n_series: int, w: int, rng, spike_frac: float = 0.0) -> list[bytes]:
    """One window's points for ``n_series`` series (half request counts, half error ratios)."""
    ws, we = T0 + timedelta(minutes=w), T0 + timedelta(minutes=w + 1)
    n_svc = n_series // 2
    req = rng.poisson(200.0, n_svc).astype(float)
    err = rng.binomial(req.astype(int), 0.01) / np.maximum(req, 1)
    spike = rng.random(n_svc) < spike_frac
    req = np.where(spike, req * 20, req)
    out = []
    for i in range(n_svc):
        dims = {"namespace": f"ns{i % 20}", "service": f"svc{i}"}
        out.append(MetricPoint.make("requests", dims, ws, we, float(req[i]), count=int(req[i])).to_bytes())
        out.append(MetricPoint.make("error_ratio", dims, ws, we, float(err[i]), count=int(req[i])).to_bytes())
    return out


def produce(producer: Producer, topic: str, values: list[bytes]) -> None:
    for v in values:
        key = v[v.find(b'"service":"') + 11:].split(b'"', 1)[0]  # key by service: one owner per service
        produce_waiting(producer, topic, v, key=key)
    producer.poll(0)


def throughput(settings, n_series: int, n_windows: int) -> dict:
    from patrol.streams.detect_job import DetectWorker

    rng = np.random.default_rng(0)
    p = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers, "linger.ms": 20, "compression.type": "lz4"})
    total = 0
    for w in range(n_windows):
        batch = make_window(n_series, w, rng)
        produce(p, settings.topics.metrics, batch)
        total += len(batch)
    p.flush(60)
    log(f"produced {total:,} points ({n_windows} windows x {n_series:,} series)")
    # the shipped consume batch (DetectWorker's default, what `patrol run detect` runs); checkpoints every
    # 5 s instead of the default 30 s, so a 30-window run pays for several of them
    worker = DetectWorker(settings, group="bench-throughput", checkpoint_s=5.0)
    cpu0, t0 = time.process_time(), time.monotonic()
    done = {"n": 0}

    def stop_when_done():
        while worker.stats.points < total and time.monotonic() - t0 < 600:
            time.sleep(0.05)
        worker.request_stop()

    threading.Thread(target=stop_when_done, daemon=True).start()
    worker.run()
    wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
    # the join wait (half the session timeout on Tansu) is not detection work: measure from first point
    log(f"detect worker: {worker.stats.points:,} points in {wall:.1f}s wall, {cpu:.1f}s CPU, "
        f"{worker.stats.checkpoints} checkpoints, loop blocked at most {worker.stats.checkpoint_stall_max_s:.3f}s")
    done["n"] = worker.stats.points
    return {"points": worker.stats.points, "wall_s": wall, "cpu_s": cpu, "anomalies": worker.stats.anomalies,
            "checkpoints": worker.stats.checkpoints, "checkpoint_stall_max_s": worker.stats.checkpoint_stall_max_s,
            "consume_batch": worker.batch, "checkpoint_s": worker.checkpoint_s}


def one_point_peer(n_series: int, n_windows: int, limit_s: float = 20.0) -> dict:
    """The same scoring, one Ensemble.update per point (what a per-event framework agent would do)."""
    from patrol.detectors import default_ensemble
    from patrol.models.metric_kinds import kind_of
    from patrol.records import decode

    rng = np.random.default_rng(0)
    models: dict[str, object] = {}
    n, cpu0 = 0, time.process_time()
    for w in range(n_windows):
        for raw in make_window(n_series, w, rng):
            p = decode(raw, expect=MetricPoint)
            m = models.get(p.series)
            if m is None:
                k = kind_of(p.metric)
                m = models[p.series] = default_ensemble(metric_kind=k.kind, direction=k.direction)
            m.update(p.value, p.window_start.timestamp(), p.count if "ratio" in p.metric else None)
            n += 1
            if n % 1000 == 0 and time.process_time() - cpu0 > limit_s:
                return {"points": n, "cpu_s": time.process_time() - cpu0}
    return {"points": n, "cpu_s": time.process_time() - cpu0}


def latency(settings, n_series: int, rate: float, seconds: float, warm_windows: int) -> dict:
    """Latency from a point's produce time to its anomaly being readable on the anomaly topic."""
    rng = np.random.default_rng(1)
    env = {**os.environ, "PATROL_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
           "PATROL_TOPICS__METRICS": settings.topics.metrics, "PATROL_TOPICS__ANOMALIES": settings.topics.anomalies,
           "PATROL_REDIS__URL": settings.redis.url.get_secret_value(), "PATROL_KAFKA__SESSION_TIMEOUT_MS": "6000"}
    exe = os.path.join(os.path.dirname(sys.executable), "patrol")
    port = free_port()
    worker = subprocess.Popen([exe, "run", "detect", "--group", "bench-latency",
                               "--metrics-port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    p = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers, "linger.ms": 5})
    # the reader is the measuring instrument: Tansu holds a fetch for fetch.wait.max.ms (500 ms by
    # default) when no data is there, which would add up to half a second that is not the worker's
    c = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": "bench-latency-reader",
                  "auto.offset.reset": "latest", "session.timeout.ms": 6000, "fetch.wait.max.ms": 10})
    c.subscribe([settings.topics.anomalies])
    sent: dict[tuple[str, str], float] = {}
    lat: list[float] = []
    sent_at: list[float] = []
    stop = threading.Event()

    def read():
        while not stop.is_set():
            for m in c.consume(1000, 0.1):
                if m.error() is None:
                    a = json.loads(m.value())
                    if a.get("kind") != "anomaly":
                        continue  # incident events
                    t = sent.get((a["series"], a["window_start"]))
                    if t is not None:
                        lat.append(time.time() - t)
                        sent_at.append(t)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    # warm-up windows so the detectors are past warm-up, sent fast (not timed); wait until the
    # worker has caught up with them so the timed phase starts with no backlog
    for w in range(warm_windows):
        produce(p, settings.topics.metrics, make_window(n_series, w, rng))
    p.flush(60)
    target = warm_windows * n_series
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and _worker_points(port) < target:
        time.sleep(1)
    # the timed windows are built before timing starts, so the benchmark's own pydantic/JSON work
    # does not compete with the worker for the 2 cores during the measurement
    n_windows = int(rate * seconds / n_series) + 1
    timed = []
    for w in range(warm_windows, warm_windows + n_windows):
        batch = make_window(n_series, w, rng, spike_frac=0.01)
        ws = (T0 + timedelta(minutes=w)).isoformat().replace("+00:00", "Z")
        keys = [(raw[raw.find(b'"series":"') + 10:].split(b'"', 1)[0].decode(), ws) for raw in batch]
        timed.append((batch, keys))
    t_start, t_wall0, n = time.monotonic(), time.time(), 0
    step = max(1, int(rate / 20))
    for batch, keys in timed:
        for i in range(0, len(batch), step):
            now = time.time()
            for k in keys[i:i + step]:
                sent[k] = now
            produce(p, settings.topics.metrics, batch[i:i + step])
            n += len(batch[i:i + step])
            ahead = n / rate - (time.monotonic() - t_start)
            if ahead > 0:
                time.sleep(ahead)
    achieved = n / (time.monotonic() - t_start)  # offered rate, before waiting for the stragglers
    p.flush(30)
    time.sleep(3)
    stop.set()
    reader.join()
    c.close()
    stalls = _worker_checkpoint_stats(port)  # before SIGTERM: the shutdown checkpoint is not steady state
    load = os.getloadavg()
    worker.terminate()
    worker.wait(60)
    arr = np.array(lat) if lat else np.array([np.nan])
    # worst latency per second of production: a checkpoint stall shows as one bad second every
    # checkpoint interval, a worker that cannot keep up as a rising staircase
    per_s = {}
    for t, l in zip(sent_at, lat):
        k = int(t - t_wall0)
        per_s[k] = max(per_s.get(k, 0.0), l)
    return {"points": n, "rate_target": rate, "rate_achieved": achieved, "anomalies_timed": len(lat),
            "anomalies_expected_approx": int(n * 0.01 / 2),
            "latency_p50_s": float(np.percentile(arr, 50)), "latency_p90_s": float(np.percentile(arr, 90)),
            "latency_p99_s": float(np.percentile(arr, 99)), "latency_max_s": float(np.max(arr)),
            "checkpoints": stalls, "loadavg_1_5_15": [round(x, 2) for x in load],
            "max_latency_by_second": [round(per_s.get(k, float("nan")), 2) for k in range(int(seconds) + 1)]}


def _worker_points(port: int) -> float:
    """Points the latency-phase worker has consumed (its Prometheus counter)."""
    import urllib.request

    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0.0
    return next((float(x.split()[-1]) for x in body.splitlines() if x.startswith("patrol_detect_points_total ")), 0.0)


def _worker_checkpoint_stats(port: int) -> dict:
    """The latency-phase worker's checkpoint histogram: how long its loop was blocked, and how long
    a checkpoint took from the state copy to the offset commit."""
    import urllib.request

    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return {}
    vals = {}
    for line in body.splitlines():
        if line.startswith("patrol_detect_checkpoint"):
            name, _, v = line.rpartition(" ")
            vals[name] = float(v)
    out = {"stall_max_s": vals.get("patrol_detect_checkpoint_stall_max_seconds")}
    for part in ("flush", "copy", "commit", "gc", "write"):
        n = vals.get(f'patrol_detect_checkpoint_seconds_count{{part="{part}"}}', 0.0)
        total = vals.get(f'patrol_detect_checkpoint_seconds_sum{{part="{part}"}}', 0.0)
        out[f"{part}_count"] = int(n)
        out[f"{part}_mean_s"] = total / n if n else None
    return out


def state_bytes(url: str, prefix: str) -> dict:
    import redis

    r = redis.Redis.from_url(url)
    keys = [k for k in r.sscan_iter(f"{prefix}series") if not k.startswith(b"__")]
    # samples=0: count every field; the default (5 sampled fields, extrapolated) was off by up to 2x here
    sizes = [r.memory_usage(f"{prefix}series:".encode() + k, samples=0) or 0 for k in keys[:2000]]
    raw = [sum(len(f) + len(v) for f, v in r.hgetall(f"{prefix}series:".encode() + k).items()) for k in keys[:200]]
    return {"series": len(keys), "redis_bytes_per_series": float(np.mean(sizes)) if sizes else None,
            "payload_bytes_per_series": float(np.mean(raw)) if raw else None}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write the JSON result to this file")
    ap.add_argument("--series", type=int, default=10000)
    ap.add_argument("--windows", type=int, default=30)
    ap.add_argument("--rate", type=float, default=10000.0, help="points/s offered in the latency phase")
    ap.add_argument("--latency-s", type=float, default=30.0)
    ap.add_argument("--warm-windows", type=int, default=80, help="windows learned before the timed latency phase")
    args = ap.parse_args(argv)
    with EmbeddedBroker() as broker, LocalRedis() as rds:
        base = {"kafka.bootstrap_servers": broker.bootstrap, "redis.url": rds.url, "kafka.session_timeout_ms": 6000}
        s1 = load_settings(overrides={**base, "topics.metrics": "bench-metrics", "topics.anomalies": "bench-anomalies",
                                      "redis.key_prefix": "tp:"})
        create_topics(s1)
        tp = throughput(s1, args.series, args.windows)
        log("one-point peer ...")
        peer = one_point_peer(args.series, args.windows)
        st = state_bytes(rds.url, "tp:")
        s2 = load_settings(overrides={**base, "topics.metrics": "lat-metrics", "topics.anomalies": "lat-anomalies",
                                      "redis.key_prefix": "lat:"})
        create_topics(s2)
        log(f"latency phase: {args.rate:.0f} points/s for {args.latency_s:.0f}s ...")
        lt = latency(s2, args.series, args.rate, args.latency_s, warm_windows=args.warm_windows)
    pps_core = tp["points"] / tp["cpu_s"]
    peer_pps = peer["points"] / peer["cpu_s"]
    result = {
        "benchmark": "detect", "series": args.series,
        "points_per_s_per_core": pps_core,
        "points_per_s_wall": tp["points"] / tp["wall_s"],
        "one_point_peer_points_per_s_per_core": peer_pps,
        "peer_ratio": pps_core / peer_pps,
        "latency_p50_s": lt["latency_p50_s"], "latency_p90_s": lt["latency_p90_s"],
        "latency_p99_s": lt["latency_p99_s"], "latency_max_s": lt["latency_max_s"],
        "latency": lt,
        "state_bytes_per_series": st["redis_bytes_per_series"],
        "state": st,
        "throughput": tp,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cpu_note": "per core = points / process CPU seconds of the in-process worker (includes Kafka client threads)",
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return result


if __name__ == "__main__":
    main()
