"""Scoring of the end-to-end pipeline benchmark against a truth file (pure: no I/O, no Kafka).

Truth file (JSON)::

    {"start": EPOCH, "days": N,
     "incidents": [{"kind": "error_spike", "service": "frontend", "start": EPOCH, "end": EPOCH,
                    "direction": "up"}]}

``service`` is the Kubernetes service name, the ``service`` dimension preagg derives from the
upstream name (``shop-frontend-80`` -> ``frontend``, :func:`preagg.parse.names.split_upstream_name`);
``namespace/service`` is accepted too and then matches the namespace as well. ``days`` may be a
fraction (a few simulated hours).

Rules (docs/pipeline-benchmark.md):

* an incident is **found** when an anomaly on a series of its service (a ``service`` or ``route``
  series; ``global`` series name no service) overlaps ``[start, end + FOUND_SLACK_S]``; its delay
  is the end of the first such anomaly's window minus the incident start (a window can only be
  judged once it has closed);
* a **false incident** is an ``opened`` incident record whose opening window starts outside every
  truth window of its service widened by ``FALSE_WIDEN_S`` on both sides (an incident of the
  ``global`` series: outside every truth window of any service); a **false anomaly** likewise;
* false counts are per service and simulated day over the evaluated period, which excludes the
  warm-up (the first day by default).
"""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import datetime
from typing import Iterable

from patrol.preagg.parse.names import split_upstream_name

FOUND_SLACK_S = 300.0   # an anomaly up to 5 min after the end still finds the incident
FALSE_WIDEN_S = 600.0   # an incident/anomaly within 10 min of a truth window is not false
DAY = 86400.0


def epoch(v) -> float:
    """Epoch seconds from a number, a datetime or ISO 8601 text."""
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, datetime):
        return v.timestamp()
    return datetime.fromisoformat(str(v).replace("Z", "+00:00")).timestamp()


def service_of_upstream(upstream: str) -> str:
    """Kubernetes service name in an ingress-nginx upstream name, as preagg's ``service`` dimension."""
    return split_upstream_name(upstream)[1] or upstream


# -- truth ------------------------------------------------------------------------------------------
def validate_truth(truth: dict) -> dict:
    """Check the truth file's shape; returns it with times as floats. Raises ``ValueError``."""
    for k in ("start", "days", "incidents"):
        if k not in truth:
            raise ValueError(f"truth file lacks {k!r}: expected {{'start', 'days', 'incidents'}}")
    out = {"start": epoch(truth["start"]), "days": float(truth["days"]), "incidents": []}
    if out["days"] <= 0:
        raise ValueError("truth 'days' must be > 0")
    for i, inc in enumerate(truth["incidents"]):
        missing = [k for k in ("kind", "service", "start", "end") if k not in inc]
        if missing:
            raise ValueError(f"truth incident {i} lacks {missing}")
        s, e = epoch(inc["start"]), epoch(inc["end"])
        if e < s:
            raise ValueError(f"truth incident {i} ends before it starts")
        d = inc.get("direction", "up")
        if d not in ("up", "down"):
            raise ValueError(f"truth incident {i}: direction must be 'up' or 'down', not {d!r}")
        out["incidents"].append({"kind": str(inc["kind"]), "service": str(inc["service"]), "start": s, "end": e,
                                 "direction": d})
    return out


def truth_from_ground_truth(records: Iterable[dict], start: float, days: float) -> dict:
    """The generator's ground-truth JSON lines (``patrol generate --ground-truth``) in truth-file shape.

    Examples
    --------
    >>> rec = {"type": "traffic_drop", "start_epoch": 9000.0, "end_epoch": 9900.0,
    ...        "target": {"service": "shop-storefront-80"},
    ...        "metrics": [{"metric": "requests", "direction": "down"}]}
    >>> truth_from_ground_truth([rec], 0.0, 1)["incidents"]
    [{'kind': 'traffic_drop', 'service': 'storefront', 'start': 9000.0, 'end': 9900.0, 'direction': 'down'}]
    """
    incs = []
    for r in records:
        metrics = r.get("metrics") or [{}]
        incs.append({"kind": r["type"], "service": service_of_upstream(r["target"]["service"]),
                     "start": float(r["start_epoch"]), "end": float(r["end_epoch"]),
                     "direction": metrics[0].get("direction", "up")})
    incs.sort(key=lambda i: (i["start"], i["service"]))
    return {"start": float(start), "days": float(days), "incidents": incs}


# -- matching ---------------------------------------------------------------------------------------
def _svc_matches(truth_service: str, namespace: str | None, service: str | None) -> bool:
    """Does a series of (namespace, service) belong to the truth service? ``None`` service = global."""
    if service is None:
        return False
    if "/" in truth_service:
        return truth_service == f"{namespace}/{service}"
    return truth_service == service


def _incident_service(name: str) -> tuple[str | None, str | None]:
    """``namespace/service`` | ``service`` | ``global`` (the detect stage's incident service) -> dims."""
    if name == "global":
        return None, None
    ns, _, svc = name.rpartition("/")
    return ns or None, svc


def dims_of_series(series: str) -> dict[str, str]:
    """Dims of a series key ``metric{k=v,...}`` (values without commas, as the series set makes them)."""
    inner = series[series.find("{") + 1:series.rfind("}")] if "{" in series else ""
    return dict(kv.split("=", 1) for kv in inner.split(",") if "=" in kv)


def in_truth(truth: dict, namespace: str | None, service: str | None, t0: float, t1: float,
             widen: float = FALSE_WIDEN_S) -> bool:
    """Does ``[t0, t1)`` touch a truth window of the service (any service for global), widened by ``widen``?"""
    for inc in truth["incidents"]:
        if service is not None and not _svc_matches(inc["service"], namespace, service):
            continue
        if t1 > inc["start"] - widen and t0 <= inc["end"] + widen:
            return True
    return False


def _norm_anomaly(a: dict) -> dict:
    dims = a.get("dims") or {}
    return {"id": a["id"], "series": a["series"], "metric": a.get("metric") or a["series"].split("{", 1)[0],
            "namespace": dims.get("namespace"), "service": dims.get("service"), "scope": dims.get("scope", "-"),
            "ws": epoch(a["window_start"]), "we": epoch(a["window_end"]), "detectors": list(a.get("detectors") or [])}


def _per_service_day(n: int, services: int, days: float) -> float | None:
    return round(n / (services * days), 4) if services > 0 and days > 0 else None


# -- the score --------------------------------------------------------------------------------------
def score(truth: dict, anomalies: Iterable[dict], incidents: Iterable[dict], n_services: int,
          warmup_days: float = 1.0, after: float | None = None) -> dict:
    """Found incidents, delays and false alarms of one run.

    Parameters
    ----------
    truth : dict
        Truth file contents (:func:`validate_truth` is applied).
    anomalies : iterable of dict
        Anomaly records (``id``, ``series``, ``dims``, ``window_start``, ``window_end``, ``detectors``);
        duplicates by id count once.
    incidents : iterable of dict
        Incident records (``id``, ``event``, ``service``, ``opened``, ``series``); only ``opened``
        events count, once per id.
    n_services : int
        Services in the traffic (the denominator of the per-service-day rates).
    warmup_days : float
        Days from the truth start left out of the false counts (detectors learning).
    after : float, optional
        Evaluate from this epoch instead (e.g. after the labeling period); incidents starting
        before it are left out of ``found`` too.

    Examples
    --------
    >>> truth = {"start": 0, "days": 2, "incidents": [
    ...     {"kind": "error_spike", "service": "web", "start": 90000, "end": 90600}]}
    >>> an = [{"id": "a", "series": "error_ratio{namespace=shop,scope=service,service=web}",
    ...        "dims": {"namespace": "shop", "scope": "service", "service": "web"},
    ...        "window_start": 90060, "window_end": 90120}]
    >>> inc = [{"id": "i", "event": "opened", "service": "shop/web", "opened": 150000, "series": ["requests{}"]}]
    >>> r = score(truth, an, inc, n_services=2)
    >>> r["found"]["all"], r["delay_s"]["median"], r["false_incidents"], r["false_incidents_per_service_day"]
    ({'found': 1, 'total': 1}, 120.0, 1, 0.5)
    """
    truth = validate_truth(truth)
    t_start, t_end = truth["start"], truth["start"] + truth["days"] * DAY
    e_start = max(t_start + warmup_days * DAY, after if after is not None else t_start)
    eval_days = max(0.0, (t_end - e_start) / DAY)
    seen: set[str] = set()
    anoms = []
    for a in anomalies:
        if a["id"] not in seen:
            seen.add(a["id"])
            anoms.append(_norm_anomaly(a))
    anoms.sort(key=lambda a: a["ws"])

    # found + delay, per kind
    per_kind: dict[str, dict] = {}
    delays_all: list[float] = []
    missed = []
    for inc in truth["incidents"]:
        if after is not None and inc["start"] < after:
            continue
        k = per_kind.setdefault(inc["kind"], {"found": 0, "total": 0, "delays": []})
        k["total"] += 1
        lo, hi = inc["start"], inc["end"] + FOUND_SLACK_S
        first = next((a for a in anoms if a["we"] > lo and a["ws"] < hi
                      and _svc_matches(inc["service"], a["namespace"], a["service"])), None)
        if first is None:
            missed.append({"kind": inc["kind"], "service": inc["service"], "start": inc["start"]})
            continue
        k["found"] += 1
        d = max(0.0, first["we"] - inc["start"])
        k["delays"].append(d)
        delays_all.append(d)
    found = {kind: {"found": v["found"], "total": v["total"]} for kind, v in sorted(per_kind.items())}
    found["all"] = {"found": sum(v["found"] for v in per_kind.values()),
                    "total": sum(v["total"] for v in per_kind.values())}
    delay_kind = {kind: round(statistics.median(v["delays"]), 1) for kind, v in sorted(per_kind.items()) if v["delays"]}

    # false anomalies and incidents in the evaluated period
    false_an = [a for a in anoms if e_start <= a["ws"] < t_end
                and not in_truth(truth, a["namespace"], a["service"], a["ws"], a["we"])]
    opened: dict[str, dict] = {}
    for i in incidents:
        if i.get("event") == "opened" and i["id"] not in opened:
            opened[i["id"]] = i
    false_inc, other_window = [], 0
    for i in opened.values():
        t = epoch(i["opened"])
        if not (e_start <= t < t_end):
            continue
        ns, svc = _incident_service(i["service"])
        if in_truth(truth, ns, svc, t, t):
            continue
        false_inc.append(i)
        other_window += svc is not None and in_truth(truth, None, None, t, t)
    return {
        "found": found,
        "delay_s": {"median": round(statistics.median(delays_all), 1) if delays_all else None,
                    "max": round(max(delays_all), 1) if delays_all else None, "median_by_kind": delay_kind},
        "missed": missed,
        "evaluated": {"from": e_start, "to": t_end, "days": round(eval_days, 4), "services": n_services},
        "false_incidents": len(false_inc),
        "false_incidents_per_service_day": _per_service_day(len(false_inc), n_services, eval_days),
        # false by the own-service rule but inside another service's truth window (a knock-on effect?)
        "false_incidents_in_other_services_window": other_window,
        "false_anomalies": len(false_an),
        "false_anomalies_per_service_day": _per_service_day(len(false_an), n_services, eval_days),
        "false_sources": false_sources(false_inc, false_an),
    }


def false_sources(false_incidents: list[dict], false_anomalies: list[dict], top: int = 12) -> dict:
    """Where the false alarms come from: the metric and scope of the series that opened each false
    incident, its service; the metric, scope and detectors of the false anomalies."""
    inc_metric, inc_scope, inc_service = Counter(), Counter(), Counter()
    for i in false_incidents:
        first = (i.get("series") or ["?"])[0]
        inc_metric[first.split("{", 1)[0]] += 1
        inc_scope[dims_of_series(first).get("scope", "-")] += 1
        inc_service[i["service"]] += 1
    an_metric = Counter(a["metric"] for a in false_anomalies)
    an_scope = Counter(a["scope"] for a in false_anomalies)
    an_det = Counter(d for a in false_anomalies for d in (a["detectors"] or ["-"]))
    return {"incidents_by_opening_metric": dict(inc_metric.most_common(top)),
            "incidents_by_opening_scope": dict(inc_scope.most_common()),
            "incidents_by_service": dict(inc_service.most_common(top)),
            "anomalies_by_metric": dict(an_metric.most_common(top)),
            "anomalies_by_scope": dict(an_scope.most_common()),
            "anomalies_by_detector": dict(an_det.most_common(top))}
