"""Traffic generator: realistic ingress-nginx access logs with injectable, labelled incidents.

Python API::

    from patrol.sim.generator import generate_lines, write_kafka
    for t, key, line in generate_lines(n=1000, seed=7, start="2026-01-05T00:00:00Z"):
        ...
    write_kafka("127.0.0.1:9092", "ingress-logs", generate_lines(n=100_000))

See docs/generator.md for the CLI (``patrol generate``), incident types and ground truth.
"""

from .engine import Generator, generate_chunks, generate_lines, resolve_start
from .incidents import TYPES as INCIDENT_TYPES
from .incidents import Incident, Schedule, parse_duration
from .sinks import FileSink, KafkaSink, write_file, write_kafka
from .traffic import Chunk, TrafficModel

__all__ = [
    "Chunk", "FileSink", "Generator", "INCIDENT_TYPES", "Incident", "KafkaSink", "Schedule", "TrafficModel",
    "generate_chunks", "generate_lines", "parse_duration", "resolve_start", "write_file", "write_kafka",
]
