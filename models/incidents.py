"""Group anomalies into incidents so a consumer gets one alert per problem, not one per point.

An incident belongs to a *service* (namespace/service, or ``global``): anomalous windows of any of
its series within ``gap_windows`` of each other join the same incident. It is ``opened`` by its
first anomaly, ``updated`` by later ones (at most once per window, and only when severity rises or
new series join, so alerting is not flooded), and ``resolved`` once event time has moved
``resolve_after`` windows past its last anomaly. Ids are deterministic (service + first window), so a
replay after a crash reproduces them.

Pure: no I/O. The detect job owns one tracker per worker; its state is checkpointed with the models.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from patrol.records import record_id, service_of

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


@dataclass
class Incident:
    id: str
    service: str
    opened: float
    last: float
    severity: str
    series: list[str] = field(default_factory=list)
    anomalies: int = 0


@dataclass
class IncidentEvent:
    event: str  # opened | updated | resolved
    incident: Incident


class IncidentTracker:
    """Per-service incident state machine driven by event time (window starts, epoch seconds)."""

    def __init__(self, window_s: float = 60.0, gap_windows: int = 3, resolve_after: int = 5):
        self.window_s = window_s
        self.gap = gap_windows * window_s
        self.resolve_after = resolve_after * window_s
        self.open: dict[str, Incident] = {}

    def on_anomaly(self, service: str, series: str, window_start: float, severity: str) -> IncidentEvent | None:
        """Attach an anomaly; returns the event to publish (None when nothing news-worthy changed)."""
        inc = self.open.get(service)
        if inc is not None and window_start - inc.last > self.gap:
            inc = None  # too far apart: a new problem (the old one resolves on the next tick)
        if inc is None:
            inc = Incident(id="inc-" + record_id(service, window_start)[:16], service=service, opened=window_start,
                           last=window_start, severity=severity, series=[series], anomalies=1)
            self.open[service] = inc
            return IncidentEvent("opened", inc)
        inc.anomalies += 1
        news = False
        if series not in inc.series:
            inc.series.append(series)
            news = True
        if SEVERITY_RANK[severity] > SEVERITY_RANK[inc.severity]:
            inc.severity = severity
            news = True
        inc.last = max(inc.last, window_start)
        return IncidentEvent("updated", inc) if news else None

    def current(self, service: str) -> Incident | None:
        return self.open.get(service)

    def tick(self, service: str, window_start: float) -> IncidentEvent | None:
        """Event time of ``service`` reached ``window_start``: resolve its incident if quiet long enough."""
        inc = self.open.get(service)
        if inc is not None and window_start - inc.last >= self.resolve_after:
            del self.open[service]
            return IncidentEvent("resolved", inc)
        return None

    def to_state(self) -> dict:
        return {"open": {k: asdict(v) for k, v in self.open.items()}}

    def load_state(self, state: dict) -> None:
        self.open = {k: Incident(**v) for k, v in state.get("open", {}).items()}
