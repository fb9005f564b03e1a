"""End-to-end benchmark: an access-log file through the real stages, judged against a truth file.

    python -m benchmarks.pipeline --logs FILE --truth FILE --json OUT [--label-first K]
    python -m benchmarks.pipeline            # generates 3 simulated days of 5 services and runs them

The log lines go, as fast as they go, into the logs topic of an embedded broker
(:class:`sim.broker.EmbeddedBroker`) with :func:`streams.topics.produce_waiting`, keyed by the
upstream name as a shipper keys them (``--unkeyed``: no key). Then ``patrol run preagg`` and
``patrol run detect`` (the CLI itself, as child processes) run concurrently on them, the detect
stage's state in a real ``redis-server`` (:class:`sim.redis_server.LocalRedis`); preagg stops
after ``--preagg-idle`` seconds without input (publishing the windows event time has closed;
each partition's newest window stays open), detect after ``--detect-idle``
seconds without points, and is started again if it stopped before it had read every point. The
anomaly and incident records of the anomalies topic are scored by :mod:`benchmarks.pipeline_score`.

``--label-first K``: the logs are fed in two phases split at ``--label-days`` after the truth start.
After the first phase an operator labels, for each series, the first K anomalies (true when it lies
in a truth window of its service widened by 10 min, false otherwise) with the code path of
``patrol label mark`` (:func:`models.labels.label_for`, :func:`cli.labels_io.publish_labels`);
the detect workers, restarted for the second phase, read the labels topic. Two detect consumer
groups (own Redis prefix, anomalies and labels topics) read the same metric points, both stopped and
restarted at the split, so they differ only by the labels: ``unlabeled`` (the main figures) and
``labeled``. The JSON compares their false counts (and found incidents) after the labeling period.

Data for development: with no ``--logs``, ``patrol generate``'s engine (:mod:`sim.generator`)
writes ``--days`` simulated days of ``--services`` services (default incident mix) and its ground
truth is converted (:func:`benchmarks.pipeline_score.truth_from_ground_truth`); ``--make-data DIR``
only writes them. Progress goes to stderr; see docs/pipeline-benchmark.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import GEN_START
from benchmarks.pipeline_score import DAY, in_truth, score, truth_from_ground_truth, validate_truth

ROOT = Path(__file__).resolve().parents[1]
# Catalog services in the order --services takes them: the first is browsable (404 scans need one),
# the second has the login endpoint (brute force needs one), the rest the busiest others.
SERVICE_ORDER = ("storefront", "auth", "images", "catalog", "cart-api", "search", "checkout", "wordpress", "grafana")
VARIANTS = ("unlabeled", "labeled")

# ingress-nginx default format: the upstream name is the bracketed field after the user agent,
# request length and request time; the time is the first bracketed field.
_UPSTREAM = re.compile(rb'" \S+ \S+ \[([^\]\s]*)\] \[')
_TIME = re.compile(rb"\[(\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\]")


def log(msg: str) -> None:
    print(f"[pipeline] {msg}", file=sys.stderr, flush=True)


# -- data -------------------------------------------------------------------------------------------
def make_data(out_dir: Path, days: float, services: int, base_rate: float, seed: int, start: str) -> tuple[Path, Path, int]:
    """Generated logs (``access.log``) and truth (``truth.json``) in ``out_dir``; returns paths and lines."""
    from patrol.sim.generator import generate_chunks, resolve_start
    from patrol.sim.generator.catalog import SERVICES

    if not 2 <= services <= len(SERVICE_ORDER):
        raise SystemExit(f"--services must be 2..{len(SERVICE_ORDER)} (the generator's catalog)")
    by_name = {s.name: s for s in SERVICES}
    estate = tuple(by_name[n] for n in SERVICE_ORDER[:services])
    out_dir.mkdir(parents=True, exist_ok=True)
    logs, gt, truth = out_dir / "access.log", out_dir / "ground-truth.jsonl", out_dir / "truth.json"
    n = 0
    with open(logs, "wb") as fh:
        for chunk in generate_chunks(seed=seed, start=start, incidents="default", duration=days * DAY,
                                     ground_truth=str(gt), base_rate=base_rate, services=estate):
            fh.write(b"\n".join(chunk.lines) + b"\n")
            n += len(chunk)
    records = [json.loads(x) for x in gt.read_text().splitlines() if x.strip()]
    t0 = resolve_start(start)
    truth.write_text(json.dumps(truth_from_ground_truth(records, t0, days), indent=1) + "\n")
    return logs, truth, n


# -- feeding ----------------------------------------------------------------------------------------
class LineTimes:
    """Event time of an ingress-nginx/combined line (second resolution, parsed once per second)."""

    def __init__(self):
        from patrol.preagg.parse.times import clf_time

        self._parse, self._cache = clf_time, {}

    def __call__(self, line: bytes) -> float | None:
        m = _TIME.search(line, 0, 120)
        if m is None:
            return None
        ts = m.group(1)
        t = self._cache.get(ts)
        if t is None:
            if len(self._cache) > 100_000:
                self._cache.clear()
            t = self._cache[ts] = self._parse(ts.decode())
        return t


@dataclass
class Fed:
    lines: int = 0
    bytes: int = 0
    unkeyed: int = 0        # lines without a recognisable upstream name (produced without a key)
    offset: int = 0         # byte offset in the file where the next phase starts
    wall_s: float = 0.0
    cpu_s: float = 0.0
    upstreams: set = field(default_factory=set)


def feed(bootstrap: str, topic: str, path: Path, keyed: bool = True, offset: int = 0, until: float | None = None) -> Fed:
    """Produce the lines of ``path`` from byte ``offset`` into ``topic`` until the first line whose
    event time is ``>= until`` (all of them when None); key = upstream name unless ``keyed`` is off."""
    from confluent_kafka import Producer

    from patrol.streams.topics import produce_waiting

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 1_000_000,
                  "compression.type": "lz4", "queue.buffering.max.messages": 1_000_000})
    errors: list[str] = []

    def delivered(err, msg):
        if err is not None:
            errors.append(str(err))

    times = LineTimes() if until is not None else None
    fed, t0, c0 = Fed(offset=offset), time.monotonic(), time.process_time()
    with open(path, "rb") as fh:
        fh.seek(offset)
        for raw in fh:
            line = raw.rstrip(b"\r\n")
            if times is not None:
                t = times(line)
                if t is not None and t >= until:
                    break
            fed.offset += len(raw)
            if not line:
                continue
            m = _UPSTREAM.search(line)
            key = m.group(1) if m else None
            if key is not None:
                fed.upstreams.add(key)
            else:
                fed.unkeyed += 1
            produce_waiting(p, topic, line, key=key if keyed else None, on_delivery=delivered)
            fed.lines += 1
            fed.bytes += len(line)
            if fed.lines % 20000 == 0:
                p.poll(0)
    left = p.flush(120)
    if left or errors:
        raise RuntimeError(f"feeding {path}: {left} lines not delivered, {len(errors)} delivery errors {errors[:2]}")
    fed.wall_s, fed.cpu_s = time.monotonic() - t0, time.process_time() - c0
    return fed


# -- stages -----------------------------------------------------------------------------------------
class Child:
    """A ``patrol`` subcommand run as a child process; its CPU time from ``wait4``."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.out = open(log_dir / f"{name}.out", "ab")
        self.err_path = log_dir / f"{name}.log"
        self.err = open(self.err_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "patrol.cli.app", *argv], stdout=self.out, stderr=self.err,
                                     stdin=subprocess.DEVNULL, env=env, cwd=ROOT, start_new_session=True)
        self.rc: int | None = None
        self.cpu_s = 0.0
        self.started = time.monotonic()
        self.wall_s = 0.0

    def poll(self) -> int | None:
        if self.rc is None:
            pid, status, ru = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                self.rc = os.waitstatus_to_exitcode(status)
                self.proc.returncode = self.rc
                self.cpu_s = ru.ru_utime + ru.ru_stime
                self.wall_s = time.monotonic() - self.started
                self.out.close()
                self.err.close()
        return self.rc

    def kill(self) -> None:
        if self.poll() is None:
            self.proc.kill()
            for _ in range(100):
                if self.poll() is not None:
                    break
                time.sleep(0.05)

    def tail(self, n: int = 1500) -> str:
        return self.err_path.read_text(errors="replace")[-n:]


@dataclass
class Variant:
    """One detect consumer group with its own state, anomalies topic and labels topic."""

    name: str
    runs: int = 0
    restarts: int = 0
    cpu_s: float = 0.0
    points: int = 0
    anomalies: int = 0
    duplicates: int = 0
    dead_letters: int = 0

    @property
    def group(self) -> str:
        return f"bench-detect-{self.name}"

    def topics(self) -> dict[str, str]:
        return {"anomalies": f"anomalies-{self.name}", "labels": f"labels-{self.name}"}


_DETECT_STOP = re.compile(r"detect stopped: (\d+) points, (\d+) anomalies, (\d+) duplicates\s+skipped, (\d+)\s+dead")


class Pipeline:
    """Broker, redis-server, topics, and the preagg/detect children of each phase."""

    def __init__(self, args, variants: list[str], log_dir: Path):
        from patrol.sim.broker import EmbeddedBroker
        from patrol.sim.redis_server import LocalRedis

        self.args, self.log_dir = args, log_dir
        self.broker = EmbeddedBroker().start()
        self.redis = LocalRedis().start()
        self.variants = {v: Variant(v) for v in variants}
        self.preagg: list[dict] = []
        self._settings_topics()

    def _settings_topics(self) -> None:
        from patrol.streams.config import load_settings
        from patrol.streams.topics import create_topics, ensure_topic

        self.s = load_settings(overrides={"kafka.bootstrap_servers": self.broker.bootstrap})
        self.conf = self.s.kafka.client_config()
        bad = [r for r in create_topics(self.s) if r.status == "error"]
        if bad:
            raise RuntimeError(f"topics not created: {bad}")
        t = self.s.topics
        for v in self.variants.values():
            vt = v.topics()
            ensure_topic(self.conf, vt["anomalies"], t.partitions.get("anomalies", 3), {"cleanup.policy": "delete"})
            ensure_topic(self.conf, vt["labels"], 1, {"cleanup.policy": "compact"})

    def close(self) -> None:
        self.redis.stop()
        self.broker.stop()

    def env(self, variant: Variant | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PATROL_")}
        env.update({"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                    "PATROL_KAFKA__BOOTSTRAP_SERVERS": self.broker.bootstrap, "PATROL_REDIS__URL": self.redis.url,
                    "PATROL_KAFKA__SESSION_TIMEOUT_MS": "6000", "PATROL_SERVICE__LOG_LEVEL": "WARNING",
                    # detect waits for the window progress this preagg group commits (its state-open side group)
                    "PATROL_DETECT__PREAGG_GROUP": "bench-preagg",
                    "COLUMNS": "400"})  # rich wraps the detect summary line at the terminal width
        if self.args.format:
            env["PATROL_PREAGG__LOG_FORMAT"] = self.args.format
        if variant is not None:
            t = variant.topics()
            env.update({"PATROL_REDIS__KEY_PREFIX": f"{variant.name}:", "PATROL_TOPICS__ANOMALIES": t["anomalies"],
                        "PATROL_TOPICS__LABELS": t["labels"]})
        return env

    def _start_detect(self, v: Variant, phase: int) -> Child:
        v.runs += 1
        return Child(f"detect-{v.name}-{phase}-{v.runs}",
                     ["run", "detect", "--group", v.group, "--max-idle", str(self.args.detect_idle)],
                     self.env(v), self.log_dir)

    def drained(self, group: str) -> bool:
        """Has ``group`` committed every metric point (committed offset at the end of each partition)?"""
        from confluent_kafka import Consumer, TopicPartition

        from patrol.streams.topics import watermarks

        topic = self.s.topics.metrics
        n = self.s.topics.partitions.get("metrics", 1)
        ends = watermarks(self.conf, [(topic, p) for p in range(n)])
        c = Consumer({**self.conf, "group.id": group, "enable.auto.commit": False})
        try:
            committed = {tp.partition: tp.offset for tp in c.committed([TopicPartition(topic, p) for p in range(n)], timeout=10)}
        finally:
            c.close()
        return all(committed.get(p, -1) >= hi for (_t, p), (lo, hi) in ends.items() if hi > lo)

    def run_phase(self, phase: int) -> dict:
        """preagg and every variant's detect until preagg stopped and each detect group read everything."""
        t0 = time.monotonic()
        pre = Child(f"preagg-{phase}", ["run", "preagg", "--group", "bench-preagg", "--max-idle", str(self.args.preagg_idle)],
                    self.env(), self.log_dir)
        running = {name: self._start_detect(v, phase) for name, v in self.variants.items()}
        deadline = t0 + self.args.timeout
        try:
            while running or pre.rc is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"phase {phase} did not finish within --timeout {self.args.timeout:g} s")
                if pre.poll() not in (None, 0):
                    raise RuntimeError(f"patrol run preagg exited {pre.rc}:\n{pre.tail()}")
                for name, ch in list(running.items()):
                    if ch.poll() is None:
                        continue
                    if ch.rc != 0:
                        raise RuntimeError(f"patrol run detect ({name}) exited {ch.rc}:\n{ch.tail()}")
                    v = self.variants[name]
                    self._account(v, ch)
                    if pre.rc is None or not self.drained(v.group):
                        v.restarts += 1  # idle before preagg's last windows: start it again (resumes from commits)
                        running[name] = self._start_detect(v, phase)
                    else:
                        del running[name]
                time.sleep(0.25)
        finally:
            pre.kill()
            for ch in running.values():
                ch.kill()
        res = json.loads(Path(pre.out.name).read_text().strip().splitlines()[-1])
        res.update(child_cpu_s=round(pre.cpu_s, 2), child_wall_s=round(pre.wall_s, 2), phase_wall_s=round(time.monotonic() - t0, 2))
        self.preagg.append(res)
        return res

    def _account(self, v: Variant, ch: Child) -> None:
        v.cpu_s += ch.cpu_s
        m = _DETECT_STOP.search(ch.tail(4000))
        if m is None:
            raise RuntimeError(f"detect ({v.name}) printed no summary:\n{ch.tail()}")
        v.points += int(m.group(1))
        v.anomalies += int(m.group(2))
        v.duplicates += int(m.group(3))
        v.dead_letters += int(m.group(4))

    # -- results ------------------------------------------------------------------------------------
    def records(self, v: Variant) -> tuple[list, list, dict]:
        """Anomalies and incidents of ``v`` (as dicts, the last record of an id winning) and the Anomaly objects."""
        from patrol.cli.labels_io import read_records
        from patrol.records import Anomaly, Incident

        recs = read_records(self.conf, v.topics()["anomalies"], (Anomaly, Incident))
        objs = {r.id: r for r in recs if isinstance(r, Anomaly)}
        anomalies = [{"id": a.id, "series": a.series, "metric": a.metric, "dims": a.dims, "window_start": a.window_start,
                      "window_end": a.window_end, "detectors": a.detectors, "incident_id": a.incident_id}
                     for a in objs.values()]
        incidents = [{"id": i.id, "event": i.event, "service": i.service, "opened": i.opened, "series": i.series}
                     for i in recs if isinstance(i, Incident)]
        return anomalies, incidents, objs

    def dead_letters(self) -> dict:
        """Dead letters by stage topic and code (bad lines, late events, rejected points)."""
        from collections import Counter

        from patrol.cli.labels_io import read_records
        from patrol.records import DeadLetter

        def scope(d) -> str:  # a rejected metric point's scope (global, service, route); lines: "-"
            try:
                return json.loads(d.raw_bytes()).get("dims", {}).get("scope", "-")
            except ValueError:
                return "-"

        recs = read_records(self.conf, self.s.topics.dlq, (DeadLetter,))
        return dict(Counter(f"{d.source_topic or '-'}:{d.code}:{scope(d)}" for d in recs).most_common())

    def series_state(self, v: Variant) -> dict:
        """Series and services the detect stage holds state for, and how many labels retrained."""
        from patrol.models.store import StateStore
        from benchmarks.pipeline_score import dims_of_series

        store = StateStore(self.redis.url, f"{v.name}:")
        series = [s for s in store.list_series() if not s.startswith("__incidents__")]
        services = {(d.get("namespace"), d["service"]) for d in map(dims_of_series, series) if d.get("service")}
        states = store.load_many(series)
        return {"series": len(series), "services": len(services),
                "series_retrained": sum(1 for st in states.values() if st.model_version > 1)}


# -- labels -----------------------------------------------------------------------------------------
def label_first(pipe: Pipeline, v: Variant, truth: dict, k: int, since: float, before: float) -> dict:
    """The operator: the first ``k`` anomalies of each series with a window start in ``[since, before)``,
    labeled from the truth, published as ``patrol label mark`` publishes them.

    ``since`` is the end of the warm-up: the feedback model ignores labels on alerts raised while a
    series was younger than a day (``models.feedback.WARMUP_S``), so the operator starts after it."""
    from datetime import datetime, timezone

    from patrol.models.labels import label_for
    from patrol.cli.labels_io import publish_labels

    _, _, objs = pipe.records(v)
    by_series: dict[str, list] = {}
    for a in sorted(objs.values(), key=lambda a: a.window_start):
        if since <= a.window_start.timestamp() < before:
            by_series.setdefault(a.series, []).append(a)
    labels, verdicts = [], {"true": 0, "false": 0}
    now = datetime.now(timezone.utc)
    for series, anoms in by_series.items():
        for a in anoms[:k]:
            real = in_truth(truth, a.dims.get("namespace"), a.dims.get("service"), a.window_start.timestamp(),
                            a.window_end.timestamp())
            verdict = "true" if real else "false"
            verdicts[verdict] += 1
            labels.append(label_for(a, verdict, now, note="pipeline benchmark: from the truth file",
                                    author="pipeline-benchmark"))
    if labels:
        publish_labels(pipe.conf, v.topics()["labels"], labels)
    return {"k": k, "published": len(labels), **verdicts, "series_labeled": len(by_series)}


# -- main -------------------------------------------------------------------------------------------
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--logs", type=Path, help="access-log file (default: generate one)")
    ap.add_argument("--truth", type=Path, help="truth file {start, days, incidents} (with --logs)")
    ap.add_argument("--json", type=Path, help="write the JSON result here too")
    ap.add_argument("--format", help="log format for preagg (preagg.log_format; default ingress-nginx)")
    ap.add_argument("--unkeyed", action="store_true", help="produce the lines without a key (default: key = upstream name)")
    ap.add_argument("--label-first", type=int, default=0, metavar="K", help="label the first K anomalies of each series")
    ap.add_argument("--label-days", type=float, default=2.0,
                    help="labels go on anomalies from the warm-up's end to this many days after the truth start; "
                         "the labeled/unlabeled comparison covers the days after (default 2)")
    ap.add_argument("--warmup-days", type=float, default=1.0, help="days left out of the false counts (default 1)")
    g = ap.add_argument_group("generated data (no --logs)")
    g.add_argument("--days", type=float, default=3.0, help="simulated days (default 3)")
    g.add_argument("--services", type=int, default=5, help="services of the generator's catalog (2-9, default 5)")
    g.add_argument("--base-rate", type=float, default=20.0, help="requests per simulated second, all services (default 20)")
    g.add_argument("--seed", type=int, default=7)
    g.add_argument("--start", default=GEN_START, help="simulated start (ISO; default a fixed past Monday)")
    g.add_argument("--make-data", type=Path, metavar="DIR", help="only write DIR/access.log and DIR/truth.json")
    g.add_argument("--convert-truth", type=Path, metavar="GT", help="only convert a `patrol generate --ground-truth` "
                   "file to a truth file (needs --start, --days; writes --truth-out or stdout)")
    g.add_argument("--truth-out", type=Path)
    r = ap.add_argument_group("running")
    r.add_argument("--preagg-idle", type=float, default=5.0, help="preagg stops after this many idle seconds")
    r.add_argument("--detect-idle", type=float, default=20.0, help="detect stops after this many idle seconds")
    r.add_argument("--timeout", type=float, default=3600.0, help="fail a phase that takes longer (seconds)")
    r.add_argument("--keep", type=Path, metavar="DIR", help="keep generated data, worker logs and the anomaly and "
                   "incident records here")
    return ap.parse_args(argv)


def run(args) -> dict:
    t_all = time.monotonic()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="patrol-pipeline-"))
    work.mkdir(parents=True, exist_ok=True)
    gen = None
    if args.logs is None:
        g0 = time.monotonic()
        logs, truth_path, n = make_data(work / "data", args.days, args.services, args.base_rate, args.seed, args.start)
        gen = {"days": args.days, "services": args.services, "base_rate": args.base_rate, "seed": args.seed,
               "start": args.start, "lines": n, "wall_s": round(time.monotonic() - g0, 2)}
        log(f"generated {n} lines, {args.days:g} days of {args.services} services in {gen['wall_s']} s")
    else:
        if args.truth is None:
            raise SystemExit("--logs needs --truth")
        logs, truth_path = args.logs, args.truth
    truth = validate_truth(json.loads(Path(truth_path).read_text()))
    labeling = args.label_first > 0
    variants = list(VARIANTS) if labeling else ["unlabeled"]
    # whole minutes: a split inside a 60 s window would leave the window's second-phase lines late
    split = truth["start"] + (args.label_days * DAY) // 60 * 60 if labeling else None
    if labeling and not (args.warmup_days < args.label_days < truth["days"]):
        raise SystemExit("--label-first needs --warmup-days < --label-days < the truth's days")
    log_dir = work / "logs"
    log_dir.mkdir(exist_ok=True)
    pipe = Pipeline(args, variants, log_dir)
    out: dict = {"benchmark": "pipeline", "logs": str(logs), "truth": str(truth_path), "keyed": not args.unkeyed,
                 "truth_incidents": len(truth["incidents"]), "generated": gen}
    try:
        fed_all, phases, label_res = [], [], None
        offset = 0
        for phase, until in enumerate([split, None] if labeling else [None]):
            fed = feed(pipe.broker.bootstrap, pipe.s.topics.logs, logs, keyed=not args.unkeyed, offset=offset, until=until)
            offset = fed.offset
            fed_all.append(fed)
            log(f"phase {phase}: fed {fed.lines} lines in {fed.wall_s:.1f} s; running preagg + detect ({', '.join(variants)})")
            phases.append(pipe.run_phase(phase))
            log(f"phase {phase}: stages done in {phases[-1]['phase_wall_s']} s")
            if labeling and phase == 0:
                label_res = label_first(pipe, pipe.variants["labeled"], truth, args.label_first,
                                        truth["start"] + args.warmup_days * DAY, split)
                log(f"labels: {label_res}")
        results = {}
        for name, v in pipe.variants.items():
            anomalies, incidents, objs = pipe.records(v)
            state = pipe.series_state(v)
            results[name] = (anomalies, incidents, state)
            if args.keep:  # the records themselves, for looking into the false alarms
                with open(work / f"anomalies-{name}.jsonl", "wb") as fh:
                    fh.writelines(a.to_bytes() + b"\n" for a in objs.values())
                (work / f"incidents-{name}.json").write_text(json.dumps(incidents, default=str) + "\n")
        anomalies, incidents, state = results["unlabeled"]
        main = score(truth, anomalies, incidents, state["services"], args.warmup_days)
        lines = sum(f.lines for f in fed_all)
        pre_cpu = sum(p["child_cpu_s"] for p in pipe.preagg)
        stages_wall = sum(p["phase_wall_s"] for p in pipe.preagg)
        out.update(main)
        out["anomalies"] = len(anomalies)
        out["incidents_opened"] = len({i["id"] for i in incidents if i["event"] == "opened"})
        out["series"] = state["series"]
        out["dead_letters"] = pipe.dead_letters()
        out["run"] = {
            "lines": lines, "unkeyed_lines": sum(f.unkeyed for f in fed_all),
            "upstreams": len(set().union(*(f.upstreams for f in fed_all))),
            "feed_wall_s": round(sum(f.wall_s for f in fed_all), 2),
            "feed_lines_per_s": round(lines / max(1e-9, sum(f.wall_s for f in fed_all))),
            "stages_wall_s": round(stages_wall, 2),
            "idle_tail_s": {"preagg": args.preagg_idle, "detect": args.detect_idle},
            "preagg": {"points": sum(p["points"] for p in pipe.preagg),
                       "dead_letters": sum(p["dead_letters"] for p in pipe.preagg),
                       "cpu_s": round(pre_cpu, 2), "lines_per_cpu_s": round(lines / max(1e-9, pre_cpu))},
            "detect": {name: {"points": v.points, "anomalies": v.anomalies, "duplicates": v.duplicates,
                              "dead_letters": v.dead_letters, "cpu_s": round(v.cpu_s, 2),
                              "points_per_cpu_s": round(v.points / max(1e-9, v.cpu_s)), "runs": v.runs,
                              "restarts_before_drained": v.restarts}
                       for name, v in pipe.variants.items()},
            "phases": len(phases),
        }
        if labeling:
            after = split
            lab = {}
            for name in VARIANTS:
                a, i, st = results[name]
                r = score(truth, a, i, st["services"], args.warmup_days, after=after)
                lab[name] = {k: r[k] for k in ("found", "false_incidents", "false_incidents_per_service_day",
                                               "false_anomalies", "false_anomalies_per_service_day", "evaluated",
                                               "false_sources")}
                lab[name]["series_retrained"] = st["series_retrained"]
            out["labels"] = {**label_res, "label_days": args.label_days, **lab}
    finally:
        pipe.close()
    out["wall_s"] = round(time.monotonic() - t_all, 2)
    out["work_dir"] = str(work) if args.keep else None
    out["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return out


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.convert_truth:
        from patrol.sim.generator import resolve_start

        recs = [json.loads(x) for x in args.convert_truth.read_text().splitlines() if x.strip()]
        text = json.dumps(truth_from_ground_truth(recs, resolve_start(args.start), args.days), indent=1) + "\n"
        (args.truth_out.write_text(text) if args.truth_out else sys.stdout.write(text))
        return
    if args.make_data:
        logs, truth, n = make_data(args.make_data, args.days, args.services, args.base_rate, args.seed, args.start)
        log(f"wrote {n} lines to {logs} and the truth to {truth}")
        return
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
