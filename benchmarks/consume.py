"""Consume-path benchmark: ``python -m benchmarks.consume --json FILE [--messages N]``.

On the embedded (Tansu) broker, ``N`` access-log lines (generated lines, cycled) are read back by
the preagg worker's two consume paths, in the same run and alternating (the machine is shared):

* ``confluent-kafka``: ``Consumer.consume(10000)`` plus the grouping by partition the worker does
  (``preagg._fastloop.by_partition``: one Python ``Message`` per line, taken apart again);
* ``rdkafka-batch``: ``streams._rdbatch.BatchConsumer.consume(10000)``, already grouped.

Both subscribe with the worker's consumer settings and drop each batch after counting it (freeing
is part of the cost). The figure is process CPU seconds per message (all threads, librdkafka's
fetch thread included) from ``subscribe`` to the last message; the group join is mostly idle.
``--variants`` also runs the batch path under other fetch/queue settings, to see what cuts the
fetch thread's CPU. ``--stage-pairs K`` instead runs the whole 60 s preagg stage (as
``benchmarks.preagg`` does, on generated lines) K times on each consumer, alternating, and reports
the per-pair ratio of lines per CPU second: the consume path's effect on the stage, paired.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import uuid
from pathlib import Path

from benchmarks import GEN_START

# the worker's settings (streams/preagg_job.py) as the baseline
WORKER_CONF = {"enable.auto.commit": False, "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
               "enable.partition.eof": False, "fetch.max.bytes": 100 * 2**20,
               "max.partition.fetch.bytes": 25 * 2**20, "queued.min.messages": 1_000_000,
               "fetch.wait.max.ms": 50}

VARIANTS = {
    "deeper_queue": {"queued.max.messages.kbytes": 1_048_576},
    "fetch_min_1mb": {"fetch.min.bytes": 2**20, "fetch.wait.max.ms": 100},
    "small_fetches": {"fetch.max.bytes": 2**20 * 4, "max.partition.fetch.bytes": 2**20},
    "check_crcs": {"check.crcs": True},
    "queued_min_100k": {"queued.min.messages": 100_000},
    # the worker commits explicit offsets: librdkafka's per-message offset store is unused work
    "no_offset_store": {"enable.auto.offset.store": False},
}


def produce(bootstrap: str, topic: str, n: int, seed: int = 3) -> int:
    """``n`` generated default-format lines into ``topic`` (10k distinct lines, cycled; keyed)."""
    from confluent_kafka import Producer

    from patrol.sim.generator import generate_lines
    from patrol.streams.topics import produce_waiting

    sample = [(k, line) for _, k, line in generate_lines(n=10_000, seed=seed, base_rate=2000.0, start=GEN_START)]
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.num.messages": 10000,
                  "queue.buffering.max.messages": 2_000_000})
    size = 0
    for i in range(n):
        k, line = sample[i % len(sample)]
        produce_waiting(p, topic, line, key=k)
        size += len(line)
    assert p.flush(120) == 0, "producer did not deliver every line"
    return size


def consume_cpu(bootstrap: str, topic: str, n: int, kind: str, extra: dict | None = None,
                timeout: float = 300.0) -> dict:
    """Read ``n`` messages of ``topic`` in a fresh group with the ``kind`` consume path.

    Returns
    -------
    dict
        ``cpu_us_per_msg`` (process CPU from subscribe to the last message), ``wall_s``,
        ``messages`` and ``batches``.
    """
    from confluent_kafka import Consumer

    conf = {**WORKER_CONF, **(extra or {}), "bootstrap.servers": bootstrap,
            "group.id": f"bench-consume-{uuid.uuid4().hex[:8]}"}
    if kind == "rdkafka-batch":
        from patrol.streams._rdbatch import BatchConsumer

        c = BatchConsumer(conf)
        poll = lambda: c.consume(10000, 0.5)  # noqa: E731
    else:
        from patrol.preagg._fastloop import by_partition

        c = Consumer(conf)
        poll = lambda: by_partition(c.consume(10000, 0.5))  # noqa: E731
    seen = batches = 0
    gc_on = gc.isenabled()
    gc.disable()  # as the worker does (it collects by hand): automatic collections per batch are noise
    cpu0, wall0, main0 = time.process_time(), time.monotonic(), time.thread_time()
    c.subscribe([topic])
    try:
        while seen < n and time.monotonic() - wall0 < timeout:
            groups = poll()
            if groups:
                batches += 1
                seen += sum(len(v) for _, v, _ in groups)
            del groups
        cpu, wall, main = time.process_time() - cpu0, time.monotonic() - wall0, time.thread_time() - main0
    finally:
        if gc_on:
            gc.enable()
        c.close()
    assert seen >= n, f"{kind}: only {seen} of {n} messages within {timeout}s"
    return {"consumer": kind, "messages": seen, "batches": batches, "cpu_s": round(cpu, 3),
            "cpu_us_per_msg": round(cpu / seen * 1e6, 3),
            # the calling thread alone; the rest is librdkafka's threads (fetch, broker I/O)
            "main_thread_us_per_msg": round(main / seen * 1e6, 3), "wall_s": round(wall, 2), "settings": extra or {}}


def compare(bootstrap: str, topic: str, n: int, rounds: int = 2) -> dict:
    """Both paths, alternating ``rounds`` times; best (least CPU) run of each and their ratio."""
    runs = []
    for _ in range(rounds):
        for kind in ("confluent-kafka", "rdkafka-batch"):
            runs.append(consume_cpu(bootstrap, topic, n, kind))
    best = {k: min((r for r in runs if r["consumer"] == k), key=lambda r: r["cpu_us_per_msg"])
            for k in ("confluent-kafka", "rdkafka-batch")}
    return {"runs": runs,
            "confluent_kafka_us_per_msg": best["confluent-kafka"]["cpu_us_per_msg"],
            "rdkafka_batch_us_per_msg": best["rdkafka-batch"]["cpu_us_per_msg"],
            "ratio": round(best["confluent-kafka"]["cpu_us_per_msg"] / best["rdkafka-batch"]["cpu_us_per_msg"], 2)}


def stage_pairs(bootstrap: str, topic: str, pairs: int, tag: str) -> dict:
    """The 60 s stage ``pairs`` times per consumer, alternating; ratio batch / confluent per pair.

    One discarded run first: the enrichment caches (countries, user agents, latency texts) live
    per process and would otherwise favour whichever consumer runs second. Pairs alternate which
    consumer goes first.
    """
    from benchmarks.preagg import _stage

    _stage(bootstrap, topic, 60, f"{tag}w", consumer="confluent-kafka")
    runs, ratios = [], []
    for i in range(pairs):
        order = ("rdkafka-batch", "confluent-kafka") if i % 2 == 0 else ("confluent-kafka", "rdkafka-batch")
        got = {kind: _stage(bootstrap, topic, 60, f"{tag}{i}", consumer=kind) for kind in order}
        a, b = got["rdkafka-batch"], got["confluent-kafka"]
        runs += [got[k] for k in order]
        ratios.append(round(a["lines_per_cpu_s"] / b["lines_per_cpu_s"], 3))
    keys = ("consumer", "lines", "cpu_s", "lines_per_cpu_s", "consume_call_us_per_line", "other_threads_us_per_line")
    return {"runs": [{k: r[k] for k in keys} for r in runs],
            "ratios": ratios, "median_ratio": sorted(ratios)[len(ratios) // 2]}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, help="write the results here (also printed)")
    ap.add_argument("--messages", type=int, default=2_000_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--variants", action="store_true", help="also try other fetch/queue settings (batch path)")
    ap.add_argument("--stage-pairs", type=int, default=0, help="instead: K paired runs of the whole 60 s stage")
    a = ap.parse_args(argv)

    from patrol.sim.broker import EmbeddedBroker
    from patrol.streams.topics import ensure_topic

    res: dict = {"config": {"messages": a.messages, "partitions": a.partitions, "batch": 10000,
                            "rate_basis": "process CPU seconds (all threads) per message"}}
    with EmbeddedBroker() as b:
        topic = f"bench-consume-{uuid.uuid4().hex[:6]}"
        ensure_topic({"bootstrap.servers": b.bootstrap}, topic, a.partitions)
        t = time.monotonic()
        if a.stage_pairs:
            from benchmarks.preagg import _produce

            lines, size = _produce(b.bootstrap, topic, a.messages, 2000.0)
            res["input"] = {"messages": lines, "bytes": size, "produce_s": round(time.monotonic() - t, 1)}
            res["stage_pairs"] = stage_pairs(b.bootstrap, topic, a.stage_pairs, uuid.uuid4().hex[:6])
            a.rounds = 0
        else:
            res["input"] = {"messages": a.messages, "bytes": produce(b.bootstrap, topic, a.messages),
                            "produce_s": round(time.monotonic() - t, 1)}
        if a.rounds:
            res["compare"] = compare(b.bootstrap, topic, a.messages, a.rounds)
        if a.variants:
            base = [consume_cpu(b.bootstrap, topic, a.messages, "rdkafka-batch")]
            res["variants"] = {"worker_settings": base[0]}
            for name, extra in VARIANTS.items():
                res["variants"][name] = consume_cpu(b.bootstrap, topic, a.messages, "rdkafka-batch", extra)
            res["variants"]["worker_settings_again"] = consume_cpu(b.bootstrap, topic, a.messages, "rdkafka-batch")
    text = json.dumps(res, indent=2)
    print(text)
    if a.json:
        a.json.write_text(text + "\n")
    return res


if __name__ == "__main__":
    main()
