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

from patrol.models.labels import (AmbiguousId, AnomalyFilter, LabelBook, NothingToUndo, UnknownId, is_retraction,
                           label_for, precision_stats, resolve_id, service_name, short_ids, SEVERITY_ORDER)

from patrol.streams.config import Settings
from patrol.cli.labels_io import LabelIOError, ReadStats, publish_labels, read_anomalies, read_labels, read_series
from patrol.records import Anomaly, Incident, Label, LabelVerdict, Severity
from .timespec import TimeSpec, ago, parse_time, span

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


class ListFmt(str, Enum):
    table = "table"
    tsv = "tsv"
    json = "json"


ServiceOpt = Annotated[Optional[str], typer.Option("--service", help="Only this service: name or namespace/name.")]
MetricOpt = Annotated[Optional[str], typer.Option("--metric", help="Only this metric, e.g. error_ratio.")]
SeverityOpt = Annotated[Optional[Severity], typer.Option("--severity", help="Minimum severity.")]
SinceOpt = Annotated[Optional[str], typer.Option("--since", help="Window start at/after: 2h, 30m, 7d (before the NEWEST ANOMALY), now-2h (before the wall clock) or ISO time (UTC if no zone).")]
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
    err.print(f"[red]error:[/] {escape(msg)}", highlight=False, soft_wrap=not err.is_terminal)
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
    from patrol.cli.app import _require_broker, settings  # lazy: see BootstrapOpt

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


@dataclass
class Filter:
    """The filters of `list`/`mark-all`, checked before Kafka is read; times resolve against the data."""

    fields: dict
    since: Optional[TimeSpec]
    until: Optional[TimeSpec]

    def is_empty(self) -> bool:
        return self.since is None and self.until is None and all(v is None for v in self.fields.values())

    def resolve(self, anomalies: dict[str, Anomaly]) -> tuple[AnomalyFilter, "TimeWindow"]:
        """The filter with ``--since``/``--until`` as points in time: a bare duration counts back from
        the newest anomaly on the topic (event time), ``now-...`` from the wall clock."""
        newest = max((a.window_start for a in anomalies.values()), default=None)
        win = TimeWindow(self.since, self.until, newest, datetime.now(timezone.utc))
        return AnomalyFilter(**self.fields, since=win.start, until=win.end), win


@dataclass
class TimeWindow:
    since: Optional[TimeSpec]
    until: Optional[TimeSpec]
    newest: Optional[datetime]
    now: datetime

    @property
    def start(self) -> Optional[datetime]:
        return self.since.resolve(self.newest, self.now) if self.since else None

    @property
    def end(self) -> Optional[datetime]:
        return self.until.resolve(self.newest, self.now) if self.until else None

    def describe(self) -> str:
        """``since 2026-11-27 12:00 UTC (2h before the newest anomaly, ...)``; empty without times."""
        parts = [f"{opt} {spec.describe(self.newest, self.now)}"
                 for opt, spec in (("since", self.since), ("until", self.until)) if spec is not None]
        return "; ".join(parts)


def make_filter(service=None, metric=None, severity=None, since=None, until=None, labeled=None, detector=None,
                incident=None, series=None) -> Filter:
    try:
        return Filter(dict(service=service, metric=metric, severity=severity.value if severity else None,
                           labeled=labeled, detector=detector, incident=incident, series=series),
                      since=parse_time(since) if since else None, until=parse_time(until) if until else None)
    except ValueError as exc:
        raise fail(str(exc)) from None


def explain_empty(win: TimeWindow, total: int, topic: str, matched_without_time: int) -> str:
    """Why nothing matched, and what to type instead, when the time window is what hid everything."""
    if total == 0:
        return f"no anomalies on {topic!r} at all"
    if not (win.since or win.until) or matched_without_time == 0:
        return f"no anomaly matches these filters ({total} on {topic!r})"
    msg = f"no anomaly in the time window: {win.describe()}; {matched_without_time} match the other filters"
    if win.newest is not None:
        msg += f"; the newest anomaly on the topic is at {win.newest:%Y-%m-%d %H:%M} UTC ({ago(win.newest, win.now)})"
        if win.since is not None and win.since.anchor == "now" and win.since.back:
            msg += f"; a bare duration counts back from it instead: --since {span(win.since.back)}"
    return msg


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


def tsv_cell(v) -> str:
    """One TSV cell: backslash, tab, newline and carriage return escaped (``\\``, ``\\t``, ``\\n``,
    ``\\r``) so every row stays one line of tab-separated fields; None is empty."""
    if v is None:
        return ""
    text = v if isinstance(v, str) else repr(v) if isinstance(v, float) else str(v)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def print_tsv(header: list[str], rows: list[list]) -> None:
    lines = ["\t".join(header)] + ["\t".join(tsv_cell(v) for v in row) for row in rows]
    typer.echo("\n".join(lines))


def print_table(table: Table) -> None:
    """A rich table on stdout; when stdout is not a terminal, at the table's natural width (rich
    would otherwise fold or cut it at 80 columns)."""
    if out.is_terminal:
        out.print(table)
        return
    width = Console(width=100_000).measure(table).maximum
    Console(width=max(width, 40), highlight=False).print(table)


def _note(msg: str) -> None:
    # one line per message in logs and pipes; wrapped at word boundaries on a terminal
    err.print(msg, highlight=False, soft_wrap=not err.is_terminal)


def _summary(msg: str, shown: int) -> None:
    """Counts for tsv/json output go to stderr (stdout stays data); an empty result had its note."""
    if shown:
        _note(escape(msg))


ANOMALY_TSV = ["window_start", "id", "short_id", "series", "metric", "service", "observed", "expected", "lower",
               "upper", "score", "severity", "direction", "detectors", "incident_id", "incident_event", "label",
               "label_author", "label_at"]


def _anomaly_tsv_row(a: Anomaly, book: LabelBook, short: str) -> list:
    label = book.latest.get(a.id)
    if label is not None and is_retraction(label):
        label = None
    return [a.window_start.isoformat(), a.id, short, a.series, a.metric, service_name(a.dims), a.observed,
            a.expected, a.lower, a.upper, a.score, a.severity.value, a.direction.value, ",".join(a.detectors),
            a.incident_id, a.incident_event, label.verdict.value if label else None,
            label.author if label else None, label.at.isoformat() if label else None]


@label_app.command("list")
def list_(
    bootstrap: BootstrapOpt = None, service: ServiceOpt = None, metric: MetricOpt = None,
    severity: SeverityOpt = None, since: SinceOpt = None, until: UntilOpt = None, labeled: LabeledOpt = None,
    detector: DetectorOpt = None, incident: IncidentOpt = None, series: SeriesOpt = None,
    limit: Annotated[Optional[int], typer.Option("--limit", "-n", help="At most this many rows, newest first (default: 50 for a table, all for tsv/json).", min=1, show_default=False)] = None,
    incidents: Annotated[bool, typer.Option("--incidents", help="One row per incident instead of per anomaly.")] = False,
    fmt: Annotated[Optional[ListFmt], typer.Option("--format", "-f", help="table, tsv or json (default: table on a terminal, tsv when piped).", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
) -> None:
    """Recent anomalies (newest first) with their labels; filters combine with AND.

    On a terminal: a table. Piped or redirected: TSV (a header row, then one line per row, nothing
    cut), unless --format says otherwise; counts and hints go to stderr.
    """
    if as_json:
        if fmt not in (None, ListFmt.json):
            raise fail("--json and --format disagree; give one")
        fmt = ListFmt.json
    fmt = fmt or (ListFmt.table if out.is_terminal else ListFmt.tsv)
    limit = limit or (50 if fmt == ListFmt.table else None)
    flt = make_filter(service, metric, severity, since, until, labeled, detector, incident, series)
    snap = snapshot(bootstrap)
    query, win = flt.resolve(snap.anomalies)
    rows = query.apply(snap.anomalies.values(), snap.book)
    short = short_ids(snap.anomalies)
    topic = snap.settings.topics.anomalies
    window = f"; {win.describe()}" if win.describe() else ""
    if not rows:
        untimed = len(AnomalyFilter(**flt.fields).apply(snap.anomalies.values(), snap.book))
        _note(f"[yellow]note:[/] {escape(explain_empty(win, len(snap.anomalies), topic, untimed))}")
    if incidents:
        return _list_incidents(rows, snap, short, limit, fmt, window)
    shown = rows[:limit]
    summary = f"{len(shown)} of {len(rows)} matching anomalies ({len(snap.anomalies)} on {topic}), newest first{window}"
    if fmt == ListFmt.json:
        typer.echo(json.dumps([anomaly_row(a, snap.book, short[a.id]) for a in shown], indent=2))
        _summary(summary, len(shown))
        return
    if fmt == ListFmt.tsv:
        print_tsv(ANOMALY_TSV, [_anomaly_tsv_row(a, snap.book, short[a.id]) for a in shown])
        _summary(summary, len(shown))
        return
    if not rows:
        return  # the note said why; an empty table says nothing more
    table = Table(title=escape(summary), title_justify="left")
    for col, kw in [("time (UTC)", {}), ("id", {"style": "cyan"}), ("series", {"overflow": "fold"}),
                    ("observed", {"justify": "right"}), ("expected \\[band]", {"justify": "right"}),
                    ("score", {"justify": "right"}), ("severity", {}), ("detectors", {"overflow": "fold"}), ("incident", {}),
                    ("label", {})]:
        table.add_column(col, **kw)
    sev_color = {"info": "dim", "warning": "yellow", "critical": "bold red"}
    for a in shown:
        inc = f"{a.incident_id[:12]} {a.incident_event or ''}".rstrip() if a.incident_id else "-"
        table.add_row(_when(a.window_start), short[a.id], escape(a.series), _fmt(a.observed),
                      escape(f"{_fmt(a.expected)} [{_fmt(a.lower)}, {_fmt(a.upper)}]"), f"{a.score:.3f}",
                      f"[{sev_color[a.severity.value]}]{a.severity.value}", ",".join(a.detectors) or "-", escape(inc),
                      _label_cell(snap.book, a.id))
    print_table(table)


INCIDENT_TSV = ["last", "incident_id", "service", "state", "severity", "opened", "anomalies", "series", "labels",
                "anomaly_ids"]


def _list_incidents(rows: list[Anomaly], snap: "Snapshot", short: dict, limit: Optional[int], fmt: ListFmt,
                    window: str) -> None:
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
    total = len(items)
    items = items[:limit]
    summary = (f"{len(items)} of {total} incidents, most recent first ({outside} matching anomalies outside any "
               f"incident){window}")
    if fmt == ListFmt.json:
        typer.echo(json.dumps(items, indent=2))
        _summary(summary, len(items))
        return
    if fmt == ListFmt.tsv:
        # lists as space-separated items (series keys have commas; use --format json for exact lists)
        print_tsv(INCIDENT_TSV, [[r["last"], r["incident_id"], r["service"], r["state"], r["severity"], r["opened"],
                                  r["anomalies"], " ".join(r["series"]),
                                  " ".join(f"{k}={v}" for k, v in r["labels"].items()), " ".join(r["anomaly_ids"])]
                                 for r in items])
        _summary(summary, len(items))
        return
    if not items:
        if rows:
            _note(escape(summary))
        return
    table = Table("last (UTC)", "incident", "service", "state", "severity", "anomalies", "series", "labels",
                  title=escape(summary), title_justify="left")
    for r in items:
        table.add_row(_when(datetime.fromisoformat(r["last"])), escape(r["incident_id"][:12]), escape(r["service"]),
                      r["state"], r["severity"], str(r["anomalies"]), escape("\n".join(r["series"])),
                      ", ".join(f"{v} {k}" for k, v in r["labels"].items()))
    print_table(table)


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
    from patrol.cli.charts import ChartData, png_chart, terminal_chart

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
    force: Annotated[bool, typer.Option("--force", help="Publish even when the anomaly already has this verdict (e.g. to add a note).")] = False,
) -> None:
    """Label one anomaly true, false or ignore (a verdict it already has is left alone unless --force)."""
    snap = snapshot(bootstrap)
    a = snap.resolve(anomaly_id)
    before = snap.book.verdict(a.id)
    if before == verdict and not force:
        cur = snap.book.latest[a.id]
        out.print(f"{a.id} {a.series} at {_when(a.window_start)} is already {verdict.value} (label by "
                  f"{cur.author or '-'} at {cur.at.isoformat(timespec='seconds')}); nothing published "
                  "(--force publishes it again, e.g. with a --note)", highlight=False)
        return
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
    query, win = flt.resolve(snap.anomalies)
    matched = query.apply(snap.anomalies.values(), snap.book)
    todo = [a for a in matched if snap.book.verdict(a.id) != verdict]
    if not matched:
        untimed = len(AnomalyFilter(**flt.fields).apply(snap.anomalies.values(), snap.book))
        raise fail(explain_empty(win, len(snap.anomalies), snap.settings.topics.anomalies, untimed)
                   + "; nothing marked", 1)
    at = datetime.now(timezone.utc)
    who = author or default_author()
    labels = [label_for(a, verdict, at, note=note, author=who) for a in todo]
    if not dry_run and labels:
        snap.publish(labels)
    verb = "would mark" if dry_run else "marked"
    window = f"; {win.describe()}" if win.describe() else ""
    out.print(f"{verb} {len(labels)} anomalies {verdict.value} ({len(matched) - len(todo)} of {len(matched)} "
              f"matching already {verdict.value}){window}", highlight=False)


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
        out.print(f"  anomaly {p.undone.anomaly_id}: {undo_effect(snap.book, p)}  (label {p.undone.id})",
                  highlight=False)
    if len(plans) > 20:
        out.print(f"  ... and {len(plans) - 20} more", highlight=False)


def undo_effect(book: LabelBook, plan) -> str:
    """What an undo does to the anomaly's effective verdict: ``false -> true``, ``true -> unlabeled
    (retracted)``, or ``true (unchanged: ...)`` when the verdict stays (the undone label repeated the
    one before it, or someone labeled the anomaly after it). The undo label is published either way:
    it is what marks the undone label as undone, so the next undo walks further back."""
    before = book.verdict(plan.undone.anomaly_id)
    after = plan.restored
    if before != after:
        return f"{before.value if before else 'unlabeled'} -> {after.value if after else 'unlabeled (retracted)'}"
    latest = book.latest.get(plan.undone.anomaly_id)
    if latest is not None and latest.id != plan.undone.id:
        why = f"a later label by {latest.author or '-'} keeps it"
    else:
        why = "the undone label repeated the verdict before it"
    return f"{after.value if after else 'unlabeled'} (unchanged: {why})"


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
        print_table(table)
