"""``patrol demo``: the whole pipeline on one machine, with a live view.

Starts (when not configured) the embedded Tansu broker and a local redis-server, creates the
topics, runs the traffic generator and the stream workers as child processes, and watches the
topics: what each stage moved per second, windows emitted, dead letters, and the latest anomalies.
Stops on Ctrl-C, SIGTERM or ``--duration`` and shuts every child down cleanly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Annotated, Optional

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from patrol.sim.broker import BrokerStartError, EmbeddedBroker
from patrol.streams.config import Settings
from patrol.sim.redis_server import LocalRedis, RedisStartError, redis_server_binary
from patrol.streams.topics import create_topics
from .stages import Stage, demo_stages

console = Console(soft_wrap=True)  # progress lines stay one line each when piped


@dataclass
class TopicWatch:
    """Message count and rate of one topic over time."""

    role: str
    name: str
    total: int = 0
    rate: float = 0.0
    _last: tuple[float, int] | None = None

    def sample(self, total: int) -> None:
        now = time.monotonic()
        if self._last is not None and now > self._last[0]:
            self.rate = (total - self._last[1]) / (now - self._last[0])
        self._last = (now, total)
        self.total = total


class EndWatcher:
    """High watermarks of many partitions, read from fetch responses.

    Tansu's ListOffsets under-reports the end of a partition (the last batch's base offset + 1);
    fetch responses carry the true high watermark, so this consumer follows the end of every
    partition (discarding what it fetches) and reports the cached watermarks.
    """

    def __init__(self, conf: dict, parts: dict[str, list[int]]):
        from confluent_kafka import Consumer, TopicPartition

        from patrol.streams.topics import watermarks

        self.tps = [TopicPartition(t, p) for t, ps in parts.items() for p in ps]
        marks = watermarks(conf, [(tp.topic, tp.partition) for tp in self.tps])
        self.low = {(t, p): lo for (t, p), (lo, _hi) in marks.items()}
        self.consumer = Consumer({**conf, "group.id": "patrol-demo-watch", "enable.auto.commit": False,
                                  "fetch.wait.max.ms": 100})
        self.consumer.assign([TopicPartition(tp.topic, tp.partition, marks[(tp.topic, tp.partition)][1]) for tp in self.tps])
        self.high = {k: hi for k, (_lo, hi) in marks.items()}

    def totals(self) -> dict[str, int]:
        while len(self.consumer.consume(10000, 0.05)) == 10000:
            pass
        for tp in self.tps:
            hi = self.consumer.get_watermark_offsets(tp, cached=True)[1]
            key = (tp.topic, tp.partition)
            if hi >= 0:
                self.high[key] = max(self.high[key], hi)
        out: dict[str, int] = {}
        for (t, p), hi in self.high.items():
            out[t] = out.get(t, 0) + max(0, hi - self.low[(t, p)])
        return out

    def close(self) -> None:
        self.consumer.close()


@dataclass
class DemoView:
    """What the live view shows; rendered as a rich table or as plain progress lines."""

    started: float = field(default_factory=time.monotonic)
    watches: list[TopicWatch] = field(default_factory=list)
    stages: list[Stage] = field(default_factory=list)
    anomalies: list[dict] = field(default_factory=list)
    all_records: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    truth_path: str | None = None
    sim_start: float = 0.0
    speedup: float = 1.0

    def evaluation(self):
        """Found / missed incidents and false alarms so far, from the generator's ground truth."""
        import json

        from patrol.sim.evaluation import evaluate

        if not self.truth_path or not os.path.exists(self.truth_path):
            return None
        with open(self.truth_path) as f:
            truth = [json.loads(line) for line in f if line.strip()]
        sim_now = self.sim_start + self.elapsed() * self.speedup
        # incidents still running (or just ended) are not judged yet: detection needs their windows closed
        judged = [t for t in truth if t["end_epoch"] + 600 <= sim_now]
        return evaluate(judged, self.all_records, self.sim_start, sim_now)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def render(self) -> Group:
        flow = Table(title=f"ingress-patrol demo — {self.elapsed():.0f}s", expand=False)
        flow.add_column("topic")
        flow.add_column("messages", justify="right")
        flow.add_column("per second", justify="right")
        for w in self.watches:
            flow.add_row(f"{w.name} ({w.role})", f"{w.total:,}", f"{w.rate:,.0f}")
        procs = Table(title="stages")
        procs.add_column("stage")
        procs.add_column("state")
        for st in self.stages:
            procs.add_row(st.name, st.state())
        parts = [flow, procs]
        if self.anomalies:
            an = Table(title="latest anomalies")
            for col in ("window", "series", "observed", "expected", "score", "dir"):
                an.add_column(col)
            for a in self.anomalies[-8:]:
                an.add_row(str(a.get("window_start", ""))[11:19], str(a.get("series", ""))[:60],
                           f"{a.get('observed', 0):.3g}", f"{a.get('expected', 0):.3g}",
                           f"{a.get('score', 0):.3f}", str(a.get("direction", "")))
            parts.append(an)
        ev = self.evaluation()
        if ev is not None and ev.incidents:
            tbl = Table(title="generator incidents (ground truth)")
            for col in ("incident", "service", "found", "delay"):
                tbl.add_column(col)
            for inc in ev.incidents[-8:]:
                tbl.add_row(inc.type, inc.service, "[green]yes" if inc.found else "[red]no",
                            f"{inc.delay_s / 60:.0f} min" if inc.delay_s is not None else "-")
            parts.append(tbl)
            parts.append(Text(ev.summary()))
        parts.extend(Text(n, style="dim") for n in self.notes)
        return Group(*parts)

    def line(self) -> str:
        flows = ", ".join(f"{w.role} {w.total:,} ({w.rate:,.0f}/s)" for w in self.watches if w.role != "labels")
        return f"[{self.elapsed():4.0f}s] {flows}"


def _anomaly_consumer(settings: Settings):
    from confluent_kafka import Consumer

    c = Consumer({**settings.kafka.client_config(), "group.id": f"patrol-demo-view-{os.getpid()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "session.timeout.ms": 6000})
    c.subscribe([settings.topics.anomalies])
    return c


def _poll_anomalies(consumer, view: DemoView) -> None:
    import json

    for msg in consumer.consume(500, 0.05):
        if msg.error() is None:
            try:
                rec = json.loads(msg.value())
            except ValueError:
                continue
            view.all_records.append(rec)
            if rec.get("kind") == "anomaly":
                view.anomalies.append(rec)
    del view.anomalies[:-100]
    del view.all_records[:-200_000]


def demo(
    duration: Annotated[Optional[float], typer.Option(help="Stop after this many wall seconds (env PATROL_DEMO_DURATION); default: until Ctrl-C.")] = None,
    rate: Annotated[float, typer.Option(help="Generator lines per wall second.")] = 5000.0,
    speedup: Annotated[float, typer.Option(help="Simulated seconds per wall second (traffic days in minutes).")] = 120.0,
    bootstrap: Annotated[Optional[str], typer.Option("--bootstrap", "-b", help="Use this broker instead of the embedded one.")] = None,
    interval: Annotated[float, typer.Option(help="Seconds between view refreshes.")] = 1.0,
) -> None:
    """Run the whole pipeline locally with a live view (embedded broker unless one is configured)."""
    from patrol.cli.app import settings as load

    if duration is None and os.environ.get("PATROL_DEMO_DURATION"):
        duration = float(os.environ["PATROL_DEMO_DURATION"])
    s = load(**{"kafka.bootstrap_servers": bootstrap})
    stop = {"flag": False}

    def _stop(*_):
        stop["flag"] = True

    signal.signal(signal.SIGTERM, _stop)
    view = DemoView()
    with ExitStack() as stack:
        if not s.kafka.bootstrap_servers:
            try:
                b = stack.enter_context(EmbeddedBroker())
            except BrokerStartError as exc:
                console.print(f"[red]error:[/] {exc}")
                raise typer.Exit(1) from None
            s.kafka.bootstrap_servers = b.bootstrap
            view.notes.append(f"embedded Tansu broker on {b.bootstrap} (in memory)")
        if s.redis.url is None:
            if redis_server_binary():
                try:
                    r = stack.enter_context(LocalRedis())
                    from pydantic import SecretStr

                    s.redis.url = SecretStr(r.url)
                    view.notes.append(f"local redis-server on {r.url}")
                except RedisStartError as exc:
                    view.notes.append(f"redis-server failed ({exc}); model state kept in process")
            else:
                view.notes.append("no redis-server installed: model state kept in process (apt-get install redis-server)")
        bad = [r for r in create_topics(s) if r.status == "error"]
        if bad:
            console.print(f"[red]error:[/] could not create topics on {s.kafka.bootstrap_servers}: {bad[0].detail}")
            raise typer.Exit(1)
        import tempfile
        from datetime import datetime, timezone

        today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        view.sim_start, view.speedup = today.timestamp(), speedup
        view.truth_path = stack.enter_context(tempfile.TemporaryDirectory(prefix="patrol-demo-")) + "/ground-truth.jsonl"
        view.stages = demo_stages(s, rate=rate, speedup=speedup, start=today.isoformat(), truth=view.truth_path)
        for st in view.stages:
            st.start()
            stack.callback(st.stop)
        from confluent_kafka.admin import AdminClient

        meta = AdminClient(s.kafka.client_config()).list_topics(timeout=10)
        parts = {name: list(meta.topics[name].partitions) for name in s.topics.roles().values() if name in meta.topics}
        view.watches = [TopicWatch(role, name) for role, name in s.topics.roles().items() if name in parts]
        watcher = EndWatcher(s.kafka.client_config(), parts)
        stack.callback(watcher.close)
        anomalies = _anomaly_consumer(s)
        stack.callback(anomalies.close)
        live = console.is_terminal
        last_line = 0.0
        try:
            with (Live(view.render(), console=console, refresh_per_second=4) if live else ExitStack()) as lv:
                while not stop["flag"]:
                    if duration is not None and view.elapsed() >= duration:
                        break
                    totals = watcher.totals()
                    for w in view.watches:
                        w.sample(totals.get(w.name, 0))
                    _poll_anomalies(anomalies, view)
                    failed = [st for st in view.stages if st.failed()]
                    if failed:
                        view.notes.append(f"stage {failed[0].name} exited with {failed[0].returncode}; see {failed[0].log_path}")
                        stop["flag"] = True
                        stop["failed"] = True
                    if live:
                        lv.update(view.render())
                    elif time.monotonic() - last_line >= 5 * interval:
                        console.print(view.line())
                        last_line = time.monotonic()
                    time.sleep(interval)
        except KeyboardInterrupt:
            pass
        console.print(view.line())
        ev = view.evaluation()
        if ev is not None:
            for inc in ev.incidents:
                console.print(f"  {inc.type:<16} {inc.service:<28} {'found' if inc.found else 'MISSED'}"
                              + (f" after {inc.delay_s / 60:.0f} min" if inc.delay_s is not None else ""))
            console.print(ev.summary())
        console.print("stopping: " + ", ".join(st.name for st in view.stages))
    if stop.get("failed"):
        console.print(f"[red]{view.notes[-1]}")
        raise typer.Exit(1)
    console.print("demo stopped cleanly")
