"""docker-compose.kafka.yml cannot run here (no Docker engine): check its wiring by reading it."""

import tomllib
from pathlib import Path

import yaml

from conftest import REPO, run_patrol
from patrol.streams.config import load_settings

COMPOSE = yaml.safe_load((REPO / "docker-compose.kafka.yml").read_text())
SERVICES = COMPOSE["services"]


def test_services_present():
    assert {"kafka", "redis", "topics", "preagg", "detect"} <= set(SERVICES)
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:")


def test_kafka_is_a_single_kraft_node():
    env = SERVICES["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    node = env["KAFKA_NODE_ID"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node}@kafka:9093"
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    protocol_map = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners) == set(protocol_map)
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] not in advertised  # controllers are never advertised
    assert advertised["PLAINTEXT"] == "kafka:9092"
    # one broker: internal topics cannot have replication 3
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 1
    published = {p.split(":")[0] for p in SERVICES["kafka"]["ports"]}
    assert advertised["EXTERNAL"].split(":")[1] in published


def test_workers_point_at_the_compose_services_and_valid_settings(monkeypatch):
    for name in ("topics", "preagg", "detect"):
        svc = SERVICES[name]
        env = svc["environment"]
        host, port = env["PATROL_KAFKA__BOOTSTRAP_SERVERS"].split(":")
        assert host in SERVICES and host == "kafka" and port == "9092"
        assert env["PATROL_REDIS__URL"].startswith("redis://redis:")
        for k, v in env.items():
            monkeypatch.setenv(k, str(v))
        s = load_settings()  # every PATROL_* variable is a real setting (extra keys are rejected)
        assert s.kafka.bootstrap_servers == "kafka:9092"
        for dep in svc.get("depends_on", {}):
            assert dep in SERVICES


def test_worker_commands_exist_in_the_cli():
    for name in ("topics", "preagg", "detect"):
        cmd = SERVICES[name]["command"]
        r = run_patrol(*cmd, "--help")
        assert r.returncode == 0, f"service {name}: `patrol {' '.join(cmd)}` is not a command: {r.stderr}"


def test_dockerfile_installs_every_package():
    """Every package pyproject installs is copied into the image, and setup.py (the compiled loops) too."""
    dockerfile = (REPO / "Dockerfile").read_text()
    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = [pattern.rstrip("*") for pattern in include]
    assert {"records", "preagg", "detectors", "models", "streams", "sim", "cli"} <= set(packages)
    for pkg in packages:
        assert f"COPY {pkg} " in dockerfile
    assert "COPY setup.py " in dockerfile
    assert 'ENTRYPOINT ["patrol"]' in dockerfile
