"""Score published anomalies against the traffic generator's ground truth.

An incident is *found* when an anomaly (or incident record) of a matching service overlaps its
window, allowing ``slack_s`` after its end for windows to close and detectors to react. Anomalies
that match no incident are false alarms; they are reported per hour of simulated traffic, both as
raw anomalies and as alert *groups* (incident ids: what a paged person sees).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


def _epoch(v) -> float:
    if isinstance(v, (int, float)):
        return float(v)
    return datetime.fromisoformat(str(v).replace("Z", "+00:00")).timestamp()


def service_matches(dims: dict, target: dict) -> bool:
    """Does a series with ``dims`` belong to the incident ``target`` (upstream name ns-svc-port)?

    Series without a service (global or per-host rollups) match any target: a global anomaly during
    an incident is the incident showing through, not a false alarm.
    """
    svc = dims.get("service")
    if not svc:
        host = dims.get("host")
        return host is None or target.get("host") in (None, host)
    upstream = target.get("service") or ""
    if upstream in (svc, dims.get("upstream")):
        return True
    prefix = f"{dims.get('namespace')}-{svc}"
    rest = upstream[len(prefix):] if upstream.startswith(prefix) else None
    return rest is not None and (rest == "" or (rest[0] == "-" and rest[1:].isdigit()))  # only a port may follow


@dataclass
class IncidentResult:
    id: str
    type: str
    service: str
    start: float
    end: float
    found: bool = False
    delay_s: float | None = None   # from incident start to the first matching anomaly window
    series: list[str] = field(default_factory=list)


@dataclass
class Evaluation:
    incidents: list[IncidentResult]
    false_anomalies: int
    false_groups: int
    sim_hours: float

    @property
    def found(self) -> int:
        return sum(i.found for i in self.incidents)

    @property
    def false_per_hour(self) -> float:
        return self.false_anomalies / self.sim_hours if self.sim_hours > 0 else 0.0

    @property
    def false_groups_per_hour(self) -> float:
        return self.false_groups / self.sim_hours if self.sim_hours > 0 else 0.0

    def summary(self) -> str:
        return (f"incidents found {self.found}/{len(self.incidents)}; false alarms {self.false_per_hour:.2f} "
                f"anomalies/h, {self.false_groups_per_hour:.2f} alert groups/h over {self.sim_hours:.1f} simulated h")


def evaluate(truth: list[dict], records: list[dict], sim_start: float, sim_end: float,
             slack_s: float = 300.0) -> Evaluation:
    """Match anomaly records (``kind == "anomaly"``) to ground-truth incidents (generator JSON lines).

    Examples
    --------
    >>> truth = [{"id": "i1", "type": "error_spike", "start_epoch": 600, "end_epoch": 1200,
    ...           "target": {"service": "shop-web-80", "namespace": "shop"}}]
    >>> recs = [{"kind": "anomaly", "series": "error_ratio{namespace=shop,service=web}", "incident_id": "a",
    ...          "dims": {"namespace": "shop", "service": "web"}, "window_start": 660, "window_end": 720},
    ...         {"kind": "anomaly", "series": "requests{namespace=shop,service=cart}", "incident_id": "b",
    ...          "dims": {"namespace": "shop", "service": "cart"}, "window_start": 5000, "window_end": 5060}]
    >>> ev = evaluate(truth, recs, 0, 7200)
    >>> ev.found, ev.incidents[0].delay_s, ev.false_anomalies, ev.false_groups_per_hour
    (1, 60.0, 1, 0.5)
    """
    incs = [IncidentResult(t["id"], t["type"], (t.get("target") or {}).get("service") or "", _epoch(t["start_epoch"]),
                           _epoch(t["end_epoch"])) for t in truth]
    targets = {t["id"]: t.get("target") or {} for t in truth}
    false_anoms, false_groups = 0, set()
    for r in records:
        if r.get("kind") != "anomaly":
            continue
        ws, we = _epoch(r["window_start"]), _epoch(r["window_end"])
        matched = False
        for inc in incs:
            if we > inc.start and ws <= inc.end + slack_s and service_matches(r.get("dims") or {}, targets[inc.id]):
                matched = True
                delay = max(0.0, ws - inc.start)
                inc.delay_s = delay if inc.delay_s is None else min(inc.delay_s, delay)
                inc.found = True
                if r["series"] not in inc.series:
                    inc.series.append(r["series"])
        if not matched:
            false_anoms += 1
            false_groups.add(r.get("incident_id") or r.get("id"))
    return Evaluation(incs, false_anoms, len(false_groups), max(0.0, sim_end - sim_start) / 3600.0)
