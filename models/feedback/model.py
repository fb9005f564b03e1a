"""The per-series feedback model: decisions on would-be alerts, learning (and unlearning) labels."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .calibration import (FEATURES, SERIES_S2, MetricPrior, Probit, Seen, as_size, compact, feature_vector, merge_size,
                          predict, size_cutoff, update, vector)
from .constants import (CONFIRM_BELOW, DAY_MIN, GUARD_SUPPORT, MARGIN, MAX_CHANGES, MAX_PATTERNS, PATTERN_ALPHA,
                        SERIES_LOG, SLACK_MIN, SUPPRESS_BELOW, WARMUP_S)
from .features import _size, _within, anomaly_key
from .patterns import Pattern, _short


@dataclass(frozen=True)
class Decision:
    """Adjusted verdict on a would-be alert.

    Attributes
    ----------
    alert : bool
        Raise it (True) or suppress it.
    score : float
        Estimated probability that the alert is real (calibration model).
    reason : str or None
        Why it was suppressed (None when it alerts).
    """

    alert: bool
    score: float
    reason: str | None = None


@dataclass(frozen=True)
class Change:
    """What one label changed in a series' model (bump ``model_version`` when you get one)."""

    label_id: str
    verdict: str
    text: str

    def as_dict(self) -> dict:
        # a 12-character prefix names the label for `patrol label show` and keeps the state small
        return {"label": self.label_id[:12], "verdict": self.verdict, "change": self.text}


@dataclass
class _Obs:
    """One logged label: what learning needs of it, compact enough to keep ``SERIES_LOG`` of them."""

    key: str
    real: bool
    sign: int
    minute: int
    day: int
    calib: list        # :func:`models.feedback.calibration.compact`
    short: str

    @property
    def size(self) -> list | None:
        return _size({"deviation": self.calib[0], "fold": self.calib[1]})

    def to_state(self) -> list:
        return [self.key, int(self.real), self.sign, self.minute, self.day, *self.calib, self.short]

    @property
    def run(self) -> int | None:
        """Episode length (windows) when the labeled alert was raised; None in logs from before it was kept."""
        return self.calib[4] if len(self.calib) > 4 else None

    @classmethod
    def from_state(cls, e) -> "_Obs":
        # calib has 4 entries in logs written before the context inputs, 6 since (CALIB_FIELDS)
        return cls(e[0], bool(e[1]), e[2], e[3], e[4], list(e[5:-1]), e[-1])


class FeedbackModel:
    """One series' label feedback (calibration offsets, false-alarm patterns, explanations).

    The model is a function of its label log: the last ``SERIES_LOG`` labels, one per anomaly
    (the latest verdict wins). A label that changes an anomaly's verdict, or an undo that retracts
    it (``ignore`` on an anomaly already labeled), rebuilds the model by replaying the log without
    the old verdict, so it is truly unlearned (labels older than the log stay learned until then and
    are forgotten by a rebuild). State is small and bounded (``to_state()`` is JSON, a few kB at
    most, whatever the number of labels). See the module docstring for the protocol and an example.
    """

    def __init__(self):
        self.seen = Seen()
        self.changes: list[dict] = []
        self.log: list[_Obs] = []
        self.lengths: dict[str, int] = {}  # anomaly_key -> length of its episode (note_episode), last SERIES_LOG
        self._reset()

    def _reset(self) -> None:
        """Everything learned from labels, as before any label (``seen``, ``changes`` and ``log`` stay)."""
        self.layer = Probit([0.0] * len(FEATURES), [SERIES_S2] * len(FEATURES))
        self.patterns: list[Pattern] = []
        self.max_false: dict[int, list | None] = {1: None, -1: None}  # largest labeled-false size per direction
        self.n_true = self.n_false = 0

    # -- decisions -------------------------------------------------------------------------
    def decide(self, features: dict, prior: MetricPrior | None = None, wait: bool = True) -> Decision:
        """Should this would-be alert (detector score >= threshold) be raised?

        Parameters
        ----------
        features : dict
            From :func:`anomaly_features`.
        prior : MetricPrior, optional
            The series' metric calibration (a fresh one when omitted).
        wait : bool
            A muted alert will be decided again at its episode's next window (what
            :meth:`Episode.decide` tells; it passes False when there is no episode to re-decide,
            e.g. for an alert inside the band): only then may calibration *hold* below
            ``CONFIRM_BELOW``; without a re-decision a hold would be a mute, so the bar is
            ``SUPPRESS_BELOW``.
        """
        prior = prior or MetricPrior()
        x = feature_vector(features)
        _, p = predict([prior.probit, self.layer], x)
        if self.n_true + self.n_false + prior.n_labels == 0:
            return Decision(True, p)
        sign = 1 if features.get("direction") == "up" else -1
        size = _size(features)
        if size is None:  # no band yet: nothing to compare sizes with
            return Decision(True, p)
        day = features.get("day")
        run = features.get("run")
        for pat in self.patterns:
            if pat.covers(sign, features["minute"], size, day) and self._recurring(pat) \
                    and self._lasted(sign, run, MARGIN):
                return Decision(False, p, f"labeled false alarm pattern: {pat.describe()} (label {pat.label})")
        # P(real) below CONFIRM_BELOW while the episode is no longer than two false alarms of its
        # size lasted: wait (a muted episode is decided again next window); past that, or with no
        # re-decision to come (``wait`` False: the wait would be a verdict), mute only below
        # SUPPRESS_BELOW and while it has lasted at most MARGIN x as long as they did
        bar = CONFIRM_BELOW if wait and self._vouched(sign, size, run, 1.0) else SUPPRESS_BELOW
        if p < bar and self._vouched(sign, size, run):
            cut = size_cutoff([prior.probit, self.layer], x)
            need = f"; alerts like it need >= {cut:.1f}x band" if cut else ""
            lasted = "" if run is None else f" ({run} window{'s' if run != 1 else ''} out of band so far)"
            if not wait:  # inside the band, or its episode already alerted: decided for good
                lasted = " (not decided again: no held episode)"
            return Decision(False, p, f"calibrated on labels: P(real) {p:.2f} < {bar}{lasted}{need}")
        return Decision(True, p)

    def _lasted(self, sign: int, run: int | None, margin: float) -> bool:
        """At least ``GUARD_SUPPORT`` logged false labels in this direction lasted ``run / margin``
        windows or more (or their length is unknown: labels from before it was kept). Any episode
        passes when ``run`` is unknown, and a state without a label log (version 1) passes."""
        if run is None or not self.log:
            return True
        n = sum(1 for o in self.log if not o.real and o.sign == sign and (o.run is None or run <= margin * o.run))
        return n >= GUARD_SUPPORT

    def _recurring(self, pat: Pattern) -> bool:
        """The pattern's labeled days are more than chance would put in its hours.

        Under "false alarms come at any time of day", each of the series' false labels in this
        direction falls in the pattern's window (its hours +- slack) with probability window / day;
        the pattern suppresses only when seeing ``pat.n`` or more there has probability below
        ``PATTERN_ALPHA``: two crawler bursts that happened to hit 13:00 on two days out of ten
        false alarms are not a recurring cause, two nights of a batch job out of two alarms are.
        """
        if not self.log:  # a state from before the label log: trust its patterns as they were
            return True
        # at least its own days: labels that counted for it may have left the bounded log since
        n_all = max(pat.n, sum(1 for o in self.log if not o.real and o.sign == pat.sign))
        w = min(1.0, (pat.width + 2 * SLACK_MIN) / DAY_MIN)
        tail = sum(math.comb(n_all, j) * w ** j * (1 - w) ** (n_all - j) for j in range(pat.n, n_all + 1))
        return tail < PATTERN_ALPHA

    def _vouched(self, sign: int, size: list, run: int | None = None, run_margin: float = MARGIN) -> bool:
        """Calibration may mute only what false alarms on this series were seen to be: at least
        ``GUARD_SUPPORT`` of its logged false labels in this direction are each at least 1 / ``MARGIN``
        of ``size`` (on both measures) and, when both are known, lasted at least 1 / ``MARGIN`` of
        ``run`` (episode length in windows: a departure that has lasted more than twice as long as
        the labeled false alarms is not what they were, whatever its size). Two, not one: a single
        outsized false alarm (a detector still warming up) must not vouch for muting everything
        below twice its size."""
        if not self.log:  # a state from before the label log: only the largest false size is known
            return _within(size, self.max_false[sign])
        n = sum(1 for o in self.log if not o.real and o.sign == sign and o.size is not None and _within(size, o.size)
                and (run is None or o.run is None or run <= run_margin * o.run))
        return n >= GUARD_SUPPORT

    def note_episode(self, keys, length: int) -> None:
        """The episode of the alerts ``keys`` (:func:`anomaly_key`) lasted ``length`` windows
        (:attr:`Episode.closed`, from the detect stage). Their labels, when they come, learn that
        length as ``run`` instead of the length when they were raised: an operator judges the whole
        episode, and "a dip for a minute or two" versus "a drop that lasts" is what calibration can
        then learn. A label learned before its episode ended keeps the length it had then."""
        for k in keys:
            self.lengths.pop(k, None)
            self.lengths[k] = int(length)
        while len(self.lengths) > SERIES_LOG:
            del self.lengths[next(iter(self.lengths))]

    # -- learning --------------------------------------------------------------------------
    def learn(self, features: dict, verdict: str, label_id: str, prior: MetricPrior | None = None) -> Change | None:
        """Learn one label; returns what changed, or None when nothing did.

        The latest label on an anomaly is the one in effect: another verdict on an anomaly already
        labeled replaces the earlier one, and ``ignore`` on it (what ``patrol label undo`` publishes
        when it retracts a first label) unlearns it; both rebuild the model by replaying its label
        log. Nothing changes for ``ignore`` on an unlabeled anomaly, for a label id already learned,
        for the same verdict on the same anomaly again, for a false label that an existing pattern
        already covers in time and size, for a label on an alert raised while the detectors were
        still warming up (``age_h`` under ``WARMUP_S``), and for a label without features.

        Parameters
        ----------
        features : dict
            :func:`anomaly_features` of the labeled anomaly (as it was when raised).
        verdict : str
            ``"true"``, ``"false"`` or ``"ignore"``.
        label_id : str
            The label's id: a replayed label (same id) changes nothing.
        prior : MetricPrior, optional
            The metric's shared calibration, updated too (checkpoint it).
        """
        verdict = getattr(verdict, "value", verdict)
        if verdict not in ("true", "false", "ignore"):
            raise ValueError(f"verdict must be true, false or ignore, not {verdict!r}")
        if label_id in self.seen:
            return None
        if not all(k in features for k in ("score", "direction", "minute")):
            return None  # a label without the anomaly's features (older records): nothing to learn from
        prior = prior if prior is not None else MetricPrior()
        key, short = anomaly_key(features), _short(label_id)
        old = next((o for o in self.log if o.key == key), None)
        if verdict == "ignore" and old is None:
            return None
        self.seen.add(label_id)
        real = verdict == "true"
        if old is not None and (verdict == "ignore" or old.real != real):
            self.log.remove(old)
            prior.retract(key)
            self._replay(prior)
            undone = f"unlearned label {old.short} ({'true' if old.real else 'false'}; replayed {len(self.log)} labels)"
            if verdict == "ignore":
                return self._log(Change(str(label_id), verdict, f"{undone} (label {short} ignore)"))
            text = self._apply(self._obs(features, key, real, short), prior)
            return self._log(Change(str(label_id), verdict, f"{undone}; {text}"))
        if old is not None:  # same verdict on the same anomaly again
            return None
        age = features.get("age_h")
        if age is not None and age * 3600.0 < WARMUP_S:
            return None  # raised while the detectors were still warming up: says nothing about later alerts
        if key in self.lengths:  # how long its episode lasted (note_episode)
            features = {**features, "run": max(self.lengths[key], int(features.get("run") or 1))}
        text = self._apply(self._obs(features, key, real, short), prior)
        return None if text is None else self._log(Change(str(label_id), verdict, text))

    @staticmethod
    def _obs(features: dict, key: str, real: bool, short: str) -> _Obs:
        return _Obs(key, real, 1 if features.get("direction") == "up" else -1, int(features["minute"]),
                    int(features.get("day", -1)), compact(features), short)

    def _apply(self, o: _Obs, prior: MetricPrior, fixed: Probit | None = None) -> str | None:
        """Learn ``o``; the explanation, or None when nothing changed.

        Online (``fixed`` None) ``o`` is logged and the metric's prior learns it too; in a replay
        ``fixed`` is the prior's weights as they were right after ``o`` (the prior has its own log).
        """
        replay = fixed is not None
        if not replay:
            self.log = (self.log + [o])[-SERIES_LOG:]
        size, short = o.size, o.short
        if not o.real and size is not None:
            pat = next((p for p in self.patterns if p.covers(o.sign, o.minute, size, o.day) and self._recurring(p)), None)
            if pat is not None:
                # Explained away: one recurring cause, already suppressed. Training calibration on
                # every repeat would teach it that *all* alerts of this size are false.
                self.n_false += 1
                span, top = pat.widened(o.minute) or (pat.start, pat.width), pat.top
                day = pat.anchor(o.day, o.minute)
                pat.add(size)
                if top == pat.top and span == (pat.start, pat.width) and day == pat.day:
                    return None
                (pat.start, pat.width), pat.label = span, short
                pat.count(day)
                return f"suppress {pat.describe()} (label {short} false)"
        x = vector(o.calib)
        before = predict([prior.probit, self.layer], x)[1]
        if not replay:
            prior.learn(o.key, o.sign, o.calib, o.real)
        # the series learns what its metric does not explain
        update([self.layer], x, o.real, fixed=fixed if replay else prior.probit)
        after = predict([prior.probit, self.layer], x)[1]
        calib = f"P(real) like it{self._context_text(o)} {before:.2f} -> {after:.2f}"
        if o.real:
            self.n_true += 1
            lifted = self._lift(o.sign, o.minute, size, o.day) if size is not None else []
            return "; ".join([f"true incident (label {short} true)"] + lifted + [calib])
        self.n_false += 1
        if size is None:
            return f"false alarm (label {short} false); {calib}"
        self.max_false[o.sign] = merge_size(self.max_false[o.sign], size)
        return f"{self._suppress(o.sign, o.minute, size, short, o.day)} (label {short} false); {calib}"

    @staticmethod
    def _context_text(o: _Obs) -> str:
        """The labeled alert's episode context, for explanations (empty for labels without it)."""
        if o.run is None:
            return ""
        co = o.calib[5] if len(o.calib) > 5 else None
        other = f", {co:.0%} of the service's other series out of band" if co else ""
        return f" ({o.run} window{'s' if o.run != 1 else ''} out of band{other})"

    def _replay(self, prior: MetricPrior) -> None:
        """Rebuild everything learned from the log (the metric's prior is already rebuilt by its own log)."""
        self._reset()
        snaps = prior.snapshots()
        for o in self.log:
            self._apply(o, prior, fixed=snaps.get(o.key, prior.probit))  # older than the prior's log: today's

    def _log(self, change: Change) -> Change:
        self.changes = (self.changes + [change.as_dict()])[-MAX_CHANGES:]
        return change

    def _suppress(self, sign: int, minute: int, size: list, short: str, day: int) -> str:
        for pat in self.patterns:
            if pat.sign == sign and pat.near(minute):
                span = pat.widened(minute)
                if span is not None:
                    pat.start, pat.width = span
                    pat.label = short
                    pat.add(size)
                    pat.count(pat.anchor(day, minute))
                    return f"suppress {pat.describe()}"
        if len(self.patterns) >= MAX_PATTERNS:  # drop the least supported (oldest on ties)
            self.patterns.remove(min(self.patterns, key=lambda p: p.n))
        pat = Pattern(sign, minute, 0, [size], 0, short)
        pat.count(day)
        self.patterns.append(pat)
        return f"suppress {pat.describe()}"

    def _lift(self, sign: int, minute: int, size: list, day: int) -> list[str]:
        gone = [p for p in self.patterns if p.reaches(sign, minute, size, day)]
        self.patterns = [p for p in self.patterns if p not in gone]
        return [f"lift suppression of {p.describe()} (set by label {p.label})" for p in gone]

    # -- state -----------------------------------------------------------------------------
    def to_state(self) -> dict:
        """JSON-able, bounded state (store it in ``Series.calibration``)."""
        return {"v": 3, "w": self.layer.to_state(), "pat": [p.to_state() for p in self.patterns],
                "maxf": [self.max_false[1], self.max_false[-1]],
                "n": [self.n_true, self.n_false], "seen": self.seen.ids, "changes": self.changes,
                "log": [o.to_state() for o in self.log], "len": [[k, n] for k, n in self.lengths.items()]}

    @classmethod
    def from_state(cls, d: dict | None) -> "FeedbackModel":
        """Inverse of :meth:`to_state`; an empty or missing state gives a fresh model."""
        m = cls()
        if not d:
            return m
        m.layer = Probit.from_state(d.get("w"), m.layer)
        m.patterns = [Pattern(*p) for p in d.get("pat", [])]
        up, down = d.get("maxf", [None, None])
        m.max_false = {1: as_size(up), -1: as_size(down)}
        m.n_true, m.n_false = d.get("n", [0, 0])
        m.seen = Seen(d.get("seen", ()))
        m.changes = list(d.get("changes", []))
        m.log = [_Obs.from_state(e) for e in d.get("log", [])]  # none in version 1: nothing to unlearn by replay
        m.lengths = {k: int(n) for k, n in d.get("len", [])}   # none before version 3
        return m
