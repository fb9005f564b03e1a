"""`patrol models list|show|reset` against state written by a real detect worker."""

import json

from benchmarks.metric_stream import metric_windows
from conftest import run_patrol
from detect_helpers import produce_points, settings_for, worker_env


def test_models_list_show_reset(kafka, redis_server):
    s = settings_for(kafka.bootstrap, redis_server.url, "mcli", **{"topics.metrics": "metrics-mcli"})
    produce_points(kafka.bootstrap, s.topics.metrics, [p for w in metric_windows(2, 30, seed=2) for p in w])
    env = worker_env(s)
    assert run_patrol("run", "detect", "--max-idle", "5", env=env, timeout=120).returncode == 0
    listed = json.loads(run_patrol("models", "list", "--json", env=env, check=True).stdout)
    keys = sorted(x["series"] for x in listed)
    assert keys == sorted(f"{m}{{namespace=ns{i % 3},service=svc{i}}}" for m in ("requests", "error_ratio") for i in range(2))
    assert all(x["last_window"] == "2026-11-02 00:29" for x in listed)
    table = run_patrol("models", "list", "requests*", env=env, check=True).stdout
    assert "2 series" in table and "error_ratio" not in table
    shown = json.loads(run_patrol("models", "show", keys[0], env=env, check=True).stdout)
    assert shown["kind"] == "ratio" and shown["direction"] == "up" and 0 < shown["state_bytes"] <= 8192
    assert run_patrol("models", "reset", keys[0], "--yes", env=env, check=True).stdout.startswith("reset")
    missing = run_patrol("models", "show", keys[0], env=env)
    assert missing.returncode == 2 and "no model state" in missing.stderr
    assert run_patrol("models", "reset", "nope{}", "--yes", env=env).returncode == 2


def test_models_without_redis_says_how():
    r = run_patrol("models", "list")
    assert r.returncode == 2 and "PATROL_REDIS__URL" in r.stderr
