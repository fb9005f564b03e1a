"""Injectable incidents: specs, schedules, ground truth, and how each one changes the traffic.

An incident has a type, a window in simulated time, a target (service, host, client) and a
magnitude. While generating a chunk, every overlapping incident may add lines (``extra``) and
modify the drawn columns (``modify``). The ground-truth record lists the metrics a detector
should see move, so evaluation can score detections without knowing the generator's internals.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, Iterator

import numpy as np

from patrol.preagg.series import service_dims

from .traffic import SIDX, Batch, TrafficModel

# type -> (default magnitude, meaning, metrics expected to move with direction). The metric names are
# the pre-aggregation stage's (docs/preagg.md, "Series set"), on the target's service series:
# tests/test_generator_incidents.py checks that the pipeline emits every one of them.
TYPES: dict[str, tuple[float, str, list[tuple[str, str]]]] = {
    "error_spike": (0.25, "fraction of the target's requests turned into 5xx",
                    [("error_ratio", "up"), ("status_5xx", "up")]),
    "latency_spike": (5.0, "multiplier on the target's upstream latency",
                      [("request_time_p50", "up"), ("request_time_p90", "up"), ("request_time_p99", "up")]),
    "traffic_drop": (0.15, "fraction of the target's requests that still arrive",
                     [("requests", "down")]),
    "level_shift": (1.6, "persistent multiplier on the target's request rate",
                    [("requests", "up")]),
    "slow_drift": (3.0, "latency multiplier reached at the end (linear ramp from 1)",
                   [("request_time_p50", "up"), ("request_time_p90", "up")]),
    # the scanning / brute-forcing client itself is named in the record's target.client
    "scan_404": (0.0, "scanner requests per simulated second (0 = 20% of base rate)",
                 [("status_4xx", "up"), ("distinct_404_paths", "up"), ("top_clients", "up")]),
    "brute_force_401": (0.0, "login attempts per simulated second (0 = 10% of base rate)",
                        [("auth_failures", "up"), ("status_4xx", "up"), ("top_clients", "up")]),
}
ALIASES = {"scan": "scan_404", "404_scan": "scan_404", "brute_force": "brute_force_401", "brute_401": "brute_force_401",
           "error": "error_spike", "latency": "latency_spike", "drop": "traffic_drop", "drift": "slow_drift"}

# The "default" mix, repeated every simulated day: (type, offset, duration). Early incidents
# let a one-minute demo show something; later ones land at other hours of the seasonal cycle.
DEFAULT_DAY: tuple[tuple[str, str, str], ...] = (
    ("error_spike", "20m", "10m"),
    ("latency_spike", "50m", "10m"),
    ("scan_404", "1h20m", "6m"),
    ("brute_force_401", "1h45m", "8m"),
    ("traffic_drop", "2h30m", "15m"),
    ("level_shift", "5h", "4h"),
    ("slow_drift", "10h", "5h"),
    ("error_spike", "16h", "12m"),
    ("latency_spike", "19h", "8m"),
    ("scan_404", "22h", "5m"),
)
DAY = 86400.0

_DUR = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_SPEC = re.compile(r"^(?P<type>[a-z0-9_]+)@(?P<start>[0-9.dhms]+):(?P<dur>[0-9.dhms]+)"
                   r"(?:@(?P<target>[A-Za-z0-9_./:-]+))?(?:\*(?P<mag>[0-9.]+))?$")


def parse_duration(text: str) -> float:
    """Seconds in ``'1d2h30m'``, ``'90s'``, ``'2h'`` or a plain number of seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DUR.findall(text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise ValueError(f"bad duration {text!r}: use e.g. 90s, 20m, 2h30m, 1d")
    return sum(float(a) * _UNITS[b] for a, b in parts)


def iso(t: float) -> str:
    """ISO 8601 UTC with a Z suffix."""
    return datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class Incident:
    """One scheduled incident (times are epoch seconds of simulated event time)."""

    id: str
    type: str
    start: float
    end: float
    service: int
    client: int | None
    magnitude: float

    def overlaps(self, t0: float, t1: float) -> bool:
        return self.start < t1 and self.end > t0

    def ground_truth(self, model: TrafficModel) -> dict:
        """The JSON-able ground-truth record (see docs/generator.md)."""
        svc = model.services[self.service]
        client = model.client_ip[self.client].decode() if self.client is not None else None
        dims = {"scope": "service", **service_dims(svc.upstream)}  # the target's service series, as preagg names them
        metrics = []
        for m, d in TYPES[self.type][2]:
            if self.type == "level_shift" and self.magnitude < 1:
                d = "down"
            metrics.append({"metric": m, "direction": d, "dims": dict(dims)})
        return {
            "id": self.id, "type": self.type,
            "start": iso(self.start), "end": iso(self.end),
            "start_epoch": self.start, "end_epoch": self.end, "duration_s": self.end - self.start,
            "target": {"service": svc.upstream, "namespace": svc.namespace, "host": svc.host, "client": client},
            "magnitude": self.magnitude, "magnitude_meaning": TYPES[self.type][1],
            "metrics": metrics,
        }

    # -- effects ----------------------------------------------------------------------------
    def extra(self, model: TrafficModel, secs: np.ndarray, rng: np.random.Generator) -> Batch | None:
        """Lines this incident adds in the simulated seconds ``secs`` (None if it adds none)."""
        secs = secs[(secs + 1 > self.start) & (secs < self.end)]
        if len(secs) == 0:
            return None
        if self.type == "level_shift" and self.magnitude > 1:
            lam = (self.magnitude - 1) * model.rate(secs + 0.5) * model.svc_share[self.service]
            t = model.arrivals(secs, lam, rng)
            b = model.batch(t, model.service_routes(self.service, len(t), rng), rng)
        elif self.type in ("scan_404", "brute_force_401"):
            t = model.arrivals(secs, np.full(len(secs), self.magnitude), rng)
            b = self._attack_batch(model, t, rng)
        else:
            return None
        return b.select((b.t >= self.start) & (b.t < self.end))

    def _attack_batch(self, model: TrafficModel, t: np.ndarray, rng: np.random.Generator) -> Batch:
        n = len(t)
        client = np.full(n, self.client, np.int64)
        if self.type == "scan_404":
            # Latency and size parameters come from the service's first route; paths from the
            # scanner pool, walked in order as scanners do (with wrap-around).
            route = np.full(n, model.svc_routes[self.service][0], np.int64)
            path = model.scan_off + (np.arange(n) + int(rng.integers(model.scan_n))) % model.scan_n
            codes = rng.choice([404, 403, 301, 400], size=n, p=[0.92, 0.04, 0.02, 0.02])
            lat = 0.3
        else:
            route = np.full(n, model.login_route[self.service], np.int64)
            path = model.draw_paths(route, rng)
            codes = rng.choice([401, 429, 200], size=n, p=[0.985, 0.01, 0.005])
            lat = 1.0
        b = model.batch(t, route, rng, client=client, path=path)
        b.status[:] = [SIDX[c] for c in codes.tolist()]
        b.forced[:] = True
        b.lat_mult[:] = lat
        return b

    def modify(self, model: TrafficModel, b: Batch, rng: np.random.Generator) -> None:
        """Change drawn columns of the target's lines inside the window (in place)."""
        m = (b.t >= self.start) & (b.t < self.end) & (model.route_svc[b.route] == self.service)
        if not m.any():
            return
        if self.type == "error_spike":
            hit = m & ~b.forced & (rng.random(len(b)) < self.magnitude)
            k = int(hit.sum())
            codes = rng.choice([500, 502, 503, 504], size=k, p=[0.35, 0.35, 0.25, 0.05])
            b.status[hit] = np.array([SIDX[c] for c in codes.tolist()], np.int64)
        elif self.type == "latency_spike":
            b.lat_mult[m] *= self.magnitude
        elif self.type == "slow_drift":
            frac = (b.t[m] - self.start) / (self.end - self.start)
            b.lat_mult[m] *= 1.0 + (self.magnitude - 1.0) * frac
        elif self.type == "traffic_drop" or (self.type == "level_shift" and self.magnitude < 1):
            b.keep[m & ~b.forced & (rng.random(len(b)) >= self.magnitude)] = False


def _check_magnitude(kind: str, mag: float) -> None:
    """Reject magnitudes that would not produce the named incident (e.g. a 'drop' that adds traffic)."""
    ok = {"error_spike": 0 < mag <= 1, "traffic_drop": 0 <= mag < 1, "latency_spike": mag > 1,
          "slow_drift": mag > 1, "level_shift": mag > 0 and mag != 1}.get(kind, mag > 0)
    if not ok:
        raise ValueError(f"magnitude {mag:g} makes no {kind}: {TYPES[kind][1]}")


def _canonical(kind: str) -> str:
    kind = ALIASES.get(kind, kind)
    if kind not in TYPES:
        raise ValueError(f"unknown incident type {kind!r}; known: {', '.join(TYPES)}")
    return kind


class Schedule:
    """Incidents in start order; the ``default`` mix expands lazily, one simulated day at a time.

    Parameters
    ----------
    model : TrafficModel
        Supplies services and attacker clients for targets.
    start : float
        Epoch seconds of the run start; spec offsets are relative to it.
    spec : str
        ``"default"``, ``"none"``, or ``"type@START:DUR[@service][*magnitude],..."``.
    seed : int
        Seeds target choices (deterministic per seed).
    """

    def __init__(self, model: TrafficModel, start: float, spec: str = "default", seed: int = 0):
        self.model, self.start, self.seed = model, float(start), seed
        self._incidents: list[Incident] = []
        self._days = 0
        self._scan_i = self._brute_i = 0
        spec = (spec or "none").strip()
        self.repeating = spec == "default"
        if spec not in ("none", "default"):
            rng = np.random.default_rng([seed, 2])
            for k, part in enumerate(p for p in spec.split(",") if p.strip()):
                m = _SPEC.match(part.strip())
                if not m:
                    raise ValueError(f"bad incident spec {part!r}: use TYPE@START:DURATION[@SERVICE][*MAGNITUDE], "
                                     "e.g. error_spike@2h:20m")
                kind = _canonical(m["type"])
                svc = model.service_index(m["target"]) if m["target"] else None
                mag = float(m["mag"]) if m["mag"] else None
                self._add(rng, k, kind, parse_duration(m["start"]), parse_duration(m["dur"]), svc, mag)
            self._incidents.sort(key=lambda i: (i.start, i.id))

    def _add(self, rng, k: int, kind: str, offset: float, dur: float, svc: int | None, mag: float | None) -> None:
        if dur <= 0:
            raise ValueError(f"incident {kind} needs a positive duration")
        model = self.model
        svc = self._target(kind, rng) if svc is None else svc
        client = None
        if kind == "scan_404":
            client = model.scan_clients[self._scan_i % len(model.scan_clients)]
            self._scan_i += 1
        elif kind == "brute_force_401":
            if svc not in model.login_route:
                raise ValueError(f"brute_force_401 needs a service with a login endpoint, "
                                 f"e.g. {model.services[next(iter(model.login_route))].upstream}")
            client = model.brute_clients[self._brute_i % len(model.brute_clients)]
            self._brute_i += 1
        if mag is not None:
            _check_magnitude(kind, mag)
        else:
            mag = TYPES[kind][0]
            if kind == "scan_404":
                mag = max(1.0, 0.2 * model.base_rate)
            elif kind == "brute_force_401":
                mag = max(0.5, 0.1 * model.base_rate)
        t0 = self.start + offset
        self._incidents.append(Incident(f"inc-{k:04d}-{kind}", kind, t0, t0 + dur, svc, client, mag))

    def _target(self, kind: str, rng: np.random.Generator) -> int:
        """Pick a target: rate/latency incidents hit busy services so the effect is measurable."""
        model = self.model
        if kind == "brute_force_401":
            cands = sorted(model.login_route)
        elif kind == "scan_404":
            cands = [i for i, s in enumerate(model.services) if s.web]
        else:
            cands = [i for i in range(len(model.services)) if model.svc_share[i] >= 0.04]
        w = model.svc_share[cands] / model.svc_share[cands].sum()
        return int(cands[int(rng.choice(len(cands), p=w))])

    def _expand_until(self, t: float) -> None:
        added = False
        while self.repeating and self.start + self._days * DAY <= t:
            # Each day has its own seeded stream: day N's targets do not depend on how far
            # earlier runs got, so any bound gives the same schedule.
            d = self._days
            rng = np.random.default_rng([self.seed, 3, d])
            for j, (kind, off, dur) in enumerate(DEFAULT_DAY):
                self._add(rng, d * len(DEFAULT_DAY) + j, kind, d * DAY + parse_duration(off),
                          parse_duration(dur), None, None)
            self._days += 1
            added = True
        if added:
            self._incidents.sort(key=lambda i: (i.start, i.id))

    def active(self, t0: float, t1: float) -> list[Incident]:
        """Incidents overlapping ``[t0, t1)``, in start order."""
        self._expand_until(t1)
        return [i for i in self._incidents if i.overlaps(t0, t1)]

    def started_before(self, t: float) -> Iterator[Incident]:
        """Incidents with ``start < t`` in start order."""
        self._expand_until(t)
        return (i for i in self._incidents if i.start < t)

    def all_until(self, t: float) -> list[Incident]:
        return list(self.started_before(t))


class GroundTruthWriter:
    """Appends one JSON line per incident once generation has reached its start.

    Writing at start time (not up front) means the file lists exactly the incidents present in
    the output, and a live consumer can read it while the demo runs.
    """

    def __init__(self, schedule: Schedule, fh: IO[str] | None):
        self.schedule, self.fh = schedule, fh
        self.written: set[str] = set()
        self.records: list[dict] = []

    def advance(self, t: float) -> None:
        for inc in self.schedule.started_before(t):
            if inc.id not in self.written:
                self.written.add(inc.id)
                rec = inc.ground_truth(self.schedule.model)
                self.records.append(rec)
                if self.fh is not None:
                    self.fh.write(json.dumps(rec) + "\n")
                    self.fh.flush()
