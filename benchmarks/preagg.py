"""Benchmark of the pre-aggregation stage: ``python -m benchmarks.preagg --json FILE [--lines N]``.

On the embedded (Tansu) broker: generated default-format lines -> Kafka -> the preagg job (parse,
aggregate, publish) -> Kafka, at 60 s and at 10 s windows; then two peers on a smaller slice of the
same topic (rates, not totals, are compared), written plainly with Quix Streams and with Faust, which
do *less* work than the stage: per line a ``split`` of the raw line, and per key (the message key,
i.e. the upstream) and tumbling window four sums (requests, 5xx, bytes, request time), kept in memory;
no URL templates, no sketches (quantiles, unique clients, heavy hitters), no enrichment (country,
device), no route or global series, and nothing produced to Kafka. So their ratios are a floor on
what the framework costs, not a like-for-like comparison. Then the in-memory parse+aggregate rate (compiled loop, and the pure-Python fallback
once) and a reference loop (split + count + 5xx + HLL + DDSketch per line) measured in the same
process, so a reader can normalise for the machine's load; and a memory check with 1M distinct
URLs in a child process. ``compiled_loop`` says whether ``preagg._fastloop`` ran, ``consumer``
which consume path the worker used (``rdkafka-batch``: ``streams._rdbatch``; ``confluent-kafka``:
the fallback). In the same run, ``stage_60s_confluent`` is the 60 s stage on the fallback consumer
and ``consume_paths`` the bare consume cost of both paths (``benchmarks.consume``), so the consume
path's share can be read without a second run on a shared machine (it runs third, with the
per-process enrichment caches warm, so ``consumer_stage_ratio`` understates the batch path;
``python -m benchmarks.consume --stage-pairs K`` pairs them fairly).

``--format combined|json|envoy`` renders the same generated requests in that access-log format
(``sim.generator.formats``) and runs the stage on them at 60 s and 10 s, paired in the same run
with the default format's 60 s stage on the same requests (``format_stage_ratio_to_default``;
``--default-first`` swaps which of the two runs first), plus, in memory, the format's compiled
extractor against the default loop and the careful parser alone (``core.format_*``). Peers, the
fallback consumer and ``consume_paths`` run only for the default format. ``hot_loop`` (top level and
per stage) says which loop read the lines (``compiled json``, ``compiled ingress-nginx``, ...).

Rates are lines per second of *process CPU time* (all threads, librdkafka's included), i.e. per
core, over the busy period (first consumed batch to the last, as the peers measure themselves);
whole-run CPU (start-up, group join, idle wait, final close) and wall-clock rates are beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks import GEN_START

ROOT = Path(__file__).resolve().parents[1]
PEERS_VENV = ROOT / ".venv-peers"
QUIX_PIN = "quixstreams==3.28.1"


def _produce(bootstrap: str, topic: str, n: int, rate: float, seed: int = 1, fmt: str = "ingress-nginx",
             also: dict | None = None) -> tuple[int, int]:
    """Generate ``n`` lines into ``topic`` (key = upstream, timestamp = event time); returns (lines, bytes).

    ``fmt``: the access-log format of the lines (``sim.generator.formats``); ``also``: more
    ``{format: topic}`` that get the same requests rendered in another format (a paired run).
    """
    from confluent_kafka import Producer

    from patrol.sim.generator import generate_chunks
    from patrol.sim.generator.formats import reformat
    from patrol.streams.topics import produce_waiting

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.num.messages": 10000,
                  "queue.buffering.max.messages": 2_000_000})
    lines = size = 0
    for chunk in generate_chunks(n=n, seed=seed, base_rate=rate, start=GEN_START):
        for t, k, line in zip(chunk.times.tolist(), chunk.keys, chunk.lines):
            for f2, t2 in (also or {}).items():
                produce_waiting(p, t2, reformat(line, f2, t), key=k, timestamp=int(t * 1000))
            if fmt != "ingress-nginx":
                line = reformat(line, fmt, t)
            produce_waiting(p, topic, line, key=k, timestamp=int(t * 1000))
            size += len(line)
        lines += len(chunk)
        p.poll(0)
    assert p.flush(120) == 0, "producer did not deliver every line"
    return lines, size


def _stage(bootstrap: str, topic: str, window: int, tag: str, consumer: str | None = None,
           fmt: str = "ingress-nginx") -> dict:
    from patrol.streams.config import load_settings
    from patrol.streams.preagg_job import PreaggJob

    s = load_settings(overrides={
        "kafka.bootstrap_servers": bootstrap, "kafka.session_timeout_ms": 6000, "topics.logs": topic,
        "topics.metrics": f"bench-metrics-{tag}-{fmt}-{window}", "topics.dlq": f"bench-dlq-{tag}-{fmt}-{window}",
        "preagg.window_s": window, "preagg.idle_close_s": 1000, "preagg.max_future_s": 10**9,
        "preagg.log_format": fmt})
    r = PreaggJob(s, group=f"bench-{tag}-{fmt}-{window}-{consumer or 'auto'}", max_idle=3.0, consumer=consumer).run()
    busy = r.extra.get("last_msg_wall", r.wall_s) - r.extra.get("first_msg_wall", 0.0)
    # Busy CPU: from the first consumed batch to the end of the last one (what the peers report
    # too); total CPU also counts start-up, the group join, the idle wait and the final close.
    busy_cpu = r.extra.get("last_msg_cpu", r.cpu_s) - r.extra.get("first_msg_cpu", 0.0)
    return {"window_s": window, "lines": r.lines, "points": r.points, "windows": r.windows, "bytes_in": r.bytes_in,
            "bytes_out": r.bytes_out, "reduction": round(r.bytes_in / max(1, r.bytes_out), 1),
            "cpu_s_total": round(r.cpu_s, 3), "lines_per_cpu_s_total": round(r.lines / r.cpu_s),
            "cpu_s": round(busy_cpu, 3), "lines_per_cpu_s": round(r.lines / busy_cpu), "busy_wall_s": round(busy, 3),
            "lines_per_wall_s": round(r.lines / busy) if busy > 0 else None, "dead_letters": r.dead_letters,
            "format": fmt, "compiled_loop": r.extra.get("compiled_loop"), "hot_loop": r.extra.get("hot_loop"),
            "consumer": r.extra.get("consumer"),
            # whole run, per line: the worker thread inside consume() (Message objects or the
            # batch build) and every other thread (librdkafka's fetch and broker threads)
            "consume_call_us_per_line": round(r.extra["consume_call_s"] / max(1, r.lines) * 1e6, 3),
            "other_threads_us_per_line": round((r.cpu_s - r.extra["worker_thread_s"]) / max(1, r.lines) * 1e6, 3)}


def _peers_python() -> str:
    """Python of the peers' venv (Quix Streams pins an older confluent-kafka): created on first run."""
    py = PEERS_VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
    ok = subprocess.run([str(py), "-c", "import quixstreams"], capture_output=True).returncode == 0
    if not ok:
        subprocess.run([str(py), "-m", "pip", "install", "-q", QUIX_PIN], check=True)
    return str(py)


def _peer(name: str, python: str, bootstrap: str, topic: str, n: int, window: int, partitions: int,
          timeout: float) -> dict:
    out = Path(tempfile.mkstemp(prefix=f"peer-{name}-", suffix=".json")[1])
    script = ROOT / "benchmarks" / "peers" / f"{name}_peer.py"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([python, str(script), bootstrap, topic, str(n), str(window), str(out), str(partitions)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        return {"peer": name, "error": f"timed out after {timeout}s", "stderr": err.decode()[-800:]}
    try:
        res = json.loads(out.read_text())
    except (ValueError, OSError):
        return {"peer": name, "error": f"exit {proc.returncode}", "stderr": err.decode()[-800:]}
    res["lines_per_cpu_s"] = round(res["lines"] / res["cpu"]) if res.get("cpu") else None
    res["lines_per_wall_s"] = round(res["lines"] / res["wall"]) if res.get("wall") else None
    return res


def _feed_rate(lines: list, fmt: str, careful: bool = False) -> tuple[float, float, int, str]:
    """One in-memory run: (lines per CPU s of feed + close_all, same with points, points, loop name)."""
    from patrol.preagg.aggregate import Aggregator

    agg = Aggregator(window_s=60, fmt=fmt)
    if careful:
        agg.fast = False
    t = time.process_time()
    for i in range(0, len(lines), 10000):
        agg.feed(lines[i:i + 10000])
    agg.close_all()
    t_feed = time.process_time() - t
    pts = sum(len(cw.points()) for cw in agg.drain())
    t_all = time.process_time() - t
    return len(lines) / t_feed, len(lines) / t_all, pts, agg.loop_name


def _core(n: int, rate: float, fmt: str = "ingress-nginx") -> dict:
    """In-memory parse+aggregate rate (CPU time) and the reference loop on the same lines.

    With another ``fmt``: the same requests in that format too, through its compiled extractor
    (``format_aggregate*``), the careful parser alone once (what that format ran before), and
    the ratio to the default format's rate measured alternately in the same process.
    """
    import datasketches as ds
    from ddsketch import DDSketch

    from patrol.preagg.aggregate import Aggregator
    from patrol.sim.generator import generate_lines
    from patrol.sim.generator.formats import reformat

    gen = list(generate_lines(n=n, seed=2, base_rate=rate, start=GEN_START))
    lines = [line for _, _, line in gen]
    flines = [reformat(line, fmt, t) for t, _, line in gen] if fmt != "ingress-nginx" else None
    best = {}
    for _ in range(3):
        r_feed, r_all, pts, _ = _feed_rate(lines, "ingress-nginx")
        best["aggregate"] = max(best.get("aggregate", 0), r_feed)
        best["aggregate_and_points"] = max(best.get("aggregate_and_points", 0), r_all)
        if flines is not None:
            r_feed, r_all, fpts, floop = _feed_rate(flines, fmt)
            best["format_aggregate"] = max(best.get("format_aggregate", 0), r_feed)
            best["format_aggregate_and_points"] = max(best.get("format_aggregate_and_points", 0), r_all)
        h, sk, c5 = ds.hll_sketch(12), DDSketch(0.01), 0
        t = time.process_time()
        for line in lines:
            p = line.split(b'"')
            if p[2][1:2] == b"5":
                c5 += 1
            h.update(p[0][:p[0].find(b" ")].decode())
            sk.add(float(p[6].split()[1]))
        best["reference_loop"] = max(best.get("reference_loop", 0), n / (time.process_time() - t))
    # the pure-Python loop once, for scale (what an install without a C compiler runs)
    agg = Aggregator(window_s=60, compiled=False)
    t = time.process_time()
    for i in range(0, len(lines), 10000):
        agg.feed(lines[i:i + 10000])
    agg.close_all()
    best["aggregate_pure_python"] = n / (time.process_time() - t)
    if flines is not None:
        best["format_aggregate_careful_parser"] = _feed_rate(flines, fmt, careful=True)[0]
    out = {k + "_lines_per_cpu_s": round(v) for k, v in best.items()}
    out["compiled_loop"] = Aggregator().compiled
    out["points"] = pts
    out["ratio_to_reference"] = round(best["aggregate"] / best["reference_loop"], 3)
    if flines is not None:
        out["format"] = fmt
        out["format_hot_loop"] = floop
        out["format_points"] = fpts
        out["format_ratio_to_default"] = round(best["format_aggregate"] / best["aggregate"], 3)
        out["format_speedup_over_careful_parser"] = round(
            best["format_aggregate"] / best["format_aggregate_careful_parser"], 2)
    return out


def _rss_now() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def rss_child(n: int) -> dict:
    """Feed ``n`` lines with ``n`` distinct (non-id) URLs; RSS must stay flat (template cap)."""
    from datetime import datetime, timezone

    from patrol.preagg.aggregate import Aggregator

    agg = Aggregator(window_s=60, lateness_s=5)
    t0 = 1_790_000_000
    samples = []
    batch = []
    for i in range(n):
        w = "".join(chr(97 + (i // 26**k) % 26) for k in range(5))  # letters only: not an id
        t = t0 + i // 2000
        ts = datetime.fromtimestamp(t, tz=timezone.utc).strftime("%d/%b/%Y:%H:%M:%S +0000")
        batch.append(f'203.0.113.{i % 250} - - [{ts}] "GET /search/{w}/page HTTP/1.1" 200 512 "-" "Mozilla/5.0" '
                     f"300 0.012 [shop-search-8080] [] 10.0.0.1:8080 512 0.011 200 r{i}".encode())
        if len(batch) == 10000:
            agg.feed(batch)
            batch = []
            for cw in agg.drain():
                cw.points()
            if (i + 1) % (n // 10) == 0:
                samples.append(round(_rss_now(), 1))
    agg.close_all()
    agg.drain()
    return {"lines": n, "rss_mb_samples": samples, "rss_growth": round(samples[-1] / samples[0], 3)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, help="write the results here (also printed)")
    ap.add_argument("--lines", type=int, default=2_000_000, help="lines through the Kafka stage")
    ap.add_argument("--peer-lines", type=int, default=200_000, help="lines for the Quix Streams peer")
    ap.add_argument("--faust-lines", type=int, default=50_000, help="lines for the Faust peer (~1.5k lines/s)")
    ap.add_argument("--rate", type=float, default=2000.0,
                    help="generator base_rate (requests/s of event time; the mix is the generator's default)")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--rss-urls", type=int, default=1_000_000)
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--format", default="ingress-nginx", choices=("ingress-nginx", "combined", "json", "envoy"),
                    help="access-log format of the generated lines (sim.generator.formats); another format "
                         "than the default runs paired with the default format on the same requests")
    ap.add_argument("--default-first", action="store_true",
                    help="with --format: run the default format's 60 s stage before the format's (alternate "
                         "between runs: the second stage meets warm per-process enrichment caches)")
    ap.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.rss_child:
        print(json.dumps(rss_child(a.rss_child)))
        return {}

    from patrol.sim.broker import EmbeddedBroker
    from patrol.streams.topics import ensure_topic

    fmt = a.format
    paired = fmt != "ingress-nginx"
    res: dict = {"config": {"lines": a.lines, "quix_lines": a.peer_lines, "faust_lines": a.faust_lines,
                            "generator_base_rate": a.rate, "generator_start": GEN_START, "format": fmt,
                            "default_first": bool(paired and a.default_first),
                            "partitions": a.partitions, "rate_basis": "process CPU seconds (all threads)"}}
    tag = uuid.uuid4().hex[:6]
    with EmbeddedBroker() as b:
        conf = {"bootstrap.servers": b.bootstrap}
        topic = f"bench-logs-{tag}"
        dtopic = f"bench-logs-{tag}-default"
        # retention.ms at creation: Quix Streams refuses a topic without it on Tansu.
        ensure_topic(conf, topic, a.partitions, {"retention.ms": str(7 * 24 * 3600 * 1000)})
        if paired:
            ensure_topic(conf, dtopic, a.partitions, {"retention.ms": str(7 * 24 * 3600 * 1000)})
        t = time.monotonic()
        n, size = _produce(b.bootstrap, topic, a.lines, a.rate, fmt=fmt,
                           also={"ingress-nginx": dtopic} if paired else None)
        res["input"] = {"lines": n, "bytes": size, "produce_s": round(time.monotonic() - t, 1)}
        if paired and a.default_first:
            res["stage_60s_default_format"] = _stage(b.bootstrap, dtopic, 60, tag)
        res["stage_60s"] = _stage(b.bootstrap, topic, 60, tag, fmt=fmt)
        if paired and not a.default_first:
            res["stage_60s_default_format"] = _stage(b.bootstrap, dtopic, 60, tag)
        res["stage_10s"] = _stage(b.bootstrap, topic, 10, tag, fmt=fmt)
        if paired:
            # the same requests in both formats, same process: the format's cost against the default's
            res["format_stage_ratio_to_default"] = round(
                res["stage_60s"]["lines_per_cpu_s"] / res["stage_60s_default_format"]["lines_per_cpu_s"], 3)
        if res["stage_60s"]["consumer"] != "confluent-kafka" and not paired:
            from benchmarks.consume import compare

            res["stage_60s_confluent"] = _stage(b.bootstrap, topic, 60, tag, consumer="confluent-kafka")
            res["consume_paths"] = compare(b.bootstrap, topic, n, rounds=1)
        res["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        if not a.no_peers and not paired:  # the peers read default-format lines
            res["quix"] = _peer("quix", _peers_python(), b.bootstrap, topic, min(a.peer_lines, n), 60, a.partitions, 600)
            res["faust"] = _peer("faust", sys.executable, b.bootstrap, topic, min(a.faust_lines, n), 60, a.partitions, 600)
    res["core"] = _core(min(300_000, a.lines), a.rate, fmt)
    child = subprocess.run([sys.executable, "-m", "benchmarks.preagg", "--rss-child", str(a.rss_urls)], cwd=ROOT,
                           capture_output=True, text=True, timeout=1800)
    res["rss_1m_urls"] = json.loads(child.stdout.strip().splitlines()[-1]) if child.returncode == 0 else {
        "error": child.stderr[-800:]}
    ours = res["stage_60s"]["lines_per_cpu_s"]
    res["lines_per_s_per_core"] = ours  # busy period (first batch to last), as the peers measure themselves
    res["lines_per_s_per_core_whole_run"] = res["stage_60s"]["lines_per_cpu_s_total"]  # start-up to close
    res["peers_compute"] = ("per key (upstream) and 60 s window: requests, 5xx, bytes, request-time sum; "
                            "no templates, sketches, enrichment, route/global series or output to Kafka")
    res["format"] = fmt
    # which loop read the lines: "compiled ingress-nginx", "compiled json", ..., or a fallback
    res["hot_loop"] = res["stage_60s"]["hot_loop"]
    # which hot loop ran: preagg._fastloop (Cython) or the pure-Python fallback
    res["compiled_loop"] = bool(res["stage_60s"]["compiled_loop"] and res["stage_10s"]["compiled_loop"])
    res["consumer"] = res["stage_60s"]["consumer"]
    if "stage_60s_confluent" in res:  # same run, same input: what the consume path alone changes
        res["consumer_stage_ratio"] = round(ours / res["stage_60s_confluent"]["lines_per_cpu_s"], 3)
    for peer in ("quix", "faust"):
        rate = (res.get(peer) or {}).get("lines_per_cpu_s")
        res[f"{peer}_ratio"] = round(ours / rate, 2) if rate else None
    res["reduction_60s"] = res["stage_60s"]["reduction"]
    res["reduction_10s"] = res["stage_10s"]["reduction"]
    growth = res["rss_1m_urls"].get("rss_growth")
    res["rss_flat_1m_urls"] = growth is not None and growth <= 1.2
    text = json.dumps(res, indent=2)
    print(text)
    if a.json:
        a.json.write_text(text + "\n")
    return res


if __name__ == "__main__":
    main()
