"""``patrol run preagg``: the pre-aggregation worker (raw logs -> metric points)."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer


def preagg(
    bootstrap: Annotated[Optional[str], typer.Option("--bootstrap", help="Kafka bootstrap servers (else from settings).")] = None,
    window: Annotated[Optional[int], typer.Option("--window", help="Window length in seconds (e.g. 60, 10).")] = None,
    lateness: Annotated[Optional[int], typer.Option("--lateness", help="Allowed lateness in seconds.")] = None,
    group: Annotated[str, typer.Option("--group", help="Consumer group; workers in one group share partitions.")] = "patrol-preagg",
    fmt: Annotated[Optional[str], typer.Option("--format", help="Log format: ingress-nginx, combined, ... or an nginx log_format.")] = None,
    duration: Annotated[Optional[float], typer.Option("--duration", help="Stop after this many seconds (flush + commit).")] = None,
    max_idle: Annotated[Optional[float], typer.Option("--max-idle", help="End of input: after N idle seconds close all windows, publish, commit, exit.")] = None,
    metrics_port: Annotated[Optional[int], typer.Option("--metrics-port", help="Serve Prometheus metrics on this port.")] = None,
) -> None:
    """Consume raw access logs, publish windowed metric points; offsets committed after delivery."""
    from patrol.streams.config import ConfigError, load_settings
    from patrol.streams.observability import setup_logging
    from patrol.streams.preagg_job import PreaggJob

    overrides = {"kafka.bootstrap_servers": bootstrap, "preagg.window_s": window,
                 "preagg.allowed_lateness_s": lateness, "preagg.log_format": fmt}
    try:
        try:
            from patrol.cli.app import settings as cli_settings  # honours --config/--set of `patrol`
        except ImportError:  # pragma: no cover - running without the CLI module
            cli_settings = None
        s = cli_settings(**overrides) if cli_settings else load_settings(None, overrides)
        s.kafka.client_config()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    setup_logging(s.service.log_format, s.service.log_level)
    job = PreaggJob(s, group=group, duration=duration, max_idle=max_idle,
                    metrics_port=metrics_port if metrics_port is not None else s.service.metrics_port)
    r = job.run()
    typer.echo(json.dumps({"lines": r.lines, "points": r.points, "dead_letters": r.dead_letters, "windows": r.windows,
                           "commits": r.commits, "bytes_in": r.bytes_in, "bytes_out": r.bytes_out, "stop": r.reason,
                           "cpu_s": round(r.cpu_s, 3), "wall_s": round(r.wall_s, 3)}))
