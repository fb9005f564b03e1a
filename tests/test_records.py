import json
from datetime import datetime, timezone

import pytest

from patrol.records import (SCHEMA_VERSION, Anomaly, DeadLetter, MetricPoint, RecordError, Sketch, decode,
                             json_schemas, series_key)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
T1 = datetime(2026, 1, 1, 12, 1, tzinfo=timezone.utc)


def test_metric_point_roundtrip_and_deterministic_id():
    a = MetricPoint.make("requests", {"service": "web", "namespace": "shop"}, T0, T1, 42.0, count=42,
                         sketch=Sketch.from_bytes("hll", b"\x01\x02", lg_k=12))
    b = MetricPoint.make("requests", {"namespace": "shop", "service": "web"}, T0, T1, 43.0)
    assert a.series == "requests{namespace=shop,service=web}" == series_key("requests", {"service": "web", "namespace": "shop"})
    assert a.id == b.id  # id depends on series and window, not on the value
    other = MetricPoint.make("requests", {"service": "api"}, T0, T1, 1.0)
    assert other.id != a.id
    back = decode(a.to_bytes())
    assert isinstance(back, MetricPoint) and back == a
    assert back.sketch.raw() == b"\x01\x02"


@pytest.mark.parametrize("raw, code", [
    (b"not json", "bad_json"),
    (b"[1,2]", "bad_shape"),
    (b'{"kind": "martian"}', "unknown_kind"),
    (json.dumps({"kind": "metric_point", "v": SCHEMA_VERSION + 1}).encode(), "future_version"),
    (json.dumps({"kind": "metric_point", "v": 1, "id": "x"}).encode(), "bad_shape"),
    (b"\xff\xfe", "bad_json"),
])
def test_bad_records_are_clear_errors(raw, code):
    with pytest.raises(RecordError) as exc:
        decode(raw)
    assert exc.value.code == code
    assert exc.value.reason


def test_expected_kind_is_enforced():
    a = MetricPoint.make("requests", {}, T0, T1, 1.0)
    with pytest.raises(RecordError, match="expected a anomaly record"):
        decode(a.to_bytes(), expect=Anomaly)


def test_unknown_fields_within_a_version_are_ignored():
    a = json.loads(MetricPoint.make("requests", {}, T0, T1, 1.0).to_bytes())
    a["added_later"] = {"x": 1}
    assert decode(json.dumps(a)).value == 1.0


def test_anomaly_score_is_bounded():
    with pytest.raises(RecordError, match="score"):
        decode(json.dumps({"kind": "anomaly", "id": "a", "series": "s", "metric": "m", "window_start": T0.isoformat(),
                           "window_end": T1.isoformat(), "observed": 1, "expected": 0, "lower": 0, "upper": 1,
                           "score": 1.5, "severity": "warning", "direction": "up"}))


def test_dead_letter_keeps_raw_bytes():
    d = DeadLetter.of(b"\x00garbage\xff", "no closing quote", "parse_error", "ingress-logs", 2, 17)
    back = decode(d.to_bytes())
    assert back.raw_bytes() == b"\x00garbage\xff" and back.source_offset == 17 and back.code == "parse_error"


def test_schemas_cover_every_kind():
    s = json_schemas()
    assert set(s) == {"access_log", "metric_point", "anomaly", "incident", "label", "dead_letter"}
    assert "observed" in s["anomaly"]["properties"] and "expected" in s["anomaly"]["properties"]


def test_service_threshold_defaults_to_the_detector_librarys():
    from patrol import detectors
    from patrol.streams.config import Settings

    assert Settings().detect.threshold == detectors.DEFAULT_THRESHOLD
