"""Label feedback: per-series models that learn from operators' verdicts which alerts to keep.

The detectors are left alone (they keep learning what "normal" is); this model sits after them and
decides, for each would-be alert (``score >= detectors.DEFAULT_THRESHOLD``), whether to raise it.
Two mechanisms, both learned from labels:

1. **Calibration** (:mod:`models.feedback.calibration`): a Bayesian probit estimate of P(real) from the
   alert's size (band multiple, fold change), score and number of detectors that fired, with a
   per-metric layer (:class:`MetricPrior`, learned from the labels of all the metric's series) and
   a per-series layer (what the metric layer does not explain). Its prior says "alert", so with no
   labels nothing changes; false labels raise the bar, true labels lower it. It mutes an alert
   only below P(real) ``SUPPRESS_BELOW`` *and* when two false alarms labeled on the series were at
   least half its size (``GUARD_SUPPORT``, ``MARGIN``).
2. **Suppression of a labeled-false pattern**: false labels of the same direction at the same time
   of day (within 1 h), on two different days, form a pattern (e.g. a nightly batch job); later
   alerts of that direction, at that time, no larger than ``MARGIN`` times the largest labeled one
   are suppressed. When all its labeled days fall on one weekday (a Sunday backup) the pattern is
   weekly and covers that weekday only.

Both use context the detect stage has and a point does not (:class:`Episode`,
:func:`service_context`): how long the series' departure from its band has lasted (``run``; a
label learns how long its episode lasted in the end, :meth:`FeedbackModel.note_episode`) and how
many of the service's other series are out of band in the same window (``co``). A muted episode is
decided again at each later window, so "a dip with a few 502s for a minute or two" can be learned
to be benign while the same dip lasting alerts, a few windows late. Calibration *waits* (P(real)
below ``CONFIRM_BELOW``) only while the episode is no longer than two of the series' false alarms
of its size lasted, and only where the episode will be decided again (not for an alert inside the
band, which has no episode, nor for a later alert of an episode that already alerted: for those a
wait would be a verdict), and mutes (below ``SUPPRESS_BELOW``) only until it has lasted ``MARGIN`` x
as long as they did.

Neither may mute a real incident: alerts more than ``MARGIN`` x the false-labeled sizes around them,
or whose episode lasted more than ``MARGIN`` x as long, always alert, as do alerts in the other
direction or at another time of day or weekday (for patterns). A true label inside a pattern's
reach removes the pattern.

The model is a function of its label log, one verdict per anomaly (the latest wins): a label that
changes an anomaly's verdict, or the ``ignore`` that ``patrol label undo`` publishes to retract a
first label, rebuilds the series model and its metric's prior by replaying their logs without the
old verdict, so an undone label is unlearned, not merely ignored.

Caller's protocol (detect worker): keep ``FeedbackModel.from_state(series.calibration)`` per series
and one :class:`MetricPrior` per metric; on a would-be alert call :meth:`FeedbackModel.decide`; on a
label call :meth:`FeedbackModel.learn` and, when it returns a :class:`Change`, bump the series'
``model_version`` and store ``model.to_state()`` in ``series.calibration`` (it holds ``changes``,
the explanation ``patrol models show`` prints).

Examples
--------
>>> from patrol.detectors import Result
>>> from patrol.models.feedback import FeedbackModel, MetricPrior, anomaly_features
>>> night = 3 * 3600.0                                     # 03:00 UTC, day 0
>>> def alert(value, t):                                    # expected 100, band +-10
...     r = Result(0.7, 1e-7, 100.0, 90.0, 110.0, "up", ("spike",), "warning")
...     return anomaly_features(r, value, t, "count")
>>> m, prior = FeedbackModel(), MetricPrior()
>>> m.decide(alert(130, night), prior).alert                # no labels: unchanged
True
>>> print(m.learn(alert(130, night), "false", "a1b2c3d4e5", prior).text)
suppress up alerts <= 6.0x band, <= 1.6x expected at 02:00-04:00 from day 2 (now 1) (label a1b2c3d4 false); P(real) like it 0.95 -> 0.74
>>> print(m.learn(alert(126, night + 86400 + 600), "false", "f00dfeed42", prior).text)   # the next night
suppress up alerts <= 5.2x band, <= 1.5x expected at 02:00-04:10 (label f00dfeed false); P(real) like it 0.74 -> 0.56
>>> m.decide(alert(128, night + 2 * 86400), prior).reason  # a recurring pattern now: suppressed
'labeled false alarm pattern: up alerts <= 5.2x band, <= 1.5x expected at 02:00-04:10 (label f00dfeed)'
>>> m.decide(alert(180, night + 2 * 86400), prior).alert   # much larger: a real incident
True
>>> m.decide(alert(130, night + 12 * 3600), prior).alert   # other time of day
True
>>> m.learn(alert(130, night), "false", "a1b2c3d4e5", prior) is None   # replayed label
True
>>> print(m.learn(alert(126, night + 86400 + 600), "ignore", "0dd0dd0dd0", prior).text)  # undo the 2nd label
unlearned label f00dfeed (false; replayed 1 labels) (label 0dd0dd0d ignore)
>>> m.decide(alert(128, night + 2 * 86400), prior).alert   # one night again: no longer a recurring pattern
True

Modules: ``features`` (what an alert's features are), ``episode`` (episode and service context),
``calibration`` (the probit P(real) model and the per-metric prior), ``patterns`` (labeled-false
patterns), ``model`` (:class:`FeedbackModel`: decide, learn, unlearn), ``constants``.
"""

from .calibration import MetricPrior
from .constants import CONFIRM_BELOW, SUPPRESS_BELOW, WARMUP_S
from .episode import Episode, service_context
from .features import anomaly_features, anomaly_key, band_side, features_of
from .model import Change, Decision, FeedbackModel

__all__ = ["CONFIRM_BELOW", "SUPPRESS_BELOW", "WARMUP_S", "Change", "Decision", "Episode", "FeedbackModel",
           "MetricPrior", "anomaly_features", "anomaly_key", "band_side", "features_of", "service_context"]
