"""generator -> preagg -> detect through the real CLI: keys, partial-series merging, no loss."""

import os
import time
from datetime import datetime

import redis
from conftest import run_patrol
from detect_helpers import read_topic
from patrol.streams.config import load_settings
from patrol.streams.topics import create_topics
from fixture_data import log_path


def read_all(bootstrap, topic):
    return read_topic(bootstrap, topic, with_meta=True)


def test_generated_logs_flow_to_detection_with_global_series_merged(fresh_kafka, redis_server):
    s = load_settings(overrides={"kafka.bootstrap_servers": fresh_kafka.bootstrap, "redis.url": redis_server.url,
                                 "redis.key_prefix": "pipe:"})
    create_topics(s)
    env = {"PATROL_KAFKA__BOOTSTRAP_SERVERS": fresh_kafka.bootstrap, "PATROL_REDIS__URL": redis_server.url,
           "PATROL_REDIS__KEY_PREFIX": "pipe:", "PATROL_KAFKA__SESSION_TIMEOUT_MS": "6000"}
    run_patrol("generate", "--bootstrap", fresh_kafka.bootstrap, "--lines", "40000", "--base-rate", "40",
               "--incidents", "none", "--speedup", "0", "--start", "2026-01-05T00:00:00Z", "--no-progress",
               env=env, check=True, timeout=180)
    run_patrol("run", "preagg", "--max-idle", "5", env=env, check=True, timeout=300)
    metrics = read_all(fresh_kafka.bootstrap, s.topics.metrics)
    assert metrics
    # keyed by service: every series of a service (and all global partials) share one partition
    by_key = {}
    for part, key, rec in metrics:
        by_key.setdefault(key, set()).add(part)
        svc = rec["dims"].get("service")
        assert key == (b"global" if not svc else f"{rec['dims'].get('namespace')}/{svc}".encode()
                       if rec["dims"].get("namespace") else svc.encode())
    assert all(len(parts) == 1 for parts in by_key.values())
    partial = [r for _, _, r in metrics if r["dims"].get("scope") == "global" and r["metric"] == "requests"]
    windows = {r["window_start"] for r in partial}
    assert len(partial) > len(windows)  # several preagg partitions each sent their share
    r = run_patrol("run", "detect", "--max-idle", "6", env=env, check=True, timeout=300)
    assert f"{len(metrics)} points" in r.stderr and "0 dead letters" in r.stderr
    rds = redis.Redis.from_url(redis_server.url)
    state = {k: v for k, v in rds.hgetall("pipe:series:requests{scope=global}").items()}
    last = max(windows)
    assert float(state[b"last_window"]) == datetime.fromisoformat(last.replace("Z", "+00:00")).timestamp()
    dlq = read_all(fresh_kafka.bootstrap, s.topics.dlq)
    assert not [d for d in dlq if d[2]["code"] != "late"], dlq[:3]


def test_preagg_worker_serves_prometheus_metrics(fresh_kafka):
    import subprocess
    import sys
    import urllib.request
    from pathlib import Path

    from confluent_kafka import Producer

    from patrol.sim.broker import free_port

    s = load_settings(overrides={"kafka.bootstrap_servers": fresh_kafka.bootstrap})
    create_topics(s)
    lines = [line.encode() for line in log_path("ingress_nginx_beats_sample.log").read_text().splitlines()]
    p = Producer({"bootstrap.servers": fresh_kafka.bootstrap})
    for line in lines + [b"garbage that is no log line"]:
        p.produce(s.topics.logs, line, key=b"k")
    p.flush(10)
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PATROL_")},
           "PATROL_KAFKA__BOOTSTRAP_SERVERS": fresh_kafka.bootstrap, "PATROL_KAFKA__SESSION_TIMEOUT_MS": "6000"}
    w = subprocess.Popen([str(Path(sys.executable).with_name("patrol")), "run", "preagg", "--metrics-port", str(port),
                          "--max-idle", "15"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        values, deadline = {}, time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
                values = {ln.split()[0]: float(ln.split()[1]) for ln in body.splitlines()
                          if ln.startswith("patrol_preagg_") and " " in ln}
                if values.get("patrol_preagg_lines_total", 0) >= len(lines) + 1:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert values.get("patrol_preagg_lines_total") == len(lines) + 1
        assert values.get("patrol_preagg_parse_errors_total") == 1
        assert "patrol_preagg_consumer_lag" in values and "patrol_preagg_late_total" in values
    finally:
        w.terminate()
        w.wait(30)
