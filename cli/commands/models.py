"""``patrol models list|show|reset``: inspect and reset per-series model state in Redis."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

models_app = typer.Typer(help="Inspect and reset per-series model state (Redis).", no_args_is_help=True)


def _store():
    from patrol.models.store import StateStore

    from patrol.cli.app import err, settings

    s = settings()
    if s.redis.url is None:
        err.print("[red]error:[/] no Redis configured: set PATROL_REDIS__URL (model state lives there)")
        raise typer.Exit(2)
    return StateStore(s.redis.url.get_secret_value(), s.redis.key_prefix)


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M") if t > -1e18 else "-"


@models_app.command("list")
def models_list(pattern: Annotated[str, typer.Argument(help="Glob over series keys.")] = "*",
                as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """List the series that have model state."""
    store = _store()
    keys = [k for k in store.list_series(pattern) if not k.startswith("__")]
    states = store.load_many(keys)
    if as_json:
        typer.echo(json.dumps([{"series": k, "last_window": _when(states[k].last_window),
                                "model_version": states[k].model_version} for k in keys if k in states]))
        return
    table = Table("series", "kind", "last window", "model version", "bytes")
    for k in keys:
        st = states.get(k)
        if st is not None:
            table.add_row(k, st.extra.get("kind", "?"), _when(st.last_window), str(st.model_version), str(store.raw_size(k)))
    Console(width=200).print(table)
    typer.echo(f"{len(keys)} series")


@models_app.command("show")
def models_show(series: Annotated[str, typer.Argument(help="Series key, e.g. 'requests{service=web}'.")]) -> None:
    """Show one series' model: kind, last window, version, state size, and what labels changed."""
    store = _store()
    st = store.get(series)
    if st is None:
        from patrol.cli.app import err

        err.print(f"[red]error:[/] no model state for series {series!r} (see `patrol models list`)")
        raise typer.Exit(2)
    info = {"series": series, "kind": st.extra.get("kind"), "direction": st.extra.get("direction"),
            "last_window": _when(st.last_window), "model_version": st.model_version,
            "state_bytes": store.raw_size(series), "config": st.state.get("config"),
            "label_changes": st.extra.get("calibration", {}).get("changes", [])}
    ep = st.extra.get("episode")
    if ep and ep[0]:  # the departure from the band the series is in now (label feedback's context)
        info["episode"] = {"side": "above" if ep[0] > 0 else "below", "windows": ep[1],
                           "alert_muted_waiting": bool(ep[3]), "alert_raised": bool(ep[4])}
    typer.echo(json.dumps(info, indent=2))


@models_app.command("reset")
def models_reset(series: Annotated[str, typer.Argument(help="Series key to forget (it warms up again).")],
                 yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False) -> None:
    """Delete one series' model state; its next point starts a new warm-up."""
    from patrol.cli.app import err

    if not yes and not typer.confirm(f"reset the model of {series}?"):
        raise typer.Exit(1)
    if _store().reset(series):
        typer.echo(f"reset {series}")
    else:
        err.print(f"[red]error:[/] no model state for series {series!r}")
        raise typer.Exit(2)
