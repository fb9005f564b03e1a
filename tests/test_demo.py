"""`patrol demo` through the real CLI: embedded broker, stages, progress, clean stop."""

import re

from conftest import run_patrol


def test_demo_runs_for_its_duration_and_stops_cleanly():
    r = run_patrol("demo", env={"PATROL_DEMO_DURATION": "15"}, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    counts = [int(m.replace(",", "")) for m in re.findall(r"logs ([\d,]+) \(", out)]
    assert len(counts) >= 2 and counts[-1] > counts[0] and counts[-1] > 1000, out
    rates = [int(m.replace(",", "")) for m in re.findall(r"logs [\d,]+ \(([\d,]+)/s\)", out)]
    assert max(rates) > 100
    assert "stopping: generator" in out and "demo stopped cleanly" in out


def test_demo_with_unreachable_broker_fails_clearly():
    r = run_patrol("demo", "--duration", "5", "--bootstrap", "127.0.0.1:1", timeout=60)
    assert r.returncode == 1 and "could not create topics on 127.0.0.1:1" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr
