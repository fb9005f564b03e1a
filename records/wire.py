"""Versioned wire records: pydantic models, JSON on the wire.

Every record carries ``kind`` and ``v`` (schema version). ``decode`` turns bytes into the right
model or raises :class:`RecordError` with a reason a person can act on; it never lets a
``ValidationError`` or ``JSONDecodeError`` escape, so a stream job can route the bytes to the
dead-letter topic instead of crashing.

Compatibility rule: a reader accepts ``v`` up to its own ``SCHEMA_VERSION`` and ignores unknown
fields (producers may add optional fields within a version); a newer ``v`` is an error because
the meaning of known fields may have changed.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from .keys import record_id, series_key

SCHEMA_VERSION = 1


class RecordError(ValueError):
    """Bytes that are not a valid record of a known kind and version."""

    def __init__(self, reason: str, code: str = "bad_record"):
        super().__init__(reason)
        self.reason = reason
        self.code = code


class Record(BaseModel):
    """Base of all wire records."""

    model_config = ConfigDict(extra="ignore", frozen=False)
    KIND: ClassVar[str] = ""
    v: int = Field(SCHEMA_VERSION, description="Schema version of this record.")

    @field_validator("v")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v < 1:
            raise ValueError(f"schema version must be >= 1, got {v}")
        if v > SCHEMA_VERSION:
            raise ValueError(f"schema version {v} is newer than this reader's {SCHEMA_VERSION}; upgrade ingress-patrol")
        return v

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


def _utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


class AccessLog(Record):
    """One parsed access-log line (ingress-nginx, nginx combined, Envoy, Traefik, custom)."""

    KIND: ClassVar[str] = "access_log"
    kind: Literal["access_log"] = "access_log"
    time: datetime = Field(description="Request time (event time), UTC.")
    remote_addr: str | None = None
    remote_user: str | None = None
    method: str | None = None
    path: str | None = Field(None, description="Request path without query string.")
    protocol: str | None = None
    status: int | None = None
    body_bytes_sent: int | None = None
    request_length: int | None = None
    request_time: float | None = Field(None, description="Seconds.")
    referer: str | None = None
    user_agent: str | None = None
    host: str | None = None
    namespace: str | None = None
    service: str | None = None
    service_port: str | None = None
    upstream_addr: list[str] = Field(default_factory=list)
    upstream_status: list[int | None] = Field(default_factory=list)
    upstream_response_time: list[float | None] = Field(default_factory=list)
    upstream_response_length: list[int | None] = Field(default_factory=list)
    req_id: str | None = None
    labels: dict[str, str] = Field(default_factory=dict, description="Shipper metadata kept as dimensions.")


class Sketch(BaseModel):
    """A mergeable sketch serialized into a metric point (base64 of the library's own format)."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["ddsketch", "hll", "topk", "counts"] = Field(description="Sketch family.")
    data: str = Field(description="base64 of the sketch's serialized bytes (or JSON for counts/topk).")
    params: dict[str, float | int | str] = Field(default_factory=dict, description="e.g. relative_accuracy, lg_k.")

    @classmethod
    def from_bytes(cls, type: str, raw: bytes, **params: Any) -> "Sketch":
        return cls(type=type, data=base64.b64encode(raw).decode(), params=params)

    def raw(self) -> bytes:
        return base64.b64decode(self.data)


class MetricPoint(Record):
    """One value of one series for one event-time window."""

    KIND: ClassVar[str] = "metric_point"
    kind: Literal["metric_point"] = "metric_point"
    id: str = Field(description="Deterministic id: hash of (series, window_start, window_end).")
    series: str = Field(description="Series key: metric name + dimensions, see series_key().")
    metric: str = Field(description="Metric name, e.g. requests, error_ratio, request_time_p99.")
    dims: dict[str, str] = Field(default_factory=dict, description="Dimensions (service, host, template, status_class...).")
    window_start: datetime
    window_end: datetime
    value: float
    count: int | None = Field(None, description="Events behind the value (e.g. requests behind a ratio).")
    stats: dict[str, float] = Field(default_factory=dict, description="Related values (e.g. numerator, denominator).")
    sketch: Sketch | None = Field(None, description="Mergeable sketch for roll-ups where the metric needs one.")

    @classmethod
    def make(cls, metric: str, dims: dict[str, str], window_start: datetime, window_end: datetime, value: float, **kw: Any) -> "MetricPoint":
        key = series_key(metric, dims)
        ws, we = _utc(window_start), _utc(window_end)
        return cls(id=record_id(key, ws.isoformat(), we.isoformat()), series=key, metric=metric, dims=dims,
                   window_start=ws, window_end=we, value=value, **kw)


class Direction(str, Enum):
    up = "up"
    down = "down"


class Severity(str, Enum):
    info = "info"
    warning = "warning"
    critical = "critical"


class Anomaly(Record):
    """An anomalous metric point, published to the anomaly results topic."""

    KIND: ClassVar[str] = "anomaly"
    kind: Literal["anomaly"] = "anomaly"
    id: str = Field(description="Deterministic id: hash of (series, window, model_version).")
    series: str
    metric: str
    dims: dict[str, str] = Field(default_factory=dict)
    window_start: datetime
    window_end: datetime
    observed: float = Field(description="Value seen in the window.")
    expected: float = Field(description="Value the model expected.")
    lower: float = Field(description="Lower edge of the normal band.")
    upper: float = Field(description="Upper edge of the normal band.")
    score: float = Field(ge=0.0, le=1.0, description=(
        "Surprise on a log scale, not a probability: min(1, -log10(p) / 10), where p is the calibrated "
        "probability of a value at least this unusual under the series' model. 0.3 = p of 1e-3, 0.5 = 1e-5, "
        "1 = 1e-10 or less."))
    severity: Severity
    direction: Direction
    detectors: list[str] = Field(default_factory=list, description="Detectors that fired.")
    model_version: int = 1
    incident_id: str | None = Field(None, description="Incident this anomaly belongs to.")
    incident_event: Literal["opened", "updated", "resolved"] | None = None
    context: dict[str, float | None] = Field(default_factory=dict, description="e.g. same window yesterday / last week.")
    features: dict[str, Any] = Field(default_factory=dict, description=(
        "What the feedback model sees (deviation in band multiples, time of day, detectors...); "
        "copied into labels so retraining needs no lookup."))


class Incident(Record):
    """One problem: consecutive anomalous windows of a service's series. Published to the anomaly
    topic beside the anomalies (filter on ``kind``) when it opens, changes severity or series, and resolves."""

    KIND: ClassVar[str] = "incident"
    kind: Literal["incident"] = "incident"
    id: str = Field(description="Deterministic: hash of (service, first anomalous window).")
    event: Literal["opened", "updated", "resolved"]
    service: str = Field(description="namespace/service, or 'global'.")
    opened: datetime = Field(description="Start of the first anomalous window.")
    last: datetime = Field(description="Start of the latest anomalous window.")
    severity: Severity = Field(description="Highest severity so far.")
    series: list[str] = Field(default_factory=list, description="Series that were anomalous in this incident.")
    anomalies: int = Field(0, description="Anomalous points so far.")


class LabelVerdict(str, Enum):
    true = "true"
    false = "false"
    ignore = "ignore"


class Label(Record):
    """An operator's verdict on an anomaly."""

    KIND: ClassVar[str] = "label"
    kind: Literal["label"] = "label"
    id: str = Field(description="Deterministic id: hash of (anomaly_id, at).")
    anomaly_id: str
    verdict: LabelVerdict
    series: str | None = Field(None, description="Series of the anomaly (routes the label to the series' owner).")
    metric: str | None = None
    features: dict[str, Any] = Field(default_factory=dict, description="The anomaly's features, for retraining.")
    note: str | None = None
    author: str | None = None
    at: datetime


class DeadLetter(Record):
    """Input that could not be processed, with the reason and where it came from."""

    KIND: ClassVar[str] = "dead_letter"
    kind: Literal["dead_letter"] = "dead_letter"
    reason: str = Field(description="Why it was rejected, for a person.")
    code: str = Field(description="Machine-readable reason: parse_error, late, future, bad_record...")
    raw: str = Field(description="base64 of the original bytes.")
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    at: datetime

    @classmethod
    def of(cls, raw: bytes, reason: str, code: str, topic: str | None = None, partition: int | None = None,
           offset: int | None = None) -> "DeadLetter":
        return cls(reason=reason, code=code, raw=base64.b64encode(raw).decode(), source_topic=topic,
                   source_partition=partition, source_offset=offset, at=datetime.now(timezone.utc))

    def raw_bytes(self) -> bytes:
        return base64.b64decode(self.raw)


RECORD_TYPES: dict[str, type[Record]] = {
    cls.KIND: cls for cls in (AccessLog, MetricPoint, Anomaly, Incident, Label, DeadLetter)
}

AnyRecord = Annotated[Union[AccessLog, MetricPoint, Anomaly, Incident, Label, DeadLetter], Field(discriminator="kind")]
_ANY = TypeAdapter(AnyRecord)


def _first_error(exc: ValidationError) -> str:
    errs = exc.errors()
    parts = []
    for e in errs[:3]:
        loc = ".".join(str(p) for p in e.get("loc", ())) or "record"
        parts.append(f"{loc}: {e.get('msg')}")
    more = f" (+{len(errs) - 3} more)" if len(errs) > 3 else ""
    return "; ".join(parts) + more


def decode(raw: bytes | str, expect: type[Record] | None = None) -> Record:
    """Decode bytes into a record, or raise :class:`RecordError` with a clear reason.

    ``expect`` restricts the accepted kind (a label on the metrics topic is an error).
    """
    if expect is not None:
        # Fast path for the hot topics: pydantic-core parses and validates in one pass (~5x
        # json.loads + model_validate). Anything it rejects takes the slow path for a precise reason.
        # The validator is called directly: model_validate_json's wrapper cost ~1 us a record, a
        # fifth of the decode at the detect stage's rates. ``kind`` is a Literal with the kind's
        # value as default, so a validated record is always of the expected kind.
        try:
            return expect.__pydantic_validator__.validate_json(raw)
        except (ValidationError, ValueError):
            pass
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordError(f"not JSON: {exc}", "bad_json") from None
    if not isinstance(obj, dict):
        raise RecordError(f"expected a JSON object, got {type(obj).__name__}", "bad_shape")
    kind = obj.get("kind")
    if expect is not None:
        if kind is None:
            obj["kind"] = kind = expect.KIND
        if kind != expect.KIND:
            raise RecordError(f"expected a {expect.KIND} record, got kind={kind!r}", "wrong_kind")
    elif kind not in RECORD_TYPES:
        raise RecordError(f"unknown record kind {kind!r}; known: {', '.join(RECORD_TYPES)}", "unknown_kind")
    v = obj.get("v", SCHEMA_VERSION)
    if isinstance(v, int) and v > SCHEMA_VERSION:
        raise RecordError(f"{kind} schema version {v} is newer than this reader's {SCHEMA_VERSION}; upgrade ingress-patrol",
                          "future_version")
    try:
        return (expect or RECORD_TYPES[kind]).model_validate(obj)
    except ValidationError as exc:
        raise RecordError(f"invalid {kind} record: {_first_error(exc)}", "bad_shape") from None


def json_schemas() -> dict[str, dict]:
    """JSON Schema of every record kind (what `patrol schema` prints)."""
    return {kind: cls.model_json_schema() for kind, cls in RECORD_TYPES.items()}
