"""Peer implementations of the same windowed aggregation (Quix Streams, Faust) for benchmarks.preagg.

Each runs as its own process (Quix Streams in ``.venv-peers`` because it pins an older
confluent-kafka), consumes a given topic from the start, aggregates per service and 60 s/10 s
event-time tumbling window (requests, 5xx, bytes, mean latency), and writes a JSON line with the
lines processed and the process CPU seconds between the first and the last message.
"""
