"""The label-feedback model's constants: what may be muted, for how long, and how much state it keeps."""

from __future__ import annotations

from .calibration import RUN_CAP

MARGIN = 2.0        # alerts > MARGIN x the largest labeled-false deviation are never muted
SLACK_MIN = 60      # a pattern covers its labeled times of day +- this many minutes
MAX_SPAN_MIN = 120  # labels further apart than this start a new pattern (no all-day patterns)
MAX_PATTERNS = 4    # per series; the weakest is dropped beyond this (bounded state)
MAX_CHANGES = 4     # explanations kept for `patrol models show`
# Calibration suppresses only when P(real) is below this: the Bayes decision when a missed incident
# costs about 4 false alarms (suppress iff P(real) < c_fa / (c_fa + c_miss) = 1 / 5).
SUPPRESS_BELOW = 0.2
# While an episode is no longer than two false alarms of its size lasted, it is held below this:
# more likely false than real were it to end now. A hold is a wait (the episode is decided again at
# each later window), so what a wrong one costs is bounded by how long the labeled false alarms lasted.
CONFIRM_BELOW = 0.5
PATTERN_ALPHA = 0.05  # a pattern suppresses when its labeled days are unlikely to be coincidence (see _recurring)
PATTERN_SIZES = 8   # labeled sizes a pattern keeps (its reach is twice the second largest)
MIN_PATTERN_DAYS = 2  # a pattern is recurring: false labels on 2 different days before it suppresses
DAY_MIN = 1440
# The detectors' longest warm-up is the seasonal model's one period (a day): alerts raised before
# it describe a detector still learning the series, not the series, so their labels do not retrain.
WARMUP_S = 86400.0
GUARD_SUPPORT = 2  # labeled false alarms of an alert's size needed before calibration may mute it
SERIES_LOG = 32     # labels a series keeps to unlearn one by replay (bounded state)
# Episode lengths are told apart up to 2 ** calibration.RUN_CAP windows; an episode that long is
# measured then (its labels need not wait for its end). An episode remembers the keys of its first
# few raised alerts (the detectors re-alert only when it worsens), a model the lengths of its last
# SERIES_LOG measured alerts (as many as labels it keeps).
EPISODE_MAX = 2 ** int(RUN_CAP)
EPISODE_KEYS = 4
