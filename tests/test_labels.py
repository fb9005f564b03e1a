"""Unit tests of the pure label bookkeeping (models/labels.py)."""

from datetime import datetime, timedelta, timezone

import pytest

from patrol.models.labels import (AmbiguousId, LabelBook, NothingToUndo, UnknownId, is_retraction, label_for, make_label,
                           precision_stats, resolve_id, short_ids, undo_target)
from patrol.records import Anomaly, LabelVerdict

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def anomaly(aid: str, metric: str = "error_ratio", service: str = "web", detectors=("spike",)) -> Anomaly:
    return Anomaly(id=aid, series=f"{metric}{{service={service}}}", metric=metric, dims={"service": service},
                   window_start=T0, window_end=at(1), observed=1, expected=0, lower=0, upper=0.5, score=0.99,
                   severity="warning", direction="up", detectors=list(detectors))


def test_latest_verdict_wins_in_topic_order():
    book = LabelBook.of([make_label("a", "true", at(0)), make_label("b", "false", at(1)),
                         make_label("a", "false", at(2))])
    assert book.verdict("a") == LabelVerdict.false
    assert book.verdict("b") == LabelVerdict.false
    assert book.verdict("zzz") is None
    assert set(book.effective()) == {"a", "b"}


def test_label_for_copies_what_the_detect_stage_needs_and_undo_keeps_it():
    a = anomaly("a1")
    a.features = {"deviation": 3.2, "minute": 600}
    lb = label_for(a, "false", at(0), author="ann")
    assert (lb.anomaly_id, lb.series, lb.metric, lb.features) == ("a1", a.series, "error_ratio", a.features)
    [plan] = LabelBook.of([lb]).plan_undo("ann", at(1))
    assert (plan.publish.series, plan.publish.metric, plan.publish.features) == (a.series, "error_ratio", a.features)


def test_undo_restores_previous_verdict_then_retracts():
    book = LabelBook.of([make_label("a", "true", at(0), author="ann"),
                         make_label("a", "false", at(1), author="ann")])
    [plan] = book.plan_undo("ann", at(2))
    assert plan.restored == LabelVerdict.true and plan.publish.verdict == LabelVerdict.true
    assert undo_target(plan.publish) == plan.undone.id and plan.undone.verdict == LabelVerdict.false
    book.apply(plan.publish)
    assert book.verdict("a") == LabelVerdict.true
    # a second undo walks further back: the first label had no predecessor -> retraction
    [plan2] = book.plan_undo("ann", at(3))
    assert plan2.restored is None and plan2.publish.verdict == LabelVerdict.ignore
    assert is_retraction(plan2.publish)
    book.apply(plan2.publish)
    assert book.verdict("a") is None and "a" not in book.effective()
    with pytest.raises(NothingToUndo):
        book.plan_undo("ann", at(4))


def test_undo_is_per_author_and_keeps_other_authors_verdicts():
    book = LabelBook.of([make_label("a", "true", at(0), author="ann"),
                         make_label("a", "false", at(1), author="bob"),
                         make_label("b", "true", at(2), author="bob")])
    [plan] = book.plan_undo("ann", at(3))
    # ann's label is under bob's newer one: undoing it must not overwrite bob's verdict
    assert plan.undone.author == "ann" and plan.publish.anomaly_id == "a"
    assert plan.publish.verdict == LabelVerdict.false
    [bob] = book.plan_undo("bob", at(3))
    assert bob.undone.anomaly_id == "b" and bob.restored is None


def test_undo_reverts_a_bulk_marking_as_one_action():
    bulk = [make_label(aid, "false", at(1), author="ann") for aid in ("a", "b", "c")]
    book = LabelBook.of([make_label("a", "true", at(0), author="ann"), *bulk])
    plans = book.plan_undo("ann", at(2))
    assert {p.undone.id for p in plans} == {lb.id for lb in bulk}
    assert {p.publish.anomaly_id: p.restored for p in plans} == {"a": LabelVerdict.true, "b": None, "c": None}
    for p in plans:
        book.apply(p.publish)
    assert book.verdict("a") == LabelVerdict.true and book.verdict("b") is None
    [single] = book.plan_undo("ann", at(3))  # next undo: the single mark before the bulk one
    assert single.undone.anomaly_id == "a" and single.restored is None


def test_precision_per_group_counts_multi_detector_anomalies_in_each():
    anomalies = {a.id: a for a in [anomaly("1", detectors=("spike", "seasonal")), anomaly("2", service="api"),
                                   anomaly("3", metric="requests", detectors=("seasonal",)), anomaly("4")]}
    labels = {"1": make_label("1", "true", at(0)), "2": make_label("2", "false", at(0)),
              "3": make_label("3", "false", at(0)), "4": make_label("4", "ignore", at(0)),
              "gone": make_label("gone", "true", at(0))}
    stats = precision_stats(labels, anomalies)
    assert stats["detector"]["spike"].as_dict() == {"labeled": 3, "true": 1, "false": 1, "ignore": 1, "precision": 0.5}
    assert stats["detector"]["seasonal"].precision == 0.5
    assert stats["service"]["web"].precision == 0.5 and stats["service"]["api"].precision == 0.0
    assert stats["metric"]["requests"].precision == 0.0
    assert stats["metric"]["-"].true == 1  # label of an anomaly no longer on the topic
    assert stats["all"]["all"].precision == pytest.approx(2 / 4)


def test_short_ids_are_unique_prefixes_and_resolve():
    ids = ["abcdef0123", "abcdef0199", "ffff00001111"]
    short = short_ids(ids, min_len=4)
    assert short == {"abcdef0123": "abcdef012", "abcdef0199": "abcdef019", "ffff00001111": "ffff"}
    for full, pre in short.items():
        assert resolve_id(pre, ids) == full
    with pytest.raises(AmbiguousId, match="matches 2"):
        resolve_id("abcdef", ids)
    with pytest.raises(UnknownId):
        resolve_id("0000", ids)
    assert resolve_id("ABCDEF0123", ids) == "abcdef0123"


def test_parse_when_relative_and_iso():
    from patrol.models.labels import parse_when

    now = datetime(2026, 11, 27, 15, 0, tzinfo=timezone.utc)
    assert parse_when("2h", now) == now - timedelta(hours=2)
    assert parse_when("30m", now) == now - timedelta(minutes=30)
    assert parse_when("1.5d", now) == now - timedelta(hours=36)
    assert parse_when("2026-11-27T14:00", now) == datetime(2026, 11, 27, 14, 0, tzinfo=timezone.utc)
    assert parse_when("2026-11-27T16:00+02:00", now) == datetime(2026, 11, 27, 14, 0, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="30m, 2h, 7d"):
        parse_when("yesterday", now)


def test_filter_combines_fields_and_accepts_namespaced_service():
    from patrol.models.labels import AnomalyFilter

    a = anomaly("1", service="web")
    a.dims["namespace"] = "shop"
    b = anomaly("2", service="api")
    book = LabelBook.of([make_label("2", "false", at(0))])
    assert AnomalyFilter(service="shop/web").apply([a, b], book) == [a]
    assert AnomalyFilter(service="web").apply([a, b], book) == [a]
    assert AnomalyFilter(labeled=True).apply([a, b], book) == [b]
    assert AnomalyFilter(severity="critical").apply([a, b], book) == []
    assert AnomalyFilter(since=at(1)).apply([a, b], book) == []  # window start T0 is before
    assert AnomalyFilter().is_empty() and not AnomalyFilter(metric="x").is_empty()


def test_terminal_chart_draws_series_band_and_focus():
    from patrol.cli.charts import ChartData, terminal_chart
    from patrol.records import MetricPoint

    focus = anomaly("f")
    points = [MetricPoint.make("error_ratio", {"service": "web"}, at(m), at(m + 1), 1.0 if m == 0 else 0.1)
              for m in range(-10, 10)]
    text = terminal_chart(ChartData(focus=focus, points=points, anomalies=[focus]), width=80, height=15)
    assert "error_ratio{service=web}" in text and "minutes from anomaly" in text
    assert "@" in text and "┼" in text  # focus marker and band bar drawn
    assert len(text.splitlines()) >= 15
