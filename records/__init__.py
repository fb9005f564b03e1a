"""The bottom layer: wire records and the names every layer shares. Imports nothing of the project.

``records.wire``: versioned pydantic records (access log, metric point, anomaly, incident, label, dead
letter) and ``decode``; ``records.keys``: series keys, record ids, the service of a series.
"""

from .keys import record_id, series_key, service_of
from .wire import (SCHEMA_VERSION, AccessLog, Anomaly, DeadLetter, Direction, Incident, Label, LabelVerdict,
                   MetricPoint, Record, RecordError, Severity, Sketch, decode, json_schemas)

__all__ = ["SCHEMA_VERSION", "AccessLog", "Anomaly", "DeadLetter", "Direction", "Incident", "Label", "LabelVerdict",
           "MetricPoint", "Record", "RecordError", "Severity", "Sketch", "decode", "json_schemas", "record_id",
           "series_key", "service_of"]
