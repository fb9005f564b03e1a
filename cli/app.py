"""``patrol``: the command line of ingress-patrol.

Every command reads the same settings (see ``streams.config``): environment ``PATROL_*``, an optional
YAML file (``--config``), and ``--set key=value`` overrides.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Optional

import typer
import yaml
from rich.console import Console
from rich.table import Table

from patrol.streams.config import ConfigError, Settings, load_settings, masked_dump

from .commands import register

app = typer.Typer(
    name="patrol",
    help="ingress-patrol: streaming anomaly detection for Kubernetes ingress traffic on Kafka.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
topics_app = typer.Typer(help="Create and inspect the Kafka topics.", no_args_is_help=True)
config_app = typer.Typer(help="Show the effective configuration.", no_args_is_help=True)
run_app = typer.Typer(help="Run a stream worker.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
app.add_typer(config_app, name="config")
app.add_typer(run_app, name="run")

err = Console(stderr=True)


class State:
    config_file: Optional[Path] = None
    overrides: dict[str, str] = {}


def _version() -> str:
    try:
        return version("ingress-patrol")
    except PackageNotFoundError:  # running from a source tree without install
        return "0+unknown"


def _parse_set(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise typer.BadParameter(f"--set expects key=value (dotted key), got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v) if v else v
    return out


def settings(**extra: object) -> Settings:
    """Effective settings for a command; exits with a clear message on bad config."""
    overrides = dict(State.overrides)
    overrides.update({k: v for k, v in extra.items() if v is not None})
    try:
        return load_settings(State.config_file, overrides)
    except ConfigError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


@app.callback(invoke_without_command=True)
def main(
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML settings file (also PATROL_CONFIG).")] = None,
    set_: Annotated[list[str], typer.Option("--set", help="Override a setting: --set preagg.window_s=10 (repeatable).")] = [],
    show_version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    """ingress-patrol: pre-aggregate ingress access logs, detect anomalies, learn from labels."""
    if show_version:
        typer.echo(f"ingress-patrol {_version()}")
        raise typer.Exit()
    State.config_file = config
    State.overrides = _parse_set(set_)


@app.command()
def schema(
    kind: Annotated[Optional[str], typer.Argument(help="Record kind (access_log, metric_point, anomaly, incident, label, dead_letter); all when omitted.")] = None,
) -> None:
    """Print the JSON Schema of the wire records."""
    from patrol.records import json_schemas

    schemas = json_schemas()
    if kind is not None:
        if kind not in schemas:
            err.print(f"[red]error:[/] unknown record kind {kind!r}; known: {', '.join(schemas)}")
            raise typer.Exit(2)
        schemas = schemas[kind]
    typer.echo(json.dumps(schemas, indent=2))


@config_app.command("show")
def config_show(
    fmt: Annotated[str, typer.Option("--format", help="yaml or json.")] = "yaml",
) -> None:
    """Print the effective configuration with secrets masked."""
    data = masked_dump(settings())
    if fmt == "json":
        typer.echo(json.dumps(data, indent=2))
    elif fmt == "yaml":
        typer.echo(yaml.safe_dump(data, sort_keys=False).rstrip())
    else:
        err.print(f"[red]error:[/] --format must be yaml or json, got {fmt!r}")
        raise typer.Exit(2)


BootstrapOpt = Annotated[Optional[str], typer.Option("--bootstrap", "-b", help="Kafka bootstrap servers (overrides kafka.bootstrap_servers).")]


def _require_broker(s: Settings) -> None:
    if not s.kafka.bootstrap_servers:
        err.print("[red]error:[/] no Kafka broker configured. Set PATROL_KAFKA__BOOTSTRAP_SERVERS, pass --bootstrap, "
                  "or start the embedded one with `patrol broker`.")
        raise typer.Exit(2)


@topics_app.command("create")
def topics_create(bootstrap: BootstrapOpt = None) -> None:
    """Create every topic with explicit configs (idempotent: existing topics are left alone)."""
    from patrol.streams.topics import create_topics

    s = settings(**{"kafka.bootstrap_servers": bootstrap})
    _require_broker(s)
    results = create_topics(s)
    table = Table("topic", "status", "detail")
    for r in results:
        table.add_row(r.name, {"created": "[green]created", "exists": "exists", "error": "[red]error"}[r.status], r.detail)
    Console().print(table)
    if any(r.status == "error" for r in results):
        raise typer.Exit(1)


@topics_app.command("list")
def topics_list(bootstrap: BootstrapOpt = None) -> None:
    """List the project's topics with partitions and message counts."""
    from patrol.streams.topics import describe_topics

    s = settings(**{"kafka.bootstrap_servers": bootstrap})
    _require_broker(s)
    table = Table("role", "topic", "partitions", "messages")
    for row in describe_topics(s):
        table.add_row(row.role, row.name, str(row.partitions) if row.partitions else "[red]missing", str(row.messages))
    Console().print(table)


@app.command()
def broker(
    port: Annotated[int, typer.Option(help="Port to listen on (0 = a free one).")] = 9092,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    create: Annotated[bool, typer.Option("--create-topics/--no-create-topics", help="Create the project's topics.")] = True,
) -> None:
    """Run the embedded Kafka-compatible broker (Tansu, in memory) in the foreground until Ctrl-C."""
    import signal
    import time

    from patrol.sim.broker import BrokerStartError, EmbeddedBroker
    from patrol.streams.topics import create_topics

    try:
        b = EmbeddedBroker(host=host, port=port).start()
    except BrokerStartError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        if create:
            create_topics(settings(**{"kafka.bootstrap_servers": b.bootstrap}))
        typer.echo(f"embedded broker listening on {b.bootstrap} (in memory; data is lost on exit)")
        typer.echo(f"  export PATROL_KAFKA__BOOTSTRAP_SERVERS={b.bootstrap}")
        sys.stdout.flush()
        while b.alive():
            time.sleep(0.5)
        err.print("[red]error:[/] the broker process exited")
        raise typer.Exit(1)
    except KeyboardInterrupt:
        pass
    finally:
        b.stop()


# the commands of cli/commands/ (one module per concern), after this module's own
register(app, run_app)

if __name__ == "__main__":  # pragma: no cover
    app()
