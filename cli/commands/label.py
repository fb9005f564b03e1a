"""``patrol label``: review anomalies, label them true/false/ignore, undo, export, precision stats.

Labels are :class:`~records.Label` records on the labels topic keyed by anomaly id (the
topic is compacted: the latest label of an anomaly wins). Every command reads the topics as a
bounded snapshot (see ``cli.labels_io``); bookkeeping lives in ``models.labels``.
Exit codes: 0 ok, 1 broker/topic trouble, 2 bad input (unknown or ambiguous id, bad option).
"""

from __future__ import annotations

import csv
import getpass
import io
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from models.labels import (AmbiguousId, AnomalyFilter, LabelBook, NothingToUndo, UnknownId, is_retraction,
                           label_for, parse_when, precision_stats, resolve_id, service_name, short_ids,
                           SEVERITY_ORDER)

from streams.config import Settings
from cli.labels_io import LabelIOError, ReadStats, publish_labels, read_anomalies, read_labels, read_series
from records import Anomaly, Incident, Label, LabelVerdict, Severity

label_app = typer.Typer(help="Review anomalies and label them (true, false, ignore); labels feed retraining.",
                        no_args_is_help=True)

out = Console()
err = Console(stderr=True)

# Same option as `patrol topics create` (defined here too: importing cli.app from this module
# at import time would be circular, since cli.app registers this sub-app while it loads).
BootstrapOpt = Annotated[Optional[str], typer.Option("--bootstrap", "-b", help="Kafka bootstrap servers (overrides kafka.bootstrap_servers).")]


class Fmt(str, Enum):
    csv = "csv"
    json = "json"


ServiceOpt = Annotated[Optional[str], typer.Option("--service", help="Only this service: name or namespace/name.")]
MetricOpt = Annotated[Optional[str], typer.Option("--metric", help="Only this metric, e.g. error_ratio.")]
SeverityOpt = Annotated[Optional[Severity], typer.Option("--severity", help="Minimum severity.")]
SinceOpt = Annotated[Optional[str], typer.Option("--since", help="Window start at/after: 2h, 30m, 7d (before now) or ISO time.")]
UntilOpt = Annotated[Optional[str], typer.Option("--until", help="Window start at/before: same forms as --since.")]
LabeledOpt = Annotated[Optional[bool], typer.Option("--labeled/--unlabeled", help="Only anomalies with / without a verdict.", show_default=False)]
DetectorOpt = Annotated[Optional[str], typer.Option("--detector", help="Only anomalies this detector fired on.")]
IncidentOpt = Annotated[Optional[str], typer.Option("--incident", help="Only this incident (id or prefix).")]
SeriesOpt = Annotated[Optional[str], typer.Option("--series", help="Only this series key, e.g. 'error_ratio{service=web}'.")]
AuthorOpt = Annotated[Optional[str], typer.Option("--author", help="Who labels (default: $PATROL_LABEL_AUTHOR or the login name).")]


def default_author() -> str:
    """Author recorded on labels and used by ``undo`` when ``--author`` is not given."""
    if os.environ.get("PATROL_LABEL_AUTHOR"):
        return os.environ["PATROL_LABEL_AUTHOR"]
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"


def fail(msg: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/] {msg}", highlight=False)
    return typer.Exit(code)


@dataclass
class Snapshot:
    """Anomalies and labels as read at the start of a command."""

    settings: Settings
    conf: dict
    anomalies: dict[str, Anomaly]
    incidents: dict[str, Incident]
    book: LabelBook

    def resolve(self, prefix: str) -> Anomaly:
        """The anomaly an id or unique prefix names; exits 2 with a clear message otherwise."""
        try:
            return self.anomalies[resolve_id(prefix, self.anomalies)]
        except AmbiguousId as exc:
            raise fail(str(exc)) from None
        except UnknownId as exc:
            inc = [i for i in self.incidents if prefix.strip() and i.startswith(prefix.strip())]
            if inc:
                raise fail(f"{prefix!r} is an incident, not an anomaly; label its anomalies with "
                           f"`patrol label mark-all VERDICT --incident {inc[0]}`") from None
            raise fail(f"{exc} on topic {self.settings.topics.anomalies!r} ({len(self.anomalies)} anomalies read); "
                       "labels are only accepted for anomalies the detector published") from None

    def publish(self, labels: list[Label]) -> None:
        try:
            publish_labels(self.conf, self.settings.topics.labels, labels)
        except LabelIOError as exc:
            raise fail(str(exc), 1) from None


def _warn_bad(stats: ReadStats) -> None:
    if stats.bad:
        err.print(f"[yellow]warning:[/] skipped {stats.bad} undecodable records on {stats.topic!r} "
                  f"(first: {stats.first_bad})", highlight=False)


def snapshot(bootstrap: Optional[str], anomalies: bool = True) -> Snapshot:
    """Settings, client config and both topics read to their end (exits cleanly on any trouble)."""
    from cli.app import _require_broker, settings  # lazy: see BootstrapOpt

    s = settings(**{"kafka.bootstrap_servers": bootstrap})
    _require_broker(s)
    conf = s.kafka.client_config()
    try:
        astats, lstats = ReadStats(s.topics.anomalies), ReadStats(s.topics.labels)
        found, incidents = read_anomalies(conf, s.topics.anomalies, astats, console=err) if anomalies else ({}, {})
        book = LabelBook.of(read_labels(conf, s.topics.labels, lstats, console=err))
    except LabelIOError as exc:
        raise fail(str(exc), 1) from None
    _warn_bad(astats)
    _warn_bad(lstats)
    return Snapshot(s, conf, found, incidents, book)


def make_filter(service=None, metric=None, severity=None, since=None, until=None, labeled=None, detector=None,
                incident=None, series=None) -> AnomalyFilter:
    now = datetime.now(timezone.utc)
    try:
        return AnomalyFilter(service=service, metric=metric, severity=severity.value if severity else None,
                             since=parse_when(since, now) if since else None,
                             until=parse_when(until, now) if until else None,
                             labeled=labeled, detector=detector, incident=incident, series=series)
    except ValueError as exc:
        raise fail(str(exc)) from None


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _when(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")


def anomaly_row(a: Anomaly, book: LabelBook, short: str) -> dict:
    """JSON form of an anomaly with its short id and effective label (``label`` null when none)."""
    label = book.latest.get(a.id)
    row = a.model_dump(mode="json")
    row["short_id"] = short
    row["label"] = None if label is None or is_retraction(label) else label.model_dump(mode="json", exclude_none=True)
    return row


def _label_cell(book: LabelBook, aid: str) -> str:
    label = book.latest.get(aid)
    if label is None or is_retraction(label):
        return "[dim]-"
    color = {"true": "red", "false": "green", "ignore": "dim"}[label.verdict.value]
    return f"[{color}]{label.verdict.value}[/] {escape(label.author or '')}".rstrip()


@label_app.command("list")
def list_(
    bootstrap: BootstrapOpt = None, service: ServiceOpt = None, metric: MetricOpt = None,
    severity: SeverityOpt = None, since: SinceOpt = None, until: UntilOpt = None, labeled: LabeledOpt = None,
    detector: DetectorOpt = None, incident: IncidentOpt = None, series: SeriesOpt = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many rows (newest first).", min=1)] = 50,
    incidents: Annotated[bool, typer.Option("--incidents", help="One row per incident instead of per anomaly.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout (a list) instead of a table.")] = False,
) -> None:
    """Recent anomalies (newest first) with their labels; filters combine with AND."""
    flt = make_filter(service, metric, severity, since, until, labeled, detector, incident, series)
    snap = snapshot(bootstrap)
    rows = flt.apply(snap.anomalies.values(), snap.book)
    short = short_ids(snap.anomalies)
    if incidents:
        return _list_incidents(rows, snap, short, limit, as_json)
    shown = rows[:limit]
    if as_json:
        typer.echo(json.dumps([anomaly_row(a, snap.book, short[a.id]) for a in shown], indent=2))
        return
    table = Table(title=f"{len(shown)} of {len(rows)} matching anomalies ({len(snap.anomalies)} on "
                        f"{snap.settings.topics.anomalies}), newest first", title_justify="left")
    for col, kw in [("time (UTC)", {}), ("id", {"style": "cyan"}), ("series", {"overflow": "fold"}),
                    ("observed", {"justify": "right"}), ("expected \\[band]", {"justify": "right"}),
                    ("score", {"justify": "right"}), ("severity", {}), ("detectors", {}), ("incident", {}),
                    ("label", {})]:
        table.add_column(col, **kw)
    sev_color = {"info": "dim", "warning": "yellow", "critical": "bold red"}
    for a in shown:
        inc = f"{a.incident_id[:12]} {a.incident_event or ''}".rstrip() if a.incident_id else "-"
        table.add_row(_when(a.window_start), short[a.id], escape(a.series), _fmt(a.observed),
                      escape(f"{_fmt(a.expected)} [{_fmt(a.lower)}, {_fmt(a.upper)}]"), f"{a.score:.3f}",
                      f"[{sev_color[a.severity.value]}]{a.severity.value}", ",".join(a.detectors) or "-", escape(inc),
                      _label_cell(snap.book, a.id))
    out.print(table)


def _list_incidents(rows: list[Anomaly], snap: "Snapshot", short: dict, limit: int, as_json: bool) -> None:
    """One row per incident having a matching anomaly: the incident's latest record (when the detector
    published one) completed by its anomalies and their labels."""
    members: dict[str, list[Anomaly]] = {}
    for a in rows:
        if a.incident_id:
            members.setdefault(a.incident_id, []).append(a)
    items = []
    for inc_id, group in members.items():
        rec = snap.incidents.get(inc_id)
        verdicts = [snap.book.verdict(a.id) for a in group]
        counts = {v: sum(1 for x in verdicts if (x.value if x else "unlabeled") == v)
                  for v in ("true", "false", "ignore", "unlabeled")}
        last_anomaly = max(group, key=lambda a: a.window_start)
        items.append({
            "incident_id": inc_id,
            "service": rec.service if rec else service_name(group[0].dims),
            "state": rec.event if rec else (last_anomaly.incident_event or "-"),
            "opened": (rec.opened if rec else min(a.window_start for a in group)).isoformat(),
            "last": (max(rec.last, last_anomaly.window_start) if rec else last_anomaly.window_start).isoformat(),
            "severity": rec.severity.value if rec else max((a.severity.value for a in group), key=SEVERITY_ORDER.get),
            "anomalies": len(group),
            "series": sorted({a.series for a in group} | set(rec.series if rec else [])),
            "labels": {k: v for k, v in counts.items() if v},
            "anomaly_ids": [short[a.id] for a in group],
        })
    items.sort(key=lambda r: r["last"], reverse=True)
    outside = sum(1 for a in rows if not a.incident_id)
    items = items[:limit]
    if as_json:
        typer.echo(json.dumps(items, indent=2))
        return
    table = Table("last (UTC)", "incident", "service", "state", "severity", "anomalies", "series", "labels",
                  title=f"{len(items)} incidents, most recent first ({outside} matching anomalies outside any incident)",
                  title_justify="left")
    for r in items:
        table.add_row(_when(datetime.fromisoformat(r["last"])), escape(r["incident_id"][:12]), escape(r["service"]),
                      r["state"], r["severity"], str(r["anomalies"]), escape("\n".join(r["series"])),
                      ", ".join(f"{v} {k}" for k, v in r["labels"].items()))
    out.print(table)


def _parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m or not (50 <= int(m.group(1)) <= 10000 and 50 <= int(m.group(2)) <= 10000):
        raise fail(f"--png-size expects WIDTHxHEIGHT in pixels between 50 and 10000, got {text!r}")
    return int(m.group(1)), int(m.group(2))


@label_app.command("show")
def show(
    anomaly_id: Annotated[str, typer.Argument(metavar="ID", help="Anomaly id or a unique prefix of it.")],
    bootstrap: BootstrapOpt = None,
    context: Annotated[float, typer.Option("--context", help="Minutes of the series to show before and after.", min=1)] = 60,
    png: Annotated[Optional[Path], typer.Option("--png", help="Also write the chart as a PNG to this file.")] = None,
    png_size: Annotated[str, typer.Option("--png-size", help="PNG size in pixels, WIDTHxHEIGHT.")] = "1200x500",
    width: Annotated[Optional[int], typer.Option("--width", help="Terminal chart width in columns (default: terminal).")] = None,
    height: Annotated[int, typer.Option("--height", help="Terminal chart height in rows.")] = 22,
    chart: Annotated[bool, typer.Option("--chart/--no-chart", help="Draw the terminal chart.")] = True,
) -> None:
    """One anomaly with its label history and a chart of its series around it."""
    from cli.charts import ChartData, png_chart, terminal_chart

    size = _parse_size(png_size) if png is not None else None
    snap = snapshot(bootstrap)
    a = snap.resolve(anomaly_id)
    start, end = a.window_start - timedelta(minutes=context), a.window_end + timedelta(minutes=context)
    try:
        mstats = ReadStats(snap.settings.topics.metrics)
        points = read_series(snap.conf, snap.settings.topics.metrics, a.series, start, end, mstats, console=err)
    except LabelIOError as exc:
        raise fail(str(exc), 1) from None
    nearby = [b for b in snap.anomalies.values() if b.series == a.series and start <= b.window_start <= end]
    data = ChartData(focus=a, points=points, anomalies=nearby)
    verdict = snap.book.verdict(a.id)
    lines = [
        f"[bold]{escape(a.series)}[/]",
        f"id          {a.id}",
        f"window      {a.window_start.isoformat()} .. {a.window_end.isoformat()}",
        f"observed    {_fmt(a.observed)}   expected {_fmt(a.expected)}   band [{_fmt(a.lower)}, {_fmt(a.upper)}]",
        f"score       {a.score:.4f}   severity {a.severity.value}   direction {a.direction.value}",
        f"detectors   {', '.join(a.detectors) or '-'}   model v{a.model_version}",
        f"incident    {a.incident_id or '-'} {a.incident_event or ''}".rstrip(),
    ]
    if a.context:
        lines.append("context     " + ", ".join(f"{k}={'-' if v is None else _fmt(v)}" for k, v in a.context.items()))
    lines.append(f"label       {verdict.value if verdict else 'unlabeled'}")
    for lb in snap.book.history:
        if lb.anomaly_id == a.id:
            lines.append(f"  {lb.at.isoformat(timespec='seconds')}  {lb.verdict.value:<6} {lb.author or '-'}  {lb.note or ''}")
    lines.append(f"points      {len(data.points)} metric points and {len(data.anomalies)} flagged windows "
                 f"within ±{context:g} min")
    for i, line in enumerate(lines):
        out.print(line if i == 0 else escape(line), highlight=False)
    if chart:
        w = width or max(60, min(out.width, 140))
        typer.echo(terminal_chart(data, width=w, height=height, color=out.is_terminal))
    if png is not None:
        try:
            path = png_chart(data, png, *size)
        except OSError as exc:
            raise fail(f"cannot write {png}: {exc}", 1) from None
        err.print(f"wrote {path} ({size[0]}x{size[1]} px)", highlight=False)


VerdictArg = Annotated[LabelVerdict, typer.Argument(metavar="VERDICT", help="true (real problem), false (false alarm) or ignore (don't learn from it).")]


@label_app.command("mark")
def mark(
    anomaly_id: Annotated[str, typer.Argument(metavar="ID", help="Anomaly id or a unique prefix of it.")],
    verdict: VerdictArg,
    bootstrap: BootstrapOpt = None,
    note: Annotated[Optional[str], typer.Option("--note", help="Why (kept with the label).")] = None,
    author: AuthorOpt = None,
) -> None:
    """Label one anomaly true, false or ignore."""
    snap = snapshot(bootstrap)
    a = snap.resolve(anomaly_id)
    before = snap.book.verdict(a.id)
    label = label_for(a, verdict, datetime.now(timezone.utc), note=note, author=author or default_author())
    snap.publish([label])
    was = f" (was {before.value})" if before else ""
    out.print(f"marked {a.id} {a.series} at {_when(a.window_start)}: {verdict.value}{was}", highlight=False)


@label_app.command("mark-all")
def mark_all(
    verdict: VerdictArg,
    bootstrap: BootstrapOpt = None, service: ServiceOpt = None, metric: MetricOpt = None,
    severity: SeverityOpt = None, since: SinceOpt = None, until: UntilOpt = None, labeled: LabeledOpt = None,
    detector: DetectorOpt = None, incident: IncidentOpt = None, series: SeriesOpt = None,
    note: Annotated[Optional[str], typer.Option("--note", help="Why (kept with every label).")] = None,
    author: AuthorOpt = None,
    everything: Annotated[bool, typer.Option("--all", help="Allow marking without any filter (every anomaly).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be marked.")] = False,
) -> None:
    """Label every anomaly matching the filters (same filters as `list`).

    Anomalies that already have this verdict are left alone; without any filter it refuses
    unless --all is given.
    """
    flt = make_filter(service, metric, severity, since, until, labeled, detector, incident, series)
    if flt.is_empty() and not everything:
        raise fail("mark-all without a filter would label every anomaly; give filters (--service, --metric, "
                   "--since, ...) or --all")
    snap = snapshot(bootstrap)
    matched = flt.apply(snap.anomalies.values(), snap.book)
    todo = [a for a in matched if snap.book.verdict(a.id) != verdict]
    if not matched:
        raise fail("no anomaly matches these filters; nothing marked", 1)
    at = datetime.now(timezone.utc)
    who = author or default_author()
    labels = [label_for(a, verdict, at, note=note, author=who) for a in todo]
    if not dry_run and labels:
        snap.publish(labels)
    verb = "would mark" if dry_run else "marked"
    out.print(f"{verb} {len(labels)} anomalies {verdict.value} ({len(matched) - len(todo)} of {len(matched)} "
              f"matching already {verdict.value})", highlight=False)


@label_app.command("undo")
def undo(
    bootstrap: BootstrapOpt = None, author: AuthorOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be undone.")] = False,
) -> None:
    """Revert your most recent mark, or a whole mark-all (repeat to walk further back).

    Publishes, per anomaly, a label restoring its previous verdict, or a retraction (verdict
    ignore, note "[undo ID] retracted") when the undone label was its first.
    """
    snap = snapshot(bootstrap, anomalies=False)
    who = author or default_author()
    try:
        plans = snap.book.plan_undo(who, datetime.now(timezone.utc))
    except NothingToUndo as exc:
        raise fail(f"{exc} on {snap.settings.topics.labels!r}") from None
    if not dry_run:
        snap.publish([p.publish for p in plans])
    first = plans[0].undone
    verb = "would undo" if dry_run else "undid"
    what = "label" if len(plans) == 1 else f"{len(plans)} labels (one mark-all)"
    out.print(f"{verb} {what} by {who} from {first.at.isoformat(timespec='seconds')}:", highlight=False)
    for p in plans[:20]:
        now = p.restored.value if p.restored else "unlabeled (retracted)"
        out.print(f"  anomaly {p.undone.anomaly_id}: {p.undone.verdict.value} -> {now}  (label {p.undone.id})",
                  highlight=False)
    if len(plans) > 20:
        out.print(f"  ... and {len(plans) - 20} more", highlight=False)


EXPORT_FIELDS = ["anomaly_id", "verdict", "author", "at", "note", "label_id", "series", "metric", "service",
                 "window_start", "window_end", "observed", "expected", "lower", "upper", "score", "severity",
                 "direction", "detectors", "model_version", "incident_id"]


def export_rows(snap: Snapshot) -> list[dict]:
    """One row per anomaly with an effective label, oldest label first; anomaly fields empty when the
    anomaly has expired from its topic (the label is still training data)."""
    rows = []
    for aid, lb in sorted(snap.book.effective().items(), key=lambda kv: (kv[1].at, kv[0])):
        a = snap.anomalies.get(aid)
        row = {"anomaly_id": aid, "verdict": lb.verdict.value, "author": lb.author, "at": lb.at.isoformat(),
               "note": lb.note, "label_id": lb.id}
        if a is not None:
            row.update(series=a.series, metric=a.metric, service=service_name(a.dims),
                       window_start=a.window_start.isoformat(), window_end=a.window_end.isoformat(),
                       observed=a.observed, expected=a.expected, lower=a.lower, upper=a.upper, score=a.score,
                       severity=a.severity.value, direction=a.direction.value, detectors=";".join(a.detectors),
                       model_version=a.model_version, incident_id=a.incident_id)
        rows.append({k: row.get(k) for k in EXPORT_FIELDS})
    return rows


@label_app.command("export")
def export(
    bootstrap: BootstrapOpt = None,
    fmt: Annotated[Fmt, typer.Option("--format", "-f", help="csv or json.")] = Fmt.csv,
    out_file: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write here instead of stdout.")] = None,
) -> None:
    """Current labels joined with their anomalies (retracted labels left out)."""
    snap = snapshot(bootstrap)
    rows = export_rows(snap)
    if fmt == Fmt.json:
        text = json.dumps(rows, indent=2) + "\n"
    else:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=EXPORT_FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        text = buf.getvalue()
    if out_file is None:
        typer.echo(text, nl=False)
        return
    try:
        out_file.write_text(text)
    except OSError as exc:
        raise fail(f"cannot write {out_file}: {exc}", 1) from None
    err.print(f"wrote {len(rows)} labels to {out_file}", highlight=False)


@label_app.command("stats")
def stats(
    bootstrap: BootstrapOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout instead of tables.")] = False,
) -> None:
    """Precision (true / (true + false)) per detector, service and metric from the current labels."""
    snap = snapshot(bootstrap)
    result = precision_stats(snap.book.effective(), snap.anomalies)
    if as_json:
        typer.echo(json.dumps({g: {k: v.as_dict() for k, v in groups.items()} for g, groups in result.items()},
                              indent=2))
        return
    unlabeled = sum(1 for aid in snap.anomalies if snap.book.verdict(aid) is None)
    out.print(f"{len(snap.anomalies)} anomalies, {unlabeled} unlabeled; precision = true / (true + false), "
              "ignore excluded", highlight=False)
    for grouping in ("all", "detector", "service", "metric"):
        table = Table(grouping, "labeled", "true", "false", "ignore", "precision", title_justify="left")
        for key, g in result.get(grouping, {}).items():
            p = "-" if g.precision is None else f"{g.precision:.3f}"
            table.add_row(key, str(g.labeled), str(g.true), str(g.false), str(g.ignore), p)
        out.print(table)
