"""``patrol run detect``: the detection worker."""

from __future__ import annotations

from typing import Annotated, Optional

import typer


def detect(
    bootstrap: Annotated[Optional[str], typer.Option("--bootstrap", "-b", help="Kafka bootstrap servers.")] = None,
    group: Annotated[str, typer.Option(help="Consumer group; workers in one group split the series.")] = "patrol-detect",
    threshold: Annotated[Optional[float], typer.Option(help="Alert score threshold (default detect.threshold).")] = None,
    checkpoint: Annotated[Optional[float], typer.Option(help="Seconds between state checkpoints + offset commits.")] = None,
    duration: Annotated[Optional[float], typer.Option(help="Stop after this many seconds (default: run until SIGTERM).")] = None,
    max_idle: Annotated[Optional[float], typer.Option(help="Stop after this many seconds without input.")] = None,
    metrics_port: Annotated[Optional[int], typer.Option(help="Prometheus endpoint port (default service.metrics_port).")] = None,
) -> None:
    """Consume metric points, run every series' detectors, publish anomalies and incidents."""
    from patrol.cli.app import _require_broker, err, settings
    from patrol.streams.detect_job import run_detect
    from patrol.streams.observability import serve_metrics, setup_logging

    s = settings(**{"kafka.bootstrap_servers": bootstrap, "detect.threshold": threshold,
                    "detect.checkpoint_interval_s": checkpoint, "service.metrics_port": metrics_port})
    _require_broker(s)
    setup_logging(s.service.log_format, s.service.log_level)
    port = serve_metrics(s.service.metrics_port)
    if port:
        err.print(f"metrics on :{port}/metrics")
    stats = run_detect(s, group=group, duration=duration, max_idle=max_idle)
    err.print(f"detect stopped: {stats.points} points, {stats.anomalies} anomalies, {stats.duplicates} duplicates "
              f"skipped, {stats.dead_letters} dead letters, {stats.checkpoints} checkpoints")
