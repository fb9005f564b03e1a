"""Does label feedback cut false alarms without losing incidents? A simulated operator answers.

Usage::

    python -m benchmarks.feedback --json feedback.json [--nab DIR] [--ks 5 10 20] [--quick]
        [--files art_noisy.csv nyc_taxi.csv] [--no-nab] [--no-ingress] [--cache DIR]
        [--label-share 0.5 | --after-k]

For each series the detectors (``detectors.BatchEnsemble``, default threshold) score the whole
stream once; that is the system *before* feedback. Then, for each K, the stream is replayed in
time order through :class:`models.feedback.FeedbackModel` (one :class:`MetricPrior` per metric):
every would-be alert goes through ``decide`` (with the detect stage's context: each series'
:class:`models.feedback.Episode` is stepped at every row, muted episodes are decided again as they
go on, and ``co`` comes from the service's other series at the same row); the first K alerts the
system *raises* on a series in its labeling period are labeled by a simulated operator from ground
truth (true inside a truth window, false outside) and learned when the alert's episode is over
(an operator judges the whole episode; the label learns how long it lasted), or at once for an
alert raised inside the band. Evaluation segment: by default the second half of
every series (the labeling period is the first half), the same rows for every K, so a series that
raised fewer than K alerts still counts; ``--after-k`` evaluates from a series' K-th label on
instead (the issue's wording; series with fewer than K alerts then drop out). On it we count,
before and after feedback:

- false positives per 1000 points: alerted rows outside truth windows, per evaluation row;
- recall (event level): fraction of truth windows overlapping the segment with >= 1 alert in it;
- ``losses``: the truth windows that alerted before and not after, with the reasons their alerts
  were suppressed, and the false alarms removed per mechanism (pattern or calibration).

Ground truth enters the replay only through the labels; the model sees each alert's features and
the series' age (time since its first point, so labels from the detectors' warm-up can be told).

Sources: (a) NAB files (``--nab DIR``, read in place; truth = inside a labeled window; each file is
its own metric); (b) synthetic ingress series (see :func:`ingress_series`): requests and error
ratio of a few services from :func:`benchmarks.metric_stream.metric_windows`, with injected
incidents (the truth) and benign events operators label false (nightly batch jobs, backups,
deploys, crawler bursts), plus a larger surge and an outage at a batch job's hour on the last days
that must still alert. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from patrol import detectors
from benchmarks.metric_stream import metric_windows
from patrol.models.feedback import Episode, FeedbackModel, MetricPrior, anomaly_features, anomaly_key, service_context
from patrol.models.metric_kinds import kind_of

DEFAULT_NAB = Path(__file__).resolve().parents[1].parent / "shared" / "nab"
KS = (5, 10, 20)
T = detectors.DEFAULT_THRESHOLD
TRUTH_TAIL = 10  # windows after an injected incident whose alerts are still about it (recovery)


@dataclass
class Series:
    """One stream with its truth; ``out`` is filled by :func:`run_detectors`."""

    name: str
    source: str
    metric: str
    kind: str
    direction: str
    times: np.ndarray           # epoch seconds
    values: np.ndarray
    truth: np.ndarray           # bool per row
    den: np.ndarray | None = None
    out: dict = field(default_factory=dict)
    service: str = ""           # series of one service give each other context (the detect stage's co)

    def windows(self) -> list[tuple[int, int]]:
        """Inclusive row ranges of truth runs."""
        d = np.diff(np.concatenate(([0], self.truth.astype(np.int8), [0])))
        return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1) - 1))


def log(msg: str) -> None:
    print(f"[feedback] {msg}", file=sys.stderr, flush=True)


# -- sources ---------------------------------------------------------------------------------------
def nab_series(nab_dir: Path, files: list[str] | None) -> list[Series]:
    from benchmarks import nab_scorer as ns

    out = []
    for f in ns.load_corpus(nab_dir, files):
        ts = np.array([datetime.fromisoformat(s).replace(tzinfo=timezone.utc).timestamp() for s in f.timestamps])
        out.append(Series(f.name, "nab", f.name, "gauge", "both", ts, f.values.astype(float), f.labels().astype(bool),
                          service=f"nab/{f.name}"))  # unrelated files: each alone on its service
    return out


def ingress_series(n_services: int = 6, days: int = 35, seed: int = 0) -> tuple[list[Series], dict]:
    """Requests and error ratio per service: incidents (the truth) and benign events (not).

    Benign events, labeled false by operators, the usual sources of ingress false alarms:

    - each service's nightly batch job (its own hour, +- 20 min, 10-30 min long, 1.5-4x the
      requests: its size follows the day's data, so the seasonal model cannot simply learn it), and
      on every third service a Sunday backup at 01:30 (3x, 30 min);
    - deploys: rolling restarts on weekdays 09:00-18:00 (about 0.7 a day), 2-5 min of 0.5-0.8x
      requests and +0.5-2% errors (a few 502s);
    - crawler bursts at any time (about 0.5 a day): 1.5-3x requests for 3-15 min.

    Incidents, about one every other day per service, away from the benign events: error bursts
    (+3-15% errors), traffic drops (x0.1-0.5) and surges (x2.5-5), 5-30 min. Sizes of benign
    events and incidents overlap a little, as they do in practice. Then two designed checks on the
    last days, which feedback must not mute: a surge during service 0's batch window 2.5x as large
    as the job's largest size, and an outage (x0.2) during service 1's batch window.

    Wherever the traffic is scaled (or, for the checks, replaced) the baseline errors are scaled
    with it: a service's baseline error *rate* does not change with its traffic, so neither does its
    error ratio (a drop is an incident on ``requests``, not a jump of the error ratio). Errors a
    scenario adds (deploy 502s, error bursts) come on top of the scaled traffic.

    Returns the series and the checks (series name, first row, end row).
    """
    n = days * 1440
    log(f"ingress: generating {n_services} services x {days} days of 1-minute windows")
    wins = metric_windows(n_services, n, seed=seed)
    req = np.array([[p.value for p in w if p.metric == "requests"] for w in wins]).T
    err = np.array([[p.stats["numerator"] for p in w if p.metric == "error_ratio"] for w in wins]).T
    times = np.array([wins[i][0].window_start.timestamp() for i in range(n)])
    del wins
    rng = np.random.default_rng(seed + 1)
    t_req = np.zeros_like(req, dtype=bool)
    t_err = np.zeros_like(req, dtype=bool)
    benign = np.zeros_like(req, dtype=bool)
    job = np.zeros_like(req, dtype=bool)  # the nightly batch jobs alone (where the checks go)
    job_max = 4.0

    def scale(s: int, a: int, b: int, f) -> None:
        # Traffic scaled by f: the baseline errors come with it (same error rate); errors a scenario
        # adds (deploy 502s, error bursts) are added after, on top of the scaled traffic.
        req[s, a:b] *= f
        err[s, a:b] *= f

    for s in range(n_services):
        hour = (1 + 5 * s) % 24  # each service's cron hour
        for d in range(days):
            a = d * 1440 + hour * 60 + int(rng.integers(-20, 21))
            b = a + int(rng.integers(10, 31))
            scale(s, max(a, 0), b, rng.uniform(1.5, job_max))
            benign[s, max(a, 0):b] = job[s, max(a, 0):b] = True
            if s % 3 == 0 and d % 7 == 6:  # T0 is a Monday: day 6 is a Sunday
                a = d * 1440 + 90
                scale(s, a, a + 30, 3.0)
                benign[s, a:a + 30] = True
            for _ in range(rng.poisson(0.7 * 7 / 5) if d % 7 < 5 else 0):  # deploys, weekdays
                a = d * 1440 + int(rng.integers(9 * 60, 18 * 60))
                b = a + int(rng.integers(2, 6))
                scale(s, a, b, rng.uniform(0.5, 0.8))
                err[s, a:b] += rng.uniform(0.005, 0.02) * req[s, a:b]
                benign[s, a:b] = True
            for _ in range(rng.poisson(0.5)):  # crawler bursts
                a = d * 1440 + int(rng.integers(0, 1440 - 15))
                b = a + int(rng.integers(3, 16))
                scale(s, a, b, rng.uniform(1.5, 3.0))
                benign[s, a:b] = True
        for _ in range(days // 2):
            w = int(rng.integers(1440, max(n - 3 * 1440, 1500)))  # after a day of warm-up
            if benign[s, max(0, w - 90):w + 90].any():
                continue
            kind, dur = rng.choice(["error_burst", "traffic_drop", "surge"]), int(rng.integers(5, 31))
            if kind == "error_burst":
                err[s, w:w + dur] += rng.uniform(0.03, 0.15) * req[s, w:w + dur]
                t_err[s, w:w + dur + TRUTH_TAIL] = True
            elif kind == "traffic_drop":
                scale(s, w, w + dur, rng.uniform(0.1, 0.5))
                t_req[s, w:w + dur + TRUTH_TAIL] = True
            else:
                scale(s, w, w + dur, rng.uniform(2.5, 5.0))
                t_req[s, w:w + dur + TRUTH_TAIL] = True
    checks = {}
    for s, (name, factor, day) in enumerate([("surge_at_batch_hour", 2.5 * job_max, days - 2),
                                             ("outage_at_batch_hour", 0.2, days - 1)]):
        s = s % n_services
        rows = np.flatnonzero(job[s, day * 1440:(day + 1) * 1440]) + day * 1440
        a, b = int(rows[0]), int(rows[-1]) + 1
        around = req[s, max(a - 60, 0):a] if a >= 10 else req[s, b:b + 60]
        base = around.mean()  # the incident replaces the job's traffic, relative to normal
        new = rng.poisson(base * factor, b - a).astype(float)
        old = req[s, a:b]
        err[s, a:b] *= np.where(old > 0, new / np.maximum(old, 1e-9), 0.0)  # the same error rate at the new traffic
        req[s, a:b] = new
        t_req[s, a:b + TRUTH_TAIL] = True
        checks[name] = (f"requests{{svc{s}}}", a, b)
    err = np.minimum(np.round(err), req)
    out = []
    for s in range(n_services):
        ratio = np.where(req[s] > 0, err[s] / np.maximum(req[s], 1), 0.0)
        for metric, vals, truth, den in (("requests", req[s], t_req[s], None), ("error_ratio", ratio, t_err[s], req[s])):
            k = kind_of(metric)
            out.append(Series(f"{metric}{{svc{s}}}", "ingress", metric, k.kind, k.direction, times, vals, truth, den,
                              service=f"svc{s}"))
    return out, checks


# -- detection (once, shared by every K) ------------------------------------------------------------
def _cache_key(s: Series) -> str:
    # Detector code + data: a cached score is reused only for the same detectors on the same stream.
    h = hashlib.blake2b(digest_size=12)
    for f in sorted(Path(detectors.__file__).parent.glob("*.py")):
        h.update(f.read_bytes())
    for a in (s.values, s.times, s.den if s.den is not None else np.zeros(0)):
        h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
    h.update(f"{s.kind}/{s.direction}".encode())
    return h.hexdigest()


def run_detectors(series: list[Series], cache: Path | None = None) -> None:
    """Score every series with one BatchEnsemble per (kind, direction), one row per series.

    With ``cache``, outputs are kept there (``.npz`` per series, keyed by detector code and data).
    """
    todo = []
    for s in series:
        f = cache / f"{_cache_key(s)}.npz" if cache else None
        if f is not None and f.exists():
            z = np.load(f)
            s.out = {k: z[k] for k in z.files if k != "names"} | {"names": tuple(z["names"])}
        else:
            todo.append(s)
    if len(todo) < len(series):
        log(f"detector outputs of {len(series) - len(todo)} series from cache {cache}")
    _run_detectors(todo)
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
        for s in todo:
            np.savez(cache / f"{_cache_key(s)}.npz", **{k: v for k, v in s.out.items() if k != "names"},
                     names=np.array(s.out["names"]))


def _run_detectors(series: list[Series]) -> None:
    groups: dict[tuple[str, str], list[Series]] = {}
    for s in series:
        groups.setdefault((s.kind, s.direction), []).append(s)
    for (kind, direction), ss in groups.items():
        n, L = len(ss), max(len(s.values) for s in ss)
        ens = detectors.BatchEnsemble(n_series=n, metric_kind=kind, direction=direction)
        res = {k: np.full((n, L), np.nan) for k in ("score", "expected", "lower", "upper")}
        dirs, fired = np.zeros((n, L), np.int8), np.zeros((n, L), np.int64)
        t0 = time.perf_counter()
        for i in range(L):
            vals = np.array([s.values[i] if i < len(s.values) else np.nan for s in ss])
            ts = np.array([s.times[min(i, len(s.times) - 1)] for s in ss])
            den = None if kind != "ratio" else np.array([s.den[i] if i < len(s.den) else np.nan for s in ss])
            r = ens.update(vals, ts, den)
            for k in res:
                res[k][:, i] = getattr(r, k)
            dirs[:, i], fired[:, i] = r.direction, r.fired
            if i and i % 5000 == 0:
                log(f"detect {kind}/{direction}: {i}/{L} rows x {n} series ({time.perf_counter() - t0:.0f}s)")
        for j, s in enumerate(ss):
            m = len(s.values)
            s.out = {k: v[j, :m] for k, v in res.items()} | {"direction": dirs[j, :m], "fired": fired[j, :m],
                                                            "names": ens.names}


def result_at(s: Series, i: int) -> detectors.Result:
    o = s.out
    names = tuple(nm for b, nm in enumerate(o["names"]) if int(o["fired"][i]) >> b & 1)
    return detectors.Result(float(o["score"][i]), 10 ** (-10 * float(o["score"][i])), float(o["expected"][i]),
                            float(o["lower"][i]), float(o["upper"][i]), {1: "up", -1: "down"}.get(int(o["direction"][i])),
                            names, "warning")


# -- the simulated operator ------------------------------------------------------------------------
def simulate(series: list[Series], k: int, split: float | None = 0.5):
    """Replay all series in time order with feedback; the first ``k`` raised alerts per series get labels.

    With ``split`` (default), labels come only from the first ``split`` share of each series and
    the rest is evaluated, the same rows for every K. With ``split=None`` evaluation starts right
    after a series' k-th label (so never, on a series that raised fewer than k alerts).

    Returns per-series tallies (:func:`tally`), the rows alerted with feedback (labeling period
    included, for the checks) and, per series, the suppressed rows with the model's reason. Ground
    truth enters only through the labels: ``decide`` sees the alert's features alone.
    """
    # Context the detect stage computes (models.feedback.Episode, service_context): every row of
    # every series is stepped through its Episode in time order, and each row's side of its band
    # is what the service's other series see (same service, same window) as ``co``.
    sides, period, others = [], [], []
    service = {}
    for si, s in enumerate(series):
        o = s.out
        sides.append(np.where(s.values > o["upper"], 1, np.where(s.values < o["lower"], -1, 0)).astype(np.int8))
        period.append(float(np.median(np.diff(s.times))) if len(s.times) > 1 else 60.0)
        service.setdefault(s.service, []).append(si)
    for si, s in enumerate(series):
        others.append([j for j in service[s.service] if j != si and len(series[j].values) == len(s.values)])
    order = np.argsort(np.concatenate([s.times for s in series]), kind="stable")
    which = np.concatenate([np.full(len(s.values), si) for si, s in enumerate(series)])
    rows = np.concatenate([np.arange(len(s.values)) for s in series])
    events = zip(which[order].tolist(), rows[order].tolist())
    models = [FeedbackModel() for _ in series]
    episodes = [Episode() for _ in series]
    priors: dict[str, MetricPrior] = {}
    labeled = [0] * len(series)
    horizon = [int(split * len(s.values)) if split is not None else len(s.values) for s in series]
    cut = [0 if k == 0 and split is None else h for h in horizon]
    after = [[] for _ in series]
    shown = [[] for _ in series]  # every alert raised with feedback, labeling period included (checks)
    muted: list[dict[int, str]] = [{} for _ in series]
    waiting: list[list] = [[] for _ in series]  # labels the operator gives when their episode is over
    for si, i in events:
        s, ep, o = series[si], episodes[si], series[si].out
        run = ep.step(s.times[i], s.values[i], o["lower"][i], o["upper"][i], period[si])
        if ep.closed is not None:  # what the detect stage does (models.pool): the episode's length is known
            models[si].note_episode(*ep.closed)
            done = [w for w in waiting[si] if anomaly_key(w[0]) in ep.closed[0]]
            waiting[si] = [w for w in waiting[si] if w not in done]
            for f, verdict, label_id in done:
                models[si].learn(f, verdict, label_id, priors[s.metric])
        if not (o["score"][i] >= T or ep.recheck()):
            continue
        co = service_context([int(sides[j][i]) for j in others[si]])
        feats = anomaly_features(result_at(s, i), s.values[i], s.times[i], s.kind, age_s=s.times[i] - s.times[0],
                                 run=max(run, 1), co=co)
        prior = priors.setdefault(s.metric, MetricPrior())
        d = ep.decide(models[si], feats, prior)
        if d.alert:
            shown[si].append(i)
        elif s.out["score"][i] >= T:  # a would-be alert muted (re-decided windows of its episode are not alerts before)
            muted[si][i] = d.reason
        if i < horizon[si] and labeled[si] < k:
            if d.alert:  # the operator only sees what the system raises
                label_id = hashlib.blake2b(f"{s.name}@{i}".encode(), digest_size=12).hexdigest()  # like record_id
                label = (feats, "true" if s.truth[i] else "false", label_id)
                if anomaly_key(feats) in ep.keys:  # judged once its episode is over (they see all of it)
                    waiting[si].append(label)
                else:  # raised inside the band: no episode to wait for
                    models[si].learn(*label, prior)
                labeled[si] += 1
                if labeled[si] == k and split is None:
                    cut[si] = i + 1
        elif d.alert and i >= cut[si]:
            after[si].append(i)
    return ({s.name: tally(s, cut[si], np.array(after[si], dtype=int), labeled[si], models[si])
             for si, s in enumerate(series)}, {s.name: np.array(shown[si], dtype=int) for si, s in enumerate(series)},
            {s.name: {i: r for i, r in muted[si].items() if i >= cut[si]} for si, s in enumerate(series)})


def mechanism(reason: str) -> str:
    return "pattern" if reason.startswith("labeled false alarm pattern") else "calibration"


def losses(series: list[Series], cuts: dict[str, int], after: dict[str, np.ndarray], muted: dict[str, dict]) -> dict:
    """Why recall dropped and what the false alarms removed were: truth windows that alerted before
    feedback and not after (with the reasons their alerts were suppressed), and suppressed rows
    outside truth windows, per mechanism."""
    lost, fp_by = [], {"pattern": 0, "calibration": 0}
    for s in series:
        cut, mu = cuts[s.name], muted[s.name]
        for i, r in mu.items():
            if not s.truth[i]:
                fp_by[mechanism(r)] += 1
        before = np.flatnonzero(s.out["score"] >= T)
        for a, b in s.windows():
            if b < cut:
                continue
            rows = before[(before >= max(a, cut)) & (before <= b)]
            kept = after[s.name]
            if len(rows) and not ((kept >= max(a, cut)) & (kept <= b)).any():
                lost.append({"series": s.name, "source": s.source, "window": [int(a), int(b)],
                             "suppressed": [{"row": int(i), "by": mechanism(mu[int(i)]), "reason": mu[int(i)]}
                                            for i in rows if int(i) in mu]})
    by = {"pattern": 0, "calibration": 0}
    for w in lost:
        for m in {x["by"] for x in w["suppressed"]}:
            by[m] += 1
    return {"windows_lost": lost, "windows_lost_by": by, "fp_suppressed_by": fp_by}


def tally(s: Series, cut: int, after: np.ndarray, labels: int, model: FeedbackModel) -> dict:
    """Raw counts on the evaluation segment ``rows >= cut``, before and after feedback."""
    before = np.flatnonzero(s.out["score"] >= T)
    before = before[before >= cut]
    row = {"rows": int(len(s.values) - cut), "labels": labels, "patterns": len(model.patterns),
           "evaluated": int(cut < len(s.values)), "alerts_before": int(len(before)), "alerts_after": int(len(after))}
    for name, idx in (("before", before), ("after", after)):
        hit = np.zeros(len(s.values), bool)
        hit[idx] = True
        wins = [(a, b) for a, b in s.windows() if b >= cut]
        row[f"fp_{name}"] = int(np.count_nonzero(hit & ~s.truth))
        row[f"tp_rows_{name}"] = int(np.count_nonzero(hit & s.truth))
        row["windows"] = len(wins)
        row[f"detected_{name}"] = sum(bool(hit[max(a, cut):b + 1].any()) for a, b in wins)
    return row


def summarise(rows: list[dict]) -> dict:
    tot = {key: sum(r[key] for r in rows) for key in rows[0]} if rows else {}
    if not tot:
        return {}
    per = 1000.0 / max(tot["rows"], 1)
    out = {"fp_per_1000_before": round(tot["fp_before"] * per, 3), "fp_per_1000_after": round(tot["fp_after"] * per, 3),
           "recall_before": round(tot["detected_before"] / tot["windows"], 4) if tot["windows"] else None,
           "recall_after": round(tot["detected_after"] / tot["windows"], 4) if tot["windows"] else None}
    out["fp_reduction"] = round(1 - tot["fp_after"] / tot["fp_before"], 4) if tot["fp_before"] else None
    out["recall_change"] = (round(out["recall_after"] - out["recall_before"], 4)
                            if out["recall_before"] is not None else None)
    return out | {"raw": tot}


def run(series: list[Series], ks, checks: dict, split: float | None = 0.5) -> dict:
    report: dict = {"fp_reduction": {}, "recall_change": {}, "fp_per_1000": {}, "recall": {}, "sources": {}}
    sources = sorted({s.source for s in series})
    per_series = {}
    for k in ks:
        t0 = time.perf_counter()
        rows, alerts, muted = simulate(series, k, split)
        log(f"K={k}: simulated {len(series)} series in {time.perf_counter() - t0:.1f}s")
        allsum = summarise(list(rows.values()))
        report["fp_reduction"][str(k)] = allsum["fp_reduction"]
        report["recall_change"][str(k)] = allsum["recall_change"]
        report["fp_per_1000"][str(k)] = {"before": allsum["fp_per_1000_before"], "after": allsum["fp_per_1000_after"]}
        report["recall"][str(k)] = {"before": allsum["recall_before"], "after": allsum["recall_after"]}
        report.setdefault("raw", {})[str(k)] = allsum["raw"]
        for src in sources:
            report["sources"].setdefault(src, {})[str(k)] = summarise([rows[s.name] for s in series if s.source == src])
        for name, (sname, a, b) in checks.items():
            s = next(x for x in series if x.name == sname)
            report.setdefault("checks", {}).setdefault(name, {})[str(k)] = _check(s, alerts[sname], a, b)
        cuts = {s.name: len(s.values) - rows[s.name]["rows"] for s in series}
        report.setdefault("losses", {})[str(k)] = losses(series, cuts, alerts, muted)
        per_series[str(k)] = rows
    report["series"] = per_series
    return report


def _check(s: Series, after: np.ndarray, a: int, b: int) -> dict:
    """Did rows ``a .. b + TRUTH_TAIL`` of ``s`` alert, before and after feedback?"""
    before = bool((s.out["score"][a:b + TRUTH_TAIL] >= T).any())
    return {"series": s.name, "rows": [a, b], "alerted_before": before,
            "alerted_after": bool(((after >= a) & (after < b + TRUTH_TAIL)).any())}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.feedback", description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", required=True, help="write the report here (also printed)")
    ap.add_argument("--nab", type=Path, default=DEFAULT_NAB, help="NAB root (data/, labels/)")
    ap.add_argument("--files", nargs="*", help="NAB subset (category/name.csv or name.csv)")
    ap.add_argument("--ks", nargs="*", type=int, default=list(KS), help="labels per series")
    ap.add_argument("--quick", action="store_true", help="small run for tests: 1 NAB file, 2 services x 2 days")
    ap.add_argument("--no-nab", action="store_true")
    ap.add_argument("--no-ingress", action="store_true")
    ap.add_argument("--services", type=int, default=6)
    ap.add_argument("--days", type=int, default=35)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--label-share", type=float, default=0.5,
                    help="labels come from this first share of each series, the rest is evaluated (0 < x < 1)")
    ap.add_argument("--after-k", action="store_true",
                    help="evaluate from each series' k-th label on instead (series with fewer alerts drop out)")
    ap.add_argument("--cache", type=Path, help="keep detector outputs here (reused while detectors/ is unchanged)")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    files = a.files or (["speed_7578.csv"] if a.quick else None)
    series: list[Series] = []
    checks: dict = {}
    if not a.no_nab:
        series += nab_series(a.nab, files)
        log(f"nab: {len(series)} files from {a.nab}")
    if not a.no_ingress:
        ing, checks = ingress_series(2 if a.quick else a.services, 2 if a.quick else a.days, a.seed)
        series += ing
    run_detectors(series, a.cache)
    log(f"detectors done in {time.perf_counter() - t0:.0f}s")
    split = None if a.after_k else a.label_share
    report = run(series, a.ks, checks, split)
    report["config"] = {"threshold": T, "ks": a.ks, "protocol": "after-k" if split is None else f"split {split}", "nab": str(a.nab) if not a.no_nab else None, "files": files,
                        "ingress": None if a.no_ingress else {"services": 2 if a.quick else a.services,
                                                              "days": 2 if a.quick else a.days, "seed": a.seed},
                        "seconds": round(time.perf_counter() - t0, 1)}
    Path(a.json).write_text(json.dumps(report, indent=1))
    brief = {k: report[k] for k in ("fp_reduction", "recall_change", "fp_per_1000", "recall")}
    brief["windows_lost_by"] = {k: v["windows_lost_by"] for k, v in report["losses"].items()}
    brief["fp_suppressed_by"] = {k: v["fp_suppressed_by"] for k, v in report["losses"].items()}
    print(json.dumps(brief, indent=1))
    return report


if __name__ == "__main__":
    main()
