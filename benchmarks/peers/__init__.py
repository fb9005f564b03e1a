"""Peers for benchmarks.preagg (Quix Streams, Faust), doing less than the stage on purpose.

Each runs as its own process (Quix Streams in ``.venv-peers`` because it pins an older
confluent-kafka), consumes a given topic from the start, splits each raw line, and keeps per key
(the message key, the upstream) and 60 s event-time tumbling window four sums in memory: requests,
5xx, bytes, request time. No URL templates, sketches, enrichment, route or global series, and no
output to Kafka. It writes a JSON line with the lines processed and the process CPU seconds between
the first and the last message.
"""
