"""Labels change what the detection stage publishes: a false-labeled pattern stops alerting, a
real incident at the same hour still alerts, and undoing the labels brings the alerts back. Labels
go through the real `patrol label` CLI."""

import json

from benchmarks.metric_stream import metric_windows
from conftest import run_patrol
from detect_helpers import produce_points, read_topic, settings_for, worker_env

DAY = 1440  # one-minute windows per day


def nightly(day: int) -> int:
    return day * DAY + 3 * 60 + 5 + 4 * day  # a batch job around 03:05-03:30, a little later each night


def test_false_labeled_pattern_stops_alerting_and_real_incident_still_alerts(kafka, redis_server):
    days = 10
    spikes = {(0, nightly(d)): 3.0 for d in range(days)}
    real = 6 * DAY + 3 * 60 + 20          # day 6, 03:20: a real incident, much larger
    spikes[(0, real)] = 12.0
    windows = metric_windows(1, days * DAY, seed=8, spikes=spikes, metrics=("requests",))
    s = settings_for(kafka.bootstrap, redis_server.url, "fb", **{"topics.metrics": "metrics-fb",
                                                                "topics.labels": "labels-fb"})
    env = worker_env(s)
    env["PATROL_TOPICS__LABELS"] = s.topics.labels
    env["PATROL_LABEL_AUTHOR"] = "test-operator"

    # days 0-4: the nightly job alerts (day 0's alert is the detectors' warm-up: its label is kept but
    # does not retrain, so the operator needs the later nights too)
    produce_points(kafka.bootstrap, s.topics.metrics, [p for w in windows[:5 * DAY] for p in w])
    assert run_patrol("run", "detect", "--max-idle", "6", env=env, timeout=300).returncode == 0
    first = [a for a in read_topic(kafka.bootstrap, s.topics.anomalies) if a["kind"] == "anomaly"]
    night_ws = {windows[nightly(d)][0].window_start.isoformat().replace("+00:00", "Z") for d in range(days)}
    nightly_alerts = [a for a in first if a["window_start"] in night_ws]
    assert len(nightly_alerts) >= 2, f"the nightly job did not alert before labels: {len(nightly_alerts)}"

    # an operator labels them false through the CLI
    for a in nightly_alerts:
        run_patrol("label", "mark", a["id"], "false", "--note", "nightly batch job", env=env, check=True)

    # days 5-6: same job, same size; plus a real incident at the same hour on day 6
    produce_points(kafka.bootstrap, s.topics.metrics, [p for w in windows[5 * DAY:7 * DAY] for p in w])
    r = run_patrol("run", "detect", "--max-idle", "6", env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    later = [a for a in read_topic(kafka.bootstrap, s.topics.anomalies) if a["kind"] == "anomaly"][len(first):]
    late_nights = {windows[nightly(d)][0].window_start.isoformat().replace("+00:00", "Z") for d in (5, 6)}
    assert not [a for a in later if a["window_start"] in late_nights], "a labeled-false pattern still alerts"
    real_ws = windows[real][0].window_start.isoformat().replace("+00:00", "Z")
    hit = [a for a in later if a["window_start"] == real_ws]
    assert hit, "the real incident at the same hour was muted"
    assert hit[0]["model_version"] > 1  # the labels retrained the series
    shown = json.loads(run_patrol("models", "show", hit[0]["series"], env=env, check=True).stdout)
    assert shown["label_changes"] and any("nightly" in json.dumps(c) or "suppress" in json.dumps(c)
                                          for c in shown["label_changes"])

    # the operator takes every label back (`patrol label undo`, one mark at a time): the retractions
    # unlearn the pattern, so days 7-9's nightly job alerts again
    for _ in nightly_alerts:
        run_patrol("label", "undo", env=env, check=True)
    seen = len(first) + len(later)
    produce_points(kafka.bootstrap, s.topics.metrics, [p for w in windows[7 * DAY:] for p in w])
    r = run_patrol("run", "detect", "--max-idle", "6", env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    after_undo = [a for a in read_topic(kafka.bootstrap, s.topics.anomalies) if a["kind"] == "anomaly"][seen:]
    last_nights = {windows[nightly(d)][0].window_start.isoformat().replace("+00:00", "Z") for d in (7, 8, 9)}
    back = [a for a in after_undo if a["window_start"] in last_nights]
    assert back, "the undone false labels still mute the nightly job"
    assert back[0]["model_version"] > hit[0]["model_version"]  # the retractions retrained the series
    shown = json.loads(run_patrol("models", "show", hit[0]["series"], env=env, check=True).stdout)
    assert any("unlearned" in json.dumps(c) for c in shown["label_changes"])
