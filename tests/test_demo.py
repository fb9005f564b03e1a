"""`patrol demo` through the real CLI: embedded broker, stages, progress, clean stop."""

import re

from conftest import run_patrol


def test_demo_runs_for_its_duration_and_stops_cleanly():
    r = run_patrol("demo", env={"PATROL_DEMO_DURATION": "50"}, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    counts = [int(m.replace(",", "")) for m in re.findall(r"logs ([\d,]+) \(", out)]
    assert len(counts) >= 2 and counts[-1] > counts[0] and counts[-1] > 1000, out
    rates = [int(m.replace(",", "")) for m in re.findall(r"logs [\d,]+ \(([\d,]+)/s\)", out)]
    assert max(rates) > 100
    assert "stopping: generator, preagg, detect" in out and "demo stopped cleanly" in out
    metrics = [int(m.replace(",", "")) for m in re.findall(r"metrics ([\d,]+) \(", out)]
    assert metrics[-1] > 0, "pre-aggregation published no metric points"
    found = re.search(r"incidents found (\d+)/(\d+); false alarms ([\d.]+) anomalies/h", out)
    assert found, out
    n_found, n_judged = int(found.group(1)), int(found.group(2))
    assert n_judged >= 1 and n_found >= 1, f"no injected incident was detected: {found.group(0)}"


def test_demo_with_unreachable_broker_fails_clearly():
    r = run_patrol("demo", "--duration", "5", "--bootstrap", "127.0.0.1:1", timeout=60)
    assert r.returncode == 1 and "could not create topics on 127.0.0.1:1" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr
