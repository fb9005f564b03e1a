"""Episode context: how long a series' departure from its band has lasted, and how many of its
service's other series are out of band in the same window."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .constants import EPISODE_KEYS, EPISODE_MAX
from .features import anomaly_key, band_side

if TYPE_CHECKING:  # annotations only: the model module imports nothing of this one
    from .calibration import MetricPrior
    from .model import Decision, FeedbackModel

class Episode:
    """A series' current departure from normal, seen point by point by the detect stage.

    An episode starts at a window outside the detectors' band and lasts while the series stays
    on that side of the band *as it was when the episode started* (``ref``): the detectors adapt
    their band to a level that persists (an outage's band widens within minutes), which says
    nothing about whether the departure from what was normal before goes on. ``sign`` is its side
    (+1 above, -1 below, 0 no episode), ``run`` its length in windows so far (this one included),
    ``t`` the last window stepped. ``held``: an alert of this episode was muted by feedback and
    none was raised yet, so later windows of the episode are decided again as it grows
    (:meth:`recheck`): "a dip with a few 502s for a minute or two" can be learned to be benign
    while the same dip lasting is not. ``raised``: an alert of this episode was raised (its later
    windows are not re-decided). Only an alert that can be held this way may be *waited* on
    (:meth:`decide` tells the model): an alert inside the band (no episode) or a later alert of a
    raised episode is decided for good.

    A missing window (more than 1.5 periods since the last point) ends the episode: with no point
    we do not know where the series was. An episode is measured at ``EPISODE_MAX`` windows at most
    (longer ones read the same); then the next window starts afresh against the band of the time.

    Examples
    --------
    >>> e = Episode()            # (t, value, band lower, band upper): the band widens during the drop
    >>> [e.step(t, v, lo, hi, 60) for t, v, lo, hi in [(0, 120, 90, 110), (60, 130, 90, 110), (120, 80, 90, 110),
    ...                                                  (180, 20, 80, 115), (240, 20, 10, 150), (300, 100, 10, 150)]]
    [1, 2, 1, 2, 3, 0]
    >>> e.sign, e.recheck()
    (0, False)
    """

    __slots__ = ("sign", "run", "t", "held", "raised", "excess", "keys", "closed", "ref", "start")

    def __init__(self, sign: int = 0, run: int = 0, t: float = -math.inf, held: bool = False, raised: bool = False,
                 excess: float = 0.0, keys=(), ref=None, start: float | None = None):
        self.sign, self.run, self.t, self.held, self.raised = int(sign), int(run), float(t), bool(held), bool(raised)
        self.excess = float(excess)  # the muted alert's score excess (later windows are damped by the detectors)
        self.keys = list(keys)       # anomaly_key of the alerts raised in this episode (for their labels)
        self.ref = tuple(ref) if ref else None  # (lower, upper) when the episode started
        self.start = -math.inf if start is None else float(start)  # its first window
        self.closed: tuple[list, int] | None = None  # set by step: (keys, length) of an episode just measured

    def step(self, t: float, value: float, lower: float, upper: float, period: float) -> int:
        """Advance to window ``t`` (``value`` and the detectors' band there); the episode's length.

        When this ends an episode that raised alerts, or its length reaches ``EPISODE_MAX``,
        ``closed`` is ``(their anomaly keys, its length)`` for :meth:`FeedbackModel.note_episode`
        (their labels then learn how long it lasted); else None.
        """
        if not self.sign and self.closed is None and not value > upper and not value < lower:
            self.t = t  # the common case, kept cheap (the detect stage steps every point)
            return 0
        self.closed = None
        if self.sign and self.run < EPISODE_MAX and t - self.t <= 1.5 * period \
                and band_side(value, *self.ref) == self.sign:
            self.run += 1
            if self.run == EPISODE_MAX and self.keys:
                self.closed, self.keys = (self.keys, self.run), []
        else:
            if self.keys:
                self.closed = (self.keys, self.run)
            side = band_side(value, lower, upper)
            self.sign, self.run, self.held, self.raised, self.excess = side, 1 if side else 0, False, False, 0.0
            self.keys, self.ref = [], ((float(lower), float(upper)) if side else None)
            self.start = t if side else -math.inf
        self.t = t
        return self.run

    def recheck(self) -> bool:
        """Decide this window again: an alert of this episode was muted, none raised, and it goes on."""
        return self.held and self.sign != 0

    def decide(self, model: "FeedbackModel", features: dict, prior: "MetricPrior | None" = None,
               start: float | None = None) -> "Decision":
        """:meth:`FeedbackModel.decide` on a would-be alert of this episode (or a :meth:`recheck`),
        holding the episode when it is muted. ``features`` must carry this episode's ``run``; on a
        recheck their ``excess`` is raised to the muted alert's: the detectors damp an ongoing
        episode's later scores, which is no evidence that it is less real.

        ``start``: the episode start the caller saw when it stepped this window; when the episode
        has moved on since (a batch held several windows of the series), the decision is made
        without touching this episode's state."""
        if start is not None and start != self.start:
            return model.decide(features, prior, wait=False)  # nothing to hold: no wait
        sign = 1 if features.get("direction") == "up" else -1
        if self.held:
            features = {**features, "excess": max(float(features.get("excess", 0.0)), self.excess)}
        # a hold is a wait only when this episode will be decided again: an episode on the alert's
        # side that raised nothing yet; an alert inside the band (no episode) is decided for good
        d = model.decide(features, prior, wait=not self.raised and sign == self.sign)
        if d.alert:
            self.held, self.raised = False, True
            if self.sign and len(self.keys) < EPISODE_KEYS:
                self.keys.append(anomaly_key(features))
        elif not self.raised and sign == self.sign:
            self.held, self.excess = True, max(self.excess, float(features.get("excess", 0.0)))
        return d

    def to_state(self) -> list:
        return [self.sign, self.run, self.t if math.isfinite(self.t) else None, int(self.held), int(self.raised),
                round(self.excess, 4), self.keys, list(self.ref) if self.ref else None,
                self.start if math.isfinite(self.start) else None]

    @classmethod
    def from_state(cls, st) -> "Episode":
        """Inverse of :meth:`to_state`; None (states saved before episodes were kept) gives a fresh one."""
        if not st:
            return cls()
        sign, run, t, held, raised, excess, keys, ref, start = st
        return cls(sign, run, -math.inf if t is None else t, held, raised, excess, keys, ref, start)


def service_context(others: list[int]) -> float:
    """``co`` of :func:`anomaly_features`: the share of the service's other series out of band
    (``others``: their :func:`band_side` in the same window); 0 for a series alone on its service."""
    return sum(1 for x in others if x) / len(others) if others else 0.0
