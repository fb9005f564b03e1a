"""Label bookkeeping: latest verdict per anomaly, the undo chain, precision per group.

Pure functions and plain data, no I/O: the CLI (``cli/commands/label.py``) reads the
``anomaly-labels`` topic, feeds the :class:`~records.Label` records here in topic order, and
publishes whatever label :meth:`LabelBook.plan_undo` returns.

Undo design
-----------
The labels topic is compacted by anomaly id, so "latest wins" is the only state a consumer (the
retraining stage) can rely on. An undo therefore never deletes anything: it *publishes a new label*
for the same anomaly whose verdict is what the anomaly's verdict was before the undone label, and
whose note starts with ``[undo <label id>]`` so later undos know that label is gone. When the
undone label was the anomaly's first one there is no earlier verdict to restore: the undo publishes
``verdict=ignore`` with the note ``[undo <label id>] retracted``; ``ignore`` means "do not train or
score on this", which is what a retraction must mean to a consumer that only sees the latest
label, and this module reports such an anomaly as unlabeled again.

Undo is per author: ``undo`` reverts that author's most recent action (one ``mark``, or every label
of one ``mark-all``, which share their ``at``) among labels that are neither undos nor already
undone, so repeated undos walk back through the author's own history (an undo chain).
After compaction the history of an anomaly may be reduced to its latest label; an undo then finds
no earlier verdict and retracts, which is the safe direction.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Iterable, Mapping, Sequence

from patrol.records import Anomaly, Label, LabelVerdict, record_id

from .incidents import service_of as service_name  # one service naming for incidents, filters and stats

UNDO_RE = re.compile(r"^\[undo ([0-9a-f]+)\]")
RETRACTED = "retracted"


def undo_target(label: Label) -> str | None:
    """Id of the label that ``label`` undoes, or ``None`` when it is an ordinary label."""
    m = UNDO_RE.match(label.note or "")
    return m.group(1) if m else None


def is_retraction(label: Label) -> bool:
    """True for an undo label that left the anomaly without any verdict."""
    return undo_target(label) is not None and RETRACTED in (label.note or "")


def make_label(anomaly_id: str, verdict: LabelVerdict | str, at: datetime, note: str | None = None,
               author: str | None = None, *, series: str | None = None, metric: str | None = None,
               features: dict | None = None) -> Label:
    """A label with the deterministic id ``record_id(anomaly_id, at)`` (the wire contract)."""
    return Label(id=record_id(anomaly_id, at.isoformat()), anomaly_id=anomaly_id, verdict=LabelVerdict(verdict),
                 note=note, author=author, at=at, series=series, metric=metric, features=dict(features or {}))


def label_for(anomaly: Anomaly, verdict: LabelVerdict | str, at: datetime, note: str | None = None,
              author: str | None = None) -> Label:
    """A label on ``anomaly`` carrying its series, metric and features: the detect stage routes a
    label to the series' owner and retrains from those features without looking the anomaly up."""
    return make_label(anomaly.id, verdict, at, note, author, series=anomaly.series, metric=anomaly.metric,
                      features=anomaly.features)


@dataclass
class UndoPlan:
    """What an undo will do: the label it reverts and the label to publish."""

    undone: Label
    publish: Label
    restored: LabelVerdict | None  # None: retracted (the anomaly is unlabeled again)


class NothingToUndo(LookupError):
    """The author has no label left that an undo could revert."""


@dataclass
class LabelBook:
    """Labels folded in topic order.

    Attributes
    ----------
    latest : dict
        Anomaly id -> the latest label (what a compacted topic keeps; may be a retraction).
    stacks : dict
        Anomaly id -> ordinary labels still in effect, oldest first; an undo removes its target,
        and the top of the stack is the verdict an undo restores.
    history : list
        Every label in the order applied.
    """

    latest: dict[str, Label] = field(default_factory=dict)
    stacks: dict[str, list[Label]] = field(default_factory=lambda: defaultdict(list))
    history: list[Label] = field(default_factory=list)
    undone: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, labels: Iterable[Label]) -> "LabelBook":
        book = cls()
        for label in labels:
            book.apply(label)
        return book

    def apply(self, label: Label) -> None:
        """Fold one label; call in topic order (offset order within the anomaly's partition)."""
        self.history.append(label)
        self.latest[label.anomaly_id] = label
        target = undo_target(label)
        stack = self.stacks[label.anomaly_id]
        if target is None:
            stack.append(label)
            return
        self.undone.add(target)
        stack[:] = [lb for lb in stack if lb.id != target]

    def verdict(self, anomaly_id: str) -> LabelVerdict | None:
        """Effective verdict of an anomaly, ``None`` when unlabeled or retracted."""
        label = self.latest.get(anomaly_id)
        if label is None or is_retraction(label):
            return None
        return label.verdict

    def effective(self) -> dict[str, Label]:
        """Anomaly id -> its latest label, without retractions (the current training set)."""
        return {aid: lb for aid, lb in self.latest.items() if not is_retraction(lb)}

    def _undoable(self, author: str | None) -> list[tuple[int, Label]]:
        return [(i, lb) for i, lb in enumerate(self.history)
                if lb.author == author and undo_target(lb) is None and lb.id not in self.undone]

    def last_undoable(self, author: str | None) -> list[Label]:
        """The author's most recent action not undone yet: its ordinary labels sharing the latest ``at``.

        One ``mark`` writes one label; one ``mark-all`` writes its labels with a single ``at``, so
        undo reverts a whole bulk marking at once. Empty when there is nothing to undo.
        """
        mine = self._undoable(author)
        if not mine:
            return []
        last_at = max(lb.at for _, lb in mine)
        return [lb for _, lb in mine if lb.at == last_at]

    def plan_undo(self, author: str | None, at: datetime) -> list[UndoPlan]:
        """Labels that revert ``author``'s last action, one per anomaly; raises :class:`NothingToUndo`."""
        targets = self.last_undoable(author)
        if not targets:
            raise NothingToUndo(f"no label by {author or 'an anonymous author'} left to undo")
        return [self._plan_one(t, at, author) for t in targets]

    def _plan_one(self, target: Label, at: datetime, author: str | None) -> UndoPlan:
        remaining = [lb for lb in self.stacks.get(target.anomaly_id, []) if lb.id != target.id]
        if remaining:
            prev = remaining[-1]
            note = f"[undo {target.id}] restores {prev.verdict.value} from label {prev.id}"
            publish = make_label(target.anomaly_id, prev.verdict, at, note=note, author=author, **_routing(target))
            return UndoPlan(target, publish, prev.verdict)
        note = f"[undo {target.id}] {RETRACTED}: no earlier verdict"
        publish = make_label(target.anomaly_id, LabelVerdict.ignore, at, note=note, author=author, **_routing(target))
        return UndoPlan(target, publish, None)


def _routing(label: Label) -> dict:
    """What an undo label copies from the label it reverts, so the detect stage can route it too."""
    return {"series": label.series, "metric": label.metric, "features": label.features}


@dataclass
class GroupStats:
    """Label counts of one group; precision = true / (true + false), ignore excluded."""

    true: int = 0
    false: int = 0
    ignore: int = 0

    @property
    def labeled(self) -> int:
        return self.true + self.false + self.ignore

    @property
    def precision(self) -> float | None:
        judged = self.true + self.false
        return self.true / judged if judged else None

    def add(self, verdict: LabelVerdict) -> None:
        setattr(self, verdict.value, getattr(self, verdict.value) + 1)

    def as_dict(self) -> dict[str, float | int | None]:
        return {"labeled": self.labeled, "true": self.true, "false": self.false, "ignore": self.ignore,
                "precision": self.precision}


GROUPINGS = ("detector", "service", "metric")
UNKNOWN = "-"


def group_keys(anomaly: Anomaly | None, by: str) -> list[str]:
    """The groups an anomaly counts in; an anomaly fired by two detectors counts for both."""
    if anomaly is None:
        return [UNKNOWN]
    if by == "detector":
        return list(dict.fromkeys(anomaly.detectors)) or [UNKNOWN]
    if by == "service":
        return [service_name(anomaly.dims)]
    if by == "metric":
        return [anomaly.metric]
    raise ValueError(f"unknown grouping {by!r}; known: {', '.join(GROUPINGS)}")


def precision_stats(labels: Mapping[str, Label], anomalies: Mapping[str, Anomaly],
                    groupings: Sequence[str] = GROUPINGS) -> dict[str, dict[str, GroupStats]]:
    """Counts and precision per group, from the effective label of each anomaly.

    Parameters
    ----------
    labels : mapping
        Anomaly id -> effective label (:meth:`LabelBook.effective`).
    anomalies : mapping
        Anomaly id -> anomaly; labels of anomalies not in it (expired from the anomalies topic)
        count under the group ``"-"``.
    groupings : sequence
        Any of ``"detector"``, ``"service"``, ``"metric"``; ``"all"`` is always added.

    Returns
    -------
    dict
        Grouping -> group value -> :class:`GroupStats`, plus ``{"all": {"all": ...}}``.
    """
    out: dict[str, dict[str, GroupStats]] = {g: defaultdict(GroupStats) for g in groupings}
    total = GroupStats()
    for aid, label in labels.items():
        anomaly = anomalies.get(aid)
        total.add(label.verdict)
        for g in groupings:
            for key in group_keys(anomaly, g):
                out[g][key].add(label.verdict)
    result = {g: dict(sorted(v.items())) for g, v in out.items()}
    result["all"] = {"all": total}
    return result


def short_ids(ids: Iterable[str], min_len: int = 8) -> dict[str, str]:
    """Shortest prefix (at least ``min_len``) of each id that no other id shares."""
    uniq = sorted(set(ids))
    out = {}
    for i, cur in enumerate(uniq):
        need = min_len
        for j in (i - 1, i + 1):
            if 0 <= j < len(uniq):
                other = uniq[j]
                common = 0
                while common < min(len(cur), len(other)) and cur[common] == other[common]:
                    common += 1
                need = max(need, common + 1)
        out[cur] = cur[:need]
    return out


class AmbiguousId(LookupError):
    """A prefix that matches more than one anomaly."""

    def __init__(self, prefix: str, matches: list[str]):
        super().__init__(f"id prefix {prefix!r} matches {len(matches)} anomalies: {', '.join(sorted(matches)[:5])}"
                         + (" ..." if len(matches) > 5 else "") + "; give more characters")
        self.matches = matches


class UnknownId(LookupError):
    """An id that matches no anomaly."""


def resolve_id(prefix: str, ids: Iterable[str]) -> str:
    """The one id equal to or starting with ``prefix``; raises :class:`UnknownId` / :class:`AmbiguousId`."""
    prefix = prefix.strip().lower()
    if not prefix:
        raise UnknownId("empty anomaly id")
    ids = set(ids)
    if prefix in ids:
        return prefix
    matches = [i for i in ids if i.startswith(prefix)]
    if not matches:
        raise UnknownId(f"no anomaly with id {prefix!r}")
    if len(matches) > 1:
        raise AmbiguousId(prefix, matches)
    return matches[0]


SEVERITY_ORDER = {"info": 0, "warning": 1, "critical": 2}
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_when(text: str, now: datetime) -> datetime:
    """A point in time from ``2h``/``30m``/``7d`` (that long before ``now``) or ISO 8601 (UTC if no zone).

    Raises
    ------
    ValueError
        With the accepted forms, for anything else.
    """
    m = _RELATIVE.match(text)
    if m:
        return now - timedelta(seconds=float(m.group(1)) * _UNIT_S[m.group(2).lower()])
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"cannot read time {text!r}: use a duration before now (30m, 2h, 7d) or ISO 8601 "
                         "(2026-11-27T14:00 or 2026-11-27T14:00:00+00:00)") from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


@dataclass
class AnomalyFilter:
    """Which anomalies a command works on; every field left ``None`` matches everything.

    ``severity`` is a minimum; ``labeled`` True/False keeps only anomalies with/without an
    effective verdict; ``since``/``until`` compare with the anomaly's window start.
    """

    service: str | None = None
    metric: str | None = None
    severity: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    labeled: bool | None = None
    detector: str | None = None
    incident: str | None = None
    series: str | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, f) is None for f in self.__dataclass_fields__)

    def matches(self, a: Anomaly, book: LabelBook) -> bool:
        if self.service is not None and self.service not in (a.dims.get("service"), service_name(a.dims)):
            return False
        if self.metric is not None and a.metric != self.metric:
            return False
        if self.series is not None and a.series != self.series:
            return False
        if self.severity is not None and SEVERITY_ORDER[a.severity.value] < SEVERITY_ORDER[self.severity]:
            return False
        if self.since is not None and a.window_start < self.since:
            return False
        if self.until is not None and a.window_start > self.until:
            return False
        if self.detector is not None and self.detector not in a.detectors:
            return False
        if self.incident is not None and not (a.incident_id or "").startswith(self.incident):
            return False
        if self.labeled is not None and (book.verdict(a.id) is not None) != self.labeled:
            return False
        return True

    def apply(self, anomalies: Iterable[Anomaly], book: LabelBook) -> list[Anomaly]:
        """Matching anomalies, newest first."""
        return sorted((a for a in anomalies if self.matches(a, book)), key=lambda a: (a.window_start, a.id),
                      reverse=True)
