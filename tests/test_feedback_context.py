"""Label feedback with the detect stage's context (docs/feedback.md, "Context"): a deploy dip
(requests down with a few 502s on the same service, for a couple of minutes) labeled false stops
alerting, while a drop just as deep that lasts still alerts. Driven through the models API the
detect worker uses: ``SeriesPool.process`` steps each series' episode, ``service_context`` reads
the service's other series, ``Episode.decide`` holds and re-decides, ``learn_label`` learns."""

import hashlib
import math

from patrol import detectors
from benchmarks.metric_stream import metric_windows
from patrol.models.feedback import Episode, FeedbackModel, anomaly_features
from patrol.models.pool import SeriesPool
from patrol.models.store import StateStore
from patrol.records import MetricPoint

DAY = 1440
T = detectors.DEFAULT_THRESHOLD
REQ = "requests{namespace=ns0,service=svc0}"
LABEL_DELAY = 10  # windows between an alert and its label
DEPTH = 0.4  # requests x0.4 and +0.4 % errors (metric_windows: spikes add factor x 1 % to the error ratio)


def deploys(days):
    """Two 2-minute deploy dips a day, at hours that vary from day to day (no time-of-day pattern)."""
    out = {}
    for d in range(1, days):
        for h in (9 + (d * 5) % 8, 13 + (d * 3) % 5):
            w = d * DAY + h * 60 + (d * 17) % 50
            out[(0, w)] = out[(0, w + 1)] = DEPTH
    return out


def with_502s(windows, rows, share=0.03):
    """A rolling restart answers ``share`` of the requests with 502 in those windows."""
    for w in rows:
        pts = windows[w]
        for j, p in enumerate(pts):
            if p.metric == "error_ratio":
                num = p.stats["numerator"] + round(share * p.count)
                pts[j] = MetricPoint.make("error_ratio", p.dims, p.window_start, p.window_end, num / max(p.count, 1),
                                          count=p.count, stats={"numerator": num, "denominator": float(p.count)})


def run(pool, windows, label=None):
    """What DetectWorker._score/_publish do with each window; ``label(outcome, features)`` -> verdict or None.

    Returns the (window index, series) of every alert raised, and of every would-be alert (what the
    detectors alone raise: with no labels the same, tested below)."""
    raised, due, would = [], [], []
    for i, w in enumerate(windows):
        for args in [x[1] for x in due if x[0] <= i]:  # operators label a few minutes after the alert
            pool.learn_label(*args)
        due = [x for x in due if x[0] > i]
        outcomes = pool.process(w)[0]
        for o in sorted(outcomes, key=lambda o: o.t):
            if o.score >= T:
                would.append((i, o.point.series))
            if not (o.score >= T or o.recheck):
                continue
            s = pool.series[o.point.series]
            f = anomaly_features(o.result, o.point.value, o.t, s.group.kind.kind, T, age_s=s.age_s(o.t),
                                 run=max(o.run, 1), co=pool.service_context(s, o.t))
            d = s.episode.decide(s.feedback, f, pool.prior(o.point.metric), start=o.episode)
            if d.alert:
                raised.append((i, o.point.series))
                verdict = label(o, f) if label else None
                if verdict:
                    label_id = hashlib.blake2b(f"{o.point.series}@{i}".encode(), digest_size=12).hexdigest()
                    due.append((i + LABEL_DELAY, (o.point.series, o.point.metric, f, verdict, label_id)))
    return raised, would


def test_labeled_false_deploy_dips_stop_alerting_and_a_lasting_drop_as_deep_still_alerts():
    days = 9
    spikes = deploys(days - 1)
    dip = (days - 1) * DAY + 11 * 60 + 7                       # last day: one more deploy dip...
    spikes[(0, dip)] = spikes[(0, dip + 1)] = DEPTH
    drop = (days - 1) * DAY + 15 * 60 + 31                     # ...and a drop as deep, lasting 30 minutes
    for w in range(drop, drop + 30):
        spikes[(0, w)] = DEPTH
    windows = metric_windows(1, days * DAY, seed=4, spikes=spikes)
    deploy_rows = {w for (_, w) in spikes if w < (days - 1) * DAY}
    with_502s(windows, deploy_rows | {dip, dip + 1})

    def operator(o, f):  # labels the requests alerts during deploys false (the first days' alerts too)
        i = round((o.t - windows[0][0].window_start.timestamp()) / 60)
        return "false" if o.point.series == REQ and any(i - k in deploy_rows for k in range(3)) else None

    pool = SeriesPool(StateStore(None))
    before, _ = run(pool, windows[:(days - 1) * DAY], operator)
    dips_alerted = [i for i, s in before if s == REQ and i in deploy_rows]
    assert len(dips_alerted) >= 4, f"the deploy dips should alert before labels: {len(dips_alerted)}"
    model = pool.series[REQ].feedback
    assert model.n_false >= 4 and all(o.run is not None and o.run <= 3 for o in model.log), \
        "false labels learned, with their episodes' lengths (2-minute dips)"
    assert sum(1 for o in model.log if o.calib[5]) >= 2, \
        "the 502s of the same service (error ratio out of band) rode on the labeled dips"

    last, would = run(pool, windows[(days - 1) * DAY:])
    base = (days - 1) * DAY
    assert [base + i for i, s in would if s == REQ and dip <= base + i <= dip + 1], "the detectors flag the dip"
    req = [base + i for i, s in last if s == REQ]
    assert not [i for i in req if dip <= i <= dip + 3], "a labeled-false deploy dip still alerts"
    assert [i for i in req if drop <= i < drop + 30], "the lasting drop as deep as the dips was muted"


def test_without_labels_the_context_changes_no_decision():
    windows = metric_windows(1, 2 * DAY, seed=4, spikes=deploys(2))
    pool = SeriesPool(StateStore(None))
    raised, would = run(pool, windows)
    alerts = 0  # the detectors alone, on a fresh pool
    fresh = SeriesPool(StateStore(None))
    for i, w in enumerate(windows):
        alerts += sum(1 for o in fresh.process(w)[0] if o.score >= T)
    assert len(raised) == len(would) == alerts > 0


def test_episode_state_round_trips_and_older_states_load():
    e = Episode()
    for t, v in enumerate([120, 130, 125]):
        e.step(t * 60.0, v, 90.0, 110.0, 60.0)
    e.held = True
    back = Episode.from_state(e.to_state())
    assert back.to_state() == e.to_state() and back.recheck() and back.run == 3
    assert Episode.from_state(None).sign == 0  # a state checkpointed before episodes were kept
    m = FeedbackModel()
    m.note_episode(["k1"], 7)
    assert FeedbackModel.from_state(m.to_state()).lengths == {"k1": 7}
    assert math.isinf(Episode().start)


def test_weights_saved_before_the_context_inputs_keep_what_they_learned():
    from patrol.models.feedback.calibration import FEATURES, PRIOR_MU, MetricPrior

    old_series = {"v": 2, "w": [[-0.5, 0.1, 0.2, 0.0, 0.1], [0.4, 0.9, 0.9, 1.0, 1.0]], "pat": [], "maxf": [None, None],
                  "n": [0, 3], "seen": [], "changes": [],
                  "log": [["k1", 0, 1, 180, 20000, 3.0, 0.5, 0.4, 1, "a1b2c3d4"]]}  # a v2 log entry: 4 calib fields
    m = FeedbackModel.from_state(old_series)
    assert len(m.layer.mu) == len(FEATURES) and m.layer.mu[:5] == [-0.5, 0.1, 0.2, 0.0, 0.1]
    assert m.log[0].run is None and m.log[0].short == "a1b2c3d4"
    assert FeedbackModel.from_state(m.to_state()).to_state() == m.to_state()
    old_prior = {"v": 2, "w": [[1.0, 0.8, 0.5, 1.0, 0.5], [0.3, 0.3, 0.3, 0.3, 0.3]],
                 "log": [["k1", 0, 1, 3.0, 0.5, 0.4, 1]]}
    p = MetricPrior.from_state(old_prior)
    assert p.probit.mu == [1.0, 0.8, 0.5, 1.0, 0.5, *PRIOR_MU[5:]] and p.n_false == 1
    p.retract("k1")  # replaying a log of old entries works
    assert p.n_labels == 0


def test_an_alert_inside_the_band_is_decided_for_good_not_held():
    """A hold is a wait only where the episode is decided again. An alert raised at a value inside
    the band (a detector of sustained change fired on a shift smaller than the single-point band)
    has no episode to re-decide, so calibration may not wait on it (P(real) < 0.5): it mutes it only
    below the mute bar (0.2), while an out-of-band alert of the same P(real) is held and decided
    again at the next window."""
    from patrol.detectors import Result
    from patrol.models.feedback import CONFIRM_BELOW, SUPPRESS_BELOW, MetricPrior

    def alert(value, t):  # expected 100, band 90..110, a cusum alert
        r = Result(0.5, 1e-5, 100.0, 90.0, 110.0, "up", ("cusum",), "warning")
        return anomaly_features(r, value, t, "count", age_s=t, run=1)

    m, prior = FeedbackModel(), MetricPrior()
    for i, (value, hour) in enumerate([(118, 1), (119, 10)]):  # two false alarms, hours apart: no pattern
        t = (3 + i) * 86400.0 + hour * 3600.0
        assert m.learn(alert(value, t), "false", f"{i:02d}" + "ab" * 11, prior) is not None
    t = 20 * 86400.0 + 5 * 3600.0
    out_f, in_f = alert(112.0, t), alert(108.0, t)
    for f in (out_f, in_f):
        assert SUPPRESS_BELOW <= m.decide(f, prior).score < CONFIRM_BELOW  # in the wait's range

    out_ep = Episode()
    assert out_ep.step(t, 112.0, 90.0, 110.0, 60.0) == 1  # out of band: an episode opens
    d = out_ep.decide(m, out_f, prior)
    assert not d.alert and out_ep.recheck(), "an out-of-band alert in the wait's range is held and re-decided"
    assert out_ep.step(t + 60, 113.0, 90.0, 110.0, 60.0) == 2 and out_ep.recheck()

    in_ep = Episode()
    assert in_ep.step(t, 108.0, 90.0, 110.0, 60.0) == 0  # inside the band: no episode
    d = in_ep.decide(m, in_f, prior)
    assert d.alert and not in_ep.recheck(), "an in-band alert was muted by a wait that no re-decision ends"

    for i in range(3):  # more false alarms like it: P(real) below the mute bar, muted in band too
        t2 = (6 + i) * 86400.0 + (14 + 3 * i) * 3600.0
        m.learn(alert(108.0 + i, t2), "false", f"{i + 2:02d}" + "cd" * 11, prior)
    assert m.decide(in_f, prior).score < SUPPRESS_BELOW
    in_ep = Episode()
    in_ep.step(t, 108.0, 90.0, 110.0, 60.0)
    assert not in_ep.decide(m, in_f, prior).alert
