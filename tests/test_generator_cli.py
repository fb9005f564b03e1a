"""``patrol generate`` through the real console script (file, stdout, Kafka, bounds, errors)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import typer
from confluent_kafka import Consumer
from typer.testing import CliRunner

from patrol.cli.commands.generate import generate
from patrol.sim.generator import generate_lines, resolve_start
from test_generator_helpers import LINE_RE, parse

START = "2026-01-05T09:00:00Z"
PATROL = Path(sys.executable).with_name("patrol")  # the installed console script


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``patrol generate ARGS`` as a real process (bytes out, PATROL_* settings cleared)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATROL_")}
    env["COLUMNS"] = "200"
    return subprocess.run([str(PATROL), "generate", *args], capture_output=True, timeout=timeout, env=env)


def test_file_output_with_incident_and_ground_truth(tmp_path):
    out, gt = tmp_path / "x.log", tmp_path / "gt.jsonl"
    p = cli("--out", str(out), "--lines", "3000", "--start", START, "--seed", "5", "--clients", "500",
            "--incidents", "error_spike@0s:10m@api-catalog-3000*0.5", "--ground-truth", str(gt))
    assert p.returncode == 0, p.stderr.decode()
    lines = out.read_bytes().splitlines()
    assert len(lines) == 3000
    parsed = parse(lines)  # asserts every line matches the default format
    assert b"generate: 3,000 lines" in p.stderr, "a progress/summary line on stderr"
    recs = [json.loads(x) for x in gt.read_text().splitlines()]
    assert len(recs) == 1 and recs[0]["type"] == "error_spike" and recs[0]["magnitude"] == 0.5
    assert recs[0]["start_epoch"] == resolve_start(START)
    cat = parsed.upstream == "api-catalog-3000"
    assert (parsed.status[cat] >= 500).mean() > 0.35


def test_stdout_sim_duration_matches_python_api():
    # --sim-duration bounds simulated time; the API is deterministic per seed (test_generator_model),
    # so equality here means the CLI is deterministic too.
    p = cli("--sim-duration", "15m", "--start", START, "--seed", "77", "--base-rate", "5", "--clients", "300",
            "--incidents", "none")
    assert p.returncode == 0, p.stderr.decode()
    assert p.stderr == b"", "no progress noise when writing to stdout by default"
    api = [line for _, _, line in generate_lines(seed=77, start=START, duration="15m", base_rate=5,
                                                 incidents="none", n_clients=300)]
    assert p.stdout.splitlines() == api
    t = parse(api).t
    s = resolve_start(START)
    assert t.min() >= s and s + 840 < t.max() < s + 900


def test_wall_duration_with_speedup_paces_event_time(tmp_path):
    out = tmp_path / "w.log"
    p = cli("--out", str(out), "--wall-duration", "2s", "--speedup", "600", "--start", START, "--base-rate", "5",
            "--clients", "300")
    assert p.returncode == 0, p.stderr.decode()
    t = parse(out.read_bytes().splitlines()).t
    span = t.max() - resolve_start(START)
    # 2 wall seconds at 600x is ~20 simulated minutes (startup overhead not counted by the pacer).
    assert 600 < span < 1500, span


def test_kafka_output_and_failed_delivery_exit_code(kafka):
    broker = kafka  # the session's embedded Tansu broker (tests/conftest.py)
    topic = "cli-" + uuid.uuid4().hex[:8]
    p = cli("--bootstrap", broker.bootstrap, "--topic", topic, "--lines", "5000", "--speedup", "0",
            "--start", START, "--clients", "500", "--kafka-config", "topic.metadata.refresh.interval.ms=1000")
    assert p.returncode == 0, p.stderr.decode()
    assert b"delivery errors 0" in p.stderr
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g-" + topic, "session.timeout.ms": 6000,
                  "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got, deadline = [], time.monotonic() + 40
    while len(got) < 5000 and time.monotonic() < deadline:
        got += [m for m in c.consume(1000, 0.5) if m.error() is None]
    c.close()
    assert len(got) == 5000
    assert all(LINE_RE.match(m.value().decode()) for m in got[:500])
    bad = cli("--bootstrap", "127.0.0.1:1", "--lines", "20", "--speedup", "0", "--clients", "100",
              "--kafka-config", "message.timeout.ms=500")
    assert bad.returncode == 1
    assert b"20 Kafka delivery errors" in bad.stderr


@pytest.mark.parametrize("args, msg", [
    (["--incidents", "meteor@1h:5m"], "unknown incident type"),
    (["--out", "-", "--bootstrap", "x:1"], "not both"),
    (["--sim-duration", "5 parsecs"], "bad duration"),
    (["--rate", "100", "--speedup", "10", "--base-rate", "5"], "drop one of"),
])
def test_bad_arguments_exit_2_with_reason(args, msg):
    # In-process with typer's runner, registered as cli/app.py does (app.command("generate")), to keep
    # the suite fast; the tests above run the real `patrol generate` process.
    app = typer.Typer()
    app.command("generate")(generate)
    app.command("version")(lambda: None)
    res = CliRunner().invoke(app, ["generate", *args, "-n", "1"], env={"COLUMNS": "200"})
    assert res.exit_code == 2
    assert msg in res.output, res.output


def test_listed_in_patrol_help():
    helps = subprocess.run([str(PATROL), "--help"], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "COLUMNS": "200"})
    assert " generate " in helps.stdout


def test_sigterm_stops_cleanly(tmp_path):
    # The demo stops its generator with SIGTERM: it must flush what it has and exit 0.
    out = tmp_path / "t.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATROL_")}
    proc = subprocess.Popen([str(PATROL), "generate", "--out", str(out), "--speedup", "60", "--clients", "200",
                             "--start", START], stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 10_000):
        time.sleep(0.1)
    proc.terminate()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    data = out.read_bytes()
    assert data.endswith(b"\n")
    n = len(parse(data.splitlines()))
    assert f"generate: {n:,} lines".encode() in err, "final summary counts what was written"
