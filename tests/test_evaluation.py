from patrol.sim.evaluation import evaluate, service_matches

TRUTH = [
    {"id": "e1", "type": "error_spike", "start_epoch": 3600, "end_epoch": 4200,
     "target": {"service": "shop-cart-api-8080", "namespace": "shop", "host": "shop.example.com"}},
    {"id": "d1", "type": "traffic_drop", "start_epoch": 7200, "end_epoch": 8100,
     "target": {"service": "media-images-80", "namespace": "media", "host": "img.example.com"}},
]


def anomaly(i, ns, svc, start, inc="g"):
    dims = {"namespace": ns, "service": svc} if svc else {}
    return {"kind": "anomaly", "id": f"a{i}", "series": f"m{i}", "dims": dims, "window_start": start,
            "window_end": start + 60, "incident_id": inc}


def test_service_matching_uses_the_upstream_name():
    assert service_matches({"namespace": "shop", "service": "cart-api"}, TRUTH[0]["target"])
    assert not service_matches({"namespace": "shop", "service": "cart"}, TRUTH[0]["target"])
    assert service_matches({}, TRUTH[0]["target"])  # global rollup
    assert not service_matches({"host": "img.example.com"}, TRUTH[0]["target"])


def test_found_missed_delay_and_false_alarm_rates():
    recs = [anomaly(1, "shop", "cart-api", 3720), anomaly(2, "shop", "cart-api", 3660),
            anomaly(3, "shop", "cart-api", 4200 + 240),          # within slack after the end
            anomaly(4, "shop", "cart-api", 4200 + 900, "x"),     # too late: false alarm
            anomaly(5, "media", "thumbs", 7300, "y"), anomaly(6, "media", "thumbs", 7360, "y"),
            {"kind": "incident", "id": "y", "event": "opened"}]
    ev = evaluate(TRUTH, recs, 0, 4 * 3600)
    e1, d1 = ev.incidents
    assert e1.found and e1.delay_s == 60 and e1.series == ["m1", "m2", "m3"]
    assert not d1.found and d1.delay_s is None
    assert ev.false_anomalies == 3 and ev.false_groups == 2
    assert ev.false_per_hour == 0.75 and ev.false_groups_per_hour == 0.5
    assert "found 1/2" in ev.summary()
