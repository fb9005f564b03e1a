"""Chaos benchmark: the whole pipeline under worker crashes, restarts, a stalled broker and a lost Redis.

    python -m benchmarks.chaos --json out/chaos.json [--hours 2] [--series 20000] [--seed 7] [--quick]

What runs: the embedded Tansu broker, a redis-server, 3 ``patrol run preagg`` and 3 ``patrol run
detect`` worker processes. Generated ingress traffic (``sim.generator``) for ``--hours``
simulated hours is produced to the logs topic at a steady wall rate over ``--traffic-s`` seconds.
About ``--series`` series: the generator models one estate (9 services, ~1400 series over 2 h at
5 req/s), so the traffic merges several estates, each drawn with its own seed and its namespaces
suffixed with the estate number (``shop`` -> ``shop3``), ground truth rewritten to match.

The same traffic runs twice on fresh services:

* **reference**: no infrastructure faults;
* **chaos**: the fault schedule (:func:`build_schedule`) runs beside the traffic: ``kill -9`` of a
  random worker every ``--kill-every`` seconds and its restart, a SIGTERM rolling restart of every
  worker, the broker stalled (SIGSTOP ... SIGCONT, ``--stall-s``; Tansu keeps its data in memory, so
  it is never killed), redis-server killed and restarted empty, and later shut down and restarted
  with its data.

Bad input is part of the *traffic*, identical bytes at identical places in both runs: bursts of
garbage lines, far-future lines (year 2030), late lines (an hour behind the stream), and valid
lines without a key sent to a partition chosen by the seed. So any difference between the two
runs is due to the infrastructure faults, and the dead letters of both runs show how bad input is
reported. Labels: a few anomalies are labelled ``ignore`` during each run (as ``patrol label
mark`` does: ``models.labels.label_for`` + ``cli.labels_io.publish_labels``); ``ignore`` on
an unlabelled anomaly changes no model, so labels do not make the runs diverge, and every label
published must be on the labels topic at the end.

The run ends when the preagg group has committed every produced line (windows close by the idle
close) and the metrics/anomaly topics and the detect group's commits have been still for a while;
then every worker gets SIGTERM and its exit is timed. Topics are read to their end (fetch
watermarks, ``cli.labels_io.read_messages``: Tansu's ListOffsets under-reports the end).

Report (JSON): per record kind (points, anomalies, incident events) ``lost`` (ids of the reference
missing in the chaos run: must be 0), ``duplicates`` (extra copies of an id), ``differ`` (same id,
other value), ``extra`` (ids only in the chaos run); incidents found vs the generator's truth in
both runs; dead letters by code and reason; per fault the time until preagg had committed every
line produced by the fault's end and detect every point that existed then (:func:`recovery`, with
the same figure for the same span of the reference run beside it); peak RSS per worker slot; shutdown seconds per worker (rolling restart and final stop);
labels published vs found.
"""

from __future__ import annotations

import argparse
import atexit
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from patrol.streams.detect_job import FENCE_KEY  # the detect workers' fence records on the metrics topic

SERIES_PER_ESTATE = 1400   # one generator estate at 5 req/s over 2 simulated hours (measured: ~1450)
ESTATE_RATE = 5.0          # requests per simulated second per estate
START = "2026-11-02T00:00:00Z"   # a fixed Monday, before any wall clock this runs on (future check)
PREAGG, DETECT = "preagg", "detect"
INFRA = ("kill", "rolling_restart", "broker_stall", "redis_restart_empty", "redis_restart_with_data")
INPUT = ("garbage", "future", "late", "unkeyed")


def log(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Pure parts: schedule, comparison, summaries (tested in tests/test_chaos_benchmark.py)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fault:
    """One scheduled fault. ``at`` is seconds after the traffic starts (wall clock) for
    infrastructure faults, and the fraction of the traffic's lines already sent for input faults."""

    at: float
    kind: str
    target: str | None = None   # worker name for "kill"
    duration: float = 0.0       # how long the fault itself lasts (stall, redis down, kill-to-restart)
    count: int = 0              # lines in an input burst


def worker_names(n_preagg: int = 3, n_detect: int = 3) -> list[str]:
    return [f"{PREAGG}-{i}" for i in range(n_preagg)] + [f"{DETECT}-{i}" for i in range(n_detect)]


def build_schedule(traffic_s: float, seed: int, workers: list[str], kill_every_s: float = 40.0,
                   stall_s: float = 30.0, redis_down_s: float = 3.0, restart_after_s: float = 2.0,
                   rolling_s: float = 60.0, burst: int = 200, guard_s: float = 6.0) -> list[Fault]:
    """The chaos run's faults, sorted by time.

    Fixed points of the traffic: the broker stall at 20 %, Redis restarted empty at 40 %, the
    rolling restart at 50 % (estimated to take ``rolling_s``), Redis restarted with its data at
    85 %. Kills of a seeded random worker every ``kill_every_s`` from ``kill_every_s / 2`` on; a kill
    that would fall within ``guard_s`` of another fault moves to just after it, so each fault's
    recovery can be told apart. Input bursts
    (identical in both runs) at 15, 35, 65 and 90 % of the lines.

    Examples
    --------
    >>> s = build_schedule(300, seed=1, workers=worker_names())
    >>> [f.kind for f in s if f.kind != "kill"][:3]
    ['garbage', 'broker_stall', 'future']
    >>> all(f.target in worker_names() for f in s if f.kind == "kill")
    True
    """
    rng = random.Random(seed)
    fixed = [Fault(round(0.20 * traffic_s, 1), "broker_stall", duration=stall_s),
             Fault(round(0.40 * traffic_s, 1), "redis_restart_empty", duration=redis_down_s),
             Fault(round(0.50 * traffic_s, 1), "rolling_restart", duration=rolling_s),
             Fault(round(0.85 * traffic_s, 1), "redis_restart_with_data", duration=redis_down_s)]
    busy = [(f.at - guard_s, f.at + f.duration + guard_s) for f in fixed]
    kills = []
    t = kill_every_s / 2
    while t < traffic_s:
        clash = [hi for lo, hi in busy if lo <= t + restart_after_s and t < hi]
        if clash:  # the next kill comes right after the fault it would overlap
            t = max(clash)
            continue
        kills.append(Fault(round(t, 1), "kill", target=rng.choice(workers), duration=restart_after_s))
        t += kill_every_s
    inputs = [Fault(frac, kind, count=burst) for frac, kind in
              ((0.15, "garbage"), (0.35, "future"), (0.65, "late"), (0.90, "unkeyed"))]
    # input faults are placed by line fraction; sort them among the others by the same clock
    return sorted(fixed + kills + inputs, key=lambda f: f.at * (traffic_s if f.kind in INPUT else 1))


def by_id(records: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        out[r["id"]].append(r)
    return out


def _same(a, b, rel: float = 1e-9) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            a, b = float(a), float(b)
        except (TypeError, ValueError):
            return False
        if math.isnan(a) and math.isnan(b):
            return True
        return a == b or abs(a - b) <= rel * max(abs(a), abs(b))
    return a == b


def compare(reference: list[dict], got: list[dict], fields: tuple[str, ...], sample: int = 5) -> dict:
    """Records of the chaos run against the reference, by deterministic ``id``.

    ``lost``: ids of the reference with no record in ``got``. ``duplicates``: copies of an id in
    ``got`` beyond as many as the reference has (the reference may itself hold an id more than
    once, e.g. a point a worker re-emits; only the excess counts). ``differ``: ids present in both
    whose records disagree on any of ``fields`` (compared as sets of values, floats to 1e-9
    relative). ``extra``: ids only in ``got``. Examples of each are kept (``*_sample``).

    Examples
    --------
    >>> ref = [{"id": "a", "v": 1.0}, {"id": "b", "v": 2.0}, {"id": "c", "v": 3.0}]
    >>> got = [{"id": "a", "v": 1.0}, {"id": "a", "v": 1.0}, {"id": "c", "v": 3.5}, {"id": "d", "v": 0.0}]
    >>> r = compare(ref, got, ("v",))
    >>> r["lost"], r["duplicates"], r["differ"], r["extra"]
    (1, 1, 1, 1)
    """
    ref, cur = by_id(reference), by_id(got)
    lost = sorted(set(ref) - set(cur))
    extra = sorted(set(cur) - set(ref))
    dup_ids = sorted(i for i in cur if len(cur[i]) > len(ref.get(i, ())) and i in ref)
    duplicates = sum(len(cur[i]) - len(ref[i]) for i in dup_ids)
    duplicates += sum(len(cur[i]) - 1 for i in extra)
    differ = []
    for i in sorted(set(ref) & set(cur)):
        for f in fields:
            a = _distinct([r.get(f) for r in ref[i]])
            b = _distinct([r.get(f) for r in cur[i]])
            if len(a) != len(b) or not all(any(_same(x, y) for y in b) for x in a):
                differ.append((i, f, a, b))
                break
    return {"reference": len(ref), "got": len(cur), "lost": len(lost), "duplicates": duplicates,
            "differ": len(differ), "extra": len(extra), "lost_sample": lost[:sample],
            "extra_sample": extra[:sample],
            "differ_sample": [{"id": i, "field": f, "reference": a, "got": b} for i, f, a, b in differ[:sample]]}


def _distinct(values: list) -> list:
    out: list = []
    for v in values:
        if not any(_same(v, o) for o in out):
            out.append(v)
    return out


_NUM = re.compile(r"-?\d+(\.\d+)?")


def dead_letter_summary(records: list[dict]) -> dict:
    """Dead letters by ``code`` and by reason with its numbers blanked (``#``), most frequent first."""
    codes = Counter(r.get("code") or "?" for r in records)
    reasons = Counter(_NUM.sub("#", r.get("reason") or "")[:120] for r in records)
    sources = Counter(r.get("source_topic") or "?" for r in records)
    return {"total": len(records), "by_code": dict(codes.most_common()), "by_source_topic": dict(sources.most_common()),
            "by_reason": dict(reasons.most_common(12))}


def caught_up(samples: list[dict], start: float, end: float, field: str, target: dict[int, int]) -> float | None:
    """Seconds from ``start`` until the first sample at or after ``end`` whose committed offsets
    (``sample[field]``: partition -> offset, ``None`` when unreadable) reach ``target`` on every
    partition: the stage has processed, and committed, everything that was there when the fault ended.

    Examples
    --------
    >>> s = [{"t": 0, "c": {0: 5}}, {"t": 10, "c": None}, {"t": 20, "c": {0: 40}}, {"t": 30, "c": {0: 90}}]
    >>> caught_up(s, start=8, end=12, field="c", target={0: 80})
    22
    >>> caught_up(s, start=8, end=12, field="c", target={0: 100}) is None
    True
    """
    for x in samples:
        got = x.get(field)
        if x["t"] >= end and got is not None and all(got.get(p, 0) >= o for p, o in target.items()):
            return x["t"] - start
    return None


def recovery(samples: list[dict], start: float, end: float) -> dict:
    """How long after a fault's ``start`` the preagg stage had committed every line produced by the
    fault's ``end``, and the detect stage every metric point that existed at that moment."""
    before = [x for x in samples if x["t"] <= end] or samples[:1]
    if not before:
        return {"preagg_caught_up_s": None, "detect_caught_up_s": None}
    pre = caught_up(samples, start, end, "preagg_committed", before[-1]["produced"])
    det = None
    if pre is not None:
        at = next(x for x in samples if x["t"] - start >= pre)
        det = caught_up(samples, start, start + pre, "detect_committed", at["metrics_end"])
    r = lambda v: None if v is None else round(v, 1)  # noqa: E731
    return {"preagg_caught_up_s": r(pre), "detect_caught_up_s": r(det)}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    v = sorted(values)
    return v[min(len(v) - 1, int(q * (len(v) - 1) + 0.5))]


# ---------------------------------------------------------------------------------------------
# Traffic: several generator estates merged, plus the input bursts
# ---------------------------------------------------------------------------------------------
@dataclass
class Traffic:
    lines: list[tuple[float, bytes, bytes]]   # (event time, key, line), event-time order
    truth: list[dict]
    sim_start: float
    sim_end: float
    estates: int


def incident_spec(hours: float) -> str:
    """Incidents in the second half of the run, when the detectors have history."""
    h = hours * 60
    at = lambda f: f"{int(f * h)}m"  # noqa: E731
    dur = f"{max(5, int(h * 0.08))}m"
    return f"error_spike@{at(0.5)}:{dur},latency_spike@{at(0.65)}:{dur},scan_404@{at(0.8)}:{dur}"


def _rename(upstream: bytes, k: int) -> bytes:
    ns, _, rest = upstream.partition(b"-")
    return ns + str(k).encode() + b"-" + rest


def build_traffic(hours: float, series: int, seed: int, workdir: Path) -> Traffic:
    from patrol.sim.generator import generate_chunks

    estates = max(1, round(series / SERIES_PER_ESTATE))
    lines: list[tuple[float, bytes, bytes]] = []
    truth = []
    for k in range(estates):
        gt = workdir / f"truth-{k}.jsonl"
        for ch in generate_chunks(seed=seed * 1000 + k, base_rate=ESTATE_RATE, duration=hours * 3600, start=START,
                                  incidents=incident_spec(hours), ground_truth=str(gt), n_clients=2000):
            for t, key, line in zip(ch.times.tolist(), ch.keys, ch.lines):
                new = _rename(key, k)
                lines.append((t, new, line.replace(b"[" + key + b"]", b"[" + new + b"]", 1)))
        for row in gt.read_text().splitlines():
            inc = json.loads(row)
            inc["id"] = f"{inc['id']}-e{k}"
            tgt = inc.get("target") or {}
            if tgt.get("service"):
                tgt["service"] = _rename(tgt["service"].encode(), k).decode()
            if tgt.get("namespace"):
                tgt["namespace"] = f"{tgt['namespace']}{k}"
            for m in inc.get("metrics", []):
                if "service" in m.get("dims", {}):
                    m["dims"]["service"] = tgt.get("service")
            truth.append(inc)
    lines.sort(key=lambda x: x[0])  # stable: each estate's own order is kept
    t0 = datetime.fromisoformat(START.replace("Z", "+00:00")).timestamp()
    return Traffic(lines, truth, t0, t0 + hours * 3600, estates)


_TS = re.compile(rb"\[(\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2}) \+0000\]")


def _retime(line: bytes, epoch: float) -> bytes:
    stamp = datetime.fromtimestamp(epoch, timezone.utc).strftime("%d/%b/%Y:%H:%M:%S").encode()
    return _TS.sub(b"[" + stamp + b" +0000]", line, count=1)


def burst_messages(fault: Fault, traffic: Traffic, index: int, seed: int, partitions: int) -> list[tuple[bytes | None, int | None, bytes]]:
    """The messages ``(key, partition, value)`` of one input burst, sent after line ``index``."""
    rng = random.Random(f"{seed}-{fault.kind}-{index}")
    near = traffic.lines[max(0, index - 5000):index + 1] or traffic.lines[:1]
    out = []
    for i in range(fault.count):
        t, key, line = near[rng.randrange(len(near))]
        if fault.kind == "garbage":
            pick = i % 4
            value = (bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))) if pick == 0 else
                     line[: rng.randrange(5, max(6, len(line) // 2))] if pick == 1 else
                     b"" if pick == 2 else b"GET / HTTP/1.1 not an access log " + str(i).encode())
            out.append((key, None, value))
        elif fault.kind == "future":
            out.append((key, None, _retime(line, 1893456000.0 + i)))   # 2030-01-01: far ahead of any wall clock
        elif fault.kind == "late":
            out.append((key, None, _retime(line, t - 3600)))
        elif fault.kind == "unkeyed":
            out.append((None, rng.randrange(partitions), line))
        else:
            raise ValueError(f"not an input fault: {fault.kind}")
    return out


def flush_lines(traffic: Traffic, partitions: int, past_s: float = 300.0) -> list[tuple[int, bytes]]:
    """``(partition, line)``: a valid line per partition ``past_s`` after the traffic's end."""
    _t, _k, line = traffic.lines[-1]
    return [(p, _retime(line, traffic.sim_end + past_s)) for p in range(partitions)]


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------
def _rss_peak_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for row in f:
                if row.startswith("VmHWM:"):
                    return int(row.split()[1]) / 1024
    except OSError:
        return None
    return None


@dataclass
class Worker:
    """One worker slot (``preagg-0`` ...): its current process and what its incarnations did."""

    name: str
    bootstrap: str
    env: dict
    logdir: Path
    proc: subprocess.Popen | None = None
    starts: int = 0
    peak_rss_mb: float = 0.0
    shutdowns: list[dict] = field(default_factory=list)
    crashes: list[dict] = field(default_factory=list)
    expected_down: bool = False   # set while the benchmark itself stops it (kill, SIGTERM)
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def kind(self) -> str:
        return self.name.split("-")[0]

    @property
    def log_path(self) -> Path:
        return self.logdir / f"{self.name}.{self.starts}.log"

    def wait_assigned(self, timeout: float) -> float | None:
        """Seconds until this incarnation logged a partition assignment (None: not within ``timeout``)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            try:
                if "assigned" in self.log_path.read_text(errors="replace"):
                    return round(time.monotonic() - t0, 2)
            except OSError:
                pass
            time.sleep(0.25)
        return None

    def supervise(self, t: float, restart_after_s: float) -> None:
        """As a Deployment with ``restartPolicy: Always``: a worker that exited on its own is
        recorded (exit code, last exception line of its log) and started again."""
        with self.lock:
            if self.proc is None or self.expected_down or self.proc.poll() is None:
                return
            err = [ln for ln in self.log_path.read_text(errors="replace").splitlines()
                   if "Exception" in ln or "Error" in ln]
            self.crashes.append({"t": t, "exit": self.proc.returncode, "incarnation": self.starts,
                                 "error": err[-1][:300] if err else None})
            log(f"{self.name} exited {self.proc.returncode} on its own: restarting ({self.crashes[-1]['error']})")
            time.sleep(restart_after_s)
            self.start()

    def start(self) -> None:
        self.expected_down = False
        self.starts += 1
        out = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "patrol.cli.app", "run", self.kind, "--bootstrap", self.bootstrap],
                                     stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env={**os.environ, **self.env}, start_new_session=True)
        out.close()

    def sample(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            rss = _rss_peak_mb(self.proc.pid)
            if rss:
                self.peak_rss_mb = max(self.peak_rss_mb, rss)

    def kill9(self) -> None:
        self.sample()
        self.expected_down = True
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def sigterm(self, when: str, timeout: float) -> dict:
        """SIGTERM and time the exit (SIGKILL after ``timeout``)."""
        self.sample()
        self.expected_down = True
        t0 = time.monotonic()
        rec = {"worker": self.name, "when": when}
        if self.proc is None or self.proc.poll() is not None:
            rec.update(seconds=None, note=f"not running (exit {self.proc.returncode if self.proc else None})")
        else:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout)
                rec.update(seconds=round(time.monotonic() - t0, 2), exit=rc)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                rec.update(seconds=round(time.monotonic() - t0, 2), exit="killed after timeout")
        self.shutdowns.append(rec)
        return rec


class Redis:
    """redis-server on a fixed port and data directory, so it can be restarted empty or with its data."""

    def __init__(self, workdir: Path):
        from patrol.sim.broker import free_port
        from patrol.sim.redis_server import INSTALL_HINT, redis_server_binary

        self.binary = redis_server_binary()
        if self.binary is None:
            raise RuntimeError(INSTALL_HINT)
        self.port = free_port()
        self.dir = workdir / "redis"
        self.dir.mkdir(exist_ok=True)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        from patrol.sim.broker import wait_for_port

        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.dir), "--dbfilename", "dump.rdb",
                                      "--protected-mode", "no", "--loglevel", "warning"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        if not wait_for_port("127.0.0.1", self.port, 15, self.proc):
            raise RuntimeError("redis-server did not restart")

    def kill_empty(self) -> None:
        """kill -9 and forget the data (a lost cache node)."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        (self.dir / "dump.rdb").unlink(missing_ok=True)

    def shutdown_saving(self) -> None:
        """SHUTDOWN SAVE: the data survives the restart."""
        import redis

        try:
            redis.Redis.from_url(self.url).shutdown(save=True)
        except redis.exceptions.ConnectionError:
            pass  # the server closes the connection as it exits
        self.proc.wait(30)

    def keys(self) -> int:
        import redis

        return redis.Redis.from_url(self.url).dbsize()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


# ---------------------------------------------------------------------------------------------
# One run
# ---------------------------------------------------------------------------------------------
class Monitor(threading.Thread):
    """Samples every second: preagg lag (lines produced - committed), detect lag (metrics end -
    committed), and each worker's peak RSS."""

    def __init__(self, bootstrap: str, settings, workers: list[Worker], produced: dict[int, int], log_parts: int,
                 metric_parts: int):
        super().__init__(daemon=True)
        from confluent_kafka import Consumer, TopicPartition

        self.s, self.workers, self.produced = settings, workers, produced
        base = {"bootstrap.servers": bootstrap, "enable.auto.commit": False, "socket.timeout.ms": 3000}
        self.pre = Consumer({**base, "group.id": "patrol-preagg"})     # never subscribes: reads commits only
        self.det = Consumer({**base, "group.id": "patrol-detect"})
        self.tail = Consumer({**base, "group.id": "chaos-tail", "auto.offset.reset": "earliest", "fetch.wait.max.ms": 50})
        self.log_tps = [TopicPartition(settings.topics.logs, p) for p in range(log_parts)]
        self.met_tps = [TopicPartition(settings.topics.metrics, p) for p in range(metric_parts)]
        self.tail.assign([TopicPartition(settings.topics.metrics, p, 0) for p in range(metric_parts)]
                         + [TopicPartition(settings.topics.anomalies, p, 0) for p in range(settings.topics.partitions["anomalies"])])
        self.metrics_end: dict[int, int] = {}
        self.anomalies_seen = 0
        self.metrics_seen = 0   # metric points, without the detect workers' fences
        self.samples: list[dict] = []
        self.stop_flag = threading.Event()
        self.supervise = True
        self.t0 = time.monotonic()

    def committed(self, consumer, tps) -> dict[int, int] | None:
        try:
            return {tp.partition: max(tp.offset, 0) for tp in consumer.committed(tps, timeout=3)}
        except Exception:
            return None

    def run(self) -> None:
        while not self.stop_flag.is_set():
            for m in self.tail.consume(20000, 0.2):
                if m.error() is None:
                    if m.topic() == self.s.topics.metrics:
                        self.metrics_end[m.partition()] = m.offset() + 1
                        if m.key() != FENCE_KEY:
                            self.metrics_seen += 1
                    else:
                        self.anomalies_seen += 1
            pre = self.committed(self.pre, self.log_tps)
            det = self.committed(self.det, self.met_tps)
            lag_pre = None if pre is None else sum(max(0, self.produced.get(p, 0) - pre.get(p, 0)) for p in self.produced)
            lag_det = None if det is None else sum(max(0, e - det.get(p, 0)) for p, e in self.metrics_end.items())
            for w in self.workers:
                w.sample()
                if self.supervise:
                    w.supervise(round(time.monotonic() - self.t0, 2), 2.0)
            self.samples.append({"t": round(time.monotonic() - self.t0, 2), "lag_preagg": lag_pre, "lag_detect": lag_det,
                                 "preagg_committed": pre, "detect_committed": det, "produced": dict(self.produced),
                                 "metrics_end": dict(self.metrics_end),
                                 "metrics": self.metrics_seen, "anomalies": self.anomalies_seen})
            self.stop_flag.wait(1.0)

    def close(self) -> None:
        self.stop_flag.set()
        self.join(15)
        for c in (self.pre, self.det, self.tail):
            c.close()


@dataclass
class RunResult:
    name: str
    points: list[dict]
    anomalies: list[dict]
    incidents: list[dict]
    dead_letters: list[dict]
    labels_published: list[str]
    labels_found: list[str]
    faults: list[dict]
    samples: list[dict]
    workers: dict
    wall_s: float
    drained: bool
    logdir: str


def _worker_env(bootstrap: str, redis_url: str, checkpoint_s: float) -> dict:
    return {"PATROL_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "PATROL_REDIS__URL": redis_url,
            "PATROL_DETECT__CHECKPOINT_INTERVAL_S": str(checkpoint_s),
            "PATROL_KAFKA__SESSION_TIMEOUT_MS": "6000", "PATROL_SERVICE__LOG_LEVEL": "INFO"}


class Labeller:
    """Marks a few anomalies ``ignore`` now and then, as ``patrol label mark`` does."""

    def __init__(self, conf: dict, settings):
        self.conf, self.s = conf, settings
        self.published: list[str] = []
        self.errors: list[str] = []
        self.done: set[str] = set()

    def mark_some(self, n: int = 5) -> None:
        from patrol.models.labels import label_for
        from patrol.cli.labels_io import LabelIOError, publish_labels, read_anomalies

        try:
            anomalies, _ = read_anomalies(self.conf, self.s.topics.anomalies, idle_timeout=20)
            todo = [anomalies[i] for i in sorted(anomalies) if i not in self.done][:n]
            labels = [label_for(a, "ignore", datetime.now(timezone.utc), note="chaos benchmark", author="chaos-bench")
                      for a in todo]
            if labels:
                publish_labels(self.conf, self.s.topics.labels, labels, timeout=60)
                self.published += [lb.id for lb in labels]
                self.done.update(a.id for a in todo)
        except (LabelIOError, Exception) as exc:  # a stalled broker: recorded, tried again next time
            self.errors.append(f"{type(exc).__name__}: {exc}")


def run_pipeline(name: str, traffic: Traffic, schedule: list[Fault], opts, workdir: Path) -> tuple[RunResult, list, list]:
    from confluent_kafka import Producer

    from patrol.sim.broker import EmbeddedBroker
    from patrol.streams.config import load_settings
    from patrol.streams.topics import create_topics

    infra = name == "chaos"
    logdir = workdir / name
    logdir.mkdir()
    broker = EmbeddedBroker(log_path=logdir / "tansu.log").start()
    redis_srv = Redis(logdir)
    redis_srv.start()
    s = load_settings(None, {"kafka.bootstrap_servers": broker.bootstrap})
    conf = s.kafka.client_config()
    create_topics(s)
    env = _worker_env(broker.bootstrap, redis_srv.url, opts.checkpoint_s)
    workers = [Worker(n, broker.bootstrap, env, logdir) for n in worker_names()]
    by_name = {w.name: w for w in workers}
    for w in workers:
        w.start()
    # if the run fails half-way, leave no broker, redis-server or worker behind
    atexit.register(broker.stop)
    atexit.register(redis_srv.stop)
    atexit.register(lambda: [w.proc.kill() for w in workers if w.proc is not None and w.proc.poll() is None])
    log(f"{name}: broker {broker.bootstrap}, redis {redis_srv.url}, workers started; logs in {logdir}")
    produced: dict[int, int] = {}
    log_parts = s.topics.partitions["logs"]
    mon = Monitor(broker.bootstrap, s, workers, produced, log_parts, s.topics.partitions["metrics"])
    labeller = Labeller(conf, s)
    fault_log: list[dict] = []
    time.sleep(opts.warmup_s)  # workers join their groups before the traffic starts
    mon.start()
    t_run = time.monotonic()

    # -- traffic thread: paced by wall clock, bursts at fixed line positions -------------------
    lines = traffic.lines
    bursts = sorted((int(f.at * len(lines)), f) for f in schedule if f.kind in INPUT)
    delivery_errors: list[str] = []

    def delivered(err, msg):
        if err is not None:
            delivery_errors.append(str(err))
        else:
            p = msg.partition()
            produced[p] = max(produced.get(p, 0), msg.offset() + 1)

    producer = Producer({**conf, "linger.ms": 50, "compression.type": "lz4", "enable.idempotence": False,
                         "max.in.flight.requests.per.connection": 1,  # order kept across retries (stall)
                         "message.timeout.ms": 600000, "queue.buffering.max.messages": 500000})
    t_traffic = time.monotonic()
    traffic_done = threading.Event()

    def send(key, part, value):
        from patrol.streams.topics import produce_waiting

        kw = {"key": key, "on_delivery": delivered}
        if part is not None:
            kw["partition"] = part
        produce_waiting(producer, s.topics.logs, value, **kw)

    def traffic_loop():
        bi = 0
        n = len(lines)
        step = max(1, n // int(opts.traffic_s * 10))
        for i0 in range(0, n, step):
            due = t_traffic + opts.traffic_s * i0 / n
            while time.monotonic() < due:
                producer.poll(0.02)
            for i in range(i0, min(n, i0 + step)):
                _t, key, line = lines[i]
                send(key, None, line)
                while bi < len(bursts) and bursts[bi][0] == i:
                    f = bursts[bi][1]
                    for k, p, v in burst_messages(f, traffic, i, opts.seed, log_parts):
                        send(k, p, v)
                    fault_log.append({"kind": f.kind, "at_line": i, "lines": f.count,
                                      "t": round(time.monotonic() - t_run, 1)})
                    bi += 1
            producer.poll(0)
        # One line per partition, event time past the last window + lateness: event time closes
        # every window of the traffic (the same way in both runs); only this line's window stays open.
        for p, value in flush_lines(traffic, log_parts):
            send(None, p, value)
        left = producer.flush(600)
        if left:
            delivery_errors.append(f"{left} lines not delivered")
        traffic_done.set()

    th = threading.Thread(target=traffic_loop, daemon=True)
    th.start()

    # -- faults (chaos) and labels (both), in this thread ------------------------------------
    label_times = [opts.traffic_s * f for f in (0.3, 0.6, 0.95)]
    events = sorted([(f.at, "fault", f) for f in schedule if infra and f.kind in INFRA]
                    + [(t, "label", None) for t in label_times], key=lambda e: e[0])
    label_threads = []
    for at, what, f in events:
        while time.monotonic() - t_traffic < at:
            time.sleep(0.1)
        if what == "label":
            label_threads.append(threading.Thread(target=labeller.mark_some, daemon=True))
            label_threads[-1].start()
            continue
        rec = {"kind": f.kind, "target": f.target, "scheduled": f.at, "start": round(time.monotonic() - t_run, 2)}
        if f.kind == "kill":
            w = by_name[f.target]
            with w.lock:
                w.kill9()
                time.sleep(f.duration)
                w.start()
        elif f.kind == "broker_stall":
            os.kill(broker._proc.pid, signal.SIGSTOP)
            time.sleep(f.duration)
            os.kill(broker._proc.pid, signal.SIGCONT)
        elif f.kind == "redis_restart_empty":
            rec["redis_keys_before"] = _safe(redis_srv.keys)
            redis_srv.kill_empty()
            time.sleep(f.duration)
            redis_srv.start()
        elif f.kind == "redis_restart_with_data":
            rec["redis_keys_before"] = _safe(redis_srv.keys)
            redis_srv.shutdown_saving()
            time.sleep(f.duration)
            redis_srv.start()
            rec["redis_keys_after"] = _safe(redis_srv.keys)
        elif f.kind == "rolling_restart":
            rec["shutdowns"] = []
            rec["assigned_after_s"] = {}
            for w in workers:  # as a rolling update with readiness: the next one goes when this one has partitions
                with w.lock:
                    rec["shutdowns"].append(w.sigterm("rolling restart", opts.stop_timeout_s))
                    w.start()
                rec["assigned_after_s"][w.name] = w.wait_assigned(opts.ready_timeout_s)
                time.sleep(opts.rolling_gap_s)
        rec["end"] = round(time.monotonic() - t_run, 2)
        fault_log.append(rec)
        log(f"{name}: {f.kind} {f.target or ''} {rec['start']}-{rec['end']} s")

    th.join()
    for t in label_threads:
        t.join(120)
    log(f"{name}: traffic done at {time.monotonic() - t_run:.0f} s ({sum(produced.values())} messages, "
        f"{len(delivery_errors)} delivery errors); draining")
    drained = _drain(mon, produced, opts)
    mon.supervise = False
    for w in workers:  # the final stop: all at once, each exit timed
        w.expected_down = True
        w.sample()
    threads = [threading.Thread(target=w.sigterm, args=("final stop", opts.stop_timeout_s)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    mon.close()
    wall = time.monotonic() - t_run
    log(f"{name}: workers stopped; reading topics")

    from patrol.cli.labels_io import read_messages

    def read(topic):
        return [m.value() for m in read_messages(conf, topic, idle_timeout=60)]

    def records(topic, kinds):
        """JSON records of ``kinds``; anything else (e.g. the detect workers' fences) counted by kind."""
        out, other = [], Counter()
        for v in read(topic):
            try:
                r = json.loads(v)
            except ValueError:
                other["not json"] += 1
                continue
            if isinstance(r, dict) and r.get("kind") in kinds:
                out.append(r)
            else:
                other[str(r.get("kind") if isinstance(r, dict) else type(r).__name__)] += 1
        if other:
            log(f"{name}: {topic}: skipped {dict(other)}")
        return out

    points = records(s.topics.metrics, ("metric_point",))
    anomalies, incidents = [], []
    for r in records(s.topics.anomalies, ("anomaly", "incident")):
        (anomalies if r.get("kind") == "anomaly" else incidents).append(r)
    for r in incidents:  # an incident event's id: (incident, event, anomalies so far), as the worker's header
        from patrol.records import record_id
        r["event_id"] = record_id(r["id"], r["event"], r["anomalies"])
    dls = []
    for v in read(s.topics.dlq):
        try:
            dls.append(json.loads(v))
        except ValueError:
            dls.append({"code": "undecodable_dead_letter", "reason": repr(v[:80])})
    labels_found = [json.loads(v)["id"] for v in read(s.topics.labels)]
    producer.flush(5)
    broker.stop()
    redis_srv.stop()
    workers_rep = {w.name: {"starts": w.starts, "peak_rss_mb": round(w.peak_rss_mb, 1), "shutdowns": w.shutdowns,
                            "crashes": w.crashes} for w in workers}
    return RunResult(name, points, anomalies, incidents, dls, labeller.published, labels_found, fault_log,
                     mon.samples, workers_rep, round(wall, 1), drained, str(logdir)), labeller.errors, delivery_errors


def _safe(fn):
    try:
        return fn()
    except Exception as exc:
        return f"error: {exc}"


def _drain(mon: Monitor, produced: dict[int, int], opts) -> bool:
    """Wait until preagg committed every produced line but the flush lines, and output and commits
    were still for ``opts.still_s`` seconds (or ``opts.drain_timeout_s`` passed)."""
    deadline = time.monotonic() + opts.drain_timeout_s
    still_since, last = None, None
    while time.monotonic() < deadline:
        time.sleep(1.0)
        if not mon.samples:
            continue
        s = mon.samples[-1]
        pre = s["preagg_committed"]
        # the flush line's window stays open (nothing after it): committed up to it is all
        pre_done = pre is not None and all(pre.get(p, 0) >= e - 1 for p, e in produced.items())
        state = (s["metrics"], s["anomalies"], json.dumps(s["detect_committed"], sort_keys=True),
                 json.dumps(pre, sort_keys=True))
        if pre_done and state == last:
            still_since = still_since or time.monotonic()
            if time.monotonic() - still_since >= opts.still_s:
                return True
        else:
            still_since = None
        last = state
    log(f"drain timed out: last sample {mon.samples[-1] if mon.samples else None}")
    return False


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
POINT_FIELDS = ("value", "count")
ANOMALY_FIELDS = ("observed", "score", "severity", "model_version", "incident_id")


def report(ref: RunResult, chaos: RunResult, traffic: Traffic, schedule: list[Fault], opts) -> dict:
    from patrol.sim.evaluation import evaluate

    def ev(run: RunResult) -> dict:
        e = evaluate(traffic.truth, run.anomalies, traffic.sim_start, traffic.sim_end)
        return {"found": e.found, "truth": len(e.incidents), "false_anomalies_per_h": round(e.false_per_hour, 2),
                "false_groups_per_h": round(e.false_groups_per_hour, 2),
                "missed": [i.id for i in e.incidents if not i.found][:10]}

    recov = []
    for f in chaos.faults:
        if "start" not in f:
            continue
        recov.append({"fault": f["kind"], "target": f.get("target"), "start_s": f["start"], "fault_end_s": f["end"],
                      **recovery(chaos.samples, f["start"], f["end"]),
                      # the same wall-clock span in the fault-free run: what catching up costs anyway
                      "reference": recovery(ref.samples, f["start"], f["end"])})
    series = {p["series"] for p in ref.points}
    shutdowns = [d for w in chaos.workers.values() for d in w["shutdowns"]] + \
                [d for w in ref.workers.values() for d in w["shutdowns"]]
    secs = [d["seconds"] for d in shutdowns if d.get("seconds") is not None]
    out = {
        "benchmark": "chaos",
        "options": {k: v for k, v in vars(opts).items() if k != "json"},
        "traffic": {"lines": len(traffic.lines), "estates": traffic.estates, "sim_hours": opts.hours,
                    "series_in_reference": len(series), "truth_incidents": len(traffic.truth)},
        "schedule": [asdict(f) for f in schedule],
        "points": compare(ref.points, chaos.points, POINT_FIELDS),
        "anomalies": compare(ref.anomalies, chaos.anomalies, ANOMALY_FIELDS),
        "incident_events": compare([{**r, "id": r["event_id"]} for r in ref.incidents],
                                   [{**r, "id": r["event_id"]} for r in chaos.incidents], ("severity", "series")),
        "incidents_vs_truth": {"reference": ev(ref), "chaos": ev(chaos)},
        "dead_letters": {"reference": dead_letter_summary(ref.dead_letters),
                         "chaos": dead_letter_summary(chaos.dead_letters)},
        "labels": {run.name: {"published": len(run.labels_published),
                              "lost": len(set(run.labels_published) - set(run.labels_found))}
                   for run in (ref, chaos)},
        "recovery": recov,
        "shutdown_s": {"max": max(secs) if secs else None, "all": shutdowns},
        "peak_rss_mb": {run.name: {n: w["peak_rss_mb"] for n, w in run.workers.items()} for run in (ref, chaos)},
        "worker_starts": {n: w["starts"] for n, w in chaos.workers.items()},
        # workers that exited on their own (restarted by the benchmark as a supervisor would)
        "crashes": {run.name: [{"worker": n, **c} for n, w in run.workers.items() for c in w["crashes"]]
                    for run in (ref, chaos)},
        "wall_s": {"reference": ref.wall_s, "chaos": chaos.wall_s},
        "drained": {"reference": ref.drained, "chaos": chaos.drained},
        "logs": {"reference": ref.logdir, "chaos": chaos.logdir},
        "load_avg": os.getloadavg(),
    }
    out["ok"] = {"lost_points": out["points"]["lost"] == 0, "lost_anomalies": out["anomalies"]["lost"] == 0,
                 "labels": all(v["lost"] == 0 for v in out["labels"].values()),
                 "shutdown_under_30s": bool(secs) and max(secs) < 30,
                 "no_crashes": not any(out["crashes"].values())}
    return out


QUICK = {"hours": 1.0, "series": 2800, "traffic_s": 80.0, "kill_every": 15.0, "stall_s": 10.0}
FULL = {"hours": 2.0, "series": 20000, "traffic_s": 240.0, "kill_every": 25.0, "stall_s": 30.0}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write the JSON report here")
    ap.add_argument("--quick", action="store_true", help=f"development size: {QUICK}")
    ap.add_argument("--hours", type=float, help=f"simulated hours (default {FULL['hours']})")
    ap.add_argument("--series", type=int, help=f"about this many series (default {FULL['series']})")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--traffic-s", type=float, help=f"wall seconds over which the traffic is sent (default {FULL['traffic_s']})")
    ap.add_argument("--kill-every", type=float, help="seconds between kill -9 of a random worker")
    ap.add_argument("--stall-s", type=float, help="seconds the broker is stopped (SIGSTOP)")
    ap.add_argument("--faults", default=",".join(INFRA),
                    help=f"infrastructure faults to run in the chaos run, comma-separated (default all: {','.join(INFRA)})")
    ap.add_argument("--checkpoint-s", type=float, default=10.0, help="detect checkpoint interval")
    ap.add_argument("--warmup-s", type=float, default=8.0, help="wait for the workers to join before the traffic")
    ap.add_argument("--rolling-gap-s", type=float, default=1.0, help="pause between workers in the rolling restart")
    ap.add_argument("--ready-timeout-s", type=float, default=60.0,
                    help="rolling restart: wait this long for a restarted worker's partition assignment")
    ap.add_argument("--stop-timeout-s", type=float, default=300.0, help="SIGKILL a worker that has not exited by then")
    ap.add_argument("--still-s", type=float, default=25.0, help="drained: output and commits still this long")
    ap.add_argument("--drain-timeout-s", type=float, default=240.0)
    ap.add_argument("--clean", action="store_true", help="remove the work directory (worker logs) at the end")
    opts = ap.parse_args(argv)
    size = QUICK if opts.quick else FULL
    for k, v in size.items():
        if getattr(opts, k) is None:
            setattr(opts, k, v)
    workdir = Path(tempfile.mkdtemp(prefix="patrol-chaos-"))
    t0 = time.monotonic()
    try:
        traffic = build_traffic(opts.hours, opts.series, opts.seed, workdir)
        log(f"traffic: {len(traffic.lines)} lines, {traffic.estates} estates, {len(traffic.truth)} incidents "
            f"({time.monotonic() - t0:.0f} s)")
        rolling_est = 6 * (opts.rolling_gap_s + 8)
        wanted = {k.strip() for k in opts.faults.split(",") if k.strip()}
        if wanted - set(INFRA):
            ap.error(f"unknown faults {sorted(wanted - set(INFRA))}: choose from {', '.join(INFRA)}")
        schedule = [f for f in build_schedule(opts.traffic_s, opts.seed, worker_names(), opts.kill_every, opts.stall_s,
                                              rolling_s=rolling_est) if f.kind in INPUT or f.kind in wanted]
        ref, ref_label_errs, ref_deliv = run_pipeline("reference", traffic, schedule, opts, workdir)
        chaos, chaos_label_errs, chaos_deliv = run_pipeline("chaos", traffic, schedule, opts, workdir)
        out = report(ref, chaos, traffic, schedule, opts)
        out["label_errors"] = {"reference": ref_label_errs[:3], "chaos": chaos_label_errs[:3]}
        out["traffic_delivery_errors"] = {"reference": ref_deliv[:3], "chaos": chaos_deliv[:3]}
        out["total_wall_s"] = round(time.monotonic() - t0, 1)
    finally:
        if opts.clean:
            shutil.rmtree(workdir, ignore_errors=True)
    text = json.dumps(out, indent=2, default=str)
    if opts.json:
        Path(opts.json).parent.mkdir(parents=True, exist_ok=True)
        Path(opts.json).write_text(text + "\n")
    print(text)
    return out


if __name__ == "__main__":
    main()
