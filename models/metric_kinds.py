"""What kind of number a metric is, and which direction of change hurts.

The pre-aggregation stage names its metrics; detection needs to know whether a value is a count
(Poisson-like, zeros), a ratio over a denominator, a latency (heavy tail) or a plain gauge, and
whether going up or down is the bad direction (error ratio up is bad, requests down is bad).
Rules match on the metric name so new metrics get a sane default without code changes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricKind:
    kind: str       # count | ratio | latency | gauge
    direction: str  # up | down | both: which departures are anomalies


# First match wins; order from specific to general.
RULES: tuple[tuple[tuple[str, ...], MetricKind], ...] = (
    (("ratio", "rate"), MetricKind("ratio", "up")),
    (("latency", "_time", "_p50", "_p90", "_p99", "duration"), MetricKind("latency", "up")),
    (("5xx", "4xx", "401", "403", "404", "error", "fail", "retries", "retry", "scan", "brute", "junk"), MetricKind("count", "up")),
    # security signals: more distinct countries or one client's share surging matter, fewer do not
    (("country", "top_clients"), MetricKind("count", "up")),
    (("device_class",), MetricKind("gauge", "up")),  # bot share of requests
    (("requests", "unique_clients", "clients"), MetricKind("count", "both")),
    (("bytes",), MetricKind("count", "both")),
    (("2xx", "3xx"), MetricKind("count", "both")),
)
DEFAULT = MetricKind("gauge", "both")


def kind_of(metric: str) -> MetricKind:
    """Kind and bad direction for ``metric``.

    Examples
    --------
    >>> kind_of("error_ratio")
    MetricKind(kind='ratio', direction='up')
    >>> kind_of("requests").direction
    'both'
    >>> kind_of("request_time_p99").kind
    'latency'
    >>> kind_of("auth_failures")
    MetricKind(kind='count', direction='up')
    >>> kind_of("junk_requests").direction   # junk surging is the signal, junk stopping is not
    'up'
    """
    m = metric.lower()
    for needles, kind in RULES:
        if any(n in m for n in needles):
            return kind
    return DEFAULT
