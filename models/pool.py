"""The series a detect worker owns: their detectors, replay bookkeeping, and checkpoints.

Series of the same metric kind share one :class:`detectors.BatchEnsemble` (one row each), so a
window's points for thousands of series are scored in a few numpy calls instead of one Python
call per point (the one-point path costs ~2 ms; a batch row ~5 µs). Each series is created on first
sight, its state loaded from the store when another worker (or this one before a restart) learned
it, and marked dirty for the next checkpoint.

Replays are recognised by window: a point whose window the series already learned is a duplicate
(counted, neither learned nor published again); a point older than the last learned window that
was never seen is out of order and rejected with a reason.
"""

from __future__ import annotations

import json
import logging
import math
import time
from array import array
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterator

import numpy as np

from patrol.detectors import BatchEnsemble, Result
from patrol.records import MetricPoint

from .feedback import Episode, FeedbackModel, MetricPrior, service_context
from .history import HourlyHistory
from .incidents import service_of
from .metric_kinds import MetricKind, kind_of
from .store import STATE_FORMAT, SeriesState, StateStore

log = logging.getLogger("patrol.models.pool")

PRIOR_KEY = "__prior__"  # store key prefix of per-metric feedback priors
RECENT_WINDOWS = 32  # window starts remembered per series to tell replays from out-of-order points


@dataclass(slots=True)  # one per point: slots make it a third cheaper to build
class Outcome:
    """A scored point. ``result`` is the full verdict (built only when asked: most points are normal)."""

    point: MetricPoint
    score: float
    model_version: int
    _series: "Series" = None
    _batch: object = None
    _row: int = 0
    t: float = 0.0  # window start, epoch seconds
    run: int = 0          # the series' episode length at this window (models.feedback.Episode)
    recheck: bool = False  # a muted alert's episode goes on here: label feedback decides this window again
    episode: float = 0.0  # start of that episode (window start), to tell it from a later one

    @property
    def service(self) -> str:
        return self._series.service

    @property
    def result(self) -> Result:
        return self._batch.row(self._row)

    @property
    def context(self) -> dict[str, float | None]:
        # Computed on demand (only anomalies need it); the slots 24 h and 168 h back are not
        # touched by learning this point, so asking after learning gives the same answer.
        return self._series.history.context(self.t)


@dataclass
class Rejected:
    point: MetricPoint
    reason: str
    code: str  # out_of_order | bad_value


class Group:
    """One BatchEnsemble holding every series of one metric kind; rows are handed out and recycled."""

    def __init__(self, kind: MetricKind, capacity: int = 256):
        self.kind = kind
        self.ens = BatchEnsemble(n_series=capacity, metric_kind=kind.kind, direction=kind.direction)
        one = BatchEnsemble(n_series=1, metric_kind=kind.kind, direction=kind.direction)
        self.fresh = one.state_of(0)
        self._fresh_rows = [a[0].copy() for a in _state_arrays(one)]  # a new series' row, per state array
        self.free = list(range(capacity - 1, -1, -1))

    def alloc(self) -> int:
        if not self.free:
            self._grow()
        return self.free.pop()

    def release(self, row: int) -> None:
        self.release_many([row])

    def release_many(self, rows: list[int]) -> None:
        """Reset rows to a new series' state (one assignment per state array, not a state round
        trip per row: dropping 10k series on a revoke took 1.3 s the slow way) and recycle them."""
        if not rows:
            return
        idx = np.asarray(rows, dtype=np.int64)
        for a, fresh in zip(_state_arrays(self.ens), self._fresh_rows):
            a[idx] = fresh
        self.free.extend(rows)

    def update_rows(self, rows: list[int], values, times, dens):
        """Score then learn the given rows only.

        The ensemble's cost is per row, present or not; when a batch touches few of a group's
        rows (small batches at low latency, or one service's points), their state is gathered into a
        small ensemble, updated there, and scattered back. Returns (result, index of each row in it).
        """
        n, m = self.ens.n_series, len(rows)
        if m * 4 >= n:
            vals, ts = np.full(n, np.nan), np.full(n, float(np.max(times)))
            vals[rows], ts[rows] = values, times
            ds = None
            if dens is not None:
                ds = np.full(n, np.nan)
                ds[rows] = dens
            return self.ens.update(vals, ts, ds), rows
        sub = BatchEnsemble(n_series=m, **self.ens.config())  # < 1 ms to build: not worth a cache
        idx = np.asarray(rows)
        full, small = _state_arrays(self.ens), _state_arrays(sub)
        for a, b in zip(full, small):
            b[:] = a[idx]
        res = sub.update(np.asarray(values, dtype=float), np.asarray(times, dtype=float),
                         None if dens is None else np.asarray(dens, dtype=float))
        for a, b in zip(full, small):
            a[idx] = b
        return res, list(range(m))

    def _grow(self) -> None:
        old, n = self.ens, self.ens.n_series
        self.ens = BatchEnsemble(n_series=2 * n, **old.config())
        _copy_rows(old, self.ens, n)
        self.free.extend(range(2 * n - 1, n - 1, -1))


def _state_arrays(ens) -> list[np.ndarray]:
    """Per-series state arrays of an ensemble (first axis = series), in the library's packing order."""
    return ens.state_arrays()


def _copy_rows(old, new, n: int) -> None:
    """Copy rows ``0..n-1`` into a bigger ensemble with one slice per array instead of a state
    round trip per row (growing to 10k series took seconds the slow way). The copy is checked
    against the public state of the first and last row; any mismatch falls back to the slow way."""
    src, dst = _state_arrays(old), _state_arrays(new)
    if len(src) == len(dst) and all(a.shape[1:] == b.shape[1:] for a, b in zip(src, dst)):
        for a, b in zip(src, dst):
            b[:n] = a
        if all(new.state_of(i) == old.state_of(i) for i in (0, n - 1)):
            return
    for i in range(n):
        new.load_state(i, old.state_of(i))


@dataclass
class Series:
    key: str
    group: Group
    row: int
    last_window: float = -math.inf
    # array, not list: a checkpoint copies it for every dirty series, and a list copy touches each
    # float object (cache misses over 10k series); membership is only tested for replays
    recent: array = field(default_factory=lambda: array("d"))
    model_version: int = 1
    history: HourlyHistory = field(default_factory=HourlyHistory)
    calibration: dict = field(default_factory=dict)
    _feedback: FeedbackModel | None = None
    service: str = ""  # the incident owner (models.incidents.service_of of the dims)
    # start of the first window this model learned: label feedback ignores labels on alerts from
    # the detectors' warm-up day (models.feedback.WARMUP_S). inf = new series, set on its first
    # point; nan = unknown (state saved before this was kept), so its labels count as before.
    first_window: float = math.inf
    # Context for label feedback: the current departure from the band (checkpointed), and the side
    # of its band (+1 / -1 / 0) at each window in ``recent``, which the service's other series read.
    episode: Episode = field(default_factory=Episode)
    sides: array = field(default_factory=lambda: array("b"))

    def side_at(self, t: float) -> int | None:
        """Side of its band at window ``t`` (None when the window is not among the recent ones)."""
        off = len(self.recent) - len(self.sides)  # sides are not checkpointed: fewer after a restart
        for i in range(len(self.recent) - 1, -1, -1):
            if self.recent[i] == t:
                return self.sides[i - off] if i >= off else None
            if self.recent[i] < t:
                return None
        return None

    @property
    def first_window_json(self) -> str:
        return repr(self.first_window) if math.isfinite(self.first_window) else "null"

    def age_s(self, t: float) -> float | None:
        """Seconds since the model's first window, None when unknown."""
        return t - self.first_window if math.isfinite(self.first_window) else None

    @property
    def feedback(self) -> FeedbackModel:
        if self._feedback is None:
            self._feedback = FeedbackModel.from_state(self.calibration or None)
        return self._feedback

    def snapshot(self, state: dict | None = None) -> SeriesState:
        """Checkpoint record; ``state`` is this row's detector state when already extracted in bulk."""
        if self._feedback is not None:
            self.calibration = self._feedback.to_state()
        k = self.group.kind
        state = self.group.ens.state_of(self.row) if state is None else state
        return SeriesState(self.key, state, self.last_window, self.model_version,
                           {"recent": self.recent.tolist(), "history": self.history.to_state(), "kind": k.kind,
                            "direction": k.direction, "calibration": self.calibration,
                            "first_window": self.first_window if math.isfinite(self.first_window) else None,
                            "episode": self.episode.to_state()})


class SeriesPool:
    """Detectors of the series one worker owns, with lazy loading and dirty tracking."""

    def __init__(self, store: StateStore):
        self.store = store
        self.groups: dict[MetricKind, Group] = {}
        self.series: dict[str, Series] = {}
        self.dirty: set[str] = set()
        self.priors: dict[str, MetricPrior] = {}   # per metric, shared by its series on this worker
        self.dirty_priors: set[str] = set()
        # series per service: metric points are keyed by service, so all of a service's series are
        # on one partition and this worker sees them together (label feedback's ``co`` context).
        # A dict per service, not a list: a revoke drops tens of thousands of one service's series,
        # and list.remove (which compared whole dataclasses) made that quadratic: minutes at 88k.
        self.by_service: dict[str, dict[str, Series]] = {}

    def _group(self, kind: MetricKind) -> Group:
        g = self.groups.get(kind)
        if g is None:
            g = self.groups[kind] = Group(kind)
        return g

    def ensure(self, points: list[MetricPoint]) -> None:
        """Load or create the series of ``points`` (one store round trip for all new ones)."""
        have = self.series
        new = {p.series: p for p in points if p.series not in have}
        if not new:
            return
        metrics = {p.metric for p in new.values() if p.metric not in self.priors}
        loaded = self.store.load_many([*new, *(PRIOR_KEY + m for m in metrics)])
        for m in metrics:
            st = loaded.get(PRIOR_KEY + m)
            self.priors[m] = MetricPrior.from_state(st.state if st else None)
        for key, p in new.items():
            kind = kind_of(p.metric)
            st = loaded.get(key)
            if st is not None:
                kind = MetricKind(st.extra.get("kind", kind.kind), st.extra.get("direction", kind.direction))
            g = self._group(kind)
            row = g.alloc()
            s = Series(key, g, row, service=service_of(p.dims))
            if st is not None:
                try:
                    g.ens.load_state(row, st.state)
                    s.last_window, s.model_version = st.last_window, st.model_version
                    s.recent = array("d", st.extra.get("recent", []))
                    s.history = HourlyHistory.from_state(st.extra.get("history"))
                    s.calibration = st.extra.get("calibration", {})
                    fw = st.extra.get("first_window")
                    s.first_window = float(fw) if fw is not None else math.nan
                    s.episode = Episode.from_state(st.extra.get("episode"))  # absent before episodes: none open
                except (ValueError, KeyError, TypeError) as exc:  # saved by another detector configuration
                    log.warning("state of %s not loadable (%s): starting a new model", key, exc)
            self.series[key] = s
            self.by_service.setdefault(s.service, {})[key] = s

    def _admit(self, points: list[MetricPoint]) -> tuple[dict[str, list[tuple[float, MetricPoint]]], list[MetricPoint], list[Rejected]]:
        """Split into per-series queues of (window start, point) in window order, duplicates, and rejects."""
        queues: dict[str, list[tuple[float, MetricPoint]]] = {}
        for p in points:
            q = queues.get(p.series)
            if q is None:
                queues[p.series] = [(p.window_start.timestamp(), p)]
            else:
                q.append((p.window_start.timestamp(), p))
        dups, rejected = [], []
        series, isfinite = self.series, math.isfinite
        for key, q in queues.items():
            s = series[key]
            if len(q) == 1:  # the common case (one window per series per batch), without the loop below
                t, p = q[0]
                if t > s.last_window and isfinite(p.value):
                    continue
            else:
                q.sort(key=lambda e: e[0])
            last, seen, keep = s.last_window, s.recent, []
            for t, p in q:
                if t in seen:
                    dups.append(p)
                elif t <= last:
                    rejected.append(Rejected(p, f"window {p.window_start.isoformat()} of {p.series} is older than the "
                                                f"last learned window {datetime.utcfromtimestamp(last).isoformat()}Z "
                                                "and was never seen", "out_of_order"))
                elif not math.isfinite(p.value):
                    rejected.append(Rejected(p, f"value {p.value} is not a finite number", "bad_value"))
                else:
                    keep.append((t, p))
                    if len(q) > 1:
                        seen = [*seen, t]
                    last = t
            queues[key] = keep
        return queues, dups, rejected

    def process(self, points: list[MetricPoint], ensure: bool = True) -> tuple[list[Outcome], list[MetricPoint], list[Rejected]]:
        """Score then learn ``points`` (any mix of series and windows); ``ensure=False`` when the
        caller already called :meth:`ensure` for them.

        Returns the scored outcomes, the duplicates skipped and the points rejected with a reason.
        """
        if ensure:
            self.ensure(points)
        queues, dups, rejected = self._admit(points)
        outcomes: list[Outcome] = []
        series = self.series
        while queues:
            by_group: dict[int, tuple[Group, list]] = {}
            for key in list(queues):
                q = queues[key]
                if not q:
                    del queues[key]
                    continue
                s = series[key]
                by_group.setdefault(id(s.group), (s.group, []))[1].append((s, *q.pop(0)))
            for g, heads in by_group.values():
                outcomes.extend(self._score_group(g, heads))
        return outcomes, dups, rejected

    def _score_group(self, g: Group, heads: list[tuple[Series, float, MetricPoint]]) -> list[Outcome]:
        rows = [s.row for s, _, _ in heads]
        values = [p.value for _, _, p in heads]
        times = [t for _, t, _ in heads]
        dens = None
        if g.kind.kind == "ratio":
            dens = [p.count if p.count is not None else p.stats.get("denominator", np.nan) for _, _, p in heads]
        res, at = g.update_rows(rows, values, times, dens)
        scores = res.score[at].tolist()
        lowers, uppers = res.lower[at].tolist(), res.upper[at].tolist()
        out = []
        dirty = self.dirty
        p0 = heads[0][2]
        period = (p0.window_end - p0.window_start).total_seconds()  # one window size per pipeline
        for (s, t, p), row, score, lo, hi in zip(heads, at, scores, lowers, uppers):
            ep = s.episode
            run = ep.step(t, p.value, lo, hi, period)
            if ep.closed is not None:  # an episode with raised alerts was measured: their labels learn its length
                s.feedback.note_episode(*ep.closed)
            out.append(Outcome(p, score, s.model_version, s, res, row, t, run, ep.recheck(), ep.start))
            s.history.add(t, p.value)
            s.last_window = t
            if t < s.first_window:  # only a new series (inf); nan (unknown) compares False
                s.first_window = t
            s.recent.append(t)
            s.sides.append(1 if p.value > hi else -1 if p.value < lo else 0)  # band_side, inlined
            if len(s.recent) > RECENT_WINDOWS:
                del s.recent[0]
                if len(s.sides) > RECENT_WINDOWS:
                    del s.sides[:-RECENT_WINDOWS]
            dirty.add(s.key)
        return out

    def service_context(self, series: Series, t: float) -> float:
        """``co`` for label feedback: share of the other series of ``series``' service out of
        their band at window ``t`` (those not scored for ``t`` yet, or not seen recently, count as
        inside: a point that arrives in a later batch cannot inform this decision)."""
        others = [o for o in self.by_service.get(series.service, {}).values() if o is not series]
        return service_context([o.side_at(t) or 0 for o in others])

    def prior(self, metric: str) -> MetricPrior:
        p = self.priors.get(metric)
        if p is None:
            p = self.priors[metric] = MetricPrior()
        return p

    def learn_label(self, series: str, metric: str, features: dict, verdict: str, label_id: str):
        """Apply an operator's label to a loaded series; returns the Change (model version bumped) or None."""
        s = self.series[series]
        change = s.feedback.learn(features, verdict, label_id, self.prior(metric))
        if change is not None:
            s.model_version += 1
            self.dirty.add(series)
            self.dirty_priors.add(metric)
        return change

    def _dirty_by_group(self) -> list[tuple[Group, list[Series]]]:
        """The dirty series still loaded, grouped by detector group (one bulk extraction each)."""
        by_group: dict[int, tuple[Group, list[Series]]] = {}
        for k in self.dirty:
            s = self.series.get(k)
            if s is not None:
                by_group.setdefault(id(s.group), (s.group, []))[1].append(s)
        return list(by_group.values())

    def take_dirty(self) -> list[SeriesState]:
        states = []
        for g, members in self._dirty_by_group():  # one bulk state extraction per group
            for s, st in zip(members, g.ens.states_of([m.row for m in members])):
                states.append(s.snapshot(st))
        states += [SeriesState(PRIOR_KEY + m, self.priors[m].to_state()) for m in self.dirty_priors]
        self.dirty.clear()
        self.dirty_priors.clear()
        return states

    def snapshot_dirty(self) -> "Snapshot":
        """Copy the dirty series' state and clear the dirty set, cheaply enough for the consume loop.

        Per group, one fancy-index copy of each state array for the dirty rows, plus a shallow
        copy of each series' small Python state (recent windows, hourly ring); packing, base64 and
        JSON happen later in :meth:`Snapshot.records`, off the loop. The copy is the state as of
        this call: points learned afterwards make their series dirty for the next checkpoint."""
        groups = []
        for g, members in self._dirty_by_group():
            idx = np.fromiter((m.row for m in members), dtype=np.int64, count=len(members))
            arrays = [a[idx] for a in _state_arrays(g.ens)]  # fancy indexing copies
            rows = []
            for m in members:
                if m._feedback is not None:
                    m.calibration = m._feedback.to_state()
                # feedback state is small and may share lists with the live model: JSON it now
                cal = json.dumps(m.calibration, separators=(",", ":")) if m.calibration else "{}"
                rows.append((m.key, m.last_window, m.model_version, m.recent[:], m.history.copy_raw(), cal,
                             m.first_window_json, _episode_copy(m.episode)))
            groups.append((g.ens.config(), g.kind, arrays, rows))
        others = [(PRIOR_KEY + m, SeriesState(PRIOR_KEY + m, self.priors[m].to_state()).to_fields())
                  for m in self.dirty_priors]
        self.dirty.clear()
        self.dirty_priors.clear()
        return Snapshot(groups, others)

    def drop(self, keys: set[str]) -> None:
        """Forget series (after their partitions were revoked and checkpointed).

        Linear in ``len(keys)``: constant-time removals from dicts and sets, and one bulk row
        reset per detector group."""
        rows: dict[int, tuple[Group, list[int]]] = {}
        by_service, dirty = self.by_service, self.dirty
        for k in keys:
            s = self.series.pop(k, None)
            if s is not None:
                rows.setdefault(id(s.group), (s.group, []))[1].append(s.row)
                peers = by_service.get(s.service)
                if peers is not None:
                    peers.pop(k, None)
                    if not peers:
                        del by_service[s.service]
            dirty.discard(k)
        for g, rs in rows.values():
            g.release_many(rs)


def _episode_copy(ep: Episode) -> list:
    """The episode's state, detached from the live object (its alert-key list keeps growing); the
    writer thread turns it into JSON, so the copy that blocks the consume loop stays cheap."""
    st = ep.to_state()
    st[6] = st[6][:]
    return st


class Snapshot:
    """Dirty series' state copied by :meth:`SeriesPool.snapshot_dirty`, turned into Redis hash
    fields by :meth:`records` (on any thread: it touches only the copies)."""

    def __init__(self, groups: list, others: list[tuple[str, dict[str, str]]]):
        self.groups = groups
        self.others = others
        self.n_series = sum(len(rows) for _, _, _, rows in groups)

    def add(self, series: str, fields: dict[str, str]) -> None:
        """Another record (incident state, ...) serialised by the caller, written with this snapshot."""
        self.others.append((series, fields))

    def __len__(self) -> int:
        return self.n_series + len(self.others)

    def records(self) -> Iterator[tuple[str, dict[str, str]]]:
        """``(series, fields)`` equal to ``Series.snapshot(...).to_fields()`` at snapshot time,
        built lazily (the store writes them a chunk at a time).

        The detector bytes come from the library's own ``states_of`` on a scratch ensemble the
        copied rows are scattered into, so the packing format stays the detectors' business."""
        yield from self.others
        now = repr(time.time())
        fmt = str(STATE_FORMAT)
        for cfg, kind, arrays, rows in self.groups:
            sub = BatchEnsemble(n_series=len(rows), **cfg)
            for dst, src in zip(_state_arrays(sub), arrays):
                dst[:] = src
            states = sub.states_of(range(len(rows)))
            # the JSON of {"v", "config", "data"} with the shared part encoded once per group
            head = json.dumps({"v": states[0]["v"], "config": states[0]["config"]}, separators=(",", ":"))[:-1] + ',"data":"'
            tail = ',"kind":' + json.dumps(kind.kind) + ',"direction":' + json.dumps(kind.direction) + ',"calibration":'
            for (key, last, version, recent, hist, cal, first, episode), st in zip(rows, states):
                extra = ('{"recent":' + json.dumps(recent.tolist(), separators=(",", ":")) + ',"history":"'
                         + HourlyHistory.encode(hist) + '"' + tail + cal + ',"first_window":' + first
                         + ',"episode":' + json.dumps(episode, separators=(",", ":")) + "}")
                yield key, {"format": fmt, "state": head + st["data"] + '"}', "last_window": repr(float(last)),
                            "model_version": str(version), "extra": extra, "updated": now}
