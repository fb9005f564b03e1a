"""benchmarks.pipeline: the scoring rules on hand-made truth, and one tiny end-to-end run on broker + redis."""

import json
from datetime import datetime, timezone

import pytest

from benchmarks.pipeline_score import (DAY, false_sources, score, service_of_upstream, truth_from_ground_truth,
                                       validate_truth)

T0 = 1_800_000_000.0  # the truth start (any epoch)
H = 3600.0


def anomaly(aid, service, ws, metric="error_ratio", scope="service", namespace="shop", detectors=("spike",)):
    dims = {"scope": scope} if service is None else {"namespace": namespace, "scope": scope, "service": service}
    inner = ",".join(f"{k}={v}" for k, v in sorted(dims.items()))
    return {"id": aid, "series": f"{metric}{{{inner}}}", "metric": metric, "dims": dims,
            "window_start": ws, "window_end": ws + 60, "detectors": list(detectors)}


def opened(iid, service, t, first="requests{namespace=shop,scope=service,service=web}", event="opened"):
    return {"id": iid, "event": event, "service": service, "opened": t, "series": [first]}


TRUTH = {"start": T0, "days": 3, "incidents": [
    {"kind": "error_spike", "service": "web", "start": T0 + DAY + 2 * H, "end": T0 + DAY + 2 * H + 600, "direction": "up"},
    {"kind": "error_spike", "service": "web", "start": T0 + 2 * DAY, "end": T0 + 2 * DAY + 600, "direction": "up"},
    {"kind": "traffic_drop", "service": "cart", "start": T0 + DAY + 5 * H, "end": T0 + DAY + 5 * H + 900,
     "direction": "down"},
    {"kind": "latency_spike", "service": "api", "start": T0 + DAY + 8 * H, "end": T0 + DAY + 8 * H + 600,
     "direction": "up"},
]}


def test_found_and_delays_per_kind():
    s1, s2, s3, s4 = (i["start"] for i in TRUTH["incidents"])
    anomalies = [
        anomaly("a1", "web", s1 + 120),              # window ends 180 s after the start
        anomaly("a1", "web", s1 + 120),              # the same id again (a replay): counted once
        anomaly("a2", "web", s1 + 300),              # later anomaly of the same incident: the first one counts
        anomaly("a3", "web", s2 + 600 + 240),        # 4 min after the end: inside the 5-min slack
        anomaly("a4", "web", s3 + 60, metric="requests"),      # right time, wrong service: cart is not found
        anomaly("a5", None, s3 + 60, scope="global"),          # global series name no service: not found either
        anomaly("a6", "api", s4 + 900 + 360),        # 6 min after the end: outside the slack
    ]
    r = score(TRUTH, anomalies, [], n_services=3)
    assert r["found"]["error_spike"] == {"found": 2, "total": 2}
    assert r["found"]["traffic_drop"] == {"found": 0, "total": 1}
    assert r["found"]["latency_spike"] == {"found": 0, "total": 1}
    assert r["found"]["all"] == {"found": 2, "total": 4}
    # delays: window end minus incident start, 180 s and 600 + 240 + 60 = 900 s
    assert r["delay_s"]["median"] == pytest.approx((180 + 900) / 2)
    assert r["delay_s"]["max"] == 900
    assert {m["kind"] for m in r["missed"]} == {"traffic_drop", "latency_spike"}


def test_false_incidents_widening_first_day_and_rates():
    s1 = TRUTH["incidents"][0]["start"]
    e1 = TRUTH["incidents"][0]["end"]
    incidents = [
        opened("i-before", "shop/web", s1 - 9 * 60),       # 9 min before the start: inside the widening
        opened("i-after", "shop/web", e1 + 9 * 60),        # 9 min after the end: inside
        opened("i-late", "shop/web", e1 + 11 * 60),        # 11 min after: false
        opened("i-late", "shop/web", e1 + 11 * 60, event="updated"),  # its later events do not count again
        opened("i-other", "shop/cart", s1 + 60, first="status_5xx{namespace=shop,scope=route,service=cart}"),
        opened("i-global", "global", s1 + 60, first="requests{scope=global}"),  # global: any service's window
        opened("i-day0", "shop/web", T0 + 3 * H),          # first day: the warm-up, not counted
        opened("i-quiet", "shop/web", T0 + 2 * DAY + 12 * H),  # nothing near: false
        opened("i-resolved", "shop/web", T0 + 2 * DAY + 14 * H, event="resolved"),  # not an opening
    ]
    r = score(TRUTH, [], incidents, n_services=4)
    assert r["false_incidents"] == 3  # i-late, i-other, i-quiet
    assert r["false_incidents_in_other_services_window"] == 1  # i-other sat in web's window
    assert r["evaluated"]["days"] == 2  # three days minus the first
    assert r["false_incidents_per_service_day"] == pytest.approx(3 / (4 * 2), abs=1e-4)
    src = r["false_sources"]
    assert src["incidents_by_opening_metric"] == {"requests": 2, "status_5xx": 1}
    assert src["incidents_by_opening_scope"] == {"service": 2, "route": 1}
    # without the warm-up exclusion the first-day incident counts as well, over three days
    r0 = score(TRUTH, [], incidents, n_services=4, warmup_days=0)
    assert r0["false_incidents"] == 4 and r0["false_incidents_per_service_day"] == pytest.approx(4 / 12, abs=1e-4)


def test_false_anomalies_and_after():
    s1, e1 = TRUTH["incidents"][0]["start"], TRUTH["incidents"][0]["end"]
    anomalies = [
        anomaly("in", "web", s1 + 60),
        anomaly("widened", "web", e1 + 8 * 60),                          # window ends 9 min after: not false
        anomaly("false1", "web", e1 + 20 * 60, metric="request_time_p99", detectors=("cusum", "spike")),
        anomaly("false2", None, T0 + 2 * DAY + 6 * H, scope="global", metric="requests", detectors=()),
        anomaly("day0", "web", T0 + H),                                  # warm-up day
    ]
    r = score(TRUTH, anomalies, [], n_services=2)
    assert r["false_anomalies"] == 2
    assert r["false_anomalies_per_service_day"] == pytest.approx(2 / (2 * 2), abs=1e-4)
    assert r["false_sources"]["anomalies_by_scope"] == {"service": 1, "global": 1}
    assert r["false_sources"]["anomalies_by_detector"] == {"cusum": 1, "spike": 1, "-": 1}
    # evaluating after day 2 keeps only what happens then: one false anomaly, the day-2 incident
    r2 = score(TRUTH, anomalies, [], n_services=2, after=T0 + 2 * DAY)
    assert r2["false_anomalies"] == 1 and r2["evaluated"]["days"] == 1
    assert r2["found"]["all"]["total"] == 1


def test_truth_service_forms_and_validation():
    truth = {"start": T0, "days": 2, "incidents": [
        {"kind": "error_spike", "service": "shop/web", "start": T0 + DAY + H, "end": T0 + DAY + H + 600}]}
    hit = anomaly("x", "web", T0 + DAY + H + 60, namespace="shop")
    miss = anomaly("y", "web", T0 + DAY + H + 60, namespace="blog")  # same service name, other namespace
    assert score(truth, [hit], [], 1)["found"]["all"]["found"] == 1
    r = score(truth, [miss], [], 1)
    assert r["found"]["all"]["found"] == 0 and r["false_anomalies"] == 1
    with pytest.raises(ValueError, match="lacks"):
        validate_truth({"start": T0, "incidents": []})
    with pytest.raises(ValueError, match="direction"):
        validate_truth({"start": T0, "days": 1, "incidents": [
            {"kind": "k", "service": "s", "start": T0, "end": T0 + 1, "direction": "sideways"}]})
    iso = validate_truth({"start": "2027-01-15T00:00:00Z", "days": 1, "incidents": []})
    assert iso["start"] == datetime(2027, 1, 15, tzinfo=timezone.utc).timestamp()


def test_converter_from_generator_ground_truth():
    recs = [{"type": "level_shift", "start_epoch": T0 + 100, "end_epoch": T0 + 200, "target": {"service": "esmon-esmon-es-http-9200"},
             "metrics": [{"metric": "requests", "direction": "down"}]},
            {"type": "error_spike", "start_epoch": T0 + 50, "end_epoch": T0 + 60, "target": {"service": "shop-frontend-80"},
             "metrics": [{"metric": "error_ratio", "direction": "up"}]}]
    t = truth_from_ground_truth(recs, T0, 1.5)
    assert t["start"] == T0 and t["days"] == 1.5
    assert [(i["kind"], i["service"], i["direction"]) for i in t["incidents"]] == [
        ("error_spike", "frontend", "up"), ("level_shift", "esmon-es-http", "down")]
    assert service_of_upstream("shop-frontend-80") == "frontend"
    assert validate_truth(t)["incidents"][0]["end"] == T0 + 60


def test_false_sources_counts_openers():
    inc = [opened("a", "shop/web", 0, first="error_ratio{namespace=shop,scope=route,service=web}"),
           opened("b", "global", 0, first="requests{scope=global}")]
    src = false_sources(inc, [])
    assert src["incidents_by_service"] == {"shop/web": 1, "global": 1}
    assert src["incidents_by_opening_scope"] == {"route": 1, "global": 1}


def test_feed_reads_the_upstream_key_and_event_time_of_generated_lines():
    from benchmarks.pipeline import _UPSTREAM, LineTimes
    from patrol.sim.generator import generate_lines

    times = LineTimes()
    rows = list(generate_lines(n=2000, seed=3, start="2026-01-05T00:00:00Z", incidents="none"))
    for t, key, line in rows:
        assert _UPSTREAM.search(line).group(1) == key  # the shipper's key, as the generator sets it
        assert times(line) == int(t)                    # the line's time, to the second
    assert _UPSTREAM.search(b"not a log line") is None and times(b"not a log line") is None


@pytest.mark.slow
@pytest.mark.timeout(900)  # about a minute alone; the idle tails and a busy machine stretch it
def test_tiny_end_to_end_run_on_broker_and_redis(tmp_path):
    """Three simulated hours of five services through generate -> feed -> patrol run preagg / detect,
    with an operator labeling the first two anomalies of each series after a short warm-up."""
    from benchmarks.pipeline import parse_args, run

    out = tmp_path / "out.json"
    args = parse_args(["--days", "0.125", "--base-rate", "8", "--services", "5", "--warmup-days", "0.03",
                       "--label-first", "2", "--label-days", "0.0625", "--preagg-idle", "3", "--detect-idle", "8",
                       "--timeout", "600", "--keep", str(tmp_path / "work"), "--json", str(out)])
    res = run(args)
    truth = json.loads((tmp_path / "work" / "data" / "truth.json").read_text())
    # the default incident mix of the first three hours: error, latency, scan, brute force, drop
    assert res["truth_incidents"] == len(truth["incidents"]) == 5
    assert res["found"]["all"]["total"] == 5
    assert 1 <= res["found"]["all"]["found"] <= 5
    assert res["delay_s"]["median"] is not None and 0 <= res["delay_s"]["median"] <= res["delay_s"]["max"]
    for key in ("false_incidents_per_service_day", "false_anomalies_per_service_day"):
        assert isinstance(res[key], float) and res[key] >= 0
    assert res["evaluated"]["services"] == 5
    run_ = res["run"]
    assert run_["lines"] == res["generated"]["lines"] > 10_000 and run_["unkeyed_lines"] == 0
    assert run_["upstreams"] == 5 and run_["phases"] == 2
    assert run_["preagg"]["points"] > 0 and run_["preagg"]["dead_letters"] == 0
    for name in ("unlabeled", "labeled"):
        d = run_["detect"][name]
        assert d["points"] >= run_["preagg"]["points"]  # every point read (a restart may read some twice)
        assert d["anomalies"] > 0
    labels = res["labels"]
    assert labels["published"] > 0 and labels["true"] + labels["false"] == labels["published"]
    for name in ("unlabeled", "labeled"):
        assert labels[name]["evaluated"]["days"] == pytest.approx(0.125 - 0.0625)
        assert labels[name]["false_incidents_per_service_day"] >= 0
        assert labels[name]["found"]["all"]["total"] == 2  # brute force (1:45) and drop (2:30) follow the labels
    assert json.loads(out.read_text())["found"] == res["found"]
    kept = (tmp_path / "work" / "anomalies-labeled.jsonl").read_text().splitlines()
    assert 0 < len(kept) <= run_["detect"]["labeled"]["anomalies"]  # unique ids; a replay republishes some
