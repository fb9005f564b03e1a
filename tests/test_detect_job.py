"""The detection stage end to end on a real broker and Redis, through `patrol run detect`."""

import signal
import threading
import time

import redis

from benchmarks.metric_stream import metric_windows
from conftest import run_patrol
from detect_helpers import anomaly_set, produce_points, read_topic, settings_for, start_worker, worker_env

SPIKE = (1, 200)  # service 1, window 200


def flat(ws):
    return [p for w in ws for p in w]


def test_detect_publishes_anomalies_incidents_and_dead_letters(kafka, redis_server, tmp_path):
    s = settings_for(kafka.bootstrap, redis_server.url, "e2e", **{"topics.metrics": "metrics-e2e"})
    windows = metric_windows(4, 260, seed=11, spikes={SPIKE: 8.0})
    points = flat(windows)
    dup = windows[150][0]
    produce_points(kafka.bootstrap, s.topics.metrics, points + [dup], raw=[b"{not json", b'{"kind":"metric_point","v":9}'])
    r = run_patrol("run", "detect", "--max-idle", "6", "--checkpoint", "1", env=worker_env(s), timeout=180)
    assert r.returncode == 0, r.stderr
    assert f"{len(points) + 1} points" in r.stderr and "1 duplicates skipped" in r.stderr
    out = read_topic(kafka.bootstrap, s.topics.anomalies)
    anomalies = [a for a in out if a["kind"] == "anomaly"]
    spike_ws = windows[SPIKE[1]][0].window_start.isoformat().replace("+00:00", "Z")
    hit = [a for a in anomalies if a["dims"]["service"] == "svc1" and a["window_start"] == spike_ws]
    assert {a["metric"] for a in hit} >= {"requests"}, "the injected spike was not reported"
    req = next(a for a in hit if a["metric"] == "requests")
    assert req["direction"] == "up" and req["observed"] > req["upper"] >= req["expected"] >= req["lower"]
    assert req["incident_id"] and req["severity"] in ("warning", "critical") and req["detectors"]
    assert set(req["context"]) == {"yesterday", "last_week"}
    # the series' age rides on the features, so labels on warm-up alerts do not retrain (docs/feedback.md)
    age_s = windows[SPIKE[1]][0].window_start.timestamp() - windows[0][0].window_start.timestamp()
    assert req["features"]["age_h"] == round(age_s / 3600.0, 2)
    # and the context the worker computes for label feedback: a one-window spike starts its episode,
    # and co is the share of svc1's other series (its error ratio) out of band in that window
    assert req["features"]["run"] == 1 and req["features"]["co"] in (0.0, 1.0)
    incidents = [i for i in out if i["kind"] == "incident" and i["id"] == req["incident_id"]]
    assert [i["event"] for i in incidents][0] == "opened" and "resolved" in [i["event"] for i in incidents]
    # one incident per problem, few false alarms on the clean series
    assert len(anomalies) == len({a["id"] for a in anomalies}), "an anomaly was published twice"
    false = [a for a in anomalies if not (a["dims"]["service"] == "svc1" and a["window_start"] == spike_ws)]
    assert len(false) <= 0.01 * len(points), f"{len(false)} false alarms"
    dlq = read_topic(kafka.bootstrap, s.topics.dlq)
    assert sorted(d["code"] for d in dlq) == ["bad_json", "future_version"]
    assert all(d["source_topic"] == s.topics.metrics and d["source_offset"] is not None for d in dlq)
    # model state is in Redis, per series, compact
    keys = redis.Redis.from_url(redis_server.url).smembers("e2e:series")
    assert len([k for k in keys if not k.startswith(b"__")]) == 8


def _reference(kafka, redis_server, metrics_topic, windows):
    ref = settings_for(kafka.bootstrap, redis_server.url, f"ref-{metrics_topic}", **{"topics.metrics": metrics_topic})
    r = run_patrol("run", "detect", "--group", "ref", "--max-idle", "6", env=worker_env(ref), timeout=180)
    assert r.returncode == 0, r.stderr
    return anomaly_set(read_topic(kafka.bootstrap, ref.topics.anomalies))


def _produce_slowly(bootstrap, topic, windows, seconds):
    def run():
        chunk = max(1, len(windows) // 20)
        for i in range(0, len(windows), chunk):
            produce_points(bootstrap, topic, flat(windows[i:i + chunk]))
            time.sleep(seconds / 20)
    th = threading.Thread(target=run)
    th.start()
    return th


def _wait_idle_exit(proc, timeout=180):
    assert proc.wait(timeout) == 0


def test_kill_9_mid_stream_then_restart_matches_uninterrupted_run(kafka, redis_server, tmp_path):
    windows = metric_windows(5, 240, seed=21, spikes={(2, 70): 7.0, (4, 200): 0.1})
    s = settings_for(kafka.bootstrap, redis_server.url, "crash", **{"topics.metrics": "metrics-crash"})
    producer = _produce_slowly(kafka.bootstrap, s.topics.metrics, windows, seconds=20)
    w = start_worker(s, "crash", "--checkpoint", "0.5", log=tmp_path / "w1.log")
    deadline = time.monotonic() + 60
    while not read_topic(kafka.bootstrap, s.topics.anomalies) and time.monotonic() < deadline:
        time.sleep(0.3)  # kill once the worker has published something, while input still flows
    w.send_signal(signal.SIGKILL)
    w.wait(10)
    mid = anomaly_set(read_topic(kafka.bootstrap, s.topics.anomalies))
    producer.join()
    w2 = start_worker(s, "crash", "--max-idle", "6", log=tmp_path / "w2.log")
    _wait_idle_exit(w2)
    crashed = anomaly_set(read_topic(kafka.bootstrap, s.topics.anomalies))
    expected = _reference(kafka, redis_server, s.topics.metrics, windows)
    assert expected, "the reference run found no anomalies: the test would prove nothing"
    assert mid and len(mid) < len(expected), "the kill did not land mid-stream"
    assert mid <= expected
    assert crashed == expected


def _wait_until(condition, what: str, timeout: float = 120.0) -> None:
    """Wait on a condition, not a clock: a slow machine only waits longer."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s: {what}"
        time.sleep(0.2)


def test_two_workers_split_series_and_rebalance_through_redis(kafka, redis_server, tmp_path):
    windows = metric_windows(12, 200, seed=31, spikes={(3, 150): 6.0, (8, 180): 6.0})
    s = settings_for(kafka.bootstrap, redis_server.url, "pair", **{"topics.metrics": "metrics-pair"})
    produce_points(kafka.bootstrap, s.topics.metrics, flat(windows[:100]))
    a = start_worker(s, "pair", "--checkpoint", "0.5", "--max-idle", "25", log=tmp_path / "a.log")
    store = redis.Redis.from_url(redis_server.url)
    # a owns every partition and has learnt (and checkpointed) series of the first half
    _wait_until(lambda: store.keys(f"{s.redis.key_prefix}series:*"), "worker a checkpointed no series")
    b = start_worker(s, "pair", "--checkpoint", "0.5", "--max-idle", "25", log=tmp_path / "b.log")
    # rebalance: some partitions move to b, their state through Redis
    _wait_until(lambda: "partitions revoked" in (tmp_path / "a.log").read_text()
                and "partitions assigned" in (tmp_path / "b.log").read_text(), "no rebalance to worker b")
    produce_points(kafka.bootstrap, s.topics.metrics, flat(windows[100:]))
    _wait_idle_exit(a)
    _wait_idle_exit(b)
    logs = (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
    assert "partitions revoked" in logs, "no rebalance happened"
    got = anomaly_set(read_topic(kafka.bootstrap, s.topics.anomalies))
    expected = _reference(kafka, redis_server, s.topics.metrics, windows)
    assert expected and got == expected


def test_redis_outage_keeps_detecting_and_checkpoints_resume(kafka, tmp_path):
    import urllib.request

    from patrol.sim.broker import free_port
    from patrol.sim.redis_server import LocalRedis

    port = free_port()
    rds = LocalRedis(port=port).start()
    windows = metric_windows(3, 220, seed=41, spikes={(0, 180): 8.0})
    s = settings_for(kafka.bootstrap, rds.url, "outage", **{"topics.metrics": "metrics-outage"})
    produce_points(kafka.bootstrap, s.topics.metrics, flat(windows[:100]))
    mport = free_port()
    w = start_worker(s, "outage", "--checkpoint", "0.5", "--max-idle", "30", "--metrics-port", str(mport),
                     log=tmp_path / "w.log")

    def metric(name):
        body = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5).read().decode()
        return next(float(line.split()[-1]) for line in body.splitlines() if line.startswith(name + " "))

    deadline = time.monotonic() + 60
    while not redis.Redis.from_url(rds.url).exists("outage:series") and time.monotonic() < deadline:
        time.sleep(0.3)
    assert metric("patrol_detect_redis_up") == 1
    rds.stop()
    produce_points(kafka.bootstrap, s.topics.metrics, flat(windows[100:]))  # includes the spike
    deadline = time.monotonic() + 60
    spike_ws = windows[180][0].window_start.isoformat().replace("+00:00", "Z")
    while time.monotonic() < deadline:
        if any(a.get("window_start") == spike_ws for a in read_topic(kafka.bootstrap, s.topics.anomalies)):
            break
        time.sleep(0.5)
    else:
        raise AssertionError("no anomaly published while Redis was down")
    assert metric("patrol_detect_redis_up") == 0
    rds = LocalRedis(port=port).start()  # Redis returns, empty
    deadline = time.monotonic() + 30
    while not redis.Redis.from_url(rds.url).exists("outage:series") and time.monotonic() < deadline:
        time.sleep(0.3)
    try:
        assert w.wait(60) == 0
        log = (tmp_path / "w.log").read_text()
        assert "Redis unavailable" in log and "Redis is back" in log
        keys = redis.Redis.from_url(rds.url).smembers("outage:series")
        assert len([k for k in keys if not k.startswith(b"__")]) == 6  # every series re-checkpointed
    finally:
        rds.stop()


def test_sigterm_stops_gracefully_with_json_logs_and_commits(kafka, redis_server):
    """No periodic checkpoint happens (60 s); SIGTERM alone must flush, checkpoint and commit."""
    import json as _json
    import subprocess
    import sys
    import urllib.request
    from pathlib import Path

    from confluent_kafka import Consumer, TopicPartition

    from patrol.sim.broker import free_port

    s = settings_for(kafka.bootstrap, redis_server.url, "term", **{"topics.metrics": "metrics-term"})
    produce_points(kafka.bootstrap, s.topics.metrics, flat(metric_windows(2, 50, seed=3)))
    env = {**worker_env(s), "PATROL_SERVICE__LOG_FORMAT": "json"}
    mport = free_port()
    w = subprocess.Popen([str(Path(sys.executable).with_name("patrol")), "run", "detect", "--group", "term",
                          "--checkpoint", "60", "--metrics-port", str(mport)], env=env, stderr=subprocess.PIPE, text=True)

    def points_seen() -> float:
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=2).read().decode()
        except OSError:
            return 0.0
        return next((float(x.split()[-1]) for x in body.splitlines() if x.startswith("patrol_detect_points_total ")), 0.0)

    deadline = time.monotonic() + 60
    while points_seen() < 200 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert not redis.Redis.from_url(redis_server.url).exists("term:series")  # nothing checkpointed yet
    w.send_signal(signal.SIGTERM)
    _, err = w.communicate(timeout=60)
    assert w.returncode == 0, err
    json_lines = [_json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(j["msg"] == "partitions assigned" and j["level"] == "info" for j in json_lines)
    assert "200 points" in err  # the summary
    c = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "term"})
    committed = c.committed([TopicPartition(s.topics.metrics, p) for p in range(6)], timeout=10)
    c.close()
    # everything consumed is committed: the 200 points and the worker's own fences after them
    ends = {p: len(offs) for p, offs in partition_offsets(kafka.bootstrap, s.topics.metrics).items()}
    assert {tp.partition: max(tp.offset, 0) for tp in committed} == {p: ends.get(p, 0) for p in range(6)}
    assert sum(ends.values()) >= 200
    assert len(redis.Redis.from_url(redis_server.url).smembers("term:series")) >= 4


def partition_offsets(bootstrap: str, topic: str) -> dict[int, list[int]]:
    """Offsets of every record of ``topic`` per partition, read to each partition's end event."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
    from confluent_kafka.admin import AdminClient

    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "offsets-reader", "enable.auto.commit": False,
                  "enable.partition.eof": True})
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in md.topics[topic].partitions])
    out, pending, deadline = {}, set(md.topics[topic].partitions), time.monotonic() + 60
    while pending and time.monotonic() < deadline:
        for m in c.consume(1000, 0.5):
            if m.error() is None:
                out.setdefault(m.partition(), []).append(m.offset())
            elif m.error().code() == KafkaError._PARTITION_EOF:
                pending.discard(m.partition())
    c.close()
    assert not pending
    return out
