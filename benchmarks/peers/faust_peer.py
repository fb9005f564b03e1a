"""Faust peer: ``python faust_peer.py BOOTSTRAP TOPIC N WINDOW_S OUT.json PARTITIONS``.

Written plainly: an agent over the raw topic, parse with ``bytes.split``, a tumbling windowed
table per service relative to the stream's (message) timestamp, updated per line (requests,
5xx, bytes, latency sum). In-memory store.
"""

import json
import os
import sys
import tempfile
import time


def main(bootstrap: str, topic: str, n: int, window_s: int, out: str, partitions: int) -> None:
    import faust

    app = faust.App(f"faust-{time.time_ns()}", broker=f"kafka://{bootstrap}", store="memory://", web_enabled=False,
                    consumer_auto_offset_reset="earliest", topic_replication_factor=1,
                    topic_partitions=partitions,  # the table's changelog must match the source
                    datadir=tempfile.mkdtemp(prefix="faust-"))
    src = app.topic(topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    table = app.Table("svc", default=lambda: [0, 0, 0, 0.0]).tumbling(window_s, expires=3600).relative_to_stream()
    state = {"seen": 0, "cpu0": None, "wall0": None}

    @app.agent(src)
    async def aggregate(stream):
        async for key, value in stream.items():
            p = value.split(b'"')
            status, size = p[2].split()
            rt = float(p[6].split()[1])
            acc = table[key].value()
            table[key] = [acc[0] + 1, acc[1] + (int(status) >= 500), acc[2] + int(size), acc[3] + rt]
            state["seen"] += 1
            if state["cpu0"] is None:
                state["cpu0"], state["wall0"] = time.process_time(), time.monotonic()
            if state["seen"] >= n:
                res = {"peer": "faust", "lines": state["seen"], "cpu": time.process_time() - state["cpu0"],
                       "wall": time.monotonic() - state["wall0"]}
                with open(out, "w") as fh:
                    json.dump(res, fh)
                os._exit(0)

    sys.argv = [sys.argv[0], "worker", "-l", "warn", "--without-web"]
    app.main()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6]))
