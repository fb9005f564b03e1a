"""The foundation commands through the real ``patrol`` console script."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from confluent_kafka.admin import AdminClient, ConfigResource

from conftest import run_patrol


def test_help_lists_every_command():
    out = run_patrol("--help", check=True).stdout
    for cmd in ("schema", "config", "topics", "broker", "demo", "run"):
        assert cmd in out, cmd


def test_version():
    assert run_patrol("--version", check=True).stdout.startswith("ingress-patrol ")


def test_schema_prints_json_schema_per_kind():
    all_schemas = json.loads(run_patrol("schema", check=True).stdout)
    assert set(all_schemas) == {"access_log", "metric_point", "anomaly", "incident", "label", "dead_letter"}
    anomaly = json.loads(run_patrol("schema", "anomaly", check=True).stdout)
    assert {"series", "observed", "expected", "lower", "upper", "score", "severity"} <= set(anomaly["properties"])
    bad = run_patrol("schema", "nope")
    assert bad.returncode == 2 and "unknown record kind" in bad.stderr


def test_config_show_precedence_and_masking(tmp_path: Path):
    cfg = tmp_path / "patrol.yaml"
    cfg.write_text(yaml.safe_dump({"topics": {"logs": "from-yaml", "metrics": "m-yaml"},
                                   "kafka": {"sasl_password": "yaml-secret"}}))
    env = {"PATROL_TOPICS__METRICS": "m-env", "PATROL_KAFKA__SASL_PASSWORD": "env-secret",
           "PATROL_REDIS__URL": "redis://:pw@h:6379/0"}
    out = run_patrol("--config", str(cfg), "--set", "preagg.window_s=10", "config", "show", "--format", "json",
                     env=env, check=True).stdout
    data = json.loads(out)
    assert data["topics"]["logs"] == "from-yaml"      # file
    assert data["topics"]["metrics"] == "m-env"       # env beats file
    assert data["preagg"]["window_s"] == 10           # --set beats all
    assert "secret" not in out and "pw@" not in out   # masked
    assert data["kafka"]["sasl_password"] == "**********"


def test_config_errors_are_clear(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kafka: [unclosed")
    r = run_patrol("--config", str(bad), "config", "show")
    assert r.returncode == 2 and "not valid YAML" in r.stderr
    r = run_patrol("--set", "preagg.window_s=0", "config", "show")
    assert r.returncode == 2 and "preagg.window_s" in r.stderr
    r = run_patrol("--config", str(tmp_path / "missing.yaml"), "config", "show")
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_topics_create_is_idempotent_with_explicit_configs(fresh_kafka):
    env = {"PATROL_KAFKA__BOOTSTRAP_SERVERS": fresh_kafka.bootstrap}
    first = run_patrol("topics", "create", env=env, check=True).stdout
    assert first.count("created") == 5
    second = run_patrol("topics", "create", env=env, check=True).stdout
    assert second.count("exists") == 5 and "created" not in second
    admin = AdminClient({"bootstrap.servers": fresh_kafka.bootstrap})
    md = admin.list_topics(timeout=10)
    assert len(md.topics["ingress-logs"].partitions) == 6
    cfg = admin.describe_configs([ConfigResource("topic", "anomaly-labels")])
    values = {k: v.value for k, v in next(iter(cfg.values())).result().items()}
    assert values["cleanup.policy"] == "compact"
    listing = run_patrol("topics", "list", env=env, check=True).stdout
    assert "ingress-dlq" in listing and "missing" not in listing


def test_topics_create_without_broker_says_how():
    r = run_patrol("topics", "create")
    assert r.returncode == 2 and "PATROL_KAFKA__BOOTSTRAP_SERVERS" in r.stderr


def test_broker_command_serves_kafka_and_stops_on_sigterm():
    from patrol.sim.broker import free_port

    port = free_port()
    exe = Path(sys.executable).with_name("patrol")
    proc = subprocess.Popen([str(exe), "broker", "--port", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert f"127.0.0.1:{port}" in line
        md = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"}).list_topics(timeout=10)
        assert "ingress-anomalies" in md.topics
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
