"""``patrol generate``: synthetic ingress-nginx traffic with labelled incidents, to a file or Kafka.

Registered by ``cli/app.py`` as ``app.command("generate")(generate)``.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

DEMO_SPEEDUP = 120.0  # 2 simulated hours per wall minute: a one-minute demo shows seasonality move


def _kafka_config(pairs: list[str]) -> dict[str, str]:
    conf = {}
    for p in pairs:
        if "=" not in p:
            raise typer.BadParameter(f"expected KEY=VALUE, got {p!r}", param_hint="--kafka-config")
        k, v = p.split("=", 1)
        conf[k.strip()] = v.strip()
    return conf


def generate(
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Write lines to FILE ('-' = stdout). Default: stdout unless --bootstrap is given.")] = None,
    bootstrap: Annotated[Optional[str], typer.Option("--bootstrap", "-b", help="Produce to Kafka at HOST:PORT instead of a file.")] = None,
    topic: Annotated[str, typer.Option(help="Kafka topic for the lines (key = $proxy_upstream_name).")] = "ingress-logs",
    lines: Annotated[Optional[int], typer.Option("--lines", "-n", min=0, help="Stop after N lines.")] = None,
    sim_duration: Annotated[Optional[str], typer.Option("--sim-duration", help="Stop after this much SIMULATED (event) time, e.g. 6h, 2d, 90m.")] = None,
    wall_duration: Annotated[Optional[str], typer.Option("--wall-duration", help="Stop after this much WALL-CLOCK time, e.g. 60s, 5m.")] = None,
    speedup: Annotated[Optional[float], typer.Option(help=f"Simulated seconds per wall second (pacing by event time). Default {DEMO_SPEEDUP:g} for Kafka, unpaced for files; 0 = as fast as possible.")] = None,
    rate: Annotated[Optional[float], typer.Option(help="Wall-clock lines per second. With --speedup too, sets the traffic volume (base rate = rate / speedup) and paces by event time.")] = None,
    base_rate: Annotated[Optional[float], typer.Option("--base-rate", help="Mean requests per SIMULATED second (seasonality averages to this). Default 50.")] = None,
    start: Annotated[Optional[str], typer.Option(help="Simulated start time, ISO 8601 (e.g. 2026-01-05T00:00:00Z). Default: today 00:00 UTC.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: same seed + start + options = identical output.")] = 0,
    incidents: Annotated[str, typer.Option(help="'default' (a daily mix), 'none', or a spec: TYPE@START:DURATION[@SERVICE][*MAGNITUDE],... e.g. error_spike@2h:20m,latency_spike@5h:15m")] = "default",
    ground_truth: Annotated[Optional[Path], typer.Option("--ground-truth", "-g", help="Write one JSON line per incident (as generation reaches it) to this file.")] = None,
    clients: Annotated[int, typer.Option(min=10, help="Size of the client IP pool (Zipf-distributed requests per client).")] = 20_000,
    kafka_config: Annotated[Optional[list[str]], typer.Option("--kafka-config", help="Extra librdkafka setting KEY=VALUE (repeatable), e.g. security.protocol=SASL_SSL.")] = None,
    progress: Annotated[Optional[bool], typer.Option("--progress/--no-progress", help="Periodic status line on stderr. Default: on unless writing to stdout.")] = None,
) -> None:
    """Generate realistic ingress-nginx access logs (default log-format-upstream) with incidents."""
    from patrol.sim.generator.engine import Generator
    from patrol.sim.generator.incidents import GroundTruthWriter, parse_duration
    from patrol.sim.generator.sinks import FileSink, KafkaSink, Pacer, Progress, run

    if out is not None and bootstrap is not None:
        raise typer.BadParameter("give either --out or --bootstrap, not both")
    if rate is not None and rate <= 0:
        raise typer.BadParameter("must be > 0", param_hint="--rate")
    to_kafka = bootstrap is not None
    if speedup is None:
        # A live stream should look live; a file is usually wanted as fast as possible.
        speedup = DEMO_SPEEDUP if to_kafka and rate is None else 0.0
    elif rate is not None and speedup > 0:
        if base_rate is not None:
            raise typer.BadParameter("--rate with --speedup derives the base rate; drop one of --rate/--base-rate")
        base_rate = rate / speedup
    if rate is not None and speedup > 0:
        rate = None  # paced by event time; rate only set the volume above
    try:
        sim_s = parse_duration(sim_duration) if sim_duration else None
        wall_s = parse_duration(wall_duration) if wall_duration else None
        gen = Generator(seed=seed, start=start, incidents=incidents, base_rate=base_rate or 50.0, n_clients=clients)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None

    sink = KafkaSink(bootstrap, topic, _kafka_config(kafka_config or [])) if to_kafka else FileSink(out or "-")
    gt_fh = open(ground_truth, "w") if ground_truth else None
    gt = GroundTruthWriter(gen.schedule, gt_fh)

    def on_chunk(t: float) -> int:
        gt.advance(t)
        return len(gt.written)

    stopping = {"flag": False}

    def _term(*_):  # SIGTERM from a supervisor (the demo): finish the slice, flush, exit cleanly
        stopping["flag"] = True

    old = signal.signal(signal.SIGTERM, _term)
    show = progress if progress is not None else (to_kafka or out not in (None, "-"))
    try:
        res = run(gen.chunks(gen.start + sim_s if sim_s else None), sink, Pacer(speedup, rate), lines=lines,
                  wall_duration=wall_s, progress=Progress(show), on_chunk=on_chunk, stop=lambda: stopping["flag"])
    except BrokenPipeError:  # `patrol generate | head`: the reader left; that is not an error
        sys.stderr.close()
        raise typer.Exit(0)
    finally:
        signal.signal(signal.SIGTERM, old)
        if gt_fh:
            gt_fh.close()
    if res.errors:
        print(f"generate: {res.errors} Kafka delivery errors (first: {res.first_error})", file=sys.stderr)
        raise typer.Exit(1)
