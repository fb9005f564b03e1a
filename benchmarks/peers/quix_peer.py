"""Quix Streams peer: ``python quix_peer.py BOOTSTRAP TOPIC N WINDOW_S OUT.json``.

Written plainly, as the library's docs suggest: a StreamingDataFrame over the raw topic, parse
with ``str.split``, tumbling window keyed by the message key (the upstream), ``reduce`` to counts
and sums, ``final()``. Event time = the Kafka message timestamp (the benchmark sets it to the
line's time). Changelog topics are off (in-memory state is generous to the peer, and Tansu is
in-memory anyway).
"""

import json
import sys
import tempfile
import time


def parse(v: bytes) -> dict:
    p = v.split(b'"')
    status, size = p[2].split()
    tail = p[6].split()
    return {"s": int(status), "b": int(size), "rt": float(tail[1])}


def main(bootstrap: str, topic: str, n: int, window_s: int, out: str) -> None:
    from quixstreams import Application

    state = {"seen": 0, "cpu0": None, "wall0": None}
    done = {}

    def on_processed(topic_name, partition, offset):
        state["seen"] += 1
        if state["cpu0"] is None:
            state["cpu0"], state["wall0"] = time.process_time(), time.monotonic()
        if state["seen"] >= n and not done:
            done.update(cpu=time.process_time() - state["cpu0"], wall=time.monotonic() - state["wall0"])
            app.stop()

    app = Application(broker_address=bootstrap, consumer_group=f"quix-{time.time_ns()}", auto_offset_reset="earliest",
                      state_dir=tempfile.mkdtemp(prefix="quix-"), loglevel="WARNING", use_changelog_topics=False,
                      on_message_processed=on_processed)
    t = app.topic(topic, value_deserializer="bytes", key_deserializer="bytes")
    sdf = app.dataframe(t)
    sdf = sdf.apply(parse)
    sdf = sdf.tumbling_window(duration_ms=window_s * 1000, grace_ms=30_000).reduce(
        lambda acc, r: {"n": acc["n"] + 1, "e5": acc["e5"] + (r["s"] >= 500), "b": acc["b"] + r["b"],
                        "rt": acc["rt"] + r["rt"]},
        lambda r: {"n": 1, "e5": int(r["s"] >= 500), "b": r["b"], "rt": r["rt"]},
    ).final()
    app.run()
    with open(out, "w") as fh:
        json.dump({"peer": "quix", "lines": state["seen"], **done}, fh)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])  # argv[6]: partitions (unused)
