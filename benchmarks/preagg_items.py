"""Per-line CPU of each part of the preagg worker, on the embedded broker.

``python -m benchmarks.preagg_items [--lines N] [--runs K] [--window S]`` produces ``N`` generated
default-format lines (seed 1, ``base_rate`` 2000, 4 partitions, as ``benchmarks.preagg``), then
runs the worker ``K + 1`` times over them (the first run is discarded: it warms the per-process
enrichment caches) with ``time.thread_time()`` around its parts, and prints one JSON line per run,
in microseconds of CPU per line:

* ``cpu_us`` (whole run, all threads), ``busy_us`` (first batch to last, what
  ``benchmarks.preagg`` reports), ``worker_us`` (the worker thread), ``other_threads``
  (librdkafka's fetch, broker and producer threads);
* on the worker thread: ``consume``; ``process`` (``feed`` plus the batch glue around it), inside
  ``feed`` the window closes (``close``: ``WinTab.finish``), the careful parser (``slow``,
  with ``slow_lines``) and templating of request texts new to the stream (``request``);
  ``publish`` (``points`` = ``ClosedWindow.points``, ``to_bytes``, ``produce``, ``service_key``,
  ``poll``); ``commit`` (``flush`` + the three commits); ``loop_rest`` = what is left of the
  worker thread (the run loop, clock reads, hand GC).

The wrappers cost a clock read each (a syscall), ~0.03 us a line together: compare runs of this
tool with each other (paired, old and new tree alternating), not with ``benchmarks.preagg``.
To measure another tree: ``cd OLD && PYTHONPATH=OLD python -m benchmarks.preagg_items``.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import uuid


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=2, help="counted runs (after one warm-up run)")
    ap.add_argument("--window", type=int, default=60)
    a = ap.parse_args(argv)

    import patrol.streams.preagg_job as J
    from benchmarks.preagg import _produce
    from patrol.preagg.aggregate import Aggregator, ClosedWindow
    from patrol.sim.broker import EmbeddedBroker
    from patrol.streams.config import load_settings
    from patrol.records import MetricPoint
    from patrol.streams.topics import ensure_topic

    tt = time.thread_time
    acc: dict[str, float] = {}

    def timed(fn, key):
        def w(*args, **kw):
            t = tt()
            try:
                return fn(*args, **kw)
            finally:
                acc[key] = acc.get(key, 0.0) + tt() - t
        return w

    for cls, names in ((J.PreaggJob, ("_consume", "_process", "_publish", "_commit")),
                       (Aggregator, ("feed", "_close", "_slow", "_request")),
                       (ClosedWindow, ("points",)), (MetricPoint, ("to_bytes",))):
        for name in names:
            setattr(cls, name, timed(getattr(cls, name), name.lstrip("_")))
    J.service_key = timed(J.service_key, "service_key")
    gc.collect = timed(gc.collect, "gc")

    class _Producer:  # the job's producer with its calls timed
        def __init__(self, p):
            self.p = p
            self.produce, self.poll, self.flush = (timed(p.produce, "produce"), timed(p.poll, "poll"),
                                                   timed(p.flush, "flush"))
            self.close = p.close  # run() frees the client at the end (not timed: after the busy period)

    clients = J.PreaggJob._clients

    def _clients(self):
        clients(self)
        self.producer = _Producer(self.producer)

    J.PreaggJob._clients = _clients
    runs = []
    with EmbeddedBroker() as b:
        topic = f"items-{uuid.uuid4().hex[:6]}"
        ensure_topic({"bootstrap.servers": b.bootstrap}, topic, 4)
        _produce(b.bootstrap, topic, a.lines, 2000.0)
        for i in range(a.runs + 1):
            acc.clear()
            s = load_settings(overrides={
                "kafka.bootstrap_servers": b.bootstrap, "kafka.session_timeout_ms": 6000, "topics.logs": topic,
                "topics.metrics": f"{topic}-m{i}", "topics.dlq": f"{topic}-d{i}", "preagg.window_s": a.window,
                "preagg.idle_close_s": 1000, "preagg.max_future_s": 10**9})
            job = J.PreaggJob(s, group=f"{topic}-g{i}", max_idle=3.0)
            r = job.run()
            if i == 0:
                continue
            per = lambda x: round(x / r.lines * 1e6, 3)  # noqa: E731
            busy = r.extra["last_msg_cpu"] - r.extra["first_msg_cpu"]
            out = {"window_s": a.window, "lines": r.lines, "consumer": r.extra["consumer"],
                   "cpu_us": per(r.cpu_s), "busy_us": per(busy), "worker_us": per(r.extra["worker_thread_s"]),
                   "other_threads": per(r.cpu_s - r.extra["worker_thread_s"])}
            out.update({k: per(v) for k, v in sorted(acc.items())})
            out["loop_rest"] = round(out["worker_us"] - sum(out.get(k, 0.0) for k in
                                                            ("consume", "process", "publish", "commit")), 3)
            out["slow_lines"] = job.agg.slow_lines
            print(json.dumps(out), flush=True)
            runs.append(out)
    return runs


if __name__ == "__main__":
    main()
