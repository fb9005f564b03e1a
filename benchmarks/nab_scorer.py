"""NAB v1.1 scoring, reimplemented without pandas.

This module reproduces the scorer of the Numenta Anomaly Benchmark (NAB) v1.1
(``nab/sweeper.py``, ``nab/optimizer.py`` and ``nab/scorer.py`` of
numenta/NAB at commit ea702d75).  The rules, as NAB applies them:

* The first ``min(floor(0.15 * n_rows), 750)`` rows of each file are a
  probationary period and are not scored at all.
* A row is a detection when ``anomaly_score >= threshold``.
* Every row gets a weight ``S(t)``.  Inside a window of width ``W`` whose right
  edge is row ``r``, row ``i`` gets
  ``scaledSigmoid(-(r - i + 1) / W) * tpWeight / scaledSigmoid(-1)``.
  A window scores the largest weight among its detected rows (that is, its
  earliest detection), or ``-fnWeight`` if none of its rows is detected.
* A detected row outside every window costs ``fpWeight * scaledSigmoid(d)``
  with ``d = (i - r_prev) / (W_prev - 1)`` measured from the previous window,
  so a false positive just after a window costs almost nothing, and ``-fpWeight``
  if no window precedes it.
* The threshold is optimized over the whole corpus: every distinct anomaly
  score is tried (plus 1.1, which detects nothing) and the highest-scoring
  one kept; on a tie the highest threshold wins.
* ``normalized = 100 * (raw - null) / (perfect - null)`` where ``perfect`` is
  ``tpWeight`` per window of the labels file (a window hidden in the
  probationary period included, as NAB counts it) and ``null`` is the raw score of a detector that
  never fires (``-fnWeight`` per window).

Scores are summed in the same order as NAB sums them, so the results agree
with NAB's to the last bit or two (NAB's per-file "Totals" are summed in a
different file order, hence a ~1e-14 difference).

It also computes event-level precision/recall/F1, which NAB does not.

"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "DEFAULT_NAB_DIR",
    "PROFILE_NAMES",
    "NULL_THRESHOLD",
    "Profile",
    "NabFile",
    "FileScore",
    "ScoreResult",
    "SweepTable",
    "EventMetrics",
    "load_profiles",
    "load_corpus",
    "read_results",
    "probationary_length",
    "scaled_sigmoid",
    "row_weights",
    "sweep",
    "optimize_threshold",
    "score_file",
    "score_corpus",
    "null_raw_score",
    "perfect_raw_score",
    "normalized",
    "file_events",
    "event_metrics",
]

#: Where CI finds the NAB data: ``../shared/nab`` next to the repository root.
DEFAULT_NAB_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "nab"

#: NAB's three application profiles, in the order NAB reports them.
PROFILE_NAMES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")

#: NAB starts its sweep here: a threshold above every score, detecting nothing.
NULL_THRESHOLD = 1.1

PROBATION_PERCENT = 0.15
# NAB caps probation at probationPercent * 5000 rows.
PROBATION_CAP = 750

# Sentinel window index for rows outside every window.
OUTSIDE = -1


@dataclass(frozen=True)
class Profile:
    """A NAB cost matrix.

    Parameters
    ----------
    name
        Profile name, e.g. ``"standard"``.
    tp_weight
        Reward for detecting a window at its very start.
    fp_weight
        Cost of a false positive far from any window.
    fn_weight
        Cost of a window with no detection.

    """

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


@dataclass(frozen=True, eq=False)  # eq on numpy arrays is ambiguous
class NabFile:
    """One NAB data file with its ground truth.

    Parameters
    ----------
    name
        Path relative to ``data/``, e.g. ``"realKnownCause/nyc_taxi.csv"``.
    timestamps
        Timestamps exactly as written in the CSV.
    values
        The ``value`` column.
    windows
        Anomaly windows as inclusive ``(first_row, last_row)`` indices.

    """

    name: str
    timestamps: tuple[str, ...]
    values: np.ndarray
    windows: tuple[tuple[int, int], ...]

    @property
    def category(self) -> str:
        """The folder the file lives in, e.g. ``"realKnownCause"``."""
        return self.name.split("/", 1)[0]

    @property
    def n_rows(self) -> int:
        """Number of data rows."""
        return len(self.timestamps)

    @property
    def probation(self) -> int:
        """Number of leading rows NAB does not score."""
        return probationary_length(self.n_rows)

    @property
    def scored_windows(self) -> int:
        """Windows with at least one row after probation (the ones NAB counts)."""
        return sum(1 for _, last in self.windows if last >= self.probation)

    def labels(self) -> np.ndarray:
        """0/1 per row, 1 inside a window (NAB's ``label`` column)."""
        lab = np.zeros(self.n_rows, dtype=np.int64)
        for first, last in self.windows:
            lab[first : last + 1] = 1
        return lab


@dataclass(frozen=True)
class FileScore:
    """NAB score of one file at one threshold (a row of NAB's scores CSV)."""

    name: str
    raw_score: float
    tp_rows: int
    tn_rows: int
    fp_rows: int
    fn_rows: int
    windows: int

    @property
    def scored_rows(self) -> int:
        """Rows after probation."""
        return self.tp_rows + self.tn_rows + self.fp_rows + self.fn_rows


@dataclass(frozen=True)
class ScoreResult:
    """NAB score of a corpus at one threshold.

    ``raw_score`` is the sum of the per-file scores, like NAB's "Totals" row.
    """

    profile: str
    threshold: float
    raw_score: float
    tp_rows: int
    tn_rows: int
    fp_rows: int
    fn_rows: int
    windows: int
    per_file: dict[str, FileScore] = field(repr=False)

    @property
    def scored_rows(self) -> int:
        """Rows after probation, over all files."""
        return self.tp_rows + self.tn_rows + self.fp_rows + self.fn_rows


@dataclass(frozen=True)
class SweepTable:
    """Corpus score for every candidate threshold, highest threshold first.

    Entry ``k`` is the state when every scored row with
    ``anomaly_score >= thresholds[k]`` is a detection.
    """

    thresholds: np.ndarray
    scores: np.ndarray
    tp_rows: np.ndarray
    tn_rows: np.ndarray
    fp_rows: np.ndarray
    fn_rows: np.ndarray

    def best(self) -> int:
        """Index of the best threshold; ties go to the highest threshold.

        ``np.argmax`` returns the first maximum and the table is sorted by
        decreasing threshold, which is exactly NAB's stable sort by score.
        """
        return int(np.argmax(self.scores))


@dataclass(frozen=True)
class EventMetrics:
    """Event-level counts and rates.

    A window with at least one detection is one TP, a window with none is one
    FN, and each maximal run of consecutive detected rows touching no window
    is one FP.  Rates with a zero denominator are reported as 0.0.
    """

    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        """TP / (TP + FP)."""
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        """TP / (TP + FN)."""
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall."""
        p, r = self.precision, self.recall
        return _ratio(2 * p * r, p + r)

    def as_dict(self) -> dict[str, float]:
        """Counts and rates, for JSON."""
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
        }


def _ratio(num: float, den: float) -> float:
    return float(num) / den if den else 0.0


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def load_profiles(nab_dir: str | Path = DEFAULT_NAB_DIR) -> dict[str, Profile]:
    """Read ``config/profiles.json``.

    Parameters
    ----------
    nab_dir
        Root of a NAB checkout (holding ``config/``, ``data/``, ``labels/``).

    Returns
    -------
    dict
        Profile name to :class:`Profile`.

    """
    raw = json.loads((Path(nab_dir) / "config" / "profiles.json").read_text())
    return {
        name: Profile(
            name=name,
            tp_weight=float(spec["CostMatrix"]["tpWeight"]),
            fp_weight=float(spec["CostMatrix"]["fpWeight"]),
            fn_weight=float(spec["CostMatrix"]["fnWeight"]),
        )
        for name, spec in raw.items()
    }


def _read_csv_columns(path: Path) -> dict[str, list[str]]:
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        cols: list[list[str]] = [[] for _ in header]
        for row in reader:
            if not row:
                continue
            for col, cell in zip(cols, row):
                col.append(cell)
    return dict(zip(header, cols))


def _parse_time(text: str) -> datetime:
    # NAB compares parsed timestamps, so "…:00" in a data file equals
    # "…:00.000000" in combined_windows.json.
    return datetime.fromisoformat(text.strip())


def _window_rows(name: str, timestamps: Sequence[str], limits: list) -> tuple[tuple[int, int], ...]:
    index = {_parse_time(t): i for i, t in enumerate(timestamps)}
    rows = []
    for start, end in limits:
        # NAB's sweeper only enters a window on an exact timestamp match,
        # so a boundary missing from the data would silently drop the window.
        try:
            rows.append((index[_parse_time(start)], index[_parse_time(end)]))
        except KeyError as exc:
            raise ValueError(f"{name}: window boundary {exc} is not a row timestamp") from None
    rows.sort()
    for (_, prev_end), (start, end) in zip(rows, rows[1:]):
        if start <= prev_end:
            raise ValueError(f"{name}: overlapping windows")
    return tuple(rows)


def load_corpus(
    nab_dir: str | Path = DEFAULT_NAB_DIR, files: Iterable[str] | None = None
) -> list[NabFile]:
    """Load data files and their windows, sorted by name.

    Parameters
    ----------
    nab_dir
        Root of a NAB checkout.
    files
        Optional subset of names relative to ``data/``
        (``"realTraffic/speed_7578.csv"``) or bare file names.

    Returns
    -------
    list of NabFile

    """
    nab_dir = Path(nab_dir)
    data_dir = nab_dir / "data"
    if not data_dir.is_dir():
        raise FileNotFoundError(f"NAB data not found: {data_dir} does not exist")
    windows = json.loads((nab_dir / "labels" / "combined_windows.json").read_text())
    names = sorted(p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*.csv"))
    if files is not None:
        names = _select(names, files)
    corpus = []
    for name in names:
        cols = _read_csv_columns(data_dir / name)
        ts = tuple(cols["timestamp"])
        corpus.append(
            NabFile(
                name=name,
                timestamps=ts,
                values=np.array(cols["value"], dtype=float),
                windows=_window_rows(name, ts, windows.get(name, [])),
            )
        )
    return corpus


def _select(names: list[str], wanted: Iterable[str]) -> list[str]:
    chosen: set[str] = set()
    for want in wanted:
        hits = [n for n in names if want in (n, n.rsplit("/", 1)[-1])]
        if not hits:
            raise ValueError(f"unknown NAB file: {want}")
        chosen.update(hits)
    return [n for n in names if n in chosen]


def results_path(results_dir: str | Path, detector: str, name: str) -> Path:
    """Path of a NAB results file: ``<detector>/<category>/<detector>_<file>``."""
    category, base = name.split("/", 1)
    return Path(results_dir) / detector / category / f"{detector}_{base}"


def read_results(
    results_dir: str | Path, detector: str, corpus: Sequence[NabFile]
) -> dict[str, np.ndarray]:
    """Read the ``anomaly_score`` column of a detector's NAB results files.

    Parameters
    ----------
    results_dir
        Folder holding ``<detector>/<category>/<detector>_<file>.csv``.
    detector
        Detector name.
    corpus
        Files to read; each results file must have one row per data row.

    Returns
    -------
    dict
        File name to anomaly scores.

    """
    out = {}
    for f in corpus:
        cols = _read_csv_columns(results_path(results_dir, detector, f.name))
        if tuple(cols["timestamp"]) != f.timestamps:
            raise ValueError(f"{f.name}: results timestamps differ from the data file")
        # float() rounds correctly, so thresholds equal the CSV text exactly.
        out[f.name] = np.array([float(x) for x in cols["anomaly_score"]])
    return out


# --------------------------------------------------------------------------
# Per-row weights
# --------------------------------------------------------------------------


def probationary_length(n_rows: int) -> int:
    """Rows NAB ignores at the start of a file: ``min(floor(0.15 n), 750)``."""
    return int(min(math.floor(PROBATION_PERCENT * n_rows), PROBATION_CAP))


def scaled_sigmoid(x: np.ndarray | float) -> np.ndarray:
    """NAB's ``scaledSigmoid``: ``2 / (1 + exp(5 x)) - 1``, and -1 beyond x > 3.

    Parameters
    ----------
    x
        Relative position: -1 at a window's left edge, 0 at its right edge,
        positive past it (in window widths).

    """
    x = np.asarray(x, dtype=float)
    # Same expression as NAB (2*sigmoid(-5x) - 1) so the bits agree.
    with np.errstate(over="ignore"):
        val = 2.0 * (1.0 / (1.0 + np.exp(5.0 * x))) - 1.0
    return np.where(x > 3.0, -1.0, val)


def row_weights(f: NabFile, profile: Profile) -> tuple[np.ndarray, np.ndarray]:
    """NAB's per-row sweep score ``S(t)`` and window index of every row.

    Parameters
    ----------
    f
        The data file.
    profile
        Cost matrix.

    Returns
    -------
    weights
        What each row contributes if detected (TP weight inside a window,
        negative FP weight outside).
    window
        Index into ``f.windows`` per row, ``-1`` outside every window.

    """
    n = f.n_rows
    idx = np.arange(n, dtype=float)
    window = np.full(n, OUTSIDE, dtype=np.int64)
    # Rows before the first window: no preceding window, full FP cost.
    weights = np.full(n, -1.0 * profile.fp_weight)
    max_tp = float(scaled_sigmoid(-1.0))
    for k, (first, last) in enumerate(f.windows):
        width = float(last - first + 1)
        inside = slice(first, last + 1)
        window[inside] = k
        pos = -(last - idx[inside] + 1) / width
        weights[inside] = scaled_sigmoid(pos) * profile.tp_weight / max_tp
        stop = f.windows[k + 1][0] if k + 1 < len(f.windows) else n
        after = slice(last + 1, stop)
        # A 1-row window would divide by zero in NAB; inf -> "far" -> -1.
        with np.errstate(divide="ignore"):
            dist = np.abs(last - idx[after]) / (width - 1)
        weights[after] = scaled_sigmoid(dist) * profile.fp_weight
    return weights, window


# --------------------------------------------------------------------------
# Threshold sweep
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rows:
    """Scored rows of a corpus, sorted by decreasing anomaly score (stable)."""

    score: np.ndarray
    weight: np.ndarray
    window: np.ndarray  # global window id, -1 outside
    fn_weight: float


def _scored_rows(
    scores_by_file: Mapping[str, np.ndarray], corpus: Sequence[NabFile], profile: Profile
) -> _Rows:
    scores, weights, windows = [], [], []
    offset = 0
    for f in corpus:
        s = np.asarray(scores_by_file[f.name], dtype=float)
        if s.shape != (f.n_rows,):
            raise ValueError(f"{f.name}: {s.shape[0]} scores for {f.n_rows} rows")
        if np.isnan(s).any():
            raise ValueError(f"{f.name}: NaN anomaly scores")
        w, win = row_weights(f, profile)
        p = f.probation
        scores.append(s[p:])
        weights.append(w[p:])
        windows.append(np.where(win[p:] >= 0, win[p:] + offset, OUTSIDE))
        offset += len(f.windows)
    score = np.concatenate(scores) if scores else np.empty(0)
    # NAB sorts with Python's stable sort, in corpus order.
    order = np.argsort(-score, kind="stable")
    return _Rows(
        score=score[order],
        weight=np.concatenate(weights)[order] if weights else np.empty(0),
        window=np.concatenate(windows)[order] if windows else np.empty(0, np.int64),
        fn_weight=profile.fn_weight,
    )


def _window_groups(rows: _Rows) -> list[np.ndarray]:
    """Sorted-order positions of each window's rows, windows in NAB's sum order.

    NAB keeps one dict entry per window, inserted in order of first appearance
    in the sorted list, and sums ``dict.values()`` in that order.
    """
    inside = np.flatnonzero(rows.window >= 0)
    if inside.size == 0:
        return []
    by_window = inside[np.argsort(rows.window[inside], kind="stable")]
    ids = rows.window[by_window]
    cuts = np.flatnonzero(np.diff(ids)) + 1
    groups = np.split(by_window, cuts)
    return sorted(groups, key=lambda g: g[0])


def _totals_at(rows: _Rows, prefix: np.ndarray) -> np.ndarray:
    """NAB score when the first ``prefix[k]`` sorted rows are detections.

    Summed as NAB does: the FP part first (accumulated row by row in sorted
    order), then each window's part in first-appearance order.
    """
    fp_w = np.where(rows.window < 0, rows.weight, 0.0)
    fp_cum = np.concatenate(([0.0], np.cumsum(fp_w)))
    total = fp_cum[prefix].copy()
    miss = -rows.fn_weight
    for pos in _window_groups(rows):
        # A window scores max(-fnWeight, weights of its detected rows).
        best = np.concatenate(([miss], np.maximum.accumulate(np.maximum(rows.weight[pos], miss))))
        total += best[np.searchsorted(pos, prefix, side="left")]
    return total


def _threshold_prefixes(score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Candidate thresholds (descending) and how many sorted rows each detects."""
    n = score.size
    if n == 0:
        return np.array([NULL_THRESHOLD]), np.array([0])
    starts = np.concatenate(([0], np.flatnonzero(score[1:] != score[:-1]) + 1))
    ends = np.concatenate((starts[1:], [n]))
    thresholds = score[starts]
    # NAB's sweep starts at 1.1 and records it before the first distinct score,
    # unless the top score is exactly 1.1 (then that entry already holds it).
    if thresholds[0] != NULL_THRESHOLD:
        thresholds = np.concatenate(([NULL_THRESHOLD], thresholds))
        ends = np.concatenate(([0], ends))
    return thresholds, ends


def sweep(
    scores_by_file: Mapping[str, np.ndarray], corpus: Sequence[NabFile], profile: Profile
) -> SweepTable:
    """Corpus score at every candidate threshold, like NAB's ``calcScoreByThreshold``.

    Parameters
    ----------
    scores_by_file
        Anomaly scores per file name, one per data row.
    corpus
        Files to score together.
    profile
        Cost matrix.

    Returns
    -------
    SweepTable

    """
    rows = _scored_rows(scores_by_file, corpus, profile)
    thresholds, prefix = _threshold_prefixes(rows.score)
    inside = rows.window >= 0
    tp_cum = np.concatenate(([0], np.cumsum(inside)))
    fp_cum = np.concatenate(([0], np.cumsum(~inside)))
    tp, fp = tp_cum[prefix], fp_cum[prefix]
    return SweepTable(
        thresholds=thresholds,
        scores=_totals_at(rows, prefix),
        tp_rows=tp,
        tn_rows=int((~inside).sum()) - fp,
        fp_rows=fp,
        fn_rows=int(inside.sum()) - tp,
    )


def optimize_threshold(
    scores_by_file: Mapping[str, np.ndarray], corpus: Sequence[NabFile], profile: Profile
) -> tuple[float, float]:
    """Best threshold over the corpus, like NAB's ``optimizeThreshold``.

    Returns
    -------
    threshold
        The threshold with the highest corpus score (highest one on ties).
    score
        The optimizer's corpus score at that threshold.

    """
    table = sweep(scores_by_file, corpus, profile)
    k = table.best()
    return float(table.thresholds[k]), float(table.scores[k])


# --------------------------------------------------------------------------
# Scoring at a fixed threshold
# --------------------------------------------------------------------------


def score_file(scores: np.ndarray, f: NabFile, profile: Profile, threshold: float) -> FileScore:
    """NAB score of one file at ``threshold`` (detections: score >= threshold).

    Parameters
    ----------
    scores
        Anomaly score per data row.
    f
        The data file.
    profile
        Cost matrix.
    threshold
        Detection threshold.

    Returns
    -------
    FileScore

    """
    rows = _scored_rows({f.name: scores}, [f], profile)
    detected = int(np.count_nonzero(rows.score >= threshold))
    raw = float(_totals_at(rows, np.array([detected]))[0])
    inside = rows.window >= 0
    tp = int(np.count_nonzero(inside[:detected]))
    fp = detected - tp
    return FileScore(
        name=f.name,
        raw_score=raw,
        tp_rows=tp,
        tn_rows=int((~inside).sum()) - fp,
        fp_rows=fp,
        fn_rows=int(inside.sum()) - tp,
        windows=f.scored_windows,
    )


def score_corpus(
    scores_by_file: Mapping[str, np.ndarray],
    corpus: Sequence[NabFile],
    profile: Profile,
    threshold: float,
) -> ScoreResult:
    """NAB score of a corpus at ``threshold``: per-file scores and their totals.

    Parameters
    ----------
    scores_by_file
        Anomaly scores per file name.
    corpus
        Files to score.
    profile
        Cost matrix.
    threshold
        Detection threshold (e.g. from :func:`optimize_threshold`).

    Returns
    -------
    ScoreResult

    """
    per_file = {f.name: score_file(scores_by_file[f.name], f, profile, threshold) for f in corpus}
    files = list(per_file.values())
    return ScoreResult(
        profile=profile.name,
        threshold=float(threshold),
        raw_score=float(sum(fs.raw_score for fs in files)),
        tp_rows=sum(fs.tp_rows for fs in files),
        tn_rows=sum(fs.tn_rows for fs in files),
        fp_rows=sum(fs.fp_rows for fs in files),
        fn_rows=sum(fs.fn_rows for fs in files),
        windows=sum(fs.windows for fs in files),
        per_file=per_file,
    )


# --------------------------------------------------------------------------
# Normalization
# --------------------------------------------------------------------------


def null_raw_score(corpus: Sequence[NabFile], profile: Profile) -> float:
    """Optimized raw score of NAB's null detector (0.5 on every row).

    It is ``-fnWeight`` per window whenever firing everywhere costs more
    than it gains, which is the case for any realistic corpus.
    """
    null = {f.name: np.full(f.n_rows, 0.5) for f in corpus}
    threshold, _ = optimize_threshold(null, corpus, profile)
    return score_corpus(null, corpus, profile, threshold).raw_score


def perfect_raw_score(corpus: Sequence[NabFile], profile: Profile) -> float:
    """Raw score of a perfect detector: ``tpWeight`` for every window of the labels.

    As NAB v1.1 (``runner.normalize``) counts it: every window of the labels file, including one that
    lies entirely inside a file's probationary period, which no detector can score. Such a window
    therefore lowers every detector's normalised score a little, exactly as on NAB's scoreboard.
    """
    return profile.tp_weight * sum(len(f.windows) for f in corpus)


def normalized(raw: float, null_raw: float, perfect_raw: float) -> float:
    """NAB's normalized score: 0 for the null detector, 100 for a perfect one.

    Returns NaN when the corpus has no windows (null and perfect coincide).
    """
    span = perfect_raw - null_raw
    return 100.0 * (raw - null_raw) / span if span else float("nan")


# --------------------------------------------------------------------------
# Event-level metrics
# --------------------------------------------------------------------------


def file_events(detected: np.ndarray, f: NabFile) -> EventMetrics:
    """Event counts for one file; rows in the probationary period are ignored.

    Parameters
    ----------
    detected
        Boolean per data row.
    f
        The data file.

    Returns
    -------
    EventMetrics

    """
    det = np.asarray(detected, dtype=bool).copy()
    det[: f.probation] = False
    in_window = f.labels().astype(bool)
    tp = fn = 0
    for first, last in f.windows:
        if last < f.probation:
            continue  # NAB does not count windows hidden in probation
        if det[first : last + 1].any():
            tp += 1
        else:
            fn += 1
    return EventMetrics(tp=tp, fp=_outside_runs(det, in_window), fn=fn)


def _outside_runs(det: np.ndarray, in_window: np.ndarray) -> int:
    """Maximal runs of consecutive detected rows with no row inside a window."""
    starts = det & ~np.concatenate(([False], det[:-1]))
    run_id = np.cumsum(starts)[det]
    if run_id.size == 0:
        return 0
    touches = np.bincount(run_id, weights=in_window[det].astype(float))
    n_runs = int(run_id[-1])
    return int(np.count_nonzero(touches[1 : n_runs + 1] == 0))


def event_metrics(
    scores_by_file: Mapping[str, np.ndarray], corpus: Sequence[NabFile], threshold: float
) -> EventMetrics:
    """Corpus event counts at ``threshold`` (detections: score >= threshold).

    Parameters
    ----------
    scores_by_file
        Anomaly scores per file name.
    corpus
        Files to evaluate.
    threshold
        Detection threshold.

    Returns
    -------
    EventMetrics

    """
    tp = fp = fn = 0
    for f in corpus:
        ev = file_events(np.asarray(scores_by_file[f.name]) >= threshold, f)
        tp, fp, fn = tp + ev.tp, fp + ev.fp, fn + ev.fn
    return EventMetrics(tp=tp, fp=fp, fn=fn)
