"""Label feedback model: false patterns stop alerting, real incidents never do, state stays small."""

from __future__ import annotations

import json

import numpy as np
import pytest

from patrol import detectors
from patrol.models.feedback import FeedbackModel, MetricPrior, anomaly_features, anomaly_key, features_of

DAY, HOUR = 86400.0, 3600.0


def alert(value, t, expected=100.0, half=10.0, score=0.7, fired=("spike",), direction=None):
    """Features of a would-be alert on a series expecting ``expected`` +- ``half``."""
    d = direction or ("up" if value >= expected else "down")
    r = detectors.Result(score, 10 ** (-10 * score), expected, expected - half, expected + half, d, fired, "warning")
    return anomaly_features(r, value, t, "count")


def nightly(model, prior, n=5, value=130.0, hour=3, verdict="false"):
    """Label ``n`` nightly alerts (one per day at ``hour``) with ``verdict``; returns the changes."""
    return [model.learn(alert(value + i, d * DAY + hour * HOUR + 600 * i), verdict, f"lbl{d:04d}", prior)
            for i, d in enumerate(range(n))]


def test_features_are_json_and_measure_the_departure():
    r = detectors.Result(0.6, 1e-6, 100.0, 90.0, 120.0, None, ("spike", "cusum"), "warning")
    f = anomaly_features(r, 80.0, 2 * DAY + 23 * HOUR + 59 * 60, "count")
    json.dumps(f)
    assert f["direction"] == "down" and f["deviation"] == -2.0 and f["rel_change"] == -0.2  # lower side of the band
    assert (f["hour"], f["minute"], f["dow"], f["n_fired"]) == (23, 23 * 60 + 59, 5, 2)  # 1970-01-03 was a Saturday
    T = detectors.DEFAULT_THRESHOLD
    assert f["magnitude"] == 20.0 and f["excess"] == pytest.approx((0.6 - T) / (1 - T), abs=1e-4) and f["fold"] == 0.25


def test_no_labels_leaves_every_decision_unchanged():
    m, prior = FeedbackModel(), MetricPrior()
    rng = np.random.default_rng(0)
    for _ in range(300):
        v = 100 + rng.choice([-1, 1]) * rng.uniform(0.1, 500)  # tiny to huge, both sides
        f = alert(v, rng.uniform(0, 30 * DAY), score=rng.uniform(0.5, 1.0), fired=tuple(rng.choice(["spike", "cusum"], 1)))
        d = m.decide(f, prior)
        assert d.alert and d.reason is None


def test_labeled_false_nightly_pattern_stops_alerting():
    m, prior = FeedbackModel(), MetricPrior()
    assert m.decide(alert(132, 10 * DAY + 3 * HOUR + 300), prior).alert  # before labels
    nightly(m, prior)
    d = m.decide(alert(132, 10 * DAY + 3 * HOUR + 300), prior)
    assert not d.alert and "pattern" in d.reason and "02:00-04:40" in d.reason, d.reason


def test_one_false_label_is_not_yet_a_pattern():
    """A one-off false alarm (or two in one episode) must not mute that hour: recurrence is two days."""
    m, prior = FeedbackModel(), MetricPrior()
    m.learn(alert(130, 3 * HOUR), "false", "one0000001", prior)
    m.learn(alert(131, 3 * HOUR + 60), "false", "one0000002", prior)  # same night
    assert m.decide(alert(129, DAY + 3 * HOUR), prior).alert
    m.learn(alert(130, DAY + 3 * HOUR + 300), "false", "two0000001", prior)
    assert not m.decide(alert(129, 2 * DAY + 3 * HOUR), prior).alert


@pytest.mark.parametrize("value,t,why", [
    (220.0, 10 * DAY + 3 * HOUR, "much larger than any labeled false one"),
    (60.0, 10 * DAY + 3 * HOUR, "other direction (an outage at the batch hour)"),
    (132.0, 10 * DAY + 15 * HOUR, "other time of day"),
])
def test_real_incident_still_alerts(value, t, why):
    m, prior = FeedbackModel(), MetricPrior()
    nightly(m, prior)
    d = m.decide(alert(value, t), prior)
    assert d.alert, f"{why}: suppressed with {d.reason}"


def test_incident_in_a_wide_band_still_alerts_when_its_fold_change_is_larger():
    """The batch job widens the band at its hour: a 4x surge can look no bigger in band units."""
    m, prior = FeedbackModel(), MetricPrior()
    nightly(m, prior)  # 1.3x expected, 3 bands
    d = m.decide(alert(400.0, 10 * DAY + 3 * HOUR, half=100.0), prior)  # 4x expected, still 3 bands
    assert d.alert, d.reason


def test_true_label_near_a_pattern_lifts_it():
    m, prior = FeedbackModel(), MetricPrior()
    nightly(m, prior)
    assert not m.decide(alert(131, 20 * DAY + 3 * HOUR), prior).alert
    ch = m.learn(alert(131, 12 * DAY + 3 * HOUR + 900), "true", "truelabel1", prior)
    assert "lift suppression" in ch.text and "(label truelabe true)" in ch.text
    assert m.decide(alert(131, 20 * DAY + 3 * HOUR), prior).alert


def test_true_label_far_away_keeps_the_pattern():
    m, prior = FeedbackModel(), MetricPrior()
    nightly(m, prior)
    m.learn(alert(131, 12 * DAY + 14 * HOUR), "true", "afternoon1", prior)
    assert not m.decide(alert(131, 20 * DAY + 3 * HOUR), prior).alert


def test_learning_the_same_label_twice_changes_nothing():
    m, prior = FeedbackModel(), MetricPrior()
    f = alert(130, 3 * HOUR)
    assert m.learn(f, "false", "abcdef0123", prior) is not None
    state, pstate = json.dumps(m.to_state()), json.dumps(prior.to_state())
    assert m.learn(f, "false", "abcdef0123", prior) is None
    assert json.dumps(m.to_state()) == state and json.dumps(prior.to_state()) == pstate
    # also after a checkpoint round trip (labels replay after a crash)
    m2, p2 = FeedbackModel.from_state(json.loads(state)), MetricPrior.from_state(json.loads(pstate))
    assert m2.learn(f, "false", "abcdef0123", p2) is None and json.dumps(m2.to_state()) == state


def test_ignore_changes_nothing_and_bad_verdicts_are_errors():
    m = FeedbackModel()
    assert m.learn({}, "false", "nofeatures") is None and m.to_state() == FeedbackModel().to_state()
    assert m.learn(alert(130, 0), "ignore", "x1") is None and m.to_state() == FeedbackModel().to_state()
    with pytest.raises(ValueError):
        m.learn(alert(130, 0), "maybe", "x2")


def test_state_round_trips_and_stays_bounded():
    m, prior = FeedbackModel(), MetricPrior()
    rng = np.random.default_rng(3)
    for i in range(2000):
        v = 100 + rng.choice([-1, 1]) * rng.uniform(15, 80)
        f = {**alert(v, rng.uniform(0, 60 * DAY)), "run": int(rng.integers(1, 64)), "co": float(rng.uniform())}
        m.note_episode([anomaly_key(f)], f["run"] + 3)  # episode lengths noted by the detect stage
        m.learn(f, rng.choice(["true", "false"]), f"{i:08x}deadbeef{i:08x}", prior)  # 24 hex like record_id
    st = m.to_state()
    blob = json.dumps(st)
    assert len(m.lengths) == 32
    # 32 logged labels (to unlearn by replay) + 32 episode lengths + weights + patterns
    assert len(blob) < 5600, len(blob)
    assert len(json.dumps(prior.to_state())) < 12000, len(json.dumps(prior.to_state()))  # 128 logged labels
    back = FeedbackModel.from_state(json.loads(blob))
    assert back.to_state() == st
    pb = MetricPrior.from_state(json.loads(json.dumps(prior.to_state())))
    assert pb.to_state() == prior.to_state()
    probe = [alert(100 + d, t) for d in (-50, 20, 40, 300) for t in (0, 3 * HOUR, 13 * HOUR)]
    assert [m.decide(f, prior) for f in probe] == [back.decide(f, pb) for f in probe]
    assert FeedbackModel.from_state({}).to_state() == FeedbackModel().to_state()


def test_changes_name_the_label_and_are_kept_for_models_show():
    m, prior = FeedbackModel(), MetricPrior()
    changes = nightly(m, prior, n=7)
    assert all(c is not None and c.label_id.startswith("lbl") for c in changes)
    first = changes[0].text
    assert first.startswith("suppress up alerts <= 6.0x band, <= 1.6x expected at 02:00-04:00 from day 2 (now 1) "
                            "(label lbl0000 false)"), first
    kept = m.to_state()["changes"]
    assert len(kept) == 4 and kept[-1]["label"] == "lbl0006" and kept[-1]["verdict"] == "false"
    assert all("label" in c["change"] for c in kept)


def test_calibration_raises_the_bar_after_false_labels_but_not_beyond_twice_the_largest():
    """Many false labels at all hours: small alerts stop, alerts > 2x the largest false one never do."""
    m, prior = FeedbackModel(), MetricPrior()
    for i in range(24):
        m.learn(alert(125 + (i % 3), i * HOUR + 7 * DAY * (i % 2)), "false", f"f{i:07d}", prior)
    assert not m.decide(alert(124, 40 * DAY + 30 * 60 + 11 * HOUR), prior).alert
    assert m.decide(alert(100 + 2 * 27 + 1, 40 * DAY + 11 * HOUR), prior).alert
    assert m.decide(alert(70, 40 * DAY + 11 * HOUR), prior).alert  # down alerts were never labeled false


def test_metric_prior_shares_what_one_series_learned():
    prior = MetricPrior()
    a, b = FeedbackModel(), FeedbackModel()
    for i in range(15):
        a.learn(alert(126, i * 5 * HOUR), "false", f"a{i:07d}", prior)
    pa = b.decide(alert(126, 2 * HOUR), MetricPrior()).score
    pb = b.decide(alert(126, 2 * HOUR), prior).score
    assert pb < pa  # the sibling's labels lowered P(real) for this series too
    assert b.decide(alert(400, 2 * HOUR), prior).alert


def test_states_of_older_versions_still_load():
    """Checkpoints written before fold change and recurrence existed: sizes were bare numbers."""
    old = {"v": 1, "w": [[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]], "pat": [[1, 180, 40, 3.4, 5, "lbl0004"]],
           "maxf": [3.4, 0.0], "n": [0, 5], "seen": ["lbl0000", "lbl0001"], "changes": []}
    m = FeedbackModel.from_state(old)
    assert m.layer.mu == FeedbackModel().layer.mu  # other features: the series' calibration starts over
    assert m.patterns[0].top == [3.4, None] and m.max_false == {1: [3.4, None], -1: None}
    prior = MetricPrior.from_state({"w": [[2.0, 1.0, 1.0, 0.5], [0.5] * 4], "n": [0, 5], "maxf": [3.4, 0.0]})
    assert not m.decide(alert(130, 9 * DAY + 3 * HOUR), prior).alert  # the nightly pattern still holds
    assert m.decide(alert(180, 9 * DAY + 3 * HOUR), prior).alert


def probes():
    """Would-be alerts of many sizes, both directions, at the batch hour and elsewhere, weekdays and Sundays."""
    return [alert(100 + d, t) for d in (-60, -25, 22, 30, 45, 80, 300)
            for t in (40 * DAY + 3 * HOUR + 600, 41 * DAY + 13 * HOUR, 45 * DAY + 3 * HOUR)]


def decisions(m, prior):
    return [(d.alert, round(d.score, 4)) for d in (m.decide(f, prior) for f in probes())]


def test_undo_of_a_false_label_unlearns_it():
    """A retraction (verdict ignore on a labeled anomaly, what `patrol label undo` publishes) rebuilds
    the series and its metric's prior as if the label had never been given."""
    m, prior = FeedbackModel(), MetricPrior()
    ref, ref_prior = FeedbackModel(), MetricPrior()
    first, second = alert(130, 3 * HOUR), alert(128, DAY + 3 * HOUR + 600)
    m.learn(first, "false", "aaaa000001", prior)
    ref.learn(first, "false", "aaaa000001", ref_prior)
    m.learn(second, "false", "bbbb000001", prior)
    assert not m.decide(alert(129, 5 * DAY + 3 * HOUR), prior).alert  # two nights: a recurring pattern
    ch = m.learn(second, "ignore", "cccc000001", prior)  # the undo carries the anomaly's features
    assert ch is not None and "unlearned label bbbb0000" in ch.text
    assert m.decide(alert(129, 5 * DAY + 3 * HOUR), prior).alert
    assert decisions(m, prior) == decisions(ref, ref_prior)
    assert prior.to_state() == ref_prior.to_state()
    assert m.to_state()["pat"] == ref.to_state()["pat"] and m.to_state()["w"] == ref.to_state()["w"]
    # retracting an anomaly that was never labeled changes nothing
    assert m.learn(alert(150, 9 * DAY), "ignore", "dddd000001", prior) is None


def test_undo_of_many_false_labels_restores_the_detectors_decisions():
    m, prior = FeedbackModel(), MetricPrior()
    fresh = decisions(FeedbackModel(), MetricPrior())
    feats = [alert(125 + (i % 3), i * HOUR + 7 * DAY * (i % 2)) for i in range(24)]
    for i, f in enumerate(feats):
        m.learn(f, "false", f"f{i:09d}", prior)
    assert decisions(m, prior) != fresh
    for i, f in enumerate(feats):
        m.learn(f, "ignore", f"u{i:09d}", prior)
    assert [a for a, _ in decisions(m, prior)] == [a for a, _ in fresh]
    assert prior.probit.mu == MetricPrior().probit.mu and prior.n_labels == 0
    assert m.layer.mu == FeedbackModel().layer.mu and not m.patterns


def test_changing_a_verdict_replaces_the_earlier_one():
    """false -> true on one anomaly: the false verdict is unlearned, the true one learned (same as
    having labeled it true in the first place)."""
    m, prior = FeedbackModel(), MetricPrior()
    ref, ref_prior = FeedbackModel(), MetricPrior()
    nightly(m, prior, n=3)
    nightly(ref, ref_prior, n=2)
    last = alert(132, 2 * DAY + 3 * HOUR + 1200)  # what nightly() labeled third
    ch = m.learn(last, "true", "relabel001", prior)
    ref.learn(last, "true", "relabel001", ref_prior)
    assert ch is not None and ch.text.startswith("unlearned label lbl0002 (false")
    assert decisions(m, prior) == decisions(ref, ref_prior)
    assert m.learn(last, "true", "relabel002", prior) is None  # the same verdict again


def test_weekly_pattern_covers_its_weekday_only():
    """A Sunday backup labeled false on two Sundays mutes Sundays at that hour, not Mondays."""
    sunday = 3  # day 3 after the epoch (1970-01-04) was a Sunday
    m, prior = FeedbackModel(), MetricPrior()
    m.learn(alert(160, sunday * DAY + 1.5 * HOUR), "false", "sun0000001", prior)
    ch = m.learn(alert(158, (sunday + 7) * DAY + 1.5 * HOUR + 300), "false", "sun0000002", prior)
    assert "on Suns" in ch.text, ch.text
    assert not m.decide(alert(161, (sunday + 21) * DAY + 1.5 * HOUR), prior).alert
    assert m.decide(alert(161, (sunday + 22) * DAY + 1.5 * HOUR), prior).alert     # a Monday
    assert m.decide(alert(161, (sunday + 20) * DAY + 1.5 * HOUR), prior).alert     # a Saturday


def test_daily_pattern_labeled_on_two_weekdays_covers_every_day():
    m, prior = FeedbackModel(), MetricPrior()
    nightly(m, prior, n=2)  # days 0 and 1: Thursday and Friday
    assert not m.decide(alert(131, 12 * DAY + 3 * HOUR), prior).alert  # a Tuesday


def test_weekly_pattern_around_midnight_uses_the_evening_weekday():
    """A Sunday 23:30 job that runs past midnight: 00:20 on Monday belongs to Sunday's occurrence."""
    sunday = 3
    m, prior = FeedbackModel(), MetricPrior()
    for w in (0, 7):
        m.learn(alert(160, (sunday + w) * DAY + 23.5 * HOUR), "false", f"late{w:06d}", prior)
    assert not m.decide(alert(159, (sunday + 14) * DAY + 24 * HOUR + 20 * 60), prior).alert  # Monday 00:20
    assert m.decide(alert(159, (sunday + 15) * DAY + 24 * HOUR + 20 * 60), prior).alert       # Tuesday 00:20


def test_a_larger_incident_at_a_false_patterns_time_alerts_whatever_the_labels():
    """Strengthened check: after a nightly pattern *and* calibration trained on many false labels
    (P(real) low everywhere), every alert at the pattern's hour more than MARGIN x the largest
    false-labeled size, in band multiples or in fold change, still alerts; and so does an outage."""
    m, prior = FeedbackModel(), MetricPrior()
    nightly(m, prior, n=10)                       # 1.3x expected, 3 bands
    for i in range(30):                           # false alarms of that size at every hour
        m.learn(alert(128 + (i % 4), 20 * DAY + i * 2.3 * HOUR), "false", f"many{i:06d}", prior)
    t = 40 * DAY + 3 * HOUR + 300
    assert m.decide(alert(131, t), prior).score < 0.2 and not m.decide(alert(131, t), prior).alert
    top_band, top_fold = 3.9, 0.39                # nightly(): values 130..139 at +-10 around 100
    for band in (5.0, 10.0, 20.0, 40.0):          # same fold as the labels, band widened by the incident hour
        value = 100 * (1 + 2 * top_fold + 0.1)
        d = m.decide(alert(value, t, half=(value - 100) / band), prior)
        if band > 2 * top_band or (value / 100 - 1) > 2 * top_fold:
            assert d.alert, (band, d.reason)
    for value in (180, 200, 400, 1000):           # larger in both measures (> 7.8 bands, > 1.78x)
        d = m.decide(alert(value, t), prior)
        assert d.alert, (value, d.reason)
    assert m.decide(alert(40, t), prior).alert     # an outage at the batch hour (other direction)


def test_one_outsized_false_label_does_not_let_calibration_mute_larger_alerts():
    """Warm-up false alarms can be huge in band units; one of them alone must not vouch for
    muting anything up to twice its size: calibration needs two false alarms of an alert's size."""
    m, prior = FeedbackModel(), MetricPrior()
    m.learn(alert(300, 2 * HOUR), "false", "warmup0001", prior)  # 20 bands, a detector warming up
    for i in range(20):
        m.learn(alert(125, DAY + i * 3.1 * HOUR), "false", f"small{i:05d}", prior)
    t = 30 * DAY + 11 * HOUR
    assert not m.decide(alert(124, t), prior).alert               # small ones: muted by calibration
    d = m.decide(alert(190, t), prior)                           # 9 bands: > 2x every false alarm but one
    assert d.alert, d.reason


def test_labels_on_alerts_raised_while_the_detectors_warm_up_do_not_retrain():
    """A new series alerts while its detectors learn it (first day); those false alarms say nothing
    about alerts a week later, so learning them would mute real incidents of their size."""
    def young(value, t, age_h):
        f = alert(value, t)
        f["age_h"] = age_h
        return f
    m, prior = FeedbackModel(), MetricPrior()
    for i in range(12):
        assert m.learn(young(180, i * 1.9 * HOUR, i * 1.9), "false", f"warm{i:06d}", prior) is None
    assert m.to_state()["log"] == [] and prior.n_labels == 0
    assert [d.alert for d in (m.decide(f, prior) for f in probes())] == [True] * len(probes())
    # the same alerts after the first day do retrain, and so do labels whose age is unknown
    assert m.learn(young(180, 2 * DAY, 48.0), "false", "mature0001", prior) is not None
    assert m.learn(alert(181, 3 * DAY), "false", "noage00001", prior) is not None


def test_anomaly_features_carry_the_series_age_when_given():
    r = detectors.Result(0.6, 1e-6, 100.0, 90.0, 110.0, "up", ("spike",), "warning")
    assert anomaly_features(r, 125.0, 0, "count")["age_h"] is None
    assert anomaly_features(r, 125.0, 0, "count", age_s=5400)["age_h"] == 1.5


def test_the_label_patrol_undo_publishes_unlearns_through_the_model():
    """End to end without a broker: labels made by models.labels (what `patrol label mark` and
    `undo` publish) go through FeedbackModel.learn as the detect worker applies them."""
    from datetime import datetime, timezone

    from patrol.models.labels import LabelBook, label_for
    from patrol.records import Anomaly

    def anomaly(day, value, minute=180):
        ws = datetime.fromtimestamp(day * DAY + minute * 60, timezone.utc)
        a = Anomaly(id=f"an{day:04d}", series="requests{service=web}", metric="requests", window_start=ws,
                    window_end=datetime.fromtimestamp(ws.timestamp() + 60, timezone.utc), observed=value,
                    expected=100.0, lower=90.0, upper=110.0, score=0.7, severity="warning", direction="up",
                    detectors=["spike"])
        return a.model_copy(update={"features": features_of(a)})

    def apply(m, prior, label):  # what the detect worker does with a label record
        return m.learn(label.features, label.verdict.value, label.id, prior)

    m, prior = FeedbackModel(), MetricPrior()
    book = LabelBook()
    stamp = iter(range(100))
    for day, value in ((0, 130.0), (1, 128.0)):
        lb = label_for(anomaly(day, value), "false", datetime(2026, 1, 1, 0, next(stamp), tzinfo=timezone.utc),
                       author="ann")
        book.apply(lb)
        assert apply(m, prior, lb) is not None
    later = features_of(anomaly(9, 129.0))
    assert not m.decide(later, prior).alert
    [plan] = book.plan_undo("ann", datetime(2026, 1, 1, 1, tzinfo=timezone.utc))  # undo the second night
    assert plan.publish.verdict.value == "ignore"
    change = apply(m, prior, plan.publish)
    assert change is not None and "unlearned" in change.text
    assert m.decide(later, prior).alert  # one labeled night left: no recurring pattern any more
    assert apply(m, prior, plan.publish) is None  # the undo label replayed: nothing more to do


def test_one_outsized_night_does_not_stretch_a_pattern_over_a_larger_incident():
    """A pattern reaches twice its second-largest labeled size: an early night the seasonal model
    had not learned yet (5x expected) does not make a 9x surge at that hour look like the job."""
    m, prior = FeedbackModel(), MetricPrior()
    m.learn(alert(500, 3 * HOUR), "false", "early00001", prior)           # 5x, 40 bands
    for d in (1, 2, 3):
        m.learn(alert(130 + d, d * DAY + 3 * HOUR), "false", f"night{d:05d}", prior)
    t = 20 * DAY + 3 * HOUR
    assert not m.decide(alert(160, t), prior).alert                        # the usual job: muted
    d = m.decide(alert(900, t), prior)                                     # 9x: under 2 x the early night
    assert d.alert, d.reason


def test_false_alarms_that_met_at_one_hour_by_chance_are_not_a_pattern():
    """Two of twelve false alarms at 13:00 on two days, the rest spread over the day: what chance
    would put in a two-hour window, not a recurring cause, so the hour stays unmuted."""
    m, prior = FeedbackModel(), MetricPrior()
    hours = [13, 2, 6, 9, 13.3, 17, 20, 23, 4, 11, 15, 19]
    for i, h in enumerate(hours):
        m.learn(alert(300 + 10 * (i % 2), i * DAY + h * HOUR), "false", f"rand{i:06d}", prior)
    assert any(p.active and p.near(13 * 60) for p in m.patterns)         # two days: it looks recurring...
    d = m.decide(alert(305, 30 * DAY + 13 * HOUR), prior)
    assert d.reason is None or "pattern" not in d.reason, d.reason       # ...but chance explains it
    # the same two nights with no other false alarm around are a pattern
    m2, prior2 = FeedbackModel(), MetricPrior()
    for i in (0, 4):
        m2.learn(alert(300, i * DAY + 13 * HOUR + 600 * (i > 0)), "false", f"only{i:06d}", prior2)
    assert "pattern" in (m2.decide(alert(305, 30 * DAY + 13 * HOUR), prior2).reason or "")
